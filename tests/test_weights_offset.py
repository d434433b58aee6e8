"""Prior weights and offsets against lme4 (tests/reference/make_lmm_weights.R), and the public core API.

At lme4's own theta-hat every number is a deterministic evaluation (the EXACT tier); the fits themselves are
held to the optimizer tiers. The command line is checked for the `weights` and `offset` fields and for its
errors. X'V^-1 X from the blocked factor is checked against the dense V.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import EXACT, OPT_DEV, OPT_PAR, REFERENCE_DIR, load_reference, run_in_process

from mmcli.data import load
from mmcli.design import build_design
from mmcli.errors import DataError
from mmcli.formula import parse_formula
from mmcli.lmm import LmmFit, LmmModel, fit_at_theta, templates, xtvinvx

CASES = {
    "sleepstudy_weights_ml": ("sleepstudy_weighted.csv", "w"),
    "sleepstudy_weights_reml": ("sleepstudy_weighted.csv", "w"),
    "sleepstudy_offset_ml": ("sleepstudy_weighted.csv", None),
    "sleepstudy_weights_offset_reml": ("sleepstudy_weighted.csv", "w"),
    "penicillin_weights_ml": ("penicillin_weighted.csv", "w"),
}


def criterion_of(ref: dict) -> float:
    return ref["REMLcrit"] if ref["REML"] else ref["deviance"]


def design_of(stem: str):
    ref = load_reference(stem)
    csv, weights = CASES[stem]
    spec = parse_formula(ref["formula"])
    groups = [f for t in spec.random for f in t.factors]
    numeric = list(dict.fromkeys([spec.response] + [o.var for o in spec.offsets] + ([weights] if weights else [])))
    other = [c for c in spec.variables() if c not in numeric and c not in groups]
    table = load(str(REFERENCE_DIR / csv), numeric=numeric, categorical=groups, other=other)
    return ref, build_design(spec, table.frame, set(), weights=weights)


def model_of(stem: str) -> tuple[dict, LmmModel]:
    ref, d = design_of(stem)
    return ref, LmmModel(d.X, d.y, d.terms, xnames=d.xnames, weights=d.weights, offset=d.offset)


def close(got, want, tol: float, scale: float | None = None) -> bool:
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    bound = tol * np.maximum(np.abs(want), 0.0 if scale is None else scale)
    return bool(np.all(np.abs(got - want) <= bound))


def ranef_table(fit: LmmFit) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    out = {}
    for t, b, sd in zip(fit.terms, fit.ranef, fit.cond_sd):
        for i, name in enumerate(t.names):
            out[(t.group, name)] = (b[:, i], sd[:, i])
    return out


@pytest.mark.parametrize("stem", list(CASES))
def test_everything_at_lme4_theta(stem):
    """The criterion (with lme4's -sum(log w)), sigma, beta, vcov, fitted values (offset included), the
    scaled Pearson residuals and the conditional modes and SDs at lme4's theta-hat."""
    ref, model = model_of(stem)
    reml = ref["REML"]
    theta = np.atleast_1d(np.asarray(ref["theta"], dtype=float))
    assert close(model.objective(theta, reml), criterion_of(ref), EXACT)
    fit = model.fit_at(theta, reml)
    assert close(fit.objective, criterion_of(ref), EXACT)
    assert close(fit.sigma, ref["sigma"], EXACT)
    assert close(fit.beta, list(ref["fixef"].values()), EXACT)
    assert close(fit.vcov, ref["vcov"], EXACT, scale=float(np.max(np.abs(ref["vcov"]))))
    assert close(fit.fitted, ref["fitted"], EXACT)
    scaled = np.quantile(fit.pearson_residuals / fit.sigma, [0, 0.25, 0.5, 0.75, 1])
    assert close(scaled, ref["scaled_resid_quantiles"], EXACT, scale=1.0)
    got = ranef_table(fit)
    for r in ref["ranef"]:
        mode, sd = got[(r["group"], r["term"])]
        assert close(mode, r["mode"], EXACT, scale=fit.sigma)
        assert close(sd, r["condsd"], EXACT, scale=fit.sigma)


@pytest.mark.parametrize("stem", list(CASES))
def test_fit_against_lme4(stem):
    ref, model = model_of(stem)
    fit = model.fit(ref["REML"])
    want = criterion_of(ref)
    assert fit.converged
    assert fit.objective <= want + EXACT * abs(want)
    assert want - fit.objective <= OPT_DEV
    assert close(fit.theta, ref["theta"], OPT_PAR, scale=1.0)
    assert close(fit.sigma, ref["sigma"], OPT_PAR)
    assert close(fit.aic, ref["AIC"], OPT_DEV / abs(ref["AIC"]))


def test_unit_weights_and_zero_offset_change_nothing():
    ref, d = design_of("sleepstudy_offset_ml")
    plain = LmmModel(d.X, d.y, d.terms, offset=d.offset)
    ones = LmmModel(d.X, d.y, d.terms, offset=d.offset, weights=np.ones(d.y.size))
    theta = np.asarray(ref["theta"], dtype=float).ravel()
    for reml in (False, True):
        assert close(ones.objective(theta, reml), plain.objective(theta, reml), EXACT)


def test_offset_is_the_response_shifted():
    """y ~ x + offset(o) is y - o ~ x: the same criterion, and fitted values that differ by o."""
    ref, d = design_of("sleepstudy_offset_ml")
    theta = np.asarray(ref["theta"], dtype=float).ravel()
    with_offset = fit_at_theta(d.X, d.y, d.terms, theta, offset=d.offset)
    shifted = fit_at_theta(d.X, d.y - d.offset, d.terms, theta)
    assert close(with_offset.objective, shifted.objective, EXACT)
    assert close(with_offset.fitted - d.offset, shifted.fitted, EXACT)


@pytest.mark.parametrize("stem", ["sleepstudy_weights_ml", "penicillin_weights_ml"])
def test_xtvinvx_equals_the_dense_computation(stem):
    """X'V0^-1 X with V0 = W^-1 + Z Lambda Lambda'Z', from the blocked factor, against numpy on V0 itself."""
    ref, d = design_of(stem)
    theta = np.asarray(ref["theta"], dtype=float).ravel()
    Z = np.column_stack([t.zmat().toarray() for t in d.terms])
    blocks = [np.kron(np.eye(t.nlevels), T) for t, T in zip(d.terms, templates(d.terms, theta))]
    Lam = np.zeros((Z.shape[1], Z.shape[1]))
    off = 0
    for B in blocks:
        Lam[off : off + B.shape[0], off : off + B.shape[0]] = B
        off += B.shape[0]
    ZL = Z @ Lam
    V0 = np.diag(1.0 / d.weights) + ZL @ ZL.T
    want = d.X.T @ np.linalg.solve(V0, d.X)
    assert close(xtvinvx(d.X, d.terms, theta, d.weights), want, EXACT, scale=float(np.max(np.abs(want))))


def test_fit_result_knows_where_each_terms_theta_is():
    ref, model = model_of("sleepstudy_weights_ml")
    fit = model.fit_at(np.asarray(ref["theta"]), False)
    assert fit.theta_offsets == (0,)
    assert fit.terms[0].ntheta == 3


def test_command_line_reports_weights_and_offset():
    path = REFERENCE_DIR / "sleepstudy_weighted.csv"
    ref = load_reference("sleepstudy_weights_offset_reml")
    r = run_in_process(["fit", path, ref["formula"], "--weights", "w", "--reml", "--json"])
    d = r.json()
    assert d["weights"] == "w"
    assert d["offset"] == ["offset(off)"]
    assert d["formula"] == ref["formula"]
    assert abs(d["reml_criterion"] - ref["REMLcrit"]) <= OPT_DEV
    plain = run_in_process(["fit", path, "Reaction ~ Days + (1|Subject)", "--json"]).json()
    assert plain["weights"] is None and plain["offset"] == []


@pytest.mark.parametrize(
    ("weights", "message"),
    [("0", "must be positive"), ("-1", "must be positive"), ("heavy", "must be numeric")],
)
def test_bad_weights_are_one_error_line(tmp_path, weights, message):
    """Weights of 0, negative or text: exit 1 with one Error line."""
    rows = ["y,x,g,w"] + [f"{(i * 37) % 11},{i % 5},g{i % 4},{weights if i == 7 else 1}" for i in range(40)]
    path = tmp_path / "w.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    r = run_in_process(["fit", path, "y ~ x + (1|g)", "--weights", "w"])
    assert r.code == 1 and len(r.error_lines) == 1 and message in r.err, r.err


def test_weights_checked_in_the_core():
    ref, d = design_of("sleepstudy_weights_ml")
    with pytest.raises(DataError, match="positive"):
        LmmModel(d.X, d.y, d.terms, weights=-d.weights)
    with pytest.raises(DataError, match="values for"):
        LmmModel(d.X, d.y, d.terms, weights=d.weights[:-1])


def test_offset_log_and_bad_offset_terms():
    path = REFERENCE_DIR / "sleepstudy_weighted.csv"
    r = run_in_process(["fit", path, "Reaction ~ Days + offset(log(w)) + (1|Subject)", "--json"])
    assert r.json()["offset"] == ["offset(log(w))"]
    bad = run_in_process(["fit", path, "Reaction ~ Days + offset(w * 2) + (1|Subject)"])
    assert bad.code == 2 and "offset takes a column" in bad.err


# --------------------------------------------------------------------------------------------------
# gamm with weights and an offset, against gamm4 (tests/reference/make_gamm_weights.R)


def gamm_weighted(theta=None):
    import pandas as pd

    from mmcli.gamm import fit_gamm

    ref = load_reference("gamm_weights_offset")
    spec = parse_formula("y ~ x1 + s(x2, bs='cr') + offset(off) + (1|g)", allow_smooths=True)
    table = load(
        str(REFERENCE_DIR / "gamm_weighted.csv"), numeric=["y", "x2", "off", "w"], categorical=["g"], other=["x1"]
    )
    design = build_design(spec, table.frame, set(), weights="w")
    g = fit_gamm(design, theta=theta)
    fit, se = g.predict(design.new_rows(pd.DataFrame(ref["grid"])))
    return ref, g, fit, se


def test_gamm_with_weights_and_offset_at_gamm4_theta():
    ref, g, fit, se = gamm_weighted(theta=np.asarray(load_reference("gamm_weights_offset")["theta"]))
    assert [t.group for t in g.lmm.terms] == [n.split(".")[0] for n in ref["theta_names"]]
    assert close(g.lmm.objective, ref["REMLcrit"], EXACT)
    assert close(fit, ref["predict"], EXACT)
    assert close(se, ref["predict_se"], EXACT)
    assert close(g.edf[0], ref["gam_edf"], EXACT, scale=1.0)


def test_gamm_with_weights_and_offset_fit():
    ref, g, fit, se = gamm_weighted()
    assert g.lmm.objective <= ref["REMLcrit"] + EXACT * ref["REMLcrit"]
    assert ref["REMLcrit"] - g.lmm.objective <= OPT_DEV
    assert close(fit, ref["predict"], OPT_PAR, scale=max(ref["predict_se"]))
    assert close(se, ref["predict_se"], OPT_PAR)
    assert close(g.edf[0], ref["gam_edf"], OPT_PAR, scale=1.0)
