"""Satterthwaite's denominator degrees of freedom for t and F tests of the fixed effects, as lmerTest computes
them (Kuznetsova, Brockhoff & Christensen 2017, J. Stat. Softw. 82(13), section 3 and appendix).

The variance parameters are varpar = (theta, sigma). The deviance as a function of varpar, not profiled over
sigma, is (Bates et al. 2015, eqs. 32-34 before profiling)

    ML:    log|L_Z|^2               + r^2(theta) / sigma^2 + n       log(2 pi sigma^2)
    REML:  log|L_Z|^2 + log|L_X|^2  + r^2(theta) / sigma^2 + (n - p) log(2 pi sigma^2)

and is read off the profiled criterion d(theta) and sigma_hat(theta)^2 = r^2 / k (k = n or n - p):
dev(theta, sigma) = d(theta) - k (1 + log(2 pi sigma_hat^2)) + k log(2 pi sigma^2) + k sigma_hat^2 / sigma^2.
A = 2 H^-1, H its Hessian at the optimum (the inverse on the positive eigenvalues, as lmerTest). With
C(varpar) = sigma^2 (X'V0^-1 X)^-1 and J_i = dC / dvarpar_i, a contrast l has

    df = 2 (l C l')^2 / (g' A g),   g_i = l J_i l'.

An F test of a q-row L (lmerTest's contestMD) rotates L by the eigenvectors of L C L', computes one such df
nu_m per direction and combines them: E = sum nu_m / (nu_m - 2), df = 2 E / (E - q) (2 if any nu_m <= 2).

The derivatives are central finite differences in theta with Richardson extrapolation (four halvings, as
numDeriv's, which lmerTest uses) of the criterion, sigma_hat and (X'V0^-1 X)^-1 at theta, read off the updated
factor as the optimizer reads the criterion (the dense formulation: the public fit at theta); the derivative in
sigma is analytic (dC/dsigma = 2 C / sigma).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mmcli.lmm.criterion import Dof, criterion, sigma_hat
from mmcli.lmm.factor import update_L
from mmcli.lmm.model import LmmModel
from mmcli.lmm.results import LmmFit

STEP = 1e-2  # the first finite-difference step, relative to |x| ...
STEP_ZERO = 1e-4  # ... or absolute, for an entry of x near zero
ZERO_TOL = math.sqrt(np.finfo(float).eps / 7e-7)  # numDeriv's zero.tol
LEVELS = 4  # Richardson: steps h, h/2, h/4, h/8
EIGEN_TOL = 1e-8  # eigenvalues of the Hessian taken as zero (lmerTest's tol)


def richardson(estimates: list[np.ndarray], v: float = 2.0) -> np.ndarray:
    """Richardson's extrapolation of central-difference estimates at steps h, h/v, h/v^2, ..., whose errors are
    series in h^2: each pass cancels the next power (numDeriv's method)."""
    a = [np.asarray(e, dtype=float) for e in estimates]
    m = 1
    while len(a) > 1:
        f = v ** (2 * m)
        a = [(f * a[i + 1] - a[i]) / (f - 1.0) for i in range(len(a) - 1)]
        m += 1
    return a[0]


def _steps(x: np.ndarray) -> np.ndarray:
    return STEP * np.abs(x) + STEP_ZERO * (np.abs(x) < ZERO_TOL)


@dataclass(frozen=True, eq=False)
class Satterthwaite:
    """What Satterthwaite's df need at the fit: varpar = (theta, sigma), the Hessian of the deviance in varpar,
    A = 2 H^-1, and the covariance of beta-hat with its Jacobian in varpar (one p x p matrix per entry of varpar).

    The covariance and the Jacobian are held in internal coordinates, C = T C~ T' (the model's working
    coordinates, scaled to unit variances at the fit), so that a coefficient whose column is scaled by 1e-200 is
    as well computed as any other; a contrast l of beta is l T of those, and the df do not depend on T.
    ``jacobian_user()`` gives the Jacobian of C itself."""

    varpar: np.ndarray
    hessian: np.ndarray
    vcov_varpar: np.ndarray
    jacobian: list[np.ndarray]  # of C~
    vcov: np.ndarray  # C~
    beta: np.ndarray  # the user's
    transform: np.ndarray  # T

    def jacobian_user(self) -> list[np.ndarray]:
        return [self.transform @ J @ self.transform.T for J in self.jacobian]

    def _df(self, lt: np.ndarray) -> tuple[float, float]:
        """(l^ C~ l^', df) of a contrast l~ on the scaled coefficients, l^ = l~ / max|l~| (df is invariant)."""
        norm = float(np.max(np.abs(lt)))
        lh = lt / norm
        var = float(lh @ self.vcov @ lh)
        h = np.array([lh @ J @ lh for J in self.jacobian]) / var
        with np.errstate(divide="ignore", invalid="ignore"):  # a df that cannot be computed is nan or inf
            df = float(np.float64(2.0) / np.float64(h @ self.vcov_varpar @ h))
        return var, df

    def t_test(self, l: np.ndarray) -> tuple[float, float, float, float]:
        """(estimate, se, df, t) of the contrast l beta = 0 (lmerTest's contest1D)."""
        l = np.asarray(l, dtype=float).ravel()
        lt = l @ self.transform
        norm = float(np.max(np.abs(lt)))
        var, df = self._df(lt)
        se = math.sqrt(var) * norm
        est = float(l @ self.beta)
        return est, se, df, est / se if se > 0 else math.nan

    def f_test(self, L: np.ndarray, eps: float = math.sqrt(np.finfo(float).eps)) -> tuple[float, int, float]:
        """(F, numerator df, denominator df) of L beta = 0 (lmerTest's contestMD)."""
        L = np.atleast_2d(np.asarray(L, dtype=float))
        if L.shape[0] == 1:
            _, _, df, t = self.t_test(L[0])
            return t * t, 1, df
        Lt = L @ self.transform
        d, P = np.linalg.eigh(Lt @ self.vcov @ Lt.T)
        d, P = d[::-1], P[:, ::-1]  # decreasing, as R's eigen
        q = int(np.sum(d > max(eps * d[0], 0.0)))
        PtL = (P.T @ Lt)[:q]
        est = (P.T @ L)[:q] @ self.beta
        if q == 1:
            var, df = self._df(PtL[0])
            norm = float(np.max(np.abs(PtL[0])))
            return float(est[0] ** 2 / (var * norm * norm)), 1, df
        F = float(np.sum(est**2 / d[:q]) / q)
        nu = np.empty(q)
        for m in range(q):
            h = np.array([PtL[m] @ J @ PtL[m] for J in self.jacobian]) / d[m]
            with np.errstate(divide="ignore", invalid="ignore"):
                nu[m] = np.float64(2.0) / np.float64(h @ self.vcov_varpar @ h)
        return F, q, f_denominator_df(nu)


def f_denominator_df(nu: np.ndarray, tol: float = 1e-8) -> float:
    """lmerTest's get_Fstat_ddf: the df of the F statistic from the df of its q independent t^2 parts."""
    if nu.size == 1:
        return float(nu[0])
    if np.all(np.abs(np.diff(nu)) < tol):
        return float(np.mean(nu))
    if np.any(nu <= 2):
        return 2.0
    E = float(np.sum(nu / (nu - 2.0)))
    return 2.0 * E / (E - nu.size)


def varpar_deviance(at: LmmFit, sigma: float) -> float:
    """The deviance (ML) or REML criterion at (theta, sigma), not profiled over sigma, from the fit at theta."""
    k = at.n - len(at.beta) if at.reml else at.n
    return _unprofiled(at.objective, at.sigma, k, sigma)


def _unprofiled(objective: float, sigma_hat: float, k: int, sigma: float) -> float:
    s2hat, s2 = sigma_hat**2, sigma**2
    return objective - k * (1.0 + math.log(2 * math.pi * s2hat)) + k * math.log(2 * math.pi * s2) + k * s2hat / s2


Evaluation = tuple[float, float, np.ndarray]  # criterion, sigma_hat and the scaled covariance over sigma^2


def _evaluator(model: LmmModel, fit: LmmFit) -> tuple[Callable[[np.ndarray], Evaluation], np.ndarray]:
    """theta -> (criterion, sigma_hat, (X'V0^-1 X)^-1 in internal coordinates), and T such that a contrast l of
    the user's beta is l T in those coordinates. On the fast path only the factor is updated (as the optimizer
    does) and the working coordinates are used; otherwise the fit at theta, on the scale of the standard errors."""
    reml = fit.reml
    g = model._gram
    if g is None:  # the dense formulation
        se0 = np.asarray(fit.std_errors, dtype=float)

        def full(theta: np.ndarray) -> Evaluation:
            f = model.fit_at(theta, reml)
            r = np.asarray(f.std_errors, dtype=float) / (f.sigma * se0)
            return f.objective, f.sigma, np.asarray(f.corr_fixed, dtype=float) * np.outer(r, r)

        return full, np.diag(se0)
    dof = Dof(model.n, model.p, reml)
    work, qR, p = model.work, g.qR, g.p

    def raw(theta: np.ndarray) -> Evaluation:
        f = update_L(g, work.theta_to_working(theta))
        crit = criterion(f.logdetZ, f.logdetX, f.pwrss, dof) + work.criterion_shift(dof)
        LXXinv = np.linalg.inv(f.Lrest[qR : qR + p, qR : qR + p])
        return crit, sigma_hat(f.pwrss, dof) * work.s, LXXinv.T @ LXXinv

    d = np.sqrt(np.diag(raw(np.asarray(fit.theta, dtype=float))[2]))
    T = (np.eye(p) if work.M is None else work.M) * d[None, :]

    def light(theta: np.ndarray) -> Evaluation:
        crit, sig, Mw = raw(theta)
        return crit, sig, Mw / np.outer(d, d)

    return light, T


def satterthwaite(model: LmmModel, fit: LmmFit) -> Satterthwaite:
    """Everything Satterthwaite's df need, at the fit's theta and sigma (see the module's docstring)."""
    ev, T = _evaluator(model, fit)
    cache: dict[bytes, Evaluation] = {}

    def at(theta: np.ndarray) -> Evaluation:
        key = np.asarray(theta, dtype=float).tobytes()
        if key not in cache:
            cache[key] = ev(theta)
        return cache[key]

    k = fit.n - len(fit.beta) if fit.reml else fit.n
    theta0 = np.asarray(fit.theta, dtype=float)
    x0 = np.append(theta0, fit.sigma)

    def dev(x: np.ndarray) -> float:
        crit, sig, _ = at(x[:-1])
        return _unprofiled(crit, sig, k, float(x[-1]))

    H = hessian(dev, x0)
    A = _pseudo_inverse(H) * 2.0
    M0 = at(theta0)[2]
    jac = [J * fit.sigma**2 for J in jacobian(lambda th: at(th)[2], theta0)]
    jac.append(2.0 * fit.sigma * M0)
    return Satterthwaite(
        varpar=x0,
        hessian=H,
        vcov_varpar=A,
        jacobian=jac,
        vcov=fit.sigma**2 * M0,
        beta=np.asarray(fit.beta, dtype=float),
        transform=T,
    )


def jacobian(f: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> list[np.ndarray]:
    """df/dx_i for each i, by central differences with Richardson's extrapolation."""
    h0 = _steps(x)
    out = []
    for i in range(x.size):
        est = []
        for k in range(LEVELS):
            e = np.zeros_like(x)
            e[i] = h0[i] / 2**k
            est.append((f(x + e) - f(x - e)) / (2 * e[i]))
        out.append(richardson(est))
    return out


def hessian(f: Callable[[np.ndarray], float], x: np.ndarray) -> np.ndarray:
    """The Hessian of f at x, by central second differences with Richardson's extrapolation."""
    h0 = _steps(x)
    n = x.size
    f0 = f(x)
    H = np.empty((n, n))
    for i in range(n):
        est = []
        for k in range(LEVELS):
            e = np.zeros(n)
            e[i] = h0[i] / 2**k
            est.append(np.array((f(x + e) - 2 * f0 + f(x - e)) / e[i] ** 2))
        H[i, i] = float(richardson(est))
        for j in range(i):
            est = []
            for k in range(LEVELS):
                ei, ej = np.zeros(n), np.zeros(n)
                ei[i], ej[j] = h0[i] / 2**k, h0[j] / 2**k
                s = f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)
                est.append(np.array(s / (4 * ei[i] * ej[j])))
            H[i, j] = H[j, i] = float(richardson(est))
    return H


def _pseudo_inverse(H: np.ndarray) -> np.ndarray:
    """The inverse of a symmetric matrix on its eigenvalues above EIGEN_TOL (lmerTest's treatment)."""
    w, U = np.linalg.eigh(H)
    pos = w > EIGEN_TOL
    return (U[:, pos] / w[pos]) @ U[:, pos].T
