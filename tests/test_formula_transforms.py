"""The transforms and operators mmcli evaluates itself, against lme4 (tests/reference/make_transforms.R).

Each reference fit gives the model matrix's column names (R's term labels: ``poly(Days, 2)1``, ``I(Days^2)``,
``recipeA:temp``), its first rows, the ML estimates and log-likelihood, and R's fixed-effects prediction at new
rows, where poly() and scale() keep what they learned from the fitted data (R's makepredictcall).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import EXACT, OPT_DEV, OPT_FIXEF, OPT_SE, REFERENCE_DIR, data_path, load_reference, run_in_process

from mmcli.data import load
from mmcli.design import build_design
from mmcli.formula import parse_formula

FITS = load_reference("transforms")["fits"]


def _path(name: str) -> str:
    return str(REFERENCE_DIR / name if name == "awkward_names.csv" else data_path(name))


def _design(ref: dict) -> tuple:
    spec = parse_formula(ref["formula"])
    groups = [f for t in spec.random for f in t.factors]
    used = spec.variables()
    table = load(
        _path(ref["data"]),
        numeric=[spec.response],
        categorical=groups,
        other=[c for c in used if c != spec.response and c not in groups],
    )
    return spec, build_design(spec, table.frame, set())


@pytest.mark.parametrize("ref", FITS, ids=[f["formula"] for f in FITS])
def test_model_matrix_is_rs(ref):
    """Column names exactly, and the first rows to the exact tier (a deterministic evaluation)."""
    _, design = _design(ref)
    assert design.xnames == ref["xnames"]
    want = np.array(ref["X_head"])
    np.testing.assert_allclose(design.X[:3], want, rtol=EXACT, atol=EXACT * np.abs(want).max())


@pytest.mark.parametrize("ref", FITS, ids=[f["formula"] for f in FITS])
def test_prediction_at_new_rows_keeps_the_fitted_state(ref):
    """X(new rows) @ lme4's estimates = lme4's predict(re.form = NA): poly's and scale's state carried over."""
    _, design = _design(ref)
    new = pd.DataFrame(ref["new_rows"])
    for c in new.columns:
        if new[c].dtype == object:
            new[c] = new[c].astype("category")
    got = design.fixed.rows(new) @ np.array(ref["fixef"])
    want = np.array(ref["prediction"])
    np.testing.assert_allclose(got, want, rtol=EXACT, atol=EXACT * np.abs(want).max())


@pytest.mark.parametrize("ref", FITS, ids=[f["formula"] for f in FITS])
def test_fit_matches_lme4(ref):
    res = run_in_process(["fit", _path(ref["data"]), ref["formula"], "--json"]).json()
    fe = res["fixed_effects"]
    assert [r["term"] for r in fe] == ref["xnames"]
    est = np.array([r["estimate"] for r in fe])
    scale = np.abs(ref["fixef"]).max()
    np.testing.assert_allclose(est, ref["fixef"], rtol=0, atol=OPT_FIXEF * scale)
    np.testing.assert_allclose([r["std_error"] for r in fe], ref["se"], rtol=OPT_SE)
    assert abs(res["loglik"] - ref["logLik"]) <= OPT_DEV
    assert [g["group"] for g in res["random_effects"] if g["group"] != "Residual"][0] == ref["groups"][0]


def test_center_is_scale_without_scaling():
    """center(x) (formulaic's spelling) is R's scale(x, scale = FALSE)."""
    ref = next(f for f in FITS if "scale = FALSE" in f["formula"])
    res = run_in_process(["fit", _path(ref["data"]), "Reaction ~ center(Days) + (1 | Subject)", "--json"]).json()
    assert [r["term"] for r in res["fixed_effects"]] == ["(Intercept)", "center(Days)"]
    est = [r["estimate"] for r in res["fixed_effects"]]
    np.testing.assert_allclose(est, ref["fixef"], rtol=0, atol=OPT_FIXEF * np.abs(ref["fixef"]).max())
    assert abs(res["loglik"] - ref["logLik"]) <= OPT_DEV


def test_a_non_syntactic_name_keeps_its_backquotes_as_in_r(tmp_path):
    """R labels the column of `a b` with its backquotes: model.matrix(~ `a b` * g) has "`a b`" and "`a b`:gy"."""
    ref = next(f for f in FITS if f["data"] == "sleepstudy.csv" and f["formula"].startswith("Reaction ~ Days + I("))
    frame = pd.read_csv(data_path("sleepstudy.csv"))
    frame.columns = ["my y", "Days count", "Subj ID"]
    path = tmp_path / "names.csv"
    frame.to_csv(path, index=False)
    res = run_in_process(
        ["fit", path, "`my y` ~ `Days count` + I(`Days count`^2) + (`Days count` | `Subj ID`)", "--json"]
    ).json()
    assert [r["term"] for r in res["fixed_effects"]] == ["(Intercept)", "`Days count`", "I(`Days count`^2)"]
    est = [r["estimate"] for r in res["fixed_effects"]]
    np.testing.assert_allclose(est, ref["fixef"], rtol=0, atol=OPT_FIXEF * np.abs(ref["fixef"]).max())
    assert abs(res["loglik"] - ref["logLik"]) <= OPT_DEV
