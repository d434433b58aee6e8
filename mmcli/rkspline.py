"""The rk spline of Wood (2006) §3.2: the reproducing-kernel cubic spline on [0, 1], as gamm's ``rk`` smooth
and the engine of ``mmcli spline`` use it. mgcv has no such basis; it is checked by its own properties."""

from __future__ import annotations

import numpy as np

__all__ = ["rk_basis", "rk_kernel", "rk_penalty", "rk_unconstrained"]


def rk_kernel(x: np.ndarray, z: np.ndarray) -> np.ndarray:
    """The reproducing kernel of the cubic spline on [0, 1] (Wood 2006 §3.2).

    R(x, z) = ((z-½)² - 1/12)((x-½)² - 1/12)/4 - ((|x-z|-½)⁴ - ½(|x-z|-½)² + 7/240)/24,
    returned as the len(x) × len(z) matrix R(x_i, z_j).
    """
    x = np.asarray(x, dtype=float)[:, None]
    z = np.asarray(z, dtype=float)[None, :]
    d = np.abs(x - z) - 0.5
    return ((z - 0.5) ** 2 - 1 / 12) * ((x - 0.5) ** 2 - 1 / 12) / 4 - (d**4 - d**2 / 2 + 7 / 240) / 24


def rk_basis(u: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Columns [1, u, R(u, z_1), ..., R(u, z_K)] of the rk spline at u on the [0, 1] scale."""
    u = np.asarray(u, dtype=float)
    return np.column_stack([np.ones(u.size), u, rk_kernel(u, z)])


def rk_penalty(z: np.ndarray) -> np.ndarray:
    """The rk spline's penalty: R(z_i, z_j) in the lower-right K×K block, zeros elsewhere."""
    K = len(z)
    S = np.zeros((K + 2, K + 2))
    S[2:, 2:] = rk_kernel(z, z)
    return (S + S.T) / 2


def rk_unconstrained(
    x: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, None, tuple[float, float, np.ndarray]]:
    """The rk basis and penalty on k - 2 interior knots j/(k-1) of x rescaled to [0, 1] (Wood 2006 §3.2)."""
    xmin, xrange = float(x.min()), float(x.max() - x.min())
    unit_knots = np.arange(1, k - 1) / (k - 1)
    X0 = rk_basis((x - xmin) / xrange, unit_knots)
    return X0, rk_penalty(unit_knots), xmin + unit_knots * xrange, None, (xmin, xrange, unit_knots)
