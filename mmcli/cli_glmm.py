"""The options of a generalized linear mixed model (--family, --link, --nagq, --fitted), for fit and ranef: one
decorator, which runs the GLMM when --family is given and leaves the command as it is otherwise."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from mmcli import emit
from mmcli.errors import UsageError


def family_options(command: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--family binomial|poisson and its companions on `fit`, `ranef` or `gamm`."""

    def deco(f: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(f)
        def wrapper(*args: Any, family: str | None, link: str | None, nagq: int, fitted: bool, **kw: Any) -> Any:
            if family is None:
                if link or nagq != 1 or fitted:
                    raise UsageError("--link, --nagq and --fitted belong to a generalized model: add --family.")
                return f(*args, **kw)
            if command == "gamm":
                from mmcli.cli_gamm_glmm import run_gamm_family

                return run_gamm_family(family, link, nagq, fitted, **kw)
            return _run_glmm(command, family, link, nagq, fitted, **kw)

        opts = [
            click.option(
                "--family",
                type=click.Choice(["binomial", "poisson"]),
                help="Fit a generalized linear mixed model (lme4's glmer): binomial (0/1, two levels, or "
                "cbind(successes, failures)) or poisson (counts).",
            ),
            click.option("--link", metavar="LINK", help="binomial: logit (default), probit, cloglog; poisson: log."),
            click.option(
                "--nagq",
                type=int,
                default=1,
                show_default=True,
                metavar="N",
                help="1: Laplace approximation; N > 1: adaptive Gauss-Hermite with N nodes (one scalar random effect).",
            ),
            click.option(
                "--fitted", is_flag=True, help="With --family, add fitted values (link and response scale) to the JSON."
            ),
        ]
        for o in reversed(opts):
            wrapper = o(wrapper)
        return wrapper

    return deco


def _run_glmm(command: str, family: str, link: str | None, nagq: int, fitted: bool, **kw: Any) -> None:
    from mmcli import render
    from mmcli.cli import _check_plot_path, _emit, _model, _plot
    from mmcli.commands_glmm import run_glmm
    from mmcli.render_glmm import print_glmm

    fmt, data, formula = kw.pop("fmt"), kw.pop("data"), kw.pop("formula")
    if kw.pop("reml"):
        raise UsageError("--reml does not apply to --family: glmer fits by maximum likelihood.")
    if kw.pop("method") != "fast":
        raise UsageError("--method dense does not apply to --family.")
    kw.pop("ddf", None)  # z tests, as glmer's summary
    plot_path = kw.pop("plot_path", None)
    _check_plot_path(plot_path)
    with emit.progress() as cb:
        out = run_glmm(
            data,
            _model(formula, **kw),
            family=family,
            link=link,
            nagq=nagq,
            fitted=fitted,
            ranef=command == "ranef",
            progress=cb,
        )
    if command == "ranef":
        _plot(plot_path, "plot_caterpillar", out.data["ranef"])
        _emit(out, fmt, lambda d: render.print_ranef(d["ranef"]))
    else:
        _emit(out, fmt, print_glmm)
