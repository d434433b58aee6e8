"""Large crossed random intercepts: the backfitting start (mmcli/lmm/start.py), the results read off the last
gradient evaluation (mmcli/lmm/crossed.py), and L-BFGS-B's stop at an evaluated stationary point.

The start and the stop change only the optimizer's path: the fit must still reach lme4's optimum
(tests/reference/make_crossed_skewed.R) to the optimizer tiers. The kept results are the same computation as a
new factor's at the same theta: equal to rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import REFERENCE_DIR, ROUNDING, load_reference, run_in_process
from test_gradient import assert_reaches_optimum, skewed_crossed_model

from mmcli.lmm import crossed, start
from mmcli.lmm.criterion import Dof
from mmcli.lmm.factor import update_L
from mmcli.lmm.optimizer import STATIONARY, lbfgsb
from mmcli.lmm.results import results_at, working_results


@pytest.mark.parametrize("reml", [False, True])
def test_backfitting_start_reaches_lme4s_optimum(reml, monkeypatch):
    """The Zipf-like crossed design of make_crossed_skewed.R fitted from the backfitting start (its threshold on
    the dense block lowered to this small design): lme4's criterion, theta and fixed effects."""
    monkeypatch.setattr(start, "MIN_QR", 0)
    ref = load_reference("crossed_skewed")
    want = next(f for f in ref["fits"] if f["REML"] == reml)
    args = ["fit", str(REFERENCE_DIR / ref["data"]), ref["formula"], "--json", "--ddf", "none"]
    got = run_in_process([*args, "--reml"] if reml else args).json()
    assert not np.allclose(got["optimizer"]["theta_start"], 1.0)  # the backfitting start was used
    assert_reaches_optimum(got, want)


def test_backfitting_start_is_near_the_optimum(monkeypatch):
    """The start is an estimate, not the optimum: on the skewed design within a fifth of lme4's theta (from the
    identity start 1 the optimizer would walk 0.4 and 0.6)."""
    monkeypatch.setattr(start, "MIN_QR", 0)
    m = skewed_crossed_model()
    theta0 = start.backfit_start(m.work.terms, m.work.y, m._gram, weighted=False)
    fit = m.fit(reml=False)
    assert theta0 is not None
    assert np.all(np.abs(theta0 / fit.theta - 1.0) < 0.2)


def test_backfitting_start_declines_what_it_does_not_cover(monkeypatch):
    """No start below the dense block's threshold, with prior weights, or with a random slope."""
    m = skewed_crossed_model()
    assert start.backfit_start(m.work.terms, m.work.y, m._gram, weighted=False) is None  # qR = 40 < MIN_QR
    monkeypatch.setattr(start, "MIN_QR", 0)
    assert start.backfit_start(m.work.terms, m.work.y, m._gram, weighted=True) is None
    slopes = skewed_crossed_model(p0=2)
    assert start.backfit_start(slopes.work.terms, slopes.work.y, slopes._gram, weighted=False) is None


@pytest.mark.parametrize("reml", [False, True])
def test_results_from_the_last_evaluation_equal_a_new_factors(reml, monkeypatch):
    """With L^-1 read in panels, the fit's results come from what its last gradient evaluation kept (no new
    factor); they equal the results from a new factor at the same theta to rounding."""
    monkeypatch.setattr(crossed, "PANELS_BELOW", 1.0)
    m = skewed_crossed_model()
    fit = m.fit(reml=reml)
    g, dof = m._gram, Dof(m.n, m.p, reml)
    theta = np.array(fit.optimizer.theta_end)
    assert crossed.evaluated_at(g, theta) is not None
    kept = results_at(g, theta, dof, m.work.X)
    new = working_results(g, update_L(g, theta), theta, dof, m.work.X)
    fitted = [np.empty(m.n), np.empty(m.n)]
    kept.fitted(slice(None), fitted[0])
    new.fitted(slice(None), fitted[1])
    for a, b in [(kept.beta, new.beta), (kept.vcov, new.vcov), tuple(fitted)]:
        assert np.allclose(a, b, rtol=0, atol=ROUNDING * np.max(np.abs(b)))
    for a, b in zip(kept.ranef + kept.cond_cov, new.ranef + new.cond_cov):
        assert np.allclose(a, b, rtol=0, atol=ROUNDING * np.max(np.abs(b)))
    assert kept.objective == pytest.approx(new.objective, rel=ROUNDING, abs=0)
    assert crossed.evaluated_at(g, theta * (1 + 1e-9)) is None  # another theta forms a new factor


def test_lbfgsb_stops_at_an_evaluated_stationary_point():
    """A criterion of size 1e8 resolves changes of 1e-2 (mmcli.lmm.stationarity.tolerance): the first evaluated
    point whose gradient is below that ends L-BFGS-B there, with its gradient recorded."""
    calls = []

    def fg(theta):
        calls.append(theta.copy())
        d = theta - np.array([0.7, 0.3])
        return 1e8 + 50.0 * float(d @ d), 100.0 * d

    theta, value, rec, ok = lbfgsb(fg, np.array([1.0, 1.0]), np.zeros(2))
    assert ok and rec.message == STATIONARY
    assert np.max(np.abs(rec.gradient_end)) <= 1e-2
    assert np.array_equal(theta, calls[-1]) and value == fg(theta)[0]
    assert np.allclose(theta, [0.7, 0.3], atol=1e-4, rtol=0)
