"""Profile confidence intervals, as lme4's ``confint(profile(m))`` (Bates et al. 2015, section 5.1).

The parameters are lme4's: the standard deviations and correlations of each term's random effects (in theta's
order, the lower triangle column by column: ``.sig01``, ``.sig02``, ...), the residual standard deviation
``.sigma``, then the fixed effects. The profile of one parameter is the signed square root of the change in the
ML deviance (lme4 profiles a REML fit on its ML refit)

    zeta(x) = sign(x - x_hat) sqrt(min { D(others) : parameter = x } - D_hat)

with every other parameter re-optimized. The deviance at (theta, sigma), beta profiled out, is

    D(theta, sigma) = D*(theta) + n (r - 1 - log r),    r = sigma_hat^2(theta) / sigma^2,

D* being the ML criterion profiled over sigma too. The minimum over the other parameters does not depend on
how they are parametrized, so they are re-optimized in theta (whose bounds BOBYQA takes as they are) rather
than on lme4's sd/correlation scale:

- a standard deviation sd_i = sigma |row i of the template| fixed at s: theta free, sigma = s / |row i|;
- ``.sigma`` fixed at s: theta free;
- a correlation fixed at rho: its term's template is diag(d) chol(R), d >= 0 and the other correlations of R
  free; sigma is profiled analytically (a correlation does not depend on the scale);
- a fixed effect beta_j fixed at b: x_j b becomes an offset, and theta is re-optimized on the ML criterion
  profiled over the other fixed effects and sigma.

The interval's ends solve zeta(x) = -z and zeta(x) = +z (z = qnorm((1 + level) / 2)) by Brent's method on the
profile itself, where lme4 interpolates a spline through a grid of profile points; an end that the profile
does not reach before a bound (0 for a standard deviation, +-1 for a correlation) is that bound.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from mmcli.lmm.criterion import Dof, criterion
from mmcli.lmm.factor import update_L
from mmcli.lmm.model import LmmModel
from mmcli.lmm.optimizer import bobyqa
from mmcli.lmm.results import LmmFit
from mmcli.lmm.terms import ReTerm, lower_bounds, templates, theta_offsets

CORR_EDGE = 1.0 - 1e-10  # a correlation's profile is evaluated this close to +-1 at most
ROOT_XTOL = 1e-7  # Brent's tolerance, relative to the scale of the parameter


@dataclass(frozen=True)
class Interval:
    """One row of the result: lme4's name, the lower and upper end."""

    name: str
    lower: float
    upper: float


def parameter_names(terms: Sequence[ReTerm], xnames: Sequence[str]) -> list[str]:
    """lme4's row names with ``oldNames = TRUE``: .sig01, .sig02, ... (theta's layout), .sigma, the fixed effects."""
    k = sum(t.ntheta for t in terms)
    return [f".sig{i + 1:02d}" for i in range(k)] + [".sigma", *xnames]


def sdcor(terms: Sequence[ReTerm], theta: np.ndarray, sigma: float) -> np.ndarray:
    """The standard deviations (diagonal positions) and correlations (off-diagonal positions) of the random
    effects, in theta's layout, from C = sigma^2 T T' per term; a correlation with a zero sd is 0 (NaN in lme4)."""
    out = []
    for t, T in zip(terms, templates(terms, theta)):
        C = sigma**2 * (T @ T.T)
        sd = np.sqrt(np.maximum(np.diag(C), 0.0))
        for i, j in t.template_positions():
            out.append(sd[i] if i == j else (C[i, j] / (sd[i] * sd[j]) if sd[i] * sd[j] > 0 else 0.0))
    return np.array(out)


