"""mmcli.lmm against lme4 and against its own second formulation.

References: tests/reference/<dataset>_<model>_<ml|reml>.json, made with lme4 1.1-31 in R 4.2.2 by
``lmer(formula, data, REML = ...)`` with default settings, from the CSV files in sample_data/ (provenance in
tests/reference/README.md). R is never needed to run these tests.

1. The design (names, groups, levels, term order) is lme4's.
2. At lme4's own theta-hat, every reported number is a deterministic function of the data: the criterion,
   sigma, beta, the standard errors, the conditional modes and SDs. Those are held to ``EXACT``. That is the
   strongest check of the algebra, free of any optimizer.
3. The full fits are held to the optimizer tiers: the criterion at least as good as lme4's and within
   ``OPT_DEV``; theta, sigma, variance components and modes to ``OPT_PAR``; fixed effects to ``OPT_FIXEF``;
   standard errors to ``OPT_SE``.
4. The blocked Cholesky ("fast") against the tutorial's dense V formulation, and the quick criterion (precomputed
   Schur-complement pattern) against the full factor, on seeded random unbalanced data.
5. Invariances: row order, level labels, shifting and scaling the response.
6. The checks lme4 makes before fitting (aliased columns, too few or too many levels).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from conftest import (
    EXACT,
    LMM_CASES,
    OPT_DEV,
    OPT_FIXEF,
    OPT_PAR,
    OPT_SE,
    LmmCase,
    close_to_printed,
    data_path,
    load_reference,
)

from mmcli.data import Table, load
from mmcli.design import Design, build_design
from mmcli.errors import ModelError
from mmcli.formula import parse_formula
from mmcli.lmm import (
    DENSE_MAX_ROWS,
    LmmFit,
    LmmModel,
    ReTerm,
    aliased_columns,
    fit_at_theta,
    fit_lmm,
    indicator_term,
    lower_bounds,
)
from mmcli.lmm.gram import Gram
from mmcli.report import fit_dict, ranef_rows, varcorr_names

# --------------------------------------------------------------------------------------------------
# The reference models, built through the same path as the command line (load -> parse -> design)
# --------------------------------------------------------------------------------------------------

METHODS = ("ml", "reml")
REF_PARAMS = [pytest.param(case, m, id=f"{case.stem}-{m}") for case in LMM_CASES for m in METHODS]
CASE_PARAMS = [pytest.param(case, id=case.stem) for case in LMM_CASES]


def ref_of(case: LmmCase, method: str) -> dict:
    return load_reference(f"{case.stem}_{method}")


def criterion_of(ref: dict) -> float:
    return ref["REMLcrit"] if ref["REML"] else ref["deviance"]


def load_table(csv: str, formula: str, factors: tuple[str, ...] = ()) -> tuple[Table, object]:
    """Read the columns a formula uses, as the `fit` command does."""
    spec = parse_formula(formula)
    groups = [f for t in spec.random for f in t.factors]
    used = spec.variables()
    table = load(
        str(data_path(csv)),
        numeric=[spec.response],
        categorical=list(dict.fromkeys(groups + [f for f in factors if f in used])),
        other=[c for c in used if c != spec.response and c not in groups and c not in factors],
    )
    return table, spec


@functools.cache
def reference_design(case: LmmCase) -> Design:
    formula = load_reference(f"{case.stem}_ml")["formula"]
    table, spec = load_table(case.csv, formula, case.factors)
    return build_design(spec, table.frame, set(case.factors))


@functools.cache
def reference_fit(case: LmmCase, method: str) -> LmmFit:
    d = reference_design(case)
    return fit_lmm(d.X, d.y, d.terms, reml=method == "reml", xnames=d.xnames)


def fit_at(X: np.ndarray, y: np.ndarray, terms, theta, reml: bool, xnames=None, method="fast") -> LmmFit:
    """Every result at a given theta (no optimizer): a deterministic evaluation, through the public API."""
    theta = np.asarray(theta, dtype=float).ravel()
    return fit_at_theta(X, y, terms, theta, reml=reml, xnames=xnames, method=method)


def objectives(X, y, terms, theta, reml: bool, monkeypatch) -> dict[str, float]:
    """The criterion at theta by every formulation: the blocked factor with each strategy of the Schur
    update (precomputed pairs, sparse product) and the tutorial's dense V."""
    out = {"blocked": LmmModel(X, y, terms).objective(theta, reml)}
    with monkeypatch.context() as m:
        m.setattr("mmcli.lmm.gram.PAIRS_LIMIT", 0)
        out["blocked, sparse update"] = LmmModel(X, y, terms).objective(theta, reml)
    out["dense V"] = LmmModel(X, y, terms, method="dense").objective(theta, reml)
    return out


def fit_json(fit: LmmFit, design: Design) -> dict:
    return fit_dict(fit, formula="", ngroups=design.ngroups, dropped_rows=0, data="")


