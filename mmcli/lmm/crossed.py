"""Scalar crossed terms: the gradient and the conditional variances from L^-1, without S^-1 or K.

When every block after block 0 is a scalar term (crossed random intercepts: (1 | A) + (1 | B) + ...), Lambda_R is
diagonal and, with S_m the leading block of S over the rest columns (ML, m = qR) or the rest and X columns
(REML, m = qR + p), S_m^-1 S_m = I read on the diagonal gives, for each rest column i,

    lambda_i [ sum_j (S_m^-1)_ij K_ij lambda_j + sum_x (S_m^-1)_ix K_xi ] = 1 - (S_m^-1)_ii

so the rest blocks' part of H (mmcli.lmm.gradient) needs only the diagonal of S_m^-1: the squared column norms
of L_m^-1, L_m the leading block of the factor (Jacobi's formula as in Bates et al. 2015, eq. 34 differentiated;
for a scalar term d log|Omega| / d theta_k = 2 (q_k - tr (Omega^-1)_kk) / theta_k). Block 0 needs, per level j,
G_j = F_j' S_m^-1 F_j = ||L_m^-1 F_j||^2 with F = [Lambda_R A_R0; A_X0]. Both come from one triangular inverse
of the factor in place (LAPACK dtrtri, half the work of dpotri and no symmetric copy) read a panel of rows at a
time: L_m^-1 F is a sparse product per panel, never held whole.

The subtraction 1 - (S_m^-1)_ii loses digits as lambda_i -> 0 (S_m -> I); a block with 0 < lambda below
EXACT_BELOW takes the exact sum over its rows instead (its rows of S_m^-1 and of K). At lambda = 0 the
criterion is even in theta and that part of the gradient is zero.
"""

from __future__ import annotations

import dataclasses
import math
import weakref
from dataclasses import dataclass

import numpy as np

from mmcli.lmm._lazy import sla
from mmcli.lmm.criterion import Dof, criterion
from mmcli.lmm.factor import Factor, _target_rows_cols, factor_parts
from mmcli.lmm.gram import Gram, block_diagonal

EXACT_BELOW = 1e-3
"""A rest block whose lambda is below this (and above 0) takes the exact sum: the error of 1 - (S^-1)_ii is
about m * eps relative to 1, divided by lambda, so at 1e-3 it stays far below the optimizer's tolerance."""
PANEL = 128  # rows of L^-1 per panel
PANELS_BELOW = 1.0 / 45.0
"""L^-1 is read in panels (a sparse product, about nnz(A_R0) qR / 2 multiply-adds) rather than turned into S^-1 by
dlauum (qR^3 / 3, as BLAS-3) when nnz(A_R0) < PANELS_BELOW qR^2: on the 10,000 x 3,000 Zipf-like design (68,000
nonzeros) panels took 0.9 of the time in paired whole-process runs, on InstEval (qR = 1,142) dlauum was quicker."""


