"""Smooths + random effects -> one LMM fitted by REML, and back to curves with standard errors (gamm4).

A penalized smooth is a mixed model (Wood 2017, 6.6): its penalty's null space is fixed, its penalized part
a random effect with one variance, so lambda = sigma^2 / sigma_s^2. gamm4 builds exactly that model for lme4;
this module fits it with :class:`mmcli.lmm.LmmModel` and maps the fit back. Numbers only: no pandas, no output.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from mmcli.errors import ModelError
from mmcli.lmm import LmmFit, theta_offsets, xtvinvx

if TYPE_CHECKING:
    from mmcli.design import Design, NewRows, SmoothPart
    from mmcli.smooth_test import SmoothTest


@dataclass(frozen=True, eq=False)
class GammFit:
    """A fitted additive mixed model: the LMM, the smooths, and the Bayesian covariance of the coefficients
    in the mixed parametrization gamma = [beta (parametric + null-space), c_1, ...], with b_j = theta_j c_j."""

    lmm: LmmFit
    smooths: list[SmoothPart]
    Vg: np.ndarray  # sigma^2 (X~'V0^-1 X~ + P)^-1
    edf: list[float]
    x: list[np.ndarray]  # each smooth's data
    resid_population: np.ndarray  # y minus the population-level fit (random effects at zero), for plots
    tests: list[SmoothTest] = field(default_factory=list)  # summary.gam's smooth-terms table, one per smooth

    def theta(self, j: int) -> float:
        """theta of smooth j's random part (0 when the smooth has none)."""
        t = self.smooths[j].term
        return float(self.lmm.theta[self.lmm.theta_offsets[t]]) if t >= 0 else 0.0

    def lam(self, j: int) -> float | None:
        """lambda_j = sigma^2 / sigma_j^2 = 1 / theta_j^2 (None when the smooth's variance is zero)."""
        th = self.theta(j)
        return 1.0 / th**2 if th > 0 else None

    def gamma_hat(self) -> np.ndarray:
        parts = [self.lmm.beta]
        for j, sp in enumerate(self.smooths):
            if sp.term >= 0:
                b, th = self.lmm.ranef[sp.term][:, 0], self.theta(j)
                parts.append(b / th if th > 0 else np.zeros_like(b))
        return np.concatenate(parts)

    def _rows(self, fixed: dict[str, np.ndarray], smooth_x: list[np.ndarray | None], n: int) -> np.ndarray:
        """Rows in the gamma parametrization: the named fixed columns (missing ones zero), then each smooth's
        random part at its x (zero where x is None)."""
        cols = [fixed.get(name, np.zeros(n)) for name in self.lmm.xnames]
        for j, (sp, x) in enumerate(zip(self.smooths, smooth_x)):
            if sp.term < 0:
                continue
            if x is None:
                cols.append(np.zeros((n, sp.mixed.rank)))
            else:
                cols.append(sp.mixed.random_matrix(sp.smooth.predict_matrix(x)) * self.theta(j))
        return np.column_stack(cols) if cols else np.zeros((n, 0))

    def _smooth_fixed(self, j: int, x: np.ndarray) -> dict[str, np.ndarray]:
        sp = self.smooths[j]
        Xf = sp.mixed.fixed_matrix(sp.smooth.predict_matrix(x))
        return {name: Xf[:, i] for i, name in enumerate(sp.mixed.fixed_names)}

    def _fit_se(self, G: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        se = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", G, self.Vg, G), 0.0))
        return G @ self.gamma_hat(), se

    def predict(self, rows: NewRows) -> tuple[np.ndarray, np.ndarray]:
        """Population-level predictions (random effects at zero, offset added) and se = sqrt(x' Vp x)."""
        n = rows.X.shape[0]
        fixed = {name: rows.X[:, i] for i, name in enumerate(rows.names)}
        for j, x in enumerate(rows.smooth_x):
            fixed.update(self._smooth_fixed(j, x))
        fit, se = self._fit_se(self._rows(fixed, list(rows.smooth_x), n))
        return (fit + rows.offset if rows.offset is not None else fit), se

    def smooth_curve(self, j: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One smooth's own contribution f_j(x) and its standard error (as mgcv's plot.gam)."""
        xs: list[np.ndarray | None] = [x if i == j else None for i in range(len(self.smooths))]
        return self._fit_se(self._rows(self._smooth_fixed(j, x), xs, x.shape[0]))

    def coefficients(self, j: int) -> np.ndarray:
        """The smooth's coefficients in its constrained basis (mgcv's gam coefficients for the term)."""
        sp = self.smooths[j]
        xn = self.lmm.xnames
        bf = np.array([self.lmm.beta[xn.index(n)] if n in xn else 0.0 for n in sp.mixed.fixed_names])
        br = self.lmm.ranef[sp.term][:, 0] if sp.term >= 0 else np.zeros(sp.mixed.rank)
        return sp.mixed.coefficients(br, bf)


def fit_gamm(design: Design, *, reml: bool = True, theta: np.ndarray | None = None) -> GammFit:
    """Fit ``y ~ parametric + s(x1) + ... + (re terms)`` as one LMM (gamm4's construction): each smooth's
    unpenalized part is fixed, its penalized part a random effect with one variance. With ``theta`` (in the
    design's term order), everything is evaluated at that theta instead of the optimum."""
    if not design.terms:
        raise ModelError(
            "The model has neither a smooth with a penalty nor a random-effects term; nothing to fit as a mixed model."
        )
    model = design.model()
    fit = model.fit(reml) if theta is None else model.fit_at(theta, reml)
    Vg, edf = bayes_cov(fit, design)
    keep = [design.xnames.index(n) for n in fit.xnames]
    resid = fit.fitted + fit.residuals - design.X[:, keep] @ fit.beta  # y - X beta
    for sp in design.smooths:
        if sp.term >= 0:
            resid -= design.terms[sp.term].zmat() @ fit.ranef[sp.term][:, 0]
    if design.offset is not None:
        resid -= design.offset
    xs = [sp.x for sp in design.smooths]
    g = GammFit(lmm=fit, smooths=design.smooths, Vg=Vg, edf=edf, x=xs, resid_population=resid)
    from mmcli.smooth_test import gamm_smooth_tests

    return replace(g, tests=gamm_smooth_tests(g, design))


def xtvinvx_others(X: np.ndarray, fit: LmmFit, design: Design, weights: np.ndarray | None = None) -> np.ndarray:
    """X' V0^-1 X with V0 = W^-1 + Z_o Lambda_o Lambda_o' Z_o' over the random effects that are not smooths
    (W: the design's prior weights, or ``weights``: a GLMM's working weights)."""
    smooth_terms = {sp.term for sp in design.smooths if sp.term >= 0}
    offsets = theta_offsets(design.terms)
    others = [t for i, t in enumerate(design.terms) if i not in smooth_terms]
    theta_o = np.concatenate(
        [fit.theta[k : k + t.ntheta] for i, (t, k) in enumerate(zip(design.terms, offsets)) if i not in smooth_terms]
        or [np.zeros(0)]
    )
    return xtvinvx(X, others, theta_o, design.weights if weights is None else weights)


def bayes_cov(fit: LmmFit, design: Design, weights: np.ndarray | None = None) -> tuple[np.ndarray, list[float]]:
    """Vp in the parametrization gamma = [beta, c_j] with b_j = theta_j c_j (stable when theta_j = 0):
    Vp = sigma^2 (X~'V0^-1 X~ + diag(0, I))^-1, X~ = [X, theta_j Zr_j], V0 = W^-1 + Z_o Lambda_o Lambda_o'Z_o'
    over the other random effects (Wood 2017, 6.6). EDF_j = trace of the smooth's block of Vp X~'V0^-1 X~ / sigma^2."""
    keep = [design.xnames.index(n) for n in fit.xnames]
    Xk = design.X[:, keep]
    offsets = theta_offsets(design.terms)
    cols, scale = [Xk], [np.ones(Xk.shape[1])]
    for sp in design.smooths:
        if sp.term >= 0:
            Zr = design.terms[sp.term].zmat().toarray()
            cols.append(Zr)
            scale.append(np.full(Zr.shape[1], float(fit.theta[offsets[sp.term]])))
    Xt = np.column_stack(cols)  # [X, Zr_j]: full rank; X~ = Xt diag(1, theta_j) is applied after the factor
    tscale = np.concatenate(scale)
    A = xtvinvx_others(Xt, fit, design, weights) * np.outer(tscale, tscale)  # X~' V0^-1 X~
    P = np.zeros(A.shape[0])
    P[Xk.shape[1] :] = 1.0
    Hinv = np.linalg.inv(A + np.diag(P))
    Hinv = (Hinv + Hinv.T) / 2
    F = Hinv @ A
    edf, off = [], Xk.shape[1]
    for sp in design.smooths:
        idx = [fit.xnames.index(n) for n in sp.mixed.fixed_names if n in fit.xnames]
        e = float(sum(F[i, i] for i in idx))
        if sp.term >= 0:
            q = sp.mixed.rank
            e += float(np.trace(F[off : off + q, off : off + q]))
            off += q
        edf.append(e)
    return fit.sigma**2 * Hinv, edf
