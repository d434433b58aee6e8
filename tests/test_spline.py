"""mmcli.spline and plot_spline against Wood's engine example in R (tests/reference/engine_spline.json).

Provenance (tests/reference/README.md): R 4.2.2, mgcv 1.8-41, nlme 3.1-162; the engine-wear data of
Wood (2006) section 3.2, x = size rescaled to [0, 1], knots 1:7/8, the rk basis; the fit at lambda = 1e-4 with
Wood's matrix square root, lambda by GCV (Wood's grid, refined), lambda by REML from nlme::lme on the
mixed-model form, and the fit the tutorial's incorrect matSqrt gives.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import EXACT, OPT_DEV, OPT_PAR, ROUNDING

from mmcli.errors import DataError, UsageError
from mmcli.report import mixed_spline_dict, spline_dict
from mmcli.spline import (
    GCV_GRID,
    PenalizedLS,
    SplineFit,
    default_knots,
    fit_at_lambda,
    fit_spline,
    mat_sqrt,
    mixed_form,
    mixed_matrices,
    rk_basis,
    rk_kernel,
    rk_penalty,
)

ROOT = Path(__file__).resolve().parent.parent
REF = json.loads((ROOT / "tests" / "reference" / "engine_spline.json").read_text())

# Tolerances: the tiers of conftest.py. A basis, a penalty and the fit at a fixed lambda are deterministic
# evaluations (EXACT); lambda chosen by GCV's Brent search or by REML's optimizer, and everything that follows
# from it, is optimizer output (OPT_PAR, OPT_DEV for the criterion at the optimum).

DATA = np.loadtxt(ROOT / "sample_data" / "engine.csv", delimiter=",", skiprows=1)
SIZE, WEAR = DATA[:, 0], DATA[:, 1]


def engine(lam: float | str = 1e-4, **kw) -> SplineFit:
    return fit_spline(SIZE, WEAR, knots=7, lam=lam, x_name="size", y_name="wear", **kw)


def grid_x() -> np.ndarray:
    """The reference's prediction grid (0:100/100 on the scaled x) on the size scale."""
    g = np.asarray(REF["predict_grid_scaled"])
    return SIZE.min() + g * (SIZE.max() - SIZE.min())


def tutorial_mat_sqrt(S: np.ndarray) -> np.ndarray:
    """The tutorial's matSqrt: crossprod(U) %*% sqrt(D) = D^1/2 (eigenvalues decreasing), not a root of S."""
    d = np.sort(np.clip(np.linalg.eigvalsh(S), 0.0, None))[::-1]
    return np.diag(np.sqrt(d))


def assert_close_rel(got: float, want: float, rtol: float, what: str) -> None:
    assert abs(got - want) <= rtol * abs(want), f"{what}: {got!r} vs {want!r} (rtol {rtol:g})"


def assert_close_scaled(got, want, rtol: float, what: str = "") -> None:
    """max |got - want| <= rtol * max |want|: relative to the size of the whole vector (coefficients, fitted
    values), so that entries near zero are held to the same absolute accuracy as the rest."""
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    err, scale = float(np.max(np.abs(got - want))), float(np.max(np.abs(want)))
    assert err <= rtol * scale, f"{what}: max abs error {err:.3g} > {rtol:g} x {scale:.3g}"


# ------------------------------------------------------------------------------------------------------------
# basis, penalty, square root


def test_rk_kernel_formula_and_symmetry():
    x, z = 0.3, 0.8
    want = ((z - 0.5) ** 2 - 1 / 12) * ((x - 0.5) ** 2 - 1 / 12) / 4 - (
        (abs(x - z) - 0.5) ** 4 - 0.5 * (abs(x - z) - 0.5) ** 2 + 7 / 240
    ) / 24
    assert_close_rel(rk_kernel(np.array([x]), np.array([z]))[0, 0], want, EXACT, "R(x, z)")
    u = np.linspace(0, 1, 11)
    Rm = rk_kernel(u, u)
    assert Rm.shape == (11, 11)
    assert_close_scaled(Rm, Rm.T, ROUNDING, "symmetry")


