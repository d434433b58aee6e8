"""The analytic gradient of the Laplace deviance over (theta, beta) for one scalar random-effects term.

With one scalar term (a random intercept, or one column t per level) the conditional modes are one number per
level, and the Laplace deviance at (theta, beta) is

    D = sum_i d_i(eta_i) + sum_j u_j^2 + sum_j log M_j,   M_j = 1 + theta^2 A_j,   A_j = sum_{i in j} w_i t_i^2,

with eta_i = x_i' beta + theta t_i u_j + offset_i, u the conditional mode (the minimizer of the first two
terms), w the working (Fisher) weights a mu'^2 / V(mu) at the mode and d_i the deviance residuals (Bates et al.
2015, section 5; lme4's glmer computes the same D). Its total derivative follows by the envelope theorem for the
penalized deviance (u minimizes it) and the implicit function theorem for du/d(theta, beta) in log M_j. With the
score s = a (y - mu) mu' / V, the observed weight w_o = -ds/deta (= w for a canonical link) and w' = dw/deta,

    dD/dbeta  = X' (-2 s + r),     r_i = theta^2 w'_i t_i^2 / M_j - theta^4 w_o,i t_i E_j / (M_j M_o,j)
    dD/dtheta = -2 theta sum_j S_j^2 + sum_j [2 theta A_j + theta^2 E_j (u_j + theta du_j/dtheta)] / M_j

where S_j = sum s_i t_i, E_j = sum w'_i t_i^3, M_o,j = 1 + theta^2 sum w_o,i t_i^2 and
du_j/dtheta = (S_j - theta u_j A_o,j) / M_o,j. Every sum runs a block of rows at a time, so the gradient costs
about one PIRLS iteration and no full-length vector.
"""

from __future__ import annotations

import numpy as np

from mmcli.glmm.family import Family
from mmcli.glmm.pirls import ROW_BLOCK, Mode, Pirls


def _row_terms(
    fam: Family, y: np.ndarray, a: np.ndarray | None, eta: np.ndarray, mu: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """s, w, w_o and w' of a block of rows (a None: unit prior weights)."""
    if fam.canonical:  # mu' = V(mu): s = a (y - mu), w = w_o = a V, w' = a V'(mu) V
        w = fam.variance(mu)
        s = y - mu
        w1 = w * (1.0 - 2.0 * mu) if fam.name == "binomial" else w.copy()
        if a is not None:
            w, s, w1 = w * a, s * a, w1 * a
        return s, w, w, w1
    m1, m2 = fam.mu_eta(eta), fam.mu_eta2(eta)
    V = fam.variance(mu)
    dV = 1.0 - 2.0 * mu  # binomial: the non-canonical links are binomial's
    aa = 1.0 if a is None else a
    w = aa * m1 * m1 / V
    s = aa * (y - mu) * m1 / V
    wo = w - aa * (y - mu) * (m2 * V - m1 * m1 * dV) / (V * V)
    w1 = aa * (2.0 * m1 * m2 / V - m1**3 * dV / (V * V))
    return s, w, wo, w1


def laplace_gradient(pirls: Pirls, theta: np.ndarray, m: Mode) -> np.ndarray:
    """(dD/dtheta, dD/dbeta) of the Laplace deviance at the mode ``m`` of (theta, m.beta): one scalar term only."""
    pls, resp = pirls.pls, pirls.resp
    assert pls.scalar, "the analytic gradient is for one scalar random-effects term"
    blk = pls.blocks[0]
    codes, nl = blk.codes, blk.nlevels
    assert codes is not None
    th = float(theta[0])
    t0, a = pls.t0, None if resp.unit_prior else resp.prior
    X, n = pls.X, pls.n

    def rows(sl: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        s, w, wo, w1 = _row_terms(resp.fam, resp.y[sl], None if a is None else a[sl], *m.block(sl))
        return s, w, wo, w1, None if t0 is None else t0[sl]

    # pass 1: the level sums
    A, Ao, E, S = (np.zeros(nl) for _ in range(4))
    for lo in range(0, n, ROW_BLOCK):
        sl = slice(lo, lo + ROW_BLOCK)
        s, w, wo, w1, t = rows(sl)
        c = codes[sl]
        if t is not None:
            t2 = t * t
            s, w, wo, w1 = s * t, w * t2, wo * t2, w1 * t2 * t
        A += np.bincount(c, weights=w, minlength=nl)
        Ao += np.bincount(c, weights=wo, minlength=nl)
        E += np.bincount(c, weights=w1, minlength=nl)
        S += np.bincount(c, weights=s, minlength=nl)
    th2 = th * th
    M, Mo = 1.0 + th2 * A, 1.0 + th2 * Ao
    u = m.u
    du = (S - th * u * Ao) / Mo
    g_theta = -2.0 * th * float(S @ S) + float(np.sum((2.0 * th * A + th2 * E * (u + th * du)) / M))
    # pass 2: X' (-2 s + r)
    lev1, lev2 = th2 / M, th2 * th2 * E / (M * Mo)
    g_beta = np.zeros(X.shape[1])
    for lo in range(0, n, ROW_BLOCK):
        sl = slice(lo, lo + ROW_BLOCK)
        s, w, wo, w1, t = rows(sl)
        c = codes[sl]
        r = w1 * lev1[c] - wo * lev2[c] if t is None else w1 * (t * t) * lev1[c] - wo * t * lev2[c]
        r -= 2.0 * s
        g_beta += X[sl].T @ r
    return np.concatenate([[g_theta], g_beta])
