"""The command line of `anova`, `confint`, `predict` and `compare`: parse options -> call one library function ->
render. Part of the click layer (with mmcli/cli.py, which registers these commands on its group)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from mmcli import emit
from mmcli.cli import DDF_OPTION, NA_OPTION, _emit, _model, cli, model_options, output_options, split_list
from mmcli.cli_speed import speed_options


@cli.command()
@model_options
@click.option("--newdata", "newdata", required=True, metavar="FILE.csv", help="The rows to predict for.")
@click.option(
    "--re-form",
    "re_form",
    type=click.Choice(["conditional", "population"]),
    default="conditional",
    show_default=True,
    help="conditional: with the random effects of the rows' levels (lme4's re.form = NULL); population: random "
    "effects at zero, with se (re.form = NA).",
)
@output_options
def predict(
    fmt: str, data: str, formula: str | None, reml: bool, method: str, newdata: str, re_form: str, **kw: Any
) -> None:
    """Fit a linear mixed model and predict for the rows of another CSV, as lme4's predict().

    \b
    A level of a grouping factor that the data do not have gets the population prediction for that term.
    Examples:
      mmcli predict sleepstudy.csv "Reaction ~ Days + (Days | Subject)" --reml --newdata new.csv
      mmcli predict sleepstudy.csv "Reaction ~ Days + (Days | Subject)" --newdata new.csv --re-form population
      mmcli predict pastes.csv "strength ~ 1 + (1 | batch/cask)" --newdata casks.csv --format csv
    """
    from mmcli import render_inference
    from mmcli.predict import run_predict

    with emit.progress() as cb:
        out = run_predict(
            data, _model(formula, **kw), newdata=newdata, re_form=re_form, reml=reml, method=method, progress=cb
        )
    _emit(out, fmt, render_inference.print_predict)


@cli.command()
@click.argument("data", type=str)
@click.argument("formulas", nargs=-1)
@click.option("--factor", multiple=True, metavar="COL", help="Treat a numeric-looking column as categorical.")
@click.option("--weights", metavar="COL", help="Prior weights (positive): residual variance sigma^2 / w.")
@NA_OPTION
@click.option("--reml/--ml", default=False, help="How the models are given; REML fits are refitted by ML, as lme4.")
@click.option("--method", type=click.Choice(["fast", "dense"]), default="fast", show_default=True, help="As for fit.")
@speed_options
@output_options
def compare(fmt: str, data: str, formulas: tuple[str, ...], reml: bool, method: str, **kw: Any) -> None:
    """Compare nested mixed models by likelihood-ratio tests, as lme4's anova(m1, m2, ...).

    \b
    Every model is fitted by maximum likelihood to the same rows; rows are sorted by number of parameters.
    Examples:
      mmcli compare sleepstudy.csv "Reaction ~ 1 + (1|Subject)" "Reaction ~ Days + (1|Subject)"
      mmcli compare sleepstudy.csv "Reaction ~ Days + (1|Subject)" "Reaction ~ Days + (Days|Subject)" --json
    """
    from mmcli import render_inference
    from mmcli.commands import ModelOptions
    from mmcli.compare import run_compare

    opts = ModelOptions(factor=tuple(split_list(kw["factor"])), weights=kw["weights"], na=kw["na"])
    out = run_compare(data, list(formulas), opts, reml=reml, method=method)
    _emit(out, fmt, render_inference.print_compare)


@cli.command()
@model_options
@DDF_OPTION
@output_options
def anova(fmt: str, data: str, formula: str | None, reml: bool, method: str, ddf: str, **kw: Any) -> None:
    """Type III F tests of the fixed terms, with Satterthwaite's or Kenward-Roger's df (lmerTest's anova).

    \b
    Examples:
      mmcli anova cake.csv "angle ~ recipe * temperature + (1 | recipe:replicate)" --factor temperature --reml
      mmcli anova oats.csv "yield ~ nitro * Variety + (1 | Block/Variety)" --reml --ddf kenward-roger --json
    """
    from mmcli import render_inference
    from mmcli.commands import run_anova

    with emit.progress() as cb:
        out = run_anova(data, _model(formula, **kw), reml=reml, method=method, ddf=ddf, progress=cb)
    _emit(out, fmt, render_inference.print_anova)


def _interval_method(f: Callable[..., Any]) -> Callable[..., Any]:
    """confint's --method names the interval's method, in place of the fit's --method fast|dense."""
    f.__click_params__ = [p for p in getattr(f, "__click_params__", []) if p.name != "method"]  # type: ignore[attr-defined]
    how = click.Choice(["profile", "wald", "boot"], case_sensitive=False)
    return click.option("--method", type=how, default="profile", show_default=True, help="As lme4's.")(f)


@cli.command()
@_interval_method
@model_options
@click.option("--level", type=float, default=0.95, show_default=True, help="Confidence level.")
@click.option("--nsim", type=int, default=500, show_default=True, help="Bootstrap simulations (--method boot).")
@click.option("--seed", type=int, help="Random seed of the bootstrap (reported, so a run can be repeated).")
@output_options
def confint(fmt: str, data: str, formula: str | None, reml: bool, method: str, **kw: Any) -> None:
    """Confidence intervals of the variance parameters and fixed effects, as lme4's confint().

    \b
    Examples:
      mmcli confint sleepstudy.csv "Reaction ~ Days + (Days | Subject)"
      mmcli confint dyestuff.csv "Yield ~ 1 + (1 | Batch)" --method wald --reml --level 0.9
      mmcli confint penicillin.csv "diameter ~ 1 + (1|plate) + (1|sample)" --method boot --nsim 1000 --seed 1
    """
    from mmcli import render_inference
    from mmcli.commands import run_confint

    ci = {k: kw.pop(k) for k in ("level", "nsim", "seed")}
    with (
        render_inference.counter("bootstrap refits", ci["nsim"]) if method.lower() == "boot" else emit.progress() as cb
    ):
        out = run_confint(data, _model(formula, **kw), method=method.lower(), reml=reml, progress=cb, **ci)
    _emit(out, fmt, render_inference.print_confint)


# --------------------------------------------------------------------------------------------------
# shared steps of the commands
# --------------------------------------------------------------------------------------------------