def test_basis_and_penalty_layout():
    ks = np.asarray(REF["knots_scaled"])
    X = rk_basis(np.array([0.0, 0.5, 1.0]), ks)
    assert X.shape == (3, 9)
    np.testing.assert_array_equal(X[:, 0], 1.0)
    np.testing.assert_array_equal(X[:, 1], [0.0, 0.5, 1.0])
    S = rk_penalty(ks)
    assert S.shape == (9, 9)
    assert not np.any(S[:2, :]) and not np.any(S[:, :2])
    assert_close_scaled(S[2:, 2:], rk_kernel(ks, ks), EXACT, "penalty")
    assert np.linalg.matrix_rank(S) == 7


def test_mat_sqrt_is_a_square_root():
    S = rk_penalty(np.asarray(REF["knots_scaled"]))
    B = mat_sqrt(S)
    assert_close_scaled(B.T @ B, S, EXACT, "B'B = S")
    assert_close_scaled(B, B.T, ROUNDING, "symmetry")


# ------------------------------------------------------------------------------------------------------------
# the fit at lambda = 1e-4 against R


def test_fixed_lambda_matches_reference():
    f = engine(1e-4)
    assert f.lam_method == "fixed" and f.lam == 1e-4
    assert_close_scaled(f.knots_scaled, REF["knots_scaled"], EXACT, "knots")
    assert_close_scaled(f.coef, REF["coef"], EXACT, "coef")
    assert_close_scaled(f.fitted, REF["fitted"], EXACT, "fitted")
    assert_close_rel(f.edf, REF["edf"], EXACT, "edf")
    assert_close_rel(f.rss, REF["rss"], EXACT, "rss")
    assert_close_rel(f.gcv, REF["gcv"], EXACT, "gcv")
    fit, _ = f.predict(grid_x())
    assert_close_scaled(fit, REF["predict"], EXACT, "predict")


def test_fixed_lambda_acceptance_grid():
    """The acceptance script writes the grid as 1.42 + g * 1.56 with 10 decimals."""
    xs = np.array([float(f"{1.42 + g * 1.56:.10f}") for g in REF["predict_grid_scaled"]])
    fit, _ = engine(1e-4).predict(xs)
    assert_close_scaled(fit, REF["predict"], EXACT, "predict")


def test_summary_statistics_definitions():
    f = engine(1e-4)
    n = WEAR.size
    assert f.n == n
    assert_close_rel(f.rss, float(np.sum((WEAR - f.fitted) ** 2)), ROUNDING, "rss")
    assert_close_rel(f.sigma**2, f.rss / (n - f.edf), ROUNDING, "sigma^2")
    assert_close_rel(f.gcv, n * f.rss / (n - f.edf) ** 2, ROUNDING, "gcv")
    tss = float(np.sum((WEAR - WEAR.mean()) ** 2))
    assert_close_rel(f.r_squared, 1 - f.rss / tss, ROUNDING, "r_squared")
    assert_close_rel(f.adj_r_squared, 1 - (f.rss / (n - f.edf)) / (tss / (n - 1)), ROUNDING, "adj_r_squared")


def test_edf_and_vp_against_the_normal_equations():
    """tr A and Vp from the QR agree with the textbook formulas (computed the unstable way, through the inverse
    of X'X + lambda S)."""
    f = engine(1e-3)
    X = f.basis(SIZE)
    S = rk_penalty(f.knots_scaled)
    M = np.linalg.inv(X.T @ X + f.lam * S)
    assert_close_rel(f.edf, float(np.trace(X @ M @ X.T)), EXACT, "edf")
    assert_close_scaled(f.Vp, f.sigma**2 * M, EXACT, "Vp")


def test_predict_standard_errors():
    f = engine("gcv")
    xs = np.linspace(SIZE.min(), SIZE.max(), 37)
    fit, se = f.predict(xs)
    Xp = f.basis(xs)
    assert np.all(se > 0)
    np.testing.assert_allclose(se, np.sqrt(np.diag(Xp @ f.Vp @ Xp.T)), rtol=ROUNDING)
    np.testing.assert_allclose(fit, Xp @ f.coef, rtol=ROUNDING)
    at_data, _ = f.predict(SIZE)
    assert_close_scaled(at_data, f.fitted, ROUNDING, "predict at the data")
    with pytest.raises(DataError):
        f.predict(np.array([1.5, np.nan]))


# ------------------------------------------------------------------------------------------------------------
# the tutorial's wrong square root stays out


