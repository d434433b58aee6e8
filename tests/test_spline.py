"""mmcli.spline and plot_spline against Wood's engine example in R (tests/reference/engine_spline.json).

Provenance (tests/reference/README.md): R 4.2.2, mgcv 1.8-41, nlme 3.1-162; the engine-wear data of
Wood (2006) section 3.2, x = size rescaled to [0, 1], knots 1:7/8, the rk basis; the fit at lambda = 1e-4 with
Wood's matrix square root, lambda by GCV (Wood's grid, refined), lambda by REML from nlme::lme on the
mixed-model form, and the fit the seed's incorrect matSqrt gives.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from mmcli.errors import DataError, UsageError
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

# Tolerances. A deterministic evaluation (basis, penalty, the fit at a fixed lambda) is held to what double
# precision gives through a QR solve; a chosen lambda to what its optimizer supports.
DETERMINISTIC_ATOL = 1e-10  # a basis, a penalty, a square root
FIXED_FIT_ATOL = 1e-8  # fitted values and predictions at a fixed lambda (CONTRACT acceptance: 1e-8)
FIXED_STAT_RTOL = 1e-8  # edf, rss, gcv at a fixed lambda, relative
COEF_RTOL = 1e-7  # coefficients, relative to the largest one (they reach 4e3 at lambda = 1e-4)
GCV_LAMBDA_RTOL = 1e-6  # lambda by GCV: bounded Brent on log(lambda), xatol 1e-10 (we get ~2e-10)
GCV_EDF_RTOL = 1e-6
REML_LAMBDA_RTOL = 1e-4  # lambda by REML: lmm's BOBYQA vs nlme's optimizer (we get ~2.4e-6; acceptance 2e-3)
REML_FITTED_ATOL = 1e-4  # fitted values of the REML fit vs nlme's (we get ~3e-7; acceptance 1e-4)
MIXED_IDENTITY_ATOL = 1e-8  # BLUP of the mixed form vs the penalized fit at the same lambda

DATA = np.loadtxt(ROOT / "sample_data" / "engine.csv", delimiter=",", skiprows=1)
SIZE, WEAR = DATA[:, 0], DATA[:, 1]


def engine(lam: float | str = 1e-4, **kw) -> SplineFit:
    return fit_spline(SIZE, WEAR, knots=7, lam=lam, x_name="size", y_name="wear", **kw)


def grid_x() -> np.ndarray:
    """The reference's prediction grid (0:100/100 on the scaled x) on the size scale."""
    g = np.asarray(REF["predict_grid_scaled"])
    return SIZE.min() + g * (SIZE.max() - SIZE.min())


def seed_mat_sqrt(S: np.ndarray) -> np.ndarray:
    """The seed's matSqrt: crossprod(U) %*% sqrt(D) = D^1/2 (eigenvalues decreasing), not a root of S."""
    d = np.sort(np.clip(np.linalg.eigvalsh(S), 0.0, None))[::-1]
    return np.diag(np.sqrt(d))


def assert_close_rel(got: float, want: float, rtol: float, what: str) -> None:
    assert abs(got - want) <= rtol * abs(want), f"{what}: {got!r} vs {want!r} (rtol {rtol:g})"


# ------------------------------------------------------------------------------------------------------------
# basis, penalty, square root


def test_rk_kernel_formula_and_symmetry():
    x, z = 0.3, 0.8
    want = ((z - 0.5) ** 2 - 1 / 12) * ((x - 0.5) ** 2 - 1 / 12) / 4 - (
        (abs(x - z) - 0.5) ** 4 - 0.5 * (abs(x - z) - 0.5) ** 2 + 7 / 240
    ) / 24
    assert abs(rk_kernel(np.array([x]), np.array([z]))[0, 0] - want) <= DETERMINISTIC_ATOL
    u = np.linspace(0, 1, 11)
    Rm = rk_kernel(u, u)
    assert Rm.shape == (11, 11)
    np.testing.assert_allclose(Rm, Rm.T, atol=DETERMINISTIC_ATOL)


def test_basis_and_penalty_layout():
    ks = np.asarray(REF["knots_scaled"])
    X = rk_basis(np.array([0.0, 0.5, 1.0]), ks)
    assert X.shape == (3, 9)
    np.testing.assert_array_equal(X[:, 0], 1.0)
    np.testing.assert_array_equal(X[:, 1], [0.0, 0.5, 1.0])
    S = rk_penalty(ks)
    assert S.shape == (9, 9)
    assert not np.any(S[:2, :]) and not np.any(S[:, :2])
    np.testing.assert_allclose(S[2:, 2:], rk_kernel(ks, ks), atol=DETERMINISTIC_ATOL)
    assert np.linalg.matrix_rank(S) == 7


