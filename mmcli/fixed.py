"""A formula's terms + data columns -> a model matrix with R's column names, and how to build it for new rows.

mmcli evaluates every variable of a term itself: a column, ``factor(x)``, or an allowed transform (I() with
arithmetic, log, sqrt, scale, poly, ...; mmcli.formula checks the grammar). formulaic then only combines the
evaluated variables by Wilkinson's rules and R's treatment coding: it is given a formula of generated names
(one per variable) and a data frame of the values, so no text of the user's ever reaches an evaluator.
Stateful transforms (scale, center, poly) keep what they learned from the fitted data, as R's predict does.
"""

from __future__ import annotations

import re
from collections.abc import Container
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mmcli.columns import Columns, Frame, floats
from mmcli.data import level_order
from mmcli.errors import DataError, ModelError
from mmcli.formula import Call, Name, Node, Num, join_terms
from mmcli.formula.syntax import BinOp, Paren, Unary, deparse, quote_name
from mmcli.levels import reads_as_float
from mmcli.memory import check_allocation
from mmcli.threads import copy_rows

if TYPE_CHECKING:
    import pandas as pd

_FUNCS = {
    "log": np.log,
    "log1p": np.log1p,
    "log2": np.log2,
    "log10": np.log10,
    "exp": np.exp,
    "sqrt": np.sqrt,
    "abs": np.abs,
}


@dataclass
class Variable:
    """One variable of the terms (R's 'factor' of a term): a column, factor(x), or a transform of columns."""

    node: Node
    label: str  # as R labels it: Days, factor(temperature), I(Days^2), poly(x, 2)
    categorical: bool
    state: dict[str, Any] = field(default_factory=dict)  # what a stateful transform learned from the fit
    levels: list[str] = field(default_factory=list)

    def columns(self, frame: pd.DataFrame, fitting: bool) -> list[tuple[str, Any]]:
        """(name suffix, values) of each column this variable contributes."""
        if self.categorical:
            return [("", self._codes(frame, fitting))]
        node = self.node
        if isinstance(node, Call) and node.func == "poly":
            return self._poly(frame, fitting)
        if isinstance(node, Call) and node.func in ("scale", "center"):
            return [("", self._scaled(node, frame, fitting))]
        values = arithmetic(node.args[0] if isinstance(node, Call) and node.func == "I" else node, frame, self.label)
        return [("", np.broadcast_to(values, (len(frame),)).astype(float))]

    def _codes(self, frame: pd.DataFrame, fitting: bool) -> Any:
        import pandas as pd

        col = self.node.args[0].name if isinstance(self.node, Call) else self.node.name  # type: ignore[attr-defined]
        if fitting:
            labels, codes = level_order(frame[col])
            self.levels = labels
            return pd.Categorical.from_codes(codes, categories=labels)  # type: ignore[call-overload]
        numeric = all(reads_as_float(v) for v in self.levels)
        values = frame[col].astype(str).str.strip().map(lambda v: _r_label(v, numeric))
        unseen = sorted(set(values) - set(self.levels))
        if unseen:
            raise DataError(
                f"Column '{col}' has the level '{unseen[0]}', which the fitted data do not have: a fixed effect "
                "cannot be predicted for it."
            )
        return pd.Categorical(values, categories=self.levels)

    def _scaled(self, node: Call, frame: pd.DataFrame, fitting: bool) -> np.ndarray:
        x = arithmetic(node.args[0], frame, self.label) * np.ones(len(frame))
        if fitting:
            opts = {k: bool(v.value) for k, v in node.kwargs if isinstance(v, Num)}
            center = opts.get("center", True)
            mean = float(np.mean(x)) if center else 0.0
            scale = 1.0
            if node.func == "scale" and opts.get("scale", True):
                if len(x) < 2:
                    raise DataError(f"{self.label} needs at least two rows.")
                scale = float(np.sqrt(np.sum((x - mean) ** 2) / (len(x) - 1)))  # sd, or R's root mean square
                if not scale > 0:
                    raise DataError(f"{self.label}: the column is constant, so it cannot be scaled.")
            self.state = {"center": mean, "scale": scale}
        return (x - self.state["center"]) / self.state["scale"]

    def _poly(self, frame: pd.DataFrame, fitting: bool) -> list[tuple[str, np.ndarray]]:
        """R's poly(): orthogonal polynomials by the three-term recurrence (raw = TRUE: the powers)."""
        node = self.node
        assert isinstance(node, Call) and isinstance(node.args[1], Num)
        degree = int(node.args[1].value)
        x = arithmetic(node.args[0], frame, self.label) * np.ones(len(frame))
        if any(k == "raw" and isinstance(v, Num) and v.value == 1 for k, v in node.kwargs):
            return [(str(j), x**j) for j in range(1, degree + 1)]
        if fitting:
            if len(np.unique(x)) <= degree:
                raise DataError(f"{self.label}: the degree must be less than the number of distinct values.")
            alpha, norm2 = [], [1.0, float(len(x))]
            z_prev, z = np.zeros_like(x), np.ones_like(x)
            for j in range(degree):
                alpha.append(float(np.sum(x * z * z) / norm2[-1]))
                z_next = (x - alpha[j]) * z - (norm2[-1] / norm2[-2]) * z_prev
                z_prev, z = z, z_next
                norm2.append(float(np.sum(z * z)))
            self.state = {"alpha": alpha, "norm2": norm2}
        alpha, norm2 = self.state["alpha"], self.state["norm2"]
        cols, z_prev, z = [], np.zeros_like(x), np.ones_like(x)
        for j in range(degree):
            z_next = (x - alpha[j]) * z - (norm2[j + 1] / norm2[j]) * z_prev
            z_prev, z = z, z_next
            cols.append((str(j + 1), z / np.sqrt(norm2[j + 2])))
        return cols


