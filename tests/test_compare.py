"""`mmcli compare`: lme4's anova(m1, m2, m3) against tests/reference/compare_*.json (make_predict.R).

The criteria of each ML fit (AIC, BIC, logLik, deviance) and the likelihood-ratio statistic are optimized
criteria: OPT_DEV. The p-value must lie where the chi-square tail puts it for a statistic within OPT_DEV of
lme4's. What R prints is checked to printed precision where R's print rounds (Chisq, Pr(>Chisq)); the other
columns are 'zapped' by R's print.anova (zapsmall over the whole table), whose last digit is not always a
rounding of the value (BIC 1814.8504704 prints as 1814.8), so those are checked at full precision only.
"""

from __future__ import annotations

import csv
import io
import json

import pytest
from conftest import OPT_DEV, close_to_printed, data_path, load_reference, run_in_process
from scipy.stats import chi2

CASES = {"sleepstudy": ("sleepstudy.csv", ()), "cake": ("cake.csv", ("--factor", "temperature"))}


def _run(case: str, *extra: str):
    ref = load_reference(f"compare_{case}")
    csv_name, options = CASES[case]
    method = "--reml" if ref["REML"] else "--ml"
    return run_in_process(["compare", data_path(csv_name), *ref["formulas"], method, *options, *extra])


def _printed_rows(ref):
    """R's printed table: model -> the printed fields after the name (the p-value's '< 2.2e-16' kept whole)."""
    lines = ref["printed"]
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("npar"))
    out = {}
    for line in lines[start + 1 :]:
        fields = line.replace("< 2.2e-16", "<2.2e-16").split()
        out[fields[0]] = fields[1:]
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_anova_table_matches_lme4(case):
    ref = load_reference(f"compare_{case}")
    r = _run(case, "--json")
    d = r.json()
    rows = d["anova"]
    assert [row["model"] for row in rows] == [row["model"] for row in ref["rows"]]
    assert [m["model"] for m in d["models"]] == ["m1", "m2", "m3"]
    assert d["method"] == "ML" and d["refitted"] == ref["REML"]
    for got, want in zip(rows, ref["rows"]):
        assert got["npar"] == want["npar"]
        assert got["Df"] == want["Df"]
        for key in ("AIC", "BIC", "deviance", "Chisq"):
            if want[key] is None:
                assert got[key] is None
            else:
                assert abs(got[key] - want[key]) <= OPT_DEV, key
        assert abs(got["logLik"] - want["logLik"]) <= OPT_DEV / 2
        if want["p"] is None:
            assert got["p_value"] is None
        else:
            lo = chi2.sf(want["Chisq"] + OPT_DEV, want["Df"])
            hi = chi2.sf(max(want["Chisq"] - OPT_DEV, 0.0), want["Df"])
            assert lo <= got["p_value"] <= hi


@pytest.mark.parametrize("case", list(CASES))
def test_printed_statistics(case):
    """Chisq and Pr(>Chisq) as R prints them; npar and Df exactly."""
    ref = load_reference(f"compare_{case}")
    printed = _printed_rows(ref)
    for row in _run(case, "--json").json()["anova"]:
        fields = printed[row["model"]]
        assert int(fields[0]) == row["npar"]
        if row["Df"] is None:
            assert len(fields) == 5
            continue
        chisq, df, p = fields[5:8]
        assert close_to_printed(row["Chisq"], chisq)
        assert int(df) == row["Df"]
        if p == "<2.2e-16":
            assert row["p_value"] < 2.2e-16
        else:
            assert close_to_printed(row["p_value"], p)


def test_table_is_lme4s_print():
    ref = load_reference("compare_sleepstudy")
    r = _run("sleepstudy")
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[1:5] == ref["heading"][1:5]  # Models: and m1: ... m3: formulas, in lme4's order
    assert "Pr(>Chisq)" in r.out and "< 2.2e-16" in r.out and "7.072e-10" in r.out
    assert "Note: refitting model(s) with ML (instead of REML)" in r.err
    assert ref["messages"] == ["refitting model(s) with ML (instead of REML)"]


def test_ml_fits_are_not_refitted_and_the_order_is_by_npar():
    r = _run("cake")
    assert r.code == 0, r.err
    assert "refitting" not in r.err
    d = _run("cake", "--json").json()
    assert [row["model"] for row in d["anova"]] == ["m3", "m2", "m1"]


