"""Formula text -> a syntax tree. Nothing here is ever executed: the tree is data, read by the rest of mmcli.

The grammar is R's for formulas (lme4's bars and mgcv's s() included), with R's operator precedence, lowest
first: ``~``, ``|`` and ``||``, binary ``+ -``, ``* /``, ``%in%``, ``:``, unary ``- +``, ``^``. The leaves are
column names (bare as R writes them, dotted names included, or between backquotes), numbers, strings (only as
arguments) and calls of a function by name. Which functions are allowed, and where, is decided by the reader
of the tree (mmcli.formula); any other character is an error that says where it is.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass

from mmcli.errors import FormulaError
from mmcli.formula.tokens import Token, name_char, name_start, tokenize

RESERVED = {
    "if",
    "else",
    "repeat",
    "while",
    "function",
    "for",
    "next",
    "break",
    "TRUE",
    "FALSE",
    "NULL",
    "Inf",
    "NaN",
    "NA",
    "in",
}


@dataclass(frozen=True)
class Node:
    pos: int  # where the node starts in the formula text (0-based)


@dataclass(frozen=True)
class Name(Node):
    name: str


@dataclass(frozen=True)
class Num(Node):
    value: float
    logical: bool = False  # written TRUE or FALSE


@dataclass(frozen=True)
class Str(Node):
    value: str


@dataclass(frozen=True)
class Call(Node):
    func: str
    args: tuple[Node, ...]
    kwargs: tuple[tuple[str, Node], ...]


@dataclass(frozen=True)
class BinOp(Node):
    op: str  # ~ | || + - * / %in% : ^
    left: Node
    right: Node
    op_pos: int = -1  # where the operator is


@dataclass(frozen=True)
class Unary(Node):
    op: str  # - +
    operand: Node


@dataclass(frozen=True)
class Paren(Node):
    inner: Node


MAX_DEPTH = 64  # parentheses nested deeper than any model needs


@contextlib.contextmanager
def deep_trees() -> Iterator[None]:
    """Room for the trees of long formulas (a sum of thousands of columns is a chain as deep as it is long),
    whose readers recurse; a tree too deep even for that is a usage error, not a crash."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 200_000))
    try:
        yield
    except RecursionError:
        raise FormulaError("The formula is too long or too deeply nested to read") from None
    finally:
        sys.setrecursionlimit(old)


