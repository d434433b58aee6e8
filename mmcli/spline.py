"""Penalized regression splines on the rk basis, with lambda by GCV or REML.

The mathematics follows Wood (2006) *Generalized Additive Models* section 3.2 (the
engine-wear example) and section 6.6 (a penalized spline as a linear mixed model):

- x is rescaled to [0, 1] by the data's min and max; K interior knots default to j/(K + 1).
- basis X = [1, x, R(x, x*_1), ..., R(x, x*_K)]; penalty S = [[0, 0], [0, R(x*_i, x*_j)]].
- at lambda: minimize ||y - X beta||^2 + lambda beta'S beta by least squares on the augmented system
  [X; sqrt(lambda) B] beta ~ [y; 0], with B'B = S (B = U D^1/2 U'), reduced to [R0; sqrt(lambda) B] by
  one QR of X, so that a lambda search costs O(p^3) per lambda.
- EDF = tr A, A = X (X'X + lambda S)^-1 X'; sigma^2 = RSS / (n - EDF); GCV = n RSS / (n - EDF)^2;
  Vp = sigma^2 (X'X + lambda S)^-1.
- lambda by GCV: Wood's grid 1e-8 * 1.5^i, i = 0..59, refined by a bounded Brent search on log lambda.
- lambda by REML: the mixed-model form X_F = X U_F, Z = X U_R D_+^(-1/2), fitted by mmcli.lmm;
  lambda = 1/theta^2.

Numbers only: no click, rich, pandas or printing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mmcli.errors import DataError, ModelError, UsageError
from mmcli.lmm import OptimizerRecord
from mmcli.penalized import GCV_GRID, GCV_XATOL, AtLambda, PenalizedLS, fit_at_lambda, gcv_search
from mmcli.smooths import rk_basis, rk_kernel, rk_penalty  # the rk basis and penalty, shared with gamm's rk smooths

__all__ = [  # with the names of the penalized least squares it is built on
    "GCV_GRID",
    "GCV_XATOL",
    "AtLambda",
    "MixedSplineForm",
    "PenalizedLS",
    "SplineFit",
    "check_lambda",
    "default_knots",
    "fit_at_lambda",
    "fit_spline",
    "gcv_search",
    "mat_sqrt",
    "mixed_form",
    "mixed_matrices",
    "rk_basis",
    "rk_kernel",
    "rk_penalty",
]

DEFAULT_KNOTS = 7
"""Default number of interior knots, capped at (unique x - 2) for small data; see `default_knots`."""

# ----------------------------------------------------------------------------------------------------------
# basis, penalty and its square root


def default_knots(n_unique: int) -> int:
    """The default number of interior knots: K = min(7, n_unique - 2).

    Seven is Wood's (2006, section 3.2) choice for the engine data, so `mmcli spline` with no options
    reproduces the textbook example (and `tests/reference/engine_spline.json`). The penalty, not K, sets the
    smoothness, so K only needs to give the curve enough room; 2 + K = 9 coefficients is close to mgcv's
    default k = 10. The cap keeps 2 + K <= the number of distinct x values, so that X has full column rank and
    a small data set (as few as 3 distinct x) still gets a valid basis.
    """
    return max(1, min(DEFAULT_KNOTS, n_unique - 2))


def mat_sqrt(S: np.ndarray) -> np.ndarray:
    """A symmetric square root B = U D^1/2 U' of S = U D U', so that B'B = S (Wood 2006 section 3.2.2).

    Eigenvalues that rounding made slightly negative are clipped to 0. (The tutorial's `matSqrt` returns D^1/2
    alone, which is not a square root of S; docs/methods.md.)
    """
    d, U = np.linalg.eigh((S + S.T) / 2)
    d = np.clip(d, 0.0, None)
    return (U * np.sqrt(d)) @ U.T


def mixed_matrices(X: np.ndarray, S: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split a penalized basis into fixed and random parts (Wood 2006 section 6.6).

    S = U D U' with D decreasing; the last 2 eigenvalues (constant and linear) are zero. Returns
    (X_F, Z, U_F, U_R, d_pos) with X_F = X U_F and Z = X U_R D_+^(-1/2), so that with
    g ~ N(0, (sigma^2/lambda) I) the BLUP X_F beta_F + Z g equals the penalized fit at lambda, and
    beta = U_F beta_F + U_R D_+^(-1/2) g.
    """
    d, U = np.linalg.eigh((S + S.T) / 2)
    order = np.argsort(d)[::-1]
    d, U = d[order], U[:, order]
    rank = S.shape[0] - 2
    if rank < 1 or d[rank - 1] <= 0:
        raise ModelError("The spline penalty is not positive definite on its range; check the knots.")
    U_R, U_F, d_pos = U[:, :rank], U[:, rank:], d[:rank]
    return X @ U_F, (X @ U_R) / np.sqrt(d_pos), U_F, U_R, d_pos


