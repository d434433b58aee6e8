"""PIRLS for one scalar random-effects term, a block of rows at a time (the common random intercept).

With one scalar term the penalized system is diagonal in the levels, so each Fisher-scoring step needs only sums
over the rows of each level and (jointly with beta) over all rows: with the working weights w = a mu'^2 / V and
the score s = a (y - mu) mu' / V at the current (beta, u),

    A_j = sum_{i in j} w_i t_i^2,   S_j = sum_{i in j} s_i t_i,   (A0X)_j = sum_{i in j} w_i t_i x_i',
    X'W X,   X's,

and the step (delta u, delta beta) solves the penalized weighted least squares system of Bates et al. (2015,
section 5) in increments,

    [ M        theta A0X ] [delta u   ]   [ theta S - u ]
    [ theta A0X'   X'W X ] [delta beta] = [ X's         ],     M = diag(1 + theta^2 A_j),

by the Schur complement of M. Every sum, and the penalized deviance at a trial point, is formed one block of rows
at a time from eta = X beta + theta t u[level] + offset, so that no full-length vector lives between passes; the
mode's eta and mu are written once at the end. The steps are those of the general solver (mmcli.glmm.pirls), with
its step halving and stopping rules.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmcli.errors import NotConvergedError
from mmcli.glmm.pirls import ETA_TOL, JOINT_TOL, MAX_HALVINGS, MAXIT, PDEV_TOL, ROW_BLOCK, Mode, Response
from mmcli.lmm import PlsStep, WeightedPls


@dataclass(eq=False)
class _Sums:
    """The sums of one pass at one (beta, u); X's parts only for the joint system."""

    pdev: float
    A: np.ndarray
    S: np.ndarray
    A0X: np.ndarray | None = None
    XtWX: np.ndarray | None = None
    Xts: np.ndarray | None = None


