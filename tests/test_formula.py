"""mmcli.formula: lme4 formula text -> model spec; and the names and orders R gives what the spec builds.

The expected values are lme4's and R's rules, quoted in each test: expandDoubleVerts for ``||``, the nested
``a/b`` expansion (``b:a``, as lme4 names ``cask:batch``), mkReTerms' term order, and factor()'s level order.
The reference fits (tests/reference, lme4 1.1-31) confirm them on real data (test_lmm.test_design_is_lme4s).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from conftest import data_path

from mmcli.cli import split_list
from mmcli.data import level_order, load
from mmcli.design import build_design, group_codes, lme4_order
from mmcli.errors import FormulaError, UsageError
from mmcli.formula import RandomTerm, build_formula, parse_formula
from mmcli.formula.syntax import names_in


def fixed_variables(spec) -> list[str]:
    """The columns of the fixed part."""
    return sorted({n for _, t in spec.fixed_terms for n in names_in(t)})


def random_terms(text: str) -> list[tuple[str, str]]:
    """(expr, group) of each random-effects term of a formula."""
    return [(t.expr, t.group) for t in parse_formula(text).random]


# --------------------------------------------------------------------------------------------------
# Random-effects terms
# --------------------------------------------------------------------------------------------------


def test_correlated_slope():
    spec = parse_formula("Reaction ~ Days + (Days | Subject)")
    assert spec.response == "Reaction"
    assert spec.fixed == "Days"
    assert spec.random == (RandomTerm("Days", ("Subject",)),)
    assert spec.text == "Reaction ~ Days + (Days | Subject)"


def test_spacing_does_not_matter():
    assert parse_formula("y~x+(x|g)").random == parse_formula("y ~ x + ( x | g )").random
    assert parse_formula("y~x+(x|g)").text == "y ~ x + (x | g)"


@pytest.mark.parametrize(
    ("text", "terms"),
    [
        ("y ~ x + (x || g)", [("1", "g"), ("0 + x", "g")]),
        ("y ~ x + (1 + x || g)", [("1", "g"), ("0 + x", "g")]),
        ("y ~ x + (x + z || g)", [("1", "g"), ("0 + x", "g"), ("0 + z", "g")]),
        ("y ~ x + (0 + x || g)", [("0 + x", "g")]),
        ("y ~ x + (x - 1 || g)", [("0 + x", "g")]),
    ],
)
def test_double_bar_expands_as_lme4(text, terms):
    """lme4's expandDoubleVerts: (x || g) is (1 | g) + (0 + x | g), one uncorrelated term per column."""
    assert random_terms(text) == terms


def test_double_bar_shows_the_expansion_in_the_formula_fitted():
    assert parse_formula("y ~ x + (x || g)").text == "y ~ x + (1 | g) + (0 + x | g)"


def test_no_intercept_slope():
    assert random_terms("y ~ x + (0 + x | g)") == [("0 + x", "g")]


@pytest.mark.parametrize(
    ("text", "groups", "factors"),
    [
        ("y ~ 1 + (1 | a/b)", ["a", "b:a"], [("a",), ("b", "a")]),
        ("y ~ 1 + (1 | a/b/c)", ["a", "b:a", "c:b:a"], [("a",), ("b", "a"), ("c", "b", "a")]),
        ("strength ~ 1 + (1 | batch/cask)", ["batch", "cask:batch"], [("batch",), ("cask", "batch")]),
    ],
)
def test_nested_groups(text, groups, factors):
    """(1 | a/b) = (1 | a) + (1 | a:b), which lme4 names 'b:a' (pastes: 'cask:batch')."""
    spec = parse_formula(text)
    assert [t.group for t in spec.random] == groups
    assert [t.factors for t in spec.random] == factors
    assert all(t.expr == "1" for t in spec.random)


def test_interaction_group():
    spec = parse_formula("angle ~ recipe * temperature + (1 | recipe:replicate)")
    assert spec.random == (RandomTerm("1", ("recipe", "replicate")),)
    assert spec.random[0].group == "recipe:replicate"


