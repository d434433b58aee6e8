"""Dictionary-encoded Arrow columns (a large CSV's grouping columns, a Parquet file's text columns) as int32 codes
and their labels, with no Python object per row."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

_LARGE_TEXT_BYTES = 1 << 30  # dictionaries this large together are joined with 64-bit offsets


def dictionary_codes(
    col: Any, order: Callable[[list[Any]], np.ndarray | None] | None = None
) -> tuple[np.ndarray, list[Any]]:
    """A dictionary-encoded (chunked) Arrow column as int32 codes (-1 where null) and its labels, with no Python
    object per row. The chunks' dictionaries are merged into one (labels in order of first appearance) and
    each chunk's codes mapped to it. Consecutive chunks often share a dictionary (a Parquet row group's pages):
    each distinct dictionary is looked up once. ``order`` (given the merged labels, a permutation of them or
    None) sorts the labels, in the same pass that copies or maps the codes."""
    import pyarrow as pa

    chunks = [c for c in col.chunks if len(c)]
    if not chunks:
        return np.zeros(0, dtype=np.int32), []
    distinct: list[Any] = []
    which: list[int] = []
    for c in chunks:
        if not (distinct and c.dictionary.equals(distinct[-1])):
            distinct.append(c.dictionary)
        which.append(len(distinct) - 1)
    merged = distinct[0]
    maps: list[np.ndarray | None] = [None]
    if len(distinct) > 1:  # the dictionaries end to end, encoded once: each one's slice of the codes is its map
        if sum(d.nbytes for d in distinct) >= _LARGE_TEXT_BYTES and pa.types.is_string(distinct[0].type):
            distinct = [d.cast(pa.large_string()) for d in distinct]  # past 2 GiB of text: 64-bit offsets
        enc = pa.concat_arrays(distinct).dictionary_encode(null_encoding="encode")
        merged = enc.dictionary
        every = enc.indices.to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
        ends = np.cumsum([len(d) for d in distinct])
        maps = list(np.split(every, ends[:-1]))
    labels = merged.to_pylist()
    perm = order(labels) if order is not None else None
    if perm is not None:  # each map composed with the rank of the sorted labels
        rank = np.empty(len(labels), dtype=np.int32)
        rank[perm] = np.arange(len(labels), dtype=np.int32)
        maps = [rank if m is None else rank[m] for m in maps]
        labels = [labels[i] for i in perm]
    codes = np.empty(sum(len(c) for c in chunks), dtype=np.int32)
    at = 0
    for c, k in zip(chunks, which):
        idx = c.indices.to_numpy(zero_copy_only=False) if c.null_count == 0 else c.indices.fill_null(-1).to_numpy()
        m = maps[k]
        if m is None:
            codes[at : at + len(c)] = idx
        else:  # a null row (-1) stays -1: the map's last entry is appended for it
            np.take(np.append(m, np.int32(-1)), idx, out=codes[at : at + len(c)])
        at += len(c)
    return codes, labels


HALVES_MIN_ROWS = 1 << 20  # a grouping column this long is dictionary-encoded in two halves at once


def halves(col: Any) -> list[Any]:
    """A chunked column as two chunked columns of about half its rows each (one when short)."""
    import pyarrow as pa

    chunks = col.chunks
    if len(col) < HALVES_MIN_ROWS or len(chunks) < 2:
        return [col]
    ends = np.cumsum([len(c) for c in chunks])
    k = int(np.argmin(np.abs(ends[:-1] - ends[-1] / 2))) + 1  # after the chunk that ends nearest the middle
    return [pa.chunked_array(chunks[:k], type=col.type), pa.chunked_array(chunks[k:], type=col.type)]
