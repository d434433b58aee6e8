"""R's order of the levels: only the distinct labels are sorted (numpy's fixed-width text sort when it is safe),
and the result must be exactly that of sorting the Python strings, as R's factor() does by code point in the C
locale: numbers as numbers when every label is one, else text."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from mmcli import levels
from mmcli.columns import Coded
from mmcli.levels import level_order


def _plain(values: list[str]) -> tuple[list[str], list[int]]:
    """The order written plainly: strip, numbers as numbers (printed as R prints them), else text by Python's
    str ordering; labels equal after that are one level."""
    cats = list(dict.fromkeys(values))
    stripped = [c.strip() for c in cats]
    num = pd.to_numeric(pd.Series(stripped, dtype=object), errors="coerce")
    if stripped and num.notna().all():
        order = sorted(range(len(cats)), key=lambda i: float(num.iloc[i]))
        x = [float(num.iloc[i]) for i in order]
        labels = [
            str(int(v)) if math.isfinite(v) and v.is_integer() and abs(v) < 1e15 else stripped[i]
            for v, i in zip(x, order)
        ]
    else:
        order = sorted(range(len(cats)), key=lambda i: stripped[i])
        labels = [stripped[i] for i in order]
    uniq = list(dict.fromkeys(labels))
    rank = {cats[i]: uniq.index(labels[k]) for k, i in enumerate(order)}
    return uniq, [rank[v] for v in values]


TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=6)
NUMBERS = st.one_of(st.integers(-1000, 1000).map(str), st.floats(-1e3, 1e3, allow_nan=False).map(repr))


@settings(max_examples=150)
@given(
    st.lists(
        st.one_of(TEXT, NUMBERS, st.sampled_from(["a\x00", "a", " a", "a\x00b", "10", "9", "1.0"])),
        min_size=1,
        max_size=40,
    )
)
def test_same_order_as_sorting_the_strings(values) -> None:
    got, codes = level_order(pd.Series(values, dtype=object))
    want, want_codes = _plain(values)
    assert got == want
    assert codes.tolist() == want_codes


@settings(max_examples=60)
@given(st.lists(st.one_of(NUMBERS, st.sampled_from(["+7", "007", "-0", "0012", "-3", "1e3"])), min_size=1, max_size=40))
def test_numbers_sort_as_numbers(values) -> None:
    got, codes = level_order(pd.Series(values, dtype=object))
    assert (got, codes.tolist()) == _plain(values)


def test_long_labels_sort_without_a_wide_array(monkeypatch) -> None:
    """Labels too wide for one fixed-width array are sorted by Python, with the same result."""
    values = ["b" * 50, "a", "c" * 10, "a" * 3]
    wide = level_order(pd.Series(values))
    monkeypatch.setattr(levels, "_TEXT_SORT_BYTES", 16)
    narrow = level_order(pd.Series(values))
    assert narrow[0] == wide[0] == ["a", "aaa", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "cccccccccc"]
    assert np.array_equal(narrow[1], wide[1])


def test_many_levels_from_codes() -> None:
    """A categorical of 10^5 categories in first-seen order, some unused once the missing cells (-1) are
    dropped: the used labels in order, the codes renumbered to them."""
    rng = np.random.default_rng(3)
    labels = [f"g{i:06d}" for i in rng.permutation(100_000)]
    codes = rng.integers(-1, 100_000, 120_000).astype(np.int32)
    s = pd.Series(pd.Categorical.from_codes(codes, categories=pd.Index(labels, dtype=object)))
    got, out = level_order(s[codes >= 0].reset_index(drop=True))
    used = sorted({labels[c] for c in codes[codes >= 0]})
    assert got == used
    at = {lab: i for i, lab in enumerate(used)}
    assert out.tolist() == [at[labels[c]] for c in codes[codes >= 0]]


def test_coded_text_orders_as_the_categorical() -> None:
    """Text held as codes into labels (a fast reader's, without pandas) orders as the same categorical does, and
    labels already R's levels (integers sorted as numbers) are taken as they are."""
    rng = np.random.default_rng(5)
    labels = [f"g{i:05d}" for i in rng.permutation(5_000)] + [" 10", "9"]
    codes = rng.integers(-1, len(labels), 40_000).astype(np.int32)
    cat = pd.Series(pd.Categorical.from_codes(codes, categories=pd.Index(labels, dtype=object)))
    got, want = level_order(Coded(codes, labels)), level_order(cat)
    assert got[0] == want[0] and np.array_equal(got[1], want[1])
    ids = Coded(np.array([2, 0, -1, 1, 2], dtype=np.int32), ["-4", "7", "12"], levels=True)
    labels_out, codes_out = level_order(ids)
    assert labels_out == ["-4", "7", "12"] and codes_out.tolist() == [2, 0, -1, 1, 2]