def criterion_and_gradient_scalar(
    g: Gram, theta: np.ndarray, dof: Dof, work: np.ndarray | None = None
) -> tuple[float, np.ndarray]:
    """The profiled criterion and its gradient for scalar rest blocks (see the module docstring); ``work`` as
    :func:`mmcli.lmm.factor.factor_parts`."""
    from mmcli.lmm.gradient import _split, _z_residual, assemble, h_first_from_g
    from mmcli.lmm.results import _modes

    f, _, _ = factor_parts(g, theta, keep_K=False, work=work)
    value = criterion(f.logdetZ, f.logdetX, f.pwrss, dof)
    if not math.isfinite(value):
        return value, np.zeros(theta.size)
    beta, uR, u0 = _modes(g, f)  # before L^-1 overwrites the factor
    v0, vR = _z_residual(g, f.templates, beta, uR, u0)
    lam = g.lambda_rest_diag(g.rest_templates(f.templates))
    m = g.qR + (g.p if dof.reml else 0)
    qR, p = g.qR, g.p
    LXX = np.array(f.Lrest[qR : qR + p, qR : qR + p])
    inv = selected_inverse(g, f.Lrest, m, lam)
    _LAST.pop(g, None)
    if inv.dR is not None and inv.GR is not None:
        small = dataclasses.replace(f, Lrest=np.zeros((0, 0)))  # the factor's memory now holds L^-1
        _LAST[g] = Evaluated(theta.tobytes(), small, beta, uR, u0, LXX, inv.dR, inv.GR)
    H = [h_first_from_g(g, f, inv.G)] if g.first is not None else []
    with np.errstate(divide="ignore", invalid="ignore"):
        hd = np.where(lam > 0, (1.0 - inv.d[: g.qR]) / lam, 0.0)
    off = 0
    for b in g.rest:
        lam_b = lam[off] if b.q else 0.0
        if 0.0 < lam_b < EXACT_BELOW:
            hd[off : off + b.q] = _exact_rows(g, f, inv, lam, np.arange(off, off + b.q))
        H.append(np.array([[hd[off : off + b.q].sum()]]))
        off += b.q
    grad = assemble(g, H, _split(g, u0, uR), _split(g, v0, vR), dof.resid / f.pwrss)
    return value, grad


@dataclass(frozen=True, eq=False)
class Evaluated:
    """What the results at theta read (:func:`mmcli.lmm.results.results_at`), kept by the last gradient
    evaluation: the factor's small parts (its Lrest is empty: that memory holds L^-1 and then the next
    evaluation's S), the modes, L_XX, and diag(S_RR^-1) and G_j = F_j' S_RR^-1 F_j, read off L^-1 on the way.
    The results at the optimizer's end then form no factor: the last evaluation was there."""

    key: bytes  # theta's bytes
    factor: Factor
    beta: np.ndarray
    uR: np.ndarray
    u0: np.ndarray
    LXX: np.ndarray
    dR: np.ndarray
    GR: np.ndarray


_LAST: weakref.WeakKeyDictionary[Gram, Evaluated] = weakref.WeakKeyDictionary()


def evaluated_at(g: Gram, theta: np.ndarray) -> Evaluated | None:
    """The kept record of the last gradient evaluation when it was at exactly this theta, else None."""
    kept = _LAST.get(g)
    return kept if kept is not None and kept.key == np.asarray(theta, dtype=float).tobytes() else None


def invert_factor(Lrest: np.ndarray, m: int) -> np.ndarray:
    """L^-1 with its leading m x m block equal to L_m^-1 (lower, C order): dtrtri on the whole factor in its own
    memory (the factor is not used after), or, when the trailing diagonal holds a zero (r = 0, a perfect fit),
    the inverse of a copy of the leading block."""
    N = Lrest.shape[0]
    if N and Lrest.flags.c_contiguous and np.all(np.diagonal(Lrest) > 0):
        inv, info = sla.lapack.dtrtri(Lrest.T, lower=0, overwrite_c=1)  # U = L' in Fortran order
        if info == 0:
            return np.asarray(inv.T)
    return np.linalg.inv(np.tril(Lrest[:m, :m])) if m else np.zeros((0, 0))


