"""Figures. matplotlib is imported inside each function, so commands that draw nothing never load it.

Every figure is written to a temporary file beside the target and moved into place with os.replace, so a
failed or interrupted write leaves no half-written file. The format follows the suffix: .png, .svg or .pdf.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mmcli.errors import UsageError
from mmcli.signals import held

if TYPE_CHECKING:
    from mmcli.gamm import GammFit
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


def check_target(path: str | os.PathLike[str]) -> tuple[Path, str]:
    """The figure's path and format, or a UsageError: the command line calls this before fitting, so a
    bad --plot path fails at once, and each plot function calls it again before writing."""
    fmt = _format(path)
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"Cannot write the plot '{path}': directory '{parent}' does not exist.")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"Cannot write the plot '{path}': directory '{parent}' is not writable.")
    return target, fmt


def _save(fig: Any, target: Path, fmt: str) -> None:
    """Write fig to target atomically: a temporary file in the same directory, then os.replace.

    The temporary file is created inside the try (with a random name and O_EXCL, rather than by mkstemp), so
    that an interrupt at any point, even just after the file appears, unwinds through the cleanup."""
    tmp = target.parent / f".{target.name}.{secrets.token_hex(8)}.tmp"
    try:
        # 0o666 less the umask: a figure gets the usual permissions of a new file
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format=fmt, bbox_inches="tight")
        os.replace(tmp, target)
    except FileExistsError:  # only os.open raises it: the file is another's, leave it
        raise
    except BaseException:
        with held(), contextlib.suppress(FileNotFoundError):  # a second Ctrl-C waits for the cleanup
            os.unlink(tmp)
        raise


def plot_spline(result: SplineFit, path: str | os.PathLike[str], *, points: int = 400) -> None:
    """Draw a penalized spline fit: the data, the curve, a +-2 standard error band and the knots.

    The band is fit +- 2 se with se = sqrt(x' Vp x), Vp the Bayesian covariance of the coefficients.
    """
    target, fmt = check_target(path)
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


def plot_gamm(g: GammFit, path: str | os.PathLike[str], *, points: int = 200) -> None:
    """Draw each smooth of an additive mixed model as mgcv's plot.gam does, one panel per smooth.

    A panel shows the smooth's own curve f_j(x) (centred, as the constraint leaves it) with a band of
    f_j ± 2 se, se = sqrt(x' Vp x) over the smooth's coefficients (Wood 2017, 6.10); the partial residuals
    y_i - mu_i + f_j(x_i), mu the population-level fit (random effects at zero); and a rug of the data x.
    The y label is mgcv's ``s(x,EDF)``.
    """
    if g is None or any(np.ndim(x) > 1 for x in g.x):
        raise UsageError("--plot draws smooths of one variable; te() and t2() surfaces are not drawn.")
    if not g.smooths:
        raise UsageError("--plot draws smooth terms; this model has none.")
    panels = [j for j, sp in enumerate(g.smooths) if sp.smooth.dim == 1]
    if not panels:
        raise UsageError("--plot draws smooths of one variable; this model's smooths have several.")
    target, fmt = check_target(path)
    m = len(panels)
    ncols = min(m, 3)
    nrows = -(-m // ncols)
    fig = _new_figure(figsize=(4.4 * ncols, 3.8 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, j in zip(axes, panels):
        sm, data = g.smooths[j].smooth, g.x[j]
        rows = np.ones(data.shape[0], dtype=bool) if data.ndim == 1 else data[:, -1] != 0  # a by smooth's rows
        x = (data if data.ndim == 1 else data[:, 0])[rows]
        grid = np.linspace(x.min(), x.max(), points)
        f, se = g.smooth_curve(j, grid)  # by = 1
        partial = g.resid_population[rows] + g.smooth_curve(j, data[rows])[0]
        many = x.size > 5000  # keep vector output small: dots and rug as an image
        ax.fill_between(grid, f - 2 * se, f + 2 * se, color="C0", alpha=0.2, linewidth=0, label="±2 s.e.")
        ax.plot(grid, f, color="C0", linewidth=1.8, label=sm.term)
        ax.scatter(
            x,
            partial,
            s=9,
            color="0.35",
            alpha=0.6,
            linewidths=0,
            zorder=3,
            rasterized=many,
            label="partial residuals",
        )
        ax.plot(
            x,
            np.zeros_like(x),
            "|",
            color="0.2",
            markersize=8,
            alpha=0.5,
            transform=ax.get_xaxis_transform(),
            clip_on=False,
            rasterized=many,
        )
        edf = g.edf[j]
        ax.set_xlabel(sm.var)
        head, _, tail = sm.term.partition(")")
        ax.set_ylabel(f"{head},{edf:.2f}){tail}")
        ax.set_title(f"{sm.term} ({sm.bs}, k = {sm.k}): EDF = {edf:.3g}", fontsize="medium")
    axes[0].legend(frameon=False, fontsize="small")
    for ax in axes[m:]:
        ax.set_visible(False)
    _save(fig, target, fmt)


def plot_caterpillar(rows: list[dict[str, Any]], path: str | os.PathLike[str], *, max_levels: int = 400) -> None:
    """A caterpillar plot of conditional modes: one panel per group and term, levels sorted by mode, each
    with a +-1.96 conditional SD interval (lme4's dotplot(ranef(m, condVar = TRUE))).

    Panels with more than ``max_levels`` levels show every level as a line segment without labels."""
    target, fmt = check_target(path)
    panels: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        panels.setdefault((r["group"], r["term"]), []).append(r)
    if not panels:
        raise UsageError("--plot draws random effects; this model has none to draw.")
    ncol = min(len(panels), 3)
    nrow = -(-len(panels) // ncol)
    tallest = max(len(v) for v in panels.values())
    height = min(max(2.5, 0.16 * min(tallest, 60) + 1.2), 12) * nrow
    fig = _new_figure(figsize=(4.2 * ncol, height))
    axes = np.atleast_1d(fig.subplots(nrow, ncol, squeeze=False)).ravel()
    for ax, ((group, term), rs) in zip(axes, panels.items()):
        rs = sorted(rs, key=lambda r: r["mode"])
        mode = np.array([r["mode"] for r in rs])
        half = 1.96 * np.array([r["cond_sd"] for r in rs])
        pos = np.arange(len(rs))
        ax.hlines(pos, mode - half, mode + half, color="0.55", linewidth=1.0)
        if len(rs) <= max_levels:
            ax.plot(mode, pos, "o", color="C0", markersize=3.5)
        ax.axvline(0.0, color="0.3", linewidth=0.8, linestyle=":")
        if len(rs) <= 60:
            ax.set_yticks(pos)
            ax.set_yticklabels([str(r["level"]) for r in rs], fontsize=7)
        else:
            ax.set_yticks([])
            ax.set_ylabel(f"{len(rs)} levels, sorted by mode")
        ax.set_title(f"{group}: {term}", fontsize=10)
        ax.set_xlabel("conditional mode ± 1.96 cond. SD")
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    fig.tight_layout()
    _save(fig, target, fmt)
