"""The linear mixed-model core: Gram matrix, blocked Cholesky, profiled ML/REML, optimizer, results.

The model is y = X beta + Z b + e with b = Lambda(theta) u, u ~ N(0, sigma^2 I), e ~ N(0, sigma^2 I)
(Bates, Maechler, Bolker & Walker 2015, sections 2-3). For each theta the symmetric matrix

    Omega = [[Lambda'Z'Z Lambda + I, Lambda'Z'X, Lambda'Z'y],
             [X'Z Lambda,            X'X,        X'y       ],
             [y'Z Lambda,            y'X,        y'y       ]]

is factored as L L'. The profiled deviance is read off the factor: the log-determinant of its Z block,
that of its X block (REML) and the penalized residual sum of squares r^2, which is the square of the
last diagonal entry (y is kept as the last column). Z's columns are ordered by blocks, one block per
grouping factor, the factor with the most levels first; that block's part of Omega is block diagonal,
so its factor costs O(levels), and everything after it is a small dense Schur complement
(the layout of MixedModels.jl; Bates, Alday & Kokandakar 2025).

No n x n matrix is formed on this path. The seed's dense formulation (V = sigma^2 (Z Lambda Lambda'Z' + I))
is kept as ``method="dense"`` for small data: it teaches the idea and the tests check one against the other.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from mmcli.errors import DataError, ModelError


class _LazyModule:
    """A module imported on first use: scipy.linalg and scipy.sparse cost a fifth of a second to import, and
    a model with one grouping factor needs neither (numpy's LAPACK does its few small factorizations)."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str):  # type: ignore[no-untyped-def]
        import importlib

        return getattr(importlib.import_module(self._name), attr)


if TYPE_CHECKING:
    import scipy.linalg as sla
    import scipy.sparse as sp
else:
    sla = _LazyModule("scipy.linalg")
    sp = _LazyModule("scipy.sparse")

LOG2PI = math.log(2.0 * math.pi)
SINGULAR_TOL = 1e-4  # lme4's isSingular(tol = 1e-4) on the diagonal entries of theta
DENSE_MAX_ROWS = 5000  # the seed formulation holds an n x n matrix


# --------------------------------------------------------------------------------------------------
# Model description
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ReTerm:
    """One random-effects term, such as ``(1 + Days | Subject)``.

    ``Z`` is n x (nlevels * p) with columns level-major: level j owns columns j*p .. j*p + p - 1.
    ``indicator`` says that every row is nonzero in one level only (a grouping factor), so that Z'Z is
    block diagonal by level. A smooth's random part (one variance for many columns) is not an indicator term.
    ``correlated=False`` gives a diagonal template (no correlation parameters).
    """

    group: str
    names: tuple[str, ...]
    levels: tuple[str, ...]
    Z: sp.csc_matrix | None = None
    correlated: bool = True
    indicator: bool = True
    codes: np.ndarray | None = None  # indicator terms: the level of each row ...
    T: np.ndarray | None = None  # ... and the row's p template columns (Z is then built only if needed)

    def zmat(self) -> sp.csc_matrix:
        if self.Z is not None:
            return self.Z
        assert self.codes is not None and self.T is not None
        return _indicator_z(self.codes, self.T, self.nlevels)

    @property
    def p(self) -> int:
        return len(self.names)

    @property
    def nlevels(self) -> int:
        return len(self.levels)

    @property
    def ntheta(self) -> int:
        return self.p * (self.p + 1) // 2 if self.correlated else self.p

    def template_positions(self) -> list[tuple[int, int]]:
        """(row, col) of each theta entry in the p x p lower-triangular template, column by column."""
        if not self.correlated:
            return [(i, i) for i in range(self.p)]
        return [(i, j) for j in range(self.p) for i in range(j, self.p)]


def indicator_term(group: str, names: Sequence[str], codes: np.ndarray, levels: Sequence[str], T: np.ndarray) -> ReTerm:
    """A grouping-factor term from level codes (n,) and the per-row template columns T (n, p)."""
    n = codes.shape[0]
    T = np.asarray(T, dtype=float).reshape(n, -1)
    return ReTerm(group=group, names=tuple(names), levels=tuple(levels), codes=np.asarray(codes), T=T, indicator=True)


def _indicator_z(codes: np.ndarray, T: np.ndarray, nlevels: int) -> sp.csc_matrix:
    """Z of an indicator term: row i holds T[i] in the columns of level codes[i] (level-major)."""
    n, p = T.shape
    indptr = np.arange(0, n * p + 1, p)
    indices = (codes[:, None] * p + np.arange(p)[None, :]).ravel()
    return sp.csr_matrix((T.ravel(), indices, indptr), shape=(n, nlevels * p)).tocsc()


@dataclass(frozen=True)
class OptimizerRecord:
    name: str
    evaluations: int
    message: str
    theta_start: tuple[float, ...]
    theta_end: tuple[float, ...]
    seconds: float


@dataclass(frozen=True, eq=False)
class LmmFit:
    """Everything a fitted LMM reports. Built once by :func:`fit_lmm`."""

    reml: bool
    n: int
    terms: tuple[ReTerm, ...]
    xnames: tuple[str, ...]
    theta: np.ndarray
    sigma: float
    beta: np.ndarray
    vcov: np.ndarray
    objective: float  # -2 log-likelihood (ML) or the REML criterion
    loglik: float
    npar: int
    ranef: list[np.ndarray]  # per term, (nlevels, p): conditional modes b
    cond_sd: list[np.ndarray]  # per term, (nlevels, p): conditional standard deviations
    cond_cov: list[np.ndarray]  # per term, (nlevels, p, p)
    fitted: np.ndarray
    residuals: np.ndarray
    converged: bool
    optimizer: OptimizerRecord
    dropped_columns: tuple[str, ...] = ()
    lower: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def aic(self) -> float:
        return -2.0 * self.loglik + 2.0 * self.npar

    @property
    def bic(self) -> float:
        return -2.0 * self.loglik + math.log(self.n) * self.npar

    @property
    def df_resid(self) -> int:
        return self.n - self.npar

    @property
    def singular(self) -> bool:
        diag = self.lower == 0.0
        return bool(np.any(self.theta[diag] < SINGULAR_TOL))

    def term_covariances(self) -> list[np.ndarray]:
        """sigma^2 Lambda_k Lambda_k' per term: the covariance matrix of one level's random effects."""
        out = []
        for T in _templates(self.terms, self.theta):
            out.append(self.sigma**2 * (T @ T.T))
        return out


# --------------------------------------------------------------------------------------------------
# theta -> templates
# --------------------------------------------------------------------------------------------------


def _lower_bounds(terms: Sequence[ReTerm]) -> np.ndarray:
    lb: list[float] = []
    for t in terms:
        lb += [0.0 if i == j else -np.inf for i, j in t.template_positions()]
    return np.array(lb)


def _start(terms: Sequence[ReTerm]) -> np.ndarray:
    th: list[float] = []
    for t in terms:
        th += [1.0 if i == j else 0.0 for i, j in t.template_positions()]
    return np.array(th)


def _templates(terms: Sequence[ReTerm], theta: np.ndarray) -> list[np.ndarray]:
    out, k = [], 0
    for t in terms:
        T = np.zeros((t.p, t.p))
        for i, j in t.template_positions():
            T[i, j] = theta[k]
            k += 1
        out.append(T)
    return out


class _Block:
    """Terms sharing one grouping factor, amalgamated (MixedModels.jl): a pb x pb block template per level.
    Indicator blocks keep the level codes and template columns; Z (n x nlevels*p) is built on first use."""

    def __init__(self, terms, nlevels, p, indicator, offsets, codes=None, T=None, Z=None):  # type: ignore[no-untyped-def]
        self.terms: tuple[int, ...] = terms  # indices into the model's terms
        self.nlevels: int = nlevels
        self.p: int = p
        self.indicator: bool = indicator
        self.offsets: tuple[int, ...] = offsets  # start of each term's columns inside the block template
        self.codes, self.T, self._Z = codes, T, Z

    @property
    def Z(self) -> sp.csc_matrix:
        if self._Z is None:
            self._Z = _indicator_z(self.codes, self.T, self.nlevels)
        return self._Z


def _make_blocks(terms: Sequence[ReTerm]) -> list[_Block]:
    """Amalgamate indicator terms on the same factor; order blocks by decreasing number of levels."""
    groups: dict[tuple, list[int]] = {}
    for i, t in enumerate(terms):
        key = ("ind", t.group, t.levels) if t.indicator else ("gen", i)
        groups.setdefault(key, []).append(i)
    blocks = []
    for idx in groups.values():
        ts = [terms[i] for i in idx]
        nl = ts[0].nlevels
        p = sum(t.p for t in ts)
        offsets = tuple(int(x) for x in np.cumsum([0] + [t.p for t in ts[:-1]]))
        if ts[0].indicator and all(t.codes is not None for t in ts):
            T = ts[0].T if len(ts) == 1 else np.column_stack([t.T for t in ts if t.T is not None])
            blocks.append(_Block(tuple(idx), nl, p, True, offsets, codes=ts[0].codes, T=T))
        else:
            blocks.append(_Block(tuple(idx), nl, p, ts[0].indicator, offsets, Z=ts[0].zmat().tocsc()))
    # the indicator block with most levels first; the order of the rest does not change the result
    blocks.sort(key=lambda b: (not b.indicator, -b.nlevels * b.p))
    return blocks


# --------------------------------------------------------------------------------------------------
# The blocked Cholesky of Omega
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Factor:
    """The pieces of L for one theta (see the module docstring)."""

    L00: np.ndarray  # (nl0, p0, p0) lower Cholesky factors of the first block, per level
    L00inv: np.ndarray  # (nl0, p0, p0)
    LR0: sp.csr_matrix | None  # qR x q0
    LX0: np.ndarray  # (p+1) x q0 (the last row belongs to y)
    Lrest: np.ndarray  # (qR + p + 1) square lower factor of the Schur complement
    logdetZ: float  # log |L_ZZ|^2
    logdetX: float  # log |L_XX|^2
    pwrss: float  # r^2


class _Problem:
    """The fixed parts of the Gram matrix of [Z X y], formed once; :meth:`factor` per theta."""

    def __init__(self, X: np.ndarray, y: np.ndarray, terms: Sequence[ReTerm]):
        """X and y are read where they are (views are fine): no copy of either is made."""
        self.terms = list(terms)
        self.n, self.p = X.shape
        self.X, self.y = X, y
        self.blocks = _make_blocks(terms)
        XtX = X.T @ X
        Xty = X.T @ y
        self.AXX = np.block([[XtX, Xty[:, None]], [Xty[None, :], np.array([[y @ y]])]])
        first = self.blocks[0] if self.blocks and self.blocks[0].indicator else None
        rest = self.blocks[1:] if first is not None else self.blocks
        self.first, self.rest = first, rest
        if first is not None:
            nl0 = first.nlevels
            self.A00, self.AX0 = _indicator_grams(first.codes, first.T, nl0, X, y)
        else:
            self.A00 = np.zeros((0, 0, 0))
            self.AX0 = np.zeros((self.p + 1, 0))
        self.qR = sum(b.nlevels * b.p for b in rest)
        if rest:
            ZR = sp.hstack([b.Z for b in rest]).tocsc()
            self.ARR = np.asarray((ZR.T @ ZR).todense())
            self.AXR = np.vstack([np.asarray((ZR.T @ X).T).reshape(self.p, -1), ZR.T @ y])  # (p+1) x qR
            self.AR0 = (ZR.T @ first.Z).tocsr() if first is not None else None
        else:
            self.ARR = np.zeros((0, 0))
            self.AXR = np.zeros((self.p + 1, 0))
            self.AR0 = None
        # theta positions inside each block's template
        self.block_maps = []
        k_of_term = np.cumsum([0] + [t.ntheta for t in self.terms])
        for b in self.blocks:
            rows, cols, ks = [], [], []
            for ti, off in zip(b.terms, b.offsets):
                for m, (i, j) in enumerate(self.terms[ti].template_positions()):
                    rows.append(off + i)
                    cols.append(off + j)
                    ks.append(k_of_term[ti] + m)
            self.block_maps.append((np.array(rows), np.array(cols), np.array(ks)))
        self._lambda_rest_pattern()
        self.rest_scalar = all(b.p == 1 for b in self.rest)
        self._pairs_pattern()

    def _lambda_rest_pattern(self) -> None:
        """The sparsity pattern of Lambda over the rest blocks (block diagonal kron(I, T_b)), built once."""
        rows, cols, src = [], [], []
        off, toff = 0, 0
        for b in self.rest:
            p = b.p
            ii, jj = np.tril_indices(p)
            lev = np.arange(b.nlevels)
            rows.append((off + lev[:, None] * p + ii[None, :]).ravel())
            cols.append((off + lev[:, None] * p + jj[None, :]).ravel())
            src.append(np.tile(toff + ii * p + jj, b.nlevels))
            off += b.nlevels * p
            toff += p * p
        if rows:
            r, c, s = np.concatenate(rows), np.concatenate(cols), np.concatenate(src)
            order = np.lexsort((c, r))
            self.LR_rows, self.LR_cols, self.LR_src = r[order], c[order], s[order]
        else:
            self.LR_rows = self.LR_cols = self.LR_src = np.zeros(0, dtype=int)

    def block_templates(self, theta: np.ndarray) -> list[np.ndarray]:
        out = []
        for b, (r, c, k) in zip(self.blocks, self.block_maps):
            T = np.zeros((b.p, b.p))
            T[r, c] = theta[k]
            out.append(T)
        return out

    def lambda_rest(self, templates: list[np.ndarray]) -> sp.csr_matrix:
        flat = np.concatenate([T.ravel() for T in templates]) if templates else np.zeros(0)
        return sp.csr_matrix((flat[self.LR_src], (self.LR_rows, self.LR_cols)), shape=(self.qR, self.qR))

    def factor(self, theta: np.ndarray) -> _Factor:
        """Factor Omega(theta) = L L' blockwise (Bates et al. 2015, eq. 18; MixedModels.jl's blocked layout)."""
        Ts = self.block_templates(theta)
        p1 = self.p + 1
        if self.first is not None:
            T0 = Ts[0]
            nl0, p0 = self.first.nlevels, self.first.p
            # first block: Lambda_0' A00 Lambda_0 + I per level, then batched Cholesky
            M = np.einsum("ji,ljk,km->lim", T0, self.A00, T0, optimize=True)
            M[:, np.arange(p0), np.arange(p0)] += 1.0
            if p0 == 1:
                L00 = np.sqrt(M)
                L00inv = 1.0 / L00
            else:
                L00 = np.linalg.cholesky(M)
                L00inv = np.linalg.inv(L00)
            logdet0 = 2.0 * float(np.sum(np.log(np.diagonal(L00, axis1=1, axis2=2))))
            # [X y] rows: (A_X0 Lambda_0) L00^{-T}
            AXL = (self.AX0.reshape(p1, nl0, p0) @ T0).reshape(p1, nl0, p0)
            LX0 = np.einsum("alj,lkj->alk", AXL, L00inv).reshape(p1, nl0 * p0)
        else:
            nl0 = p0 = 0
            L00 = L00inv = np.zeros((0, 0, 0))
            LX0 = np.zeros((p1, 0))
            logdet0 = 0.0
        qR = self.qR
        S = np.empty((qR + p1, qR + p1))
        LR0 = None
        if qR:
            LamR = self.lambda_rest(Ts[1:] if self.first is not None else Ts)
            S[:qR, :qR] = LamR.T @ (LamR.T @ self.ARR).T
            S[np.arange(qR), np.arange(qR)] += 1.0
            XR = self.AXR @ LamR  # (p+1) x qR
            S[qR:, :qR] = XR
            if self.AR0 is not None:
                Linv_blocks = sp.bsr_matrix(
                    (np.ascontiguousarray(L00inv.transpose(0, 2, 1)), np.arange(nl0), np.arange(nl0 + 1)),
                    shape=(nl0 * p0, nl0 * p0),
                )
                Lam0 = sp.bsr_matrix(
                    (np.broadcast_to(T0, (nl0, p0, p0)).copy(), np.arange(nl0), np.arange(nl0 + 1)),
                    shape=(nl0 * p0, nl0 * p0),
                )
                LR0 = (LamR.T @ self.AR0 @ Lam0 @ Linv_blocks).tocsr()
                S[:qR, :qR] -= (LR0 @ LR0.T).toarray()
                S[qR:, :qR] -= np.asarray(LR0 @ LX0.T).T
        S[qR:, qR:] = self.AXX - LX0 @ LX0.T
        try:
            if qR == 0:
                Lrest = np.linalg.cholesky(S)
            else:
                Lrest = sla.cholesky(S, lower=True, check_finite=False, overwrite_a=True)
        except np.linalg.LinAlgError:
            Lrest = _cholesky_semidefinite(S, qR)
        d = np.diagonal(Lrest)
        logdetR = 2.0 * float(np.sum(np.log(d[:qR]))) if qR else 0.0
        dX = d[qR : qR + self.p]
        logdetX = 2.0 * float(np.sum(np.log(dX))) if self.p else 0.0
        pwrss = float(d[-1] ** 2)
        return _Factor(L00, L00inv, LR0, LX0, Lrest, logdet0 + logdetR, logdetX, pwrss)

    def objective(self, theta: np.ndarray, reml: bool) -> float:
        """-2 log L(theta) (ML) or the REML criterion, profiled over beta and sigma (Bates et al. 2015, eqs. 34, 41)."""
        if self.pairs is None:
            f = self.factor(theta)
            return _criterion(f, self.n, self.p, reml)
        logdetZ, logdetX, pwrss = self.quick_factor(theta)
        return _criterion_parts(logdetZ, logdetX, pwrss, self.n, self.p, reml)

    def _pairs_pattern(self, limit: int = 40_000_000) -> None:
        """For the Schur complement of the first block, precompute the map from its per-level weights W_j
        to the entries of A_R0 W A_R0' (one sparse matrix), so that each theta costs one sparse product
        and no sparse-sparse multiplication. Skipped when the pattern would be too large."""
        self.pairs = None
        if self.first is None or self.AR0 is None or self.qR == 0:
            return
        p0 = self.first.p
        A = self.AR0.tocsc()
        A.sort_indices()
        nnz_lev = np.diff(A.indptr[::p0]) if p0 > 1 else np.diff(A.indptr)
        total = int(np.sum(nnz_lev.astype(np.int64) ** 2))
        if total > limit:
            return
        col = np.repeat(np.arange(A.shape[1], dtype=np.int32), np.diff(A.indptr))
        lev = col // p0
        a = col % p0
        start = A.indptr[::p0][:-1] if p0 > 1 else A.indptr[:-1]
        reps = nnz_lev[lev]
        E = np.repeat(np.arange(A.nnz, dtype=np.int32), reps)
        run_start = np.repeat(np.cumsum(reps) - reps, reps)
        F = (start[lev[E]] + (np.arange(E.size) - run_start)).astype(np.int32)
        del run_start
        # only the lower triangle is needed (the Cholesky reads nothing else)
        low = A.indices[E] >= A.indices[F]
        E, F = E[low], F[low]
        del low
        vals = A.data[E] * A.data[F]
        target = A.indices[E].astype(np.int64) * self.qR + A.indices[F]
        widx = lev[E] * p0 * p0 + a[E] * p0 + a[F]
        del E, F
        nW = self.first.nlevels * p0 * p0
        if self.qR <= 3000:  # rows indexed by position in the dense block directly, then compacted
            pairs = sp.csr_matrix((vals, (target, widx)), shape=(self.qR * self.qR, nW))
            nz = np.flatnonzero(np.diff(pairs.indptr))
            self.pairs = pairs[nz]
            self.pair_targets = nz
        else:  # a qR^2-row matrix would be too large even empty: number the targets first
            uniq, rows = np.unique(target, return_inverse=True)
            self.pairs = sp.csr_matrix((vals, (rows.ravel(), widx)), shape=(uniq.size, nW))
            self.pair_targets = uniq

    def quick_factor(self, theta: np.ndarray) -> tuple[float, float, float]:
        """The three numbers of the criterion without forming L_R0: with W = Lambda_0 M_00^{-1} Lambda_0'
        (per level), the Schur complement is Lambda_R'(A_RR - A_R0 W A_R0')Lambda_R + I and so on."""
        Ts = self.block_templates(theta)
        T0 = Ts[0]
        assert self.first is not None
        nl0, p0 = self.first.nlevels, self.first.p
        p1, qR = self.p + 1, self.qR
        M = np.einsum("ji,ljk,km->lim", T0, self.A00, T0, optimize=True)
        M[:, np.arange(p0), np.arange(p0)] += 1.0
        if p0 == 1:
            logdet0 = float(np.sum(np.log(M[:, 0, 0])))
            W = (T0[0, 0] ** 2 / M[:, 0, 0]).reshape(nl0, 1, 1)
        else:
            L00 = np.linalg.cholesky(M)
            logdet0 = 2.0 * float(np.sum(np.log(np.diagonal(L00, axis1=1, axis2=2))))
            W = T0 @ np.linalg.solve(M, np.broadcast_to(T0.T, M.shape))
        AXW = np.einsum("alj,ljk->alk", self.AX0.reshape(p1, nl0, p0), W).reshape(p1, nl0 * p0)
        KXR = self.AXR - np.asarray((self.AR0 @ AXW.T).T)
        KXX = self.AXX - AXW @ self.AX0.T
        K = self.ARR.copy()
        K.ravel()[self.pair_targets] -= self.pairs @ W.ravel()
        S = np.empty((qR + p1, qR + p1))
        if self.rest_scalar:
            lam = self.rest_lambda_diag(Ts[1:])
            np.multiply(K, lam[:, None], out=S[:qR, :qR])
            S[:qR, :qR] *= lam[None, :]
            S[qR:, :qR] = KXR * lam
        else:
            LamR = self.lambda_rest(Ts[1:])
            K = np.tril(K) + np.tril(K, -1).T  # the pairs updated the lower triangle only
            S[:qR, :qR] = LamR.T @ (LamR.T @ K).T
            S[qR:, :qR] = np.asarray((LamR.T @ KXR.T).T)
        S[np.arange(qR), np.arange(qR)] += 1.0
        S[qR:, qR:] = KXX
        try:
            L = sla.cholesky(S, lower=True, check_finite=False, overwrite_a=True)
        except np.linalg.LinAlgError:
            L = _cholesky_semidefinite(S, qR)
        d = np.diagonal(L)
        logdetR = 2.0 * float(np.sum(np.log(d[:qR])))
        logdetX = 2.0 * float(np.sum(np.log(d[qR : qR + self.p]))) if self.p else 0.0
        return logdet0 + logdetR, logdetX, float(d[-1] ** 2)

    def rest_lambda_diag(self, templates: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([np.full(b.nlevels, T[0, 0]) for b, T in zip(self.rest, templates)])


def _criterion(f: _Factor, n: int, p: int, reml: bool) -> float:
    return _criterion_parts(f.logdetZ, f.logdetX, f.pwrss, n, p, reml)


def _criterion_parts(logdetZ: float, logdetX: float, pwrss: float, n: int, p: int, reml: bool) -> float:
    """ML: log|L_Z|^2 + n (1 + log(2 pi r^2 / n));  REML adds log|L_X|^2 and uses n - p (DESIGN.md 1)."""
    if not np.isfinite(pwrss) or pwrss <= 0.0:
        return np.inf
    if reml:
        nmp = n - p
        return logdetZ + logdetX + nmp * (1.0 + LOG2PI + math.log(pwrss / nmp))
    return logdetZ + n * (1.0 + LOG2PI + math.log(pwrss / n))


def _cholesky_semidefinite(S: np.ndarray, qR: int) -> np.ndarray:
    """A Cholesky factor when the y row makes S only semidefinite (a perfect fit): r = 0 ends the search."""
    L = np.linalg.cholesky(S[:-1, :-1])
    Ly = np.linalg.solve(L, S[-1, :-1])
    r2 = max(S[-1, -1] - Ly @ Ly, 0.0)
    out = np.zeros_like(S)
    out[:-1, :-1] = L
    out[-1, :-1] = Ly
    out[-1, -1] = math.sqrt(r2)
    return out


def _indicator_grams(
    codes: np.ndarray, T: np.ndarray, nl: int, X: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For an indicator block, the diagonal blocks of Z'Z as (nl, p, p) and [X y]'Z as (p+1, nl*p), by
    weighted counts over the level codes (no Z is formed)."""
    p = T.shape[1]
    A = np.zeros((nl, p, p))
    for a in range(p):
        for b in range(a, p):
            w = None if p == 1 and np.all(T[:, 0] == 1.0) else T[:, a] * T[:, b]
            s = np.bincount(codes, weights=w, minlength=nl)
            A[:, a, b] = s
            A[:, b, a] = s
    p1 = X.shape[1] + 1
    AX = np.empty((p1, nl, p))
    ones = p == 1 and bool(np.all(T[:, 0] == 1.0))
    for c in range(p1):
        col = X[:, c] if c < p1 - 1 else y
        for a in range(p):
            w = col if ones else col * T[:, a]
            AX[c, :, a] = np.bincount(codes, weights=w, minlength=nl)
    return A, AX.reshape(p1, nl * p)


# --------------------------------------------------------------------------------------------------
# The seed's dense formulation
# --------------------------------------------------------------------------------------------------


class _DenseProblem:
    """V = sigma^2 (Z Lambda Lambda'Z' + I): Cholesky of V, whitened GLS (the seed's llMixed, profiled)."""

    def __init__(self, X: np.ndarray, y: np.ndarray, terms: Sequence[ReTerm]):
        self.X, self.y, self.terms = X, y, list(terms)
        self.n, self.p = X.shape
        self.Z = sp.hstack([t.zmat() for t in terms]).toarray() if terms else np.zeros((self.n, 0))

    def lam(self, theta: np.ndarray) -> np.ndarray:
        mats = [np.kron(np.eye(t.nlevels), T) for t, T in zip(self.terms, _templates(self.terms, theta))]
        return sla.block_diag(*mats) if mats else np.zeros((0, 0))

    def pieces(self, theta: np.ndarray):
        ZL = self.Z @ self.lam(theta)
        V0 = ZL @ ZL.T + np.eye(self.n)
        L = np.linalg.cholesky(V0)
        Xw = sla.solve_triangular(L, self.X, lower=True)
        yw = sla.solve_triangular(L, self.y, lower=True)
        beta, *_ = np.linalg.lstsq(Xw, yw, rcond=None)
        r = yw - Xw @ beta
        return L, Xw, beta, float(r @ r)

    def objective(self, theta: np.ndarray, reml: bool) -> float:
        L, Xw, _, r2 = self.pieces(theta)
        if r2 <= 0:
            return np.inf
        logdetV = 2.0 * float(np.sum(np.log(np.diag(L))))
        if reml:
            nmp = self.n - self.p
            _, logdetXVX = np.linalg.slogdet(Xw.T @ Xw)
            return logdetV + logdetXVX + nmp * (1.0 + LOG2PI + math.log(r2 / nmp))
        return logdetV + self.n * (1.0 + LOG2PI + math.log(r2 / self.n))


# --------------------------------------------------------------------------------------------------
# Optimizer
# --------------------------------------------------------------------------------------------------


def _optimize(
    fn: Callable[[np.ndarray], float],
    x0: np.ndarray,
    lower: np.ndarray,
    progress: Callable[[int, float], None] | None = None,
    polish: bool = True,
) -> tuple[np.ndarray, float, OptimizerRecord, bool]:
    """Bound-constrained BOBYQA (Powell 2009) via NLopt with lme4's nloptwrap settings (ftol_abs = xtol_abs
    = 1e-8, maxeval = 1e5). With ``polish``, a second pass restarts from the optimum with a small step and
    tolerances of 1e-10: a guard against an early stop on a flat surface, which the caller asks for when an
    evaluation is cheap (the decision depends on the problem's size only, so results are reproducible)."""
    import nlopt

    t0 = time.perf_counter()
    count = [0]
    best = [np.inf]

    def f(x: np.ndarray, grad: np.ndarray) -> float:
        count[0] += 1
        v = fn(np.asarray(x))
        if not np.isfinite(v):
            v = 1e300
        if v < best[0]:
            best[0] = v
        if progress is not None:
            progress(count[0], best[0])
        return v

    k = x0.size
    xs, fx, msg, ok = x0.copy(), np.inf, "", True
    for _pass in range(2):
        opt = nlopt.opt(nlopt.LN_BOBYQA, k)
        opt.set_min_objective(f)
        opt.set_lower_bounds(np.where(np.isfinite(lower), lower, -1e300))
        tol = 1e-10 if _pass else 1e-8  # lme4's nloptwrap settings, then tighter when polishing
        opt.set_ftol_abs(tol)
        opt.set_xtol_abs(tol)
        opt.set_maxeval(100000)
        step = np.maximum(np.abs(xs) * 0.02, 0.005) if _pass else np.full(k, 0.75)
        opt.set_initial_step(step)
        try:
            xn = opt.optimize(xs)
            fn_new = opt.last_optimum_value()
            res = opt.last_optimize_result()
        except (nlopt.RoundoffLimited, RuntimeError, ValueError) as e:  # keep the best point seen
            if _pass:
                break  # the polishing pass could not improve on a converged first pass: that stands
            xn, fn_new, res = xs, fx, -1
            msg = f"NLopt stopped: {e}"
        improved = fx - fn_new
        xs, fx = (xn, fn_new) if fn_new <= fx else (xs, fx)
        msg = _NLOPT_MESSAGES.get(res, msg or f"NLopt code {res}")
        if _pass == 0 or ok:
            ok = res > 0 and res != nlopt.MAXEVAL_REACHED
        if _pass and improved < 1e-8:
            break
        if not polish:
            break
    rec = OptimizerRecord(
        "NLopt LN_BOBYQA",
        count[0],
        msg,
        tuple(map(float, x0)),
        tuple(map(float, xs)),
        time.perf_counter() - t0,
    )
    return np.asarray(xs), float(fx), rec, ok


_NLOPT_MESSAGES = {
    1: "success",
    2: "stopval reached",
    3: "ftol reached (change in deviance below tolerance)",
    4: "xtol reached (change in theta below tolerance)",
    5: "maximum number of evaluations reached",
    6: "maximum time reached",
    -1: "failure",
    -4: "stopped by roundoff",
}


# --------------------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------------------


def aliased_columns(X: np.ndarray, tol: float = 1e-7, block: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    keep, drop, _ = _aliased_columns_r(X, tol, block)
    return keep, drop


def _aliased_columns_r(
    X: np.ndarray, tol: float = 1e-7, block: int = 65536
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Columns of X to keep and to drop as linear combinations of earlier ones (lme4's chkRank.drop.cols,
    which uses R's qr(): LINPACK's limited pivoting moves a column to the end when what is left of it after
    the earlier columns is below tol times its own norm, so the earlier of two aliased columns is kept).
    The R factor is accumulated over row blocks (TSQR), so no copy of X is made; the decisions on R equal
    those on X, since the row rotations change no column norm or inner product."""
    n, p = X.shape
    if p == 0:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int), np.zeros((0, 0))
    scale = np.sqrt(np.einsum("ij,ij->j", X, X))
    scale[scale == 0] = 1.0
    R: np.ndarray = np.zeros((0, p))
    for start in range(0, n, block):
        R = np.asarray(np.linalg.qr(np.vstack([R, X[start : start + block] / scale]), mode="r"))
    keep = _independent_in_order(R, tol)
    drop = np.setdiff1d(np.arange(p), keep)
    return keep, drop, R * scale  # R of X itself: X / scale = Q R, so X = Q (R * scale)


def check_terms(terms: Sequence[ReTerm], n: int) -> None:
    """lme4's checks: every grouping factor has >= 2 levels and fewer levels than observations."""
    for t in terms:
        if not t.indicator:
            continue
        if t.nlevels < 2:
            raise ModelError(
                f"Grouping factor '{t.group}' has {t.nlevels} level; a random effect needs at least 2 levels."
            )
        if t.nlevels >= n:
            raise ModelError(
                f"Grouping factor '{t.group}' has as many levels ({t.nlevels}) as observations ({n}); "
                "its variance cannot be told apart from the residual variance."
            )
        if t.nlevels * t.p >= n:
            raise ModelError(
                f"The term ({' + '.join(t.names)} | {t.group}) has {t.nlevels * t.p} random effects for {n} "
                "observations; the variance parameters cannot be identified. Simplify the term."
            )


def fit_lmm(
    X: np.ndarray,
    y: np.ndarray,
    terms: Sequence[ReTerm],
    *,
    reml: bool = False,
    xnames: Sequence[str] | None = None,
    method: str = "fast",
    progress: Callable[[int, float], None] | None = None,
    XY: np.ndarray | None = None,
    overwrite_y: bool = False,
) -> LmmFit:
    """Fit y = X beta + Z b + e by ML or REML; theta by BOBYQA on the profiled criterion, then beta,
    sigma, vcov, conditional modes and standard deviations from the factor at the optimum
    (Bates et al. 2015, sections 3.4-3.6).

    ``XY``, when given, is [X y] in one array and X, y are ignored: the fit then reads X in place (for large
    data, where a copy would matter). The criterion is computed for y0 = (y - X b0) / s, with b0 the least-
    squares coefficients and s the scale of y0: the likelihood is invariant to this, and the Gram matrix then
    holds no large entries that cancel (a response far from zero, or of magnitude 1e150, loses nothing).
    ``overwrite_y`` lets the fit store y0 in y's own memory."""
    if XY is not None:
        X, y = XY[:, :-1], XY[:, -1]
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    original_terms = list(terms)
    n = y.shape[0]
    if X.ndim != 2 or X.shape[0] != n:
        raise DataError("X and y have different numbers of rows.")
    names = list(xnames) if xnames is not None else [f"x{i}" for i in range(X.shape[1])]
    keep, drop, RX = _aliased_columns_r(X)
    dropped = [names[i] for i in drop]
    names = [names[i] for i in keep]
    check_terms(terms, n)
    p = keep.size
    if n - p <= 0 or (reml and n - p <= 0):
        raise ModelError(f"{n} observations are too few for {p} fixed effects.")
    if not terms:
        raise ModelError("The model has no random-effects term; use a linear model instead, or add (1 | group).")
    if drop.size:
        X = X[:, keep]
    # Reparametrize for conditioning; the likelihood is invariant (beta = M beta_w, and the REML criterion
    # shifts by 2 log|det M|). X's columns go to unit norm for the dense path, and X = Q R is replaced by its
    # Q when ill-conditioned (nearly collinear or wildly scaled columns); template columns far from unit
    # scale are divided by their RMS (theta, b and their covariances are mapped back at the end).
    M = _x_transform(X, RX[:, keep] if drop.size else RX, dense=method == "dense")
    if M is not None:
        X = X @ M
    terms, tscale = _scale_templates(terms)
    b0 = _least_squares(X, y)
    ys = y if overwrite_y and y.flags.writeable else y.copy()
    _subtract_xb(ys, X, b0)
    s = _response_scale(ys)
    if not 1e-153 < s < 1e153:  # sigma^2 and vcov must stay representable
        raise DataError(
            f"The response varies on a scale of {s:.3g}: its variance cannot be represented in double "
            "precision. Rescale the response (divide it by a power of ten) and fit again."
        )
    ys /= s
    if method == "dense":
        if n > DENSE_MAX_ROWS:
            raise ModelError(
                f"--method dense holds an n x n matrix and is limited to {DENSE_MAX_ROWS} rows; "
                f"these data have {n}. Use the default --method fast."
            )
        dense = _DenseProblem(X, ys, terms)
        crit = dense.objective
    elif method == "fast":
        prob = _Problem(X, ys, terms)
        crit = prob.objective
    else:
        raise ModelError(f"Unknown method '{method}': use fast or dense.")
    lower = _lower_bounds(terms)
    x0 = _start(terms)
    # polish when one evaluation is cheap: the dense part of the factor small, or few rows for --method dense
    cheap = (n <= 1000) if method == "dense" else (prob.qR <= 300)
    theta, fval, rec, ok = _optimize(lambda th: crit(th, reml), x0, lower, progress, polish=cheap)
    theta = np.where(np.abs(theta) < 1e-13, 0.0, theta)
    # a variance that the optimizer left a hair above its bound: on the bound if that is no worse (as lme4's
    # BOBYQA lands there exactly), so that a singular fit reports exactly zero
    for i in np.flatnonzero((lower == 0.0) & (theta > 0.0) & (theta < SINGULAR_TOL)):
        trial = theta.copy()
        trial[i] = 0.0
        f0 = crit(trial, reml)
        if f0 <= fval + 1e-10 * max(1.0, abs(fval)):
            theta, fval = trial, f0
    if method == "dense":
        fit = _results_dense(dense, theta, reml, s, names, dropped, rec, ok, lower, b0=b0)
    else:
        fit = _results(prob, theta, reml, s, names, dropped, rec, ok, lower, b0=b0)
    return _undo_transforms(fit, M, tscale, original_terms)


def _x_transform(X: np.ndarray, RX: np.ndarray, dense: bool) -> np.ndarray | None:
    """M with X M well conditioned, or None to use X as it is (no copy: the large-data path)."""
    p = X.shape[1]
    if p == 0:
        return None
    R = np.asarray(np.linalg.qr(RX, mode="r")) if RX.shape[0] != RX.shape[1] else RX
    d = np.abs(np.diag(R))
    if d.min() <= 0:
        return None
    cnorm = np.sqrt(np.sum(R * R, axis=0))
    Rs = R / cnorm
    cond = np.linalg.cond(Rs)
    if cond > 1e4:
        return np.linalg.inv(R)  # X R^{-1} has orthonormal columns
    if dense:
        return np.diag(1.0 / cnorm)
    return None


def _scale_templates(terms: Sequence[ReTerm]) -> tuple[list[ReTerm], list[np.ndarray | None]]:
    """Indicator terms whose template columns are far from unit scale (RMS outside [1e-2, 1e2], e.g. a slope
    in seconds) get those columns divided by their RMS, so that BOBYQA's start and steps suit them."""
    out: list[ReTerm] = []
    scales: list[np.ndarray | None] = []
    for t in terms:
        if not t.indicator or t.T is None or t.codes is None:
            out.append(t)
            scales.append(None)
            continue
        rms = np.sqrt(np.mean(t.T * t.T, axis=0))
        c = np.where((rms > 0) & ((rms < 1e-2) | (rms > 1e2)), rms, 1.0)
        if np.all(c == 1.0):
            out.append(t)
            scales.append(None)
            continue
        out.append(ReTerm(t.group, t.names, t.levels, None, t.correlated, True, t.codes, t.T / c))
        scales.append(c)
    return out, scales


def _undo_transforms(
    fit: LmmFit, M: np.ndarray | None, tscale: list[np.ndarray | None], terms: Sequence[ReTerm]
) -> LmmFit:
    """Back from the working parametrization: beta = M beta_w, vcov = M V M'; a scaled template
    Lambda_w = D Lambda gives theta_ij = theta_w,ij / c_i and b = b_w / c per column."""
    import dataclasses

    changes: dict = {"terms": tuple(terms)}
    if M is not None:
        changes["beta"] = M @ fit.beta
        changes["vcov"] = M @ fit.vcov @ M.T
        if fit.reml:
            shift = -2.0 * float(np.linalg.slogdet(M)[1])
            changes["objective"] = fit.objective + shift
            changes["loglik"] = -0.5 * (fit.objective + shift)
    if any(c is not None for c in tscale):
        theta = fit.theta.copy()
        ranef, cond_cov = list(fit.ranef), list(fit.cond_cov)
        k = 0
        for i, (t, c) in enumerate(zip(terms, tscale)):
            if c is not None:
                for m, (r, _col) in enumerate(t.template_positions()):
                    theta[k + m] /= c[r]
                ranef[i] = fit.ranef[i] / c
                cond_cov[i] = fit.cond_cov[i] / np.outer(c, c)
            k += t.ntheta
        cond_sd = [np.sqrt(np.maximum(np.diagonal(C, axis1=1, axis2=2), 0.0)) for C in cond_cov]
        changes.update(theta=theta, ranef=ranef, cond_cov=cond_cov, cond_sd=cond_sd)
    return dataclasses.replace(fit, **changes)


def _least_squares(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Rough least-squares coefficients from the small normal equations (column-scaled). Only used to
    centre y, so their accuracy does not matter: the fit is exactly invariant to them."""
    p = X.shape[1]
    if p == 0:
        return np.zeros(0)
    ymax = float(np.max(np.abs(y))) or 1.0
    c = np.sqrt(np.einsum("ij,ij->j", X, X))
    c[c == 0] = 1.0
    G = (X.T @ X) / np.outer(c, c)
    g = (X.T @ (y / ymax)) / c
    b, *_ = np.linalg.lstsq(G, g, rcond=None)
    return b / c * ymax


def _subtract_xb(y: np.ndarray, X: np.ndarray, b: np.ndarray, block: int = 65536) -> None:
    """y -= X b in place, in row blocks (no n-vector temporary)."""
    for start in range(0, y.size, block):
        y[start : start + block] -= X[start : start + block] @ b


def _independent_in_order(R: np.ndarray, tol: float) -> np.ndarray:
    """Columns of R kept in their order: a column whose residual after the kept ones is below tol times
    its own norm is aliased (modified Gram-Schmidt, twice, on the small p x p R)."""
    A = np.array(R, dtype=float)
    basis: list[np.ndarray] = []
    keep = []
    for j in range(A.shape[1]):
        v = A[:, j].copy()
        norm0 = float(np.sqrt(v @ v))
        if norm0 == 0.0:
            continue
        for _ in range(2):  # reorthogonalize: the decision rests on a small residual
            for q in basis:
                v -= (q @ v) * q
        nv = float(np.sqrt(v @ v))
        if nv > tol * norm0:
            basis.append(v / nv)
            keep.append(j)
    return np.array(keep, dtype=int)


def _inverse_from_cholesky(L: np.ndarray) -> np.ndarray:
    """(L L')^{-1} from the lower Cholesky factor L (LAPACK dpotri), symmetrized."""
    inv, info = sla.lapack.dpotri(L, lower=1)
    if info != 0:
        Li = sla.solve_triangular(L, np.eye(L.shape[0]), lower=True)
        return Li.T @ Li
    inv = np.tril(inv)
    return inv + np.tril(inv, -1).T


def _sparse_quadratic_blocks(H: sp.csc_matrix, M: np.ndarray, nl: int, p: int) -> np.ndarray:
    """For each level j (columns j*p .. j*p+p-1 of the sparse H): H_j' M H_j, as an (nl, p, p) array.
    M H is formed for a chunk of columns at a time (a sparse-dense product), then multiplied elementwise
    with H and summed by column: about nnz(H) * rows(M) operations and bounded memory."""
    H = H.tocsc()
    q = H.shape[1]
    out = np.zeros((nl, p, p))
    step = max(p, ((1 << 23) // max(M.shape[0], 1)) // p * p)
    for c0 in range(0, q, step):
        Hc = H[:, c0 : c0 + step]
        MH = np.asarray((Hc.T @ M).T)  # M symmetric: (H' M)' = M H
        for a in range(p):
            Ha = Hc[:, a::p]
            for b in range(p):
                v = np.asarray(Ha.multiply(MH[:, b::p]).sum(axis=0)).ravel()
                out[c0 // p : c0 // p + v.size, a, b] = v
    return out


def _response_scale(y: np.ndarray, block: int = 65536) -> float:
    """The standard deviation of y (its largest magnitude when constant), computed in blocks on y / max|y|
    so that neither huge nor tiny responses overflow and no copy of y is made."""
    if y.size == 0:
        return 1.0
    m = float(np.max(np.abs(y)))
    if not (m > 0 and np.isfinite(m)):
        return 1.0
    s1 = s2 = 0.0
    for start in range(0, y.size, block):
        v = y[start : start + block] / m
        s1 += float(v.sum())
        s2 += float(v @ v)
    mean = s1 / y.size
    var = max(s2 / y.size - mean * mean, 0.0)
    return m * math.sqrt(var) if var > 1e-24 else m


def _results(
    prob: _Problem,
    theta: np.ndarray,
    reml: bool,
    s: float,
    names: list[str],
    dropped: list[str],
    rec: OptimizerRecord,
    ok: bool,
    lower: np.ndarray,
    b0: np.ndarray | None = None,
) -> LmmFit:
    """Everything at theta-hat, for the problem in y0 = (y - X b0) / s, reported on y's own scale."""
    f = prob.factor(theta)
    n, p, qR = prob.n, prob.p, prob.qR
    objective_s = _criterion(f, n, p, reml)
    Lr = f.Lrest
    # --- beta, then u, by back-substitution through L' (the y row of L holds the right-hand side)
    LXX = Lr[qR : qR + p, qR : qR + p]
    ly = Lr[-1, :]
    beta = np.linalg.solve(LXX.T, ly[qR : qR + p]) if p else np.zeros(0)  # p x p triangular: small
    LRR = Lr[:qR, :qR]
    LXR = Lr[qR : qR + p, :qR]
    uR = sla.solve_triangular(LRR.T, ly[:qR] - LXR.T @ beta, lower=False) if qR else np.zeros(0)
    if prob.first is not None:
        nl0, p0 = prob.first.nlevels, prob.first.p
        rhs = f.LX0[-1, :] - f.LX0[:p, :].T @ beta
        if f.LR0 is not None:
            rhs = rhs - f.LR0.T @ uR
        u0 = np.einsum("lji,lj->li", f.L00inv, rhs.reshape(nl0, p0)).ravel()  # L00^{-T} rhs per level
    else:
        u0 = np.zeros(0)
    pw = f.pwrss
    denom = n - p if reml else n
    sigma_s = math.sqrt(pw / denom)
    # --- vcov(beta) = sigma^2 (L_XX L_XX')^{-1}
    LXXinv = np.linalg.inv(LXX) if p else np.zeros((0, 0))
    vcov = sigma_s**2 * (LXXinv.T @ LXXinv)
    # --- conditional covariance of u: diagonal blocks of (L_ZZ L_ZZ')^{-1}, block by block
    Ts = prob.block_templates(theta)
    cov_u_blocks: list[np.ndarray] = []  # per block, (nl, pb, pb)
    # S^{-1} = (L_RR L_RR')^{-1} from the factor (LAPACK potri): its diagonal blocks are the rest blocks'
    # conditional covariances, and with H = L_R0 L00^{-1} block 0's are L00^{-T}L00^{-1} + H_j' S^{-1} H_j
    Sinv = _inverse_from_cholesky(LRR) if qR else np.zeros((0, 0))
    if prob.first is not None:
        nl0, p0 = prob.first.nlevels, prob.first.p
        C0 = np.einsum("lki,lkj->lij", f.L00inv, f.L00inv)
        if qR and f.LR0 is not None:
            Linv_blocks = sp.bsr_matrix(
                (np.ascontiguousarray(f.L00inv), np.arange(nl0), np.arange(nl0 + 1)),
                shape=(nl0 * p0, nl0 * p0),
            )
            H = (f.LR0 @ Linv_blocks).tocsc()
            C0 += _sparse_quadratic_blocks(H, Sinv, nl0, p0)
        cov_u_blocks.append(C0)
    off = 0
    rest_blocks = prob.rest
    for b in rest_blocks:
        q = b.nlevels * b.p
        idx = off + np.arange(q).reshape(b.nlevels, b.p)
        cov_u_blocks.append(Sinv[idx[:, :, None], idx[:, None, :]])
        off += q
    # --- b = Lambda u per block, mapped back to terms
    u_blocks = []
    if prob.first is not None:
        u_blocks.append(u0.reshape(prob.first.nlevels, prob.first.p))
    off = 0
    for b in rest_blocks:
        q = b.nlevels * b.p
        u_blocks.append(uR[off : off + q].reshape(b.nlevels, b.p))
        off += q
    terms = prob.terms
    ranef: list[np.ndarray] = [np.zeros(0)] * len(terms)
    cond_cov: list[np.ndarray] = [np.zeros(0)] * len(terms)
    Zb = np.zeros(n)
    for b, T, ub, Cu in zip(prob.blocks, Ts, u_blocks, cov_u_blocks):
        bb = ub @ T.T  # b_level = T u_level
        Cb = np.einsum("ij,ljk,mk->lim", T, Cu, T) * sigma_s**2
        if b.indicator and b.codes is not None:  # Z b by level codes, without forming Z
            Zb += np.einsum("ij,ij->i", b.T, bb[b.codes]) if b.p > 1 else b.T[:, 0] * bb[b.codes, 0]
        else:
            Zb += b.Z @ bb.ravel()
        for ti, off0 in zip(b.terms, b.offsets):
            pt = terms[ti].p
            ranef[ti] = bb[:, off0 : off0 + pt] * s
            cond_cov[ti] = Cb[:, off0 : off0 + pt, off0 : off0 + pt] * s**2
    cond_sd = [np.sqrt(np.maximum(np.diagonal(C, axis1=1, axis2=2), 0.0)) for C in cond_cov]
    # fitted values and residuals on y's scale: resid = s (y0 - X beta - Z b), fitted = y - resid
    b0 = np.zeros(p) if b0 is None else b0
    fitted = prob.X @ beta
    fitted += Zb
    del Zb
    resid = prob.y - fitted
    resid *= s
    fitted *= s
    _subtract_xb(fitted, prob.X, -b0)
    npar = p + theta.size + 1
    # undo the scaling of y: sigma, beta, b scale by s; the criterion shifts by 2 n log s (ML) or 2 (n-p) log s
    nscale = (n - p) if reml else n
    objective = objective_s + 2.0 * nscale * math.log(s)
    return LmmFit(
        reml=reml,
        n=n,
        terms=tuple(terms),
        xnames=tuple(names),
        theta=theta,
        sigma=sigma_s * s,
        beta=beta * s + b0,
        vcov=vcov * s**2,
        objective=objective,
        loglik=-0.5 * objective,
        npar=npar,
        ranef=ranef,
        cond_sd=cond_sd,
        cond_cov=cond_cov,
        fitted=fitted,
        residuals=resid,
        converged=ok,
        optimizer=rec,
        dropped_columns=tuple(dropped),
        lower=lower,
    )


def _results_dense(
    dense: _DenseProblem,
    theta: np.ndarray,
    reml: bool,
    s: float,
    names: list[str],
    dropped: list[str],
    rec: OptimizerRecord,
    ok: bool,
    lower: np.ndarray,
    b0: np.ndarray | None = None,
) -> LmmFit:
    """Results by the dense formulas: GLS beta, b = Lambda Lambda'Z' V0^{-1} (y - X beta)."""
    n, p = dense.n, dense.p
    L, Xw, beta, r2 = dense.pieces(theta)
    objective_s = dense.objective(theta, reml)
    sigma2 = r2 / ((n - p) if reml else n)
    vcov = sigma2 * np.linalg.inv(Xw.T @ Xw)
    Lam = dense.lam(theta)
    ZL = dense.Z @ Lam
    resid0 = dense.y - dense.X @ beta
    w = sla.cho_solve((L, True), resid0)
    u = ZL.T @ w
    b = Lam @ u
    # conditional covariance of b: sigma^2 Lambda (Lambda'Z'Z Lambda + I)^{-1} Lambda'
    Cu = np.linalg.inv(ZL.T @ ZL + np.eye(ZL.shape[1]))
    Cb = sigma2 * Lam @ Cu @ Lam.T
    ranef, cond_cov, off = [], [], 0
    for t in dense.terms:
        q = t.nlevels * t.p
        ranef.append(b[off : off + q].reshape(t.nlevels, t.p) * s)
        blocks = np.stack(
            [Cb[off + j * t.p : off + (j + 1) * t.p, off + j * t.p : off + (j + 1) * t.p] for j in range(t.nlevels)]
        )
        cond_cov.append(blocks * s**2)
        off += q
    cond_sd = [np.sqrt(np.maximum(np.diagonal(C, axis1=1, axis2=2), 0.0)) for C in cond_cov]
    fitted_s = dense.X @ beta + dense.Z @ b
    b0 = np.zeros(p) if b0 is None else b0
    fitted = fitted_s * s + dense.X @ b0
    nscale = (n - p) if reml else n
    objective = objective_s + 2.0 * nscale * math.log(s)
    rec = OptimizerRecord(
        rec.name + " (dense V)", rec.evaluations, rec.message, rec.theta_start, rec.theta_end, rec.seconds
    )
    return LmmFit(
        reml=reml,
        n=n,
        terms=tuple(dense.terms),
        xnames=tuple(names),
        theta=theta,
        sigma=math.sqrt(sigma2) * s,
        beta=beta * s + b0,
        vcov=vcov * s**2,
        objective=objective,
        loglik=-0.5 * objective,
        npar=p + theta.size + 1,
        ranef=ranef,
        cond_sd=cond_sd,
        cond_cov=cond_cov,
        fitted=fitted,
        residuals=(dense.y - fitted_s) * s,
        converged=ok,
        optimizer=rec,
        dropped_columns=tuple(dropped),
        lower=lower,
    )
