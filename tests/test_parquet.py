"""Parquet input: the same fit as from the CSV it was made from, only the formula's columns read, the same
checks (missing cells, types) as a CSV's."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import EXACT, LMM_CASES, data_path, run_in_process

from mmcli import data, parquet
from mmcli.columns import Columns
from mmcli.levels import r_order


def _as_parquet(csv, path, **types) -> None:
    df = pd.read_csv(csv, dtype=types or None)
    df.to_parquet(path, index=False)


@pytest.mark.parametrize("case", [c for c in LMM_CASES if not c.factors][:5], ids=lambda c: c.stem)
def test_same_fit_as_the_csv(tmp_path, case) -> None:
    csv = data_path(case.csv)
    pqt = tmp_path / (case.csv.replace(".csv", ".parquet"))
    _as_parquet(csv, pqt)
    ref = run_in_process(["fit", csv, *_formula(case.stem), "--json", "--ddf", "none"]).json()
    got = run_in_process(["fit", pqt, *_formula(case.stem), "--json", "--ddf", "none"]).json()
    assert abs(got["loglik"] - ref["loglik"]) <= EXACT * abs(ref["loglik"])
    assert got["theta"] == pytest.approx(ref["theta"], rel=EXACT, abs=EXACT)
    assert got["ngroups"] == ref["ngroups"] and got["nobs"] == ref["nobs"]


@pytest.mark.parametrize(
    "formula",
    [
        "Reaction ~ Days + I(Days^2) + (1 | Subject)",  # a call in the fixed part: the formula library's frame
        "Reaction ~ poly(Days, 2) + (Days | Subject)",
        "Reaction ~ Days + (1 | Subject) + (1 | Days)",  # a grouping factor of numbers, used in the fixed part too
    ],
)
def test_models_beyond_plain_columns_fit_as_from_the_csv(tmp_path, formula) -> None:
    """A Parquet file of numbers and text loads without pandas; a model whose design needs pandas' frame (a
    call, a numeric grouping factor) gets it, and the same fit as from the CSV."""
    csv = data_path("sleepstudy.csv")
    _as_parquet(csv, tmp_path / "s.parquet")
    ref = run_in_process(["fit", csv, formula, "--json", "--ddf", "none"]).json()
    got = run_in_process(["fit", tmp_path / "s.parquet", formula, "--json", "--ddf", "none"]).json()
    assert abs(got["loglik"] - ref["loglik"]) <= EXACT * abs(ref["loglik"])
    assert got["ngroups"] == ref["ngroups"] and got["nobs"] == ref["nobs"]


def test_columns_hold_what_the_frame_holds(tmp_path) -> None:
    """Loaded as Columns (numbers as float64, text groups coded: no pandas), a Parquet file's data are those of
    the pandas frame: the same incomplete rows dropped (a null number, a null or NA label), the same numbers and
    levels; text labels that may read as NaN go through pandas' checks (a frame, then)."""
    df = pd.DataFrame(
        {
            "y": [1.0, None, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
            "x": [0.5, 1.5, 2.5, None, 4.5, 5.5, 6.5, 7.5, 8.5],
            "g": ["b", "a", "NA", "a", "b", None, "c", "a", "c"],
        }
    )
    df.to_parquet(tmp_path / "c.parquet", index=False)
    cols = {"numeric": ["y"], "categorical": ["g"], "other": ["x"]}
    a = data.load(str(tmp_path / "c.parquet"), arrays=True, **cols)
    b = data.load(str(tmp_path / "c.parquet"), **cols)
    assert isinstance(a.data, Columns) and not isinstance(b.data, Columns)
    assert a.dropped_rows == b.dropped_rows == 4 and len(a.data) == len(b.frame) == 5
    for c in ("y", "x"):
        assert np.array_equal(a.data[c], b.frame[c].to_numpy())
    la, ca = data.level_order(a.data["g"])
    lb, cb = data.level_order(b.frame["g"])
    assert la == lb == ["a", "b", "c"] and np.array_equal(ca, cb)
    # labels of numbers and NaN: NaN is missing, as R's factor() of a numeric column reads it
    df.assign(g=["1", "2", "NaN", "1", "2", "3", "NaN", "1", "3"]).to_parquet(tmp_path / "n.parquet", index=False)
    a = data.load(str(tmp_path / "n.parquet"), arrays=True, **cols)
    assert not isinstance(a.data, Columns) and a.dropped_rows == 4
    assert data.level_order(a.frame["g"])[0] == ["1", "2", "3"]


def _formula(stem: str) -> list[str]:
    return {
        "sleepstudy_intercept": ["Reaction ~ Days + (1 | Subject)"],
        "sleepstudy_slope": ["Reaction ~ Days + (Days | Subject)"],
        "sleepstudy_slope_uncorr": ["Reaction ~ Days + (Days || Subject)"],
        "dyestuff": ["Yield ~ 1 + (1 | Batch)"],
        "dyestuff2": ["Yield ~ 1 + (1 | Batch)"],
    }[stem]


def test_only_the_formulas_columns_are_read(tmp_path) -> None:
    """A column of a type mmcli cannot use (a list per row) is never read unless the formula names it."""
    df = pd.read_csv(data_path("sleepstudy.csv"))
    table = pa.Table.from_pandas(df, preserve_index=False).append_column(
        "notes", pa.array([[1, 2]] * len(df), type=pa.list_(pa.int64()))
    )
    pq.write_table(table, tmp_path / "s.parquet")
    d = run_in_process(["fit", tmp_path / "s.parquet", "Reaction ~ Days + (1 | Subject)", "--json"]).json()
    assert d["nobs"] == 180
    t = data.load(str(tmp_path / "s.parquet"), numeric=["Reaction"], categorical=["Subject"], other=[])
    assert list(t.frame.columns) == ["Reaction", "Subject"] and t.columns[-1] == "notes"
    code, _, err = run_in_process(["fit", tmp_path / "s.parquet", "Reaction ~ Days + (1 | notes)"])
    assert code == 1 and err.startswith("Error: Column 'notes'") and "Traceback" not in err


@pytest.mark.parametrize("arrays", [False, True])
def test_missing_values_and_levels_as_in_a_csv(tmp_path, arrays) -> None:
    """Nulls, NA and empty text cells are missing; integer group ids are levels in numeric order (also read as
    Columns: integers coded by Arrow, sorted as numbers)."""
    df = pd.DataFrame(
        {
            "y": [1.0, 2.0, None, 4.0, 5.0, 6.5, 7.0, 8.0],
            "g": [10, 9, 1, 10, 9, 1, 2, 2],
            "h": ["a", "NA", "b", "", "a", "b", "a", None],
        }
    )
    df.to_parquet(tmp_path / "m.parquet", index=False)
    df.astype({"g": "Int64"}).to_csv(tmp_path / "m.csv", index=False)
    tp = data.load(str(tmp_path / "m.parquet"), numeric=["y"], categorical=["g", "h"], arrays=arrays)
    tc = data.load(str(tmp_path / "m.csv"), numeric=["y"], categorical=["g", "h"])
    assert isinstance(tp.data, Columns) == arrays
    assert tp.dropped_rows == tc.dropped_rows == 4
    for col in ("g", "h"):
        assert data.level_order(tp.data[col])[0] == data.level_order(tc.frame[col])[0]
        assert np.array_equal(data.level_order(tp.data[col])[1], data.level_order(tc.frame[col])[1])
    assert data.level_order(tp.data["g"])[0] == ["1", "2", "9", "10"]


def test_errors_are_one_line(tmp_path) -> None:
    pd.DataFrame({"y": ["1", "x", "3"], "g": ["a", "b", "a"]}).to_parquet(tmp_path / "t.parquet", index=False)
    code, _, err = run_in_process(["fit", tmp_path / "t.parquet", "y ~ 1 + (1 | g)"])
    assert code == 1 and err.startswith("Error: Column 'y' must be numeric")
    code, _, err = run_in_process(["fit", tmp_path / "t.parquet", "z ~ 1 + (1 | g)"])
    assert code == 1 and "Column 'z' not found" in err and "Columns are: y, g" in err
    (tmp_path / "bad.parquet").write_text("y,g\n1,a\n")
    code, _, err = run_in_process(["fit", tmp_path / "bad.parquet", "y ~ 1 + (1 | g)"])
    assert code == 1 and "not a readable Parquet file" in err and "Traceback" not in err
    code, _, err = run_in_process(["fit", tmp_path / "none.parquet", "y ~ 1 + (1 | g)"])
    assert code == 1 and "not found" in err


def test_dictionary_columns_over_row_groups(tmp_path, monkeypatch) -> None:
    """A text grouping column comes as the file's dictionary encoding, one dictionary per row group (here each
    group sees other labels): the levels, their order, the missing cells (null, NA, the empty cell, a --na
    token) and the codes are those of the same data as a CSV."""
    real = parquet._text_codes
    rng = np.random.default_rng(5)
    n = 3000
    labels = np.array([f"s{i}" for i in rng.permutation(40)] + ["NA", "", "none"], dtype=object)
    g = labels[np.sort(rng.integers(0, labels.size, n))]  # sorted: each row group holds a run of labels
    g[rng.integers(0, n, 25)] = None
    df = pd.DataFrame({"y": rng.normal(size=n), "g": g})
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp_path / "d.parquet", row_group_size=500)
    assert pq.ParquetFile(tmp_path / "d.parquet").num_row_groups == 6
    df.to_csv(tmp_path / "d.csv", index=False)
    seen = []
    monkeypatch.setattr(parquet, "_text_codes", lambda *a: seen.append(1) or real(*a))
    tp = data.load(str(tmp_path / "d.parquet"), numeric=["y"], categorical=["g"], na=("none",))
    assert seen, "the column was not read as the file's dictionary encoding"
    tc = data.load(str(tmp_path / "d.csv"), numeric=["y"], categorical=["g"], na=("none",))
    assert tp.dropped_rows == tc.dropped_rows > 25
    lp, cp = data.level_order(tp.frame["g"])
    lc, cc = data.level_order(tc.frame["g"])
    assert lp == lc and len(lp) == 40 and np.array_equal(cp, cc)
    assert np.array_equal(tp.frame["y"].to_numpy(), tc.frame["y"].to_numpy())


