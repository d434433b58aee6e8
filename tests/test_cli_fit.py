"""`mmcli fit` and `mmcli ranef` end to end: the table, JSON and CSV of docs/cli.md, and the errors.

Most runs call ``mmcli.cli.main`` in this process (conftest.run_in_process); a few go through
``python -m mmcli`` in a subprocess, for the real entry point and real standard streams. Numbers are checked
against lme4 1.1-31 (tests/reference, provenance in its README.md) and the printed values of docs/cli.md.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    EXACT,
    LMM_CASES,
    OPT_DEV,
    OPT_FIXEF,
    OPT_PAR,
    OPT_SE,
    CliResult,
    close_to_printed,
    data_path,
    load_reference,
    run_in_process,
    run_subprocess,
)
from hypothesis import given, settings
from hypothesis import strategies as st

SLEEP = data_path("sleepstudy.csv")
DEMO = [
    "fit",
    SLEEP,
    "--y",
    "Reaction",
    "--fixed",
    "Days",
    "--group",
    "Subject",
]  # `make demo`, the help text


def without_timing(d: dict) -> dict:
    """A fit's JSON without the optimizer's wall time (the one field that differs between identical runs)."""
    d = json.loads(json.dumps(d))
    fit = d.get("fit", d)
    fit["optimizer"].pop("seconds", None)
    return d


def fit_json(*args) -> dict:
    return run_in_process(["fit", *args, "--json"]).json()


def rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def sleepstudy_lines() -> list[str]:
    return SLEEP.read_text(encoding="utf-8").splitlines()


def assert_one_error_line(r: CliResult, code: int, *fragments: str) -> None:
    """Exit status, one `Error:` line that says what is wrong, no traceback, nothing on standard output."""
    assert r.code == code, (r.code, r.err)
    assert len(r.error_lines) == 1, r.err
    assert r.err.strip() == r.error_lines[0], r.err
    assert "Traceback" not in r.err
    assert r.out == ""
    for f in fragments:
        assert f in r.error_lines[0], r.err


# --------------------------------------------------------------------------------------------------
# The demo, through the real entry point
# --------------------------------------------------------------------------------------------------


def test_demo_table_in_a_subprocess():
    """`make demo`: the table a new user sees first, with lme4's numbers as lme4 prints them."""
    r = run_subprocess(DEMO[:1] + ["sample_data/sleepstudy.csv"] + DEMO[2:])
    assert r.code == 0, r.err
    assert "Linear mixed model fit by maximum likelihood" in r.out
    assert "Formula: Reaction ~ Days + (1 | Subject)" in r.out
    for number in ("251.4051", "10.4673", "36.01", "30.90", "-897.0", "1794.1", "176"):
        assert number in r.out, number
    assert r.err == ""


def test_python_m_mmcli_help():
    r = run_subprocess(["--help"])
    assert r.code == 0
    assert "Usage:" in r.out
    for command in ("fit", "ranef"):
        assert command in r.out


def test_stdin_in_a_subprocess():
    r = run_subprocess(["fit", "-", *DEMO[2:], "--json"], stdin=SLEEP.read_bytes())
    assert r.code == 0, r.err
    d = json.loads(r.out)
    assert d["data"] == "<stdin>"
    want = fit_json(*DEMO[1:])
    assert abs(d["loglik"] - want["loglik"]) <= OPT_DEV
    assert d["nobs"] == 180


# --------------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------------


def test_table_numbers_are_the_json_numbers_printed():
    """One dict feeds the table and the JSON: the printed numbers are the JSON's, rounded."""
    table = run_in_process(DEMO)
    assert table.code == 0
    d = fit_json(*DEMO[1:])
    (intercept, days) = d["fixed_effects"]
    subject, residual = d["random_effects"]
    printed = {
        "251.4051": intercept["estimate"],
        "9.5062": intercept["std_error"],
        "26.45": intercept["t_value"],
        "10.4673": days["estimate"],
        "0.8017": days["std_error"],
        "13.06": days["t_value"],
        "36.01": subject["std_dev"],
        "30.90": residual["std_dev"],
        "1297": subject["variance"],
        "954.5": residual["variance"],
        "1802.1": d["aic"],
        "1814.9": d["bic"],
        "-897.0": d["loglik"],
        "1794.1": d["deviance"],
    }
    for text, value in printed.items():
        assert text in table.out, text
        assert close_to_printed(value, text), (text, value)
    assert "Number of obs: 180, groups:  Subject, 18" in table.out


