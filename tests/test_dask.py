"""The fit on a Dask cluster (--dask) against the same fit in memory: the Gram matrix summed over partitions
is the in-memory one up to the order of the additions, so the optimum agrees to EXACT in the log-likelihood.

One 2-worker LocalCluster (threads in this process: cheap to start) serves the whole file; mmcli reaches it
through its scheduler address, as it would a real cluster."""

from __future__ import annotations

from pathlib import Path

import distributed
import numpy as np
import pandas as pd
import pytest
from conftest import EXACT, OPT_FIXEF, OPT_PAR, REFERENCE_DIR, data_path, run_in_process


@pytest.fixture(scope="module")
def scheduler() -> object:
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None, silence_logs=50
    )
    yield cluster.scheduler_address
    cluster.close()


def _split(src: Path, out: Path, stem: str, parts: int, parquet: bool) -> str:
    """The rows of src dealt round-robin into files (so that every file holds part of every group)."""
    df = pd.read_csv(src, dtype=str, keep_default_na=False)
    for i in range(parts):
        piece = df.iloc[i::parts]
        if parquet:
            for c in piece.columns:
                num = pd.to_numeric(piece[c], errors="coerce")
                if num.notna().all() and c not in ("Subject", "plate", "sample", "batch", "cask"):
                    piece = piece.assign(**{c: num})
            piece.to_parquet(out / f"{stem}_{i}.parquet", index=False)
        else:
            piece.to_csv(out / f"{stem}_{i}.csv", index=False)
    return str(out / f"{stem}_*.{'parquet' if parquet else 'csv'}")


CASES = [
    ("sleepstudy.csv", "Reaction ~ Days + (Days | Subject)", [], 3, False),
    ("sleepstudy.csv", "Reaction ~ Days + (Days || Subject)", ["--reml"], 2, True),
    ("penicillin.csv", "diameter ~ 1 + (1 | plate) + (1 | sample)", ["--reml"], 4, True),
    ("pastes.csv", "strength ~ 1 + (1 | batch/cask)", [], 3, False),
    (
        str(REFERENCE_DIR / "sleepstudy_weighted.csv"),
        "Reaction ~ Days + offset(off) + (Days | Subject)",
        ["--weights", "w", "--reml"],
        3,
        False,
    ),
]


@pytest.mark.parametrize("csv,formula,extra,parts,parquet", CASES)
def test_same_fit_as_in_memory(scheduler, tmp_path, csv, formula, extra, parts, parquet) -> None:
    src = Path(csv) if "/" in csv else data_path(csv)
    pattern = _split(src, tmp_path, "part", parts, parquet)
    mem = run_in_process(["fit", src, formula, *extra, "--json", "--ddf", "none"]).json()
    res = run_in_process(["fit", pattern, formula, *extra, "--json", "--ddf", "none", "--dask", scheduler])
    d = res.json()
    assert abs(d["loglik"] - mem["loglik"]) <= EXACT * abs(mem["loglik"])
    assert d["nobs"] == mem["nobs"] and d["ngroups"] == mem["ngroups"]
    np.testing.assert_allclose(d["theta"], mem["theta"], rtol=OPT_PAR, atol=OPT_PAR)
    b, bm = (np.array([f["estimate"] for f in x["fixed_effects"]]) for x in (d, mem))
    assert np.max(np.abs(b - bm)) <= OPT_FIXEF * np.max(np.abs(bm))
    assert [r["group"] for r in d["random_effects"]] == [r["group"] for r in mem["random_effects"]]
    assert d["scaled_residuals"] is None  # they need the rows
    assert "no df or p-values" not in res.err  # --ddf none asked for lme4's table


def test_missing_rows_dropped_and_counted(scheduler, tmp_path) -> None:
    df = pd.read_csv(data_path("sleepstudy.csv"))
    df.loc[[3, 50], "Days"] = np.nan
    df.loc[7, "Subject"] = np.nan
    df.to_csv(tmp_path / "na.csv", index=False)
    mem = run_in_process(["fit", tmp_path / "na.csv", "Reaction ~ Days + (1 | Subject)", "--json"]).json()
    res = run_in_process(["fit", tmp_path / "na.csv", "Reaction ~ Days + (1 | Subject)", "--json", "--dask", scheduler])
    d = res.json()
    assert d["dropped_rows"] == mem["dropped_rows"] == 3
    assert abs(d["loglik"] - mem["loglik"]) <= EXACT * abs(mem["loglik"])
    assert "no df or p-values" in res.err


@pytest.mark.parametrize(
    "formula,extra,message",
    [
        ("Reaction ~ factor(Days) + (1 | Subject)", [], "factor() needs"),
        ("Reaction ~ Days + (1 | Subject)", ["--factor", "Days"], "categorical fixed effects"),
        ("Reaction ~ poly(Days, 2) + (1 | Subject)", [], "poly() needs the whole column"),
        ("Reaction ~ Days + (1 | Subject)", ["--method", "dense"], "leave out --method dense"),
        ("Reaction ~ Days + (1 | Subject)", ["--family", "poisson"], "--family cannot be combined"),
    ],
)
def test_what_it_does_not_do_is_a_usage_error(scheduler, formula, extra, message) -> None:
    code, out, err = run_in_process(["fit", data_path("sleepstudy.csv"), formula, *extra, "--dask", scheduler])
    assert code == 2 and out == ""
    assert err.startswith("Error:") and message in err and "Traceback" not in err


def test_bad_input_is_one_error_line(scheduler, tmp_path) -> None:
    code, _, err = run_in_process(["fit", tmp_path / "none_*.csv", "y ~ x + (1 | g)", "--dask", scheduler])
    assert code == 1 and err.startswith("Error: No file matches")
    df = pd.read_csv(data_path("sleepstudy.csv")).astype({"Days": object})
    df.loc[5, "Days"] = "three"
    df.to_csv(tmp_path / "text.csv", index=False)
    args = ["fit", tmp_path / "text.csv", "Reaction ~ Days + (1 | Subject)", "--dask", scheduler]
    code, _, err = run_in_process(args)
    assert code == 1 and len([ln for ln in err.splitlines() if ln.startswith("Error:")]) == 1
    assert "Traceback" not in err
    args = ["fit", data_path("sleepstudy.csv"), "Reaction ~ Days + (1|Subject)", "--dask", "local:x"]
    code, _, err = run_in_process(args)
    assert code == 2 and "local:N" in err
