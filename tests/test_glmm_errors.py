"""Bad input to a generalized linear mixed model: one `Error:` line and the documented exit code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import REFERENCE_DIR, run_in_process

BINARY = REFERENCE_DIR / "glmm_binary.csv"
CBPP = REFERENCE_DIR / "glmm_cbpp.csv"


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def small(tmp_path: Path, y: list, extra: dict[str, list] | None = None) -> Path:
    """A 24-row data set with response column y, x and 6 groups."""
    rng = np.random.default_rng(1)
    cols: dict[str, list] = {"y": y, "x": list(np.round(rng.normal(size=24), 3)), "g": [f"g{i % 6}" for i in range(24)]}
    cols.update(extra or {})
    lines = [",".join(cols)] + [",".join(str(cols[c][i]) for c in cols) for i in range(24)]
    return write(tmp_path, "d.csv", "\n".join(lines) + "\n")


def check(args: list, code: int, *words: str) -> None:
    res = run_in_process(args)
    assert res.code == code, res.err
    assert len(res.error_lines) == 1 and res.err.strip().startswith("Error:"), res.err
    assert "Traceback" not in res.err
    for w in words:
        assert w in res.err


def test_binomial_response_outside_0_1(tmp_path: Path) -> None:
    f = small(tmp_path, [0, 1, 2] * 8)
    check(["fit", f, "y ~ x + (1|g)", "--family", "binomial"], 1, "0 or 1", "cbind")


def test_binomial_text_with_three_levels(tmp_path: Path) -> None:
    f = small(tmp_path, ["a", "b", "c"] * 8)
    check(["fit", f, "y ~ x + (1|g)", "--family", "binomial"], 1, "two levels")


def test_more_successes_than_trials(tmp_path: Path) -> None:
    f = small(tmp_path, [3, 1, 0] * 8, {"n": [2, 2, 2] * 8})
    check(["fit", f, "cbind(y, n - y) ~ x + (1|g)", "--family", "binomial"], 1, "more successes than trials")


@pytest.mark.parametrize("y", [[-1, 2, 3] * 8, [1.5, 2, 3] * 8])
def test_poisson_counts(tmp_path: Path, y: list) -> None:
    f = small(tmp_path, y)
    check(["fit", f, "y ~ x + (1|g)", "--family", "poisson"], 1, "non-negative whole numbers")


@pytest.mark.parametrize(
    ("family", "link", "words"),
    [("poisson", "logit", "no link 'logit'"), ("binomial", "log", "not supported"), ("binomial", "foo", "no link")],
)
def test_family_link_pairs(family: str, link: str, words: str) -> None:
    check(["fit", BINARY, "y ~ x + (1|g)", "--family", family, "--link", link], 2, words)


def test_unknown_family() -> None:
    res = run_in_process(["fit", BINARY, "y ~ x + (1|g)", "--family", "gamma"])
    assert res.code == 2 and "Traceback" not in res.err


def test_agq_needs_one_scalar_term() -> None:
    check(["fit", BINARY, "y ~ x + (1|g) + (1|site)", "--family", "binomial", "--nagq", "5"], 1, "single scalar")


@pytest.mark.parametrize("nagq", ["0", "26"])
def test_nagq_range(nagq: str) -> None:
    check(["fit", BINARY, "y ~ x + (1|g)", "--family", "binomial", "--nagq", nagq], 2, "--nagq")


@pytest.mark.parametrize(
    ("extra", "words"),
    [(["--link", "probit"], "--family"), (["--nagq", "3"], "--family"), (["--fitted"], "--family")],
)
def test_glmm_options_need_family(extra: list, words: str) -> None:
    check(["fit", BINARY, "y ~ x + (1|g)", *extra], 2, words)


def test_cbind_needs_binomial() -> None:
    formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
    check(["fit", CBPP, formula], 2, "--family binomial")
    check(["fit", CBPP, formula, "--family", "poisson"], 2, "--family binomial")


def test_cbind_syntax() -> None:
    check(["fit", CBPP, "cbind(incidence, size - herd) ~ period + (1 | herd)", "--family", "binomial"], 2, "cbind")


def test_reml_does_not_apply() -> None:
    check(["fit", BINARY, "y ~ x + (1|g)", "--family", "binomial", "--reml"], 2, "maximum likelihood")


def test_complete_separation_exit_3(tmp_path: Path) -> None:
    """A predictor that separates the outcomes: no finite estimate, exit 3 with a message, never numbers."""
    x = [i - 11.5 for i in range(24)]
    f = small(tmp_path, [int(v > 0) for v in x], {"x": x})
    res = run_in_process(["fit", f, "y ~ x + (1|g)", "--family", "binomial", "--json"])
    assert res.code == 3, res.err
    assert len(res.error_lines) == 1 and "separates" in res.err and not res.out
