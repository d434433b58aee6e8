"""Convergence means stationarity: the end of the optimizer is checked against the KKT conditions of the
bounded theta, and a non-stationary boundary point is left for a lower one (mmcli.lmm.stationarity).

The references (tests/reference/make_boundary.R) are two correlated-slope models of R's own data where an
optimizer can stop with the intercept's Cholesky diagonal at 0 although turning that column the other way
lowers the criterion. lme4 is run with bobyqa and Nelder-Mead; mmcli must do no worse than the better.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import OPT_DEV, OPT_PAR, REFERENCE_DIR, load_reference, run_in_process

from mmcli.lmm.stationarity import check, columns
from mmcli.lmm.terms import lower_bounds

MODELS = load_reference("boundary")["models"]


@pytest.mark.parametrize("ref", MODELS, ids=[m["formula"] for m in MODELS])
def test_no_worse_than_lme4s_best_optimizer(ref):
    args = ["fit", REFERENCE_DIR / ref["data"], ref["formula"], "--json"] + (["--reml"] if ref["REML"] else [])
    res = run_in_process(args).json()
    got = res["reml_criterion"] if ref["REML"] else res["deviance"]
    best = min(f["criterion"] for f in ref["fits"])
    assert got <= best + OPT_DEV, (got, best)
    assert res["converged"] is True
    assert res["optimizer"]["stationary"] is True
    assert res["optimizer"]["restarts"] >= 0
    # and the point is lme4's best (theta up to the optimizer tier; the last entry is 0 in both)
    want = min(ref["fits"], key=lambda f: f["criterion"])["theta"]
    np.testing.assert_allclose(res["theta"], want, rtol=OPT_PAR * 30, atol=OPT_PAR * np.max(np.abs(want)))


class _Term:
    """A 2 x 2 template (lme4's column-major lower triangle: L11, L21, L22) for the unit checks below."""

    p = 2

    def template_positions(self):
        return [(0, 0), (1, 0), (1, 1)]

    @property
    def ntheta(self):
        return 3


def _crit(theta):
    """A criterion of the covariance L L' only (so a column's sign does not matter), whose minimum has
    L11 = 0.5, L21 = 0.3 with L22 = 0.2: the minimum lies away from the point (0, -0.3, 0.2)."""
    L = np.array([[theta[0], 0.0], [theta[1], theta[2]]])
    C = L @ L.T
    target = np.array([[0.25, 0.15], [0.15, 0.13]])
    return float(np.sum((C - target) ** 2)) + 1.0


def test_a_zero_diagonal_with_the_column_turned_the_wrong_way_is_not_a_minimum():
    terms = [_Term()]
    lower = lower_bounds(terms)
    cols = columns(terms)
    assert cols == [(0, [1]), (2, [])]
    stuck = np.array([0.0, -0.3, 0.2])
    v = check(_crit, stuck, _crit(stuck), lower, cols)
    assert v.better is not None and v.gain > 0
    assert v.better[1] > 0  # found by turning the column: L21 = +0.3 with L11 > 0
    best = np.array([0.5, 0.3, 0.2])
    assert check(_crit, best, _crit(best), lower, cols).better is None


def test_an_interior_point_with_a_gradient_is_not_a_minimum():
    terms = [_Term()]
    x = np.array([0.5, 0.31, 0.2])  # off the minimum along L21
    v = check(_crit, x, _crit(x), lower_bounds(terms), columns(terms))
    assert v.better is not None and _crit(v.better) < _crit(x)
