"""The command line: parse options -> load -> compute -> render. The only module that imports click.

Numeric modules are imported inside the commands, so that `mmcli --help` starts fast.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import click

from mmcli.errors import EXIT_INTERRUPTED, EXIT_NOT_CONVERGED, MmcliError, UsageError


def _split(values: tuple[str, ...]) -> list[str]:
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
    @functools.wraps(f)
    def wrapper(*args: Any, fmt: str, as_json: bool, debug: bool, **kw: Any) -> Any:
        return f(*args, fmt="json" if as_json else fmt, **kw)

    return wrapper


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
        click.option("--reml/--ml", default=False, help="REML or maximum likelihood (default: ML, as the seed)."),
        click.option(
            "--method",
            type=click.Choice(["fast", "dense"]),
            default="fast",
            show_default=True,
            help="fast: blocked Cholesky (any size); dense: the seed's n x n formulation (small data only).",
        ),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


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
# fit / ranef
# --------------------------------------------------------------------------------------------------


def _fit_model(
    data: str,
    formula: str | None,
    y: str | None,
    fixed: tuple[str, ...],
    group: tuple[str, ...],
    slope: tuple[str, ...],
    factor: tuple[str, ...],
    reml: bool,
    method: str,
) -> tuple[Any, dict[str, Any]]:
    from mmcli import data as dataio
    from mmcli import render
    from mmcli.design import build_design
    from mmcli.formula import build_formula, parse_formula
    from mmcli.lmm import fit_lmm
    from mmcli.report import fit_dict

    if formula and (y or fixed or group or slope):
        raise UsageError("Give either a formula or the column options (--y, --fixed, --group, --slope), not both.")
    text = formula or build_formula(y, _split(fixed), _split(group), _split(slope))
    spec = parse_formula(text)
    if not spec.random:
        raise UsageError(
            f"The model '{text}' has no random-effects term: add one, e.g. '+ (1 | group)', or use --group COL."
        )
    factors = _split(factor)
    groups = [f for t in spec.random for f in t.factors]
    used = spec.variables()
    table = dataio.load(
        data,
        numeric=[spec.response],
        categorical=list(dict.fromkeys(groups + [f for f in factors if f in used])),
        other=[c for c in used if c != spec.response and c not in groups and c not in factors],
    )
    for f in factors:
        if f not in used:
            dataio.resolve(f, list(table.columns))
    for msg in table.notes:
        render.note(msg)
    design = build_design(spec, table.frame, set(factors))
    source, dropped_rows = table.source, table.dropped_rows
    del table  # the columns now live in the design; free the frame before the fit
    import gc

    gc.collect()  # pandas objects hold reference cycles: without this the frame outlives the fit
    cb, close = render.progress_callback()
    try:
        fit = fit_lmm(
            design.X,
            design.y,
            design.terms,
            reml=reml,
            xnames=design.xnames,
            method=method,
            progress=cb,
            XY=design.XY,
            overwrite_y=True,  # the design is not used again: y's memory holds the centred response
        )
    finally:
        close()
    _note_dropped(fit.dropped_columns)
    d = fit_dict(fit, formula=spec.text, ngroups=design.ngroups, dropped_rows=dropped_rows, data=source)
    return fit, d


def _note_dropped(columns: tuple[str, ...]) -> None:
    from mmcli import render

    if columns:
        render.note(
            f"fixed-effect model matrix is rank deficient so dropping {len(columns)} column(s): {', '.join(columns)}"
        )


def _finish(d: dict[str, Any]) -> None:
    if not d.get("converged", True):
        sys.stderr.write(f"Warning: the optimizer did not converge ({d['optimizer']['message']}).\n")
        raise SystemExit(EXIT_NOT_CONVERGED)


@cli.command()
@model_options
@output_options
def fit(fmt: str, **kw: Any) -> None:
    """Fit a linear mixed model by ML (default) or REML.

    \b
    DATA is a CSV file, or - for standard input. FORMULA is lme4 syntax; or build it with the options.
    Examples:
      mmcli fit sleepstudy.csv --y Reaction --fixed Days --group Subject
      mmcli fit sleepstudy.csv "Reaction ~ Days + (Days || Subject)" --reml
      mmcli fit pastes.csv "strength ~ 1 + (1 | batch/cask)" --json
      mmcli fit cake.csv "angle ~ recipe * temperature + (1 | recipe:replicate)" --factor temperature
    """
    from mmcli import render

    _, d = _fit_model(**kw)
    if fmt == "json":
        render.write_json(d)
    elif fmt == "csv":
        render.write_csv(d["fixed_effects"], ["term", "estimate", "std_error", "t_value"])
    else:
        render.print_fit(d)
    _finish(d)


@cli.command()
@model_options
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Write a caterpillar plot (.png/.svg/.pdf).")
@output_options
def ranef(fmt: str, plot_path: str | None, **kw: Any) -> None:
    """Conditional modes (BLUPs) of the random effects, with conditional standard deviations.

    \b
    Examples:
      mmcli ranef sleepstudy.csv --y Reaction --fixed Days --group Subject
      mmcli ranef sleepstudy.csv "Reaction ~ Days + (Days | Subject)" --format csv | head
      mmcli ranef penicillin.csv "diameter ~ 1 + (1|plate) + (1|sample)" --plot ranef.png
    """
    from mmcli import render
    from mmcli.report import ranef_rows

    if plot_path:
        _check_plot_path(plot_path)
    fit_, d = _fit_model(**kw)
    rows = ranef_rows(fit_)
    if plot_path:
        from mmcli.plot import plot_caterpillar

        with _writing(plot_path):
            plot_caterpillar(rows, plot_path)
    if fmt == "json":
        render.write_json({"ranef": rows, "fit": d})
    elif fmt == "csv":
        render.write_csv(rows, ["group", "level", "term", "mode", "cond_sd"])
    else:
        render.print_ranef(rows)
    _finish(d)


@contextlib.contextmanager
def _writing(path: str) -> Iterator[None]:
    """An output file that cannot be written is a usage error like a missing directory (the plot module writes
    a temporary file and renames it, so nothing half-written is left)."""
    try:
        yield
    except OSError as e:
        raise UsageError(f"Cannot write '{path}': {e.strerror or e}. Choose another file name or directory.") from None


def _load_predict(path: str, **columns: Any) -> Any:
    """The --predict file, with errors that say which file they are about."""
    from mmcli import data as dataio
    from mmcli.errors import DataError

    try:
        return dataio.load(path, **columns)
    except DataError as e:
        raise DataError(f"In the --predict file: {e}") from None


def _check_plot_path(path: str) -> None:
    from mmcli.plot import check_target  # numpy only: matplotlib is imported when a figure is drawn

    check_target(path)


# --------------------------------------------------------------------------------------------------
# spline
# --------------------------------------------------------------------------------------------------


def _parse_numbers(value: str, option: str) -> list[float]:
    try:
        return [float(s) for s in value.split(",") if s.strip()]
    except ValueError:
        raise UsageError(f"{option} takes comma-separated numbers, such as 1.5,2.5,3.5; not '{value}'.") from None


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
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Draw data, curve and a 2 se band.")
@output_options
def spline(
    fmt: str,
    data: str,
    x_col: str | None,
    y_col: str | None,
    knots: int | None,
    knot_values: str | None,
    lam: str,
    as_mixed: bool,
    predict_path: str | None,
    plot_path: str | None,
) -> None:
    """Fit Wood's penalized regression spline (rk basis), lambda given or chosen by GCV or REML.

    \b
    Examples:
      mmcli spline engine.csv --lambda 1e-4 --knots 7
      mmcli spline engine.csv --x size --y wear --lambda reml --as-mixed
      mmcli spline engine.csv --knots 7 --predict grid.csv --plot engine.png --json
    """
    from mmcli import data as dataio
    from mmcli import render
    from mmcli.spline import check_lambda, fit_spline, mixed_form

    lam_value = check_lambda(lam)  # before reading the data: a bad option is a usage error (exit 2)
    if knots is not None and knot_values is not None:
        raise UsageError("Give --knots or --knot-values, not both.")
    kv = _parse_numbers(knot_values, "--knot-values") if knot_values is not None else None
    if plot_path:
        _check_plot_path(plot_path)
    if (x_col is None) != (y_col is None):
        raise UsageError("Give both --x and --y, or neither (for a file with exactly two numeric columns).")
    if x_col is None or y_col is None:
        table = dataio.load_all(data)
        nums = [c for c in table.frame.columns if table.frame[c].dtype.kind in "fiu"]
        if len(table.columns) != 2 and len(nums) != 2:
            raise UsageError(
                f"'{table.source}' has {len(nums)} numeric columns ({', '.join(nums) or 'none'}): "
                "say which to use with --x COL --y COL."
            )
        x_col, y_col = nums if len(nums) == 2 else (table.columns[0], table.columns[1])
        table = dataio.subset(table, [x_col, y_col], numeric=[x_col, y_col])
    else:
        table = dataio.load(data, numeric=[x_col, y_col], categorical=[])
    for msg in table.notes:
        render.note(msg)
    f = table.frame
    result = fit_spline(
        f[x_col].to_numpy(), f[y_col].to_numpy(), knots=knots, knot_values=kv, lam=lam_value, x_name=x_col, y_name=y_col
    )
    d = result.to_dict()
    d["dropped_rows"] = table.dropped_rows
    if as_mixed:
        d["mixed_form"] = mixed_form(result).to_dict()
    if predict_path:
        pt = _load_predict(predict_path, numeric=[x_col], categorical=[])
        xs = pt.frame[x_col].to_numpy(dtype=float)
        fit_, se = result.predict(xs)
        d["predictions"] = [{"x": float(a), "fit": float(b), "se": float(c)} for a, b, c in zip(xs, fit_, se)]
    if plot_path:
        from mmcli.plot import plot_spline

        with _writing(plot_path):
            plot_spline(result, plot_path)
    if fmt == "json":
        render.write_json(d)
    elif fmt == "csv":
        if predict_path:
            render.write_csv(d["predictions"], ["x", "fit", "se"])
        else:
            rows = [{x_col: a, y_col: b, "fitted": c} for a, b, c in zip(f[x_col], f[y_col], d["fitted"])]
            render.write_csv(rows, [x_col, y_col, "fitted"])
    else:
        render.print_spline(d)
    if plot_path:
        render.note(f"plot written to {plot_path}")


# --------------------------------------------------------------------------------------------------
# gamm
# --------------------------------------------------------------------------------------------------


@cli.command()
@click.argument("data", type=str)
@click.argument("formula", required=False)
@click.option("--y", "y", metavar="COL", help="Response column.")
@click.option("--smooth", multiple=True, metavar="COL", help="Smooth of COL: s(COL, bs=--bs, k=--k) (repeatable).")
@click.option(
    "--bs", type=click.Choice(["cr", "cs", "rk"]), default="cr", show_default=True, help="Basis of the --smooth terms."
)
@click.option("--k", "k", type=int, default=10, show_default=True, help="Basis dimension of the --smooth terms.")
@click.option("--fixed", multiple=True, metavar="COL", help="Parametric (fixed-effect) column.")
@click.option("--group", multiple=True, metavar="COL", help="Grouping column: a random intercept per level.")
@click.option("--factor", multiple=True, metavar="COL", help="Treat a numeric-looking column as categorical.")
@click.option("--reml/--ml", default=True, help="REML (default, as gamm4) or maximum likelihood.")
@click.option("--predict", "predict_path", metavar="FILE.csv", help="Population-level predictions with se.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Each smooth with its 2 se band.")
@output_options
def gamm(
    fmt: str,
    data: str,
    formula: str | None,
    y: str | None,
    smooth: tuple[str, ...],
    bs: str,
    k: int,
    fixed: tuple[str, ...],
    group: tuple[str, ...],
    factor: tuple[str, ...],
    reml: bool,
    predict_path: str | None,
    plot_path: str | None,
) -> None:
    """Fit smooths and random effects as one mixed model by REML (as gamm4).

    \b
    Examples:
      mmcli gamm sleepstudy.csv "Reaction ~ s(Days, bs='cs') + (1|Subject)"
      mmcli gamm sleepstudy.csv --y Reaction --smooth Days --bs cr --k 5 --group Subject
      mmcli gamm sleepstudy.csv "Reaction ~ s(Days, bs='cs') + (1|Subject)" --predict grid.csv --plot days.png
    """
    from mmcli import data as dataio
    from mmcli import render
    from mmcli.formula import build_formula, parse_formula
    from mmcli.gamm import fit_gamm, gamm_dict
    from mmcli.report import fit_dict

    if formula and (y or fixed or group or smooth):
        raise UsageError("Give either a formula or the column options (--y, --smooth, --fixed, --group), not both.")
    if plot_path:
        _check_plot_path(plot_path)
    text = formula or build_formula(y, _split(fixed), _split(group), [], _split(smooth), bs, k)
    spec = parse_formula(text, allow_smooths=True)
    factors = _split(factor)
    used = spec.variables()
    groups = [f for t in spec.random for f in t.factors]
    svars = [s.var for s in spec.smooths]
    table = dataio.load(
        data,
        numeric=list(dict.fromkeys([spec.response] + svars)),
        categorical=list(dict.fromkeys(groups + [f for f in factors if f in used])),
        other=[c for c in used if c != spec.response and c not in groups and c not in factors and c not in svars],
    )
    for msg in table.notes:
        render.note(msg)
    g = fit_gamm(spec, table.frame, set(factors), reml=reml)
    for s in spec.smooths:  # after the fit, so that an error stays the only line on standard error
        if not s.bs_given:
            render.note(
                f"{s.label} has no bs: mmcli uses bs='cr'. mgcv's default is 'tp', which mmcli does not implement, "
                "so write bs='cr' in R to compare like with like."
            )
    _note_dropped(g.lmm.dropped_columns)
    ngroups = {t.group: t.nlevels for t in g.lmm.terms if t.indicator}
    base = fit_dict(g.lmm, formula=spec.text, ngroups=ngroups, dropped_rows=table.dropped_rows, data=table.source)
    d = gamm_dict(g, base)
    if predict_path:
        need = [c for c in used if c != spec.response and c not in groups]
        pt = _load_predict(
            predict_path,
            numeric=[c for c in need if c in svars],
            categorical=[c for c in need if c in factors],
            other=[c for c in need if c not in svars and c not in factors],
        )
        fit_, se = g.predict(pt.frame)
        d["predictions"] = [
            {**{c: _plain(pt.frame[c].iloc[i]) for c in need}, "fit": float(fit_[i]), "se": float(se[i])}
            for i in range(len(pt.frame))
        ]
    if plot_path:
        from mmcli.plot import plot_gamm

        with _writing(plot_path):
            plot_gamm(g, plot_path)
    if fmt == "json":
        render.write_json(d)
    elif fmt == "csv":
        if predict_path:
            cols = list(d["predictions"][0].keys()) if d["predictions"] else ["fit", "se"]
            render.write_csv(d["predictions"], cols)
        else:
            render.write_csv(d["fixed_effects"], ["term", "estimate", "std_error", "t_value"])
    else:
        render.print_fit(d)
        if predict_path:
            render.print_predictions(d["predictions"], list(d["predictions"][0].keys()) if d["predictions"] else [])
    _finish(d)


def _plain(v: Any) -> Any:
    try:
        return v.item()
    except AttributeError:
        return v


# --------------------------------------------------------------------------------------------------
# error handling, in one place
# --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    """Entry point: turns the project's exceptions into one `Error:` line and the exit codes of CONTRACT.md."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    import signal

    with contextlib.suppress(ValueError):  # ValueError: not the main thread (embedded use)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # from here Ctrl-C unwinds (mmcli._entry)
    with warnings.catch_warnings():
        if not debug:  # numpy's and pandas' RuntimeWarnings would break the one-line error
            warnings.simplefilter("ignore")
        _main(args, debug)


