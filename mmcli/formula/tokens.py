"""Formula text -> tokens: names (bare as R writes them, or between backquotes), numbers, strings and the
operators of formulas. Any other character is an error that says where it is."""

from __future__ import annotations

from dataclasses import dataclass

from mmcli.errors import FormulaError


@dataclass(frozen=True)
class Token:
    kind: str  # name, qname, num, str, op, end
    text: str
    pos: int
    value: object = None


_OPS = ("||", "**", "%in%", "~", "|", "+", "-", "*", "/", ":", "^", "(", ")", ",", "=")


def name_start(ch: str) -> bool:
    return ch.isalpha() or ch in "._"


def name_char(ch: str) -> bool:
    return ch.isalnum() or ch in "._"


def tokenize(text: str) -> list[Token]:
    out: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch.isdigit() or (ch == "." and i + 1 < n and text[i + 1].isdigit()):
            j = _number_end(text, i)
            raw = text[i:j]
            out.append(Token("num", raw, i, float(raw.rstrip("L"))))
            i = j
        elif name_start(ch):
            j = i + 1
            while j < n and name_char(text[j]):
                j += 1
            out.append(Token("name", text[i:j], i, text[i:j]))
            i = j
        elif ch == "`":
            j, value = _quoted(text, i, "`")
            if not value:
                raise FormulaError("Empty name between backquotes", text, i)
            out.append(Token("qname", text[i:j], i, value))
            i = j
        elif ch in "'\"":
            j, value = _quoted(text, i, ch)
            out.append(Token("str", text[i:j], i, value))
            i = j
        else:
            op = next((o for o in _OPS if text.startswith(o, i)), None)
            if op is None:
                if ch == "%":
                    raise FormulaError("Unsupported operator (of the %...% operators mmcli knows %in%)", text, i)
                raise FormulaError(f"Unexpected character '{ch}'", text, i)
            out.append(Token("op", "^" if op == "**" else op, i))
            i += len(op)
    out.append(Token("end", "", n))
    return out


def _number_end(text: str, i: int) -> int:
    j, n = i, len(text)
    while j < n and text[j].isdigit():
        j += 1
    if j < n and text[j] == ".":
        j += 1
        while j < n and text[j].isdigit():
            j += 1
    if j < n and text[j] in "eE":
        k = j + 1
        if k < n and text[k] in "+-":
            k += 1
        if k < n and text[k].isdigit():
            j = k
            while j < n and text[j].isdigit():
                j += 1
    if j < n and text[j] == "L":
        j += 1
    if j < n and name_char(text[j]):
        raise FormulaError("A name cannot start with a digit (write it between backquotes)", text, i)
    return j


def _quoted(text: str, i: int, q: str) -> tuple[int, str]:
    """The end of a quoted name or string starting at i, and its value (backslash escapes the quote)."""
    out: list[str] = []
    j = i + 1
    while j < len(text):
        ch = text[j]
        if ch == "\\" and j + 1 < len(text):
            out.append(text[j + 1])
            j += 2
            continue
        if ch == q:
            return j + 1, "".join(out)
        out.append(ch)
        j += 1
    raise FormulaError(f"Unmatched {q}", text, i)
