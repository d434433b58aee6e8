"""Shared helpers for the tests: the tolerance tiers, the reference results, and running the command line.

Tolerance tiers (STYLE.md, "Tests hold numbers from elsewhere"). Each check in the suite uses one of
these, and none is loosened locally: when a number misses its tier, the fix belongs in the code (usually
the optimizer).

- ``EXACT``: a deterministic evaluation, such as the criterion, sigma or the standard errors at a *given*
  theta. Relative. Nothing iterative stands between the inputs and the number, so only rounding separates
  two correct implementations.
- ``OPT_DEV``: the optimum of the criterion (-2 log L or the REML criterion) found by an optimizer. Absolute,
  on the deviance scale, where a difference is a likelihood-ratio statistic.
- ``OPT_PAR``: parameters found by an optimizer (theta, sigma, standard deviations, conditional modes and
  standard deviations). Relative, or absolute against the scale of the quantity for values near zero.
- ``OPT_FIXEF``: fixed effects of an optimized fit, relative to the largest fixed effect (the GLS estimate is
  insensitive to theta at the optimum, so this tier is tighter than ``OPT_PAR``).
- ``OPT_SE``: standard errors of the fixed effects of an optimized fit. Relative.
- ``PRINTED``: numbers copied from printed output are checked to half a unit of their last printed digit; see
  :func:`printed_tol`.

This module defines no autouse fixtures: other test files (splines, smooths) keep their own constants.
"""

from __future__ import annotations

import os

# One BLAS thread, unless the caller chose otherwise. The test matrices are small: on a busy machine
# OpenBLAS's threads cost ~15 ms per call whatever the size (the dense V formulation became 15x slower), and
# one thread gives the same rounding on every machine. Set before numpy is first imported; subprocesses
# inherit it.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import contextlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, NamedTuple  # noqa: E402

import pytest  # noqa: E402

# --------------------------------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
TESTS_DIR = ROOT / "tests"
REFERENCE_DIR = TESTS_DIR / "reference"
DATA_DIR = ROOT / "sample_data"

# --------------------------------------------------------------------------------------------------
# Tolerance tiers
# --------------------------------------------------------------------------------------------------

EXACT = 1e-10
OPT_DEV = 1e-6
OPT_PAR = 1e-4
OPT_FIXEF = 1e-6
OPT_SE = 1e-5
PRINTED = 0.5  # in units of the last printed digit


def printed_tol(text: str) -> float:
    """Half a unit of the last digit of a number as printed: ``"36.01"`` -> 0.005, ``"1297"`` -> 0.5."""
    mantissa = text.strip().lower().split("e")[0]
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    exponent = int(text.strip().lower().split("e")[1]) if "e" in text.lower() else 0
    return PRINTED * 10.0 ** (exponent - decimals)


def close_to_printed(value: float, text: str) -> bool:
    """Whether ``value`` rounds to the printed ``text`` (within half a unit of its last digit)."""
    return abs(value - float(text)) <= printed_tol(text) * (1 + 1e-12)


# --------------------------------------------------------------------------------------------------
# Reference results (lme4 1.1-31 in R 4.2.2; provenance in tests/reference/README.md)
# --------------------------------------------------------------------------------------------------


class LmmCase(NamedTuple):
    """One lme4 reference model: the file stem, the data file and the extra command-line options."""

    stem: str
    csv: str
    options: tuple[str, ...] = ()

    @property
    def factors(self) -> tuple[str, ...]:
        """The columns given with --factor."""
        return tuple(v for k, v in zip(self.options, self.options[1:], strict=False) if k == "--factor")


LMM_CASES = (
    LmmCase("sleepstudy_intercept", "sleepstudy.csv"),
    LmmCase("sleepstudy_slope", "sleepstudy.csv"),
    LmmCase("sleepstudy_slope_uncorr", "sleepstudy.csv"),
    LmmCase("dyestuff", "dyestuff.csv"),
    LmmCase("dyestuff2", "dyestuff2.csv"),
    LmmCase("penicillin", "penicillin.csv"),
    LmmCase("pastes", "pastes.csv"),
    LmmCase("cake", "cake.csv", ("--factor", "temperature")),
)


def load_reference(name: str) -> dict[str, Any]:
    """A reference JSON from tests/reference, by file name with or without ``.json``."""
    path = REFERENCE_DIR / (name if name.endswith(".json") else f"{name}.json")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def data_path(name: str) -> Path:
    """A sample data file (the CSVs the references were computed from)."""
    return DATA_DIR / name


# --------------------------------------------------------------------------------------------------
# Running the command line
# --------------------------------------------------------------------------------------------------


class CliResult(NamedTuple):
    """What a run of the command line left behind; unpacks as (code, out, err)."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, f"exit {self.code}: {self.err}"
        return json.loads(self.out)

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.startswith("Error:")]


def _exit_code(e: SystemExit) -> int:
    if e.code is None:
        return 0
    return e.code if isinstance(e.code, int) else 1


@contextlib.contextmanager
def _stdin(data: bytes | None) -> Iterator[None]:
    if data is None:
        yield
        return
    saved = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8")
    try:
        yield
    finally:
        sys.stdin = saved


def run_in_process(args: list[Any], stdin: bytes | None = None) -> CliResult:
    """Run ``mmcli.cli.main(args)`` in this process, capturing its output and its exit status.

    ``main`` ends with ``sys.exit`` on every path, as the installed script does. The streams are swapped
    here rather than with capsys so that the helper works in any test (pytest's capture is restored after).
    """
    from mmcli.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = None
    with _stdin(stdin), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
        except SystemExit as e:
            code = _exit_code(e)
    assert code is not None, "mmcli.cli.main returned without sys.exit"
    return CliResult(code, out.getvalue(), err.getvalue())


def run_subprocess(args: list[Any], stdin: bytes | None = None, timeout: float = 120.0) -> CliResult:
    """Run ``python -m mmcli ARGS`` as a separate process (the real entry point, real streams)."""
    proc = subprocess.run(
        [sys.executable, "-m", "mmcli", *[str(a) for a in args]],
        input=stdin,
        capture_output=True,
        cwd=ROOT,
        timeout=timeout,
    )
    return CliResult(proc.returncode, proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8"))


@pytest.fixture
def cli() -> Any:
    """The in-process runner, as a fixture: ``code, out, err = cli(["fit", path, ...])``."""
    return run_in_process
