"""lme4 / mgcv formula text -> a model spec: the fixed part, random-effects terms, smooths and offsets. No data.

The text is parsed into a syntax tree (mmcli.formula.syntax) and the tree is checked against the grammar
mmcli evaluates itself: Wilkinson's operators on terms (``+ - * / : ^ %in%``), lme4's ``(expr | g)``,
``(expr || g)`` and nested ``g1/g2``, mgcv's ``s(x, z, bs =, k =, by =)``, ``offset()``, and a short list of transforms
(:data:`TRANSFORMS`). A formula is data: nothing in it is ever run as code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mmcli.errors import FormulaError, UsageError
from mmcli.formula.smooth import SMOOTH_BASES, SmoothTerm, parse_smooth
from mmcli.formula.syntax import (
    BinOp,
    Call,
    Name,
    Node,
    Num,
    Paren,
    Str,
    Unary,
    deep_trees,
    deparse,
    names_in,
    parse,
    quote_name,
)
from mmcli.formula.tensor import TENSOR_FUNCTIONS, TensorTerm, tensor_term

ARITHMETIC = ("log", "log1p", "log2", "log10", "exp", "sqrt", "abs")  # functions of numbers, anywhere in a term
TRANSFORMS = ("I", "factor", "scale", "center", "poly", *ARITHMETIC)  # what a fixed or random term may call
_WILKINSON = ("+", "-", "*", "/", ":", "^", "%in%")
_ALLOWED_TEXT = "I(), factor(), scale(), center(), poly(), " + ", ".join(f"{f}()" for f in ARITHMETIC)


@dataclass(frozen=True)
class RandomTerm:
    """One lme4 random-effects term after expansion: ``(expr | g1:g2)``.

    ``expr`` is the term's own model formula as R prints it (``1 + Days``, ``0 + Days``); ``factors`` are the
    columns whose interaction is the grouping factor, in the order lme4 names it (``cask:batch``).
    """

    expr: str
    factors: tuple[str, ...]
    node: Node | None = field(default=None, compare=False, repr=False)

    @property
    def group(self) -> str:
        return ":".join(self.factors)

    @property
    def terms(self) -> tuple[tuple[str, Node], ...]:
        """The term's own formula as signed terms."""
        return signed_terms(self.node) if self.node is not None else (("+", Num(0, 1.0)),)

    def __str__(self) -> str:
        return f"({self.expr} | {':'.join(quote_name(f) for f in self.factors)})"


@dataclass(frozen=True)
class OffsetTerm:
    """``offset(x)`` or ``offset(log(x))``: a known part of the linear predictor, with coefficient 1 (lme4)."""

    var: str
    log: bool = False

    def __str__(self) -> str:
        v = quote_name(self.var)
        return f"offset(log({v}))" if self.log else f"offset({v})"


@dataclass(frozen=True)
class ModelSpec:
    response: str
    fixed: str  # the fixed part as R prints it ("1" for the intercept alone)
    fixed_terms: tuple[tuple[str, Node], ...] = ()  # its terms, each with its sign
    random: tuple[RandomTerm, ...] = ()
    smooths: tuple[SmoothTerm, ...] = ()
    offsets: tuple[OffsetTerm, ...] = ()
    tensors: tuple[TensorTerm, ...] = ()  # te() and t2(), after the s() terms
    failures: tuple[str, ...] = ()  # cbind(response, f): ("f",); cbind(response, n - response): ("n", response)

    @property
    def lhs(self) -> str:
        """The response as written: a column, or lme4's cbind(successes, failures)."""
        if not self.failures:
            return quote_name(self.response)
        f = " - ".join(quote_name(c) for c in self.failures)
        return f"cbind({quote_name(self.response)}, {f})"

    @property
    def text(self) -> str:
        """The formula fitted, written as lme4/gamm4 would print it."""
        parts = [self.fixed] if self.fixed else []
        parts += [str(o) for o in self.offsets]
        parts += [str(s) for s in self.smooths] + [str(t) for t in self.tensors]
        parts += [str(t) for t in self.random]
        return f"{self.lhs} ~ " + " + ".join(parts)

    def variables(self) -> list[str]:
        """The data columns this model uses, response first, each once."""
        out = [self.response, *self.failures]
        out += [n for _, t in self.fixed_terms for n in names_in(t)]
        for rt in self.random:
            out += [n for _, t in rt.terms for n in names_in(t)] + list(rt.factors)
        for s in self.smooths:
            out += [*s.variables, *([s.by] if s.by else [])]
        out += [v for t in self.tensors for v in t.vars] + [o.var for o in self.offsets]
        return list(dict.fromkeys(out))


