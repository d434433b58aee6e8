"""Results at theta-hat, read off the factor (Bates et al. 2015, sections 3.5-3.6), and the fitted model.

beta and u by back-substitution: beta = L_XX^-T l_yX, u_R = L_RR^-T (l_yR - L_XR' beta), and per level of
block 0 u_0 = M^-1 Lambda_0'(A_0y - A_0X beta - A_0R Lambda_R u_R). vcov(beta) = sigma^2 (L_XX L_XX')^-1.
The conditional covariance of u is sigma^2 times the diagonal blocks of (L_ZZ L_ZZ')^-1: for the rest blocks
those of S_RR^-1 = (L_RR L_RR')^-1, for block 0 M^-1 + G_j' S_RR^-1 G_j with G = Lambda_R'A_R0 Lambda_0 M^-1.
b = Lambda u, and its conditional covariance Lambda C_u Lambda'.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mmcli.lmm._lazy import sla, sp
from mmcli.lmm.criterion import Dof, criterion, sigma_hat
from mmcli.lmm.factor import Factor, inverse_in_place, update_L
from mmcli.lmm.gram import Gram, block_diagonal
from mmcli.lmm.optimizer import OptimizerRecord
from mmcli.lmm.terms import ReTerm, lower_bounds, templates, theta_offsets
from mmcli.lmm.transform import WorkingFit

SINGULAR_TOL = 1e-4  # lme4's isSingular(tol = 1e-4) on the diagonal entries of theta


class LikelihoodSummary:
    """logLik, AIC, BIC and the residual df of a fit, as lme4 computes them from its criterion ``objective``
    (-2 log L, or the REML criterion), ``n`` and the parameter count ``npar`` (each fit class says which)."""

    objective: float
    n: int

    @property
    def npar(self) -> int:
        raise NotImplementedError

    @property
    def loglik(self) -> float:
        return -0.5 * self.objective

    @property
    def aic(self) -> float:
        return self.objective + 2.0 * self.npar

    @property
    def bic(self) -> float:
        return self.objective + math.log(self.n) * self.npar

    @property
    def df_resid(self) -> int:
        return self.n - self.npar


@dataclass(frozen=True, eq=False)
class LmmFit(LikelihoodSummary):
    """Everything a fitted LMM reports, on the user's scale. Built once by :class:`mmcli.lmm.LmmModel`."""

    reml: bool
    n: int
    terms: tuple[ReTerm, ...]
    xnames: tuple[str, ...]
    theta: np.ndarray
    sigma: float
    beta: np.ndarray
    vcov: np.ndarray
    std_errors: np.ndarray  # of beta, computed where vcov's entries could leave double range
    corr_fixed: np.ndarray  # the correlation of the fixed effects (as lme4's summary prints it)
    objective: float  # -2 log-likelihood (ML) or the REML criterion
    ranef: list[np.ndarray]  # per term, (nlevels, p): conditional modes b
    cond_cov: list[np.ndarray]  # per term, (nlevels, p, p)
    fitted_values: np.ndarray | Callable[[], np.ndarray]  # X beta + Z b + offset, or what computes them (``fitted``)
    residuals: np.ndarray  # y - fitted
    converged: bool
    optimizer: OptimizerRecord
    dropped_columns: tuple[str, ...] = ()
    weights: np.ndarray | None = None  # prior weights

    @property
    def npar(self) -> int:
        return len(self.beta) + self.theta.size + 1  # and sigma

    @property
    def fitted(self) -> np.ndarray:
        """X beta + Z b + offset, computed on first use when the model left them so (kept from then on)."""
        f = self.fitted_values
        if callable(f):
            f = f()
            object.__setattr__(self, "fitted_values", f)
        return f

    @property
    def cond_sd(self) -> list[np.ndarray]:
        """Per term, (nlevels, p): conditional standard deviations of the random effects."""
        return [np.sqrt(np.maximum(np.diagonal(C, axis1=1, axis2=2), 0.0)) for C in self.cond_cov]

    @property
    def theta_offsets(self) -> tuple[int, ...]:
        """Where each term's entries start in theta (term i owns theta[off : off + terms[i].ntheta])."""
        return theta_offsets(self.terms)

    @property
    def singular(self) -> bool:
        diag = lower_bounds(self.terms) == 0.0
        return bool(np.any(self.theta[diag] < SINGULAR_TOL))

    @property
    def pearson_residuals(self) -> np.ndarray:
        """sqrt(w) (y - fitted): the residuals on the scale of the unit-weight model."""
        return self.residuals if self.weights is None else self.residuals * np.sqrt(self.weights)

    def term_covariances(self) -> list[np.ndarray]:
        """sigma^2 Lambda_k Lambda_k' per term: the covariance matrix of one level's random effects."""
        return [self.sigma**2 * (T @ T.T) for T in templates(self.terms, self.theta)]


