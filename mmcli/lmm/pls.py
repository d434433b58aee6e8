"""Penalized weighted least squares at a given theta, on the blocked Cholesky: the step of a GLMM's PIRLS.

    minimize  || W^1/2 (z - X beta - Z Lambda u) ||^2 + ||u||^2   over u (and beta, when X has columns)

(Bates et al. 2015, section 3; lme4's glmer and MixedModels.jl solve the same system at each iteration of
penalized iteratively reweighted least squares). The weights change at every iteration, so the Gram matrix of
the weighted [Z X z] is formed each time; the factor, the modes and the conditional covariances are those of the
linear mixed model with unit residual variance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mmcli.lmm.factor import Factor, update_L
from mmcli.lmm.gram import Gram
from mmcli.lmm.results import _modes, _per_block
from mmcli.lmm.terms import ReTerm, make_blocks
from mmcli.lmm.transform import weighted_term

ROW_BLOCK = 65536  # rows of W X formed at a time


@dataclass(frozen=True, eq=False)
class PlsStep:
    """The solution at one theta and one set of weights."""

    beta: np.ndarray  # empty when the system had no X
    u: np.ndarray  # spherical random effects, block by block (block 0 first, then the rest)
    logdet: float  # log |L_ZZ|^2 = log |Lambda'Z'W Z Lambda + I|
    LXX: np.ndarray  # the lower Cholesky factor of X'V^-1 X (p x p; 0 x 0 without X)
    L0: np.ndarray | None  # one scalar random-effects term alone: the diagonal of L_ZZ, per level
    gram: Gram | None = None  # the blocked factor's pieces (None on the one-scalar-term path)
    factor: Factor | None = None


class WeightedPls:
    """The system's fixed pieces (X, the terms and their blocks); :meth:`solve` at any theta and weights."""

    def __init__(self, X: np.ndarray, terms: Sequence[ReTerm]):
        self.X = np.asarray(X, dtype=float)
        self.terms = list(terms)
        self.blocks = make_blocks(self.terms)
        self.n = self.X.shape[0]
        self.q = sum(b.q for b in self.blocks)
        b0 = self.blocks[0]
        self.scalar = len(self.blocks) == 1 and b0.indicator and b0.p == 1 and b0.codes is not None
        self.t0 = None
        if self.scalar and b0.T is not None and not np.all(b0.T[:, 0] == 1.0):
            self.t0 = np.ascontiguousarray(b0.T[:, 0])

    def solve(
        self, theta: np.ndarray, weights: np.ndarray, z: np.ndarray, *, with_x: bool, factor: bool = False
    ) -> PlsStep:
        """(u, beta) minimizing the penalized weighted sum of squares; u alone (beta empty) without X. With
        ``factor``, the step keeps the blocked factor (for conditional covariances)."""
        if self.scalar and not factor:
            return self._solve_scalar(float(theta[0]), weights, z, with_x)
        sw = np.sqrt(weights)
        Xw = self.X * sw[:, None] if with_x else np.zeros((self.n, 0))
        g = Gram(Xw, z * sw, [weighted_term(t, sw) for t in self.terms])
        f = update_L(g, np.asarray(theta, dtype=float))
        beta, uR, u0 = _modes(g, f)
        p = g.p
        LXX = f.Lrest[g.qR : g.qR + p, g.qR : g.qR + p]
        L0 = f.L00[:, 0, 0] if self.scalar else None
        return PlsStep(beta, np.concatenate([u0, uR]), f.logdetZ, LXX, L0, g, f)

    def _solve_scalar(self, th: float, w: np.ndarray, z: np.ndarray, with_x: bool) -> PlsStep:
        """One scalar term (a random intercept, or one column per level): block 0 alone, M_j = th^2 z_j'W z_j + 1
        per level, and the Schur complement of the fixed effects, by weighted counts over the level codes."""
        b = self.blocks[0]
        codes, nl = b.codes, b.nlevels
        assert codes is not None
        wt = w if self.t0 is None else w * self.t0
        A00 = np.bincount(codes, weights=wt if self.t0 is None else wt * self.t0, minlength=nl)
        M = th * th * A00 + 1.0
        r0: np.ndarray = np.bincount(codes, weights=wt * z, minlength=nl).astype(float)
        beta: np.ndarray = np.zeros(0)
        LXX: np.ndarray = np.zeros((0, 0))
        if with_x and self.X.shape[1]:
            p = self.X.shape[1]
            XtWX, XtWz, A0X = np.zeros((p, p)), np.zeros(p), np.zeros((nl, p))
            for lo in range(0, self.n, ROW_BLOCK):  # W X a block of rows at a time: no n x p temporary
                sl = slice(lo, lo + ROW_BLOCK)
                Xc = self.X[sl]
                XWc = Xc * wt[sl, None]  # with the term's column: Z'W X by level; X'W X needs w alone
                for c in range(p):
                    A0X[:, c] += np.bincount(codes[sl], weights=XWc[:, c], minlength=nl)
                if self.t0 is not None:
                    XWc = Xc * w[sl, None]
                XtWX += Xc.T @ XWc
                XtWz += XWc.T @ z[sl]
            G = A0X * (th * th / M)[:, None]
            S = XtWX - A0X.T @ G
            LXX = np.linalg.cholesky(S)
            beta = np.linalg.solve(S, XtWz - G.T @ r0)
            r0 = r0 - A0X @ beta
        L0: np.ndarray = np.sqrt(M)
        return PlsStep(beta, th * r0 / M, float(np.sum(np.log(M))), LXX, L0)

    def z_lambda(self, theta: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Z Lambda u, by level codes (Z is not formed for the indicator blocks)."""
        if self.scalar and self.t0 is None:  # a random intercept: theta u[level]
            codes = self.blocks[0].codes
            assert codes is not None
            return (float(theta[0]) * u)[codes]
        out = np.zeros(self.n)
        g_templates = self._templates(theta)
        off = 0
        for b, T in zip(self.blocks, g_templates):
            bb = u[off : off + b.q].reshape(b.nlevels, b.p) @ T.T
            off += b.q
            if b.indicator and b.codes is not None and b.T is not None:
                out += np.einsum("ij,ij->i", b.T, bb[b.codes]) if b.p > 1 else b.T[:, 0] * bb[b.codes, 0]
            else:
                out += b.Z @ bb.ravel()
        return out

    def ranef(self, theta: np.ndarray, step: PlsStep) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per term: the conditional modes b = Lambda u, (nlevels, p), and their conditional covariances
        Lambda (Lambda'Z'WZ Lambda + I)^-1 Lambda' per level, (nlevels, p, p)."""
        g, f = step.gram, step.factor
        assert g is not None and f is not None, "solve(..., factor=True) keeps the factor"
        n0 = g.first.q if g.first is not None else 0
        u_blocks, cov_blocks = _per_block(g, f, step.u[n0:], step.u[:n0])
        ranef: list[np.ndarray] = [np.zeros(0)] * len(self.terms)
        cond: list[np.ndarray] = [np.zeros(0)] * len(self.terms)
        for b, T, ub, Cu in zip(g.blocks, f.templates, u_blocks, cov_blocks):
            bb = ub @ T.T
            Cb = np.einsum("ij,ljk,mk->lim", T, Cu, T)
            for ti, off in zip(b.terms, b.offsets):
                pt = self.terms[ti].p
                ranef[ti] = bb[:, off : off + pt]
                cond[ti] = Cb[:, off : off + pt, off : off + pt]
        return ranef, cond

    def _templates(self, theta: np.ndarray) -> list[np.ndarray]:
        from mmcli.lmm.terms import templates

        per_term = templates(self.terms, np.asarray(theta, dtype=float))
        out = []
        for b in self.blocks:
            T = np.zeros((b.p, b.p))
            for ti, off in zip(b.terms, b.offsets):
                pt = self.terms[ti].p
                T[off : off + pt, off : off + pt] = per_term[ti]
            out.append(T)
        return out
