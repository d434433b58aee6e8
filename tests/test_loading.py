"""Loading at read speed: grouping columns come dictionary-encoded from pyarrow's CSV reader, or factorized
from a plain read, never parsed as pandas categories; the levels, their R order and the missing cells must be
exactly those of the careful path (pandas' parser, whose errors name the line), which stays the fallback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import data_path, run_in_process

from mmcli import csvread, data, parquet
from mmcli.columns import Columns, floats
from mmcli.parquet import needs_pyarrow

CSV = """y,x,g,h
1.5,0.1,10,b
2.5,0.2,9,a
3.5,0.3,1,NA
4.5,NA,10,b
5.5,0.5,,c
6.5,0.6,2,a
7.5,0.7,9,b
8.5,0.8,1,c
"""


def _both(path, monkeypatch, arrays=False, **cols) -> tuple[data.Table, data.Table]:
    monkeypatch.setattr(data, "ARROW_MIN_BYTES", 0)  # the threaded reader, whatever the file's size
    real, calls = csvread.read_arrow, []
    monkeypatch.setattr(csvread, "read_arrow", lambda *a, **k: calls.append(1) or real(*a, **k))
    fast = data.load(str(path), arrays=arrays, **cols)
    assert calls, "the fast read was not tried"
    monkeypatch.setattr(csvread, "read_arrow", lambda *a, **k: None)
    careful = data.load(str(path), **cols)
    monkeypatch.undo()
    return fast, careful


def _same(a: data.Table, b: data.Table, cols: list[str]) -> None:
    assert a.dropped_rows == b.dropped_rows and len(a.frame) == len(b.frame)
    for c in cols:
        la, ca = data.level_order(a.frame[c])
        lb, cb = data.level_order(b.frame[c])
        assert la == lb and np.array_equal(ca, cb)


@pytest.mark.parametrize("arrays", [False, True])
def test_fast_read_gives_the_same_levels(tmp_path, monkeypatch, arrays) -> None:
    """Also when the fast read's columns are kept as numpy arrays (Columns: no pandas)."""
    path = tmp_path / "d.csv"
    path.write_text(CSV)
    fast, careful = _both(path, monkeypatch, arrays, numeric=["y"], categorical=["g", "h"], other=["x"])
    assert isinstance(fast.data, Columns) == arrays
    for c in ("y", "x"):
        assert np.array_equal(floats(fast.data, c), careful.frame[c].to_numpy(dtype=float))
    _same(fast, careful, ["g", "h"])
    assert fast.dropped_rows == 3
    labels, codes = data.level_order(fast.frame["g"])
    assert labels == ["1", "2", "9", "10"]  # numeric ids sort as numbers, as R's factor() of a numeric column
    assert codes.tolist() == [3, 2, 1, 2, 0]


def test_blanks_and_quotes_fall_back_to_the_careful_read(tmp_path, monkeypatch) -> None:
    path = tmp_path / "q.csv"
    path.write_text('y, g\n1, "a"\n2, b\n3, "a"\n4, " b"\n5,c\n6,c\n')
    fast, careful = _both(path, monkeypatch, numeric=["y"], categorical=["g"])
    _same(fast, careful, ["g"])
    assert data.level_order(fast.frame["g"])[0] == ["a", "b", "c"]