def test_mat_sqrt_is_a_square_root():
    S = rk_penalty(np.asarray(REF["knots_scaled"]))
    B = mat_sqrt(S)
    np.testing.assert_allclose(B.T @ B, S, atol=DETERMINISTIC_ATOL)
    np.testing.assert_allclose(B, B.T, atol=DETERMINISTIC_ATOL)


# ------------------------------------------------------------------------------------------------------------
# the fit at lambda = 1e-4 against R


def test_fixed_lambda_matches_reference():
    f = engine(1e-4)
    assert f.lam_method == "fixed" and f.lam == 1e-4
    np.testing.assert_allclose(f.knots_scaled, REF["knots_scaled"], atol=DETERMINISTIC_ATOL)
    coef_ref = np.asarray(REF["coef"])
    assert np.max(np.abs(f.coef - coef_ref)) <= COEF_RTOL * np.max(np.abs(coef_ref))
    np.testing.assert_allclose(f.fitted, REF["fitted"], rtol=0, atol=FIXED_FIT_ATOL)
    assert_close_rel(f.edf, REF["edf"], FIXED_STAT_RTOL, "edf")
    assert_close_rel(f.rss, REF["rss"], FIXED_STAT_RTOL, "rss")
    assert_close_rel(f.gcv, REF["gcv"], FIXED_STAT_RTOL, "gcv")
    fit, _ = f.predict(grid_x())
    np.testing.assert_allclose(fit, REF["predict"], rtol=0, atol=FIXED_FIT_ATOL)


def test_fixed_lambda_acceptance_grid():
    """The acceptance script writes the grid as 1.42 + g * 1.56 with 10 decimals."""
    xs = np.array([float(f"{1.42 + g * 1.56:.10f}") for g in REF["predict_grid_scaled"]])
    fit, _ = engine(1e-4).predict(xs)
    np.testing.assert_allclose(fit, REF["predict"], rtol=0, atol=FIXED_FIT_ATOL)


def test_summary_statistics_definitions():
    f = engine(1e-4)
    n = WEAR.size
    assert f.n == n
    assert_close_rel(f.rss, float(np.sum((WEAR - f.fitted) ** 2)), 1e-12, "rss")
    assert_close_rel(f.sigma**2, f.rss / (n - f.edf), 1e-12, "sigma^2")
    assert_close_rel(f.gcv, n * f.rss / (n - f.edf) ** 2, 1e-12, "gcv")
    tss = float(np.sum((WEAR - WEAR.mean()) ** 2))
    assert_close_rel(f.r_squared, 1 - f.rss / tss, 1e-12, "r_squared")
    assert_close_rel(f.adj_r_squared, 1 - (f.rss / (n - f.edf)) / (tss / (n - 1)), 1e-12, "adj_r_squared")


def test_edf_and_vp_against_the_normal_equations():
    """tr A and Vp from the QR agree with the textbook formulas (computed the unstable way, looser)."""
    f = engine(1e-3)
    X = f.basis(SIZE)
    S = rk_penalty(f.knots_scaled)
    M = np.linalg.inv(X.T @ X + f.lam * S)
    assert_close_rel(f.edf, float(np.trace(X @ M @ X.T)), 1e-7, "edf")
    np.testing.assert_allclose(f.Vp, f.sigma**2 * M, rtol=1e-6, atol=1e-9 * np.max(np.abs(f.Vp)))


def test_predict_standard_errors():
    f = engine("gcv")
    xs = np.linspace(SIZE.min(), SIZE.max(), 37)
    fit, se = f.predict(xs)
    Xp = f.basis(xs)
    assert np.all(se > 0)
    np.testing.assert_allclose(se, np.sqrt(np.diag(Xp @ f.Vp @ Xp.T)), rtol=1e-12)
    np.testing.assert_allclose(fit, Xp @ f.coef, rtol=1e-12)
    at_data, _ = f.predict(SIZE)
    np.testing.assert_allclose(at_data, f.fitted, atol=1e-12)
    with pytest.raises(DataError):
        f.predict(np.array([1.5, np.nan]))


# ------------------------------------------------------------------------------------------------------------
# the seed's wrong square root stays out


