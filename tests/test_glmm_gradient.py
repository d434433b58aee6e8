"""A GLMM with one scalar random-effects term: the analytic gradient of the Laplace deviance against finite
differences of the deviance, the row-block PIRLS against the general one, its log-determinant against the blocked
Cholesky's, and the record of the Newton fit. (The fitted numbers themselves are checked against glmer in
tests/test_glmm.py: every scalar model there is fitted on this path.)"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import NUM_DERIV, REFERENCE_DIR, ROUNDING, load_reference, run_in_process

from mmcli.commands import ModelOptions
from mmcli.commands_glmm import glmm_model
from mmcli.glmm import GlmmModel
from mmcli.glmm.pirls import Pirls

MODELS = {m["name"]: m for m in load_reference("glmm")["models"]}
CASES = {  # name: (formula, family, link, data, factors)
    **{
        n: (MODELS[n]["formula"], MODELS[n]["family"], MODELS[n]["link"], MODELS[n]["data"], f)
        for n, f in [("cbpp", ("period",)), ("binary_probit", ()), ("binary_cloglog", ()), ("poisson_offset", ())]
    },
    "slope_only": ("y ~ x + tr + (0 + x | g)", "binomial", "logit", "glmm_binary.csv", ()),  # one column t per level
}


def model(name: str) -> GlmmModel:
    formula, fam, link, data, factors = CASES[name]
    m = glmm_model(str(REFERENCE_DIR / data), ModelOptions(formula=formula, factor=factors), family=fam, link=link)
    assert m.analytic_gradient and m.pirls.scalar is not None
    return m


def point(m: GlmmModel) -> tuple[np.ndarray, np.ndarray]:
    """A (theta, beta) away from the optimum, where the gradient is far from zero."""
    return np.array([0.7]), np.linspace(-0.5, 0.3, m.p)


@pytest.mark.parametrize("name", list(CASES))
def test_gradient_against_finite_differences(name: str) -> None:
    """dD/d(theta, beta) against central differences of D with Richardson's extrapolation (as numDeriv's)."""
    m = model(name)
    theta, beta = point(m)
    _, g = m.deviance_gradient(theta, beta)
    x = np.concatenate([theta, beta])

    def central(i: int, h: float) -> float:
        e = np.zeros(x.size)
        e[i] = h
        return (m.deviance((x + e)[:1], (x + e)[1:]) - m.deviance((x - e)[:1], (x - e)[1:])) / (2 * h)

    fd = np.array([(4 * central(i, 1e-3) - central(i, 2e-3)) / 3 for i in range(x.size)])
    assert np.max(np.abs(g - fd) / np.maximum(1.0, np.abs(fd))) < NUM_DERIV
    assert np.max(np.abs(g)) > 1.0  # a point where the gradient says something


@pytest.mark.parametrize("name", list(CASES))
def test_row_block_pirls_is_the_general_pirls(name: str) -> None:
    """The row-block PIRLS of one scalar term takes the general solver's steps: the same modes (u, beta, eta) and
    penalized deviance, over u and over (u, beta); its log-determinant is the blocked Cholesky's at the mode's
    own weights."""
    m = model(name)
    theta, beta = point(m)
    general = Pirls(m.pls, m.resp)
    general.scalar = None
    for b in (beta, None):
        ours, theirs = m.pirls.mode(theta, b, m._start()), general.mode(theta, b, m._start())
        assert ours.eta is None and ours.mu is None  # one scalar term: the mode keeps no full-length vector
        for a, c in [(ours.u, theirs.u), (ours.beta, theirs.beta), (ours.eta_, theirs.eta), (ours.mu_, theirs.mu)]:
            np.testing.assert_allclose(a, c, rtol=0, atol=ROUNDING * max(1.0, float(np.max(np.abs(c)))))
        assert ours.pdev == pytest.approx(theirs.pdev, rel=ROUNDING)
        w, z = general._working(ours.eta_, ours.mu_, None)
        step = m.pls.solve(theta, w, z, with_x=False, factor=True)  # the general blocked factor
        assert ours.logdet == pytest.approx(step.logdet, rel=ROUNDING)


def test_newton_fit_record() -> None:
    """The fit of a scalar model says it ran Newton's method on the gradient, ended at a stationary point, and
    took far fewer evaluations than glmer's two derivative-free stages."""
    ref = MODELS["cbpp"]
    d = run_in_process(
        ["fit", REFERENCE_DIR / ref["data"], ref["formula"], "--family", "binomial", "--factor", "period", "--json"]
    ).json()
    opt = d["optimizer"]
    assert d["converged"] and opt["stationary"] is True
    assert opt["name"].startswith("Newton") and 0 < opt["gradient_evaluations"] <= opt["evaluations"] < 40
    assert d["evaluations"]["stage1"] == 1