def diagonal_and_levels(
    g: Gram, Linv: np.ndarray, m: int, lam: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """d = diag(S_m^-1) (length m) and, per level j of block 0, G_j = F_j' S_m^-1 F_j (nl0, p0, p0), with
    F = [Lambda_R A_R0; A_X0] (the X rows when m > qR): panels of rows of Y = L_m^-1 F, each a sparse product;
    and the same two for S_RR^-1 (m = qR: L_RR^-1 is the leading block of L^-1), read on the way.
    A panel's rows of L^-1 are zero right of the panel, so it meets only the leading rows of A_R0; the product
    runs over the levels of block 0 (rows of A_R0'), each accumulating its own row of the panel of Y'."""
    qR = g.qR
    d = np.zeros(m)
    first = g.first
    G = np.zeros((first.nlevels, first.p, first.p) if first is not None else (0, 0, 0))
    A = FX = None
    if first is not None and g.AR0 is not None:
        A = g.AR0.tocsr()
        FX = g.AX0[: m - qR, :]
    dR, GR = d, G
    for r0 in _panel_starts(m, qR):
        r1 = min(r0 + PANEL, m) if r0 >= qR else min(r0 + PANEL, qR)
        panel = Linv[r0:r1, :r1]
        d[:r1] += np.einsum("ri,ri->i", panel, panel)
        if A is None or FX is None or first is None:
            continue
        c1 = min(r1, qR)
        P = panel[:, :c1].T * lam[:c1, None]  # (Lambda_R L^-1 panel')[:c1], C order
        Yt = np.asarray(A[:c1].T.tocsr() @ P)  # (nl0 p0, rows): this panel of Y'
        if r1 > qR:
            Yt += FX[: r1 - qR].T @ panel[:, qR:r1].T
        if first.p == 1:
            G[:, 0, 0] += np.einsum("jr,jr->j", Yt, Yt)
        else:
            Y3 = Yt.reshape(first.nlevels, first.p, -1)
            G += np.einsum("jar,jbr->jab", Y3, Y3)
        if r1 == qR < m:  # S_RR^-1's part (the results read it): before the X rows add theirs
            dR, GR = d[:qR].copy(), G.copy()
    return d, G, dR[:qR], GR


def _panel_starts(m: int, qR: int) -> list[int]:
    """The first rows of the panels of L^-1: PANEL rows each, one panel ending at qR (S_RR^-1 is then read
    off on the way, as S_m^-1 is at the end)."""
    return [*range(0, min(m, qR), PANEL), *range(qR, m, PANEL)]


def _exact_rows(g: Gram, f: Factor, inv: SelectedInverse, lam: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """hd_i = sum_j (S_m^-1)_ij K_ij lambda_j + sum_x (S_m^-1)_ix K_xi for the rest columns idx, from their rows
    of S_m^-1 and of K = A_RR - A_R0 W A_R0' (K_XR likewise): no subtraction from 1."""
    qR, p, m = g.qR, g.p, inv.m
    Srows = inv.rows(idx)  # (len(idx), m)
    Krows = g.ARR_csr[idx].toarray()
    if g.first is not None and g.AR0 is not None:
        WA = block_diagonal(f.W) @ g.AR0.T
        Krows -= (g.AR0[idx] @ WA).toarray()
    hd = np.einsum("ij,ij,j->i", Srows[:, :qR], Krows, lam)
    if m > qR:
        KXR = g.AXR[:p, idx]
        if g.first is not None and g.AR0 is not None:
            nl0, p0 = g.first.nlevels, g.first.p
            AXW = np.einsum("alj,ljk->alk", g.AX0[:p].reshape(p, nl0, p0), f.W).reshape(p, nl0 * p0)
            KXR = KXR - np.asarray((g.AR0[idx] @ AXW.T).T)
        hd += np.einsum("ix,xi->i", Srows[:, qR:m], KXR)
    return np.asarray(hd)


@dataclass(frozen=True, eq=False)
class SelectedInverse:
    """What the scalar path reads of S_m^-1: its diagonal d (m), G_j = F_j' S_m^-1 F_j per level of block 0
    (nl0, p0, p0), possibly the same two for m = qR, and whole rows on demand, from the lower triangle C of
    S_N^-1 less T'T (T the trailing rows of L^-1), or from L_m^-1 itself."""

    m: int
    d: np.ndarray
    G: np.ndarray
    C: np.ndarray | None = None
    T: np.ndarray | None = None
    Linv: np.ndarray | None = None
    dR: np.ndarray | None = None  # d and G of S_RR^-1 (m = qR), when read on the way (the panels)
    GR: np.ndarray | None = None

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """S_m^-1[idx, :m]."""
        m = self.m
        if self.C is None or self.T is None:
            assert self.Linv is not None
            Lm = self.Linv[:m, :m]
            return np.asarray(Lm[:, idx].T @ Lm)
        C, T = self.C, self.T
        out = C[idx, :m] + C[:m, idx].T  # lower (j <= i) and upper (j >= i) halves of the symmetric rows
        out[np.arange(idx.size), idx] -= C[idx, idx]
        return np.asarray(out - T[:, idx].T @ T[:, :m])


def selected_inverse(g: Gram, Lrest: np.ndarray, m: int, lam: np.ndarray) -> SelectedInverse:
    """S_m^-1's diagonal and G (see :class:`SelectedInverse`), consuming the factor. With the precomputed pairs:
    L^-1 by dtrtri, then L^-T L^-1 by dlauum, both in place (BLAS-3, a third of n^3 each); G then reads S^-1 at
    the pairs' targets (one sparse product, transposed) and, for heavy levels, one dense product. Without them,
    or when A_R0 is sparse enough (PANELS_BELOW): L^-1 read in panels (:func:`diagonal_and_levels`)."""
    Linv = invert_factor(Lrest, m)
    panels = g.AR0 is not None and g.AR0.nnz < PANELS_BELOW * g.qR**2
    if g.pairs is None or g.first is None or not Linv.flags.c_contiguous or panels:
        d, G, dR, GR = diagonal_and_levels(g, Linv, m, lam)
        return SelectedInverse(m, d, G, Linv=Linv, dR=dR, GR=GR)
    from mmcli.lmm.gradient import _cross_blocks

    qR, N = g.qR, Linv.shape[0]
    nl0, p0 = g.first.nlevels, g.first.p
    T = np.array(Linv[m:, :m])
    C = np.asarray(sla.lapack.dlauum(Linv.T, lower=0, overwrite_c=1)[0]).T  # lower: S_N^-1 (Linv's memory)
    diagC = np.diagonal(C)[:m]
    d = diagC - np.einsum("ki,ki->i", T, T)
    r, c, _ = _target_rows_cols(g, N)
    x = (C[r, c] - np.einsum("kt,kt->t", T[:, r], T[:, c])) * lam[r] * lam[c]
    x[r == c] *= 0.5  # the pairs hold each level's products once, diagonal ones included
    half = np.asarray(g.pairs.T @ x).reshape(nl0, p0, p0)
    G = half + np.transpose(half, (0, 2, 1))
    if g.heavy.size:  # v' S^-1 v = 2 v' Low v - v' diag v, Low the lower triangle of C, less the T part
        V = g.heavy_Z * lam[:, None]
        LV = np.empty_like(V)
        for r0 in range(0, qR, 512):
            r1 = min(r0 + 512, qR)
            LV[r0:r1] = C[r0:r1, :r1] @ V[:r1]
        TV = T[:, :qR] @ V
        G[g.heavy, 0, 0] += (
            2.0 * np.einsum("rh,rh->h", V, LV) - np.einsum("r,rh->h", diagC[:qR], V * V) - np.einsum("kh,kh->h", TV, TV)
        )
    if m > qR:  # REML: the X rows of F
        p = m - qR
        TX = T[:, qR:m]
        SXR = C[qR:m, :qR] - TX.T @ T[:, :qR]
        low = np.tril(C[qR:m, qR:m])
        SXX = low + np.tril(low, -1).T - TX.T @ TX
        G += _cross_blocks(g, SXR.T * lam[:, None], nl0, p0)
        AX = g.AX0[:p, :].reshape(p, nl0, p0)
        G += np.einsum("xja,xy,yjb->jab", AX, SXX, AX, optimize=True)
    return SelectedInverse(m, d, G, C=C, T=T)
