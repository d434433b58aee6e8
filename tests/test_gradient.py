"""The analytic gradient of the profiled criteria (mmcli/lmm/gradient.py) against finite differences, and the
gradient-based optimizer against lme4's optimum and against BOBYQA.

The finite differences are numDeriv's: central differences with Richardson's extrapolation (four halvings of
the step), one-sided (forward, also extrapolated) for a theta entry on its bound 0. Both are derivatives of the
same deterministic function at the same fixed theta: the NUM_DERIV tier, relative to the largest entry of the
gradient (or to 1, the scale of a change in the deviance that matters, when the gradient is smaller).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import (
    EXACT,
    LMM_CASES,
    NUM_DERIV,
    OPT_DEV,
    OPT_FIXEF,
    OPT_PAR,
    REFERENCE_DIR,
    load_reference,
    run_in_process,
)
from test_lmm import reference_design
from test_weights_offset import model_of

from mmcli.lmm import LmmModel, indicator_term
from mmcli.lmm.optimizer import use_optimizer

CASES = {case.stem: case for case in LMM_CASES}


def richardson(phi, h: float, one_sided: bool) -> float:
    """numDeriv's Richardson extrapolation of the difference quotient phi(h) over h, h/2, h/4, h/8."""
    order = 1 if one_sided else 2  # the error of the first quotient is O(h) one-sided, O(h^2) central
    A = [phi(h / 2**i) for i in range(4)]
    for m in range(1, 4):
        f = 2 ** (order * m) if one_sided else 4**m
        A = [(f * A[i + 1] - A[i]) / (f - 1) for i in range(len(A) - 1)]
    return A[0]


def fd_gradient(model: LmmModel, theta: np.ndarray, reml: bool) -> np.ndarray:
    lower = model.lower
    out = np.zeros(theta.size)
    f0 = model.objective(theta, reml)
    for i in range(theta.size):
        e = np.zeros(theta.size)
        e[i] = 1.0
        h = 1e-3 * max(abs(theta[i]), 0.1)
        if np.isfinite(lower[i]) and theta[i] <= lower[i]:

            def forward(t: float, e: np.ndarray = e) -> float:
                return (model.objective(theta + t * e, reml) - f0) / t

            out[i] = richardson(forward, h, one_sided=True)
        else:

            def central(t: float, e: np.ndarray = e) -> float:
                return (model.objective(theta + t * e, reml) - model.objective(theta - t * e, reml)) / (2 * t)

            out[i] = richardson(central, h, one_sided=False)
    return out


def assert_gradient(model: LmmModel, theta, reml: bool) -> None:
    theta = np.asarray(theta, dtype=float)
    got = model.gradient(theta, reml)
    want = fd_gradient(model, theta, reml)
    scale = max(1.0, float(np.max(np.abs(want))))
    assert np.max(np.abs(got - want)) <= NUM_DERIV * scale, (got, want)


def model_for(stem: str) -> LmmModel:
    d = reference_design(CASES[stem])
    return LmmModel(d.X, d.y, d.terms, xnames=d.xnames)


# theta points per model: lme4's start, an interior point, and one with an entry on its bound 0
THETAS = {
    "sleepstudy_slope": [[1.0, 0.0, 1.0], [0.93, 0.018, 0.22], [0.8, 0.3, 0.0], [0.0, 0.5, 0.3]],
    "sleepstudy_slope_uncorr": [[1.0, 1.0], [0.93, 0.23], [0.0, 0.4]],
    "penicillin": [[1.0, 1.0], [1.54, 3.22], [0.0, 2.0]],
    "pastes": [[1.0, 1.0], [2.9, 1.2], [2.5, 0.0]],
    "dyestuff": [[1.0], [0.75], [0.0]],
    "cake": [[0.5], [0.3]],
}
POINTS = [
    pytest.param(stem, theta, reml, id=f"{stem}-{i}-{'reml' if reml else 'ml'}")
    for stem, thetas in THETAS.items()
    for i, theta in enumerate(thetas)
    for reml in (False, True)
]


@pytest.mark.parametrize("stem, theta, reml", POINTS)
def test_gradient_matches_finite_differences(stem, theta, reml):
    assert_gradient(model_for(stem), theta, reml)


