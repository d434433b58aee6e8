"""update_L: the blocked Cholesky factor of Omega(theta) (Bates et al. 2015, eq. 18; MixedModels.jl).

    Omega = [[Lambda'Z'Z Lambda + I, Lambda'Z'X, Lambda'Z'y],
             [X'Z Lambda,            X'X,        X'y       ],
             [y'Z Lambda,            y'X,        y'y       ]]  = L L'

Block 0 (the grouping factor with most levels) first: per level, M_j = Lambda_0'A_00,j Lambda_0 + I and
its Cholesky factor. Eliminating block 0 leaves, with W_j = Lambda_0 M_j^-1 Lambda_0' per level,

    K     = A_RR - A_R0 W A_R0'        K_XR = A_XR - A_X0 W A_R0'        K_XX = A_XX - A_X0 W A_X0'
    S     = [[Lambda_R'K Lambda_R + I, .], [K_XR Lambda_R, K_XX]]

whose dense Cholesky factor holds L_RR, L_XR, L_XX and, in its last diagonal entry, r (r^2 = the penalized
residual sum of squares). K's update A_R0 W A_R0' is computed by one of two strategies: the precomputed pairs
of A_R0's entries (one sparse mat-vec; :class:`~mmcli.lmm.gram.Gram`) or a sparse product.

S is assembled in C order, lower triangle only, and factored in its own memory: its transpose is the
Fortran-ordered upper triangle that LAPACK's dpotrf takes without a copy, and the factor comes back as L in
C order. The gradient (:mod:`mmcli.lmm.gradient`) also reads K and K_XR: :func:`factor_parts` returns them.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mmcli.lmm._lazy import sla
from mmcli.lmm.gram import Gram, block_diagonal


@dataclass(frozen=True, eq=False)
class Factor:
    """The pieces of L at one theta."""

    templates: list[np.ndarray]  # the block templates at theta
    L00: np.ndarray  # (nl0, p0, p0): per-level lower Cholesky factors of M_j
    W: np.ndarray  # (nl0, p0, p0): Lambda_0 M_j^-1 Lambda_0'
    Lrest: np.ndarray  # the lower factor of S: [L_RR; L_XR L_XX; l_yR l_yX r]
    logdetZ: float  # log |L_ZZ|^2
    logdetX: float  # log |L_XX|^2
    pwrss: float  # r^2 (nan without y)


def update_L(g: Gram, theta: np.ndarray, work: np.ndarray | None = None) -> Factor:
    """Factor Omega(theta) blockwise; see the module docstring. ``work``: see :func:`factor_parts`."""
    return factor_parts(g, theta, keep_K=False, work=work)[0]


def workspace(g: Gram) -> np.ndarray | None:
    """A buffer for S that a sequence of evaluations can share (:func:`factor_parts`), or None when S is small.
    A fresh array of S's size at every evaluation costs its page faults each time (tens of milliseconds for an
    order of 3,000, more on a busy machine); one buffer costs them once."""
    N = g.qR + g.p1
    return np.empty((N, N)) if g.qR >= 256 else None


def factor_parts(
    g: Gram, theta: np.ndarray, keep_K: bool = True, work: np.ndarray | None = None
) -> tuple[Factor, np.ndarray, np.ndarray]:
    """update_L, and K and K_XR of the module docstring, which the gradient reads (empty arrays unless
    ``keep_K``; K also empty for scalar rest blocks with the precomputed pairs, whose gradient does not read it).
    K is dense and symmetric. With ``work`` (from :func:`workspace`), S and the factor live in that buffer: the
    factor is then valid only until the next evaluation with the same buffer."""
    Ts = g.block_templates(theta)
    L00, W, logdet0 = _first_block(g, Ts[0] if g.first is not None else None)
    S, K, KXR = _schur_complement(g, Ts, W, keep_K, work)
    Lrest = _cholesky(S, numpy_only=g.qR == 0, rebuild=lambda: _schur_complement(g, Ts, W, False, work)[0])
    d = np.diagonal(Lrest)
    qR, p = g.qR, g.p
    logdetR = 2.0 * float(np.sum(np.log(d[:qR]))) if qR else 0.0
    logdetX = 2.0 * float(np.sum(np.log(d[qR : qR + p]))) if p else 0.0
    pwrss = float(d[-1] ** 2) if g.has_y else math.nan
    return Factor(Ts, L00, W, Lrest, logdet0 + logdetR, logdetX, pwrss), K, KXR


def _first_block(g: Gram, T0: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, float]:
    """Per level of block 0: L00 = chol(Lambda_0'A_00 Lambda_0 + I), W = Lambda_0 M^-1 Lambda_0', log|L_00|^2."""
    if g.first is None or T0 is None:
        empty = np.zeros((0, 0, 0))
        return empty, empty, 0.0
    p0 = g.first.p
    M = np.einsum("ji,ljk,km->lim", T0, g.A00, T0, optimize=True)
    M[:, np.arange(p0), np.arange(p0)] += 1.0
    if p0 == 1:
        L00 = np.sqrt(M)
        W = T0[0, 0] ** 2 / M
    else:
        L00 = np.linalg.cholesky(M)
        W = T0 @ np.linalg.solve(M, np.broadcast_to(T0.T, M.shape))
    logdet0 = 2.0 * float(np.sum(np.log(np.diagonal(L00, axis1=1, axis2=2))))
    return L00, W, logdet0


def _schur_complement(
    g: Gram, Ts: list[np.ndarray], W: np.ndarray, keep_K: bool, work: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """S of the module docstring, lower triangle filled (the upper may hold anything), in C order so that
    its transpose is the Fortran-ordered upper triangle LAPACK factors in place (in ``work`` when given); and
    K, K_XR if asked."""
    qR, p1 = g.qR, g.p1
    S = work if work is not None else np.empty((qR + p1, qR + p1))
    empty = np.zeros((0, 0))
    AXW = None
    if g.first is not None:  # A_X0 W, level by level
        nl0, p0 = g.first.nlevels, g.first.p
        AXW = np.einsum("alj,ljk->alk", g.AX0.reshape(p1, nl0, p0), W).reshape(p1, nl0 * p0)
        S[qR:, qR:] = g.AXX - AXW @ g.AX0.T
    else:
        S[qR:, qR:] = g.AXX
    if not qR:
        return S, empty, empty
    rest = g.rest_templates(Ts)
    if g.rest_scalar and g.pairs is not None and AXW is not None and g.AR0 is not None:
        return _schur_scalar_pairs(g, S, W, AXW, g.lambda_rest_diag(rest))
    K, KXR = _update_K(g, W, AXW)
    if g.rest_scalar:
        lam = g.lambda_rest_diag(rest)
        SRR = S[:qR, :qR]
        np.multiply(K, lam[:, None], out=SRR)
        SRR *= lam[None, :]
        np.multiply(KXR, lam, out=S[qR:, :qR])
    else:
        LamR = g.lambda_rest(rest)
        S[:qR, :qR] = LamR.T @ (LamR.T @ K).T
        S[qR:, :qR] = np.asarray((LamR.T @ KXR.T).T)
    S.ravel()[: qR * (qR + p1) : qR + p1 + 1] += 1.0  # the diagonal of the R block
    if not keep_K:
        return S, empty, empty
    return S, K, KXR


_TARGETS: weakref.WeakKeyDictionary[Gram, tuple[np.ndarray, np.ndarray, np.ndarray]] = weakref.WeakKeyDictionary()


def _target_rows_cols(g: Gram, N: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pairs' targets as rows and columns of A_RR and as flat positions in the N x N S; once per Gram."""
    if g not in _TARGETS:
        assert g.pair_targets is not None
        r, c = np.divmod(g.pair_targets, g.qR)
        flat = r * N + c
        small = np.int32 if flat.size == 0 or int(flat.max()) < 2**31 else np.int64
        _TARGETS[g] = (r.astype(np.int32), c.astype(np.int32), flat.astype(small))
    return _TARGETS[g]


def _schur_scalar_pairs(
    g: Gram, S: np.ndarray, W: np.ndarray, AXW: np.ndarray, lam: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """S for scalar rest blocks with the precomputed pairs, built in S's own memory (no dense K): A_RR's
    nonzeros scattered into S's zeroed lower triangle, the pairs' update subtracted there and the heavy levels'
    rank-one updates as one BLAS product per row panel, all scaled by lambda. K is not formed (the gradient of
    :mod:`mmcli.lmm.crossed` does not read it)."""
    qR, N = g.qR, S.shape[0]
    assert g.AR0 is not None and g.pairs is not None and g.pair_targets is not None
    KXR = g.AXR - np.asarray((g.AR0 @ AXW.T).T)
    S[:qR, :qR] = 0.0
    flat = S.reshape(-1)
    ar, ac, av = g.ARR_low
    flat[ar * N + ac] = av * lam[ar] * lam[ac]
    update = g.pairs @ W.ravel()
    r, c, at_S = _target_rows_cols(g, N)
    flat[at_S] -= update * lam[r] * lam[c]  # on the lower triangle only
    if g.heavy.size:  # lambda A_R0,j w_j A_R0,j' lambda for each heavy level j: V V', lower panels only
        V = g.heavy_Z * lam[:, None]
        V *= np.sqrt(W[g.heavy, 0, 0])[None, :]
        for r0 in range(0, qR, 512):
            r1 = min(r0 + 512, qR)
            S[r0:r1, :r1] -= V[r0:r1] @ V[:r1].T
    np.multiply(KXR, lam, out=S[qR:, :qR])
    S.ravel()[: qR * N : N + 1] += 1.0
    return S, np.zeros((0, 0)), KXR


def _update_K(g: Gram, W: np.ndarray, AXW: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """K = A_RR - A_R0 W A_R0' (symmetric where it is read) and K_XR = A_XR - A_X0 W A_R0'."""
    if g.AR0 is None or AXW is None:
        return g.ARR, g.AXR
    KXR = g.AXR - np.asarray((g.AR0 @ AXW.T).T)
    if g.pairs is not None:
        assert not g.heavy.size  # heavy levels are left out of the pairs only for the scalar path
        K = g.ARR.copy()
        K.ravel()[g.pair_targets] -= g.pairs @ W.ravel()  # the lower triangle only
        if not g.rest_scalar:
            K = np.tril(K) + np.tril(K, -1).T
        return K, KXR
    WA = block_diagonal(W) @ g.AR0.T
    return g.ARR - (g.AR0 @ WA).toarray(), KXR


def _cholesky(S: np.ndarray, numpy_only: bool, rebuild: Callable[[], np.ndarray]) -> np.ndarray:
    """The lower Cholesky factor of S, in S's own memory (LAPACK dpotrf on S' in Fortran order, no copy;
    numpy's when S is small: no scipy import for one-factor models). When the y row makes S only
    semidefinite (a perfect fit), S is formed again, its leading block is factored and r = 0."""
    try:
        if numpy_only:
            return np.linalg.cholesky(S)
        c, info = sla.lapack.dpotrf(S.T, lower=0, overwrite_a=1, clean=1)
        if info == 0:
            return c.T
        S = rebuild()
    except np.linalg.LinAlgError:
        pass
    L = np.linalg.cholesky(S[:-1, :-1])
    Ly = np.linalg.solve(L, S[-1, :-1])
    out = np.zeros_like(S)
    out[:-1, :-1] = L
    out[-1, :-1] = Ly
    out[-1, -1] = math.sqrt(max(S[-1, -1] - Ly @ Ly, 0.0))
    return out


def symmetrize_lower(A: np.ndarray, step: int = 256) -> None:
    """Copy the strict lower triangle of the square A onto its upper, in place, a panel at a time."""
    n = A.shape[0]
    for j0 in range(0, n, step):
        j1 = min(j0 + step, n)
        D = A[j0:j1, j0:j1]
        il = np.tril_indices(j1 - j0, -1)
        D[il[1], il[0]] = D[il]
        A[j0:j1, j1:] = A[j1:, j0:j1].T


def inverse_in_place(g: Gram, Lrest: np.ndarray, reml: bool) -> np.ndarray:
    """The symmetric inverse of the leading block of L L' over the rest columns (and X's when ``reml``): one dpotri
    on the whole factor in place (the factor is not used after), then the trailing rows taken out by the
    Schur complement of the inverse, C_AA - C_AB C_BB^-1 C_BA."""
    m = g.qR + (g.p if reml else 0)
    N = Lrest.shape[0]
    if m == 0:
        return np.zeros((0, 0))
    if not np.all(np.diagonal(Lrest)[m:] > 0):  # a perfect fit (r = 0): invert a copy of the leading block
        return _sym_inverse(np.array(Lrest[:m, :m]))
    C = _sym_inverse(Lrest)
    if m == N:
        return C
    CAB = C[:m, m:]
    Y = np.linalg.solve(C[m:, m:], CAB.T)
    out = C[:m, :m]
    for r0 in range(0, m, 64):  # by row panels: no second m x m array
        out[r0 : r0 + 64] -= CAB[r0 : r0 + 64] @ Y
    if not C.flags.c_contiguous:
        return np.ascontiguousarray(out)
    flat = C.reshape(-1)  # the m x m block moved to the front of the buffer, row by row: contiguous, no copy
    for i in range(1, m):
        flat[i * m : (i + 1) * m] = flat[i * N : i * N + m]
    return flat[: m * m].reshape(m, m)


def _sym_inverse(L: np.ndarray) -> np.ndarray:
    """(L L')^-1, full and symmetric, computed in L's memory when L is C-ordered (its transpose is Fortran)."""
    if L.shape[0] <= 2 or not L.flags.c_contiguous:
        Li = np.linalg.inv(np.tril(L))
        return Li.T @ Li
    inv, info = sla.lapack.dpotri(L.T, lower=0, overwrite_c=1)  # U = L' in Fortran order
    if info != 0:
        Li = np.linalg.inv(np.tril(L))
        return Li.T @ Li
    C = inv.T  # the lower triangle of C holds (L L')^-1
    symmetrize_lower(C)
    return C
