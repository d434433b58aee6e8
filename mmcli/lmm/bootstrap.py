"""The parametric bootstrap, as lme4's ``bootMer`` behind ``confint(m, method = "boot")``.

Each replicate simulates y* = X beta + offset + sum_k Z_k b_k* + e* from the fitted model, with
b_k* = sigma T_k u (u ~ N(0, I) per level; T_k the term's template, so cov(b_k*) = sigma^2 T_k T_k') and
e* ~ N(0, sigma^2 / w), refits it by the same criterion, and keeps lme4's parameters (standard deviations and
correlations, sigma, the fixed effects). The intervals are the percentile intervals of boot's ``boot.ci(type =
"perc")``: order statistics (R + 1) alpha, interpolated on the normal quantile scale between neighbours
(boot's ``norm.inter``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from mmcli.errors import MmcliError
from mmcli.lmm.model import LmmModel
from mmcli.lmm.profile import sdcor
from mmcli.lmm.results import LmmFit
from mmcli.lmm.terms import ReTerm, templates


def simulate(
    fit: LmmFit, X: np.ndarray, terms: Sequence[ReTerm], rng: np.random.Generator, offset: np.ndarray | None
) -> np.ndarray:
    """One response simulated from the fitted model (X holds the fit's kept columns)."""
    y = X @ fit.beta + (0.0 if offset is None else offset)
    for t, T in zip(terms, templates(terms, fit.theta)):
        b = fit.sigma * (rng.standard_normal((t.nlevels, t.p)) @ T.T)
        y = y + t.zmat() @ b.ravel()
    e = rng.standard_normal(fit.n) * fit.sigma
    return y + (e if fit.weights is None else e / np.sqrt(fit.weights))


def bootstrap(
    fit: LmmFit,
    X: np.ndarray,
    terms: Sequence[ReTerm],
    *,
    nsim: int,
    seed: int,
    offset: np.ndarray | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> tuple[np.ndarray, int]:
    """nsim replicates of (sdcor, sigma, beta), one row each, and how many refits failed (left out)."""
    rng = np.random.default_rng(seed)
    rows, failed = [], 0
    for i in range(nsim):
        ystar = simulate(fit, X, terms, rng, offset)
        try:
            m = LmmModel(X, ystar, terms, xnames=fit.xnames, weights=fit.weights, offset=offset)
            f = m.fit(fit.reml)
        except (MmcliError, np.linalg.LinAlgError, ValueError):
            failed += 1
            continue
        if f.beta.size != fit.beta.size:
            failed += 1
            continue
        rows.append(np.concatenate([sdcor(terms, f.theta, f.sigma), [f.sigma], f.beta]))
        if progress is not None:
            progress(i + 1, math.nan)
    width = sum(t.ntheta for t in terms) + 1 + fit.beta.size
    return np.array(rows).reshape(len(rows), width), failed


def percentile(t: np.ndarray, alpha: float) -> float:
    """boot's percentile end at alpha: the order statistic (R + 1) alpha, interpolated on the normal scale."""
    from statistics import NormalDist  # scipy.stats would take a second to import

    norm = NormalDist()
    t = np.sort(t[np.isfinite(t)])
    R = t.size
    if R == 0:
        return math.nan
    rk = (R + 1) * alpha
    k = int(math.floor(rk + 1e-9))
    if abs(rk - round(rk)) < 1e-9 and 1 <= round(rk) <= R:
        return float(t[int(round(rk)) - 1])
    if k <= 0:
        return float(t[0])
    if k >= R:
        return float(t[-1])
    q, q1, q2 = norm.inv_cdf(alpha), norm.inv_cdf(k / (R + 1)), norm.inv_cdf((k + 1) / (R + 1))
    return float(t[k - 1] + (q - q1) / (q2 - q1) * (t[k] - t[k - 1]))
