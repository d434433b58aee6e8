"""The way in: CSV from any stream, read once; R's missing values; lines with the wrong number of fields;
wide headers; any column name; Ctrl-C while reading; a safe conversion hint.

Every bad input ends in one ``Error:`` line and the documented exit code (1 for the data, 2 for usage), with no
traceback; the inputs are left as they were and nothing else appears beside them. The numbers a successful fit
is checked against come from lme4, gamm4 and mgcv (tests/reference), never from mmcli.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import EXACT, OPT_DEV, OPT_PAR, ROOT, CliResult, data_path, load_reference, run_in_process
from hypothesis import given, settings
from hypothesis import strategies as st

SLEEP = data_path("sleepstudy.csv").read_text()  # "Reaction","Days","Subject": 180 rows, 18 subjects
ENGINE = data_path("engine.csv").read_text()  # size,wear: 19 rows
FIT_REF = load_reference("sleepstudy_intercept_ml")
GAMM_REF = load_reference("gamm_sleepstudy_cr5")
SPLINE_REF = load_reference("engine_spline")

FIT = ["y ~ Days + (1 | Subject)"]  # used with SLEEP renamed: see _sleep()
GAMM_OPTS = ["--y", "Reaction", "--smooth", "Days", "--bs", "cr", "--k", "5", "--group", "Subject"]
SPLINE_OPTS = ["--x", "size", "--y", "wear", "--lambda", "1e-4", "--knots", "7"]
MMCLI = [sys.executable, "-m", "mmcli"]


def _sleep(header: str = "y,Days,Subject") -> str:
    """sleepstudy with its header replaced (the response named y unless said otherwise)."""
    return header + "\n" + SLEEP.split("\n", 1)[1]


def _rows(text: str) -> list[str]:
    return text.rstrip("\n").split("\n")


def _with_cell(text: str, line: int, col: int, value: str) -> str:
    """The CSV with the field ``col`` of file line ``line`` (from 1) replaced."""
    rows = _rows(text)
    fields = rows[line - 1].split(",")
    fields[col] = value
    rows[line - 1] = ",".join(fields)
    return "\n".join(rows) + "\n"


# --------------------------------------------------------------------------------------------------
# Running, and what every run must leave behind
# --------------------------------------------------------------------------------------------------


def _snapshot(tmp: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp.iterdir() if p.is_file()}


def _write(tmp: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        data = content if isinstance(content, bytes) else content.encode("utf-8")
        (tmp / name).write_bytes(data)


def run(tmp: Path, args: list[Any], files: dict[str, str | bytes], stdin: bytes | None = None) -> CliResult:
    """Write the files, run mmcli in this process ({dir} in an argument is the directory), and check that the
    inputs are unchanged, that nothing was added beside them, and that no traceback was printed."""
    _write(tmp, files)
    before = _snapshot(tmp)
    result = run_in_process([str(a).format(dir=tmp) for a in args], stdin=stdin)
    assert _snapshot(tmp) == before
    assert "Traceback" not in result.err and "internal error" not in result.err, result.err
    return result


def assert_error(result: CliResult, code: int, pattern: str) -> None:
    """Exit ``code`` and one line on standard error: ``Error: ...`` matching ``pattern``."""
    assert result.code == code, f"exit {result.code}, expected {code}: {result.err!r}"
    lines = result.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), lines
    assert re.search(pattern, lines[0]), f"{lines[0]!r} !~ {pattern!r}"


def assert_fit_matches_lme4(result: CliResult) -> None:
    """lme4's fit of Reaction ~ Days + (1 | Subject) by ML, whatever the columns are called."""
    d = result.json()
    assert d["nobs"] == FIT_REF["nobs"] and d["dropped_rows"] == 0
    assert list(d["ngroups"].values()) == list(FIT_REF["ngroups"].values())
    assert abs(d["loglik"] - FIT_REF["logLik"]) <= OPT_DEV


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1")


def run_process(tmp: Path, argv: list[str], shell: bool = False) -> CliResult:
    """mmcli as a real process in ``tmp`` (through bash with ``shell``, for process substitution)."""
    before = _snapshot(tmp)
    cmd = ["bash", "-c", " ".join(argv)] if shell else argv
    proc = subprocess.run(cmd, capture_output=True, env=_env(), cwd=tmp, timeout=120)
    assert _snapshot(tmp) == before
    result = CliResult(proc.returncode, proc.stdout.decode(), proc.stderr.decode())
    assert "Traceback" not in result.err, result.err
    return result


# --------------------------------------------------------------------------------------------------
# Read once: standard input, a named pipe, a process substitution, a device
# --------------------------------------------------------------------------------------------------

