"""The levels of a grouping or factor column: codes from one hash pass, and R's order of the levels.

R's factor() sorts the distinct values of a column: as numbers when every value is one, else as text. Only the
distinct values are sorted here (a column of 10^7 rows and 10^5 levels sorts 10^5 labels); the rows keep
integer codes, renumbered once by a gather.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

import numpy as np

from mmcli.columns import Coded
from mmcli.csvread import NAN_WORDS
from mmcli.threads import on_two_threads, row_halves

if TYPE_CHECKING:
    import pandas as pd

_GATHER_ROWS = 1 << 16  # rows renumbered at a time
_TEXT_SORT_BYTES = 64 << 20  # labels sorted as one fixed-width numpy array up to this size, else by Python


def factorized(values: pd.Series) -> pd.Series:
    """A column as a categorical, from one hash pass over a plain read (``pd.factorize``): far cheaper than
    pandas' ``category`` parsing of a long column. Missing cells stay missing. The categories come in the
    order of first appearance; :func:`level_order` sorts them as R's factor() does."""
    import pandas as pd

    if isinstance(values.dtype, pd.CategoricalDtype):
        return values
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    if values.dtype.kind != "f":
        uniques = pd.Index(uniques.astype(str), dtype=object)  # as the category parser reads them: text
    return pd.Series(pd.Categorical.from_codes(codes, categories=uniques), index=values.index, name=values.name)


def nan_levels_missing(s: pd.Series) -> pd.Series:
    """A categorical column of numbers reads NaN as missing, as R's factor() of a numeric column does; in a
    column of text, NaN is a level like any other."""
    import pandas as pd

    if not isinstance(s.dtype, pd.CategoricalDtype):
        return s
    if not may_hold_nan(s.cat.categories.tolist()):  # the common case: no NaN at all
        return s
    cats = pd.Series(s.cat.categories.astype(str))
    nan = cats.str.strip().str.lower().isin(NAN_WORDS)
    if nan.any() and (~nan).any() and pd.to_numeric(cats[~nan], errors="coerce").notna().all():
        return s.cat.remove_categories(list(s.cat.categories[nan.to_numpy()]))
    return s


def may_hold_nan(labels: list[Any]) -> bool:
    """Whether any label may read as NaN (the text "nan" in any case, inside it): a look at the joined labels."""
    return "nan" in "\x00".join(map(str, labels)).lower()


def level_order(values: pd.Series | Coded) -> tuple[list[str], np.ndarray]:
    """Levels of a categorical column (or of coded text) sorted as R's factor() sorts them: numerically when
    every value is a number, else by text. Returns the labels (as R prints them) and the integer code of each
    row. Categories already in that order (as a large file's reader leaves them: :func:`r_order`) keep their
    codes, with no pass to renumber the rows."""
    if isinstance(values, Coded):
        raw_codes, all_cats = values.codes, list(values.labels)
    else:
        import pandas as pd

        cat = values if isinstance(values.dtype, pd.CategoricalDtype) else values.astype(str).astype("category")
        raw_codes = np.asarray(cat.array.codes)  # the categorical's own codes: no copy
        all_cats = cat.cat.categories.tolist()
    k = len(all_cats)
    counts = values.counts if isinstance(values, Coded) else None  # counted by the reader: no pass here
    if counts is None:
        complete = raw_codes.size == 0 or int(raw_codes.min()) >= 0

        def count(rows: slice) -> np.ndarray:
            part, out = raw_codes[rows], np.zeros(k, dtype=np.int64)
            for lo in range(0, part.size, _GATHER_ROWS):  # bincount too turns its input into intp
                block = part[lo : lo + _GATHER_ROWS]
                out += np.bincount(block if complete else block[block >= 0], minlength=k)
            return out

        counts = sum(on_two_threads(count, row_halves(raw_codes.size)), np.zeros(k, dtype=np.int64))
    used = np.flatnonzero(counts)
    if used.size < k:  # categories left unused by dropped rows
        remap = np.full(k + 1, -1, dtype=np.int32)  # the last entry: a missing row's code -1 stays -1
        remap[used] = np.arange(used.size, dtype=np.int32)
        raw_codes = remap[raw_codes]
        all_cats = [all_cats[i] for i in used]
    if isinstance(values, Coded) and values.levels:  # R's levels, in R's order: nothing to parse or renumber
        return all_cats, raw_codes.astype(np.int32, copy=False)
    cats = _stripped(all_cats)
    order, labels = _r_sorted(cats)
    if np.array_equal(order, np.arange(order.size)):
        codes = raw_codes.astype(np.int32, copy=False)
    else:
        rank = np.empty(len(cats) + 1, dtype=np.int32)
        rank[order] = np.arange(len(cats), dtype=np.int32)
        rank[-1] = -1
        codes = np.empty(raw_codes.size, dtype=np.int32)
        for lo in range(0, raw_codes.size, _GATHER_ROWS):  # numpy turns an index array into intp: a block at a time
            codes[lo : lo + _GATHER_ROWS] = rank[raw_codes[lo : lo + _GATHER_ROWS]]
    # labels equal after stripping or as numbers ("1" and "1.0") are one level
    if len(set(labels)) < len(labels):
        uniq = list(dict.fromkeys(labels))
        at = {lab: i for i, lab in enumerate(uniq)}
        remap32 = np.array([at[lab] for lab in labels], dtype=np.int32)
        codes, labels = remap32[codes], uniq
    return labels, codes