def assert_close(got, want, rtol: float, what: str, scale: float | None = None) -> None:
    """|got - want| <= rtol * max(|want|, scale), elementwise (scale: the size of the quantity near 0)."""
    got = np.asarray(got, dtype=float)
    want = np.asarray(want, dtype=float)
    assert got.shape == want.shape, f"{what}: shape {got.shape} vs {want.shape}"
    bound = rtol * np.maximum(np.abs(want), 0.0 if scale is None else scale)
    err = np.abs(got - want)
    worst = int(np.argmax(err - bound)) if err.size else 0
    assert np.all(err <= bound), (
        f"{what}: worst entry {worst}: got {got.ravel()[worst]!r}, want {want.ravel()[worst]!r}, "
        f"|diff| {err.ravel()[worst]:.3g} > {bound.ravel()[worst]:.3g} (rtol {rtol:g})"
    )


def ranef_by_key(fit: LmmFit) -> dict[tuple[str, str], dict[str, tuple[float, float]]]:
    """{(group, term): {level: (mode, cond_sd)}} from the reported rows."""
    out: dict[tuple[str, str], dict[str, tuple[float, float]]] = {}
    for r in ranef_rows(fit):
        out.setdefault((r["group"], r["term"]), {})[r["level"]] = (r["mode"], r["cond_sd"])
    return out


# --------------------------------------------------------------------------------------------------
# 1. The model as lme4 builds it
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_design_is_lme4s(case):
    """Observations, groups (in lme4's term order), fixed-effect names and random-effect levels, as lme4's."""
    ref = load_reference(f"{case.stem}_ml")
    d = reference_design(case)
    assert len(d.y) == ref["nobs"]
    assert list(d.ngroups.items()) == list(ref["ngroups"].items())
    assert d.xnames == list(ref["fixef"])
    # VarCorr lists the terms in lme4's order (the theta order), one row per column of each term
    vc = [(r["grp"], r["var1"]) for r in ref["varcorr"] if r["grp"] != "Residual" and not r.get("var2")]
    names = varcorr_names([t.group for t in d.terms])  # lme4's 'Subject.1' for a factor's second term
    assert [(g, name) for t, g in zip(d.terms, names) for name in t.names] == vc
    levels = {(t.group, name): list(t.levels) for t in d.terms for name in t.names}
    for r in ref["ranef"]:
        assert levels[(r["group"], r["term"])] == r["levels"]


# --------------------------------------------------------------------------------------------------
# 2. Deterministic: everything at lme4's own theta-hat
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("case", "method"), REF_PARAMS)
def test_criterion_at_lme4_theta(case, method, monkeypatch):
    """The profiled deviance / REML criterion at lme4's theta-hat equals lme4's, by every formulation:
    the blocked factor with either Schur update (precomputed pairs for several factors, or a sparse product)
    and the dense V."""
    ref = ref_of(case, method)
    d = reference_design(case)
    theta = np.atleast_1d(np.asarray(ref["theta"], dtype=float))
    for how, value in objectives(d.X, d.y, d.terms, theta, method == "reml", monkeypatch).items():
        assert_close(value, criterion_of(ref), EXACT, how)


@pytest.mark.parametrize(("case", "method"), REF_PARAMS)
def test_results_at_lme4_theta_by_the_large_data_path(case, method, monkeypatch):
    """The same, with the paths of large data taken on these small ones: X'X formed once (the rank check, the
    centring, the Gram matrix), the fitted values and residuals formed in blocks of 7 rows, the residual
    quartiles selected from a band of values rather than sorted."""
    from mmcli import report
    from mmcli.lmm import rank, transform

    monkeypatch.setattr(rank, "GRAM_R_MIN_ROWS", 0)
    monkeypatch.setattr(transform, "BLOCK_ROWS", 7)
    monkeypatch.setattr(report, "SELECT_MIN_ROWS", 16)
    test_results_at_lme4_theta(case, method)


@pytest.mark.parametrize(("case", "method"), REF_PARAMS)
def test_results_at_lme4_theta(case, method):
    """sigma, beta, vcov, logLik/AIC/BIC, fitted values, conditional modes and SDs at lme4's theta-hat."""
    ref = ref_of(case, method)
    d = reference_design(case)
    theta = np.atleast_1d(np.asarray(ref["theta"], dtype=float))
    fit = fit_at(d.X, d.y, d.terms, theta, method == "reml", d.xnames)
    sigma = ref["sigma"]
    assert_close(fit.sigma, sigma, EXACT, "sigma")
    assert_close(fit.beta, list(ref["fixef"].values()), EXACT, "fixef", scale=max(map(abs, ref["fixef"].values())))
    assert_close(np.sqrt(np.diag(fit.vcov)), list(ref["se"].values()), EXACT, "se")
    assert_close(fit.vcov, ref["vcov"], EXACT, "vcov", scale=float(np.max(np.abs(ref["vcov"]))))
    assert_close(fit.loglik, ref["logLik"], EXACT, "logLik")
    assert_close(fit.aic, ref["AIC"], EXACT, "AIC")
    assert_close(fit.bic, ref["BIC"], EXACT, "BIC")
    assert fit.npar == ref["df"]
    assert fit.df_resid == ref["df_resid"]
    assert_close(fit.fitted, ref["fitted"], EXACT, "fitted", scale=float(np.max(np.abs(ref["fitted"]))))
    quantiles = fit_json(fit, d)["scaled_residuals"]
    assert_close(quantiles, ref["scaled_resid_quantiles"], EXACT, "scaled residuals", scale=1.0)
    got = ranef_by_key(fit)
    for r in ref["ranef"]:
        rows = got[(r["group"], r["term"])]
        assert list(rows) == r["levels"]
        modes = [rows[level][0] for level in r["levels"]]
        sds = [rows[level][1] for level in r["levels"]]
        what = f"{r['group']} {r['term']}"
        assert_close(modes, r["mode"], EXACT, f"modes {what}", scale=max(max(map(abs, r["mode"])), sigma))
        assert_close(sds, r["condsd"], EXACT, f"cond. SDs {what}", scale=sigma)