def test_crossed_terms_keep_the_formula_order():
    """The parser keeps the written order; lme4's reordering by levels happens in the design (lme4_order)."""
    assert random_terms("diameter ~ 1 + (1 | plate) + (1 | sample)") == [("1", "plate"), ("1", "sample")]


def test_variables_lists_each_used_column_once():
    """The response first; factor(w) is the column w."""
    spec = parse_formula("y ~ x + factor(w) + (x || g) + (1 | g/h)")
    assert spec.variables()[0] == "y"
    assert sorted(spec.variables()) == ["g", "h", "w", "x", "y"]


# --------------------------------------------------------------------------------------------------
# The fixed part
# --------------------------------------------------------------------------------------------------


def test_interaction_star():
    spec = parse_formula("angle ~ recipe * temperature + (1 | recipe:replicate)")
    assert spec.fixed == "recipe * temperature"
    assert fixed_variables(spec) == ["recipe", "temperature"]


def test_factor_call():
    spec = parse_formula("angle ~ recipe + factor(temperature) + (1 | replicate)")
    assert spec.fixed == "recipe + factor(temperature)"
    assert spec.text == "angle ~ recipe + factor(temperature) + (1 | replicate)"
    assert "temperature" in spec.variables()


@pytest.mark.parametrize(
    "text",
    [
        "y ~ x - 1 + (1 | g)",
        "y ~ 0 + x + (1 | g)",
        "y ~ x + (1 | g) - 1",
        "y ~ -1 + x + (1 | g)",
    ],
)
def test_removing_the_intercept(text):
    spec = parse_formula(text)
    assert fixed_variables(spec) == ["x"]
    assert [t.group for t in spec.random] == ["g"]
    assert re.search(r"(^|\s)(- ?1|0 \+)", spec.fixed)


def test_intercept_only():
    spec = parse_formula("Yield ~ 1 + (1 | Batch)")
    assert spec.fixed == "1"
    assert spec.text == "Yield ~ 1 + (1 | Batch)"
    assert parse_formula("Yield ~ (1 | Batch)").text == "Yield ~ 1 + (1 | Batch)"


def test_backquoted_response():
    spec = parse_formula("`my y` ~ x + (1 | g)")
    assert spec.response == "my y"


# --------------------------------------------------------------------------------------------------
# The design: names as R prints them (cake: recipe, temperature and replicate, 270 rows)
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cake():
    return load(
        str(data_path("cake.csv")),
        numeric=["angle"],
        categorical=["recipe", "replicate"],
        other=["temperature", "temp"],
    ).frame


@pytest.mark.parametrize(
    ("text", "factors", "xnames"),
    [
        (
            "angle ~ recipe + factor(temperature) + (1 | replicate)",
            set(),
            ["(Intercept)", "recipeB", "recipeC"] + [f"factor(temperature){t}" for t in (185, 195, 205, 215, 225)],
        ),
        (
            "angle ~ recipe * temp + (1 | replicate)",
            set(),
            ["(Intercept)", "recipeB", "recipeC", "temp", "recipeB:temp", "recipeC:temp"],
        ),
        ("angle ~ temp - 1 + (1 | replicate)", set(), ["temp"]),
        ("angle ~ 0 + temp + (1 | replicate)", set(), ["temp"]),
        ("angle ~ recipe + temperature + (1 | replicate)", {"temperature"}, None),
    ],
)
def test_fixed_effect_names_are_rs(cake, text, factors, xnames):
    design = build_design(parse_formula(text), cake, factors)
    if xnames is None:  # --factor temperature: R's treatment coding of a factor, named without factor()
        xnames = ["(Intercept)", "recipeB", "recipeC"] + [f"temperature{t}" for t in (185, 195, 205, 215, 225)]
    assert design.xnames == xnames
    assert design.X.shape == (270, len(xnames))