def signed_terms(node: Node) -> tuple[tuple[str, Node], ...]:
    """The top-level terms of a sum, each with its sign: ``a + b - 1`` -> (+ a), (+ b), (- 1)."""
    if isinstance(node, BinOp) and node.op in ("+", "-"):
        left = signed_terms(node.left)
        return (*left, (node.op, node.right))
    if isinstance(node, Unary) and node.op in ("+", "-"):
        return ((node.op, node.operand),)
    return (("+", node),)


def join_terms(terms: tuple[tuple[str, Node], ...] | list[tuple[str, Node]]) -> str:
    """Signed terms back to R's text: ``x - 1``, ``0 + x``."""
    out = ""
    for i, (sign, t) in enumerate(terms):
        text = deparse(t)
        out += (f"-{text}" if sign == "-" else text) if i == 0 else f" {sign} {text}"
    return out


def parse_formula(text: str, *, allow_smooths: bool = False) -> ModelSpec:
    """Parse ``y ~ fixed + (expr | group) + s(x, ...) + offset(x)`` into a :class:`ModelSpec`."""
    with deep_trees():
        return _parse_formula(text, allow_smooths)


def _parse_formula(text: str, allow_smooths: bool) -> ModelSpec:
    tree = parse(text)
    if isinstance(tree, Unary) and tree.op == "~":
        raise FormulaError("The formula has no response before '~'", text, 0)
    assert isinstance(tree, BinOp) and tree.op == "~"
    lhs = tree.left
    failures: tuple[str, ...] = ()
    if isinstance(lhs, Call) and lhs.func == "cbind":
        lhs, failures = _cbind(lhs, text)
    if not isinstance(lhs, Name):
        raise FormulaError(f"The response must be a column name, not '{deparse(lhs)}'", text, lhs.pos)
    again = _find_name(tree.right, lhs.name)
    if again is not None:
        raise FormulaError(
            f"The response '{lhs.name}' is also on the right-hand side: a model cannot explain a column by itself",
            text,
            again.pos,
        )
    fixed: list[tuple[str, Node]] = []
    random: list[RandomTerm] = []
    smooths: list[SmoothTerm] = []
    offsets: list[OffsetTerm] = []
    tensors: list[TensorTerm] = []
    for sign, term in signed_terms(tree.right):
        kind = _kind(term, text)
        if sign == "-" and kind != "fixed":
            raise FormulaError(f"A{'n' if kind == 'offset' else ''} {kind} cannot be subtracted", text, term.pos)
        if kind == "random-effects term":
            assert isinstance(term, Paren) and isinstance(term.inner, BinOp)
            random += _random_terms(term.inner, text)
        elif kind == "smooth":
            if not allow_smooths:
                raise FormulaError(
                    "Smooth terms s(), te(), t2() belong to 'mmcli gamm', not this command", text, term.pos
                )
            assert isinstance(term, Call)
            if term.func in TENSOR_FUNCTIONS:
                tensors.append(tensor_term(term, text))
            else:
                smooths.append(parse_smooth(term, text))
        elif kind == "offset":
            assert isinstance(term, Call)
            offsets.append(_offset(term, text))
        else:
            check_wilkinson(term, text)
            fixed.append((sign, term))
    return ModelSpec(
        response=lhs.name,
        fixed=join_terms(fixed) if fixed else "1",
        fixed_terms=tuple(fixed),
        random=tuple(random),
        smooths=tuple(smooths),
        offsets=tuple(offsets),
        tensors=tuple(tensors),
        failures=failures,
    )


def _cbind(call: Call, text: str) -> tuple[Name, tuple[str, ...]]:
    """lme4's binomial response cbind(successes, failures), the failures a column or ``trials - successes``."""
    bad = FormulaError(
        "A binomial response is written cbind(successes, failures) with columns, or cbind(s, n - s)", text, call.pos
    )
    if len(call.args) != 2 or call.kwargs:
        raise bad
    s, f = call.args
    if not isinstance(s, Name):
        raise bad
    if isinstance(f, Name):
        return s, (f.name,)
    if isinstance(f, BinOp) and f.op == "-" and isinstance(f.left, Name) and isinstance(f.right, Name):
        if f.right.name != s.name:
            raise bad
        return s, (f.left.name, s.name)
    raise bad


def _find_name(node: Node, name: str) -> Name | None:
    """The first use of a column in a tree."""
    if isinstance(node, Name):
        return node if node.name == name else None
    children: list[Node] = []
    if isinstance(node, Call):
        children = [*node.args, *(v for _, v in node.kwargs)]
    elif isinstance(node, BinOp):
        children = [node.left, node.right]
    elif isinstance(node, Unary):
        children = [node.operand]
    elif isinstance(node, Paren):
        children = [node.inner]
    return next((hit for c in children if (hit := _find_name(c, name)) is not None), None)


