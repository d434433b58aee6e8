"""Property-based tests: generated CSV contents, formulas and option values.

Whatever hypothesis makes, a run of ``mmcli`` ends in exit 0, 1, 2 or 3; it never prints a traceback nor an
"internal error"; a failure is one ``Error:`` line (after any notes); and a success prints JSON whose every
number is finite. The command line runs in this process (``mmcli.cli.main``), so each example costs one fit.

The examples are derandomized (conftest's hypothesis profile "ci": no example database, no deadline) so that
``make test`` is reproducible on any machine; set ``MMCLI_HYPOTHESIS_RANDOM=1`` (and raise
``MMCLI_HYPOTHESIS_EXAMPLES``) to search afresh.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import run_in_process
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("MMCLI_HYPOTHESIS_EXAMPLES", "60"))
SETTINGS = settings(max_examples=EXAMPLES)  # the rest comes from conftest's profile

# --------------------------------------------------------------------------------------------------
# The property every run must have
# --------------------------------------------------------------------------------------------------


def _numbers(obj: Any) -> list[float]:
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return []
    if isinstance(obj, (int, float)):
        return [float(obj)]
    if isinstance(obj, dict):
        return [v for x in obj.values() for v in _numbers(x)]
    if isinstance(obj, list):
        return [v for x in obj for v in _numbers(x)]
    return []


def check_run(args: list[Any], stdin: bytes | None = None) -> int:
    """Run mmcli and check the contract; returns the exit code."""
    code, out, err = run_in_process(args, stdin=stdin)
    event(f"exit {code}")
    assert code in (0, 1, 2, 3), f"exit {code}: {err}"
    assert "Traceback" not in err, err
    assert "internal error" not in err, f"{args}\n{err}"
    lines = err.splitlines()
    if code in (1, 2):
        assert lines and lines[-1].startswith("Error: "), f"exit {code} without an Error: line: {err!r}"
        assert all(line.startswith(("Note: ", "Warning: ")) for line in lines[:-1]), err
    else:
        assert not any(line.startswith("Error: ") for line in lines), err
        if "--json" in args:
            result = json.loads(out)
            bad = [v for v in _numbers(result) if not math.isfinite(v)]
            assert not bad, f"non-finite numbers in a successful fit: {bad}"
    return code


# --------------------------------------------------------------------------------------------------
# Strategies: cells, rows, files
# --------------------------------------------------------------------------------------------------

NUMBER_TEXT = st.one_of(
    st.integers(-1000, 1000).map(str),
    st.floats(-1e6, 1e6, allow_nan=False).map(lambda v: f"{v:.6g}"),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["0", "-0", "1e-300", "1e300", "1.7976931348623157e308", "5e-324", ".5", "1.", "+3", "0x1F"]),
)
ODD_TEXT = st.sampled_from(
    [
        "NA",
        "",
        "nan",
        "NaN",
        "inf",
        "-inf",
        "Infinity",
        ".",
        "n/a",
        "null",
        "abc",
        "1,5",
        '"quoted, comma"',
        '"',
        "TRUE",
        "1e",
        "--1",
        " 7 ",
        "é",
        "\u00a0",
        "1/2",
    ]
)
GROUP_TEXT = st.sampled_from(["a", "b", "c", "d", "1", "2", "10", "a b", "NA", "", "ä", '"x,y"'])
MODEL_COLUMNS = ("y", "x", "g", "z")


@st.composite
def csv_text(draw: st.DrawFn, columns: tuple[str, ...] = MODEL_COLUMNS) -> str:
    """A valid data set (y, x, z numeric, g a grouping factor) spoiled by a few mutations: odd cells, a column
    missing or renamed, another separator or line ending, ragged rows, a byte-order mark."""
    n_groups = draw(st.integers(1, 6))
    sizes = draw(st.lists(st.integers(1, 8), min_size=n_groups, max_size=n_groups))
    num = st.floats(-100, 100, allow_nan=False).map(lambda v: f"{v:.4g}")
    cell = {"y": lambda j: draw(num), "x": lambda j: draw(num), "z": lambda j: draw(num), "g": lambda j: f"G{j}"}
    rows = [[cell[c](j) for c in columns] for j, size in enumerate(sizes) for _ in range(size)]
    header = list(columns)
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["cell", "cell", "cell", "group", "column", "rename", "ragged", "blank"]))
        if kind in ("cell", "group") and rows:
            i = draw(st.integers(0, len(rows) - 1))
            if rows[i]:
                j = draw(st.integers(0, len(rows[i]) - 1))
                rows[i][j] = draw(GROUP_TEXT if kind == "group" else st.one_of(ODD_TEXT, NUMBER_TEXT))
        elif kind == "column" and len(header) > 1:
            j = draw(st.integers(0, len(header) - 1))
            header.pop(j)
            rows = [r[:j] + r[j + 1 :] for r in rows]
        elif kind == "rename":
            j = draw(st.integers(0, len(header) - 1))
            header[j] = draw(st.sampled_from(["Y", "x", "g", "", "y y", "1", "NA", "é"]))
        elif kind == "ragged" and rows:
            i = draw(st.integers(0, len(rows) - 1))
            rows[i] = rows[i][: draw(st.integers(0, len(rows[i])))] if draw(st.booleans()) else rows[i] + ["extra"]
        elif kind == "blank" and rows:
            rows.insert(draw(st.integers(0, len(rows))), [])
    sep = draw(st.sampled_from([",", ",", ",", ",", ";", "\t"]))
    eol = draw(st.sampled_from(["\n", "\n", "\r\n"]))
    text = eol.join([sep.join(header)] + [sep.join(r) for r in rows]) + (eol if draw(st.booleans()) else "")
    return ("\ufeff" if draw(st.integers(0, 9)) == 0 else "") + text


def _write(tmp: Path, text: str | bytes, name: str = "data.csv") -> Path:
    p = tmp / name
    p.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return p


FIT_FORMULAS = [
    "y ~ x + (1 | g)",
    "y ~ 1 + (1 | g)",
    "y ~ x + (x | g)",
    "y ~ x + (x || g)",
    "y ~ z + x + (1 | g)",
    "y ~ factor(x) + (1 | g)",
    "y ~ x * z + (1 | g)",
    "y ~ 0 + x + (1 | g)",
]
GAMM_FORMULAS = [
    "y ~ s(x, bs = 'cr', k = 4) + (1 | g)",
    "y ~ s(x, bs = 'cs', k = 5) + (1 | g)",
    "y ~ s(x, bs = 'rk', k = 4) + (1 | g)",
    "y ~ z + s(x, bs = 'cr', k = 3)",
    "y ~ s(x, bs = 'cr', k = 4)",
]

# --------------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------------


@SETTINGS
@given(
    text=csv_text(),
    command=st.sampled_from(["fit", "ranef"]),
    formula=st.sampled_from(FIT_FORMULAS),
    reml=st.booleans(),
)
def test_fit_any_csv(
    tmp_path_factory: pytest.TempPathFactory, text: str, command: str, formula: str, reml: bool
) -> None:
    path = _write(tmp_path_factory.mktemp("fit"), text)
    check_run([command, path, formula, "--json"] + (["--reml"] if reml else []))


@SETTINGS
@given(
    text=st.one_of(csv_text(), csv_text(("x", "y"))),
    args=st.sampled_from([[], [], ["--x", "x", "--y", "y"], ["--x", "z", "--y", "y"]]),
    lam=st.sampled_from(["gcv", "reml", "1e-4", "1", "100"]),
)
def test_spline_any_csv(tmp_path_factory: pytest.TempPathFactory, text: str, args: list[str], lam: str) -> None:
    path = _write(tmp_path_factory.mktemp("spline"), text)
    check_run(["spline", path, *args, "--lambda", lam, "--json"])


@SETTINGS
@given(text=csv_text(), formula=st.sampled_from(GAMM_FORMULAS))
def test_gamm_any_csv(tmp_path_factory: pytest.TempPathFactory, text: str, formula: str) -> None:
    path = _write(tmp_path_factory.mktemp("gamm"), text)
    check_run(["gamm", path, formula, "--json"])


@st.composite
def numeric_data(draw: st.DrawFn) -> str:
    """Valid numbers throughout, of any magnitude; groups with 1..8 rows, 2..6 groups."""
    sizes = draw(st.lists(st.integers(1, 8), min_size=2, max_size=6))
    scale = 10.0 ** draw(st.integers(-150, 150))
    xscale = 10.0 ** draw(st.integers(-8, 8))
    num = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)
    rows = []
    for j, size in enumerate(sizes):
        for _ in range(size):
            rows.append(f"{draw(num) * scale!r},{draw(num) * xscale!r},G{j}")
    return "y,x,g\n" + "\n".join(rows) + "\n"


@SETTINGS
@given(
    text=numeric_data(),
    formula=st.sampled_from(["y ~ x + (1 | g)", "y ~ 1 + (1 | g)", "y ~ x + (x | g)"]),
    method=st.sampled_from(["fast", "dense"]),
    command=st.sampled_from(["fit", "ranef"]),
)
def test_valid_numbers_fit_or_fail_cleanly(
    tmp_path_factory: pytest.TempPathFactory, text: str, formula: str, method: str, command: str
) -> None:
    path = _write(tmp_path_factory.mktemp("num"), text)
    check_run([command, path, formula, "--method", method, "--json"])


SPLINE_DATA = "x,y\n" + "".join(f"{i / 4:.2f},{math.sin(i / 3) + 0.1 * ((i * 7) % 5):.4f}\n" for i in range(24))
BAD_OPTION = st.one_of(
    st.sampled_from(
        [
            "0",
            "-1",
            "1e400",
            "nan",
            "inf",
            "-inf",
            "GCV",
            "",
            " ",
            "1,2",
            "abc",
            "2.5",
            "0x10",
            "1e-320",
            "1e300",
            "100",
        ]
    ),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**6), 10**6).map(str),
)
LAMBDA = st.one_of(st.sampled_from(["gcv", "reml"]), st.floats(1e-8, 1e6).map(repr), BAD_OPTION)
KNOTS = st.one_of(st.none(), st.none(), st.integers(1, 22).map(str), BAD_OPTION)
KNOT_VALUES = st.one_of(
    st.none(),
    st.none(),
    st.none(),
    st.none(),
    st.none(),
    st.lists(st.floats(0, 5.75), min_size=1, max_size=6).map(lambda v: ",".join(f"{a:.3f}" for a in v)),
    BAD_OPTION,
)


@SETTINGS
@given(lam=LAMBDA, knots=KNOTS, knot_values=KNOT_VALUES)
def test_spline_option_values(
    tmp_path_factory: pytest.TempPathFactory, lam: str, knots: str | None, knot_values: str | None
) -> None:
    path = _write(tmp_path_factory.mktemp("opt"), SPLINE_DATA)
    args = ["spline", path, "--lambda", lam, "--json"]
    args += ["--knots", knots] if knots is not None else []
    args += ["--knot-values", knot_values] if knot_values is not None else []
    check_run(args)


GAMM_DATA = "y,x,g\n" + "".join(
    f"{math.cos(i / 5) + (i % 4) * 0.3 + 0.05 * ((i * 13) % 7):.4f},{i % 15},{i % 4}\n" for i in range(60)
)


@SETTINGS
@given(
    k=st.one_of(st.integers(3, 15).map(str), BAD_OPTION),
    bs=st.sampled_from(["cr", "cs", "rk", "cr", "cs", "rk", "tp"]),
    reml=st.booleans(),
)
def test_gamm_option_values(tmp_path_factory: pytest.TempPathFactory, k: str, bs: str, reml: bool) -> None:
    path = _write(tmp_path_factory.mktemp("gopt"), GAMM_DATA)
    args = ["gamm", path, "--y", "y", "--smooth", "x", "--group", "g", "--k", k, "--bs", bs, "--json"]
    check_run(args + ([] if reml else ["--ml"]))


GAMM_Z_DATA = "y,x,g,z\n" + "".join(
    f"{math.cos(i / 5) + (i % 4) * 0.3 + 0.05 * ((i * 13) % 7):.4f},{i % 15},{i % 4},{(i * 7) % 11 / 3:.3f}\n"
    for i in range(60)
)
FORMULA_TOKENS = [
    "y",
    "x",
    "g",
    "z",
    "~",
    "+",
    "-",
    "*",
    ":",
    "/",
    "|",
    "||",
    "(",
    ")",
    "1",
    "0",
    " ",
    "s(",
    ",",
    "k=3",
    "bs='cr'",
    "factor(",
    "I(",
    "^2",
    "`",
    "'",
    "$",
    "log(",
    ".",
    "==",
    "\\",
    "#",
    "%in%",
]


@st.composite
def mutated_formula(draw: st.DrawFn) -> str:
    """A valid formula with a token inserted, a character deleted or replaced, zero to two times."""
    f = draw(st.sampled_from(FIT_FORMULAS + GAMM_FORMULAS))
    for _ in range(draw(st.integers(0, 2))):
        i = draw(st.integers(0, len(f)))
        kind = draw(st.sampled_from(["insert", "delete", "replace"]))
        tok = draw(st.sampled_from(FORMULA_TOKENS))
        if kind == "insert":
            f = f[:i] + tok + f[i:]
        elif kind == "delete":
            f = f[:i] + f[i + 1 :]
        else:
            f = f[:i] + tok + f[i + 1 :]
    return f


@SETTINGS
@given(
    formula=st.one_of(mutated_formula(), st.lists(st.sampled_from(FORMULA_TOKENS), max_size=14).map("".join)),
    command=st.sampled_from(["fit", "gamm"]),
)
def test_formula_fuzz(tmp_path_factory: pytest.TempPathFactory, formula: str, command: str) -> None:
    assume(formula.strip())
    path = _write(tmp_path_factory.mktemp("fml"), GAMM_Z_DATA)
    check_run([command, path, formula, "--json"])


@SETTINGS
@given(formula=st.text(min_size=1, max_size=40), command=st.sampled_from(["fit", "gamm"]))
def test_formula_any_text(tmp_path_factory: pytest.TempPathFactory, formula: str, command: str) -> None:
    assume("\x00" not in formula)
    path = _write(tmp_path_factory.mktemp("txt"), GAMM_DATA)
    check_run([command, path, formula])


@SETTINGS
@given(raw=st.binary(max_size=300), command=st.sampled_from(["fit", "spline", "gamm"]))
def test_any_bytes_on_stdin(raw: bytes, command: str) -> None:
    formula = {"fit": ["y ~ x + (1 | g)"], "spline": [], "gamm": ["y ~ s(x, bs = 'cr', k = 3) + (1 | g)"]}[command]
    check_run([command, "-", *formula, "--json"], stdin=raw)