# ----------------------------------------------------------------------------------------------------------
# the fit at one lambda


# ----------------------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True, eq=False)
class MixedSplineForm:
    """The spline as a linear mixed model, fitted by REML (Wood 2006 section 6.6).

    y = X_F beta_F + Z g + e, g ~ N(0, sigma_g^2 I), e ~ N(0, sigma^2 I), with X_F = X U_F and
    Z = X U_R D_+^(-1/2). In lme4's parametrization g = theta sigma u, so sigma_g = theta sigma and
    lambda = sigma^2 / sigma_g^2 = 1 / theta^2.
    """

    Xf: np.ndarray
    Z: np.ndarray
    U_F: np.ndarray
    U_R: np.ndarray
    d_pos: np.ndarray
    beta_f: np.ndarray
    b: np.ndarray  # the predicted random effects g
    theta: float
    sigma: float
    sigma_g: float
    lam: float
    fitted: np.ndarray  # the BLUP fit X_F beta_F + Z b
    converged: bool
    reml_criterion: float | None
    optimizer: OptimizerRecord | None = None
    starts: list[dict[str, Any]] = field(default_factory=list)  # the REML search's starts and where each ended
    term: str = "s(x)"

    @property
    def coef(self) -> np.ndarray:
        """The spline coefficients in the original basis: U_F beta_F + U_R D_+^(-1/2) b."""
        return self.U_F @ self.beta_f + self.U_R @ (self.b / np.sqrt(self.d_pos))