def _kind(term: Node, text: str) -> str:
    if isinstance(term, Paren) and isinstance(term.inner, BinOp) and term.inner.op in ("|", "||"):
        return "random-effects term"
    if isinstance(term, BinOp) and term.op in ("|", "||"):
        raise FormulaError("A random-effects term must be in parentheses: (expr | group)", text, term.op_pos)
    if isinstance(term, Call) and term.func in ("s", *TENSOR_FUNCTIONS):
        return "smooth"
    if isinstance(term, Call) and term.func == "offset":
        return "offset"
    return "fixed"


def check_wilkinson(node: Node, text: str) -> None:
    """A term of Wilkinson's algebra: operators on columns, 0/1 for the intercept, and allowed transforms."""
    if isinstance(node, Name):
        if node.name == ".":
            raise FormulaError("'.' (all other columns) is not supported: name the columns", text, node.pos)
    elif isinstance(node, Num):
        if node.value not in (0.0, 1.0):
            raise FormulaError(
                f"A number in a formula term must be 0 or 1, not {deparse(node)} (use I())", text, node.pos
            )
    elif isinstance(node, Paren):
        check_wilkinson(node.inner, text)
    elif isinstance(node, Unary) and node.op in ("-", "+"):
        check_wilkinson(node.operand, text)
    elif isinstance(node, BinOp) and node.op in _WILKINSON:
        check_wilkinson(node.left, text)
        if node.op == "^":
            if not (
                isinstance(node.right, Num) and node.right.value >= 1 and node.right.value == int(node.right.value)
            ):
                raise FormulaError(
                    "The power of a group of terms must be a whole number (for x squared write I(x^2))",
                    text,
                    node.right.pos,
                )
        else:
            check_wilkinson(node.right, text)
    elif isinstance(node, BinOp) and node.op in ("|", "||"):
        raise FormulaError(
            "A random-effects term must be in parentheses, on its own: (expr | group)", text, node.op_pos
        )
    elif isinstance(node, Call):
        check_transform(node, text)
    elif isinstance(node, Str):
        raise FormulaError("A string is not a term (column names with spaces go between backquotes)", text, node.pos)
    else:
        raise FormulaError(f"Cannot read the term '{deparse(node)}'", text, node.pos)


def unsupported(call: Call, text: str) -> FormulaError:
    if call.func in ("ti", "gp"):
        what = (
            f"mmcli fits s(x, bs = {' | '.join(repr(b) for b in SMOOTH_BASES)}), thin plate s(x, z), "
            "te(x, z, ...) and t2(x, z, ...)"
        )
    else:
        what = f"a term may use {_ALLOWED_TEXT}"
    return FormulaError(f"Unsupported function '{call.func}': {what}", text, call.pos)


def check_transform(call: Call, text: str) -> None:
    """The arguments each transform takes; their insides are arithmetic on columns."""
    f = call.func
    if f not in TRANSFORMS:
        raise unsupported(call, text)
    allowed = {"poly": ("raw",), "scale": ("center", "scale")}.get(f, ())
    for k, v in call.kwargs:
        if k not in allowed:
            raise FormulaError(f"Unsupported argument '{k}' in {f}()", text, v.pos)
        if not (isinstance(v, Num) and v.value in (0.0, 1.0)):
            raise FormulaError(f"Argument {k} of {f}() must be TRUE or FALSE", text, v.pos)
    nargs = 2 if f == "poly" else 1
    if len(call.args) != nargs:
        shape = "poly(x, degree)" if f == "poly" else f"{f}(x)"
        raise FormulaError(f"{f}() takes {'two arguments' if nargs == 2 else 'one argument'}: {shape}", text, call.pos)
    if f == "factor":
        if not isinstance(call.args[0], Name):
            raise FormulaError("factor() takes a column name", text, call.args[0].pos)
        return
    if f == "poly":
        d = call.args[1]
        if not (isinstance(d, Num) and d.value >= 1 and d.value == int(d.value)):
            raise FormulaError("The degree of poly() must be a whole number of at least 1", text, d.pos)
    check_arithmetic(call.args[0], text)