def test_table_for_reml_and_a_singular_fit():
    r = run_in_process(["fit", data_path("dyestuff2.csv"), "Yield ~ 1 + (1 | Batch)", "--reml"])
    assert r.code == 0  # a singular fit is a success (docs/cli.md), flagged
    assert "Linear mixed model fit by REML" in r.out
    assert "REML crit." in r.out
    assert "singular" in r.out


# --------------------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------------------

CONTRACT_FIELDS = {
    "model": str,
    "formula": str,
    "method": str,
    "nobs": int,
    "ngroups": dict,
    "fixed_effects": list,
    "random_effects": list,
    "correlations": list,
    "theta": list,
    "sigma": float,
    "loglik": float,
    "aic": float,
    "bic": float,
    "deviance": (float, type(None)),
    "reml_criterion": (float, type(None)),
    "df_resid": int,
    "vcov": list,
    "singular": bool,
    "converged": bool,
    "optimizer": dict,
    "dropped_rows": int,
}


def test_json_has_every_contract_field():
    d = fit_json(*DEMO[1:])
    for key, kind in CONTRACT_FIELDS.items():
        assert key in d, key
        assert isinstance(d[key], kind), (key, d[key])
    assert d["model"] == "lmm"
    assert d["method"] == "ML"
    assert d["formula"] == "Reaction ~ Days + (1 | Subject)"
    assert d["ngroups"] == {"Subject": 18}
    assert set(d["optimizer"]) >= {"name", "evaluations", "message"}
    for row in d["fixed_effects"]:
        assert set(row) >= {"term", "estimate", "std_error", "t_value"}
    for row in d["random_effects"]:
        assert set(row) >= {"group", "term", "variance", "std_dev"}
    assert d["random_effects"][-1]["group"] == "Residual"
    assert d["random_effects"][-1]["term"] is None
    assert d["deviance"] is not None and d["reml_criterion"] is None
    assert d["singular"] is False and d["converged"] is True
    assert d["dropped_rows"] == 0


def test_json_matches_the_contract_example():
    """The example object of docs/cli.md, to the digits it prints."""
    d = fit_json(*DEMO[1:])
    (intercept, days) = d["fixed_effects"]
    subject, residual = d["random_effects"]
    printed = [
        (intercept["estimate"], "251.405"),
        (intercept["std_error"], "9.506"),
        (intercept["t_value"], "26.45"),
        (days["estimate"], "10.467"),
        (days["std_error"], "0.802"),
        (days["t_value"], "13.06"),
        (subject["variance"], "1296.87"),
        (subject["std_dev"], "36.01"),
        (residual["variance"], "954.53"),
        (residual["std_dev"], "30.90"),
        (d["theta"][0], "1.1656"),
        (d["sigma"], "30.895"),
        (d["loglik"], "-897.039"),
        (d["aic"], "1802.08"),
        (d["bic"], "1814.85"),
        (d["deviance"], "1794.08"),
        (d["vcov"][0][0], "90.37"),
        (d["vcov"][1][1], "0.643"),
    ]
    for value, text in printed:
        assert close_to_printed(value, text), (text, value)
    assert d["df_resid"] == 176


def test_reml_json():
    """For a REML fit, reml_criterion is set, loglik is minus half of it and deviance is null."""
    d = fit_json(*DEMO[1:], "--reml")
    ref = load_reference("sleepstudy_intercept_reml")
    assert d["method"] == "REML"
    assert d["deviance"] is None
    assert abs(d["reml_criterion"] - ref["REMLcrit"]) <= OPT_DEV
    assert abs(d["loglik"] + d["reml_criterion"] / 2) <= EXACT * abs(d["loglik"])


