"""Aliased columns and R of X = QR: from a million rows on, a clearly full-rank X takes R from the Cholesky factor
of its Gram matrix (one pass over X); anything near aliased keeps Householder's TSQR. Either way the same columns
are kept and the fit is the same."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import EXACT, ROUNDING, data_path, run_in_process

from mmcli.lmm import rank


def _both(X, monkeypatch):
    tsqr = rank.aliased_columns_r(X)
    monkeypatch.setattr(rank, "GRAM_R_MIN_ROWS", 0)
    return tsqr, rank.aliased_columns_r(X)


def test_full_rank_r_from_the_gram_matrix(monkeypatch) -> None:
    rng = np.random.default_rng(2)
    X = np.column_stack([np.ones(5000), rng.normal(size=5000), rng.uniform(0, 1e4, 5000), rng.normal(size=5000)])
    (k1, d1, R1), (k2, d2, R2) = _both(X, monkeypatch)
    assert k1.tolist() == k2.tolist() == [0, 1, 2, 3] and d1.size == d2.size == 0
    # the same R up to the signs of its rows (Householder's diagonal may be negative, Cholesky's is not)
    signs = np.sign(np.diag(R1))
    assert np.allclose(R1 * signs[:, None], R2, rtol=EXACT, atol=EXACT * np.abs(R1).max())
    assert np.allclose(R2.T @ R2, X.T @ X, rtol=ROUNDING * 100, atol=0)


@pytest.mark.parametrize("eps", [0.0, 1e-9, 1e-4])
def test_near_aliased_columns_keep_tsqr(monkeypatch, eps) -> None:
    """Collinear or nearly so (cond >= 1e3): the decision and R are Householder's, unchanged."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=4000)
    X = np.column_stack([np.ones(4000), x, 2 * x + eps * rng.normal(size=4000)])
    (k1, d1, R1), (k2, d2, R2) = _both(X, monkeypatch)
    assert k1.tolist() == k2.tolist() and d1.tolist() == d2.tolist()
    assert np.array_equal(R1, R2)
    assert (d1.tolist() == [2]) is (eps < 1e-7)


def test_same_fit_either_way(monkeypatch) -> None:
    args = ["fit", data_path("sleepstudy.csv"), "Reaction ~ Days + (Days | Subject)", "--json", "--ddf", "none"]
    ref = run_in_process(args).json()
    monkeypatch.setattr(rank, "GRAM_R_MIN_ROWS", 0)
    got = run_in_process(args).json()
    assert got["loglik"] == pytest.approx(ref["loglik"], rel=EXACT)
    assert got["theta"] == pytest.approx(ref["theta"], rel=EXACT)
    for a, b in zip(got["fixed_effects"], ref["fixed_effects"]):
        assert a["estimate"] == pytest.approx(b["estimate"], rel=EXACT)
        assert a["std_error"] == pytest.approx(b["std_error"], rel=EXACT)
