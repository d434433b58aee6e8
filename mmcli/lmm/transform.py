"""The working parametrization, in which the criterion is optimized, and the one way back from it.

From the user's y, X (its kept columns), terms, prior weights w and offset o:

1. weights and offset: the rows of X, of y - o and of each term's template columns (or Z) are multiplied by
   sqrt(w): the weighted model is then an unweighted one, whose -2 log L is the weighted one's plus sum(log w);
2. X -> X M with M = R^-1 when X = QR is ill-conditioned (nearly collinear or wildly scaled columns), or
   M = diag(1/|x_j|) for the dense formulation: beta = M beta_w, and the REML criterion shifts by -2 log|M|;
3. template columns far from unit scale (RMS outside [1e-2, 1e2], e.g. a slope in seconds) are divided by
   their RMS c, so that BOBYQA's start and steps suit them: theta_ij = theta_w,ij / c_i, b = b_w / c;
4. y0 = (y~ - X~ b0) / s with b0 the least-squares coefficients and s the scale of what is left: sigma, beta
   and b scale by s and the criterion shifts by 2 d log s (d = n or n - p), and the Gram matrix holds no
   large entries that cancel (a response far from zero, or of magnitude 1e150, loses nothing).

:meth:`Working.back` undoes all four at once.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from mmcli.errors import DataError
from mmcli.lmm.criterion import Dof
from mmcli.lmm.rank import column_norms, cross_product
from mmcli.lmm.terms import ReTerm, theta_offsets
from mmcli.threads import on_two_threads, row_halves

BLOCK_ROWS = 65536  # row blocks for the n-vector updates (no n x p temporaries)


@dataclass(frozen=True, eq=False)
class WorkingFit:
    """A fit in the working parametrization (see the module docstring)."""

    theta: np.ndarray
    sigma: float
    beta: np.ndarray
    vcov: np.ndarray
    objective: float
    ranef: list[np.ndarray]  # per term, (nlevels, p)
    cond_cov: list[np.ndarray]  # per term, (nlevels, p, p)
    # X~ beta_w + Z~ b_w on the working rows: the values, or what writes them for a block of rows into an array
    # (the user's fitted values and residuals are then made block by block, in one pass over the rows)
    fitted: np.ndarray | Callable[[slice, np.ndarray], None]


@dataclass(frozen=True, eq=False)
class Working:
    X: np.ndarray  # X~ (the user's X itself when nothing had to change: no copy)
    y: np.ndarray  # y0
    terms: list[ReTerm]  # weighted, column-scaled terms
    user_terms: list[ReTerm]
    M: np.ndarray | None
    tscale: list[np.ndarray | None]
    b0: np.ndarray
    s: float
    sqrtw: np.ndarray | None
    offset: np.ndarray | None
    log_w_sum: float
    XtX: np.ndarray | None = None  # X~'X~, when it was computed once for the whole model (large data)

    # ----------------------------------------------------------------------------------------------
    # theta

    def _row_scale(self) -> np.ndarray:
        """For each theta entry, the scale c of its template row (1 where the term is not scaled)."""
        out = np.ones(sum(t.ntheta for t in self.terms))
        for t, c, k in zip(self.terms, self.tscale, theta_offsets(self.terms)):
            if c is not None:
                out[k : k + t.ntheta] = [c[i] for i, _ in t.template_positions()]
        return out

    def theta_to_working(self, theta: np.ndarray) -> np.ndarray:
        return np.asarray(theta, dtype=float) * self._row_scale()

    def theta_from_working(self, theta_w: np.ndarray) -> np.ndarray:
        return np.asarray(theta_w, dtype=float) / self._row_scale()

    def criterion_shift(self, dof: Dof) -> float:
        """What turns the working criterion into the user's: 2 d log s, -2 log|M| (REML), -sum(log w)."""
        shift = 2.0 * dof.resid * math.log(self.s) - self.log_w_sum
        if dof.reml and self.M is not None:
            shift -= 2.0 * float(np.linalg.slogdet(self.M)[1])
        return shift

    # ----------------------------------------------------------------------------------------------
    # back

    def _fitted_back(self, rows: slice, f: np.ndarray | None, r: np.ndarray | None) -> None:
        """Working fitted values f and residuals r (= y~ - f, not yet scaled) of some rows to the user's, in
        place: r s / sqrt(w); f s + X b0 (X~ b0: the centring), / sqrt(w), + offset."""
        if r is not None:
            r *= self.s
            if self.sqrtw is not None:
                r /= self.sqrtw[rows]
        if f is not None:
            f *= self.s
            f -= self.X[rows] @ -self.b0
            if self.sqrtw is not None:
                f /= self.sqrtw[rows]
            if self.offset is not None:
                f += self.offset[rows]

    def back(self, wf: WorkingFit, dof: Dof) -> dict:
        """The user's quantities from a working fit: theta, sigma, beta, vcov, objective, ranef, cond_cov,
        fitted and residuals (as a dict of LmmFit fields). The fitted values come as what computes them, when the
        working fit gives them so (a pass over the rows and an n-vector saved where nobody reads them)."""
        s = self.s
        beta = wf.beta * s + self.b0
        vcov = wf.vcov * s**2
        se, corr = _std_errors(vcov, self.M)
        if self.M is not None:
            with np.errstate(over="ignore"):
                beta, vcov = self.M @ beta, self.M @ vcov @ self.M.T
        ranef, cond_cov = [], []
        for b, C, c in zip(wf.ranef, wf.cond_cov, self.tscale):
            cc = np.ones(b.shape[1]) if c is None else c
            ranef.append(b * s / cc)
            cond_cov.append(C * s**2 / np.outer(cc, cc))
        resid = np.empty(self.y.size)
        fitted: np.ndarray | Callable[[], np.ndarray]
        if isinstance(wf.fitted, np.ndarray):  # the values given: both from them
            given = wf.fitted

            def both(rows: slice) -> None:
                np.subtract(self.y[rows], given[rows], out=resid[rows])
                self._fitted_back(rows, given[rows], resid[rows])

            _by_blocks(resid.size, both)
            fitted = given
        else:  # the residuals now (the report's quartiles read them), the fitted values when first asked for
            fill = wf.fitted

            def residuals(rows: slice) -> None:
                r = resid[rows]
                fill(rows, r)
                np.subtract(self.y[rows], r, out=r)
                self._fitted_back(rows, None, r)

            _by_blocks(resid.size, residuals)

            def fitted() -> np.ndarray:
                out = np.empty(resid.size)

                def values(rows: slice) -> None:
                    fill(rows, out[rows])
                    self._fitted_back(rows, out[rows], None)

                _by_blocks(out.size, values)
                return out

        return {
            "theta": self.theta_from_working(wf.theta),
            "sigma": wf.sigma * s,
            "beta": beta,
            "vcov": vcov,
            "std_errors": se,
            "corr_fixed": corr,
            "objective": wf.objective + self.criterion_shift(dof),
            "ranef": ranef,
            "cond_cov": cond_cov,
            "fitted_values": fitted,
            "residuals": resid,
        }


