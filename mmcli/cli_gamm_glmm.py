"""`mmcli gamm --family`: the click side of an additive mixed model with a binomial or Poisson response (called
from the --family decorator of mmcli/cli_glmm.py)."""

from __future__ import annotations

from typing import Any

from mmcli import emit
from mmcli.errors import UsageError


def run_gamm_family(family: str, link: str | None, nagq: int, fitted: bool, **kw: Any) -> None:
    """Fit, render and emit; gamm4 with a family uses the Laplace approximation and maximum likelihood."""
    from mmcli.cli import _check_plot_path, _emit, _model, _plot
    from mmcli.commands_gamm_glmm import run_gamm_glmm
    from mmcli.render_gamm_glmm import print_gamm_glmm

    if nagq != 1:
        raise UsageError("--nagq applies to fit and ranef: gamm with --family uses the Laplace approximation (gamm4).")
    if fitted:
        raise UsageError("--fitted applies to fit: with gamm, ask for predictions with --predict FILE.csv.")
    fmt, data, formula = kw.pop("fmt"), kw.pop("data"), kw.pop("formula")
    kw.pop("reml")  # gamm's --reml default: a family is fitted by maximum likelihood (Laplace), as gamm4's glmer
    predict_path, plot_path, re_form = kw.pop("predict_path"), kw.pop("plot_path"), kw.pop("re_form")
    _check_plot_path(plot_path)
    with emit.progress() as cb:
        out = run_gamm_glmm(
            data, _model(formula, **kw), family=family, link=link, predict=predict_path, re_form=re_form, progress=cb
        )
    _plot(plot_path, "plot_gamm", out.result)
    _emit(out, fmt, lambda d: print_gamm_glmm(d, predictions=predict_path is not None))
