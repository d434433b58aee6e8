"""The report's numbers that are computed there: R's type-7 quantiles of the residuals, by selection for long
vectors, equal numpy's (np.quantile sorts a copy; the selection must give the same numbers, not close ones)."""

from __future__ import annotations

import numpy as np
import pytest

from mmcli import threads as threads_module
from mmcli.report import SELECT_MIN_ROWS, quantiles_type7

N = SELECT_MIN_ROWS + 12_345


def _cases() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    sawtooth = np.tile(np.arange(1000.0), N // 1000 + 1)[:N]
    adversarial = np.zeros(N)  # the strided sample sees only the large values: the bracket misses
    adversarial[:: max(N >> 16, 1)] = 1e6
    return {
        "normal": rng.standard_normal(N),
        "sorted": np.sort(rng.standard_normal(N)),
        "descending": -np.sort(rng.standard_normal(N + 1)),
        "ties": np.round(rng.standard_normal(N + 2), 1),
        "heavy tails": rng.standard_cauchy(N + 3),
        "sawtooth": sawtooth,
        "adversarial": adversarial,
        "constant": np.full(N, 2.5),
    }


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", list(_cases()))
def test_quantiles_equal_numpy(monkeypatch, name: str, threads: int) -> None:
    """Also with each half of the vector scanned on a thread of its own (a long vector's path, forced here)."""
    if threads == 2:
        monkeypatch.setattr(threads_module, "LONG_ROWS", 0)
    x = _cases()[name]
    before = x.copy()
    got = quantiles_type7(x)
    assert got == [float(v) for v in np.quantile(before, [0.0, 0.25, 0.5, 0.75, 1.0])]
    assert np.array_equal(x, before)  # the residuals are not reordered


def test_quantiles_short_and_non_finite() -> None:
    assert quantiles_type7(np.array([3.0, 1.0, 2.0, 10.0])) == [1.0, 1.75, 2.5, 4.75, 10.0]  # R: quantile(c(3,1,2,10))
    x = np.random.default_rng(3).standard_normal(N)
    x[5] = np.inf
    with np.errstate(invalid="ignore"):  # inf - inf in the interpolation: NaN, as numpy gives it
        np.testing.assert_array_equal(quantiles_type7(x), np.quantile(x, [0.0, 0.25, 0.5, 0.75, 1.0]))
