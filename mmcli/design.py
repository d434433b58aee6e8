"""Model spec + data columns -> y, X with R's column names, and the random-effects terms in lme4's order."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from mmcli.data import level_order
from mmcli.errors import DataError, ModelError
from mmcli.formula import NAME, ModelSpec, RandomTerm
from mmcli.lmm import ReTerm, indicator_term

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True, eq=False)
class Design:
    XY: np.ndarray  # [X y] in one array: the core reads it in place
    xnames: list[str]
    terms: list[ReTerm]  # lme4's order
    specs: list[RandomTerm]  # the formula term behind each entry of ``terms``
    notes: list[str] = field(default_factory=list)

    @property
    def X(self) -> np.ndarray:
        return self.XY[:, :-1]

    @property
    def y(self) -> np.ndarray:
        return self.XY[:, -1]

    @property
    def ngroups(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.terms:
            if t.indicator:
                out.setdefault(t.group, t.nlevels)
        return out


def categorical_columns(spec: ModelSpec, frame: pd.DataFrame, factors: set[str]) -> set[str]:
    """Columns treated as factors in the fixed part: --factor columns and text columns (as R does)."""
    import pandas as pd

    out = set(factors)
    for c in frame.columns:
        if not pd.api.types.is_numeric_dtype(frame[c].dtype):  # text (object, pandas 3's str) or category
            out.add(c)
    return out


def response(frame: pd.DataFrame, name: str) -> np.ndarray:
    """The response as floats; a constant one is an error (there is no variance to split into components)."""
    y = frame[name].to_numpy(dtype=float)
    if y.size and np.all(y == y[0]):
        raise DataError(
            f"The response '{name}' is constant (every value is {y[0]:g}): there is nothing to model. "
            "Check that the right column is named as the response."
        )
    return y


_BRACKET = re.compile(r"\[(?:T\.)?(.*?)\]")


def r_name(col: str) -> str:
    """formulaic's column name -> R's: ``recipe[T.B]:temperature[T.185]`` -> ``recipeB:temperature185``."""
    if col == "Intercept":
        return "(Intercept)"
    return _BRACKET.sub(lambda m: m.group(1), col.replace("`", "").replace(" ** ", "^"))


def model_matrix(rhs: str, frame: pd.DataFrame, cats: set[str], extra: int = 0) -> tuple[np.ndarray, list[str]]:
    """The fixed-effects (or random-term) model matrix of a right-hand side, with R's column names.
    ``extra`` trailing columns are left for the caller to fill (the response, without a copy of X)."""
    rhs = rhs.strip()
    n = len(frame)
    parts: list[str]
    if rhs in ("1", "1 + 1"):
        parts, intercept = [], True
    elif rhs in ("0", "-1", "0 + 1 - 1", "- 1"):
        parts, intercept = [], False
    else:
        parts = [p.strip() for p in rhs.split("+")]
        intercept = True
        if parts and parts[0] == "0":
            intercept, parts = False, parts[1:]
        elif parts and parts[0] == "1":
            parts = parts[1:]
    # plain numeric columns: no formula library needed (the common case, and the large-data one)
    if all(NAME.match(p) and p in frame.columns and p not in cats for p in parts):
        names = (["(Intercept)"] if intercept else []) + parts
        out = np.empty((n, len(names) + extra))
        for i, nm in enumerate(names):
            out[:, i] = 1.0 if nm == "(Intercept)" else frame[nm].to_numpy(dtype=float)
        return out, names
    import pandas as pd
    from formulaic import model_matrix as fm

    df = pd.DataFrame(index=frame.index)
    for c in frame.columns:
        if c in cats:
            labels, codes = level_order(frame[c])
            df[c] = pd.Categorical.from_codes(codes, categories=labels)  # type: ignore[call-overload]
        else:
            df[c] = frame[c]
    for c in re.findall(r"`factor\((.*?)\)`", rhs):
        labels, codes = level_order(frame[c])
        df[f"factor({c})"] = pd.Categorical.from_codes(codes, categories=labels)  # type: ignore[call-overload]
    try:
        mm = fm(rhs, df, na_action="raise")
    except Exception as e:  # formulaic reports unknown names, bad operators, ...
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"Cannot build the model matrix for '{rhs.replace('`', '')}': {msg}") from None
    names = [r_name(str(c)) for c in mm.columns]
    X = np.asarray(mm, dtype=float)
    if extra:
        X = np.column_stack([X, np.empty((n, extra))])
    return X, names


def group_codes(frame: pd.DataFrame, factors: tuple[str, ...]) -> tuple[np.ndarray, list[str]]:
    """The grouping factor a:b:... as level codes and labels ('a1:b2'), in R's order for ':' on factors
    (lexicographic, the first factor varying slowest; combinations absent from the data dropped)."""
    codes, labels = None, None
    for f in factors:
        lab, cod = level_order(frame[f])
        if codes is None:
            codes, labels = cod, lab
            continue
        assert labels is not None
        key = codes.astype(np.int64) * len(lab) + cod
        uniq, inv = np.unique(key, return_inverse=True)
        labels = [f"{labels[k // len(lab)]}:{lab[k % len(lab)]}" for k in uniq]
        codes = inv.astype(np.int32)
    assert codes is not None and labels is not None
    return codes, labels


def lme4_order(nlevels: list[int]) -> list[int]:
    """lme4's mkReTrms: terms reordered by decreasing number of levels when any later term has more
    (rev(order(nl)), so ties come out reversed)."""
    if any(b > a for a, b in zip(nlevels, nlevels[1:])):
        asc = sorted(range(len(nlevels)), key=lambda i: nlevels[i])
        return asc[::-1]
    return list(range(len(nlevels)))


def build_design(spec: ModelSpec, frame: pd.DataFrame, factors: set[str]) -> Design:
    cats = categorical_columns(spec, frame, factors)
    if spec.response in cats:
        raise DataError(f"The response '{spec.response}' must be numeric; it was declared or read as a factor.")
    XY, xnames = model_matrix(spec.fixed, frame, cats, extra=1)
    XY[:, -1] = response(frame, spec.response)
    notes: list[str] = []
    built: list[tuple[ReTerm, RandomTerm]] = []
    for rt in spec.random:
        codes, labels = group_codes(frame, rt.factors)
        T, names = model_matrix(rt.expr, frame, cats)
        if names == ["(Intercept)"]:
            T = np.broadcast_to(np.ones((1, 1)), T.shape)  # a view of one number: no n-vector of ones
        if T.shape[1] == 0:
            raise ModelError(f"The random-effects term {rt} has no columns.")
        built.append((indicator_term(rt.group, names, codes.astype(np.int32, copy=False), labels, T), rt))
    order = lme4_order([t.nlevels for t, _ in built])
    built = [built[i] for i in order]
    return Design(XY=XY, xnames=xnames, terms=[t for t, _ in built], specs=[r for _, r in built], notes=notes)
