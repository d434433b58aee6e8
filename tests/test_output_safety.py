"""What mmcli writes, and what it leaves behind, when the world around it is hostile or odd.

- Signals: Ctrl-C (SIGINT) ends with 130 and SIGTERM with 143, with nothing on standard output, no temporary
  file and no traceback, wherever they come (while Python imports, while the data are read, during the fit,
  while a figure is written). Checked on real processes.
- Standard streams: a closed standard output or error, an ASCII locale with non-ASCII levels and column names,
  a reader that goes away (`| head -1`) in every format.
- Numbers that are not finite are null in JSON and NA in CSV and tables, with one note saying where.
- CSV cells that a spreadsheet would run as formulas are neutralized (OWASP's advice on CSV injection).

Every run checks the exit status, the single `Error:` line where there is one, that no traceback or internal
error shows, and that the directory holds nothing but what it should. tests/test_robustness.py has the closed
pipe for CSV and Ctrl-C while reading standard input; they are not repeated here.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, data_path, run_in_process

MMCLI = [sys.executable, "-m", "mmcli"]
F = "y ~ x + (1 | g)"
HAS_PROC = Path("/proc/self/status").exists()


def _env(**changes: str | None) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1")
    for k, v in changes.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def _default_signals() -> None:
    """In the child before exec: SIGINT and SIGTERM as a terminal gives them, even when this test runs in the
    background (which ignores them, and mmcli rightly keeps a signal ignored that its parent ignores)."""
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_DFL)


def _clean(err: str) -> None:
    """No traceback and no internal error, whatever the outcome."""
    assert "Traceback" not in err and "internal error" not in err and "Exception ignored" not in err, err


def _files(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


def _lmm_csv(path: Path, n: int, levels: int, seed: int = 1) -> Path:
    rng = np.random.default_rng(seed)
    g = rng.integers(0, levels, n)
    x = rng.normal(size=n)
    y = 1.0 + 2.0 * x + rng.normal(size=levels)[g] + rng.normal(size=n)
    path.write_text("y,x,g\n" + "".join(f"{a:.5f},{b:.5f},L{c}\n" for a, b, c in zip(y, x, g)))
    return path


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """400 000 rows in 2000 groups: about a second of reading and fitting, and a caterpillar plot that takes
    a while to write."""
    return _lmm_csv(tmp_path_factory.mktemp("big") / "big.csv", 400_000, 2000)


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2000 levels in 6000 rows: a ranef result larger than a pipe holds, in every format."""
    return _lmm_csv(tmp_path_factory.mktemp("wide") / "wide.csv", 6000, 2000, seed=2)


# --------------------------------------------------------------------------------------------------
# Signals, on real processes
# --------------------------------------------------------------------------------------------------


def _caught(pid: int, sig: int) -> bool:
    """Whether the process has a handler of its own for sig (the SigCgt mask of /proc/PID/status)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    except OSError:
        pass
    return False


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"


def _wait_for(condition: Callable[[], bool], proc: subprocess.Popen[bytes], timeout: float = 120.0) -> bool:
    """Poll until condition holds; False if the process ended first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.002)
    return False


def _signal_before_output(proc: subprocess.Popen[bytes], sig: int, still: Callable[[], bool]) -> bool:
    """Send sig if the process has not begun to write its result and `still` holds; whether it was sent.

    The process is stopped first (SIGSTOP), so that the checks and the signal see it in one state; the signal
    is delivered when it continues."""
    assert proc.stdout is not None
    proc.send_signal(signal.SIGSTOP)
    try:
        if not _wait_for(lambda: _state(proc.pid) in ("T", "t", "Z", "gone"), proc) or _state(proc.pid) != "T":
            return False
        if select.select([proc.stdout], [], [], 0)[0] or not still():  # output has begun, or the moment passed
            return False
        proc.send_signal(sig)
        return True
    finally:
        proc.send_signal(signal.SIGCONT)


def _whole_png(path: Path) -> bool:
    data = path.read_bytes()
    return data.startswith(b"\x89PNG\r\n\x1a\n") and data.endswith(b"IEND\xaeB`\x82")


