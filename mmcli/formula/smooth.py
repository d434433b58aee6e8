"""mgcv's smooth terms in a formula: ``s(x)``, ``s(x, z, bs = "tp", k = 30)``, ``s(x, by = f)``. No data."""

from __future__ import annotations

import math
from dataclasses import dataclass

from mmcli.errors import FormulaError, UsageError
from mmcli.formula.syntax import Call, Name, Num, Str, quote_name

SMOOTH_BASES = ("tp", "ts", "cr", "cs", "ps", "rk")
MULTI_BASES = ("tp", "ts")  # bases of several variables (isotropic)
DEFAULT_BASIS = "tp"  # mgcv's default


def default_k(bs: str, d: int) -> int:
    """mgcv's default basis dimension: 10 in one dimension; for tp/ts in d dimensions M + (8, 27, 100)[d],
    M = C(m + d - 1, d) the null space of the default penalty order m (the smallest with 2m > d + 1)."""
    if bs not in MULTI_BASES:
        return 10
    m = 1
    while 2 * m < d + 2:
        m += 1
    return math.comb(m + d - 1, d) + (8, 27, 100)[min(d, 3) - 1]


@dataclass(frozen=True)
class SmoothTerm:
    """An mgcv smooth ``s(x, z, bs = "tp", k = 30, by = f)``; ``var`` is its first variable."""

    var: str
    bs: str = DEFAULT_BASIS
    k: int = 10
    bs_given: bool = True  # False when the formula left bs out (then mgcv's default, tp)
    vars: tuple[str, ...] = ()
    by: str | None = None

    @property
    def variables(self) -> tuple[str, ...]:
        """The smooth's variables (one or more), without the by column."""
        return self.vars or (self.var,)

    @property
    def label(self) -> str:
        """mgcv's label: ``s(x)``, ``s(x,z)``, ``s(x):f``."""
        base = f"s({','.join(quote_name(v) for v in self.variables)})"
        return base if self.by is None else f"{base}:{quote_name(self.by)}"

    def __str__(self) -> str:
        args = ", ".join(quote_name(v) for v in self.variables)
        by = "" if self.by is None else f", by = {quote_name(self.by)}"
        return f's({args}, bs = "{self.bs}", k = {self.k}{by})'


def parse_smooth(call: Call, text: str) -> SmoothTerm:
    """``s(x, z, bs = 'tp', k = 30, by = f)``: columns, then mgcv's arguments bs, k and by."""
    if not call.args:
        raise FormulaError("A smooth needs a column: s(x), s(x, z), s(x, bs = 'cr', k = 10)", text, call.pos)
    names: list[str] = []
    for a in call.args:
        if not isinstance(a, Name):
            raise FormulaError("The variables of a smooth must be column names: s(x, z)", text, a.pos)
        if a.name in names:
            raise FormulaError(f"s() names '{a.name}' twice", text, a.pos)
        names.append(a.name)
    bs, k, bs_given, by = DEFAULT_BASIS, None, False, None
    for key, v in call.kwargs:
        if key == "bs":
            if not isinstance(v, Str):
                raise FormulaError("bs in s() must be a quoted basis name, such as 'tp'", text, v.pos)
            if v.value not in SMOOTH_BASES:
                raise UsageError(f"Unknown smooth basis '{v.value}'. Use one of: {', '.join(SMOOTH_BASES)}.")
            bs, bs_given = v.value, True
        elif key == "k":
            if not (isinstance(v, Num) and v.value == int(v.value)):
                raise FormulaError("k in s() must be a whole number", text, v.pos)
            k = int(v.value)
        elif key == "by":
            if not isinstance(v, Name):
                raise FormulaError("by in s() must be a column name: s(x, by = f)", text, v.pos)
            by = v.name
        else:
            raise FormulaError(f"Unsupported argument '{key}' in s(): mmcli knows bs, k and by", text, call.pos)
    if len(names) > 1 and bs not in MULTI_BASES:
        raise FormulaError(
            f"A {bs} smooth takes one column; a smooth of several columns is isotropic thin plate (bs = 'tp' or "
            "'ts'), or a tensor product",
            text,
            call.pos,
        )
    if by is not None and by in names:
        raise FormulaError(f"by = {by} is also a variable of the smooth", text, call.pos)
    if k is None:
        k = default_k(bs, len(names))
    return SmoothTerm(names[0], bs, k, bs_given, tuple(names), by)
