"""Result dicts of anova, confint, predict and compare -> rich tables (with mmcli/render.py, which holds the
shared formatting, the only modules that import rich)."""

from __future__ import annotations

import contextlib
from typing import Any

from rich.text import Text

from mmcli.emit import progress
from mmcli.render import _decimals, _plain_table, _show, fixed, p_coef, sig

# --------------------------------------------------------------------------------------------------
# --------------------------------------------------------------------------------------------------
# predict and compare
# --------------------------------------------------------------------------------------------------


def print_predict(d: dict[str, Any]) -> None:
    """Predictions for new rows, with their kind (population or conditional)."""
    rows = d["predictions"]
    cols = list(rows[0].keys()) if rows else ["fit"]
    t = _plain_table(*cols, right=tuple(range(len(cols))))
    for r in rows:
        t.add_row(*[_cell(r[c], c in ("fit", "se")) for c in cols])
    kind = (
        "conditional (random effects of each row's levels; 0 for a new level)"
        if d["re_form"] == "conditional"
        else "population level (random effects at zero)"
    )
    head = Text(f"Predictions, {kind}\n", style="bold")
    head.append(f"Formula: {d['fit']['formula']}   ({d['fit']['method']})", style="")
    _show(head, t)


def _cell(v: Any, result: bool) -> str:
    """A prediction to 6 significant digits; an echoed input value as given (0.5, not 0.500000)."""
    if result or v is None:
        return sig(v, 6)
    return f"{v:g}" if isinstance(v, float) else str(v)


def p_chisq(p: float | None) -> str:
    """Pr(>Chisq) as R prints it in an anova table: 4 significant digits, '< 2.2e-16' below R's epsilon."""
    if p is None:
        return ""
    return "< 2.2e-16" if p < 2.220446e-16 else f"{p:.4g}"


def print_compare(d: dict[str, Any]) -> None:
    """lme4's anova(m1, m2, ...) print: the models, then the table sorted by npar."""
    head = Text(f"Data: {d['data']}\nModels:\n", style="")
    head.append("\n".join(f"{r['model']}: {r['formula']}" for r in d["anova"]))
    cols = ["", "npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "Pr(>Chisq)"]
    t = _plain_table(*cols, right=tuple(range(1, len(cols))))
    chi = [r["Chisq"] for r in d["anova"] if r["Chisq"] is not None]
    dec = _decimals(chi) + 1 if chi else 3
    for r in d["anova"]:
        test = [fixed(r["Chisq"], dec), str(r["Df"])] if r["Df"] is not None else ["", ""]
        crit = [fixed(r["AIC"], 1), fixed(r["BIC"], 1), fixed(r["logLik"], 2), fixed(r["deviance"], 1)]
        t.add_row(r["model"], str(r["npar"]), *crit, *test, p_chisq(r["p_value"]))
    _show(head, t)


def print_anova(d: dict[str, Any]) -> None:
    """lmerTest's anova table: Sum Sq, Mean Sq, NumDF, DenDF, F value, Pr(>F)."""
    head = Text(f"Type III Analysis of Variance Table with {d['ddf_method']}'s method", style="bold")
    t = _plain_table("", "Sum Sq", "Mean Sq", "NumDF", "DenDF", "F value", "Pr(>F)", right=(1, 2, 3, 4, 5, 6))
    for r in d["anova"]:
        t.add_row(
            r["term"],
            sig(r["sum_sq"], 5),
            sig(r["mean_sq"], 5),
            "NA" if r["num_df"] is None else str(r["num_df"]),
            fixed(r["den_df"], 3),
            fixed(r["f_value"], 4),
            p_coef(r["p_value"]),
        )
    parts: list[Any] = [head, t]
    if not d["anova"]:
        parts.append(Text("(the model has no fixed terms besides the intercept)"))
    _show(*parts)


# confint
# --------------------------------------------------------------------------------------------------


def print_confint(d: dict[str, Any]) -> None:
    """lme4's confint() table: the row names, what each parameter is, and the two ends."""
    lo, hi = d["columns"]
    t = _plain_table("", "", lo, hi, right=(2, 3))
    for r in d["intervals"]:
        t.add_row(r["parameter"], r["description"], sig(r["lower"], 6), sig(r["upper"], 6))
    how = {"profile": "profile", "wald": "Wald", "boot": "parametric bootstrap"}[d["method"]]
    head = Text(f"{how.capitalize()} confidence intervals, level {d['level']:g}", style="bold")
    sub = Text(f"{d['fit']['formula']}  ({d['fit']['method']} fit)")
    if d["method"] == "boot":
        sub.append(f"  nsim = {d['nsim']}, seed = {d['seed']}")
    _show(head, sub, t)


def counter(what: str, total: int, delay: float = 1.0) -> contextlib.AbstractContextManager[Any]:
    """A progress callback that counts done of total (``what: 37 / 500``), on a terminal only, as progress()."""
    return progress(delay, what, lambda done, seconds: f"{what}: {done} / {total}, {seconds:.1f} s")
