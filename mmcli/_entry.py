"""The console script's entry point: Ctrl-C is handled before anything heavy is imported.

The handler installed here ends the process quietly with exit 130 while Python is still importing;
`mmcli.cli.main` then restores Python's own handler, so that an interrupt during a fit unwinds normally
(temporary output files are removed) and is reported by the one error handler.
"""

from __future__ import annotations

import os
import signal
import sys


def _interrupted_while_starting(signum: int, frame: object) -> None:
    sys.stderr.write("\nInterrupted.\n")
    os._exit(130)


def main() -> None:
    signal.signal(signal.SIGINT, _interrupted_while_starting)
    from mmcli.cli import main as cli_main

    cli_main()
