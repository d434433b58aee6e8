"""The optimizer's start for models of scalar random intercepts (mmcli.lmm.anova_start): the one-way analysis of
variance of the least-squares residual, read off the Gram matrix.

In a balanced one-way layout the ANOVA estimate of the variance ratio is the REML estimate whenever it is
positive (Searle, Casella & McCulloch 1992, section 4.8), so there the start is lme4's REML theta itself."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import OPT_DEV, OPT_PAR, load_reference
from test_gradient import model_for

from mmcli.lmm.anova_start import START_MIN, anova_start
from mmcli.lmm.optimizer import use_optimizer


@pytest.mark.parametrize("stem", ["dyestuff", "sleepstudy_intercept"])
def test_balanced_one_way_start_is_lme4s_reml_theta(stem):
    model = model_for(stem)
    start = anova_start(model._gram)
    assert start is not None
    ref = load_reference(f"{stem}_reml")
    assert np.allclose(model.work.theta_from_working(start), ref["theta"], rtol=OPT_PAR, atol=0)
    fit = model.fit(True)  # from there L-BFGS-B has almost nothing left to do
    assert abs(fit.objective - ref["REMLcrit"]) <= OPT_DEV
    assert fit.optimizer.theta_start == tuple(start) and fit.optimizer.evaluations <= 6


def test_negative_variance_estimate_starts_off_the_bound_and_reaches_it():
    model = model_for("dyestuff2")  # its between-batch mean square is below the within: the estimate is 0
    start = anova_start(model._gram)
    assert start is not None and start.tolist() == [START_MIN]
    fit = model.fit(True)
    ref = load_reference("dyestuff2_reml")
    assert fit.theta.tolist() == [0.0] and abs(fit.objective - ref["REMLcrit"]) <= OPT_DEV


@pytest.mark.parametrize("stem", ["penicillin", "pastes"])
def test_crossed_and_nested_starts_are_positive_and_lead_to_lme4s_optimum(stem):
    model = model_for(stem)
    start = anova_start(model._gram)
    assert start is not None and start.shape == (2,) and np.all(start >= START_MIN)
    fit = model.fit(False)
    ref = load_reference(f"{stem}_ml")
    assert abs(fit.objective - ref["deviance"]) <= OPT_DEV
    assert np.allclose(fit.theta, ref["theta"], rtol=OPT_PAR, atol=OPT_PAR)


def test_vector_terms_and_bobyqa_keep_lme4s_start():
    assert anova_start(model_for("sleepstudy_slope")._gram) is None
    with use_optimizer("bobyqa"):
        fit = model_for("dyestuff").fit(False)
    assert fit.optimizer.theta_start == (1.0,)
