"""lme4 / mgcv formula text -> a model spec: the fixed part, random-effects terms and smooths. No data.

The fixed part is handed to formulaic (Wilkinson notation, R's treatment coding), which knows nothing of
lme4's bars or mgcv's s(): those are taken out here first. What this module adds by hand is only what no
formula library does: ``(x | g)``, ``(x || g)``, nested ``g1/g2`` groups, ``s(x, bs=, k=)`` and ``factor(x)``.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

from mmcli.errors import FormulaError

NAME = re.compile(r"^[A-Za-z_.][A-Za-z0-9_.]*$")
FACTOR_CALL = re.compile(r"\bfactor\(\s*([A-Za-z_.][A-Za-z0-9_.]*)\s*\)")
SMOOTH_BASES = ("cr", "cs", "rk")


@dataclass(frozen=True)
class RandomTerm:
    """One lme4 random-effects term after expansion: ``(expr | g1:g2)``.

    ``expr`` is the term's own model formula (``1 + Days``, ``0 + Days``); ``factors`` are the columns whose
    interaction is the grouping factor, in the order lme4 names it (``cask:batch``).
    """

    expr: str
    factors: tuple[str, ...]

    @property
    def group(self) -> str:
        return ":".join(self.factors)

    def __str__(self) -> str:
        return f"({self.expr} | {self.group})"


@dataclass(frozen=True)
class SmoothTerm:
    """An mgcv smooth ``s(x, bs = "cr", k = 10)``."""

    var: str
    bs: str = "cr"
    k: int = 10
    bs_given: bool = True  # False when the formula left bs out (mgcv would then use "tp")

    @property
    def label(self) -> str:
        return f"s({self.var})"

    def __str__(self) -> str:
        return f's({self.var}, bs = "{self.bs}", k = {self.k})'


@dataclass(frozen=True)
class OffsetTerm:
    """``offset(x)`` or ``offset(log(x))``: a known part of the linear predictor, with coefficient 1 (lme4)."""

    var: str
    log: bool = False

    def __str__(self) -> str:
        return f"offset(log({self.var}))" if self.log else f"offset({self.var})"


@dataclass(frozen=True)
class ModelSpec:
    response: str
    fixed: str  # formulaic right-hand side; factor(x) already rewritten to the column `factor(x)`
    fixed_display: str  # as the user would write it
    random: tuple[RandomTerm, ...] = ()
    smooths: tuple[SmoothTerm, ...] = ()
    factor_calls: tuple[str, ...] = field(default=())  # columns used as factor(x)
    offsets: tuple[OffsetTerm, ...] = ()

    @property
    def text(self) -> str:
        """The formula fitted, written as lme4/gamm4 would print it."""
        parts = [self.fixed_display] if self.fixed_display else []
        parts += [str(o) for o in self.offsets]
        parts += [str(s) for s in self.smooths]
        parts += [str(t) for t in self.random]
        return f"{self.response} ~ " + " + ".join(parts)

    def variables(self) -> list[str]:
        """The data columns this model uses, response first, each once."""
        out = [self.response]
        out += fixed_variables(self.fixed)
        for t in self.random:
            out += fixed_variables(t.expr)
            out += list(t.factors)
        out += [s.var for s in self.smooths]
        out += [o.var for o in self.offsets]
        seen: list[str] = []
        for v in out:
            v = v[len("factor(") : -1] if v.startswith("factor(") else v
            if v not in seen:
                seen.append(v)
        return seen


def fixed_variables(rhs: str) -> list[str]:
    """Column names a fixed-effects right-hand side refers to (formulaic's own parser)."""
    if rhs.strip() in ("", "1", "0", "-1", "1 - 1", "0 + 1"):
        return []
    plain = [p.strip() for p in rhs.split("+")]
    if all(NAME.match(p) or p in ("0", "1") for p in plain):
        return sorted(p for p in plain if p not in ("0", "1"))  # no formula library needed (nor its import)
    from formulaic import Formula

    try:
        f = Formula(rhs)
        names = {str(v) for v in f.required_variables}
    except Exception as e:  # formulaic raises several types for syntax errors
        raise FormulaError(f"Cannot read the fixed-effects part '{rhs}': {_first_line(e)}") from None
    # formulaic does not report the variables of stateful transforms such as poly(x, 2): add every name
    # that is not a function, a keyword argument or a constant
    for m in re.finditer(r"`([^`]+)`|\b([A-Za-z_.][A-Za-z0-9_.]*)\b(?!\s*[(=])", rhs):
        name = m.group(1) or m.group(2)
        if name not in ("TRUE", "FALSE", "True", "False", "None", "T", "F", "pi") and not name[0].isdigit():
            names.add(name)
    return sorted(names)


def r_powers(rhs: str) -> str:
    """R's ``I(x^2)`` is a power; formulaic evaluates I() as Python, where ``^`` is xor: write ``**``."""
    out, i = [], 0
    for m in re.finditer(r"\bI\(", rhs):
        start = m.end() - 1
        end = _matching_paren(rhs, start)
        if end < 0 or start < i:
            continue
        out.append(rhs[i:start])
        out.append(rhs[start : end + 1].replace("^", "**"))
        i = end + 1
    out.append(rhs[i:])
    return "".join(out)


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _syntax_error(term: str) -> tuple[str, int] | None:
    """formulaic's complaint about one term and the offset in it that the complaint marks (its message shows
    the formula with the culprit between ⧛ and ⧚); None when the term parses."""
    from formulaic import Formula

    try:
        Formula(term).required_variables  # noqa: B018
    except Exception as e:
        lines = [_ANSI.sub("", line) for line in str(e).splitlines()]
        pos = next((line.index("⧛") for line in lines[1:] if "⧛" in line), 0)
        return _first_line(e).rstrip("."), pos
    return None


def _top_bar_index(s: str) -> int:
    depth = 0
    for i, ch in enumerate(s):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0 and ch == "|":
            return i
    return -1


# --------------------------------------------------------------------------------------------------
# Scanning
# --------------------------------------------------------------------------------------------------


def _split_top(text: str, seps: str, offset: int, whole: str) -> list[tuple[str, int, str]]:
    """Split at top-level characters in ``seps``; returns (piece, start position, preceding separator)."""
    out: list[tuple[str, int, str]] = []
    depth, start, sep = 0, 0, "+"
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise FormulaError("Unmatched ')'", whole, offset + i)
        elif depth == 0 and ch in seps:
            out.append((text[start:i], offset + start, sep))
            start, sep = i + 1, ch
    if depth != 0:
        raise FormulaError("Unmatched '('", whole, offset + text.rfind("("))
    out.append((text[start:], offset + start, sep))
    return out


def _matching_paren(s: str, i: int) -> int:
    depth = 0
    for j in range(i, len(s)):
        if s[j] == "(":
            depth += 1
        elif s[j] == ")":
            depth -= 1
            if depth == 0:
                return j
    return -1


def parse_formula(text: str, *, allow_smooths: bool = False) -> ModelSpec:
    """Parse ``y ~ fixed + (expr | group) + s(x, ...) + offset(x)`` into a :class:`ModelSpec`."""
    response, rhs, rhs_off = _split_response(text)
    terms = _Terms()
    for piece, pos, sep in _split_top(rhs, "+-", rhs_off, text):
        p = piece.strip()
        lead = pos + (len(piece) - len(piece.lstrip()))
        if not p:
            if pos == rhs_off:  # a leading sign: "y ~ -1 + x"
                continue
            raise FormulaError("Empty term", text, pos)
        terms.add(p, lead, sep, text, allow_smooths)
    fixed_display = " + ".join(terms.fixed).replace("+ - ", "- ") if terms.fixed else "1"
    # formulaic gets the intercept removal first ("0 + ..."), which also keeps plain formulas on the fast path
    no_int = [fp for fp in terms.fixed if fp.replace(" ", "") in ("-1", "0", "+0")]
    kept = [fp for fp in terms.fixed if fp not in no_int]
    fixed_text = " + ".join(["0"] + kept) if no_int else fixed_display
    fixed = r_powers(FACTOR_CALL.sub(lambda m: f"`factor({m.group(1)})`", fixed_text))
    if fixed_display != "1":
        _check_fixed(fixed, terms.fixed_at, text)
    return ModelSpec(
        response=response,
        fixed=fixed,
        fixed_display=fixed_display,
        random=tuple(terms.random),
        smooths=tuple(terms.smooths),
        factor_calls=tuple(dict.fromkeys(FACTOR_CALL.findall(fixed_display))),
        offsets=tuple(terms.offsets),
    )


def _split_response(text: str) -> tuple[str, str, int]:
    """The response, the right-hand side and where it starts in the text."""
    if text.count("~") != 1:
        pos = text.find("~", text.find("~") + 1) if text.count("~") > 1 else len(text)
        raise FormulaError("A formula needs exactly one '~' between the response and the terms", text, pos)
    lhs, rhs = text.split("~")
    response = lhs.strip()
    if not response:
        raise FormulaError("The formula has no response before '~'", text, 0)
    response = _strip_backticks(response)
    if not NAME.match(response) and not _is_quoted_name(lhs.strip()):
        raise FormulaError(f"The response must be a column name, not '{response}'", text, 0)
    if not rhs.strip():
        raise FormulaError("The formula has no terms after '~'", text, len(text))
    return response, rhs, len(lhs) + 1


@dataclass
class _Terms:
    """The right-hand side's terms by kind, as they are read."""

    fixed: list[str] = field(default_factory=list)
    fixed_at: list[tuple[str, int]] = field(default_factory=list)  # each fixed term as written, and where
    random: list[RandomTerm] = field(default_factory=list)
    smooths: list[SmoothTerm] = field(default_factory=list)
    offsets: list[OffsetTerm] = field(default_factory=list)

    def add(self, p: str, lead: int, sep: str, text: str, allow_smooths: bool) -> None:
        kind = "fixed"
        if p.startswith("(") and _matching_paren(p, 0) == len(p) - 1 and _has_top_bar(p[1:-1]):
            kind = "random-effects term"
        elif re.match(r"^s\s*\(", p):
            kind = "smooth"
            if not allow_smooths:
                raise FormulaError("Smooth terms s(...) belong to 'mmcli gamm', not this command", text, lead)
        elif re.match(r"^offset\s*\(", p):
            kind = "offset"
        if sep == "-" and kind != "fixed":
            raise FormulaError(f"A{'n' if kind == 'offset' else ''} {kind} cannot be subtracted", text, lead)
        if kind == "random-effects term":
            self.random += _parse_bar(p[1:-1], lead + 1, text)
        elif kind == "smooth":
            self.smooths.append(_parse_smooth(p, lead, text))
        elif kind == "offset":
            self.offsets.append(_parse_offset(p, lead, text))
        elif "|" in p:
            bar = _top_bar_index(p)
            where = lead + (bar if bar >= 0 else p.index("|"))
            raise FormulaError("A random-effects term must be in parentheses: (expr | group)", text, where)
        else:
            self.fixed.append(("- " if sep == "-" else "") + p)
            self.fixed_at.append((p, lead))


def _check_fixed(fixed: str, fixed_at: list[tuple[str, int]], text: str) -> None:
    """A syntax check of the fixed part now, pointing at the term (and the place in it) that cannot be read."""
    try:
        fixed_variables(fixed)
    except FormulaError:
        for p, lead in fixed_at:
            err = _syntax_error(p)
            if err is not None:
                raise FormulaError(f"Cannot read the term '{p}': {err[0]}", text, lead + err[1]) from None
        raise


def _strip_backticks(s: str) -> str:
    return s[1:-1] if len(s) > 1 and s[0] == s[-1] == "`" else s


def _is_quoted_name(s: str) -> bool:
    return len(s) > 1 and s[0] == s[-1] == "`"


def _has_top_bar(s: str) -> bool:
    depth = 0
    for ch in s:
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0 and ch == "|":
            return True
    return False


def _parse_bar(inner: str, off: int, whole: str) -> list[RandomTerm]:
    """``expr | g`` or ``expr || g``; ``g`` may be ``a/b`` (nested) or ``a:b``."""
    i = inner.index("|")
    double = inner[i : i + 2] == "||"
    expr = inner[:i].strip()
    group = inner[i + (2 if double else 1) :].strip()
    if not expr:
        raise FormulaError("Missing the effects before '|' (write 1 for an intercept)", whole, off)
    if not group:
        raise FormulaError("Missing the grouping factor after '|'", whole, off + len(inner))
    if "|" in group:
        raise FormulaError("Only one '|' is allowed in a random-effects term", whole, off + i + 1 + group.index("|"))
    gpos = off + inner.index(group, i)
    nested = [g.strip() for g in group.split("/")]
    for g in nested:
        for f in g.split(":"):
            if not NAME.match(f.strip()):
                raise FormulaError(f"The grouping factor must be a column name, not '{f.strip()}'", whole, gpos)
    # a/b/c -> a, b:a, c:b:a  (lme4 names the nested factor 'cask:batch' for batch/cask)
    groups: list[tuple[str, ...]] = []
    for k in range(len(nested)):
        fs: list[str] = []
        for g in reversed(nested[: k + 1]):
            fs += [f.strip() for f in g.split(":")]
        groups.append(tuple(fs))
    if expr not in ("1", "0"):
        fixed_variables(expr)  # a syntax check of the term's own formula, with the user's text in the message
    terms: list[RandomTerm] = []
    for factors in groups:
        if double:
            terms += [RandomTerm(e, factors) for e in _split_double(expr)]
        else:
            terms.append(RandomTerm(expr, factors))
    return terms


def _split_double(expr: str) -> list[str]:
    """lme4's expandDoubleVerts: (x || g) = (1 | g) + (0 + x | g)."""
    pieces = re.split(r"\s*([+-])\s*", "+" + expr.strip())[1:]  # sign, term, sign, term, ...
    has_int = True
    out = []
    for sign, term in zip(pieces[::2], pieces[1::2]):
        if (sign == "-" and term == "1") or (sign == "+" and term == "0"):
            has_int = False
        elif term in ("1", "0", ""):
            continue
        elif sign == "+":
            out.append(term)
    return (["1"] if has_int else []) + [f"0 + {p}" for p in out]


_OFFSET = re.compile(
    r"^offset\s*\(\s*(?:(log)\s*\(\s*(`[^`]+`|[A-Za-z_.][A-Za-z0-9_.]*)\s*\)|(`[^`]+`|[A-Za-z_.][A-Za-z0-9_.]*))\s*\)$"
)


def _parse_offset(p: str, off: int, whole: str) -> OffsetTerm:
    """``offset(x)`` or ``offset(log(x))``."""
    m = _OFFSET.match(p)
    if not m:
        raise FormulaError("An offset takes a column or the log of a column: offset(x), offset(log(x))", whole, off)
    return OffsetTerm(_strip_backticks(m.group(2) or m.group(3)), log=m.group(1) is not None)


def _parse_smooth(p: str, off: int, whole: str) -> SmoothTerm:
    """``s(x, bs = 'cs', k = 10)``; R's argument syntax is close enough to Python's for ast."""
    close = _matching_paren(p, p.index("("))
    if close != len(p) - 1:
        raise FormulaError("Unexpected text after s(...)", whole, off + close + 1)
    src = "f" + p[p.index("(") :].replace("TRUE", "True").replace("FALSE", "False")
    try:
        call = ast.parse(src, mode="eval").body
    except SyntaxError as e:
        raise FormulaError("Cannot read the smooth's arguments", whole, off + max((e.offset or 1) - 1, 0)) from None
    assert isinstance(call, ast.Call)
    if len(call.args) != 1 or not isinstance(call.args[0], ast.Name):
        raise FormulaError("A smooth takes one column: s(x, bs = 'cr', k = 10)", whole, off)
    var = call.args[0].id
    bs, k, bs_given = "cr", 10, False
    for kw in call.keywords:
        try:
            val = ast.literal_eval(kw.value)
        except ValueError:
            raise FormulaError(f"Argument {kw.arg} of s() must be a literal", whole, off) from None
        if kw.arg == "bs":
            if val not in SMOOTH_BASES:
                from mmcli.errors import UsageError

                raise UsageError(f"Unknown smooth basis '{val}'. Use one of: {', '.join(SMOOTH_BASES)}.")
            bs, bs_given = str(val), True
        elif kw.arg == "k":
            if not isinstance(val, int) or isinstance(val, bool):
                raise FormulaError("k in s() must be a whole number", whole, off)
            k = val
        else:
            raise FormulaError(f"Unsupported argument '{kw.arg}' in s(): mmcli knows bs and k", whole, off)
    return SmoothTerm(var, bs, k, bs_given)


def build_formula(
    y: str | None,
    fixed: list[str],
    groups: list[str],
    slopes: list[str],
    smooths: list[str] | None = None,
    bs: str = "cr",
    k: int = 10,
) -> str:
    """The formula that the column options (--y --fixed --group --slope --smooth) stand for."""
    from mmcli.errors import UsageError

    if not y:
        raise UsageError("Give a formula, or the response with --y COL (and --group COL for the random intercept).")
    rhs = [_q(f) for f in fixed] or ["1"]
    for s in smooths or []:
        rhs.append(f"s({_q(s)}, bs = '{bs}', k = {k})")
    if slopes and not groups:
        raise UsageError("--slope needs --group: the slope varies by the levels of a grouping column.")
    for g in groups:
        expr = " + ".join(["1"] + [_q(s) for s in slopes])
        rhs.append(f"({expr} | {g})")
    return f"{_q(y)} ~ " + " + ".join(rhs)


def _q(col: str) -> str:
    return col if NAME.match(col) else f"`{col}`"
