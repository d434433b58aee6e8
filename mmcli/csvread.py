"""Where a CSV's bytes come from, how pandas reads them, and which of its columns a name means.

A regular file is read by its path, as often as needed; anything else (standard input, a named pipe, a process
substitution such as ``<(zcat data.csv.gz)``, a device) is read whole, once, into memory, since it cannot be
read a second time. pandas reads with R's missing values (:data:`MISSING`), and a Ctrl-C while it reads is
never taken for a parse error. With data.py, csvlines.py, arrowcsv.py and parquet.py, the only modules that read
files.
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import signal
import stat
import sys
from collections.abc import Callable, Container, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mmcli.dictcodes import dictionary_codes, halves
from mmcli.dictcodes import floats as float_values
from mmcli.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

MISSING = ("NA", "")
"""The cells read as missing in every column, as R's read.csv reads them (``--na`` adds more)."""

NAN_WORDS = ("nan", "+nan", "-nan")
"""Numbers that are not a number: R reads NaN (in any case) in a numeric column as a number, which is then
missing; in a text column it is an ordinary value."""

PARSE = {"encoding": "utf-8-sig", "skipinitialspace": True, "keep_default_na": False, "engine": "c"}
"""How pandas reads every CSV: blanks after a separator are dropped (``y, x`` names ``x``), and only the
cells given as ``na_values`` are missing."""

_SCAN_WINDOW = 64 << 20  # bytes of a file mapped at a time by has_quote
_CHUNK = 1 << 16  # bytes scanned at a time: the arrays of a chunk stay in cache and on the heap (no page faults)
_SUGGEST_MAX_COLUMNS = 10_000  # above this, a misspelled column gets no "Did you mean" (difflib is quadratic)
_SHOW_COLUMNS = 50  # an error lists at most this many of the file's columns


def na_tokens(extra: tuple[str, ...] | list[str] = ()) -> list[str]:
    """The missing-value tokens of a text column: NA, the empty cell and the user's own."""
    return list(dict.fromkeys([*MISSING, *extra]))


def numeric_na_tokens(extra: tuple[str, ...] | list[str] = ()) -> list[str]:
    """The missing-value tokens of a numeric column: NaN, as R's read.csv reads it, is missing there too."""
    return na_tokens(extra) + ["NaN", "nan", "NAN"]


# --------------------------------------------------------------------------------------------------
# Where the bytes come from
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Source:
    """A CSV to read: a regular file by its path, or the bytes of a stream, read once."""

    name: str  # as messages show it
    path: str | None = None
    data: bytes | None = None

    @property
    def from_stdin(self) -> bool:
        return self.path is None and self.name == "<stdin>"

    def handle(self) -> Any:
        """What pandas reads: the path, or a new reader of the bytes (each read starts at the top)."""
        return self.path if self.data is None else io.BytesIO(self.data)

    @contextlib.contextmanager
    def open_bytes(self) -> Iterator[Bytes]:
        """The bytes, in chunks or by offsets (a regular file is read, not loaded whole)."""
        if self.data is not None:
            yield Bytes(self.data, None)
            return
        assert self.path is not None
        with _opened(self.path, self.name) as fh:
            yield Bytes(None, fh)


@dataclass(frozen=True, eq=False)
class Bytes:
    """A source's bytes: held in memory, or an open file read a chunk at a time."""

    data: bytes | None
    fh: Any

    @property
    def size(self) -> int:
        return len(self.data) if self.data is not None else os.fstat(self.fh.fileno()).st_size

    def chunks(self) -> Iterator[tuple[int, np.ndarray, bool]]:
        """(offset, bytes as uint8, whether they hold a double quote) in pieces of _CHUNK bytes; a file's piece is
        overwritten by the next one."""
        if self.data is not None:
            data = self.data
            for a in range(0, len(data), _CHUNK):
                piece = np.frombuffer(data, dtype=np.uint8, count=min(_CHUNK, len(data) - a), offset=a)
                yield a, piece, data.find(b'"', a, a + _CHUNK) >= 0
            return
        buf, a = bytearray(_CHUNK), 0
        self.fh.seek(0)
        while n := self.fh.readinto(buf):
            yield a, np.frombuffer(buf, dtype=np.uint8, count=n), buf.find(b'"', 0, n) >= 0
            a += n

    def fetch(self, start: int, end: int) -> bytes:
        """The bytes from start to end (the file's position for chunks() is kept)."""
        if self.data is not None:
            return self.data[start:end]
        here = self.fh.tell()
        self.fh.seek(start)
        out: bytes = self.fh.read(end - start)
        self.fh.seek(here)
        return out