def arithmetic(node: Node, frame: pd.DataFrame, label: str) -> np.ndarray:
    """The value of an arithmetic expression on numeric columns (mmcli.formula.check_arithmetic's grammar)."""
    import pandas as pd

    if isinstance(node, Num):
        return np.asarray(node.value)
    if isinstance(node, Name):
        s = frame[node.name]
        if not pd.api.types.is_numeric_dtype(s.dtype):
            raise DataError(f"Column '{node.name}' is not numeric, so {label} cannot be computed.")
        return s.to_numpy(dtype=float)
    if isinstance(node, Paren):
        return arithmetic(node.inner, frame, label)
    if isinstance(node, Unary):
        v = arithmetic(node.operand, frame, label)
        return -v if node.op == "-" else v
    with np.errstate(all="ignore"):
        if isinstance(node, Call):
            return np.asarray(_FUNCS[node.func](arithmetic(node.args[0], frame, label)))
        assert isinstance(node, BinOp)
        a, b = arithmetic(node.left, frame, label), arithmetic(node.right, frame, label)
        ops = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "^": np.power}
        return np.asarray(ops[node.op](a, b))


@dataclass(frozen=True, eq=False)
class FixedPart:
    """How the fixed-effects columns are built, kept so that new rows need nothing but themselves: the plain
    numeric columns (no formula library), or the variables with their state and formulaic's model spec."""

    names: list[str]
    plain: list[str] | None  # the columns, in order, after an optional intercept
    intercept: bool
    spec: Any = None  # formulaic's ModelSpec
    variables: list[Variable] = field(default_factory=list)

    def rows(self, frame: pd.DataFrame) -> np.ndarray:
        """The columns for new rows; a factor level the fit has not seen is an error naming it."""
        n = len(frame)
        if self.plain is not None:
            cols = ([np.ones(n)] if self.intercept else []) + [frame[c].to_numpy(dtype=float) for c in self.plain]
            return np.column_stack(cols) if cols else np.zeros((n, 0))
        df = _evaluate(self.variables, frame, fitting=False)
        return np.asarray(self.spec.get_model_matrix(df, na_action="raise"), dtype=float)


def _placeholder(i: int, suffix: str = "") -> str:
    return f"mmcliv{i}{'s' + suffix if suffix else ''}_"