def test_csv_is_the_table():
    r = _run("sleepstudy", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(r.out)))
    assert list(rows[0]) == ["model", "formula", "npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "p_value"]
    assert [row["model"] for row in rows] == ["m1", "m2", "m3"]
    assert rows[0]["Chisq"] == "NA" and rows[2]["Df"] == "2"


def test_equal_npar_has_no_test():
    sleep = data_path("sleepstudy.csv")
    r = run_in_process(["compare", sleep, "Reaction ~ Days + (1 | Subject)", "Reaction ~ Days + (1 | Days)", "--json"])
    rows = r.json()["anova"]
    assert rows[1]["Df"] == 0 and rows[1]["p_value"] is None
    assert "Df 0" in r.err
    assert "m1 is not nested in m2: m2 lacks (1 | Subject)" in r.err


def test_nested_models_get_no_nesting_note():
    r = _run("sleepstudy")
    assert "is not nested" not in r.err
    assert "neither lme4 nor mmcli checks that" in r.err
    sleep = data_path("sleepstudy.csv")
    r = run_in_process(["compare", sleep, "Reaction ~ 1 + (Days | Subject)", "Reaction ~ Days + (1 | Subject)"])
    assert r.code == 0
    assert "m2 is not nested in m1: m1 lacks Days" in r.err


def test_models_fitted_to_different_rows_are_an_error(tmp_path):
    lines = data_path("sleepstudy.csv").read_text().splitlines()
    lines = [lines[0] + ',"z"'] + [line + ",1" for line in lines[1:]]
    lines[3] = lines[3].rsplit(",", 1)[0] + ",NA"  # z missing in one row: only the model using z drops it
    f = tmp_path / "s.csv"
    f.write_text("\n".join(lines) + "\n")
    r = run_in_process(["compare", f, "Reaction ~ Days + (1 | Subject)", "Reaction ~ Days + z + (1 | Subject)"])
    assert r.code == 1
    assert len(r.error_lines) == 1 and "same size of dataset" in r.error_lines[0]
    assert "m1: 180, m2: 179" in r.error_lines[0]


def test_same_count_but_different_rows_is_an_error(tmp_path):
    lines = data_path("sleepstudy.csv").read_text().splitlines()
    lines[0] += ',"a","b"'
    lines = [lines[0]] + [line + ",1,1" for line in lines[1:]]
    lines[2] = lines[2].rsplit(",", 2)[0] + ",NA,1"
    lines[3] = lines[3].rsplit(",", 2)[0] + ",1,NA"
    f = tmp_path / "s.csv"
    f.write_text("\n".join(lines) + "\n")
    r = run_in_process(["compare", f, "Reaction ~ a + (1 | Subject)", "Reaction ~ b + (1 | Subject)"])
    assert r.code == 1 and "not all fitted to the same rows" in r.error_lines[0]


@pytest.mark.parametrize(
    ("formulas", "code", "words"),
    [
        (["Reaction ~ Days + (1 | Subject)"], 2, "at least two"),
        ([], 2, "at least two"),
        (["Reaction ~ Days + (1 | Subject)", "Days ~ 1 + (1 | Subject)"], 1, "different responses"),
        (["Reaction ~ Days + (1 | Subject)", "Reaction ~ Days"], 2, "random-effects"),
        (["Reaction ~ Days + (1 | Subject)", "Reaction ~ Dyas + (1 | Subject)"], 1, "Dyas"),
    ],
)
def test_errors(formulas, code, words):
    r = run_in_process(["compare", data_path("sleepstudy.csv"), *formulas])
    assert r.code == code, r.err
    assert len(r.error_lines) == 1 and r.err.strip() == r.error_lines[0]
    assert words in r.error_lines[0]


def test_data_from_standard_input():
    ref = load_reference("compare_sleepstudy")
    stdin = data_path("sleepstudy.csv").read_bytes()
    r = run_in_process(["compare", "-", *ref["formulas"], "--json"], stdin=stdin)
    got = json.loads(r.out)["anova"]
    assert [abs(a["deviance"] - b["deviance"]) <= OPT_DEV for a, b in zip(got, ref["rows"])] == [True] * 3


def test_help_shows_an_example():
    r = run_in_process(["compare", "--help"])
    assert r.code == 0 and "Examples:" in r.out and "mmcli compare sleepstudy.csv" in r.out