def test_seed_matsqrt_is_wrong_and_reproduces_the_seed_variant():
    ks = np.asarray(REF["knots_scaled"])
    S = rk_penalty(ks)
    Bseed = seed_mat_sqrt(S)
    assert np.max(np.abs(Bseed.T @ Bseed - S)) > 1e-3  # not a square root of S
    assert np.max(np.abs(mat_sqrt(S) - Bseed)) > 1e-3  # and not what mmcli uses
    X = rk_basis((SIZE - SIZE.min()) / (SIZE.max() - SIZE.min()), ks)
    seed = fit_at_lambda(X, WEAR, Bseed, 1e-4)
    ref = REF["seed_matsqrt_variant"]
    coef_ref = np.asarray(ref["coef"])
    assert np.max(np.abs(seed.coef - coef_ref)) <= COEF_RTOL * np.max(np.abs(coef_ref))
    np.testing.assert_allclose(seed.fitted, ref["fitted"], rtol=0, atol=FIXED_FIT_ATOL)
    # mmcli's fit is the correct one, and it is far from the seed's (0.17 on these data)
    f = engine(1e-4)
    assert np.max(np.abs(f.fitted - np.asarray(ref["fitted"]))) > 0.1
    np.testing.assert_allclose(f.fitted, REF["fitted"], rtol=0, atol=FIXED_FIT_ATOL)


# ------------------------------------------------------------------------------------------------------------
# lambda by GCV


