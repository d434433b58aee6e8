"""The process's standard streams: UTF-8 whatever the locale, a closed standard output or error, and what is
dropped when the reader goes away or mmcli is interrupted.

Only the process's own streams are changed: a program that swapped them for its own (a test that captures the
output) keeps them as they are.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import os
import sys

STDOUT_CLOSED = (
    "standard output is closed; mmcli writes its result there. Redirect it to a file, or to /dev/null to keep "
    "only a --plot figure."
)


def prepare_streams() -> str | None:
    """Make standard output and error ready for any text; the message of an error when there is no standard
    output to write to (`mmcli ... >&-`)."""
    if sys.stderr is None:  # `2>&-`: messages go nowhere, and the exit status still tells what happened
        sys.stderr = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 (open for the life of the process)
    for stream, own in ((sys.stdout, sys.__stdout__), (sys.stderr, sys.__stderr__)):
        if stream is not None and stream is own and isinstance(stream, io.TextIOWrapper):
            _utf8(stream)
    return STDOUT_CLOSED if sys.stdout is None else None


def _utf8(stream: io.TextIOWrapper) -> None:
    """UTF-8, as the data were read, so that a level such as `café` prints under LC_ALL=C too; a character the
    encoding cannot hold (only with a PYTHONIOENCODING that is not UTF-8) is written as a \\x.. escape."""
    if "PYTHONIOENCODING" in os.environ:  # the user's choice of encoding stands
        if stream.errors == "strict":
            stream.reconfigure(errors="backslashreplace")
    elif codecs.lookup(stream.encoding).name != "utf-8" or stream.errors == "strict":
        stream.reconfigure(encoding="utf-8", errors="backslashreplace")


def say(line: str) -> None:
    """A line on standard error; if standard error itself is gone, the exit status alone tells."""
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


def drop_pending_output() -> None:
    """Point standard output at /dev/null: what is still buffered is dropped and nothing more is written (the
    reader went away, or mmcli was interrupted before its result was out)."""
    own = sys.__stdout__
    if own is None or sys.stdout is not own:
        return
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, own.fileno())
        os.close(devnull)


def flush_stdout() -> None:
    """The end of a command: what is buffered goes out, or the reader went away, or the disk is full."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        end_quietly()
    except OSError as e:
        say(f"Error: cannot write the output: {e.strerror or e}.")
        end_quietly(1)


def end_quietly(code: int = 0) -> None:
    """The reader went away (`| head`): exit without Python's own complaint about the unflushed output."""
    drop_pending_output()
    sys.exit(code)