def _evaluate(variables: list[Variable], frame: pd.DataFrame, fitting: bool) -> pd.DataFrame:
    import pandas as pd

    df = pd.DataFrame(index=frame.index)
    for i, v in enumerate(variables):
        for suffix, values in v.columns(frame, fitting):
            if not v.categorical and not np.all(np.isfinite(values)):
                bad = int(np.flatnonzero(~np.isfinite(values))[0])
                raise DataError(f"{v.label} is not a finite number in row {bad + 1} of the data used.")
            df[_placeholder(i, suffix)] = values
    return df


def _collect(node: Node, cats: set[str], out: dict[str, Variable]) -> str:
    """The formulaic text of a term, each variable replaced by its generated name; variables gathered."""
    if isinstance(node, Num):
        return "1" if node.value else "0"
    if isinstance(node, Paren):
        return f"({_collect(node.inner, cats, out)})"
    if isinstance(node, Unary):
        return f"{node.op}{_collect(node.operand, cats, out)}"
    if isinstance(node, BinOp):
        op = ":" if node.op == "%in%" else node.op
        left = _collect(node.left, cats, out)
        right = (
            str(int(node.right.value))
            if node.op == "^" and isinstance(node.right, Num)
            else _collect(node.right, cats, out)
        )
        return f"({left}){op}({right})"
    label = quote_name(node.name) if isinstance(node, Name) else deparse(node)
    if label not in out:
        categorical = (isinstance(node, Name) and node.name in cats) or (
            isinstance(node, Call) and node.func == "factor"
        )
        out[label] = Variable(node, label, categorical)
    i = list(out).index(label)
    if isinstance(node, Call) and node.func == "poly" and isinstance(node.args[1], Num):
        return "(" + " + ".join(_placeholder(i, str(j)) for j in range(1, int(node.args[1].value) + 1)) + ")"
    return _placeholder(i)


def plain_columns(terms: tuple[tuple[str, Node], ...], cats: Container[str]) -> list[str] | None:
    """The columns of signed terms that are each a numeric column, added once (besides numbers: the intercept),
    in order; None when any term needs the formula library (a factor, a call, an interaction, a removal)."""
    rest = [(s, t) for s, t in terms if not isinstance(t, Num)]
    plain = [t.name for s, t in rest if s == "+" and isinstance(t, Name) and t.name not in cats]
    return plain if len(plain) == len(rest) and len(set(plain)) == len(plain) else None


def model_matrix(
    terms: tuple[tuple[str, Node], ...],
    frame: Frame,
    cats: set[str],
    extra: int = 0,
    release: Container[str] = (),
) -> tuple[np.ndarray, FixedPart]:
    """The model matrix of signed terms (a fixed part, or a random-effects term's own formula), with R's column
    names, and how to build it again for new rows. ``extra`` trailing columns are left for the caller to fill
    (the response, without a copy of X). Columns named in ``release`` are dropped from the frame once X holds
    them (numeric columns taken as they are: the common case of a large data set)."""
    n = len(frame)
    intercept = not any(
        (s == "-" and isinstance(t, Num) and t.value == 1) or (s == "+" and isinstance(t, Num) and t.value == 0)
        for s, t in terms
    )
    plain = plain_columns(terms, cats)
    if plain is not None:  # the common case: no formula library needed
        names = (["(Intercept)"] if intercept else []) + [quote_name(p) for p in plain]
        check_allocation(n * (len(names) + extra) * 8, "the model matrix")
        out = np.empty((n, len(names) + extra), order="F")  # columns contiguous: each is read whole, in place
        for i, c in enumerate(plain, start=int(intercept)):
            copy_rows(out[:, i], floats(frame, c))
            if c in release:
                del frame[c]  # its memory goes now, before the next column is copied
        if intercept:
            copy_rows(out[:, 0], 1.0)
        return out, FixedPart(names, plain, intercept)
    from formulaic import model_matrix as fm

    if isinstance(frame, Columns):
        frame = frame.frame()
    variables: dict[str, Variable] = {}
    text = " + ".join(("-" if s == "-" else "") + f"({_collect(t, cats, variables)})" for s, t in terms)
    if not intercept:
        text = "0 + " + text
    vs = list(variables.values())
    df = _evaluate(vs, frame, fitting=True)
    ncols = estimated_columns(terms, variables, cats)
    check_allocation(n * (ncols + extra) * 8, f"the model matrix of '{join_terms(terms)}' ({ncols} columns)")
    try:
        mm = fm(text, df, na_action="raise")
    except Exception as e:  # formulaic's own complaint, for a combination of terms it cannot build
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"Cannot build the model matrix for '{join_terms(terms)}': {msg}") from None
    names = [r_column_name(str(c), vs) for c in mm.columns]
    X = np.asarray(mm, dtype=float)
    if extra:
        X = np.column_stack([X, np.empty((n, extra))])
    return X, FixedPart(names, None, intercept, spec=mm.model_spec, variables=vs)