@pytest.mark.parametrize("stem", ["sleepstudy_weights_offset_reml", "penicillin_weights_ml"])
def test_gradient_with_weights_and_offset(stem):
    ref, model = model_of(stem)
    lme4_theta = np.atleast_1d(np.asarray(ref["theta"], dtype=float))
    k = lme4_theta.size
    for theta in (np.ones(k), lme4_theta * 0.7, np.r_[np.zeros(1), np.full(k - 1, 0.5)]):
        for reml in (False, True):
            assert_gradient(model, theta, reml)


def crossed_slopes_model(seed: int = 5) -> LmmModel:
    """(1 + x | a) + (1 + x | b) on simulated data: vector-valued templates in both the first (block-diagonal)
    factor and the dense second factor, which no reference model has."""
    rng = np.random.default_rng(seed)
    n, ka, kb = 300, 25, 6
    a, b = rng.integers(0, ka, n), rng.integers(0, kb, n)
    x = rng.standard_normal(n)
    y = x + rng.standard_normal(ka)[a] + rng.standard_normal(kb)[b] * x + rng.standard_normal(n)
    T = np.column_stack([np.ones(n), x])
    terms = [
        indicator_term(g, ("(Intercept)", "x"), c, [str(i) for i in range(k)], T)
        for g, c, k in (("a", a, ka), ("b", b, kb))
    ]
    return LmmModel(np.column_stack([np.ones(n), x]), y, terms, weights=rng.uniform(0.5, 2.0, n))


@pytest.mark.parametrize("reml", [False, True])
def test_gradient_vector_terms_on_two_crossed_factors(reml):
    model = crossed_slopes_model()
    for theta in ([1.0, 0.0, 1.0, 1.0, 0.0, 1.0], [0.7, 0.2, 0.4, 0.9, -0.3, 0.0], [0.0, 0.5, 0.3, 0.6, 0.1, 0.2]):
        assert_gradient(model, theta, reml)


@pytest.mark.parametrize("reml", [False, True])
def test_gradient_with_either_schur_update(reml, monkeypatch):
    """The precomputed pairs and the sparse product build the same K, so the same gradient."""
    theta = [1.3, 2.1]
    want = model_for("penicillin").gradient(np.array(theta), reml)
    with monkeypatch.context() as m:
        m.setattr("mmcli.lmm.gram.PAIRS_LIMIT", 0)
        got = model_for("penicillin").gradient(np.array(theta), reml)
    assert np.allclose(got, want, rtol=NUM_DERIV, atol=0)
    assert_gradient(model_for("penicillin"), theta, reml)


@pytest.mark.parametrize("stem", ["sleepstudy_slope", "penicillin", "pastes", "dyestuff2"])
@pytest.mark.parametrize("method", ["ml", "reml"])
def test_both_optimizers_reach_lme4s_optimum_lbfgsb_with_fewer_evaluations(stem, method):
    ref = load_reference(f"{stem}_{method}")
    want = ref["REMLcrit"] if ref["REML"] else ref["deviance"]
    fits = {}
    for name in ("lbfgsb", "bobyqa"):
        with use_optimizer(name):
            fits[name] = model_for(stem).fit(method == "reml")
    for fit in fits.values():
        assert abs(fit.objective - want) <= OPT_DEV
        assert np.allclose(fit.theta, ref["theta"], rtol=OPT_PAR, atol=OPT_PAR)
        assert fit.converged and fit.optimizer.stationary
    lb, bq = fits["lbfgsb"].optimizer, fits["bobyqa"].optimizer
    assert lb.name.startswith("scipy L-BFGS-B") and bq.name.startswith("NLopt LN_BOBYQA")
    assert 0 < lb.gradient_evaluations <= lb.evaluations and bq.gradient_evaluations == 0
    assert lb.evaluations < bq.evaluations


