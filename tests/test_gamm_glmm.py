"""`mmcli gamm --family`: additive mixed models with a binomial or Poisson response against gamm4 (glmer on the
mixed-model form of the smooths, Laplace). References: tests/reference/make_gamm_glmm.R -> gamm_glmm.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import (
    GLMM_DEV,
    GLMM_FIXEF,
    GLMM_PRED,
    GLMM_SD,
    GLMM_SE,
    R_DAVIES,
    REFERENCE_DIR,
    S_TABLE,
    load_reference,
    run_in_process,
)
from scipy import stats
from test_glmm_errors import check

from mmcli.commands import ModelOptions
from mmcli.commands_gamm_glmm import run_gamm_glmm
from mmcli.smooth_test import prob_above

DATA = REFERENCE_DIR / "gamm_glmm.csv"
REF = load_reference("gamm_glmm")
CASES = [k for k in REF if k != "versions"]


@pytest.fixture(scope="module")
def fits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = {}
    for name in CASES:
        r = REF[name]
        new = tmp_path_factory.mktemp(name) / "new.csv"
        rows = [f"{x},{z},1" for x, z in zip(r["predict_x"], r["predict_z"], strict=True)]
        new.write_text("x,z,exposure\n" + "\n".join(rows) + "\n")
        opts = ModelOptions(formula=r["formula"])
        out[name] = run_gamm_glmm(str(DATA), opts, family=r["family"], link=r["link"], predict=str(new))
    return out


@pytest.mark.parametrize("name", CASES)
def test_mer_part(fits: dict[str, Any], name: str) -> None:
    r, d = REF[name], fits[name].data
    assert (d["family"], d["link"]) == (r["family"], r["link"])
    assert d["deviance"] <= r["minus2loglik"] + GLMM_DEV  # -2 log L; lower than glmer's is fine
    assert d["loglik"] == pytest.approx(-d["deviance"] / 2)
    assert d["aic"] - r["aic"] == pytest.approx(d["deviance"] - r["minus2loglik"], abs=1e-9)  # same parameter count
    assert d["df_resid"] == r["df_resid"]
    assert [f["term"] for f in d["fixed_effects"]] == [n[1:] for n in r["fixed_names"]]  # gamm4 prefixes an X
    beta = np.array([f["estimate"] for f in d["fixed_effects"]])
    if name == "binary_tp_probit":
        # glmer stops 1.9e-4 above this optimum on a ridge flat in the smooth's variance (lambda 0.10 there, 0.16
        # here): the null-space coefficient moves along it by 1.8e-3 relative. Shown lower, then compared by se.
        assert d["deviance"] < r["minus2loglik"] - 1e-4
        assert np.all(np.abs(beta - r["fixed"]) <= GLMM_PRED * np.array(r["fixed_se"]))
    else:
        assert np.max(np.abs(beta - r["fixed"])) <= GLMM_FIXEF * np.max(np.abs(r["fixed"]))
    se = np.array([f["std_error"] for f in d["fixed_effects"]])
    np.testing.assert_allclose(se, r["fixed_se"], rtol=GLMM_SE)
    groups = [re["group"] for re in d["random_effects"]]
    assert groups == r["re_groups"]
    g_var = d["random_effects"][groups.index("g")]["variance"]
    assert np.sqrt(g_var) == pytest.approx(np.sqrt(r["re_variance"][groups.index("g")]), rel=GLMM_SD)


@pytest.mark.parametrize("name", CASES)
def test_gam_part(fits: dict[str, Any], name: str) -> None:
    """edf as gamm4 computes it for a family: the Bayesian covariance with the PIRLS weights at convergence."""
    r, d = REF[name], fits[name].data
    edf = [s["edf"] for s in d["smooths"]]
    np.testing.assert_allclose(edf, r["edf"], rtol=GLMM_SD)
    lam = d["smooths"][0]["lambda"]
    assert d["smooths"][0]["variance"] == pytest.approx(1 / lam)
    if name != "binary_tp_probit":  # its likelihood is flat in the smooth's variance (see GLMM_PRED)
        assert np.sqrt(lam) == pytest.approx(np.sqrt(r["lambda"][0]), rel=GLMM_SD)


@pytest.mark.parametrize("name", CASES)
def test_smooth_table(fits: dict[str, Any], name: str) -> None:
    """summary.gam's smooth-terms table with the scale known (binomial, Poisson): Chi.sq and its p-value."""
    r, s = REF[name], fits[name].data["smooths"][0]
    assert r["s_table_columns"] == ["edf", "Ref.df", "Chi.sq", "p-value"]
    edf, ref_df, chi_sq, p = r["s_table"]
    assert s["ref_df"] == pytest.approx(ref_df, rel=GLMM_SD)
    assert s["chi_sq"] == pytest.approx(chi_sq, rel=S_TABLE)
    assert abs(s["p_value"] - p) <= R_DAVIES
    assert "F" not in s


