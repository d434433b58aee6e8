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
    num_df: int | float  # nan when the term has no estimable contrast (its columns were aliased)
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
    """Pr(>|t|) on df degrees of freedom (two-sided): I_x(df/2, 1/2) with x = df / (df + t^2)."""
    if not (math.isfinite(t) and df > 0) or math.isnan(df):
        return math.nan
    if math.isinf(df):
        return math.erfc(abs(t) / math.sqrt(2.0))
    r = t * t / df
    return beta_inc(df / 2.0, 0.5, 1.0 / (1.0 + r), r / (1.0 + r), -math.log1p(r))


def f_p_value(F: float, q: int, df: float) -> float:
    """Pr(>F) on (q, df) degrees of freedom: I_x(df/2, q/2) with x = df / (df + q F)."""
    if not (math.isfinite(F) and df > 0 and q > 0) or math.isnan(df):
        return math.nan
    if F <= 0:
        return 1.0
    r = q * F / df
    return beta_inc(df / 2.0, q / 2.0, 1.0 / (1.0 + r), r / (1.0 + r), -math.log1p(r))


def beta_inc(a: float, b: float, x: float, y: float, log_x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), y = 1 - x and log(x) given accurately, by its
    continued fraction (modified Lentz) on the side of x where it converges fast (Abramowitz & Stegun 26.5.8;
    Press et al., Numerical Recipes, 6.4). Here rather than scipy.special, whose import costs a third of a
    second of every run."""
    if x <= 0.0:
        return 0.0
    if y <= 0.0:
        return 1.0
    log_front = _lgamma_ratio(a, b) - math.lgamma(b) + a * log_x + b * math.log(y)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_cf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_cf(b, a, y) / b


def _lgamma_ratio(a: float, b: float) -> float:
    """log Gamma(a + b) - log Gamma(a), without the cancellation of two large lgamma values when a is large
    (Stirling's series of the difference)."""
    if a < 1e4:
        return math.lgamma(a + b) - math.lgamma(a)

    def corr(x: float) -> float:
        return 1.0 / (12.0 * x) - 1.0 / (360.0 * x**3) + 1.0 / (1260.0 * x**5)

    return (a - 0.5) * math.log1p(b / a) + b * math.log(a + b) - b + corr(a + b) - corr(a)


def _beta_cf(a: float, b: float, x: float) -> float:
    tiny, eps = 1e-300, 1e-16
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 100_000):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


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

        anova, untestable = [], []
        for label, L in contrasts(Xk, list(fit.xnames), terms, intercept):
            if L.shape[0] == 0:  # all its columns aliased: an NA row, after the others (as lmerTest)
                untestable.append(FTest(label, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan))
                continue
            if kr is not None:
                F, Fu, q, df = kr.f_test(L)
                ms = Fu * sigma2
            else:
                F, q, df = sat.f_test(L)  # type: ignore[union-attr]
                ms = F * sigma2
            anova.append(FTest(label, ms * q, ms, q, df, F, f_p_value(F, q, df)))
        anova += untestable
    return Inference(METHOD_NAMES[ddf], coefs, anova, kr.phi_adjusted if kr is not None else None)
