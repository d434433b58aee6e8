"""The tutorial's dense formulation: V = sigma^2 (Z Lambda Lambda'Z' + I), its Cholesky factor, and GLS on the
whitened system. It holds n x n matrices, so it is for small data (``method="dense"``); it teaches the idea,
and the tests check the blocked Cholesky against it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mmcli.lmm._lazy import sla, sp
from mmcli.lmm.criterion import Dof, criterion
from mmcli.lmm.terms import ReTerm, templates
from mmcli.lmm.transform import WorkingFit

DENSE_MAX_ROWS = 5000


class DenseProblem:
    """V0 = Z Lambda Lambda'Z' + I = L L'; whitened X and y by L; beta by least squares (that is GLS)."""

    def __init__(self, X: np.ndarray, y: np.ndarray, terms: Sequence[ReTerm]):
        self.X, self.y, self.terms = X, y, list(terms)
        self.n, self.p = X.shape
        self.Z = sp.hstack([t.zmat() for t in terms]).toarray() if terms else np.zeros((self.n, 0))

    def lam(self, theta: np.ndarray) -> np.ndarray:
        mats = [np.kron(np.eye(t.nlevels), T) for t, T in zip(self.terms, templates(self.terms, theta))]
        return sla.block_diag(*mats) if mats else np.zeros((0, 0))

    def pieces(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """L, the whitened X, beta and the residual sum of squares of the whitened system."""
        ZL = self.Z @ self.lam(theta)
        L = np.linalg.cholesky(ZL @ ZL.T + np.eye(self.n))
        Xw = sla.solve_triangular(L, self.X, lower=True)
        yw = sla.solve_triangular(L, self.y, lower=True)
        beta, *_ = np.linalg.lstsq(Xw, yw, rcond=None)
        r = yw - Xw @ beta
        return L, Xw, beta, float(r @ r)

    def objective(self, theta: np.ndarray, dof: Dof) -> float:
        """The same criterion as the blocked Cholesky's: log|V0| in place of log|L_Z|^2, log|X'V0^-1 X| in
        place of log|L_X|^2."""
        L, Xw, _, r2 = self.pieces(theta)
        logdetV = 2.0 * float(np.sum(np.log(np.diag(L))))
        logdetXVX = float(np.linalg.slogdet(Xw.T @ Xw)[1]) if dof.reml else 0.0
        return criterion(logdetV, logdetXVX, r2, dof)

    def results(self, theta: np.ndarray, dof: Dof) -> WorkingFit:
        """GLS beta, b = Lambda Lambda'Z' V0^-1 (y - X beta), conditional covariance
        sigma^2 Lambda (Lambda'Z'Z Lambda + I)^-1 Lambda'."""
        L, Xw, beta, r2 = self.pieces(theta)
        sigma2 = r2 / dof.resid
        vcov = sigma2 * np.linalg.inv(Xw.T @ Xw)
        Lam = self.lam(theta)
        ZL = self.Z @ Lam
        u = ZL.T @ sla.cho_solve((L, True), self.y - self.X @ beta)
        b = Lam @ u
        Cb = sigma2 * Lam @ np.linalg.inv(ZL.T @ ZL + np.eye(ZL.shape[1])) @ Lam.T
        ranef, cond_cov, off = [], [], 0
        for t in self.terms:
            idx = off + np.arange(t.nlevels * t.p).reshape(t.nlevels, t.p)
            ranef.append(b[idx])
            cond_cov.append(Cb[idx[:, :, None], idx[:, None, :]])
            off += t.nlevels * t.p
        fitted = self.X @ beta + self.Z @ b
        return WorkingFit(
            theta, float(np.sqrt(sigma2)), beta, vcov, self.objective(theta, dof), ranef, cond_cov, fitted
        )