def test_command_line_optimizer_choice_holds_for_one_command_only():
    path = "sample_data/penicillin.csv"
    formula = "diameter ~ 1 + (1 | plate) + (1 | sample)"
    bq = run_in_process(["fit", path, formula, "--optimizer", "bobyqa", "--json"]).json()
    lb = run_in_process(["fit", path, formula, "--json"]).json()
    assert bq["optimizer"]["name"] == "NLopt LN_BOBYQA" and bq["optimizer"]["gradient_evaluations"] == 0
    assert lb["optimizer"]["name"].startswith("scipy L-BFGS-B")
    assert lb["optimizer"]["gradient_evaluations"] > 0 and lb["optimizer"]["iterations"] > 0
    assert abs(lb["loglik"] - bq["loglik"]) <= OPT_DEV
    bad = run_in_process(["fit", path, formula, "--optimizer", "newton"])
    assert bad.code == 2 and "newton" in bad.err


def test_dense_formulation_falls_back_to_bobyqa():
    d = reference_design(CASES["dyestuff"])
    fit = LmmModel(d.X, d.y, d.terms, method="dense").fit(False)
    assert fit.optimizer.name.startswith("NLopt LN_BOBYQA")
    with pytest.raises(Exception, match="blocked Cholesky"):
        LmmModel(d.X, d.y, d.terms, method="dense").gradient(np.ones(1), False)


def skewed_crossed_model(p0: int = 1, seed: int = 11) -> LmmModel:
    """(1 | a) + (1 | b), or (1 + x | a) + (1 | b), with Zipf-like level frequencies in both factors (a few
    levels of a meet most levels of b), as in large crossed designs; unit weights."""
    rng = np.random.default_rng(seed)
    n, ka, kb = 1500, 120, 40

    def zipf(k: int) -> np.ndarray:
        w = 1.0 / np.arange(1, k + 1)
        return rng.permutation(np.concatenate([np.arange(k), rng.choice(k, n - k, p=w / w.sum())]))

    a, b = zipf(ka), zipf(kb)
    x = rng.standard_normal(n)
    y = 2 + 0.3 * x + 0.6 * rng.standard_normal(ka)[a] + 0.4 * rng.standard_normal(kb)[b] + rng.standard_normal(n)
    Ta = np.column_stack([np.ones(n), x])[:, :p0]
    names = ("(Intercept)", "x")[:p0]
    terms = [
        indicator_term("a", names, a, [str(i) for i in range(ka)], Ta),
        indicator_term("b", ("(Intercept)",), b, [str(i) for i in range(kb)], np.ones((n, 1))),
    ]
    return LmmModel(np.column_stack([np.ones(n), x]), y, terms)


def heavy_split(m: pytest.MonkeyPatch) -> None:
    """Make the levels of a that meet more than 8 levels of b "heavy" (updated densely, not by pairs)."""
    m.setattr("mmcli.lmm.gram.HEAVY_MIN", 8)
    m.setattr("mmcli.lmm.gram.HEAVY_FRACTION", 0.0)


@pytest.mark.parametrize("reml", [False, True])
@pytest.mark.parametrize("p0", [1, 2])
def test_scalar_crossed_gradient_with_and_without_heavy_levels(reml, p0, monkeypatch):
    """The gradient read off L^-1 (mmcli.lmm.crossed) against finite differences, with every level of a in the
    precomputed pairs and with its frequent levels updated densely; the criterion is the same either way."""
    theta = [0.7, 0.5] if p0 == 1 else [0.7, 0.1, 0.3, 0.5]
    plain = skewed_crossed_model(p0)
    assert plain._gram is not None and plain._gram.heavy.size == 0
    assert_gradient(plain, theta, reml)
    with monkeypatch.context() as m:
        heavy_split(m)
        split = skewed_crossed_model(p0)
    assert split._gram is not None
    heavy = split._gram.heavy.size
    assert (0 < heavy < 100 and split._gram.pairs is not None) if p0 == 1 else heavy == 0
    assert abs(split.objective(np.array(theta), reml) - plain.objective(np.array(theta), reml)) <= EXACT * abs(
        plain.objective(np.array(theta), reml)
    )
    assert_gradient(split, theta, reml)


