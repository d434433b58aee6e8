"""The console script's entry point: Ctrl-C, SIGTERM and SIGHUP are handled before anything heavy is imported."""

from __future__ import annotations

import gc
import os
import sys

from mmcli import signals


def keep_pyarrow_away(args: list[str]) -> None:
    """pandas imports pyarrow at its own import whenever pyarrow is installed (about 65 MiB resident); a run
    that cannot read with it makes ``import pyarrow`` fail instead, so pandas works as without it (the same
    values: text columns are held by Python objects instead of Arrow buffers)."""
    from mmcli.parquet import needs_pyarrow

    if "pyarrow" not in sys.modules and not needs_pyarrow(args):
        sys.modules["pyarrow"] = None  # type: ignore[assignment]


BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


def one_blas_thread(args: list[str]) -> None:
    """`fit` starts its BLAS libraries (numpy's and scipy's OpenBLAS) on one thread, unless the environment sets a
    count: an OpenBLAS thread spins for a while at start and after each parallel call, which costs a 10^7-row fit
    about 0.4 s of CPU beside it (and two cores' worth of it on a busy machine). Every dense block of that
    command runs under :func:`mmcli.threads.blas_threads`, which raises the count to the machine's cores for
    blocks where two threads pay. Read when the libraries load: set before numpy is imported."""
    if args[:1] != ["fit"] or any(v in os.environ for v in BLAS_THREAD_VARIABLES):
        return
    from mmcli import threads

    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    threads.LARGE_BLOCK_THREADS = os.cpu_count() or 1


def main() -> None:
    signals.install(signals.exit_at_once)
    one_blas_thread(sys.argv[1:])  # before anything imports numpy
    keep_pyarrow_away(sys.argv[1:])
    # pyarrow's allocator (mimalloc) may back its large buffers by 2 MiB pages: a 10^7-row read then spends
    # about half as much time in the kernel mapping memory (read when pyarrow loads, so set before that)
    os.environ.setdefault("MIMALLOC_ALLOW_LARGE_OS_PAGES", "1")
    from mmcli.cli import main as cli_main

    # the start-up's objects (click, mmcli's modules) live as long as the process: the collector leaves them
    # alone, and looks at young objects every 20,000 allocations instead of 700 (pandas' and pyarrow's imports
    # set off about 160 collections otherwise: 0.1 s of a 10^7-row fit). The explicit collections that free a
    # data frame's cycles stay where they are.
    gc.freeze()
    gc.set_threshold(20_000, 20, 10)
    try:
        cli_main()
    except SystemExit as e:
        leave(e)


def leave(e: SystemExit) -> None:
    """End the process once its output is out: freeing a large fit's memory object by object at exit costs
    about 0.1 s at 10^7 rows and gains nothing. The ordinary exit where anything else may still need it (a
    Dask cluster's shutdown, child processes) or where the streams cannot be flushed."""
    code = e.code
    if not (code is None or isinstance(code, int)) or "distributed" in sys.modules or "multiprocessing" in sys.modules:
        raise e
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:  # a stream closed or gone: Python's own exit deals with it, as ever
            raise e from None
    os._exit(code or 0)
