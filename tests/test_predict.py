"""`mmcli predict`: lme4's predict.merMod for new rows, population level (re.form = NA) and conditional
(re.form = NULL, allow.new.levels = TRUE), against tests/reference/predict_*.json (make_predict.R).

At lme4's own theta everything is a deterministic evaluation (EXACT); through the command line the optimizer's
output enters, so the OPT tiers apply: population fits as fixed effects (OPT_FIXEF, relative to the largest),
their standard errors OPT_SE, conditional fits through the conditional modes (OPT_PAR).
"""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from conftest import (
    EXACT,
    OPT_FIXEF,
    OPT_PAR,
    OPT_SE,
    REFERENCE_DIR,
    data_path,
    load_reference,
    run_in_process,
    run_subprocess,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from test_properties import _write, check_run, csv_text

CASES = {
    "sleepstudy": (data_path("sleepstudy.csv"), "predict_sleepstudy.csv", ()),
    "sleepstudy_ml": (data_path("sleepstudy.csv"), "predict_sleepstudy.csv", ()),
    "sleepstudy_uncorr": (data_path("sleepstudy.csv"), "predict_sleepstudy.csv", ()),
    "penicillin": (data_path("penicillin.csv"), "predict_penicillin.csv", ()),
    "pastes": (data_path("pastes.csv"), "predict_pastes.csv", ()),
    "cake": (data_path("cake.csv"), "predict_cake.csv", ("--factor", "temperature")),
    "offset": (REFERENCE_DIR / "sleepstudy_weighted.csv", "predict_offset.csv", ("--weights", "w")),
}
NEW_LEVEL_ROWS = {
    "sleepstudy": 2,
    "sleepstudy_ml": 2,
    "sleepstudy_uncorr": 2,
    "penicillin": 2,
    "pastes": 2,
    "cake": 2,
    "offset": 1,
}


def _args(case: str, re_form: str) -> list[object]:
    ref = load_reference(f"predict_{case}")
    csv_name, newdata, extra = CASES[case]
    method = "--reml" if ref["REML"] else "--ml"
    return ["predict", csv_name, ref["formula"], method, "--newdata", REFERENCE_DIR / newdata, *extra]


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b) / np.abs(b)))


@pytest.mark.parametrize("case", list(CASES))
def test_population_and_conditional_match_lme4(case):
    ref = load_reference(f"predict_{case}")
    pop = run_in_process([*_args(case, "population"), "--re-form", "population", "--json"]).json()
    fit = np.array([r["fit"] for r in pop["predictions"]])
    se = np.array([r["se"] for r in pop["predictions"]])
    want = np.array(ref["population"])
    assert np.max(np.abs(fit - want)) <= OPT_FIXEF * np.max(np.abs(want))
    assert len(se) == len(want)
    assert pop["re_form"] == "population" and pop["new_level_rows"] == 0
    cond = run_in_process([*_args(case, "conditional"), "--json"]).json()
    assert cond["re_form"] == "conditional"
    assert _rel(np.array([r["fit"] for r in cond["predictions"]]), np.array(ref["conditional"])) <= OPT_PAR
    assert all("se" not in r for r in cond["predictions"])
    assert cond["new_level_rows"] == NEW_LEVEL_ROWS[case]
    assert cond["fit"]["method"] == ("REML" if ref["REML"] else "ML")


# lme4's theta-hat is off the optimum in two cases (mmcli's criterion is lower by 3e-8 and 9e-9), and the
# standard errors move by more than OPT_SE with it, as in tests/test_lmm.py; at lme4's theta they agree to EXACT
# (test_exact_at_lme4_theta).
SE_AT_TOLERANCE_EDGE = {
    "sleepstudy_ml": "se 6.632276 vs lme4's 6.632123 (2.4e-5) at row 1: lme4's own theta-hat is off the optimum",
    "penicillin": "se 0.8085732 vs lme4's 0.8085954 (2.7e-5): lme4's own theta-hat is off the optimum",
}


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(c, marks=pytest.mark.xfail(reason="TOLERANCE: " + SE_AT_TOLERANCE_EDGE[c], strict=True))
        if c in SE_AT_TOLERANCE_EDGE
        else c
        for c in CASES
    ],
)
def test_population_standard_errors_match(case):
    ref = load_reference(f"predict_{case}")
    pop = run_in_process([*_args(case, "population"), "--re-form", "population", "--json"]).json()
    se = np.array([r["se"] for r in pop["predictions"]])
    assert _rel(se, np.array(ref["population_se"])) <= OPT_SE


