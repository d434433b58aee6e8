"""Thin plate (tp, ts), P-spline (ps) and by= smooths against mgcv 1.8-41 and gamm4 0.2-6.

Reference: tests/reference/tprs.json, made by tests/reference/make_tprs.R (R 4.2.2) from MASS's mcycle
(tests/reference/mcycle.csv), sleepstudy and simulated data (tests/reference/tprs_sim.csv).

A tp basis is mgcv's up to an invertible map of its coefficients (eigenvectors are defined up to sign, and the
null space of the side condition up to rotation; mgcv's Lanczos step picks its own): so the bases are compared
through what does not depend on that choice: the column space of X (the projection onto it), the eigenvalues of
(X'X)^-1 S, and λ/S.scale, the weight on the thin plate penalty itself. The ps basis is deterministic and is
compared entry by entry. The fits are compared twice: at gamm4's own variance parameters (mapped through
λ/S.scale to mmcli's scaling of the penalty), where everything is a deterministic evaluation, and at mmcli's
own REML optimum.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import EXACT, OPT_DEV, OPT_PAR, R_EIGEN, R_FLOOR, ROUNDING

from mmcli.cli import main
from mmcli.data import load
from mmcli.design import build_design
from mmcli.errors import ModelError
from mmcli.formula import parse_formula
from mmcli.gamm import fit_gamm
from mmcli.pspline import ps_basis
from mmcli.smooths import smooth_construct
from mmcli.tprs import eta, subsample_knots, tprs_basis

REFDIR = Path(__file__).resolve().parent / "reference"
ROOT = REFDIR.parent.parent
REF = json.loads((REFDIR / "tprs.json").read_text())
MCYCLE = REFDIR / "mcycle.csv"
SIM = REFDIR / "tprs_sim.csv"
SLEEP = ROOT / "sample_data" / "sleepstudy.csv"

DATA = {
    "mcycle": (MCYCLE, {"numeric": ["accel", "times"], "categorical": []}),
    "sleep": (SLEEP, {"numeric": ["Reaction", "Days"], "categorical": ["Subject"]}),
    "sim": (SIM, {"numeric": ["y", "x", "z"], "categorical": ["fa", "g"]}),
}
FORMULA = {  # mmcli's formula of each reference fit (gamm4's formula plus its random part)
    "mcycle_tp": "accel ~ s(times)",
    "mcycle_tp_k20": "accel ~ s(times, k = 20)",
    "mcycle_ps": "accel ~ s(times, bs = 'ps')",
    "sleep_tp": "Reaction ~ s(Days) + (1 | Subject)",
    "sim_tp_k15": "y ~ s(x, k = 15)",
    "sim_tp_k15_re": "y ~ s(x, k = 15) + (1 | g)",
    "sim_2d": "y ~ s(x, z)",
    "sim_2d_re": "y ~ s(x, z) + (1 | g)",
    "sim_fby": "y ~ fa + s(x, by = fa)",
    "sim_fby_re": "y ~ fa + s(x, by = fa) + (1 | g)",
    "sim_nby": "y ~ s(x, by = z)",
    "sim_nby_re": "y ~ s(x, by = z) + (1 | g)",
}


def frame(key: str) -> pd.DataFrame:
    path, kinds = DATA[key.split("_")[0]]
    return load(str(path), **kinds).frame


def column(key: str, name: str) -> np.ndarray:
    return frame(key)[name].to_numpy(dtype=float)


def projection(X: np.ndarray) -> np.ndarray:
    Q = np.linalg.qr(X)[0]
    return Q @ Q.T


def eigen_gap_condition(knots: np.ndarray, k: int) -> float:
    """|e_1| / (|e_k| - |e_k+1|) for the eigenvalues e of E by magnitude: how well the k leading
    eigenvectors of E are determined (Davis and Kahan), whatever the algorithm that finds them."""
    knots = knots.reshape(knots.shape[0], -1)
    d = knots.shape[1]
    r = np.sqrt(((knots[:, None, :] - knots[None, :, :]) ** 2).sum(axis=2))
    E = eta(r, 2, d)
    a = np.sort(np.abs(np.linalg.eigvalsh(E)))[::-1]
    return float(a[0] / (a[k - 1] - a[k]))


def gen_eigen(X: np.ndarray, S: np.ndarray) -> np.ndarray:
    """The eigenvalues of (X'X)^-1 S: the same for X A, A'SA whatever the invertible A."""
    return np.sort(np.linalg.eigvals(np.linalg.solve(X.T @ X, S)).real)


def rel(got: Any, want: Any, scale: float | None = None) -> float:
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    return float(np.max(np.abs(got - want)) / (scale if scale is not None else np.max(np.abs(want))))


# ------------------------------------------------------------------------------------------------------------
# the bases


BASIS_CASES = {  # reference key -> (data, variables, bs, k)
    "mcycle_tp": ("mcycle", ("times",), "tp", 10),
    "mcycle_tp_k20": ("mcycle", ("times",), "tp", 20),
    "mcycle_ts": ("mcycle", ("times",), "ts", 10),
    "sim_tp_2d": ("sim", ("x", "z"), "tp", 30),
}


@pytest.mark.parametrize("key", list(BASIS_CASES))
def test_tp_basis_invariants(key):
    data, vars, bs, k = BASIS_CASES[key]
    r = REF["bases"][key]
    f = frame(data)
    x = np.column_stack([f[v].to_numpy(dtype=float) for v in vars])
    sm = smooth_construct(x if len(vars) > 1 else x[:, 0], var=vars[0], vars=vars, bs=bs, k=k)
    X, S = sm.X_unconstrained, sm.S_unconstrained
    Xr, Sr = np.asarray(r["X"]), np.asarray(r["S"])
    assert X.shape == Xr.shape and (sm.rank, sm.null_space_dim) == (
        min(r["rank"], k - 1),
        max(0, r["null_space_dim"] - 1),
    )
    tol = R_EIGEN * eigen_gap_condition(sm.knots - np.asarray(r["shift"]), k) * np.linalg.cond(Xr)
    assert rel(projection(X), projection(Xr), scale=1.0) <= tol
    if bs == "ts":  # the shrunk null space depends on the basis' eigenvector signs (see test_ts_penalty)
        return
    assert rel(gen_eigen(X, S), gen_eigen(Xr, Sr)) <= tol
    # after smoothCon: the same column space and, scale for scale, the same penalty
    Xc, Sc = np.asarray(r["Xc"]), np.asarray(r["Sc"])
    assert rel(projection(sm.X), projection(Xc), scale=1.0) <= tol
    assert rel(gen_eigen(sm.X, sm.S) * sm.S_scale, gen_eigen(Xc, Sc) * r["S_scale"]) <= tol
    # the knots are the unique points, as mgcv's Xu (centred by its shift)
    knots = np.asarray(r["knots"]).reshape(-1, len(vars)) + np.asarray(r["shift"])
    assert rel(np.sort(sm.knots, axis=0), np.sort(knots, axis=0)) <= EXACT


def test_ps_basis_is_mgcvs_entry_by_entry():
    r = REF["bases"]["mcycle_ps"]
    times = column("mcycle", "times")
    b = ps_basis(times, 10)
    assert rel(b.knots, r["knots"]) <= EXACT
    assert rel(b.X, r["X"]) <= EXACT and rel(b.S, r["S"]) <= EXACT
    sm = smooth_construct(times, var="times", bs="ps", k=10)
    assert rel(sm.X, r["Xc"]) <= EXACT and rel(sm.S, r["Sc"]) <= EXACT
    assert rel(sm.S_scale, r["S_scale"]) <= EXACT
    # beyond the data: linear from the ends, continuous at them
    lo, hi = b.knots[3], b.knots[-4]
    eps = 1e-9 * (hi - lo)
    inside, outside = b.matrix(np.array([lo, hi])), b.matrix(np.array([lo - eps, hi + eps]))
    assert rel(outside, inside, scale=1.0) <= 1e-6


def test_more_points_than_max_knots_draws_mgcvs_knots():
    """mgcv keeps 2000 of the 2500 unique points, drawn by R's sample() after set.seed(1)."""
    r = REF["big"]
    x, y = np.asarray(r["x"]), np.asarray(r["y"])
    b = tprs_basis(x, 10)
    assert b.knots.shape[0] == 2000
    assert rel(np.sort(b.knots[:, 0] + b.shift[0]), r["knots"]) <= EXACT
    fitted = b.X @ np.linalg.lstsq(b.X, y, rcond=None)[0]
    cond = np.linalg.cond(b.X)
    assert rel(fitted, r["projection"]) <= R_EIGEN * cond**2
    assert rel(gen_eigen(b.X, b.S), r["gen_eigen"]) <= R_EIGEN * cond**2


def test_r_sample_after_set_seed_1():
    """R: set.seed(1); sample(1:5000, 5) is 1017 4775 2177 1533 4567 (1-based)."""
    assert list(subsample_knots(5000, 5) + 1) == [1017, 4775, 2177, 1533, 4567]


def test_ts_penalty():
    """ts is tp with the penalty's M null-space eigenvalues set to 0.1 times its smallest positive one, in the
    basis as built (mgcv's definition; which basis that is depends on the signs of E's eigenvectors, so
    mgcv's ts penalty, unlike its tp penalty, is not determined by the data alone)."""
    times = column("mcycle", "times")
    tp, ts = tprs_basis(times, 10), tprs_basis(times, 10, shrink=0.1)
    assert (ts.rank, ts.null_space_dim) == (10, 0)
    e_tp, e_ts = np.linalg.eigvalsh(tp.S)[::-1], np.linalg.eigvalsh(ts.S)[::-1]
    assert rel(e_ts[:8], e_tp[:8]) <= ROUNDING and rel(e_ts[8:], 0.1 * e_tp[7]) <= ROUNDING
    assert rel(projection(ts.X), projection(tp.X), scale=1.0) <= ROUNDING


def test_tp_prediction_matrix_reproduces_the_basis_at_the_data():
    sm = smooth_construct(column("mcycle", "times"), var="times", bs="tp", k=10)
    assert rel(sm.predict_matrix(column("mcycle", "times")), sm.X) <= ROUNDING * 1e3


# ------------------------------------------------------------------------------------------------------------
# the fits


def design_and_fit(key: str, theta: np.ndarray | None = None) -> tuple[Any, Any]:
    d = build_design(parse_formula(FORMULA[key], allow_smooths=True), frame(key), set())
    return d, fit_gamm(d, reml=True, theta=theta)


@pytest.fixture(scope="module")
def fits() -> dict[str, tuple[Any, Any]]:
    return {key: design_and_fit(key) for key in FORMULA}


def theta_from_gamm4(key: str, design: Any) -> np.ndarray:
    """gamm4's theta in mmcli's term order and penalty scaling: a smooth's λ is taken as the same weight on
    the unscaled penalty, λ/S.scale, so θ = σ_s/σ is multiplied by sqrt(S.scale_R / S.scale_mmcli)."""
    r = REF["fits"][key]
    sd = {row["grp"]: row["sdcor"] for row in r["varcorr"]}
    out = []
    for t in design.terms:
        th = sd[t.group] / r["sigma"]
        for j, sp in enumerate(design.smooths):
            if sp.term >= 0 and design.terms[sp.term] is t:
                th *= np.sqrt(r["smooths"][j]["S_scale"] / sp.smooth.S_scale)
        out.append(th)
    return np.array(out)


def grid(key: str) -> pd.DataFrame:
    g = REF["fits"][key]["grid"]
    out = pd.DataFrame({c: np.asarray(v, dtype=float) for c, v in g.items() if c != "fa"})
    if "fa" in g:
        out["fa"] = g["fa"]
    return out


def floor_of(key: str) -> float:
    """EXACT, or R_FLOOR where gamm4 keeps a zero smooth variance's λ finite (an EDF of exactly 1)."""
    return R_FLOOR if any(abs(s["edf"] - round(s["edf"])) < 1e-6 for s in REF["fits"][key]["smooths"]) else EXACT


@pytest.mark.parametrize("key", list(FORMULA))
def test_at_gamm4s_parameters_everything_matches(key, fits):
    r = REF["fits"][key]
    design, _ = fits[key]
    _, g = design_and_fit(key, theta_from_gamm4(key, design))
    floor = floor_of(key)
    assert [sp.smooth.term for sp in design.smooths] == [s["label"] for s in r["smooths"]]
    assert ["X" + n for n in g.lmm.xnames] == r["mer_fixef_names"] or r["mer_fixef_names"] == ["X"]
    assert abs(g.lmm.objective - r["REMLcrit"]) <= EXACT * abs(r["REMLcrit"])
    assert rel(g.edf, [s["edf"] for s in r["smooths"]], scale=1.0) <= floor
    fit, se = g.predict(design.new_rows(grid(key)))
    assert rel(fit, r["predict"], scale=float(np.max(r["predict_se"]))) <= floor
    assert rel(se, r["predict_se"]) <= max(floor, EXACT)


@pytest.mark.parametrize("key", list(FORMULA))
def test_reml_optimum_against_gamm4(key, fits):
    """mmcli's own optimum: at least as good as gamm4's, within OPT_DEV; EDF and predictions to OPT_PAR."""
    r = REF["fits"][key]
    design, g = fits[key]
    assert g.lmm.converged
    assert g.lmm.objective <= r["REMLcrit"] + EXACT * abs(r["REMLcrit"])
    assert r["REMLcrit"] - g.lmm.objective <= OPT_DEV
    assert rel(g.edf, [s["edf"] for s in r["smooths"]], scale=1.0) <= OPT_PAR
    fit, se = g.predict(design.new_rows(grid(key)))
    assert rel(fit, r["predict"], scale=float(np.min(r["predict_se"]))) <= OPT_PAR
    assert rel(se, r["predict_se"]) <= OPT_PAR
    for j, s in enumerate(r["smooths"]):  # λ/S.scale: the weight on the thin plate penalty itself
        lam = g.lam(j)
        if lam is not None and s["sp"] < 1e6:
            assert rel(lam / design.smooths[j].smooth.S_scale, s["sp"] / s["S_scale"]) <= 10 * OPT_PAR


# ------------------------------------------------------------------------------------------------------------
# the command line and bad input


def run(capsys: Any, *args: Any) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return (0 if e.value.code is None else int(e.value.code)), out.out, out.err


def test_cli_factor_by_names_and_json(capsys):
    code, out, _ = run(capsys, "gamm", SIM, "y ~ fa + s(x, by = fa) + (1 | g)", "--json")
    assert code == 0
    d = json.loads(out)
    assert [s["term"] for s in d["smooths"]] == ["s(x):faa", "s(x):fab", "s(x):fac"]
    assert [s["basis"] for s in d["smooths"]] == ["tp"] * 3
    names = [fe["term"] for fe in d["fixed_effects"]]
    assert names == ["(Intercept)", "fab", "fac", "s(x):faaFx1", "s(x):fabFx1", "s(x):facFx1"]


def test_cli_bare_s_is_tp_without_a_note(capsys):
    code, out, err = run(capsys, "gamm", MCYCLE, "accel ~ s(times)", "--json")
    assert code == 0 and "bs" not in err
    assert json.loads(out)["smooths"][0]["basis"] == "tp"


@pytest.mark.parametrize(
    ("formula", "message"),
    [
        ("y ~ s(x, z, k = 500)", r"s\(x,z\) has 240 unique combinations of x, z, too few for k = 500: use k <= 240"),
        ("y ~ s(x, k = 300)", r"s\(x\) has 240 unique values, too few for k = 300"),
        ("y ~ s(x, by = nothere)", r"nothere"),
        ("y ~ s(x, z, k = 3)", r"k = 3 is too small for s\(x,z\)"),
        ("y ~ s(x, z, bs = 'cr')", r"A cr smooth takes one column"),
        ("y ~ s(x, by = 2)", r"by in s\(\) must be a column name"),
    ],
)
def test_cli_bad_input_one_error_line(capsys, formula, message):
    import re

    code, out, err = run(capsys, "gamm", SIM, formula)
    assert code in (1, 2) and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and re.search(message, lines[0]), err


def test_k_too_small_for_tp_in_the_library():
    with pytest.raises(ModelError, match=r"too small for s\(\): a thin plate smooth .* needs k >= 4"):
        tprs_basis(np.random.default_rng(1).random((50, 2)), 3)


def test_formula_reads_mgcv_smooths():
    spec = parse_formula("y ~ f + s(x, z, by = f, k = 20) + s(x) + s(x, z, w, bs = 'ts')", allow_smooths=True)
    a, b, c = spec.smooths
    assert (a.variables, a.bs, a.k, a.by, a.bs_given) == (("x", "z"), "tp", 20, "f", False)
    assert (b.variables, b.bs, b.k, b.by) == (("x",), "tp", 10, None)
    assert (c.variables, c.bs, c.k) == (("x", "z", "w"), "ts", 110)  # M = 10 for d = 3, plus 100
    assert parse_formula("y ~ s(x, z)", allow_smooths=True).smooths[0].k == 30
    assert a.label == "s(x,z):f" and str(a) == 's(x, z, bs = "tp", k = 20, by = f)'
    assert spec.variables() == ["y", "f", "x", "z", "w"]


@pytest.mark.parametrize(
    ("formula", "message"),
    [
        ("y ~ s(x, x)", "names 'x' twice"),
        ("y ~ s(x, by = x)", "also a variable"),
        ("y ~ s(x, m = 2)", "mmcli knows bs, k and by"),
        ("y ~ s(x, z, bs = 'ps')", "A ps smooth takes one column"),
        ("y ~ s(x + z)", "must be column names"),
    ],
)
def test_formula_rejects(formula, message):
    from mmcli.errors import FormulaError

    with pytest.raises(FormulaError, match=message):
        parse_formula(formula, allow_smooths=True)


def test_one_variable_basis_as_a_cubic_spline_equals_the_radial_sum():
    """With many knots, Σ_j a_j |x - k_j|³ is evaluated as the cubic spline it is (O(n k), not O(n N k))."""
    from mmcli.tprs import _poly

    x = np.random.default_rng(3).uniform(0.0, 1.0, 600)
    b = tprs_basis(x, 12)
    nk = b.knots.shape[0]
    assert nk > 200  # the spline path
    for new in (x, np.linspace(-0.5, 1.5, 101)):  # at the data, and beyond it on both sides
        xs = (new - b.shift)[:, None]
        r = np.abs(xs - b.knots[:, 0][None, :])
        direct = eta(r, 2, 1) @ b.UZ[:nk] + _poly(xs, list(b.powers)) @ b.UZ[nk:]
        assert rel(b.matrix(new), direct) <= ROUNDING
