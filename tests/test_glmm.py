"""Generalized linear mixed models against lme4's glmer (tests/reference/make_glmm.R -> glmm.json): the deviance,
fixed effects, standard errors, variance components, conditional modes and fitted values, and the Laplace and
adaptive Gauss-Hermite deviances at glmer's own estimates."""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import pytest
from conftest import (
    GLMM_DEV,
    GLMM_FIXEF,
    GLMM_SD,
    GLMM_SE,
    OPT_DEV,
    REFERENCE_DIR,
    ROUNDING,
    load_reference,
    run_in_process,
)

from mmcli import csvblocks, data
from mmcli.commands import ModelOptions
from mmcli.commands_glmm import glmm_model

MODELS = {m["name"]: m for m in load_reference("glmm")["models"]}
EXTRA = {"cbpp": ["--factor", "period"], "cbpp_agq25": ["--factor", "period"], "grouseticks": ["--factor", "YEAR"]}


def args(ref: dict[str, Any], command: str = "fit") -> list[str]:
    out = [command, REFERENCE_DIR / ref["data"], ref["formula"], "--family", ref["family"], "--link", ref["link"]]
    out += EXTRA.get(ref["name"], []) + ["--nagq", str(ref["nAGQ"]), "--json"]
    return out


@cache
def fitted(name: str) -> dict[str, Any]:
    """The `fit --family ... --fitted --json` object of a reference model (each model is fitted once)."""
    return run_in_process([*args(MODELS[name]), "--fitted"]).json()


def sds(d: dict[str, Any]) -> np.ndarray:
    return np.array([r["std_dev"] for r in d["random_effects"]])


def ref_sds(ref: dict[str, Any]) -> np.ndarray:
    vc = ref["varcorr"]
    return np.array([s for s, v2 in zip(vc["sdcor"], vc["var2"]) if v2 in (None, "NA")])


@pytest.mark.parametrize("name", list(MODELS))
def test_against_glmer(name: str) -> None:
    """Within the GLMM tiers of glmer run to convergence (tolPwrss = 1e-10), and the deviance no worse than that
    of glmer's defaults."""
    ref, d = MODELS[name], fitted(name)
    assert d["converged"] and d["family"] == ref["family"] and d["link"] == ref["link"]
    assert d["formula"] == ref["formula"]  # cbind(s, n - s) and offset(log(x)) written back as lme4 reads them
    assert d["deviance"] <= min(ref["deviance"], ref["default"]["deviance"]) + GLMM_DEV
    assert d["deviance"] >= ref["deviance"] - GLMM_DEV
    assert [f["term"] for f in d["fixed_effects"]] == ref["fixef_names"]
    beta = np.array([f["estimate"] for f in d["fixed_effects"]])
    se = np.array([f["std_error"] for f in d["fixed_effects"]])
    assert np.max(np.abs(beta - ref["fixef"])) <= GLMM_FIXEF * np.max(np.abs(ref["fixef"]))
    np.testing.assert_allclose(se, ref["se"], rtol=GLMM_SE)
    np.testing.assert_allclose(sds(d), ref_sds(ref), rtol=GLMM_SD)
    np.testing.assert_allclose([f["z_value"] for f in d["fixed_effects"]], ref["z"], rtol=GLMM_SE)
    assert d["df_resid"] == ref["df_resid"]
    k = len(beta) + len(d["theta"])  # AIC, BIC and logLik follow from the deviance as lme4's
    assert d["aic"] == pytest.approx(d["deviance"] + 2 * k, rel=ROUNDING)
    assert d["bic"] == pytest.approx(d["deviance"] + np.log(d["nobs"]) * k, rel=ROUNDING)
    assert ref["AIC"] == pytest.approx(ref["deviance"] + 2 * k, rel=ROUNDING)
    assert d["loglik"] == pytest.approx(-d["deviance"] / 2, rel=ROUNDING)


@pytest.mark.parametrize("name", [n for n, m in MODELS.items() if not m["default"]["messages"]])
def test_against_glmer_defaults(name: str) -> None:
    """The acceptance: deviance within GLMM_DEV of glmer's defaults (or lower), fixed effects within GLMM_FIXEF,
    random-effect SDs within GLMM_SD, where glmer's defaults converged."""
    ref, d = MODELS[name]["default"], fitted(name)
    assert d["deviance"] <= ref["deviance"] + GLMM_DEV
    beta = np.array([f["estimate"] for f in d["fixed_effects"]])
    assert np.max(np.abs(beta - ref["fixef"])) <= GLMM_FIXEF * np.max(np.abs(ref["fixef"]))
    np.testing.assert_allclose(sds(d), ref_sds(ref), rtol=GLMM_SD)


def test_standard_errors_of_glmer_defaults() -> None:
    """glmer's default standard errors, within GLMM_SE, except cbpp's: there glmer's default PIRLS tolerance moves
    its Hessian by 1.3e-2 (with tolPwrss = 1e-10 it agrees with mmcli to 1e-5; test_against_glmer)."""
    for name, ref in MODELS.items():
        if ref["default"]["messages"] or name == "cbpp":
            continue
        se = np.array([f["std_error"] for f in fitted(name)["fixed_effects"]])
        np.testing.assert_allclose(se, ref["default"]["se"], rtol=GLMM_SE, err_msg=name)
    se = np.array([f["std_error"] for f in fitted("cbpp")["fixed_effects"]])
    assert np.max(np.abs(se / MODELS["cbpp"]["default"]["se"] - 1)) < 2 * GLMM_SE