def open_source(path: str) -> Source:
    """A path, ``-`` for standard input, or any readable file: a FIFO or /dev/fd/N is read here, once."""
    if path == "-":
        stdin = sys.stdin
        if stdin is None:
            raise DataError("Standard input is closed: give a file name instead of -, or pipe the CSV in.")
        raw = stdin.buffer.read() if hasattr(stdin, "buffer") else stdin.read().encode("utf-8")
        return Source("<stdin>", data=raw)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise DataError(f"File '{path}' not found.") from None
    except PermissionError:
        raise DataError(f"File '{path}' cannot be read (permission denied).") from None
    except OSError as e:
        raise DataError(f"File '{path}' cannot be read: {e.strerror or e}.") from None
    if stat.S_ISDIR(mode):
        raise DataError(f"'{path}' is a directory, not a CSV file.")
    with _opened(path, path) as fh:
        if stat.S_ISREG(mode) and os.fstat(fh.fileno()).st_size > 0:
            return Source(path, path=path)
        return Source(path, data=fh.read())  # a pipe, a device, or a file that only reading tells the size of


@contextlib.contextmanager
def _opened(path: str, name: str) -> Iterator[Any]:
    try:
        fh = open(path, "rb")  # noqa: SIM115 (closed below, after the errors of opening are told apart)
    except FileNotFoundError:
        raise DataError(f"File '{name}' not found.") from None
    except PermissionError:
        raise DataError(f"File '{name}' cannot be read (permission denied).") from None
    except OSError as e:
        raise DataError(f"File '{name}' cannot be read: {e.strerror or e}.") from None
    with fh:
        yield fh


def not_utf8(source: Source, e: UnicodeDecodeError, offset: int = 0) -> DataError:
    """The error for a file that is not UTF-8, with a conversion command safe to paste into a shell."""
    if source.from_stdin:
        how = "e.g. pipe it through iconv -f latin1 -t utf-8 first"
    else:
        how = f"e.g. iconv -f latin1 -t utf-8 {shlex.quote(source.name)} > new.csv"
    return DataError(
        f"File '{source.name}' is not UTF-8 text ({e.reason} at byte {offset + e.start}); save it as UTF-8, {how}"
    )


# --------------------------------------------------------------------------------------------------
# Ctrl-C while pandas reads
# --------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _interrupt_flag() -> Iterator[list[bool]]:
    """A flag set by SIGINT (the handler in place still runs): pandas' C parser can turn the KeyboardInterrupt
    raised inside one of its reads into a parse error, and a parse error must not be taken for a bad file."""
    hit = [False]
    previous: Any = None
    with contextlib.suppress(ValueError):  # not the main thread: no handler can be set, nothing to watch
        current = signal.getsignal(signal.SIGINT)
        if callable(current):  # not ignored: watch it

            def note(signum: int, frame: Any) -> None:
                hit[0] = True
                current(signum, frame)

            previous = signal.signal(signal.SIGINT, note)
    try:
        yield hit
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _parsing() -> Iterator[None]:
    """A read by pandas: an interrupt during it always ends as KeyboardInterrupt, never as a parse error."""
    with _interrupt_flag() as hit:
        try:
            yield
        except GeneratorExit:  # a read in blocks closed early (by an error or an interrupt outside pandas)
            raise
        except BaseException:
            if hit[0]:
                raise KeyboardInterrupt from None
            raise
        if hit[0]:
            raise KeyboardInterrupt


