"""L-BFGS-B driven without importing scipy.optimize (mmcli.lmm.setulb), and scipy's LAPACK without importing
scipy.linalg (mmcli.lmm.compiled): the same points, the same optima, and a small fit that loads neither package.

The direct driver and ``scipy.optimize.minimize(method="L-BFGS-B")`` call the same compiled routine with the same
settings, so they must visit the same points: the counts are compared exactly and the optima to rounding."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import OPT_DEV, OPT_PAR, ROOT, ROUNDING, load_reference
from test_gradient import model_for

from mmcli.lmm import compiled, setulb
from mmcli.lmm.optimizer import use_optimizer


@pytest.mark.parametrize("stem", ["sleepstudy_slope", "penicillin", "pastes", "dyestuff2"])
def test_direct_driver_visits_the_points_scipy_minimize_visits(stem, monkeypatch):
    assert setulb.load() is not None  # this scipy has the routine the driver speaks to
    with use_optimizer("lbfgsb"):
        direct = model_for(stem).fit(False)
        monkeypatch.setattr(setulb, "load", lambda: None)  # the fallback: scipy.optimize.minimize
        scipy_fit = model_for(stem).fit(False)
    a, b = direct.optimizer, scipy_fit.optimizer
    counts = [(r.evaluations, r.gradient_evaluations, r.iterations) for r in (a, b)]
    assert counts[0] == counts[1]
    assert np.allclose(a.theta_end, b.theta_end, rtol=ROUNDING, atol=ROUNDING)
    assert abs(direct.objective - scipy_fit.objective) <= ROUNDING * abs(direct.objective)
    assert a.message.split(":")[0] == b.message.split(":")[0] == "CONVERGENCE"
    ref = load_reference(f"{stem}_ml")
    assert abs(direct.objective - ref["deviance"]) <= OPT_DEV
    assert np.allclose(direct.theta, ref["theta"], rtol=OPT_PAR, atol=OPT_PAR)


def rosenbrock(x: np.ndarray) -> tuple[float, np.ndarray]:
    a, b = x[0], x[1]
    f = (1 - a) ** 2 + 100 * (b - a * a) ** 2
    return f, np.array([-2 * (1 - a) - 400 * a * (b - a * a), 200 * (b - a * a)])


@pytest.mark.parametrize(
    ("lower", "want"),
    [
        (np.array([-np.inf, -np.inf]), np.array([1.0, 1.0])),  # the interior minimum
        (np.array([1.5, -np.inf]), np.array([1.5, 2.25])),  # on the bound a = 1.5: b = a^2
    ],
)
def test_direct_driver_on_a_bounded_problem(lower, want):
    routine = setulb.load()
    assert routine is not None
    res = setulb.minimize(
        routine, rosenbrock, np.array([2.0, 3.0]), lower, ftol=1e-15, gtol=1e-9, maxcor=10, maxiter=1000, maxfun=5000
    )
    assert res.success and res.message.startswith("CONVERGENCE")
    assert np.allclose(res.x, want, rtol=1e-6, atol=1e-6)  # the known minimum; gtol 1e-9 puts it within 1e-6
    assert np.all(res.x >= lower) and res.nit > 0


def test_direct_driver_calls_back_after_each_iteration_and_lets_an_exception_through():
    routine = setulb.load()
    assert routine is not None
    seen: list[np.ndarray] = []
    res = setulb.minimize(
        routine,
        rosenbrock,
        np.array([-1.2, 1.0]),
        np.full(2, -np.inf),
        ftol=0,
        gtol=1e-9,
        maxcor=5,
        maxiter=500,
        maxfun=5000,
        callback=lambda x: seen.append(x.copy()),
    )
    assert len(seen) == res.nit > 5 and np.array_equal(seen[-1], res.x)

    class HaltError(Exception):
        pass

    def halt(x: np.ndarray) -> None:
        raise HaltError

    with pytest.raises(HaltError):
        setulb.minimize(
            routine,
            rosenbrock,
            np.array([-1.2, 1.0]),
            np.full(2, -np.inf),
            ftol=0,
            gtol=0,
            maxcor=5,
            maxiter=9,
            maxfun=99,
            callback=halt,
        )


def test_direct_driver_stops_at_its_iteration_limit():
    routine = setulb.load()
    assert routine is not None
    res = setulb.minimize(
        routine, rosenbrock, np.array([-1.2, 1.0]), np.full(2, -np.inf), ftol=0, gtol=0, maxcor=5, maxiter=3, maxfun=99
    )
    assert res.nit == 3 and not res.success and "iteration limit" in res.message


def test_lapack_functions_are_scipy_linalgs_own():
    import scipy.linalg.lapack

    module = compiled.extension("scipy.linalg", "_flapack")
    assert module is not None
    assert module.dpotrf is scipy.linalg.lapack.dpotrf and module.dtrtrs is scipy.linalg.lapack.dtrtrs


CHILD = """
import json, sys
from mmcli.lmm import compiled
from mmcli.lmm.compiled import lapack
before = {m: m in sys.modules for m in ("scipy.linalg", "scipy.optimize")}
L = lapack()
from mmcli.cli import main
try:
    main(["fit", "sample_data/sleepstudy.csv", "Reaction ~ Days + (Days | Subject)", "--json"])
except SystemExit:
    pass
WATCHED = ("scipy.linalg", "scipy.optimize", "scipy.sparse", "scipy.stats", "scipy.special")
loaded = sorted(m for m in WATCHED if m in sys.modules)
import scipy.linalg.lapack, scipy.optimize
L2 = compiled.extension("scipy.optimize", "_lbfgsb")
sys.stderr.write(json.dumps({"loaded": loaded, "same": L.dpotrf is scipy.linalg.lapack.dpotrf,
    "bound": scipy.optimize._lbfgsb is L2, "lapack_attr": scipy.linalg._flapack.dpotrf is L.dpotrf}))
"""


def test_a_one_factor_fit_imports_neither_scipy_linalg_nor_optimize_nor_sparse():
    proc = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    fit = json.loads(proc.stdout)
    assert abs(fit["deviance"] - load_reference("sleepstudy_slope_ml")["deviance"]) <= OPT_DEV
    report = json.loads(proc.stderr.strip().splitlines()[-1])
    assert report["loaded"] == []
    # a later import of the packages binds the very modules and functions used before it
    assert report["same"] and report["bound"] and report["lapack_attr"]
