"""Denominator degrees of freedom and p-values of the fixed effects (`mmcli fit --ddf`) and type III anova
tables (`mmcli anova`) against lmerTest 3.1-3 and pbkrtest 0.5.2 (tests/reference/make_ddf.R)."""

from __future__ import annotations

import csv
import io
import math
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import DDF, DDF_P_ABS, EXACT, NUM_DERIV, ROOT, ROUNDING, load_reference, run_in_process

from mmcli.commands import ModelOptions, _load_model_data
from mmcli.design import build_design
from mmcli.lmm import LmmModel, kenward_roger, satterthwaite, varpar_deviance

CASES: dict[str, Any] = load_reference("ddf")["cases"]
REML_CASES = [k for k, c in CASES.items() if c["REML"]]
KR_CASES = [k for k in REML_CASES if not CASES[k]["weights"]]  # pbkrtest ignores prior weights (see docs)


def _args(c: dict[str, Any]) -> list[str]:
    args = [str(ROOT / c["csv"]), c["formula"], "--reml" if c["REML"] else "--ml"]
    for f in c["factors"]:
        args += ["--factor", f]
    if c["weights"]:
        args += ["--weights", c["weights"]]
    return args


@cache
def _model(name: str) -> tuple[LmmModel, Any]:
    c = CASES[name]
    opts = ModelOptions(formula=c["formula"], factor=tuple(c["factors"]), weights=c["weights"])
    spec = opts.spec(smooths=False)
    table = _load_model_data(str(ROOT / c["csv"]), spec, opts)
    d = build_design(spec, table.frame, set(opts.factor), weights=opts.weights)
    return LmmModel(d.X, d.y, d.terms, xnames=d.xnames, weights=d.weights, offset=d.offset), d


def _close(a: float, b: float, rel: float) -> bool:
    return abs(a - b) <= rel * abs(b)


def _p_close(a: float, b: float) -> bool:
    return abs(a - b) <= max(DDF * abs(b), DDF_P_ABS)


# --------------------------------------------------------------------------------------------------
# the core at lme4's theta: deterministic up to the finite differences
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_satterthwaite_at_lme4_theta(name: str) -> None:
    c = CASES[name]
    model, _ = _model(name)
    at = model.fit_at(np.array(c["theta"]), c["REML"])
    assert at.sigma == pytest.approx(c["sigma"], rel=EXACT)
    s = satterthwaite(model, at)
    J, A = np.array(c["jacobian"]), np.array(c["vcov_varpar"])
    np.testing.assert_allclose(np.array(s.jacobian_user()), J, rtol=0, atol=NUM_DERIV * np.max(np.abs(J)))
    np.testing.assert_allclose(s.vcov_varpar, A, rtol=0, atol=NUM_DERIV * np.max(np.abs(A)))
    for i, r in enumerate(c["satterthwaite"]["coefficients"]):
        est, se, df, t = s.t_test(np.eye(len(at.beta))[i])
        assert df == pytest.approx(r["df"], rel=10 * NUM_DERIV)
        assert se == pytest.approx(r["std_error"], rel=EXACT)


@pytest.mark.parametrize("name", KR_CASES)
def test_kenward_roger_at_lme4_theta(name: str) -> None:
    c = CASES[name]
    model, d = _model(name)
    at = model.fit_at(np.array(c["theta"]), True)
    kr = kenward_roger(d.X, at.terms, at.theta, at.sigma, at.beta)
    P = np.array(c["kenward_roger"]["vcov_adjusted"])
    np.testing.assert_allclose(kr.phi_adjusted, P, rtol=0, atol=EXACT * np.max(np.abs(P)))
    for i, r in enumerate(c["kenward_roger"]["coefficients"]):
        est, se, df, t = kr.t_test(np.eye(len(at.beta))[i])
        assert df == pytest.approx(r["df"], rel=EXACT)
        assert se == pytest.approx(r["std_error"], rel=EXACT)


