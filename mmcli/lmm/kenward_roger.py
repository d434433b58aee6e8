"""Kenward & Roger's (1997) small-sample covariance of the fixed effects and denominator degrees of freedom,
computed as pbkrtest's vcovAdj and KRmodcomp (Halekoh & Hojsgaard 2014, J. Stat. Softw. 59(9), section 4).

The covariance of y is Sigma = sum_r gamma_r G_r: one gamma per variance and covariance of each random-effects
term, with G_r = Z_a Z_b' + Z_b Z_a' (a != b) or Z_a Z_a' (Z_a the columns of component a of the term), and
sigma^2 with G = W^-1 (the identity without prior weights). With Phi = (X'Sigma^-1 X)^-1,

    P_r = -X'Sigma^-1 G_r Sigma^-1 X,   Q_rs = X'Sigma^-1 G_r Sigma^-1 G_s Sigma^-1 X,
    I_rs = tr(Sigma^-1 G_r Sigma^-1 G_s) - 2 tr(Phi Q_rs) + tr(Phi P_r Phi P_s),   W = 2 I^-1,
    Phi_A = Phi + 2 Phi (sum_rs W_rs (Q_rs - P_r Phi P_s)) Phi.

For a q-row L, Theta = L'(L Phi L')^-1 L, A1 = sum_rs W_rs tr(Theta Phi P_r Phi) tr(Theta Phi P_s Phi) and
A2 = sum_rs W_rs tr(Theta Phi P_r Phi Theta Phi P_s Phi) give the scaling and the df of the F statistic
(Kenward & Roger 1997, eqs. 5-7 and section 4). Sigma^-1 is applied by Woodbury's identity and the traces are
taken on the n x (levels) blocks Z_a, so no n x n matrix is formed; Z is held dense, for up to KR_MAX_ROWS rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mmcli.errors import ModelError
from mmcli.lmm.terms import ReTerm
from mmcli.memory import check_allocation, human

KR_MAX_ROWS = 20_000


@dataclass(frozen=True, eq=False)
class KenwardRoger:
    """Phi (the covariance of beta-hat), the adjusted Phi_A, and pbkrtest's P_r and W."""

    phi: np.ndarray
    phi_adjusted: np.ndarray
    P: list[np.ndarray]
    W: np.ndarray
    beta: np.ndarray

    def ddf(self, L: np.ndarray) -> tuple[float, float]:
        """(denominator df, F scaling) for the hypothesis L beta = 0 (pbkrtest's .KR_adjust and Lb_ddf)."""
        L = np.atleast_2d(np.asarray(L, dtype=float))
        Phi = self.phi
        Theta = L.T @ np.linalg.solve(L @ Phi @ L.T, L)
        TP = Theta @ Phi
        U = [TP @ P @ Phi for P in self.P]
        A1 = A2 = 0.0
        g = len(U)
        for i in range(g):
            for j in range(i, g):
                e = 1.0 if i == j else 2.0
                A1 += e * self.W[i, j] * float(np.trace(U[i]) * np.trace(U[j]))
                A2 += e * self.W[i, j] * float(np.sum(U[i] * U[j].T))
        q = float(np.linalg.matrix_rank(L))
        B = (A1 + 6.0 * A2) / (2.0 * q)
        gg = ((q + 1.0) * A1 - (q + 4.0) * A2) / ((q + 2.0) * A2)
        den = 3.0 * q + 2.0 * (1.0 - gg)
        c1, c2, c3 = gg / den, (q - gg) / den, (q + 2.0 - gg) / den
        V0 = 1.0 + c1 * B
        V0 = 0.0 if abs(V0) < 1e-10 else V0
        V1, V2 = 1.0 - c2 * B, 1.0 - c3 * B
        x = 1.0 - A2 / q
        ratio = 1.0 if abs(x) < 1e-14 and abs(V1) < 1e-14 else x / V1
        rho = ratio**2 * V0 / V2 / q
        df2 = 4.0 + (q + 2.0) / (q * rho - 1.0)
        scale = 1.0 if abs(df2 - 2.0) < 0.01 else df2 * (1.0 - A2 / q) / (df2 - 2.0)
        return df2, scale

    def t_test(self, l: np.ndarray) -> tuple[float, float, float, float]:
        """(estimate, se, df, t) of l beta = 0: the se from Phi_A, the df of Kenward-Roger (lmerTest's summary)."""
        l = np.asarray(l, dtype=float).ravel()
        se = math.sqrt(float(l @ self.phi_adjusted @ l))
        est = float(l @ self.beta)
        return est, se, self.ddf(l)[0], est / se

    def f_test(self, L: np.ndarray) -> tuple[float, float, int, float]:
        """(F, unscaled F, numerator df, denominator df): F = scaling * (L b)'(L Phi_A L')^-1 (L b) / q."""
        L = np.atleast_2d(np.asarray(L, dtype=float))
        Lb = L @ self.beta
        q = int(np.linalg.matrix_rank(L))
        Fu = float(Lb @ np.linalg.solve(L @ self.phi_adjusted @ L.T, Lb)) / q
        df2, scale = self.ddf(L)
        return scale * Fu, Fu, q, df2


