"""Parquet input: only the model's columns are read (column projection), by pyarrow.

A Parquet file carries types, so there is no guessing: number columns (integers, floats, booleans as 0/1)
become float64 with null as missing, text columns stay text (missing: null, and the cells R reads as missing
in a CSV, NA, the empty cell and the ``--na`` tokens, so that a file converted from a CSV gives the same fit),
and grouping columns are dictionary-encoded by pyarrow (codes and labels, no Python string per row). What
happens next is what happens to a CSV's columns (:func:`mmcli.data.load`): the same checks, the same
missing-row rule, the same levels in R's order. With data.py, csvread.py, csvlines.py and arrowcsv.py, the
only modules that read files.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from mmcli.columns import Coded, Columns
from mmcli.csvread import na_tokens, resolve
from mmcli.dictcodes import dictionary_codes, floats
from mmcli.errors import DataError
from mmcli.levels import r_order

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

SUFFIXES = (".parquet", ".pq", ".parq")

ARROW_MIN_BYTES = 256 << 20
"""CSV files from this size on are read by pyarrow's threaded reader; smaller ones by pandas, whose peak memory is
lower there (the threaded reader's buffers cost a 64 MB file about 200 MiB more) and whose speed is enough."""


def is_parquet(path: str) -> bool:
    """Whether a data argument names Parquet data (by its suffix, or a directory of Parquet files)."""
    low = path.lower()
    return low.endswith(SUFFIXES) or (
        os.path.isdir(path) and any(f.lower().endswith(SUFFIXES) for f in os.listdir(path))
    )


def needs_pyarrow(args: list[str]) -> bool:
    """Whether a command line may read with pyarrow: a Parquet argument, a CSV of ``ARROW_MIN_BYTES`` or more,
    standard input (its size is known only once read) or ``--dask``. pandas imports pyarrow whenever it is
    installed, which costs about 65 MiB of resident memory before any data is read; the entry point keeps it
    away when this says no (:func:`mmcli._entry.main`)."""
    for a in args:
        if a in ("-", "--dask") or a.startswith("--dask="):
            return True
        try:
            if is_parquet(a) or (os.path.isfile(a) and os.path.getsize(a) >= ARROW_MIN_BYTES):
                return True
        except OSError:
            continue
    return False


def _pyarrow() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(
            "Reading Parquet needs pyarrow, which is not installed: pip install 'mmcli[parquet]' (or pyarrow)."
        ) from None
    return pq


def columns_of(path: str) -> list[str]:
    """The column names of a Parquet file or directory, from its schema alone (no data is read)."""
    return list(_checked_schema(path).names)


def _checked_schema(path: str) -> Any:
    """The schema of a Parquet file or directory (its footer, or its files' for a directory: no data is read);
    a missing or unreadable path is a DataError."""
    import pyarrow as pa

    _pyarrow()
    if not os.path.exists(path):
        raise DataError(f"File '{path}' not found.")
    try:
        return _schema(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"File '{path}' is not a readable Parquet file: {str(e).splitlines()[0]}") from None


def read_parquet(
    path: str, wanted: list[str], categorical: list[str], na: tuple[str, ...] | list[str] = ()
) -> tuple[pd.DataFrame | Columns, list[str]]:
    """The wanted columns of a Parquet file (projection: no other column is read), and the file's column names.
    When every wanted column is a number (and not ``categorical``) or text (and ``categorical``), as
    :class:`~mmcli.columns.Columns`: float64 arrays and coded text, with no pandas imported. Otherwise as a
    pandas frame, ``categorical`` columns as categoricals (from pyarrow's dictionary encoding)."""
    import threading

    import pyarrow as pa

    pq = _pyarrow()
    schema = _checked_schema(path)  # read once: the names here, the types below
    names = list(schema.names)
    known = set(names)
    for c in wanted:
        resolve(c, names, known)
    read: dict[str, Any] = {}

    def read_table() -> None:
        try:
            if os.path.isfile(path):  # one file: its number columns come as one chunk each (no concatenating
                # copy); column chunks read one at a time, not all buffered first (250 MiB less at 10^7 rows)
                read["table"] = pq.ParquetFile(path, read_dictionary=text, pre_buffer=False).read(columns=wanted)
            else:
                read["table"] = pq.read_table(path, columns=wanted, read_dictionary=text)
            grouping = {c: read["table"].column(c) for c in text}  # codes made here too: numpy and pyarrow only
            read["codes"] = {
                c: dictionary_codes(v, r_order) for c, v in grouping.items() if pa.types.is_dictionary(v.type)
            }
        except BaseException as e:  # handed to the caller's thread
            read["error"] = e

    try:
        types = {c: schema.field(c).type for c in wanted}
        # grouping columns of text come as the file's own dictionary encoding: no string per row is made
        text = [c for c in categorical if _is_text(types[c])]
        integer = [c for c in categorical if pa.types.is_integer(types[c])]
        arrays = all(c in text or c in integer if c in categorical else _is_number(types[c]) for c in wanted)
        reader = threading.Thread(target=read_table, daemon=True)
        reader.start()  # pyarrow reads without the interpreter's lock: pandas, when needed, is imported meanwhile
        if not arrays:
            import pandas  # noqa: F401
        reader.join()
        if "error" in read:
            raise read["error"]
        table, coded = read.pop("table"), read.pop("codes")
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"File '{path}' is not a readable Parquet file: {str(e).splitlines()[0]}") from None
    if arrays and set(coded) == set(text):
        values: dict[str, np.ndarray | Coded] = {}
        for c in wanted:
            col = table.column(c)
            if c in text:
                values[c] = _text_codes(coded.pop(c), na_tokens(na))
            else:
                values[c] = _integer_codes(col) if c in integer else floats(col)
        del table, col
        pa.default_memory_pool().release_unused()
        return Columns(values), names
    return _frame(table, wanted, categorical, coded, na, path), names