COMMANDS = {
    "fit": (SLEEP, ["fit", "{data}", "Reaction ~ Days + (1 | Subject)", "--json"]),
    "ranef": (SLEEP, ["ranef", "{data}", "Reaction ~ Days + (1 | Subject)", "--json"]),
    "spline": (ENGINE, ["spline", "{data}", *SPLINE_OPTS, "--json"]),
    "gamm": (SLEEP, ["gamm", "{data}", *GAMM_OPTS, "--json"]),
}


def _check_command_result(command: str, result: CliResult) -> None:
    """Each command's output against R's numbers."""
    d = result.json()
    if command == "fit":
        assert abs(d["loglik"] - FIT_REF["logLik"]) <= OPT_DEV and d["nobs"] == 180
    elif command == "ranef":
        ref = FIT_REF["ranef"][0]
        got = {r["level"]: r["mode"] for r in d["ranef"]}
        assert sorted(got) == sorted(ref["levels"])
        scale = max(abs(m) for m in ref["mode"])
        assert all(abs(got[lv] - m) <= OPT_PAR * scale for lv, m in zip(ref["levels"], ref["mode"]))
    elif command == "spline":
        assert abs(d["edf"] - SPLINE_REF["edf"]) <= EXACT * SPLINE_REF["edf"] and d["n"] == 19
    else:
        assert abs(d["reml_criterion"] - GAMM_REF["REMLcrit"]) <= OPT_DEV and d["nobs"] == 180


@pytest.mark.parametrize("command", list(COMMANDS))
def test_standard_input(command: str, tmp_path: Path) -> None:
    text, args = COMMANDS[command]
    result = run(tmp_path, [a.replace("{data}", "-") for a in args], {}, stdin=text.encode())
    assert result.code == 0, result.err
    _check_command_result(command, result)


def _feed(fifo: Path, data: bytes) -> threading.Thread:
    """Write ``data`` into a named pipe from a thread, as another program would."""

    def write() -> None:
        try:
            with open(fifo, "wb") as fh:
                fh.write(data)
        except BrokenPipeError:  # the reader went away early
            pass

    t = threading.Thread(target=write, daemon=True)
    t.start()
    return t


def _release(fifo: Path, writer: threading.Thread) -> None:
    """A writer still waiting for a reader (mmcli stopped before opening the pipe) is let go."""
    if writer.is_alive():
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        writer.join(5)
        os.close(fd)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
@pytest.mark.parametrize("command", list(COMMANDS))
def test_named_pipe(command: str, tmp_path: Path) -> None:
    """A FIFO can be opened and read once only: the command reads it whole, then parses (it used to hang)."""
    text, args = COMMANDS[command]
    fifo = tmp_path / "data.fifo"
    os.mkfifo(fifo)
    writer = _feed(fifo, text.encode())
    try:
        result = run_process(tmp_path, [*MMCLI, *[a.replace("{data}", str(fifo)) for a in args]])
    finally:
        _release(fifo, writer)
    assert result.code == 0, result.err
    _check_command_result(command, result)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("command", list(COMMANDS))
def test_process_substitution(command: str, tmp_path: Path) -> None:
    """`mmcli fit <(cat data.csv) ...`: a /dev/fd path to a pipe (it used to read as an empty file)."""
    text, args = COMMANDS[command]
    src = tmp_path / "data.csv"
    src.write_text(text)
    argv = [f"<(cat {shlex.quote(str(src))})" if a == "{data}" else shlex.quote(a) for a in [*MMCLI, *args]]
    result = run_process(tmp_path, argv, shell=True)
    assert result.code == 0, result.err
    _check_command_result(command, result)


def _predictions(result: CliResult) -> list[float]:
    assert result.code == 0, result.err
    return [p["fit"] for p in result.json()["predictions"]]


def _spline_grid() -> tuple[str, list[float]]:
    """The reference's prediction grid on the size scale (it is given on x scaled to [0, 1]), and R's
    predictions there."""
    sizes = [float(r.split(",")[0]) for r in _rows(ENGINE)[1:]]
    lo, hi = min(sizes), max(sizes)
    xs = [lo + s * (hi - lo) for s in SPLINE_REF["predict_grid_scaled"]]
    return "size\n" + "".join(f"{x!r}\n" for x in xs), SPLINE_REF["predict"]


