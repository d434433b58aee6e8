"""The command line: parse options -> load -> compute -> render. With cli_inference.py (anova, confint, predict,
compare), the only modules that import click.

Numeric modules are imported inside the commands, so that `mmcli --help` starts fast.
"""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Callable
from typing import Any

import click

from mmcli import emit, output
from mmcli.cli_dask import dask_option
from mmcli.cli_gamm import gamm_predict_options, ranef_reml_option
from mmcli.cli_glmm import family_options
from mmcli.cli_speed import speed_options
from mmcli.errors import EXIT_INTERRUPTED, EXIT_NOT_CONVERGED, MmcliError, UsageError
from mmcli.signals import Terminated, raise_pending, unwinding


def split_list(values: tuple[str, ...]) -> list[str]:
    """Repeatable options that also take comma-separated lists: --fixed x1,x2 --fixed x3."""
    out: list[str] = []
    for v in values:
        out += [s.strip() for s in v.split(",") if s.strip()]
    return out


def output_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--format/--json/--debug, shared by every command."""

    @click.option(
        "--format",
        "fmt",
        type=click.Choice(["table", "json", "csv"]),
        default="table",
        show_default=True,
        help="Output: a table for people, JSON or CSV for pipelines.",
    )
    @click.option("--json", "as_json", is_flag=True, help="Short for --format json.")
    @click.option("--debug", is_flag=True, help="Show the Python traceback of an error.")
    @click.option(
        "--max-memory",
        metavar="SIZE",
        help="Largest array to allocate, e.g. 8G (default: 1G or half the available memory, whichever is larger).",
    )
    @functools.wraps(f)
    def wrapper(*args: Any, fmt: str, as_json: bool, debug: bool, max_memory: str | None, **kw: Any) -> Any:
        from mmcli.memory import parse_size, set_limit

        set_limit(parse_size(max_memory) if max_memory is not None else None)
        return f(*args, fmt="json" if as_json else fmt, **kw)

    return wrapper


NA_OPTION = click.option(
    "--na",
    "na",
    multiple=True,
    metavar="TOKEN",
    help="Also read cells holding exactly TOKEN as missing (repeatable); NA and empty cells always are, as in R.",
)


def model_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The LMM's model options, shared by fit and ranef."""
    opts = [
        click.argument("data", type=str),
        click.argument("formula", required=False),
        click.option("--y", "y", metavar="COL", help="Response column."),
        click.option("--fixed", multiple=True, metavar="COL", help="Fixed-effect column (repeat, or x1,x2)."),
        click.option("--group", multiple=True, metavar="COL", help="Grouping column: a random intercept per level."),
        click.option("--slope", multiple=True, metavar="COL", help="Random slope of COL within each --group."),
        click.option("--factor", multiple=True, metavar="COL", help="Treat a numeric-looking column as categorical."),
        click.option("--weights", metavar="COL", help="Prior weights (positive): residual variance sigma^2 / w."),
        NA_OPTION,
        click.option("--reml/--ml", default=False, help="REML or maximum likelihood (default: ML, as the tutorial)."),
        click.option(
            "--method",
            type=click.Choice(["fast", "dense"]),
            default="fast",
            show_default=True,
            help="fast: blocked Cholesky (any size); dense: the tutorial's n x n formulation (small data only).",
        ),
    ]
    for o in reversed(opts):
        f = o(f)
    return speed_options(f)


def _model(formula: str | None, **kw: Any) -> Any:
    """The model options as the library takes them (repeatable options may hold comma-separated lists)."""
    from mmcli.commands import ModelOptions

    lists = {k: tuple(split_list(v)) for k, v in kw.items() if isinstance(v, tuple) and k != "na"}  # tokens as given
    return ModelOptions(formula=formula, **{**kw, **lists})


class _PipeClosedError(Exception):
    """Standard output's reader went away. Raised in place of BrokenPipeError, which click turns into exit 1."""


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            raise _PipeClosedError() from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="mmcli")
def cli() -> None:
    """Linear mixed models, penalized splines and additive mixed models from CSV files, with lme4's numbers.

    \b
    Examples:
      mmcli fit sleepstudy.csv --y Reaction --fixed Days --group Subject
      mmcli fit sleepstudy.csv "Reaction ~ Days + (Days | Subject)" --reml --json
      mmcli ranef penicillin.csv "diameter ~ 1 + (1|plate) + (1|sample)" --format csv
      mmcli spline engine.csv --lambda 1e-4 --knots 7
      mmcli gamm sleepstudy.csv "Reaction ~ s(Days, bs='cs') + (1|Subject)"
    """