def read_csv(source: Source, **kw: Any) -> pd.DataFrame:
    """pandas.read_csv on the source, with :data:`PARSE`; an interrupt always ends as KeyboardInterrupt."""
    import pandas as pd

    with _parsing():
        frame = pd.read_csv(source.handle(), **{**PARSE, **kw})
    return frame


def read_csv_blocks(source: Source, rows: int, **kw: Any) -> Generator[pd.DataFrame, None, None]:
    """pandas.read_csv on the source, as :func:`read_csv`, ``rows`` rows at a time."""
    import pandas as pd

    with _parsing(), pd.read_csv(source.handle(), chunksize=rows, **{**PARSE, **kw}) as reader:
        yield from reader


# --------------------------------------------------------------------------------------------------
# Column names
# --------------------------------------------------------------------------------------------------


def resolve(col: str, columns: Sequence[str], known: Container[str] | None = None) -> str:
    """The file's column for a name the user gave; an error lists the real columns. ``known`` (a set or dict
    of the columns) makes the look-up take constant time in a wide file."""
    if col in (columns if known is None else known):
        return col
    seps = [sep for sep in (";", "\t", "|") if len(columns) == 1 and sep in columns[0]]
    if seps:
        shown = "tabs" if seps[0] == "\t" else f"'{seps[0]}'"
        raise DataError(
            f"Column '{col}' not found: the file has the single column '{columns[0]}', so its fields seem to be "
            f"separated by {shown}. mmcli reads comma-separated files: save it as CSV with commas."
        )
    lower = [c for c in columns if c.lower() == col.lower()]
    close = lower[:1] if len(lower) == 1 else []
    if not close and len(columns) < _SUGGEST_MAX_COLUMNS:
        import difflib

        close = difflib.get_close_matches(col, columns, n=1, cutoff=0.75)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    shown = ", ".join(columns[:_SHOW_COLUMNS])
    if len(columns) > _SHOW_COLUMNS:
        shown += f", ... ({len(columns) - _SHOW_COLUMNS} more)"
    raise DataError(f"Column '{col}' not found.{hint} Columns are: {shown}")


# --------------------------------------------------------------------------------------------------
# The fast read of grouping columns (pyarrow, when installed)
# --------------------------------------------------------------------------------------------------


def source_size(source: Source) -> int:
    """The CSV's size in bytes (0 when unknown)."""
    return len(source.data) if source.data is not None else os.stat(source.path).st_size if source.path else 0