def r_order(labels: list[Any]) -> np.ndarray | None:
    """The permutation that puts a reader's labels in :func:`level_order`'s order (missing ones, None, last),
    or None when they are in it already. A reader that renumbers its codes anyway (a merge of dictionaries)
    renumbers them into this order in the same pass, and :func:`level_order` then has nothing to renumber."""
    if None not in labels:  # the common case: every label present
        order = _r_sorted(_stripped(labels))[0]
        return None if np.array_equal(order, np.arange(order.size)) else order
    present = [i for i, v in enumerate(labels) if v is not None]
    order = _r_sorted(_stripped([labels[i] for i in present]))[0]
    return np.concatenate([np.asarray(present)[order], [i for i, v in enumerate(labels) if v is None]]).astype(np.intp)


_INTEGER = re.compile(r"[+-]?[0-9]{1,15}")
"""Labels pandas and Python read as the same integer, exactly (below 10^15 in size)."""


def _r_sorted(cats: list[str]) -> tuple[np.ndarray, list[str]]:
    """The order of the labels as R's factor() sorts them, and the labels as R prints them."""

    def numbers(values: list[str]) -> pd.Series:
        import pandas as pd

        return pd.to_numeric(pd.Series(values, dtype=object), errors="coerce")

    vals = None
    if cats and all(map(_INTEGER.fullmatch, cats)):  # integer ids: exact as floats, read without pandas
        vals = np.array([float(c) for c in cats])
    # one label that is not a number settles it: the whole list is not parsed then (nor pandas imported, when
    # even Python's float(), which reads more than pandas does, refuses it: a reader's thread sorts so)
    elif cats and reads_as_float(cats[0]) and numbers(cats[:1]).notna().all():
        num = numbers(cats)
        vals = num.to_numpy(dtype=float) if num.notna().all() else None
    if vals is not None:
        order = np.argsort(vals, kind="stable")
        return order, [_r_number(float(vals[i]), cats[i]) for i in order]
    if all(a <= b for a, b in zip(cats, cats[1:])):  # already in order (a reader sorted them): nothing to sort
        return np.arange(len(cats)), list(cats)
    width = max(map(len, cats), default=0)
    if 4 * width * len(cats) <= _TEXT_SORT_BYTES and "\x00" not in "".join(cats):
        # numpy's fixed-width text sorts by code point, as Python's str does (a trailing NUL would be dropped:
        # not then)
        order = np.argsort(np.array(cats, dtype=f"U{max(width, 1)}"), kind="stable")
    else:
        order = np.array(sorted(range(len(cats)), key=lambda i: cats[i]), dtype=np.int64)
    return order, [cats[i] for i in order]


def _stripped(labels: list[Any]) -> list[str]:
    """Labels as text without surrounding blanks, as R's levels are compared."""
    return [v.strip() if type(v) is str else str(v).strip() for v in labels]


def reads_as_float(text: str) -> bool:
    """Whether Python's float() reads the text (it reads everything pandas.to_numeric does, and more)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def _r_number(x: float, raw: str) -> str:
    """Print a number as R's factor() labels it (185 not 185.0)."""
    if math.isfinite(x) and float(x).is_integer() and abs(x) < 1e15:
        return str(int(x))
    return raw
