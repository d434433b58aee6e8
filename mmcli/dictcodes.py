"""Arrow columns as numpy arrays, with no Python object per row and without pandas (which pyarrow's own
conversions import on first use): dictionary-encoded columns (a large CSV's grouping columns, a Parquet file's
text columns) as int32 codes and their labels, number columns as float64."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from mmcli.columns import Coded
from mmcli.threads import LONG_ROWS, on_two_threads

_LARGE_TEXT_BYTES = 1 << 30  # dictionaries this large together are joined with 64-bit offsets


def dictionary_codes(col: Any, order: Callable[[list[Any]], np.ndarray | None] | None = None) -> Coded:
    """A dictionary-encoded (chunked) Arrow column as int32 codes (-1 where null) into its labels, with no
    Python object per row, and the rows of each label. The chunks' dictionaries are merged into one (labels in
    order of first appearance) and each chunk's codes mapped to it. Consecutive chunks often share a dictionary
    (a Parquet row group's pages): each distinct dictionary is looked up once. ``order`` (given the merged
    labels, a permutation of them or None) sorts the labels, in the same pass that copies or maps the codes and
    counts them. A long column takes two threads (pyarrow and numpy work without the interpreter's lock): the
    dictionaries are merged in two halves, then the halves' two, and the chunks' codes are mapped two at a
    time."""
    import pyarrow as pa

    chunks = [c for c in col.chunks if len(c)]
    if not chunks:
        return Coded(np.zeros(0, dtype=np.int32), [], counts=np.zeros(0, dtype=np.int64))
    distinct: list[Any] = []
    which: list[int] = []
    for c in chunks:
        if not (distinct and c.dictionary.equals(distinct[-1])):
            distinct.append(c.dictionary)
        which.append(len(distinct) - 1)
    rows = sum(len(c) for c in chunks)
    parallel = rows >= LONG_ROWS
    merged = distinct[0]
    maps: list[np.ndarray | None] = [None]
    if len(distinct) > 1:
        if sum(d.nbytes for d in distinct) >= _LARGE_TEXT_BYTES and pa.types.is_string(distinct[0].type):
            distinct = [d.cast(pa.large_string()) for d in distinct]  # past 2 GiB of text: 64-bit offsets
        merged, every = _merge(distinct, parallel)
        ends = np.cumsum([len(d) for d in distinct])
        maps = list(np.split(every, ends[:-1]))
    labels = merged.to_pylist()
    perm = order(labels) if order is not None else None
    if perm is not None:  # each map composed with the rank of the sorted labels
        rank = np.empty(len(labels), dtype=np.int32)
        rank[perm] = np.arange(len(labels), dtype=np.int32)
        maps = [rank if m is None else rank[m] for m in maps]
        labels = [labels[i] for i in perm]
    codes = np.empty(rows, dtype=np.int32)
    starts = np.cumsum([0] + [len(c) for c in chunks])

    def gather(j: int) -> np.ndarray:
        idx, m, out = integers(chunks[j].indices, -1), maps[which[j]], codes[starts[j] : starts[j + 1]]
        if m is None:
            out[:] = idx
        else:  # a null row (-1) stays -1: the map's last entry is appended for it
            np.take(np.append(m, np.int32(-1)), idx, out=out)
        return np.bincount(out[out >= 0] if chunks[j].null_count else out, minlength=len(labels))

    counts = sum(on_two_threads(gather, range(len(chunks)), parallel), np.zeros(len(labels), dtype=np.int64))
    return Coded(codes, labels, counts=counts)


def _merge(dictionaries: list[Any], parallel: bool) -> tuple[Any, np.ndarray]:
    """The dictionaries end to end, encoded: the merged labels and each entry's code in them (int32). With two
    threads, each half is encoded on its own and the halves' two dictionaries then merged."""
    import pyarrow as pa

    def encode(ds: list[Any]) -> tuple[Any, np.ndarray]:
        enc = pa.concat_arrays(ds).dictionary_encode(null_encoding="encode")
        return enc.dictionary, integers(enc.indices)

    h = len(dictionaries) // 2
    if not parallel or h < 2:
        merged, every = encode(dictionaries)
        return merged, every.astype(np.int32, copy=False)
    (d0, i0), (d1, i1) = on_two_threads(encode, [dictionaries[:h], dictionaries[h:]])
    merged, top = encode([d0, d1])
    top = top.astype(np.int32, copy=False)
    return merged, np.concatenate([top[: len(d0)][i0], top[len(d0) :][i1]])


def floats(col: Any) -> np.ndarray:
    """A (chunked) Arrow column of numbers as float64, NaN where null: a view of its one chunk when it is float64
    without nulls, else a copy."""
    import pyarrow as pa

    if not pa.types.is_float64(col.type):
        col = col.cast(pa.float64())
    parts = []
    for c in col.chunks:
        v = np.frombuffer(c.buffers()[1], dtype=np.float64, count=len(c), offset=c.offset * 8)
        parts.append(np.where(_valid(c), v, np.nan) if c.null_count else v)
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts) if parts else np.zeros(0)


def integers(arr: Any, null: int = -1) -> np.ndarray:
    """An Arrow integer array as a numpy view of its values (nulls as ``null``, in a copy)."""
    width = arr.type.bit_width // 8
    v = np.frombuffer(arr.buffers()[1], dtype=f"<i{width}", count=len(arr), offset=arr.offset * width)
    return np.where(_valid(arr), v, null) if arr.null_count else v


def _valid(arr: Any) -> np.ndarray:
    """Where an Arrow array (with nulls) holds a value, from its validity bitmap."""
    bits = np.frombuffer(arr.buffers()[0], dtype=np.uint8)
    return np.unpackbits(bits, count=arr.offset + len(arr), bitorder="little")[arr.offset :].astype(bool)


def halves(col: Any) -> list[Any]:
    """A chunked column as two chunked columns of about half its rows each (one when short)."""
    import pyarrow as pa

    chunks = col.chunks
    if len(col) < LONG_ROWS or len(chunks) < 2:
        return [col]
    ends = np.cumsum([len(c) for c in chunks])
    k = int(np.argmin(np.abs(ends[:-1] - ends[-1] / 2))) + 1  # after the chunk that ends nearest the middle
    return [pa.chunked_array(chunks[:k], type=col.type), pa.chunked_array(chunks[k:], type=col.type)]
