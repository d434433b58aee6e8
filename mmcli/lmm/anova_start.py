"""A start for the optimizer nearer the optimum than lme4's identity start, for models whose every term is a
scalar random intercept: each factor's variance ratio by the one-way analysis of variance of the working
response (the least-squares residual), read off the Gram matrix (no pass over the data).

For factor j with K levels, n_k rows and residual sums r_k per level: SSB = sum r_k^2 / n_k, SSW = RSS - SSB,
MSB = SSB / (K - 1), MSW_j = SSW / (n - p - K + 1), n0 = (n - sum n_k^2 / n) / (K - 1) and
sigma_j^2 = (MSB - MSW_j) / n0, the ANOVA estimator (Searle, Casella & McCulloch 1992, section 3.5). Within
factor j's levels the other factors' variances add to the residual's, so sigma^2 is the mean over j of
MSW_j - sum_{i != j} sigma_i^2 (for one factor, MSW), and theta_j = sigma_j / sigma. Each factor is taken alone,
so in crossed and unbalanced designs this is only a start, which the optimizer moves to the optimum of the
profiled criterion; in a balanced one-way layout it is the REML estimate itself when positive.
"""

from __future__ import annotations

import numpy as np

from mmcli.lmm.gram import Gram

START_MIN = 0.1  # below this a start is raised to it: at 0 a scalar term's criterion is flat (even in theta)
START_MAX = 10.0
RESIDUAL_MIN = 0.05  # the residual variance is at least this fraction of the least-squares residual's


def anova_start(g: Gram) -> np.ndarray | None:
    """theta's start in the working parametrization, in the order of the terms; None unless every block holds
    one scalar indicator term and the Gram matrix has the response."""
    if not g.has_y or not g.blocks or any(not b.indicator or b.p != 1 or len(b.terms) != 1 for b in g.blocks):
        return None
    n, p = g.n, g.p
    A = g.AXX
    coef = np.linalg.lstsq(A[:p, :p], A[:p, p], rcond=None)[0] if p else np.zeros(0)
    rss = float(A[p, p] - A[p, :p] @ coef)
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    if g.first is not None:
        parts.append((g.A00[:, 0, 0], g.AX0[p, :] - coef @ g.AX0[:p, :]))
    if g.rest:
        counts = g.ARR_csr.diagonal()
        sums = g.AXR[p, :] - coef @ g.AXR[:p, :]
        off = 0
        for b in g.rest:
            parts.append((counts[off : off + b.q], sums[off : off + b.q]))
            off += b.q
    var, within = np.zeros(len(g.terms)), np.zeros(len(g.terms))
    for b, (nk, rk) in zip(g.blocks, parts):
        K = nk.size
        keep = nk > 0
        ssb = float(np.sum(rk[keep] ** 2 / nk[keep]))
        total = float(nk.sum())
        dfw = total - p - K + 1
        if K < 2 or dfw <= 0 or not np.isfinite(ssb):
            return None
        msw = (rss - ssb) / dfw
        n0 = (total - float(np.sum(nk**2)) / total) / (K - 1)
        if not (msw > 0 and n0 > 0):
            return None
        var[b.terms[0]] = max((ssb / (K - 1) - msw) / n0, 0.0)
        within[b.terms[0]] = msw
    # within factor j's levels the other factors' variances add to the residual's
    sigma2 = max(float(np.mean(within - (var.sum() - var))), RESIDUAL_MIN * rss / max(n - p, 1))
    return np.clip(np.sqrt(var / sigma2), START_MIN, START_MAX)
