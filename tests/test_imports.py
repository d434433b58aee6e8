"""The numeric modules stand on numpy and scipy alone (the house rule): importing them, and fitting through their
public API with numpy arrays, loads neither click, rich nor pandas.

Each check runs in a fresh interpreter (``sys.executable -c``), since this one has long imported all three (the
command-line tests run in-process). The child records, for each of the three that does get imported, the chain
of mmcli modules that imported it, so that a failure says where the dependency came in.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from conftest import EXACT, OPT_DEV, OPT_FIXEF, OPT_PAR, ROOT, load_reference

NUMERIC_MODULES = ("mmcli.lmm", "mmcli.spline", "mmcli.smooths", "mmcli.gamm", "mmcli.formula")
CLI_ONLY = ("click", "rich", "pandas")

# Run first in the child: a finder that never finds anything, but notes who asked for a CLI-only package first.
SPY = f"""
import importlib, json, sys, traceback
CLI_ONLY = {CLI_ONLY!r}
chains = {{}}

class Spy:
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in CLI_ONLY and top not in chains and top not in sys.modules:
            chains[top] = [
                f"{{f.filename[f.filename.rfind('mmcli'):]}}:{{f.lineno}}"
                for f in traceback.extract_stack()
                if "mmcli" in f.filename.replace("\\\\", "/").split("/")
            ]
        return None

sys.meta_path.insert(0, Spy())
"""

# Run last in the child: what was loaded, and from where.
REPORT = """
report = {"loaded": sorted(m for m in CLI_ONLY if m in sys.modules), "chains": chains}
report.update(globals().get("result", {}))
sys.stdout.write(json.dumps(report))
"""


def run_child(code: str) -> dict:
    """Run the spy, ``code`` and the report in a fresh interpreter at the repository root; the report."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run(
        [sys.executable, "-c", SPY + textwrap.dedent(code) + REPORT],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_numeric_modules_import_without_cli_dependencies() -> None:
    report = run_child(f"for name in {NUMERIC_MODULES!r}:\n    importlib.import_module(name)\n")
    assert report["loaded"] == [], f"imported by: {report['chains']}"


FIT = """
import csv

import numpy as np

from mmcli.lmm import fit_lmm, indicator_term
from mmcli.spline import fit_spline


def columns(path, *names):
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [[row[name] for row in rows] for name in names]


# Yield ~ 1 + (1 | Batch), by ML
yields, batch = columns("sample_data/dyestuff.csv", "Yield", "Batch")
y = np.array(yields, dtype=float)
n = y.size
levels = sorted(set(batch))
codes = np.array([levels.index(b) for b in batch])
term = indicator_term("Batch", ["(Intercept)"], codes, levels, np.ones((n, 1)))
fit = fit_lmm(np.ones((n, 1)), y, [term], reml=False, xnames=["(Intercept)"])

# the engine-wear spline at lambda = 1e-4
size, wear = columns("sample_data/engine.csv", "size", "wear")
spline = fit_spline(np.array(size, dtype=float), np.array(wear, dtype=float), lam=1e-4)

result = {
    "deviance": float(fit.objective),
    "theta": [float(t) for t in fit.theta],
    "beta": [float(b) for b in fit.beta],
    "edf": float(spline.edf),
}
"""


def test_fits_through_the_public_api_without_cli_dependencies() -> None:
    report = run_child(FIT)
    assert report["loaded"] == [], f"imported by: {report['chains']}"
    # and the fits are the right ones: lme4's dyestuff ML fit, and the engine spline of R's reference
    ref = load_reference("dyestuff_ml")
    assert abs(report["deviance"] - ref["deviance"]) <= OPT_DEV
    assert abs(report["theta"][0] - ref["theta"]) <= OPT_PAR * abs(ref["theta"])
    assert abs(report["beta"][0] - ref["fixef"]["(Intercept)"]) <= OPT_FIXEF * abs(ref["fixef"]["(Intercept)"])
    spline = load_reference("engine_spline")
    assert abs(report["edf"] - spline["edf"]) <= EXACT * spline["edf"]


def run_cli_child(args: list[str], out, prelude: str = "") -> dict:
    """``mmcli ARGS`` in a fresh interpreter (after ``prelude``), its standard output written to ``out``: the
    report of :func:`run_child`, with the exit code."""
    code = f"""
    import sys
    {prelude}
    sys.argv = ["mmcli", *{[str(a) for a in args]!r}]
    sys.stdout = open({str(out)!r}, "w")
    from mmcli.cli import main
    try:
        main()
    except SystemExit as e:
        result = {{"code": e.code}}
    sys.stdout.close()
    sys.stdout = sys.__stdout__
    """
    return run_child(code)


def test_a_json_fit_does_not_load_rich(tmp_path) -> None:
    """rich draws tables: `fit --json` and `--format csv` write without it (about 50 ms of imports less)."""
    for fmt in (["--json"], ["--format", "csv"]):
        out = tmp_path / "out.txt"
        got = run_cli_child(["fit", "sample_data/sleepstudy.csv", "Reaction ~ Days + (Days | Subject)", *fmt], out)
        assert got["code"] == 0 and out.read_text().strip()
        assert "rich" not in got["loaded"], got["chains"].get("rich")


def test_a_large_data_fit_does_not_load_pandas(tmp_path) -> None:
    """A fit of numbers and text groups from Parquet, or from a CSV the threaded reader takes, holds its columns
    as numpy arrays: pandas (0.2-0.3 s to import) is never loaded. Its numbers are lme4's."""
    import pandas as pd

    df = pd.read_csv(ROOT / "sample_data" / "sleepstudy.csv")
    df.to_parquet(tmp_path / "s.parquet", index=False)
    df.to_csv(tmp_path / "s.csv", index=False)  # no quotes: the threaded reader takes it
    ref = load_reference("sleepstudy_intercept_ml")
    for path, prelude in (
        (tmp_path / "s.parquet", ""),
        (tmp_path / "s.csv", "from mmcli import data; data.ARROW_MIN_BYTES = 0"),
    ):
        out = tmp_path / "out.json"
        args = ["fit", path, "Reaction ~ Days + (1 | Subject)", "--json", "--ddf", "none"]
        got = run_cli_child(args, out, prelude)
        assert got["code"] == 0 and "pandas" not in got["loaded"], "\n".join(got["chains"].get("pandas", []))
        fit = json.loads(out.read_text())
        assert abs(fit["deviance"] - ref["deviance"]) <= OPT_DEV