def test_json_flag_is_format_json():
    a = run_in_process([*DEMO, "--json"])
    b = run_in_process([*DEMO, "--format", "json"])
    assert a.code == b.code == 0
    assert without_timing(json.loads(a.out)) == without_timing(json.loads(b.out))


def test_formula_and_column_options_are_one_model():
    a = fit_json(*DEMO[1:])
    b = fit_json(SLEEP, "Reaction ~ Days + (1 | Subject)")
    assert without_timing(a) == without_timing(b)
    a = fit_json(SLEEP, "--y", "Reaction", "--fixed", "Days", "--group", "Subject", "--slope", "Days", "--reml")
    b = fit_json(SLEEP, "Reaction ~ Days + (Days | Subject)", "--reml")
    assert a["formula"] == "Reaction ~ Days + (1 + Days | Subject)"
    assert without_timing({**a, "formula": ""}) == without_timing({**b, "formula": ""})


def test_comma_separated_and_repeated_options_agree():
    cake = data_path("cake.csv")
    a = fit_json(cake, "--y", "angle", "--fixed", "recipe,temp", "--group", "replicate")
    b = fit_json(cake, "--y", "angle", "--fixed", "recipe", "--fixed", "temp", "--group", "replicate")
    c = fit_json(cake, "angle ~ recipe + temp + (1 | replicate)")
    assert a["formula"] == b["formula"] == c["formula"] == "angle ~ recipe + temp + (1 | replicate)"
    assert without_timing(a) == without_timing(b) == without_timing(c)
    assert [f["term"] for f in a["fixed_effects"]] == ["(Intercept)", "recipeB", "recipeC", "temp"]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.stem) for c in LMM_CASES])
@pytest.mark.parametrize("method", ["ml", "reml"])
def test_every_reference_through_the_command_line(case, method):
    """The CLI path (CSV -> formula -> design -> fit -> JSON) gives lme4's names and numbers."""
    ref = load_reference(f"{case.stem}_{method}")
    flags = ["--reml"] if method == "reml" else []
    d = fit_json(data_path(case.csv), ref["formula"], *case.options, *flags)
    assert d["nobs"] == ref["nobs"]
    assert list(d["ngroups"].items()) == list(ref["ngroups"].items())
    assert [f["term"] for f in d["fixed_effects"]] == list(ref["fixef"])
    crit = d["reml_criterion"] if method == "reml" else d["deviance"]
    want = ref["REMLcrit"] if method == "reml" else ref["deviance"]
    assert crit <= want + EXACT * abs(want) and want - crit <= OPT_DEV
    assert d["df_resid"] == ref["df_resid"]
    assert d["singular"] == ref["singular"]
    assert rel(d["sigma"], ref["sigma"]) <= OPT_PAR
    scale = max(abs(v) for v in ref["fixef"].values())
    for f in d["fixed_effects"]:
        assert abs(f["estimate"] - ref["fixef"][f["term"]]) <= OPT_FIXEF * scale


def test_uncorrelated_terms_are_named_as_lme4_names_them():
    """(Days || Subject): lme4's VarCorr names the second term Subject.1; the factor is Subject for both."""
    d = fit_json(SLEEP, "Reaction ~ Days + (Days || Subject)")
    rows = [(r["group"], r["factor"], r["term"]) for r in d["random_effects"]]
    assert rows == [("Subject", "Subject", "(Intercept)"), ("Subject.1", "Subject", "Days"), ("Residual", None, None)]
    assert d["correlations"] == []
    assert d["formula"] == "Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)"


def test_correlated_slope_reports_the_correlation():
    d = fit_json(SLEEP, "Reaction ~ Days + (Days | Subject)", "--reml")
    ref = load_reference("sleepstudy_slope_reml")
    (corr,) = d["correlations"]
    assert (corr["group"], corr["term1"], corr["term2"]) == ("Subject", "(Intercept)", "Days")
    want = next(r["sdcor"] for r in ref["varcorr"] if r.get("var2"))
    assert abs(corr["corr"] - want) <= OPT_PAR