@pytest.mark.parametrize("wide,threads", [(False, 1), (True, 1), (False, 2), (True, 2)])
def test_dictionaries_merged_in_order_of_first_appearance(monkeypatch, wide, threads) -> None:
    """Chunks with different dictionaries (and null rows, and a null label): one label list in order of first
    appearance, each row's code pointing at its own label, -1 where null; the same with 64-bit text offsets
    (the path of dictionaries past 1 GiB together, forced here by a threshold of 0), and on two threads (a
    long column's path, forced by a threshold of 0 rows: the dictionaries merged in two halves, then the two)."""
    from mmcli import dictcodes

    if wide:
        monkeypatch.setattr(dictcodes, "_LARGE_TEXT_BYTES", 0)
    if threads == 2:
        monkeypatch.setattr(dictcodes, "LONG_ROWS", 0)
    rng = np.random.default_rng(11)
    labels = np.array([f"k{i}" for i in range(60)], dtype=object)
    chunks, rows = [], []
    for _ in range(5):
        v = list(labels[rng.integers(0, 60, 200)])
        for j in rng.integers(0, 200, 7):
            v[j] = None
        rows += v
        chunks.append(pa.array(v).dictionary_encode())
    dictionary = pa.array(["k1", None, "k2"])  # a dictionary holding a null label: its rows are missing too
    chunks.append(pa.DictionaryArray.from_arrays(pa.array([0, 1, 2, None], pa.int32()), dictionary))
    rows += ["k1", None, "k2", None]
    coded = dictcodes.dictionary_codes(pa.chunked_array(chunks))
    codes, got = coded.codes, coded.labels
    expected = list(dict.fromkeys(r for r in rows if r is not None))
    assert [g for g in got if g is not None] == expected
    assert [None if c < 0 or got[c] is None else got[c] for c in codes] == rows
    assert (
        coded.counts is not None
        and coded.counts.tolist() == np.bincount(codes[codes >= 0], minlength=len(got)).tolist()
    )
    # sorted in R's order (text: by code point, k10 before k2) as the codes are mapped, the null label last
    coded = dictcodes.dictionary_codes(pa.chunked_array(chunks), r_order)
    codes, got = coded.codes, coded.labels
    assert [g for g in got if g is not None] == sorted(expected) and got[-1] is None
    assert [None if c < 0 or got[c] is None else got[c] for c in codes] == rows
    assert (
        coded.counts is not None
        and coded.counts.tolist() == np.bincount(codes[codes >= 0], minlength=len(got)).tolist()
    )


def test_halves_split_a_column_at_about_half_its_rows() -> None:
    from mmcli import dictcodes

    col = pa.chunked_array([pa.array(["a"] * n) for n in (300_000, 300_000, 500_000, 200_000)])
    a, b = dictcodes.halves(col)
    assert (len(a), len(b)) == (600_000, 700_000) and a.num_chunks == 2 and b.num_chunks == 2
    assert len(dictcodes.halves(pa.chunked_array([pa.array(["a"] * 2_000_000)]))) == 1  # one chunk: not split
