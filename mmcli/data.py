"""CSV -> checked columns. Rows with a missing value in a used column are dropped and counted.

The only module that reads files with pandas. Only the columns a model uses are parsed.
"""

from __future__ import annotations

import io
import math
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mmcli.errors import DataError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


@dataclass(frozen=True, eq=False)
class Table:
    """The used columns of a CSV, after dropping incomplete rows."""

    frame: pd.DataFrame
    source: str
    columns: tuple[str, ...]  # every column of the file, in order
    dropped_rows: int = 0
    notes: list[str] = field(default_factory=list)


_CSV = {
    "encoding": "utf-8-sig",
    "skipinitialspace": True,
    "keep_default_na": True,
    "na_values": ["NA", "NaN", "nan", ".", ""],
    "engine": "c",
}


_HEADER = {"encoding": "utf-8-sig", "skipinitialspace": True}  # as the data are read: 'y, x' names x


def _read_source(path: str) -> tuple[object, str]:
    """A path, or '-' for standard input (read whole, so the header can be checked first)."""
    if path == "-":
        if sys.stdin is None:
            raise DataError("Standard input is closed: give a file name instead of -, or pipe the CSV in.")
        raw = sys.stdin.buffer.read()
        return io.BytesIO(raw), "<stdin>"
    return path, path


def read_header(src: object, name: str) -> list[str]:
    import pandas as pd

    try:
        head = pd.read_csv(src, nrows=0, **_HEADER)  # type: ignore[call-overload]
        if hasattr(src, "seek"):
            src.seek(0)  # type: ignore[attr-defined]
        # pandas renames a repeated name (x, x.1): read the header line as it is to tell
        raw = pd.read_csv(src, header=None, nrows=1, dtype=str, keep_default_na=False, **_HEADER)  # type: ignore[call-overload]
    except FileNotFoundError:
        raise DataError(f"File '{name}' not found.") from None
    except IsADirectoryError:
        raise DataError(f"'{name}' is a directory, not a CSV file.") from None
    except PermissionError:
        raise DataError(f"File '{name}' cannot be read (permission denied).") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"File '{name}' is empty: a CSV with a header line is needed.") from None
    except UnicodeDecodeError as e:
        raise _not_utf8(name, e) from None
    except pd.errors.ParserError as e:
        raise DataError(f"File '{name}' is not a readable CSV: {_first_line(e)}") from None
    finally:
        if hasattr(src, "seek"):
            src.seek(0)  # type: ignore[attr-defined]
    cols = [str(c) for c in head.columns]
    names = [str(c) for c in raw.iloc[0]] if len(raw) else cols
    dup = sorted({c for c in names if c and names.count(c) > 1})
    if dup:
        raise DataError(f"File '{name}' has duplicated column names: {', '.join(dup)}.")
    return cols


def _not_utf8(name: str, e: UnicodeDecodeError) -> DataError:
    return DataError(
        f"File '{name}' is not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8, "
        f"e.g. iconv -f latin1 -t utf-8 '{name}' > new.csv"
    )


def _first_line(e: Exception) -> str:
    s = str(e).strip()
    return s.splitlines()[0] if s else type(e).__name__


def resolve(col: str, columns: list[str]) -> str:
    """The file's column for a name the user gave; an error lists the real columns."""
    if col in columns:
        return col
    import difflib

    lower = [c for c in columns if c.lower() == col.lower()]
    close = lower if len(lower) == 1 else difflib.get_close_matches(col, columns, n=1, cutoff=0.75)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    seps = [sep for sep in (";", "\t", "|") if len(columns) == 1 and sep in columns[0]]
    if seps:
        shown = "tabs" if seps[0] == "\t" else f"'{seps[0]}'"
        raise DataError(
            f"Column '{col}' not found: the file has the single column '{columns[0]}', so its fields seem to be "
            f"separated by {shown}. mmcli reads comma-separated files: save it as CSV with commas."
        )
    raise DataError(f"Column '{col}' not found.{hint} Columns are: {', '.join(columns)}")