class _Parser:
    """Precedence climbing over R's operator table."""

    def __init__(self, text: str):
        self.text = text
        self.toks = tokenize(text)
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def error(self, msg: str, pos: int | None = None) -> FormulaError:
        return FormulaError(msg, self.text, self.tok.pos if pos is None else pos)

    def take(self, op: str) -> bool:
        if self.tok.kind == "op" and self.tok.text == op:
            self.i += 1
            return True
        return False

    def expect_close(self, opened: int) -> None:
        if not self.take(")"):
            if self.tok.kind == "end":
                raise self.error("Unmatched '('", opened)
            if self.tok.kind != "op":
                raise self.error(f"Missing an operator (such as +, : or |) before '{self.tok.text}'")
            raise self.error(f"Unexpected '{self.tok.text}'")

    def binary(self, ops: tuple[str, ...], operand: str) -> Node:
        left = getattr(self, operand)()
        while self.tok.kind == "op" and self.tok.text in ops:
            tok = self.tok
            self.i += 1
            ends = (")", "|", "||", "~", ",") if tok.text in ("|", "||") else (")", "|", "||", "~", ",", "+")
            if self.tok.kind == "end" or (self.tok.kind == "op" and self.tok.text in ends):
                raise self.error(_missing_operand(tok.text))
            left = BinOp(left.pos, tok.text, left, getattr(self, operand)(), tok.pos)
        return left

    def formula(self) -> Node:
        if self.tok.kind == "op" and self.tok.text == "~":
            return Unary(self.tok.pos, "~", self._after_tilde())
        lhs = self.bar()
        if not (self.tok.kind == "op" and self.tok.text == "~"):
            return lhs
        tilde = self.tok.pos
        return BinOp(lhs.pos, "~", lhs, self._after_tilde(), tilde)

    def _after_tilde(self) -> Node:
        self.i += 1
        if self.tok.kind == "end":
            raise FormulaError("The formula has no terms after '~'", self.text, len(self.text))
        return self.bar()

    def bar(self) -> Node:
        return self.binary(("|", "||"), "sum")

    def sum(self) -> Node:
        if self.tok.kind == "op" and self.tok.text in ("+", "-"):  # a leading sign: "y ~ -1 + x"
            tok = self.tok
            self.i += 1
            left: Node = Unary(tok.pos, tok.text, self.product())
        else:
            left = self.product()
        while self.tok.kind == "op" and self.tok.text in ("+", "-"):
            tok = self.tok
            self.i += 1
            if self.tok.kind == "op" and self.tok.text in ("+", "-"):
                raise self.error("Empty term", tok.pos + 1)
            if self.tok.kind == "end" or (self.tok.kind == "op" and self.tok.text in (")", "|", "||", "~")):
                raise self.error("Empty term", tok.pos + 1)
            left = BinOp(left.pos, tok.text, left, self.product(), tok.pos)
        return left

    def product(self) -> Node:
        return self.binary(("*", "/"), "within")

    def within(self) -> Node:
        return self.binary(("%in%",), "interaction")

    def interaction(self) -> Node:
        return self.binary((":",), "unary")

    def unary(self) -> Node:
        signs: list[Token] = []
        while self.tok.kind == "op" and self.tok.text in ("-", "+"):
            signs.append(self.tok)
            self.i += 1
            if len(signs) > MAX_DEPTH:
                raise self.error(f"More than {MAX_DEPTH} signs in a row")
        node = self.power()
        for tok in reversed(signs):
            node = Unary(tok.pos, tok.text, node)
        return node

    def power(self) -> Node:
        base = self.primary()
        if self.tok.kind == "op" and self.tok.text == "^":
            tok = self.tok
            self.i += 1
            return BinOp(base.pos, "^", base, self.unary(), tok.pos)  # right-associative; -x binds looser
        return base

    def primary(self) -> Node:
        tok = self.tok
        if tok.kind == "num":
            self.i += 1
            return Num(tok.pos, float(tok.value))  # type: ignore[arg-type]
        if tok.kind == "str":
            self.i += 1
            return Str(tok.pos, str(tok.value))
        if tok.kind in ("name", "qname"):
            self.i += 1
            if tok.kind == "name" and self.tok.kind == "op" and self.tok.text == "(":
                return self.call(tok)
            if tok.kind == "name" and tok.text in ("TRUE", "T"):
                return Num(tok.pos, 1.0, logical=True)
            if tok.kind == "name" and tok.text in ("FALSE", "F"):
                return Num(tok.pos, 0.0, logical=True)
            return Name(tok.pos, str(tok.value))
        if tok.kind == "op" and tok.text == "(":
            self.i += 1
            if self.tok.kind == "op" and self.tok.text == ")":
                raise self.error("Empty parentheses")
            inner = self.bar()
            self.expect_close(tok.pos)
            return Paren(tok.pos, inner)
        if tok.kind == "end":
            raise self.error("The formula ends where a term was expected")
        if tok.text in ("|", "||"):
            raise self.error("Missing the effects before '|' (write 1 for an intercept)")
        if tok.text == ")":
            raise self.error("Unmatched ')'")
        raise self.error(f"Unexpected '{tok.text}'")

    def call(self, name: Token) -> Call:
        self.i += 1  # (
        args: list[Node] = []
        kwargs: list[tuple[str, Node]] = []
        if self.take(")"):
            return Call(name.pos, name.text, (), ())
        while True:
            t = self.tok
            if (
                t.kind in ("name", "qname", "str")
                and self.toks[self.i + 1].text == "="
                and self.toks[self.i + 1].kind == "op"
            ):
                self.i += 2
                kwargs.append((str(t.value), self.bar()))
            else:
                if kwargs:
                    raise self.error("A positional argument cannot follow a named one")
                args.append(self.bar())
            if self.take(","):
                continue
            self.expect_close(name.pos + len(name.text))
            return Call(name.pos, name.text, tuple(args), tuple(kwargs))


