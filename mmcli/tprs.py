"""mgcv's thin plate regression spline (``bs = "tp"``, ``"ts"``; Wood 2003) in one or more dimensions.

The full thin plate spline of order m in d dimensions, on the unique covariate points x_1..x_N (the knots),
has the basis η(‖x - x_j‖) (j = 1..N) plus the M polynomials of degree < m, and the penalty δ'Eδ with
E_ij = η(‖x_i - x_j‖) and the side condition T'δ = 0 (Wood 2017 §5.5.1). Wood (2003) truncates it to rank
k: E = U D U', keep the k eigenvalues of largest magnitude (U_k, D_k), and absorb T'U_k δ_k = 0 with Z_k,
an orthonormal basis of its null space. Then, as mgcv 1.8-41's ``smooth.construct.tp.smooth.spec`` and its
C routine leave it:

- the covariates are centred by their means (mgcv's ``shift``) before anything else;
- m is the smallest order with 2m > d + 1 (m = 2 for d = 1, 2; 3 for d = 3), M = C(m + d - 1, d);
- the basis at x is [E(x, knots) U_k Z_k, T(x)] (n × k) and the penalty diag(Z_k'D_k Z_k, 0);
- each column is then divided by its root mean square over the data, and the penalty with it;
- ``ts`` (Wood 2017 §5.4.3) gives the M null-space eigenvalues of the penalty the value 0.1 times its
  smallest positive one.

mgcv finds U_k with a Lanczos iteration; here ``numpy.linalg.eigh`` of E gives the same subspace (k and
N are at most a few thousand). Eigenvectors are defined up to sign (and Z_k up to rotation), so the basis
matches mgcv's up to an invertible map of the coefficients: fitted values, EDF and the criterion agree,
while individual coefficients, and the penalty scaling smoothCon derives from the basis (hence lambda), do
not in general. With more than ``max_knots`` unique points, mgcv draws that many knots at random with
R's generator started at 1; :func:`subsample_knots` draws them as R's ``sample`` does there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mmcli.errors import ModelError

__all__ = ["MAX_KNOTS", "TprsBasis", "default_order", "eta", "null_space_powers", "subsample_knots", "tprs_basis"]

MAX_KNOTS = 2000  # mgcv's default xt$max.knots
TS_SHRINK = 0.1  # mgcv's shrinkage of the tp null space for bs = "ts"
_CHUNK = 512  # rows of E(x, knots) formed at a time (a few MB: stays in cache)


def default_order(d: int) -> int:
    """The smallest penalty order m with 2m > d + 1 (mgcv's default for a tp smooth in d dimensions)."""
    m = 1
    while 2 * m < d + 2:
        m += 1
    return m


def null_space_powers(d: int, m: int) -> list[tuple[int, ...]]:
    """The powers of the M polynomials of degree < m in d variables, in mgcv's order (constant first, then
    x1, x2, ... for m = 2; the first variable's power increases fastest)."""
    out: list[tuple[int, ...]] = []
    idx = [0] * d
    total = math.comb(m + d - 1, d)
    for _ in range(total):
        out.append(tuple(idx))
        if sum(idx) < m - 1:
            idx[0] += 1
            continue
        s = sum(idx) - idx[0]
        idx[0] = 0
        for j in range(1, d):
            idx[j] += 1
            s += 1
            if s == m:
                s -= idx[j]
                idx[j] = 0
            else:
                break
    return out


def eta(r: np.ndarray, m: int, d: int) -> np.ndarray:
    """The thin plate radial function η_{md}(r) (Wood 2017 §5.5.1), zero at r = 0."""
    r = np.asarray(r, dtype=float)
    p = 2 * m - d
    if d % 2 == 0:
        c = (-1.0) ** (m + 1 + d // 2) / (2 ** (2 * m - 1) * math.pi ** (d / 2))
        c /= math.factorial(m - 1) * math.factorial(m - d // 2)
        out = np.log(np.where(r > 0, r, 1.0))  # r^p log r -> 0 as r -> 0
    else:
        c = math.gamma(d / 2 - m) / (2 ** (2 * m) * math.pi ** (d / 2) * math.factorial(m - 1))
        out = np.full(r.shape, 1.0)
    out *= c
    for _ in range(p):
        out *= r
    return out


def _poly(x: np.ndarray, powers: list[tuple[int, ...]]) -> np.ndarray:
    return np.column_stack([np.prod(x ** np.asarray(p, dtype=float), axis=1) for p in powers])


def _dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.shape[1] == 1:
        return np.abs(a[:, :1] - b[None, :, 0])
    d2 = np.zeros((a.shape[0], b.shape[0]))
    for j in range(a.shape[1]):
        d2 += (a[:, j : j + 1] - b[None, :, j]) ** 2
    return np.sqrt(d2, out=d2)


@dataclass(frozen=True, eq=False)
class TprsBasis:
    """A truncated thin plate basis: centred ``knots`` (N × d), ``UZ`` ((N + M) × k) mapping the k
    coefficients to the full spline's (δ, α), the column ``shift``, the order ``m`` and powers of T."""

    knots: np.ndarray
    UZ: np.ndarray
    shift: np.ndarray
    m: int
    powers: tuple[tuple[int, ...], ...]
    X: np.ndarray  # the basis at the data (n × k), mgcv's smooth.construct X
    S: np.ndarray  # the penalty (k × k), before smoothCon's scaling
    rank: int
    null_space_dim: int

    @property
    def d(self) -> int:
        return int(self.knots.shape[1])

    def matrix(self, x: np.ndarray) -> np.ndarray:
        """The basis at new points x (n × d), as mgcv's Predict.matrix.tprs.smooth."""
        x = np.asarray(x, dtype=float).reshape(-1, self.d) - self.shift
        nk = self.knots.shape[0]
        if self.d == 1 and self.m == 2 and nk > 200:  # Σ_j a_j |x - k_j|³: a cubic spline, O(n k) not O(n N k)
            c = float(eta(np.array([1.0]), 2, 1)[0])
            xs, ks = x[:, 0], self.knots[:, 0]
            A = self.UZ[:nk]
            radial = _one_sided_cubics(xs, ks, A) + _one_sided_cubics(-xs, -ks[::-1], A[::-1])
            return c * radial + _poly(x, list(self.powers)) @ self.UZ[nk:]
        out = np.empty((x.shape[0], self.UZ.shape[1]))
        for a in range(0, x.shape[0], _CHUNK):
            xa = x[a : a + _CHUNK]
            out[a : a + _CHUNK] = eta(_dist(xa, self.knots), self.m, self.d) @ self.UZ[:nk]
            out[a : a + _CHUNK] += _poly(xa, list(self.powers)) @ self.UZ[nk:]
        return out


def _one_sided_cubics(x: np.ndarray, knots: np.ndarray, A: np.ndarray) -> np.ndarray:
    """Σ_{k_j ≤ x} A_j (x - k_j)³ for increasing knots (rows of A): on [k_i, k_i+1) a cubic in x - k_i whose
    coefficients are carried from knot to knot by a Taylor shift (each step short, so nothing cancels)."""
    N, K = A.shape
    P = np.zeros((N, 4, K))  # coefficients of 1, t, t², t³ with t = x - k_i
    p = np.zeros((4, K))
    for i in range(N):
        if i:
            h = knots[i] - knots[i - 1]
            p = np.stack(
                [
                    p[0] + h * (p[1] + h * (p[2] + h * p[3])),
                    p[1] + h * (2 * p[2] + 3 * h * p[3]),
                    p[2] + 3 * h * p[3],
                    p[3],
                ]
            )
        p[3] = p[3] + A[i]
        P[i] = p
    at = np.searchsorted(knots, x, side="right") - 1  # the last knot at or below x
    inside = at >= 0
    at = np.maximum(at, 0)
    t = (x - knots[at])[:, None]
    Pi = P[at]
    out = ((Pi[:, 3] * t + Pi[:, 2]) * t + Pi[:, 1]) * t + Pi[:, 0]
    out[~inside] = 0.0
    return out


def _leading_eigen(E: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k eigenvalues of E largest in magnitude, in decreasing order, and their eigenvectors, each signed
    so that its largest entry is positive: a full eigh for small E, else a Lanczos iteration (ARPACK)
    started, as mgcv's, from a fixed vector."""
    n = E.shape[0]
    if n <= 400 or k > n // 4:
        v, U = np.linalg.eigh(E)
        keep = np.argsort(-np.abs(v), kind="stable")[:k]
    else:
        from scipy.sparse.linalg import eigsh

        j, start = 1, np.empty(n)
        for i in range(n):  # mgcv's Rlanczos start: a short linear congruential sequence
            j = (j * 106 + 1283) % 6075
            start[i] = j / 6075 - 0.5
        v0 = start / np.linalg.norm(start)
        v, U = eigsh(E, k=k, which="LM", v0=v0, tol=0.0)
        keep = np.arange(k)
    order = keep[np.argsort(-v[keep], kind="stable")]
    v, U = v[order], U[:, order]
    big = np.argmax(np.abs(U), axis=0)  # mmcli's fixed signs: each eigenvector's largest entry positive
    return v, U * np.sign(U[big, np.arange(U.shape[1])])


def unique_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The unique rows of x in lexicographic order (first column slowest), and each row's index in them."""
    u, inv = np.unique(x, axis=0, return_inverse=True)
    return u, inv.ravel()


def tprs_basis(
    x: np.ndarray, k: int, *, shrink: float | None = None, max_knots: int = MAX_KNOTS, label: str = "s()"
) -> TprsBasis:
    """The tp (or, with ``shrink``, ts) basis of mgcv's smooth.construct.tp.smooth.spec at data x (n × d)."""
    x = np.asarray(x, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    n, d = x.shape
    m = default_order(d)
    powers = null_space_powers(d, m)
    M = len(powers)
    if k < M + 1:
        raise ModelError(
            f"k = {k} is too small for {label}: a thin plate smooth in {d} variable(s) needs k >= {M + 1}."
        )
    shift = x.mean(axis=0)
    xc = x - shift
    knots, _ = unique_rows(xc)
    if knots.shape[0] < k:
        raise ModelError(
            f"{label} has {knots.shape[0]} unique covariate values, too few for k = {k}: use k <= {knots.shape[0]}."
        )
    if knots.shape[0] > max_knots:
        knots = unique_rows(knots[subsample_knots(knots.shape[0], max_knots)])[0]  # sorted, as mgcv's
    from mmcli.memory import check_allocation

    nk = knots.shape[0]
    check_allocation(8.0 * nk * nk * 3, f"the thin plate basis of {label} on {nk} knots ({nk} x {nk})")
    E = eta(_dist(knots, knots), m, d)
    T = _poly(knots, powers)
    v, U = _leading_eigen(E, k)
    Q = np.linalg.qr(U.T @ T, mode="complete")[0]  # k × k; the last k - M columns span {δ_k: T'U_k δ_k = 0}
    Z = Q[:, M:]
    UZ = np.zeros((nk + M, k))
    UZ[:nk, : k - M] = U @ Z
    UZ[nk:, k - M :] = np.eye(M)
    S = np.zeros((k, k))
    S[: k - M, : k - M] = Z.T @ (v[:, None] * Z)
    basis = TprsBasis(knots, UZ, shift, m, tuple(powers), np.zeros((0, k)), S, k - M, M)
    X = basis.matrix(x)
    w = np.sqrt(np.mean(X**2, axis=0))  # mgcv: each column to root mean square 1
    X /= w
    UZ /= w
    S = S / np.outer(w, w)
    S = (S + S.T) / 2
    rank, null_dim = k - M, M
    if shrink is not None:
        es, ev = np.linalg.eigh(S)
        es, ev = es[::-1], ev[:, ::-1]
        es[k - M :] = es[k - M - 1] * shrink
        S = (ev * es) @ ev.T
        rank, null_dim = k, 0
    return TprsBasis(knots, UZ, shift, m, tuple(powers), X, S, rank, null_dim)


def subsample_knots(n_unique: int, size: int, start: int = 1) -> np.ndarray:
    """Row indices (0-based) of ``sample(1:n_unique, size)`` with R's generator started at ``start`` (R >= 3.6)
    (Mersenne-Twister, rejection sampling): the knots mgcv keeps when a tp smooth has too many points."""
    rng = _RMersenne(start)
    pool = list(range(n_unique))
    out = np.empty(size, dtype=np.int64)
    left = n_unique
    for i in range(size):
        j = rng.unif_index(left)
        out[i] = pool[j]
        left -= 1
        pool[j] = pool[left]
    return out


class _RMersenne:
    """R's default generator (Mersenne-Twister, its state initialized as R does from one integer) and its
    R_unif_index."""

    def __init__(self, start: int) -> None:
        s = start & 0xFFFFFFFF
        for _ in range(50):
            s = (69069 * s + 1) & 0xFFFFFFFF
        state = []
        for _ in range(625):
            s = (69069 * s + 1) & 0xFFFFFFFF
            state.append(s)
        self.mt = np.array(state[1:], dtype=np.uint32)  # state[0] is mti, which R resets to 624
        self.mti = 624

    def _int32(self) -> int:
        if self.mti >= 624:
            self._twist()
        y = int(self.mt[self.mti])
        self.mti += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9D2C5680
        y ^= (y << 15) & 0xEFC60000
        y ^= y >> 18
        return y & 0xFFFFFFFF

    def _twist(self) -> None:
        mt = [int(v) for v in self.mt]
        for i in range(624):
            y = (mt[i] & 0x80000000) | (mt[(i + 1) % 624] & 0x7FFFFFFF)
            mt[i] = mt[(i + 397) % 624] ^ (y >> 1) ^ (0x9908B0DF if y & 1 else 0)
        self.mt = np.array(mt, dtype=np.uint32)
        self.mti = 0

    def unif(self) -> float:
        v = self._int32() * 2.3283064365386963e-10
        if v <= 0.0:
            return 0.5 * 2.328306437080797e-10
        if 1.0 - v <= 0.0:
            return 1.0 - 0.5 * 2.328306437080797e-10
        return v

    def unif_index(self, dn: int) -> int:
        if dn <= 0:
            return 0
        bits = math.ceil(math.log2(dn))
        while True:
            v = 0
            for _ in range(0, bits + 1, 16):
                v = 65536 * v + int(math.floor(self.unif() * 65536))
            v &= (1 << bits) - 1
            if v < dn:
                return v