def test_tutorial_matsqrt_is_wrong_and_reproduces_its_variant():
    ks = np.asarray(REF["knots_scaled"])
    S = rk_penalty(ks)
    Btut = tutorial_mat_sqrt(S)
    assert np.max(np.abs(Btut.T @ Btut - S)) > 1e-3  # not a square root of S
    assert np.max(np.abs(mat_sqrt(S) - Btut)) > 1e-3  # and not what mmcli uses
    X = rk_basis((SIZE - SIZE.min()) / (SIZE.max() - SIZE.min()), ks)
    tut = fit_at_lambda(X, WEAR, Btut, 1e-4)
    ref = REF["tutorial_matsqrt_variant"]
    assert_close_scaled(tut.coef, ref["coef"], EXACT, "tutorial coef")
    assert_close_scaled(tut.fitted, ref["fitted"], EXACT, "tutorial fitted")
    # mmcli's fit is the correct one, and it is far from the tutorial's (0.17 on these data)
    f = engine(1e-4)
    assert np.max(np.abs(f.fitted - np.asarray(ref["fitted"]))) > 0.1
    assert_close_scaled(f.fitted, REF["fitted"], EXACT, "fitted")


# ------------------------------------------------------------------------------------------------------------
# lambda by GCV


def test_gcv_choice_matches_reference():
    f = engine("gcv")
    g = REF["gcv_choice"]
    assert f.lam_method == "gcv"
    assert_close_rel(f.lam, g["lambda"], OPT_PAR, "lambda")
    assert_close_rel(f.edf, g["edf"], OPT_PAR, "edf")
    assert_close_rel(f.gcv, g["gcv"], OPT_DEV, "gcv")
    assert_close_scaled(f.coef, g["coef"], OPT_PAR, "coef")
    # the grid is fixed, so its best point and its score are deterministic
    s = f.lambda_search
    assert s is not None
    assert_close_rel(s["grid_best_lambda"], g["grid_best_lambda"], EXACT, "grid_best_lambda")
    assert_close_rel(s["grid_best_gcv"], g["grid_best_gcv"], EXACT, "grid_best_gcv")
    assert s["refine"]["converged"] and not s["at_grid_edge"]


def test_gcv_choice_is_the_minimum():
    f = engine("gcv")
    assert f.lambda_search is not None
    assert f.gcv <= min(f.lambda_search["grid_gcv"])
    for factor in (0.99, 1.01):
        assert engine(f.lam * factor).gcv >= f.gcv
    assert len(f.lambda_search["grid"]) == GCV_GRID.size == 60
    assert GCV_GRID[0] == 1e-8 and math.isclose(GCV_GRID[1] / GCV_GRID[0], 1.5)


# ------------------------------------------------------------------------------------------------------------
# the mixed-model form