def _components(terms: Sequence[ReTerm], theta: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Per term and component a, the dense n x nlevels columns Z_a; and Z Lambda (n x q) to build Sigma."""
    cols, zl = [], []
    off = 0
    for t in terms:
        Zd = t.zmat().toarray()
        n = Zd.shape[0]
        Z3 = Zd.reshape(n, t.nlevels, t.p)
        T = np.zeros((t.p, t.p))
        for k, (i, j) in enumerate(t.template_positions()):
            T[i, j] = theta[off + k]
        off += t.ntheta
        cols.append([Z3[:, :, a] for a in range(t.p)])
        zl.append((Z3 @ T).reshape(n, -1))
    return cols, np.column_stack(zl)  # type: ignore[return-value]


class _SigmaInverse:
    """Sigma^-1 = sigma^-2 (R + ZL ZL')^-1 applied by Woodbury's identity, R = W^-1 diagonal and ZL = Z Lambda
    (n x q): sigma^-2 (R^-1 - U K U') with U = R^-1 ZL and K = (I + ZL'R^-1 ZL)^-1. No n x n matrix."""

    def __init__(self, ZL: np.ndarray, rdiag: np.ndarray, s2: float):
        self.rinv, self.s2, self.ZL = 1.0 / rdiag, s2, ZL
        self.U = self.rinv[:, None] * ZL
        self.K = np.linalg.inv(np.eye(ZL.shape[1]) + ZL.T @ self.U)

    def __matmul__(self, M: np.ndarray) -> np.ndarray:
        return (self.rinv[:, None] * M - self.U @ (self.K @ (self.U.T @ M))) / self.s2

    def trace_rr(self) -> float:
        """tr(R S R S) = sigma^-4 (n - 2 tr(K U'ZL) + tr((K U'ZL)^2)), since R U = ZL."""
        Mq = self.K @ (self.U.T @ self.ZL)
        n = self.ZL.shape[0]
        return float(n - 2.0 * np.trace(Mq) + np.sum(Mq * Mq.T)) / self.s2**2


Pieces = list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]  # (A, B, S A, S B): G = sum A B'


def _trace_pair(Gr: Pieces | None, Gs: Pieces | None, S: _SigmaInverse, rdiag: np.ndarray) -> float:
    """tr(G_r S G_s S) without forming G_r: tr(A B' S C D' S) = sum((B'S C) * (D'S A)')."""
    if Gr is None and Gs is None:
        return S.trace_rr()
    if Gr is None:
        Gr, Gs = Gs, None
    assert Gr is not None
    if Gs is None:  # tr(A B' S R S) = sum((S A) * (R S B))
        return float(sum(np.sum(SA * (rdiag[:, None] * SB)) for _, _, SA, SB in Gr))
    return float(sum(np.sum((B.T @ SC) * (D.T @ SA).T) for _, B, SA, _ in Gr for _, D, SC, _ in Gs))


def kenward_roger(
    X: np.ndarray,
    terms: Sequence[ReTerm],
    theta: np.ndarray,
    sigma: float,
    beta: np.ndarray,
    weights: np.ndarray | None = None,
) -> KenwardRoger:
    """Phi_A and what the df need, at (theta, sigma) of a REML fit (see the module's docstring)."""
    X = np.asarray(X, dtype=float)
    n = X.shape[0]
    if n > KR_MAX_ROWS:
        raise ModelError(
            f"Kenward-Roger's method holds dense n x q matrices and is limited to {KR_MAX_ROWS} rows; these data "
            f"have {n}. Use --ddf satterthwaite."
        )
    q = sum(t.nlevels * t.p for t in terms)
    check_allocation(4 * 8.0 * n * q, f"Kenward-Roger's method needs {human(4 * 8.0 * n * q)} for dense copies of Z")
    cols, ZL = _components(terms, np.asarray(theta, dtype=float))
    rdiag = np.ones(n) if weights is None else 1.0 / np.asarray(weights, dtype=float)
    Sinv = _SigmaInverse(ZL, rdiag, sigma * sigma)
    # each G_r as pieces (A, B, S A, S B) with G_r = sum A B'; None for the residual's diagonal
    SZ = [[Sinv @ Za for Za in comps] for comps in cols]
    G: list[Pieces | None] = []
    for comps, scomps in zip(cols, SZ):
        p = len(comps)
        for j in range(p):
            for i in range(j, p):
                a, b = (comps[i], scomps[i]), (comps[j], scomps[j])
                G.append([(a[0], a[0], a[1], a[1])] if i == j else [(a[0], b[0], a[1], b[1]), (b[0], a[0], b[1], a[1])])
    G.append(None)
    TT = Sinv @ X

    def times(r: int, M: np.ndarray) -> np.ndarray:  # G_r M
        Gr = G[r]
        if Gr is None:
            return rdiag[:, None] * M
        return sum(A @ (B.T @ M) for A, B, _, _ in Gr)  # type: ignore[return-value]

    g = len(G)
    OO = [times(r, TT) for r in range(g)]  # G_r Sigma^-1 X
    SOO = [Sinv @ O for O in OO]
    PP = [-(O.T @ TT) for O in OO]
    PP = [(P + P.T) / 2 for P in PP]
    QQ = {(r, s): OO[r].T @ SOO[s] for r in range(g) for s in range(r, g)}
    K = np.empty((g, g))
    for r in range(g):
        for s in range(r, g):
            K[r, s] = K[s, r] = _trace_pair(G[r], G[s], Sinv, rdiag)
    Phi = np.linalg.inv(X.T @ TT)
    Phi = (Phi + Phi.T) / 2
    IE2 = np.empty((g, g))
    for r in range(g):
        PhiPr = Phi @ PP[r]
        for s in range(r, g):
            IE2[r, s] = IE2[s, r] = K[r, s] - 2 * np.sum(Phi * QQ[(r, s)]) + np.sum(PhiPr * (PP[s] @ Phi))
    ev = np.linalg.eigvalsh(IE2)
    W = 2 * np.linalg.inv(IE2) if np.min(np.abs(ev)) > 1e-10 else 2 * np.linalg.pinv(IE2)
    W = (W + W.T) / 2
    UU = np.zeros_like(Phi)
    for r in range(g):
        for s in range(r + 1, g):
            UU += W[r, s] * (QQ[(r, s)] - PP[r] @ Phi @ PP[s])
    UU = UU + UU.T
    for r in range(g):
        UU += W[r, r] * (QQ[(r, r)] - PP[r] @ Phi @ PP[r])
    PhiA = Phi + 2 * Phi @ UU @ Phi
    return KenwardRoger(phi=Phi, phi_adjusted=PhiA, P=PP, W=W, beta=np.asarray(beta, dtype=float))