# --------------------------------------------------------------------------------------------------
# Input: standard input, a BOM, missing values
# --------------------------------------------------------------------------------------------------


def test_dash_reads_standard_input():
    r = run_in_process(["fit", "-", *DEMO[2:], "--json"], stdin=SLEEP.read_bytes())
    assert r.code == 0, r.err
    d, want = json.loads(r.out), fit_json(*DEMO[1:])
    assert d["data"] == "<stdin>"
    assert without_timing({**d, "data": ""}) == without_timing({**want, "data": ""})


def test_utf8_bom(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + SLEEP.read_bytes())
    d, want = fit_json(path, *DEMO[2:]), fit_json(*DEMO[1:])
    assert without_timing({**d, "data": ""}) == without_timing({**want, "data": ""})


def test_rows_with_missing_values_are_dropped_and_counted(tmp_path):
    lines = sleepstudy_lines()
    holes = {3: 'NA,2,"308"', 10: ',9,"308"', 20: '300.1,.,"310"', 30: "250,1,NA", 40: "NaN,3,333"}
    path = tmp_path / "holes.csv"
    path.write_text("\n".join(holes.get(i, line) for i, line in enumerate(lines)) + "\n", encoding="utf-8")
    complete = tmp_path / "complete.csv"
    complete.write_text("\n".join(line for i, line in enumerate(lines) if i not in holes) + "\n", encoding="utf-8")
    r = run_in_process(["fit", path, *DEMO[2:], "--json", "--na", "."])  # "." is data unless declared missing
    assert r.code == 0, r.err
    d = json.loads(r.out)
    assert d["dropped_rows"] == 5
    assert d["nobs"] == 175
    assert "Dropped 5 of 180 rows" in r.err
    assert "Error" not in r.err
    want = fit_json(complete, *DEMO[2:])
    assert abs(d["loglik"] - want["loglik"]) <= OPT_DEV
    assert rel(d["sigma"], want["sigma"]) <= OPT_PAR
    table = run_in_process(["fit", path, *DEMO[2:], "--na", "."])
    assert table.err.count("Dropped 5 of 180 rows") == 1  # the note, once, on standard error
    assert "Dropped" not in table.out


# --------------------------------------------------------------------------------------------------
# ranef
# --------------------------------------------------------------------------------------------------


def test_ranef_csv():
    r = run_in_process(["ranef", *DEMO[1:], "--format", "csv"])
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[0] == "group,level,term,mode,cond_sd"
    rows = list(csv.DictReader(io.StringIO(r.out)))
    assert len(rows) == 18
    (ref,) = load_reference("sleepstudy_intercept_ml")["ranef"]
    assert [row["level"] for row in rows] == ref["levels"]
    scale = max(abs(m) for m in ref["mode"])
    for row, mode, sd in zip(rows, ref["mode"], ref["condsd"], strict=True):
        assert (row["group"], row["term"]) == ("Subject", "(Intercept)")
        assert abs(float(row["mode"]) - mode) <= OPT_PAR * scale
        assert rel(float(row["cond_sd"]), sd) <= OPT_PAR


def test_ranef_json_has_the_rows_and_the_fit():
    r = run_in_process(["ranef", data_path("pastes.csv"), "strength ~ 1 + (1 | batch/cask)", "--json"])
    assert r.code == 0, r.err
    d = json.loads(r.out)
    assert set(d) == {"ranef", "fit"}
    fit = fit_json(data_path("pastes.csv"), "strength ~ 1 + (1 | batch/cask)", "--ddf", "none")  # ranef: no df
    assert without_timing(d["fit"]) == without_timing(fit)
    assert d["fit"]["ngroups"] == {"cask:batch": 30, "batch": 10}
    counts: dict[str, int] = {}
    for row in d["ranef"]:
        assert set(row) == {"group", "level", "term", "mode", "cond_sd"}
        counts[row["group"]] = counts.get(row["group"], 0) + 1
    assert counts == {"cask:batch": 30, "batch": 10}
    ref = load_reference("pastes_ml")
    nested = next(x for x in ref["ranef"] if x["group"] == "cask:batch")
    assert [row["level"] for row in d["ranef"] if row["group"] == "cask:batch"] == nested["levels"]


