"""mgcv-compatible smooths: bases, penalties, constraint absorption and the mixed-model form.

Reference numbers: tests/reference/mgcv_basis.json (R 4.2.2, mgcv 1.8-41; made by make_mgcv_basis.R) and
gamm4's fits in tests/reference/gamm_sleepstudy_*.json. A basis or penalty is a deterministic evaluation
and is checked to conftest's EXACT relative to the size of the reference matrix; identities that hold up to
rounding alone to ROUNDING; what R computed through an eigen-decomposition of an ill-conditioned penalty to
EXACT plus R_EIGEN times the condition number.
"""

from __future__ import annotations

import ast
import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import EXACT, R_EIGEN, ROUNDING

from mmcli.errors import ModelError, UsageError
from mmcli.smooths import (
    VALID_BASES,
    constraint_null_space,
    cr_F_S,
    cr_knots,
    cs_shrink,
    r_quantile7,
    rk_basis,
    rk_kernel,
    smooth_construct,
    smooth_to_mixed,
)

ROOT = Path(__file__).resolve().parents[1]
REF = Path(__file__).resolve().parent / "reference"

MGCV = json.loads((REF / "mgcv_basis.json").read_text())
CASES = {c["name"]: c for c in MGCV["cases"]}
# R's cs penalty depends on LAPACK rounding (see cs_shrink); for this case the reference machine's R made
# the other of its two possible choices than mmcli's fixed one.
R_CS_LINE_FIRST = {"uneven_cs8": False}


def assert_close(actual, expected, rtol=EXACT, what=""):
    actual = np.asarray(actual, dtype=float)
    expected = np.asarray(expected, dtype=float)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = max(float(np.abs(expected).max(initial=0.0)), 1e-300)
    err = float(np.abs(actual - expected).max(initial=0.0))
    assert err <= rtol * scale, f"{what}: max abs error {err:.3g} > {rtol:.0e} x {scale:.3g}"


def read_column(name: str, col: str) -> np.ndarray:
    with open(ROOT / "sample_data" / name, newline="") as fh:
        return np.array([float(row[col]) for row in csv.DictReader(fh)])


def build(case: dict, **kw):
    line_first = R_CS_LINE_FIRST.get(case["name"])
    return smooth_construct(
        np.array(case["x"]), var=case["var"], bs=case["bs"], k=case["k"], cs_line_first=line_first, **kw
    )