@pytest.mark.parametrize("method", METHODS)
def test_dyestuff2_at_theta_zero_is_the_linear_model(method):
    """At theta = 0 the random effects vanish: sigma is the linear model's (RSS/n, or RSS/(n-p)) and every
    conditional mode and SD is exactly 0."""
    case = next(c for c in LMM_CASES if c.stem == "dyestuff2")
    d = reference_design(case)
    fit = fit_at(d.X, d.y, d.terms, [0.0], method == "reml")
    rss = float(np.sum((d.y - d.y.mean()) ** 2))
    n = len(d.y)
    assert_close(fit.sigma, math.sqrt(rss / (n - 1 if method == "reml" else n)), EXACT, "sigma")
    assert np.all(fit.ranef[0] == 0.0)
    assert np.all(fit.cond_sd[0] == 0.0)
    assert fit.singular


# --------------------------------------------------------------------------------------------------
# 3. The full fits against lme4
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("case", "method"), REF_PARAMS)
def test_fit_criterion(case, method):
    """At least as good as lme4 (up to evaluation rounding), and within OPT_DEV of it; the information
    criteria and degrees of freedom follow."""
    ref = ref_of(case, method)
    fit = reference_fit(case, method)
    want = criterion_of(ref)
    assert fit.converged, fit.optimizer.message
    assert fit.objective <= want + EXACT * abs(want), f"worse than lme4: {fit.objective!r} > {want!r}"
    assert want - fit.objective <= OPT_DEV
    assert abs(fit.loglik - ref["logLik"]) <= OPT_DEV / 2
    assert abs(fit.aic - ref["AIC"]) <= OPT_DEV
    assert abs(fit.bic - ref["BIC"]) <= OPT_DEV
    assert fit.npar == ref["df"]
    assert fit.df_resid == ref["df_resid"]
    assert fit.n == ref["nobs"]


@pytest.mark.parametrize(("case", "method"), REF_PARAMS)
def test_fit_singular_flag(case, method):
    assert reference_fit(case, method).singular == ref_of(case, method)["singular"]


@pytest.mark.parametrize(
    ("case", "method"),
    [p for p in REF_PARAMS if p.values[0].stem != "dyestuff2"],
)
def test_fit_theta(case, method):
    ref = ref_of(case, method)
    assert_close(reference_fit(case, method).theta, np.atleast_1d(ref["theta"]), OPT_PAR, "theta")


@pytest.mark.parametrize(
    "method",
    [
        "ml",
        "reml",
    ],
)
def test_fit_singular_theta_is_exactly_zero(method):
    case = next(c for c in LMM_CASES if c.stem == "dyestuff2")
    assert ref_of(case, method)["theta"] == 0
    fit = reference_fit(case, method)
    assert fit.theta.tolist() == [0.0]
    assert fit_json(fit, reference_design(case))["random_effects"][0]["std_dev"] == 0.0


@pytest.mark.parametrize(("case", "method"), REF_PARAMS)
def test_fit_sigma_and_variance_components(case, method):
    """VarCorr: standard deviations (relative, or against sigma near 0) and correlations (absolute)."""
    ref = ref_of(case, method)
    fit = reference_fit(case, method)
    d = fit_json(fit, reference_design(case))
    sigma = ref["sigma"]
    assert_close(fit.sigma, sigma, OPT_PAR, "sigma")
    sds = [(r["grp"], r.get("var1"), r["sdcor"]) for r in ref["varcorr"] if not r.get("var2")]
    got = [(r["group"], r["term"], r["std_dev"]) for r in d["random_effects"]]
    assert [g[:2] for g in got] == [s[:2] for s in sds]
    assert_close([g[2] for g in got], [s[2] for s in sds], OPT_PAR, "std. devs", scale=sigma)
    cors = [(r["grp"], r["var1"], r["var2"], r["sdcor"]) for r in ref["varcorr"] if r.get("var2")]
    got_c = [(c["group"], c["term1"], c["term2"], c["corr"]) for c in d["correlations"]]
    assert [c[:3] for c in got_c] == [c[:3] for c in cors]
    assert_close([c[3] for c in got_c], [c[3] for c in cors], OPT_PAR, "correlations", scale=1.0)