@dataclass(frozen=True, eq=False)
class SplineFit:
    """A penalized regression spline on the rk basis (Wood 2006 section 3.2). Built by `fit_spline`."""

    x_name: str
    y_name: str
    n: int
    x: np.ndarray  # the data, input row order (kept for plots and the mixed form)
    y: np.ndarray
    x_min: float
    x_max: float
    knots: np.ndarray  # original x scale
    knots_scaled: np.ndarray
    lam: float
    lam_method: str  # "fixed" | "gcv" | "reml"
    coef: np.ndarray  # 2 + K, order [1, x, rk(x, knot_1..K)] on scaled x
    edf: float
    rss: float
    sigma: float
    gcv: float
    r_squared: float
    adj_r_squared: float
    fitted: np.ndarray  # input row order
    Vp: np.ndarray  # sigma^2 (X'X + lam S)^-1
    lambda_search: dict[str, Any] | None = None
    mixed: MixedSplineForm | None = None

    @property
    def K(self) -> int:
        return int(self.knots_scaled.size)

    def scale(self, x: np.ndarray) -> np.ndarray:
        """x on the [0, 1] scale of the fit: (x - min) / (max - min) of the data."""
        return (np.asarray(x, dtype=float) - self.x_min) / (self.x_max - self.x_min)

    def basis(self, x: np.ndarray) -> np.ndarray:
        """The model matrix of the fit at new x (original scale)."""
        return rk_basis(self.scale(x), self.knots_scaled)

    def predict(self, x_new: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The curve and its Bayesian standard error at x_new: fit = Xp beta, se = sqrt(diag(Xp Vp Xp')).

        (Wood 2006 section 4.8.) Points outside the data range are extrapolated with the same basis.
        """
        x_new = np.atleast_1d(np.asarray(x_new, dtype=float))
        if not np.all(np.isfinite(x_new)):
            raise DataError("Prediction x values must be finite numbers.")
        Xp = self.basis(x_new)
        se = np.sqrt(np.clip(np.einsum("ij,jk,ik->i", Xp, self.Vp, Xp), 0.0, None))
        return Xp @ self.coef, se


# ----------------------------------------------------------------------------------------------------------
# checking the inputs


def _check_data(x: Any, y: Any, y_name: str = "y") -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if x.size != y.size:
        raise DataError(f"x has {x.size} values but y has {y.size}.")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise DataError("x and y must be finite numbers; drop or fill the missing values.")
    n_unique = np.unique(x).size
    if n_unique < 3:
        raise DataError(f"A spline needs at least 3 distinct x values; these data have {n_unique}.")
    if np.all(y == y[0]):
        raise DataError(f"The response '{y_name}' is constant (every value is {y[0]:g}): there is no curve to fit.")
    return x, y


def check_lambda(lam: Any) -> float | str:
    """A smoothing parameter as given on the command line or in code: a number > 0, "gcv" or "reml"."""
    if isinstance(lam, str):
        method = lam.strip().lower()
        if method in ("gcv", "reml"):
            return method
        try:
            lam = float(method)
        except ValueError:
            raise UsageError(f"lambda must be a positive number, gcv or reml; not '{lam}'.", param="lambda") from None
    if isinstance(lam, bool) or not isinstance(lam, (int, float, np.floating, np.integer)):
        raise UsageError(f"lambda must be a positive number, gcv or reml; not {lam!r}.", param="lambda")
    lam = float(lam)
    if not (math.isfinite(lam) and lam > 0):
        raise UsageError(f"lambda must be a positive finite number, gcv or reml; not {lam}.", param="lambda")
    return lam


def _choose_knots(
    x: np.ndarray, knots: int | None, knot_values: Any | None, x_min: float, x_max: float
) -> tuple[np.ndarray, np.ndarray]:
    """Knots on the original and the [0, 1] scale."""
    n_unique = np.unique(x).size
    limit = n_unique - 2
    if knot_values is not None:
        values = np.asarray(knot_values, dtype=float).ravel()
        if values.size == 0:
            raise UsageError("Give at least one knot value.", param="knot_values")
        if not np.all(np.isfinite(values)):
            raise UsageError("Knot values must be finite numbers.", param="knot_values")
        if knots is not None and int(knots) != values.size:
            raise UsageError(f"{knots} knots disagree with the {values.size} knot values given.", param="knots")
        values = np.sort(values)
        if np.any(np.diff(values) == 0):
            raise UsageError("Knot values must be distinct.", param="knot_values")
        if values[0] < x_min or values[-1] > x_max:
            raise UsageError(
                f"Knot values must lie within the range of x, [{x_min:g}, {x_max:g}].", param="knot_values"
            )
        if values.size > limit:
            raise UsageError(
                f"At most {limit} knots fit these data ({n_unique} distinct x values); give fewer.", param="knot_values"
            )
        return values, (values - x_min) / (x_max - x_min)
    if knots is None:
        K = default_knots(n_unique)
    else:
        if isinstance(knots, bool) or int(knots) != knots:
            raise UsageError(f"The number of knots must be a whole number, not {knots!r}.", param="knots")
        K = int(knots)
        if not 1 <= K <= limit:
            raise UsageError(
                f"The number of knots must be between 1 and {limit} for these data ({n_unique} distinct x values).",
                param="knots",
            )
    scaled = np.arange(1, K + 1) / (K + 1)
    return x_min + scaled * (x_max - x_min), scaled


# ----------------------------------------------------------------------------------------------------------
# choosing lambda


REML_START_FACTORS = (1.0, 1e-3, 1e3)
"""Starts of the REML search, as multiples of the GCV lambda (see `_fit_mixed`)."""


def _fit_mixed(X: np.ndarray, S: np.ndarray, y: np.ndarray, x_name: str = "x") -> MixedSplineForm:
    """Fit the mixed-model form of the spline by REML with mmcli's LMM core (Wood 2006 section 6.6).

    The REML criterion is not convex in theta: on the engine data it rises from theta = 0 to a ridge near
    theta = 5 before falling to its minimum at theta = 20 (lambda = 0.0024), so lme4's start theta = 1 ends
    on the boundary theta = 0, a local minimum. The LMM is therefore fitted with Z scaled by 1/sqrt(lambda_0),
    which puts lambda_0 at the core's start theta = 1 without changing the model, for lambda_0 = the GCV
    lambda times each of REML_START_FACTORS; the fit with the lowest REML criterion is kept and mapped back to
    the unscaled Z: theta = theta_c / sqrt(lambda_0), b = b_c / sqrt(lambda_0), lambda = 1/theta^2.
    """
    from mmcli.lmm import fit_lmm, general_term

    Xf, Z, U_F, U_R, d_pos = mixed_matrices(X, S)
    lam_gcv, _ = gcv_search(PenalizedLS.build(X, y, mat_sqrt(S)))
    best: tuple[float, float, Any] | None = None
    starts = []
    for factor in REML_START_FACTORS:
        lam0 = lam_gcv * factor
        scale = 1.0 / math.sqrt(lam0)
        res = fit_lmm(Xf, y, [general_term("Xr", f"s({x_name})", Z * scale)], reml=True, xnames=["Xf1", "Xf2"])
        crit = float(res.objective)
        theta = float(res.theta[0]) * scale
        starts.append(
            {
                "lambda_start": lam0,
                "lambda": 1.0 / theta**2 if theta > 0 else None,
                "reml_criterion": crit,
                "converged": bool(res.converged),
                "evaluations": int(res.optimizer.evaluations),
            }
        )
        if best is None or crit < best[0]:
            best = (crit, scale, res)
    assert best is not None
    crit, scale, res = best
    theta = float(res.theta[0]) * scale
    sigma = float(res.sigma)
    return MixedSplineForm(
        Xf=Xf,
        Z=Z,
        U_F=U_F,
        U_R=U_R,
        d_pos=d_pos,
        beta_f=np.asarray(res.beta, dtype=float).ravel(),
        b=np.asarray(res.ranef[0], dtype=float).ravel() * scale,
        theta=theta,
        sigma=sigma,
        sigma_g=theta * sigma,
        lam=1.0 / theta**2 if theta > 0 else math.inf,
        fitted=np.asarray(res.fitted, dtype=float).ravel(),
        converged=bool(res.converged),
        reml_criterion=crit,
        optimizer=res.optimizer,
        starts=starts,
        term=f"s({x_name})",
    )


# ----------------------------------------------------------------------------------------------------------
# the public entry points


def fit_spline(
    x: Any,
    y: Any,
    *,
    knots: int | None = None,
    knot_values: Any | None = None,
    lam: float | str = "gcv",
    x_name: str = "x",
    y_name: str = "y",
) -> SplineFit:
    """Fit a penalized regression spline on the rk basis (Wood 2006 section 3.2).

    x is rescaled to [0, 1] by its min and max. `knots` is the number K of interior knots j/(K + 1); the
    default is K = min(7, distinct x - 2) (see `default_knots`); it must lie in 1..(distinct x - 2).
    `knot_values` gives the knots on the original scale instead (distinct, within the range of x). `lam` is a
    number > 0, "gcv" (minimize n RSS / (n - EDF)^2) or "reml" (the mixed-model form fitted by REML,
    lambda = sigma^2 / sigma_g^2).

    Raises DataError for unusable data (fewer than 3 distinct x, non-finite values) and UsageError for bad
    options.
    """
    x, y = _check_data(x, y, y_name)
    method = check_lambda(lam)
    x_min, x_max = float(x.min()), float(x.max())
    knots_orig, knots_scaled = _choose_knots(x, knots, knot_values, x_min, x_max)

    from mmcli.memory import check_allocation

    check_allocation(8.0 * x.size * (knots_scaled.size + 2), f"the spline basis ({x.size} x {knots_scaled.size + 2})")
    X = rk_basis((x - x_min) / (x_max - x_min), knots_scaled)
    S = rk_penalty(knots_scaled)
    pls = PenalizedLS.build(X, y, mat_sqrt(S))
    n = y.size

    lam_value, lam_method, search, mixed = _choose_lambda(method, pls, X, S, y, x_name)
    at = pls.at(lam_value)
    if n - at.edf < 1e-3:
        raise DataError(
            f"The spline passes through all {n} points (EDF {at.edf:.3f} of {n}): nothing is left to estimate the "
            "residual variance or GCV from. Give more rows, or fewer knots (--knots) and a fixed --lambda."
        )
    return SplineFit(
        x_name=x_name,
        y_name=y_name,
        n=n,
        x=x.copy(),
        y=y.copy(),
        x_min=x_min,
        x_max=x_max,
        knots=knots_orig,
        knots_scaled=knots_scaled,
        lam=lam_value,
        lam_method=lam_method,
        coef=at.coef,
        edf=at.edf,
        rss=at.rss,
        fitted=at.fitted,
        lambda_search=search,
        mixed=mixed,
        **_fit_statistics(at, y),
    )


def _fit_statistics(at: AtLambda, y: np.ndarray) -> dict[str, Any]:
    """sigma^2 = RSS / (n - EDF), GCV, R^2, mgcv's adjusted r.sq 1 - (RSS/(n - EDF)) / (TSS/(n - 1)), and
    Vp = sigma^2 (X'X + lambda S)^-1."""
    n = y.size
    resid_df = n - at.edf
    sigma2 = at.rss / resid_df if resid_df > 0 else math.nan
    tss = float(np.sum((y - y.mean()) ** 2))
    return {
        "sigma": math.sqrt(sigma2) if sigma2 >= 0 else math.nan,
        "gcv": n * at.rss / resid_df**2 if resid_df > 0 else math.nan,
        "r_squared": 1 - at.rss / tss if tss > 0 else math.nan,
        "adj_r_squared": 1 - sigma2 / (tss / (n - 1)) if tss > 0 else math.nan,
        "Vp": sigma2 * (at.Rinv @ at.Rinv.T),
    }


def _choose_lambda(
    method: float | str, pls: PenalizedLS, X: np.ndarray, S: np.ndarray, y: np.ndarray, x_name: str
) -> tuple[float, str, dict[str, Any] | None, MixedSplineForm | None]:
    """lambda, how it was chosen ("fixed", "gcv", "reml"), the search's record, and the mixed form (REML)."""
    if method == "gcv":
        lam, search = gcv_search(pls)
        return lam, "gcv", search, None
    if method == "reml":
        mixed = _fit_mixed(X, S, y, x_name)
        return mixed.lam, "reml", {"criterion": "REML"}, mixed  # the rest of its record is the mixed form's
    assert isinstance(method, float)
    return method, "fixed", None, None


def mixed_form(fit: SplineFit) -> MixedSplineForm:
    """The spline of `fit` as a linear mixed model fitted by REML (Wood 2006 §6.6).

    Same data, knots and basis as `fit`; X_F = X U_F, Z = X U_R D_+^(-1/2). A fit made with lam="reml" already
    holds this form and it is returned as is; otherwise it is fitted now (its lambda is REML's, not fit.lam).
    """
    if fit.mixed is not None:
        return fit.mixed
    X = fit.basis(fit.x)
    return _fit_mixed(X, rk_penalty(fit.knots_scaled), fit.y, fit.x_name)
