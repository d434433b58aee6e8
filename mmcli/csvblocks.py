"""Typed columns of a CSV read a block of rows at a time, so that a long grouping column never exists as text.

pandas makes one Python string per cell of a text column: a million rows of labels cost about 60 MB before
they are turned into codes, more than the numbers of the whole model. Here pandas parses ``BLOCK_ROWS`` rows at a
time; the numbers of each block are copied into arrays allocated once for the whole file (its number of rows is
known from csvlines.py's scan), and the labels of each block become integer codes against the labels seen so
far, in order of first appearance (the order of ``pd.factorize`` over the whole column, which levels.py then
sorts as R does). The strings of one block are freed before the next is parsed. With data.py, the only caller.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import numpy as np

from mmcli import csvread

if TYPE_CHECKING:
    import pandas as pd

BLOCK_ROWS = 1 << 16  # rows parsed at a time: their strings take a few MB, and pandas' cost per block is small

MMAP_THRESHOLD = 2 << 20
"""Allocations of at least this many bytes get pages of their own from the system (glibc's mmap threshold),
which go back to it when the array is freed. glibc's default threshold rises to the size of the largest
mapped block freed so far (up to 32 MiB): after the first freed column, column-sized arrays come from the
heap, whose freed middle stays resident, and the peak grows by every array freed before the next is made.
Fixed at 2 MiB, every full-length array of a large data set is mapped (10^6 int32 codes take 3.8 MiB), while
the block temporaries of the numeric passes stay on the heap."""

TRIM_THRESHOLD = 4 << 20
"""Free bytes at the top of the heap that glibc keeps rather than hands back. With the mmap threshold fixed,
glibc no longer raises its trim threshold (128 KiB) either, and the block temporaries of each numeric pass,
freed at the top of the heap, would be handed back and faulted in again block after block (on a 10^6-row
binomial fit, 0.36 million page faults against 0.09 million with 4 MiB kept); a large fit trims the heap itself
before its last large array (mmcli.memory.trim_heap)."""


def map_large_arrays() -> None:
    """Fix glibc's mmap and trim thresholds (:data:`MMAP_THRESHOLD`, :data:`TRIM_THRESHOLD`); nothing to do
    elsewhere than glibc."""
    import contextlib
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, MMAP_THRESHOLD)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, TRIM_THRESHOLD)  # M_TRIM_THRESHOLD


class _Grown:
    """Arrays of one length, written block by block, grown by doubling when the rows outnumber the estimate."""

    def __init__(self, rows: int, kinds: list[type]):
        self.size = max(rows, 1)
        self.arrays: list[np.ndarray] = [np.empty(self.size, dtype=k) for k in kinds]
        self.at = 0

    def room(self, m: int) -> int:
        """Make room for m more rows; returns where they go."""
        if self.at + m > self.size:
            self.size = max(2 * self.size, self.at + m)
            for i, a in enumerate(self.arrays):
                grown = np.empty(self.size, dtype=a.dtype)
                grown[: self.at] = a[: self.at]
                self.arrays[i] = grown
        start, self.at = self.at, self.at + m
        return start

    def final(self) -> list[np.ndarray]:
        """The arrays cut to the rows written (a copy only when far fewer rows came than were allocated)."""
        return [a[: self.at] if self.at * 2 >= self.size else a[: self.at].copy() for a in self.arrays]


def read_blocks(
    src: csvread.Source,
    columns: list[str],
    floats: list[int],
    groups: list[int],
    na: dict[int, list[str]],
    rows: int,
) -> pd.DataFrame:
    """The columns at positions ``floats`` (float64, NaN where missing) and ``groups`` (categorical, missing
    where a cell is missing), named as ``columns`` names them, in the order of ``floats + groups``. ``rows`` is
    the expected number of data rows (more or fewer are handled). pandas' parse errors propagate as they come
    (ValueError, ParserError, UnicodeDecodeError): the caller then reads the file the careful way."""
    import pandas as pd

    usecols = sorted([*floats, *groups])
    dtype = {i: "float64" for i in floats} | {i: "str" for i in groups}
    out = _Grown(rows, [np.float64] * len(floats) + [np.int32] * len(groups))
    labels: list[pd.Index] = [pd.Index([], dtype=object) for _ in groups]  # the file's labels so far, in order
    position = {c: j for j, c in enumerate(usecols)}
    blocks = csvread.read_csv_blocks(src, BLOCK_ROWS, usecols=usecols, dtype=dtype, na_values=na)
    with contextlib.closing(blocks):  # pandas' reader is closed at once, whatever ends the loop
        for block in blocks:
            at = out.room(len(block))
            end = at + len(block)
            for j, i in enumerate(floats):
                out.arrays[j][at:end] = block.iloc[:, position[i]].to_numpy(dtype=np.float64)
            for j, i in enumerate(groups):
                codes, uniques = pd.factorize(block.iloc[:, position[i]], use_na_sentinel=True)
                labels[j], to_file = _known(labels[j], np.asarray(uniques, dtype=object))
                # the block's own codes -> the file's; the appended -1 maps a missing cell (code -1) to -1
                lut = np.append(to_file, -1).astype(np.int32)
                out.arrays[len(floats) + j][at:end] = lut[codes]
            del block
    arrays = out.final()
    data: dict[str, object] = {columns[i]: arrays[j] for j, i in enumerate(floats)}
    for j, i in enumerate(groups):
        cats = labels[j]
        data[columns[i]] = pd.Categorical.from_codes(arrays[len(floats) + j], categories=cats)
    return pd.DataFrame(data, copy=False)


def _known(seen: pd.Index, uniques: np.ndarray) -> tuple[pd.Index, np.ndarray]:
    """The file's code of each of a block's labels: its place among the labels seen so far, or the next free
    codes for new ones in the block's order (one hashed look-up per label, no Python loop); and the labels seen
    so far with the new ones appended."""
    import pandas as pd

    block = pd.Index(uniques, dtype=object)
    at = seen.get_indexer(block)
    new = at < 0
    if new.any():
        at[new] = len(seen) + np.arange(int(new.sum()))
        seen = seen.append(block[new])
    return seen, at
