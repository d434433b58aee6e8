"""Generalized linear mixed models as lme4's glmer: binomial and Poisson families, PIRLS for the conditional
modes on the blocked Cholesky of the linear-mixed-model core, the Laplace approximation and adaptive
Gauss-Hermite quadrature, glmer's two-stage optimization.

- family:  the families and links (R's binomial() and poisson())
- pirls:   PIRLS, the Laplace and adaptive Gauss-Hermite deviances
- scalar:  PIRLS for one scalar random-effects term, a block of rows at a time
- gradient: the analytic gradient of the Laplace deviance (one scalar term)
- newton:  the quasi-Newton second stage on that gradient, and the Hessian from it
- model:   the two-stage fit and the Hessian-based covariance of the fixed effects
- results: the fitted model
"""

from mmcli.glmm.family import Family, family, unit_weights
from mmcli.glmm.model import GlmmModel
from mmcli.glmm.results import GlmmFit

__all__ = ["Family", "GlmmFit", "GlmmModel", "family", "unit_weights"]
