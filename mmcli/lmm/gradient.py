"""The analytic gradient of the profiled ML and REML criteria with respect to theta (working parametrization).

With Omega = Lambda~'[Z X]'[Z X]Lambda~ + diag(I_q, 0), Lambda~ = diag(Lambda, I_p), and C its inverse over
the Z rows (ML) or the Z and X rows (REML), Jacobi's formula gives, for each entry theta_k,

    d log|Omega| / d theta_k = 2 tr(H dLambda_k),    H = C_Z. [Lambda'Z'Z; X'Z]  (its Z rows; X'Z for REML)

where log|Omega| is log|L_Z|^2 (ML) or log|L_Z|^2 + log|L_X|^2 (REML, the Schur complement of the Z block is
X'V0^-1 X = L_XX L_XX'). dLambda_k is block diagonal, so only the level-diagonal blocks of H are needed. For
the penalized residual sum of squares r^2 = min ||y - X beta - Z Lambda u||^2 + ||u||^2 the envelope theorem
gives dr^2/dtheta_k = -2 u'dLambda_k'Z'(y - X beta - Z Lambda u), at beta, u of the optimum. Then

    ML:   d(-2 l)/dtheta_k  = dlog|L_Z|^2             + n       dr^2 / r^2
    REML: d(-2 l_R)/dtheta_k = d(log|L_Z|^2 + log|L_X|^2) + (n - p) dr^2 / r^2

(Bates et al. 2015, eqs. 34 and 41 differentiated). With block 0 eliminated first (mmcli.lmm.factor), the
level-diagonal blocks of H are, with S the Schur complement factored into L_RR, L_XR, L_XX and
K, K_XR its unscaled parts,

    rest blocks:  H_RR  = S^-1_R. [Lambda_R'K; K_XR]
    block 0:      H_00,j = M_j^-1 Lambda_0'[A_00,j - G_j (I - W_j A_00,j)],  G = F'S^-1 F,  F = [Lambda_R'A_R0; A_X0]

(the X rows and columns of S, K_XR and F only for REML). S^-1 comes from one dpotri on L in place.
"""

from __future__ import annotations

import math

import numpy as np

from mmcli.lmm.criterion import Dof, criterion
from mmcli.lmm.factor import Factor, factor_parts, inverse_in_place
from mmcli.lmm.gram import Gram
from mmcli.lmm.results import _modes, _sparse_quadratic_blocks


def criterion_and_gradient(
    g: Gram, theta: np.ndarray, dof: Dof, work: np.ndarray | None = None
) -> tuple[float, np.ndarray]:
    """The profiled criterion at theta and its gradient (see the module docstring). Where the criterion is
    not finite (r^2 = 0), the gradient is zero. Scalar rest blocks take the route of :mod:`mmcli.lmm.crossed`
    (no S^-1, no K)."""
    if g.rest_scalar and g.qR:
        from mmcli.lmm.crossed import criterion_and_gradient_scalar

        return criterion_and_gradient_scalar(g, theta, dof, work)
    f, K, KXR = factor_parts(g, theta, work=work)
    value = criterion(f.logdetZ, f.logdetX, f.pwrss, dof)
    grad = np.zeros(theta.size)
    if not math.isfinite(value):
        return value, grad
    beta, uR, u0 = _modes(g, f)  # before S^-1 overwrites the factor
    v0, vR = _z_residual(g, f.templates, beta, uR, u0)
    Sinv = inverse_in_place(g, f.Lrest, dof.reml)
    H = _h_blocks(g, f, K, KXR, Sinv, dof.reml)
    u_blocks = _split(g, u0, uR)
    v_blocks = _split(g, v0, vR)
    return value, assemble(g, H, u_blocks, v_blocks, dof.resid / f.pwrss)


def assemble(
    g: Gram, H: list[np.ndarray], u_blocks: list[np.ndarray], v_blocks: list[np.ndarray], scale: float
) -> np.ndarray:
    """The gradient from each block's summed H, u and Z'(y - X beta - Z Lambda u), and n / r^2 (or (n-p) / r^2)."""
    grad = np.zeros(sum(ks.size for _, _, ks in g.block_maps))
    for (rows, cols, ks), Hb, ub, vb in zip(g.block_maps, H, u_blocks, v_blocks):
        VU = vb.T @ ub  # sum over levels of v_l u_l'
        grad[ks] = 2.0 * Hb[cols, rows] - 2.0 * scale * VU[rows, cols]
    return grad


def _split(g: Gram, x0: np.ndarray, xR: np.ndarray) -> list[np.ndarray]:
    """A vector over Z's columns as one (nlevels, p) array per block, in g.blocks' order."""
    out = []
    if g.first is not None:
        out.append(x0.reshape(g.first.nlevels, g.first.p))
    off = 0
    for b in g.rest:
        out.append(xR[off : off + b.q].reshape(b.nlevels, b.p))
        off += b.q
    return out


