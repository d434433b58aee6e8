"""Smooths + random effects with a binomial or Poisson response: gamm4's gamm4(..., family = ...).

As for a Gaussian response (mmcli.gamm), each smooth's unpenalized part is fixed and its penalized part a random
effect with one variance; the whole model is fitted by glmer's Laplace approximation (mmcli.glmm). The gam part
follows gamm4: the scale is 1, and the Bayesian covariance of the coefficients uses the PIRLS working weights at
convergence, V = W^-1 + Z_o Lambda_o Lambda_o' Z_o' over the random effects that are not smooths. Numbers only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from mmcli.errors import ModelError
from mmcli.gamm import GammFit, bayes_cov
from mmcli.lmm import theta_offsets

if TYPE_CHECKING:
    from mmcli.design import Design
    from mmcli.glmm import Family, GlmmFit


@dataclass(frozen=True, eq=False)
class GammGlmmFit(GammFit):
    """A fitted additive mixed model with a family: ``lmm`` holds the GlmmFit (sigma = 1); lambda_j = 1 / theta_j^2."""

    def theta(self, j: int) -> float:
        t = self.smooths[j].term
        return float(self.lmm.theta[theta_offsets(self.lmm.terms)[t]]) if t >= 0 else 0.0

    @property
    def glmm(self) -> GlmmFit:
        return self.lmm  # type: ignore[return-value]

    def to_response(self, eta: np.ndarray, se: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predictions on the response scale with delta-method standard errors (predict.gam, type = "response")."""
        fam = self.glmm.family
        return fam.linkinv(eta), np.abs(fam.mu_eta(eta)) * se


def working_weights(fit: GlmmFit) -> np.ndarray:
    """The PIRLS weights at convergence, prior * mu_eta(eta)^2 / V(mu) (lme4's sqrtWrkWt()^2)."""
    fam = fit.family
    return fit.prior * fam.mu_eta(fit.eta) ** 2 / fam.variance(fit.mu)


def fit_gamm_glmm(
    design: Design, fam: Family, y: np.ndarray, prior: np.ndarray, progress: Callable[[int, float], None] | None = None
) -> GammGlmmFit:
    """Fit ``y ~ parametric + s(x) + ... + (re terms)`` with a family as gamm4 does (glmer, Laplace)."""
    from mmcli.glmm import GlmmModel

    if not design.terms:
        raise ModelError(
            "The model has neither a smooth with a penalty nor a random-effects term; nothing to fit as a mixed model."
        )
    model = GlmmModel(design.X, y, design.terms, fam, prior=prior, offset=design.offset, xnames=design.xnames)
    fit = model.fit(progress)
    w = working_weights(fit)
    Vg, edf = bayes_cov(fit, design, w)  # type: ignore[arg-type]
    keep = [design.xnames.index(n) for n in fit.xnames]
    eta_pop = design.X[:, keep] @ fit.beta + (design.offset if design.offset is not None else 0.0)
    for sp in design.smooths:
        if sp.term >= 0:
            eta_pop = eta_pop + design.terms[sp.term].zmat() @ fit.ranef[sp.term][:, 0]
    # working residuals about the population-level fit of the smooths and parametric terms (for plots)
    resid = fit.eta + (fit.y - fit.mu) / fam.mu_eta(fit.eta) - eta_pop
    xs = [sp.x for sp in design.smooths]
    g = GammGlmmFit(lmm=fit, smooths=design.smooths, Vg=Vg, edf=edf, x=xs, resid_population=resid)  # type: ignore[arg-type]
    from mmcli.smooth_test import gamm_smooth_tests

    return replace(g, tests=gamm_smooth_tests(g, design, w))
