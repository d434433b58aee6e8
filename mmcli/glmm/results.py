"""The fitted GLMM: what summary(glmer(...)) and ranef(condVar = TRUE) report."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from mmcli.glmm.family import Family
from mmcli.glmm.pirls import ROW_BLOCK
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

    @cached_property
    def mu(self) -> np.ndarray:
        """The fitted means g^-1(eta) (probabilities for binomial), formed when first asked for: after the model
        matrix is freed, in a large fit."""
        return self.family.linkinv(self.eta)

    @property
    def pearson_residuals(self) -> np.ndarray:
        """(y - mu) sqrt(a / V(mu)): R's residuals(type = "pearson"), which summary scales. Formed a block of
        rows at a time: the residuals are the one full-length vector made."""
        fam, r = self.family, np.empty(self.n)
        for lo in range(0, self.n, ROW_BLOCK):
            sl = slice(lo, lo + ROW_BLOCK)
            mu = self.__dict__["mu"][sl] if "mu" in self.__dict__ else fam.linkinv(self.eta[sl])
            s = np.divide(self.prior[sl], fam.variance(mu))  # a new block (Poisson's variance is mu itself)
            np.sqrt(s, out=s)
            np.subtract(self.y[sl], mu, out=r[sl])
            r[sl] *= s
        return r

    def term_covariances(self) -> list[np.ndarray]:
        """Lambda_k Lambda_k' per term: the covariance matrix of one level's random effects (no residual scale)."""
        return [T @ T.T for T in templates(self.terms, self.theta)]
