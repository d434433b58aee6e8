"""The smooth-terms table (summary.gam's s.table), ranef and conditional predictions of gamm fits, against gamm4.

Reference: tests/reference/gamm_inference.json, made by tests/reference/make_gamm_inference.R (R 4.2.2, mgcv
1.8-41, gamm4 0.2-6, lme4 1.1-31) on sleepstudy, on gamSim(1) data with 15 groups
(tests/reference/gamm_inference_sim.csv) and on make_gamm_weights.R's data with prior weights, an offset and a
parametric term (tests/reference/gamm_weighted.csv). Each case records gamm4's theta: at that theta everything is a
deterministic evaluation (EXACT; p-values to mgcv's Davies accuracy R_DAVIES); at mmcli's optimum the
optimizer tiers, and the smooth-terms table S_TABLE, as gamm4 stops early on flat surfaces.

In ``sim_four_g`` R's eigen() put the two null-space directions of both ``cs`` penalties in the order that
mmcli's fixed ``cs`` choice does not take (docs/methods.md), so that case is built with R's order
(``cs_line_first = False``) to compare like with like.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.stats
from conftest import EXACT, OPT_DEV, OPT_PAR, R_DAVIES, R_SP_FLOOR, ROOT, S_TABLE, run_in_process

import mmcli.smooths
from mmcli.data import load
from mmcli.design import build_design
from mmcli.formula import parse_formula
from mmcli.gamm import GammFit, fit_gamm
from mmcli.report import ranef_rows
from mmcli.smooth_test import prob_positive, upper_root, wood_test

REF = json.loads((ROOT / "tests" / "reference" / "gamm_inference.json").read_text())["cases"]
R_CS_ORDER = {"sim_four_g": ("x1", "x3")}  # cs smooths built with R's null-space order in that case


def theta_in_mmcli_order(case: dict[str, Any], g: GammFit) -> np.ndarray:
    """gamm4's theta (named 'Subject.(Intercept)', 'Xr.0.s(x2)', ...) in the order of mmcli's terms."""

    def group(name: str) -> str:
        return name.split(".s(")[0] if ".s(" in name else name.split(".")[0]

    return np.array(
        [v for t in g.lmm.terms for v, name in zip(case["theta"], case["theta_names"]) if group(name) == t.group]
    )


def build(name: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    case = REF[name]
    if name in R_CS_ORDER:
        cs_vars = R_CS_ORDER[name]
        original = mmcli.smooths.smooth_construct

        def construct(x: np.ndarray, *, var: str, **kw: Any) -> Any:
            return original(x, var=var, **kw, **({"cs_line_first": False} if var in cs_vars else {}))

        monkeypatch.setattr(mmcli.smooths, "smooth_construct", construct)
    spec = parse_formula(case["mmcli"], allow_smooths=True)
    numeric = [spec.response] + [s.var for s in spec.smooths] + [o.var for o in spec.offsets]
    weights = case.get("weights")
    numeric += [weights] if weights else []
    cats = [f for t in spec.random for f in t.factors]
    other = [c for c in spec.variables() if c not in numeric and c not in cats]
    frame = load(str(ROOT / case["data"]), numeric=numeric, categorical=cats, other=other)
    return build_design(spec, frame.frame, set(), weights=weights)


@functools.cache
def fits(name: str) -> tuple[GammFit, GammFit]:
    """(gamm4's theta, mmcli's optimum) for one case."""
    with pytest.MonkeyPatch.context() as mp:
        design = build(name, mp)
    opt = fit_gamm(design)
    return fit_gamm(design, theta=theta_in_mmcli_order(REF[name], opt)), opt


def zero_variance(g: GammFit, j: int) -> bool:
    return g.smooths[j].term >= 0 and g.lam(j) is None


@pytest.mark.parametrize("name", list(REF))
def test_s_table_at_gamm4_theta(name):
    g = fits(name)[0]
    assert abs(g.lmm.objective - REF[name]["REMLcrit"]) <= EXACT * REF[name]["REMLcrit"]
    assert len(g.tests) == len(REF[name]["s_table"])
    floor = any(zero_variance(g, j) for j in range(len(g.smooths)))  # moves every row a little
    for j, (t, r) in enumerate(zip(g.tests, REF[name]["s_table"])):
        tol = R_SP_FLOOR if floor else EXACT
        assert t.term == r["term"]
        assert t.edf == pytest.approx(r["edf"], rel=tol)
        assert t.ref_df == pytest.approx(r["Ref.df"], rel=tol)
        assert pytest.approx(r["F"], rel=tol) == t.F
        assert abs(t.p_value - r["p_value"]) <= R_DAVIES
        assert t.test == ("Wood 2013b" if g.smooths[j].smooth.null_space_dim == 0 else "Wood 2013a")


@pytest.mark.parametrize("name", list(REF))
def test_s_table_at_the_optimum(name):
    g = fits(name)[1]
    assert g.lmm.objective <= REF[name]["REMLcrit"] + OPT_DEV
    for t, r in zip(g.tests, REF[name]["s_table"]):
        assert pytest.approx(r["F"], rel=S_TABLE) == t.F
        assert abs(t.p_value - r["p_value"]) <= R_DAVIES + S_TABLE * r["p_value"]


@pytest.mark.parametrize("name", [n for n in REF if REF[n]["ranef"]])
def test_ranef_and_conditional_fitted_at_gamm4_theta(name):
    g = fits(name)[0]
    rows, want = ranef_rows(g.lmm), REF[name]["ranef"]
    assert [(r["group"], r["level"], r["term"]) for r in rows] == [(r["group"], r["level"], r["term"]) for r in want]
    modes, want_modes = np.array([r["mode"] for r in rows]), np.array([r["mode"] for r in want])
    assert np.max(np.abs(modes - want_modes)) <= EXACT * np.max(np.abs(want_modes))
    assert np.allclose([r["cond_sd"] for r in rows], [r["cond_sd"] for r in want], rtol=EXACT, atol=0)
    fitted = np.asarray(REF[name]["fitted_conditional"])
    assert np.max(np.abs(g.lmm.fitted - fitted)) <= EXACT * np.max(np.abs(fitted))


# --------------------------------------------------------------------------------------------------
# the command line, at mmcli's optimum (cases where gamm4 reached it: criterion within OPT_DEV)

SLOPE = REF["sleep_cr_slope"]
SLEEP = str(ROOT / "sample_data" / "sleepstudy.csv")


def test_cli_ranef_of_a_gamm_formula():
    d = run_in_process(["ranef", SLEEP, SLOPE["mmcli"], "--json"]).json()
    assert d["fit"]["method"] == "REML" and d["fit"]["model"] == "gamm"
    assert {r["group"] for r in d["ranef"]} == {"Subject"}  # the smooth's random part is not listed
    modes = np.array([r["mode"] for r in d["ranef"]])
    want = np.array([r["mode"] for r in SLOPE["ranef"]])
    assert np.max(np.abs(modes - want)) <= OPT_PAR * np.max(np.abs(want))
    assert np.allclose([r["cond_sd"] for r in d["ranef"]], [r["cond_sd"] for r in SLOPE["ranef"]], rtol=OPT_PAR)
    ml = run_in_process(["ranef", SLEEP, SLOPE["mmcli"], "--ml", "--json"]).json()
    assert ml["fit"]["method"] == "ML" and ml["fit"]["reml_criterion"] is None


def test_cli_conditional_predictions_for_new_rows(tmp_path: Path):
    new = SLOPE["newdata"]
    path = tmp_path / "new.csv"
    path.write_text("Days,Subject\n" + "".join(f"{a},{b}\n" for a, b in zip(new["Days"], new["Subject"])))
    res = run_in_process(["gamm", SLEEP, SLOPE["mmcli"], "--predict", path, "--re-form", "conditional", "--json"])
    d = res.json()
    assert d["re_form"] == "conditional"
    fit = np.array([r["fit"] for r in d["predictions"]])
    assert np.allclose(fit, SLOPE["predict"]["conditional"], rtol=OPT_PAR, atol=0)
    assert "1 of 4 rows of the --predict file has a level the fitted data do not have (Subject: 1)" in res.err
    pop = run_in_process(["gamm", SLEEP, SLOPE["mmcli"], "--predict", path, "--json"]).json()
    assert pop["re_form"] == "population" and all("se" in r for r in pop["predictions"])
    assert np.allclose([r["fit"] for r in pop["predictions"]], SLOPE["predict"]["population"], rtol=OPT_PAR)
    assert d["predictions"][3]["fit"] == pop["predictions"][3]["fit"]  # a new level: the population prediction


def test_cli_conditional_predictions_at_the_data_rows_are_lme4s_fitted_values():
    case = REF["sleep_cr"]
    d = run_in_process(["gamm", SLEEP, case["mmcli"], "--predict", SLEEP, "--re-form", "conditional", "--json"]).json()
    fit = np.array([r["fit"] for r in d["predictions"]])
    assert np.max(np.abs(fit - case["fitted_conditional"])) <= OPT_PAR * np.max(np.abs(case["fitted_conditional"]))


def test_cli_s_table_in_json_and_table():
    case = REF["sim_three"]
    data = str(ROOT / case["data"])
    d = run_in_process(["gamm", data, case["mmcli"], "--json"]).json()
    for s, r in zip(d["smooths"], case["s_table"]):
        assert s["term"] == r["term"] and s["test"] == "Wood 2013a"
        assert s["F"] == pytest.approx(r["F"], rel=S_TABLE)
        assert abs(s["p_value"] - r["p_value"]) <= R_DAVIES + S_TABLE * r["p_value"]
        assert s["ref_df"] == pytest.approx(r["Ref.df"], rel=S_TABLE)
    out = run_in_process(["gamm", data, case["mmcli"]]).out
    assert "Ref.df" in out and "p-value" in out and "< 2e-16" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ranef", SLEEP, "Reaction ~ s(Days, bs='cr')"], "no random-effects term"),
        (["gamm", SLEEP, "Reaction ~ s(Days, bs='cr')", "--predict", SLEEP, "--re-form", "conditional"], "leave out"),
        (["gamm", SLEEP, SLOPE["mmcli"], "--re-form", "conditional"], "--predict FILE.csv"),
    ],
)
def test_errors(args, message):
    code, _, err = run_in_process(args)
    assert code == 2 and err.count("Error:") == 1 and message in err and "Traceback" not in err


# --------------------------------------------------------------------------------------------------
# the tests' pieces


@pytest.mark.parametrize(("a", "b", "F"), [(3, 40, 2.5), (1, 170, 0.01), (1, 5, 30.0), (9, 280, 0.2), (2, 2, 1.0)])
def test_prob_positive_gives_the_f_distribution(a, b, F):
    """P(chi2_a / a - F chi2_b / b > 0) is the F distribution's upper tail."""
    assert prob_positive([1 / a] * a + [-F / b], [1] * a + [b]) == pytest.approx(scipy.stats.f.sf(F, a, b), rel=EXACT)