def _interrupt(args: list[str], cwd: Path, sig: int, trigger: str) -> tuple[int, bytes, str] | None:
    """Run mmcli, signal it at the trigger, and return (exit status, stdout, stderr); None when the process
    had already begun to write its result, so that there was nothing left to interrupt.

    Triggers: "started" as soon as mmcli's handlers are installed (Python is still importing), "+0.3s" and
    "+0.5s" that long after (reading the data, fitting), "figure" when the figure's temporary file appears."""
    proc = subprocess.Popen(
        [*MMCLI, *args],
        cwd=cwd,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=_default_signals,
    )
    sent = False

    def writing() -> bool:  # the figure's temporary file is there
        return any(n.endswith(".tmp") for n in os.listdir(cwd))

    try:
        assert _wait_for(lambda: _caught(proc.pid, signal.SIGTERM), proc), "mmcli never installed its handlers"
        if trigger.startswith("+"):
            time.sleep(float(trigger[1:-1]))
        elif trigger == "figure" and not _wait_for(writing, proc):
            pytest.skip("the figure was written before a poll of the directory saw its temporary file")
        sent = _signal_before_output(proc, sig, writing if trigger == "figure" else lambda: True)
    finally:
        out, err = proc.communicate(timeout=120)
    return (proc.returncode, out, err.decode()) if sent else None


# `fit` while Python imports, while the data are read and during the fit; `ranef --plot` also while its figure
# is written (the finding: SIGTERM left a 0-byte .out.png.XXXX.tmp)
SIGNAL_CASES = [
    (command, sig, trigger)
    for command, triggers in (("fit", ("started", "+0.3s", "+0.5s")), ("ranef", ("started", "+0.3s", "figure")))
    for sig in (signal.SIGINT, signal.SIGTERM)
    for trigger in triggers
] + [("fit", signal.SIGHUP, "+0.3s"), ("ranef", signal.SIGHUP, "figure")]  # the terminal closed
ENDING = {signal.SIGINT: (130, "Interrupted."), signal.SIGTERM: (143, "Terminated."), signal.SIGHUP: (129, "Hangup.")}


@pytest.mark.skipif(not HAS_PROC, reason="needs Linux /proc")
@pytest.mark.parametrize("command,sig,trigger", SIGNAL_CASES, ids=[f"{c}-{s.name}-{t}" for c, s, t in SIGNAL_CASES])
def test_a_signal_ends_cleanly(command: str, sig: signal.Signals, trigger: str, big: Path, tmp_path: Path) -> None:
    plot = ["--plot", "out.png"] if command == "ranef" else []
    result = _interrupt([command, str(big), F, *plot, "--format", "csv"], tmp_path, sig, trigger)
    if result is None:
        pytest.skip("mmcli had begun to write its result: nothing left to interrupt")
    code, out, err = result

    _clean(err)
    assert code == ENDING[sig][0], err
    assert out == b""
    lines = err.splitlines()
    assert lines[-1] == ENDING[sig][1], lines
    assert all(line.startswith("Note: ") or not line for line in lines[:-1]), lines
    # the figure is whole or absent, and no temporary file is left
    assert set(_files(tmp_path)) <= {"out.png"}, _files(tmp_path)
    if (tmp_path / "out.png").exists():
        assert _whole_png(tmp_path / "out.png")


def test_terminated_while_a_figure_is_written_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli_data: Path
) -> None:
    """In this process: SIGTERM's exception raised from inside savefig, half the figure written."""
    from matplotlib.figure import Figure

    from mmcli.signals import Terminated

    def interrupted(self: Figure, fh: io.BufferedWriter, **kw: object) -> None:
        fh.write(b"\x89PNG half a figure")
        raise Terminated

    monkeypatch.setattr(Figure, "savefig", interrupted)
    code, out, err = run_in_process(["ranef", cli_data, F, "--plot", tmp_path / "fig.png"])
    assert (code, out, err) == (143, "", "Terminated.\n")
    assert _files(tmp_path) == []