@pytest.mark.parametrize("case", list(CASES))
def test_exact_at_lme4_theta(case):
    """At lme4's theta, beta, vcov and the conditional modes are deterministic: R's predictions to EXACT."""
    import pandas as pd

    from mmcli.commands import ModelOptions, _load_model_data
    from mmcli.design import build_design
    from mmcli.lmm import LmmModel
    from mmcli.predict import needed_columns, new_rows, predict_conditional, predict_population, random_parts

    ref = load_reference(f"predict_{case}")
    csv_name, newdata, extra = CASES[case]
    factors = tuple(v for k, v in zip(extra[::2], extra[1::2]) if k == "--factor")
    opts = ModelOptions(formula=ref["formula"], factor=factors, weights=ref.get("weights"))
    spec = opts.spec(smooths=False)
    table = _load_model_data(str(csv_name), spec, opts)
    design = build_design(spec, table.frame, set(factors), weights=opts.weights)
    model = LmmModel(
        design.X, design.y, design.terms, xnames=design.xnames, weights=design.weights, offset=design.offset
    )
    fit = model.fit_at(np.atleast_1d(np.array(ref["theta"])), reml=ref["REML"])
    assert abs(fit.objective - ref["objective"]) <= EXACT * abs(ref["objective"])
    parts = random_parts(spec, design, table.frame, set(factors))
    frame = pd.read_csv(REFERENCE_DIR / newdata, dtype=str)
    frame = frame[needed_columns(spec, random=True)]
    for c in frame.columns:
        if c in ("Days", "off"):
            frame[c] = frame[c].astype(float)
    rows = new_rows(design, parts, fit, frame, random=True)
    pop, se = predict_population(fit, rows)
    cond, new = predict_conditional(fit, rows)
    assert _rel(pop, np.array(ref["population"])) <= EXACT
    assert _rel(se, np.array(ref["population_se"])) <= EXACT
    assert _rel(cond, np.array(ref["conditional"])) <= EXACT
    assert int(new.sum()) == NEW_LEVEL_ROWS[case]
    # a row whose every level is new gets the population prediction, in lme4's numbers and in ours
    all_new = np.all([lev < 0 for lev in rows.level], axis=0)
    assert all_new.any()
    assert _rel(np.array(ref["conditional"])[all_new], np.array(ref["population"])[all_new]) <= EXACT
    np.testing.assert_array_equal(cond[all_new], pop[all_new])


def test_new_levels_get_the_population_prediction_per_term():
    """pastes (1 | batch/cask): a known batch with a new cask keeps the batch's effect (R's row 6), a row with
    both new is the population mean (row 5): checked against lme4's numbers themselves."""
    ref = load_reference("predict_pastes")
    assert ref["conditional"][4] == pytest.approx(ref["population"][4], rel=EXACT)
    r = run_in_process([*_args("pastes", "conditional"), "--json"])
    fits = [p["fit"] for p in r.json()["predictions"]]
    assert fits[4] == pytest.approx(ref["population"][4], rel=OPT_FIXEF)
    assert fits[5] != pytest.approx(fits[4], rel=1e-3)
    assert "2 of 6 rows of the --newdata file have a level the fitted data do not have" in r.err
    assert "cask:batch: 2, batch: 1" in r.err


def test_csv_columns_are_the_used_columns_then_fit_and_se():
    r = run_in_process([*_args("cake", "conditional"), "--format", "csv"])
    assert r.code == 0, r.err
    rows = list(csv.reader(io.StringIO(r.out)))
    assert rows[0] == ["recipe", "temperature", "replicate", "fit"]
    assert len(rows) == 7
    r = run_in_process([*_args("sleepstudy", "population"), "--re-form", "population", "--format", "csv"])
    assert list(csv.reader(io.StringIO(r.out)))[0] == ["Days", "fit", "se"]


def test_table_says_which_prediction():
    r = run_in_process(_args("sleepstudy", "conditional"))
    assert r.code == 0, r.err
    assert "Predictions, conditional" in r.out and "Subject" in r.out
    r = run_in_process([*_args("sleepstudy", "population"), "--re-form", "population"])
    assert "Predictions, population level" in r.out and "se" in r.out


def test_missing_values_in_newdata_are_dropped_and_counted(tmp_path):
    new = tmp_path / "new.csv"
    new.write_text("Days,Subject\n1,308\nNA,309\n2,\n4.5,\n")
    base = ["predict", data_path("sleepstudy.csv"), "Reaction ~ Days + (Days | Subject)", "--newdata", new]
    r = run_in_process([*base, "--json"])
    d = r.json()
    assert len(d["predictions"]) == 1 and d["dropped_rows"] == 3
    assert "In the --newdata file: dropped 3 of 4 rows with a missing value in a used column." in r.err
    # population predictions need no grouping column: only the row without Days is dropped
    r = run_in_process([*base, "--re-form", "population", "--json"])
    assert [p["Days"] for p in r.json()["predictions"]] == [1.0, 2.0, 4.5]
    assert "dropped 1 of 4 rows" in r.err