def working_results(g: Gram, f: Factor, theta: np.ndarray, dof: Dof, X: np.ndarray) -> WorkingFit:
    """Everything at theta in the working parametrization, from the Gram matrix and the factor (which is
    consumed: the inverse of its leading block is computed in its memory)."""
    p, qR = g.p, g.qR
    beta, uR, u0 = _modes(g, f)
    LXX = np.array(f.Lrest[qR : qR + p, qR : qR + p])  # a copy: _per_block consumes the factor
    u_blocks, cov_u_blocks = _per_block(g, f, uR, u0)
    return _assemble(g, f, theta, dof, X, beta, LXX, u_blocks, cov_u_blocks)


def results_at(g: Gram, theta: np.ndarray, dof: Dof, X: np.ndarray, work: np.ndarray | None = None) -> WorkingFit:
    """:func:`working_results` at theta. When the last gradient evaluation of the scalar crossed path was at this
    very theta, what the results read (the modes, L_XX, S_RR^-1's diagonal and G) was kept by it
    (:func:`mmcli.lmm.crossed.evaluated_at`) and the factor is not formed again; else a new factor (in ``work``,
    as :func:`mmcli.lmm.factor.update_L`)."""
    from mmcli.lmm.crossed import evaluated_at

    kept = evaluated_at(g, theta)
    if kept is None:
        return working_results(g, update_L(g, theta, work), theta, dof, X)
    u_blocks, cov_u_blocks = _scalar_blocks(g, kept.factor, kept.uR, kept.u0, kept.dR, kept.GR)
    return _assemble(g, kept.factor, theta, dof, X, kept.beta, kept.LXX, u_blocks, cov_u_blocks)


def _assemble(
    g: Gram,
    f: Factor,
    theta: np.ndarray,
    dof: Dof,
    X: np.ndarray,
    beta: np.ndarray,
    LXX: np.ndarray,
    u_blocks: list[np.ndarray],
    cov_u_blocks: list[np.ndarray],
) -> WorkingFit:
    """The WorkingFit from the modes, L_XX and the per-block conditional covariances of u (up to sigma^2)."""
    p = g.p
    sigma = sigma_hat(f.pwrss, dof)
    LXXinv = np.linalg.inv(LXX) if p else np.zeros((0, 0))
    vcov = sigma**2 * (LXXinv.T @ LXXinv)
    ranef: list[np.ndarray] = [np.zeros(0)] * len(g.terms)
    cond_cov: list[np.ndarray] = [np.zeros(0)] * len(g.terms)
    levels: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # indicator blocks: (T, codes, b by level)
    general = None  # Z b of the other blocks, over all rows
    for b, T, ub, Cu in zip(g.blocks, f.templates, u_blocks, cov_u_blocks):
        bb = ub @ T.T  # b_level = T u_level
        Cb = np.einsum("ij,ljk,mk->lim", T, Cu, T) * sigma**2
        if b.indicator and b.codes is not None and b.T is not None:  # Z b by level codes, without forming Z
            levels.append((b.T, b.codes, bb))
        else:
            zb = b.Z @ bb.ravel()
            general = zb if general is None else general + zb
        for ti, off in zip(b.terms, b.offsets):
            pt = g.terms[ti].p
            ranef[ti] = bb[:, off : off + pt]
            cond_cov[ti] = Cb[:, off : off + pt, off : off + pt]

    def fitted(rows: slice, out: np.ndarray) -> None:
        """X~ beta + Z~ b on a block of rows, written into out."""
        np.matmul(X[rows], beta, out=out)
        for T, codes, bb in levels:
            _add_by_level(out, T[rows], codes[rows], bb)
        if general is not None:
            out += general[rows]

    objective = criterion(f.logdetZ, f.logdetX, f.pwrss, dof)
    return WorkingFit(theta, sigma, beta, vcov, objective, ranef, cond_cov, fitted)


