"""Approximate tests of smooth terms: mgcv's ``summary.gam`` smooth-terms table (edf, Ref.df, F, p-value).

Two tests, chosen per smooth as mgcv 1.8-41's ``summary.gam`` chooses them:

- a smooth with an unpenalized null space (cr, rk, ...): Wood (2013a), "On p-values for smooth components of an
  extended generalized additive model", Biometrika 100(1), 221-228; mgcv's ``testStat`` with ``type = 0``. The
  statistic is the Wald statistic p' V_r^- p with a rank-r pseudo-inverse of the coefficients' Bayesian
  covariance, r = the smooth's EDF; a fractional r mixes the last two eigen-directions so that the statistic's
  reference distribution is a weighted sum of chi-squares, and with an estimated scale each chi-square is divided
  by an independent chi-square on the residual df (the p-value of an F-like ratio);
- a smooth with no null space (cs, ts: every direction penalized): Wood (2013b), "A simple test for random
  effects in regression models", Biometrika 100(4), 1005-1010; mgcv's ``reTest``. The statistic is
  b' R_m'R_m b / sigma^2, R_m the smooth's block of the penalized factor after the other coefficients, and its
  reference distribution the weighted sum of chi-squares with the eigenvalues of R_m V_e R_m' / sigma^2.

Both work for any smooth given its coefficient indices, the length of its null space and the covariance
matrices; nothing here depends on the basis. The tail probabilities of weighted sums of chi-squares are computed
by Imhof's (1961) inversion of the characteristic function, where mgcv uses Davies' (1980) algorithm with its
default accuracy of 2e-5 (absolute). With an estimated scale (a Gaussian gamm) every statistic is referred to its
distribution divided by a chi-square on the residual df over those df; with a known scale (a binomial or Poisson
gamm, residual df given as <= 0) to the distribution itself (:func:`prob_above`). Numbers only: no output.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.stats

if TYPE_CHECKING:
    from mmcli.design import Design
    from mmcli.gam_design import GamDesign
    from mmcli.gam_reml import GamFit
    from mmcli.gamm import GammFit

EPS = float(np.finfo(float).eps)


@dataclass(frozen=True)
class SmoothBlock:
    """Where one smooth sits in the coefficient vector, and what its test needs to know of it."""

    term: str
    index: tuple[int, ...]  # its coefficients' positions in the full coefficient vector
    null_space_dim: int  # unpenalized directions after the constraint (0 for cs: every direction penalized)
    edf: float
    # the block's own R'R where it is tested on other columns than the fit's: a t2 fitted as a gam (with its
    # constraint on the unpenalized columns only) is tested on its columns centred by their means, the span of
    # mgcv's prediction basis (the whole basis constrained to sum to zero over the data)
    RtR: np.ndarray | None = None


@dataclass(frozen=True)
class SmoothTest:
    """One row of the smooth-terms table (mgcv's ``s.table`` with an estimated scale)."""

    term: str
    edf: float
    ref_df: float  # mgcv's Ref.df: the rank the statistic is referred to
    stat: float  # mgcv's chi.sq: the Wald-type statistic
    F: float  # stat / ref_df
    p_value: float
    test: str  # "Wood 2013a" (testStat) or "Wood 2013b" (reTest)


# --------------------------------------------------------------------------------------------------
# weighted sums of chi-squares


def prob_positive(lb: Sequence[float], df: Sequence[int]) -> float:
    """P(sum_j lb_j X_j > 0) with X_j independent central chi-squares on df_j degrees of freedom, the weights of
    either sign (Imhof 1961, at q = 0):

        P = 1/2 + (1/pi) int_0^inf sin(theta(u)) / (u rho(u)) du,
        theta(u) = 1/2 sum_j df_j arctan(lb_j u),  rho(u) = prod_j (1 + lb_j^2 u^2)^(df_j / 4).

    The integrand varies on the scale 1/sd of the sum (sd^2 = 2 sum df_j lb_j^2) and oscillates at the rate
    |mean| / 2: it is integrated by 40-point Gauss-Legendre rules over pieces shorter than both up to 10/sd, then
    over growing pieces until the bound on the rest, int_b^inf du / (u rho(u)) <= 2 / (sum df rho(b) prod_j
    c_j^(df_j / 4)) with c_j = lb_j^2 b^2 / (1 + lb_j^2 b^2), is below 1e-15. When the mean lies more than 80
    sd from 0 the answer is 0 or 1 to far below that (Laurent and Massart's 2000 tail bound)."""
    lam = np.asarray(lb, dtype=float)
    h = np.asarray(df, dtype=float)
    keep = lam != 0
    lam, h = lam[keep], h[keep]
    if lam.size == 0:
        return 0.0
    mean, sd = float(np.sum(h * lam)), math.sqrt(2.0 * float(np.sum(h * lam**2)))
    if abs(mean) > 80.0 * sd:
        return 1.0 if mean > 0 else 0.0
    step = 0.5 * min(1.0 / sd, 2.0 * math.pi / abs(mean)) if mean != 0 else 0.5 / sd
    edges = list(np.arange(0.0, 10.0 / sd, step)) + [10.0 / sd]
    while len(edges) < 2000:
        b = edges[-1]
        c = (lam * b) ** 2 / (1.0 + (lam * b) ** 2)
        log_bound = math.log(4.0 / float(np.sum(h))) - float(np.sum(h / 4 * (np.log1p((lam * b) ** 2) + np.log(c))))
        if log_bound < math.log(1e-15):
            break
        edges.append(1.5 * b)
    a, b = np.asarray(edges[:-1]), np.asarray(edges[1:])
    x, w = np.polynomial.legendre.leggauss(40)
    u = (a[:, None] + b[:, None]) / 2 + (b - a)[:, None] / 2 * x[None, :]
    lu = lam[:, None, None] * u[None, :, :]
    theta = 0.5 * np.tensordot(h, np.arctan(lu), axes=1)
    log_rho = np.tensordot(h / 4, np.log1p(lu**2), axes=1)
    f = np.sin(theta) / u * np.exp(-log_rho)
    total = float(np.sum(f * w[None, :] * (b - a)[:, None] / 2))
    return min(1.0, max(0.0, 0.5 + total / math.pi))


def prob_above(weights: Sequence[float], q: float) -> float:
    """P(sum_j w_j X_j > q), X_j ~ chi^2_1 independent, w_j > 0 (a known scale). Imhof's integral with
    theta(u) = 1/2 sum_j arctan(w_j u) - q u / 2 oscillates at the rate q / 2 without end: up to 10/sd it is
    integrated as it is, beyond by QUADPACK's Fourier-integral rule (QAWF) on sin(a - qu/2) = sin a cos(qu/2)
    - cos a sin(qu/2). Absolute accuracy about 1e-14."""
    from scipy import integrate

    w = np.asarray([x for x in weights if x > 0], dtype=float)
    if w.size == 0:
        return 0.0 if q >= 0 else 1.0

    def a(u: float) -> float:
        return 0.5 * float(np.sum(np.arctan(w * u)))

    def rho_u(u: float) -> float:
        return u * math.exp(float(np.sum(np.log1p((w * u) ** 2))) / 4)

    def f(u: float) -> float:
        return math.sin(a(u) - q * u / 2) / rho_u(u) if u > 0 else 0.5 * float(np.sum(w)) - q / 2

    import warnings

    top = 10.0 / math.sqrt(2.0 * float(np.sum(w**2)))
    with warnings.catch_warnings():  # QAWF reports its slow cycles; the sum stays within its absolute bound
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        head = integrate.quad(f, 0.0, top, limit=1000, epsabs=1e-15, epsrel=1e-12)[0]
        if q > 0:
            half = q / 2
            c = integrate.quad(
                lambda u: math.sin(a(u)) / rho_u(u), top, np.inf, weight="cos", wvar=half, epsabs=1e-15, limlst=200
            )[0]
            s = integrate.quad(
                lambda u: math.cos(a(u)) / rho_u(u), top, np.inf, weight="sin", wvar=half, epsabs=1e-15, limlst=200
            )[0]
            tail = c - s
        else:
            tail = integrate.quad(f, top, np.inf, limit=1000, epsabs=1e-15)[0]
    return min(1.0, max(0.0, 0.5 + (head + tail) / math.pi))


def _upper(stat: float, weights: Sequence[float], res_df: float) -> float:
    """P(sum_j w_j X_j / (X_k / k) > stat), X_j ~ chi^2_1, X_k ~ chi^2_k independent, k = max(1, round(res_df)):
    as mgcv refers a statistic with an estimated scale, P(sum_j w_j X_j - (stat / k) X_k > 0). With a known
    scale (res_df <= 0, a binomial or Poisson family), P(sum_j w_j X_j > stat)."""
    if res_df <= 0:
        return prob_above(weights, stat)
    k = max(1, int(np.round(res_df)))
    return prob_positive([*weights, -stat / k], [1] * len(weights) + [k])


# --------------------------------------------------------------------------------------------------
# the two tests


def upper_root(G: np.ndarray) -> np.ndarray:
    """An upper-triangular R with R'R = G (G symmetric positive semi-definite): the R factor of the QR of any
    matrix whose cross-product is G, which is what mgcv's test takes from its X (up to the signs of rows, which
    the test does not see)."""
    w, U = np.linalg.eigh((G + G.T) / 2)
    B = np.sqrt(np.maximum(w, 0.0))[:, None] * U.T
    return np.asarray(np.linalg.qr(B, mode="r"))


def wood_test(p: np.ndarray, R: np.ndarray, V: np.ndarray, rank: float, res_df: float) -> tuple[float, float, float]:
    """mgcv's ``testStat(p, X, V, rank, type = 0, res.df)`` (Wood 2013a), with R the R factor of X.

    The statistic is d = ||D^(-1/2) E_k' R p||^2 over the top k eigenpairs (E, D) of R V R'; a fractional rank
    r = k + nu mixes the k-th and (k+1)-th directions by Wood's 2x2 matrix B = [[1, b], [b, nu]] (b^2 =
    nu(1 - nu)/2), and the p-value is the average over the two signs of that mixing, each referred to the sum
    of chi-squares with weights [1, ..., 1, (1 + nu + sqrt((1 + nu)(1 - nu)))/2, (1 + nu) - that]. Returns
    (statistic, p-value, rank). The scale is taken as estimated (res_df > 0), as it is for every gamm."""
    Vr = R @ V @ R.T
    Vr = (Vr + Vr.T) / 2
    vals, vecs = np.linalg.eigh(Vr)
    vals, vecs = vals[::-1], vecs[:, ::-1]
    sign = np.sign(vecs[0, :])
    sign[sign == 0] = 1.0
    vecs = vecs * sign
    k = max(0, math.floor(rank))
    nu = abs(rank - k)
    k1 = k + 1 if nu > 0 else k
    r_est = int(np.sum(vals > vals.max() * EPS**0.9))
    if r_est < k1:
        k1 = k = r_est
        nu, rank = 0.0, float(r_est)
    vec = vecs[:, :k1].copy() if k1 < vecs.shape[1] else vecs.copy()
    if nu > 0 and k > 0:
        if k > 1:
            vec[:, : k - 1] = vec[:, : k - 1] / np.sqrt(vals[: k - 1])
        b12 = math.sqrt(max(0.0, 0.5 * nu * (1 - nu)))
        ev = np.diag(vals[k - 1 : k1] ** -0.5)
        B = ev @ np.array([[1.0, b12], [b12, nu]]) @ ev
        w, E = np.linalg.eigh(B)
        rB = E @ np.diag(np.sqrt(w)) @ E.T
        vec1 = vec.copy()
        vec1[:, k - 1 : k1] = (rB @ np.diag([-1.0, 1.0]) @ vec[:, k - 1 : k1].T).T
        vec[:, k - 1 : k1] = (rB @ vec[:, k - 1 : k1].T).T
    else:
        vec = vec / math.sqrt(vals[0]) if k == 0 else vec / np.sqrt(vals[:k])
        vec1 = vec
        if k == 1:
            rank = 1.0
    Rp = R @ p
    d = float(np.sum((vec.T @ Rp) ** 2))
    d1 = float(np.sum((vec1.T @ Rp) ** 2))
    rank1 = rank
    pval = 2.0
    if nu > 0:
        if k1 == 1:
            weights = [1.0]
            rank1 = 1.0
        else:
            weights = [1.0] * k1
            rp = nu + 1
            weights[k - 1] = (rp + math.sqrt(rp * (2 - rp))) / 2
            weights[k1 - 1] = rp - weights[k - 1]
        pval = (_upper(d, weights, res_df) + _upper(d1, weights, res_df)) / 2
    if pval > 1 and res_df <= 0:  # known scale: chi-square on the rank
        pval = (scipy.stats.chi2.sf(d, rank1) + scipy.stats.chi2.sf(d1, rank1)) / 2
    elif pval > 1:
        pval = (scipy.stats.f.sf(d / rank1, rank1, res_df) + scipy.stats.f.sf(d1 / rank1, rank1, res_df)) / 2
    return d, min(1.0, float(pval)), float(rank)


def re_test(b: np.ndarray, M: np.ndarray, Ve: np.ndarray, sigma2: float, res_df: float) -> tuple[float, float, float]:
    """mgcv's ``reTest`` (Wood 2013b) for a smooth with no null space: with M = R_m'R_m (its block of the
    penalized normal matrix after the other coefficients, a Schur complement) and Ve its block of the frequentist
    covariance, the statistic is b'M b / sigma^2 and its reference distribution the sum of chi-squares on one df
    weighted by the eigenvalues of M^(1/2) Ve M^(1/2) / sigma^2, less (stat / k) times a chi-square on
    k = round(res_df) df. Returns (statistic, p-value, rank)."""
    stat = float(b @ M @ b) / sigma2
    root = upper_root(M)
    ev = np.linalg.eigvalsh(root @ Ve @ root.T / sigma2)[::-1]
    ev = np.maximum(ev, 0.0)
    rank = int(np.sum(ev > ev.max() * EPS**0.8)) if ev.size and ev.max() > 0 else 0
    if rank == 0:
        return stat, 1.0, 0.0
    return stat, _upper(stat, list(ev[:rank]), res_df), float(rank)


def smooth_tests(
    coef: np.ndarray,
    Vp: np.ndarray,
    RtR: np.ndarray,
    S_lambda: np.ndarray,
    Ve: np.ndarray,
    sigma2: float,
    residual_df: float,
    blocks: Sequence[SmoothBlock],
) -> list[SmoothTest]:
    """The smooth-terms table of ``summary.gam`` (scale estimated), one row per smooth.

    ``coef`` holds all coefficients in mgcv's parametrization, ``Vp`` their Bayesian covariance, ``RtR`` what
    the fitted object's R'R holds, ``S_lambda`` its total penalty sum_j sp_j S_j (so that RtR + S_lambda is
    the penalized normal matrix ``recov`` factors), ``Ve`` the frequentist covariance and ``residual_df`` =
    n - (total EDF). A smooth with a null space gets :func:`wood_test` with rank min(columns, EDF) (the EDF
    given in its block: mgcv's edf1 where the fit has one); one without, :func:`re_test` on the Schur complement
    of its block of the penalized normal matrix."""
    H = RtR + S_lambda
    out = []
    for blk in blocks:
        ind = np.asarray(blk.index, dtype=int)
        p = coef[ind]
        if blk.null_space_dim == 0:
            rest = np.setdiff1d(np.arange(coef.size), ind)
            Hmo = H[np.ix_(ind, rest)]
            M = (
                H[np.ix_(ind, ind)] - Hmo @ np.linalg.solve(H[np.ix_(rest, rest)], Hmo.T)
                if rest.size
                else H[np.ix_(ind, ind)]
            )
            stat, pval, rank = re_test(p, (M + M.T) / 2, Ve[np.ix_(ind, ind)], sigma2, residual_df)
            test = "Wood 2013b"
        else:
            R = upper_root(RtR[np.ix_(ind, ind)] if blk.RtR is None else blk.RtR)
            stat, pval, rank = wood_test(p, R, Vp[np.ix_(ind, ind)], min(float(ind.size), blk.edf), residual_df)
            test = "Wood 2013a"
        F = stat / rank if rank > 0 else float("nan")
        out.append(SmoothTest(blk.term, blk.edf, rank, stat, F, pval, test))
    return out


def _maps(mixed: Any) -> tuple[np.ndarray, np.ndarray]:
    """The linear maps from a smooth part's random and fixed coefficients to the smooth's coefficients (the
    columns of ``mixed.coefficients`` at unit vectors): one part of a t2 fills its own block of columns."""
    r, f = mixed.rank, len(mixed.fixed_names)
    eye_r, eye_f = np.eye(r), np.eye(f)
    rand = [mixed.coefficients(eye_r[i], np.zeros(f)) for i in range(r)]
    fixed = [mixed.coefficients(np.zeros(r), eye_f[i]) for i in range(f)]
    m = mixed.coefficients(np.zeros(r), np.zeros(f)).size
    return np.array(rand).reshape(r, m).T, np.array(fixed).reshape(f, m).T


# --------------------------------------------------------------------------------------------------
# a gamm fit in mgcv's parametrization

SP_AT_ZERO_VARIANCE = 1e10
"""gamm4's smoothing parameter for a smooth whose variance is estimated as zero (it keeps it finite)."""


def gamm_smooth_tests(g: GammFit, design: Design, weights: np.ndarray | None = None) -> list[SmoothTest]:
    """The smooth-terms table of gamm4's ``summary(fit$gam)`` for a fitted gamm, one row per part of the fit
    (the parts of one t2 share their smooth's row).

    gamm4's gam object is mgcv's parametrization of the fit: the parametric coefficients, then each smooth's
    coefficients in its constrained basis. Its covariance is Vp = M V_gamma M' (the Bayesian covariance of the
    mixed-model fit mapped by each part's map back, gamm4's ``trans.U %*% (trans.D * b)``), its EDF the sum of
    its parts' EDF, and R'R = X'V0^-1 X / sigma^2 is formed over the random effects that are not smooths, as
    gamm4 forms its R. A t2 is tested as one smooth (all its coefficients, all its penalties); a part whose
    variance is zero gets gamm4's smoothing parameter 1e10. With ``weights``
    (a GLMM's working weights) the scale is known: chi-square tests, as summary.gam for such a family."""
    from mmcli.gamm import xtvinvx_others

    fit = g.lmm
    xn = list(fit.xnames)
    smooth_fixed = {name for sp in g.smooths for name in sp.mixed.fixed_names}
    param = [i for i, name in enumerate(xn) if name not in smooth_fixed]
    owners: dict[int, list[int]] = {}  # smooth -> its parts
    for j, sp in enumerate(g.smooths):
        owners.setdefault(id(sp.smooth), []).append(j)
    first = {parts[0]: parts for parts in owners.values()}
    n_rand = [sp.mixed.rank if sp.term >= 0 else 0 for sp in g.smooths]
    n_coef = len(param) + sum(g.smooths[j].smooth.X.shape[1] for j in first)
    M = np.zeros((n_coef, len(xn) + sum(n_rand)))
    M[np.arange(len(param)), param] = 1.0
    S_lambda = np.zeros((n_coef, n_coef))
    blocks, cols = {}, [design.X[:, [design.xnames.index(xn[i]) for i in param]]]
    row, off = len(param), len(xn)
    for j, parts in first.items():
        sm = g.smooths[j].smooth
        rows = slice(row, row + sm.X.shape[1])
        for i in parts:
            mixed, q = g.smooths[i].mixed, n_rand[i]
            rand, fixed = _maps(mixed)
            if q:
                M[rows, off : off + q] = rand * g.theta(i)
                off += q
            for c, name in enumerate(mixed.fixed_names):
                if name in xn:
                    M[rows, xn.index(name)] = fixed[:, c]
            lam = g.lam(i)
            S = sm.S[mixed.index] if isinstance(sm.S, tuple) else sm.S
            S_lambda[rows, rows] += (SP_AT_ZERO_VARIANCE if lam is None else lam) * S if mixed.rank > 0 else 0.0
        edf = float(sum(g.edf[i] for i in parts))
        Xb = sm.X
        if sm.bs == "t2":  # gamm4's object holds a t2's coefficients in its prediction basis
            Xb, A = _t2_prediction_basis(sm, g.smooths[j].x)
            M[rows] = A @ M[rows]
            Ainv = np.linalg.pinv(A)
            S_lambda[rows, rows] = Ainv.T @ S_lambda[rows, rows] @ Ainv
        blocks[j] = SmoothBlock(sm.term, tuple(range(rows.start, rows.stop)), sm.null_space_dim, edf)
        cols.append(Xb)
        row = rows.stop
    coef = M @ g.gamma_hat()
    Vp = M @ g.Vg @ M.T
    RtR = xtvinvx_others(np.column_stack(cols), fit, design, weights) / fit.sigma**2
    residual_df = fit.n - len(param) - float(sum(g.edf)) if weights is None else -1.0
    Vp = (Vp + Vp.T) / 2
    tests = smooth_tests(coef, Vp, RtR, S_lambda, Vp @ RtR @ Vp, fit.sigma**2, residual_df, list(blocks.values()))
    by_smooth = {id(g.smooths[j].smooth): t for j, t in zip(blocks, tests)}
    return [by_smooth[id(sp.smooth)] for sp in g.smooths]


def gam_smooth_tests(fit: GamFit, design: GamDesign) -> list[SmoothTest]:
    """The smooth-terms table of mgcv's ``summary.gam`` for a model fitted as mgcv's gam, one row per block
    of the design, a random intercept s(g, bs = "re") included (summary.gam lists it, tested by ``reTest``).

    mgcv's object: R'R = X'WX, the penalty sum_j sp_j S_j, Ve = Vp R'R Vp / scale, and each smooth tested at
    rank min(columns, edf1) with edf1 = 2 edf - diag(F F), F = Vp X'WX / scale (mgcv's alternative EDF)."""
    X = design.X if design.weights is None else design.X * np.sqrt(design.weights)[:, None]
    RtR = X.T @ X
    S_lambda = np.zeros_like(RtR)
    for pen, lam in zip(design.penalties, fit.lam):
        S_lambda[np.ix_(pen.cols, pen.cols)] += lam * pen.S
    F = fit.Vp @ RtR / fit.scale
    edf1 = 2 * np.diag(F) - np.einsum("ij,ji->i", F, F)
    blocks = [
        SmoothBlock(
            blk.smooth.term if blk.smooth is not None else f"s({blk.label})",
            tuple(int(c) for c in blk.cols),
            0 if blk.kind == "re" else blk.smooth.null_space_dim,
            float(edf1[blk.cols].sum()),
            _centred_rtr(X[:, blk.cols]) if blk.kind == "t2" else None,
        )
        for blk in design.blocks
    ]
    tests = smooth_tests(
        fit.beta,
        fit.Vp,
        RtR,
        S_lambda,
        fit.Vp @ RtR @ fit.Vp / fit.scale,
        fit.scale,
        fit.n - float(fit.edf.sum()),
        blocks,
    )
    return [replace(t, edf=float(fit.edf[blk.cols].sum())) for t, blk in zip(tests, design.blocks)]


def _centred_rtr(Xb: np.ndarray) -> np.ndarray:
    """R'R of a (weighted) block with its columns centred by their means."""
    Xc = Xb - Xb.mean(axis=0)
    return np.asarray(Xc.T @ Xc)


def _t2_prediction_basis(sm: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A t2's prediction basis, as gamm4's gam object holds it: the unconstrained basis X0 with the whole of it
    constrained to sum to zero over the data (smoothCon's Householder absorption of C = 1'X0), and the map A
    from the fit's coefficients to that basis's (X_pred A = the fit's columns centred by their means)."""
    from mmcli.smooths import constraint_null_space

    X0 = sm.unconstrained_matrix(x)
    Xp = X0 @ constraint_null_space(X0.sum(axis=0)[None, :])
    A = np.linalg.lstsq(Xp, sm.X - sm.X.mean(axis=0), rcond=None)[0]
    return Xp, A
