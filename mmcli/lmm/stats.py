"""The sufficient statistics of an LMM, summed over chunks of rows, and the model built from them alone.

The profiled criterion needs the data only through the Gram matrix of [Z X y] (Bates et al. 2015, section 3):
X'X, X'y, y'y, the per-level blocks Z_0'Z_0 and [X y]'Z_0 of the first grouping factor, and for the other
factors Z_R'Z_R, [X y]'Z_R and the level pair counts Z_R'Z_0. Each is a sum over rows, so it can be computed
chunk by chunk (on the workers of a cluster) and the chunks' sums added; memory is bounded by the number of
levels, not of rows. Two passes over the rows give exactly the working parametrization of
:mod:`mmcli.lmm.transform`:

1. :func:`first_pass`: n, the R of X = QR (TSQR: R of the stacked chunk R's, so aliased columns and the
   conditioning transform M are decided as in memory), X'X and X'(y - o) for the centring coefficients b0,
   max |y - o|, the sums of squares of the template columns (their scaling), sum(log w);
2. :func:`second_pass`, with M, b0 and the template scales: the Gram blocks of the working columns
   [X M, y - o - X M b0] and the sums that give the response scale s, by which y's row and column are divided.

All rows are multiplied by sqrt(w) first (prior weights), as in memory. :class:`StatsModel` is the core's
:class:`~mmcli.lmm.model.LmmModel` on such a Gram matrix: the same optimizer and the same results, except
what needs the rows (fitted values and residuals), which it leaves empty.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mmcli.errors import DataError, ModelError
from mmcli.lmm._lazy import sp
from mmcli.lmm.gram import Gram, _cross, _indicator_grams
from mmcli.lmm.model import LmmModel, check_terms
from mmcli.lmm.rank import aliased_columns_r
from mmcli.lmm.terms import ReTerm, indicator_term, make_blocks
from mmcli.lmm.transform import Working, _x_transform, scale_from_sums


@dataclass(frozen=True, eq=False)
class Chunk:
    """Rows of a model: X (all its columns), y minus the offset, prior weights, and per random-effects term
    (in the model's order) the level codes and the template columns T."""

    X: np.ndarray
    y: np.ndarray
    w: np.ndarray | None
    codes: list[np.ndarray]
    T: list[np.ndarray]


@dataclass(frozen=True, eq=False)
class FirstPass:
    n: int
    R: np.ndarray  # R of X = QR (p x p)
    Rw: np.ndarray  # R of sqrt(w) X
    XtX: np.ndarray  # of sqrt(w) X
    Xty: np.ndarray  # (sqrt(w) X)'(sqrt(w) (y - o))
    ymax: float
    tsq: list[np.ndarray]  # per term, the sums of squares of sqrt(w) T's columns
    log_w: float


def _r_of(A: np.ndarray) -> np.ndarray:
    p = A.shape[1]
    R = np.asarray(np.linalg.qr(A, mode="r")) if A.shape[0] else np.zeros((0, p))
    return np.vstack([R, np.zeros((max(p - R.shape[0], 0), p))])[:p]


def first_pass(c: Chunk) -> FirstPass:
    """The first pass's sums over one chunk."""
    sw = None if c.w is None else np.sqrt(c.w)
    Xw = c.X if sw is None else c.X * sw[:, None]
    yw = c.y if sw is None else c.y * sw
    Tw = c.T if sw is None else [T * sw[:, None] for T in c.T]
    return FirstPass(
        n=c.y.size,
        R=_r_of(c.X),
        Rw=_r_of(Xw),
        XtX=Xw.T @ Xw,
        Xty=Xw.T @ yw,
        ymax=float(np.max(np.abs(yw))) if yw.size else 0.0,
        tsq=[np.einsum("ij,ij->j", T, T) for T in Tw],
        log_w=float(np.sum(np.log(c.w))) if c.w is not None else 0.0,
    )


def add_first(a: FirstPass, b: FirstPass) -> FirstPass:
    return FirstPass(
        n=a.n + b.n,
        R=_r_of(np.vstack([a.R, b.R])),
        Rw=_r_of(np.vstack([a.Rw, b.Rw])),
        XtX=a.XtX + b.XtX,
        Xty=a.Xty + b.Xty,
        ymax=max(a.ymax, b.ymax),
        tsq=[x + y for x, y in zip(a.tsq, b.tsq)],
        log_w=a.log_w + b.log_w,
    )


@dataclass(frozen=True, eq=False)
class Setup:
    """What the first pass decides, sent to every chunk for the second: the kept columns of X, M, b0 and the
    template scales (see :mod:`mmcli.lmm.transform`), and each term's number of levels."""

    keep: np.ndarray
    drop: np.ndarray
    M: np.ndarray | None
    b0: np.ndarray
    tscale: list[np.ndarray | None]
    groups: list[str]  # each term's grouping factor: terms on one factor form one block, as in memory
    nlevels: list[int]
    log_w: float
    n: int


def setup(fp: FirstPass, groups: Sequence[str], nlevels: Sequence[int], weighted: bool) -> Setup:
    """Aliased columns (on X), M (on sqrt(w) X's kept columns), b0 and the template scales, as
    :func:`mmcli.lmm.transform.prepare` decides them from the rows."""
    keep, drop, RX = aliased_columns_r(fp.R)
    RX = aliased_columns_r(fp.Rw[:, keep])[2] if weighted else RX[:, keep]
    M = _x_transform(np.zeros((0, keep.size)), RX, False)
    G, g = fp.XtX[np.ix_(keep, keep)], fp.Xty[keep]
    if M is not None:
        G, g = M.T @ G @ M, M.T @ g
    tscale: list[np.ndarray | None] = []
    for s in fp.tsq:
        rms = np.sqrt(s / fp.n)
        c = np.where((rms > 0) & ((rms < 1e-2) | (rms > 1e2)), rms, 1.0)
        tscale.append(None if np.all(c == 1.0) else c)
    b0 = _least_squares(G, g, fp.ymax)
    return Setup(keep, drop, M, b0, tscale, list(groups), list(nlevels), fp.log_w, fp.n)


def _least_squares(G: np.ndarray, g: np.ndarray, ymax: float) -> np.ndarray:
    """The rough coefficients of transform._least_squares, from X'X and X'y."""
    if G.shape[0] == 0:
        return np.zeros(0)
    ymax = ymax or 1.0
    c = np.sqrt(np.diag(G)).copy()
    c[c == 0] = 1.0
    b, *_ = np.linalg.lstsq(G / np.outer(c, c), g / ymax / c, rcond=None)
    return np.asarray(b / c * ymax)


@dataclass(frozen=True, eq=False)
class SecondPass:
    n: int
    ysum: float  # of y1 = sqrt(w)(y - o) - X~ b0
    ysq: float
    ymax: float
    AXX: np.ndarray
    A00: np.ndarray
    AX0: np.ndarray
    ARR: sp.csr_matrix | None
    AXR: np.ndarray
    AR0: sp.csr_matrix | None


def _working_terms(st: Setup, c: Chunk, sw: np.ndarray | None) -> list[ReTerm]:
    out = []
    for k, (codes, T) in enumerate(zip(c.codes, c.T)):
        Tw = T if sw is None else T * sw[:, None]
        if st.tscale[k] is not None:
            Tw = Tw / st.tscale[k]
        names = [f"c{j}" for j in range(T.shape[1])]
        out.append(indicator_term(st.groups[k], names, codes, [""] * st.nlevels[k], Tw))
    return out


def second_pass(st: Setup, c: Chunk) -> SecondPass:
    """The Gram blocks of one chunk in the working parametrization (before y is divided by s)."""
    sw = None if c.w is None else np.sqrt(c.w)
    X = c.X[:, st.keep]
    if sw is not None:
        X = X * sw[:, None]
    if st.M is not None:
        X = X @ st.M
    y = (c.y if sw is None else c.y * sw) - X @ st.b0
    blocks = make_blocks(_working_terms(st, c, sw))
    first = blocks[0] if blocks and blocks[0].indicator else None
    rest = blocks[1:] if first is not None else blocks
    if first is not None:
        assert first.codes is not None and first.T is not None
        A00, AX0 = _indicator_grams(first.codes, first.T, first.nlevels, X, y)
    else:
        A00, AX0 = np.zeros((0, 0, 0)), np.zeros((X.shape[1] + 1, 0))
    ARR = AR0 = None
    AXR = np.zeros((X.shape[1] + 1, 0))
    if rest:
        ZR = sp.hstack([b.Z for b in rest]).tocsc()
        ARR = (ZR.T @ ZR).tocsr()
        AXR = np.vstack([np.asarray((ZR.T @ X).T).reshape(X.shape[1], -1), ZR.T @ y])
        if first is not None:
            AR0 = (ZR.T @ first.Z).tocsr()
    return SecondPass(
        n=y.size,
        ysum=float(y.sum()),
        ysq=float(y @ y),
        ymax=float(np.max(np.abs(y))) if y.size else 0.0,
        AXX=_cross(X, y),
        A00=A00,
        AX0=AX0,
        ARR=ARR,
        AXR=AXR,
        AR0=AR0,
    )


def add_second(a: SecondPass, b: SecondPass) -> SecondPass:
    def plus(u: sp.csr_matrix | None, v: sp.csr_matrix | None) -> sp.csr_matrix | None:
        return v if u is None else u if v is None else (u + v).tocsr()

    return SecondPass(
        n=a.n + b.n,
        ysum=a.ysum + b.ysum,
        ysq=a.ysq + b.ysq,
        ymax=max(a.ymax, b.ymax),
        AXX=a.AXX + b.AXX,
        A00=a.A00 + b.A00,
        AX0=a.AX0 + b.AX0,
        ARR=plus(a.ARR, b.ARR),
        AXR=a.AXR + b.AXR,
        AR0=plus(a.AR0, b.AR0),
    )


def response_scale(sp2: SecondPass) -> float:
    """s of transform._response_scale from the sums: the standard deviation of y1 (its largest magnitude when
    constant)."""
    m = sp2.ymax
    if not (m > 0 and np.isfinite(m)):
        return 1.0
    return scale_from_sums(sp2.n, sp2.ysum / m, sp2.ysq / (m * m), m)


class StatsModel(LmmModel):
    """:class:`~mmcli.lmm.model.LmmModel` on a Gram matrix summed over chunks (no rows held): the same
    criterion, optimizer and results; ``fitted`` and ``residuals`` of its fit are empty."""

    def __init__(self, terms: Sequence[ReTerm], xnames: Sequence[str], st: Setup, sp2: SecondPass):
        n = self.n = st.n
        self.weights = None
        self.dropped_columns = tuple(xnames[i] for i in st.drop)
        self.xnames = tuple(xnames[i] for i in st.keep)
        self.p = p = st.keep.size
        check_terms(terms, n)
        npar = p + sum(t.ntheta for t in terms) + 1
        if n <= npar:
            raise ModelError(f"{n} observations are too few for the model's {npar} parameters.")
        self.terms = list(terms)
        s = response_scale(sp2)
        if not 1e-153 < s < 1e153:
            raise DataError(
                f"The response varies on a scale of {s:.3g}: its variance cannot be represented in double "
                "precision. Rescale the response (divide it by a power of ten) and fit again."
            )
        AXX, AX0, AXR = sp2.AXX.copy(), sp2.AX0.copy(), sp2.AXR.copy()
        AXX[-1, :] /= s
        AXX[:, -1] /= s
        AX0[-1, :] /= s
        AXR[-1, :] /= s
        wterms = [
            t if c is None else dataclasses.replace(t, T=t.T / c)  # type: ignore[operator]
            for t, c in zip(terms, st.tscale)
        ]
        self.work = Working(
            X=np.zeros((0, p)),
            y=np.zeros(0),
            terms=wterms,
            user_terms=list(terms),
            M=st.M,
            tscale=st.tscale,
            b0=st.b0,
            s=s,
            sqrtw=None,
            offset=None,
            log_w_sum=st.log_w,
        )
        ARR = sp2.ARR if sp2.ARR is not None else np.zeros((0, 0))  # kept sparse by the Gram matrix
        self._gram = Gram.from_parts(wterms, n, AXX, sp2.A00, AX0, ARR, AXR, sp2.AR0)
        self._dense = None


def rowless_term(group: str, names: Sequence[str], levels: Sequence[str]) -> ReTerm:
    """A grouping-factor term that holds its levels and columns but no rows (for :class:`StatsModel`)."""
    codes, T = np.zeros(0, dtype=np.int32), np.zeros((0, len(names)))
    return ReTerm(group=group, names=tuple(names), levels=tuple(levels), codes=codes, T=T, indicator=True)