def _by_blocks(n: int, fn: Callable[[slice], None]) -> None:
    """``fn`` on each block of BLOCK_ROWS rows of 0..n (row blocks: no n-vector temporaries), the blocks of each
    half of a long vector on a thread of their own (numpy's work on a block holds no lock; the halves' rows are
    apart)."""

    def run(half: slice) -> None:
        for start in range(half.start, half.stop, BLOCK_ROWS):
            fn(slice(start, min(start + BLOCK_ROWS, half.stop)))

    on_two_threads(run, row_halves(n))


def prepare(
    X: np.ndarray,
    y: np.ndarray,
    terms: Sequence[ReTerm],
    RX: np.ndarray,
    *,
    weights: np.ndarray | None,
    offset: np.ndarray | None,
    dense: bool,
    overwrite_y: bool,
    XtX: np.ndarray | None = None,
) -> Working:
    """The working parametrization of the module docstring; RX is R of X = QR (X's kept columns); ``XtX`` is
    X'X when it is already computed (large data), and the Working's XtX is X~'X~ when X~ is X."""
    from mmcli.lmm.rank import aliased_columns_r

    sqrtw = None if weights is None else np.sqrt(weights)
    yw = y if overwrite_y and y.flags.writeable else y.copy()
    if offset is not None:
        yw -= offset
    user_terms = list(terms)
    if sqrtw is not None:
        X = X * sqrtw[:, None]
        yw *= sqrtw
        terms = [weighted_term(t, sqrtw) for t in terms]
        RX = aliased_columns_r(X)[2]
        XtX = None
    M = _x_transform(X, RX, dense)
    if M is not None:
        X = X @ M
        XtX = None
    terms, tscale = _scale_templates(terms)
    b0 = _least_squares(X, yw, XtX)
    s = subtract_xb(yw, X, b0)
    if not 1e-153 < s < 1e153:  # sigma^2 and vcov must stay representable
        raise DataError(
            f"The response varies on a scale of {s:.3g}: its variance cannot be represented in double "
            "precision. Rescale the response (divide it by a power of ten) and fit again."
        )
    yw /= s
    log_w_sum = float(np.sum(np.log(weights))) if weights is not None else 0.0
    return Working(X, yw, terms, user_terms, M, tscale, b0, s, sqrtw, offset, log_w_sum, XtX)