def _block_size(source: Source) -> int:
    """pyarrow's parse block: a sixteenth of the file, between 1 and 16 MiB. Each reader thread holds a few
    blocks, so 16 MiB blocks cost a 64 MB file about 240 MiB of peak memory (4 MiB: none measurable), while a
    650 MB file reads 20% faster with them than with 4 MiB."""
    return int(min(max(source_size(source) // 16, 1 << 20), 1 << 24))


def _numbers_at_the_top(source: Source, names: list[str], cols: list[str], na: list[str]) -> bool:
    """Whether pyarrow reads the columns ``cols`` of the file's first MiB as numbers (integers or floats)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    try:
        reader = pacsv.open_csv(
            source.handle(),
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1, block_size=1 << 20, use_threads=False),
            convert_options=pacsv.ConvertOptions(include_columns=cols, null_values=list(na), strings_can_be_null=True),
        )
        types = list(reader.schema.types)
        reader.close()
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError, ValueError):
        return False
    return all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in types)


def has_quote(source: Source) -> bool:
    """Whether the CSV holds a double quote anywhere: only then can a value hold a line break (or a label start
    with a quote), and only then must pyarrow's reader track quotes across its blocks, which costs it about 40%
    more time and memory. A file is scanned through windows of memory maps (no copy, no resident growth)."""
    if source.data is not None:
        return source.data.find(b'"') >= 0
    assert source.path is not None
    import mmap

    with _opened(source.path, source.name) as fh:
        size = os.fstat(fh.fileno()).st_size
        for start in range(0, size, _SCAN_WINDOW):
            with mmap.mmap(fh.fileno(), min(_SCAN_WINDOW, size - start), offset=start, access=mmap.ACCESS_READ) as m:
                if m.find(b'"') >= 0:
                    return True
    return False


def read_arrow(
    source: Source,
    ncols: int,
    floats: list[int],
    groups: list[int],
    na: list[str],
    *,
    quoted: bool = True,
    order: Callable[[list[Any]], np.ndarray | None] | None = None,
    inferred: Sequence[int] = (),
) -> dict[int, Any] | None:
    """The columns at the given positions, read by pyarrow's multithreaded CSV reader: ``floats`` as float64 arrays
    (NaN where missing), ``groups`` as coded text (codes, labels, rows per label; code -1 where missing); ``na`` are
    the missing cells. Grouping columns are read as Arrow text and dictionary-encoded by Arrow, several times
    cheaper than building a Python string per cell and hashing them. None when pyarrow is not installed or its
    stricter parser refuses the file (a blank after a separator, a text cell in a number column, ...): the caller
    then reads with pandas, whose messages name the offending line. The header must be the file's first line.
    ``quoted=False`` (the file holds no double quote: :func:`has_quote`) lets the reader split its blocks at any
    line break. ``order`` sorts each grouping column's labels (:func:`dictionary_codes`). ``inferred`` columns take
    the type pyarrow infers from the file's first MiB: numbers are read as float64 like ``floats``; any other type
    (text, dates, true/false) returns None, and so does a later cell that is not a number (the types are found by a
    separate look at the top of the file: inferring them in the read itself kept about twice the file's size in
    memory at 10^7 rows). The memory pyarrow's pool keeps after the read is handed back to the system."""
    try:
        import pyarrow as pa
        import pyarrow.csv as pacsv
    except ImportError:
        return None
    names = [f"c{i}" for i in range(ncols)]
    if inferred and not _numbers_at_the_top(source, names, [names[i] for i in inferred], na):
        return None
    types = {names[i]: pa.float64() for i in [*floats, *inferred]}
    # grouping columns as bytes, encoded after the parse (see below): UTF-8 is checked once per distinct label
    types.update({names[i]: pa.binary() for i in groups})
    try:
        table = pacsv.read_csv(
            source.handle(),
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1, block_size=_block_size(source)),
            parse_options=pacsv.ParseOptions(newlines_in_values=quoted),
            convert_options=pacsv.ConvertOptions(
                include_columns=[names[i] for i in sorted({*floats, *groups, *inferred})],
                column_types=types,
                null_values=list(na),
                strings_can_be_null=True,
            ),
        )
    except pa.ArrowCancelled:  # Ctrl-C inside pyarrow's reader
        raise KeyboardInterrupt from None
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError, ValueError):
        return None
    from concurrent.futures import ThreadPoolExecutor

    out: dict[int, Any] = {}
    with ThreadPoolExecutor(2) as pool:  # pyarrow encodes without the interpreter's lock: a long grouping column
        # in two halves at once (their two dictionaries are merged below), while the numbers are copied out. One
        # hash table per half: about a third of the CPU time of the parser's own encoding, which builds one per
        # block and leaves a hundred dictionaries to unify
        coded = {i: [pool.submit(part.dictionary_encode) for part in halves(table.column(names[i]))] for i in groups}
        for i in [*floats, *inferred]:
            out[i] = float_values(table.column(names[i]))
        for i, jobs in coded.items():
            enc = pa.chunked_array([c for job in jobs for c in job.result().chunks])
            try:
                enc = enc.cast(pa.dictionary(enc.type.index_type, pa.string()))
            except (pa.ArrowInvalid, UnicodeDecodeError):  # not UTF-8: the careful read says where
                return None
            out[i] = dictionary_codes(enc, order)
    del table
    pa.default_memory_pool().release_unused()
    return out