def test_shuffled_newdata_gives_the_same_predictions_shuffled(tmp_path):
    lines = (REFERENCE_DIR / "predict_penicillin.csv").read_text().splitlines()
    order = [3, 0, 5, 1, 4, 2]
    new = tmp_path / "shuffled.csv"
    new.write_text("\n".join([lines[0]] + [lines[1 + i] for i in order]) + "\n")
    ref = load_reference("predict_penicillin")
    args = ["predict", data_path("penicillin.csv"), ref["formula"], "--reml", "--json"]
    a = run_in_process([*args, "--newdata", REFERENCE_DIR / "predict_penicillin.csv"]).json()["predictions"]
    b = run_in_process([*args, "--newdata", new]).json()["predictions"]
    assert [b[k]["fit"] for k in range(6)] == [a[i]["fit"] for i in order]


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("Subject\n308\n", ["In the --newdata file", "Column 'Days' not found"]),
        ("Days,Subject\nabc,308\n", ["In the --newdata file", "Days"]),
    ],
)
def test_bad_newdata_is_one_error_line(tmp_path, content, words):
    new = tmp_path / "new.csv"
    new.write_text(content)
    r = run_in_process(["predict", data_path("sleepstudy.csv"), "Reaction ~ Days + (1 | Subject)", "--newdata", new])
    assert r.code == 1, r.err
    assert len(r.error_lines) == 1 and r.err.strip() == r.error_lines[0]
    for w in words:
        assert w in r.error_lines[0]


def test_unseen_fixed_effect_level_is_an_error(tmp_path):
    new = tmp_path / "new.csv"
    new.write_text("recipe,temperature,replicate\nD,175,1\n")
    r = run_in_process([*_args("cake", "conditional")[:-4], "--newdata", new, "--factor", "temperature"])
    assert r.code == 1
    assert r.error_lines and "level 'D'" in r.error_lines[0] and "--newdata" in r.error_lines[0]
    new.write_text("recipe,temperature,replicate\nA,180,1\n")
    r = run_in_process([*_args("cake", "conditional")[:-4], "--newdata", new, "--factor", "temperature"])
    assert r.code == 1 and "level '180'" in r.error_lines[0]


def test_usage_errors():
    base = ["predict", data_path("sleepstudy.csv"), "Reaction ~ Days + (1 | Subject)"]
    r = run_in_process(base)
    assert r.code == 2 and "--newdata" in r.error_lines[0]
    r = run_in_process([*base, "--newdata", REFERENCE_DIR / "predict_sleepstudy.csv", "--re-form", "NA"])
    assert r.code == 2 and r.error_lines
    r = run_in_process(["predict", "-", "Reaction ~ Days + (1 | Subject)", "--newdata", "-"], stdin=b"a\n1\n")
    assert r.code == 2 and "standard input" in r.error_lines[0]
    r = run_in_process(["predict", data_path("sleepstudy.csv"), "Reaction ~ Days", "--newdata", "x.csv"])
    assert r.code == 2 and "random-effects" in r.error_lines[0]


def test_data_from_standard_input():
    ref = load_reference("predict_sleepstudy")
    stdin = data_path("sleepstudy.csv").read_bytes()
    args = ["predict", "-", ref["formula"], "--reml", "--newdata", REFERENCE_DIR / "predict_sleepstudy.csv", "--json"]
    fits = [p["fit"] for p in run_in_process(args, stdin=stdin).json()["predictions"]]
    assert _rel(np.array(fits), np.array(ref["conditional"])) <= OPT_PAR


def test_help_shows_an_example():
    r = run_in_process(["predict", "--help"])
    assert r.code == 0 and "Examples:" in r.out and "mmcli predict sleepstudy.csv" in r.out
    for option in ("--newdata", "--re-form", "--reml", "--format", "--factor"):
        assert option in r.out


def test_real_entry_point():
    r = run_subprocess([*_args("pastes", "conditional"), "--format", "csv"])
    assert r.code == 0, r.err
    assert r.out.splitlines()[0] == "batch,cask,fit"


# --------------------------------------------------------------------------------------------------
# Any new data (and any data for compare): a result or one Error: line, never a traceback
# --------------------------------------------------------------------------------------------------

GOOD = "y,x,z,g\n" + "".join(f"{(i * 37) % 11 + 0.3 * (i % 5)},{i % 7},{(i * 3) % 5},G{i % 6}\n" for i in range(48))


@settings(max_examples=30)
@given(
    text=csv_text(),
    formula=st.sampled_from(["y ~ x + (1 | g)", "y ~ x + (x | g)", "y ~ factor(z) + (1 | g)", "y ~ 1 + (1 | g)"]),
    re_form=st.sampled_from(["conditional", "population"]),
)
def test_any_newdata(tmp_path_factory, text, formula, re_form):
    tmp = tmp_path_factory.mktemp("predict")
    data = _write(tmp, GOOD)
    new = _write(tmp, text, "new.csv")
    check_run(["predict", data, formula, "--newdata", new, "--re-form", re_form, "--json"])


@settings(max_examples=20)
@given(text=csv_text())
def test_compare_any_csv(tmp_path_factory, text):
    path = _write(tmp_path_factory.mktemp("compare"), text)
    check_run(["compare", path, "y ~ 1 + (1 | g)", "y ~ x + (1 | g)", "y ~ x + z + (x | g)", "--json"])
