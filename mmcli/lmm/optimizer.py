"""The bound-constrained optimizers of the profiled criterion: L-BFGS-B (Byrd, Lu, Nocedal & Zhu 1995, through
scipy) on the criterion and its analytic gradient (mmcli.lmm.gradient), the default; and BOBYQA (Powell 2009)
through NLopt, with lme4's nloptwrap settings (ftol_abs = xtol_abs = 1e-8, maxeval = 1e5), derivative-free."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np

from mmcli.lmm import setulb

MAIN_TOL = 1e-8  # lme4's nloptwrap settings
POLISH_TOL = 1e-10
OPTIMIZERS = ("lbfgsb", "bobyqa")
LBFGSB_FTOL = 1e-13
"""It also stops when one iteration lowers the criterion by less than this, relative (a few hundred ulps): on large
data the gradient carries rounding noise above LBFGSB_GTOL, and the line searches would go on in the last digits
(InstEval: six evaluations that moved the deviance by 3e-11)."""
LBFGSB_GTOL = 1e-6  # the largest projected gradient entry at the end (criterion units per unit of theta)
LBFGSB_MEMORY = 20  # correction pairs kept (there are rarely more theta entries than this)
LBFGSB_SCALE = 4.0
"""L-BFGS-B sees x = LBFGSB_SCALE * theta. Its first step has unit length in x whatever the gradient, so from the
identity start an unscaled first step would put a single theta exactly on its bound 0, where a scalar term's
criterion has zero derivative (it is even in theta) and the optimizer stops; in x the first step moves theta by
1 / LBFGSB_SCALE."""

_CHOICE: ContextVar[str] = ContextVar("mmcli_optimizer", default="lbfgsb")


def chosen_optimizer() -> str:
    """The optimizer a fit uses when it is not told: L-BFGS-B unless :func:`use_optimizer` says otherwise."""
    return _CHOICE.get()


@contextlib.contextmanager
def use_optimizer(name: str | None) -> Iterator[None]:
    """Fits inside the block use ``name`` (lbfgsb or bobyqa); None leaves the choice as it is."""
    if name is None:
        yield
        return
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}: use one of {', '.join(OPTIMIZERS)}")
    token = _CHOICE.set(name)
    try:
        yield
    finally:
        _CHOICE.reset(token)


@dataclass(frozen=True)
class OptimizerRecord:
    """How the optimizer ran: its name, evaluations, final message, and theta where it started and ended
    (in the working parametrization, where the optimizer sees it)."""

    name: str
    evaluations: int
    message: str
    theta_start: tuple[float, ...]
    theta_end: tuple[float, ...]
    seconds: float
    restarts: int = 0  # restarts from a lower point found near the end (mmcli.lmm.stationarity)
    stationary: bool | None = None  # whether the end satisfies the KKT conditions; None when not checked
    gradient_evaluations: int = 0  # evaluations that also computed the analytic gradient (counted in evaluations)
    iterations: int = 0  # the optimizer's own iterations (L-BFGS-B), 0 where it does not report them
    gradient_end: tuple[float, ...] = ()  # the analytic gradient at theta_end (L-BFGS-B), empty without one


def no_optimizer(theta: np.ndarray) -> OptimizerRecord:
    """The record of a fit at a given theta."""
    th = tuple(map(float, theta))
    return OptimizerRecord("none (theta given)", 0, "theta given", th, th, 0.0)


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


def bobyqa(
    fn: Callable[[np.ndarray], float],
    x0: np.ndarray,
    lower: np.ndarray,
    progress: Callable[[int, float], None] | None = None,
    polish: bool = True,
    local: bool = False,
) -> tuple[np.ndarray, float, OptimizerRecord, bool]:
    """Minimize fn over theta >= lower from x0. With ``polish``, a second pass restarts from the optimum with
    a small step and tolerances of 1e-10: a guard against an early stop on a flat surface, which the caller
    asks for when an evaluation is cheap (decided by the problem's size, so results are reproducible).
    ``local``: a restart near a known point, with steps on the scale of theta that keep the start where it is
    (BOBYQA moves a start that lies closer to a bound than its first step onto the bound).
    Returns (theta, fn(theta), the record, converged)."""
    import nlopt

    t0 = time.perf_counter()
    count, best = [0], [np.inf]

    def f(x: np.ndarray, grad: np.ndarray) -> float:
        count[0] += 1
        v = fn(np.asarray(x))
        v = v if np.isfinite(v) else 1e300
        best[0] = min(best[0], v)
        if progress is not None:
            progress(count[0], best[0])
        return v

    k = x0.size
    xs, fx, msg, ok = x0.copy(), np.inf, "", True
    for polishing in (False, True):
        if polishing and not polish:
            break
        opt = nlopt.opt(nlopt.LN_BOBYQA, k)
        opt.set_min_objective(f)
        opt.set_lower_bounds(np.where(np.isfinite(lower), lower, -1e300))
        tol = POLISH_TOL if polishing else MAIN_TOL
        opt.set_ftol_abs(tol)
        opt.set_xtol_abs(tol)
        opt.set_maxeval(100000)
        opt.set_initial_step(_initial_step(xs, lower, polishing, local))
        try:
            xn = opt.optimize(xs)
            fn_new, res = opt.last_optimum_value(), opt.last_optimize_result()
        except (nlopt.RoundoffLimited, RuntimeError, ValueError) as e:  # keep the best point seen
            if polishing:
                break  # the polishing pass could not improve on a converged first pass: that stands
            xn, fn_new, res = xs, fx, -1
            msg = f"NLopt stopped: {e}"
        improved = fx - fn_new
        if fn_new <= fx:
            xs, fx = xn, fn_new
        msg = _NLOPT_MESSAGES.get(res, msg or f"NLopt code {res}")
        if not polishing or ok:
            ok = res > 0 and res != nlopt.MAXEVAL_REACHED
        if polishing and improved < 1e-8:
            break
    rec = OptimizerRecord(
        "NLopt LN_BOBYQA", count[0], msg, tuple(map(float, x0)), tuple(map(float, xs)), time.perf_counter() - t0
    )
    return np.asarray(xs), float(fx), rec, ok


def _initial_step(x: np.ndarray, lower: np.ndarray, polishing: bool, local: bool) -> np.ndarray:
    if not (polishing or local):
        return np.full(x.size, 0.75)  # lme4's nloptwrap: rhobeg from the identity start
    step = np.maximum(np.abs(x) * (0.02 if polishing else 0.1), 0.005 if polishing else 1e-3)
    room = x - lower  # a start inside the bounds stays there: no step larger than its distance to the bound
    return np.where(np.isfinite(room) & (room > 0), np.minimum(step, room), step)


STATIONARY = "CONVERGENCE: PROJECTED GRADIENT BELOW GTOL AT AN EVALUATED POINT"


class _Stationary(Exception):  # noqa: N818 (control flow, not an error)
    """Raised inside L-BFGS-B's objective at a point that passes the gradient test (see :func:`lbfgsb`)."""

    def __init__(self, x: np.ndarray):
        super().__init__("stationary")
        self.x = x


def _projected_below(x: np.ndarray, g: np.ndarray, lower: np.ndarray, gtol: float) -> bool:
    """L-BFGS-B's gradient test: the largest entry of the gradient projected on the bounds is at most gtol."""
    at_bound = np.isfinite(lower) & (x <= lower) & (g > 0)
    return bool(np.max(np.abs(np.where(at_bound, 0.0, g)), initial=0.0) <= gtol)


def lbfgsb(
    fg: Callable[[np.ndarray], tuple[float, np.ndarray]],
    x0: np.ndarray,
    lower: np.ndarray,
    progress: Callable[[int, float], None] | None = None,
    scale: float = LBFGSB_SCALE,
) -> tuple[np.ndarray, float, OptimizerRecord, bool]:
    """Minimize over theta >= lower from x0 with L-BFGS-B, ``fg(theta) -> (criterion, gradient)``. Every call
    is one evaluation of the criterion and of its gradient. It stops when the largest projected gradient entry
    is below LBFGSB_GTOL, or an iteration gains less than LBFGSB_FTOL relative, or at the first evaluated point no
    higher than the best before it (to the criterion's resolution, :func:`mmcli.lmm.stationarity.tolerance`)
    whose projected gradient is below the larger of LBFGSB_GTOL and that resolution: its line search may not
    accept such a point when the values differ by rounding only, and then spends evaluations on steps of
    1e-8. (Over a unit step of theta, such a gradient changes the criterion by less than its rounding.)
    ``scale``: the optimizer sees x = scale * theta, and its first step has length 1 in x (LBFGSB_SCALE). Returns
    (theta, fn(theta), the record, converged)."""
    from mmcli.lmm.stationarity import tolerance

    t0 = time.perf_counter()
    count, best = [0], [np.inf]
    memo: dict[bytes, tuple[float, np.ndarray]] = {}  # every point evaluated (its gradient is read at the end)

    c = scale

    def f(x: np.ndarray) -> tuple[float, np.ndarray]:
        key = x.tobytes()
        if key in memo:
            return memo[key]
        count[0] += 1
        v, g = fg(np.array(x, dtype=float) / c)
        g = g / c
        finite = bool(np.isfinite(v))
        if not finite:
            v, g = 1e300, np.zeros_like(x)
        below = best[0]
        best[0] = min(best[0], v)
        if progress is not None:
            progress(count[0], best[0])
        memo[key] = (v, g)
        resolution = max(LBFGSB_GTOL, tolerance(v)) / c
        if finite and v <= below + tolerance(below) and _projected_below(x, g, lower * c, resolution):
            raise _Stationary(x.copy())
        return v, g

    iterations = [0]

    def step(xk: np.ndarray) -> None:
        iterations[0] += 1

    try:
        res = _run_lbfgsb(f, np.asarray(x0, dtype=float) * c, np.asarray(lower, dtype=float) * c, c, step)
        xr, fun, msg, ok, nit = np.asarray(res.x, dtype=float), res.fun, res.message, res.success, res.nit
    except _Stationary as stop:  # an evaluated point passed the gradient test, which the line search does not see
        xr, fun, msg, ok, nit = stop.x, memo[stop.x.tobytes()][0], STATIONARY, True, iterations[0]
    x = np.maximum(xr / c, lower)
    at_x = memo.get(xr.tobytes()) if np.array_equal(x, xr / c) else None  # the end was evaluated, as it is
    rec = OptimizerRecord(
        "scipy L-BFGS-B (analytic gradient)",
        count[0],
        msg,
        tuple(map(float, x0)),
        tuple(map(float, x)),
        time.perf_counter() - t0,
        gradient_evaluations=count[0],
        iterations=nit,
        gradient_end=tuple(map(float, at_x[1] * c)) if at_x is not None else (),
    )
    return x, fun, rec, ok or "ABNORMAL" in msg.upper()


def _run_lbfgsb(
    f: Callable[[np.ndarray], tuple[float, np.ndarray]],
    x0: np.ndarray,
    lower: np.ndarray,
    c: float,
    callback: Callable[[np.ndarray], None] | None = None,
) -> setulb.Result:
    """L-BFGS-B with this module's settings: scipy's compiled routine driven directly (:mod:`mmcli.lmm.setulb`,
    no import of scipy.optimize), or through ``scipy.optimize.minimize`` where that routine cannot be loaded.
    Both visit the same points; ``callback(x)`` after each iteration, in either."""
    gtol, maxiter, maxfun = LBFGSB_GTOL / c, 10000, 100000
    routine = setulb.load()
    if routine is not None:
        return setulb.minimize(
            routine,
            f,
            x0,
            lower,
            ftol=LBFGSB_FTOL,
            gtol=gtol,
            maxcor=LBFGSB_MEMORY,
            maxiter=maxiter,
            maxfun=maxfun,
            callback=callback,
        )
    from scipy.optimize import minimize

    bounds = [(lo if np.isfinite(lo) else None, None) for lo in lower]

    def step(xk: np.ndarray) -> None:
        if callback is not None:
            callback(xk)

    res = minimize(
        f,
        x0,
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        callback=step,
        options={"ftol": LBFGSB_FTOL, "gtol": gtol, "maxcor": LBFGSB_MEMORY, "maxiter": maxiter, "maxfun": maxfun},
    )
    x = np.asarray(res.x, dtype=float)
    return setulb.Result(x, float(res.fun), int(res.nit), str(res.message), bool(res.success))
