"""The --dask option of `mmcli fit`: the same fit, computed on a Dask cluster (mmcli.distributed)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

DASK_HELP = (
    "Fit on a Dask cluster: ADDRESS of its scheduler (tcp://host:8786), or local[:N] for a local cluster of N "
    "workers. DATA may then be a glob of CSV or Parquet files (quote it). Only sums of the rows leave the workers."
)


def dask_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add --dask to a fit-like command: with it, the fit runs through mmcli.distributed and is rendered as
    the command renders its own."""

    @click.option("--dask", "dask_address", metavar="ADDRESS", default=None, help=DASK_HELP)
    @functools.wraps(f)
    def wrapper(*args: Any, dask_address: str | None, **kw: Any) -> Any:
        if dask_address is None:
            return f(*args, **kw)
        from mmcli import render
        from mmcli.cli import _emit, _model
        from mmcli.distributed import run_fit_dask

        if kw.get("family") is not None:
            from mmcli.errors import UsageError

            raise UsageError("--dask fits linear mixed models only: --family cannot be combined with it.")
        glmm = ("family", "link", "nagq", "fitted")
        opts = {k: v for k, v in kw.items() if k not in ("fmt", "data", "formula", "reml", "method", "ddf", *glmm)}
        out = run_fit_dask(
            dask_address,
            kw["data"],
            _model(kw["formula"], **opts),
            reml=kw["reml"],
            ddf=kw["ddf"],
            method=kw["method"],
        )
        _emit(out, kw["fmt"], render.print_fit)
        return None

    return wrapper