@pytest.mark.parametrize(("weights", "q"), [([1.0] * 3, 5.0), ([1.0] * 4, 71.3), ([1.0] * 5, 20.0), ([1.0], 0.5)])
def test_prob_above_is_chi_square(weights: list[float], q: float) -> None:
    """Equal unit weights: the sum is a chi-square on their number of df."""
    assert prob_above(weights, q) == pytest.approx(stats.chi2.sf(q, len(weights)), rel=1e-9, abs=1e-15)


def test_prob_above_mixture() -> None:
    """Weights 2 and 1/2: P(2 X1 + X2 / 2 > q) by one-dimensional integration over X1."""
    from scipy import integrate

    q = 6.0
    exact = integrate.quad(lambda x: stats.chi2.pdf(x, 1) * stats.chi2.sf(max(0.0, 2 * (q - 2 * x)), 1), 0, q / 2)[0]
    exact += stats.chi2.sf(q / 2, 1)
    assert prob_above([2.0, 0.5], q) == pytest.approx(exact, rel=1e-8)


@pytest.mark.parametrize("name", CASES)
def test_predictions(fits: dict[str, Any], name: str) -> None:
    """Population-level predictions with standard errors: predict.gam's on the link scale, and the response scale
    by the inverse link with the delta method."""
    r, rows = REF[name], fits[name].data["predictions"]
    fit, se = np.array([p["fit"] for p in rows]), np.array([p["se"] for p in rows])
    ref_se = np.array(r["predict_link_se"])
    assert np.all(np.abs(fit - r["predict_link"]) <= GLMM_PRED * ref_se)
    np.testing.assert_allclose(se, ref_se, rtol=GLMM_PRED)
    g = fits[name].result
    mu = np.array([p["fit_response"] for p in rows])
    np.testing.assert_allclose(mu, g.glmm.family.linkinv(fit), rtol=1e-12)
    se_mu = np.array([p["se_response"] for p in rows])
    h = 1e-6
    slope = (g.glmm.family.linkinv(fit + h) - g.glmm.family.linkinv(fit - h)) / (2 * h)
    np.testing.assert_allclose(se_mu, np.abs(slope) * se, rtol=1e-6)


def test_cli_table_and_json() -> None:
    formula = "cbind(succ, size - succ) ~ s(x, bs='cr', k=8) + (1|g)"
    res = run_in_process(["gamm", DATA, formula, "--family", "binomial"])
    assert res.code == 0, res.err
    for words in ("Family: binomial  ( logit )", "Laplace Approximation", "Smooth terms", "z value", "Xr", "Chi.sq"):
        assert words in res.out
    d = run_in_process(["gamm", DATA, formula, "--family", "binomial", "--json"]).json()
    assert d["model"] == "gamm_glmm" and d["smooths"][0]["term"] == "s(x)"
    assert d["deviance"] <= REF["cbind_cr"]["minus2loglik"] + GLMM_DEV


def test_errors(tmp_path: Path) -> None:
    s = "s(x, bs='cr', k=8) + (1|g)"
    check(["gamm", DATA, f"count ~ {s}", "--family", "binomial"], 1, "must be 0 or 1")
    check(["gamm", DATA, f"z ~ {s}", "--family", "poisson"], 1, "non-negative whole numbers")
    check(["gamm", DATA, f"y ~ {s}", "--family", "poisson", "--link", "logit"], 2, "logit")
    check(["gamm", DATA, f"cbind(succ, size - succ) ~ {s}", "--family", "poisson"], 2, "binomial")
    check(["gamm", DATA, f"cbind(size, succ - size) ~ {s}", "--family", "binomial"], 1, "more successes")
    check(["gamm", DATA, f"y ~ {s}", "--family", "binomial", "--nagq", "5"], 2, "Laplace")
    check(["gamm", DATA, f"y ~ {s}", "--family", "binomial", "--weights", "size"], 2, "--weights")