@pytest.mark.parametrize("name", ["cbpp", "binary_slope", "grouseticks", "poisson_offset"])
def test_fitted_values(name: str) -> None:
    ref, d = MODELS[name], fitted(name)
    eta, mu = np.array(d["fitted"]["link"]), np.array(d["fitted"]["response"])
    np.testing.assert_allclose(eta, ref["fitted_link"], rtol=GLMM_SD, atol=GLMM_SD * np.max(np.abs(eta)))
    np.testing.assert_allclose(mu, ref["fitted_response"], rtol=GLMM_SD, atol=GLMM_SD * np.max(np.abs(mu)))


@pytest.mark.parametrize("name", ["cbpp", "binary_slope", "binary_crossed"])
def test_conditional_modes(name: str) -> None:
    """ranef --family: the conditional modes and conditional SDs of every level and term, as ranef(condVar = TRUE)."""
    ref = MODELS[name]
    rows = run_in_process(args(ref, "ranef")).json()["ranef"]
    got = {(r["group"], str(r["level"]), r["term"]): (r["mode"], r["cond_sd"]) for r in rows}
    for block in ref["ranef"]:
        modes, csd = np.array(block["modes"]), np.array(block["cond_sd"])
        ours = np.array([[got[(block["group"], str(lv), t)] for t in block["terms"]] for lv in block["levels"]])
        scale = np.max(np.abs(modes))
        np.testing.assert_allclose(ours[:, :, 0], modes, rtol=GLMM_SD, atol=GLMM_SD * scale)
        np.testing.assert_allclose(ours[:, :, 1], csd, rtol=GLMM_SD)


@pytest.mark.parametrize("name", ["cbpp", "cbpp_agq25", "binary_cloglog", "binary_crossed", "poisson_offset"])
def test_deviance_at_glmer_estimates(name: str) -> None:
    """The Laplace (or adaptive Gauss-Hermite) deviance at glmer's own theta and beta is glmer's deviance: the
    formula, without the optimizer (glmer's deviance function evaluated at its estimates with tolPwrss = 1e-12)."""
    from mmcli.commands import ModelOptions
    from mmcli.commands_glmm import glmm_model

    ref = MODELS[name]
    factor = tuple(EXTRA.get(name, [])[1::2])
    model = glmm_model(
        str(REFERENCE_DIR / ref["data"]),
        ModelOptions(formula=ref["formula"], factor=factor),
        family=ref["family"],
        link=ref["link"],
        nagq=ref["nAGQ"],
    )
    dev = model.deviance(np.array(ref["theta"]), np.array(ref["fixef"]))
    assert dev == pytest.approx(ref["deviance_at_estimates"], abs=OPT_DEV)


def test_blocks_of_rows_give_the_same_fit(monkeypatch) -> None:
    """A grouping column read a few rows at a time (labels first met in later blocks) gives the fit of the file
    read in one block, number for number, and so glmer's."""
    ref = MODELS["poisson_offset"]
    whole = fitted("poisson_offset")
    monkeypatch.setattr(csvblocks, "BLOCK_ROWS", 50)
    calls: list[int] = []
    monkeypatch.setattr(data, "read_blocks", lambda *a, **k: calls.append(1) or csvblocks.read_blocks(*a, **k))
    blocks = run_in_process(args(ref)).json()
    assert calls, "the block read was not taken"
    for d in (whole, blocks):
        d["optimizer"].pop("seconds")
    assert blocks == {k: v for k, v in whole.items() if k != "fitted"}
    assert blocks["deviance"] <= ref["deviance"] + GLMM_DEV


def test_binary_response_held_as_int32() -> None:
    """A 0/1 response is held as int32 (half the memory of floats): numpy promotes every operation on it to
    float64, so the deviance at glmer's estimates is glmer's (as for the float response of a cbind model)."""
    ref = MODELS["binary_probit"]
    opts = ModelOptions(formula=ref["formula"])
    model = glmm_model(str(REFERENCE_DIR / ref["data"]), opts, family="binomial", link=ref["link"])
    assert model.resp.y.dtype == np.int32 and model.prior.strides == (0,)  # unit prior weights: a view of one 1
    theta, beta = np.asarray(ref["theta"], dtype=float), np.asarray(ref["fixef"], dtype=float)
    assert model.deviance(theta, beta) == pytest.approx(ref["deviance_at_estimates"], abs=OPT_DEV)


def test_design_consumes_the_fixed_columns() -> None:
    """With ``consume``, the frame loses the columns only the fixed part uses, once X holds them; the response,
    the offset's and the grouping columns stay; X is the one built without consuming, and without y."""
    from mmcli.design import build_design
    from mmcli.formula import parse_formula

    spec = parse_formula("count ~ x + offset(log(exposure)) + (1 | g)")
    table = data.load(
        str(REFERENCE_DIR / "glmm_binary.csv"), numeric=["count", "exposure"], categorical=["g"], other=["x"]
    )
    kept = build_design(spec, table.frame.copy(), set())
    frame = table.frame.copy()
    plain = build_design(spec, frame, set(), with_y=False, consume=True)
    assert list(frame.columns) == ["count", "exposure", "g"]
    assert not plain.has_y and plain.X.shape == (len(frame), 2) and kept.has_y
    np.testing.assert_array_equal(plain.X, kept.X)
    np.testing.assert_array_equal(plain.offset, kept.offset)
    assert [t.nlevels for t in plain.terms] == [t.nlevels for t in kept.terms]
