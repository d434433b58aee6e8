"""No silent wrong answers: what used to fit without a word and now either matches lme4 or is refused.

References: tests/reference/make_silent.R (a column used as a fixed effect and as a grouping factor; two terms
on one grouping factor and lme4's VarCorr names) and the sleepstudy fits of make_lmm.R. The boundary optima
(Loblolly, Orange) are in test_boundary.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from conftest import OPT_DEV, OPT_FIXEF, OPT_PAR, data_path, load_reference, run_in_process

FITS = {f["formula"]: f for f in load_reference("silent")["fits"]}
SLEEP = str(data_path("sleepstudy.csv"))


def test_a_numeric_column_is_a_factor_only_inside_its_random_term():
    """lme4 keeps Days numeric in the fixed part of Reaction ~ Days + (1 | Days): 2 coefficients."""
    ref = FITS["Reaction ~ Days + (1 | Days)"]
    for command in ("fit", "gamm"):
        res = run_in_process([command, SLEEP, ref["formula"], "--json"] + (["--ml"] if command == "gamm" else []))
        d = res.json()
        assert [r["term"] for r in d["fixed_effects"]] == ref["xnames"]
        est = [r["estimate"] for r in d["fixed_effects"]]
        np.testing.assert_allclose(est, ref["fixef"], rtol=0, atol=OPT_FIXEF * max(map(abs, ref["fixef"])))
        assert abs(d["loglik"] - ref["logLik"]) <= OPT_DEV
        assert d["ngroups"] == {"Days": 10}


@pytest.mark.parametrize(
    "formula", ["Reaction ~ Days + (Days || Subject)", "Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)"]
)
def test_a_second_term_on_one_factor_is_named_as_lme4_names_it(formula):
    ref = FITS[formula]
    d = run_in_process(["fit", SLEEP, formula, "--json"]).json()
    groups = [r["group"] for r in d["random_effects"]]
    assert groups == ref["varcorr_groups"] == ["Subject", "Subject.1", "Residual"]
    assert [r["factor"] for r in d["random_effects"]] == ["Subject", "Subject", None]
    np.testing.assert_allclose([r["std_dev"] for r in d["random_effects"]], ref["varcorr_sdcor"], rtol=OPT_PAR)
    table = run_in_process(["fit", SLEEP, formula]).out
    assert re.search(r"^Subject\.1\s+Days", table, re.M), table


@pytest.mark.parametrize("power", [-150, -200, -300, 150])
def test_rank_decisions_do_not_depend_on_a_columns_scale(power, tmp_path):
    """Days x 1e-200 is Days: the same fit as lme4's, its coefficient and standard error scaled by 1e200.
    (lme4 itself stops on that column: 'Downdated VtV is not positive definite'.)"""
    ref = load_reference("sleepstudy_intercept_ml")
    lines = Path(SLEEP).read_text().splitlines()
    out = ["Reaction,Days,Subject,scaled"]
    for line in lines[1:]:
        r, days, subj = line.split(",")
        out.append(f"{r},{days},{subj},{float(days) * 10.0**power!r}")
    path = tmp_path / "scaled.csv"
    path.write_text("\n".join(out) + "\n")
    res = run_in_process(["fit", path, "Reaction ~ scaled + (1 | Subject)", "--json"])
    d = res.json()
    assert "dropping" not in res.err
    (b0, b1) = d["fixed_effects"]
    assert b1["term"] == "scaled"
    np.testing.assert_allclose(b1["estimate"] * 10.0**power, ref["fixef"]["Days"], rtol=OPT_FIXEF)
    np.testing.assert_allclose(b1["std_error"] * 10.0**power, ref["se"]["Days"], rtol=1e-5)
    np.testing.assert_allclose(b1["t_value"], ref["tvalue"]["Days"], rtol=1e-5)
    assert abs(d["loglik"] - ref["logLik"]) <= OPT_DEV


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (
            ["fit", SLEEP, "Reaction ~ Reaction + (1 | Subject)"],
            r"response 'Reaction' is also on the right-hand side.*position 12",
        ),
        (["fit", SLEEP, "Reaction ~ Days + (1 | Reaction)"], r"response 'Reaction' is also on the right-hand side"),
        (
            ["fit", SLEEP, "Reaction ~ Days + I(Reaction^2) + (1 | Subject)"],
            r"also on the right-hand side.*position 21",
        ),
        (["gamm", SLEEP, "Reaction ~ s(Reaction) + (1 | Subject)"], r"also on the right-hand side"),
        (["spline", SLEEP, "--x", "Days", "--y", "Days"], r"--x and --y both name 'Days'"),
    ],
)
def test_the_response_on_the_right_hand_side_is_an_error(args, pattern):
    res = run_in_process(args)
    assert res.code == 2, res.err
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and re.search(pattern, lines[0]), lines


def test_too_few_observations_are_refused(tmp_path):
    """n = 3 with y ~ x + (1 | g) has 4 parameters: df.resid would be -1."""
    path = tmp_path / "three.csv"
    path.write_text("y,x,g\n1,2,a\n2,3.1,b\n3,3.9,a\n")
    res = run_in_process(["fit", path, "y ~ x + (1 | g)"])
    assert res.code == 1 and re.search(r"3 observations are too few for the model's 4 parameters", res.err)
    res = run_in_process(["spline", path, "--x", "x", "--y", "y"])
    assert res.code == 1 and re.search(r"passes through all 3 points", res.err), res.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["three.csv"]


@pytest.fixture
def gamm_files(tmp_path):
    rng = np.random.default_rng(4)
    rows = []
    for i in range(80):
        x, t = rng.uniform(), "ab"[i % 2]
        rows.append(f"{np.sin(5 * x) + (t == 'b') + rng.normal() * 0.2:.4f},{x:.4f},{t},g{i % 8}")
    (tmp_path / "d.csv").write_text("y,x,t,g\n" + "\n".join(rows) + "\n")
    (tmp_path / "unseen.csv").write_text("x,t\n0.2,a\n0.5,c\n")
    (tmp_path / "missing.csv").write_text("x,t\n0.2,a\nNA,b\n0.7,\n")
    return tmp_path


def test_predict_an_unseen_level_is_an_error_naming_it(gamm_files):
    res = run_in_process(
        ["gamm", gamm_files / "d.csv", "y ~ t + s(x, bs = 'cr') + (1 | g)", "--predict", gamm_files / "unseen.csv"]
    )
    assert res.code == 1
    assert re.fullmatch(
        r"Error: In the --predict file: Column 't' has the level 'c', which the fitted data do not have.*\n", res.err
    )
    assert res.out == ""


def test_predict_rows_with_a_missing_value_are_counted(gamm_files):
    res = run_in_process(
        [
            "gamm",
            gamm_files / "d.csv",
            "y ~ t + s(x, bs = 'cr') + (1 | g)",
            "--predict",
            gamm_files / "missing.csv",
            "--json",
        ]
    )
    assert len(res.json()["predictions"]) == 1
    assert "Note: In the --predict file: dropped 2 of 3 rows with a missing value in a used column." in res.err
    res = run_in_process(
        ["spline", gamm_files / "d.csv", "--x", "x", "--y", "y", "--predict", gamm_files / "missing.csv", "--json"]
    )
    assert len(res.json()["predictions"]) == 2
    assert "Note: In the --predict file: dropped 1 of 3 rows with a missing value in a used column." in res.err