def test_mixed_matrices_reproduce_the_penalized_fit_at_any_lambda():
    """Ridge on g with penalty lambda I in the mixed form = the penalized spline (no LMM needed).

    With the tutorial's Z = X U_R D_+^(1/2) instead of D_+^(-1/2) it does not."""
    f = engine(1e-3)
    X = f.basis(SIZE)
    S = rk_penalty(f.knots_scaled)
    Xf, Z, U_F, U_R, d = mixed_matrices(X, S)
    assert Xf.shape == (19, 2) and Z.shape == (19, 7)
    assert np.all(np.diff(d) <= 0) and np.all(d > 0)
    assert np.max(np.abs(U_F.T @ S @ U_F)) <= ROUNDING * np.max(np.abs(S))

    def ridge(Zm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        W = np.hstack([Xf, Zm])
        P = np.zeros((W.shape[1], W.shape[1]))
        P[2:, 2:] = f.lam * np.eye(Zm.shape[1])
        sol = np.linalg.solve(W.T @ W + P, W.T @ WEAR)
        return W @ sol, sol

    fitted, sol = ridge(Z)
    assert_close_scaled(fitted, f.fitted, EXACT, "fitted")
    coef = U_F @ sol[:2] + U_R @ (sol[2:] / np.sqrt(d))
    assert_close_scaled(coef, f.coef, EXACT, "coef")
    tutorial_fitted, _ = ridge(X @ U_R * np.sqrt(d))
    assert np.max(np.abs(tutorial_fitted - f.fitted)) > 1e-2


def test_reml_choice_matches_reference():
    f = engine("reml")
    r = REF["reml_choice"]
    assert f.lam_method == "reml"
    assert f.mixed is not None and f.mixed.converged
    assert_close_rel(f.lam, r["lambda"], OPT_PAR, "lambda")
    assert_close_scaled(f.fitted, r["fitted_lme"], OPT_PAR, "fitted")
    assert_close_rel(f.edf, r["edf"], OPT_PAR, "edf")
    assert_close_rel(f.mixed.sigma, r["sigma"], OPT_PAR, "sigma")
    assert_close_rel(f.sigma, r["sigma"], OPT_PAR, "sigma")  # at the REML optimum, = RSS/(n - EDF)
    assert_close_scaled(f.coef, r["coef"], OPT_PAR, "coef")
    assert f.mixed.reml_criterion is not None
    assert abs(f.mixed.reml_criterion - -2 * r["REMLlogLik"]) <= OPT_DEV, "REML criterion"
    assert f.lambda_search is not None and f.lambda_search["criterion"] == "REML"


def test_reml_escapes_the_boundary_local_minimum():
    """From lme4's start (theta = 1 on the unscaled Z) REML falls to theta = 0; the scaled starts find the
    interior minimum, which has the lower criterion."""
    f = engine("reml")
    assert f.mixed is not None
    starts = f.mixed.starts
    assert len(starts) == 3
    assert min(s["reml_criterion"] for s in starts) == f.mixed.reml_criterion
    assert 0 < f.lam < 1


def test_mixed_form_blup_equals_penalized_fit():
    f = engine("reml")
    m = mixed_form(f)
    assert m is f.mixed
    assert_close_rel(m.lam, m.sigma**2 / m.sigma_g**2, ROUNDING, "lambda = sigma^2 / sigma_g^2")
    assert_close_rel(m.lam, 1 / m.theta**2, ROUNDING, "lambda = 1 / theta^2")
    # the BLUP of the mixed form and the penalized fit at the same lambda: two deterministic evaluations
    assert_close_scaled(m.fitted, f.fitted, EXACT, "fitted")
    assert_close_scaled(m.Xf @ m.beta_f + m.Z @ m.b, f.fitted, EXACT, "Xf beta_f + Z b")
    assert_close_scaled(m.coef, f.coef, EXACT, "coef")
    # the mixed form of a fixed-lambda fit is fitted afresh (REML's optimizer again), and agrees
    m2 = mixed_form(engine(1e-4))
    assert_close_rel(m2.lam, m.lam, OPT_PAR, "lambda")
    d = mixed_spline_dict(m)
    json.dumps(d, allow_nan=False)
    assert d["lambda"] == m.lam and d["random_effects"][0]["group"] == "Xr"
    assert d["random_effects"][0]["term"] == "s(size)"


def test_reml_straight_line():
    """REML sets the smooth's variance to (nearly) 0: lambda huge or inf, the fit the least-squares line."""
    x = np.linspace(0, 1, 50)
    y = 1 + 2 * x + np.random.default_rng(1).normal(0, 0.1, 50)
    f = fit_spline(x, y, lam="reml")
    assert f.lam > 1e6
    line = np.polyval(np.polyfit(x, y, 1), x)
    assert_close_scaled(f.fitted, line, OPT_PAR, "fitted")
    assert_close_rel(f.edf, 2.0, OPT_PAR, "edf")
    json.dumps(spline_dict(f), allow_nan=False)


def test_infinite_lambda_is_the_null_space_fit():
    """lambda = inf (theta = 0 in the mixed form) fits the unpenalized columns (1, x) only."""
    x = np.linspace(0, 1, 30)
    y = np.sin(6 * x)
    ks = np.arange(1, 6) / 6
    pls = PenalizedLS.build(rk_basis(x, ks), y, mat_sqrt(rk_penalty(ks)))
    np.testing.assert_array_equal(pls.null, [0, 1])
    at = pls.at(math.inf)
    assert_close_scaled(at.fitted, np.polyval(np.polyfit(x, y, 1), x), EXACT, "the least-squares line")
    assert at.edf == 2.0 and not np.any(at.coef[2:])
    assert_close_scaled(pls.at(1e12).fitted, at.fitted, EXACT, "lambda = 1e12")


# ------------------------------------------------------------------------------------------------------------
# invariances


def test_row_order_invariance():
    """The fit at a given lambda is a deterministic evaluation (EXACT); lambda chosen by GCV comes out of Brent's
    search, whose end point moves with the rounding of the permuted sums (9e-8 relative on some CPUs): OPT_PAR,
    and the fit at the lambda found for the original order is exact again."""
    perm = np.random.default_rng(1).permutation(SIZE.size)

    def assert_same_fit(b: SplineFit, a: SplineFit, tol: float) -> None:
        assert_close_rel(b.lam, a.lam, tol, "lambda")
        assert_close_scaled(b.fitted, a.fitted[perm], tol, "fitted")
        assert_close_scaled(b.coef, a.coef, tol, "coef")
        assert_close_rel(b.edf, a.edf, tol, "edf")

    fixed = engine(1e-4)
    assert_same_fit(fit_spline(SIZE[perm], WEAR[perm], knots=7, lam=1e-4), fixed, EXACT)
    gcv = engine("gcv")
    assert_same_fit(fit_spline(SIZE[perm], WEAR[perm], knots=7, lam="gcv"), gcv, OPT_PAR)
    assert_same_fit(fit_spline(SIZE[perm], WEAR[perm], knots=7, lam=gcv.lam), gcv, EXACT)


def test_affine_invariance_of_x_and_y():
    a = engine("gcv")
    b = fit_spline(10 - 3 * SIZE, 5 + 2 * WEAR, knots=7, lam="gcv")  # x reversed and stretched
    assert_close_rel(b.lam, a.lam, OPT_PAR, "lambda")
    assert_close_rel(b.edf, a.edf, OPT_PAR, "edf")
    assert_close_scaled(b.fitted, 5 + 2 * a.fitted, OPT_PAR, "fitted")


def test_knot_values_reproduce_default_knots():
    a = engine(1e-4)
    b = fit_spline(SIZE, WEAR, knot_values=a.knots[::-1], lam=1e-4)
    assert_close_scaled(b.knots_scaled, a.knots_scaled, ROUNDING, "knots")
    assert_close_scaled(b.fitted, a.fitted, EXACT, "fitted")
    c = fit_spline(SIZE, WEAR, knot_values=[1.42, 2.0, 2.98], lam=1e-2)  # knots on the range ends are fine
    assert c.K == 3


# ------------------------------------------------------------------------------------------------------------
# defaults and validation


def test_default_knots():
    assert default_knots(19) == 7
    assert default_knots(9) == 7
    assert default_knots(5) == 3
    assert default_knots(3) == 1
    assert fit_spline(SIZE, WEAR, lam=1e-4).K == 7  # engine: 9 distinct sizes
    small = fit_spline([1.0, 2.0, 3.0, 3.0], [1.0, 3.0, 2.0, 2.5], lam="gcv")
    assert small.K == 1 and np.all(np.isfinite(small.fitted))


@pytest.mark.parametrize("knots", [0, -1, 8, 100])
def test_knots_out_of_range(knots):
    with pytest.raises(UsageError, match="number of knots must be between 1 and 7") as e:
        fit_spline(SIZE, WEAR, knots=knots, lam=1e-4)  # 9 distinct sizes
    assert e.value.param == "knots"  # the library speaks of the model; the command line names its option


@pytest.mark.parametrize("lam", [0, -1e-3, math.inf, math.nan, "abc", "", None, True])
def test_bad_lambda(lam):
    with pytest.raises(UsageError, match="^lambda must be a positive") as e:
        fit_spline(SIZE, WEAR, lam=lam)
    assert e.value.param == "lambda"


def test_lambda_given_as_text():
    assert fit_spline(SIZE, WEAR, knots=7, lam="1e-4").lam == 1e-4
    assert fit_spline(SIZE, WEAR, knots=7, lam="GCV").lam_method == "gcv"


@pytest.mark.parametrize(
    ("x", "y"),
    [
        ([2.0] * 5, [1.0, 2.0, 3.0, 4.0, 5.0]),  # constant x
        ([1.0, 1.0, 2.0, 2.0], [1.0, 2.0, 3.0, 4.0]),  # 2 distinct x
        ([1.0, 2.0, 3.0, np.nan], [1.0, 2.0, 3.0, 4.0]),
        ([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, np.inf, 4.0]),
        ([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0]),
    ],
)
def test_bad_data(x, y):
    with pytest.raises(DataError):
        fit_spline(x, y, lam=1.0)


@pytest.mark.parametrize(
    ("values", "pattern"),
    [
        ([1.0, 2.0], "range"),
        ([2.0, 3.5], "range"),
        ([2.0, 2.0, 2.5], "distinct"),
        ([], "at least one"),
        (np.linspace(1.5, 2.9, 8), "At most 7"),
    ],
)
def test_bad_knot_values(values, pattern):
    with pytest.raises(UsageError, match=pattern):
        fit_spline(SIZE, WEAR, knot_values=values, lam=1e-4)


def test_knots_and_knot_values_must_agree():
    with pytest.raises(UsageError):
        fit_spline(SIZE, WEAR, knots=3, knot_values=[1.6, 2.0], lam=1e-4)


# ------------------------------------------------------------------------------------------------------------
# JSON


def test_spline_dict_contract_fields():
    f = engine(1e-4)
    d = spline_dict(f)
    text = json.dumps(d, allow_nan=False)
    assert json.loads(text) == d
    for key in (
        "model", "basis", "x", "y", "n", "knots", "knots_scaled", "lambda", "lambda_method",
        "coefficients", "edf", "rss", "sigma", "gcv", "r_squared", "fitted",
    ):  # fmt: skip
        assert key in d, key
    assert d["model"] == "penalized_spline" and d["basis"] == "rk"
    assert (d["x"], d["y"], d["n"]) == ("size", "wear", 19)
    assert d["lambda"] == 1e-4 and d["lambda_method"] == "fixed"
    assert len(d["coefficients"]) == 9 and len(d["fitted"]) == 19
    assert_close_scaled(d["knots"], 1.42 + np.asarray(REF["knots_scaled"]) * 1.56, ROUNDING, "knots")
    assert "predictions" not in d  # the caller adds them
    g = spline_dict(engine("gcv"))
    json.dumps(g, allow_nan=False)
    assert g["lambda_method"] == "gcv" and g["lambda_search"]["criterion"] == "GCV"


# ------------------------------------------------------------------------------------------------------------
# plot_spline

MAGIC = {".png": b"\x89PNG", ".svg": b"<?xml", ".pdf": b"%PDF"}


@pytest.mark.parametrize("suffix", [".png", ".svg", ".pdf"])
def test_plot_spline_writes_each_format(tmp_path, suffix):
    from mmcli.plot import plot_spline

    target = tmp_path / f"engine{suffix}"
    plot_spline(engine("gcv"), target)
    assert target.read_bytes().startswith(MAGIC[suffix])
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temporary file left


def test_plot_spline_bad_suffix_or_directory(tmp_path):
    from mmcli.plot import plot_spline

    with pytest.raises(UsageError, match="png"):
        plot_spline(engine(1e-4), tmp_path / "engine.jpg")
    with pytest.raises(UsageError, match="directory"):
        plot_spline(engine(1e-4), tmp_path / "missing" / "engine.png")
    assert list(tmp_path.iterdir()) == []


def test_plot_spline_failed_write_leaves_nothing(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from mmcli.plot import plot_spline

    target = tmp_path / "engine.png"
    target.write_bytes(b"old")

    def boom(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", boom)
    with pytest.raises(OSError, match="disk full"):
        plot_spline(engine(1e-4), target)
    assert target.read_bytes() == b"old"  # untouched
    assert [p.name for p in tmp_path.iterdir()] == ["engine.png"]


def test_plot_spline_content(monkeypatch, tmp_path):
    """Axis labels from the column names; lambda and EDF in the title; data, curve, band and knots drawn."""
    from matplotlib.figure import Figure

    from mmcli.plot import plot_spline

    seen = {}
    real = Figure.savefig

    def spy(self, *args, **kwargs):
        seen["fig"] = self
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    f = engine("gcv")
    plot_spline(f, tmp_path / "e.png")
    ax = seen["fig"].axes[0]
    assert ax.get_xlabel() == "size" and ax.get_ylabel() == "wear"
    assert f"{f.lam:.4g}" in ax.get_title() and f"{f.edf:.3g}" in ax.get_title()
    labels = {t.get_text() for t in ax.get_legend().get_texts()}
    assert {"data", "fit", "±2 s.e.", "knots"} <= labels
    knot_line = next(line for line in ax.get_lines() if line.get_label() == "knots")
    np.testing.assert_allclose(knot_line.get_xdata(), f.knots, rtol=ROUNDING)
