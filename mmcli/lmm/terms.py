"""Random-effects terms, the layout of theta, and the blocks of Z by grouping factor.

Lambda(theta) is block diagonal: a term ``(x1 + x2 | g)`` contributes one lower-triangular p x p template,
repeated for every level of g. theta lists each template's lower triangle column by column; diagonal
entries are bounded below by 0 and the start is the identity (Bates et al. 2015, section 2.2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mmcli.lmm._lazy import sp

if TYPE_CHECKING:
    import scipy.sparse


@dataclass(frozen=True, eq=False)
class ReTerm:
    """One random-effects term, such as ``(1 + Days | Subject)``.

    ``Z`` is n x (nlevels * p) with columns level-major: level j owns columns j*p .. j*p + p - 1.
    ``indicator`` says that every row is nonzero in one level only (a grouping factor), so that Z'Z is
    block diagonal by level; such a term keeps the level of each row (``codes``) and the row's p template
    columns (``T``), and Z is built only when needed. A smooth's random part (one variance for many
    columns) is a general term with Z given.
    """

    group: str
    names: tuple[str, ...]
    levels: tuple[str, ...]
    Z: scipy.sparse.csc_matrix | None = None
    indicator: bool = True
    codes: np.ndarray | None = None
    T: np.ndarray | None = None

    def zmat(self) -> scipy.sparse.csc_matrix:
        if self.Z is not None:
            return self.Z
        assert self.codes is not None and self.T is not None
        return indicator_z(self.codes, self.T, self.nlevels)

    @property
    def p(self) -> int:
        return len(self.names)

    @property
    def nlevels(self) -> int:
        return len(self.levels)

    @property
    def ntheta(self) -> int:
        return self.p * (self.p + 1) // 2

    def template_positions(self) -> list[tuple[int, int]]:
        """(row, col) of each theta entry in the p x p lower-triangular template, column by column."""
        return [(i, j) for j in range(self.p) for i in range(j, self.p)]


def indicator_term(group: str, names: Sequence[str], codes: np.ndarray, levels: Sequence[str], T: np.ndarray) -> ReTerm:
    """A grouping-factor term from level codes (n,) and the per-row template columns T (n, p)."""
    n = codes.shape[0]
    T = np.asarray(T, dtype=float).reshape(n, -1)
    return ReTerm(group=group, names=tuple(names), levels=tuple(levels), codes=np.asarray(codes), T=T, indicator=True)


def general_term(group: str, name: str, Z: np.ndarray | scipy.sparse.spmatrix) -> ReTerm:
    """A term with one variance for all columns of Z (a smooth's penalized part: b ~ N(0, sigma^2 theta^2 I))."""
    Zs = sp.csc_matrix(Z)
    levels = tuple(str(j + 1) for j in range(Zs.shape[1]))
    return ReTerm(group=group, names=(name,), levels=levels, Z=Zs, indicator=False)


def indicator_z(codes: np.ndarray, T: np.ndarray, nlevels: int) -> scipy.sparse.csc_matrix:
    """Z of an indicator term: row i holds T[i] in the columns of level codes[i] (level-major)."""
    n, p = T.shape
    indptr = np.arange(0, n * p + 1, p)
    indices = (codes[:, None] * p + np.arange(p)[None, :]).ravel()
    return sp.csr_matrix((np.ascontiguousarray(T).ravel(), indices, indptr), shape=(n, nlevels * p)).tocsc()


# --------------------------------------------------------------------------------------------------
# theta
# --------------------------------------------------------------------------------------------------


def theta_offsets(terms: Sequence[ReTerm]) -> tuple[int, ...]:
    """Where each term's entries start in theta."""
    return tuple(int(v) for v in np.cumsum([0] + [t.ntheta for t in terms[:-1]])) if terms else ()


def lower_bounds(terms: Sequence[ReTerm]) -> np.ndarray:
    """0 for a template's diagonal entries, -inf for the others."""
    return np.array([0.0 if i == j else -np.inf for t in terms for i, j in t.template_positions()])


def start_theta(terms: Sequence[ReTerm]) -> np.ndarray:
    """The identity templates: lme4's start."""
    return np.array([1.0 if i == j else 0.0 for t in terms for i, j in t.template_positions()])


def templates(terms: Sequence[ReTerm], theta: np.ndarray) -> list[np.ndarray]:
    """The p x p lower-triangular template of each term at theta."""
    out = []
    for t, k in zip(terms, theta_offsets(terms)):
        T = np.zeros((t.p, t.p))
        for m, (i, j) in enumerate(t.template_positions()):
            T[i, j] = theta[k + m]
        out.append(T)
    return out


# --------------------------------------------------------------------------------------------------
# blocks: terms on one grouping factor amalgamated (MixedModels.jl)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Block:
    """Terms sharing one grouping factor, with a pb x pb block template per level. Indicator blocks keep the
    level codes and template columns; a general block keeps its Z."""

    terms: tuple[int, ...]  # indices into the model's terms
    nlevels: int
    p: int
    indicator: bool
    offsets: tuple[int, ...]  # start of each term's columns inside the block template
    codes: np.ndarray | None = None
    T: np.ndarray | None = None
    Zgiven: scipy.sparse.csc_matrix | None = None

    @property
    def Z(self) -> scipy.sparse.csc_matrix:
        if self.Zgiven is not None:
            return self.Zgiven
        assert self.codes is not None and self.T is not None
        return indicator_z(self.codes, self.T, self.nlevels)

    @property
    def q(self) -> int:
        return self.nlevels * self.p


def make_blocks(terms: Sequence[ReTerm]) -> list[Block]:
    """Amalgamate indicator terms on the same factor; the indicator block with most levels first (its part
    of Omega is block diagonal), then the rest (their order does not change the result)."""
    groups: dict[tuple, list[int]] = {}
    for i, t in enumerate(terms):
        key = ("ind", t.group, t.levels) if t.indicator else ("gen", i)
        groups.setdefault(key, []).append(i)
    blocks = []
    for idx in groups.values():
        ts = [terms[i] for i in idx]
        p = sum(t.p for t in ts)
        offsets = tuple(int(x) for x in np.cumsum([0] + [t.p for t in ts[:-1]]))
        if ts[0].indicator and all(t.codes is not None and t.T is not None for t in ts):
            T = ts[0].T if len(ts) == 1 else np.column_stack([t.T for t in ts if t.T is not None])
            blocks.append(Block(tuple(idx), ts[0].nlevels, p, True, offsets, codes=ts[0].codes, T=T))
        else:
            blocks.append(Block(tuple(idx), ts[0].nlevels, p, ts[0].indicator, offsets, Zgiven=ts[0].zmat().tocsc()))
    blocks.sort(key=lambda b: (not b.indicator, -b.q))
    return blocks