def load(
    path: str,
    *,
    numeric: list[str],
    categorical: list[str],
    other: list[str] | None = None,
) -> Table:
    """Read the named columns of a CSV.

    ``numeric`` columns must hold numbers (the response, smooth variables); ``categorical`` columns are read
    as text (grouping factors, --factor columns); ``other`` columns keep the type pandas infers (fixed effects:
    numbers stay numeric, text becomes a factor as in R).
    """
    import pandas as pd

    other = other or []
    src, name = _read_source(path)
    columns = read_header(src, name)
    wanted = list(dict.fromkeys(numeric + categorical + other))
    for c in wanted:
        resolve(c, columns)
    frame = _read_columns(src, name, wanted, numeric, categorical, other)
    frame = frame[wanted]
    n_all = len(frame)
    if n_all == 0:
        raise DataError(f"File '{name}' has a header but no data rows.")
    for c in numeric:
        frame[c] = _as_numeric(frame[c], c)
    for c in other:
        s = frame[c]
        if pd.api.types.is_string_dtype(s.dtype):  # object, or pandas 3's str
            conv = pd.to_numeric(s, errors="coerce")
            # a column of numbers with a few text cells is a mistake, not a factor
            if conv.notna().sum() > 0.5 * s.notna().sum() and conv.isna().sum() > s.isna().sum():
                frame[c] = _as_numeric(s, c)
    for c in wanted:
        if frame[c].dtype.kind == "f":
            _check_magnitude(frame[c].to_numpy(), c, lines=True)
    frame, dropped, notes = _drop_incomplete(frame, name)
    _release_parser_memory()
    return Table(frame=frame, source=name, columns=tuple(columns), dropped_rows=dropped, notes=notes)


def _read_columns(
    src: object, name: str, wanted: list[str], numeric: list[str], categorical: list[str], other: list[str]
) -> pd.DataFrame:
    """The wanted columns, typed. Parsing straight to float64 is about twice as fast as inferring and
    converting; the columns of unknown type are guessed from the first rows, and any surprise falls back to
    the inferring parser, whose messages name the offending line."""
    import pandas as pd

    dtypes: dict[str, str] = {c: "category" for c in categorical}
    fast = dict(dtypes, **{c: "float64" for c in numeric})
    try:
        sample = pd.read_csv(src, usecols=list(other), nrows=200, **_CSV) if other else None  # type: ignore[call-overload]
        if sample is not None:
            fast.update({c: "float64" for c in other if sample[c].dtype.kind in "fiu"})
    except (UnicodeDecodeError, pd.errors.ParserError, ValueError):
        pass
    finally:
        src.seek(0) if hasattr(src, "seek") else None  # type: ignore[attr-defined]
    try:
        return pd.read_csv(src, usecols=wanted, dtype=fast, **_CSV)  # type: ignore[call-overload]
    except (UnicodeDecodeError, pd.errors.ParserError, ValueError):
        if hasattr(src, "seek"):
            src.seek(0)  # type: ignore[attr-defined]
    try:
        return pd.read_csv(src, usecols=wanted, dtype=dtypes, **_CSV)  # type: ignore[call-overload]
    except UnicodeDecodeError as e:
        raise _not_utf8(name, e) from None
    except (pd.errors.ParserError, ValueError) as e:
        raise DataError(f"File '{name}' is not a readable CSV: {_first_line(e)}") from None


def _drop_incomplete(frame: pd.DataFrame, name: str) -> tuple[pd.DataFrame, int, list[str]]:
    """Rows with a missing value in a used column are dropped and counted (as lm/lmer's na.omit)."""
    n_all = len(frame)
    complete = frame.notna().all(axis=1)
    dropped = int(n_all - complete.sum())
    notes = []
    if dropped:
        frame = frame.loc[complete].reset_index(drop=True)
        notes.append(f"Dropped {dropped} of {n_all} rows with a missing value in a used column.")
    if len(frame) == 0:
        raise DataError(f"No complete rows: every row of '{name}' has a missing value in a used column.")
    return frame, dropped, notes


def _release_parser_memory() -> None:
    """Hand the CSV parser's freed buffers back to the operating system (glibc keeps them otherwise), so
    that the arrays built next do not stack on top of them: this lowers the peak memory of large fits."""
    import contextlib
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)


HUGE = 1e154  # the squares of larger numbers (sums of squares, variances) overflow double precision


def _check_magnitude(values: np.ndarray, col: str, *, lines: bool) -> None:
    """Infinite values, and numbers too large for a sum of squares, are errors."""
    import numpy as np

    with np.errstate(invalid="ignore"):
        bad = np.flatnonzero(np.abs(values) > HUGE)  # NaN (missing) compares False
    if not bad.size:
        return
    v = float(values[bad[0]])
    where = f" (line {bad[0] + 2} of the file)" if lines else ""
    if np.isinf(v):
        raise DataError(f"Column '{col}' has an infinite value{where}; remove or fix it.")
    raise DataError(
        f"Column '{col}' holds {v:.3g}{where}, too large: mmcli works with numbers below 1e154 in size, whose "
        "squares stay finite. Rescale the column (express it in larger units)."
    )