def test_wood_test_at_a_whole_rank_is_the_wald_f_test():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(50, 4))
    A = rng.normal(size=(4, 4))
    V = A @ A.T + np.eye(4)
    p = rng.normal(size=4)
    stat, pval, rank = wood_test(p, upper_root(X.T @ X), V, 4.0, 45.0)
    assert rank == 4.0
    assert stat == pytest.approx(float(p @ np.linalg.solve(V, p)), rel=EXACT)
    assert pval == pytest.approx(scipy.stats.f.sf(stat / 4, 4, 45.0), rel=EXACT)


def test_s_table_does_not_depend_on_the_order_of_the_rows():
    case = REF["sleep_cr_slope"]
    g = fits("sleep_cr_slope")[0]
    spec = parse_formula(case["mmcli"], allow_smooths=True)
    frame = load(SLEEP, numeric=["Reaction", "Days"], categorical=["Subject"]).frame
    shuffled = frame.sample(frac=1.0, random_state=3).reset_index(drop=True)
    h = fit_gamm(build_design(spec, shuffled, set()), theta=g.lmm.theta)
    for a, b in zip(g.tests, h.tests):
        assert (b.edf, b.ref_df) == pytest.approx((a.edf, a.ref_df), rel=EXACT)
        assert pytest.approx(a.F, rel=EXACT) == b.F
        assert b.p_value == pytest.approx(a.p_value, rel=EXACT)
