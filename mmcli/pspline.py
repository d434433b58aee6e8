"""mgcv's P-spline (``bs = "ps"``; Eilers and Marx 1996, Wood 2017 §5.3.3): a cubic B-spline basis on
evenly spaced knots with a second-order difference penalty, as ``smooth.construct.ps.smooth.spec`` builds it
with its default m = c(2, 2).

The k - 2 interior intervals cover [min x - r/1000, max x + r/1000] (r the range of x), with three more knots
spaced alike beyond each end; S = D'D with D the second differences of the identity. New x beyond the
basis' support is extrapolated linearly from the value and slope at its ends (mgcv's
Predict.matrix.pspline.smooth).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PsBasis", "ps_basis"]

_ORDER = 2  # m[1]: cubic B-splines (degree m[1] + 1)
_DIFF = 2  # m[2]: the order of the difference penalty


@dataclass(frozen=True, eq=False)
class PsBasis:
    """The B-spline knots (length k + 4) and the basis X and penalty S at the data."""

    knots: np.ndarray
    X: np.ndarray
    S: np.ndarray
    rank: int
    null_space_dim: int

    def _splines(self, x: np.ndarray, nu: int = 0) -> np.ndarray:
        from scipy.interpolate import BSpline

        nb = self.knots.size - _ORDER - 2
        deg = _ORDER + 1
        b = BSpline(self.knots, np.eye(nb), deg, extrapolate=False)
        out = (b.derivative(nu) if nu else b)(x)
        return np.nan_to_num(np.asarray(out, dtype=float).reshape(x.size, nb))

    def matrix(self, x: np.ndarray) -> np.ndarray:
        """The basis at new x, linear beyond the ends of the basis' support."""
        x = np.asarray(x, dtype=float).ravel()
        lo, hi = self.knots[_ORDER + 1], self.knots[self.knots.size - _ORDER - 2]
        inside = (x >= lo) & (x <= hi)
        out = np.zeros((x.size, self.knots.size - _ORDER - 2))
        out[inside] = self._splines(x[inside])
        for edge, mask in ((lo, x < lo), (hi, x > hi)):
            if mask.any():
                e = np.array([edge])
                out[mask] = self._splines(e) + np.outer(x[mask] - edge, self._splines(e, 1))
        return out


def ps_basis(x: np.ndarray, k: int) -> PsBasis:
    """mgcv's ps basis with k coefficients at data x."""
    x = np.asarray(x, dtype=float).ravel()
    nk = k - _ORDER
    xl, xu = float(x.min()), float(x.max())
    xr = xu - xl
    xl, xu = xl - xr * 0.001, xu + xr * 0.001
    dx = (xu - xl) / (nk - 1)
    knots = np.linspace(xl - dx * (_ORDER + 1), xu + dx * (_ORDER + 1), nk + 2 * _ORDER + 2)
    D = np.diff(np.eye(k), n=_DIFF, axis=0)
    basis = PsBasis(knots, np.zeros((0, k)), D.T @ D, k - _DIFF, _DIFF)
    return PsBasis(knots, basis._splines(x), basis.S, k - _DIFF, _DIFF)