class ScalarPirls:
    """The conditional modes of a model whose only random-effects term is scalar, by blocks of rows."""

    def __init__(self, pls: WeightedPls, resp: Response):
        assert pls.scalar
        self.pls, self.resp = pls, resp
        blk = pls.blocks[0]
        assert blk.codes is not None
        self.codes, self.nl, self.t = blk.codes, blk.nlevels, pls.t0
        self.tmax = 1.0 if self.t is None else float(np.max(np.abs(self.t)))
        X = pls.X  # the largest |x| per column, without a copy of X
        self.xmax = np.zeros(X.shape[1])
        if X.shape[0] and X.shape[1]:
            self.xmax = np.maximum(np.max(X, axis=0), -np.min(X, axis=0))

    def _eta(self, sl: slice, theta: float, beta: np.ndarray, u: np.ndarray) -> np.ndarray:
        """eta over the rows ``sl``: X beta + theta t u[level] + offset."""
        ub = u[self.codes[sl]]
        ub *= theta
        if self.t is not None:
            ub *= self.t[sl]
        if beta.size:
            ub += self.pls.X[sl] @ beta
        if self.resp.has_offset:
            ub += self.resp.offset[sl]  # type: ignore[index]
        return ub

    def _ws(self, sl: slice, eta: np.ndarray, mu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The working weights w and the score s over the rows ``sl``."""
        r, fam = self.resp, self.resp.fam
        s = np.subtract(r.y[sl], mu)
        if fam.canonical:  # mu' = V(mu): w = a V, s = a (y - mu)
            w = fam.variance(mu)
        else:
            d = fam.mu_eta(eta)
            w = d / fam.variance(mu)
            s *= w
            w *= d
        if not r.unit_prior:
            w *= r.prior[sl]
            s *= r.prior[sl]
        return w, s

    def _pass(self, theta: float, beta: np.ndarray, u: np.ndarray, joint: bool) -> _Sums:
        """The penalized deviance and the sums of the Fisher step at (beta, u), one block of rows at a time."""
        r, nl, p = self.resp, self.nl, beta.size
        A, S, ker = np.zeros(nl), np.zeros(nl), 0.0
        A0X = np.zeros((nl, p)) if joint else None
        XtWX, Xts = (np.zeros((p, p)), np.zeros(p)) if joint else (None, None)
        for lo in range(0, self.pls.n, ROW_BLOCK):
            sl = slice(lo, lo + ROW_BLOCK)
            eta = self._eta(sl, theta, beta, u)
            mu = r.fam.linkinv(eta)
            ker += r._kernel(mu, sl)
            w, s = self._ws(sl, eta, mu)
            del eta, mu
            c, t = self.codes[sl], None if self.t is None else self.t[sl]
            wt = w if t is None else w * t
            if joint:
                assert A0X is not None and XtWX is not None and Xts is not None
                Xc = self.pls.X[sl]
                XWc = Xc * wt[:, None]
                for k in range(p):
                    A0X[:, k] += np.bincount(c, weights=XWc[:, k], minlength=nl)
                if t is not None:
                    XWc = Xc * w[:, None]
                XtWX += Xc.T @ XWc
                Xts += Xc.T @ s
            if t is not None:
                s *= t
                wt *= t
            A += np.bincount(c, weights=wt, minlength=nl)
            S += np.bincount(c, weights=s, minlength=nl)
        return _Sums(r.saturated + ker + float(u @ u), A, S, A0X, XtWX, Xts)

    def _step(self, theta: float, u: np.ndarray, sm: _Sums) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(delta u, delta beta, L_XX) of the Fisher step from the sums (delta beta empty without X)."""
        M = 1.0 + theta * theta * sm.A
        rhs_u = theta * sm.S - u
        if sm.A0X is None or not sm.A0X.shape[1]:
            return rhs_u / M, np.zeros(0), np.zeros((0, 0))
        assert sm.XtWX is not None and sm.Xts is not None
        G = sm.A0X * (theta / M)[:, None]
        schur = sm.XtWX - theta * (sm.A0X.T @ G)
        LXX = np.linalg.cholesky(schur)
        db = np.linalg.solve(schur, sm.Xts - G.T @ rhs_u)
        du = (rhs_u - theta * (sm.A0X @ db)) / M
        return du, db, LXX

    def mode(self, theta: np.ndarray, beta: np.ndarray | None, start: tuple[np.ndarray, np.ndarray]) -> Mode:
        """As :meth:`mmcli.glmm.pirls.Pirls.mode`: over u (beta given) or over u and beta jointly."""
        th, joint = float(theta[0]), beta is None
        b = start[0].copy() if joint else np.asarray(beta, dtype=float)
        u = start[1].copy()
        sm = self._pass(th, b, u, joint)
        for it in range(1, MAXIT + 1):
            du, db, LXX = self._step(th, u, sm)
            frac, accepted = 1.0, False
            for _ in range(MAX_HALVINGS):
                b_try, u_try = (b + frac * db if joint else b), u + frac * du
                sm_try = self._pass(th, b_try, u_try, joint)
                if np.isfinite(sm_try.pdev) and sm_try.pdev <= sm.pdev + 1e-12 * abs(sm.pdev):
                    accepted = True
                    break
                frac /= 2
            if not accepted:
                if abs(sm_try.pdev - sm.pdev) <= 1e-9 * (abs(sm.pdev) + 1):  # no descent left: the mode
                    return self._mode(th, b, u, sm, LXX, it)
                raise NotConvergedError(
                    "The penalized iteratively reweighted least squares (PIRLS) for the conditional modes diverged: "
                    "no step lowers the penalized deviance. The model may be too rich for these data (a variance "
                    "near zero or a predictor that separates the outcomes); simplify it or rescale the predictors."
                )
            # the largest move of any linear predictor, bounded by the moves of u and beta
            moved = frac * (abs(th) * self.tmax * float(np.max(np.abs(du), initial=0.0)))
            moved += frac * float(self.xmax @ np.abs(db)) if joint else 0.0
            change = sm.pdev - sm_try.pdev
            b, u, sm = b_try, u_try, sm_try
            if moved < ETA_TOL or change <= (JOINT_TOL if joint else PDEV_TOL) * (abs(sm.pdev) + 1):
                if joint:  # L_XX at the weights of the mode itself
                    LXX = self._step(th, u, sm)[2]
                return self._mode(th, b, u, sm, LXX, it)
        raise NotConvergedError(
            f"The penalized iteratively reweighted least squares (PIRLS) for the conditional modes did not converge "
            f"in {MAXIT} iterations; simplify the model or rescale the predictors."
        )

    def _mode(self, th: float, b: np.ndarray, u: np.ndarray, sm: _Sums, LXX: np.ndarray, it: int) -> Mode:
        """The mode and the log-determinant at the mode's weights. eta and mu are not stored: the mode forms
        them over a block of rows when asked, so that no full-length vector lives between evaluations."""
        linkinv = self.resp.fam.linkinv

        def rows(sl: slice) -> tuple[np.ndarray, np.ndarray]:
            eta = self._eta(sl, th, b, u)
            return eta, linkinv(eta)

        M = 1.0 + th * th * sm.A
        logdet = float(np.sum(np.log(M)))
        step = PlsStep(np.zeros(0), u, logdet, LXX, np.sqrt(M))
        return Mode(b, u, None, None, sm.pdev, step, it, logdet, rows=rows, n=self.pls.n)
