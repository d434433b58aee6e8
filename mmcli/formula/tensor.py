"""mgcv's tensor-product smooth terms ``te(x, z, ...)`` and ``t2(x, z, ...)`` read from a syntax tree. No data.

Arguments as mgcv takes them: two or more columns, ``k`` one whole number or ``c(k1, k2, ...)`` (one per
margin; default 5 each), ``bs`` one quoted basis or ``c("cr", "cs")`` (default ``"cr"``).
"""

from __future__ import annotations

from dataclasses import dataclass

from mmcli.errors import FormulaError, UsageError
from mmcli.formula.syntax import Call, Name, Node, Num, Str, quote_name

TENSOR_FUNCTIONS = ("te", "t2")
MARGIN_BASES = ("cr", "cs")
DEFAULT_K = 5


@dataclass(frozen=True)
class TensorTerm:
    """``te(x, z, bs = c("cr", "cr"), k = c(5, 5))`` or ``t2(...)``: one basis and one k per margin."""

    kind: str
    vars: tuple[str, ...]
    bs: tuple[str, ...]
    k: tuple[int, ...]

    @property
    def label(self) -> str:
        """mgcv's label: ``te(x,z)``."""
        return f"{self.kind}({','.join(quote_name(v) for v in self.vars)})"

    def __str__(self) -> str:
        vs = ", ".join(quote_name(v) for v in self.vars)
        bs = ", ".join(f'"{b}"' for b in self.bs)
        ks = ", ".join(str(k) for k in self.k)
        return f"{self.kind}({vs}, bs = c({bs}), k = c({ks}))"


def _vector(node: Node) -> list[Node]:
    """``c(a, b, ...)`` -> its elements; anything else -> [node]."""
    if isinstance(node, Call) and node.func == "c" and not node.kwargs:
        return list(node.args)
    return [node]


def tensor_term(call: Call, text: str) -> TensorTerm:
    """Read ``te(...)`` or ``t2(...)``; a tensor of one variable or a malformed argument is an error."""
    f = call.func
    shape = f"{f}(x, z, k = c(5, 5), bs = c('cr', 'cr'))"
    if not all(isinstance(a, Name) for a in call.args):
        raise FormulaError(f"The variables of {f}() must be column names: {shape}", text, call.pos)
    vars_ = tuple(a.name for a in call.args if isinstance(a, Name))
    if len(vars_) < 2:
        raise FormulaError(
            f"{f}() needs two or more columns, one per margin (for one column write s(x, bs = 'cr')): {shape}",
            text,
            call.pos,
        )
    if len(set(vars_)) < len(vars_):
        raise FormulaError(f"A column appears twice in {f}(): each margin takes a different column", text, call.pos)
    d = len(vars_)
    bs: tuple[str, ...] = ("cr",) * d
    k: tuple[int, ...] = (DEFAULT_K,) * d
    for key, v in call.kwargs:
        items = _vector(v)
        if len(items) not in (1, d):
            raise FormulaError(f"{key} in {f}() takes one value or one per margin ({d})", text, v.pos)
        if key == "k":
            if not all(isinstance(i, Num) and not i.logical and i.value == int(i.value) for i in items):
                raise FormulaError(f"k in {f}() must be whole numbers: k = 5 or k = c(5, 6)", text, v.pos)
            ks = tuple(int(i.value) for i in items if isinstance(i, Num))
            k = ks * d if len(ks) == 1 else ks
        elif key == "bs":
            if not all(isinstance(i, Str) for i in items):
                raise FormulaError(
                    f"bs in {f}() must be quoted basis names: bs = 'cr' or bs = c('cr', 'cs')", text, v.pos
                )
            names = tuple(i.value for i in items if isinstance(i, Str))
            bad = [b for b in names if b not in MARGIN_BASES]
            if bad:
                raise UsageError(
                    f"Margin basis '{bad[0]}' is not available in {f}(); tensor products take the margins "
                    f"{' and '.join(repr(b) for b in MARGIN_BASES)}."
                )
            bs = names * d if len(names) == 1 else names
        else:
            raise FormulaError(f"Unsupported argument '{key}' in {f}(): mmcli knows k and bs", text, v.pos)
    return TensorTerm(f, vars_, bs, k)