def test_ctrl_c_while_a_figure_is_written_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli_data: Path
) -> None:
    from matplotlib.figure import Figure

    def interrupted(self: Figure, fh: io.BufferedWriter, **kw: object) -> None:
        fh.write(b"\x89PNG half a figure")
        raise KeyboardInterrupt

    monkeypatch.setattr(Figure, "savefig", interrupted)
    code, out, err = run_in_process(["ranef", cli_data, F, "--plot", tmp_path / "fig.png", "--json"])
    assert code == 130 and out == "" and err.splitlines()[-1] == "Interrupted."
    _clean(err)
    assert _files(tmp_path) == []


class _Frame:
    """A stand-in for the frame a signal handler gets: the code of Python's import machinery."""

    class f_code:  # noqa: N801
        co_filename = "<frozen importlib._bootstrap>"


def test_a_signal_inside_the_import_machinery_is_raised_once_out_of_it() -> None:
    """An exception raised inside importlib breaks its module locks: the handler leaves it to the timer."""
    from mmcli.signals import Interrupted, _unwind, unwinding

    with pytest.raises(Interrupted), unwinding():
        _unwind(signal.SIGINT, _Frame())  # returns: nothing raised in there
        time.sleep(30)  # the timer raises it here, out of the import machinery


def test_a_lost_signal_is_raised_again() -> None:
    """Code that drops the exception (a weakref callback, C code that clears errors) does not keep mmcli going."""
    from mmcli.signals import Terminated, unwinding

    with pytest.raises(Terminated), unwinding():
        with contextlib.suppress(Terminated):
            signal.raise_signal(signal.SIGTERM)
        time.sleep(30)  # raised again here


def test_a_signal_waits_for_a_held_cleanup() -> None:
    """The removal of a figure's temporary file is held: a second Ctrl-C raises only after it."""
    from mmcli.signals import Terminated, held, unwinding

    done = []
    with pytest.raises(Terminated), unwinding():
        with held():
            signal.raise_signal(signal.SIGTERM)
            done.append("the cleanup")
        time.sleep(30)  # raised here
    assert done == ["the cleanup"]


def test_handlers_are_put_back(cli_data: Path) -> None:
    """mmcli.cli.main inside another program leaves that program's signal handlers as they were."""
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)}
    hook = sys.unraisablehook
    assert run_in_process(["fit", cli_data, F]).code == 0
    assert {s: signal.getsignal(s) for s in before} == before
    assert sys.unraisablehook is hook and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


@pytest.fixture
def cli_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small LMM data set, outside the test's own tmp_path (which must stay empty)."""
    return _lmm_csv(tmp_path_factory.mktemp("small") / "small.csv", 120, 8)


# --------------------------------------------------------------------------------------------------
# Standard streams
# --------------------------------------------------------------------------------------------------


def _shell(script: str, cwd: Path, **env: str | None) -> subprocess.CompletedProcess[bytes]:
    """bash -c script with MMCLI standing for the command line of mmcli, under set -o pipefail."""
    mmcli = " ".join(MMCLI)
    return subprocess.run(
        ["bash", "-c", f"set -o pipefail; {script.replace('MMCLI', mmcli)}"],
        cwd=cwd,
        env=_env(**env),
        capture_output=True,
        timeout=120,
    )


def test_closed_stdout_is_one_error_line(tmp_path: Path, cli_data: Path) -> None:
    """`mmcli fit ... >&-`: the result has nowhere to go, which is said before any work is done."""
    proc = _shell(f"MMCLI fit {cli_data} '{F}' >&-", tmp_path)
    err = proc.stderr.decode()
    _clean(err)
    assert proc.returncode == 1
    assert err == (
        "Error: standard output is closed; mmcli writes its result there. Redirect it to a file, or to "
        "/dev/null to keep only a --plot figure.\n"
    )
    assert _files(tmp_path) == []


