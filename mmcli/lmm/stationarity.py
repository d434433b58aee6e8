"""Is the optimizer's end a minimum? The KKT conditions of the bounded theta, checked by finite differences.

An optimizer can stop on the boundary where it is not stationary: a Cholesky diagonal at its bound 0 whose
column could turn the other way. ``L_j L_j'`` does not change when column j of a template changes sign, so
at a zero diagonal the point with that column's off-diagonal entries negated is the same model, and the
one-sided derivative along the diagonal there is the other half of the KKT condition (lme4's bobyqa and
Nelder-Mead refits, and allFit, find such points; MixedModels.jl flips the signs of such columns). So, at
the end: in the interior each coordinate's Newton step must gain nothing (the gradient is zero to the
resolution of the criterion), and at an active bound the derivative into the feasible side must be
non-negative for both signs of the column. A point that fails gives a lower point near it, from which the
optimizer starts again; the best point is kept.

The steps off a bound reach 0.3 (in units of the column's scale), not only the first-order neighbourhood: the
criterion is even in a scalar term's theta, so its derivative at 0 is exactly zero and 0 is always a KKT point.
A gradient-based optimizer whose first step is projected onto the bound stops there with a zero projected
gradient; only a point further up the feasible side shows that 0 is a maximum along that direction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from mmcli.lmm.terms import ReTerm, theta_offsets

STEP = 1e-4  # relative finite-difference step (of max(|theta_i|, 0.1))
BOUND_STEPS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 3.0)  # steps off an active bound (units of max(|column|, 0.1))
MAX_RESTARTS = 3


@dataclass(frozen=True)
class Verdict:
    """The check at one point: a lower point near it (None when it is a minimum to the criterion's
    resolution), what that point gains, and the evaluations spent."""

    better: np.ndarray | None
    gain: float
    evaluations: int


def columns(terms: Sequence[ReTerm]) -> list[tuple[int, list[int]]]:
    """For each template column: its diagonal entry's index in theta and its off-diagonal entries' indices."""
    out = []
    for t, k in zip(terms, theta_offsets(terms)):
        pos = list(t.template_positions())
        for j in range(t.p):
            diag = k + pos.index((j, j))
            below = [k + m for m, (i, jj) in enumerate(pos) if jj == j and i != j]
            out.append((diag, below))
    return out


def tolerance(f: float) -> float:
    """A change in the criterion that is real, not rounding: far above ~1e-12 relative, far below any
    difference that shows in a printed result."""
    return max(1e-7, 1e-10 * abs(f))


def check(
    fn: Callable[[np.ndarray], float],
    theta: np.ndarray,
    f: float,
    lower: np.ndarray,
    cols: list[tuple[int, list[int]]],
    grad: np.ndarray | None = None,
) -> Verdict:
    """The KKT conditions at theta, by finite differences of fn. With ``grad`` (the analytic gradient at
    theta), each interior coordinate takes one step, downhill, and the curvature from it and the gradient,
    instead of a central difference of two."""
    tol = tolerance(f)
    best, best_f, evals = None, f, 0

    def consider(x: np.ndarray, v: float | None = None) -> None:
        nonlocal best, best_f, evals
        if v is None:
            v = fn(x)
            evals += 1
        if np.isfinite(v) and v < best_f - tol:
            best, best_f = x.copy(), v

    at_bound = np.isfinite(lower) & (theta <= lower)
    for i in range(theta.size):
        h = STEP * max(abs(theta[i]), 0.1)
        if at_bound[i]:
            continue
        if grad is not None:
            evals += _one_sided(fn, theta, f, lower, i, h, float(grad[i]), tol, consider)
            continue
        up, down = theta.copy(), theta.copy()
        up[i] += h
        down[i] = max(theta[i] - h, lower[i]) if np.isfinite(lower[i]) else theta[i] - h
        fu, fd = fn(up), fn(down)
        evals += 2
        for x, v in ((up, fu), (down, fd)):
            if np.isfinite(v) and v < best_f - tol:
                best, best_f = x.copy(), v
        hd = down[i] - theta[i]  # -h, or less where the bound is near
        if hd == 0:
            continue
        # the Newton step along i, from the parabola f + g t + c t^2 / 2 through the three points
        c = 2 * ((fu - f) / h - (fd - f) / hd) / (h - hd)
        g = (fu - f) / h - c * h / 2
        if c > 0 and g * g / (2 * c) > tol:
            newton = theta.copy()
            newton[i] = max(theta[i] - g / c, lower[i]) if np.isfinite(lower[i]) else theta[i] - g / c
            consider(newton)
    for diag, below in cols:
        if not at_bound[diag]:
            continue
        for flip in (False, True) if below and np.any(theta[below] != 0) else (False,):
            for s in BOUND_STEPS:
                x = theta.copy()
                if flip:
                    x[below] = -x[below]
                x[diag] = lower[diag] + s * max(float(np.max(np.abs(theta[below]), initial=0.0)), 0.1)
                consider(x)
    return Verdict(best, f - best_f, evals)


def _one_sided(
    fn: Callable[[np.ndarray], float],
    theta: np.ndarray,
    f: float,
    lower: np.ndarray,
    i: int,
    h: float,
    g: float,
    tol: float,
    consider: Callable[..., None],
) -> int:
    """Coordinate i with its derivative g known: one step of h downhill (uphill where the bound is nearer than
    h), the curvature c from f + g t + c t^2 / 2 through it, and the Newton step when it gains more than tol.
    Returns the evaluations it made itself (those of ``consider`` are counted there)."""
    t = -h if g > 0 else h
    if np.isfinite(lower[i]) and theta[i] + t < lower[i]:
        t = h
    x = theta.copy()
    x[i] += t
    fs = fn(x)
    consider(x, fs)
    c = 2.0 * (fs - f - g * t) / (t * t)
    if np.isfinite(c) and c > 0 and g * g / (2 * c) > tol:
        newton = theta.copy()
        newton[i] = max(theta[i] - g / c, lower[i]) if np.isfinite(lower[i]) else theta[i] - g / c
        consider(newton)
    return 1


@dataclass(frozen=True)
class Outcome:
    theta: np.ndarray
    f: float
    restarts: int
    stationary: bool
    evaluations: int
    converged: bool  # the last optimizer run that improved the point reported success


def verify(
    fn: Callable[[np.ndarray], float],
    theta: np.ndarray,
    f: float,
    lower: np.ndarray,
    terms: Sequence[ReTerm],
    reoptimize: Callable[[np.ndarray], tuple[np.ndarray, float, int, bool]],
    converged: bool,
    grad: np.ndarray | None = None,
) -> Outcome:
    """Check the end point; while a lower point is found near it, start the optimizer again from there
    (``reoptimize(start) -> (theta, f, evaluations, converged)``), keeping the best. At most MAX_RESTARTS.
    ``grad``: the analytic gradient at the end point, when the optimizer had it (see :func:`check`)."""
    cols = columns(terms)
    verdict = check(fn, theta, f, lower, cols, grad)
    evals, restarts = verdict.evaluations, 0
    while verdict.better is not None and restarts < MAX_RESTARTS:
        restarts += 1
        start, start_f = verdict.better, f - verdict.gain
        th, fv, n, ok = reoptimize(start)
        evals += n
        if not fv <= start_f:  # the optimizer did not improve on its start: keep the start itself
            th, fv, ok = start, start_f, converged
        theta, f, converged = th, fv, ok
        verdict = check(fn, theta, f, lower, cols)
        evals += verdict.evaluations
    return Outcome(theta, f, restarts, verdict.better is None, evals, converged)