def weighted_term(t: ReTerm, sqrtw: np.ndarray) -> ReTerm:
    """The term with its rows multiplied by sqrt(w)."""
    if t.indicator and t.T is not None:
        return dataclasses.replace(t, T=t.T * sqrtw[:, None])
    from mmcli.lmm._lazy import sp

    return dataclasses.replace(t, Z=(sp.diags(sqrtw) @ t.zmat()).tocsc())


def _x_transform(X: np.ndarray, RX: np.ndarray, dense: bool) -> np.ndarray | None:
    """M with X M well conditioned, or None to use X as it is (no copy: the large-data path)."""
    if X.shape[1] == 0:
        return None
    R = np.asarray(np.linalg.qr(RX, mode="r")) if RX.shape[0] != RX.shape[1] else RX
    if np.abs(np.diag(R)).min() <= 0:
        return None
    cnorm = column_norms(R)
    if np.linalg.cond(R / cnorm) > 1e4:
        return np.linalg.inv(R)  # X R^-1 has orthonormal columns
    extreme = cnorm.min() < 1e-100 or cnorm.max() > 1e100  # squares and products would leave double range
    return np.diag(1.0 / cnorm) if dense or extreme else None


def _scale_templates(terms: Sequence[ReTerm]) -> tuple[list[ReTerm], list[np.ndarray | None]]:
    """Indicator terms' template columns with RMS outside [1e-2, 1e2] divided by their RMS."""
    out: list[ReTerm] = []
    scales: list[np.ndarray | None] = []
    for t in terms:
        c = None
        if t.indicator and t.T is not None and t.codes is not None:
            if t.T.shape[0] and t.T.strides[0] == 0 and np.all(t.T[0] == 1.0):  # a broadcast 1: RMS 1, no pass
                out.append(t)
                scales.append(None)
                continue
            rms = np.sqrt(np.mean(t.T * t.T, axis=0))
            c = np.where((rms > 0) & ((rms < 1e-2) | (rms > 1e2)), rms, 1.0)
            c = None if np.all(c == 1.0) else c
        out.append(t if c is None else dataclasses.replace(t, T=t.T / c))
        scales.append(c)
    return out, scales


