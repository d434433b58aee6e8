"""mgcv's cubic regression spline ``cr`` and its shrinkage version ``cs`` (mgcv 1.8-41,
``smooth.construct.cr.smooth.spec`` and its C routines ``crspl``/``getFS``; Wood 2017 §5.3.1): knots at
quantiles of the unique x, the matrix F mapping the values at the knots to second derivatives, the penalty S,
the basis rows, and the shrinkage of the penalty's null space. Numbers only.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.linalg.lapack

from mmcli.errors import ModelError

CS_SHRINK = 0.1  # smooth.construct.cs.smooth.spec's attr(object, "shrink")


# ---------------------------------------------------------------------------------------------------------
# cubic regression spline: knots, F and S, basis rows


def r_seq01(k: int) -> np.ndarray:
    """``seq(0, 1, length = k)`` with R's arithmetic: c(0, (1:(k-2)) * (1/(k-1)), 1)."""
    if k < 2:
        return np.zeros(k)
    inner = np.arange(1, k - 1, dtype=float) * (1.0 / (k - 1))
    return np.concatenate(([0.0], inner, [1.0]))


def r_quantile7(x: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """R's ``quantile(x, probs, type = 7)`` with its floating-point steps.

    index = 1 + (n-1)p, q = (1-h) x_(lo) + h x_(hi) with h = index - lo (Hyndman & Fan 1996, type 7).
    numpy's "linear" method is the same quantile but rounds differently in the last place.
    """
    xs = np.sort(np.asarray(x, dtype=float))
    n = xs.size
    index = 1.0 + max(n - 1, 0) * probs
    lo = np.floor(index).astype(int)
    hi = np.ceil(index).astype(int)
    qs = xs[lo - 1].copy()
    upper = xs[hi - 1]
    interp = (index > lo) & (upper != qs)
    h = (index - lo)[interp]
    qs[interp] = (1.0 - h) * qs[interp] + h * upper[interp]
    return qs


def cr_knots(x: np.ndarray, k: int) -> np.ndarray:
    """mgcv's default ``cr`` knots: ``quantile(unique(x), seq(0, 1, length = k))`` (type 7)."""
    return r_quantile7(np.unique(x), r_seq01(k))


def cr_F_S(knots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """F and the wiggliness penalty S of a cubic regression spline with the given knots (mgcv's ``getFS``).

    With h_j the knot spacings, D ((k-2)×k) has rows [1/h_i, -1/h_i - 1/h_{i+1}, 1/h_{i+1}] and B
    ((k-2)×(k-2)) is tridiagonal with diagonal (h_i + h_{i+1})/3 and off-diagonal h_{i+1}/6; then
    F = [0; B⁻¹D; 0] and S = D'B⁻¹D, symmetrized (Wood 2017 §5.3.1). The steps follow mgcv's C code
    operation by operation (B⁻¹D by LAPACK's dptsv, S row by row), so S agrees with mgcv's bit for bit
    as far as the platform allows: ``cs`` depends on that (see :func:`cs_shrink`).
    """
    xk = np.asarray(knots, dtype=float)
    n = xk.size
    n2 = n - 2
    h = np.diff(xk)
    D = np.zeros((n2, n))
    for i in range(n2):
        D[i, i] = 1 / h[i]
        D[i, i + 2] = 1 / h[i + 1]
        D[i, i + 1] = -D[i, i] - D[i, i + 2]
    ldB = (h[:-1] + h[1:]) / 3
    sdB = h[1:n2] / 6
    BinvD = _dptsv(ldB, sdB, D)

    F = np.zeros((n, n))
    F[1 : n - 1, :] = BinvD

    S = np.zeros((n, n))
    S[0, :] = BinvD[0, :] * (1 / h[0])
    if n > 3:
        a = -1 / h[0] - 1 / h[1]
        b = 1 / h[1]
        S[1, :] = BinvD[0, :] * a + BinvD[1, :] * b
        for j in range(2, n2):
            a = 1 / h[j - 1]
            c = 1 / h[j]
            b = -a - c
            S[j, :] = BinvD[j - 2, :] * a + BinvD[j - 1, :] * b + BinvD[j, :] * c
        a = 1 / h[n2 - 1]
        b = -1 / h[n2 - 1] - 1 / h[n2]
        S[n2, :] = BinvD[n2 - 2, :] * a + BinvD[n2 - 1, :] * b
    else:
        a = -1 / h[0] - 1 / h[1]
        S[1, :] = BinvD[0, :] * a
    S[n - 1, :] = BinvD[n2 - 1, :] * (1 / h[n2])
    S = (S + S.T) / 2
    return F, S


def _dptsv(d: np.ndarray, e: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Solve the symmetric positive definite tridiagonal system (diag d, off-diagonal e) for B."""
    if d.size == 1:  # LAPACK's dptts2 scales by the reciprocal when n = 1
        return B * (1 / d[0])
    _, _, X, info = scipy.linalg.lapack.dptsv(d.copy(), e.copy(), B.copy())
    if info != 0:  # pragma: no cover - B is diagonally dominant for increasing knots
        raise ModelError(f"The cubic spline's knot system is singular (LAPACK dptsv info {info}).")
    return np.asarray(X)


def cr_basis(x: np.ndarray, knots: np.ndarray, F: np.ndarray) -> np.ndarray:
    """Rows of the unconstrained ``cr`` basis at x (mgcv's ``crspl``; Wood 2017 §5.3.1).

    For x in [x_j, x_{j+1}], h = x_{j+1} - x_j: a⁻ = (x_{j+1} - x)/h, a⁺ = (x - x_j)/h,
    c⁻ = ((x_{j+1} - x)³/h - h(x_{j+1} - x))/6, c⁺ = ((x - x_j)³/h - h(x - x_j))/6, and the row is
    c⁻F[j, :] + c⁺F[j+1, :] plus a⁻ in column j and a⁺ in column j+1. Beyond the end knots the spline
    continues as the straight line with the end value and slope (second derivative 0 there).
    """
    x = np.asarray(x, dtype=float)
    xk = np.asarray(knots, dtype=float)
    nk = xk.size
    X = np.zeros((x.size, nk))
    kmin, kmax = xk[0], xk[-1]
    below = x < kmin
    above = x > kmax
    inside = ~(below | above)

    # interior: xk[j] < x <= xk[j+1] (j = 0 at the first knot), as crspl's bisection
    xi = x[inside]
    j = np.clip(np.searchsorted(xk, xi, side="left") - 1, 0, nk - 2)
    xj, xj1 = xk[j], xk[j + 1]
    h = xj1 - xj
    ajm = xj1 - xi
    ajp = xi - xj
    cjm = (ajm * (ajm * ajm / h - h)) / 6
    cjp = (ajp * (ajp * ajp / h - h)) / 6
    rows = cjm[:, None] * F[j, :] + cjp[:, None] * F[j + 1, :]
    r = np.arange(xi.size)
    rows[r, j] += ajm / h
    rows[r, j + 1] += ajp / h
    X[inside] = rows

    # below the first knot: linear in (x - x_0), using F's rows 0 and 1
    if below.any():
        h0 = xk[1] - kmin
        xik = x[below] - kmin
        rows = (-xik * h0 / 3)[:, None] * F[0, :] + (-xik * h0 / 6)[:, None] * F[1, :]
        rows[:, 0] += 1 - xik / h0
        rows[:, 1] += xik / h0
        X[below] = rows

    # above the last knot
    if above.any():
        h1 = kmax - xk[nk - 2]
        xik = x[above] - kmax
        rows = (xik * h1 / 6)[:, None] * F[nk - 2, :] + (xik * h1 / 3)[:, None] * F[nk - 1, :]
        rows[:, nk - 2] += -xik / h1
        rows[:, nk - 1] += 1 + xik / h1
        X[above] = rows
    return X


def cs_shrink(
    S: np.ndarray, knots: np.ndarray, shrink: float = CS_SHRINK, line_first: bool | None = None
) -> np.ndarray:
    """The ``cs`` penalty: S with its null space penalized too (``smooth.construct.cs.smooth.spec``).

    mgcv eigen-decomposes S = U Λ U' (Λ decreasing), sets λ_{k-1} = shrink·λ_{k-2} and
    λ_k = shrink·λ_{k-1}, and rebuilds U Λ U' (Wood 2017 §5.3.1). S's null space is the plane of knot
    values of linear functions, and the result depends on which orthonormal pair of that plane the
    eigensolver returns for the two (numerically zero) last eigenvalues, which the mathematics leaves open.

    R's ``eigen`` (LAPACK dsyevr on the lower triangle) returns, because its tridiagonal reduction keeps the
    first coordinate apart, always the same pair: a ∝ knots - knots[0] (the line through zero at the first
    knot) and b, its orthogonal complement in the plane. Which of the two comes last, and so gets the smaller
    eigenvalue shrink²·λ_{k-2}, is decided by rounding noise in two eigenvalues of size 1e-15, and differs
    between BLAS/LAPACK builds (except for k = 3, where b always comes first). This function builds a and b
    exactly and, by default, gives a the larger shrink·λ_{k-2} and b shrink²·λ_{k-2} for k > 3, the other
    way round for k = 3. For k > 3 that is one of R's two possible answers, fixed so that mmcli gives the
    same penalty on every machine; it is R's answer for ``s(Days, bs = "cs")`` on sleepstudy
    on the reference machine. ``line_first`` forces the order. The penalized part is S projected off the
    null plane P, so S_cs = P S P + λ_a aa' + λ_b bb'.
    """
    k = S.shape[0]
    if line_first is None:
        line_first = k > 3
    t = np.asarray(knots, dtype=float)
    a = t - t[0]
    a = a / np.linalg.norm(a)
    one = np.ones(k)
    b = one - a * (a @ one)
    b = b / np.linalg.norm(b)
    lam = scipy.linalg.eigvalsh(S)[::-1]  # decreasing
    lam_first = lam[k - 3] * shrink  # λ_{k-2}, the smallest positive eigenvalue, times shrink
    lam_last = lam_first * shrink
    N = np.column_stack([a, b])
    P = np.eye(k) - N @ N.T
    Spen = P @ S @ P
    Spen = (Spen + Spen.T) / 2
    first, last = (a, b) if line_first else (b, a)
    return Spen + lam_first * np.outer(first, first) + lam_last * np.outer(last, last)
