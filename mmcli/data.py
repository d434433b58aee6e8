"""CSV -> checked columns. Rows with a missing value in a used column are dropped and counted.

With csvread.py (the bytes, read once, and pandas' settings), csvlines.py (the header and the shape of the
lines), arrowcsv.py (pyarrow's read of a large CSV) and parquet.py, the only modules that read files; levels.py
holds the levels' codes and R's order of them. Only the columns a model uses are parsed.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mmcli import csvread
from mmcli.arrowcsv import read_fast
from mmcli.columns import Coded, Columns, Frame, floats
from mmcli.csvblocks import map_large_arrays, read_blocks
from mmcli.csvlines import Layout, read_layout
from mmcli.csvread import resolve
from mmcli.errors import DataError
from mmcli.levels import factorized, level_order, may_hold_nan, nan_levels_missing
from mmcli.parquet import ARROW_MIN_BYTES, is_parquet

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


@dataclass(frozen=True, eq=False)
class Table:
    """The used columns of a CSV, after dropping incomplete rows: ``data`` as they are held (Columns only when
    :func:`load` was asked for arrays), ``frame`` as a pandas frame (made from Columns when first read)."""

    data: pd.DataFrame | Columns
    source: str
    columns: tuple[str, ...]  # every column of the file, in order
    dropped_rows: int = 0
    notes: list[str] = field(default_factory=list)
    lines: np.ndarray | None = None  # the file's line of each row as read, when it is not row + 2

    @property
    def frame(self) -> pd.DataFrame:
        data = self.data
        if isinstance(data, Columns):
            data = data.frame()
            object.__setattr__(self, "data", data)
        return data


__all__ = [
    "Table",
    "column",
    "factorized",
    "level_order",
    "load",
    "load_all",
    "numeric_columns",
    "records",
    "release_memory",
    "resolve",
    "subset",
]


def load(
    path: str,
    *,
    numeric: list[str],
    categorical: list[str],
    other: list[str] | None = None,
    na: tuple[str, ...] | list[str] = (),
    arrays: bool = False,
) -> Table:
    """Read the named columns of a CSV.

    ``numeric`` columns must hold numbers (the response, smooth variables); ``categorical`` columns are read
    as text (grouping factors, --factor columns); ``other`` columns keep the type pandas infers (fixed effects:
    numbers stay numeric, text becomes a factor as in R). Missing are NA, the empty cell and the ``na`` tokens,
    in every column; NaN too in a numeric column (R's read.csv rules). A CSV read by the fast path whose data
    then fail a check is read again by the careful one, so that the message names the right line. With
    ``arrays``, the table's frame is :class:`~mmcli.columns.Columns` (no pandas) when the reader gives the
    columns so (numbers and coded text) and they need none of pandas' checks; else it is a pandas frame.
    """
    try:
        return _load(path, numeric, categorical, other or [], na, fast_ok=True, arrays=arrays)
    except DataError:
        if path == "-" or is_parquet(path) or not categorical:
            raise
    return _load(path, numeric, categorical, other or [], na, fast_ok=False, arrays=arrays)


def _load(
    path: str,
    numeric: list[str],
    categorical: list[str],
    other: list[str],
    na: tuple[str, ...] | list[str],
    fast_ok: bool,
    arrays: bool = False,
) -> Table:
    wanted = list(dict.fromkeys(numeric + categorical + other))
    map_large_arrays()
    lines: np.ndarray | range | None = None
    if path != "-" and is_parquet(path):
        from mmcli.parquet import read_parquet

        name = path
        frame, columns = read_parquet(path, wanted, categorical, na)
        lines = range(1, len(frame) + 1)  # the messages' "line" of a Parquet row is its number
    else:
        src = csvread.open_source(path)
        fast = None
        if categorical and fast_ok and csvread.source_size(src) >= ARROW_MIN_BYTES:
            fast = read_fast(src, wanted, numeric, categorical, other, na)
        if fast is not None:
            frame, columns, name = fast[0], fast[1], src.name
        else:
            layout = read_layout(src)
            name, columns, lines = src.name, layout.columns, layout.lines
            for c in wanted:
                resolve(c, columns, layout.index)
            layout.check()
            frame = _read_columns(src, layout, wanted, numeric, categorical, other, na)
    if len(frame) == 0:
        raise DataError(f"File '{name}' has a header but no data rows.")
    if isinstance(frame, Columns) and (not arrays or _nan_labels(frame, categorical)):
        frame = frame.frame()  # NaN levels (R's factor() of numbers reads them as missing) are pandas' work
    if not isinstance(frame, Columns):  # Columns hold float64 numbers and coded text already
        _typed(frame, numeric, categorical, other, lines)
    whole = {c for c in wanted if _is_float(frame[c]) and not _check_magnitude(floats(frame, c), c, lines)}
    frame, dropped, notes = _drop_incomplete(frame, name, whole)
    if not isinstance(frame, Columns):  # Columns' readers handed their memory back (pyarrow's pool) already
        release_memory()
    return Table(data=frame, source=name, columns=tuple(columns), dropped_rows=dropped, notes=notes)


def _typed(
    frame: pd.DataFrame, numeric: list[str], categorical: list[str], other: list[str], lines: np.ndarray | range | None
) -> None:
    """Numeric columns as floats (an error names a text cell's line), columns of numbers read as text as numbers,
    and NaN levels of a categorical column of numbers missing: in place."""
    import pandas as pd

    for c in numeric:
        frame[c] = _as_numeric(frame[c], c, lines)
    for c in other:
        s = frame[c]
        # text (object, or pandas 3's str) of numbers and NaN is numeric; numbers with a few text cells are a
        # mistake, not a factor
        if pd.api.types.is_string_dtype(s.dtype) and _text_cells(s)[1] > 0.5 * s.notna().sum():
            frame[c] = _as_numeric(s, c, lines)
    for c in categorical:
        frame[c] = nan_levels_missing(frame[c])


def _nan_labels(frame: Columns, categorical: list[str]) -> bool:
    """Whether a coded column's labels may read as NaN."""
    return any(isinstance(v := frame[c], Coded) and may_hold_nan(v.labels) for c in categorical)


def _is_float(values: Any) -> bool:
    """Whether a column (of a pandas frame, or of Columns) holds float numbers."""
    return not isinstance(values, Coded) and values.dtype.kind == "f"


def _read_columns(
    src: csvread.Source,
    layout: Layout,
    wanted: list[str],
    numeric: list[str],
    categorical: list[str],
    other: list[str],
    na: tuple[str, ...] | list[str],
) -> pd.DataFrame:
    """The wanted columns, typed. Parsing straight to float64 is about twice as fast as inferring and
    converting; the columns of unknown type are guessed from the first rows, and any surprise falls back to
    the inferring parser, whose messages name the offending line. Columns are taken by position, so that
    their names are the header's as read here, whatever pandas would make of them."""
    import pandas as pd

    at, columns = layout.index, layout.columns
    text_na, num_na = csvread.na_tokens(na), csvread.numeric_na_tokens(na)
    dtypes: dict[int, str] = {at[c]: "category" for c in categorical}
    nas = {at[c]: text_na for c in wanted}
    fast: dict[int, str] = {at[c]: "str" for c in categorical}
    fast_na = dict(nas)
    numbers = list(numeric)
    try:
        if other:
            cols = sorted(at[c] for c in other)
            sample = csvread.read_csv(src, usecols=cols, nrows=200, na_values={i: num_na for i in cols})
            numbers += [columns[i] for i, t in zip(cols, sample.dtypes) if t.kind in "fiu"]
    except (UnicodeDecodeError, pd.errors.ParserError, ValueError):
        pass
    # grouping columns stay text, even of numbers: ids beyond 2^53 (or 007 and 7.0) must not merge as floats
    fast.update({at[c]: "float64" for c in numbers})
    fast_na.update({at[c]: num_na for c in numbers})
    usecols = sorted(at[c] for c in wanted)
    try:
        if all(t in ("str", "float64") for t in fast.values()) and len(fast) == len(usecols):
            floats = [at[c] for c in wanted if fast[at[c]] == "float64"]
            groups = [at[c] for c in wanted if fast[at[c]] == "str"]
            frame = read_blocks(src, columns, floats, groups, fast_na, layout.rows)  # every column typed
            return frame[wanted]
        frame = csvread.read_csv(src, usecols=usecols, dtype=fast, na_values=fast_na)
        frame.columns = pd.Index([columns[i] for i in usecols])
        for c in categorical:
            frame[c] = factorized(frame[c])
        return frame[wanted]
    except (UnicodeDecodeError, pd.errors.ParserError, ValueError):
        try:
            frame = csvread.read_csv(src, usecols=usecols, dtype=dtypes, na_values=nas)
        except UnicodeDecodeError as e:
            raise csvread.not_utf8(src, e) from None
        except (pd.errors.ParserError, ValueError) as e:
            raise DataError(f"File '{src.name}' is not a readable CSV: {_first_line(e)}") from None
    frame.columns = pd.Index([columns[i] for i in usecols])
    return frame[wanted]


def _first_line(e: Exception) -> str:
    s = str(e).strip()
    return s.splitlines()[0] if s else type(e).__name__


def _drop_incomplete(frame: Frame, name: str, whole: Container[str] = ()) -> tuple[Frame, int, list[str]]:
    """Rows with a missing value in a used column are dropped and counted (as lm/lmer's na.omit). ``whole``:
    columns already known to have no missing value."""
    import numpy as np

    n_all = len(frame)
    complete = None  # made on the first column that has a missing value (most data sets have none)

    def drop(rows: np.ndarray) -> None:
        nonlocal complete
        if complete is None:
            complete = ~rows
        else:
            complete &= ~rows

    for c in frame.columns:  # column by column: no frame of n x k flags
        if c in whole:
            continue
        s = frame[c]
        codes = s.codes if isinstance(s, Coded) else _categorical_codes(s)
        if codes is not None:
            if codes.size and codes.min() < 0:  # one pass without a temporary finds whether any is missing
                drop(codes < 0)
        elif _is_float(s):
            v = floats(frame, c)
            if v.size and np.isnan(v.min()):
                drop(np.isnan(v))
        elif not isinstance(s, (Coded, np.ndarray)):
            drop(s.isna().to_numpy())
    dropped = 0 if complete is None else int(n_all - complete.sum())
    notes = []
    if dropped and complete is not None:
        frame = frame.rows(complete) if isinstance(frame, Columns) else frame.loc[complete].reset_index(drop=True)
        notes.append(f"Dropped {dropped} of {n_all} rows with a missing value in a used column.")
    if len(frame) == 0:
        raise DataError(f"No complete rows: every row of '{name}' has a missing value in a used column.")
    return frame, dropped, notes


def _categorical_codes(values: Any) -> np.ndarray | None:
    """A pandas categorical column's codes (no copy), or None for any other column."""
    import numpy as np

    if isinstance(values, np.ndarray):  # a column of Columns: pandas is not imported for it
        return None
    import pandas as pd

    return np.asarray(values.array.codes) if isinstance(values.dtype, pd.CategoricalDtype) else None


def release_memory() -> None:
    """Hand freed memory (the CSV parser's buffers, a data frame's columns) back to the operating system (glibc
    keeps it otherwise), so that the arrays built next do not stack on top of it: this lowers the peak memory of
    large fits."""
    import gc

    from mmcli.memory import trim_heap

    gc.collect()
    trim_heap()


HUGE = 1e154  # the squares of larger numbers (sums of squares, variances) overflow double precision


def _line(lines: np.ndarray | range | None, i: int) -> int:
    """The file's line of data row i (from 0)."""
    return int(lines[i]) if lines is not None else i + 2


def _check_magnitude(values: np.ndarray, col: str, lines: np.ndarray | range | None) -> bool:
    """Infinite values, and numbers too large for a sum of squares, are errors. Returns whether any value is
    missing (NaN), which the two passes find on the way."""
    import numpy as np

    if not values.size:
        return False
    low = values.min()  # NaN when any is
    if low >= -HUGE and values.max() <= HUGE:  # two passes, no temporaries (NaN: no)
        return False
    with np.errstate(invalid="ignore"):
        bad = np.flatnonzero(np.abs(values) > HUGE)  # NaN (missing) compares False
    if not bad.size:
        return bool(np.isnan(low))
    v = float(values[bad[0]])
    where = f" (line {_line(lines, int(bad[0]))} of the file)"
    if np.isinf(v):
        raise DataError(f"Column '{col}' has an infinite value{where}; remove or fix it.")
    raise DataError(
        f"Column '{col}' holds {v:.3g}{where}, too large: mmcli works with numbers below 1e154 in size, whose "
        "squares stay finite. Rescale the column (express it in larger units)."
    )


def _text_cells(s: pd.Series) -> tuple[list[str], int]:
    """The values of a text column that are not numbers (NaN, in any case, is one: R reads it as a number),
    and the number of cells that are numbers. Worked out on the distinct values: text columns have few."""
    import pandas as pd

    counts = s.value_counts(dropna=True, sort=False)
    values = pd.Series(counts.index.astype(str), dtype=object)
    conv = pd.to_numeric(values, errors="coerce")
    odd = conv.isna().to_numpy().copy()
    odd[odd] = ~values[odd].str.strip().str.lower().isin(csvread.NAN_WORDS).to_numpy()
    return list(values[odd]), int(counts.to_numpy()[~odd].sum())


def _as_numeric(s: pd.Series, col: str, lines: np.ndarray | range | None) -> pd.Series:
    """A column that must hold numbers. A text cell is an error that names its line and, when the column holds
    numbers, offers the text as a missing-value token (``--na``), since R reads only NA as missing."""
    import shlex

    import pandas as pd

    if s.dtype.kind in "fiub":
        return s.astype(float)
    text, numbers = _text_cells(s)
    if not text:
        return pd.to_numeric(s.astype(str).where(s.notna()), errors="coerce").astype(float)
    bad = s.astype(str).isin(text).to_numpy() & s.notna().to_numpy()
    rows = bad.nonzero()[0]
    i = int(rows[0])
    tokens = list(dict.fromkeys(str(v) for v in s.iloc[rows[:1000]]))
    msg = f"Column '{col}' must be numeric, but line {_line(lines, i)} holds '{s.iloc[i]}'"
    if rows.size > 1:
        msg += f" ({rows.size} such cells)"
    if numbers or len(text) == 1:
        flags = " ".join(f"--na {shlex.quote(t)}" for t in tokens[:5])
        marks = "it marks" if len(tokens) == 1 else "these mark"
        raise DataError(
            f"{msg}. If {marks} a missing value, add {flags} (only NA and empty cells are missing, as in R); "
            "otherwise fix the data."
        )
    raise DataError(f"{msg}. Fix the value, or use the column as a factor.")


def load_all(path: str, na: tuple[str, ...] | list[str] = ()) -> Table:
    """Read every column, with the types pandas infers (for commands that pick columns themselves); a column
    of numbers and NaN is numeric."""
    import pandas as pd

    if path != "-" and is_parquet(path):
        from mmcli.parquet import columns_of, read_parquet

        frame, names = read_parquet(path, columns_of(path), [], na)
        if len(frame) == 0:
            raise DataError(f"File '{path}' has no data rows.")
        return Table(data=frame, source=path, columns=tuple(names))
    src = csvread.open_source(path)
    layout = read_layout(src)
    layout.check()
    try:
        frame = csvread.read_csv(src, na_values=csvread.na_tokens(na))
    except UnicodeDecodeError as e:
        raise csvread.not_utf8(src, e) from None
    except (pd.errors.ParserError, ValueError) as e:
        raise DataError(f"File '{src.name}' is not a readable CSV: {_first_line(e)}") from None
    frame.columns = pd.Index(layout.columns)
    if len(frame) == 0:
        raise DataError(f"File '{src.name}' has a header but no data rows.")
    for c in frame.columns:
        if pd.api.types.is_string_dtype(frame[c].dtype):
            text, numbers = _text_cells(frame[c])
            if numbers and not text:
                frame[c] = _as_numeric(frame[c], c, layout.lines)
    return Table(data=frame, source=src.name, columns=tuple(layout.columns), lines=layout.lines)


def subset(table: Table, cols: list[str], *, numeric: list[str]) -> Table:
    """The named columns of a table read whole, checked as :func:`load` checks them."""
    frame = table.frame[cols].copy()
    for c in numeric:
        frame[c] = _as_numeric(frame[c], c, table.lines)
        _check_magnitude(frame[c].to_numpy(), c, table.lines)
    kept, dropped, notes = _drop_incomplete(frame, table.source)
    return Table(data=kept, source=table.source, columns=table.columns, dropped_rows=dropped, notes=notes)


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