def _frame(
    table: Any, wanted: list[str], categorical: list[str], coded: dict[str, Any], na: tuple[str, ...] | list[str],
    path: str,
) -> pd.DataFrame:  # fmt: skip
    """The read columns as a pandas frame (:func:`read_parquet`)."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    from mmcli.arrowcsv import categorical as categorical_of

    missing = pa.array(na_tokens(na), type=pa.string())
    cols: dict[str, Any] = {}
    for c in wanted:
        col = table.column(c)
        t = col.type
        if c in coded and pa.types.is_dictionary(t) and _is_text(t.value_type):
            kept = _text_codes(coded.pop(c), na_tokens(na))
            cols[c] = categorical_of(kept.codes, kept.labels)
            continue
        if pa.types.is_dictionary(t):
            col, t = col.cast(t.value_type), t.value_type
        if pa.types.is_boolean(t) and c not in categorical:
            col, t = col.cast(pa.float64()), pa.float64()
        if (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)) and c not in categorical:
            col = col if pa.types.is_float64(t) else col.cast(pa.float64())
            cols[c] = (col if col.null_count == 0 else col.fill_null(float("nan"))).to_numpy()
            continue
        try:
            text = col.cast(pa.string()) if not pa.types.is_boolean(t) else pc.if_else(col, "TRUE", "FALSE")
        except pa.ArrowException:
            raise DataError(
                f"Column '{c}' of '{path}' holds values of type {t}: mmcli reads numbers and text."
            ) from None
        if pa.types.is_string(t) or pa.types.is_large_string(t):  # R's missing-value cells of a CSV
            text = pc.if_else(pc.is_in(text, value_set=missing), pa.scalar(None, pa.string()), text)
        if c in categorical:
            enc = text.combine_chunks().dictionary_encode() if text.num_chunks else pa.array([], pa.string())
            codes = enc.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32)
            labels = pd.Index(enc.dictionary.to_pylist(), dtype=object)
            cols[c] = pd.Categorical.from_codes(codes, categories=labels)
        else:
            cols[c] = pd.Series(text.to_pandas(), dtype=object).to_numpy()
    del table, col
    pa.default_memory_pool().release_unused()  # what pyarrow's pool keeps after the read goes back to the system
    return pd.DataFrame(cols, copy=False)


def _schema(path: str) -> Any:
    import pyarrow.parquet as pq

    return pq.read_schema(path) if os.path.isfile(path) else pq.ParquetDataset(path).schema


def _is_text(t: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))


def _is_number(t: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t) or pa.types.is_boolean(t))


def _integer_codes(col: Any) -> Coded:
    """A grouping column of integers as codes into its distinct values, sorted as numbers and labelled as R's
    factor() of an integer column labels them; null is missing. Arrow encodes it (no Python object per row)."""
    import numpy as np

    ids = dictionary_codes(col.dictionary_encode(), lambda v: np.argsort(np.array(v, dtype=np.int64)))
    return Coded(ids.codes, [str(v) for v in ids.labels], levels=True, counts=ids.counts)


def _text_codes(coded: Coded, na: list[str]) -> Coded:
    """A dictionary-encoded text column (:func:`mmcli.dictcodes.dictionary_codes`) with R's missing-value cells
    of a CSV (NA, the empty cell, the ``--na`` tokens) and nulls missing; the labels alone are looked at, not the
    rows."""
    import numpy as np

    codes, labels, counts = coded.codes, coded.labels, coded.counts
    nas = set(na)
    gone = [i for i, v in enumerate(labels) if v is None or v in nas]
    if gone:
        keep = np.ones(len(labels), dtype=bool)
        keep[gone] = False
        remap = np.full(len(labels) + 1, -1, dtype=np.int32)  # the last entry: code -1 stays -1
        remap[:-1][keep] = np.arange(int(keep.sum()), dtype=np.int32)
        codes = remap[codes]
        labels = [v for v, k in zip(labels, keep) if k]
        counts = None if counts is None else counts[keep]
    return Coded(codes, labels, counts=counts)
