"""The public core: a model prepared once, its criterion at any theta, the fit at a given theta, the fit.

The objective is a chain of small steps: theta -> working theta -> update L -> read the criterion off it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from mmcli.errors import DataError, ModelError
from mmcli.lmm import rank as rank_module
from mmcli.lmm.anova_start import anova_start
from mmcli.lmm.compiled import lapack
from mmcli.lmm.criterion import Dof, criterion
from mmcli.lmm.dense import DENSE_MAX_ROWS, DenseProblem
from mmcli.lmm.factor import update_L, workspace
from mmcli.lmm.gradient import criterion_and_gradient
from mmcli.lmm.gram import Gram
from mmcli.lmm.optimizer import LBFGSB_SCALE, OptimizerRecord, bobyqa, chosen_optimizer, lbfgsb, no_optimizer
from mmcli.lmm.rank import aliased_columns_r
from mmcli.lmm.results import SINGULAR_TOL, LmmFit, results_at
from mmcli.lmm.start import FIRST_STEP, backfit_start
from mmcli.lmm.stationarity import verify
from mmcli.lmm.terms import ReTerm, lower_bounds, start_theta
from mmcli.lmm.transform import Working, WorkingFit, prepare, weighted_term
from mmcli.threads import blas_threads

POLISH_MAX_QR = 300  # the polishing pass runs when the dense part of the factor is at most this large ...
POLISH_MAX_DENSE_ROWS = 1000  # ... or, for the dense formulation, the data this small


class LmmModel:
    """y = X beta + Z b + e, b ~ N(0, sigma^2 Lambda Lambda'), e ~ N(0, sigma^2 W^-1), with prior weights W
    and a known offset in the linear predictor (Bates et al. 2015, sections 2-3).

    Aliased columns of X are dropped (as lme4), the data are put in the working parametrization of
    :mod:`mmcli.lmm.transform`, and the Gram matrix of [Z X y] is formed once (``method="fast"``) or the
    tutorial's dense V is used (``method="dense"``, small data). ``overwrite_y`` lets the model keep its
    working response in y's own memory (large data)."""

    def __init__(
        self,
        X: np.ndarray,
        y: np.ndarray,
        terms: Sequence[ReTerm],
        *,
        xnames: Sequence[str] | None = None,
        weights: np.ndarray | None = None,
        offset: np.ndarray | None = None,
        method: str = "fast",
        overwrite_y: bool = False,
    ):
        X, y = np.asarray(X, dtype=float), np.asarray(y, dtype=float)
        self.n = n = y.shape[0]
        if X.ndim != 2 or X.shape[0] != n:
            raise DataError("X and y have different numbers of rows.")
        self.weights = _check_vector(weights, n, "prior weights", positive=True)
        offset = _check_vector(offset, n, "offset", positive=False)
        names = list(xnames) if xnames is not None else [f"x{i}" for i in range(X.shape[1])]
        with blas_threads(X.shape[1] + 1):  # the setup's products are (p + 1)-square: no threads to spin
            # X'X once for the rank check, the centring and the Gram matrix of large data (one pass over X each)
            XtX = rank_module.cross_product(X) if n >= rank_module.GRAM_R_MIN_ROWS and method == "fast" else None
            keep, drop, RX = aliased_columns_r(X, XtX=XtX)
        self.dropped_columns = tuple(names[i] for i in drop)
        self.xnames = tuple(names[i] for i in keep)
        self.p = p = keep.size
        check_terms(terms, n)
        npar = p + sum(t.ntheta for t in terms) + 1
        if n <= npar:
            raise ModelError(
                f"{n} observations are too few for the model's {npar} parameters ({p} fixed effects, "
                f"{npar - p - 1} random-effects parameters and the residual variance): nothing would be left to "
                "estimate the residual variance from. Simplify the model or give more rows."
            )
        if not terms:
            raise ModelError("The model has no random-effects term; use a linear model instead, or add (1 | group).")
        if drop.size:
            X, RX = X[:, keep], RX[:, keep]
            XtX = None if XtX is None else XtX[np.ix_(keep, keep)]
        if method not in ("fast", "dense"):
            raise ModelError(f"Unknown method '{method}': use fast or dense.")
        if method == "dense" and n > DENSE_MAX_ROWS:
            raise ModelError(
                f"The dense formulation holds an n x n matrix and is limited to {DENSE_MAX_ROWS} rows; these "
                f"data have {n}. Use the blocked Cholesky (method fast).",
                param="method",
            )
        self.terms = list(terms)
        with blas_threads(X.shape[1] + 1):
            self.work: Working = prepare(
                X,
                y,
                terms,
                RX,
                weights=self.weights,
                offset=offset,
                dense=method == "dense",
                overwrite_y=overwrite_y,
                XtX=XtX,
            )
            w = self.work
            self._gram = Gram(w.X, w.y, w.terms, w.XtX) if method == "fast" else None
        self._dense = DenseProblem(w.X, w.y, w.terms) if method == "dense" else None

    @property
    def lower(self) -> np.ndarray:
        return lower_bounds(self.terms)

    # ----------------------------------------------------------------------------------------------
    # the chain: theta -> update L -> criterion

    def _working_objective(self, theta_w: np.ndarray, dof: Dof, work: np.ndarray | None = None) -> float:
        if self._dense is not None:
            return self._dense.objective(theta_w, dof)
        assert self._gram is not None
        f = update_L(self._gram, theta_w, work)
        return criterion(f.logdetZ, f.logdetX, f.pwrss, dof)

    def objective(self, theta: np.ndarray, reml: bool) -> float:
        """-2 log L(theta) (ML) or the REML criterion at theta, profiled over beta and sigma."""
        dof = Dof(self.n, self.p, reml)
        th = self.work.theta_to_working(theta)
        return self._working_objective(th, dof) + self.work.criterion_shift(dof)

    def gradient(self, theta: np.ndarray, reml: bool) -> np.ndarray:
        """The analytic gradient of :meth:`objective` with respect to theta (:mod:`mmcli.lmm.gradient`), by
        the chain rule through the working parametrization (theta_w = c theta). The blocked Cholesky only."""
        if self._gram is None:
            raise ModelError("The analytic gradient needs the blocked Cholesky (method fast).", param="method")
        th = self.work.theta_to_working(theta)
        return criterion_and_gradient(self._gram, th, Dof(self.n, self.p, reml))[1] * self.work.theta_to_working(
            np.ones_like(th)
        )

    def fit_at(self, theta: np.ndarray, reml: bool) -> LmmFit:
        """Everything at a given theta, without the optimizer."""
        theta = np.asarray(theta, dtype=float)
        return self._fit_at_working(self.work.theta_to_working(theta), reml, no_optimizer(theta), True)

    def fit(
        self, reml: bool, progress: Callable[[int, float], None] | None = None, optimizer: str | None = None
    ) -> LmmFit:
        """theta by L-BFGS-B on the profiled criterion and its analytic gradient (or BOBYQA: ``optimizer``,
        default :func:`mmcli.lmm.optimizer.chosen_optimizer`; the dense formulation has no gradient and always
        uses BOBYQA), the KKT check at the end, then everything at the optimum (Bates et al. 2015, sections
        3.4-3.6). Near-zero variances are put on their bound when that is no worse, so that a singular fit
        reports exactly zero (lme4's BOBYQA lands there exactly)."""
        dof = Dof(self.n, self.p, reml)
        lower = self.lower
        name = optimizer or chosen_optimizer()
        if self._dense is not None:
            name = "bobyqa"

        work = workspace(self._gram) if self._gram is not None else None  # one buffer for S at every theta

        def crit(th: np.ndarray) -> float:
            return self._working_objective(th, dof, work)

        def crit_grad(th: np.ndarray) -> tuple[float, np.ndarray]:
            assert self._gram is not None
            return criterion_and_gradient(self._gram, th, dof, work)

        cheap = self.n <= POLISH_MAX_DENSE_ROWS if self._dense is not None else self._gram.qR <= POLISH_MAX_QR  # type: ignore[union-attr]

        def run(start: np.ndarray, scale: float = LBFGSB_SCALE) -> tuple[np.ndarray, float, int, bool]:
            if name == "lbfgsb":
                theta, fval, rec, ok = lbfgsb(crit_grad, start, lower, progress, scale)
            else:
                theta, fval, rec, ok = bobyqa(crit, start, lower, progress, polish=cheap, local=bool(runs))
            theta, fval = _snap_to_bounds(crit, theta, fval, lower)
            runs.append(rec)
            return theta, fval, rec.evaluations, ok

        runs: list[OptimizerRecord] = []
        if self._gram is not None and self._gram.qR > 0:
            # scipy's LAPACK (with its own OpenBLAS) factors the dense block: loaded before the thread limit is
            # set, which reaches only the libraries loaded then (loaded inside, it ran with the process's
            # threads: on a busy machine a 3,000-order factorization took 10 times longer)
            lapack()
        with blas_threads(self.dense_size):
            theta, fval, _, ok = run(*self._start(name))
            g_end = runs[0].gradient_end
            grad = np.array(g_end) if g_end and np.array_equal(theta, runs[0].theta_end) else None
            end = verify(crit, theta, fval, lower, self.work.terms, run, ok, grad)
            rec = dataclasses.replace(
                runs[0],
                evaluations=runs[0].evaluations + end.evaluations,
                theta_end=tuple(map(float, end.theta)),
                seconds=sum(r.seconds for r in runs),
                restarts=end.restarts,
                stationary=end.stationary,
                gradient_evaluations=sum(r.gradient_evaluations for r in runs),
                iterations=sum(r.iterations for r in runs),
            )
            return self._fit_at_working(end.theta, reml, rec, end.converged and end.stationary, work)

    def _start(self, optimizer: str) -> tuple[np.ndarray, float]:
        """lme4's identity start, or for L-BFGS-B: on large crossed random intercepts the backfitting start
        (:mod:`mmcli.lmm.start`), which saves evaluations of a dense factorization each, with a short first step;
        on other models of scalar random intercepts their analysis-of-variance estimates
        (:mod:`mmcli.lmm.anova_start`). The second value is the scale of L-BFGS-B's first step (1 / scale in
        theta: a start near the optimum takes a short one)."""
        if optimizer == "lbfgsb" and self._gram is not None:
            start = backfit_start(self.work.terms, self.work.y, self._gram, self.weights is not None)
            if start is not None:
                return start, 1.0 / FIRST_STEP
            start = anova_start(self._gram)
            if start is not None:
                return start, LBFGSB_SCALE
        return start_theta(self.work.terms), LBFGSB_SCALE

    @property
    def dense_size(self) -> int:
        """The order of the dense matrix factored at each theta (what decides the BLAS threads)."""
        if self._dense is not None:
            return self.n
        assert self._gram is not None
        return self._gram.qR + self._gram.p1

    def _fit_at_working(
        self, theta_w: np.ndarray, reml: bool, rec: OptimizerRecord, ok: bool, work: np.ndarray | None = None
    ) -> LmmFit:
        dof = Dof(self.n, self.p, reml)
        wf: WorkingFit
        if self._dense is not None:
            wf = self._dense.results(theta_w, dof)
            rec = dataclasses.replace(rec, name=rec.name + " (dense V)")
        else:
            assert self._gram is not None
            wf = results_at(self._gram, theta_w, dof, self.work.X, work)
        return LmmFit(
            reml=reml,
            n=self.n,
            terms=tuple(self.terms),
            xnames=self.xnames,
            converged=ok,
            optimizer=rec,
            dropped_columns=self.dropped_columns,
            weights=self.weights,
            **self.work.back(wf, dof),
        )


def _snap_to_bounds(
    crit: Callable[[np.ndarray], float], theta: np.ndarray, fval: float, lower: np.ndarray
) -> tuple[np.ndarray, float]:
    """Near-zero variances put on their bound when that is no worse (lme4's BOBYQA lands there exactly)."""
    theta = np.where(np.abs(theta) < 1e-13, 0.0, theta)
    for i in np.flatnonzero((lower == 0.0) & (theta > 0.0) & (theta < SINGULAR_TOL)):
        trial = theta.copy()
        trial[i] = 0.0
        f0 = crit(trial)
        if f0 <= fval + 1e-10 * max(1.0, abs(fval)):
            theta, fval = trial, f0
    return theta, fval


def fit_lmm(
    X: np.ndarray,
    y: np.ndarray,
    terms: Sequence[ReTerm],
    *,
    reml: bool = False,
    xnames: Sequence[str] | None = None,
    weights: np.ndarray | None = None,
    offset: np.ndarray | None = None,
    method: str = "fast",
    progress: Callable[[int, float], None] | None = None,
    overwrite_y: bool = False,
) -> LmmFit:
    """Fit the LMM by ML or REML: ``LmmModel(...).fit(reml)``."""
    model = LmmModel(X, y, terms, xnames=xnames, weights=weights, offset=offset, method=method, overwrite_y=overwrite_y)
    return model.fit(reml, progress)


def fit_at_theta(
    X: np.ndarray,
    y: np.ndarray,
    terms: Sequence[ReTerm],
    theta: np.ndarray,
    *,
    reml: bool = False,
    xnames: Sequence[str] | None = None,
    weights: np.ndarray | None = None,
    offset: np.ndarray | None = None,
    method: str = "fast",
) -> LmmFit:
    """Everything at a given theta, with no optimizer: ``LmmModel(...).fit_at(theta, reml)``."""
    return LmmModel(X, y, terms, xnames=xnames, weights=weights, offset=offset, method=method).fit_at(theta, reml)


def xtvinvx(X: np.ndarray, terms: Sequence[ReTerm], theta: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """X' V0^-1 X with V0 = W^-1 + Z Lambda Lambda'Z' (the covariance of y over sigma^2), as L_XX L_XX' of the
    blocked factor of [Z X] (no y). X is used as given: no column is dropped or transformed."""
    X = np.asarray(X, dtype=float)
    w = _check_vector(weights, X.shape[0], "prior weights", positive=True)
    if w is not None:
        sw = np.sqrt(w)
        X, terms = X * sw[:, None], [weighted_term(t, sw) for t in terms]
    g = Gram(X, None, terms)
    f = update_L(g, np.asarray(theta, dtype=float))
    LXX = f.Lrest[g.qR :, g.qR :]
    return LXX @ LXX.T


def check_terms(terms: Sequence[ReTerm], n: int) -> None:
    """lme4's checks: every grouping factor has >= 2 levels and fewer levels than observations."""
    for t in terms:
        if not t.indicator:
            continue
        if t.nlevels < 2:
            raise ModelError(
                f"Grouping factor '{t.group}' has {t.nlevels} level; a random effect needs at least 2 levels."
            )
        if t.nlevels >= n:
            raise ModelError(
                f"Grouping factor '{t.group}' has as many levels ({t.nlevels}) as observations ({n}); "
                "its variance cannot be told apart from the residual variance."
            )
        if t.nlevels * t.p >= n:
            raise ModelError(
                f"The term ({' + '.join(t.names)} | {t.group}) has {t.nlevels * t.p} random effects for {n} "
                "observations; the variance parameters cannot be identified. Simplify the term."
            )


def _check_vector(v: np.ndarray | None, n: int, what: str, *, positive: bool) -> np.ndarray | None:
    if v is None:
        return None
    v = np.asarray(v, dtype=float).ravel()
    if v.size != n:
        raise DataError(f"The {what}: {v.size} values for {n} observations.")
    if not np.all(np.isfinite(v)):
        raise DataError(f"The {what}: every value must be a finite number.")
    if positive and np.any(v <= 0):
        raise DataError(f"The {what}: every value must be positive; the smallest is {float(v.min()):g}.")
    return v