class Profile:
    """The profiled ML deviance of one model, parameter by parameter (see the module docstring)."""

    def __init__(
        self,
        X: np.ndarray,
        y: np.ndarray,
        terms: Sequence[ReTerm],
        *,
        xnames: Sequence[str],
        weights: np.ndarray | None = None,
        offset: np.ndarray | None = None,
        progress: Callable[[int, float], None] | None = None,
        ml_fit: LmmFit | None = None,
    ):
        self.model = LmmModel(X, y, terms, xnames=xnames, weights=weights, offset=offset)
        self.terms = list(terms)
        self.progress, self.count = progress, 0
        self.fit: LmmFit = ml_fit if ml_fit is not None else self.model.fit(reml=False)
        self.base = self.fit.objective
        self.lower = lower_bounds(self.terms)
        self.offsets = theta_offsets(self.terms)
        self.positions = [(k, t, i, j) for k, t in enumerate(self.terms) for i, j in t.template_positions()]

    # ----------------------------------------------------------------------------------------------
    # the deviance

    def parts(self, theta: np.ndarray) -> tuple[float, float]:
        """(D*(theta), sigma_hat^2(theta)) on the ML scale: the criterion profiled over beta and sigma."""
        m, dof = self.model, Dof(self.model.n, self.model.p, False)
        gram = m._gram
        assert gram is not None
        f = update_L(gram, m.work.theta_to_working(theta))
        d = criterion(f.logdetZ, f.logdetX, f.pwrss, dof) + m.work.criterion_shift(dof)
        return d, f.pwrss / dof.resid * m.work.s**2

    def deviance(self, theta: np.ndarray, sigma: float) -> float:
        """D(theta, sigma), beta profiled out."""
        d, s2 = self.parts(theta)
        if not (np.isfinite(d) and sigma > 0):
            return math.inf
        r = s2 / sigma**2
        return d + self.model.n * (r - 1.0 - math.log(r))

    def _minimize(self, fn: Callable[[np.ndarray], float], x0: np.ndarray, lower: np.ndarray) -> float:
        if x0.size == 0:
            return fn(x0)

        def counted(x: np.ndarray) -> float:
            self.count += 1
            if self.progress is not None:
                self.progress(self.count, math.nan)
            return fn(x)

        x, fx, _, _ = bobyqa(counted, np.maximum(x0, lower), lower, polish=True, local=True)
        if x.size == self.lower.size:  # a theta: the next point of the same profile starts from it
            self._warm = x
        return fx

    # ----------------------------------------------------------------------------------------------
    # the profile of each kind of parameter: the minimum of D with that parameter held at x

    def _sd_profile(self, idx: int, s: float, start: np.ndarray) -> float:
        k, t, i, _ = self.positions[idx]
        off = self.offsets[k]
        rows = [off + m for m, (a, _) in enumerate(t.template_positions()) if a == i]  # row i of the template
        if s <= 0.0:  # the row is 0 and sigma free: the profiled criterion over the rest of theta
            free = np.setdiff1d(np.arange(self.lower.size), rows)
            size = self.lower.size
            return self._minimize(lambda x: self.parts(_put(x, free, size))[0], start[free], self.lower[free])

        def fn(theta: np.ndarray) -> float:
            norm = math.sqrt(float(np.sum(theta[rows] ** 2)))
            return self.deviance(theta, s / norm) if norm > 0 else math.inf

        return self._minimize(fn, start, self.lower)

    def _sigma_profile(self, s: float, start: np.ndarray) -> float:
        return self._minimize(lambda th: self.deviance(th, s), start, self.lower)

    def _cor_profile(self, idx: int, rho: float, start: np.ndarray) -> float:
        k, t, i0, j0 = self.positions[idx]
        off, p = self.offsets[k], t.p
        pairs = [(i, j) for j in range(p) for i in range(j + 1, p) if (i, j) != (i0, j0)]
        others = np.setdiff1d(np.arange(self.lower.size), np.arange(off, off + t.ntheta))
        T = templates(self.terms, start)[k]
        C = T @ T.T
        d0 = np.sqrt(np.maximum(np.diag(C), 1e-12))
        R0 = C / np.outer(d0, d0)
        x0 = np.concatenate([start[others], d0, [R0[i, j] for i, j in pairs]])
        lower = np.concatenate([self.lower[others], np.zeros(p), np.full(len(pairs), -1.0)])

        def fn(x: np.ndarray) -> float:
            d, r = x[others.size : others.size + p], x[others.size + p :]
            R = np.eye(p)
            R[i0, j0] = R[j0, i0] = rho
            for (i, j), v in zip(pairs, r):
                R[i, j] = R[j, i] = v
            try:
                LR = np.linalg.cholesky(R)
            except np.linalg.LinAlgError:
                return math.inf
            theta = np.empty(self.lower.size)
            theta[others] = x[: others.size]
            Tk = d[:, None] * LR
            theta[off : off + t.ntheta] = [Tk[a, b] for a, b in t.template_positions()]
            return self.parts(theta)[0]

        return self._minimize(fn, x0, lower)

    def _fixef_profile(self, j: int, b: float, start: np.ndarray) -> float:
        """With beta_j = b the penalized RSS at theta grows by (m'beta_w - c)^2 / (m' (L_XX L_XX')^-1 m), where
        beta = M (s beta_w + b0) is the working parametrization's map, m the row j of M and c = (b - m'b0) / s;
        log|L_Z| does not change, so the ML criterion follows at once (no refit with an offset is needed)."""
        w = self.model.work
        m = np.eye(self.model.p)[j] if w.M is None else w.M[j]
        c = (b - float(m @ w.b0)) / w.s
        dof = Dof(self.model.n, self.model.p, False)
        gram = self.model._gram
        assert gram is not None
        qR, p = gram.qR, gram.p

        def fn(theta: np.ndarray) -> float:
            f = update_L(gram, w.theta_to_working(theta))
            LXX = f.Lrest[qR : qR + p, qR : qR + p]
            beta_w = np.linalg.solve(LXX.T, f.Lrest[-1, qR : qR + p])
            v = np.linalg.solve(LXX, m)
            pwrss = f.pwrss + (float(m @ beta_w) - c) ** 2 / float(v @ v)
            return criterion(f.logdetZ, f.logdetX, pwrss, dof) + w.criterion_shift(dof)

        return self._minimize(fn, start, self.lower)

    # ----------------------------------------------------------------------------------------------
    # zeta and its roots

    def kind(self, idx: int) -> str:
        """What parameter idx is: sd, cor, sigma or fixef."""
        k = self.lower.size
        if idx >= k:
            return "sigma" if idx == k else "fixef"
        _, _, i, j = self.positions[idx]
        return "sd" if i == j else "cor"

    def estimates(self) -> np.ndarray:
        return np.concatenate([sdcor(self.terms, self.fit.theta, self.fit.sigma), [self.fit.sigma], self.fit.beta])

    def zeta(self, idx: int, x: float, start: np.ndarray) -> float:
        """The signed square root of the change in deviance with parameter idx held at x."""
        k = self.lower.size
        if idx < k:
            t, i, j = self.positions[idx][1:]
            dev = self._sd_profile(idx, x, start) if i == j else self._cor_profile(idx, x, start)
        elif idx == k:
            dev = self._sigma_profile(x, start)
        else:
            dev = self._fixef_profile(idx - k - 1, x, start)
        return math.copysign(math.sqrt(max(dev - self.base, 0.0)), x - self.estimates()[idx])

    def interval(self, idx: int, z: float) -> tuple[float, float]:
        """The ends of the interval of parameter idx: zeta = -z and zeta = +z."""
        return self._end(idx, -z), self._end(idx, z)

    def _end(self, idx: int, target: float) -> float:
        from scipy.optimize import brentq

        k = self.lower.size
        est = self.estimates()
        xhat = float(est[idx])
        kind = self.kind(idx)
        lo, hi = {"sd": (0.0, math.inf), "cor": (-CORR_EDGE, CORR_EDGE), "sigma": (1e-6 * xhat, math.inf)}.get(
            kind, (-math.inf, math.inf)
        )
        if kind == "fixef":
            h = float(self.fit.std_errors[idx - k - 1])
        elif kind == "cor":
            h = 0.1
        else:
            h = 0.25 * max(abs(xhat), 1e-3 * float(self.fit.sigma))
        h = h if h > 0 else 1.0
        self._warm = self.fit.theta.copy()
        sign = 1.0 if target > 0 else -1.0
        start = self.fit.theta.copy()

        seen: dict[float, float] = {}  # each point once: Brent's ends keep the signs the search found

        def g(x: float) -> float:
            if x not in seen:
                seen[x] = self.zeta(idx, x, self._warm if kind != "cor" else start) - target
            return seen[x]

        a, ga = xhat, -target
        for _ in range(60):
            b = min(max(a + sign * h, lo), hi)
            gb = g(b)
            if gb * sign >= 0:
                break
            if b in (lo, hi):  # the profile does not reach the level before the bound
                return 0.0 if kind == "sd" else b if kind == "sigma" else math.copysign(1.0, b)
            slope = (gb - ga) / (b - a)
            step = abs(gb / slope) * 1.1 if slope * sign > 0 else 2.0 * h
            h = min(max(step, 0.25 * h), 4.0 * h)
            a, ga = b, gb
        scale = max(abs(xhat), abs(b), 1e-300)
        return float(brentq(g, min(a, b), max(a, b), xtol=ROOT_XTOL * scale, rtol=1e-12))


def _put(x: np.ndarray, idx: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros(size)
    out[idx] = x
    return out


def profile_intervals(
    X: np.ndarray,
    y: np.ndarray,
    terms: Sequence[ReTerm],
    *,
    xnames: Sequence[str],
    weights: np.ndarray | None = None,
    offset: np.ndarray | None = None,
    level: float = 0.95,
    progress: Callable[[int, float], None] | None = None,
    ml_fit: LmmFit | None = None,
) -> list[Interval]:
    """Profile intervals for every parameter, in lme4's order (see the module docstring). ``ml_fit``: the ML fit
    of the same model, when the caller has it (it is not refitted)."""
    from scipy.stats import norm

    prof = Profile(X, y, terms, xnames=xnames, weights=weights, offset=offset, progress=progress, ml_fit=ml_fit)
    z = float(norm.ppf(0.5 + level / 2.0))
    names = parameter_names(terms, prof.model.xnames)
    return [Interval(nm, *prof.interval(i, z)) for i, nm in enumerate(names)]