@pytest.mark.parametrize("how", ["stdin", "fifo", "substitution"])
def test_spline_predict_file_from_a_stream(how: str, tmp_path: Path) -> None:
    grid, want = _spline_grid()
    (tmp_path / "data.csv").write_text(ENGINE)
    args = ["spline", str(tmp_path / "data.csv"), *SPLINE_OPTS, "--json", "--predict"]
    if how == "stdin":
        result = run(tmp_path, [*args, "-"], {}, stdin=grid.encode())
    elif how == "fifo":
        fifo = tmp_path / "grid.fifo"
        os.mkfifo(fifo)
        writer = _feed(fifo, grid.encode())
        try:
            result = run_process(tmp_path, [*MMCLI, *args, str(fifo)])
        finally:
            _release(fifo, writer)
    else:
        (tmp_path / "grid.csv").write_text(grid)
        argv = [shlex.quote(a) for a in [*MMCLI, *args]] + [f"<(cat {shlex.quote(str(tmp_path / 'grid.csv'))})"]
        result = run_process(tmp_path, argv, shell=True)
    got = _predictions(result)
    assert len(got) == len(want)
    assert all(abs(g - w) <= EXACT * max(1.0, abs(w)) for g, w in zip(got, want))


def test_gamm_predict_file_from_standard_input(tmp_path: Path) -> None:
    text = "Days\n" + "".join(f"{row['Days']!r}\n" for row in GAMM_REF["grid"])
    result = run(
        tmp_path, ["gamm", "{dir}/data.csv", *GAMM_OPTS, "--json", "--predict", "-"], {"data.csv": SLEEP}, text.encode()
    )
    got = _predictions(result)
    assert len(got) == len(GAMM_REF["predict"])
    scale = max(abs(w) for w in GAMM_REF["predict"])
    assert all(abs(g - w) <= OPT_PAR * scale for g, w in zip(got, GAMM_REF["predict"]))


@pytest.mark.parametrize(
    "args",
    [
        ["spline", "-", "--predict", "-"],
        ["gamm", "-", *GAMM_OPTS, "--predict", "-"],
    ],
    ids=["spline", "gamm"],
)
def test_standard_input_only_once(args: list[str], tmp_path: Path) -> None:
    result = run(tmp_path, args, {}, stdin=SLEEP.encode())
    assert_error(result, 2, r"^Error: The data and the --predict file cannot both be - \(standard input\)")


@pytest.mark.skipif(not Path("/dev/null").exists(), reason="needs /dev/null")
def test_character_device(tmp_path: Path) -> None:
    assert_error(run(tmp_path, ["fit", "/dev/null", *FIT], {}), 1, r"^Error: File '/dev/null' is empty")


# --------------------------------------------------------------------------------------------------
# Ctrl-C while reading is never lost
# --------------------------------------------------------------------------------------------------


def _reading(pid: int, path: Path) -> bool:
    """Whether the process has ``path`` open and has read from it (the offset moved past 0)."""
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path):
                pos = Path(f"/proc/{pid}/fdinfo/{fd}").read_text().split("\n", 1)[0].split()
                if pos[0] == "pos:" and int(pos[1]) > 0:
                    return True
    except (OSError, ValueError, IndexError):
        pass
    return False