def _z_residual(
    g: Gram, Ts: list[np.ndarray], beta: np.ndarray, uR: np.ndarray, u0: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Z'(y - X beta - Z Lambda u), split into block 0 and the rest."""
    p = g.p
    bR = g.lambda_rest(g.rest_templates(Ts)) @ uR if g.qR else np.zeros(0)
    v0 = np.zeros(0)
    if g.first is not None:
        nl0, p0 = g.first.nlevels, g.first.p
        b0 = (u0.reshape(nl0, p0) @ Ts[0].T).reshape(nl0, p0, 1)
        v0 = g.AX0[-1, :] - g.AX0[:p, :].T @ beta - (g.A00 @ b0).ravel()
        if g.AR0 is not None:
            v0 -= g.AR0.T @ bR
    vR = np.zeros(0)
    if g.qR:
        vR = g.AXR[-1, :] - g.AXR[:p, :].T @ beta - g.ARR_csr @ bR
        if g.AR0 is not None and g.first is not None:
            vR -= g.AR0 @ (u0.reshape(g.first.nlevels, g.first.p) @ Ts[0].T).ravel()
    return v0, vR


def _h_blocks(g: Gram, f: Factor, K: np.ndarray, KXR: np.ndarray, Sinv: np.ndarray, reml: bool) -> list[np.ndarray]:
    """For each block, the sum over its levels of the level-diagonal blocks of H (pb x pb)."""
    qR, p = g.qR, g.p
    out = []
    rest = g.rest_templates(f.templates)
    if g.first is not None:
        out.append(_h_first(g, f, Sinv, rest, reml))
    if not qR:
        return out
    # E = [Lambda_R'K; K_XR] restricted to the columns of each block; H_RR's diagonal blocks = S^-1_R. E
    if g.rest_scalar:  # dense K (the scalar path of mmcli.lmm.crossed is the usual one)
        lam = g.lambda_rest_diag(rest)
        hd = np.einsum("ij,ij,j->i", Sinv[:qR, :qR], K, lam)
        if reml and p:
            hd += np.einsum("ix,xi->i", Sinv[:qR, qR : qR + p], KXR[:p, :])
        off = 0
        for b in g.rest:
            out.append(np.array([[hd[off : off + b.q].sum()]]))
            off += b.q
        return out
    LamR = g.lambda_rest(rest)
    E = np.asarray(LamR.T @ K)
    SE = Sinv[:qR, :qR]
    off = 0
    for b in g.rest:
        idx = off + np.arange(b.q).reshape(b.nlevels, b.p)
        Hb = np.zeros((b.p, b.p))
        for a in range(b.p):
            for c in range(b.p):
                ra, rc = idx[:, a], idx[:, c]
                val = np.einsum("lm,ml->", SE[ra, :], E[:, rc])
                if reml and p:
                    val += np.einsum("lx,xl->", Sinv[ra, qR : qR + p], KXR[:p, rc])
                Hb[a, c] = val
        out.append(Hb)
        off += b.q
    return out


def _h_first(g: Gram, f: Factor, Sinv: np.ndarray, rest: list[np.ndarray], reml: bool) -> np.ndarray:
    """Block 0: sum_j H_00,j with H_00,j = M_j^-1 Lambda_0'[A_00,j - G_j (I - W_j A_00,j)]."""
    assert g.first is not None
    nl0, p0, qR, p = g.first.nlevels, g.first.p, g.qR, g.p
    G = np.zeros((nl0, p0, p0))
    if qR and g.AR0 is not None:
        LamR = g.lambda_rest(rest)
        if g.rest_scalar:
            lam = g.lambda_rest_diag(rest)
            Q = Sinv[:qR, :qR] * lam[:, None] * lam[None, :]
        else:
            Q = np.asarray(LamR @ (LamR @ Sinv[:qR, :qR]).T)
        G += _sparse_quadratic_blocks(g.AR0.tocsc(), Q, nl0, p0)
        if reml and p:
            P = np.asarray(LamR @ Sinv[:qR, qR : qR + p])  # (qR, p)
            G += _cross_blocks(g, P, nl0, p0)
    if reml and p:
        AX = g.AX0[:p, :].reshape(p, nl0, p0)
        G += np.einsum("xja,xy,yjb->jab", AX, Sinv[qR : qR + p, qR : qR + p], AX, optimize=True)
    return h_first_from_g(g, f, G)


def h_first_from_g(g: Gram, f: Factor, G: np.ndarray) -> np.ndarray:
    """sum_j H_00,j = sum_j M_j^-1 Lambda_0'[A_00,j - G_j (I - W_j A_00,j)], from G_j = F_j'S^-1 F_j (nl0, p0, p0)."""
    assert g.first is not None
    p0, T0 = g.first.p, f.templates[0]
    A00 = g.A00
    if p0 == 1:
        a = A00[:, 0, 0]
        Minv = 1.0 / f.L00[:, 0, 0] ** 2
        h = Minv * T0[0, 0] * (a - G[:, 0, 0] * (1.0 - f.W[:, 0, 0] * a))
        return np.array([[h.sum()]])
    Linv = np.linalg.inv(f.L00)
    Minv = np.einsum("lki,lkj->lij", Linv, Linv)
    eye = np.eye(p0)
    inner = A00 - G @ (eye - f.W @ A00)
    H = Minv @ (T0.T @ inner)
    return H.sum(axis=0)


def _cross_blocks(g: Gram, P: np.ndarray, nl0: int, p0: int) -> np.ndarray:
    """Per level j of block 0: A_R0[:, j]' P A_X0[:, j] + its transpose, as (nl0, p0, p0)."""
    A = g.AR0.tocoo()  # type: ignore[union-attr]
    p = g.p
    AX = g.AX0[:p, :]  # (p, nl0 * p0)
    lev, a = A.col // p0, A.col % p0
    PA = P[A.row]  # (nnz, p)
    out = np.zeros(nl0 * p0 * p0)
    for b in range(p0):
        t = A.data * np.einsum("ix,xi->i", PA, AX[:, lev * p0 + b])
        out += np.bincount(lev * p0 * p0 + a * p0 + b, weights=t, minlength=nl0 * p0 * p0)
    X = out.reshape(nl0, p0, p0)
    return X + np.transpose(X, (0, 2, 1))
