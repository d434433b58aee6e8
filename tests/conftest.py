"""Shared helpers for the tests: the tolerance tiers, the reference results, and running the command line.

Tolerance tiers (the house rule: tests hold numbers from elsewhere). Each check in the suite uses one of
these, and none is loosened locally: when a number misses its tier, the fix belongs in the code (usually
the optimizer).

- ``EXACT``: a deterministic evaluation, such as a basis, a penalty, the criterion, sigma or the standard
  errors at a *given* theta, or a spline fit at a *given* lambda. Relative. Nothing iterative stands between the
  inputs and the number, so only rounding separates two correct implementations.
- ``ROUNDING``: an identity that holds up to rounding alone: a symmetric matrix, a constraint times its null
  space, the same basis built twice (rows permuted, predicted at the data), an algebraic rearrangement of one
  computed quantity. Relative (absolute against the scale of the quantity for values that should be zero).
  Tighter than ``EXACT`` because no reference computed elsewhere and no solve with a condition number stands in
  between; loose enough for the few hundred ulps by which BLAS kernels (OPENBLAS_CORETYPE), thread counts and
  summation orders move them (up to 1e-13 seen, for the standard errors of a prediction).
- ``R_EIGEN``: numbers R computed through a LAPACK eigen-decomposition of an ill-conditioned penalty (mgcv's
  ``smooth2random``, the ``cs`` shrinkage) and stored with 17 digits. R's BLAS/LAPACK build rounds the
  eigenvectors differently from ours, and the error is that rounding times the penalty's condition number, so
  the tier is relative and ``R_EIGEN * cond`` is added to ``EXACT`` where the condition number is known.
- ``R_FLOOR``: numbers gamm4 reports for a smooth whose variance is exactly zero: it keeps the smoothing
  parameter finite, so its EDF for a straight line reads 1 + 7.5e-8 and the standard errors move by 5e-9.
  Absolute on an EDF, relative on a standard error; used for that case only.
- ``OPT_DEV``: the optimum of the criterion (-2 log L, the REML criterion, GCV) found by an optimizer or a search.
  Absolute, on the deviance scale, where a difference is a likelihood-ratio statistic; relative for a GCV score.
- ``OPT_PAR``: parameters found by an optimizer or a search (theta, sigma, standard deviations, conditional modes
  and standard deviations, a smoothing parameter chosen by GCV's Brent search or by REML, and what follows from
  it: EDF, fitted values, spline coefficients). Relative, or absolute against the scale of the quantity for
  values near zero.
- ``OPT_FIXEF``: fixed effects of an optimized fit, relative to the largest fixed effect (the GLS estimate is
  insensitive to theta at the optimum, so this tier is tighter than ``OPT_PAR``).
- ``OPT_SE``: standard errors of the fixed effects of an optimized fit. Relative.
- ``NUM_DERIV``: two finite-difference derivatives (central differences with Richardson's extrapolation, as
  numDeriv's) of the same deterministic function at the same fixed parameters, such as lmerTest's Hessian and
  Jacobian at lme4's theta. Relative. Each is accurate to about 1e-8; they agree to about 3e-7.
- ``DDF``: denominator degrees of freedom and p-values of an optimized fit (Satterthwaite's, Kenward-Roger's),
  relative (p-values also absolute ``DDF_P_ABS``). They go through the optimizer and, for Satterthwaite's, second
  derivatives at the optimum, which amplify the optimizer's tolerance.
- ``R_SPLINE``: lme4's profile confidence intervals, whose ends lme4 reads off a spline through a grid of profile
  points (spaced cutoff / 8 on the zeta scale) rather than solving for them: they miss the exact ends by up to
  1.7e-4 relative (Dyestuff's .sig01, 2.0e-3 absolute; with lme4's ``delta = 0.05`` the miss is below 1e-6).
  Relative; used only against lme4's default-grid intervals.
- ``GLMM_DEV``, ``GLMM_FIXEF``, ``GLMM_SE``, ``GLMM_SD``: a generalized linear mixed model against lme4's glmer.
  Looser than the ``OPT_*`` tiers because glmer itself stops loosely: its PIRLS stops at a relative change of
  1e-7 in the penalized deviance (tolPwrss), which leaves its Laplace deviance inexact by up to ~6e-4 (cbpp) and its
  finite-difference Hessian, hence its standard errors, by up to ~1.3e-2; its second stage (Nelder-Mead) stops
  on a flat surface. The deviance tier is absolute and one-sided (no more than glmer's + ``GLMM_DEV``: lower is
  better); the others are relative (the fixed effects to the largest of them, as ``OPT_FIXEF``). The references
  are glmer's fits with tolPwrss = 1e-10 (its exact Laplace estimate) and glmer's defaults (what users see).
- ``PRINTED``: numbers copied from printed output are checked to half a unit of their last printed digit; see
  :func:`printed_tol`.

The rule for choosing: a deterministic evaluation uses ``EXACT`` (``ROUNDING`` for an identity, ``R_EIGEN`` for
R's eigen-decompositions); anything that went through an optimizer or a search uses the ``OPT_*`` tiers. No test
file keeps tolerance constants of its own.

Hypothesis runs under the ``ci`` profile registered here (derandomized, no example database, no deadline), so
that every run on every machine tries the same examples; ``MMCLI_HYPOTHESIS_RANDOM=1`` loads ``explore``
instead, which searches afresh (raise ``MMCLI_HYPOTHESIS_EXAMPLES`` with it in tests/test_properties.py).
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
from hypothesis import HealthCheck, settings  # noqa: E402

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

EXACT = 1e-10  # a deterministic evaluation, relative
ROUNDING = 1e-12  # an identity up to rounding only (~4500 ulps), relative to the scale of the quantity
R_EIGEN = 1e-15  # R's eigen-decomposition of a penalty, relative, per unit of condition number (~5 ulps)
R_FLOOR = 1e-7  # what gamm4 reports at a zero smooth variance, where it keeps lambda finite (EDF 1 + 7.5e-8)
OPT_DEV = 1e-6  # the optimized criterion, absolute on the deviance scale
OPT_PAR = 1e-4  # optimized parameters and what follows from them, relative
OPT_FIXEF = 1e-6  # fixed effects of an optimized fit, relative to the largest
OPT_SE = 1e-5  # standard errors of an optimized fit, relative
NUM_DERIV = 1e-6  # two finite-difference derivatives at the same fixed parameters, relative
DDF = 1e-3  # df and p-values of an optimized fit against lmerTest/pbkrtest, relative
DDF_P_ABS = 1e-8  # ... or absolute, for p-values near zero
R_SPLINE = 2.5e-4  # lme4's spline-interpolated profile intervals, relative
# mgcv's summary.gam p-values of smooth terms come from Davies' (1980) algorithm at its default accuracy 2e-5
# (psum.chisq's tol, absolute); mmcli's Imhof integration is accurate to ~1e-14, so the gap is mgcv's. Absolute.
R_DAVIES = 2e-5
# summary.gam for a smooth whose variance is exactly zero: gamm4 keeps its smoothing parameter at 1e10, so its EDF
# (and Ref.df, and F through it) read 1 + 2e-6 for a straight line (s(Days) on sleepstudy), and the other
# smooths' rows of the same fit move by about 1e-9. Relative.
R_SP_FLOOR = 1e-5
# The smooth-terms table (F, p-value) at mmcli's optimum against gamm4's: gamm4's optimizer stops up to 0.013
# above the REML optimum on flat surfaces, which moves F by up to 0.9e-2. Relative (p-values also R_DAVIES).
S_TABLE = 1e-2
GLMM_DEV = 1e-3  # a GLMM's deviance, absolute, against glmer's (one-sided: lower is fine)
GLMM_FIXEF = 1e-3  # a GLMM's fixed effects against glmer's, relative to the largest
GLMM_SE = 1e-2  # a GLMM's standard errors (from a finite-difference Hessian) against glmer's, relative
GLMM_SD = 1e-2  # a GLMM's random-effect SDs, conditional modes and SDs, fitted values, relative (or to the scale)
# A gamm with a family (gamm4's glmer fit): its population-level predictions against predict.gam's, in units of
# their standard error. The likelihood is flat in a smooth's variance (a probit fit with a large one moves it by
# a third at 2e-4 in deviance), which moves the curve by a small fraction of its se.
GLMM_PRED = 2e-2
PRINTED = 0.5  # in units of the last printed digit


# --------------------------------------------------------------------------------------------------
# Hypothesis
# --------------------------------------------------------------------------------------------------

# The same examples on every machine and in every order of the tests: derandomized (the examples follow from a
# hash of the test), no example database (a failure stored by one run would be replayed first by the next), no
# deadline and no too_slow check (both depend on the machine's speed). print_blob prints how to reproduce a
# failure. Each test keeps its own max_examples.
_HYPOTHESIS_COMMON = {
    "deadline": None,
    "database": None,
    "print_blob": True,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
}
settings.register_profile("ci", derandomize=True, **_HYPOTHESIS_COMMON)
settings.register_profile("explore", derandomize=False, **_HYPOTHESIS_COMMON)
settings.load_profile("explore" if os.environ.get("MMCLI_HYPOTHESIS_RANDOM") else "ci")


def _import_every_mmcli_module() -> None:
    """Load all of mmcli before the first test, so that derandomized examples do not depend on the tests before.

    Hypothesis draws some values from the literals in the source of every local module in ``sys.modules`` at the
    time (cached in .hypothesis/constants). Modules that mmcli imports lazily (plot, gamm, ...) would otherwise
    enter that pool at a point that depends on which tests ran first, and the same derandomized test would try
    other examples under ``-k``, on a single file or in another order. A module that fails to import is left to
    the tests that use it to report."""
    import importlib
    import pkgutil

    import mmcli

    for info in pkgutil.walk_packages(mmcli.__path__, "mmcli.", onerror=lambda name: None):
        if info.name.rpartition(".")[2] != "__main__":  # running it would run the command line
            with contextlib.suppress(Exception):
                importlib.import_module(info.name)


_import_every_mmcli_module()


def printed_tol(text: str) -> float:
    """Half a unit of the last digit of a number as printed: ``"36.01"`` -> 0.005, ``"1297"`` -> 0.5."""
    mantissa = text.strip().lower().split("e")[0]
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    exponent = int(text.strip().lower().split("e")[1]) if "e" in text.lower() else 0
    return PRINTED * 10.0 ** (exponent - decimals)


def close_to_printed(value: float, text: str) -> bool:
    """Whether ``value`` rounds to the printed ``text`` (within half a unit of its last digit)."""
    return abs(value - float(text)) <= printed_tol(text) * (1 + ROUNDING)


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
