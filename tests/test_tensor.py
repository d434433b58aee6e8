"""te() and t2() tensor-product smooths against mgcv 1.8-41 and gamm4 0.2-6 (tests/reference/tensor.json).

Provenance: tests/reference/make_tensor.R (R 4.2.2; versions inside the JSON) on tests/reference/
tensor_surface.csv, a documented simulated surface (400 points, 20 groups; see the script):
- te: ``gam(y0 ~ te(x, z), method = "REML")``, the same by ``"ML"``, ``te(x, z, k = c(4, 6))``, a surface
  straight in x (``ys ~ te(x, z)``, where the x penalty is large), and
  ``gam(y ~ te(x, z) + s(g, bs = "re"), method = "REML")`` (mmcli's answer to te with a random intercept);
- t2: ``gamm4(y0 ~ t2(x, z))`` and ``gamm4(y ~ t2(x, z, k = c(5, 6)), random = ~(1 | g))``, and the latter
  as ``gam(y ~ t2(x, z, k = c(5, 6)) + s(g, bs = "re"), method = "REML")``.
Predictions are on a 6 x 5 grid, population level (``exclude = "s(g)"`` for gam).

Tiers: bases, penalties and the criterion at R's own parameters are deterministic (EXACT); the fits went through
an optimizer (OPT_DEV for the criterion, OPT_PAR for smoothing parameters, variances, EDF and predictions,
the last relative to their standard errors).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import EXACT, OPT_DEV, OPT_PAR, REFERENCE_DIR, load_reference

from mmcli.design import build_design
from mmcli.errors import FormulaError, ModelError, UsageError
from mmcli.formula import parse_formula
from mmcli.gam_design import build_gam_design, predict_gam
from mmcli.gam_reml import fit_gam
from mmcli.gamm import fit_gamm
from mmcli.tensor import t2_construct, te_construct

DATA = REFERENCE_DIR / "tensor_surface.csv"
REF = load_reference("tensor")


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    d = pd.read_csv(DATA)
    d["g"] = pd.Categorical(d["g"])
    return d


@pytest.fixture(scope="module")
def grid() -> pd.DataFrame:
    return pd.DataFrame({"x": REF["grid"]["x"], "z": REF["grid"]["z"]})


def xs(frame: pd.DataFrame) -> list[np.ndarray]:
    return [frame["x"].to_numpy(float), frame["z"].to_numpy(float)]


def rel(a: Any, b: Any) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


# ---------------------------------------------------------------------------------------------------------
# bases and penalties (deterministic)


@pytest.mark.parametrize(("key", "k"), [("te_reml", (5, 5)), ("te_k", (4, 6))])
def test_te_basis_and_penalties_equal_mgcv(frame, grid, key, k):
    sm = te_construct(xs(frame), vars_=("x", "z"), bs=("cr", "cr"), k=k)
    ref = REF[key]
    assert rel(sm.predict_matrix(grid[["x", "z"]].to_numpy()), ref["basis_grid"]) < EXACT
    for S, Sr in zip(sm.S, ref["S"]):
        assert rel(S, Sr) < EXACT
    assert rel(sm.S_scale, ref["S_scale"]) < EXACT
    for mg, kn in zip(sm.margins, ref["knots"]):
        assert rel(mg.knots, kn) < EXACT
    assert sm.ranks == (k[1] * (k[0] - 2), k[0] * (k[1] - 2))


@pytest.mark.parametrize(("key", "k"), [("t2", (5, 5)), ("t2_re", (5, 6))])
def test_t2_margins_and_basis_span_equal_mgcv(frame, grid, key, k):
    """t2's margins in mgcv's natural parametrization (up to LAPACK's signs of eigenvectors), and the model
    space: mgcv predicts with the whole basis constrained to sum to zero (its Xp), mmcli with the constraint
    it fits with (on the unpenalized block only, as smoothCon's fit does); with the intercept the two span the
    same space."""
    sm = t2_construct(xs(frame), vars_=("x", "z"), bs=("cr", "cr"), k=k)
    ref = REF[key]
    for mg, P in zip(sm.margins, ref["P"]):
        assert rel(np.abs(mg.P), np.abs(np.asarray(P))) < EXACT
    B = np.column_stack([np.ones(len(grid)), sm.predict_matrix(grid[["x", "z"]].to_numpy())])
    Br = np.column_stack([np.ones(len(grid)), np.asarray(ref["basis_grid"])])
    assert B.shape == Br.shape
    Q, _ = np.linalg.qr(Br)
    assert np.max(np.abs(B - Q @ (Q.T @ B))) < EXACT * np.max(np.abs(B))
    assert sm.labels == tuple(ref["S"].keys()) == ("rr", "nr", "rn")
    for block, diag in zip(sm.blocks, ref["S"].values()):
        assert np.array_equal(block, np.flatnonzero(np.asarray(diag) != 0))
    scale = 1 / np.asarray(ref["S"]["rr"])[sm.blocks[0][0]]
    assert abs(sm.S_scale[0] / scale - 1) < EXACT


# ---------------------------------------------------------------------------------------------------------
# te: mgcv's gam by REML and ML, with and without a random intercept


def gam_fit(frame: pd.DataFrame, formula: str, reml: bool = True) -> tuple[Any, Any]:
    design = build_gam_design(parse_formula(formula, allow_smooths=True), frame, set())
    return design, fit_gam(design.model(), reml=reml)


TE_CASES = {
    "te_reml": ("y0 ~ te(x, z)", True),
    "te_ml": ("y0 ~ te(x, z)", False),
    "te_k": ("y0 ~ te(x, z, k = c(4, 6))", True),
    "te_straight": ("ys ~ te(x, z)", True),
    "te_re": ("y ~ te(x, z) + (1 | g)", True),
}


@pytest.fixture(scope="module")
def te_fits(frame: pd.DataFrame) -> dict[str, Any]:
    return {key: gam_fit(frame, f, reml) for key, (f, reml) in TE_CASES.items()}


@pytest.mark.parametrize("key", list(TE_CASES))
def test_te_fit_equals_mgcv_gam(te_fits, grid, key):
    design, fit = te_fits[key]
    ref = REF[key]
    assert fit.converged
    assert fit.score <= ref["score"] + OPT_DEV  # mgcv's REML/ML score
    assert abs(fit.score - ref["score"]) < OPT_DEV
    lam_ref = np.asarray(ref["sp"])
    assert rel(fit.lam, lam_ref) < OPT_PAR
    assert abs(fit.scale / ref["scale"] - 1) < OPT_PAR
    te_block = next(b for b in design.blocks if b.kind == "te")
    assert abs(fit.edf[te_block.cols].sum() - ref["edf"]) < OPT_PAR * ref["edf"]
    fit_, se = predict_gam(fit, *design.new_rows(grid))
    se_ref = np.asarray(ref["predict_se"])
    assert np.max(np.abs(fit_ - ref["predict"]) / se_ref) < OPT_PAR
    assert rel(se, se_ref) < OPT_PAR


def test_te_at_mgcv_smoothing_parameters_is_deterministic(te_fits):
    """At mgcv's own λ the criterion and EDF are evaluations, not optimizations. (mgcv's scale is not: it
    optimizes log φ beside log λ, to within 2e-9 of D_p/(n − M_p) here, which OPT_PAR above covers.)"""
    design, _ = te_fits["te_reml"]
    ref = REF["te_reml"]
    at = fit_gam(design.model(), reml=True, rho=np.log(ref["sp"]))
    assert abs(at.score / ref["score"] - 1) < EXACT
    assert abs(at.edf[1:].sum() / ref["edf"] - 1) < EXACT


def test_te_random_intercept_variance_equals_gam_vcomp(te_fits):
    design, fit = te_fits["te_re"]
    ref = REF["te_re"]
    sd = dict(zip(ref["vcomp_names"], ref["vcomp_sd"]))
    re = next(i for i, b in enumerate(design.blocks) if b.kind == "re")
    lam_g = fit.lam[[p.block for p in design.penalties].index(re)]
    assert abs(np.sqrt(fit.scale / lam_g) / sd["s(g)"] - 1) < OPT_PAR
    assert abs(np.sqrt(fit.scale) / sd["scale"] - 1) < OPT_PAR


# ---------------------------------------------------------------------------------------------------------
# t2: gamm4's mixed model


T2_CASES = {"t2": "y0 ~ t2(x, z)", "t2_re": "y ~ t2(x, z, k = c(5, 6)) + (1 | g)"}


@pytest.fixture(scope="module")
def t2_designs(frame: pd.DataFrame) -> dict[str, Any]:
    return {key: build_design(parse_formula(f, allow_smooths=True), frame, set()) for key, f in T2_CASES.items()}


def gamm4_theta(design: Any, ref: dict[str, Any]) -> np.ndarray:
    """gamm4's theta in mmcli's order of terms (matched by group name: 'Xr.0.t2(x,z)' is group Xr.0)."""
    by_group = {}
    for name, th in zip(ref["theta_names"], ref["theta"]):
        by_group[name.split(".t2(")[0] if ".t2(" in name else name.split(".(")[0]] = th
    return np.array([by_group[t.group] for t in design.terms])


def population(g: Any, grid: pd.DataFrame, frame: pd.DataFrame, design: Any) -> tuple[np.ndarray, np.ndarray]:
    rows = design.new_rows(grid.assign(g=pd.Categorical([frame["g"].iloc[0]] * len(grid))))
    return g.predict(rows)


@pytest.mark.parametrize("key", list(T2_CASES))
def test_t2_at_gamm4_theta_everything_matches(t2_designs, grid, frame, key):
    design, ref = t2_designs[key], REF[key]
    g = fit_gamm(design, theta=gamm4_theta(design, ref))
    assert abs(g.lmm.objective / ref["REMLcrit"] - 1) < EXACT
    assert abs(g.lmm.sigma / ref["sigma"] - 1) < EXACT
    assert abs(sum(g.edf) / ref["edf"] - 1) < EXACT
    fit_, se = population(g, grid, frame, design)
    assert rel(fit_, ref["predict"]) < EXACT
    assert rel(se, ref["predict_se"]) < EXACT


@pytest.mark.parametrize("key", list(T2_CASES))
def test_t2_fit_against_gamm4(t2_designs, grid, frame, key):
    """mmcli's optimum is as low as gamm4's (gamm4's optimizer stops up to 1.3e-7 higher on these flat
    criteria), and what a user compares, EDF and predictions, agrees to the optimizer's tolerance."""
    design, ref = t2_designs[key], REF[key]
    g = fit_gamm(design)
    assert g.lmm.converged
    assert g.lmm.objective <= ref["REMLcrit"] + OPT_DEV
    assert abs(g.lmm.objective - ref["REMLcrit"]) < 1e-3
    assert abs(sum(g.edf) / ref["edf"] - 1) < OPT_PAR
    fit_, se = population(g, grid, frame, design)
    se_ref = np.asarray(ref["predict_se"])
    assert np.max(np.abs(fit_ - ref["predict"]) / se_ref) < OPT_PAR
    assert rel(se, se_ref) < OPT_PAR
    names = [t.group for t in g.lmm.terms]
    assert sorted(names) == sorted(v["grp"] for v in ref["varcorr"] if v["grp"] != "Residual")


def test_t2_as_gam_and_as_mixed_model_agree(frame, t2_designs):
    """The same t2 model two ways: mgcv's gam criterion (with the random intercept as a penalty) and lme4's
    REML criterion of gamm4's mixed model are one number (R: 2 x 160.37266801783 = 320.74533603566)."""
    ref = REF["t2_gam_re"]
    assert abs(2 * ref["score"] - REF["t2_re"]["REMLcrit"]) < OPT_DEV
    _, fit = gam_fit(frame, "y ~ t2(x, z, k = c(5, 6)) + (1 | g)")
    g = fit_gamm(t2_designs["t2_re"])
    assert abs(fit.criterion - g.lmm.objective) < OPT_DEV
    assert abs(fit.score - ref["score"]) < OPT_DEV


# ---------------------------------------------------------------------------------------------------------
# formulas and errors


def test_formula_reads_margins():
    spec = parse_formula("y ~ x1 + te(x, z, k = c(4, 6), bs = c('cr', 'cs')) + t2(x, z, k = 6)", allow_smooths=True)
    te, t2 = spec.tensors
    assert (te.kind, te.vars, te.k, te.bs) == ("te", ("x", "z"), (4, 6), ("cr", "cs"))
    assert (t2.kind, t2.k, t2.bs) == ("t2", (6, 6), ("cr", "cr"))
    assert spec.text == 'y ~ x1 + te(x, z, bs = c("cr", "cs"), k = c(4, 6)) + t2(x, z, bs = c("cr", "cr"), k = c(6, 6))'
    assert spec.variables() == ["y", "x1", "x", "z"]
    assert parse_formula(spec.text, allow_smooths=True) == spec


@pytest.mark.parametrize(
    ("formula", "error"),
    [
        ("y ~ te(x)", FormulaError),
        ("y ~ t2(x, x)", FormulaError),
        ("y ~ te(x, z, k = c(4, 5, 6))", FormulaError),
        ("y ~ te(x, z, k = 'a')", FormulaError),
        ("y ~ te(x, z, m = 2)", FormulaError),
        ("y ~ te(x, z, bs = 'tp')", UsageError),
    ],
)
def test_formula_errors(formula, error):
    with pytest.raises(error):
        parse_formula(formula, allow_smooths=True)


def test_margin_k_below_or_above_what_the_basis_allows(frame):
    with pytest.raises(ModelError, match="k >= 3"):
        te_construct(xs(frame), vars_=("x", "z"), bs=("cr", "cr"), k=(2, 5))
    with pytest.raises(ModelError, match="too few for k = 500"):
        t2_construct(xs(frame), vars_=("x", "z"), bs=("cr", "cr"), k=(5, 500))


@pytest.mark.parametrize(
    ("formula", "code", "message"),
    [
        ("y0 ~ te(x)", 2, "te() needs two or more columns"),
        ("y0 ~ te(x, z, k = 2)", 1, "too small"),
        ("y ~ te(x, z) + (x | g)", 1, "Use t2() instead of te()"),
    ],
)
def test_cli_errors_are_one_line(cli, formula, code, message):
    res = cli(["gamm", DATA, formula])
    assert res.code == code
    assert len(res.error_lines) == 1 and message in res.error_lines[0]
    assert "Traceback" not in res.err


def test_cli_json_of_te_and_t2(cli):
    te = cli(["gamm", DATA, "y0 ~ te(x, z)", "--json"]).json()
    assert te["model"] == "gam" and te["method"] == "REML"
    assert abs(te["mgcv_score"] - REF["te_reml"]["score"]) < OPT_DEV
    assert abs(te["reml_criterion"] - 2 * REF["te_reml"]["score"]) < OPT_DEV
    (row,) = te["smooths"]
    assert row["term"] == "te(x,z)" and row["k"] == [5, 5] and len(row["lambda"]) == 2
    t2 = cli(["gamm", DATA, "y ~ t2(x, z, k = c(5, 6)) + (1|g)", "--json"]).json()
    (row,) = t2["smooths"]
    assert row["basis"] == "t2" and row["penalties"] == ["rr", "nr", "rn"] and len(row["variance"]) == 3
    assert abs(row["edf"] - REF["t2_re"]["edf"]) < OPT_PAR * REF["t2_re"]["edf"]
    groups = [r["group"] for r in t2["random_effects"]]
    assert groups == ["g", "Xr", "Xr.0", "Xr.1", "Residual"]
    assert [r["term"] for r in t2["fixed_effects"]] == ["(Intercept)", "t2(x,z)Fx1", "t2(x,z)Fx2", "t2(x,z)Fx3"]


def test_cli_plot_of_a_surface_is_refused(cli, tmp_path):
    res = cli(["gamm", DATA, "y0 ~ t2(x, z)", "--plot", tmp_path / "a.png"])
    assert res.code == 2 and "surfaces are not drawn" in res.error_lines[0]


def test_cli_te_predictions_equal_mgcv(cli, tmp_path, grid):
    """`--predict` on the te path: population level, as mgcv's predict.gam(exclude = "s(g)")."""
    path = tmp_path / "grid.csv"
    grid.to_csv(path, index=False)
    d = cli(["gamm", DATA, "y ~ te(x, z) + (1|g)", "--predict", path, "--json"]).json()
    ref = REF["te_re"]
    fit_ = np.array([r["fit"] for r in d["predictions"]])
    se = np.array([r["se"] for r in d["predictions"]])
    se_ref = np.asarray(ref["predict_se"])
    assert np.max(np.abs(fit_ - ref["predict"]) / se_ref) < OPT_PAR
    assert rel(se, se_ref) < OPT_PAR
