"""The options that say how a fit runs, not what it fits: --threads and --optimizer (a decorator for every
command that fits a mixed model). The choices hold for the command's duration only."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click


def speed_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--threads N and --optimizer lbfgsb|bobyqa."""

    @click.option(
        "--threads",
        type=click.IntRange(min=1),
        metavar="N",
        help="BLAS threads for the fit (default: 1 for a dense block under 4000 rows, else as the environment sets).",
    )
    @click.option(
        "--optimizer",
        type=click.Choice(["lbfgsb", "bobyqa"]),
        default="lbfgsb",
        show_default=True,
        help="lbfgsb: L-BFGS-B on the analytic gradient; bobyqa: derivative-free BOBYQA, as lme4's default.",
    )
    @functools.wraps(f)
    def wrapper(*args: Any, threads: int | None, optimizer: str, **kw: Any) -> Any:
        from mmcli.lmm.optimizer import use_optimizer
        from mmcli.threads import use_threads

        with use_threads(threads), use_optimizer(optimizer):
            return f(*args, **kw)

    return wrapper
