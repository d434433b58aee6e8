"""The fitted GLMM: what summary(glmer(...)) and ranef(condVar = TRUE) report."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mmcli.glmm.family import Family
from mmcli.lmm import SINGULAR_TOL, OptimizerRecord, ReTerm, lower_bounds, templates
from mmcli.lmm.results import LikelihoodSummary


@dataclass(frozen=True, eq=False)
class GlmmFit(LikelihoodSummary):
    """Everything a fitted GLMM reports. ``objective`` is the optimized deviance: -2 log L by the Laplace
    approximation (nagq = 1), or glmer's adaptive Gauss-Hermite deviance (nagq > 1), which, as lme4's, leaves out
    the saturated model's log-likelihood; logLik, AIC and BIC follow from it as lme4 computes them."""

    family: Family
    nagq: int
    n: int
    terms: tuple[ReTerm, ...]
    xnames: tuple[str, ...]
    theta: np.ndarray
    beta: np.ndarray
    vcov: np.ndarray
    objective: float
    ranef: list[np.ndarray]  # per term, (nlevels, p): conditional modes b
    cond_cov: list[np.ndarray]  # per term, (nlevels, p, p)
    eta: np.ndarray  # the linear predictor, offset included
    mu: np.ndarray  # the fitted means (probabilities for binomial)
    y: np.ndarray  # the response (a proportion for binomial)
    prior: np.ndarray  # prior weights (trials for binomial)
    converged: bool
    optimizer: OptimizerRecord
    dropped_columns: tuple[str, ...] = ()
    hessian_vcov: bool = True  # whether vcov came from the Hessian (else from the weighted system's factor)
    stage_evaluations: tuple[int, int] = (0, 0)

    sigma = 1.0  # the scale of the random effects' variances (these families have no residual variance)

    @property
    def npar(self) -> int:
        return len(self.beta) + self.theta.size

    @property
    def deviance(self) -> float:
        """-2 log L, as summary(glmer) prints in its first table."""
        return self.objective

    @property
    def std_errors(self) -> np.ndarray:
        return np.sqrt(np.maximum(np.diag(self.vcov), 0.0))

    @property
    def z_values(self) -> np.ndarray:
        return self.beta / self.std_errors

    @property
    def p_values(self) -> np.ndarray:
        return np.array([math.erfc(abs(z) / math.sqrt(2.0)) for z in self.z_values])

    @property
    def corr_fixed(self) -> np.ndarray:
        se = self.std_errors
        return self.vcov / np.outer(se, se)

    @property
    def cond_sd(self) -> list[np.ndarray]:
        return [np.sqrt(np.maximum(np.diagonal(C, axis1=1, axis2=2), 0.0)) for C in self.cond_cov]

    @property
    def singular(self) -> bool:
        diag = lower_bounds(self.terms) == 0.0
        return bool(np.any(self.theta[diag] < SINGULAR_TOL))

    @property
    def pearson_residuals(self) -> np.ndarray:
        """(y - mu) sqrt(a / V(mu)): R's residuals(type = "pearson"), which summary scales."""
        s = np.divide(self.prior, self.family.variance(self.mu))  # a new vector (Poisson's variance is mu itself)
        np.sqrt(s, out=s)  # in place from here: two full-length vectors in all
        r = np.subtract(self.y, self.mu)
        r *= s
        return r

    def term_covariances(self) -> list[np.ndarray]:
        """Lambda_k Lambda_k' per term: the covariance matrix of one level's random effects (no residual scale)."""
        return [T @ T.T for T in templates(self.terms, self.theta)]