def _missing_operand(op: str) -> str:
    if op in ("|", "||"):
        return "Missing the grouping factor after '|'"
    return f"Missing a term after '{op}'"


def parse(text: str) -> Node:
    """The syntax tree of a whole formula: ``BinOp('~', response, rhs)``."""
    p = _Parser(text)
    depth = 0
    for t in p.toks:
        if t.kind == "op" and t.text == "(":
            depth += 1
            if depth > MAX_DEPTH:
                raise FormulaError(f"Parentheses nested more than {MAX_DEPTH} deep", text, t.pos)
        elif t.kind == "op" and t.text == ")":
            depth -= 1
    tildes = [t.pos for t in p.toks if t.kind == "op" and t.text == "~"]
    if len(tildes) != 1:
        where = tildes[1] if len(tildes) > 1 else len(text)
        raise FormulaError("A formula needs exactly one '~' between the response and the terms", text, where)
    tree = p.formula()
    if p.tok.kind != "end":
        if p.tok.text == ")":
            raise p.error("Unmatched ')'")
        if p.tok.text == "~":
            raise p.error("A formula needs exactly one '~' between the response and the terms")
        if p.tok.kind != "op":
            raise p.error(f"Missing an operator (such as +, : or |) before '{p.tok.text}'")
        raise p.error(f"Unexpected '{p.tok.text}'")
    return tree


# --------------------------------------------------------------------------------------------------
# Back to text, as R deparses it (term labels, and so the names of the model's columns)
# --------------------------------------------------------------------------------------------------

_SPACED = {"+", "-", "*", "~", "|", "||", "%in%"}  # R writes x + 1, x * 2 but x/2, x^2, a:b


def syntactic(name: str) -> bool:
    """Whether R writes the name bare (else between backquotes)."""
    if not name or name in RESERVED or not name_start(name[0]) or name[0] == "_":
        return False
    if name[0] == "." and len(name) > 1 and name[1].isdigit():
        return False
    return all(name_char(c) for c in name)


def quote_name(name: str) -> str:
    return name if syntactic(name) else "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def r_number(x: float) -> str:
    """A number as R's deparse prints it: 15 significant digits, fixed or scientific, whichever is shorter."""
    if math.isinf(x):
        return "Inf"
    if x == int(x) and abs(x) < 1e15:
        fixed = str(int(x))
    else:
        fixed = f"{x:.15g}"
        if "e" in fixed:
            fixed = f"{x:.15f}".rstrip("0").rstrip(".")
    mant, _, exp = f"{x:.14e}".partition("e")
    mant = mant.rstrip("0").rstrip(".")
    sci = f"{mant}e{int(exp):+03d}"
    return fixed if len(fixed) <= len(sci) else sci


def deparse(node: Node) -> str:
    if isinstance(node, Name):
        return quote_name(node.name)
    if isinstance(node, Num):
        return ("TRUE" if node.value else "FALSE") if node.logical else r_number(node.value)
    if isinstance(node, Str):
        return '"' + node.value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(node, Paren):
        return f"({deparse(node.inner)})"
    if isinstance(node, Unary):
        return f"{node.op}{deparse(node.operand)}" if node.op != "~" else f"~{deparse(node.operand)}"
    if isinstance(node, BinOp):
        sep = f" {node.op} " if node.op in _SPACED else node.op
        return f"{deparse(node.left)}{sep}{deparse(node.right)}"
    assert isinstance(node, Call)
    parts = [deparse(a) for a in node.args] + [f"{quote_name(k)} = {deparse(v)}" for k, v in node.kwargs]
    return f"{node.func}({', '.join(parts)})"


def names_in(node: Node) -> list[str]:
    """The column names a tree refers to, in order of appearance (without recursion: a long sum is deep)."""
    out: list[str] = []
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, Name):
            out.append(n.name)
        elif isinstance(n, Call):
            stack += reversed([*n.args, *(v for _, v in n.kwargs)])
        elif isinstance(n, BinOp):
            stack += [n.right, n.left]
        elif isinstance(n, Unary):
            stack.append(n.operand)
        elif isinstance(n, Paren):
            stack.append(n.inner)
    return out
