"""The fast read of a large CSV: pyarrow's threaded reader, numbers as float64 arrays, grouping columns as
codes from its dictionary encoding (no Python string per row). Anything it cannot vouch for (a header it does
not read as the careful path does, a column of unknown type, a refused line) returns None, and
:func:`mmcli.data.load` reads the file the careful way, whose messages name the line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmcli import csvread
from mmcli.csvlines import read_header

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


def read_fast(
    src: csvread.Source,
    wanted: list[str],
    numeric: list[str],
    categorical: list[str],
    other: list[str],
    na: tuple[str, ...] | list[str],
) -> tuple[pd.DataFrame, list[str]] | None:
    """The columns by pyarrow with the header alone checked here: pyarrow refuses a line with another number
    of fields, a text cell in a number column and bytes that are not UTF-8, and then (None) the careful path
    scans the file and reads it with pandas, whose messages name the line. A quote after a blank is text to
    pyarrow but quotes to pandas: a label that starts so sends the read to the careful path too (a file with
    no double quote at all has no such label, and is read without tracking quotes across blocks)."""
    import pandas as pd

    head = read_header(src)
    if head is None or not all(c in head.index for c in wanted) or set(numeric) & set(categorical):
        return None
    at = head.index
    numbers = list(numeric)
    if other:
        num_na = csvread.numeric_na_tokens(na)
        try:
            cols = sorted(at[c] for c in other)
            sample = csvread.read_csv(src, usecols=cols, nrows=200, na_values={i: num_na for i in cols})
        except (UnicodeDecodeError, pd.errors.ParserError, ValueError):
            return None
        numbers += [head.columns[i] for i, t in zip(cols, sample.dtypes) if t.kind in "fiu"]
        if not set(other) <= set(numbers):
            return None
    quoted = csvread.has_quote(src)
    got = csvread.read_arrow(
        src,
        len(head.columns),
        [at[c] for c in numbers],
        [at[c] for c in categorical],
        csvread.na_tokens(na),
        quoted=quoted,
    )
    if got is None:
        return None
    if quoted and any(str(v).lstrip().startswith('"') for c in categorical for v in got[at[c]][1]):
        return None
    return arrow_frame(got, wanted, numbers, at), head.columns


def arrow_frame(got: dict, wanted: list[str], numbers: list[str], at: dict[str, int]) -> pd.DataFrame:
    """The frame of :func:`csvread.read_arrow`'s columns: numbers as float64, grouping columns categorical
    (their codes as read: the labels are checked to be distinct, so pandas need not look at the rows)."""
    import pandas as pd

    cols: dict[str, object] = {}
    for c in wanted:
        if c in numbers:
            cols[c] = got[at[c]]
        else:
            codes, labels = got[at[c]]
            cols[c] = categorical(codes, labels)
    return pd.DataFrame(cols, copy=False)


def categorical(codes: np.ndarray, labels: list) -> pd.Categorical:
    """A pandas Categorical of int codes (-1 missing) into distinct labels, built without the O(rows) check of
    ``Categorical.from_codes`` (the codes come from a dictionary encoding, so they index the labels)."""
    import pandas as pd

    dtype = pd.CategoricalDtype(pd.Index(labels, dtype=object))
    return pd.Categorical.from_codes(codes, dtype=dtype, validate=False)
