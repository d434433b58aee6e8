"""The Gram matrix of [Z X y], formed once per model (Bates et al. 2015, section 3; MixedModels.jl's layout).

Z's columns come in blocks, one per grouping factor, the factor with most levels first ("block 0"). Its part
Z_0'Z_0 is block diagonal by level and is kept as an (nl0, p0, p0) array of per-level blocks, computed by
weighted counts over the level codes (Z_0 is never formed). The other blocks ("the rest", R) are few enough
columns for their Schur complement to be held dense; Z_R'Z_R itself is kept sparse (for one scalar term it is
diagonal), and a dense copy is made only for the paths that read it dense. X and y are read where they are: no
copy is made.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mmcli.lmm._lazy import sp
from mmcli.lmm.rank import cross_product
from mmcli.lmm.terms import Block, ReTerm, make_blocks, theta_offsets
from mmcli.memory import check_allocation
from mmcli.threads import on_two_threads, row_halves

PAIRS_LIMIT = 40_000_000
"""The precomputed-pairs Schur update is used when it needs at most this many stored products."""
HEAVY_FRACTION = 1.0 / 16.0
"""With scalar terms, a level of block 0 that meets more than this fraction of the rest's columns (and at least
HEAVY_MIN of them) is "heavy": its part of the Schur update is a dense rank-one update, as a BLAS product, rather
than precomputed pairs (nnz^2 / 2 stored products for one level). Skewed crossed designs (a few levels that meet
almost every level of the other factor) otherwise hold most of their pairs in a handful of levels."""
HEAVY_MIN = 64


class Gram:
    """A_XX = [X y]'[X y], A_00 (per level), A_X0 = [X y]'Z_0, A_RR, A_XR = [X y]'Z_R, A_R0 = Z_R'Z_0.

    ``y`` may be None (for X'V^-1 X alone): then the rows and columns of y are left out. ``XtX``, when given,
    is X'X already computed (large data: one pass over X fewer).
    """

    _ARR_csr: sp.csr_matrix | None = None

    def __init__(self, X: np.ndarray, y: np.ndarray | None, terms: Sequence[ReTerm], XtX: np.ndarray | None = None):
        self.terms = list(terms)
        self.n, self.p = X.shape
        self.has_y = y is not None
        self.blocks = make_blocks(terms)
        first = self.blocks[0] if self.blocks and self.blocks[0].indicator else None
        self.first: Block | None = first
        self.rest: list[Block] = self.blocks[1:] if first is not None else self.blocks
        self.AXX = _cross(X, y, XtX)
        if first is not None:
            assert first.codes is not None and first.T is not None
            self.A00, self.AX0 = _indicator_grams(first.codes, first.T, first.nlevels, X, y)
        else:
            self.A00, self.AX0 = np.zeros((0, 0, 0)), np.zeros((self.p1, 0))
        self.qR = sum(b.q for b in self.rest)
        self.AR0 = None
        if self.rest:
            check_allocation(
                8.0 * (self.qR + self.p1) ** 2,
                f"the crossed random effects' matrix ({self.qR} x {self.qR}, one row and column per level)",
            )
            ZR = sp.hstack([b.Z for b in self.rest]).tocsc()
            self.ARR_csr = (ZR.T @ ZR).tocsr()
            ZtX = np.asarray((ZR.T @ X).T).reshape(self.p, ZR.shape[1])
            self.AXR = np.vstack([ZtX, ZR.T @ y]) if y is not None else ZtX
            if first is not None:
                self.AR0 = (ZR.T @ first.Z).tocsr()
        else:
            self._ARR_csr, self.AXR = None, np.zeros((self.p1, 0))  # made on first use (see ARR_csr)
        self._derive()

    @classmethod
    def from_parts(
        cls,
        terms: Sequence[ReTerm],
        n: int,
        AXX: np.ndarray,
        A00: np.ndarray,
        AX0: np.ndarray,
        ARR: np.ndarray | sp.csr_matrix,
        AXR: np.ndarray,
        AR0: sp.csr_matrix | None,
    ) -> Gram:
        """The Gram matrix from its blocks, summed elsewhere over chunks of rows (:mod:`mmcli.lmm.stats`): the
        terms give the layout (their codes and T may hold no rows), the blocks are those __init__ computes."""
        self = cls.__new__(cls)
        self.terms, self.n, self.p, self.has_y = list(terms), n, AXX.shape[0] - 1, True
        self.blocks = make_blocks(terms)
        first = self.blocks[0] if self.blocks and self.blocks[0].indicator else None
        self.first = first
        self.rest = self.blocks[1:] if first is not None else self.blocks
        self.AXX, self.A00, self.AX0, self.AXR = AXX, A00, AX0, AXR
        self.ARR_csr = sp.csr_matrix(ARR)
        self.qR = sum(b.q for b in self.rest)
        self.AR0 = AR0 if first is not None and self.rest else None
        self._derive()
        return self

    def _derive(self) -> None:
        """What the update at each theta reads besides the blocks: the maps from theta, the patterns."""
        self._ARR_dense: np.ndarray | None = None
        self.block_maps = self._block_maps()
        self.rest_scalar = all(b.p == 1 for b in self.rest)
        self.LR_rows, self.LR_cols, self.LR_src = self._lambda_rest_pattern()
        if self.qR:
            A = self.ARR_csr.tocoo()
            low = A.row >= A.col
            self.ARR_low = (A.row[low].astype(np.int64), A.col[low].astype(np.int64), A.data[low])
        else:
            none = np.zeros(0, dtype=np.int64)
            self.ARR_low = (none, none, np.zeros(0))
        self.heavy, self.heavy_Z = self._heavy_levels()
        self.pairs, self.pair_targets = self._pairs_pattern()

    @property
    def ARR_csr(self) -> sp.csr_matrix:
        """Z_R'Z_R, sparse. Without crossed or nested terms it is empty, and made only when read, so that a model
        with one grouping factor does not import scipy.sparse."""
        if self._ARR_csr is None:
            self._ARR_csr = sp.csr_matrix((0, 0))
        return self._ARR_csr

    @ARR_csr.setter
    def ARR_csr(self, value: sp.csr_matrix) -> None:
        self._ARR_csr = value

    @property
    def ARR(self) -> np.ndarray:
        """Z_R'Z_R dense (made on first use, for the paths that read it dense)."""
        if self._ARR_dense is None:
            self._ARR_dense = self.ARR_csr.toarray()
        return self._ARR_dense

    @property
    def p1(self) -> int:
        """Columns of [X y] (of X when there is no y)."""
        return self.p + int(self.has_y)

    # ----------------------------------------------------------------------------------------------
    # theta -> Lambda, block by block

    def _block_maps(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """For each block, the (row, col) in its template of each theta entry, and that entry's index."""
        k_of_term = theta_offsets(self.terms)
        maps = []
        for b in self.blocks:
            rows, cols, ks = [], [], []
            for ti, off in zip(b.terms, b.offsets):
                for m, (i, j) in enumerate(self.terms[ti].template_positions()):
                    rows.append(off + i)
                    cols.append(off + j)
                    ks.append(k_of_term[ti] + m)
            maps.append((np.array(rows, dtype=int), np.array(cols, dtype=int), np.array(ks, dtype=int)))
        return maps

    def block_templates(self, theta: np.ndarray) -> list[np.ndarray]:
        out = []
        for b, (r, c, k) in zip(self.blocks, self.block_maps):
            T = np.zeros((b.p, b.p))
            T[r, c] = theta[k]
            out.append(T)
        return out

    def rest_templates(self, templates: list[np.ndarray]) -> list[np.ndarray]:
        return templates[1:] if self.first is not None else templates

    def _lambda_rest_pattern(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The sparsity pattern of Lambda over the rest blocks (block diagonal kron(I, T_b)), built once."""
        rows, cols, src = [], [], []
        off, toff = 0, 0
        for b in self.rest:
            ii, jj = np.tril_indices(b.p)
            lev = np.arange(b.nlevels)
            rows.append((off + lev[:, None] * b.p + ii[None, :]).ravel())
            cols.append((off + lev[:, None] * b.p + jj[None, :]).ravel())
            src.append(np.tile(toff + ii * b.p + jj, b.nlevels))
            off += b.q
            toff += b.p * b.p
        if not rows:
            empty = np.zeros(0, dtype=int)
            return empty, empty, empty
        r, c, s = np.concatenate(rows), np.concatenate(cols), np.concatenate(src)
        order = np.lexsort((c, r))
        return r[order], c[order], s[order]

    def lambda_rest(self, templates: list[np.ndarray]) -> sp.csr_matrix:
        """Lambda_R as a sparse matrix, from the rest blocks' templates."""
        flat = np.concatenate([T.ravel() for T in templates]) if templates else np.zeros(0)
        return sp.csr_matrix((flat[self.LR_src], (self.LR_rows, self.LR_cols)), shape=(self.qR, self.qR))

    def lambda_rest_diag(self, templates: list[np.ndarray]) -> np.ndarray:
        """The diagonal of Lambda_R when every rest block is scalar."""
        return np.concatenate([np.full(b.nlevels, T[0, 0]) for b, T in zip(self.rest, templates)])

    # ----------------------------------------------------------------------------------------------
    # the precomputed pairs of A_R0 (a strategy of the Schur update)

    def _heavy_levels(self) -> tuple[np.ndarray, np.ndarray]:
        """The heavy levels of block 0 (see HEAVY_FRACTION) and their columns of A_R0, dense (qR x nheavy).
        Only for a scalar block 0 with scalar rest blocks; none otherwise."""
        none = np.zeros(0, dtype=np.int64), np.zeros((self.qR, 0))
        if self.first is None or self.AR0 is None or self.first.p != 1 or not self.rest_scalar:
            return none
        nnz = np.diff(self.AR0.tocsc().indptr)
        heavy = np.flatnonzero(nnz > max(HEAVY_MIN, HEAVY_FRACTION * self.qR))
        if heavy.size == 0:
            return none
        return heavy, self.AR0[:, heavy].toarray()

    def _pairs_pattern(self) -> tuple[sp.csr_matrix | None, np.ndarray | None]:
        """The map from the per-level weights W_j of block 0 to the lower triangle of A_R0 W A_R0', as one
        sparse matrix, so that each theta costs one sparse mat-vec and no sparse-sparse product; the heavy
        levels' columns are left out (they are updated densely). None when the pattern would hold more than
        PAIRS_LIMIT products (then the update multiplies sparse matrices)."""
        if self.first is None or self.AR0 is None or self.qR == 0:
            return None, None
        p0 = self.first.p
        A = self.AR0.tocsc()
        if self.heavy.size:
            A = A.copy()
            A.data[np.isin(np.repeat(np.arange(A.shape[1]), np.diff(A.indptr)), self.heavy)] = 0.0
            A.eliminate_zeros()
        A.sort_indices()
        level_ptr = A.indptr[::p0]
        nnz_lev = np.diff(level_ptr)
        if int(np.sum(nnz_lev.astype(np.int64) ** 2)) > PAIRS_LIMIT:
            return None, None
        col = np.repeat(np.arange(A.shape[1], dtype=np.int32), np.diff(A.indptr))
        lev, a = col // p0, col % p0
        # every pair (E, F) of stored entries of A in the same level's columns
        reps = nnz_lev[lev]
        E = np.repeat(np.arange(A.nnz, dtype=np.int32), reps)
        run_start = np.repeat(np.cumsum(reps) - reps, reps)
        F = (level_ptr[:-1][lev[E]] + (np.arange(E.size) - run_start)).astype(np.int32)
        del run_start
        low = A.indices[E] >= A.indices[F]  # the Cholesky reads the lower triangle only
        E, F = E[low], F[low]
        del low
        vals = A.data[E] * A.data[F]
        target = A.indices[E].astype(np.int64) * self.qR + A.indices[F]
        widx = lev[E] * p0 * p0 + a[E] * p0 + a[F]
        del E, F
        nW = self.first.nlevels * p0 * p0
        if self.qR <= 1024:  # rows indexed by position in the dense block directly, then compacted
            pairs = sp.csr_matrix((vals, (target, widx)), shape=(self.qR * self.qR, nW))
            nz = np.flatnonzero(np.diff(pairs.indptr))
            return pairs[nz], nz
        uniq, rows = np.unique(target, return_inverse=True)  # a qR^2-row matrix would be too large even empty
        return sp.csr_matrix((vals, (rows.ravel(), widx)), shape=(uniq.size, nW)), uniq


def _cross(X: np.ndarray, y: np.ndarray | None, XtX: np.ndarray | None = None) -> np.ndarray:
    """[X y]'[X y] without forming [X y] (X'X as given, when it is)."""
    if XtX is None:
        XtX = cross_product(X)
    if y is None:
        return XtX
    Xty = cross_product(X, y)
    return np.block([[XtX, Xty[:, None]], [Xty[None, :], np.array([[y @ y]])]])


def _indicator_grams(
    codes: np.ndarray, T: np.ndarray, nl: int, X: np.ndarray, y: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """For an indicator block, the diagonal blocks of Z'Z as (nl, p, p) and [X y]'Z as (p1, nl*p), by
    weighted counts over the level codes (no Z is formed)."""
    p = T.shape[1]
    ones = p == 1 and _all_ones(T)
    A = np.zeros((nl, p, p))
    cols = [X[:, c] for c in range(X.shape[1])] + ([y] if y is not None else [])
    AX = np.empty((len(cols), nl, p))
    if ones:  # the counts, and the sums of the columns by level: the intercept's are the counts
        summed = [c for c, col in enumerate(cols) if not (c < X.shape[1] and _all_ones(X[:, c : c + 1]))]
        counts, *sums = _level_sums(codes, [None] + [cols[c] for c in summed], nl)
        A[:, 0, 0] = counts
        AX[:, :, 0] = counts  # the intercept's; the others' below
        for c, s in zip(summed, sums):
            AX[c, :, 0] = s
        return A, AX.reshape(len(cols), nl)
    codes = codes.astype(np.intp, copy=False)  # bincount's index type: converted once, not at every call
    for a in range(p):
        for b in range(a, p):
            s = np.bincount(codes, weights=T[:, a] * T[:, b], minlength=nl)
            A[:, a, b] = s
            A[:, b, a] = s
    for c, col in enumerate(cols):
        for a in range(p):
            AX[c, :, a] = np.bincount(codes, weights=col * T[:, a], minlength=nl)
    return A, AX.reshape(len(cols), nl * p)


def _level_sums(codes: np.ndarray, cols: list[np.ndarray | None], nl: int) -> list[np.ndarray]:
    """Each column summed by level (np.bincount; None: the counts). Long columns are summed in two halves of
    their rows on two threads (numpy does not hold the interpreter's lock while it adds), the halves' sums then
    added: the codes are turned into bincount's index type a half at a time, on both threads too."""

    def part(rows: slice) -> list[np.ndarray]:
        at = codes[rows].astype(np.intp, copy=False)  # converted once per half, not at every call
        return [np.bincount(at, weights=None if c is None else c[rows], minlength=nl) for c in cols]

    halves = on_two_threads(part, row_halves(codes.size))
    return halves[0] if len(halves) == 1 else [a + b for a, b in zip(*halves)]


def _all_ones(T: np.ndarray) -> bool:
    """Whether a one-column template is all ones (a broadcast view of one 1.0 is read at its one row)."""
    col = T[:, 0]
    if col.size and (col.strides[0] == 0 or col[0] != 1.0):  # a column of data: most often settled at its first row
        return bool(col[0] == 1.0)
    return bool(np.all(col == 1.0))


def block_diagonal(blocks: np.ndarray) -> sp.bsr_matrix:
    """The block-diagonal sparse matrix of an (nl, p, p) array."""
    nl, p, _ = blocks.shape
    return sp.bsr_matrix((np.ascontiguousarray(blocks), np.arange(nl), np.arange(nl + 1)), shape=(nl * p, nl * p))