@pytest.mark.parametrize("route", ["pairs", "panels"])
@pytest.mark.parametrize("reml", [False, True])
def test_scalar_crossed_gradient_equals_the_general_one(reml, route, monkeypatch):
    """Two formulations of the same gradient: 1 - diag(S^-1) over lambda (and the exact sums over rows of S^-1
    and K below EXACT_BELOW) against the general path's S^-1 and K (rest blocks taken as vector-valued); S^-1
    read at the pairs' targets (dlauum) or L^-1 read in panels (no pairs)."""
    with monkeypatch.context() as m:
        if route == "panels":
            m.setattr("mmcli.lmm.gram.PAIRS_LIMIT", 0)
        model = skewed_crossed_model()
    assert model._gram is not None and (model._gram.pairs is None) == (route == "panels")
    for theta in ([0.7, 0.5], [1.3, 2e-4], [0.0, 0.8], [0.5, 0.0]):
        th = np.array(theta)
        want_value = model.objective(th, reml)
        fast = model.gradient(th, reml)
        with monkeypatch.context() as m:
            m.setattr(model._gram, "rest_scalar", False)
            general = model.gradient(th, reml)
            assert abs(model.objective(th, reml) - want_value) <= EXACT * abs(want_value)
        scale = max(1.0, float(np.max(np.abs(general))))
        assert np.max(np.abs(fast - general)) <= EXACT * scale, (theta, fast, general)
        with monkeypatch.context() as m:
            m.setattr("mmcli.lmm.crossed.EXACT_BELOW", 1e3)  # every block by the exact sums
            exact = model.gradient(th, reml)
        assert np.max(np.abs(exact - general)) <= EXACT * scale, (theta, exact, general)
    assert_gradient(model, [1.3, 2e-4], reml)  # below EXACT_BELOW: the exact sums


@pytest.mark.parametrize("route", ["pairs", "panels"])
def test_scalar_crossed_conditional_variances_equal_the_general_ones(route, monkeypatch):
    """The conditional covariances of the random effects read off S^-1 at the pairs' targets, with frequent
    levels updated densely, or off L^-1 in panels (no pairs), against the general path's S^-1."""
    theta = np.array([0.7, 0.5])
    with monkeypatch.context() as m:
        heavy_split(m)
        if route == "panels":
            m.setattr("mmcli.lmm.gram.PAIRS_LIMIT", 0)
        fast = skewed_crossed_model().fit_at(theta, False)
    model = skewed_crossed_model()
    assert model._gram is not None and model._gram.heavy.size == 0
    monkeypatch.setattr(model._gram, "rest_scalar", False)
    general = model.fit_at(theta, False)
    assert abs(fast.objective - general.objective) <= EXACT * abs(general.objective)
    for a, b in zip(fast.cond_cov, general.cond_cov):
        assert np.allclose(a, b, rtol=EXACT, atol=0)
    for a, b in zip(fast.ranef, general.ranef):
        assert np.allclose(a, b, rtol=EXACT, atol=EXACT * float(np.max(np.abs(b))))


@pytest.mark.parametrize("heavy", [False, True])
@pytest.mark.parametrize("reml", [False, True])
def test_skewed_crossed_fit_reaches_lme4s_optimum(reml, heavy, monkeypatch):
    """Crossed random intercepts with Zipf-like level frequencies (tests/reference/make_crossed_skewed.R): the
    command line's fit against lme4's lmer, every level of a in the pairs or its frequent ones updated densely."""
    ref = load_reference("crossed_skewed")
    want = next(f for f in ref["fits"] if f["REML"] == reml)
    if heavy:
        heavy_split(monkeypatch)
    args = ["fit", str(REFERENCE_DIR / ref["data"]), ref["formula"], "--json", "--ddf", "none"]
    assert_reaches_optimum(run_in_process([*args, "--reml"] if reml else args).json(), want)


def assert_reaches_optimum(got: dict, want: dict) -> None:
    """The command line's JSON ``got`` at lme4's optimum ``want`` (a fit of make_crossed_skewed.R's JSON):
    criterion, theta, fixed effects, converged and stationary."""
    criterion = got["reml_criterion"] if want["REML"] else got["deviance"]
    assert abs(criterion - want["criterion"]) <= OPT_DEV
    assert np.allclose(got["theta"], want["theta"], rtol=OPT_PAR, atol=0)
    beta = [row["estimate"] for row in got["fixed_effects"]]
    assert np.max(np.abs(np.subtract(beta, want["fixef"]))) <= OPT_FIXEF * np.max(np.abs(want["fixef"]))
    assert got["converged"] and got["optimizer"]["stationary"]
