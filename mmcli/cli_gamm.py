"""Options of `gamm` and `ranef` for additive mixed models: the kind of --predict prediction, and ranef's
fitting method when its formula has smooths. Part of the click layer (applied in mmcli/cli.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click


def gamm_predict_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """gamm's --re-form: population-level predictions (default) or conditional on the rows' grouping levels."""
    return click.option(
        "--re-form",
        "re_form",
        type=click.Choice(["population", "conditional"]),
        default="population",
        show_default=True,
        help="With --predict: population (random effects at zero, with se; lme4's re.form = NA) or conditional "
        "(plus the random effects of each row's levels, 0 for a new level; re.form = NULL).",
    )(f)


def ranef_reml_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """ranef's --reml/--ml with no fixed default: ML for a linear mixed model, REML for a formula with smooths."""
    f.__click_params__ = [p for p in getattr(f, "__click_params__", []) if p.name != "reml"]  # type: ignore[attr-defined]
    return click.option(
        "--reml/--ml",
        default=None,
        help="REML or maximum likelihood (default: ML, as the tutorial; REML for a formula with s(), as gamm4).",
    )(f)
