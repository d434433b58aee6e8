"""The fixed terms of a model and lmerTest's contrast matrices for its type III (and, with one term, type I)
F tests (Kuznetsova, Brockhoff & Christensen 2017, section 4; lmerTest's get_contrasts_type3).

For treatment coding, lmerTest expresses the columns of the 'complete' design (every term coded with all its
levels, as R's model.matrix(~ 0 + term)) in the columns of X: L = zapsmall((X^+ rdX)'). The part of L of each
term is then made orthogonal (least squares over the rows of L) to the parts of the terms that contain it,
higher-order terms first; a term contains another when it has all its variables and more, and the same numeric
ones ('marginality-respecting'). The rows of L named as the columns of X, transposed per term, are the
contrasts. A model with one term, or one column, gets the type I contrasts of the Doolittle decomposition
of X'X instead (lmerTest does the same), rows of R / diag(R) with X'X = R'R.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from mmcli.fixed import FixedPart

_PLACEHOLDER = re.compile(r"mmcliv(\d+)(?:s(\d+))?_")


@dataclass(frozen=True, eq=False)
class FixedTerm:
    """One term of the fixed part: its R label, its columns of X (by name), its variables and which of those are
    numeric, and its columns in the complete design (named as R names them)."""

    label: str
    columns: tuple[str, ...]
    variables: tuple[str, ...]
    numerics: frozenset[str]
    rd_names: tuple[str, ...]
    rd: np.ndarray


def fixed_terms(fixed: FixedPart, frame: pd.DataFrame, X: np.ndarray) -> list[FixedTerm]:
    """The terms of the fixed part (the intercept left out), with their complete-design columns."""
    if fixed.plain is not None:
        off = 1 if fixed.intercept else 0
        return [
            FixedTerm(nm, (nm,), (nm,), frozenset([nm]), (nm,), X[:, [i + off]])
            for i, nm in enumerate(fixed.names[off:])
        ]
    groups: dict[tuple[int, ...], list[int]] = {}
    for term, idx in fixed.spec.term_indices.items():
        vars_ = tuple(dict.fromkeys(int(m.group(1)) for f in term.factors for m in _PLACEHOLDER.finditer(str(f))))
        if vars_:
            groups.setdefault(vars_, []).extend(idx)
    out = []
    for vars_, idx in groups.items():
        vs = [fixed.variables[i] for i in vars_]
        names, block = [""], np.ones((len(frame), 1))
        for v in vs:  # R's model.matrix(~ 0 + a:b): the first variable varies fastest
            vn, vb = _variable_columns(v, frame)
            names = [f"{b}:{a}" if b else a for a in vn for b in names]
            block = np.einsum("ij,ik->ijk", vb, block).reshape(len(frame), -1)
        out.append(
            FixedTerm(
                label=":".join(v.label for v in vs),
                columns=tuple(fixed.names[j] for j in idx),
                variables=tuple(v.label for v in vs),
                numerics=frozenset(v.label for v in vs if not v.categorical),
                rd_names=tuple(names),
                rd=block,
            )
        )
    return out


def _variable_columns(v: object, frame: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    """A variable's columns coded with all its levels: indicators of a factor, the values of a numeric one."""
    label: str = v.label  # type: ignore[attr-defined]
    cols = v.columns(frame, fitting=False)  # type: ignore[attr-defined]
    if v.categorical:  # type: ignore[attr-defined]
        levels = list(v.levels)  # type: ignore[attr-defined]
        codes = np.asarray(cols[0][1].codes)
        return [label + lvl for lvl in levels], (codes[:, None] == np.arange(len(levels))[None, :]).astype(float)
    return [label + s for s, _ in cols], np.column_stack([np.asarray(c, dtype=float) for _, c in cols])


def zapsmall(x: np.ndarray, digits: int = 7) -> np.ndarray:
    """R's zapsmall: round to `digits` significant digits of the largest absolute entry."""
    mx = float(np.max(np.abs(x))) if x.size else 0.0
    d = max(0, digits - math.ceil(math.log10(mx))) if mx > 0 else digits
    return np.round(x, d)


def contrasts(
    X: np.ndarray, xnames: list[str], terms: list[FixedTerm], intercept: bool
) -> list[tuple[str, np.ndarray]]:
    """Each term's type III contrast matrix (k x p) on the columns ``xnames`` of X (see the module's docstring)."""
    p = X.shape[1]
    pos = {nm: i for i, nm in enumerate(xnames)}
    cols = {t.label: [pos[c] for c in t.columns if c in pos] for t in terms}
    if p <= 1 or len(terms) <= 1:
        R = np.linalg.cholesky(X.T @ X).T
        U = R / np.diag(R)[:, None]
        U[np.abs(U) < 1e-6] = 0.0
        return [(t.label, U[cols[t.label]]) for t in terms]
    rd_names = (["(Intercept)"] if intercept else []) + [nm for t in terms for nm in t.rd_names]
    rd = np.column_stack(([np.ones(X.shape[0])] if intercept else []) + [t.rd for t in terms])
    coef = np.linalg.lstsq(X, rd, rcond=None)[0]
    L = zapsmall(coef.T)  # rows: complete-design columns; columns: X's
    order = sorted(terms, key=lambda t: len(t.variables), reverse=True)
    for t in order:
        contains = [
            u.label
            for u in terms
            if set(t.variables) < set(u.variables) and t.numerics == u.numerics and u.label != t.label
        ]
        if not contains or not cols[t.label]:
            continue
        B = L[:, [j for u in contains for j in cols[u]]]
        Y = L[:, cols[t.label]]
        L[:, cols[t.label]] = zapsmall(Y - B @ np.linalg.lstsq(B, Y, rcond=None)[0])
    rows = {nm: i for i, nm in enumerate(rd_names)}
    Lx = L[[rows[nm] for nm in xnames]]
    out = []
    for t in terms:
        C = Lx[:, cols[t.label]].T
        out.append((t.label, C[np.sum(np.abs(C), axis=1) > 1e-8]))
    return out