def test_text_in_a_number_column_is_the_careful_error(tmp_path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("y,g\n1,a\n2,b\nthree,a\n4,b\n")
    code, _, err = run_in_process(["fit", path, "y ~ 1 + (1 | g)"])
    assert code == 1 and "line 4" in err and "'three'" in err


@pytest.mark.parametrize("case", ["sleepstudy.csv", "penicillin.csv", "pastes.csv"])
def test_sample_data_levels_unchanged(case, monkeypatch, tmp_path) -> None:
    groups = {"sleepstudy.csv": ["Subject"], "penicillin.csv": ["plate", "sample"], "pastes.csv": ["batch", "cask"]}
    cols = groups[case]
    path = tmp_path / case  # unquoted, as the fast read takes a file (a quoted header goes the careful way)
    path.write_text(Path(data_path(case)).read_text().replace('"', ""))
    fast, careful = _both(path, monkeypatch, numeric=[], categorical=cols)
    _same(fast, careful, cols)


def test_large_integer_ids_stay_distinct(tmp_path, monkeypatch) -> None:
    """Ids beyond 2^53 differ in their last digit: as floats they would merge into one level."""
    path = tmp_path / "ids.csv"
    path.write_text("y,g\n1,9007199254740993\n2,9007199254740992\n3,9007199254740993\n4,7\n")
    fast, careful = _both(path, monkeypatch, numeric=["y"], categorical=["g"])
    _same(fast, careful, ["g"])
    assert len(data.level_order(fast.frame["g"])[0]) == 3


# The entry point keeps pyarrow away from runs that cannot read with it (pandas would import it, ~65 MiB).
GATE = """
import json, sys
from mmcli import _entry
_entry.keep_pyarrow_away(sys.argv[1:])
import pandas
import mmcli.data
print(json.dumps({"blocked": sys.modules.get("pyarrow", 0) is None,
                  "levels": sorted(set(mmcli.data.load(sys.argv[1], numeric=["y"], categorical=["g"]).frame["g"]))}))
"""


def _gate(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", GATE, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_small_csv_runs_without_pyarrow(tmp_path) -> None:
    pytest.importorskip("pyarrow")
    csv = tmp_path / "d.csv"
    csv.write_text("y,g\n1,b\n2,a\n3,b\n")
    assert _gate(str(csv), "y ~ 1 + (1|g)") == {"blocked": True, "levels": ["a", "b"]}


@pytest.mark.parametrize("extra", ["-", "--dask", "--dask=local", "data.parquet"])
def test_runs_that_may_read_with_pyarrow_keep_it(extra) -> None:
    assert needs_pyarrow(["fit", "y ~ x + (1|g)", extra])
    assert not needs_pyarrow(["fit", "y ~ x + (1|g)", "small.csv"])


def test_a_large_csv_keeps_pyarrow(tmp_path, monkeypatch) -> None:
    csv = tmp_path / "d.csv"
    csv.write_text("y,g\n1,a\n")
    monkeypatch.setattr(parquet, "ARROW_MIN_BYTES", 8)
    assert needs_pyarrow([str(csv)])
    monkeypatch.setattr(parquet, "ARROW_MIN_BYTES", 1 << 20)
    assert not needs_pyarrow([str(csv)])


# --------------------------------------------------------------------------------------------------
# Quotes: pyarrow splits its blocks at any line break unless the file holds a double quote
# --------------------------------------------------------------------------------------------------


def _spy_arrow(monkeypatch) -> list[dict]:
    seen: list[dict] = []
    real = csvread.read_arrow
    monkeypatch.setattr(csvread, "read_arrow", lambda *a, **k: seen.append(k) or real(*a, **k))
    return seen


def test_a_file_without_quotes_is_split_anywhere(tmp_path, monkeypatch) -> None:
    path = tmp_path / "d.csv"
    path.write_text(CSV)
    monkeypatch.setattr(data, "ARROW_MIN_BYTES", 0)
    seen = _spy_arrow(monkeypatch)
    fast = data.load(str(path), numeric=["y"], categorical=["g", "h"], other=["x"])
    assert [k.get("quoted") for k in seen] == [False]
    monkeypatch.setattr(csvread, "read_arrow", lambda *a, **k: None)
    _same(fast, data.load(str(path), numeric=["y"], categorical=["g", "h"], other=["x"]), ["g", "h"])


def test_labels_with_line_breaks_across_blocks(tmp_path, monkeypatch) -> None:
    """Quoted labels that hold a line break, in a file of several of pyarrow's blocks (1 MiB each at least):
    the quotes are tracked across blocks, and the levels are the careful path's."""
    rows = [
        f'{i % 97 + 0.5},"lab\n{i % 13}"' if i % 7 == 0 else f"{i % 97 + 0.5},plain{i % 11}" for i in range(150_000)
    ]
    path = tmp_path / "q.csv"
    path.write_text("y,g\n" + "\n".join(rows) + "\n")
    assert path.stat().st_size > 3 << 19  # two of its blocks at least
    monkeypatch.setattr(data, "ARROW_MIN_BYTES", 0)
    seen = _spy_arrow(monkeypatch)
    fast = data.load(str(path), numeric=["y"], categorical=["g"])
    assert [k.get("quoted") for k in seen] == [True]
    monkeypatch.setattr(csvread, "read_arrow", lambda *a, **k: None)
    careful = data.load(str(path), numeric=["y"], categorical=["g"])
    _same(fast, careful, ["g"])
    assert len(data.level_order(fast.frame["g"])[0]) == 24 and len(fast.frame) == 150_000


@pytest.mark.parametrize("where", [0, 4095, 4096, 12_289, None])
def test_quote_scan_across_windows(tmp_path, monkeypatch, where) -> None:
    monkeypatch.setattr(csvread, "_SCAN_WINDOW", 4096)  # the smallest a memory map allows
    body = bytearray(b"y,g\n" + b"1,a\n" * 5000)
    if where is not None:
        body[where] = ord('"')
    path = tmp_path / "s.csv"
    path.write_bytes(bytes(body))
    assert csvread.has_quote(csvread.open_source(str(path))) is (where is not None)
    assert csvread.has_quote(csvread.Source("<stdin>", data=bytes(body))) is (where is not None)


# --------------------------------------------------------------------------------------------------
# Fixed-effect columns take the type pyarrow infers; grouping labels are checked as UTF-8 once each
# --------------------------------------------------------------------------------------------------


def test_inferred_columns_equal_the_careful_read(tmp_path, monkeypatch) -> None:
    """Integers (read as int64 by pyarrow) and decimals with missing cells come as the careful path's floats;
    a fixed-effect column of text sends the read to the careful path (where it becomes a factor)."""
    path = tmp_path / "d.csv"
    path.write_text(
        "y,k,x,g\n" + "".join(f"{i * 0.5},{i % 7},{'NA' if i % 5 == 0 else i / 3},g{i % 4}\n" for i in range(60))
    )
    fast, careful = _both(path, monkeypatch, numeric=["y"], categorical=["g"], other=["k", "x"])
    _same(fast, careful, ["g"])
    for c in ["y", "k", "x"]:
        assert fast.frame[c].dtype == np.float64 and careful.frame[c].dtype == np.float64
        assert np.array_equal(fast.frame[c].to_numpy(), careful.frame[c].to_numpy(), equal_nan=True)
    text = tmp_path / "t.csv"
    text.write_text("y,k,g\n" + "".join(f"{i},{'ab'[i % 2]},g{i % 3}\n" for i in range(30)))
    monkeypatch.setattr(data, "ARROW_MIN_BYTES", 0)
    seen = _spy_arrow(monkeypatch)
    got = data.load(str(text), numeric=["y"], categorical=["g"], other=["k"])
    assert len(seen) == 1 and got.frame["k"].tolist()[:2] == ["a", "b"]  # tried, then read the careful way


def test_a_label_that_is_not_utf8_is_the_careful_error(tmp_path, monkeypatch) -> None:
    """Grouping columns are parsed as bytes: a label that is not UTF-8 is found among the distinct labels,
    and the careful read then gives its message (where the bad byte is), as without the fast read."""
    path = tmp_path / "b.csv"
    path.write_bytes(b"y,g\n1,a\n2,b\n3,caf\xe9\n4,a\n")
    monkeypatch.setattr(data, "ARROW_MIN_BYTES", 0)
    seen = _spy_arrow(monkeypatch)
    code, _, err = run_in_process(["fit", path, "y ~ 1 + (1 | g)"])
    assert seen and code == 1 and "is not UTF-8 text (invalid continuation byte at byte 17)" in err
    monkeypatch.setattr(csvread, "read_arrow", lambda *a, **k: None)
    assert run_in_process(["fit", path, "y ~ 1 + (1 | g)"])[2] == err