# --------------------------------------------------------------------------------------------------
# the commands: parse, call one library function, render
# --------------------------------------------------------------------------------------------------


DDF_OPTION = click.option(
    "--ddf",
    type=click.Choice(["satterthwaite", "kenward-roger", "none"]),
    default="satterthwaite",
    show_default=True,
    help="Denominator df of the fixed-effect tests: Satterthwaite's or Kenward-Roger's (REML), as lmerTest.",
)


@cli.command()
@model_options
@DDF_OPTION
@output_options
@dask_option
@family_options("fit")
def fit(fmt: str, data: str, formula: str | None, reml: bool, method: str, ddf: str, **kw: Any) -> None:
    """Fit a linear mixed model by ML (default) or REML.

    \b
    DATA is a CSV file, or - for standard input. FORMULA is lme4 syntax; or build it with the options.
    Examples:
      mmcli fit sleepstudy.csv --y Reaction --fixed Days --group Subject
      mmcli fit sleepstudy.csv "Reaction ~ Days + (Days || Subject)" --reml
      mmcli fit pastes.csv "strength ~ 1 + (1 | batch/cask)" --json
      mmcli fit cake.csv "angle ~ recipe * temperature + (1 | recipe:replicate)" --factor temperature
      mmcli fit trials.csv "y ~ dose + offset(log(exposure)) + (1 | centre)" --weights n
    """
    from mmcli.commands import run_fit

    with emit.progress() as cb:
        out = run_fit(data, _model(formula, **kw), reml=reml, method=method, progress=cb, ddf=ddf)
    _emit(out, fmt, emit.table("print_fit"))


@cli.command()
@ranef_reml_option
@model_options
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Write a caterpillar plot (.png/.svg/.pdf).")
@output_options
@family_options("ranef")
def ranef(fmt: str, data: str, formula: str | None, reml: bool, method: str, plot_path: str | None, **kw: Any) -> None:
    """Conditional modes (BLUPs) of the random effects, with conditional standard deviations. A formula with
    smooths is fitted as gamm fits it; its grouping factors' effects are listed.

    \b
    Examples:
      mmcli ranef sleepstudy.csv --y Reaction --fixed Days --group Subject
      mmcli ranef sleepstudy.csv "Reaction ~ Days + (Days | Subject)" --format csv | head
      mmcli ranef penicillin.csv "diameter ~ 1 + (1|plate) + (1|sample)" --plot ranef.png
      mmcli ranef sleepstudy.csv "Reaction ~ s(Days, bs='cr') + (Days|Subject)"
    """
    from mmcli import render
    from mmcli.commands import run_ranef

    _check_plot_path(plot_path)
    with emit.progress() as cb:
        out = run_ranef(data, _model(formula, **kw), reml=reml, method=method, progress=cb)
    _plot(plot_path, "plot_caterpillar", out.data["ranef"])
    _emit(out, fmt, lambda d: render.print_ranef(d["ranef"]))


@cli.command()
@click.argument("data", type=str)
@click.option("--x", "x_col", metavar="COL", help="Predictor column (default: the first of two numeric columns).")
@click.option("--y", "y_col", metavar="COL", help="Response column (default: the second of two numeric columns).")
@click.option("--knots", type=int, metavar="K", help="Number of interior knots, at j/(K+1) on x scaled to [0,1].")
@click.option("--knot-values", metavar="X1,X2,...", help="Interior knots on the original x scale, instead of --knots.")
@click.option(
    "--lambda",
    "lam",
    default="gcv",
    show_default=True,
    metavar="NUMBER|gcv|reml",
    help="Smoothing parameter, or how to choose it.",
)
@click.option("--as-mixed", is_flag=True, help="Also show the fit as a mixed model (fixed null space, random rest).")
@click.option("--predict", "predict_path", metavar="FILE.csv", help="Predict at the x values of this CSV, with se.")
@NA_OPTION
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Draw data, curve and a 2 se band.")
@output_options
def spline(fmt: str, data: str, knot_values: str | None, plot_path: str | None, **kw: Any) -> None:
    """Fit Wood's penalized regression spline (rk basis), lambda given or chosen by GCV or REML.

    \b
    Examples:
      mmcli spline engine.csv --lambda 1e-4 --knots 7
      mmcli spline engine.csv --x size --y wear --lambda reml --as-mixed
      mmcli spline engine.csv --knots 7 --predict grid.csv --plot engine.png --json
    """
    from mmcli import render
    from mmcli.commands import SplineOptions, run_spline

    kv = _parse_numbers(knot_values, "--knot-values") if knot_values is not None else None
    _check_plot_path(plot_path)
    out = run_spline(
        data, SplineOptions(x=kw.pop("x_col"), y=kw.pop("y_col"), knot_values=kv, predict=kw.pop("predict_path"), **kw)
    )
    _plot(plot_path, "plot_spline", out.result)
    _emit(out, fmt, render.print_spline)