def test_closed_stderr_still_gives_the_result_and_the_status(tmp_path: Path, cli_data: Path) -> None:
    ok = _shell(f"MMCLI fit {cli_data} '{F}' --json 2>&-", tmp_path)
    assert ok.returncode == 0 and json.loads(ok.stdout)["nobs"] == 120
    bad = _shell(f"MMCLI fit {cli_data} 'y ~ nope + (1 | g)' 2>&-", tmp_path)
    assert bad.returncode == 1 and bad.stdout == b"" and bad.stderr == b""
    both = _shell(f"MMCLI fit {cli_data} '{F}' >&- 2>&-", tmp_path)
    assert both.returncode == 1 and both.stderr == b""
    assert _files(tmp_path) == []


@pytest.mark.parametrize("fmt", ["table", "json"])  # csv: test_robustness.test_closed_pipe_ends_quietly
def test_reader_gone_ends_quietly_in_every_format(fmt: str, tmp_path: Path, wide: Path) -> None:
    """`| head -1` on a result larger than a pipe holds: exit 0 and nothing on standard error, as for CSV."""
    proc = _shell(f"MMCLI ranef {wide} '{F}' --format {fmt} | head -1", tmp_path)
    err = proc.stderr.decode()
    _clean(err)
    assert proc.returncode == 0, err
    assert err == ""
    assert proc.stdout.count(b"\n") == 1
    assert _files(tmp_path) == []


NON_ASCII = "Größe,wear,g\n" + "".join(
    f"{x / 4:.2f},{math.sin(x / 4) + 0.1 * (x % 3):.4f},{['café', 'naïve', 'Ωmega', '東京'][x % 4]}\n"
    for x in range(40)
)


@pytest.mark.parametrize(
    "args",
    [
        ["ranef", "{data}", "wear ~ 1 + (1 | g)", "--format", "table"],
        ["ranef", "{data}", "wear ~ 1 + (1 | g)", "--format", "csv"],
        ["ranef", "{data}", "wear ~ 1 + (1 | g)", "--format", "json"],
        ["spline", "{data}", "--format", "table"],  # the column names, from the file's header
        ["spline", "{data}", "--format", "csv"],
    ],
    ids=["ranef-table", "ranef-csv", "ranef-json", "spline-table", "spline-csv"],
)
def test_ascii_locale_writes_the_same_utf8(args: list[str], tmp_path: Path) -> None:
    """LC_ALL=C with Python's UTF-8 mode off and PYTHONIOENCODING unset, so that Python's streams are ASCII:
    the output is byte for byte the output under a UTF-8 locale."""
    data = tmp_path / "data.csv"
    data.write_text(NON_ASCII, encoding="utf-8")  # spline takes the two numeric columns, named in the header
    argv = [*MMCLI, *[a.format(data=data) for a in args]]
    ascii_env = _env(LC_ALL="C", LANG="C", PYTHONUTF8="0", PYTHONIOENCODING=None)
    utf8_env = _env(LC_ALL="C.UTF-8", PYTHONIOENCODING=None)
    ascii_run = subprocess.run(argv, env=ascii_env, capture_output=True, cwd=tmp_path, timeout=120)
    utf8_run = subprocess.run(argv, env=utf8_env, capture_output=True, cwd=tmp_path, timeout=120)
    err = ascii_run.stderr.decode("utf-8")
    _clean(err)
    assert ascii_run.returncode == 0, err
    text = ascii_run.stdout.decode("utf-8")
    if "json" in args:  # all but the optimizer's wall time
        same = [json.loads(run.stdout) for run in (ascii_run, utf8_run)]
        for d in same:
            d["fit"]["optimizer"].pop("seconds")
        assert same[0] == same[1]
    else:
        assert ascii_run.stdout == utf8_run.stdout
    assert ("Größe" if args[0] == "spline" else "東京") in text or "\\u" in text  # JSON escapes non-ASCII
    if "json" in args:
        assert {r["level"] for r in json.loads(text)["ranef"]} == {"café", "naïve", "Ωmega", "東京"}
    assert _files(tmp_path) == ["data.csv"]