def _main(args: list[str], debug: bool) -> None:
    try:
        code = cli.main(args=args, prog_name="mmcli", standalone_mode=False)
        _flush_stdout()
        sys.exit(code if isinstance(code, int) else 0)
    except click.exceptions.Exit as e:
        _flush_stdout()
        sys.exit(e.exit_code)
    except click.exceptions.Abort:  # click's form of KeyboardInterrupt; it has already ended the ^C line
        sys.stderr.write("Interrupted.\n")
        sys.exit(EXIT_INTERRUPTED)
    except _NO_ARGS as e:  # `mmcli` alone: the help text
        e.show()
        sys.exit(e.exit_code)
    except click.ClickException as e:
        hint = ""
        if isinstance(e, click.UsageError) and e.ctx is not None:
            hint = f" See '{e.ctx.command_path} --help'."
        sys.stderr.write(f"Error: {_one_line(e.format_message())}{hint}\n")
        sys.exit(e.exit_code)
    except MmcliError as e:
        if debug:
            raise
        sys.stderr.write(f"Error: {_one_line(str(e))}\n")
        sys.exit(e.exit_code)
    except (BrokenPipeError, _PipeClosedError):
        _quiet_pipe()
    except KeyboardInterrupt:
        sys.stderr.write("\nInterrupted.\n")
        sys.exit(EXIT_INTERRUPTED)
    except SystemExit:
        _flush_stdout()
        raise
    except MemoryError:
        sys.stderr.write("Error: out of memory: the model is too large for this machine.\n")
        sys.exit(1)
    except OSError as e:
        if debug:
            raise
        where = f" ({e.filename})" if e.filename else ""
        sys.stderr.write(f"Error: input or output failed{where}: {e.strerror or _one_line(str(e))}.\n")
        _quiet_pipe(1)  # standard output may be what failed: drop what is still buffered
    except Exception as e:  # an unforeseen failure: still one line, the traceback behind --debug
        if debug:
            raise
        if type(e).__name__ == "LinAlgError":  # numpy's or scipy's: a factorization broke down
            sys.stderr.write(
                f"Error: the fit broke down numerically ({_one_line(str(e))}): the model may be too rich for these "
                "data, or its predictors on very different scales. Simplify the random effects or rescale the "
                "predictors (--debug shows where).\n"
            )
            sys.exit(1)
        msg = _one_line(f"{type(e).__name__}: {e}")
        sys.stderr.write(f"Error: internal error ({msg}). Run again with --debug for details.\n")
        sys.exit(1)


_NO_ARGS: Any = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click >= 8.2


def _one_line(msg: str) -> str:
    return " ".join(line.strip() for line in msg.strip().splitlines() if line.strip())


def _flush_stdout() -> None:
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_pipe()
    except OSError as e:  # a full disk, say
        sys.stderr.write(f"Error: cannot write the output: {e.strerror or e}.\n")
        _quiet_pipe(1)


def _quiet_pipe(code: int = 0) -> None:
    """The reader went away (`| head`): end quietly, without Python's own complaint at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real file descriptor (a test's captured stdout)
        pass
    sys.exit(code)