@cli.command()
@click.argument("data", type=str)
@click.argument("formula", required=False)
@click.option("--y", "y", metavar="COL", help="Response column.")
@click.option("--smooth", multiple=True, metavar="COL", help="Smooth of COL: s(COL, bs=--bs, k=--k) (repeatable).")
@click.option(
    "--bs",
    type=click.Choice(["tp", "ts", "cr", "cs", "ps", "rk"]),
    default="tp",
    show_default=True,
    help="Basis of the --smooth terms.",
)
@click.option("--k", "k", type=int, default=10, show_default=True, help="Basis dimension of the --smooth terms.")
@click.option("--fixed", multiple=True, metavar="COL", help="Parametric (fixed-effect) column.")
@click.option("--group", multiple=True, metavar="COL", help="Grouping column: a random intercept per level.")
@click.option("--factor", multiple=True, metavar="COL", help="Treat a numeric-looking column as categorical.")
@click.option("--weights", metavar="COL", help="Prior weights (positive): residual variance sigma^2 / w.")
@NA_OPTION
@click.option("--reml/--ml", default=True, help="REML (default, as gamm4) or maximum likelihood.")
@speed_options
@click.option("--predict", "predict_path", metavar="FILE.csv", help="Predictions for its rows (see --re-form).")
@gamm_predict_options
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Each smooth with its 2 se band.")
@output_options
@family_options("gamm")
def gamm(
    fmt: str, data: str, formula: str | None, reml: bool, predict_path: str | None, plot_path: str | None, **kw: Any
) -> None:
    """Fit smooths and random effects as one mixed model by REML (as gamm4); te() as mgcv's gam.

    \b
    Examples:
      mmcli gamm sleepstudy.csv "Reaction ~ s(Days, bs='cs') + (1|Subject)"
      mmcli gamm sleepstudy.csv --y Reaction --smooth Days --bs cr --k 5 --group Subject
      mmcli gamm sleepstudy.csv "Reaction ~ s(Days, bs='cs') + (1|Subject)" --predict grid.csv --plot days.png
      mmcli gamm sleepstudy.csv "Reaction ~ s(Days, bs='cr') + (Days|Subject)" --predict new.csv --re-form conditional
      mmcli gamm surface.csv "y ~ t2(x, z, k = c(5, 6)) + (1|g)"
    """
    from mmcli import render
    from mmcli.commands import run_gamm

    _check_plot_path(plot_path)
    re_form = kw.pop("re_form")
    out = run_gamm(data, _model(formula, **kw), reml=reml, predict=predict_path, re_form=re_form)
    _plot(plot_path, "plot_gamm", out.result)
    _emit(out, fmt, lambda d: render.print_gamm(d, predictions=predict_path is not None))


def _emit(out: Any, fmt: str, table: Callable[[dict[str, Any]], None]) -> None:
    """Notes to standard error, the result in the chosen format, and exit 3 when the optimizer did not
    converge (the result is still printed). A number that is not finite is written as null or NA, with a note."""
    from mmcli.report import non_finite_note

    if fmt == "csv":
        rows, where = emit.without_non_finite([{c: r.get(c) for c in out.csv_columns} for r in out.csv_rows])
    else:
        data, where = emit.without_non_finite(out.data)
    for msg in [*out.notes, non_finite_note(where, "null" if fmt == "json" else "NA")]:
        if msg:
            emit.note(msg)
    if fmt == "json":
        emit.write_json(data)
    elif fmt == "csv":
        emit.write_csv(rows, out.csv_columns)
    else:
        table(data)
    if not out.converged:
        fit = out.data.get("fit", out.data)
        output.say(f"Warning: the optimizer did not converge ({fit['optimizer']['message']}).")
        raise SystemExit(EXIT_NOT_CONVERGED)


def _check_plot_path(path: str | None) -> None:
    if path:
        from mmcli.plot import check_target  # numpy only: matplotlib is imported when a figure is drawn

        check_target(path)


def _plot(path: str | None, name: str, what: Any) -> None:
    """Draw a figure; an output file that cannot be written is a usage error like a missing directory (the
    plot module writes a temporary file and renames it, so nothing half-written is left)."""
    if not path:
        return
    from mmcli import plot

    try:
        getattr(plot, name)(what, path)
    except OSError as e:
        raise UsageError(f"Cannot write '{path}': {e.strerror or e}. Choose another file name or directory.") from None
    emit.note(f"plot written to {path}")