def _least_squares(X: np.ndarray, y: np.ndarray, XtX: np.ndarray | None = None) -> np.ndarray:
    """Rough least-squares coefficients from the small normal equations (column-scaled). Only used to centre
    y, so their accuracy does not matter: the fit is exactly invariant to them (yet they are computed the one
    way, so that a fit's numbers do not depend on whether X'X was at hand). X'y is formed from y as it is; only
    when that overflows, from y / max|y|."""
    if X.shape[1] == 0:
        return np.zeros(0)
    G = cross_product(X) if XtX is None else XtX
    c = column_norms(X, G)
    c[c == 0] = 1.0
    with np.errstate(over="ignore", invalid="ignore"):
        g, ymax = cross_product(X, y), 1.0
    if not np.all(np.isfinite(g)):
        ymax = abs_max(y) or 1.0
        g = cross_product(X, y / ymax)
    b, *_ = np.linalg.lstsq(G / np.outer(c, c), g / c, rcond=None)
    return b / c * ymax


def abs_max(y: np.ndarray) -> float:
    """max |y| without an n-vector of |y|."""
    return max(float(y.max()), -float(y.min())) if y.size else 0.0


def subtract_xb(y: np.ndarray, X: np.ndarray, b: np.ndarray, block: int = BLOCK_ROWS) -> float:
    """y -= X b in place, in row blocks (no n-vector temporary); returns :func:`_response_scale` of the new y,
    from sums taken block by block as the blocks are written (no more passes over y), or, when those sums
    overflow, from y / max|y| by :func:`_response_scale` itself."""
    s1 = s2 = 0.0
    top = 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        for start in range(0, y.size, block):
            v = y[start : start + block]
            v -= X[start : start + block] @ b
            s1 += float(v.sum())
            s2 += float(v @ v)
            if v.size:
                top = max(top, float(v.max()), -float(v.min()))
    if y.size == 0 or not (top > 0 and math.isfinite(top)) or not math.isfinite(s2):
        return _response_scale(y, block)
    return scale_from_sums(y.size, s1 / top, s2 / (top * top), top)


def _response_scale(y: np.ndarray, block: int = BLOCK_ROWS) -> float:
    """The standard deviation of y (its largest magnitude when constant), computed in blocks on y / max|y|
    so that neither huge nor tiny responses overflow and no copy of y is made."""
    if y.size == 0:
        return 1.0
    m = abs_max(y)
    if not (m > 0 and np.isfinite(m)):
        return 1.0
    s1 = s2 = 0.0
    for start in range(0, y.size, block):
        v = y[start : start + block] / m
        s1 += float(v.sum())
        s2 += float(v @ v)
    return scale_from_sums(y.size, s1, s2, m)


def scale_from_sums(n: int, s1: float, s2: float, m: float) -> float:
    """The standard deviation of n values from the sum s1 and the sum of squares s2 of the values divided by
    their largest magnitude m; m itself when they are constant (the spread below 1e-12 of m)."""
    mean = s1 / n
    var = max(s2 / n - mean * mean, 0.0)
    return m * math.sqrt(var) if var > 1e-24 else m


def _std_errors(vcov_w: np.ndarray, M: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Standard errors and correlations of beta = M beta_w from the working covariance, computed without
    forming M V M' (whose entries leave double range for a column of magnitude 1e-200): with V = L L', the
    standard errors are the row norms of M L and the correlations the inner products of its normalized rows."""
    p = vcov_w.shape[0]
    A: np.ndarray | None = None
    if p:
        try:
            L = np.linalg.cholesky(vcov_w)
            A = L if M is None else M @ L
        except np.linalg.LinAlgError:
            A = None
    if A is None:
        V = vcov_w if M is None else M @ vcov_w @ M.T
        se = np.sqrt(np.maximum(np.diag(V), 0.0))
        with np.errstate(invalid="ignore", divide="ignore"):
            return se, V / np.outer(se, se)
    se = column_norms(A.T)
    with np.errstate(invalid="ignore", divide="ignore"):
        U = A / se[:, None]
    return se, U @ U.T
