"""The typed read a block of rows at a time (mmcli.csvblocks): the same columns, levels (in R's order), missing
cells and dropped rows as pandas' careful read of the whole file, whatever the block size and however wrong the
expected number of rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mmcli import csvblocks, csvread, data
from mmcli.csvlines import read_layout

LABELS = ["g7", "g10", "g2", "NaN", "g10", "g1", "", "g2", "g30", "g7", "g1", "g4", "NA", "g30", "g5", "g2", "g9"]


def _csv(tmp_path) -> str:
    """Labels that first appear in later blocks, missing labels and numbers, a quoted cell and a blank line."""
    rows = ["y,x,g,z"]
    for i, g in enumerate(LABELS):
        x = "NA" if i == 5 else "NaN" if i == 11 else f"{0.1 * i - 0.7:.17g}"
        z = '"q,1"' if i == 3 else str(i)
        rows.append(f"{(i * 7) % 5},{x},{g},{z}")
        if i == 8:
            rows.append("")
    path = tmp_path / "d.csv"
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def _careful(monkeypatch, path: str) -> data.Table:
    """The whole file read by pandas' category parser: the fallback of the typed reads."""

    def refuse(*a, **k):
        raise ValueError("not this path")

    with monkeypatch.context() as m:
        m.setattr(data, "read_blocks", refuse)
        return data.load(path, numeric=["y"], categorical=["g"], other=["x"])


@pytest.mark.parametrize("block", [1, 4, 1000])
def test_blocks_read_as_the_whole_file(tmp_path, monkeypatch, block) -> None:
    path = _csv(tmp_path)
    careful = _careful(monkeypatch, path)
    calls = []
    real = csvblocks.read_blocks
    monkeypatch.setattr(data, "read_blocks", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(csvblocks, "BLOCK_ROWS", block)
    ours = data.load(path, numeric=["y"], categorical=["g"], other=["x"])
    assert calls, "the block read was not taken"
    assert ours.dropped_rows == careful.dropped_rows == 4  # x NA, x NaN, g NA, g empty
    assert list(ours.frame.columns) == list(careful.frame.columns) == ["y", "g", "x"]
    for c in ("y", "x"):
        assert ours.frame[c].dtype == np.float64
        assert np.array_equal(ours.frame[c].to_numpy(), careful.frame[c].to_numpy())
    la, ca = data.level_order(ours.frame["g"])
    lb, cb = data.level_order(careful.frame["g"])
    assert la == lb and np.array_equal(ca, cb)
    assert "NaN" in la and "" not in la  # NaN is a label in a text column; the empty cell is missing


@pytest.mark.parametrize("rows", [0, 1, 5, 100])
def test_any_expected_row_count(tmp_path, monkeypatch, rows) -> None:
    """Too few expected rows grow the arrays, too many are cut: the columns are those of pandas' own read."""
    path = _csv(tmp_path)
    monkeypatch.setattr(csvblocks, "BLOCK_ROWS", 3)
    src = csvread.open_source(path)
    layout = read_layout(src)
    assert layout.rows == len(LABELS)
    frame = csvblocks.read_blocks(src, layout.columns, [0, 1], [2], {0: ["NA"], 1: ["NA", "NaN"], 2: ["NA", ""]}, rows)
    na = {"y": ["NA"], "x": ["NA", "NaN"], "g": ["NA", ""]}
    whole = pd.read_csv(path, usecols=[0, 1, 2], dtype={"g": str}, keep_default_na=False, na_values=na)
    assert len(frame) == len(whole) == len(LABELS)
    np.testing.assert_array_equal(frame["y"].to_numpy(), whole["y"].to_numpy(dtype=float))
    np.testing.assert_array_equal(frame["x"].to_numpy(), whole["x"].to_numpy(dtype=float))
    codes, uniques = pd.factorize(whole["g"])  # the labels in order of first appearance, -1 where missing
    assert list(frame["g"].cat.categories) == list(uniques)
    assert frame["g"].cat.codes.tolist() == codes.tolist()


def test_interrupt_between_blocks(tmp_path, monkeypatch) -> None:
    """Ctrl-C while a block is turned into codes (outside pandas' reader) ends as KeyboardInterrupt, and the reader
    left behind closes quietly: no 'Exception ignored' traceback after the 'Interrupted.' line."""
    import gc
    import signal
    import sys

    path = _csv(tmp_path)
    monkeypatch.setattr(csvblocks, "BLOCK_ROWS", 4)
    ignored: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", ignored.append)
    real = pd.factorize

    def interrupted(*a, **k):
        signal.raise_signal(signal.SIGINT)  # the default handler: KeyboardInterrupt, here, between two blocks
        return real(*a, **k)

    monkeypatch.setattr(pd, "factorize", interrupted)
    src = csvread.open_source(path)
    with pytest.raises(KeyboardInterrupt):
        csvblocks.read_blocks(src, ["y", "x", "g", "z"], [0], [2], {0: ["NA"], 2: ["NA"]}, 1)
    gc.collect()
    assert ignored == []