def _add_by_level(fitted: np.ndarray, T: np.ndarray, codes: np.ndarray, bb: np.ndarray) -> None:
    """fitted += Z b for an indicator block on some rows (row i: T_i . b_(level i))."""
    if bb.shape[1] > 1:
        fitted += np.einsum("ij,ij->i", T, bb[codes])
    elif T.shape[0] and T.strides[0] == 0 and T[0, 0] == 1.0:  # (1 | g): b_level alone
        fitted += bb[codes, 0]
    else:
        fitted += T[:, 0] * bb[codes, 0]


def _modes(g: Gram, f: Factor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """beta, u_R and u_0 at theta. [u_R; beta] solves L'[u_R; beta; -1] = [0; ...; -r], one back-substitution
    on the whole factor (in Fortran order as L' is, so LAPACK copies nothing); u_0 per level of block 0."""
    p, qR = g.p, g.qR
    Lr = f.Lrest
    b = np.zeros(Lr.shape[0])
    b[-1] = Lr[-1, -1]
    if Lr[-1, -1] > 0 and Lr.flags.c_contiguous and Lr.shape[0] > 1:
        z, _ = sla.lapack.dtrtrs(Lr.T, b, lower=0)
        x = -z[:-1]
    else:  # r = 0 (a perfect fit): the leading block's back-substitution, L_11' x = l_y
        x = np.linalg.solve(np.tril(Lr[:-1, :-1]).T, Lr[-1, :-1]) if Lr.shape[0] > 1 else np.zeros(0)
    uR, beta = x[:qR], x[qR : qR + p]
    if g.first is None:
        return beta, uR, np.zeros(0)
    nl0, p0 = g.first.nlevels, g.first.p
    rhs = g.AX0[-1, :] - g.AX0[:p, :].T @ beta  # A_0y - A_0X beta
    if g.AR0 is not None:
        rhs = rhs - g.AR0.T @ (g.lambda_rest(g.rest_templates(f.templates)) @ uR)
    rhs = (rhs.reshape(nl0, p0) @ f.templates[0]).reshape(nl0, p0, 1)  # Lambda_0' r per level
    return beta, uR, _solve_levels(f.L00, rhs).ravel()


def _solve_levels(L: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """M_j^-1 rhs_j per level from the Cholesky factors L_j of M_j."""
    if L.shape[1] == 1:
        return rhs / L**2
    z = np.linalg.solve(L, rhs)
    return np.linalg.solve(np.transpose(L, (0, 2, 1)), z)


def _per_block(g: Gram, f: Factor, uR: np.ndarray, u0: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """u and its conditional covariance (up to sigma^2) per block, as (nl, pb) and (nl, pb, pb) arrays."""
    qR = g.qR
    if g.rest_scalar and qR:
        return _per_block_scalar(g, f, uR, u0)
    Sinv = inverse_in_place(g, f.Lrest, reml=False) if qR else np.zeros((0, 0))  # consumes the factor
    u_blocks, cov_blocks = [], []
    if g.first is not None:
        nl0, p0 = g.first.nlevels, g.first.p
        L00inv = 1.0 / f.L00 if p0 == 1 else np.linalg.inv(f.L00)
        Minv = np.einsum("lki,lkj->lij", L00inv, L00inv)
        C0 = Minv.copy()
        if qR and g.AR0 is not None:
            Lam0 = block_diagonal(np.broadcast_to(f.templates[0], (nl0, p0, p0)))
            LamR = g.lambda_rest(g.rest_templates(f.templates))
            G = (LamR.T @ g.AR0 @ Lam0 @ block_diagonal(Minv)).tocsc()
            C0 += _sparse_quadratic_blocks(G, Sinv, nl0, p0)
        u_blocks.append(u0.reshape(nl0, p0))
        cov_blocks.append(C0)
    off = 0
    for b in g.rest:
        idx = off + np.arange(b.q).reshape(b.nlevels, b.p)
        u_blocks.append(uR[off : off + b.q].reshape(b.nlevels, b.p))
        cov_blocks.append(Sinv[idx[:, :, None], idx[:, None, :]])
        off += b.q
    return u_blocks, cov_blocks


def _per_block_scalar(g: Gram, f: Factor, uR: np.ndarray, u0: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """:func:`_per_block` for scalar rest blocks: the diagonal of S_RR^-1 and, for block 0, M_j^-1 +
    M_j^-1 Lambda_0' G_j Lambda_0 M_j^-1 with G_j = F_j' S_RR^-1 F_j, both read off L^-1 in panels
    (:mod:`mmcli.lmm.crossed`; the factor is consumed)."""
    from mmcli.lmm.crossed import selected_inverse

    lam = g.lambda_rest_diag(g.rest_templates(f.templates))
    inv = selected_inverse(g, f.Lrest, g.qR, lam)
    return _scalar_blocks(g, f, uR, u0, inv.d, inv.G)


def _scalar_blocks(
    g: Gram, f: Factor, uR: np.ndarray, u0: np.ndarray, d: np.ndarray, G: np.ndarray
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """:func:`_per_block_scalar` from d = diag(S_RR^-1) and G_j = F_j' S_RR^-1 F_j."""
    u_blocks, cov_blocks = [], []
    if g.first is not None:
        nl0, p0 = g.first.nlevels, g.first.p
        L00inv = 1.0 / f.L00 if p0 == 1 else np.linalg.inv(f.L00)
        Minv = np.einsum("lki,lkj->lij", L00inv, L00inv)
        T0 = f.templates[0]
        MT = Minv @ T0.T  # M_j^-1 Lambda_0'
        u_blocks.append(u0.reshape(nl0, p0))
        cov_blocks.append(Minv + MT @ G @ np.transpose(MT, (0, 2, 1)))
    off = 0
    for b in g.rest:
        u_blocks.append(uR[off : off + b.q].reshape(b.nlevels, 1))
        cov_blocks.append(d[off : off + b.q].reshape(b.nlevels, 1, 1))
        off += b.q
    return u_blocks, cov_blocks


def _sparse_quadratic_blocks(H: sp.csc_matrix, M: np.ndarray, nl: int, p: int) -> np.ndarray:
    """For each level j (columns j*p .. j*p+p-1 of the sparse H): H_j' M H_j, as an (nl, p, p) array.
    M H is formed for a chunk of columns at a time (a sparse-dense product), then multiplied elementwise with
    H and summed by column: about nnz(H) * rows(M) operations and bounded memory."""
    q = H.shape[1]
    out = np.zeros((nl, p, p))
    step = max(p, ((1 << 19) // max(M.shape[0], 1)) // p * p)
    for c0 in range(0, q, step):
        Hc = H[:, c0 : c0 + step]
        MH = np.asarray((Hc.T @ M).T)  # M symmetric: (H' M)' = M H
        for a in range(p):
            Ha = Hc[:, a::p]
            for b in range(p):
                v = np.asarray(Ha.multiply(MH[:, b::p]).sum(axis=0)).ravel()
                out[c0 // p : c0 // p + v.size, a, b] = v
    return out
