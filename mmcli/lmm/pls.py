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


@dataclass(frozen=True, eq=False)
class PlsStep:
    """The solution at one theta and one set of weights."""

    beta: np.ndarray  # empty when the system had no X
    u: np.ndarray  # spherical random effects, block by block (block 0 first, then the rest)
    logdet: float  # log |L_ZZ|^2 = log |Lambda'Z'W Z Lambda + I|
    gram: Gram
    factor: Factor


class WeightedPls:
    """The system's fixed pieces (X, the terms and their blocks); :meth:`solve` at any theta and weights."""

    def __init__(self, X: np.ndarray, terms: Sequence[ReTerm]):
        self.X = np.asarray(X, dtype=float)
        self.terms = list(terms)
        self.blocks = make_blocks(self.terms)
        self.n = self.X.shape[0]
        self.q = sum(b.q for b in self.blocks)

    def solve(self, theta: np.ndarray, weights: np.ndarray, z: np.ndarray, *, with_x: bool) -> PlsStep:
        """(u, beta) minimizing the penalized weighted sum of squares; u alone (beta empty) without X."""
        sw = np.sqrt(weights)
        Xw = self.X * sw[:, None] if with_x else np.zeros((self.n, 0))
        g = Gram(Xw, z * sw, [weighted_term(t, sw) for t in self.terms])
        f = update_L(g, np.asarray(theta, dtype=float))
        beta, uR, u0 = _modes(g, f)
        return PlsStep(beta, np.concatenate([u0, uR]), f.logdetZ, g, f)

    def z_lambda(self, theta: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Z Lambda u, by level codes (Z is not formed for the indicator blocks)."""
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
