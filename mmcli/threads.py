"""How many BLAS threads the numeric core uses: chosen in-process from the size of the dense matrix factored at
each evaluation, or given (``--threads N``).

OpenBLAS's threads busy-wait for work. On a machine whose cores are also busy with something else they spin
against it, and a factorization that takes milliseconds on one thread takes ten times longer on two (measured in
docs/methods.md, "BLAS threads"). Two threads pay only for large dense blocks on an otherwise idle machine. So
below TWO_THREADS_MIN_ORDER the core runs on one thread; at or above it, it keeps the threads the process
started with (OPENBLAS_NUM_THREADS and friends are respected: the automatic choice only ever lowers the count).
The console script's ``fit`` starts BLAS on one thread when the environment sets no count (idle OpenBLAS threads
spin at start too) and gives blocks at or above the threshold the machine's cores (LARGE_BLOCK_THREADS).
``--threads N`` sets the count exactly, for the whole of each fit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

TWO_THREADS_MIN_ORDER = 4000
"""The smallest order of the dense block for which the process's own BLAS thread count is kept."""

LARGE_BLOCK_THREADS: int | None = None
"""The BLAS thread count for blocks of at least TWO_THREADS_MIN_ORDER when the process started its BLAS on one
thread (the console script does so for ``fit``: :func:`mmcli._entry.main`); None keeps the process's own."""

_GIVEN: ContextVar[int | None] = ContextVar("mmcli_threads", default=None)


@contextlib.contextmanager
def use_threads(n: int | None) -> Iterator[None]:
    """Fits inside the block use exactly ``n`` BLAS threads (None: chosen from the size)."""
    if n is not None and n < 1:
        raise ValueError("the number of threads must be at least 1")
    token = _GIVEN.set(n)
    try:
        yield
    finally:
        _GIVEN.reset(token)


def threads_for(order: int) -> int | None:
    """The BLAS thread count for a dense block of this order: the given count, 1 below the threshold, or None
    (keep the process's own)."""
    given = _GIVEN.get()
    if given is not None:
        return given
    return 1 if order < TWO_THREADS_MIN_ORDER else LARGE_BLOCK_THREADS


@contextlib.contextmanager
def blas_threads(order: int) -> Iterator[None]:
    """Run the block with the BLAS thread count of :func:`threads_for` (threadpoolctl, in-process). A limit
    reaches only the BLAS libraries loaded when it is set: a caller whose block loads another (scipy's LAPACK
    brings its own OpenBLAS) loads it before entering."""
    n = threads_for(order)
    if n is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n, user_api="blas"):
        yield


LONG_ROWS = 1 << 20
"""Columns of this many rows are worked through on two threads where numpy or pyarrow work without the
interpreter's lock (a copy, a sum by level, an encoding): each thread takes half the rows or half the columns."""


def on_two_threads(fn: Callable[[T], R], items: Iterable[T], parallel: bool = True) -> list[R]:
    """``fn`` of each item, in order: on two threads when ``parallel`` (and there are two items or more), else
    in the calling thread. An exception in either thread is raised here."""
    todo = list(items)
    if not parallel or len(todo) < 2:
        return [fn(i) for i in todo]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(fn, todo))


def row_halves(n: int) -> list[slice]:
    """The rows 0..n as two halves (one slice when short of :data:`LONG_ROWS`)."""
    if n < LONG_ROWS:
        return [slice(0, n)]
    return [slice(0, n // 2), slice(n // 2, n)]


def copy_rows(out: Any, src: Any) -> None:
    """``out[:] = src`` for one long column, half the rows on each of two threads (memory is touched for the
    first time here, and the kernel's zeroing of pages then runs on both cores)."""

    def put(rows: slice) -> None:
        out[rows] = src if isinstance(src, float) else src[rows]

    on_two_threads(put, row_halves(len(out)))
