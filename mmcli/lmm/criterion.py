"""The profiled criteria: -2 log L (ML) and the REML criterion, read off the factor (Bates et al. 2015, eqs. 34
and 41). With log|L_Z|^2, log|L_X|^2 and the penalized residual sum of squares r^2:

    ML:    log|L_Z|^2               + n       (1 + log(2 pi r^2 / n))          sigma^2 = r^2 / n
    REML:  log|L_Z|^2 + log|L_X|^2  + (n - p) (1 + log(2 pi r^2 / (n - p)))    sigma^2 = r^2 / (n - p)

Prior weights add -sum(log w_i) to either (lme4's ldW); that constant is added where the working
parametrization is mapped back (:mod:`mmcli.lmm.transform`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LOG2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True)
class Dof:
    """The degrees of freedom of the residual variance: n for ML, n - p for REML (defined here only)."""

    n: int
    p: int
    reml: bool

    @property
    def resid(self) -> int:
        return self.n - self.p if self.reml else self.n


def criterion(logdetZ: float, logdetX: float, pwrss: float, dof: Dof) -> float:
    """-2 log L(theta) profiled over beta and sigma (ML), or the REML criterion; inf where r^2 is not positive."""
    if not np.isfinite(pwrss) or pwrss <= 0.0:
        return math.inf
    d = dof.resid
    value = logdetZ + d * (1.0 + LOG2PI + math.log(pwrss / d))
    return value + logdetX if dof.reml else value


def sigma_hat(pwrss: float, dof: Dof) -> float:
    """sigma = sqrt(r^2 / d), d = n (ML) or n - p (REML)."""
    return math.sqrt(pwrss / dof.resid)