def test_ranef_table():
    r = run_in_process(["ranef", *DEMO[1:]])
    assert r.code == 0
    assert "Conditional modes" in r.out
    assert "308" in r.out and "372" in r.out


def test_fit_csv_is_the_fixed_effects():
    r = run_in_process([*DEMO, "--format", "csv"])
    assert r.code == 0
    rows = list(csv.DictReader(io.StringIO(r.out)))
    assert r.out.splitlines()[0] == "term,estimate,std_error,df,t_value,p_value"  # Satterthwaite's df by default
    assert [row["term"] for row in rows] == ["(Intercept)", "Days"]
    ref = load_reference("sleepstudy_intercept_ml")
    for row in rows:
        assert rel(float(row["std_error"]), ref["se"][row["term"]]) <= OPT_SE


# --------------------------------------------------------------------------------------------------
# --method dense
# --------------------------------------------------------------------------------------------------


def test_dense_method_agrees_with_fast():
    fast = fit_json(SLEEP, "Reaction ~ Days + (Days | Subject)")
    dense = fit_json(SLEEP, "Reaction ~ Days + (Days | Subject)", "--method", "dense")
    assert abs(fast["deviance"] - dense["deviance"]) <= OPT_DEV
    for a, b in zip(fast["theta"], dense["theta"], strict=True):
        assert abs(a - b) <= OPT_PAR * max(abs(b), 1.0)
    assert rel(fast["sigma"], dense["sigma"]) <= OPT_PAR
    scale = max(abs(b["estimate"]) for b in dense["fixed_effects"])
    for a, b in zip(fast["fixed_effects"], dense["fixed_effects"], strict=True):
        assert abs(a["estimate"] - b["estimate"]) <= OPT_FIXEF * scale
        assert rel(a["std_error"], b["std_error"]) <= OPT_SE
    assert "dense" in dense["optimizer"]["name"]