def _parse_numbers(value: str, option: str) -> list[float]:
    try:
        return [float(s) for s in value.split(",") if s.strip()]
    except ValueError:
        raise UsageError(f"{option} takes comma-separated numbers, such as 1.5,2.5,3.5; not '{value}'.") from None


# --------------------------------------------------------------------------------------------------
# error handling, in one place
# --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    """Entry point: turns the project's exceptions into one `Error:` line and the exit codes of docs/cli.md.

    Ctrl-C ends with 130 and SIGTERM with 143 wherever they come: the exception unwinds first (a figure being
    written is removed), and what is still buffered for standard output is dropped."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        with unwinding():
            closed = output.prepare_streams()
            if closed:
                output.say(f"Error: {closed}")
                sys.exit(1)
            with warnings.catch_warnings():
                if not debug:  # numpy's and pandas' RuntimeWarnings would break the one-line error
                    warnings.simplefilter("ignore")
                _main(args, debug)
    except click.exceptions.Abort:  # click's form of KeyboardInterrupt; it has already ended the ^C line
        message, code = "Interrupted.", EXIT_INTERRUPTED
    except KeyboardInterrupt:
        message, code = "\nInterrupted.", EXIT_INTERRUPTED
    except Terminated as ended:
        message, code = ended.message, ended.exit_code
    else:  # not reached: _main ends with sys.exit
        return
    # out of the except clause, so that the interrupted frames, and the objects they hold, are gone first
    output.drop_pending_output()
    output.say(message)
    sys.exit(code)


def _main(args: list[str], debug: bool) -> None:
    try:
        code = cli.main(args=args, prog_name="mmcli", standalone_mode=False)
        output.flush_stdout()
        sys.exit(code if isinstance(code, int) else 0)
    except click.exceptions.Exit as e:
        output.flush_stdout()
        sys.exit(e.exit_code)
    except click.exceptions.Abort:  # an interrupt: main reports it
        raise
    except _NO_ARGS as e:  # `mmcli` alone: the help text
        e.show()
        sys.exit(e.exit_code)
    except click.ClickException as e:
        hint = ""
        if isinstance(e, click.UsageError) and e.ctx is not None:
            hint = f" See '{e.ctx.command_path} --help'."
        output.say(f"Error: {_one_line(e.format_message())}{hint}")
        sys.exit(e.exit_code)
    except MmcliError as e:
        if debug:
            raise
        flag = f" (option {_OPTION_OF[e.param]})" if e.param in _OPTION_OF else ""
        output.say(f"Error: {_one_line(str(e))}{flag}")
        sys.exit(e.exit_code)
    except (BrokenPipeError, _PipeClosedError):
        output.end_quietly()
    except SystemExit:
        output.flush_stdout()
        raise
    except MemoryError:
        output.say("Error: out of memory: the model is too large for this machine.")
        sys.exit(1)
    except OSError as e:
        if debug:
            raise
        where = f" ({e.filename})" if e.filename else ""
        output.say(f"Error: input or output failed{where}: {e.strerror or _one_line(str(e))}.")
        output.end_quietly(1)  # standard output may be what failed: drop what is still buffered
    except Exception as e:  # an unforeseen failure: still one line, the traceback behind --debug
        raise_pending()  # unless a signal's exception came back as another error
        if debug:
            raise
        if type(e).__name__ == "LinAlgError":  # numpy's or scipy's: a factorization broke down
            output.say(
                f"Error: the fit broke down numerically ({_one_line(str(e))}): the model may be too rich for these "
                "data, or its predictors on very different scales. Simplify the random effects or rescale the "
                "predictors (--debug shows where)."
            )
            sys.exit(1)
        msg = _one_line(f"{type(e).__name__}: {e}")
        output.say(f"Error: internal error ({msg}). Run again with --debug for details.")
        sys.exit(1)


_OPTION_OF = {
    "lambda": "--lambda",
    "knots": "--knots",
    "knot_values": "--knot-values",
    "k": "--k",
    "method": "--method",
}
"""The option that gives each argument a library error can be about."""

_NO_ARGS: Any = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click >= 8.2


def _one_line(msg: str) -> str:
    return " ".join(line.strip() for line in msg.strip().splitlines() if line.strip())


from mmcli import cli_inference as _cli_inference  # noqa: E402,F401  (registers anova, confint, predict, compare)
