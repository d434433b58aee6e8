"""The console script's entry point: Ctrl-C, SIGTERM and SIGHUP are handled before anything heavy is imported."""

from __future__ import annotations

import sys

from mmcli import signals


def keep_pyarrow_away(args: list[str]) -> None:
    """pandas imports pyarrow at its own import whenever pyarrow is installed (about 65 MiB resident); a run
    that cannot read with it makes ``import pyarrow`` fail instead, so pandas works as without it (the same
    values: text columns are held by Python objects instead of Arrow buffers)."""
    from mmcli.parquet import needs_pyarrow

    if "pyarrow" not in sys.modules and not needs_pyarrow(args):
        sys.modules["pyarrow"] = None  # type: ignore[assignment]


def main() -> None:
    signals.install(signals.exit_at_once)
    keep_pyarrow_away(sys.argv[1:])
    from mmcli.cli import main as cli_main

    cli_main()