def test_dense_method_is_refused_beyond_5000_rows(tmp_path):
    path = tmp_path / "big.csv"
    rows = ["y,x,g"] + [f"{(i * 7919) % 101 / 10},{i % 13},g{i % 40}" for i in range(5001)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    r = run_in_process(["fit", path, "--y", "y", "--fixed", "x", "--group", "g", "--method", "dense"])
    assert_one_error_line(r, 1, "5000", "5001", "method fast", "(option --method)")


# --------------------------------------------------------------------------------------------------
# Errors: exit 1 for data and model problems, 2 for usage; one `Error:` line; no traceback
# --------------------------------------------------------------------------------------------------


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_unknown_column_lists_the_real_ones():
    r = run_in_process(["fit", SLEEP, "--y", "Reaction", "--fixed", "Dayz", "--group", "Subject"])
    assert_one_error_line(r, 1, "'Dayz' not found", "Columns are: Reaction, Days, Subject")


def test_unknown_column_in_a_formula():
    r = run_in_process(["fit", SLEEP, "Reaction ~ Days + (1 | Subjct)"])
    assert_one_error_line(r, 1, "'Subjct'", "Reaction, Days, Subject")


def test_non_numeric_response(tmp_path):
    path = write(tmp_path, "text.csv", "y,g\n1.5,a\noops,a\n2.5,b\n3.5,b\n")
    assert_one_error_line(run_in_process(["fit", path, "--y", "y", "--group", "g"]), 1, "'y'", "numeric", "line 3")


def test_one_level_group(tmp_path):
    path = write(tmp_path, "one.csv", "y,g\n1,a\n2,a\n3,a\n5,a\n")
    assert_one_error_line(run_in_process(["fit", path, "--y", "y", "--group", "g"]), 1, "'g'", "at least 2 levels")


def test_as_many_levels_as_rows(tmp_path):
    path = write(tmp_path, "all.csv", "y,g\n1,a\n2,b\n3,c\n5,d\n")
    assert_one_error_line(run_in_process(["fit", path, "--y", "y", "--group", "g"]), 1, "'g'", "as many levels")


def test_formula_syntax_error_is_a_usage_error():
    r = run_in_process(["fit", SLEEP, "Reaction ~ Days + (1 | Subject"])
    assert_one_error_line(r, 2, "Unmatched '('", "position 19")


def test_unknown_option():
    r = run_in_process([*DEMO, "--bogus"])
    assert r.code == 2
    assert r.error_lines and "--bogus" in r.error_lines[0]
    assert "Traceback" not in r.err and r.out == ""


def test_formula_and_column_options_together():
    r = run_in_process(["fit", SLEEP, "Reaction ~ Days + (1 | Subject)", "--y", "Reaction"])
    assert_one_error_line(r, 2, "either a formula or the column options")


def test_model_without_random_effects():
    assert_one_error_line(run_in_process(["fit", SLEEP, "Reaction ~ Days"]), 2, "no random-effects term")


def test_missing_file(tmp_path):
    r = run_in_process(["fit", tmp_path / "nope.csv", *DEMO[2:]])
    assert_one_error_line(r, 1, "nope.csv", "not found")


def test_empty_file(tmp_path):
    r = run_in_process(["fit", write(tmp_path, "empty.csv", ""), *DEMO[2:]])
    assert_one_error_line(r, 1, "empty")


def test_header_only_file(tmp_path):
    r = run_in_process(["fit", write(tmp_path, "header.csv", sleepstudy_lines()[0] + "\n"), *DEMO[2:]])
    assert_one_error_line(r, 1, "no data rows")


def test_ranef_errors_like_fit():
    r = run_in_process(["ranef", SLEEP, "--y", "Reaction", "--group", "Subjct"])
    assert_one_error_line(r, 1, "'Subjct' not found", "Columns are:")


def test_rank_deficient_fixed_effects_are_dropped_and_named(tmp_path):
    lines = sleepstudy_lines()
    rows = [lines[0] + ",Days2"] + [f"{line},{line.split(',')[1]}" for line in lines[1:]]
    path = write(tmp_path, "dup.csv", "\n".join(rows) + "\n")
    r = run_in_process(["fit", path, "Reaction ~ Days + Days2 + (1 | Subject)", "--json"])
    assert r.code == 0, r.err
    d = json.loads(r.out)
    assert d["dropped_columns"] == ["Days2"]
    assert "Days2" in r.err and "rank deficient" in r.err
    assert [f["term"] for f in d["fixed_effects"]] == ["(Intercept)", "Days"]
    want = fit_json(*DEMO[1:])
    assert abs(d["loglik"] - want["loglik"]) <= OPT_DEV
    assert d["df_resid"] == want["df_resid"]
    table = run_in_process(["fit", path, "Reaction ~ Days + Days2 + (1 | Subject)"])
    assert table.err.count("rank deficient so dropping 1 column / coefficient: Days2") == 1  # once, on stderr
    assert "rank deficient" not in table.out


@settings(max_examples=60)  # derandomized, without deadline or example database: conftest's "ci" profile
@given(
    header=st.lists(st.sampled_from(["y", "x", "g", "Y", "y ", ""]), max_size=4),
    rows=st.lists(
        st.lists(
            st.one_of(
                st.sampled_from(["", "NA", ".", "inf", "1e400", "abc", '"', "1,5", "01", " 3"]),
                st.integers(-3, 3).map(str),
                st.floats().map(repr),
                st.text(max_size=3),
            ),
            max_size=4,
        ),
        max_size=8,
    ),
    sep=st.sampled_from([",", ";", "\t"]),
    bom=st.booleans(),
)
def test_bad_csv_files_end_in_one_error_line(tmp_path_factory, header, rows, sep, bom):
    """Whatever the file holds: success, or exit 1/2 with one `Error:` line; never a traceback."""
    text = "\n".join([sep.join(header)] + [sep.join(r) for r in rows])
    path = tmp_path_factory.mktemp("bad") / "bad.csv"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8", "surrogatepass"))
    r = run_in_process(["fit", path, "--y", "y", "--fixed", "x", "--group", "g"])
    assert "Traceback" not in r.err
    assert "internal error" not in r.err
    if r.code not in (0, 3):
        assert r.code in (1, 2)
        assert len(r.error_lines) == 1, r.err


def test_crossed_model_with_a_slope_on_the_smaller_factor(tmp_path):
    rng = np.random.default_rng(2)
    n, n_item, n_subj = 160, 25, 8
    item, subj = np.arange(n) % n_item, rng.integers(0, n_subj, n)
    x, z = rng.normal(size=n), rng.uniform(0, 4, n)
    y = 1 + 0.5 * x - 0.2 * z + rng.normal(size=n_item)[item] + rng.normal(size=n_subj)[subj] * (1 + 0.5 * z)
    y += 0.7 * rng.normal(size=n)
    rows = ["y,x,z,item,subj"] + [
        f"{a:.17g},{b:.17g},{c:.17g},i{d},s{e}" for a, b, c, d, e in zip(y, x, z, item, subj, strict=True)
    ]
    path = write(tmp_path, "crossed.csv", "\n".join(rows) + "\n")
    formula = "y ~ x + z + (1 | item) + (z | subj)"
    dense = run_in_process(["fit", path, formula, "--method", "dense", "--json"])
    assert dense.code == 0, dense.err
    fast = run_in_process(["fit", path, formula, "--json"])
    assert fast.code == 0, fast.err
    assert abs(fast.json()["deviance"] - dense.json()["deviance"]) <= OPT_DEV


# --------------------------------------------------------------------------------------------------
# Help
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["fit", "ranef"])
def test_help_shows_an_example(command):
    r = run_in_process([command, "--help"])
    assert r.code == 0
    assert "Examples:" in r.out
    assert f"mmcli {command} sleepstudy.csv" in r.out
    for option in ("--y", "--fixed", "--group", "--slope", "--reml", "--format", "--json", "--method"):
        assert option in r.out, option


