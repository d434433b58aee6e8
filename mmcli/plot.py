"""Figures. matplotlib is imported inside each function, so commands that draw nothing never load it.

Every figure is written to a temporary file beside the target and moved into place with os.replace, so a
failed write leaves no half-written file. The format follows the suffix: .png, .svg or .pdf.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mmcli.errors import UsageError

if TYPE_CHECKING:
    from mmcli.spline import SplineFit

FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}


def _format(path: str | os.PathLike[str]) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"--plot must name a .png, .svg or .pdf file, not '{Path(path).name}'.")
    return FORMATS[suffix]


def _new_figure(**kwargs: Any) -> Any:
    """A Figure on the Agg canvas, without pyplot: no global backend switch, nothing to close afterwards."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def _check_target(path: str | os.PathLike[str]) -> tuple[Path, str]:
    fmt = _format(path)
    target = Path(path)
    if not target.parent.is_dir():
        raise UsageError(f"Cannot write the plot: directory '{target.parent}' does not exist.")
    return target, fmt


def _save(fig: Any, target: Path, fmt: str) -> None:
    """Write fig to target atomically: a temporary file in the same directory, then os.replace."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format=fmt, bbox_inches="tight")
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def plot_spline(result: SplineFit, path: str | os.PathLike[str], *, points: int = 400) -> None:
    """Draw a penalized spline fit: the data, the curve, a +-2 standard error band and the knots.

    The band is fit +- 2 se with se = sqrt(x' Vp x), Vp the Bayesian covariance of the coefficients.
    """
    target, fmt = _check_target(path)
    fig = _new_figure(figsize=(6.4, 4.4))
    ax = fig.subplots()
    grid = np.linspace(result.x_min, result.x_max, points)
    fit, se = result.predict(grid)
    ax.fill_between(grid, fit - 2 * se, fit + 2 * se, color="C0", alpha=0.2, linewidth=0, label="±2 s.e.")
    ax.plot(grid, fit, color="C0", linewidth=1.8, label="fit")
    ax.scatter(result.x, result.y, s=16, color="0.2", zorder=3, label="data")
    ax.plot(
        result.knots,
        np.zeros_like(result.knots),
        "|",
        color="C3",
        markersize=12,
        markeredgewidth=1.5,
        transform=ax.get_xaxis_transform(),
        clip_on=False,
        label="knots",
    )
    ax.set_xlabel(result.x_name)
    ax.set_ylabel(result.y_name)
    ax.set_title(f"Penalized spline ({result.lam_method}): λ = {result.lam:.4g}, EDF = {result.edf:.3g}")
    ax.legend(frameon=False, fontsize="small")
    _save(fig, target, fmt)