@pytest.mark.parametrize("reml", [False, True])
def test_varpar_deviance_is_the_dense_likelihood(reml: bool) -> None:
    """The non-profiled criterion read off the profiled one equals -2 log L (or the REML criterion) computed
    from V = sigma^2 (Z Lambda Lambda'Z' + W^-1) directly, with prior weights and an offset."""
    model, d = _model("weighted_offset_reml")
    theta, sigma = np.array([0.8]), 30.0
    at = model.fit_at(theta, reml)
    X, w = d.X, d.weights
    c = CASES["weighted_offset_reml"]
    opts = ModelOptions(formula=c["formula"], weights="w")
    spec = opts.spec(smooths=False)
    table = _load_model_data(str(ROOT / c["csv"]), spec, opts)
    y = table.frame["Reaction"].to_numpy(float) - table.frame["off"].to_numpy(float)
    Z = d.terms[0].zmat().toarray()
    V = sigma**2 * (theta[0] ** 2 * Z @ Z.T + np.diag(1.0 / w))
    Vi = np.linalg.inv(V)
    XtViX = X.T @ Vi @ X
    beta = np.linalg.solve(XtViX, X.T @ Vi @ y)
    r = y - X @ beta
    n, p = X.shape
    dev = np.linalg.slogdet(V)[1] + r @ Vi @ r + n * math.log(2 * math.pi)
    if reml:
        dev += np.linalg.slogdet(XtViX)[1] - p * math.log(2 * math.pi)
    assert varpar_deviance(at, sigma) == pytest.approx(dev, rel=EXACT)
    assert varpar_deviance(at, at.sigma) == pytest.approx(at.objective, rel=ROUNDING)


# --------------------------------------------------------------------------------------------------
# the command line against lmerTest's summary and anova
# --------------------------------------------------------------------------------------------------


@cache
def _run(name: str, command: str, ddf: str) -> Any:
    r = run_in_process([command, *_args(CASES[name]), "--ddf", ddf, "--json"])
    assert r.code == 0, r.err
    return r.json()


@pytest.mark.parametrize(
    "name,ddf",
    [(k, "satterthwaite") for k in CASES] + [(k, "kenward-roger") for k in KR_CASES],
)
def test_fit_df_and_p_values(name: str, ddf: str) -> None:
    ref = CASES[name][ddf.replace("-", "_")]["coefficients"]
    out = _run(name, "fit", ddf)
    assert out["ddf_method"] == {"satterthwaite": "Satterthwaite", "kenward-roger": "Kenward-Roger"}[ddf]
    rows = out["fixed_effects"]
    assert [r["term"] for r in rows] == [r["term"] for r in ref]
    for got, want in zip(rows, ref, strict=True):
        assert _close(got["df"], want["df"], DDF), (got, want)
        assert _p_close(got["p_value"], want["p_value"]), (got, want)
        assert _close(got["std_error"], want["std_error"], DDF)


@pytest.mark.parametrize(
    "name,ddf",
    [(k, "satterthwaite") for k in CASES] + [(k, "kenward-roger") for k in KR_CASES],
)
def test_anova_tables(name: str, ddf: str) -> None:
    ref = CASES[name][ddf.replace("-", "_")]["anova"]
    out = _run(name, "anova", ddf)
    assert out["type"] == "III"
    rows = out["anova"]
    assert [r["term"] for r in rows] == [r["term"] for r in ref]
    for got, want in zip(rows, ref, strict=True):
        assert got["num_df"] == want["num_df"]
        for key in ("den_df", "f_value", "sum_sq", "mean_sq"):
            assert _close(got[key], want[key], DDF), (key, got, want)
        assert _p_close(got["p_value"], want["p_value"]), (got, want)


def test_fit_csv_and_table_have_lmertest_columns() -> None:
    args = _args(CASES["oats_reml"])
    r = run_in_process(["fit", *args, "--format", "csv"])
    assert r.code == 0, r.err
    assert r.out.splitlines()[0] == "term,estimate,std_error,df,t_value,p_value"
    rows = list(csv.DictReader(io.StringIO(r.out)))
    assert len(rows) == 6
    r = run_in_process(["fit", *args])
    assert "Estimate" in r.out and "Std. Error" in r.out and "df" in r.out and "Pr(>|t|)" in r.out
    r = run_in_process(["anova", *args])
    assert r.code == 0, r.err
    assert "Type III Analysis of Variance Table with Satterthwaite's method" in r.out
    for col in ("Sum Sq", "Mean Sq", "NumDF", "DenDF", "F value", "Pr(>F)"):
        assert col in r.out
    r = run_in_process(["anova", *args, "--format", "csv"])
    assert r.out.splitlines()[0] == "term,sum_sq,mean_sq,num_df,den_df,f_value,p_value"