@pytest.mark.skipif(not Path("/proc/self/fdinfo").exists(), reason="needs Linux /proc")
def test_ctrl_c_while_reading_a_large_file(tmp_path: Path) -> None:
    """SIGINT while pandas parses 2,000,000 rows: exit 130, `Interrupted.`, and soon. pandas' C parser turned
    the interrupt into a parse error, and the retry with another parser ran on to the end of the fit, exit 0
    (seen with the signal 0.1 to 0.3 s after the parser's first read on this file)."""
    block = "".join(f"{(i * 7919) % 1000 / 10:.1f},{i % 97 / 10:.1f},g{i % 50}\n" for i in range(10_000))
    big = tmp_path / "big.csv"
    big.write_text("y,x,g\n" + block * 200)
    proc = subprocess.Popen(
        [*MMCLI, "fit", str(big), "y ~ x + (1 | g)"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
        cwd=tmp_path,
    )
    end = time.monotonic() + 60
    while not _reading(proc.pid, big) and proc.poll() is None and time.monotonic() < end:
        time.sleep(0.005)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (proc.returncode, err)
    assert b"Traceback" not in err and err.strip() == b"Interrupted."
    assert out == b""
    assert time.monotonic() - sent < 30  # stopped, not run on to the end of a fit
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.csv"]


def test_interrupt_turned_into_a_parse_error_is_not_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What pandas' C parser does with a KeyboardInterrupt raised in one of its reads, played in this process."""
    import pandas as pd

    calls = []

    def interrupted_read(*args: object, **kw: object) -> None:
        calls.append(args)
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            raise pd.errors.ParserError("Error tokenizing data. C error: Calling read(nbytes) failed.") from None

    monkeypatch.setattr(pd, "read_csv", interrupted_read)
    result = run(tmp_path, ["fit", "{dir}/data.csv", *FIT], {"data.csv": _sleep()})
    assert result.code == 130 and result.err.strip() == "Interrupted."
    assert len(calls) == 1


# --------------------------------------------------------------------------------------------------
# Missing values: NA and the empty cell, as R's read.csv; --na adds tokens
# --------------------------------------------------------------------------------------------------

TOKENS = ["N/A", "n/a", "NULL", "null", ".", "-", "?", "missing", "#N/A", "<NA>", "None", "nil", "not recorded"]


def _suggests(token: str) -> str:
    return re.escape(f"--na {shlex.quote(token)}")


@pytest.mark.parametrize("token", TOKENS)
def test_text_token_in_the_response(token: str, tmp_path: Path) -> None:
    data = _with_cell(_sleep(), 5, 0, token)
    result = run(tmp_path, ["fit", "{dir}/data.csv", *FIT], {"data.csv": data})
    assert_error(
        result,
        1,
        rf"^Error: Column 'y' must be numeric, but line 5 holds '{re.escape(token)}'\. If it marks a missing value, "
        rf"add {_suggests(token)} ",
    )


@pytest.mark.parametrize(
    ("args", "data", "column"),
    [
        (["ranef", "{dir}/data.csv", *FIT], _with_cell(_sleep(), 9, 1, "N/A"), "Days"),  # a fixed effect of numbers
        (["spline", "{dir}/data.csv"], _with_cell(ENGINE, 9, 0, "N/A"), "size"),  # picked as one of two columns
        (["spline", "{dir}/data.csv", *SPLINE_OPTS], _with_cell(ENGINE, 9, 1, "N/A"), "wear"),
        (["gamm", "{dir}/data.csv", *GAMM_OPTS], _with_cell(SLEEP, 9, 1, "N/A"), "Days"),  # a smooth variable
    ],
    ids=["ranef-fixed", "spline-auto", "spline-xy", "gamm-smooth"],
)
def test_text_token_in_a_numeric_column(args: list[str], data: str, column: str, tmp_path: Path) -> None:
    result = run(tmp_path, args, {"data.csv": data})
    assert_error(result, 1, rf"^Error: Column '{column}' must be numeric, but line 9 holds 'N/A'\. .*--na N/A ")


def test_several_tokens_are_all_suggested(tmp_path: Path) -> None:
    data = _with_cell(_with_cell(_with_cell(_sleep(), 5, 0, "?"), 8, 0, "N/A"), 30, 0, "?")
    result = run(tmp_path, ["fit", "{dir}/data.csv", *FIT], {"data.csv": data})
    assert_error(
        result, 1, r"line 5 holds '\?' \(3 such cells\)\. If these mark a missing value, add --na '\?' --na N/A "
    )


@pytest.mark.parametrize("token", ["N/A", "?", "not recorded", "a,b"])
def test_na_option_makes_a_token_missing(token: str, tmp_path: Path) -> None:
    cell = f'"{token}"' if "," in token else token
    data = _with_cell(_with_cell(_sleep(), 5, 0, cell), 100, 0, cell)
    result = run(tmp_path, ["fit", "{dir}/data.csv", *FIT, "--na", token, "--json"], {"data.csv": data})
    assert result.code == 0, result.err
    assert result.err == "Note: Dropped 2 of 180 rows with a missing value in a used column.\n"
    assert result.json()["nobs"] == 178


@pytest.mark.parametrize(
    ("args", "data", "rows"),
    [
        (["ranef", "{dir}/data.csv", *FIT], _with_cell(_sleep(), 3, 0, "?"), 180),
        (["spline", "{dir}/data.csv"], _with_cell(ENGINE, 3, 1, "?"), 19),
        (["gamm", "{dir}/data.csv", *GAMM_OPTS], _with_cell(SLEEP, 3, 0, "?"), 180),
    ],
    ids=["ranef", "spline", "gamm"],
)
def test_every_reading_command_takes_na(args: list[str], data: str, rows: int, tmp_path: Path) -> None:
    result = run(tmp_path, [*args, "--na", "?", "--json"], {"data.csv": data})
    assert result.code == 0, result.err
    assert result.err == f"Note: Dropped 1 of {rows} rows with a missing value in a used column.\n"


def test_na_applies_to_the_predict_file(tmp_path: Path) -> None:
    files = {"data.csv": ENGINE, "grid.csv": "size\n2\n?\n3\n"}
    args = ["spline", "{dir}/data.csv", *SPLINE_OPTS, "--predict", "{dir}/grid.csv", "--json"]
    assert_error(
        run(tmp_path, args, files), 1, r"^Error: In the --predict file: Column 'size' .* line 3 holds '\?'.*--na '\?'"
    )
    result = run(tmp_path, [*args, "--na", "?"], {})
    assert [p["x"] for p in result.json()["predictions"]] == [2.0, 3.0]


@pytest.mark.parametrize("nan", ["NaN", "nan", "NAN"])
def test_nan_in_a_numeric_column_is_missing(nan: str, tmp_path: Path) -> None:
    """R's read.csv reads NaN as a number; lme4's na.omit then drops the row."""
    data = _with_cell(_with_cell(_sleep(), 2, 0, nan), 50, 1, nan)
    result = run(tmp_path, ["fit", "{dir}/data.csv", *FIT, "--json"], {"data.csv": data})
    assert result.code == 0, result.err
    assert result.err == "Note: Dropped 2 of 180 rows with a missing value in a used column.\n"


def test_nan_in_a_grouping_column_of_numbers_is_missing(tmp_path: Path) -> None:
    """Subject holds numbers: R reads the column as numeric, and factor() leaves NaN out."""
    data = _sleep()
    for line in range(2, 12):
        data = _with_cell(data, line, 2, "NaN")
    result = run(tmp_path, ["fit", "{dir}/data.csv", *FIT], {"data.csv": data})
    assert result.code == 0, result.err
    assert result.err == "Note: Dropped 10 of 180 rows with a missing value in a used column.\n"


def test_text_levels_that_look_missing_are_levels(tmp_path: Path) -> None:
    """Relabelling subjects None, NULL, nan, NaN, N/A, <NA> and n/a changes nothing in lme4's fit: no row and no
    level is dropped (pandas' default tokens dropped them)."""
    names = ["None", "NULL", "nan", "NaN", "N/A", "<NA>", "n/a"]
    relabel = dict(zip(["308", "309", "310", "330", "331", "332", "333"], names))
    rows = _rows(_sleep())
    rows = [rows[0]] + [
        ",".join(r.split(",")[:2] + [relabel.get(r.split(",")[2].strip('"'), r.split(",")[2])]) for r in rows[1:]
    ]
    result = run(tmp_path, ["fit", "{dir}/data.csv", *FIT, "--json"], {"data.csv": "\n".join(rows) + "\n"})
    assert result.code == 0 and result.err == "", result.err
    assert_fit_matches_lme4(result)
    levels = {r["level"] for r in run(tmp_path, ["ranef", "{dir}/data.csv", *FIT, "--json"], {}).json()["ranef"]}
    assert set(names) <= levels and len(levels) == 18


def test_text_fixed_effect_with_a_none_level(tmp_path: Path) -> None:
    rows = _rows(_sleep())
    data = "\n".join([rows[0] + ",t"] + [r + ("," + ("None" if i % 3 else "nan")) for i, r in enumerate(rows[1:])])
    result = run(
        tmp_path, ["fit", "{dir}/data.csv", "y ~ Days + t + (1 | Subject)", "--json"], {"data.csv": data + "\n"}
    )
    assert result.code == 0 and result.err == "", result.err
    d = result.json()
    assert d["nobs"] == 180 and len(d["fixed_effects"]) == 3


def test_empty_cell_in_a_text_column_is_missing(tmp_path: Path) -> None:
    """A documented difference from R (which reads "" as a level of a text column): the row is dropped."""
    data = _with_cell(_sleep(), 4, 2, "")
    result = run(tmp_path, ["fit", "{dir}/data.csv", *FIT], {"data.csv": data})
    assert result.code == 0 and result.err == "Note: Dropped 1 of 180 rows with a missing value in a used column.\n"


# --------------------------------------------------------------------------------------------------
# Lines with more or fewer fields than the header
# --------------------------------------------------------------------------------------------------

LINE_CASES = [
    ("fit-extra", ["fit", "{dir}/data.csv", *FIT], _with_cell(_sleep(), 7, 2, '"308",1'), 7, 4, 3),
    ("fit-extra-first-row", ["fit", "{dir}/data.csv", *FIT], _with_cell(_sleep(), 2, 2, '"308",1'), 2, 4, 3),
    ("fit-trailing-commas", ["fit", "{dir}/data.csv", *FIT], "y,Days,Subject\n" + "1,2,a,\n" * 5, 2, 4, 3),
    (
        "ranef-short",
        ["ranef", "{dir}/data.csv", *FIT],
        _with_cell(_sleep(), 100, 2, "").replace(",\n", "\n"),
        100,
        2,
        3,
    ),
    ("spline-extra", ["spline", "{dir}/data.csv"], _with_cell(ENGINE, 12, 1, "2.5,7"), 12, 3, 2),
    ("spline-xy-short", ["spline", "{dir}/data.csv", *SPLINE_OPTS], ENGINE + "3.1\n", 21, 1, 2),
    ("gamm-extra", ["gamm", "{dir}/data.csv", *GAMM_OPTS], _with_cell(SLEEP, 60, 1, "3,4,5"), 60, 5, 3),
    (
        "fit-crlf-extra",
        ["fit", "{dir}/data.csv", *FIT],
        _with_cell(_sleep(), 9, 1, "1,1").replace("\n", "\r\n"),
        9,
        4,
        3,
    ),
    (
        "fit-after-blank-and-quoted-lines",
        ["fit", "{dir}/data.csv", "y ~ x + (1 | g)"],
        'y,x,g\n1,2,"a\nb"\n\n  \n2,3,b\n3,4,b,c\n',
        7,
        4,
        3,
    ),
    ("fit-comma-in-unquoted-text", ["fit", "{dir}/data.csv", "y ~ x + (1 | g)"], "y,x,g\n1,2,a\n2,3,b, c\n", 3, 4, 3),
]


@pytest.mark.parametrize(
    ("args", "data", "line", "n", "k"), [c[1:] for c in LINE_CASES], ids=[c[0] for c in LINE_CASES]
)
def test_wrong_number_of_fields(args: list[str], data: str, line: int, n: int, k: int, tmp_path: Path) -> None:
    result = run(tmp_path, args, {"data.csv": data})
    assert_error(result, 1, rf"^Error: File '.*data\.csv' line {line} has {n} fields?, but the header has {k}\.$")


@pytest.mark.parametrize("command", ["spline", "gamm"])
def test_wrong_number_of_fields_in_the_predict_file(command: str, tmp_path: Path) -> None:
    opts = SPLINE_OPTS if command == "spline" else GAMM_OPTS
    data, grid = (ENGINE, "size\n2\n3,4\n") if command == "spline" else (SLEEP, "Days\n2\n3,4\n")
    args = [command, "{dir}/data.csv", *opts, "--predict", "{dir}/grid.csv"]
    result = run(tmp_path, args, {"data.csv": data, "grid.csv": grid})
    assert_error(
        result, 1, r"^Error: In the --predict file: File '.*grid\.csv' line 3 has 2 fields, but the header has 1\.$"
    )


def test_wrong_number_of_fields_from_standard_input(tmp_path: Path) -> None:
    result = run(tmp_path, ["fit", "-", *FIT], {}, stdin=_with_cell(_sleep(), 4, 0, "1,2").encode())
    assert_error(result, 1, r"^Error: File '<stdin>' line 4 has 4 fields, but the header has 3\.$")


def test_quoted_commas_line_breaks_and_blank_lines_are_fine(tmp_path: Path) -> None:
    """Subjects named "s,308" or "s<line break>309" (quoted), blank lines between rows: lme4's fit."""
    rows = _rows(_sleep())
    body = []
    for i, r in enumerate(rows[1:]):
        y, days, subj = r.split(",")
        number = subj.strip('"')
        name = f'"s\n{number}"' if int(number) % 2 else f'"s,{number}"'
        body.append(f"{y},{days},{name}" + ("\n" if i % 7 == 0 else ""))
    data = rows[0] + "\n" + "\n".join(body) + "\n"
    assert_fit_matches_lme4(run(tmp_path, ["fit", "{dir}/data.csv", *FIT, "--json"], {"data.csv": data}))


def test_line_numbers_count_the_lines_of_the_file(tmp_path: Path) -> None:
    """After a quoted line break and blank lines, a text cell is reported on the line an editor shows."""
    data = 'y,x,g\n1,2,"a\nb"\n\n2,3,b\n \n3,4,b\n3,oops,b\n4,5,a\n'
    result = run(tmp_path, ["fit", "{dir}/data.csv", "y ~ x + (1 | g)"], {"data.csv": data})
    assert_error(result, 1, r"^Error: Column 'x' must be numeric, but line 8 holds 'oops'")


FIELDS = ["1", "2.5", "ab", "", " x", "NA", '"a,b"', '"a\nb"', '"q""q"', '""', '"x\r\ny"']


def _count_with_csv_module(text: str, k: int) -> tuple[int, int] | list[int]:
    """Python's CSV reader's view: the (line, fields) of the first record whose count is not k, or the line of
    every data row. Blank lines are skipped, as pandas skips them."""
    reader = csv.reader(io.StringIO(text, newline=""), skipinitialspace=True)
    lines, start = [], 1
    for i, rec in enumerate(reader):
        if rec and not (len(rec) == 1 and not rec[0].strip()):
            if len(rec) != k and i:
                return start, len(rec)
            lines.append(start)
        start = reader.line_num + 1
    return lines[1:]


@settings(max_examples=300)
@given(
    k=st.integers(2, 4),
    rows=st.lists(
        st.one_of(st.sampled_from(["", "  "]), st.lists(st.sampled_from(FIELDS), min_size=1, max_size=5)), max_size=8
    ),
    crlf=st.booleans(),
    last_eol=st.booleans(),
    chunk=st.integers(1, 12),
)
def test_field_counts_agree_with_a_csv_reader(
    k: int, rows: list[str | list[str]], crlf: bool, last_eol: bool, chunk: int
) -> None:
    """The count of fields made with numpy, a chunk at a time, is the CSV reader's, whatever the chunks."""
    from mmcli import csvread
    from mmcli.csvlines import read_layout

    eol = "\r\n" if crlf else "\n"
    lines = [",".join(f"h{i}" for i in range(k))] + [r if isinstance(r, str) else ",".join(r) for r in rows]
    text = eol.join(lines) + (eol if last_eol else "")
    want = _count_with_csv_module(text, k)
    saved = csvread._CHUNK
    try:
        for size in (saved, chunk):
            csvread._CHUNK = size
            layout = read_layout(csvread.Source("<stdin>", data=text.encode()))
            if isinstance(want, tuple):
                fields = f"{want[1]} field{'s' * (want[1] != 1)}"
                assert layout.problem == f"File '<stdin>' line {want[0]} has {fields}, but the header has {k}."
            else:
                assert layout.problem is None
                got = list(range(2, len(want) + 2)) if layout.lines is None else layout.lines.tolist()
                assert got == want
    finally:
        csvread._CHUNK = saved


def test_other_separator_is_told_before_field_counts(tmp_path: Path) -> None:
    """Semicolons with decimal commas: the separator hint, not a count of commas."""
    data = "y;x;g\n1,5;2,5;a\n2,5;3;b\n"
    result = run(tmp_path, ["fit", "{dir}/data.csv", "y ~ x + (1 | g)"], {"data.csv": data})
    assert_error(result, 1, r"^Error: Column 'y' not found: the file has the single column 'y;x;g', .*separated by ';'")


# --------------------------------------------------------------------------------------------------
# Wide headers: linear in the number of columns
# --------------------------------------------------------------------------------------------------

WIDE = 200_000


def _wide(extra_names: list[str] | None = None) -> str:
    """sleepstudy behind 199,997 empty columns (a 200,000-column header, the used columns last)."""
    names = [f"v{i}" for i in range(WIDE - 3)] + (extra_names or ["y", "Days", "Subject"])
    pad = "," * (WIDE - 3)
    return ",".join(names) + "\n" + "".join(pad + r + "\n" for r in _rows(SLEEP)[1:])


def test_wide_header_with_the_used_columns_last(tmp_path: Path) -> None:
    result = run(tmp_path, ["fit", "{dir}/data.csv", *FIT, "--json"], {"data.csv": _wide()})
    assert_fit_matches_lme4(result)


def test_wide_header_unknown_column(tmp_path: Path) -> None:
    result = run(tmp_path, ["fit", "{dir}/data.csv", "yy ~ Days + (1 | Subject)"], {"data.csv": _wide()})
    assert_error(
        result, 1, rf"^Error: Column 'yy' not found\. Columns are: v0, v1, .*, v49, \.\.\. \({WIDE - 50} more\)$"
    )


def test_wide_header_duplicated_names(tmp_path: Path) -> None:
    result = run(tmp_path, ["fit", "{dir}/data.csv", *FIT], {"data.csv": _wide(["y", "v7", "v7"])})
    assert_error(result, 1, r"^Error: File '.*data\.csv' has duplicated column names: v7\.$")


# --------------------------------------------------------------------------------------------------
# Any column name a CSV can hold, from the column options
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "options"),
    [
        ('"my y",Days,Subject', ["--y", "my y", "--fixed", "Days", "--group", "Subject"]),
        ("y,x.1,Subject", ["--y", "y", "--fixed", "x.1", "--group", "Subject"]),
        ("Reaction.time,Days,Subject", ["--y", "Reaction.time", "--fixed", "Days", "--group", "Subject"]),
        ("y,Tage (d),Subject", ["--y", "y", "--fixed", "Tage (d)", "--group", "Subject"]),
        ("Größe,Tage,Subject", ["--y", "Größe", "--fixed", "Tage", "--group", "Subject"]),
        pytest.param('y,Days,"Subj ID"', ["--y", "y", "--fixed", "Days", "--group", "Subj ID"]),
        pytest.param("y,Days,Größe", ["--y", "y", "--fixed", "Days", "--group", "Größe"]),
        pytest.param("y,Days,subj.id", ["--y", "y", "--fixed", "Days", "--group", "subj.id"]),
        pytest.param("y,Days,Subject-ID", ["--y", "y", "--fixed", "Days", "--group", "Subject-ID"]),
    ],
    ids=[
        "y-space",
        "fixed-dot",
        "y-dots",
        "fixed-space-parens",
        "y-non-ascii",
        "group-space",
        "group-non-ascii",
        "group-dot",
        "group-dash",
    ],
)
def test_column_names_from_the_options(header: str, options: list[str], tmp_path: Path) -> None:
    result = run(tmp_path, ["fit", "{dir}/data.csv", *options, "--json"], {"data.csv": _sleep(header)})
    assert_fit_matches_lme4(result)


