"""Rank-deficient fixed effects: which columns of X are aliased (lme4's chkRank.drop.cols, with R's qr())."""

from __future__ import annotations

import numpy as np

RANK_TOL = 1e-7  # R's qr() tolerance, as lme4 calls it
GRAM_R_MIN_ROWS = 1 << 20  # from this many rows, a clearly full-rank X takes its R from X'X (Cholesky) ...
GRAM_R_MAX_COND = 1e3  # ... when that R's condition number is below this (else Householder TSQR, as below)


def aliased_columns(X: np.ndarray, tol: float = RANK_TOL) -> tuple[np.ndarray, np.ndarray]:
    """Columns of X to keep and to drop as linear combinations of earlier ones."""
    keep, drop, _ = aliased_columns_r(X, tol)
    return keep, drop


def aliased_columns_r(
    X: np.ndarray, tol: float = RANK_TOL, block: int = 65536, XtX: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(keep, drop, R) with X = Q R. R's qr() (LINPACK's limited pivoting) moves a column to the end when what
    is left of it after the earlier columns is below tol times its own norm, so the earlier of two aliased
    columns is kept. The decision is made on unit-norm columns (scale-invariant), and R is accumulated over row
    blocks (TSQR), so no copy of X is made; the rotations change no column norm or inner product. ``XtX``: X'X
    when the caller has it (large data), for the clearly full-rank case."""
    n, p = X.shape
    if p == 0:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int), np.zeros((0, 0))
    scale = column_norms(X, XtX)
    scale[scale == 0] = 1.0
    if n >= GRAM_R_MIN_ROWS:
        Rg = _clearly_full_rank_r(X, scale, XtX)
        if Rg is not None:
            return np.arange(p), np.zeros(0, dtype=int), Rg * scale
    R: np.ndarray = np.zeros((0, p))
    for start in range(0, n, block):
        R = np.asarray(np.linalg.qr(np.vstack([R, X[start : start + block] / scale]), mode="r"))
    keep = _independent_in_order(R, tol)
    drop = np.setdiff1d(np.arange(p), keep)
    return keep, drop, R * scale  # X / scale = Q R, so X = Q (R * scale)


def _clearly_full_rank_r(X: np.ndarray, scale: np.ndarray, XtX: np.ndarray | None = None) -> np.ndarray | None:
    """R of the unit-norm columns from the Cholesky factor of their Gram matrix (one BLAS pass over X instead
    of Householder's several), when that R is so well conditioned (cond < GRAM_R_MAX_COND) that no column can
    be aliased: a column's residual after the others is at least the smallest singular value, >= 1/cond, far
    above RANK_TOL, and the error of this R (about cond^2 eps) is far below it. Else None (then TSQR)."""
    with np.errstate(over="ignore", invalid="ignore"):
        G = (cross_product(X) if XtX is None else XtX) / np.outer(scale, scale)
    if not np.all(np.isfinite(G)):
        return None
    try:
        R = np.linalg.cholesky(G).T
    except np.linalg.LinAlgError:
        return None
    d = np.abs(np.diag(R))
    if not (d.min() > 0 and np.linalg.cond(R) < GRAM_R_MAX_COND):
        return None
    return np.asarray(R)


TALL_DOT_MAX_COLUMNS = 6  # up to this many columns, X'X of a column-major X is taken column pair by column pair


def cross_product(X: np.ndarray, v: np.ndarray | None = None) -> np.ndarray:
    """X'X (or X'v): for a tall column-major X with a few columns, by one dot product per pair of columns, each
    reading two contiguous columns (2.5 times faster at 10^7 rows than the matrix product, which reads X in
    row panels); otherwise by the matrix product."""
    n, p = X.shape
    if not (X.flags.f_contiguous and p <= TALL_DOT_MAX_COLUMNS and n >= 1 << 16):
        return X.T @ X if v is None else X.T @ v
    if v is not None:
        return np.array([X[:, i] @ v for i in range(p)])
    G = np.empty((p, p))
    for i in range(p):
        for j in range(i, p):
            G[i, j] = G[j, i] = X[:, i] @ X[:, j]
    return G


def column_norms(X: np.ndarray, XtX: np.ndarray | None = None) -> np.ndarray:
    """The Euclidean norm of each column, without underflow or overflow of the squares (a column of
    magnitude 1e-200 has a norm, not 0): columns far from unit scale are divided by their largest entry.
    ``XtX``: X'X when the caller has it, whose diagonal holds the squares' sums (no pass over X)."""
    with np.errstate(under="ignore", over="ignore", invalid="ignore"):
        norms = np.sqrt(np.einsum("ij,ij->j", X, X) if XtX is None else np.diag(XtX).copy())
    for j in np.flatnonzero(~np.isfinite(norms) | (norms < 1e-140) | (norms > 1e140)):
        top = float(np.max(np.abs(X[:, j])))
        if top > 0 and np.isfinite(top):
            norms[j] = top * float(np.linalg.norm(X[:, j] / top))
    return norms


def _independent_in_order(R: np.ndarray, tol: float) -> np.ndarray:
    """Columns of R kept in their order: a column whose residual after the kept ones is below tol times its
    own norm is aliased (modified Gram-Schmidt, twice, on the small p x p R)."""
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