def check_arithmetic(node: Node, text: str) -> None:
    """Numbers, numeric columns, + - * / ^ and the functions of numbers."""
    if isinstance(node, (Name, Num)):
        return
    if isinstance(node, Paren):
        check_arithmetic(node.inner, text)
    elif isinstance(node, Unary) and node.op in ("-", "+"):
        check_arithmetic(node.operand, text)
    elif isinstance(node, BinOp) and node.op in ("+", "-", "*", "/", "^"):
        check_arithmetic(node.left, text)
        check_arithmetic(node.right, text)
    elif isinstance(node, Call) and node.func in ARITHMETIC:
        if len(node.args) != 1 or node.kwargs:
            raise FormulaError(f"{node.func}() takes one argument", text, node.pos)
        check_arithmetic(node.args[0], text)
    elif isinstance(node, Call):
        raise FormulaError(
            f"Unsupported function '{node.func}' inside a transform; mmcli knows {', '.join(ARITHMETIC)}",
            text,
            node.pos,
        )
    else:
        what = f"operator '{node.op}'" if isinstance(node, BinOp) else f"'{deparse(node)}'"
        raise FormulaError(f"Unsupported {what} inside a transform (arithmetic is + - * / ^)", text, node.pos)


def _random_terms(bar: BinOp, text: str) -> list[RandomTerm]:
    """``expr | g`` or ``expr || g``; ``g`` may be ``a/b`` (nested) or ``a:b``."""
    if isinstance(bar.left, BinOp) and bar.left.op in ("|", "||"):
        raise FormulaError("Only one '|' is allowed in a random-effects term", text, bar.op_pos)
    expr = bar.left
    for _, t in signed_terms(expr):
        check_wilkinson(t, text)
    # a/b/c -> a, b:a, c:b:a  (lme4 names the nested factor 'cask:batch' for batch/cask)
    nested = [_interaction(g, text) for g in _split(bar.right, "/", text)]
    groups: list[tuple[str, ...]] = []
    for k in range(len(nested)):
        groups.append(tuple(f for g in reversed(nested[: k + 1]) for f in g))
    out: list[RandomTerm] = []
    pieces = _split_double(expr) if bar.op == "||" else [expr]
    for factors in groups:
        out += [RandomTerm(join_terms(signed_terms(p)), factors, p) for p in pieces]
    return out


def _split(node: Node, op: str, text: str) -> list[Node]:
    if isinstance(node, BinOp) and node.op == op:
        return _split(node.left, op, text) + _split(node.right, op, text)
    return [node]


def _interaction(node: Node, text: str) -> tuple[str, ...]:
    names = _split(node, ":", text)
    for n in names:
        if not isinstance(n, Name):
            raise FormulaError(f"The grouping factor must be a column name, not '{deparse(n)}'", text, n.pos)
    return tuple(n.name for n in names if isinstance(n, Name))


def _split_double(expr: Node) -> list[Node]:
    """lme4's expandDoubleVerts: (x || g) = (1 | g) + (0 + x | g), one term per column of the formula."""
    has_int = True
    out: list[Node] = []
    for sign, t in signed_terms(expr):
        if isinstance(t, Num):
            if (sign == "-" and t.value == 1) or (sign == "+" and t.value == 0):
                has_int = False
            continue
        if sign == "+":
            out.append(BinOp(t.pos, "+", Num(t.pos, 0.0), t))
    return ([Num(expr.pos, 1.0)] if has_int else []) + out


def _offset(call: Call, text: str) -> OffsetTerm:
    """``offset(x)`` or ``offset(log(x))``."""
    arg = call.args[0] if len(call.args) == 1 and not call.kwargs else None
    if isinstance(arg, Name):
        return OffsetTerm(arg.name)
    if isinstance(arg, Call) and arg.func == "log" and len(arg.args) == 1 and isinstance(arg.args[0], Name):
        return OffsetTerm(arg.args[0].name, log=True)
    raise FormulaError("An offset takes a column or the log of a column: offset(x), offset(log(x))", text, call.pos)


def build_formula(
    y: str | None,
    fixed: list[str],
    groups: list[str],
    slopes: list[str],
    smooths: list[str] | None = None,
    bs: str = "tp",
    k: int = 10,
) -> str:
    """The formula that the column options (--y --fixed --group --slope --smooth) stand for."""
    if not y:
        raise UsageError("Give a formula, or the response with --y COL (and --group COL for the random intercept).")
    rhs = [quote_name(f) for f in fixed] or ["1"]
    for s in smooths or []:
        rhs.append(f"s({quote_name(s)}, bs = '{bs}', k = {k})")
    if slopes and not groups:
        raise UsageError("--slope needs --group: the slope varies by the levels of a grouping column.")
    for g in groups:
        expr = " + ".join(["1"] + [quote_name(s) for s in slopes])
        rhs.append(f"({expr} | {quote_name(g)})")
    return f"{quote_name(y)} ~ " + " + ".join(rhs)


__all__ = [
    "ARITHMETIC",
    "SMOOTH_BASES",
    "TRANSFORMS",
    "ModelSpec",
    "OffsetTerm",
    "RandomTerm",
    "SmoothTerm",
    "TensorTerm",
    "build_formula",
    "join_terms",
    "parse_formula",
    "signed_terms",
]