def test_interaction_group_levels_are_rs(cake):
    """recipe:replicate: levels 'A:1', ..., 'A:10' after 'A:9', the first factor varying slowest."""
    design = build_design(parse_formula("angle ~ 1 + (1 | recipe:replicate)"), cake, set())
    (term,) = design.terms
    assert term.group == "recipe:replicate"
    assert list(term.levels) == [f"{r}:{i}" for r in "ABC" for i in range(1, 16)]


def test_random_slope_columns(cake):
    design = build_design(parse_formula("angle ~ temp + (temp | replicate)"), cake, set())
    assert [t.names for t in design.terms] == [("(Intercept)", "temp")]
    design = build_design(parse_formula("angle ~ temp + (temp || replicate)"), cake, set())
    assert [(t.group, t.names) for t in design.terms] == [
        ("replicate", ("(Intercept)",)),
        ("replicate", ("temp",)),
    ]


# --------------------------------------------------------------------------------------------------
# lme4's term order and R's level order
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nlevels", "order"),
    [
        ([18], [0]),
        ([30, 10], [0, 1]),  # already decreasing: kept (pastes: cask:batch, then batch)
        ([10, 30], [1, 0]),  # (1 | batch/cask) is written batch first: lme4 puts cask:batch first
        ([24, 6], [0, 1]),  # penicillin
        ([3, 5, 2], [1, 0, 2]),  # rev(order(c(3, 5, 2))) = c(2, 1, 3)
        ([3, 3, 5], [2, 1, 0]),  # ties come out reversed: rev(order(c(3, 3, 5))) = c(3, 2, 1)
        ([5, 5], [0, 1]),  # no later term has more levels: unchanged
        ([5, 3, 3], [0, 1, 2]),
    ],
)
def test_lme4_term_order(nlevels, order):
    """mkReTrms: if (any(diff(nl) > 0)) reorder by rev(order(nl))."""
    assert lme4_order(nlevels) == order


@pytest.mark.parametrize(
    ("values", "levels", "labels"),
    [
        (["10", "9", "2", "1", "9"], ["1", "2", "9", "10"], None),  # numbers sort as numbers: '10' after '9'
        (["b", "a", "c", "b"], ["a", "b", "c"], None),  # text sorts as text
        (["x10", "x9", "x1"], ["x1", "x10", "x9"], None),  # text that contains digits is still text
        (["1.5", "10", "2"], ["1.5", "2", "10"], None),
        (["-1", "3", "0"], ["-1", "0", "3"], None),
        (["185", "175.0"], ["175", "185"], ["185", "175"]),  # R prints the number 175.0 as 175
    ],
)
def test_level_order_is_rs(values, levels, labels):
    got, codes = level_order(pd.Series(values))
    assert got == levels
    assert [got[c] for c in codes] == (labels or values)


def test_level_order_of_a_categorical_column_ignores_unused_categories():
    s = pd.Series(["3", "1", "20"], dtype="category").iloc[[0, 2]]
    labels, codes = level_order(s)
    assert labels == ["3", "20"]
    assert codes.tolist() == [0, 1]


def test_group_codes_for_an_interaction():
    frame = pd.DataFrame(
        {
            "a": pd.Series(["B", "A", "A", "B", "A"], dtype="category"),
            "b": pd.Series(["1", "10", "2", "1", "9"], dtype="category"),
        }
    )
    codes, labels = group_codes(frame, ("a", "b"))
    assert labels == ["A:2", "A:9", "A:10", "B:1"]  # combinations present only, first factor slowest
    assert [labels[c] for c in codes] == ["B:1", "A:10", "A:2", "B:1", "A:9"]
    codes, labels = group_codes(frame, ("b", "a"))
    assert labels == ["1:B", "2:A", "9:A", "10:A"]
    assert np.array_equal(np.bincount(codes), [2, 1, 1, 1])


