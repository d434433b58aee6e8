"""The result written out: JSON and CSV on standard output in one write each, notes on standard error, and the
optimizer's progress line. Nothing here imports rich (the tables of :mod:`mmcli.render` do), so that a run
that writes JSON or CSV does not load it."""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from mmcli.output import say


def note(msg: str) -> None:
    """A note on standard error. If standard error is gone, the result is still written."""
    say(f"Note: {msg}")


def write_text(text: str) -> None:
    """The whole result to standard output in one write."""
    sys.stdout.write(text)
    sys.stdout.flush()


def without_non_finite(obj: Any) -> tuple[Any, dict[str, int]]:
    """A copy of a result with every infinite or NaN number replaced by None (null in JSON, NA in CSV and
    tables), and how many were replaced under each field, named by its path (``predictions.fit``)."""
    counts: dict[str, int] = {}

    def walk(v: Any, where: str) -> Any:
        if isinstance(v, dict):
            return {k: walk(x, f"{where}.{k}" if where else str(k)) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [walk(x, where) for x in v]
        if isinstance(v, numbers.Real) and not isinstance(v, numbers.Integral) and not math.isfinite(v):
            counts[where] = counts.get(where, 0) + 1
            return None
        return v

    return walk(obj, ""), counts


def write_json(obj: Any) -> None:
    write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n")


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def csv_cell(value: Any) -> str:
    """One CSV field. A missing or non-finite number is NA. A text that a spreadsheet would run as a formula
    (it begins with = + - @, a tab or a carriage return, and is not a number such as -1.5) gets a leading ' and
    quotes, as OWASP advises against CSV injection. Other texts are quoted only where CSV needs it (RFC 4180)."""
    if value is None:
        return "NA"
    if isinstance(value, (bool, str)) or not isinstance(value, numbers.Real):
        text = str(value)
        if text.startswith(_FORMULA_START) and not _NUMBER.fullmatch(text):
            return '"' + ("'" + text).replace('"', '""') + '"'
        if any(c in text for c in ',"\r\n'):
            return '"' + text.replace('"', '""') + '"'
        return text
    if isinstance(value, numbers.Integral):
        return str(int(value))
    x = float(value)
    return repr(x) if math.isfinite(x) else "NA"


def write_csv(rows: Iterable[dict[str, Any]], columns: list[str]) -> None:
    lines = [",".join(csv_cell(c) for c in columns)]
    lines += [",".join(csv_cell(r.get(c)) for c in columns) for r in rows]
    write_text("\n".join(lines) + "\n")


@contextlib.contextmanager
def progress(
    delay: float = 1.0, label: str = "fitting ...", line: Callable[[int, float], str] | None = None
) -> Iterator[Callable[[int, float], None] | None]:
    """A callback for the optimizer (or any loop that calls it with a count) that shows a status line on a
    terminal once the work takes longer than ``delay`` seconds, removed at the end; nothing at all when standard
    error is not a terminal. ``line`` words the status from the count and the seconds so far (default: the
    optimizer's evaluations)."""
    if not sys.stderr.isatty():
        yield None
        return
    start = time.perf_counter()
    state: dict[str, Any] = {"status": None}

    def cb(count: int, _: float) -> None:
        seconds = time.perf_counter() - start
        if seconds < delay:
            return
        status = state["status"]
        if status is None:
            from mmcli.render import err_console  # rich: only once a status line is shown

            status = state["status"] = err_console().status(label)
            status.start()
        status.update(line(count, seconds) if line else f"fitting: {count} evaluations, {seconds:.1f} s")

    try:
        yield cb
    finally:
        if state["status"] is not None:
            state["status"].stop()


def table(name: str) -> Callable[[dict[str, Any]], None]:
    """A table printer of :mod:`mmcli.render` by name, imported (with rich) only when a table is printed."""

    def show(d: dict[str, Any]) -> None:
        from mmcli import render

        getattr(render, name)(d)

    return show
