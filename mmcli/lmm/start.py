"""A start for theta near the optimum, for crossed random intercepts whose Schur block is large.

Each evaluation of the criterion then factors a dense matrix of the order of the levels after the first factor
(3,000 on the 10,000 x 3,000 Zipf-like design), so a start close to the optimum saves whole factorizations. With
K grouping factors, each a random intercept, y0 (the working response: least-squares residuals of y on X) is
about sum_k Z_k b_k + e. The start is EM for the variances with the random effects' conditional means found by
backfitting (Gauss-Seidel over the factors: b_k,i = sum over the rows of level i of (y0 - the other factors'
effects) / (n_i + sigma^2 / sigma_k^2); Ghosh, Hastie & Owen 2022, "Backfitting for large scale crossed random
effects regressions") and each factor's conditional variances taken as if it were alone,
sigma^2 / (n_i + sigma^2 / sigma_k^2):

    sigma_k^2 <- (sum_i b_k,i^2 + sum_i v_k,i) / R_k,
    sigma^2   <- (|y0 - sum_k Z_k b_k|^2 + sum_k sum_i n_i v_k,i) / n.

The approximation leaves out the factors' joint conditional covariance, so this is not the optimum, only near it:
theta_k = sigma_k / sigma from it was within 1.3% of lme4's on the Zipf-like design, where L-BFGS-B then took
fewer gradient evaluations than from lme4's identity start (see docs/methods.md). Each sweep is a few passes
over the level codes; at most SWEEPS of them.

A variance estimated below FLOOR^2 sigma^2 starts at FLOOR (the optimizer should not start where a scalar
term's criterion is flat); no usable estimate gives no start (the caller keeps lme4's).
"""

from __future__ import annotations

import numpy as np

from mmcli.lmm.gram import Gram
from mmcli.lmm.terms import ReTerm

MIN_QR = 256
"""The order of the dense block from which this start is used (where one evaluation's factorization outweighs
the sweeps; :func:`mmcli.lmm.factor.workspace` keeps one buffer from the same size)."""
FLOOR = 0.1  # the smallest start for one theta (relative standard deviation)
FIRST_STEP = 0.02
"""The length in theta of L-BFGS-B's first step from this start (its default, 1 / LBFGSB_SCALE = 0.25, suits
lme4's identity start; from this one it overshot and cost an evaluation on the Zipf-like design)."""
SWEEPS = 60
RTOL = 1e-4  # the sweeps stop when no variance ratio moves by more than this, relative


def backfit_start(terms: list[ReTerm], y0: np.ndarray, g: Gram, weighted: bool) -> np.ndarray | None:
    """theta from the sweeps of the module docstring (working parametrization), or None when they do not
    apply: fewer than two terms, a term that is not a random intercept on a grouping factor with one constant
    template value, prior weights, a dense block below MIN_QR, or no usable estimate."""
    if len(terms) < 2 or g.qR < MIN_QR or weighted:
        return None
    scale = []
    for t in terms:
        if not t.indicator or t.p != 1 or t.codes is None or t.T is None or not t.T.size:
            return None
        c = float(t.T[0, 0])
        if not c > 0 or np.any(t.T[:, 0] != c):
            return None
        scale.append(c)
    codes = [np.asarray(t.codes, dtype=np.intp) for t in terms]
    counts = [np.bincount(cd, minlength=t.nlevels).astype(float) for cd, t in zip(codes, terms)]
    ratio = _sweeps(y0, codes, counts)
    if ratio is None:
        return None
    return np.maximum(np.sqrt(ratio), FLOOR) / np.array(scale)


def _sweeps(y0: np.ndarray, codes: list[np.ndarray], counts: list[np.ndarray]) -> np.ndarray | None:
    """sigma_k^2 / sigma^2 per factor after the sweeps, from sigma_k^2 = sigma^2 = var(y0) / 2; None when
    the estimates are not finite and positive."""
    n, K = y0.size, len(codes)
    s2 = float(y0 @ y0) / n
    if not s2 > 0:
        return None
    var = np.full(K, s2 / 2.0)
    s2 /= 2.0
    b = [np.zeros(c.size) for c in counts]
    fit = np.zeros(n)  # sum_k Z_k b_k
    for _ in range(SWEEPS):
        shrink = [s2 / np.maximum(var[k], 1e-300) for k in range(K)]
        for k in range(K):
            fit -= b[k][codes[k]]
            b[k] = np.bincount(codes[k], weights=y0 - fit, minlength=counts[k].size) / (counts[k] + shrink[k])
            fit += b[k][codes[k]]
        v = [s2 / (counts[k] + shrink[k]) for k in range(K)]
        new = np.array([(b[k] @ b[k] + v[k].sum()) / counts[k].size for k in range(K)])
        r = y0 - fit
        s2 = (float(r @ r) + sum(float(counts[k] @ v[k]) for k in range(K))) / n
        if not (np.all(np.isfinite(new)) and np.isfinite(s2) and s2 > 0):
            return None
        done = np.all(np.abs(new - var) <= RTOL * np.maximum(new, 1e-12 * s2))
        var = new
        if done:
            break
    return var / s2