# --------------------------------------------------------------------------------------------------
# The column options
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "formula"),
    [
        (("Reaction", ["Days"], ["Subject"], []), "Reaction ~ Days + (1 | Subject)"),
        (("Reaction", ["Days"], ["Subject"], ["Days"]), "Reaction ~ Days + (1 + Days | Subject)"),
        (("Yield", [], ["Batch"], []), "Yield ~ 1 + (1 | Batch)"),
        (("diameter", [], ["plate", "sample"], []), "diameter ~ 1 + (1 | plate) + (1 | sample)"),
        (("y", ["x1", "x2"], ["g"], []), "y ~ x1 + x2 + (1 | g)"),
        (("my y", ["a b"], ["g"], ["a b"]), "`my y` ~ `a b` + (1 + `a b` | g)"),
    ],
)
def test_build_formula(args, formula):
    assert build_formula(*args) == formula
    spec = parse_formula(formula)  # and it parses back
    assert spec.response == args[0]


def test_comma_separated_options():
    """--fixed x1,x2 --fixed x3 is --fixed x1 --fixed x2 --fixed x3."""
    assert split_list(("x1,x2", "x3")) == ["x1", "x2", "x3"]
    assert split_list(("x1, x2,",)) == ["x1", "x2"]
    want = build_formula("y", ["x1", "x2"], ["g"], [])
    assert build_formula("y", split_list(("x1,x2",)), split_list(("g",)), []) == want


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((None, [], ["g"], []), "--y"),
        (("y", [], [], ["x"]), "--slope needs --group"),
    ],
)
def test_build_formula_usage_errors(args, message):
    with pytest.raises(UsageError, match=message) as e:
        build_formula(*args)
    assert e.value.exit_code == 2


# --------------------------------------------------------------------------------------------------
# Syntax errors: FormulaError (exit 2), with the position
# --------------------------------------------------------------------------------------------------


def marked(text: str, pos: int) -> str:
    """The message's rendering of the formula with the error position marked (1-based position)."""
    return f"at position {pos}: {text[: pos - 1]}>>>{text[pos - 1 :]}"


@pytest.mark.parametrize(
    ("text", "what", "pos"),
    [
        ("y ~ x + (1 | g", "Unmatched '('", 9),
        ("y ~ x + 1 | g)", "Unmatched ')'", 14),
        ("y ~ (x", "Unmatched '('", 5),
        ("y x + (1 | g)", "exactly one '~'", 14),  # at the end: no '~' anywhere
        ("y ~ x ~ z + (1 | g)", "exactly one '~'", 7),  # at the second '~'
        ("~ x + (1 | g)", "no response", 1),
        ("y ~ ", "no terms", 5),
        ("y ~ x + (1 | )", "Missing the grouping factor", 14),
        ("y ~ x + (1 || )", "Missing the grouping factor", 15),
        ("y ~ x + ( | g)", "Missing the effects", 11),
        ("y ~ x | g", "must be in parentheses", 7),
        ("y ~ x + 1 + x | g", "must be in parentheses", 15),
        ("y ~ x + (1 | g | h)", "Only one '|'", 16),
        ("y ~ x + (1 | 2g)", "cannot start with a digit", 14),
        ("y ~ x + (1 | log(g))", "must be a column name", 14),
        ("y ~ x + + (1 | g)", "Empty term", 8),
        ("y ~ x + (1 | g) - (1 | h)", "cannot be subtracted", 19),
    ],
)
def test_syntax_errors_say_where(text, what, pos):
    with pytest.raises(FormulaError) as e:
        parse_formula(text)
    msg = str(e.value)
    assert e.value.exit_code == 2
    assert what in msg
    assert marked(text, pos) in msg, msg
    assert "\n" not in msg


def test_a_smooth_is_not_for_fit():
    with pytest.raises(FormulaError, match="mmcli gamm"):
        parse_formula("y ~ x + s(z) + (1 | g)")
    assert parse_formula("y ~ s(z) + (1 | g)", allow_smooths=True).smooths[0].var == "z"
