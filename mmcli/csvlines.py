"""The header of a CSV and the number of fields on each of its lines, in one pass over the bytes.

pandas drops the extra fields of a row when it reads only some columns (a row then became a group of its
own), and fills a short row with missing values, so both would pass unnoticed. Here the separators outside
double quotes are counted with numpy, a megabyte at a time, before pandas sees the data: the cost is a small
part of parsing, and the memory does not grow with the file. The header is parsed here too, in time linear in
the number of columns.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from mmcli.csvread import Bytes, Source, not_utf8
from mmcli.errors import DataError

COMMA, QUOTE = 44, 34
_SPACE = np.zeros(256, dtype=bool)
_SPACE[[9, 13, 32]] = True  # tab, carriage return, space: a line of these alone is blank, and pandas skips it


@dataclass(frozen=True, eq=False)
class Layout:
    """The header of a CSV, and the first line whose number of fields differs from it."""

    columns: list[str]  # as pandas names them: an empty name reads "Unnamed: i"
    index: dict[str, int]  # the position of each column, for look-ups in constant time
    problem: str | None = None  # the error for that line
    lines: np.ndarray | None = None  # the file's line of each data row, when it is not simply row + 2
    rows: int = 0  # the number of data rows (0 when not counted)

    def check(self) -> None:
        """Raise the error for a line with too many or too few fields (after the columns are known to exist,
        so that a file with another separator gets the message that says so)."""
        if self.problem:
            raise DataError(self.problem)


def read_layout(source: Source) -> Layout:
    """The header and the shape of every line of the source."""
    with source.open_bytes() as raw:
        scan = _Scan(raw, eol=_line_end(raw))
        for a, chunk, quotes in raw.chunks():
            if not scan.feed(a, chunk, quotes):
                break
        else:
            scan.finish()
        return _layout(source, raw, scan)


def _layout(source: Source, raw: Bytes, scan: _Scan) -> Layout:
    if scan.header is None:
        raise DataError(f"File '{source.name}' is empty: a CSV with a header line is needed.")
    start, end = scan.header
    names = _header_names(source, raw.fetch(start, end), start)
    problem, lines = None, scan.row_lines()
    if len(names) != scan.k or (scan.bad is not None and scan.quoted):
        problem, lines = _by_csv_module(source, raw, len(names))  # quotes inside fields: count as a CSV reader
    elif scan.bad is not None:
        line, n, end = scan.bad
        try:
            raw.fetch(0, end).decode("utf-8")  # a file that is not text is told as such
        except UnicodeDecodeError as e:
            raise not_utf8(source, e) from None
        problem = _wrong_count(source, line, n, len(names))
    index = {c: i for i, c in enumerate(names)}
    if problem is None and len(index) < len(names):
        dup = sorted(c for c, n in Counter(names).items() if n > 1)
        raise DataError(f"File '{source.name}' has duplicated column names: {', '.join(dup)}.")
    rows = scan.rows if lines is None else lines.size
    return Layout(columns=names, index=index, problem=problem, lines=lines, rows=rows)


def _wrong_count(source: Source, line: int, n: int, k: int) -> str:
    return f"File '{source.name}' line {line} has {n} field{'s' * (n != 1)}, but the header has {k}."


@dataclass
class _Scan:
    """What one pass over the chunks of a file finds, and what it carries from one chunk to the next."""

    raw: Bytes
    eol: int  # the line-end byte: \n, or \r in a file of \r line ends alone
    carry: int = 0  # separators of the record in progress
    inside: bool = False  # the chunk so far ends inside double quotes
    quoted: bool = False  # the file has double quotes
    start: int = 0  # where the record in progress starts (a byte offset)
    start_line: int = 1  # and on which line of the file
    eols: int = 0  # line ends so far, quoted ones included
    size: int = 0  # bytes so far
    header: tuple[int, int] | None = None  # where the header line starts and ends
    k: int = 0  # its number of fields
    bad: tuple[int, int, int] | None = None  # line, fields and end of the first line whose count differs
    rows: int = 0  # data rows so far
    lines: list[np.ndarray] = field(default_factory=list)  # their lines, once some is not at row + 2

    def feed(self, a: int, c: np.ndarray, quotes: bool) -> bool:
        """Scan the chunk of bytes at offset a (with double quotes or not); False once a line with a wrong
        count of fields is found."""
        self.size = a + c.size
        mask = c == COMMA
        mask |= c == self.eol
        if quotes:
            mask |= c == QUOTE
        pos = np.flatnonzero(mask)
        val = c[pos]
        is_eol = val == self.eol
        line_ends = pos[is_eol] + a  # quoted ones too: they count for the lines records start on
        if self.inside or quotes:
            self.quoted = True
            q = val == QUOTE
            within = ((np.cumsum(q, dtype=np.uint8) + self.inside) & 1).astype(bool)  # inside quotes after it
            self.inside = bool(within[-1]) if within.size else self.inside
            keep = ~(q | within)
            pos, is_eol = pos[keep], is_eol[keep]
        ends_at = np.flatnonzero(is_eol)
        eols_before, start_line = self.eols, self.start_line
        self.eols += line_ends.size
        if not ends_at.size:
            self.carry += pos.size
            return True
        fields = np.diff(ends_at, prepend=-1)  # separators up to and including each line end
        fields[0] += self.carry
        self.carry = pos.size - 1 - int(ends_at[-1])
        ends = pos[ends_at] + a
        first = None  # the line each record starts on: start_line + j, unless some line ends are quoted
        if ends.size < line_ends.size or start_line != eols_before + 1:
            first = np.empty_like(ends)
            first[0] = start_line
            first[1:] = eols_before + 1 + np.searchsorted(line_ends, ends[:-1] + 1)
        self.start_line = eols_before + 1 + int(np.searchsorted(line_ends, ends[-1], side="right"))
        start, self.start = self.start, int(ends[-1]) + 1
        return self._records(start, ends, fields, start_line, first, (a, c))

    def finish(self) -> None:
        """The last line, when the file does not end with a line end."""
        if self.size > self.start:
            end, fields = np.array([self.size]), np.array([self.carry + 1])
            self._records(self.start, end, fields, self.start_line, None, None)

    def _records(
        self,
        start: int,
        ends: np.ndarray,
        fields: np.ndarray,
        line: int,
        first: np.ndarray | None,
        chunk: tuple[int, np.ndarray] | None,
    ) -> bool:
        """Check the records that end in a chunk (at offset a, if given): where the first starts, where each
        ends, their fields, and the lines they start on (``line``, ``line + 1``, ... unless ``first`` gives
        them). Blank lines are skipped; the lines of the rest are kept once some is not at row + 2."""

        def start_of(j: int) -> int:
            return start if j == 0 else int(ends[j - 1]) + 1

        def line_of(j: int) -> int:
            return line + j if first is None else int(first[j])

        i = 0
        while self.header is None and i < ends.size:  # blank lines before the header are skipped, as by pandas
            if self.raw.fetch(start_of(i), int(ends[i])).strip(b" \t\r"):
                self.header, self.k = (start_of(i), int(ends[i])), int(fields[i])
            i += 1
        if self.header is None:
            return True
        odd = np.flatnonzero(fields[i:] != self.k) + i
        if self.k == 1:  # every line has one field: a blank one starts with a blank (or is empty)
            starts = np.concatenate(([start], ends[:-1] + 1))[i:]
            maybe = np.ones(starts.size, dtype=bool)
            if chunk is not None:
                a, c = chunk
                inside = (starts >= a) & (starts < ends[i:])  # starts in this chunk, not empty
                maybe[inside] = _SPACE[c[starts[inside] - a]]
            odd = np.union1d(odd, np.flatnonzero(maybe) + i)
        blank: list[int] = []
        for j in odd:
            s, e = start_of(int(j)), int(ends[j])
            if fields[j] == 1 and not self.raw.fetch(s, e).strip(b" \t\r"):
                blank.append(int(j) - i)
            elif fields[j] != self.k:
                self.bad = (line_of(int(j)), int(fields[j]), e)
                return False
        n = ends.size - i - len(blank)
        if not blank and first is None and not self.lines and line + i == self.rows + 2:
            self.rows += n  # the usual case: row r on line r + 2
            return True
        rows = first[i:] if first is not None else np.arange(line + i, line + ends.size)
        rows = np.delete(rows, np.asarray(blank, dtype=np.int64))
        if not self.lines:
            self.lines.append(np.arange(2, self.rows + 2))
        self.lines.append(rows)
        self.rows += n
        return True

    def row_lines(self) -> np.ndarray | None:
        """The line of each data row, or None when row i is on line i + 2."""
        return np.concatenate(self.lines) if self.lines else None


def _line_end(raw: Bytes) -> int:
    """The line-end byte: \\n (for \\n and \\r\\n line ends), or \\r when the first line ends in \\r alone."""
    at, step = 0, 1 << 16
    while piece := raw.fetch(at, at + step):
        n, r = piece.find(b"\n"), piece.find(b"\r")
        if r < 0 or 0 <= n < r:
            if n >= 0:
                return 10
        else:
            return 10 if raw.fetch(at + r + 1, at + r + 2) == b"\n" else 13
        at += len(piece)
    return 10


def _header_names(source: Source, raw: bytes, offset: int) -> list[str]:
    try:
        text = raw.decode("utf-8-sig").removesuffix("\r")
    except UnicodeDecodeError as e:
        raise not_utf8(source, e, offset) from None
    try:
        names = next(csv.reader([text], skipinitialspace=True), [""])
    except csv.Error as e:
        raise DataError(f"File '{source.name}' is not a readable CSV: its header line: {e}.") from None
    return [n if n else f"Unnamed: {i}" for i, n in enumerate(names)]


def _by_csv_module(source: Source, raw: Bytes, k: int) -> tuple[str | None, np.ndarray | None]:
    """The fields of each line as Python's CSV reader counts them (slower): for a file with quotes that are not
    around whole fields (``12"``), where counting the quotes is not enough."""
    try:
        text = raw.fetch(0, raw.size).decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise not_utf8(source, e) from None
    reader = csv.reader(io.StringIO(text, newline=""), skipinitialspace=True)
    lines: list[int] = []
    records: Iterator[list[str]] = iter(reader)
    start, header = 1, True
    try:
        for rec in records:
            if rec and not (len(rec) == 1 and not rec[0].strip(" \t\r")):
                if header:
                    header = False
                elif len(rec) != k:
                    return _wrong_count(source, start, len(rec), k), None
                else:
                    lines.append(start)
            start = reader.line_num + 1
    except csv.Error as e:
        raise DataError(f"File '{source.name}' is not a readable CSV: line {reader.line_num}: {e}.") from None
    return None, np.asarray(lines, dtype=np.int64)


def read_header(source: Source) -> Layout | None:
    """The header alone, when it is the file's first line, unquoted, of at least two names, all distinct and
    ending in \\n: enough for a reader that checks every line's fields itself (pyarrow's). None otherwise, and
    then :func:`read_layout` scans the whole file."""
    with source.open_bytes() as raw:
        head = raw.fetch(0, 1 << 16)
        end = head.find(b"\n")
        line = head[:end] if end >= 0 else b""
        if not line.removeprefix(b"\xef\xbb\xbf").strip(b" \t\r") or b'"' in line or b"\r" in line[:-1]:
            return None
        try:
            names = _header_names(source, line, 0)
        except DataError:
            return None
    index = {c: i for i, c in enumerate(names)}
    if len(names) < 2 or len(index) < len(names):
        return None
    return Layout(columns=names, index=index)
