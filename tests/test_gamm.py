"""mmcli.gamm, the `gamm` command and plot_gamm against gamm4 (tests/reference/gamm_*.json).

Provenance (tests/reference/README.md): R 4.2.2, lme4 1.1-31, mgcv 1.8-41, gamm4 0.2-6.
- gamm_sleepstudy_{cs,cr5,linear}.json: ``gamm4(formula, random = ~(1|Subject), data = sleepstudy)``, REML,
  predictions from ``predict(m$gam, newdata = grid, se.fit = TRUE)`` on Days 0, 0.25, ..., 9.
- sleepstudy_intercept_reml.json: ``lmer(Reaction ~ Days + (1|Subject), sleepstudy, REML = TRUE)``.
- gamm_multi.json: made by tests/reference/make_gamm_multi.R (simulated with set.seed(20240611); the data
  are in the file): ``gamm4(y ~ x1 + s(x2, bs = "cr") + s(x3, bs = "cs"), random = ~(1|g))``, REML.

Two kinds of comparison. At gamm4's own theta (the optimizer replaced by that point) everything downstream of
the optimizer is deterministic: the REML criterion, the Bayesian covariance, EDF, predictions and their
standard errors must equal gamm4's to rounding. At mmcli's optimum the numbers differ by what the optimizers
leave: gamm4 (nloptwrap, lme4's defaults) stops early on the flat REML surface of the cs fit, where mmcli's
BOBYQA reaches a criterion 7.4e-5 lower; the tolerances below are set just above the differences found.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import EXACT, OPT_DEV, OPT_FIXEF, OPT_PAR, OPT_SE, R_FLOOR, ROUNDING, close_to_printed

from mmcli.cli import main
from mmcli.data import load
from mmcli.design import build_design, smooth_group_names
from mmcli.errors import UsageError
from mmcli.formula import parse_formula
from mmcli.gamm import GammFit, fit_gamm
from mmcli.plot import plot_gamm
from mmcli.report import fit_dict

ROOT = Path(__file__).resolve().parent.parent
REFDIR = ROOT / "tests" / "reference"
SLEEP = ROOT / "sample_data" / "sleepstudy.csv"
ENGINE = ROOT / "sample_data" / "engine.csv"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

CS = "Reaction ~ s(Days, bs='cs') + (1|Subject)"
CR5 = "Reaction ~ s(Days, bs='cr', k=5) + (1|Subject)"
LINEAR = "Reaction ~ Days + (1|Subject)"
MULTI = "y ~ x1 + s(x2, bs='cr') + s(x3, bs='cs') + (1|g)"

# Tolerances: the tiers of conftest. At gamm4's own theta everything is a deterministic evaluation (EXACT),
# except where gamm4 keeps a zero smooth variance's smoothing parameter finite (cr k = 5: EDF 1 + 7.5e-8 for an
# exact straight line), held to R_FLOOR. At the optimum, the optimizer tiers: gamm4's reference is the best of
# several R processes (make_gamm_sleepstudy.R), so the two optima agree to the optimizer's tolerance.


def ref(name: str) -> dict[str, Any]:
    return json.loads((REFDIR / name).read_text())


REF = {"cs": ref("gamm_sleepstudy_cs.json"), "cr5": ref("gamm_sleepstudy_cr5.json")}
FORMULA = {"cs": CS, "cr5": CR5}


@pytest.fixture(scope="module")
def sleep() -> pd.DataFrame:
    return load(str(SLEEP), numeric=["Reaction", "Days"], categorical=["Subject"]).frame


@pytest.fixture(scope="module")
def multi_ref() -> dict[str, Any]:
    return ref("gamm_multi.json")


@pytest.fixture(scope="module")
def multi_frame(multi_ref: dict[str, Any]) -> pd.DataFrame:
    d = multi_ref["data"]
    frame = pd.DataFrame({c: np.asarray(d[c], dtype=float) for c in ("y", "x1", "x2", "x3")})
    frame["g"] = pd.Categorical(d["g"])
    return frame


class Fitted:
    """A GammFit with the design it came from, so that it predicts for a data frame of new rows."""

    def __init__(self, g: GammFit, design: Any):
        self.g, self.design = g, design

    def __getattr__(self, name: str) -> Any:
        return getattr(self.g, name)

    def predict(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return self.g.predict(self.design.new_rows(frame))


def gamm(formula: str, frame: pd.DataFrame, *, reml: bool = True, theta: np.ndarray | None = None) -> Any:
    design = build_design(parse_formula(formula, allow_smooths=True), frame, set())
    return Fitted(fit_gamm(design, reml=reml, theta=theta), design)


@pytest.fixture(scope="module")
def fits(sleep: pd.DataFrame) -> dict[str, GammFit]:
    return {key: gamm(f, sleep) for key, f in FORMULA.items()}


def fit_at_theta(formula: str, frame: pd.DataFrame, theta: np.ndarray) -> GammFit:
    """The gamm evaluated at a given theta (in lme4's term order), no optimizer."""
    return gamm(formula, frame, theta=theta)


def variances(r: dict[str, Any]) -> dict[str, float]:
    return {row["grp"]: float(row["vcov"]) for row in r["varcorr"]}


def theta_from_reference(r: dict[str, Any], g: GammFit) -> np.ndarray:
    """gamm4's theta (getME(m$mer, "theta"), named group.term) in mmcli's term order."""
    by_group = {name.split(".s(")[0].split(".(")[0]: th for name, th in zip(r["theta_names"], r["theta"])}
    return np.array([by_group[t.group] for t in g.lmm.terms])


def close(got: Any, want: Any, tol: float, scale: float | None = None) -> bool:
    """|got - want| <= tol * max(|want|, scale), elementwise."""
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    return bool(np.all(np.abs(got - want) <= tol * np.maximum(np.abs(want), 0.0 if scale is None else scale)))


def sleep_grid(r: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame({"Days": [float(row["Days"]) for row in r["grid"]]})


def smooth_variance(g: GammFit, j: int) -> float:
    lam = g.lam(j)
    return g.lmm.sigma**2 / lam if lam else 0.0


def group_variance(g: GammFit, group: str) -> float:
    if group == "Residual":
        return g.lmm.sigma**2
    k = 0
    for t in g.lmm.terms:
        if t.group == group:
            return float(g.lmm.sigma**2 * g.lmm.theta[k] ** 2)
        k += t.ntheta
    raise KeyError(group)


# ------------------------------------------------------------------------------------------------------------
# sleepstudy against gamm4: at gamm4's theta (deterministic)


@pytest.mark.parametrize("key", ["cs", "cr5"])
def test_at_gamm4_theta_everything_downstream_matches(key, sleep, fits):
    r = REF[key]
    g = fit_at_theta(FORMULA[key], sleep, theta_from_reference(r, fits[key]))
    floor = R_FLOOR if key == "cr5" else EXACT  # gamm4's finite smoothing parameter for a zero variance
    assert close(g.lmm.objective, r["REMLcrit"], EXACT)
    assert close(g.lmm.sigma**2, variances(r)["Residual"], EXACT)
    fit, se = g.predict(sleep_grid(r))
    assert close(fit, r["predict"], EXACT)
    assert close(se, r["predict_se"], floor)
    assert close(g.edf[0], r["gam_edf"]["s(Days)"], floor, scale=1.0)
    # the smooth's coefficients mapped back to the constrained basis (gamm4's trans.U, trans.D)
    want = np.array([v for k, v in r["gam_coef"].items() if k.startswith("s(Days)")])
    assert close(g.coefficients(0), want, EXACT, scale=float(np.max(np.abs(want))))
    beta = dict(zip(g.lmm.xnames, g.lmm.beta, strict=True))
    assert close(beta["(Intercept)"], r["gam_coef"]["(Intercept)"], EXACT)
    se_beta = dict(zip(g.lmm.xnames, np.sqrt(np.diag(g.lmm.vcov)), strict=True))
    for name, want_se in r["mer_se"].items():
        assert close(se_beta["(Intercept)" if name == "X" else name[1:]], want_se, floor)


# ------------------------------------------------------------------------------------------------------------
# sleepstudy against gamm4: mmcli's own optimum


@pytest.mark.parametrize("key", ["cs", "cr5"])
def test_reml_criterion_against_gamm4(key, fits):
    """At least as good as gamm4 (up to evaluation rounding), and within OPT_DEV of it."""
    crit, want = fits[key].lmm.objective, REF[key]["REMLcrit"]
    assert fits[key].lmm.reml and fits[key].lmm.converged
    assert crit <= want + EXACT * abs(want), f"{crit!r} above gamm4's {want!r}"
    assert want - crit <= OPT_DEV


@pytest.mark.parametrize("key", ["cs", "cr5"])
def test_predictions_and_se_on_the_reference_grid(key, fits):
    r = REF[key]
    fit, se = fits[key].predict(sleep_grid(r))
    assert close(fit, r["predict"], OPT_PAR, scale=max(r["predict_se"]))
    assert close(se, r["predict_se"], OPT_PAR)


@pytest.mark.parametrize(("key", "edf"), [("cs", "2.197"), ("cr5", "1.000")])
def test_edf(key, edf, fits):
    g, r = fits[key], REF[key]
    assert close(g.edf[0], r["gam_edf"]["s(Days)"], OPT_PAR, scale=1.0)
    assert close_to_printed(g.edf[0], edf)  # as summary.gam prints it


@pytest.mark.parametrize("key", ["cs", "cr5"])
def test_variance_components(key, fits):
    """Standard deviations, relative or against sigma near zero (as for lme4's fits)."""
    g, want = fits[key], variances(REF[key])
    sigma = float(np.sqrt(want["Residual"]))
    for group, v in want.items():
        got = smooth_variance(g, 0) if group == "Xr" else group_variance(g, group)
        assert close(np.sqrt(got), np.sqrt(v), OPT_PAR, scale=sigma), f"{group}: {got!r} vs gamm4 {v!r}"


def test_cs_smooth_variance_and_intercept(fits):
    g = fits["cs"]
    assert close_to_printed(smooth_variance(g, 0), "0.1817")
    assert g.lmm.xnames == ("(Intercept)",)  # cs penalizes its null space: no fixed part
    assert close(g.lmm.beta[0], REF["cs"]["mer_fixef"]["X"], OPT_FIXEF)
    assert close_to_printed(g.lmm.beta[0], "298.5079")


def test_cr5_is_a_straight_line(fits):
    g, r = fits["cr5"], REF["cr5"]
    assert g.lam(0) is None and smooth_variance(g, 0) == 0.0
    beta = dict(zip(g.lmm.xnames, g.lmm.beta, strict=True))
    scale = max(abs(v) for v in r["mer_fixef"].values())
    assert close(beta["(Intercept)"], r["mer_fixef"]["X(Intercept)"], OPT_FIXEF, scale=scale)
    assert close(beta["s(Days)Fx1"], r["mer_fixef"]["Xs(Days)Fx1"], OPT_FIXEF, scale=scale)
    want = np.array([v for k, v in r["gam_coef"].items() if k.startswith("s(Days)")])
    assert close(g.coefficients(0), want, OPT_FIXEF, scale=float(np.max(np.abs(want))))
    # a line: second differences of the curve vanish
    f, _ = g.smooth_curve(0, np.linspace(0, 9, 10))
    assert close(np.diff(f, 2), 0.0, ROUNDING, scale=float(np.max(np.abs(f))))


def test_cs_coefficients_and_curve(fits):
    """At the optimum the cs coefficients differ from gamm4's only through theta."""
    g, r = fits["cs"], REF["cs"]
    want = np.array([v for k, v in r["gam_coef"].items() if k.startswith("s(Days)")])
    assert close(g.coefficients(0), want, OPT_PAR, scale=float(np.max(np.abs(want))))
    # the curve is the basis times the coefficients, plus the intercept = the population prediction
    x = np.linspace(0, 9, 37)
    f, _ = g.smooth_curve(0, x)
    assert close(f, g.smooths[0].smooth.predict_matrix(x) @ g.coefficients(0), ROUNDING, scale=float(np.max(np.abs(f))))
    fit, _ = g.predict(pd.DataFrame({"Days": x}))
    assert close(fit, f + g.lmm.beta[0], ROUNDING, scale=float(np.max(np.abs(fit))))


# ------------------------------------------------------------------------------------------------------------
# no smooth: gamm is lmer's REML fit


def test_linear_gamm_equals_lmer_reml(sleep):
    g = gamm(LINEAR, sleep)
    r, r4 = ref("sleepstudy_intercept_reml.json"), ref("gamm_sleepstudy_linear.json")
    assert g.smooths == [] and g.edf == []
    assert abs(g.lmm.objective - r["REMLcrit"]) <= OPT_DEV
    assert abs(g.lmm.objective - r4["REMLcrit"]) <= OPT_DEV
    assert close(g.lmm.theta[0], r["theta"], OPT_PAR)
    assert close(g.lmm.sigma, r["sigma"], OPT_PAR)
    assert list(g.lmm.xnames) == list(r["fixef"])
    assert close(g.lmm.beta, list(r["fixef"].values()), OPT_FIXEF, scale=max(map(abs, r["fixef"].values())))
    assert close(np.sqrt(np.diag(g.lmm.vcov)), list(r["se"].values()), OPT_SE)
    assert close(g.lmm.vcov, r["vcov"], OPT_SE, scale=float(np.max(np.abs(r["vcov"]))))
    fit, se = g.predict(sleep_grid(r4))
    assert close(fit, r4["predict"], OPT_FIXEF, scale=max(map(abs, r4["predict"])))
    assert close(se, r4["predict_se"], OPT_SE)


# ------------------------------------------------------------------------------------------------------------
# the link: a smooth alone is a penalized least squares fit at lambda = sigma^2 / sigma_s^2


@pytest.mark.parametrize("bs", ["cr", "cs"])
def test_smooth_alone_equals_penalized_least_squares(bs):
    frame = load(str(ENGINE), numeric=["wear", "size"], categorical=[]).frame
    g = gamm(f"wear ~ s(size, bs='{bs}', k=6)", frame)
    sm, lam = g.smooths[0].smooth, g.lam(0)
    assert lam is not None and lam > 0
    assert [t.group for t in g.lmm.terms] == ["Xr"]
    y = frame["wear"].to_numpy(dtype=float)
    X = np.column_stack([np.ones(y.size), sm.X])
    P = np.zeros((X.shape[1], X.shape[1]))
    P[1:, 1:] = sm.S
    H = X.T @ X + lam * P  # minimize ||y - X beta||^2 + lam beta' S beta
    beta = np.linalg.solve(H, X.T @ y)
    yscale = float(np.max(np.abs(y)))
    assert close(g.predict(frame)[0], X @ beta, EXACT, scale=yscale)
    assert close(g.lmm.fitted, X @ beta, EXACT, scale=yscale)  # the BLUP fit is the penalized fit
    grid = np.linspace(frame["size"].min() - 0.1, frame["size"].max() + 0.1, 41)  # beyond the knots too
    Xg = np.column_stack([np.ones(grid.size), sm.predict_matrix(grid)])
    fit, se = g.predict(pd.DataFrame({"size": grid}))
    assert close(fit, Xg @ beta, EXACT, scale=yscale)
    Vp = g.lmm.sigma**2 * np.linalg.inv(H)  # Bayesian covariance (Wood 2017, 6.10)
    assert close(se, np.sqrt(np.einsum("ij,jk,ik->i", Xg, Vp, Xg)), EXACT)
    F = np.linalg.solve(H, X.T @ X)
    assert close(g.edf[0], np.trace(F) - 1, EXACT, scale=1.0)  # the intercept's own EDF is 1
    assert close(g.coefficients(0), beta[1:], EXACT, scale=float(np.max(np.abs(beta))))


# ------------------------------------------------------------------------------------------------------------
# several smooths and a parametric term


def test_several_smooths_on_simulated_data():
    rng = np.random.default_rng(20240611)
    n, ng = 300, 15
    g_idx = np.repeat(np.arange(ng), n // ng)
    x1, x2, x3 = rng.normal(size=n), rng.uniform(size=n), rng.uniform(size=n)
    y = 0.5 * x1 + np.sin(2 * np.pi * x2) + 0.3 * x3 + rng.normal(0, 0.5, ng)[g_idx] + rng.normal(0, 0.3, n)
    frame = pd.DataFrame({"y": y, "x1": x1, "x2": x2, "x3": x3})
    frame["g"] = pd.Categorical([f"g{i:02d}" for i in g_idx])
    g = gamm(MULTI, frame)
    assert g.lmm.converged
    assert list(g.lmm.xnames) == ["(Intercept)", "x1", "s(x2)Fx1"]
    assert 1 - OPT_PAR <= g.edf[0] <= 9 and 0 < g.edf[1] <= 9  # cr keeps its line; cs can shrink to nothing
    assert g.edf[0] > 4  # a full sine period needs wiggle
    assert abs(g.lmm.beta[1] - 0.5) <= 0.1  # the simulated slope, within its sampling error (se 0.02)
    d = fit_dict(g.lmm, formula=MULTI, ngroups={"g": ng}, dropped_rows=0, data="sim")
    rows = {(row["group"], row["term"]) for row in d["random_effects"]}
    assert {("Xr", "s(x2)"), ("Xr.0", "s(x3)"), ("g", "(Intercept)"), ("Residual", None)} == rows
    assert {fe["term"] for fe in d["fixed_effects"]} >= {"x1", "s(x2)Fx1"}
    new = pd.DataFrame({"x1": [0.0, 1.0, -2.0], "x2": [0.1, 0.5, 1.2], "x3": [0.0, 0.5, -0.1]})
    fit, se = g.predict(new)
    assert np.all(np.isfinite(fit)) and np.all(np.isfinite(se)) and np.all(se > 0)
    # the population fit is the sum of its parts
    parts = g.lmm.beta[0] + g.lmm.beta[1] * new["x1"].to_numpy()
    parts = parts + g.smooth_curve(0, new["x2"].to_numpy())[0] + g.smooth_curve(1, new["x3"].to_numpy())[0]
    assert close(fit, parts, ROUNDING, scale=float(np.max(np.abs(fit))))


def test_smooth_group_names():
    assert smooth_group_names(1) == ["Xr"]
    assert smooth_group_names(3) == ["Xr", "Xr.0", "Xr.1"]


def test_several_smooths_against_gamm4(multi_ref, multi_frame):
    r = multi_ref
    g = gamm(MULTI, multi_frame)
    crit = g.lmm.objective
    assert crit <= r["REMLcrit"] + EXACT * abs(r["REMLcrit"]) and r["REMLcrit"] - crit <= OPT_DEV, crit
    assert [t.group for t in g.lmm.terms] == [n.split(".s(")[0].split(".(")[0] for n in r["theta_names"]]
    fit, se = g.predict(pd.DataFrame(r["grid"]))
    assert close(fit, r["predict"], OPT_PAR, scale=max(r["predict_se"]))
    assert close(se, r["predict_se"], OPT_PAR)
    assert close(g.edf, [r["gam_edf"]["s(x2)"], r["gam_edf"]["s(x3)"]], OPT_PAR, scale=1.0)
    want = {row["grp"]: row["vcov"] for row in r["varcorr"]}
    got = {"g": group_variance(g, "g"), "Residual": group_variance(g, "Residual")}
    got |= {"Xr": smooth_variance(g, 0), "Xr.0": smooth_variance(g, 1)}
    sigma = float(np.sqrt(want["Residual"]))
    for group, v in want.items():
        assert close(np.sqrt(got[group]), np.sqrt(v), OPT_PAR, scale=sigma), f"{group}: {got[group]!r} vs {v!r}"
    fixef = {"X" + n: b for n, b in zip(g.lmm.xnames, g.lmm.beta, strict=True)}
    assert fixef.keys() == r["mer_fixef"].keys()
    scale = max(map(abs, r["mer_fixef"].values()))
    assert close(list(fixef.values()), list(r["mer_fixef"].values()), OPT_PAR, scale=scale)


def test_several_smooths_at_gamm4_theta(multi_ref, multi_frame):
    r = multi_ref
    g = fit_at_theta(MULTI, multi_frame, np.asarray(r["theta"]))
    assert close(g.lmm.objective, r["REMLcrit"], EXACT)
    fit, se = g.predict(pd.DataFrame(r["grid"]))
    assert close(fit, r["predict"], EXACT)
    assert close(se, r["predict_se"], EXACT)
    assert close(g.predict(multi_frame)[0], r["fitted_population"], EXACT)
    assert close(g.edf, [r["gam_edf"]["s(x2)"], r["gam_edf"]["s(x3)"]], EXACT, scale=1.0)
    coef = np.array(list(r["gam_coef"].values()))
    for j, (lo, hi) in enumerate([(2, 11), (11, 20)]):  # gam_coef: (Intercept), x1, s(x2).1-9, s(x3).1-9
        want = coef[lo:hi]
        assert close(g.coefficients(j), want, EXACT, scale=float(np.max(np.abs(want))))


# ------------------------------------------------------------------------------------------------------------
# plot_gamm


def test_plot_gamm_writes_each_format(tmp_path, multi_frame):
    g = gamm(MULTI, multi_frame)
    for name in ("smooths.png", "smooths.svg", "smooths.pdf"):
        plot_gamm(g, tmp_path / name)
    assert (tmp_path / "smooths.png").read_bytes()[:8] == PNG_MAGIC
    assert (tmp_path / "smooths.svg").read_text()[:200].lstrip().startswith("<?xml")
    assert (tmp_path / "smooths.pdf").read_bytes()[:5] == b"%PDF-"
    assert sorted(os.listdir(tmp_path)) == ["smooths.pdf", "smooths.png", "smooths.svg"]


def test_plot_gamm_refuses_a_model_without_smooths(tmp_path, sleep):
    with pytest.raises(UsageError, match="--plot draws smooth terms; this model has none."):
        plot_gamm(gamm(LINEAR, sleep), tmp_path / "none.png")
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------------------------------------------------
# the command line, in process


def run(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    code = e.value.code
    return (0 if code is None else int(code)), out, err


@pytest.fixture
def grid_csv(tmp_path: Path) -> Path:
    p = tmp_path / "grid.csv"
    p.write_text("Days\n" + "\n".join(repr(float(row["Days"])) for row in REF["cs"]["grid"]) + "\n")
    return p


def test_cli_json(capsys, grid_csv):
    code, out, err = run(capsys, "gamm", SLEEP, CS, "--format", "json", "--predict", grid_csv)
    assert code == 0, err
    d = json.loads(out)
    r = REF["cs"]
    assert d["model"] == "gamm" and d["method"] == "REML" and d["nobs"] == 180
    assert abs(d["reml_criterion"] - r["REMLcrit"]) <= OPT_DEV and d["deviance"] is None
    (s,) = d["smooths"]
    assert {"term", "basis", "k", "edf", "knots", "lambda"} <= s.keys()
    assert (s["term"], s["basis"], s["k"]) == ("s(Days)", "cs", 10)
    assert close(s["knots"], r["smooth_knots"][0], ROUNDING, scale=1.0)  # R too has 7 - 1 ulp
    assert close(s["edf"], r["gam_edf"]["s(Days)"], OPT_PAR, scale=1.0)
    assert close(s["lambda"], d["sigma"] ** 2 / s["variance"], ROUNDING)
    groups = [(row["group"], row["term"]) for row in d["random_effects"]]
    assert groups == [("Subject", "(Intercept)"), ("Xr", "s(Days)"), ("Residual", None)]
    preds = d["predictions"]
    assert [set(p) for p in preds] == [{"Days", "fit", "se"}] * len(r["predict"])
    assert [p["Days"] for p in preds] == [row["Days"] for row in r["grid"]]
    fit = np.array([p["fit"] for p in preds])
    assert close(fit, r["predict"], OPT_PAR, scale=max(r["predict_se"]))
    assert close([p["se"] for p in preds], r["predict_se"], OPT_PAR)


def numbers(d: dict[str, Any]) -> dict[str, Any]:
    keys = ("reml_criterion", "fixed_effects", "random_effects", "theta", "sigma", "smooths")
    return {k: d[k] for k in keys}


def test_cli_option_sugar_equals_the_formula(capsys):
    code, out, err = run(capsys, "gamm", SLEEP, CS, "--json")
    assert code == 0, err
    sugar = ["--y", "Reaction", "--smooth", "Days", "--bs", "cs", "--group", "Subject"]
    code2, out2, err2 = run(capsys, "gamm", SLEEP, *sugar, "--json")
    assert code2 == 0, err2
    assert numbers(json.loads(out2)) == numbers(json.loads(out))


def test_cli_ml(capsys):
    code, out, err = run(capsys, "gamm", SLEEP, CS, "--ml", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["method"] == "ML" and d["reml_criterion"] is None
    assert close(d["deviance"], -2 * d["loglik"], ROUNDING)
    code, out, _ = run(capsys, "gamm", SLEEP, CS, "--json")
    reml_rows, ml_rows = json.loads(out)["random_effects"], d["random_effects"]
    assert ml_rows[0]["group"] == reml_rows[0]["group"] == "Subject"
    assert ml_rows[0]["variance"] < reml_rows[0]["variance"]  # ML does not correct for the estimated intercept
    # without a smooth, gamm --ml is lmer's ML fit
    code, out, err = run(capsys, "gamm", SLEEP, LINEAR, "--ml", "--json")
    assert code == 0, err
    d, r = json.loads(out), ref("sleepstudy_intercept_ml.json")
    assert d["method"] == "ML"
    assert d["deviance"] <= r["deviance"] + EXACT * r["deviance"] and r["deviance"] - d["deviance"] <= OPT_DEV
    assert abs(d["loglik"] - r["logLik"]) <= OPT_DEV / 2
    assert close(d["sigma"], r["sigma"], OPT_PAR)


def test_cli_k_larger_than_unique_values(capsys):
    code, out, err = run(capsys, "gamm", SLEEP, "Reaction ~ s(Days, k=11) + (1|Subject)")
    assert code == 1 and out == ""
    assert err.startswith("Error: ") and err.count("\n") == 1
    assert "10 unique values" in err and "k = 11" in err


def test_cli_unknown_basis(capsys):
    code, _, err = run(capsys, "gamm", SLEEP, "Reaction ~ s(Days, bs='gp') + (1|Subject)")
    assert code == 2
    assert err.startswith("Error: ") and "'gp'" in err and "tp" in err and "cs" in err


def test_cli_smooth_of_a_text_column(capsys, tmp_path):
    p = tmp_path / "text.csv"
    p.write_text("y,site,grp\n" + "".join(f"{i * 0.7 % 3},s{i % 4},g{i % 3}\n" for i in range(30)))
    code, _, err = run(capsys, "gamm", p, "y ~ s(site) + (1|grp)")
    assert code == 1
    assert err.startswith("Error: ") and "site" in err and "numeric" in err
    assert "Traceback" not in err


def test_cli_plot_writes_a_png_and_no_temp_file(capsys, tmp_path):
    target = tmp_path / "days.png"
    code, _, err = run(capsys, "gamm", SLEEP, CS, "--plot", target, "--json")
    assert code == 0, err
    assert target.read_bytes()[:8] == PNG_MAGIC
    assert os.listdir(tmp_path) == ["days.png"]


def test_cli_plot_without_smooth_is_a_usage_error(capsys, tmp_path):
    code, _, err = run(capsys, "gamm", SLEEP, LINEAR, "--plot", tmp_path / "x.png")
    assert code == 2
    assert err == "Error: --plot draws smooth terms; this model has none.\n"
    assert os.listdir(tmp_path) == []


def test_cli_help_has_an_example(capsys):
    code, out, _ = run(capsys, "gamm", "--help")
    assert code == 0
    assert "Examples:" in out and "mmcli gamm sleepstudy.csv" in out


# ------------------------------------------------------------------------------------------------------------
# predictions rebuild the fixed part from the new rows alone (formulaic's model spec and the fitted levels)


def test_predictions_with_factors_rebuild_the_training_rows():
    """Predicting at the training rows through the stored model spec gives the population fit that the
    training design gives (y minus the population residuals): the two ways of building rows agree."""
    cake = load(
        str(ROOT / "sample_data" / "cake.csv"),
        numeric=["angle", "temp"],
        categorical=["replicate"],
        other=["recipe", "temperature"],
    ).frame
    formula = "angle ~ recipe * factor(temperature) + (1|replicate)"
    g = gamm(formula, cake)
    y = cake["angle"].to_numpy(dtype=float)
    fit, _ = g.predict(cake[["recipe", "temperature", "temp"]])
    assert close(fit, y - g.resid_population, ROUNDING, scale=float(np.max(np.abs(y))))
    shuffled = cake.iloc[::-1].reset_index(drop=True)
    fit_r, _ = g.predict(shuffled[["recipe", "temperature", "temp"]])
    assert close(fit_r, fit[::-1], ROUNDING, scale=float(np.max(np.abs(y))))


def test_prediction_for_an_unseen_factor_level_is_an_error():
    from mmcli.errors import DataError

    cake = load(
        str(ROOT / "sample_data" / "cake.csv"), numeric=["angle", "temp"], categorical=["replicate"], other=["recipe"]
    ).frame
    g = gamm("angle ~ recipe + s(temp, k=4) + (1|replicate)", cake)
    with pytest.raises(DataError, match="level 'D'"):
        g.predict(pd.DataFrame({"recipe": ["A", "D"], "temp": [180.0, 190.0]}))