def test_ascii_locale_error_names_the_columns_in_utf8(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_text(NON_ASCII, encoding="utf-8")
    proc = subprocess.run(
        [*MMCLI, "spline", str(data), "--x", "size", "--y", "wear"],
        env=_env(LC_ALL="C", LANG="C", PYTHONUTF8="0", PYTHONIOENCODING=None),
        capture_output=True,
        timeout=120,
    )
    err = proc.stderr.decode("utf-8")
    _clean(err)
    assert proc.returncode == 1 and proc.stdout == b""
    assert err == "Error: Column 'size' not found. Columns are: Größe, wear, g\n"


# --------------------------------------------------------------------------------------------------
# Numbers that are not finite
# --------------------------------------------------------------------------------------------------


def test_without_non_finite_counts_each_field() -> None:
    from mmcli.emit import without_non_finite

    d = {
        "sigma": float("nan"),
        "n": 3,
        "ok": True,
        "predictions": [{"x": 1e150, "fit": float("inf"), "se": np.float64("nan")}, {"x": 2.0, "fit": -math.inf}],
        "theta": [np.float32("inf"), 1.5],
        "name": "nan",
    }
    clean, where = without_non_finite(d)
    assert where == {"sigma": 1, "predictions.fit": 2, "predictions.se": 1, "theta": 1}
    assert clean["predictions"] == [{"x": 1e150, "fit": None, "se": None}, {"x": 2.0, "fit": None}]
    assert clean["theta"] == [None, 1.5] and clean["sigma"] is None and clean["name"] == "nan"
    assert clean["n"] == 3 and clean["ok"] is True
    assert json.loads(json.dumps(clean, allow_nan=False)) == clean
    assert without_non_finite({"a": [1.0, 2.0]}) == ({"a": [1.0, 2.0]}, {})


def test_renderers_write_null_and_na(capsys: pytest.CaptureFixture[str]) -> None:
    from mmcli import emit

    emit.write_csv(
        [{"x": 1.0, "fit": float("nan"), "se": None}, {"x": 2, "fit": -math.inf, "se": 0.5}], ["x", "fit", "se"]
    )
    assert capsys.readouterr().out == "x,fit,se\n1.0,NA,NA\n2,NA,0.5\n"
    with pytest.raises(ValueError):  # the guard: JSON never holds NaN
        emit.write_json({"x": float("nan")})


def _spline_with_far_predictions(tmp_path: Path) -> list[str]:
    (tmp_path / "pred.csv").write_text("size\n1e150\n2\n1e60\n")
    return [
        "spline",
        str(data_path("engine.csv")),
        "--x",
        "size",
        "--y",
        "wear",
        "--predict",
        str(tmp_path / "pred.csv"),
    ]


NOTE = (
    "Note: 3 values are not finite numbers (too large for a float, or undefined) and written as {na}: "
    "{fit} (1), {se} (2)."
)


@pytest.mark.parametrize("fmt", ["json", "csv", "table"])
def test_predictions_far_outside_the_data(fmt: str, tmp_path: Path) -> None:
    """x = 1e150 overflows the rk basis: the prediction and its se are inf or NaN; x = 1e60 overflows se only."""
    args = _spline_with_far_predictions(tmp_path)
    code, out, err = run_in_process([*args, "--format", fmt])
    _clean(err)
    assert code == 0, err
    if fmt == "json":
        pred = json.loads(out)["predictions"]
        assert [p["fit"] for p in pred][0] is None and [p["se"] for p in pred] == [None, pred[1]["se"], None]
        assert all(isinstance(p["fit"], float) for p in pred[1:])
        assert err == NOTE.format(na="null", fit="predictions.fit", se="predictions.se") + "\n"
    elif fmt == "csv":
        rows = list(csv.reader(io.StringIO(out)))
        assert rows[0] == ["x", "fit", "se"] and rows[1] == ["1e+150", "NA", "NA"] and rows[3][2] == "NA"
        assert "nan" not in out.lower() and "inf" not in out.lower()
        assert err == NOTE.format(na="NA", fit="fit", se="se") + "\n"
    else:
        line = next(line for line in out.splitlines() if "1.00000e+150" in line)
        assert line.split()[1:] == ["NA", "NA"]
        assert err == NOTE.format(na="NA", fit="predictions.fit", se="predictions.se") + "\n"
    assert _files(tmp_path) == ["pred.csv"]


def test_gamm_table_shows_na_for_a_missing_prediction() -> None:
    from mmcli import render

    d = run_in_process(
        ["gamm", data_path("sleepstudy.csv"), "Reaction ~ s(Days, bs='cr', k=5) + (1|Subject)", "--json"]
    )
    d = d.json()
    d["predictions"] = [{"Days": 1.0, "fit": None, "se": 2.5}]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        render.print_gamm(d, predictions=True)
    assert out.getvalue().rstrip().splitlines()[-1].split() == ["1.00000", "NA", "2.50000"]


# --------------------------------------------------------------------------------------------------
# CSV injection
# --------------------------------------------------------------------------------------------------

HOSTILE = ['=HYPERLINK("http://x","y")', "=1+1", "@SUM(A1)", "+1+1", "-1+1", "-1.5", "+3", "plain", "a,b"]


def test_csv_cell() -> None:
    from mmcli.emit import csv_cell

    assert csv_cell("=1+1") == '"\'=1+1"'
    assert csv_cell('=HYPERLINK("http://x","y")') == '"\'=HYPERLINK(""http://x"",""y"")"'
    assert csv_cell("@SUM(A1)") == '"\'@SUM(A1)"'
    assert csv_cell("\tcmd") == '"\'\tcmd"' and csv_cell("\r=1") == '"\'\r=1"'
    assert csv_cell("-") == '"\'-"'
    for number in ("-1.5", "+3", "-1e-5", "-.5", "-2."):
        assert csv_cell(number) == number
    assert csv_cell(-1.5) == "-1.5" and csv_cell(np.float64(-2.0)) == "-2.0" and csv_cell(np.int64(-3)) == "-3"
    assert csv_cell("a,b") == '"a,b"' and csv_cell('say "hi"') == '"say ""hi"""' and csv_cell("plain") == "plain"
    assert csv_cell(None) == "NA" and csv_cell(float("inf")) == "NA"


def test_ranef_csv_neutralizes_formulas(tmp_path: Path) -> None:
    """The levels of a grouping factor are echoed in ranef's CSV: each that a spreadsheet would run is a text."""
    rng = np.random.default_rng(5)
    lines = ["y,x,g"]
    for i in range(180):
        level = HOSTILE[i % len(HOSTILE)]
        cell = '"' + level.replace('"', '""') + '"'
        lines.append(f"{rng.normal() + i % len(HOSTILE):.4f},{rng.normal():.4f},{cell}")
    (tmp_path / "data.csv").write_text("\n".join(lines) + "\n")

    code, out, err = run_in_process(["ranef", tmp_path / "data.csv", F, "--format", "csv"])
    _clean(err)
    assert code == 0 and err == ""
    levels = [r["level"] for r in csv.DictReader(io.StringIO(out))]
    assert sorted(levels) == sorted(["'" + v if v[0] in "=+-@" and v not in ("-1.5", "+3") else v for v in HOSTILE])
    for raw in ('"\'=HYPERLINK(""http://x"",""y"")"', '"\'=1+1"', '"\'@SUM(A1)"', '"\'+1+1"', '"\'-1+1"'):
        assert f"g,{raw},(Intercept)," in out
    assert "g,-1.5,(Intercept)," in out and "g,+3,(Intercept)," in out
    assert _files(tmp_path) == ["data.csv"]


def test_csv_header_is_neutralized_too(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("=x,@y\n" + "".join(f"{i},{math.sin(i) + i / 5:.4f}\n" for i in range(20)))
    code, out, err = run_in_process(["spline", tmp_path / "data.csv", "--format", "csv"])
    _clean(err)
    assert code == 0, err
    assert out.splitlines()[0] == '"\'=x","\'@y",fitted'
    assert _files(tmp_path) == ["data.csv"]
