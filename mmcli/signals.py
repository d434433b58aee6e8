"""How mmcli ends on Ctrl-C (SIGINT), SIGTERM or a hangup (SIGHUP, the terminal closed): exit 130, 143 or 129,
nothing half-written left behind.

While Python is still importing, nothing has been written, so a signal ends the process at once (the console
script, mmcli._entry, installs `exit_at_once`). `mmcli.cli.main` then installs `unwinding`: from there a
signal raises an exception (Interrupted, Terminated) that unwinds the stack like any other, so `finally`
blocks remove temporary files, and the one error handler turns it into the exit status.

Python runs a signal's handler between two steps of whatever code is running, and some code cannot take an
exception there: the import machinery (its module locks break, and the next import fails), callbacks whose
exceptions Python drops (weak references, `__del__`), C code that clears errors; and a cleanup should not be
cut short (`held`). So the handler also sets a timer (SIGALRM) that raises the exception again, elsewhere,
until it has left `unwinding`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from typing import Any

from mmcli.errors import EXIT_INTERRUPTED  # 128 + SIGINT, as a shell reports a process ended by Ctrl-C

EXIT_TERMINATED = 143  # 128 + SIGTERM
EXIT_HANGUP = 129  # 128 + SIGHUP

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
RETRY_SECONDS = 0.1


class Interrupted(KeyboardInterrupt):
    """SIGINT, as mmcli raises it. A subclass: Python treats a bare KeyboardInterrupt that passed through code run
    by the exec builtin as never handled, and would end the process by SIGINT instead of with exit 130."""


class Terminated(BaseException):
    """SIGTERM (or SIGHUP), raised where the program happens to be, as Python raises KeyboardInterrupt for SIGINT.

    A BaseException, like KeyboardInterrupt, so that no `except Exception` takes it for an error of its own."""

    def __init__(self, signum: int = signal.SIGTERM):
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return EXIT_HANGUP if self.signum == signal.SIGHUP else EXIT_TERMINATED

    @property
    def message(self) -> str:
        return "Hangup." if self.signum == signal.SIGHUP else "Terminated."


def exit_at_once(signum: int, frame: Any) -> None:
    if signum == signal.SIGINT:
        message, code = b"\nInterrupted.\n", EXIT_INTERRUPTED
    else:
        ended = Terminated(signum)
        message, code = f"{ended.message}\n".encode(), ended.exit_code
    with contextlib.suppress(OSError):
        os.write(2, message)
    os._exit(code)


_pending: list[int] = []  # the signal received, until its exception has left `unwinding`
_holding: list[bool] = []  # inside `held`


def _unwind(signum: int, frame: Any) -> None:
    _pending[:] = [signum]
    signal.setitimer(signal.ITIMER_REAL, RETRY_SECONDS)  # again, should this exception be lost
    if _holding or (frame is not None and frame.f_code.co_filename.startswith("<frozen importlib")):
        return  # code that cannot take it: the timer raises it once out of there
    raise Interrupted if signum == signal.SIGINT else Terminated(signum)


def raise_pending() -> None:
    """Raise the exception of a signal received inside `unwinding` if it has not yet left it: C code that converts
    its arguments by calling back into Python (matplotlib's pybind11 functions) turns the signal's exception into
    a TypeError of its own; the signal, not that error, is what happened."""
    if _pending:
        raise Interrupted if _pending[0] == signal.SIGINT else Terminated(_pending[0])


def _retry(alarm: int, frame: Any) -> None:
    if _pending:
        _unwind(_pending[0], frame)


@contextlib.contextmanager
def unwinding() -> Iterator[None]:
    """SIGINT raises Interrupted (a KeyboardInterrupt) and SIGTERM raises Terminated inside the block; the
    handlers of before are restored after it (mmcli may run inside another program, a test for one)."""
    saved = {s: signal.getsignal(s) for s in (*SIGNALS, signal.SIGALRM)}
    saved_hook = sys.unraisablehook

    def dropped(unraisable: Any) -> None:  # a signal's exception that Python dropped: the timer raises it again
        if not isinstance(unraisable.exc_value, (Interrupted, Terminated)):
            saved_hook(unraisable)

    try:
        install(_unwind)
        signal.signal(signal.SIGALRM, _retry)
    except ValueError:  # not the main thread (embedded use): signals are the host's business
        yield
        return
    sys.unraisablehook = dropped
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        _pending.clear()
        sys.unraisablehook = saved_hook
        for s, handler in saved.items():
            if handler is not None:  # None: a handler installed from C, which Python cannot put back
                signal.signal(s, handler)


@contextlib.contextmanager
def held() -> Iterator[None]:
    """A signal that comes inside the block raises its exception only after it: for a cleanup that a second
    Ctrl-C must not cut short."""
    _holding.append(True)
    try:
        yield
    finally:
        _holding.pop()


def install(handler: Any) -> None:
    """handler for SIGINT and SIGTERM, but a signal that whoever started mmcli ignores (`cmd &` in a script)
    stays ignored, as for any Unix program."""
    for s in SIGNALS:
        if signal.getsignal(s) is not signal.SIG_IGN:
            signal.signal(s, handler)