@pytest.fixture(scope="module")
def sleep():
    with open(ROOT / "sample_data" / "sleepstudy.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    days = np.array([float(r["Days"]) for r in rows])
    y = np.array([float(r["Reaction"]) for r in rows])
    subject = np.array([r["Subject"] for r in rows])
    return days, y, subject


# ---------------------------------------------------------------------------------------------------------
# against mgcv, element by element


def test_reference_provenance():
    assert MGCV["mgcv_version"] == "1.8.41"
    assert MGCV["R_version"].startswith("R version 4.2.2")
    assert set(CASES) >= {"sleepstudy_cr10", "sleepstudy_cs10", "sleepstudy_cr5", "engine_cr6"}


def test_reference_x_is_the_sample_data():
    days = read_column("sleepstudy.csv", "Days")
    size = read_column("engine.csv", "size")
    for case in CASES.values():
        if case["data"] == "sleepstudy.csv":
            np.testing.assert_array_equal(case["x"], days)
        elif case["data"] == "engine.csv":
            np.testing.assert_array_equal(case["x"], size)


@pytest.mark.parametrize("name", sorted(CASES))
def test_unconstrained_basis_matches_mgcv(name):
    case = CASES[name]
    sm = build(case)
    assert sm.term == case["label"]
    assert_close(sm.knots, case["knots"], what="knots")
    # mgcv stores F transposed: matrix(sm$F, k, k) is t([0; B^-1 D; 0])
    assert_close(sm.F, np.array(case["F_R"]).T, what="F")
    assert_close(sm.X_unconstrained, case["X_raw"], what="X (smooth.construct)")
    assert_close(sm.S_unconstrained, case["S_raw"], what="S (smooth.construct)")
    assert_close(sm.unconstrained_matrix(np.array(case["newx"])), case["predict_raw"], what="Predict.matrix")


@pytest.mark.parametrize("name", sorted(CASES))
def test_constrained_basis_matches_smoothcon(name):
    case = CASES[name]
    sm = build(case)
    assert_close(sm.C, case["C"], what="constraint colMeans(X)")
    assert sm.S_scale == pytest.approx(case["S_scale"], rel=EXACT)
    assert_close(sm.Z, case["Z"], what="Householder null space of C")
    assert_close(sm.X, case["X"], what="smoothCon X")
    assert_close(sm.S, case["S"], what="smoothCon S[[1]]")
    assert (sm.rank, sm.null_space_dim) == (case["rank"], case["null_space_dim"])
    assert sm.m == case["df"] == case["k"] - 1


@pytest.mark.parametrize("name", sorted(CASES))
def test_predict_matrix_matches_predictmat(name):
    case = CASES[name]
    sm = build(case)
    newx = np.array(case["newx"])
    assert newx.min() < sm.knots[0] and newx.max() > sm.knots[-1]  # extrapolation is exercised
    assert_close(sm.predict_matrix(newx), case["predict"], what="PredictMat")


def test_knots_follow_r_quantile_type7():
    # R's arithmetic gives 6.999999999999999 for the 8th of 10 knots on 0..9, as stored by mgcv
    days = read_column("sleepstudy.csv", "Days")
    knots = cr_knots(days, 10)
    np.testing.assert_array_equal(knots, CASES["sleepstudy_cr10"]["knots"])
    assert knots[7] == 6.999999999999999
    # and the same quantiles numpy computes, up to rounding
    x = np.array(CASES["uneven_cs8"]["x"])
    probs = np.linspace(0, 1, 8)
    assert_close(r_quantile7(np.unique(x), probs), np.quantile(np.unique(x), probs), rtol=ROUNDING)


def test_F_and_S_are_bitwise_mgcv_for_cr():
    # the cs penalty depends on S's rounding (cs_shrink), so getFS is reproduced operation by operation
    for name in ("sleepstudy_cr10", "engine_cr6", "uneven_cr7"):
        case = CASES[name]
        F, S = cr_F_S(np.array(case["knots"]))
        np.testing.assert_array_equal(S, case["S_raw"])
        np.testing.assert_array_equal(F.T, case["F_R"])


# ---------------------------------------------------------------------------------------------------------
# the cs shrinkage


def test_cs_penalty_is_one_of_rs_two_choices():
    """R's cs penalty is mmcli's with the null-space pair in one of its two orders; the parts that do not
    depend on the order (eigenvalues, the penalized part) agree whichever R chose."""
    for name in ("sleepstudy_cs10", "engine_cs6", "uneven_cs8"):
        case = CASES[name]
        knots = np.array(case["knots"])
        _, S = cr_F_S(knots)
        S_R = np.array(case["S_raw"])
        fits = [cs_shrink(S, knots, line_first=lf) for lf in (True, False)]
        errors = [np.abs(Sc - S_R).max() / np.abs(S_R).max() for Sc in fits]
        assert min(errors) < EXACT, name
        expected_first = R_CS_LINE_FIRST.get(name, True)
        assert errors[0 if expected_first else 1] < EXACT, name
        for Sc in fits:
            assert_close(np.linalg.eigvalsh(Sc), np.linalg.eigvalsh(S_R), what=f"{name} eigenvalues")
            # projected off the null plane, both equal the cr penalty
            t = knots - knots[0]
            N, _ = np.linalg.qr(np.column_stack([np.ones_like(t), t]))
            P = np.eye(len(t)) - N @ N.T
            assert_close(P @ Sc @ P, P @ S_R @ P, what=f"{name} penalized part")


def test_cs_default_differs_from_r_only_in_the_null_order():
    case = CASES["uneven_cs8"]
    default = smooth_construct(np.array(case["x"]), var="x", bs="cs", k=8)
    other = smooth_construct(np.array(case["x"]), var="x", bs="cs", k=8, cs_line_first=False)
    assert_close(other.S, case["S"])
    assert_close(default.X, case["X"])  # the basis itself does not depend on it
    # the line through the first knot gets shrink x (smallest positive eigenvalue) in mmcli's default and
    # shrink² x it in R's answer on the reference machine: a factor of 10 apart
    knots = np.array(case["knots"])
    a = (knots - knots[0]) / np.linalg.norm(knots - knots[0])
    S_R = np.array(case["S_raw"])
    assert a @ default.S_unconstrained @ a == pytest.approx(10 * (a @ S_R @ a), rel=EXACT)
    assert a @ other.S_unconstrained @ a == pytest.approx(a @ S_R @ a, rel=EXACT)


def test_cs_k3_order_is_rs():
    # for k = 3, R's LAPACK always puts the line through the first knot last
    days = read_column("sleepstudy.csv", "Days")
    knots = cr_knots(days, 3)
    _, S = cr_F_S(knots)
    a = (knots - knots[0]) / np.linalg.norm(knots - knots[0])
    Sc = cs_shrink(S, knots)
    lam = np.linalg.eigvalsh(S)[::-1][0]
    assert a @ Sc @ a == pytest.approx(lam * 0.01, rel=ROUNDING)


# ---------------------------------------------------------------------------------------------------------
# properties


@pytest.mark.parametrize("bs", VALID_BASES)
def test_constrained_columns_sum_to_zero(bs):
    days = read_column("sleepstudy.csv", "Days")
    sm = smooth_construct(days, var="Days", bs=bs, k=8)
    # C Z = 0 with C the (unweighted) column means: every constrained column has mean zero
    assert np.abs(sm.C @ sm.Z).max() < ROUNDING * np.abs(sm.C).max()
    assert np.abs(sm.X.sum(axis=0)).max() < ROUNDING * np.abs(sm.X).max() * len(days)
    np.testing.assert_allclose(sm.Z.T @ sm.Z, np.eye(sm.m), rtol=0, atol=ROUNDING)


def test_constraint_with_a_zero_mean_column_is_absorbed_as_smoothcon_does():
    # smoothCon's indi branch (a column whose mean is exactly 0 is left alone), replayed in R 4.2.2:
    # C <- matrix(c(0.5, 0, -0.2, 0.3), 1); indi <- which(colSums(C) != 0)
    # qrc <- qr(t(C[, indi, drop = FALSE]))
    # X <- diag(4); X[, indi[1:2]] <- t(qr.qty(qrc, t(X[, indi])))[, 2:3]; X <- X[, -indi[3]]
    Z_R = [
        [0.324442842261525088, 0, -0.486664263392287633],
        [0, 1, 0],
        [0.941879109431942307, 0, 0.087181335852086456],
        [0.087181335852086456, 0, 0.869227996221870303],
    ]
    C = np.array([[0.5, 0.0, -0.2, 0.3]])
    Z = constraint_null_space(C)
    assert_close(Z, Z_R)
    assert np.abs(C @ Z).max() < ROUNDING * np.abs(C).max()
    with pytest.raises(ModelError, match="centring constraint is zero"):
        constraint_null_space(np.zeros((1, 3)))


def test_penalty_ranks():
    size = read_column("engine.csv", "size")
    for bs, k, zeros in (("cr", 6, 1), ("cs", 6, 0), ("rk", 6, 1), ("cr", 3, 1), ("cs", 3, 0)):
        sm = smooth_construct(size, var="size", bs=bs, k=k)
        ev = np.linalg.eigvalsh(sm.S)
        assert np.allclose(sm.S, sm.S.T, rtol=0, atol=0)
        assert ev.min() > -ROUNDING * ev.max(), (bs, k)  # positive semi-definite
        n_zero = int(np.sum(ev < EXACT * ev.max()))  # zero, as far as a deterministic evaluation tells
        assert n_zero == zeros == sm.null_space_dim, (bs, k, ev)
        assert sm.rank == sm.m - zeros


def test_cr_basis_interpolates_and_reproduces_lines():
    size = read_column("engine.csv", "size")
    sm = smooth_construct(size, var="size", bs="cr", k=6)
    # parameters are the curve's values at the knots
    np.testing.assert_allclose(sm.unconstrained_matrix(sm.knots), np.eye(6), rtol=0, atol=ROUNDING)
    # linear functions are reproduced exactly, inside and outside the knots
    xs = np.linspace(0.5, 4.0, 57)
    B = sm.unconstrained_matrix(xs)
    np.testing.assert_allclose(B.sum(axis=1), 1.0, rtol=ROUNDING)
    np.testing.assert_allclose(B @ sm.knots, xs, rtol=ROUNDING)
    # the data rows are the predict rows
    assert_close(sm.predict_matrix(size), sm.X, rtol=ROUNDING)


def test_cr_extrapolation_is_linear_and_continuous():
    days = read_column("sleepstudy.csv", "Days")
    sm = smooth_construct(days, var="Days", bs="cs", k=7)
    lo, hi = sm.knots[0], sm.knots[-1]
    for xs in (lo - np.array([0.0, 1.0, 2.0, 3.0]), hi + np.array([0.0, 1.0, 2.0, 3.0])):
        P = sm.predict_matrix(xs)
        assert np.abs(np.diff(P, n=2, axis=0)).max() <= ROUNDING * np.abs(P).max()
    # across each knot the rows move by at most their slope (~1 per day) times 2 eps, far below EXACT: a jump
    # would be of the order of the entries
    eps = EXACT / 100
    for t in sm.knots:
        P = sm.predict_matrix(np.array([t - eps, t + eps]))
        assert np.abs(P[0] - P[1]).max() <= EXACT * np.abs(P).max(), t


def test_row_order_does_not_matter():
    days = read_column("sleepstudy.csv", "Days")
    perm = np.random.default_rng(1).permutation(days.size)
    a = smooth_construct(days, var="Days", bs="cr", k=10)
    b = smooth_construct(days[perm], var="Days", bs="cr", k=10)
    assert_close(b.X, a.X[perm], rtol=ROUNDING)
    assert_close(b.S, a.S, rtol=ROUNDING)


# ---------------------------------------------------------------------------------------------------------
# rk: Wood (2006) §3.2, which mgcv has no counterpart of


def test_rk_kernel_formula_and_symmetry():
    x = np.array([0.0, 0.3, 0.5, 1.0])
    z = np.array([0.2, 0.7])
    R = rk_kernel(x, z)
    xx, zz = 0.3, 0.7
    by_hand = ((zz - 0.5) ** 2 - 1 / 12) * ((xx - 0.5) ** 2 - 1 / 12) / 4 - (
        (abs(xx - zz) - 0.5) ** 4 - 0.5 * (abs(xx - zz) - 0.5) ** 2 + 7 / 240
    ) / 24
    assert R.shape == (4, 2)
    assert R[1, 1] == pytest.approx(by_hand, rel=ROUNDING)
    np.testing.assert_allclose(rk_kernel(x, x), rk_kernel(x, x).T, rtol=0, atol=0)


def test_rk_basis_reproduces_the_engine_spline_reference():
    ref = json.loads((REF / "engine_spline.json").read_text())
    size = read_column("engine.csv", "size")
    z = np.array(ref["knots_scaled"])
    u = (size - size.min()) / (size.max() - size.min())
    coef = np.array(ref["coef"])
    assert_close(rk_basis(u, z) @ coef, ref["fitted"])
    grid = np.array(ref["predict_grid_scaled"])
    assert_close(rk_basis(grid, z) @ coef, ref["predict"])
    # the smooth with k = K + 2 uses the same knots and the same unconstrained basis
    sm = smooth_construct(size, var="size", bs="rk", k=len(z) + 2)
    np.testing.assert_allclose(sm.unit_knots, z, rtol=ROUNDING)
    assert_close(sm.X_unconstrained, rk_basis(u, z), rtol=ROUNDING)
    assert_close(sm.predict_matrix(size), sm.X, rtol=ROUNDING)


def test_rk_penalty_is_psd_with_a_line_null_space():
    days = read_column("sleepstudy.csv", "Days")
    sm = smooth_construct(days, var="Days", bs="rk", k=6)
    assert sm.knots.size == 4 and sm.m == 5
    np.testing.assert_allclose(sm.knots, [1.8, 3.6, 5.4, 7.2], rtol=ROUNDING)
    ev = np.linalg.eigvalsh(sm.S_unconstrained)
    assert ev.min() > -ROUNDING * ev.max() and int(np.sum(ev < EXACT * ev.max())) == 2
    ms = smooth_to_mixed(sm)
    assert ms.Xf.shape == (days.size, 1) and ms.fixed_names == ("s(Days)Fx1",)
    # the unpenalized part is a rising straight line in x with mean zero
    slope, intercept = np.polyfit(days, ms.Xf[:, 0], 1)
    assert slope > 0
    scale = np.abs(ms.Xf[:, 0]).max()
    assert np.abs(ms.Xf[:, 0] - (slope * days + intercept)).max() <= ROUNDING * scale
    assert abs(ms.Xf[:, 0].mean()) < ROUNDING * scale


# ---------------------------------------------------------------------------------------------------------
# smooth2random


@pytest.mark.parametrize("name", sorted(CASES))
def test_smooth2random_invariants(name):
    case = CASES[name]
    sm = build(case)
    ms = smooth_to_mixed(sm)
    Xr_R = np.array(case["s2r_Xr"])
    Xf_R = np.array(case["s2r_Xf"]).reshape(len(case["x"]), -1)
    assert ms.Zr.shape == Xr_R.shape and ms.Xf.shape == Xf_R.shape
    assert ms.rank == case["rank"]
    # eigenvalues and scalings; Zr Zr' = X S⁺ X' does not depend on signs or rotations of U
    assert_close(ms.d, case["s2r_eigenvalues"], what="eigenvalues")
    # trans.D = d^(-1/2) on the penalized directions (so checked through d), 1 on the null space
    D_R = np.array(case["s2r_trans_D"])
    assert_close(ms.trans_D[: ms.rank] ** -2.0, D_R[: ms.rank] ** -2.0, what="trans.D^-2")
    np.testing.assert_array_equal(ms.trans_D[ms.rank :], D_R[ms.rank :])
    # Zr Zr' = X S⁺ X' and the null space Xf carry the eigen-decomposition's rounding times the penalty's
    # condition number (R's LAPACK and ours round differently: 1.2e-10 for uneven_cr7 with OpenBLAS's Prescott
    # kernels)
    cond = ms.d[0] / ms.d[ms.rank - 1]
    rtol = EXACT + R_EIGEN * cond
    assert_close(ms.Zr @ ms.Zr.T, Xr_R @ Xr_R.T, rtol=rtol, what="Zr Zr'")
    # Xf spans the same space (one line, up to sign, for cr)
    if Xf_R.shape[1]:
        coef, *_ = np.linalg.lstsq(ms.Xf, Xf_R, rcond=None)
        assert_close(ms.Xf @ coef, Xf_R, rtol=rtol, what="span of Xf")
        np.testing.assert_allclose(np.abs(coef), 1.0, rtol=rtol)
    # the transforms applied to a prediction matrix
    P = sm.predict_matrix(np.array(case["newx"]))
    Ur, Dr = np.array(case["s2r_trans_U"]), np.array(case["s2r_trans_D"])
    PR = P @ (Ur * Dr)
    r = ms.rank
    assert_close(ms.random_matrix(P) @ ms.random_matrix(P).T, PR[:, :r] @ PR[:, :r].T, rtol=rtol)
    assert_close(ms.random_matrix(sm.X), ms.Zr, rtol=ROUNDING)
    assert_close(ms.fixed_matrix(sm.X).reshape(ms.Xf.shape), ms.Xf, rtol=ROUNDING)


@pytest.mark.parametrize("bs", VALID_BASES)
def test_mixed_form_maps_back_to_the_penalized_fit(bs):
    """min ‖y - Xf β - Zr b‖² + λ‖b‖² is min ‖y - Xβ‖² + λ β'Sβ, and coefficients() maps one to the other."""
    days = read_column("sleepstudy.csv", "Days")
    y = read_column("sleepstudy.csv", "Reaction")
    y = y - y.mean()
    sm = smooth_construct(days, var="Days", bs=bs, k=8)
    ms = smooth_to_mixed(sm)
    for lam in (1e-3, 1.0, 30.0):
        beta = np.linalg.solve(sm.X.T @ sm.X + lam * sm.S, sm.X.T @ y)
        W = np.column_stack([ms.Zr, ms.Xf])
        pen = np.diag(np.r_[np.full(ms.rank, lam), np.zeros(ms.Xf.shape[1])])
        g = np.linalg.solve(W.T @ W + pen, W.T @ y)
        back = ms.coefficients(g[: ms.rank], g[ms.rank :])
        assert_close(back, beta, what=f"{bs} lambda={lam}")
        assert_close(sm.X @ back, ms.Zr @ g[: ms.rank] + ms.Xf @ g[ms.rank :], rtol=ROUNDING)
    with pytest.raises(ValueError):
        ms.coefficients(np.zeros(ms.rank), np.zeros(ms.Xf.shape[1] + 1))


def test_fixed_names_and_sizes():
    days = read_column("sleepstudy.csv", "Days")
    cr = smooth_to_mixed(smooth_construct(days, var="Days", bs="cr", k=10))
    cs = smooth_to_mixed(smooth_construct(days, var="Days", bs="cs", k=10))
    assert cr.fixed_names == ("s(Days)Fx1",) and cr.Xf.shape == (180, 1) and cr.Zr.shape == (180, 8)
    assert cs.fixed_names == () and cs.Xf.shape == (180, 0) and cs.Zr.shape == (180, 9)
    assert cr.U[0, 0] >= 0 and cs.U[0, 0] >= 0


# ---------------------------------------------------------------------------------------------------------
# gamm4's fits use exactly this basis and penalty


def test_gamm4_cs_coefficients_follow_from_its_variance_components(sleep):
    """gamm4 0.2-6: Reaction ~ s(Days, bs = "cs") + (1|Subject). Given its variance components, the
    penalized GLS estimate with this basis and penalty is gamm4's coefficient vector, and its EDF."""
    days, y, subject = sleep
    ref = json.loads((REF / "gamm_sleepstudy_cs.json").read_text())
    vc = {row["grp"]: row["vcov"] for row in ref["varcorr"]}
    sm = smooth_construct(days, var="Days", bs="cs", k=10)
    assert_close(sm.knots, ref["smooth_knots"][0])
    X = np.column_stack([np.ones(days.size), sm.X])
    Zs = (subject[:, None] == np.unique(subject)[None, :]).astype(float)
    Vinv = np.linalg.inv(vc["Residual"] * np.eye(days.size) + vc["Subject"] * Zs @ Zs.T)
    A = X.T @ Vinv @ X
    P = np.zeros_like(A)
    P[1:, 1:] = sm.S / vc["Xr"]
    beta = np.linalg.solve(A + P, X.T @ Vinv @ y)
    assert_close(beta, list(ref["gam_coef"].values()))
    edf = np.diag(np.linalg.solve(A + P, A))[1:].sum()
    assert edf == pytest.approx(ref["gam_edf"]["s(Days)"], rel=EXACT)
    grid = np.array([g["Days"] for g in ref["grid"]])
    assert_close(beta[0] + sm.predict_matrix(grid) @ beta[1:], ref["predict"])


def test_gamm4_cr5_fixed_part_maps_back(sleep):
    """gamm4 0.2-6: s(Days, bs = "cr", k = 5) with variance 0, so the smooth is its fixed line s(Days)Fx1."""
    days, _, _ = sleep
    ref = json.loads((REF / "gamm_sleepstudy_cr5.json").read_text())
    ms = smooth_to_mixed(smooth_construct(days, var="Days", bs="cr", k=5))
    assert ["X" + name for name in ms.fixed_names] == ["Xs(Days)Fx1"]
    coef = ms.coefficients(np.zeros(ms.rank), [ref["mer_fixef"]["Xs(Days)Fx1"]])
    assert_close(coef, list(ref["gam_coef"].values())[1:])


# ---------------------------------------------------------------------------------------------------------
# errors


def test_errors():
    days = read_column("sleepstudy.csv", "Days")
    with pytest.raises(ModelError, match=r"s\(Days\) has 10 unique values, too few for k = 11"):
        smooth_construct(days, var="Days", k=11)
    with pytest.raises(ModelError, match="k >= 3"):
        smooth_construct(days, var="Days", k=2)
    with pytest.raises(ModelError, match="whole number"):
        smooth_construct(days, var="Days", k=4.5)  # type: ignore[arg-type]
    bad = days.copy()
    bad[3] = np.nan
    with pytest.raises(ModelError, match="non-finite"):
        smooth_construct(bad, var="Days")
    sm = smooth_construct(days, var="Days", bs="cr", k=5)
    with pytest.raises(ModelError, match="non-finite"):
        sm.predict_matrix(np.array([1.0, np.inf]))
    with pytest.raises(UsageError, match="Valid bases are: cr, cs, rk, tp, ts, ps") as err:
        smooth_construct(days, var="Days", bs="gp")
    assert err.value.exit_code == 2
    with pytest.raises(ModelError) as err2:
        smooth_construct(days, var="Days", k=11)
    assert err2.value.exit_code == 1


def test_numeric_module_has_no_cli_dependencies():
    tree = ast.parse((ROOT / "mmcli" / "smooths.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= {"__future__", "dataclasses", "typing", "numpy", "scipy", "mmcli"}
