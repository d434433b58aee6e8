"""Families and links of a generalized linear mixed model, as R's binomial() and poisson() compute them.

Each function takes and returns numpy arrays. The inverse links keep the mean strictly inside its range, as R's
C code does (``DBL_EPSILON`` from 0 and 1), so that the deviance and the working weights stay finite when the
linear predictor is large.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmcli.errors import UsageError

EPS = float(np.finfo(float).eps)
LINKS = {"binomial": ("logit", "probit", "cloglog"), "poisson": ("log",)}
R_ONLY = {"binomial": ("cauchit", "log", "identity"), "poisson": ("identity", "sqrt")}
"""Links R offers for the family that mmcli does not (their means can leave the family's range)."""


@dataclass(frozen=True)
class Family:
    """A family and its link: binomial (logit, probit, cloglog) or poisson (log)."""

    name: str
    link: str

    # -- the link ------------------------------------------------------------------------------------------

    def linkinv(self, eta: np.ndarray) -> np.ndarray:
        if self.link == "logit":  # in place: one n-vector
            t = np.negative(eta)
            with np.errstate(over="ignore"):
                np.exp(t, out=t)
            t += 1.0
            np.reciprocal(t, out=t)
            return np.clip(t, EPS / (1 + EPS), 1 / (1 + EPS), out=t)
        if self.link == "probit":
            from scipy import special

            thresh = -special.ndtri(EPS)
            return special.ndtr(np.clip(eta, -thresh, thresh))
        if self.link == "cloglog":
            return np.clip(-np.expm1(-np.exp(np.minimum(eta, 700.0))), EPS, 1 - EPS)
        return np.maximum(np.exp(eta), EPS)  # log

    def linkfun(self, mu: np.ndarray) -> np.ndarray:
        if self.link == "logit":
            return np.log(mu / (1 - mu))
        if self.link == "probit":
            from scipy import special

            return special.ndtri(mu)
        if self.link == "cloglog":
            return np.log(-np.log1p(-mu))
        return np.log(mu)

    def mu_eta(self, eta: np.ndarray) -> np.ndarray:
        """d mu / d eta."""
        if self.link == "logit":
            e = np.exp(-np.abs(eta))
            return np.maximum(e / (1 + e) ** 2, EPS)
        if self.link == "probit":
            return np.maximum(np.exp(-0.5 * eta * eta) / np.sqrt(2 * np.pi), EPS)
        if self.link == "cloglog":
            e = np.minimum(eta, 700.0)
            return np.maximum(np.exp(e - np.exp(e)), EPS)
        return np.maximum(np.exp(eta), EPS)

    def mu_eta2(self, eta: np.ndarray) -> np.ndarray:
        """d^2 mu / d eta^2 (for the gradient of the Laplace deviance under a non-canonical link)."""
        if self.link == "logit":
            mu = self.linkinv(eta)
            return mu * (1 - mu) * (1 - 2 * mu)
        if self.link == "probit":
            return -eta * np.exp(-0.5 * eta * eta) / np.sqrt(2 * np.pi)
        if self.link == "cloglog":
            e = np.minimum(eta, 700.0)
            return np.exp(e - np.exp(e)) * (1 - np.exp(e))
        return np.exp(eta)

    # -- the family ----------------------------------------------------------------------------------------

    def variance(self, mu: np.ndarray) -> np.ndarray:
        return mu * (1 - mu) if self.name == "binomial" else mu

    def dev_resid(self, y: np.ndarray, mu: np.ndarray, wt: np.ndarray) -> np.ndarray:
        """The unit deviances times the prior weights (R's family$dev.resids)."""
        if self.name == "binomial":
            return 2 * wt * (xlogy(y, y / mu) + xlogy(1 - y, (1 - y) / (1 - mu)))
        return 2 * wt * (xlogy(y, y / mu) - (y - mu))

    def minus2_loglik(self, y: np.ndarray, mu: np.ndarray, wt: np.ndarray) -> float:
        """-2 log p(y | mu): R's family$aic(y, n, mu, wt) (for binomial, y is the proportion of wt trials, and
        the binomial coefficient is included)."""
        if self.name == "binomial":
            k = np.round(wt * y)
            m = np.round(wt)
            logc = log_factorial(m) - log_factorial(k) - log_factorial(m - k)
            return float(-2 * np.sum(logc + xlogy(k, mu) + xlogy(m - k, -mu, log=np.log1p)))
        return float(-2 * np.sum(wt * (xlogy(y, mu) - mu - log_factorial(y))))

    @property
    def canonical(self) -> bool:
        """The canonical link (logit for binomial, log for Poisson), where d mu / d eta = V(mu)."""
        return self.link == LINKS[self.name][0]

    @property
    def label(self) -> str:
        return f"{self.name}  ( {self.link} )"


def xlogy(x: np.ndarray, y: np.ndarray, log: np.ufunc = np.log) -> np.ndarray:
    """x log y (or x log1p y with ``log=np.log1p``), 0 where x is 0: scipy.special's xlogy and xlog1py, without
    importing scipy for them."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    zero = x == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        out = x * log(np.where(zero, 1.0 if log is np.log else 0.0, y))
    return np.where(zero, 0.0, out)


def log_factorial(k: np.ndarray) -> np.ndarray:
    """log k! of whole numbers k >= 0, by math.lgamma over the distinct values (counts repeat)."""
    import math

    k = np.asarray(k, dtype=float)
    if k.size and float(np.max(k)) <= 1.0:  # 0/1 responses and single trials: 0! = 1! = 1
        return np.zeros(k.shape)
    vals, inverse = np.unique(k, return_inverse=True)
    return np.array([math.lgamma(v + 1.0) for v in vals])[inverse].reshape(k.shape)


def family(name: str, link: str | None = None) -> Family:
    """The family and link by name (the link defaults to the canonical one); an unknown pair is a usage error."""
    if name not in LINKS:
        raise UsageError(f"Unknown family '{name}': use binomial or poisson.", param="family")
    link = link or LINKS[name][0]
    if link not in LINKS[name]:
        ok = ", ".join(LINKS[name])
        if link in R_ONLY[name]:
            raise UsageError(
                f"The {name} family with the {link} link is not supported (its mean can leave the family's range); "
                f"use {ok}.",
                param="link",
            )
        raise UsageError(f"The {name} family has no link '{link}': use {ok}.", param="link")
    return Family(name, link)


def unit_weights(n: int) -> np.ndarray:
    """n prior weights of 1 (one trial per row) as a read-only view of a single number: no n-vector of ones."""
    return np.broadcast_to(np.ones(1), (n,))