@pytest.mark.parametrize(
    ("header", "options"),
    [
        pytest.param(
            "Reaction,day s,Subject",
            ["--y", "Reaction", "--smooth", "day s", "--bs", "cr", "--k", "5", "--group", "Subject"],
        ),
        pytest.param(
            "Reaction,Days,Größe",
            ["--y", "Reaction", "--smooth", "Days", "--bs", "cr", "--k", "5", "--group", "Größe"],
        ),
    ],
    ids=["smooth-space", "group-non-ascii"],
)
def test_column_names_from_the_gamm_options(header: str, options: list[str], tmp_path: Path) -> None:
    result = run(tmp_path, ["gamm", "{dir}/data.csv", *options, "--json"], {"data.csv": _sleep(header)})
    assert result.code == 0, result.err
    assert abs(result.json()["reml_criterion"] - GAMM_REF["REMLcrit"]) <= OPT_DEV


def test_spline_column_names(tmp_path: Path) -> None:
    """spline takes the columns themselves (no formula)."""
    data = '"Größe (cm)","wear.1"\n' + ENGINE.split("\n", 1)[1]
    args = ["spline", "{dir}/data.csv", "--x", "Größe (cm)", "--y", "wear.1", "--lambda", "1e-4", "--knots", "7"]
    result = run(tmp_path, [*args, "--json"], {"data.csv": data})
    assert result.code == 0, result.err
    assert abs(result.json()["edf"] - SPLINE_REF["edf"]) <= EXACT * SPLINE_REF["edf"]