def _as_numeric(s: pd.Series, col: str) -> pd.Series:
    import pandas as pd

    if s.dtype.kind in "fiub":
        return s.astype(float)
    conv = pd.to_numeric(s, errors="coerce")
    bad = conv.isna() & s.notna()
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise DataError(
            f"Column '{col}' must be numeric, but line {i + 2} holds '{s.iloc[i]}'. "
            "Fix the value, or use the column as a factor."
        )
    return conv.astype(float)


def level_order(values: pd.Series) -> tuple[list[str], np.ndarray]:
    """Levels of a categorical column sorted as R's factor() sorts them: numerically when every value is a
    number, else by text. Returns the labels (as R prints them) and the integer code of each row."""
    import numpy as np
    import pandas as pd

    cat = values if isinstance(values.dtype, pd.CategoricalDtype) else values.astype(str).astype("category")
    raw_codes = cat.cat.codes.to_numpy()
    all_cats = cat.cat.categories
    used = np.flatnonzero(np.bincount(raw_codes[raw_codes >= 0], minlength=len(all_cats)))
    if used.size < len(all_cats):  # categories left unused by dropped rows
        remap = np.full(len(all_cats), -1, dtype=np.int64)
        remap[used] = np.arange(used.size)
        raw_codes = remap[raw_codes]
        all_cats = all_cats[used]
    cats = [str(c).strip() for c in all_cats]
    num = pd.to_numeric(pd.Series(cats, dtype=object), errors="coerce")
    if cats and num.notna().all():
        order = np.argsort(num.to_numpy(dtype=float), kind="stable")
        labels = [_r_number(float(num.iloc[i]), cats[i]) for i in order]
    else:
        order = np.array(sorted(range(len(cats)), key=lambda i: cats[i]), dtype=np.int64)
        labels = [cats[i] for i in order]
    rank = np.empty(len(cats), dtype=np.int32)
    rank[order] = np.arange(len(cats))
    codes: np.ndarray = rank[raw_codes]
    # labels equal after stripping or as numbers ("1" and "1.0") are one level
    if len(set(labels)) < len(labels):
        uniq = list(dict.fromkeys(labels))
        remap = np.array([uniq.index(lab) for lab in labels], dtype=np.int32)
        codes, labels = remap[codes], uniq
    return labels, codes


def _r_number(x: float, raw: str) -> str:
    """Print a number as R's factor() labels it (185 not 185.0)."""
    if math.isfinite(x) and float(x).is_integer() and abs(x) < 1e15:
        return str(int(x))
    return raw


def load_all(path: str) -> Table:
    """Read every column, with the types pandas infers (for commands that pick columns themselves)."""
    import pandas as pd

    src, name = _read_source(path)
    columns = read_header(src, name)
    try:
        frame = pd.read_csv(src, encoding="utf-8-sig", skipinitialspace=True, na_values=["NA", "NaN", "nan", ".", ""])  # type: ignore[call-overload]
    except UnicodeDecodeError as e:
        raise _not_utf8(name, e) from None
    except (pd.errors.ParserError, ValueError) as e:
        raise DataError(f"File '{name}' is not a readable CSV: {_first_line(e)}") from None
    if len(frame) == 0:
        raise DataError(f"File '{name}' has a header but no data rows.")
    return Table(frame=frame, source=name, columns=tuple(columns))


def subset(table: Table, cols: list[str], *, numeric: list[str]) -> Table:
    """The named columns of a table read whole, checked as :func:`load` checks them."""
    frame = table.frame[cols].copy()
    for c in numeric:
        frame[c] = _as_numeric(frame[c], c)
        _check_magnitude(frame[c].to_numpy(), c, lines=False)
    frame, dropped, notes = _drop_incomplete(frame, table.source)
    return Table(frame=frame, source=table.source, columns=table.columns, dropped_rows=dropped, notes=notes)


def numeric_columns(table: Table) -> list[str]:
    """The columns read as numbers."""
    return [c for c in table.frame.columns if table.frame[c].dtype.kind in "fiu"]


def column(table: Table, name: str) -> np.ndarray:
    """One column as floats."""
    return table.frame[name].to_numpy(dtype=float)


def records(table: Table, columns: list[str]) -> list[dict[str, object]]:
    """Rows of the named columns as plain Python values (for echoing them beside predictions)."""
    frame = table.frame[columns]
    return [
        {c: (v.item() if hasattr(v, "item") else v) for c, v in zip(columns, row)}
        for row in frame.itertuples(index=False)
    ]