_PLACEHOLDER = re.compile(r"mmcliv(\d+)(?:s(\d+))?_")


def r_column_name(col: str, variables: list[Variable]) -> str:
    """formulaic's column name of generated names -> R's: ``recipeB:temperature185``, ``poly(x, 2)1``."""
    if col == "Intercept":
        return "(Intercept)"
    out, pos = [], 0
    while pos < len(col):
        m = _PLACEHOLDER.match(col, pos)
        assert m is not None, col
        v = variables[int(m.group(1))]
        name, pos = v.label + (m.group(2) or ""), m.end()
        if v.categorical:
            for lvl in sorted(v.levels, key=len, reverse=True):
                hit = next((p for p in (f"[T.{lvl}]", f"[{lvl}]") if col.startswith(p, pos)), None)
                if hit and (pos + len(hit) == len(col) or col[pos + len(hit)] == ":"):
                    name, pos = name + lvl, pos + len(hit)
                    break
        out.append(name)
        pos += 1  # the ':' between the variables of an interaction
    return ":".join(out)


def estimated_columns(terms: tuple[tuple[str, Node], ...], variables: dict[str, Variable], cats: set[str]) -> int:
    """An upper bound on the number of columns, from the expanded terms and each variable's width (a factor
    counted with all its levels): to refuse a model matrix too large for memory before building it."""
    width: dict[str, int] = {}
    for label, v in variables.items():
        if v.categorical:
            width[label] = max(len(v.levels), 1)
        elif isinstance(v.node, Call) and v.node.func == "poly" and isinstance(v.node.args[1], Num):
            width[label] = int(v.node.args[1].value)
        else:
            width[label] = 1
    expanded: set[frozenset[str]] = set()
    for sign, t in terms:
        got = expand(t)
        expanded = expanded - got if sign == "-" else expanded | got
    total = 1
    for term in expanded:
        prod = 1
        for label in term:
            prod *= width.get(label, 1)
        total += prod
    return total


def expand(node: Node) -> set[frozenset[str]]:
    """Wilkinson's expansion of a term into sets of variable labels (the intercept left out)."""
    if isinstance(node, Num):
        return set()
    if isinstance(node, Paren):
        return expand(node.inner)
    if isinstance(node, Unary):
        return expand(node.operand)
    if isinstance(node, BinOp):
        a = expand(node.left)
        if node.op == "^" and isinstance(node.right, Num):
            out = set(a)
            for _ in range(int(node.right.value) - 1):
                out |= {x | y for x in out for y in a}
            return out
        b = expand(node.right)
        if node.op == "+":
            return a | b
        if node.op == "-":
            return a - b
        if node.op in (":", "%in%"):
            return {x | y for x in a for y in b}
        if node.op == "*":
            return a | b | {x | y for x in a for y in b}
        if node.op == "/":
            every = frozenset().union(*a) if a else frozenset()
            return a | {every | y for y in b}
    label = quote_name(node.name) if isinstance(node, Name) else deparse(node)
    return {frozenset([label])}


def _r_label(value: str, numeric: bool) -> str:
    """A new row's level as level_order labels it (185, not 185.0, when the levels are numbers)."""
    if not numeric:
        return value
    try:
        x = float(value)
    except ValueError:
        return value
    return str(int(x)) if np.isfinite(x) and x.is_integer() and abs(x) < 1e15 else value
