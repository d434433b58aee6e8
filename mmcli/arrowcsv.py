"""The fast read of a large CSV: pyarrow's threaded reader, numbers as float64 arrays, grouping columns as
codes from its dictionary encoding (no Python string per row). Anything it cannot vouch for (a header it does
not read as the careful path does, a column of unknown type, a refused line) returns None, and
:func:`mmcli.data.load` reads the file the careful way, whose messages name the line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmcli import csvread
from mmcli.columns import Columns
from mmcli.csvlines import read_header
from mmcli.levels import r_order

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
) -> tuple[Columns, list[str]] | None:
    """The columns by pyarrow with the header alone checked here: pyarrow refuses a line with another number
    of fields, a text cell in a number column and bytes that are not UTF-8, and then (None) the careful path
    scans the file and reads it with pandas, whose messages name the line. ``other`` columns (numbers or
    text) take the type pyarrow infers: a column of text sends the read to the careful path, which makes it a
    factor. A quote after a blank is text to pyarrow but quotes to pandas: a label that starts so sends the read
    to the careful path too (a file with no double quote at all has no such label, and is read without tracking
    quotes across blocks). The columns come as :class:`~mmcli.columns.Columns`: numbers and coded text, with
    no pandas imported."""
    head = read_header(src)
    if head is None or not all(c in head.index for c in wanted) or set(numeric) & set(categorical):
        return None
    at = head.index
    try:
        import pyarrow.csv  # noqa: F401
    except ImportError:
        return None
    quoted = csvread.has_quote(src)
    got = csvread.read_arrow(
        src,
        len(head.columns),
        [at[c] for c in numeric],
        [at[c] for c in categorical],
        csvread.na_tokens(na),
        quoted=quoted,
        order=r_order,
        inferred=[at[c] for c in other if c not in numeric and c not in categorical],
    )
    if got is None:
        return None
    if quoted and any(str(v).lstrip().startswith('"') for c in categorical for v in got[at[c]].labels):
        return None
    cols = {c: got[at[c]] for c in wanted}  # the codes as read: the labels are distinct, nothing looks at the rows
    return Columns(cols), head.columns


def categorical(codes: np.ndarray, labels: list) -> pd.Categorical:
    """A pandas Categorical of int codes (-1 missing) into distinct labels, built without the O(rows) check of
    ``Categorical.from_codes`` (the codes come from a dictionary encoding, so they index the labels)."""
    import pandas as pd

    dtype = pd.CategoricalDtype(pd.Index(labels, dtype=object))
    return pd.Categorical.from_codes(codes, dtype=dtype, validate=False)
