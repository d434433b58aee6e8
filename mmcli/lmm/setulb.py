"""L-BFGS-B (Byrd, Lu, Nocedal & Zhu 1995) through scipy's compiled routine ``setulb``, without importing
``scipy.optimize``: that package's import pulls in linear programming, FFT, special functions and sparse linear
algebra (about 0.3-0.5 s and 20-40 MiB), most of a small fit's start-up, for one routine of its own.

``setulb`` is driven by reverse communication: each call returns a task code in ``task[0]`` that asks for the
criterion and gradient at x (FG), reports a new iterate (NEW_X), or stops (CONVERGENCE, ABNORMAL, ERROR, ...;
``task[1]`` says why). The driver below calls it with the arguments, workspace sizes and stopping rules that
``scipy.optimize.minimize(method="L-BFGS-B")`` uses, so both visit the same points and return the same optimum.

The routine is loaded only when its signature is the one this driver speaks (scipy 1.15 and later); otherwise
:func:`load` returns None and the caller falls back to ``scipy.optimize.minimize``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmcli.lmm.compiled import extension

SIGNATURE = "setulb(m,x,l,u,nbd,f,g,factr,pgtol,wa,iwa,task,lsave,isave,dsave,maxls,ln_task)"
MAX_LINE_SEARCH = 20  # scipy's default maxls

# task[0] as setulb sets it
_FG, _NEW_X, _CONVERGENCE, _STOP = 3, 1, 4, 5
_STATUS = {4: "CONVERGENCE", 5: "STOP", 6: "WARNING", 7: "ERROR", 8: "ABNORMAL"}
_REASON = {
    401: "NORM OF PROJECTED GRADIENT <= PGTOL",  # the two stopping rules, worded as the routine's documentation
    402: "RELATIVE REDUCTION OF F <= FACTR*EPSMCH",
    502: "evaluation limit reached",
    504: "iteration limit reached",
    601: "rounding errors prevent progress",
    602: "line search step at its largest",
    603: "line search step at its smallest",
    604: "line search interval below its tolerance",
}


def load() -> Callable[..., Any] | None:
    """scipy's compiled ``setulb`` (:mod:`mmcli.lmm.compiled`), or None when it cannot be loaded or its signature
    is not :data:`SIGNATURE`."""
    module = extension("scipy.optimize", "_lbfgsb")
    fn = getattr(module, "setulb", None)
    doc = getattr(fn, "__doc__", None) or ""
    return fn if doc.startswith(SIGNATURE) else None


@dataclass(frozen=True)
class Result:
    """Where L-BFGS-B stopped: x, the criterion there, the iterations, a message, and whether it converged."""

    x: np.ndarray
    fun: float
    nit: int
    message: str
    success: bool


def minimize(
    setulb: Callable[..., Any],
    fg: Callable[[np.ndarray], tuple[float, np.ndarray]],
    x0: np.ndarray,
    lower: np.ndarray,
    *,
    ftol: float,
    gtol: float,
    maxcor: int,
    maxiter: int,
    maxfun: int,
    callback: Callable[[np.ndarray], None] | None = None,
) -> Result:
    """Minimize ``fg(x) -> (f, gradient)`` over x >= lower (entries of lower may be -inf) from x0. ftol is the
    relative reduction of f below which it stops (factr = ftol / eps), gtol the largest projected gradient
    entry; maxcor correction pairs are kept. ``callback(x)`` is called after each iteration, as
    ``scipy.optimize.minimize``'s; an exception raised by ``fg`` or ``callback`` ends the run and propagates."""
    x = np.clip(np.array(x0, dtype=np.float64).ravel(), lower, np.inf)
    n = x.size
    m = maxcor
    finite = np.isfinite(lower)
    low = np.where(finite, lower, 0.0).astype(np.float64)
    upp = np.zeros(n, np.float64)
    nbd = finite.astype(np.int32)  # 1: a lower bound only; 0: unbounded
    f: Any = np.array(0.0, dtype=np.float64)
    g = np.zeros(n, np.float64)
    wa = np.zeros(2 * m * n + 5 * n + 11 * m * m + 8 * m, np.float64)
    iwa = np.zeros(3 * n, np.int32)
    task = np.zeros(2, np.int32)
    ln_task = np.zeros(2, np.int32)
    lsave = np.zeros(4, np.int32)
    isave = np.zeros(44, np.int32)
    dsave = np.zeros(29, np.float64)
    factr = ftol / np.finfo(float).eps
    nit = nfev = 0
    while True:
        setulb(m, x, low, upp, nbd, f, g, factr, gtol, wa, iwa, task, lsave, isave, dsave, MAX_LINE_SEARCH, ln_task)
        if task[0] == _FG:
            nfev += 1
            fv, gv = fg(x.copy())
            f, g = float(fv), np.array(gv, dtype=np.float64).ravel()
        elif task[0] == _NEW_X:
            nit += 1
            if callback is not None:
                callback(x)
            if nit >= maxiter:
                task[:] = (_STOP, 504)
            elif nfev > maxfun:
                task[:] = (_STOP, 502)
        else:
            break
    status = int(task[0])
    message = f"{_STATUS.get(status, f'task {status}')}: {_REASON.get(int(task[1]), f'code {int(task[1])}')}"
    return Result(x, float(f), nit, message, status == _CONVERGENCE)