@pytest.mark.parametrize(("case", "method"), REF_PARAMS)
def test_fit_fixed_effects(case, method):
    ref = ref_of(case, method)
    fit = reference_fit(case, method)
    assert list(fit.xnames) == list(ref["fixef"])
    want = list(ref["fixef"].values())
    assert_close(fit.beta, want, OPT_FIXEF, "fixef", scale=max(map(abs, want)))


# The two fits below land where the criterion is flat, and lme4's theta-hat is the one off the optimum: a
# polished optimum (Nelder-Mead from ours to 1e-11) lowers lme4's criterion by 2.6e-8 (sleepstudy slope, ML)
# and 8.8e-9 (penicillin, REML); its standard errors are within 2e-6 of ours and 2.3e-5 / 2.8e-5 of lme4's.
# At lme4's theta our standard errors equal lme4's to 1e-13 (test_results_at_lme4_theta): the gap is not our
# algebra, and no tightening of our optimizer can close it.
SE_AT_TOLERANCE_EDGE = {
    ("sleepstudy_slope", "ml"): "se((Intercept)) 6.632287 vs lme4's 6.632123 (2.5e-5; polished 6.632276)",
    ("penicillin", "reml"): "se((Intercept)) 0.8085727 vs lme4's 0.8085954 (2.8e-5; polished 0.8085727)",
}
SE_PARAMS = [
    pytest.param(
        *p.values,
        id=p.id,
        marks=pytest.mark.xfail(
            reason="TOLERANCE: lme4's own theta-hat is off the optimum; "
            + SE_AT_TOLERANCE_EDGE[(p.values[0].stem, p.values[1])],
            strict=True,
        ),
    )
    if (p.values[0].stem, p.values[1]) in SE_AT_TOLERANCE_EDGE
    else p
    for p in REF_PARAMS
]


@pytest.mark.parametrize(("case", "method"), SE_PARAMS)
def test_fit_standard_errors(case, method):
    ref = ref_of(case, method)
    fit = reference_fit(case, method)
    se = np.sqrt(np.diag(fit.vcov))
    assert_close(se, list(ref["se"].values()), OPT_SE, "se")
    # the rest of vcov: the correlation of the fixed effects
    want = np.asarray(ref["vcov"])
    want_corr = want / np.outer(np.sqrt(np.diag(want)), np.sqrt(np.diag(want)))
    assert_close(fit.vcov / np.outer(se, se), want_corr, OPT_PAR, "fixed-effect correlations", scale=1.0)


@pytest.mark.parametrize(("case", "method"), REF_PARAMS)
def test_fit_conditional_modes(case, method):
    """ranef(): the modes (relative to the term's largest, or to sigma when all are 0) and the conditional
    SDs, level by level in lme4's level order."""
    ref = ref_of(case, method)
    fit = reference_fit(case, method)
    sigma = ref["sigma"]
    got = ranef_by_key(fit)
    assert len(got) == len(ref["ranef"])
    for r in ref["ranef"]:
        rows = got[(r["group"], r["term"])]
        assert list(rows) == r["levels"]
        what = f"{r['group']} {r['term']}"
        modes = [rows[level][0] for level in r["levels"]]
        assert_close(modes, r["mode"], OPT_PAR, f"modes {what}", scale=max(max(map(abs, r["mode"])), sigma))
        sds = [rows[level][1] for level in r["levels"]]
        assert_close(sds, r["condsd"], OPT_PAR, f"cond. SDs {what}", scale=sigma)


@pytest.mark.parametrize(("case", "method"), REF_PARAMS)
def test_fit_fitted_values(case, method):
    ref = ref_of(case, method)
    fit = reference_fit(case, method)
    assert_close(fit.fitted, ref["fitted"], OPT_PAR, "fitted", scale=ref["sigma"])
    quantiles = fit_json(fit, reference_design(case))["scaled_residuals"]
    assert_close(quantiles, ref["scaled_resid_quantiles"], OPT_PAR, "scaled residual quantiles", scale=1.0)


def test_design_md_check_points():
    """The check points of docs/methods.md: the criterion-based ones to their printed digits; theta and
    sigma, printed to 8 digits there, to the optimizer tier (the criterion is flat to ~1e-7 in them)."""
    case = LMM_CASES[0]
    fit = reference_fit(case, "ml")
    assert_close(fit.theta, [1.1656118], OPT_PAR, "theta")
    assert_close(fit.sigma, 30.895434, OPT_PAR, "sigma")
    assert close_to_printed(fit.loglik, "-897.03932")
    slope = reference_fit(next(c for c in LMM_CASES if c.stem == "sleepstudy_slope"), "reml")
    assert close_to_printed(slope.objective, "1743.628")