def test_ddf_none_keeps_lme4_columns() -> None:
    r = run_in_process(["fit", *_args(CASES["sleepstudy_reml"]), "--ddf", "none", "--format", "csv"])
    assert r.code == 0
    assert r.out.splitlines()[0] == "term,estimate,std_error,t_value"


def test_intercept_only_model_has_an_empty_anova() -> None:
    out = _run("penicillin_reml", "anova", "satterthwaite")
    assert out["anova"] == []
    r = run_in_process(["anova", *_args(CASES["penicillin_reml"])])
    assert r.code == 0 and "no fixed terms" in r.out


def test_rows_shuffled_give_the_same_df() -> None:
    c = CASES["oats_reml"]
    lines = (ROOT / c["csv"]).read_text().splitlines()
    rng = np.random.default_rng(1)
    body = [lines[1 + i] for i in rng.permutation(len(lines) - 1)]
    data = ("\n".join([lines[0], *body]) + "\n").encode()
    r = run_in_process(["fit", "-", c["formula"], "--reml", "--json"], stdin=data)
    base = _run("oats_reml", "fit", "satterthwaite")
    for a, b in zip(r.json()["fixed_effects"], base["fixed_effects"], strict=True):
        assert a["df"] == pytest.approx(b["df"], rel=DDF)


# --------------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------------


def test_kenward_roger_needs_reml() -> None:
    r = run_in_process(["fit", str(ROOT / "sample_data/sleepstudy.csv"), "Reaction ~ Days + (1|Subject)", "--ddf",
                        "kenward-roger"])  # fmt: skip
    assert r.code == 2
    assert len(r.error_lines) == 1 and "--reml" in r.error_lines[0]


def test_anova_needs_a_ddf_method() -> None:
    r = run_in_process(["anova", *_args(CASES["oats_reml"]), "--ddf", "none"])
    assert r.code == 2 and len(r.error_lines) == 1


def test_kenward_roger_row_limit(tmp_path: Path) -> None:
    n = 20_001
    rng = np.random.default_rng(0)
    g = np.arange(n) % 50
    y = rng.normal(size=n) + rng.normal(size=50)[g]
    path = tmp_path / "big.csv"
    path.write_text("y,g\n" + "".join(f"{a},{b}\n" for a, b in zip(y, g)))
    r = run_in_process(["fit", path, "y ~ 1 + (1|g)", "--reml", "--ddf", "kenward-roger"])
    assert r.code == 1
    assert len(r.error_lines) == 1 and "satterthwaite" in r.error_lines[0] and "20000" in r.error_lines[0]
    assert "Traceback" not in r.err


def test_dense_formulation_gives_the_same_df() -> None:
    """The fast path reads the covariance off the factor, the dense one off the fit at theta: the same df."""
    c = CASES["oats_reml"]
    fast, dense = _run("oats_reml", "fit", "satterthwaite"), None
    r = run_in_process(["fit", *_args(c), "--method", "dense", "--json"])
    dense = r.json()
    for a, b in zip(fast["fixed_effects"], dense["fixed_effects"], strict=True):
        assert a["df"] == pytest.approx(b["df"], rel=NUM_DERIV)


