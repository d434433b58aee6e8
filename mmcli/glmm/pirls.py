"""Penalized iteratively reweighted least squares for the conditional modes, and the Laplace and adaptive
Gauss-Hermite approximations to the deviance (Bates et al. 2015; lme4's glmer; Pinheiro & Bates 1995).

At theta (and, in the second stage, at beta) the conditional mode u~ minimizes the penalized deviance
sum(d_i(y_i, mu_i)) + ||u||^2, with eta = X beta + Z Lambda u + offset and mu = g^-1(eta). Each PIRLS iteration
solves the penalized weighted least squares problem with working weights w = a mu'(eta)^2 / V(mu) and working
response z = eta - offset + (y - mu) / mu'(eta) on the blocked Cholesky, and halves the step while the penalized
deviance does not decrease. At the mode the Laplace approximation to -2 log L is

    -2 log p(y | u~) + ||u~||^2 + log |Lambda'Z'W Z Lambda + I|

and, for a single scalar random-effects term, adaptive Gauss-Hermite quadrature with nAGQ nodes replaces the
Gaussian integral per level by the rule at u~_j + z_k / L_jj, as glmer computes it (on the scale of the sum of
deviance residuals).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mmcli.errors import NotConvergedError
from mmcli.glmm.family import Family, log_factorial, xlogy
from mmcli.lmm import PlsStep, WeightedPls

ETA_TOL = 1e-10  # PIRLS stops when no linear predictor moves by more than this (absolute) ...
PDEV_TOL = 1e-15  # ... or the penalized deviance no longer changes (relative): the mode, to rounding
JOINT_TOL = 1e-8  # the first stage's joint PIRLS over (u, beta) stops at this relative change of the penalized
# deviance (lme4's tolPwrss is 1e-7): Fisher scoring converges only linearly for a non-canonical link there, and the
# first stage only finds the start of the second
MAXIT = 500
ROW_BLOCK = 65536  # rows of the response's constants formed at a time
MAX_HALVINGS = 30


@dataclass(frozen=True, eq=False)
class Mode:
    """The conditional mode at one theta (and beta): everything the deviance and the results need. The mode of
    one scalar term keeps no full-length vector: eta and mu are None, and ``rows`` forms them over a block of
    rows (:meth:`block`), or over all rows when a computation needs them whole (:meth:`whole`)."""

    beta: np.ndarray
    u: np.ndarray
    eta: np.ndarray | None
    mu: np.ndarray | None
    pdev: float  # sum of deviance residuals + ||u||^2
    step: PlsStep  # the factor at the weights of the mode
    iterations: int
    logdet: float  # log |Lambda'Z'W Z Lambda + I| at the weights of the mode itself
    rows: Callable[[slice], tuple[np.ndarray, np.ndarray]] | None = None  # (eta, mu) of a block of rows
    n: int = 0  # the number of rows, with ``rows``

    def block(self, sl: slice) -> tuple[np.ndarray, np.ndarray]:
        """eta and mu over the rows ``sl``."""
        if self.eta is not None and self.mu is not None:
            return self.eta[sl], self.mu[sl]
        assert self.rows is not None
        return self.rows(sl)

    def whole(self) -> Mode:
        """The mode with eta and mu stored (two full-length vectors)."""
        if self.eta is not None and self.mu is not None:
            return self
        return dataclasses.replace(self, eta=self._formed(0), mu=self._formed(1), rows=None)

    @property
    def eta_(self) -> np.ndarray:
        """eta over all rows (formed when not stored: one full-length vector)."""
        return self.eta if self.eta is not None else self._formed(0)

    @property
    def mu_(self) -> np.ndarray:
        """mu over all rows (formed when not stored: one full-length vector)."""
        return self.mu if self.mu is not None else self._formed(1)

    def _formed(self, which: int) -> np.ndarray:
        out = np.empty(self.n)
        for lo in range(0, self.n, ROW_BLOCK):
            sl = slice(lo, lo + ROW_BLOCK)
            out[sl] = self.block(sl)[which]
        return out


class Response:
    """y (a proportion for binomial), prior weights (trials) and the offset, with the family.

    The sum of deviance residuals is computed as c - 2 sum(a (y log mu + (1 - y) log(1 - mu))) (binomial) or
    c - 2 sum(a (y log mu - mu)) (Poisson), with the saturated part c formed once; -2 log p(y | mu) differs from
    it by another constant (the binomial coefficients, log y!), also formed once."""

    offset: np.ndarray | float

    def __init__(self, fam: Family, y: np.ndarray, prior: np.ndarray, offset: np.ndarray | None):
        self.fam, self.y, self.prior = fam, y, prior
        self.offset = 0.0 if offset is None else offset  # no n-vector of zeros to add
        self.binomial = fam.name == "binomial"
        self.unit_prior = bool(np.all(prior == 1.0))
        self.has_offset = offset is not None
        self.ay = y if self.unit_prior else prior * y
        self.a1y = prior * (1 - y) if self.binomial and not self.unit_prior else None  # unit prior: sums of y
        self.has_zero = bool(np.any(y == 0))
        # c = 2 sum(a (y log y + (1 - y) log(1 - y))) or 2 sum(a (y log y - y)); -2 log p(y | mu) adds
        # -2 sum(log C(a, a y)) or 2 sum(a log y!) to the kernel
        sat = lg = 0.0
        for lo in range(0, y.size, ROW_BLOCK):  # a block of rows at a time: no full-length temporaries
            sl = slice(lo, lo + ROW_BLOCK)
            yc, pc = y[sl], prior[sl]
            if self.binomial:
                sat += 2.0 * float(pc @ (xlogy(yc, yc) + xlogy(1 - yc, 1 - yc)))
                if not self.unit_prior:  # one trial per row: C(1, y) = 1
                    k, m = np.round(pc * yc), np.round(pc)
                    lg += float(np.sum(log_factorial(m) - log_factorial(k) - log_factorial(m - k)))
            else:
                sat += 2.0 * float(pc @ (xlogy(yc, yc) - yc))
                lg -= float(pc @ log_factorial(yc))
        self.saturated = sat
        self.constant = -2.0 * lg - sat

    def _kernel(self, mu: np.ndarray, rows: slice = slice(None)) -> float:
        """-2 sum(a (y log mu + (1 - y) log(1 - mu))) or -2 sum(a (y log mu - mu)), over ``rows`` of y (all of
        them by default; mu holds those rows alone)."""
        ay = self.ay[rows]
        if self.binomial:  # in place: one temporary as long as mu
            t = np.log(mu)
            s = float(ay @ t)
            np.negative(mu, out=t)
            np.log1p(t, out=t)
            if self.a1y is None:  # sum((1 - y) log(1 - mu)) without the vector 1 - y
                return -2.0 * (s + float(np.sum(t)) - float(ay @ t))
            return -2.0 * (s + float(self.a1y[rows] @ t))
        return float(-2.0 * (ay @ np.log(mu) - (np.sum(mu) if self.unit_prior else self.prior[rows] @ mu)))

    def dev_sum(self, mu: np.ndarray) -> float:
        return self.saturated + self._kernel(mu)

    def pdev(self, mu: np.ndarray, u: np.ndarray) -> float:
        return self.dev_sum(mu) + float(u @ u)

    def minus2_loglik(self, mu: np.ndarray) -> float:
        return self.dev_sum(mu) + self.constant


class Pirls:
    """The PIRLS solver of one model: the weighted system, the response and the current start."""

    def __init__(self, pls: WeightedPls, resp: Response):
        from mmcli.glmm.scalar import ScalarPirls

        self.pls, self.resp = pls, resp
        self.evaluations = 0
        self.scalar = ScalarPirls(pls, resp) if pls.scalar else None  # one scalar term: by blocks of rows

    def mode(self, theta: np.ndarray, beta: np.ndarray | None, start: tuple[np.ndarray, np.ndarray]) -> Mode:
        """The conditional mode at theta: with beta given, over u only (glmer's second stage); with beta None,
        over u and beta jointly (the first stage, nAGQ = 0). ``start`` = (beta, u) to iterate from."""
        self.evaluations += 1
        if self.scalar is not None:
            return self.scalar.mode(theta, beta, start)
        fam, r, X = self.resp.fam, self.resp, self.pls.X
        joint = beta is None
        b = start[0].copy() if joint else np.asarray(beta, dtype=float)
        u = start[1].copy()
        xb = X @ b
        eta = self._eta(xb, theta, u)
        mu = fam.linkinv(eta)
        pdev = r.pdev(mu, u)
        for it in range(1, MAXIT + 1):
            w, z = self._working(eta, mu, None if joint else xb)
            del mu  # not needed again before the next accepted step: one full-length vector fewer in the solve
            step = self.pls.solve(theta, w, z, with_x=joint)
            del w, z
            b_new = step.beta if joint else b
            u_new = step.u
            frac, accepted = 1.0, False
            for _ in range(MAX_HALVINGS):
                b_try = b + frac * (b_new - b)
                u_try = u + frac * (u_new - u)
                xb_try = X @ b_try if joint else xb
                eta_try = self._eta(xb_try, theta, u_try)
                mu_try = fam.linkinv(eta_try)
                pdev_try = r.pdev(mu_try, u_try)
                if np.isfinite(pdev_try) and pdev_try <= pdev + 1e-12 * abs(pdev):
                    accepted = True
                    break
                frac /= 2
            if not accepted:
                if abs(pdev_try - pdev) <= 1e-9 * (abs(pdev) + 1):  # no descent left: the mode, to rounding
                    return self._at_mode(theta, b, u, xb, eta, fam.linkinv(eta), pdev, it, joint)
                raise NotConvergedError(
                    "The penalized iteratively reweighted least squares (PIRLS) for the conditional modes diverged: "
                    "no step lowers the penalized deviance. The model may be too rich for these data (a variance "
                    "near zero or a predictor that separates the outcomes); simplify it or rescale the predictors."
                )
            diff = np.subtract(eta_try, eta)
            change, moved = pdev - pdev_try, float(np.max(np.abs(diff, out=diff)))
            del diff
            b, u, xb, eta, mu, pdev = b_try, u_try, xb_try, eta_try, mu_try, pdev_try
            if moved < ETA_TOL or change <= (JOINT_TOL if joint else PDEV_TOL) * (abs(pdev) + 1):
                return self._at_mode(theta, b, u, xb, eta, mu, pdev, it, joint)
        raise NotConvergedError(
            f"The penalized iteratively reweighted least squares (PIRLS) for the conditional modes did not converge "
            f"in {MAXIT} iterations; simplify the model or rescale the predictors."
        )

    def _at_mode(
        self,
        theta: np.ndarray,
        b: np.ndarray,
        u: np.ndarray,
        xb: np.ndarray,
        eta: np.ndarray,
        mu: np.ndarray,
        pdev: float,
        it: int,
        joint: bool,
    ) -> Mode:
        """The mode with its factor at the mode's own weights (the last step's were those of the iterate before):
        the Laplace deviance is then a smooth function of (theta, beta), which its finite-difference Hessian
        needs on large data."""
        w, z = self._working(eta, mu, None if joint else xb)
        step = self.pls.solve(theta, w, z, with_x=joint)
        return Mode(b, u, eta, mu, pdev, step, it, step.logdet)

    def _eta(self, xb: np.ndarray, theta: np.ndarray, u: np.ndarray) -> np.ndarray:
        """X beta + Z Lambda u + offset, in one new n-vector."""
        eta = self.pls.z_lambda(theta, u)
        eta += xb
        if self.resp.has_offset:
            eta += self.resp.offset
        return eta

    def _working(self, eta: np.ndarray, mu: np.ndarray, xb: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The working weights a mu'(eta)^2 / V(mu) and response eta - offset [- X beta] + (y - mu) / mu'(eta),
        formed in place (two n-vectors)."""
        fam, r = self.resp.fam, self.resp
        if fam.canonical:  # mu'(eta) = V(mu): w = a V(mu)
            d = fam.variance(mu)
            w = d if r.unit_prior else d * r.prior
        else:
            d = fam.mu_eta(eta)
            w = d * d
            w /= fam.variance(mu)
            if not r.unit_prior:
                w *= r.prior
        z = np.subtract(r.y, mu)
        z /= d
        z += eta
        if r.has_offset:
            z -= r.offset
        if xb is not None:
            z -= xb
        return w, z

    def laplace(self, m: Mode) -> float:
        """-2 log L by the Laplace approximation at the mode."""
        return m.pdev + self.resp.constant + m.logdet

    def agq(self, m: Mode, theta: np.ndarray, nodes: np.ndarray, weights: np.ndarray) -> float:
        """glmer's adaptive Gauss-Hermite deviance for one scalar random-effects term (its only block)."""
        blk = self.pls.blocks[0]
        codes = blk.codes
        assert codes is not None
        r, fam = self.resp, self.resp.fam
        assert m.step.L0 is not None
        sd = 1.0 / m.step.L0
        nl = blk.nlevels
        fixed = m.eta_ - self.pls.z_lambda(theta, m.u)

        def devc(u: np.ndarray) -> np.ndarray:
            eta = fixed + self.pls.z_lambda(theta, u)
            dr = fam.dev_resid(r.y, fam.linkinv(eta), r.prior)
            return u * u + np.bincount(codes, weights=dr, minlength=nl)

        devc0 = devc(m.u)
        mult = np.zeros(nl)
        for zk, wk in zip(nodes, weights):
            if zk == 0.0:
                mult += wk
                continue
            mult += np.exp(-0.5 * (devc(m.u + zk * sd) - devc0) + 0.5 * zk * zk) * wk
        return float(np.sum(devc0) + m.step.logdet - 2.0 * np.sum(np.log(mult)))


def gh_rule(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Hermite nodes and weights for the standard normal density (weights summing to 1), as lme4's GHrule."""
    z, w = np.polynomial.hermite_e.hermegauss(k)
    return z, w / np.sum(w)
