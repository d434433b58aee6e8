"""The console script's entry point: Ctrl-C, SIGTERM and SIGHUP are handled before anything heavy is imported."""

from __future__ import annotations

from mmcli import signals


def main() -> None:
    signals.install(signals.exit_at_once)
    from mmcli.cli import main as cli_main

    cli_main()