def test_r_style_transforms_equal_precomputed_columns(tmp_path):
    """I(x^2) is a power (not Python's xor) and poly(x, 2) spans the same space: both fit as a column x^2
    written into the file, and the names are R's."""
    rng = np.random.default_rng(11)
    n = 120
    x = rng.normal(size=n)
    g = np.arange(n) % 10
    y = 1 + x + 0.5 * x**2 + rng.normal(size=10)[g] + rng.normal(size=n)
    path = tmp_path / "t.csv"
    with path.open("w") as fh:
        fh.write("y,x,xsq,g\n")
        for row in zip(y, x, x**2, g):
            fh.write("{:.17g},{:.17g},{:.17g},g{}\n".format(*row))
    want = run_in_process(["fit", path, "y ~ x + xsq + (1 | g)", "--json"]).json()
    power = run_in_process(["fit", path, "y ~ x + I(x^2) + (1 | g)", "--json"]).json()
    poly = run_in_process(["fit", path, "y ~ poly(x, 2) + (1 | g)", "--json"]).json()
    assert [e["term"] for e in power["fixed_effects"]] == ["(Intercept)", "x", "I(x^2)"]
    assert [e["term"] for e in poly["fixed_effects"]] == ["(Intercept)", "poly(x, 2)1", "poly(x, 2)2"]
    for other in (power, poly):
        assert abs(other["loglik"] - want["loglik"]) <= OPT_DEV
    scale = max(abs(e["estimate"]) for e in want["fixed_effects"])
    assert abs(power["fixed_effects"][2]["estimate"] - want["fixed_effects"][2]["estimate"]) <= OPT_FIXEF * scale
