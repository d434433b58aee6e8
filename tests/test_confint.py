"""`mmcli confint` against lme4's confint(m, method = "profile") and confint(m, method = "Wald")
(tests/reference/make_confint.R), and the parametric bootstrap by its own properties.

lme4 reads a profile interval's ends off a spline through its grid of profile points; mmcli solves zeta = +-z
on the profile itself. The ends are held to lme4's default grid within ``R_SPLINE`` and to lme4's fine grid
(``delta = 0.05``, where the spline's error is negligible) within ``OPT_PAR``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import OPT_FIXEF, OPT_PAR, R_SPLINE, ROOT, data_path, load_reference, run_in_process

REF = load_reference("confint")


def _reference(stem: str, reml: bool) -> dict[str, Any]:
    return next(m for m in REF["models"] if m["stem"] == stem and m["REML"] == reml)


def _confint(ref: dict[str, Any], *options: str) -> dict[str, Any]:
    fit_method = "--reml" if ref["REML"] else "--ml"
    r = run_in_process(["confint", data_path(ref["data"]), ref["formula"], fit_method, "--json", *options])
    return r.json()


def _close(value: float, expected: float, rel: float) -> bool:
    return abs(value - expected) <= rel * max(abs(expected), 1e-3)


# The three models as REML fits (lme4's default) and one as ML (lme4 profiles both on the ML deviance), and a
# singular fit, whose sd's profile starts at 0 (the lower end) from a template row at 0.
PROFILE_CASES = [
    ("dyestuff", True),
    ("sleepstudy_slope", True),
    ("penicillin", True),
    ("dyestuff", False),
    ("dyestuff2", False),
]


@pytest.mark.parametrize(("stem", "reml"), PROFILE_CASES)
def test_profile_intervals_match_lme4(stem, reml):
    ref = _reference(stem, reml)
    d = _confint(ref)
    rows = d["intervals"]
    assert [r["parameter"] for r in rows] == [r["name"] for r in ref["profile"]]
    assert d["columns"] == ["2.5 %", "97.5 %"]
    for got, grid, fine in zip(rows, ref["profile"], ref["profile_fine"]):
        for end in ("lower", "upper"):
            assert _close(got[end], fine[end], OPT_PAR), (got, fine)
            assert _close(got[end], grid[end], R_SPLINE), (got, grid)
            assert abs(got[end] - grid[end]) <= 2.5e-3  # what this means on the parameter scale
    if stem == "dyestuff2":
        assert rows[0]["lower"] == 0.0


def test_profile_level_090_and_row_names_of_a_correlated_term():
    ref = _reference("sleepstudy_slope", False)
    d = _confint(ref, "--level", "0.9")
    assert d["columns"] == ["5 %", "95 %"]
    names = [r["parameter"] for r in d["intervals"]]
    assert names == [".sig01", ".sig02", ".sig03", ".sigma", "(Intercept)", "Days"]
    assert d["intervals"][1]["description"] == "cor (Intercept), Days | Subject"
    for got, grid in zip(d["intervals"], ref["profile_90"]):
        for end in ("lower", "upper"):
            assert _close(got[end], grid[end], R_SPLINE), (got, grid)


def test_profile_with_weights_and_offset_matches_lme4_variance_parameters():
    """The variance parameters' rows only: lme4 1.1-31's profile of a weighted fit's fixed effects is far narrower
    than its own Wald interval (docs/cli.md); mmcli's fixed-effect ends lie just outside lme4's Wald ends."""
    ref = _reference("sleepstudy_weights_offset", False)
    r = run_in_process(["confint", ROOT / ref["data"], ref["formula"], "--weights", ref["weights"], "--json"])
    rows = r.json()["intervals"]
    for got, grid, fine in zip(rows[:2], ref["profile"], ref["profile_fine"]):
        assert got["parameter"] == grid["name"]
        for end in ("lower", "upper"):
            assert _close(got[end], fine[end], OPT_PAR), (got, fine)
            assert _close(got[end], grid[end], R_SPLINE), (got, grid)
    for got, wald in zip(rows[2:], ref["wald"][2:]):
        assert got["lower"] < wald["lower"] < wald["upper"] < got["upper"]
        assert (got["upper"] - got["lower"]) <= 1.05 * (wald["upper"] - wald["lower"])


def test_correlations_of_a_three_effect_term_match_lme4_fine_profile():
    """A correlation of a 3 x 3 covariance matrix held while the other two and the sds are re-optimized. lme4's
    default grid misses by up to 4e-3 here (a nearly singular fit), so the rows are held to its fine grid; the
    standard deviations, sigma and fixed effects to its default grid."""
    ref = _reference("sleepstudy_quadratic", False)
    rows = {r["parameter"]: r for r in _confint(ref)["intervals"]}
    for fine in ref["profile_fine"]:
        for end in ("lower", "upper"):
            assert _close(rows[fine["name"]][end], fine[end], OPT_PAR), (rows[fine["name"]], fine)
    for grid in ref["profile"]:
        if grid["name"] in (".sig02", ".sig03", ".sig05"):
            continue
        for end in ("lower", "upper"):
            assert _close(rows[grid["name"]][end], grid[end], R_SPLINE), (rows[grid["name"]], grid)


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("stem", ["dyestuff", "sleepstudy_slope", "penicillin"])
def test_wald_intervals_match_lme4(stem, reml):
    ref = _reference(stem, reml)
    for level, key in (("0.95", "wald"), ("0.9", "wald_90")):
        d = _confint(ref, "--method", "Wald", "--level", level)
        assert [r["parameter"] for r in d["intervals"]] == [r["name"] for r in ref[key]]
        for got, exp in zip(d["intervals"], ref[key]):
            if exp["lower"] is None:  # lme4 gives the variance parameters no Wald interval
                assert got["lower"] is None and got["upper"] is None
                continue
            # the centre is the fixed effect (OPT_FIXEF); the half-width z SE follows from the optimized theta, which
            # lme4 leaves up to 3e-5 short of the optimum on Penicillin (OPT_PAR)
            centre, half = (exp["upper"] + exp["lower"]) / 2, (exp["upper"] - exp["lower"]) / 2
            for end in ("lower", "upper"):
                assert abs(got[end] - exp[end]) <= OPT_FIXEF * abs(centre) + OPT_PAR * half, (got, exp)


def test_csv_has_r_column_names_and_na_for_wald_variances():
    ref = _reference("dyestuff", True)
    r = run_in_process(["confint", data_path(ref["data"]), ref["formula"], "--method", "wald", "--format", "csv"])
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[0] == "parameter,2.5 %,97.5 %"
    assert lines[1] == ".sig01,NA,NA"
    assert lines[3].startswith("(Intercept),")
    assert r.err == ""


def test_table_output():
    ref = _reference("sleepstudy_slope", True)
    r = run_in_process(["confint", data_path(ref["data"]), ref["formula"], "--method", "wald"])
    assert r.code == 0, r.err
    assert "2.5 %" in r.out and "97.5 %" in r.out and ".sig02" in r.out and "Days" in r.out


# --------------------------------------------------------------------------------------------------
# the parametric bootstrap: R's random numbers cannot be reproduced, so the tests check its properties
# --------------------------------------------------------------------------------------------------


def _boot(stem: str, nsim: int, seed: int) -> dict[str, Any]:
    ref = _reference(stem, True)
    return _confint(ref, "--method", "boot", "--nsim", str(nsim), "--seed", str(seed))


def test_boot_same_seed_same_intervals_other_seed_other_intervals():
    a, b, c = _boot("dyestuff", 20, 7), _boot("dyestuff", 20, 7), _boot("dyestuff", 20, 8)
    assert a["intervals"] == b["intervals"]
    assert a["intervals"] != c["intervals"]
    assert (a["nsim"], a["seed"], a["failed"]) == (20, 7, 0)


def test_boot_intervals_agree_with_lme4_profile():
    """With the seed fixed the run is deterministic; the bound is wide enough that any correct bootstrap passes
    for (almost) every seed: the Monte Carlo error of a 2.5 % quantile from 200 replicates is about 0.2 of the
    parameter's sampling sd, and the bound is 0.25 of the interval's width (about 1 sd)."""
    ref = _reference("sleepstudy_slope", True)
    d = _boot("sleepstudy_slope", 200, 1)
    for got, exp in zip(d["intervals"], ref["profile"]):
        if exp["name"] not in (".sigma", "(Intercept)", "Days", ".sig03"):
            continue
        width = exp["upper"] - exp["lower"]
        for end in ("lower", "upper"):
            assert abs(got[end] - exp[end]) <= 0.25 * width, (got, exp)


def test_boot_percentile_is_boots_norm_inter():
    from mmcli.lmm import percentile

    t = np.arange(1.0, 40.0)  # R = 39: (R + 1) * 0.025 = 1, an order statistic itself
    assert percentile(t, 0.025) == 1.0
    assert percentile(t, 0.975) == 39.0
    v = percentile(np.arange(1.0, 101.0), 0.025)  # (R + 1) alpha = 2.525: between the 2nd and 3rd
    assert 2.0 < v < 3.0


# --------------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--level", "1.5"], 2),
        (["--level", "0"], 2),
        (["--method", "boot", "--nsim", "0"], 2),
        (["--method", "bayes"], 2),
    ],
)
def test_bad_options_give_one_error_line(args, code):
    r = run_in_process(["confint", data_path("dyestuff.csv"), "Yield ~ 1 + (1 | Batch)", *args])
    assert r.code == code
    assert len(r.error_lines) == 1, r.err
    assert "Traceback" not in r.err


def test_no_random_effects_is_an_error():
    r = run_in_process(["confint", data_path("dyestuff.csv"), "Yield ~ 1"])
    assert r.code == 2 and len(r.error_lines) == 1


def test_help_shows_an_example():
    r = run_in_process(["confint", "--help"])
    assert r.code == 0
    assert "mmcli confint sleepstudy.csv" in r.out
    for option in ("--method", "profile", "--level", "--nsim", "--seed", "--reml", "--format"):
        assert option in r.out, option
