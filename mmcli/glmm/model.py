"""The GLMM fit as lme4's glmer does it: two stages, then the Hessian for the standard errors.

Stage 1 (glmer's nAGQ = 0 step): theta by BOBYQA, with beta and u at their joint PIRLS mode. Stage 2: theta and
beta jointly by BOBYQA on the Laplace (or adaptive Gauss-Hermite) deviance, u at its PIRLS mode for each
(theta, beta). glmer runs Nelder-Mead in stage 2 and stops loosely; BOBYQA here runs to tight tolerances, so the
deviance is the same or lower. beta is optimized in the coordinates where stage 1's covariance of beta is the
identity, so that fixed effects on very different scales cost nothing. The covariance of beta is that of
summary(glmer): 2 H^-1 from the finite-difference Hessian H of the deviance over (theta, beta) (lme4's
``use.hessian``), falling back to the Cholesky factor of the weighted system when H is not positive definite.

With one scalar random-effects term and the Laplace approximation the deviance has an analytic gradient
(glmm.gradient), and stage 2 is Newton's method on it (glmm.newton) from the joint PIRLS mode at theta = 1, which
also gives beta's scale; stage 1's search over theta is then not needed. The Hessian for the standard errors is
formed by central differences of the gradient, which carry no rounding of the deviance (a sum of n terms).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

import numpy as np

from mmcli.errors import ModelError, NotConvergedError, UsageError
from mmcli.glmm.family import Family, unit_weights
from mmcli.glmm.gradient import laplace_gradient
from mmcli.glmm.newton import NewtonResult, hessian_from_gradient, newton
from mmcli.glmm.pirls import ROW_BLOCK, Mode, Pirls, Response, gh_rule
from mmcli.glmm.results import GlmmFit
from mmcli.lmm import OptimizerRecord, ReTerm, WeightedPls, aliased_columns, lower_bounds
from mmcli.memory import trim_heap

STAGE1_TOL = 1e-4  # stage 1 only finds the start of stage 2
STAGE2_TOL = 1e-7  # absolute on the deviance; x to 1e-2 sqrt(tol): theta and beta in standard-error units
HESS_STEP_THETA = 1e-3  # central-difference steps of the Hessian: on theta, ...
HESS_STEP_BETA = 1e-2  # ... and on beta in units of its stage-1 standard errors (large enough that the PIRLS
# tolerance, ~1e-10 on the deviance, stays far below the second differences, small enough for their truncation)
GRAD_STEP_THETA = 1e-5  # forward-difference steps of the gradient for the Hessian at the optimum (Newton's path):
GRAD_STEP_BETA = 1e-4  # the gradient carries no rounding of the deviance, so steps 100x smaller than the central
# differences of the deviance above are exact enough (the standard errors move by < 1e-5) and cost k evaluations


class GlmmModel:
    """A GLMM prepared once: aliased columns dropped, the PIRLS solver, the quadrature rule."""

    def __init__(
        self,
        X: np.ndarray,
        y: np.ndarray,
        terms: Sequence[ReTerm],
        fam: Family,
        *,
        prior: np.ndarray | None = None,
        offset: np.ndarray | None = None,
        xnames: Sequence[str] | None = None,
        nagq: int = 1,
    ):
        X = np.asarray(X, dtype=float)
        n = X.shape[0]
        names = list(xnames) if xnames is not None else [f"x{i}" for i in range(X.shape[1])]
        keep, drop = aliased_columns(X)
        self.dropped_columns = tuple(names[i] for i in drop)
        self.xnames = tuple(names[i] for i in keep)
        X = X[:, keep] if drop.size else X
        self.terms = list(terms)
        if not self.terms:
            raise ModelError("The model has no random-effects term; use a generalized linear model instead.")
        for t in self.terms:
            if t.indicator and t.nlevels < 2:
                raise ModelError(
                    f"Grouping factor '{t.group}' has {t.nlevels} level; a random effect needs at least 2."
                )
        if not 1 <= nagq <= 25:
            raise UsageError(
                f"--nagq must be between 1 (Laplace) and 25 (lme4's largest); got {nagq}. glmer's nAGQ = 0 (its first "
                "stage alone) is not offered.",
                param="nagq",
            )
        if nagq > 1 and not (len(self.terms) == 1 and self.terms[0].p == 1 and self.terms[0].indicator):
            raise ModelError(
                "Adaptive Gauss-Hermite quadrature (--nagq > 1) is only available for a single scalar random-effects "
                "term, e.g. (1 | group), as in lme4; use --nagq 1 (Laplace).",
                param="nagq",
            )
        self.n, self.p, self.fam, self.nagq = n, X.shape[1], fam, nagq
        self.prior = unit_weights(n) if prior is None else np.asarray(prior, dtype=float)
        self.resp = Response(fam, _compact(y, fam, self.prior), self.prior, offset)
        self.pls = WeightedPls(X, self.terms)
        self.pirls = Pirls(self.pls, self.resp)
        self.rule = gh_rule(nagq) if nagq > 1 else None
        self._last: tuple[np.ndarray, np.ndarray] | None = None  # (beta, u) of the last mode: the next start
        self._newton: NewtonResult | None = None  # how stage 2's Newton's method ran, when it ran

    # ------------------------------------------------------------------------------------------------------
    # the deviance

    def _start(self) -> tuple[np.ndarray, np.ndarray]:
        if self._last is not None:
            return self._last
        r, X = self.resp, self.pls.X
        XtX, Xtz = np.zeros((self.p, self.p)), np.zeros(self.p)
        for lo in range(0, self.n, ROW_BLOCK):  # least squares on the link of the data, a block of rows at a time
            sl = slice(lo, lo + ROW_BLOCK)
            y, a = r.y[sl], r.prior[sl]
            z = self.fam.linkfun((a * y + 0.5) / (a + 1) if self.fam.name == "binomial" else y + 0.1)
            if r.has_offset:
                z -= r.offset[sl]  # type: ignore[index]
            XtX += X[sl].T @ X[sl]
            Xtz += X[sl].T @ z
        beta = np.linalg.lstsq(XtX, Xtz, rcond=None)[0] if self.p else np.zeros(0)
        return beta, np.zeros(self.pls.q)

    def mode(self, theta: np.ndarray, beta: np.ndarray | None) -> Mode:
        start = self._start()
        m = self.pirls.mode(theta, beta, start)
        self._last = (m.beta, m.u)  # not the mode itself: its full-length eta and mu would live on meanwhile
        return m

    def deviance(self, theta: np.ndarray, beta: np.ndarray) -> float:
        """The stage-2 deviance at (theta, beta): Laplace, or adaptive Gauss-Hermite with nagq > 1."""
        m = self.mode(theta, beta)
        if self.rule is not None:
            return self.pirls.agq(m, theta, *self.rule)
        return self.pirls.laplace(m)

    def stage1(self, theta: np.ndarray) -> float:
        return self.pirls.laplace(self.mode(theta, None))

    # ------------------------------------------------------------------------------------------------------
    # the fit

    def fit(self, progress: Callable[[int, float], None] | None = None) -> GlmmFit:
        """The two stages and the covariance, on one BLAS thread unless the dense part is large (or --threads)."""
        from mmcli.threads import blas_threads

        with blas_threads(self.p + self.pls.q - self.pls.blocks[0].q):  # the order of the dense part
            return self._fit(progress)

    def _fit(self, progress: Callable[[int, float], None] | None) -> GlmmFit:
        t0 = time.perf_counter()
        lower = lower_bounds(self.terms)
        k = lower.size
        theta0 = np.array([1.0 if lo == 0 else 0.0 for lo in lower])
        if self.analytic_gradient:  # Newton's stage 2 needs no more of stage 1 than beta's start and scale
            theta1, n1, ok1 = theta0, 1, True
        else:
            theta1, _, n1, ok1 = _bobyqa(self.stage1, theta0, lower, STAGE1_TOL, np.full(k, 0.75), progress, 0)
        m1 = self.mode(theta1, None)
        beta1 = m1.beta
        # the scaled coordinates of beta: s with beta = beta1 + A s, A A' = stage 1's covariance of beta
        A = self._beta_scale(theta1, m1)
        del m1  # its full-length eta and mu would live on beside each mode of stage 2

        def dev2(x: np.ndarray) -> float:
            return self.deviance(x[:k], beta1 + A @ x[k:])

        lower2 = np.concatenate([lower, np.full(self.p, -np.inf)])
        x0 = np.concatenate([theta1, np.zeros(self.p)])
        H, self._newton = None, None
        if self.analytic_gradient:  # Newton's method on the gradient; BOBYQA if it fails
            x, f, n2, ok2, H = self._stage2_newton(x0, beta1, A, progress, n1)
        if H is None:  # from where Newton's method stopped, if it ran
            x0 = x if self.analytic_gradient else x0
            step = np.concatenate([np.maximum(0.1 * np.abs(x0[:k]), 0.05), np.full(self.p, 0.5)])
            x, f, n2b, ok2 = _bobyqa(dev2, x0, lower2, STAGE2_TOL, step, progress, n1)
            n2 = n2 + n2b if self.analytic_gradient else n2b
        x, f = _snap(dev2, x, f, lower2, k)
        theta, beta = x[:k], beta1 + A @ x[k:]
        vcov, hessian_ok = self._vcov(theta, x, beta1, A, H if H is not None and x[0] > 0 else None)
        m = self.mode(theta, beta)
        if vcov is None:
            vcov = self._rx_vcov(theta, m)
        self._check_separation(m)
        if self.pirls.scalar is not None:  # b = theta u, Var(b | y) = theta^2 / M_j at the mode's weights
            assert m.step.L0 is not None
            th = float(theta[0])
            ranef, cond = [(th * m.u)[:, None]], [(th * th / (m.step.L0 * m.step.L0))[:, None, None]]
        else:
            ranef, cond = self.pls.ranef(theta, self._u_step(theta, m))
        trim_heap()  # the passes' freed blocks go back before the fitted eta is made: the peak of a large fit
        nt = self._newton
        rec = OptimizerRecord(
            "NLopt LN_BOBYQA (stage 1: theta; stage 2: theta and beta)"
            if nt is None
            else "Newton's method on the analytic gradient, BFGS updates (stage 2: theta and beta)",
            self.pirls.evaluations,
            "converged" if ok1 and ok2 else "stopped before converging",
            tuple(map(float, theta0)),
            tuple(map(float, theta)),
            time.perf_counter() - t0,
            stationary=None if nt is None else nt.converged,
            gradient_evaluations=0 if nt is None else nt.gradients,
            iterations=0 if nt is None else nt.iterations,
        )
        return GlmmFit(
            family=self.fam,
            nagq=self.nagq,
            n=self.n,
            terms=tuple(self.terms),
            xnames=self.xnames,
            theta=theta,
            beta=beta,
            vcov=vcov,
            objective=f,
            ranef=ranef,
            cond_cov=cond,
            eta=m.eta_,
            y=self.resp.y,
            prior=self.prior,
            converged=bool(ok1 and ok2),
            optimizer=rec,
            dropped_columns=self.dropped_columns,
            hessian_vcov=hessian_ok,
            stage_evaluations=(n1, n2),
        )

    @property
    def analytic_gradient(self) -> bool:
        """Whether the Laplace deviance has its analytic gradient here (one scalar term, nagq = 1)."""
        return self.pls.scalar and self.rule is None

    def deviance_gradient(self, theta: np.ndarray, beta: np.ndarray) -> tuple[float, np.ndarray]:
        """The Laplace deviance at (theta, beta) and its gradient over (theta, beta) (one scalar term)."""
        m = self.mode(theta, beta)
        return self.pirls.laplace(m), laplace_gradient(self.pirls, theta, m)

    def _stage2_newton(
        self,
        x0: np.ndarray,
        beta1: np.ndarray,
        A: np.ndarray,
        progress: Callable[[int, float], None] | None,
        before: int,
    ) -> tuple[np.ndarray, float, int, bool, np.ndarray | None]:
        """Stage 2 by Newton's method in x = (theta, s), beta = beta1 + A s; the central-difference Hessian of the
        gradient at the optimum comes back with it (None when Newton's method did not converge)."""
        k, start, best = x0.size - self.p, self.pirls.evaluations, [np.inf]

        def fg(x: np.ndarray) -> tuple[float, np.ndarray]:
            f, g = self.deviance_gradient(x[:k], beta1 + A @ x[k:])
            best[0] = min(best[0], f)
            if progress is not None:
                progress(before + self.pirls.evaluations - start, best[0])
            return f, np.concatenate([g[:k], A.T @ g[k:]])

        h = np.concatenate([np.full(k, HESS_STEP_THETA), np.full(self.p, HESS_STEP_BETA)])
        H0 = 2.0 * np.eye(x0.size)  # in s, the deviance's Hessian is 2 (A'X'V^-1 X A) = 2 I at the start
        res = newton(fg, x0, k, h, H0)
        if not res.converged:
            return res.x, res.f, self.pirls.evaluations - start, False, None
        hf = np.concatenate([np.full(k, GRAD_STEP_THETA), np.full(self.p, GRAD_STEP_BETA)])
        H = hessian_from_gradient(fg, res.x, res.g, hf)
        self._newton = dataclasses.replace(res, gradients=res.gradients + x0.size)
        return res.x, res.f, self.pirls.evaluations - start, True, H

    def _u_step(self, theta: np.ndarray, m: Mode):  # type: ignore[no-untyped-def]
        """The factor of the u-only system at the mode's weights (for the conditional variances)."""
        fam, r = self.fam, self.resp
        m = m.whole()
        d = fam.mu_eta(m.eta_)
        w = r.prior * d * d / fam.variance(m.mu_)
        return dataclasses.replace(self.pls.solve(theta, w, np.zeros(self.n), with_x=False, factor=True), u=m.u)

    def _beta_scale(self, theta: np.ndarray, m: Mode) -> np.ndarray:
        """A with A A' = (L_XX L_XX')^-1, the covariance of beta from the joint system at stage 1's mode."""
        if not self.p:
            return np.zeros((0, 0))
        return np.linalg.inv(m.step.LXX).T

    def _rx_vcov(self, theta: np.ndarray, m: Mode) -> np.ndarray:
        fam, r = self.fam, self.resp
        m = m.whole()
        d = fam.mu_eta(m.eta_)
        w = r.prior * d * d / fam.variance(m.mu_)
        step = self.pls.solve(theta, w, np.zeros(self.n), with_x=True)
        A = self._beta_scale(theta, Mode(m.beta, m.u, m.eta, m.mu, m.pdev, step, 0, step.logdet))
        return A @ A.T

    def _vcov(
        self, theta: np.ndarray, x: np.ndarray, beta1: np.ndarray, A: np.ndarray, H: np.ndarray | None = None
    ) -> tuple[np.ndarray | None, bool]:
        """2 H^-1 for beta from the central-difference Hessian over (theta, s) (of the deviance, or the one of
        the gradient given as ``H``); None when H is not usable."""
        k = theta.size
        if not self.p:
            return np.zeros((0, 0)), True

        def f(v: np.ndarray) -> float:
            return self.deviance(v[:k], beta1 + A @ v[k:])

        if H is None:
            H = hessian(f, x, np.concatenate([np.full(k, HESS_STEP_THETA), np.full(self.p, HESS_STEP_BETA)]))
        try:
            Hinv = np.linalg.inv(H)
        except np.linalg.LinAlgError:
            return None, False
        V = 2 * A @ Hinv[k:, k:] @ A.T
        V = 0.5 * (V + V.T)
        if not np.all(np.isfinite(V)) or np.min(np.linalg.eigvalsh(V)) <= 0:
            return None, False
        return V, True

    def _check_separation(self, m: Mode) -> None:
        if self.fam.name != "binomial":
            return
        edge = 1e3 * np.finfo(float).eps
        blocks = (m.block(slice(lo, lo + ROW_BLOCK))[1] for lo in range(0, self.n, ROW_BLOCK))
        if any(np.any((mu <= edge) | (mu >= 1 - edge)) for mu in blocks):
            raise NotConvergedError(
                "Fitted probabilities of 0 or 1 occurred: a predictor (or a combination of them) separates the "
                "outcomes completely, so some fixed effects have no finite maximum-likelihood estimate. Remove or "
                "merge the separating predictor's levels."
            )


def _compact(y: np.ndarray, fam: Family, prior: np.ndarray) -> np.ndarray:
    """y as floats; a binomial response of 0s and 1s (one trial per row) as int32, the same numbers in half the
    memory: every operation on it (with floats, or a ufunc of it alone) gives float64."""
    y = np.asarray(y)
    if fam.name == "binomial" and np.all(prior == 1.0) and np.all((y == 0) | (y == 1)):
        return y if y.dtype == np.int32 else y.astype(np.int32)
    return np.asarray(y, dtype=float)


def hessian(f: Callable[[np.ndarray], float], x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """The central-difference Hessian of f at x with step h[i] in coordinate i."""
    k = x.size
    H = np.zeros((k, k))
    f0 = f(x)
    for i in range(k):
        e = np.zeros(k)
        e[i] = h[i]
        H[i, i] = (f(x + e) - 2 * f0 + f(x - e)) / h[i] ** 2
    for i in range(k):
        for j in range(i):
            ei, ej = np.zeros(k), np.zeros(k)
            ei[i], ej[j] = h[i], h[j]
            v = (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)) / (4 * h[i] * h[j])
            H[i, j] = H[j, i] = v
    return H


def _bobyqa(
    fn: Callable[[np.ndarray], float],
    x0: np.ndarray,
    lower: np.ndarray,
    tol: float,
    step: np.ndarray,
    progress: Callable[[int, float], None] | None,
    before: int,
) -> tuple[np.ndarray, float, int, bool]:
    import nlopt

    count, best, best_x = [0], [np.inf], [x0.copy()]

    def f(x: np.ndarray, grad: np.ndarray) -> float:
        count[0] += 1
        v = fn(np.asarray(x))
        v = v if np.isfinite(v) else 1e300
        if v < best[0]:
            best[0], best_x[0] = v, np.array(x, dtype=float)
        if progress is not None:
            progress(before + count[0], best[0])
        return v

    k = x0.size
    opt = nlopt.opt(nlopt.LN_BOBYQA if k > 1 else nlopt.LN_COBYLA, k)  # NLopt's BOBYQA needs two or more
    opt.set_min_objective(f)
    opt.set_lower_bounds(np.where(np.isfinite(lower), lower, -1e300))
    opt.set_ftol_abs(tol)
    opt.set_xtol_abs(np.full(k, tol**0.5 * 1e-2))
    opt.set_maxeval(20000)
    opt.set_initial_step(np.minimum(step, np.where(np.isfinite(lower) & (x0 - lower > 0), x0 - lower, np.inf)))
    try:
        x = opt.optimize(x0.copy())
        fx, res = opt.last_optimum_value(), opt.last_optimize_result()
        ok = res > 0 and res != nlopt.MAXEVAL_REACHED
    except (nlopt.RoundoffLimited, RuntimeError, ValueError):
        x, fx, ok = best_x[0], best[0], False  # the best point seen
    return np.asarray(x), float(fx), count[0], ok


def _snap(
    fn: Callable[[np.ndarray], float], x: np.ndarray, fx: float, lower: np.ndarray, k: int
) -> tuple[np.ndarray, float]:
    """A variance near zero put on its bound when that is no worse (lme4's check.boundary)."""
    for i in np.flatnonzero((lower[:k] == 0) & (x[:k] > 0) & (x[:k] < 1e-5)):
        trial = x.copy()
        trial[i] = 0.0
        ft = fn(trial)
        if ft <= fx:
            x, fx = trial, ft
    return x, fx