def test_gcv_choice_matches_reference():
    f = engine("gcv")
    g = REF["gcv_choice"]
    assert f.lam_method == "gcv"
    assert_close_rel(f.lam, g["lambda"], GCV_LAMBDA_RTOL, "lambda")
    assert_close_rel(f.edf, g["edf"], GCV_EDF_RTOL, "edf")
    assert_close_rel(f.gcv, g["gcv"], 1e-10, "gcv")
    coef_ref = np.asarray(g["coef"])
    assert np.max(np.abs(f.coef - coef_ref)) <= 1e-5 * np.max(np.abs(coef_ref))
    s = f.lambda_search
    assert s is not None
    assert_close_rel(s["grid_best_lambda"], g["grid_best_lambda"], 1e-12, "grid_best_lambda")
    assert_close_rel(s["grid_best_gcv"], g["grid_best_gcv"], 1e-10, "grid_best_gcv")
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

    With the seed's Z = X U_R D_+^(1/2) instead of D_+^(-1/2) it does not."""
    f = engine(1e-3)
    X = f.basis(SIZE)
    S = rk_penalty(f.knots_scaled)
    Xf, Z, U_F, U_R, d = mixed_matrices(X, S)
    assert Xf.shape == (19, 2) and Z.shape == (19, 7)
    assert np.all(np.diff(d) <= 0) and np.all(d > 0)
    np.testing.assert_allclose(U_F.T @ S @ U_F, 0, atol=DETERMINISTIC_ATOL)

    def ridge(Zm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        W = np.hstack([Xf, Zm])
        P = np.zeros((W.shape[1], W.shape[1]))
        P[2:, 2:] = f.lam * np.eye(Zm.shape[1])
        sol = np.linalg.solve(W.T @ W + P, W.T @ WEAR)
        return W @ sol, sol

    fitted, sol = ridge(Z)
    np.testing.assert_allclose(fitted, f.fitted, atol=1e-9)
    coef = U_F @ sol[:2] + U_R @ (sol[2:] / np.sqrt(d))
    np.testing.assert_allclose(coef, f.coef, atol=1e-6 * np.max(np.abs(f.coef)))
    seed_fitted, _ = ridge(X @ U_R * np.sqrt(d))
    assert np.max(np.abs(seed_fitted - f.fitted)) > 1e-2


def test_reml_choice_matches_reference():
    f = engine("reml")
    r = REF["reml_choice"]
    assert f.lam_method == "reml"
    assert f.mixed is not None and f.mixed.converged
    assert_close_rel(f.lam, r["lambda"], REML_LAMBDA_RTOL, "lambda")
    np.testing.assert_allclose(f.fitted, r["fitted_lme"], rtol=0, atol=REML_FITTED_ATOL)
    assert_close_rel(f.edf, r["edf"], REML_LAMBDA_RTOL, "edf")
    assert_close_rel(f.mixed.sigma, r["sigma"], REML_LAMBDA_RTOL, "sigma")
    assert_close_rel(f.sigma, r["sigma"], REML_LAMBDA_RTOL, "sigma")  # at the REML optimum, = RSS/(n - EDF)
    coef_ref = np.asarray(r["coef"])
    assert np.max(np.abs(f.coef - coef_ref)) <= REML_LAMBDA_RTOL * np.max(np.abs(coef_ref))
    assert f.mixed.reml_criterion is not None
    assert_close_rel(f.mixed.reml_criterion, -2 * r["REMLlogLik"], 1e-8, "REML criterion")
    assert f.lambda_search is not None and f.lambda_search["criterion"] == "REML"


def test_reml_escapes_the_boundary_local_minimum():
    """From lme4's start (theta = 1 on the unscaled Z) REML falls to theta = 0; the scaled starts find the
    interior minimum, which has the lower criterion."""
    f = engine("reml")
    assert f.mixed is not None
    starts = f.mixed.optimizer["starts"]
    assert len(starts) == 3
    assert min(s["reml_criterion"] for s in starts) == f.mixed.reml_criterion
    assert 0 < f.lam < 1


def test_mixed_form_blup_equals_penalized_fit():
    f = engine("reml")
    m = mixed_form(f)
    assert m is f.mixed
    assert_close_rel(m.lam, m.sigma**2 / m.sigma_g**2, 1e-12, "lambda = sigma^2 / sigma_g^2")
    assert_close_rel(m.lam, 1 / m.theta**2, 1e-12, "lambda = 1 / theta^2")
    np.testing.assert_allclose(m.fitted, f.fitted, rtol=0, atol=MIXED_IDENTITY_ATOL)
    np.testing.assert_allclose(m.Xf @ m.beta_f + m.Z @ m.b, f.fitted, rtol=0, atol=MIXED_IDENTITY_ATOL)
    np.testing.assert_allclose(m.coef, f.coef, rtol=0, atol=1e-7 * np.max(np.abs(f.coef)))
    # the mixed form of a fixed-lambda fit is fitted afresh, and agrees
    m2 = mixed_form(engine(1e-4))
    assert_close_rel(m2.lam, m.lam, 1e-8, "lambda")
    d = m.to_dict()
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
    np.testing.assert_allclose(f.fitted, line, atol=1e-6)
    assert abs(f.edf - 2.0) < 1e-4
    json.dumps(f.to_dict(), allow_nan=False)


def test_infinite_lambda_is_the_null_space_fit():
    """lambda = inf (theta = 0 in the mixed form) fits the unpenalized columns (1, x) only."""
    x = np.linspace(0, 1, 30)
    y = np.sin(6 * x)
    ks = np.arange(1, 6) / 6
    pls = PenalizedLS.build(rk_basis(x, ks), y, mat_sqrt(rk_penalty(ks)))
    np.testing.assert_array_equal(pls.null, [0, 1])
    at = pls.at(math.inf)
    np.testing.assert_allclose(at.fitted, np.polyval(np.polyfit(x, y, 1), x), atol=1e-12)
    assert at.edf == 2.0 and not np.any(at.coef[2:])
    np.testing.assert_allclose(pls.at(1e12).fitted, at.fitted, atol=1e-8)


# ------------------------------------------------------------------------------------------------------------
# invariances


def test_row_order_invariance():
    perm = np.random.default_rng(1).permutation(SIZE.size)
    for lam in (1e-4, "gcv"):
        a = engine(lam)
        b = fit_spline(SIZE[perm], WEAR[perm], knots=7, lam=lam)
        assert_close_rel(b.lam, a.lam, 1e-8, "lambda")
        np.testing.assert_allclose(b.fitted, a.fitted[perm], atol=1e-10)
        np.testing.assert_allclose(b.coef, a.coef, atol=1e-9 * np.max(np.abs(a.coef)))
        assert_close_rel(b.edf, a.edf, 1e-10, "edf")


def test_affine_invariance_of_x_and_y():
    a = engine("gcv")
    b = fit_spline(10 - 3 * SIZE, 5 + 2 * WEAR, knots=7, lam="gcv")  # x reversed and stretched
    assert_close_rel(b.lam, a.lam, 1e-6, "lambda")
    assert_close_rel(b.edf, a.edf, 1e-6, "edf")
    np.testing.assert_allclose(b.fitted, 5 + 2 * a.fitted, atol=1e-6)


def test_knot_values_reproduce_default_knots():
    a = engine(1e-4)
    b = fit_spline(SIZE, WEAR, knot_values=a.knots[::-1], lam=1e-4)
    np.testing.assert_allclose(b.knots_scaled, a.knots_scaled, atol=1e-14)
    np.testing.assert_allclose(b.fitted, a.fitted, atol=1e-10)
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
    with pytest.raises(UsageError, match="--knots must be between 1 and 7"):
        fit_spline(SIZE, WEAR, knots=knots, lam=1e-4)  # 9 distinct sizes


@pytest.mark.parametrize("lam", [0, -1e-3, math.inf, math.nan, "abc", "", None, True])
def test_bad_lambda(lam):
    with pytest.raises(UsageError, match="--lambda"):
        fit_spline(SIZE, WEAR, lam=lam)


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


def test_to_dict_contract_fields():
    f = engine(1e-4)
    d = f.to_dict()
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
    np.testing.assert_allclose(d["knots"], 1.42 + np.asarray(REF["knots_scaled"]) * 1.56, atol=1e-12)
    assert "predictions" not in d  # the caller adds them
    g = engine("gcv").to_dict()
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
    np.testing.assert_allclose(knot_line.get_xdata(), f.knots)
