"""The smooth-terms table, ranef and conditional predictions of te() and t2() fits against mgcv 1.8-41 and gamm4
0.2-6 (tests/reference/tensor_tests.json, made by tests/reference/make_tensor_tests.R on tensor_surface.csv and
tensor_weak.csv; R and package versions inside the JSON).

te is fitted as mgcv's gam (a random intercept as s(g, bs = "re"), whose row summary.gam lists too); t2 as gamm4's
mixed model. At R's own parameters the EDF are deterministic (EXACT); mgcv's gam estimates its scale jointly with
the smoothing parameters, so F at mgcv's sp carries its optimizer's tolerance (OPT_PAR); at mmcli's optimum the
table is within S_TABLE (p-values also R_DAVIES absolute)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import EXACT, OPT_PAR, R_DAVIES, R_SP_FLOOR, REFERENCE_DIR, S_TABLE, load_reference, run_in_process

from mmcli.design import build_design
from mmcli.formula import parse_formula
from mmcli.gam_design import build_gam_design
from mmcli.gam_reml import fit_gam
from mmcli.gamm import fit_gamm
from mmcli.report import ranef_rows
from mmcli.smooth_test import gam_smooth_tests

REF = load_reference("tensor_tests")
CSV = {
    "te": "tensor_surface",
    "te_re": "tensor_surface",
    "te_weak": "tensor_weak",
    "t2": "tensor_surface",
    "t2_re": "tensor_surface",
    "t2_weak": "tensor_weak",
}


def frame(key: str) -> pd.DataFrame:
    d = pd.read_csv(REFERENCE_DIR / f"{CSV[key]}.csv")
    d["g"] = pd.Categorical(d["g"])
    return d


def close(a: float, b: float, tol: float) -> bool:
    return abs(a - b) <= tol * abs(b)


def gam_tests(key: str, at_r: bool) -> list[Any]:
    ref = REF[key]
    design = build_gam_design(parse_formula(ref["mmcli"], allow_smooths=True), frame(key), set())
    fit = fit_gam(design.model(), rho=np.log(ref["sp"]) if at_r else None)
    return gam_smooth_tests(fit, design)


@pytest.mark.parametrize("key", ["te", "te_re", "te_weak"])
@pytest.mark.parametrize("at_r", [True, False])
def test_te_smooth_table_equals_summary_gam(key, at_r):
    rows = gam_tests(key, at_r)
    want = REF[key]["s_table"]
    assert [t.term for t in rows] == [r["term"] for r in want]  # s(g) listed, as summary.gam lists it
    tol = OPT_PAR if at_r else S_TABLE
    for t, r in zip(rows, want):
        assert close(t.edf, r["edf"], EXACT if at_r else tol)
        assert close(t.ref_df, r["Ref.df"], EXACT if at_r else tol)
        assert close(t.F, r["F"], tol)
        assert abs(t.p_value - r["p_value"]) <= max(R_DAVIES, tol * r["p_value"])


def gamm_fit(key: str, at_r: bool) -> Any:
    ref = REF[key]
    design = build_design(parse_formula(ref["mmcli"], allow_smooths=True), frame(key), set())
    by = {}
    for name, th in zip(ref["theta_names"], ref["theta"]):
        by[name.split(".t2(")[0] if ".t2(" in name else name.split(".(")[0]] = th
    theta = np.array([by[t.group] for t in design.terms]) if at_r else None
    return fit_gamm(design, theta=theta)


@pytest.mark.parametrize("key", ["t2", "t2_re", "t2_weak"])
def test_t2_smooth_table_is_one_row_with_gamm4s_edf(key):
    """One row for the whole t2 (its parts share it), with gamm4's EDF and Ref.df (t2_weak: two of its three
    variances are zero, where gamm4 keeps the smoothing parameters at 1e10)."""
    g = gamm_fit(key, at_r=True)
    r = REF[key]["s_table"][0]
    assert len({id(t) for t in g.tests}) == 1
    t = g.tests[0]
    tol = R_SP_FLOOR if key == "t2_weak" else EXACT
    assert t.term == r["term"] == "t2(x,z)"
    assert close(t.edf, r["edf"], tol)
    assert close(t.ref_df, r["Ref.df"], tol)
    assert t.test == "Wood 2013a"


@pytest.mark.parametrize("key", ["t2", "t2_re"])
@pytest.mark.parametrize("at_r", [True, False])
def test_t2_smooth_test_in_the_prediction_basis(key, at_r):
    """F and p of a t2 as mgcv's testStat defines them on gamm4's object: its coefficients, Vp and R'R all in
    the prediction basis (s_table_consistent; gamm4's own summary takes R from its fit basis, see the script)."""
    t = gamm_fit(key, at_r).tests[0]
    want = REF[key]["s_table_consistent"]
    assert close(t.F, want["F"], EXACT if at_r else S_TABLE)
    assert abs(t.p_value - want["p_value"]) <= R_DAVIES


def test_t2_ranef_at_gamm4_theta():
    g = gamm_fit("t2_re", at_r=True)
    rows = ranef_rows(g.lmm)
    want = REF["t2_re"]["ranef"]
    assert [r["level"] for r in rows] == want["level"]
    assert np.max(np.abs(np.array([r["mode"] for r in rows]) - want["mode"])) < EXACT * np.max(np.abs(want["mode"]))
    assert np.allclose([r["cond_sd"] for r in rows], want["sd"], rtol=EXACT, atol=0)


def test_cli_ranef_of_te_and_t2():
    for key in ("te_re", "t2_re"):
        data = str(REFERENCE_DIR / f"{CSV[key]}.csv")
        d = run_in_process(["ranef", data, REF[key]["mmcli"], "--json"]).json()
        want = REF[key]["ranef"]
        assert [r["level"] for r in d["ranef"]] == want["level"]
        modes = np.array([r["mode"] for r in d["ranef"]])
        assert np.max(np.abs(modes - want["mode"])) < OPT_PAR * np.max(np.abs(want["mode"]))
        assert np.allclose([r["cond_sd"] for r in d["ranef"]], want["sd"], rtol=OPT_PAR, atol=0)


@pytest.mark.parametrize("key", ["te_re", "t2_re"])
def test_cli_conditional_predictions(tmp_path: Path, key):
    """te: predict.gam with the group (fit and se); t2: gamm4's population prediction plus ranef(fit$mer)."""
    grid = REF["grid"]
    path = tmp_path / "new.csv"
    pd.DataFrame({"x": grid["x"], "z": grid["z"], "g": grid["g"]}).to_csv(path, index=False)
    data = str(REFERENCE_DIR / "tensor_surface.csv")
    args = ["gamm", data, REF[key]["mmcli"], "--predict", str(path), "--re-form", "conditional", "--json"]
    d = run_in_process(args).json()
    assert d["re_form"] == "conditional"
    fit = np.array([r["fit"] for r in d["predictions"]])
    want = REF[key]["conditional"]
    if key == "te_re":
        se = np.array([r["se"] for r in d["predictions"]])
        assert np.max(np.abs(fit - want["fit"]) / np.asarray(want["se"])) < OPT_PAR
        assert np.allclose(se, want["se"], rtol=OPT_PAR, atol=0)
    else:
        assert "se" not in d["predictions"][0]
        assert np.max(np.abs(fit - want["fit"])) < OPT_PAR * np.max(np.abs(want["fit"]))


def test_cli_fit_refuses_te_and_t2_naming_all_smooths():
    res = run_in_process(["fit", str(REFERENCE_DIR / "tensor_surface.csv"), "y ~ te(x, z) + (1|g)"])
    assert res.code != 0
    assert "Smooth terms s(), te(), t2() belong to 'mmcli gamm'" in res.err