def test_p_values_are_scipys() -> None:
    """The t and F tail probabilities (a continued fraction of the incomplete beta function, to spare every run
    scipy.special's import) against scipy.special, for df up to 1e5. Where both are below 1e-300, both are
    zero to double precision."""
    from scipy.special import fdtrc, stdtr

    from mmcli.inference import f_p_value, t_p_value

    for df in [0.5, 1, 2, 3.7, 5.487, 12.8, 17, 21.5, 51, 77.4, 210, 1e3, 19999, 20001, 71628.26]:
        for t in [0.01, 0.3, 1, 2, 5, 10, 30, 110]:
            want = 2 * stdtr(df, -t)
            if want > 1e-300:
                assert t_p_value(t, df) == pytest.approx(want, rel=EXACT)
        for q in [1, 2, 5, 10]:
            for F in [0.25, 1, 2, 20.5, 115.8]:
                want = fdtrc(q, df, F)
                if want > 1e-300:
                    assert f_p_value(F, q, df) == pytest.approx(want, rel=EXACT)
    assert t_p_value(1e-8, 1.0) == pytest.approx(1 - 2 / math.pi * math.atan(1e-8), rel=ROUNDING)  # Cauchy
    assert t_p_value(0.0, 5.0) == 1.0 and f_p_value(0.0, 2, 5.0) == 1.0
    assert math.isnan(t_p_value(1.0, math.nan)) and math.isnan(f_p_value(1.0, 2, -1.0))


def test_anova_help_shows_an_example() -> None:
    r = run_in_process(["anova", "--help"])
    assert r.code == 0
    assert "Examples:" in r.out and "mmcli anova cake.csv" in r.out
    for option in ("--ddf", "--reml", "--factor", "--format", "--json"):
        assert option in r.out, option
    r = run_in_process(["fit", "--help"])
    assert "--ddf" in r.out and "kenward-roger" in r.out


@pytest.mark.parametrize(
    "args,code",
    [
        (["sample_data/sleepstudy.csv", "Reaction ~ Dayz + (1|Subject)"], 1),
        (["sample_data/sleepstudy.csv", "Reaction ~ Days"], 2),
        (["sample_data/sleepstudy.csv", "Reaction ~ Days + (1|Subject)", "--ddf", "bogus"], 2),
        (["sample_data/sleepstudy.csv", "Reaction ~ Days + (1|Subject)", "--ddf", "kenward-roger"], 2),
        (["no_such_file.csv", "Reaction ~ Days + (1|Subject)"], 1),
    ],
)
def test_anova_bad_input_is_one_error_line(args: list[str], code: int) -> None:
    r = run_in_process(["anova", *[str(ROOT / a) if a.endswith(".csv") else a for a in args]])
    assert r.code == code
    assert len(r.error_lines) == 1 and "Traceback" not in r.err


def test_a_failed_df_computation_leaves_the_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Should the df break down numerically, the fit is still reported, with df and p-values NA and a note."""
    import mmcli.inference

    def broken(*args: Any, **kw: Any) -> Any:
        raise np.linalg.LinAlgError("Singular matrix")

    monkeypatch.setattr(mmcli.inference, "infer", broken)
    r = run_in_process(["fit", *_args(CASES["sleepstudy_reml"]), "--json"])
    assert r.code == 0
    assert all(row["df"] is None and row["p_value"] is None for row in r.json()["fixed_effects"])
    assert "degrees of freedom could not be computed" in r.err
    r = run_in_process(["anova", *_args(CASES["oats_reml"])])
    assert r.code == 1 and len(r.error_lines) == 1


def test_an_aliased_term_is_an_na_row_after_the_others() -> None:
    """As lmerTest: the aliased term's row is NA and comes last; the other rows are those of the model without it."""
    cake = str(ROOT / "sample_data/cake.csv")
    a = run_in_process(["anova", cake, "angle ~ temp + I(2*temp) + recipe + (1|replicate)", "--json"]).json()
    b = run_in_process(["anova", cake, "angle ~ temp + recipe + (1|replicate)", "--json"]).json()
    assert [r["term"] for r in a["anova"]] == ["temp", "recipe", "I(2 * temp)"]
    assert all(a["anova"][2][k] is None for k in ("sum_sq", "num_df", "den_df", "f_value", "p_value"))
    for x, y in zip(a["anova"][:2], b["anova"], strict=True):
        assert x["num_df"] == y["num_df"]
        for k in ("den_df", "f_value", "p_value"):
            assert x[k] == pytest.approx(y[k], rel=DDF)
