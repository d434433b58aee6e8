"""Hostile formulas and hostile sizes: a formula is data, never code; a model too large is refused up front.

Every probe below is a formula (or a column option) written to run a command that would create a canary file.
Each must end with the documented exit code and one ``Error:`` line, and the canary must not exist. The names
a CSV can hold must all be usable, and the functions mmcli does not know must be named as unsupported.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from conftest import data_path, run_in_process, run_subprocess

# --------------------------------------------------------------------------------------------------
# Formulas never execute
# --------------------------------------------------------------------------------------------------

TOUCH = "touch {canary}"
PROBES = [
    # the spelling that reached os.system through formulaic's evaluation of I()
    (
        "y ~ I(x . __getattribute__('__init__=' [:-1]) . __globals__['os'] . system('" + TOUCH + "')) + (1 | g)",
        2,
        r"Missing an operator|Unexpected",
    ),
    ("y ~ I(__import__('os').system('" + TOUCH + "')) + (1 | g)", 2, r"Missing an operator .* before '\.system'"),
    ("y ~ I(__import__('os')) + (1 | g)", 2, r"Unsupported function '__import__' inside a transform"),
    ("y ~ x + eval(\"__import__('os').system('" + TOUCH + "')\") + (1 | g)", 2, r"Unsupported function 'eval'"),
    ("y ~ x + exec('import os') + (1 | g)", 2, r"Unsupported function 'exec'"),
    ("y ~ x + getattr(x, '__class__') + (1 | g)", 2, r"Unsupported function 'getattr'"),
    ("y ~ I((lambda: __import__('os').system('" + TOUCH + "'))()) + (1 | g)", 2, r"Formula|formula"),
    ("y ~ C(x, __import__('os')) + (1 | g)", 2, r"Unsupported function 'C'"),
    ("y ~ x[0] + (1 | g)", 2, r"Unexpected character '\['"),
    ("y ~ {{x}} + (1 | g)", 2, r"Unexpected character '\{'"),
    ("y ~ x; import os + (1 | g)", 2, r"Unexpected character ';'"),
    ("y ~ I(x) @ x + (1 | g)", 2, r"Unexpected character '@'"),
    ("y ~ x %o% x + (1 | g)", 2, r"Unsupported operator"),
    ("y ~ I('__imp' + 'ort__') + (1 | g)", 2, r"inside a transform"),
    ("y ~ poly(x, eval('2')) + (1 | g)", 2, r"degree of poly\(\)"),
    ("y ~ log(x, __import__('os')) + (1 | g)", 2, r"log\(\) takes one argument"),
    ("y ~ scale(x, center = __import__('os')) + (1 | g)", 2, r"must be TRUE or FALSE"),
    ("y ~ offset(__import__('os')) + x + (1 | g)", 2, r"An offset takes a column"),
    ("y ~ x + (1 | __import__('os'))", 2, r"grouping factor must be a column name"),
    ("y ~ x + (I(__import__('os')) | g)", 2, r"Unsupported function '__import__'"),
    ("y ~ x + (1 | g) + \uff45\uff56\uff41\uff4c('1')", 2, r"Unsupported function"),  # full-width 'eval'
    ("__import__('os').system('" + TOUCH + "') ~ x + (1 | g)", 2, r"Missing an operator .* before '\.system'"),
    ("__import__('os') ~ x + (1 | g)", 2, r"response must be a column name"),
    ("y ~ `__import__('os').system('" + TOUCH + "')` + (1 | g)", 1, r"Column .* not found"),
    ("y ~ x.__class__.__bases__ + (1 | g)", 1, r"Column 'x.__class__.__bases__' not found"),
]


@pytest.fixture
def lmm_csv(tmp_path: Path) -> Path:
    rng = np.random.default_rng(11)
    path = tmp_path / "data.csv"
    rows = [f"{1 + 2 * x + g + rng.normal():.4f},{x:.4f},g{g}" for x, g in zip(rng.normal(size=40), np.arange(40) % 5)]
    path.write_text("y,x,g\n" + "\n".join(rows) + "\n")
    return path


def _check(code: int, err: str, want_code: int, pattern: str, canary: Path, tmp_path: Path, files: set[str]) -> None:
    assert not canary.exists(), "the formula ran a command"
    assert "Traceback" not in err and "internal error" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), lines
    assert code == want_code, (code, err)
    assert re.search(pattern, lines[0]), lines[0]
    assert {p.name for p in tmp_path.iterdir()} == files


@pytest.mark.parametrize(("formula", "code", "pattern"), PROBES)
@pytest.mark.parametrize("command", ["fit", "gamm"])
def test_a_formula_never_runs(command, formula, code, pattern, lmm_csv, tmp_path):
    canary = tmp_path / "canary"
    got = run_in_process([command, lmm_csv, formula.format(canary=canary)])
    _check(got.code, got.err, code, pattern, canary, tmp_path, {"data.csv"})


@pytest.mark.parametrize(
    "option",
    [
        ["--y", "y", "--fixed", "__import__('os').system('" + TOUCH + "')", "--group", "g"],
        ["--y", "y", "--group", "g) + I(__import__('os').system('" + TOUCH + "')) + (1"],
        ["--y", "y`) + I(__import__('os').system('" + TOUCH + "')) ~ (`x", "--group", "g"],
    ],
)
def test_a_column_option_is_a_name_never_code(option, lmm_csv, tmp_path):
    canary = tmp_path / "canary"
    got = run_in_process(["fit", lmm_csv, *[o.format(canary=canary) for o in option]])
    _check(got.code, got.err, 1, r"Column .* not found", canary, tmp_path, {"data.csv"})


def test_the_installed_command_refuses_the_probe_too(lmm_csv, tmp_path):
    """The real entry point, in a process of its own."""
    canary = tmp_path / "canary"
    got = run_subprocess(["fit", lmm_csv, PROBES[1][0].format(canary=canary)])
    _check(got.code, got.err, 2, PROBES[1][2], canary, tmp_path, {"data.csv"})


def test_formulaic_only_ever_sees_generated_names(monkeypatch, lmm_csv):
    """The formula library combines mmcli's evaluated variables: the text it gets holds nothing of the user's."""
    import formulaic

    seen: list[str] = []
    real = formulaic.model_matrix

    def spy(spec, data, **kw):
        seen.append(str(spec))
        return real(spec, data, **kw)

    monkeypatch.setattr(formulaic, "model_matrix", spy)
    got = run_in_process(["fit", lmm_csv, "y ~ poly(x, 2) * g + I(x^2 - 1) + log(abs(x) + 1) + (1 | g)"])
    assert got.code == 0, got.err
    assert seen and all(re.fullmatch(r"[mcliv0-9s_ +\-:*/()^]+", s) for s in seen), seen


# --------------------------------------------------------------------------------------------------
# Every name a CSV can hold is usable; unknown functions are named
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def names_csv(tmp_path: Path) -> Path:
    rng = np.random.default_rng(5)
    lines = ["Ozone,Solar.R,my x,x-y,Subj ID,Größe"]
    for i in range(90):
        s, x = rng.uniform(0, 300), rng.uniform(0, 1)
        lines.append(
            f"{np.sin(s / 50) + x + rng.normal() * 0.3:.4f},{s:.2f},{x:.4f},{rng.normal():.3f},S {i % 6},Ä{i % 3}"
        )
    path = tmp_path / "names.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("args", "terms", "group"),
    [
        (["fit", "{f}", "--y", "Ozone", "--fixed", "my x", "--group", "Subj ID"], ["(Intercept)", "`my x`"], "Subj ID"),
        (["fit", "{f}", "Ozone ~ `x-y` + Solar.R + (1 | `Subj ID`)"], ["(Intercept)", "`x-y`", "Solar.R"], "Subj ID"),
        (["fit", "{f}", "Ozone ~ Größe + (1 | `Subj ID`)"], ["(Intercept)", "GrößeÄ1", "GrößeÄ2"], "Subj ID"),
        (["fit", "{f}", "Ozone ~ 1 + (1 | Größe)"], ["(Intercept)"], "Größe"),
        (
            ["gamm", "{f}", "Ozone ~ s(Solar.R, bs = 'cr') + (1 | `Subj ID`)"],
            ["(Intercept)", "s(Solar.R)Fx1"],
            "Subj ID",
        ),
        (
            ["gamm", "{f}", "--y", "Ozone", "--smooth", "my x", "--group", "Subj ID"],
            ["(Intercept)", "s(my x)Fx1"],
            "Subj ID",
        ),
    ],
)
def test_every_column_name_is_usable(args, terms, group, names_csv):
    res = run_in_process([a.format(f=names_csv) for a in args] + ["--json"]).json()
    assert [r["term"] for r in res["fixed_effects"]] == terms
    assert group in [r["group"] for r in res["random_effects"]]


@pytest.mark.parametrize(
    ("formula", "pattern"),
    [
        ("Ozone ~ gp(Solar.R, `my x`) + (1 | `Subj ID`)", r"Unsupported function 'gp'.*position 9"),
        ("Ozone ~ ti(Solar.R) + (1 | `Subj ID`)", r"Unsupported function 'ti'"),
        ("Ozone ~ bs(Solar.R, 3) + (1 | `Subj ID`)", r"Unsupported function 'bs': a term may use I\(\)"),
        ("Ozone ~ I(cos(Solar.R)) + (1 | `Subj ID`)", r"Unsupported function 'cos' inside a transform"),
        ("Ozone ~ Solar.R + . + (1 | `Subj ID`)", r"'\.' \(all other columns\) is not supported"),
    ],
)
def test_unknown_functions_are_named_not_taken_for_columns(formula, pattern, names_csv):
    got = run_in_process(["gamm", names_csv, formula])
    assert got.code == 2 and "not found" not in got.err
    assert re.search(pattern, got.err), got.err


# --------------------------------------------------------------------------------------------------
# Sizes: refused before allocating, with the size asked for
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_csvs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("big")
    rng = np.random.default_rng(9)
    n = 200_000
    x = rng.permutation(n) / n
    smooth = d / "smooth.csv"
    smooth.write_text(
        "y,x,g\n" + "".join(f"{v:.4f},{a:.6f},g{i % 20}\n" for i, (v, a) in enumerate(zip(rng.normal(size=n), x)))
    )
    m = 50_000
    levels = d / "levels.csv"
    levels.write_text(
        "y,f,h,g\n" + "".join(f"{v:.4f},L{i},M{(7 * i) % m},g{i % 10}\n" for i, v in enumerate(rng.normal(size=m)))
    )
    crossed = d / "crossed.csv"
    k = 30_000
    crossed.write_text(
        "y,a,b\n" + "".join(f"{v:.4f},A{i % k},B{(7 * i + i // k) % k}\n" for i, v in enumerate(rng.normal(size=2 * k)))
    )
    return {"smooth": smooth, "levels": levels, "crossed": crossed}


@pytest.mark.parametrize(
    ("file", "args", "pattern"),
    [
        (
            "smooth",
            ["gamm", "y ~ s(x, bs = 'cr', k = 50000) + (1 | g)"],
            r"basis of s\(x\) with k = 50000 .*would need 80\.0 GB",
        ),
        (
            "levels",
            ["fit", "y ~ f + (1 | g)", "--max-memory", "2G"],
            r"model matrix of 'f' \(50001 columns\) would need 20\.0 GB",
        ),
        ("levels", ["fit", "y ~ f:h + (1 | g)"], r"model matrix of 'f:h' .*would need 1\.0 PB"),
        (
            "crossed",
            ["fit", "y ~ 1 + (1 | a) + (1 | b)", "--max-memory", "2G"],
            r"30000 x 30000.*would need 7\.2 GB",
        ),
    ],
)
def test_a_model_too_large_is_refused_before_allocating(file, args, pattern, big_csvs):
    got = run_in_process([args[0], big_csvs[file], *args[1:]])
    assert got.code == 1, got.err
    lines = got.err.strip().splitlines()
    assert len(lines) == 1 and re.search(pattern, lines[0]), lines
    assert re.search(r"--max-memory \d+G|more than this machine's memory", lines[0])


def test_max_memory_takes_a_size():
    got = run_in_process(
        ["fit", data_path("sleepstudy.csv"), "Reaction ~ Days + (1 | Subject)", "--max-memory", "lots"]
    )
    assert got.code == 2 and re.search(r"--max-memory takes a size such as 4G", got.err)
    ok = run_in_process(
        ["fit", data_path("sleepstudy.csv"), "Reaction ~ Days + (1 | Subject)", "--max-memory", "1.5GiB"]
    )
    assert ok.code == 0, ok.err


@pytest.mark.parametrize(
    ("rhs", "code", "pattern"),
    [
        ("(" * 3000 + "Days" + ")" * 3000, 2, r"Parentheses nested more than 64 deep"),
        ("I(" + "-" * 5000 + "Days)", 2, r"More than 64 signs in a row"),
        (":".join(["Days"] * 3000), 0, None),  # a long chain is a deep tree: read without running out of stack
        (" + ".join(["Days"] * 5000), 0, None),
    ],
    ids=["parentheses", "signs", "interaction-chain", "long-sum"],
)
def test_deep_and_long_formulas_end_cleanly(rhs, code, pattern):
    got = run_in_process(["fit", data_path("sleepstudy.csv"), f"Reaction ~ {rhs} + (1 | Subject)", "--json"])
    assert got.code == code, got.err[:300]
    assert "internal error" not in got.err and "Traceback" not in got.err
    if pattern:
        assert re.search(pattern, got.err.splitlines()[-1])
    else:
        assert [r["term"] for r in got.json()["fixed_effects"]] == ["(Intercept)", "Days"]
