"""Penalized least squares at any lambda, and lambda by GCV (Wood 2006 section 3.2).

min ||y - X beta||^2 + lambda beta'S beta is solved by least squares on the augmented system
[X; sqrt(lambda) B] beta ~ [y; 0] with B'B = S, reduced to [R0; sqrt(lambda) B] by one QR of X, so that a lambda
search costs O(p^3) per lambda. GCV(lambda) = n RSS / (n - EDF)^2 is minimized over Wood's grid, then refined by
a bounded Brent search on log lambda. Numbers only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg
import scipy.optimize

GCV_GRID = 1e-8 * 1.5 ** np.arange(60)
"""Wood's (2006, section 3.2.3) lambda grid for GCV: 1e-8 * 1.5^i, i = 0..59 (1e-8 to about 240)."""

GCV_XATOL = 1e-10
"""Tolerance on log(lambda) of the bounded Brent refinement of the GCV minimum."""


@dataclass(frozen=True, eq=False)
class AtLambda:
    """The penalized least-squares fit at one lambda."""

    lam: float
    coef: np.ndarray
    fitted: np.ndarray
    rss: float
    edf: float
    Rinv: np.ndarray  # (X'X + lam S)^-1 = Rinv Rinv'


@dataclass(frozen=True, eq=False)
class PenalizedLS:
    """min ||y - X beta||^2 + lam ||B beta||^2 for any lam, with X = Q0 R0 factored once (Wood 2006 §3.2.2).

    The augmented system [X; sqrt(lam) B] beta ~ [y; 0] has the same solution as the p + p rows
    [R0; sqrt(lam) B] beta ~ [Q0'y; 0], so each lambda costs O(p^3) and not O(n p^2): with that QR
    [R0; sqrt(lam) B] = Q R, beta = R^-1 Q'[Q0'y; 0], A = Q0 Q_1 Q_1' Q0' with Q_1 the first p rows of Q, so
    EDF = tr A = ||Q_1||_F^2, and (X'X + lam S)^-1 = R^-1 R^-T. No normal equations are formed.
    """

    X: np.ndarray
    y: np.ndarray
    B: np.ndarray
    R0: np.ndarray
    Qty: np.ndarray
    null: np.ndarray  # columns outside the penalty (B e_j = 0): the fit as lam -> inf uses only these

    @classmethod
    def build(cls, X: np.ndarray, y: np.ndarray, B: np.ndarray) -> PenalizedLS:
        Q0, R0 = np.linalg.qr(X)
        norms = np.sqrt(np.sum(B**2, axis=0))
        null = np.flatnonzero(norms <= 1e-8 * max(float(norms.max()), np.finfo(float).tiny))
        return cls(X, y, B, R0, Q0.T @ y, null)

    def at(self, lam: float) -> AtLambda:
        """The fit at lam > 0; lam = inf fits the unpenalized columns only (the limit lam -> inf)."""
        p = self.X.shape[1]
        if math.isinf(lam):
            Q, R = np.linalg.qr(self.X[:, self.null])
            Rinv = np.zeros((p, p))
            Rinv[np.ix_(self.null, self.null)] = scipy.linalg.solve_triangular(R, np.eye(self.null.size))
            coef = np.zeros(p)
            coef[self.null] = scipy.linalg.solve_triangular(R, Q.T @ self.y)
            edf = float(self.null.size)
        else:
            Q, R = np.linalg.qr(np.vstack([self.R0, math.sqrt(lam) * self.B]))
            coef = scipy.linalg.solve_triangular(R, Q[:p].T @ self.Qty)
            edf = float(np.sum(Q[:p] ** 2))
            Rinv = scipy.linalg.solve_triangular(R, np.eye(p))
        fitted = self.X @ coef
        return AtLambda(lam, coef, fitted, float(np.sum((self.y - fitted) ** 2)), edf, Rinv)


def fit_at_lambda(X: np.ndarray, y: np.ndarray, B: np.ndarray, lam: float) -> AtLambda:
    """Penalized least squares at lambda with any B'B = S (Wood 2006 §3.2.2); see `PenalizedLS`."""
    return PenalizedLS.build(X, y, B).at(lam)


def gcv_score(n: int, at: AtLambda) -> float:
    return n * at.rss / (n - at.edf) ** 2


def gcv_search(pls: PenalizedLS) -> tuple[float, dict[str, Any]]:
    """lambda minimizing GCV(lambda) = n RSS / (n - EDF)^2 (Wood 2006 section 3.2.3).

    Wood's grid 1e-8 * 1.5^i first, so that a local minimum does not trap the search; then a bounded Brent
    search on log lambda between the best grid point's neighbours.
    """
    n = pls.y.size
    grid_gcv = np.array([gcv_score(n, pls.at(float(lam))) for lam in GCV_GRID])
    i = int(np.argmin(grid_gcv))
    lo, hi = np.log(GCV_GRID[max(i - 1, 0)]), np.log(GCV_GRID[min(i + 1, GCV_GRID.size - 1)])
    res = scipy.optimize.minimize_scalar(
        lambda rho: gcv_score(n, pls.at(math.exp(rho))),
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": GCV_XATOL, "maxiter": 500},
    )
    lam, best = math.exp(float(res.x)), float(res.fun)
    if not best <= grid_gcv[i]:  # never do worse than the grid
        lam, best = float(GCV_GRID[i]), float(grid_gcv[i])
    record = {
        "criterion": "GCV",
        "grid": [float(v) for v in GCV_GRID],
        "grid_gcv": [float(v) for v in grid_gcv],
        "grid_best_lambda": float(GCV_GRID[i]),
        "grid_best_gcv": float(grid_gcv[i]),
        "at_grid_edge": i in (0, GCV_GRID.size - 1),
        "refine": {
            "method": "bounded Brent on log(lambda)",
            "bounds": [math.exp(lo), math.exp(hi)],
            "xatol": GCV_XATOL,
            "evaluations": int(res.nfev),
            "converged": bool(res.success),
            "message": str(res.message),
        },
        "lambda": lam,
        "gcv": best,
    }
    return lam, record
