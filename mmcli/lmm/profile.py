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
- a correlation fixed at rho: its term's template is chol(diag(d) R diag(d)), d >= 0 free and R built from a
  Cholesky factor whose first two rows (the held pair) hold rho and whose other rows are free; sigma is
  profiled analytically (a correlation does not depend on the scale);
- a fixed effect beta_j fixed at b: x_j b becomes an offset, and theta is re-optimized on the ML criterion
  profiled over the other fixed effects and sigma.

The interval's ends solve zeta(x) = -z and zeta(x) = +z (z = qnorm((1 + level) / 2)) on the profile itself,
where lme4 interpolates a spline through a grid of profile points: by Newton's method, with zeta'(x) =
D_min'(x) / (2 zeta) and D_min'(x) the partial derivative of the deviance at the re-optimized point (the
envelope theorem: no further optimization), safeguarded by bisection inside the bracket found so far. An end
that the profile does not reach before a bound (0 for a standard deviation, +-1 for a correlation) is that
bound.
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
ROOT_XTOL = 1e-9  # a Newton step this small (relative to the parameter's scale) ends the search
ZETA_TOL = 2e-6  # |zeta(x) - target| below this ends the search (x then within ~1e-5 of its scale)
MAX_STEPS = 60


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

    def _minimize(
        self, fn: Callable[[np.ndarray], float], x0: np.ndarray, lower: np.ndarray, polish: bool = True
    ) -> tuple[np.ndarray, float]:
        if x0.size == 0:
            return x0, fn(x0)

        def counted(x: np.ndarray) -> float:
            self.count += 1
            if self.progress is not None:
                self.progress(self.count, math.nan)
            return fn(x)

        x, fx, _, _ = bobyqa(counted, np.maximum(x0, lower), lower, polish=polish, local=True)
        return x, fx

    # ----------------------------------------------------------------------------------------------
    # the profile of each kind of parameter: F(x, phi), the deviance with that parameter held at x and the
    # others given by phi; the profile is the minimum over phi

    def family(self, idx: int) -> tuple[Callable[[float, np.ndarray], float], Callable[[np.ndarray], np.ndarray]]:
        """F(x, phi) for parameter idx, and the map from theta to the phi of the same point (the start)."""
        kind, nth = self.kind(idx), self.lower.size
        if kind == "sd":
            k, t, i, _ = self.positions[idx]
            rows = [self.offsets[k] + m for m, (a, _) in enumerate(t.template_positions()) if a == i]

            def sd(s: float, theta: np.ndarray) -> float:
                norm = math.sqrt(float(np.sum(theta[rows] ** 2)))
                return self.deviance(theta, s / norm) if norm > 0 else math.inf

            return sd, lambda th: th
        if kind == "sigma":
            return (lambda s, th: self.deviance(th, s)), lambda th: th
        if kind == "cor":
            return self._cor_family(idx)
        return self._fixef_family(idx - nth - 1), lambda th: th

    def _others(self, k: int) -> np.ndarray:
        off = self.offsets[k]
        return np.setdiff1d(np.arange(self.lower.size), np.arange(off, off + self.terms[k].ntheta))

    def _cor_family(self, idx: int) -> tuple[Callable[[float, np.ndarray], float], Callable[[np.ndarray], np.ndarray]]:
        """phi: the other terms' theta, this term's relative sds d >= 0 and, for p >= 3, the rows 3..p of the
        Cholesky factor L of the correlation matrix with the held pair ordered first (each row free, normalized
        to unit length: every such L gives a valid correlation matrix, and its first two rows hold rho). The
        template is chol(diag(d) R diag(d)); sigma is profiled analytically (D*)."""
        k, t, i0, j0 = self.positions[idx]
        off, p = self.offsets[k], t.p
        order = [j0, i0] + [m for m in range(p) if m not in (i0, j0)]
        others = self._others(k)
        no = others.size

        def F(rho: float, x: np.ndarray) -> float:
            d, v = x[no : no + p], x[no + p :]
            L = np.zeros((p, p))
            L[0, 0], L[1, 0], L[1, 1] = 1.0, rho, math.sqrt(max(1.0 - rho * rho, 0.0))
            pos = 0
            for r in range(2, p):
                row = v[pos : pos + r + 1]
                pos += r + 1
                norm = float(np.sqrt(row @ row))
                if norm == 0.0:
                    return math.inf
                L[r, : r + 1] = row / norm
            R = np.empty((p, p))
            R[np.ix_(order, order)] = L @ L.T
            Tk = _cholesky_psd(d[:, None] * R * d[None, :])
            theta = np.empty(self.lower.size)
            theta[others] = x[:no]
            theta[off : off + t.ntheta] = [Tk[a, b] for a, b in t.template_positions()]
            return self.parts(theta)[0]

        def start(theta: np.ndarray) -> np.ndarray:
            T = templates(self.terms, theta)[k]
            C = T @ T.T
            d0 = np.sqrt(np.maximum(np.diag(C), 1e-12))
            Lp = _cholesky_psd((C / np.outer(d0, d0))[np.ix_(order, order)])
            rows = [Lp[r, : r + 1] if Lp[r, r] > 0 else np.eye(r + 1)[r] for r in range(2, p)]
            return np.concatenate([theta[others], d0, *rows])

        return F, start

    def _fixef_family(self, j: int) -> Callable[[float, np.ndarray], float]:
        """With beta_j = b the penalized RSS at theta grows by (m'beta_w - c)^2 / (m' (L_XX L_XX')^-1 m), where
        beta = M (s beta_w + b0) is the working parametrization's map, m the row j of M and c = (b - m'b0) / s;
        log|L_Z| does not change, so the ML criterion follows at once (no refit with an offset is needed)."""
        w = self.model.work
        m = np.eye(self.model.p)[j] if w.M is None else w.M[j]
        dof = Dof(self.model.n, self.model.p, False)
        gram = self.model._gram
        assert gram is not None
        qR, p = gram.qR, gram.p

        def F(b: float, theta: np.ndarray) -> float:
            c = (b - float(m @ w.b0)) / w.s
            f = update_L(gram, w.theta_to_working(theta))
            LXX = f.Lrest[qR : qR + p, qR : qR + p]
            beta_w = np.linalg.solve(LXX.T, f.Lrest[-1, qR : qR + p])
            v = np.linalg.solve(LXX, m)
            pwrss = f.pwrss + (float(m @ beta_w) - c) ** 2 / float(v @ v)
            return criterion(f.logdetZ, f.logdetX, pwrss, dof) + w.criterion_shift(dof)

        return F

    def _sd_at_zero(self, idx: int) -> float:
        """The profile of a standard deviation at 0: its template row at 0, sigma free (D*)."""
        k, t, i, _ = self.positions[idx]
        rows = [self.offsets[k] + m for m, (a, _) in enumerate(t.template_positions()) if a == i]
        free = np.setdiff1d(np.arange(self.lower.size), rows)
        size = self.lower.size
        _, dev = self._minimize(lambda x: self.parts(_put(x, free, size))[0], self.fit.theta[free], self.lower[free])
        return dev

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

    def zeta(
        self, idx: int, x: float, phi0: np.ndarray | None = None, polish: bool = True
    ) -> tuple[float, float, np.ndarray]:
        """zeta(x) with parameter idx held at x, its derivative, and the optimal phi. By the envelope theorem
        dD_min/dx is the partial derivative of F at the optimal phi (a central difference, no re-optimization)."""
        F, start = self.family(idx)
        phi0 = start(self.fit.theta) if phi0 is None else phi0
        if self.kind(idx) == "sd":
            phi0 = self._sd_start(idx, x, phi0)
        lower = self._phi_lower(idx)
        phi, dev = self._minimize(lambda ph: F(x, ph), phi0, lower, polish)
        h = 1e-5 * max(abs(x), 1e-3 * self.scale(idx))
        slope = (F(x + h, phi) - F(x - h, phi)) / (2 * h)
        z = math.copysign(math.sqrt(max(dev - self.base, 0.0)), x - self.estimates()[idx])
        dz = slope / (2 * z) if z != 0 else math.inf
        return z, dz, phi

    def _sd_start(self, idx: int, s: float, theta: np.ndarray) -> np.ndarray:
        """theta with the held sd's template row rescaled so that sigma stays at its estimate (a row at 0, as in a
        singular fit, becomes s / sigma on the diagonal): a start where the deviance is finite and near its minimum."""
        k, t, i, _ = self.positions[idx]
        rows = [self.offsets[k] + m for m, (a, _) in enumerate(t.template_positions()) if a == i]
        diag = self.offsets[k] + t.template_positions().index((i, i))
        theta = theta.copy()
        norm, want = math.sqrt(float(np.sum(theta[rows] ** 2))), s / float(self.fit.sigma)
        if norm > 1e-8 * max(want, 1e-300):
            theta[rows] *= want / norm
        else:
            theta[rows], theta[diag] = 0.0, want
        return theta

    def _phi_lower(self, idx: int) -> np.ndarray:
        if self.kind(idx) != "cor":
            return self.lower
        k, t, _, _ = self.positions[idx]
        nrows = sum(r + 1 for r in range(2, t.p))
        return np.concatenate([self.lower[self._others(k)], np.zeros(t.p), np.full(nrows, -np.inf)])

    def scale(self, idx: int) -> float:
        kind = self.kind(idx)
        if kind == "fixef":
            return float(self.fit.std_errors[idx - self.lower.size - 1])
        return 1.0 if kind == "cor" else float(self.fit.sigma)

    def interval(self, idx: int, z: float) -> tuple[float, float]:
        """The ends of the interval of parameter idx: zeta = -z and zeta = +z."""
        return float(self._end(idx, -z)), float(self._end(idx, z))

    def _end(self, idx: int, target: float) -> float:
        """Safeguarded Newton on zeta(x) = target, from a first step outward; bisection where Newton leaves the
        bracket; a bound the profile does not reach is the end."""
        kind, xhat = self.kind(idx), float(self.estimates()[idx])
        sign = 1.0 if target > 0 else -1.0
        bound = {"sd": 0.0 if sign < 0 else math.inf, "cor": sign * CORR_EDGE}.get(kind, sign * math.inf)
        if kind == "sigma" and sign < 0:
            bound = 0.0
        if kind == "fixef":
            x = xhat + target * self.scale(idx)  # the Wald end
        elif kind == "cor":
            x = xhat + sign * 0.5 * (CORR_EDGE - sign * xhat)
        else:
            x = xhat * (1.0 + 0.3 * sign) if xhat > 0 else 1e-3 * self.scale(idx)
        inner, outer = xhat, bound  # zeta - target has the sign of -target at inner, of target beyond outer
        phi = None
        polished = False  # BOBYQA's polishing pass (section 6 of docs/methods.md) only once near the end
        for _ in range(MAX_STEPS):
            zx, dz, phi = self.zeta(idx, x, phi, polished)
            g = zx - target
            if abs(g) < ZETA_TOL:
                if polished:
                    return x
                polished = True  # confirm the end with the polished optimum
                continue
            if g * sign < 0:
                inner = x
            else:
                outer = x
            xn = x - g / dz if math.isfinite(dz) and dz > 0 else math.nan
            if not (min(inner, outer) < xn < max(inner, outer)):
                if outer == bound and kind in ("sd", "cor") and math.isfinite(bound) and not self._reaches(idx, target):
                    return 0.0 if kind == "sd" else sign * 1.0
                xn = 0.5 * (inner + outer) if math.isfinite(outer) else inner + 2.0 * (inner - xhat)
            if abs(xn - x) <= ROOT_XTOL * max(abs(x), self.scale(idx)) and polished:
                return xn
            polished = polished or abs(g) < 1e3 * ZETA_TOL
            x = xn
        return x

    def _reaches(self, idx: int, target: float) -> bool:
        """Whether the profile passes the target before the parameter's bound (0 for an sd, +-1 for a cor)."""
        if self.kind(idx) == "sd":
            dev = self._sd_at_zero(idx)
            return -math.sqrt(max(dev - self.base, 0.0)) <= target
        z, _, _ = self.zeta(idx, math.copysign(CORR_EDGE, target))
        return (z - target) * target >= 0


def _cholesky_psd(S: np.ndarray) -> np.ndarray:
    """The lower Cholesky factor of a positive semi-definite S, with a zero column where a pivot vanishes (a
    zero standard deviation), so that a singular covariance still has its template."""
    p = S.shape[0]
    L = np.zeros((p, p))
    for j in range(p):
        s = S[j, j] - L[j, :j] @ L[j, :j]
        if s <= 1e-14 * max(S[j, j], 1e-300):
            continue
        L[j, j] = math.sqrt(s)
        L[j + 1 :, j] = (S[j + 1 :, j] - L[j + 1 :, :j] @ L[j, :j]) / L[j, j]
    return L


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
    from statistics import NormalDist  # scipy.stats would take a second to import

    norm = NormalDist()
    prof = Profile(X, y, terms, xnames=xnames, weights=weights, offset=offset, progress=progress, ml_fit=ml_fit)
    z = float(norm.inv_cdf(0.5 + level / 2.0))
    names = parameter_names(terms, prof.model.xnames)
    return [Interval(nm, *prof.interval(i, z)) for i, nm in enumerate(names)]
