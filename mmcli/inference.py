"""Tests of the fixed effects with denominator degrees of freedom: each coefficient's t test and the type III
F test of each fixed term, by Satterthwaite's method (as lmerTest) or Kenward & Roger's (as pbkrtest through
lmerTest). The numerics are in :mod:`mmcli.lmm.satterthwaite`, :mod:`mmcli.lmm.kenward_roger` and
:mod:`mmcli.type3`; this module puts them together for a fitted model and computes the p-values."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mmcli.errors import UsageError

if TYPE_CHECKING:
    from mmcli.lmm import LmmFit, LmmModel
    from mmcli.type3 import FixedTerm

DDF_CHOICES = ("satterthwaite", "kenward-roger", "none")
METHOD_NAMES = {"satterthwaite": "Satterthwaite", "kenward-roger": "Kenward-Roger"}


@dataclass(frozen=True)
class TTest:
    term: str
    estimate: float
    std_error: float
    df: float
    t_value: float
    p_value: float


@dataclass(frozen=True)
class FTest:
    term: str
    sum_sq: float
    mean_sq: float
    num_df: int
    den_df: float
    f_value: float
    p_value: float


@dataclass(frozen=True, eq=False)
class Inference:
    """The method, each coefficient's t test, the F tests of the terms (when asked for), and Kenward-Roger's
    adjusted covariance of the fixed effects (that method only)."""

    method: str
    coefficients: list[TTest]
    anova: list[FTest] | None
    vcov_adjusted: np.ndarray | None = None


def check_ddf(ddf: str, reml: bool) -> None:
    """Kenward-Roger's method is for REML fits (lmerTest refuses it for ML fits too)."""
    if ddf not in DDF_CHOICES:
        raise UsageError(f"Unknown --ddf '{ddf}': use {', '.join(DDF_CHOICES)}.")
    if ddf == "kenward-roger" and not reml:
        raise UsageError(
            "Kenward-Roger's method is defined for REML fits (as in lmerTest and pbkrtest): add --reml, or use "
            "--ddf satterthwaite."
        )


def t_p_value(t: float, df: float) -> float:
    """Pr(>|t|) on df degrees of freedom (two-sided)."""
    from scipy.special import stdtr

    if not (math.isfinite(t) and df > 0) or math.isnan(df):
        return math.nan
    return float(2.0 * stdtr(df, -abs(t)))


def f_p_value(F: float, q: int, df: float) -> float:
    """Pr(>F) on (q, df) degrees of freedom."""
    from scipy.special import fdtrc

    if not (math.isfinite(F) and df > 0) or math.isnan(df):
        return math.nan
    return float(fdtrc(q, df, F))


def infer(
    model: LmmModel,
    fit: LmmFit,
    X: np.ndarray,
    xnames: list[str],
    ddf: str,
    *,
    weights: np.ndarray | None = None,
    terms: list[FixedTerm] | None = None,
    intercept: bool = True,
) -> Inference:
    """The t tests of the fixed effects, and with ``terms`` the type III F tests of the fixed terms.
    X holds the columns ``xnames`` (before aliased ones were dropped); those of the fit are used."""
    from mmcli.lmm import kenward_roger, satterthwaite

    check_ddf(ddf, fit.reml)
    Xk = X[:, [xnames.index(nm) for nm in fit.xnames]]
    p = len(fit.beta)
    sigma2 = fit.sigma**2
    kr = sat = None
    if ddf == "kenward-roger":
        kr = kenward_roger(Xk, fit.terms, fit.theta, fit.sigma, fit.beta, weights)
    else:
        sat = satterthwaite(model, fit)
    coefs = []
    for i, name in enumerate(fit.xnames):
        e = np.eye(p)[i]
        est, se, df, t = kr.t_test(e) if kr is not None else sat.t_test(e)  # type: ignore[union-attr]
        coefs.append(TTest(name, est, se, df, t, t_p_value(t, df)))
    anova = None
    if terms is not None:
        from mmcli.type3 import contrasts

        anova = []
        for label, L in contrasts(Xk, list(fit.xnames), terms, intercept):
            if L.shape[0] == 0:
                anova.append(FTest(label, math.nan, math.nan, 0, math.nan, math.nan, math.nan))
                continue
            if kr is not None:
                F, Fu, q, df = kr.f_test(L)
                ms = Fu * sigma2
            else:
                F, q, df = sat.f_test(L)  # type: ignore[union-attr]
                ms = F * sigma2
            anova.append(FTest(label, ms * q, ms, q, df, F, f_p_value(F, q, df)))
    return Inference(METHOD_NAMES[ddf], coefs, anova, kr.phi_adjusted if kr is not None else None)
