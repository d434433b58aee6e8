"""glmer's second stage on the analytic gradient (one scalar random-effects term, Laplace): a quasi-Newton method
over (theta, beta) and the Hessian at the optimum for the standard errors.

The deviance is minimized over x = (theta, s) with beta = beta1 + A s, A from the joint PIRLS mode at the start,
so that the Hessian in s starts at 2 I (twice the information X'V^-1 X, scaled to the identity); the rows of theta
come from forward differences of the gradient. Each iteration takes the step -H^-1 g (H's eigenvalues floored
when it is not positive definite), halves it until the deviance decreases enough (Armijo) and updates H by BFGS;
H is formed afresh by differences of the gradient when an updated H gives no descent. The deviance is even in
theta (theta and -theta give the same model with u negated), so a step across 0 is reflected. It stops when the
Newton decrement g'H^-1 g / 2 (the predicted decrease) is below DECREMENT_TOL; the Hessian for the standard
errors is then formed by forward differences of the gradient at the optimum (Nocedal & Wright 2006, sections
3.4, 6.1 and 8.1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

DECREMENT_TOL = 1e-9  # the predicted decrease of the deviance at which Newton's method stops
MAXIT = 50
MAX_HALVINGS = 30
EIG_FLOOR = 1e-8  # relative to the largest eigenvalue of H: the floor of an indefinite H's eigenvalues

DevGrad = Callable[[np.ndarray], tuple[float, np.ndarray]]


@dataclass(frozen=True, eq=False)
class NewtonResult:
    x: np.ndarray
    f: float
    g: np.ndarray  # the gradient at x
    iterations: int
    converged: bool  # the Newton decrement below DECREMENT_TOL: a stationary point with H positive definite
    gradients: int = 0  # gradient evaluations (each with its deviance), the Hessians' included


def hessian_from_gradient(fg: DevGrad, x: np.ndarray, g: np.ndarray | None, h: np.ndarray) -> np.ndarray:
    """The Hessian by differences of the gradient: forward (from g at x) when ``g`` is given, else central;
    symmetrized."""
    k = x.size
    H = np.zeros((k, k))
    for i in range(k):
        e = np.zeros(k)
        e[i] = h[i]
        if g is None:
            H[:, i] = (fg(x + e)[1] - fg(x - e)[1]) / (2 * h[i])
        else:
            H[:, i] = (fg(x + e)[1] - g) / h[i]
    return 0.5 * (H + H.T)


def _direction(H: np.ndarray, g: np.ndarray) -> np.ndarray:
    """-H^-1 g, with H's eigenvalues floored at EIG_FLOOR times the largest when H is not positive definite."""
    try:
        L = np.linalg.cholesky(H)
        return -np.linalg.solve(L.T, np.linalg.solve(L, g))
    except np.linalg.LinAlgError:
        lam, Q = np.linalg.eigh(H)
        top = max(float(np.max(np.abs(lam))), 1e-300)
        lam = np.maximum(np.abs(lam), EIG_FLOOR * top)
        return -(Q @ ((Q.T @ g) / lam))


def newton(fg: DevGrad, x0: np.ndarray, k: int, h: np.ndarray, H0: np.ndarray | None = None) -> NewtonResult:
    """Minimize the deviance over x = (theta, s) from x0; theta (the first k entries, one here) is >= 0.

    The Hessian is formed by differences of the gradient at the start and whenever a step fails; between, BFGS
    updates it from the steps taken (one gradient per iteration instead of k + 1)."""
    calls = [0]

    def counted(v: np.ndarray) -> tuple[float, np.ndarray]:
        calls[0] += 1
        return fg(v)

    res = _newton(counted, x0, k, h, H0)
    return NewtonResult(res.x, res.f, res.g, res.iterations, res.converged, calls[0])


def _newton(fg: DevGrad, x0: np.ndarray, k: int, h: np.ndarray, H0: np.ndarray | None) -> NewtonResult:
    x = x0.copy()
    f, g = fg(x)
    if H0 is None:
        H = hessian_from_gradient(fg, x, g, h)
    else:  # the rows and columns of theta by differences, the rest as given
        H = H0.copy()
        for i in range(k):
            e = np.zeros(x.size)
            e[i] = h[i]
            H[:, i] = (fg(x + e)[1] - g) / h[i]
            H[i, :] = H[:, i]
    fresh = True  # H was formed by differences here (not updated)
    for it in range(1, MAXIT + 1):
        d = _direction(H, g)
        decrement = -0.5 * float(g @ d)
        if not np.isfinite(decrement):
            return NewtonResult(x, f, g, it, False)
        if decrement < DECREMENT_TOL:
            return NewtonResult(x, f, g, it, True)
        step, accepted = 1.0, False
        for _ in range(MAX_HALVINGS if fresh else 2):
            xt = x + step * d
            xt[:k] = np.abs(xt[:k])  # the deviance is even in theta
            ft, gt = fg(xt)
            if np.isfinite(ft) and ft <= f - 1e-4 * step * 2 * decrement:
                accepted = True
                break
            step /= 2
        if not accepted:
            if fresh:  # no decrease left along Newton's direction: the minimum to the deviance's rounding
                return NewtonResult(x, f, g, it, decrement < 1e3 * DECREMENT_TOL)
            H, fresh = hessian_from_gradient(fg, x, g, h), True  # the updated H misled: form it afresh
            continue
        sx, sy = xt - x, gt - g
        x, f, g = xt, ft, gt
        if float(sx @ sy) > 1e-12 * float(np.sqrt((sx @ sx) * (sy @ sy))):  # BFGS keeps H positive definite
            Hs = H @ sx
            H = H - np.outer(Hs, Hs) / float(sx @ Hs) + np.outer(sy, sy) / float(sx @ sy)
            fresh = False
        else:
            H, fresh = hessian_from_gradient(fg, x, g, h), True
    return NewtonResult(x, f, g, MAXIT, False)
