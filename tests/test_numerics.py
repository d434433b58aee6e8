"""Numerically awkward but valid data fit correctly.

- Responses scaled by 1e-150 .. 1e150: the fit is the same fit, scaled (beta, sigma, b, standard errors by c;
  vcov by c^2; theta unchanged; the deviance shifted by 2 n log c).
- Predictors on wildly different scales: a predictor scaled by c has its coefficient scaled by 1/c and nothing
  else changes; reported on the original scale.
- Near-singular fits (nearly collinear predictors, a variance component at zero), perfectly balanced and very
  unbalanced designs, groups of size one: the blocked Cholesky ("fast") agrees with the dense V formulation,
  and balanced one-way data give the ANOVA estimates that REML reproduces in closed form.
- The spline and the additive mixed model under the same rescalings.

Failures of the core (mmcli/lmm/) are strict xfails with the reason starting "BUG:"; each is a reproduction.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from conftest import EXACT, OPT_DEV, OPT_FIXEF, OPT_PAR, OPT_SE, ROUNDING, data_path, run_in_process

from mmcli.design import build_design
from mmcli.errors import DataError
from mmcli.formula import parse_formula
from mmcli.lmm import LmmFit, fit_lmm

# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def sleep() -> pd.DataFrame:
    df = pd.read_csv(data_path("sleepstudy.csv"))
    df["Subject"] = df["Subject"].astype(str)
    return df


def fit(frame: pd.DataFrame, formula: str, *, method: str = "fast", reml: bool = False) -> LmmFit:
    spec = parse_formula(formula)
    d = build_design(spec, frame, set())
    return fit_lmm(d.X, d.y, d.terms, xnames=d.xnames, reml=reml, method=method)


def rel(a: float | np.ndarray, b: float | np.ndarray) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300))) if a.size else 0.0


def assert_same_fit(f: LmmFit, g: LmmFit, *, c: float = 1.0, xscale: np.ndarray | None = None) -> None:
    """f is g's fit of the data with y multiplied by c (and the columns of X divided by xscale). Convergence
    flags are not compared: see test_failed_polishing_pass_keeps_convergence."""
    xs = np.ones(len(g.beta)) if xscale is None else xscale
    assert np.all(np.isfinite(f.beta)) and math.isfinite(f.sigma) and np.all(np.isfinite(f.vcov))
    n, p = f.n, len(f.beta)
    shift = 2.0 * ((n - p) if f.reml else n) * math.log(c)
    assert abs((f.objective - shift) - g.objective) <= OPT_DEV, (f.objective - shift, g.objective)
    assert rel(f.sigma / c, g.sigma) <= OPT_PAR
    scale = np.max(np.abs(g.beta * c))
    assert np.max(np.abs(f.beta / xs - g.beta * c)) <= OPT_FIXEF * scale + OPT_PAR * np.max(
        np.sqrt(np.diag(g.vcov)) * abs(c)
    )
    se_f, se_g = np.sqrt(np.diag(f.vcov)) / xs, np.sqrt(np.diag(g.vcov)) * abs(c)
    assert rel(se_f, se_g) <= OPT_SE
    assert np.max(np.abs(f.theta - g.theta)) <= OPT_PAR * max(1.0, np.max(np.abs(g.theta)))
    for bf, bg in zip(f.ranef, g.ranef):
        assert np.max(np.abs(bf / c - bg), initial=0.0) <= OPT_PAR * max(np.max(np.abs(bg), initial=0.0), g.sigma)


# --------------------------------------------------------------------------------------------------
# Responses scaled by 1e-150 .. 1e150
# --------------------------------------------------------------------------------------------------

SCALES = [1e-150, 1e-50, 1e-8, 1e8, 1e50, 1e150]


@pytest.fixture(scope="module")
def slope_fits() -> dict[tuple[str, bool], LmmFit]:
    df = sleep()
    return {
        (m, r): fit(df, "Reaction ~ Days + (Days | Subject)", method=m, reml=r)
        for m in ("fast", "dense")
        for r in (False, True)
    }


@pytest.mark.parametrize("c", SCALES, ids=lambda c: f"{c:g}")
@pytest.mark.parametrize("method", ["fast", "dense"])
@pytest.mark.parametrize("reml", [False, True], ids=["ml", "reml"])
def test_response_scaled(slope_fits: dict, c: float, method: str, reml: bool) -> None:
    df = sleep()
    df["Reaction"] = df["Reaction"] * c
    assert_same_fit(
        fit(df, "Reaction ~ Days + (Days | Subject)", method=method, reml=reml), slope_fits[method, reml], c=c
    )


@pytest.mark.parametrize("c", [1e-150, 1e150], ids=lambda c: f"{c:g}")
def test_response_scaled_cli(tmp_path, c: float) -> None:
    """Through the command line: the JSON holds the scaled numbers, all finite."""
    df = sleep()
    base = run_in_process(["fit", data_path("sleepstudy.csv"), "Reaction ~ Days + (Days | Subject)", "--json"]).json()
    df["Reaction"] = df["Reaction"] * c
    df.to_csv(tmp_path / "s.csv", index=False, float_format="%.17g")
    got = run_in_process(["fit", tmp_path / "s.csv", "Reaction ~ Days + (Days | Subject)", "--json"]).json()
    assert rel(got["sigma"] / c, base["sigma"]) <= OPT_PAR
    assert (
        rel([e["estimate"] / c for e in got["fixed_effects"]], [e["estimate"] for e in base["fixed_effects"]])
        <= OPT_FIXEF
    )
    assert rel(np.array(got["vcov"]) / c**2, np.array(base["vcov"])) <= OPT_SE
    assert abs(got["deviance"] - 2 * 180 * math.log(c) - base["deviance"]) <= OPT_DEV


def test_response_near_float_max_core() -> None:
    """A response near 1e300 has a variance beyond double precision: the core says so (the CLI refuses such
    values when loading)."""
    df = sleep()
    df["Reaction"] = df["Reaction"] * 1e300
    with pytest.raises(DataError, match="Rescale the response"):
        fit(df, "Reaction ~ Days + (1 | Subject)")


def test_response_near_float_max_cli(tmp_path) -> None:
    df = sleep()
    df["Reaction"] = df["Reaction"] * 1e300
    df.to_csv(tmp_path / "s.csv", index=False)
    code, _, err = run_in_process(["fit", tmp_path / "s.csv", "Reaction ~ Days + (1 | Subject)"])
    assert code == 1 and err.startswith("Error: Column 'Reaction' holds") and "Rescale" in err


@pytest.mark.parametrize("offset", [1e4, 1e6, 1e8, 1e10])
def test_response_shifted(offset: float) -> None:
    """y + a constant: only the intercept moves."""
    df = sleep()
    base = fit(df, "Reaction ~ Days + (1 | Subject)")
    df["Reaction"] = df["Reaction"] + offset
    f = fit(df, "Reaction ~ Days + (1 | Subject)")
    assert abs(f.objective - base.objective) <= OPT_DEV
    assert rel(f.sigma, base.sigma) <= OPT_PAR
    assert abs(f.beta[0] - offset - base.beta[0]) <= OPT_FIXEF * np.max(np.abs(f.beta))
    assert rel(f.beta[1], base.beta[1]) <= OPT_PAR


# --------------------------------------------------------------------------------------------------
# Predictors on wildly different scales
# --------------------------------------------------------------------------------------------------


XSCALES = [1e-100, 1e-12, 1e-6, 1e6, 1e12, 1e100]


@pytest.mark.parametrize(
    "method, c",
    [pytest.param(m, c, id=f"{m}-{c:g}") for m in ("fast", "dense") for c in XSCALES],
)
def test_fixed_predictor_scaled(c: float, method: str) -> None:
    df = sleep()
    base = fit(df, "Reaction ~ Days + (1 | Subject)", method=method)
    df["Days"] = df["Days"] * c
    assert_same_fit(fit(df, "Reaction ~ Days + (1 | Subject)", method=method), base, xscale=np.array([1.0, 1 / c]))


def two_scales(seed: int = 5) -> pd.DataFrame:
    """Two predictors, one in micro-units and one in mega-units, and a random intercept."""
    rng = np.random.default_rng(seed)
    n, k = 120, 12
    g = np.arange(n) % k
    a, b = rng.normal(size=n), rng.normal(size=n)
    y = 3 + 2 * a - b + rng.normal(size=k)[g] + rng.normal(size=n)
    return pd.DataFrame({"y": y, "tiny": a * 1e-9, "huge": b * 1e9, "g": [f"g{i}" for i in g]})


@pytest.mark.parametrize("method", ["fast", "dense"])
def test_predictors_on_different_scales_together(method: str) -> None:
    df = two_scales()
    f = fit(df, "y ~ tiny + huge + (1 | g)", method=method)
    std = df.assign(tiny=df["tiny"] * 1e9, huge=df["huge"] * 1e-9)
    g = fit(std, "y ~ tiny + huge + (1 | g)", method=method)
    assert_same_fit(f, g, xscale=np.array([1.0, 1e9, 1e-9]))


@pytest.mark.parametrize(
    "c",
    [
        pytest.param(1e-2, id="1e-2"),
        pytest.param(1e2, id="1e2"),
        pytest.param(86400.0, id="seconds"),
        pytest.param(1e8, id="1e8"),
    ],
)
def test_random_slope_predictor_scaled(slope_fits: dict, c: float) -> None:
    df = sleep()
    df["Days"] = df["Days"] * c
    f = fit(df, "Reaction ~ Days + (Days | Subject)")
    g = slope_fits["fast", False]
    assert abs(f.objective - g.objective) <= OPT_DEV, (f.objective, g.objective)
    assert rel(f.sigma, g.sigma) <= OPT_PAR
    assert rel(f.beta[1] * c, g.beta[1]) <= OPT_PAR


@pytest.mark.parametrize("offset", [1e3, 1e6])
def test_predictor_with_large_offset(offset: float) -> None:
    """Days + 1e6 (a date in days since year 0, say): the slope and the fit are unchanged."""
    df = sleep()
    base = fit(df, "Reaction ~ Days + (1 | Subject)")
    df["Days"] = df["Days"] + offset
    f = fit(df, "Reaction ~ Days + (1 | Subject)")
    assert f.xnames == ("(Intercept)", "Days")
    assert abs(f.objective - base.objective) <= OPT_DEV
    assert rel(f.sigma, base.sigma) <= OPT_PAR
    assert rel(f.beta[1], base.beta[1]) <= OPT_PAR


def test_failed_polishing_pass_keeps_convergence(monkeypatch: pytest.MonkeyPatch) -> None:
    import nlopt

    real, calls = nlopt.opt.optimize, []

    def optimize(self: object, x: np.ndarray) -> np.ndarray:
        calls.append(1)
        if len(calls) == 2:  # the polishing pass, started at the optimum, stops on roundoff
            raise nlopt.RoundoffLimited("NLopt roundoff-limited")
        return real(self, x)

    monkeypatch.setattr(nlopt.opt, "optimize", optimize)
    from mmcli.lmm.optimizer import use_optimizer

    with use_optimizer("bobyqa"):  # the polishing pass belongs to BOBYQA (L-BFGS-B is the default)
        f = fit(sleep(), "Reaction ~ Days + (1 | Subject)")
    assert len(calls) >= 2, "BOBYQA made no polishing pass: this test no longer tests anything"
    assert f.converged, f.optimizer.message


# --------------------------------------------------------------------------------------------------
# Near-singular fits
# --------------------------------------------------------------------------------------------------


def one_way(sizes: list[int], sd_group: float, seed: int, x: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(len(sizes)), sizes)
    n = g.size
    xv = rng.normal(size=n)
    y = 10 + (1.5 * xv if x else 0) + sd_group * rng.normal(size=len(sizes))[g] + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": xv, "g": [f"L{i}" for i in g]})


def assert_fast_matches_dense(df: pd.DataFrame, formula: str, reml: bool = False) -> tuple[LmmFit, LmmFit]:
    f = fit(df, formula, reml=reml)
    d = fit(df, formula, reml=reml, method="dense")
    assert f.converged and d.converged
    assert abs(f.objective - d.objective) <= OPT_DEV, (f.objective, d.objective)
    assert rel(f.sigma, d.sigma) <= OPT_PAR
    scale = max(np.max(np.abs(d.beta)), 1.0)
    assert np.max(np.abs(f.beta - d.beta)) <= OPT_FIXEF * scale
    assert np.max(np.abs(f.theta - d.theta)) <= OPT_PAR * max(1.0, np.max(np.abs(d.theta)))
    return f, d


@pytest.mark.parametrize("eps", [1e-4, 1e-6])
def test_nearly_collinear_predictors(eps: float) -> None:
    """x2 = x + eps * noise: kept (not aliased), and the fit equals that of the reparametrized model."""
    df = one_way([10] * 8, 1.0, 1)
    rng = np.random.default_rng(2)
    df["x2"] = df["x"] + eps * rng.normal(size=len(df))
    f, _ = assert_fast_matches_dense(df, "y ~ x + x2 + (1 | g)")
    assert f.xnames == ("(Intercept)", "x", "x2")
    # the same model written with d = (x2 - x) / eps, a well-conditioned column
    g = fit(df.assign(d=(df["x2"] - df["x"]) / eps), "y ~ x + d + (1 | g)")
    assert abs(f.objective - g.objective) <= OPT_DEV
    assert rel(f.beta[2] * eps, g.beta[2]) <= OPT_PAR
    assert rel(f.beta[1] + f.beta[2], g.beta[1]) <= OPT_PAR


def test_variance_component_at_zero() -> None:
    """No group effect at all: a singular fit (theta = 0), a success, the same by both formulations."""
    df = one_way([6] * 10, 0.0, 3, x=False)
    df["y"] = df["y"] - df.groupby("g")["y"].transform("mean") + 10.0  # every group mean exactly 10
    f, _ = assert_fast_matches_dense(df, "y ~ 1 + (1 | g)")
    assert f.singular and f.theta[0] < OPT_PAR


def test_correlation_at_the_boundary() -> None:
    """Random intercept and slope perfectly correlated in truth: |corr| -> 1 is a boundary fit, still finite."""
    rng = np.random.default_rng(4)
    k, m = 15, 8
    g = np.repeat(np.arange(k), m)
    x = np.tile(np.arange(m, dtype=float), k)
    u = rng.normal(size=k)
    y = 1 + 0.5 * x + u[g] * (1 + 0.5 * x) + 0.3 * rng.normal(size=g.size)
    df = pd.DataFrame({"y": y, "x": x, "g": [f"s{i}" for i in g]})
    f, _ = assert_fast_matches_dense(df, "y ~ x + (x | g)")
    assert np.all(np.isfinite(f.vcov)) and all(np.all(np.isfinite(b)) for b in f.ranef)


# --------------------------------------------------------------------------------------------------
# Balanced and unbalanced designs, groups of size one
# --------------------------------------------------------------------------------------------------


def test_balanced_one_way_equals_anova() -> None:
    """Balanced one-way data: REML's estimates are the ANOVA ones when positive (Searle et al. 1992, 3.7):
    sigma^2 = MSW, sigma_b^2 = (MSB - MSW) / m."""
    k, m = 9, 6
    df = one_way([m] * k, 2.0, 7, x=False)
    f, _ = assert_fast_matches_dense(df, "y ~ 1 + (1 | g)", reml=True)
    groups = df.groupby("g")["y"]
    msw = float(((df["y"] - groups.transform("mean")) ** 2).sum() / (k * (m - 1)))
    msb = float(m * ((groups.mean() - df["y"].mean()) ** 2).sum() / (k - 1))
    assert msb > msw
    assert rel(f.sigma, math.sqrt(msw)) <= OPT_PAR
    assert rel(f.theta[0] * f.sigma, math.sqrt((msb - msw) / m)) <= OPT_PAR
    # in a balanced design the GLS intercept is the grand mean whatever theta: no optimizer in between
    assert rel(f.beta[0], df["y"].mean()) <= EXACT


def test_balanced_crossed() -> None:
    """A fully crossed balanced design (every a with every b, twice)."""
    rng = np.random.default_rng(8)
    a, b = np.meshgrid(np.arange(6), np.arange(5), indexing="ij")
    a, b = np.repeat(a.ravel(), 2), np.repeat(b.ravel(), 2)
    y = rng.normal(size=6)[a] + 0.7 * rng.normal(size=5)[b] + 0.5 * rng.normal(size=a.size)
    df = pd.DataFrame({"y": y, "a": [f"a{i}" for i in a], "b": [f"b{i}" for i in b]})
    assert_fast_matches_dense(df, "y ~ 1 + (1 | a) + (1 | b)")
    assert_fast_matches_dense(df, "y ~ 1 + (1 | a) + (1 | b)", reml=True)


@pytest.mark.parametrize("reml", [False, True], ids=["ml", "reml"])
def test_very_unbalanced(reml: bool) -> None:
    """One group of 300 rows beside 20 groups of one or two."""
    df = one_way([300] + [1, 2] * 10, 1.0, 9)
    assert_fast_matches_dense(df, "y ~ x + (1 | g)", reml=reml)


def test_groups_of_size_one() -> None:
    """Most groups have one row (their effect is told from the residual only through the few larger groups)."""
    df = one_way([1] * 30 + [5, 6, 4], 1.0, 10)
    f, _ = assert_fast_matches_dense(df, "y ~ x + (1 | g)")
    assert f.terms[0].nlevels == 33


def test_unbalanced_random_slopes_with_singletons() -> None:
    df = one_way([1, 1, 2, 3, 12, 20, 7, 1, 15], 1.0, 11)
    assert_fast_matches_dense(df, "y ~ x + (x | g)")


def test_row_order_and_labels_do_not_matter() -> None:
    df = one_way([1, 2, 30, 3, 1, 9], 1.0, 12)
    f = fit(df, "y ~ x + (1 | g)")
    shuffled = df.sample(frac=1.0, random_state=3).reset_index(drop=True)
    shuffled["g"] = shuffled["g"].map(lambda s: f"renamed_{s[::-1]}")
    g = fit(shuffled, "y ~ x + (1 | g)")
    assert abs(f.objective - g.objective) <= OPT_DEV
    assert rel(f.beta, g.beta) <= OPT_FIXEF and rel(f.sigma, g.sigma) <= OPT_PAR


# --------------------------------------------------------------------------------------------------
# The spline and the additive mixed model, rescaled
# --------------------------------------------------------------------------------------------------


def engine() -> pd.DataFrame:
    return pd.read_csv(data_path("engine.csv"))


@pytest.mark.parametrize("cy", [1e-150, 1e150, 1.0], ids=lambda c: f"y{c:g}")
@pytest.mark.parametrize("cx", [1e-100, 1e100, 1.0], ids=lambda c: f"x{c:g}")
@pytest.mark.parametrize("lam", ["gcv", "reml", 1e-3])
def test_spline_rescaled(cx: float, cy: float, lam: float | str) -> None:
    from mmcli.spline import fit_spline

    e = engine()
    x, y = e["size"].to_numpy(), e["wear"].to_numpy()
    base = fit_spline(x, y, lam=lam)
    f = fit_spline(x * cx, y * cy, lam=lam)
    tol = EXACT if isinstance(lam, float) else OPT_PAR  # a given lambda, or one found by a search
    assert rel(f.lam, base.lam) <= tol
    assert rel(f.edf, base.edf) <= tol
    assert rel(f.fitted / cy, base.fitted) <= tol
    assert rel(f.knots / cx, base.knots) <= ROUNDING
    assert rel(f.sigma / cy, base.sigma) <= tol
    fx, se = f.predict(np.array([1.5, 2.0]) * cx)
    bx, bse = base.predict(np.array([1.5, 2.0]))
    assert rel(fx / cy, bx) <= tol and rel(se / cy, bse) <= tol


@pytest.mark.parametrize("cy", [1e-150, 1e150], ids=lambda c: f"y{c:g}")
@pytest.mark.parametrize("cx", [1e-50, 1e50, 1.0], ids=lambda c: f"x{c:g}")
def test_gamm_rescaled(cx: float, cy: float) -> None:
    from mmcli.gamm import fit_gamm

    spec = parse_formula("Reaction ~ s(Days, bs = 'cr', k = 5) + (1 | Subject)", allow_smooths=True)
    df = sleep()
    base_design = build_design(spec, df, set())
    base = fit_gamm(base_design)
    df["Days"], df["Reaction"] = df["Days"] * cx, df["Reaction"] * cy
    design = build_design(spec, df, set())
    g = fit_gamm(design)
    assert abs(g.lmm.objective - 2 * (g.lmm.n - len(g.lmm.beta)) * math.log(cy) - base.lmm.objective) <= OPT_DEV
    assert rel(g.edf, base.edf) <= OPT_PAR
    assert rel(g.lmm.sigma / cy, base.lmm.sigma) <= OPT_PAR
    fit_b, se_b = base.predict(base_design.new_rows(pd.DataFrame({"Days": [0.5, 4.0, 8.5]})))
    fit_g, se_g = g.predict(design.new_rows(pd.DataFrame({"Days": np.array([0.5, 4.0, 8.5]) * cx})))
    assert rel(fit_g / cy, fit_b) <= OPT_PAR and rel(se_g / cy, se_b) <= OPT_PAR