# --------------------------------------------------------------------------------------------------
# The conversion hint of a file that is not UTF-8 is safe to paste
# --------------------------------------------------------------------------------------------------

CRAFTED = "it's; touch PWNED; '.csv"


def test_iconv_hint_is_shell_quoted(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    data = b"y,Days,Subject\n" + "café,1,a\n".encode("latin-1")
    result = run(inputs, ["fit", f"{inputs}/{CRAFTED}", *FIT], {CRAFTED: data})
    assert_error(
        result, 1, r"is not UTF-8 text \(invalid continuation byte at byte 18\); save it as UTF-8, e\.g\. iconv"
    )
    hint = re.search(r"e\.g\. (iconv .*)$", result.err.strip())
    assert hint is not None
    words = shlex.split(hint.group(1))
    assert words == ["iconv", "-f", "latin1", "-t", "utf-8", str(inputs / CRAFTED), ">", "new.csv"]
    if shutil.which("iconv") and shutil.which("bash"):  # and pasted into a shell, it converts and runs nothing else
        out = tmp_path / "out"
        out.mkdir()
        subprocess.run(["bash", "-c", hint.group(1)], cwd=out, check=True, timeout=60)
        assert sorted(p.name for p in out.iterdir()) == ["new.csv"]
        assert (out / "new.csv").read_text(encoding="utf-8").endswith("café,1,a\n")
    assert sorted(p.name for p in inputs.iterdir()) == [CRAFTED]


def test_iconv_hint_for_standard_input(tmp_path: Path) -> None:
    data = b"y,Days,Subject\n" + "café,1,a\n".encode("latin-1")
    result = run(tmp_path, ["fit", "-", *FIT], {}, stdin=data)
    assert_error(result, 1, r"^Error: File '<stdin>' is not UTF-8 text .*pipe it through iconv -f latin1 -t utf-8")