# --------------------------------------------------------------------------------------------------
# 4. Two formulations: the blocked Cholesky against the tutorial's dense V, on random unbalanced data
# --------------------------------------------------------------------------------------------------


def _codes(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """Unbalanced level codes 0..k-1, each level present, with unequal probabilities."""
    p = rng.dirichlet(np.full(k, 2.0))
    c = rng.choice(k, size=n, p=p)
    c[:k] = rng.permutation(k)
    return c


def random_model(kind: str, n: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[ReTerm]]:
    """Seeded data for one random-effects structure; X = [1, x, z]."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    z = rng.uniform(0.0, 4.0, size=n)
    X = np.column_stack([np.ones(n), x, z])
    one = np.ones((n, 1))
    a = _codes(rng, n, 11)
    b = _codes(rng, n, 6)
    la = [f"a{i:02d}" for i in range(11)]
    lb = [f"b{i}" for i in range(6)]
    y = 2.0 + 0.5 * x - 0.3 * z + rng.normal(size=n)
    y += 1.3 * rng.normal(size=11)[a] + 0.4 * rng.normal(size=11)[a] * z + 0.8 * rng.normal(size=6)[b]
    if kind == "intercept":
        terms = [indicator_term("a", ["(Intercept)"], a, la, one)]
    elif kind == "correlated_slope":
        terms = [indicator_term("a", ["(Intercept)", "z"], a, la, np.column_stack([one, z]))]
    elif kind == "uncorrelated_slope":
        terms = [
            indicator_term("a", ["(Intercept)"], a, la, one),
            indicator_term("a", ["z"], a, la, z[:, None]),
        ]
    elif kind == "crossed":
        terms = [
            indicator_term("a", ["(Intercept)"], a, la, one),
            indicator_term("b", ["(Intercept)"], b, lb, one),
        ]
    elif kind == "nested":
        inner = a * 3 + rng.integers(0, 3, size=n)
        uniq, codes = np.unique(inner, return_inverse=True)
        y += 0.7 * rng.normal(size=uniq.size)[codes]
        names = [f"c{u % 3}:a{u // 3:02d}" for u in uniq]
        terms = [
            indicator_term("c:a", ["(Intercept)"], codes, names, one),
            indicator_term("a", ["(Intercept)"], a, la, one),
        ]
    elif kind == "crossed_vector_rest":
        # the first block (most columns) is scalar and the second a correlated vector term: the quick path's
        # general (non-scalar) branch
        big = _codes(rng, n, 20)
        y += 0.9 * rng.normal(size=20)[big] + 0.6 * rng.normal(size=6)[b] * z
        terms = [
            indicator_term("c", ["(Intercept)"], big, [f"c{i:02d}" for i in range(20)], one),
            indicator_term("b", ["(Intercept)", "z"], b, lb, np.column_stack([one, z])),
        ]
    else:
        raise ValueError(kind)
    return X, y, terms


STRUCTURES = [
    "intercept",
    "correlated_slope",
    "uncorrelated_slope",
    "crossed",
    "nested",
    "crossed_vector_rest",
]
SEVERAL_FACTORS = ["crossed", "nested", "crossed_vector_rest"]


def random_thetas(terms: list[ReTerm], count: int, seed: int) -> list[np.ndarray]:
    """Theta values to evaluate at: random diagonals in [0, 2] (one of them on the boundary 0) and
    off-diagonals in [-1, 1]."""
    rng = np.random.default_rng(seed)
    lower = lower_bounds(terms)
    diag = np.isfinite(lower)
    out = []
    for i in range(count):
        th = np.where(diag, rng.uniform(0.05, 2.0, lower.size), rng.uniform(-1.0, 1.0, lower.size))
        if i == count - 1:
            th[np.flatnonzero(diag)[0]] = 0.0
        out.append(th)
    return out


@pytest.mark.parametrize("kind", STRUCTURES)
@pytest.mark.parametrize("reml", [False, True], ids=["ml", "reml"])
def test_dense_and_fast_criteria_agree_at_fixed_theta(kind, reml, monkeypatch):
    X, y, terms = random_model(kind)
    for theta in random_thetas(terms, 4, seed=len(kind)):
        got = objectives(X, y, terms, theta, reml, monkeypatch)
        for how, value in got.items():
            assert_close(value, got["dense V"], EXACT, f"{how} at {theta}")


@pytest.mark.parametrize("kind", SEVERAL_FACTORS)
def test_precomputed_pairs_and_sparse_update_agree(kind, monkeypatch):
    """With several factors the Schur update uses the precomputed pairs of A_R0 (one sparse mat-vec per
    theta): the criterion must be the same function as with the sparse product."""
    X, y, terms = random_model(kind)
    g = Gram(X, y, terms)
    assert g.pairs is not None
    assert g.rest_scalar == (kind != "crossed_vector_rest")
    for reml in (False, True):
        for theta in random_thetas(terms, 6, seed=7):
            got = objectives(X, y, terms, theta, reml, monkeypatch)
            assert_close(got["blocked"], got["blocked, sparse update"], EXACT, f"pairs vs sparse at {theta}")


@functools.cache
def dense_and_fast(kind: str, reml: bool) -> tuple[LmmFit, LmmFit]:
    X, y, terms = random_model(kind)
    return fit_lmm(X, y, terms, reml=reml), fit_lmm(X, y, terms, reml=reml, method="dense")


@pytest.mark.parametrize("kind", STRUCTURES)
@pytest.mark.parametrize("reml", [False, True], ids=["ml", "reml"])
def test_dense_and_fast_fits_agree(kind, reml):
    fast, dense = dense_and_fast(kind, reml)
    assert fast.converged and dense.converged
    assert abs(fast.objective - dense.objective) <= OPT_DEV
    assert_close(fast.theta, dense.theta, OPT_PAR, "theta", scale=1.0)
    assert_close(fast.sigma, dense.sigma, OPT_PAR, "sigma")
    assert_close(fast.beta, dense.beta, OPT_PAR, "beta", scale=float(np.max(np.sqrt(np.diag(dense.vcov)))))
    assert_close(np.sqrt(np.diag(fast.vcov)), np.sqrt(np.diag(dense.vcov)), OPT_PAR, "se")
    for t, bf, bd, sf, sd in zip(fast.terms, fast.ranef, dense.ranef, fast.cond_sd, dense.cond_sd, strict=True):
        assert_close(bf, bd, OPT_PAR, f"modes {t.group}", scale=dense.sigma)
        assert_close(sf, sd, OPT_PAR, f"cond. SDs {t.group}", scale=dense.sigma)
    assert_close(fast.fitted, dense.fitted, OPT_PAR, "fitted", scale=dense.sigma)


def dense_at(X: np.ndarray, y: np.ndarray, terms, theta, reml: bool) -> LmmFit:
    """Every result at a given theta by the tutorial's dense formulas (GLS beta, b = Lambda Lambda'Z'V0^-1 r)."""
    return fit_at(X, y, terms, theta, reml, method="dense")


@pytest.mark.parametrize("kind", [*STRUCTURES[:-1], "crossed_vector_rest"])
def test_dense_and_fast_results_agree_at_fixed_theta(kind):
    """Everything a fit reports, at one theta, by both formulations: no optimizer involved."""
    X, y, terms = random_model(kind)
    theta = random_thetas(terms, 1, seed=3)[0]
    for reml in (False, True):
        fast, dense = fit_at(X, y, terms, theta, reml), dense_at(X, y, terms, theta, reml)
        assert_close(fast.objective, dense.objective, EXACT, "criterion")
        assert_close(fast.sigma, dense.sigma, EXACT, "sigma")
        assert_close(fast.beta, dense.beta, EXACT, "beta", scale=float(np.max(np.abs(dense.beta))))
        assert_close(fast.vcov, dense.vcov, EXACT, "vcov", scale=float(np.max(np.abs(dense.vcov))))
        for t, bf, bd, cf, cd in zip(terms, fast.ranef, dense.ranef, fast.cond_cov, dense.cond_cov, strict=True):
            assert_close(bf, bd, EXACT, f"modes {t.group}", scale=float(np.max(np.abs(bd))))
            assert_close(cf, cd, EXACT, f"cond. covariances {t.group}", scale=float(np.max(np.abs(cd))))
        assert_close(fast.fitted, dense.fitted, EXACT, "fitted", scale=float(np.max(np.abs(y))))


def test_dense_method_is_limited_in_size():
    n = DENSE_MAX_ROWS + 1
    rng = np.random.default_rng(0)
    codes = np.arange(n) % 40
    terms = [indicator_term("g", ["(Intercept)"], codes, [str(i) for i in range(40)], np.ones((n, 1)))]
    with pytest.raises(ModelError, match=str(DENSE_MAX_ROWS)):
        fit_lmm(np.ones((n, 1)), rng.normal(size=n), terms, method="dense")


# --------------------------------------------------------------------------------------------------
# 5. Invariances
# --------------------------------------------------------------------------------------------------

SLEEP_SLOPE = next(c for c in LMM_CASES if c.stem == "sleepstudy_slope")
PENICILLIN = next(c for c in LMM_CASES if c.stem == "penicillin")
INVARIANCE_CASES = [
    pytest.param(SLEEP_SLOPE, id="sleepstudy_slope"),
    pytest.param(PENICILLIN, id="penicillin"),
]


def design_from_frame(case: LmmCase, frame) -> Design:
    spec = parse_formula(load_reference(f"{case.stem}_ml")["formula"])
    return build_design(spec, frame, set(case.factors))


def reference_frame(case: LmmCase):
    table, _ = load_table(case.csv, load_reference(f"{case.stem}_ml")["formula"], case.factors)
    return table.frame


def assert_same_fit(a: LmmFit, b: LmmFit, what: str) -> None:
    assert abs(a.objective - b.objective) <= OPT_DEV, what
    assert_close(a.theta, b.theta, OPT_PAR, f"{what}: theta", scale=1.0)
    assert_close(a.sigma, b.sigma, OPT_PAR, f"{what}: sigma")
    assert_close(a.beta, b.beta, OPT_FIXEF, f"{what}: beta", scale=float(np.max(np.abs(b.beta))))
    assert_close(np.sqrt(np.diag(a.vcov)), np.sqrt(np.diag(b.vcov)), OPT_PAR, f"{what}: se")


@pytest.mark.parametrize("case", INVARIANCE_CASES)
def test_row_order_does_not_matter(case):
    frame = reference_frame(case)
    perm = np.random.default_rng(11).permutation(len(frame))
    shuffled = frame.iloc[perm].reset_index(drop=True)
    d0, d1 = reference_design(case), design_from_frame(case, shuffled)
    theta = np.atleast_1d(load_reference(f"{case.stem}_ml")["theta"])
    for reml in (False, True):
        assert_close(
            LmmModel(d1.X, d1.y, d1.terms).objective(theta, reml),
            LmmModel(d0.X, d0.y, d0.terms).objective(theta, reml),
            EXACT,
            "criterion at a fixed theta",
        )
    base = reference_fit(case, "ml")
    fit = fit_lmm(d1.X, d1.y, d1.terms, xnames=d1.xnames)
    assert_same_fit(fit, base, "shuffled rows")
    assert_close(fit.fitted, base.fitted[perm], OPT_PAR, "fitted, permuted", scale=base.sigma)
    got, want = ranef_by_key(fit), ranef_by_key(base)
    assert got.keys() == want.keys()
    for key in want:
        assert list(got[key]) == list(want[key])
        assert_close(list(got[key].values()), list(want[key].values()), OPT_PAR, f"ranef {key}", scale=base.sigma)


@pytest.mark.parametrize("case", INVARIANCE_CASES)
def test_relabeling_levels_permutes_the_random_effects(case):
    """New labels that sort in another order: the same fit, each level's mode moving with its label."""
    frame = reference_frame(case).copy()
    d0 = reference_design(case)
    groups = [t.group for t in d0.terms]
    renames: dict[str, dict[str, str]] = {}
    for g in dict.fromkeys(groups):
        old = sorted(frame[g].astype(str).unique())
        # reversed order, and text labels where the originals were numbers
        renames[g] = {lab: f"L{len(old) - i:03d}_{lab}" for i, lab in enumerate(old)}
        frame[g] = frame[g].astype(str).map(renames[g]).astype("category")
    d1 = design_from_frame(case, frame)
    assert [t.group for t in d1.terms] == groups
    for t0, t1 in zip(d0.terms, d1.terms, strict=True):
        assert list(t1.levels) == sorted(renames[t0.group][lab] for lab in t0.levels)
    base = reference_fit(case, "reml")
    fit = fit_lmm(d1.X, d1.y, d1.terms, reml=True, xnames=d1.xnames)
    assert_same_fit(fit, base, "relabeled levels")
    got, want = ranef_by_key(fit), ranef_by_key(base)
    for (g, term), rows in want.items():
        moved = {renames[g][lab]: v for lab, v in rows.items()}
        assert set(got[(g, term)]) == set(moved)
        labels = sorted(moved)
        assert_close(
            [got[(g, term)][lab] for lab in labels],
            [moved[lab] for lab in labels],
            OPT_PAR,
            f"ranef {g} {term}",
            scale=base.sigma,
        )


@pytest.mark.parametrize("case", INVARIANCE_CASES)
@pytest.mark.parametrize("method", METHODS)
def test_shifting_y_moves_only_the_intercept(case, method):
    """X has an intercept, so the criterion at a fixed theta does not see a shift of y, and the fit moves only
    the intercept. (A shift of a few times the data's size; far larger shifts: the test below.)"""
    d = reference_design(case)
    reml = method == "reml"
    shift = 100.0
    theta = np.atleast_1d(load_reference(f"{case.stem}_{method}")["theta"])
    assert_close(
        LmmModel(d.X, d.y + shift, d.terms).objective(theta, reml),
        LmmModel(d.X, d.y, d.terms).objective(theta, reml),
        EXACT,
        "criterion at a fixed theta",
    )
    base = reference_fit(case, method)
    fit = fit_lmm(d.X, d.y + shift, d.terms, reml=reml, xnames=d.xnames)
    assert abs(fit.objective - base.objective) <= OPT_DEV
    assert_close(fit.theta, base.theta, OPT_PAR, "theta", scale=1.0)
    assert_close(fit.sigma, base.sigma, OPT_PAR, "sigma")
    want = base.beta.copy()
    want[0] += shift
    assert d.xnames[0] == "(Intercept)"
    assert_close(fit.beta, want, OPT_FIXEF, "beta", scale=float(np.max(np.abs(want))))
    assert_close(np.sqrt(np.diag(fit.vcov)), np.sqrt(np.diag(base.vcov)), OPT_PAR, "se")
    for bf, bb in zip(fit.ranef, base.ranef, strict=True):
        assert_close(bf, bb, OPT_PAR, "modes", scale=base.sigma)


@pytest.mark.parametrize("method", METHODS)
def test_fit_is_shift_invariant_for_a_large_shift(method):
    """y + 1e4 (about 2e4 sigma): fit_lmm centres y on X before forming the Gram matrix, so nothing cancels."""
    d = reference_design(PENICILLIN)
    reml = method == "reml"
    base = fit_lmm(d.X, d.y, d.terms, reml=reml, xnames=d.xnames)
    shifted = fit_lmm(d.X, d.y + 1e4, d.terms, reml=reml, xnames=d.xnames)
    assert_close(shifted.objective, base.objective, OPT_DEV, "criterion, y + 1e4")
    assert_close(shifted.theta, base.theta, OPT_PAR, "theta, y + 1e4")
    assert_close(shifted.beta - [1e4], base.beta, OPT_PAR, "intercept - 1e4", scale=base.sigma)


@pytest.mark.parametrize("case", INVARIANCE_CASES)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("c", [3.7, 1e150, 1e-150])
def test_scaling_y(case, method, c):
    """y -> c y: theta unchanged; sigma, beta, modes scale by c; the criterion shifts by 2 n log c (ML) or
    2 (n - p) log c (REML), so logLik shifts by -n log c or -(n - p) log c. Extreme c must still fit."""
    d = reference_design(case)
    reml = method == "reml"
    base = reference_fit(case, method)
    n, p = d.X.shape
    m = (n - p) if reml else n
    if c == 3.7:  # a plain evaluation; 1e+-150 would overflow/underflow the Gram matrix of the raw y
        theta = np.atleast_1d(load_reference(f"{case.stem}_{method}")["theta"])
        assert_close(
            LmmModel(d.X, c * d.y, d.terms).objective(theta, reml),
            LmmModel(d.X, d.y, d.terms).objective(theta, reml) + 2 * m * math.log(c),
            EXACT,
            "criterion at a fixed theta",
        )
    fit = fit_lmm(d.X, c * d.y, d.terms, reml=reml, xnames=d.xnames)
    assert fit.converged
    assert abs(fit.loglik - (base.loglik - m * math.log(c))) <= OPT_DEV
    assert_close(fit.theta, base.theta, OPT_PAR, "theta", scale=1.0)
    assert_close(fit.sigma, c * base.sigma, OPT_PAR, "sigma")
    assert_close(fit.beta, c * base.beta, OPT_FIXEF, "beta", scale=c * float(np.max(np.abs(base.beta))))
    assert_close(np.sqrt(np.diag(fit.vcov)), c * np.sqrt(np.diag(base.vcov)), OPT_PAR, "se")
    for bf, bb in zip(fit.ranef, base.ranef, strict=True):
        assert_close(bf, c * bb, OPT_PAR, "modes", scale=c * base.sigma)
    for sf, sb in zip(fit.cond_sd, base.cond_sd, strict=True):
        assert_close(sf, c * sb, OPT_PAR, "cond. SDs", scale=c * base.sigma)


# --------------------------------------------------------------------------------------------------
# 6. Checks lme4 makes before fitting
# --------------------------------------------------------------------------------------------------


def test_aliased_columns_are_found_by_pivoted_qr():
    rng = np.random.default_rng(0)
    x = rng.normal(size=30)
    X = np.column_stack([np.ones(30), x, 2 * x - 1, rng.normal(size=30)])
    keep, drop = aliased_columns(X)
    assert keep.tolist() == [0, 1, 3]
    assert drop.tolist() == [2]


def test_fit_with_aliased_column_equals_fit_without():
    d = reference_design(LMM_CASES[0])
    X = np.column_stack([d.X, d.X[:, 1]])
    fit = fit_lmm(X, d.y, d.terms, xnames=[*d.xnames, "Days2"])
    assert fit.dropped_columns == ("Days2",)
    assert list(fit.xnames) == d.xnames
    assert_same_fit(fit, reference_fit(LMM_CASES[0], "ml"), "with an aliased column")


@pytest.mark.parametrize(
    ("codes", "message"),
    [
        (np.zeros(10, dtype=int), "at least 2 levels"),
        (np.arange(10), "as many levels"),
    ],
    ids=["one_level", "a_level_per_row"],
)
def test_grouping_factors_lme4_rejects(codes, message):
    n = 10
    levels = [str(i) for i in range(int(codes.max()) + 1)]
    terms = [indicator_term("g", ["(Intercept)"], codes, levels, np.ones((n, 1)))]
    with pytest.raises(ModelError, match=message):
        fit_lmm(np.ones((n, 1)), np.arange(n, dtype=float), terms)


def test_no_random_effects_is_an_error():
    with pytest.raises(ModelError, match="random-effects"):
        fit_lmm(np.ones((5, 1)), np.arange(5.0), [])
