"""The console script's entry point, and how mmcli ends on Ctrl-C (SIGINT) or SIGTERM.

While Python is still importing, nothing has been written, so a signal ends the process at once (exit 130 for
SIGINT, 143 for SIGTERM). `mmcli.cli.main` then installs `unwinding`: from there a signal raises an exception
(KeyboardInterrupt, Terminated) that unwinds the stack like any other, so `finally` blocks remove temporary
files, and the one error handler turns it into the exit status.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from typing import Any

from mmcli.errors import EXIT_INTERRUPTED  # 128 + SIGINT, as a shell reports a process ended by Ctrl-C

EXIT_TERMINATED = 143  # 128 + SIGTERM

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(BaseException):
    """SIGTERM, raised where the program happens to be, as Python raises KeyboardInterrupt for SIGINT.

    A BaseException, like KeyboardInterrupt, so that no `except Exception` takes it for an error of its own."""


def _exit_at_once(signum: int, frame: Any) -> None:
    message = b"\nInterrupted.\n" if signum == signal.SIGINT else b"Terminated.\n"
    with contextlib.suppress(OSError):
        os.write(2, message)
    os._exit(EXIT_INTERRUPTED if signum == signal.SIGINT else EXIT_TERMINATED)


def _unwind(signum: int, frame: Any) -> None:
    # Only the first signal unwinds: a second one (Ctrl-C pressed twice) must not cut the cleanup short.
    for s in SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated


@contextlib.contextmanager
def unwinding() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt and SIGTERM raises Terminated inside the block; the handlers of before
    are restored after it (mmcli may run inside another program, a test for one)."""
    saved = {s: signal.getsignal(s) for s in SIGNALS}
    try:
        _install(_unwind)
    except ValueError:  # not the main thread (embedded use): signals are the host's business
        yield
        return
    try:
        yield
    finally:
        for s, handler in saved.items():
            if handler is not None:  # None: a handler installed from C, which Python cannot put back
                signal.signal(s, handler)


def _install(handler: Any) -> None:
    """handler for SIGINT and SIGTERM, but a signal that whoever started mmcli ignores (`cmd &` in a script)
    stays ignored, as for any Unix program."""
    for s in SIGNALS:
        if signal.getsignal(s) is not signal.SIG_IGN:
            signal.signal(s, handler)


def main() -> None:
    _install(_exit_at_once)
    from mmcli.cli import main as cli_main

    cli_main()
