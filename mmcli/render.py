"""Result dicts -> rich tables on standard output (JSON and CSV: :mod:`mmcli.emit`, whose functions are
reachable from here too). With render_inference.py, the only modules that import rich.

Each result is rendered whole in memory and written with one write: an interrupt before that leaves standard
output empty, and `> out.json` holds the whole result or nothing of it.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any

from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from mmcli.emit import (
    write_text,
)


def _console() -> Console:
    tty = sys.stdout.isatty()
    return Console(file=sys.stdout, width=None if tty else 100, highlight=False, soft_wrap=False)


def err_console() -> Console:
    return Console(file=sys.stderr, highlight=False)


def _show(*parts: Any) -> None:
    """Rich renderables as one block of text (with colour on a terminal), written at once."""
    console = _console()
    with console.capture() as captured:
        console.print(Group(*parts))
    write_text(captured.get())


# --------------------------------------------------------------------------------------------------
# number formatting, close to R's print methods
# --------------------------------------------------------------------------------------------------


def sig(x: float | None, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "NA"
    if x == 0:
        return "0"
    mag = math.floor(math.log10(abs(x)))
    if mag >= 6 or mag < -4:
        return f"{x:.{digits - 1}e}"
    dec = max(digits - 1 - mag, 0)
    return f"{x:.{dec}f}"


def fixed(x: float | None, dec: int) -> str:
    if x is None or not math.isfinite(x):
        return "NA"
    if abs(x) >= 1e7 or (x != 0 and abs(x) < 10 ** (-dec)):
        return f"{x:.{max(dec, 3)}e}"
    return f"{x:.{dec}f}"


def _plain_table(*headers: str, right: tuple[int, ...] = ()) -> Table:
    t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1))
    for i, h in enumerate(headers):
        t.add_column(h, justify="right" if i in right else "left", no_wrap=True)
    return t


def _decimals(values: list[float | None]) -> int:
    """Decimals that show about 4 significant digits of the smallest nonzero magnitude (printCoefmat-like)."""
    mags = [abs(v) for v in values if v is not None and math.isfinite(v) and v != 0]
    if not mags:
        return 4
    m = math.floor(math.log10(min(mags)))
    return int(min(max(3 - m, 1), 6))


# --------------------------------------------------------------------------------------------------
# fit
# --------------------------------------------------------------------------------------------------


def fit_renderables(d: dict[str, Any]) -> list[Any]:
    """lme4's summary() of a fit: header, criteria, scaled residuals, random and fixed effects, flags."""
    reml = d["method"] == "REML"
    kind = {"gamm": "Generalized additive mixed model", "gam": "Generalized additive model (mgcv's gam)"}.get(
        d.get("model", ""), "Linear mixed model"
    )
    head = Text()
    head.append(f"{kind} fit by {'REML' if reml else 'maximum likelihood'}\n", style="bold")
    head.append(f"Formula: {d['formula']}\n")
    head.append(f"   Data: {d.get('data', '')}")
    out: list[Any] = [head]
    stats = _plain_table(
        "AIC", "BIC", "logLik", "deviance" if not reml else "REML crit.", "df.resid", right=(0, 1, 2, 3, 4)
    )
    crit = d["reml_criterion"] if reml else d["deviance"]
    stats.add_row(fixed(d["aic"], 1), fixed(d["bic"], 1), fixed(d["loglik"], 1), fixed(crit, 1), str(d["df_resid"]))
    out.append(stats)
    if d.get("scaled_residuals"):
        res = _plain_table("Min", "1Q", "Median", "3Q", "Max", right=(0, 1, 2, 3, 4))
        res.add_row(*[fixed(v, 4) for v in d["scaled_residuals"]])
        out += [Text("\nScaled residuals:", style="bold"), res]
    out += _random_effects(d) + _fixed_effects(d)
    if d.get("smooths"):
        st = _plain_table("term", "basis", "k", "edf", "Ref.df", "F", "p-value", "lambda", right=(2, 3, 4, 5, 6, 7))
        for s in d["smooths"]:
            tests = (fixed(s.get("ref_df"), 3), sig(s.get("F")), p_coef(s.get("p_value")))
            st.add_row(s["term"], s["basis"], _each(s["k"], str), fixed(s["edf"], 3), *tests, _each(s["lambda"], sig))
        out += [Text("\nSmooth terms:", style="bold"), st]
    if d.get("singular"):
        out.append(
            Text("boundary (singular) fit: a variance component is estimated as zero (see theta)", style="yellow")
        )
    if not d.get("converged", True):
        out.append(Text(f"The optimizer did not converge: {d['optimizer']['message']}", style="red"))
    return out


def _each(v: Any, fmt: Callable[[Any], str]) -> str:
    """One value, or a tensor product's list of values (one per margin or penalty), comma-separated."""
    return ",".join(fmt(x) for x in v) if isinstance(v, list) else fmt(v)


def _random_effects(d: dict[str, Any]) -> list[Any]:
    """lme4's VarCorr print, then the number of observations and of levels."""
    corr_by_group = {(c["group"], c["term2"]): c["corr"] for c in d.get("correlations", [])}
    has_corr = bool(corr_by_group)
    cols = ["Groups", "Name", "Variance", "Std.Dev."] + (["Corr"] if has_corr else [])
    rt = _plain_table(*cols, right=(2, 3, 4))
    prev = None
    for r in d["random_effects"]:
        g = r["group"]
        row = [g if g != prev else "", r["term"] or "", sig(r["variance"]), sig(r["std_dev"])]
        if has_corr:
            c = corr_by_group.get((g, r["term"] or ""))
            row.append(fixed(c, 2) if c is not None else "")
        rt.add_row(*row)
        prev = g
    groups = ", ".join(f"{g}, {n}" for g, n in d["ngroups"].items())
    obs = f"Number of obs: {d['nobs']}" + (f", groups:  {groups}" if groups else "")
    return [Text("\nRandom effects:", style="bold"), rt, Text(obs)]


def _fixed_effects(d: dict[str, Any]) -> list[Any]:
    """The fixed effects with standard errors and t values, and their correlations (2 to 12 of them)."""
    fe = d["fixed_effects"]
    out: list[Any] = []
    if fe:
        dec = _decimals([x["std_error"] for x in fe])
        if "df" in fe[0]:
            ft = df_table(fe, dec)
        else:
            ft = _plain_table("", "Estimate", "Std. Error", "t value", right=(1, 2, 3))
            for x in fe:
                ft.add_row(x["term"], fixed(x["estimate"], dec), fixed(x["std_error"], dec), fixed(x["t_value"], 2))
        out += [Text("\nFixed effects:", style="bold"), ft]
    cf = d.get("fixed_correlation") or []
    if 1 < len(fe) <= 12:
        short = [_abbrev(x["term"], 6) for x in fe]  # lme4: columns abbreviated to 6, rows to 11 characters
        ct = _plain_table("", *short[:-1], right=tuple(range(1, len(fe))))
        for i in range(1, len(fe)):
            row = _abbrev(fe[i]["term"], 11)
            ct.add_row(row, *[fixed(cf[i][j], 3) if j < i else "" for j in range(len(fe) - 1)])
        out += [Text("\nCorrelation of Fixed Effects:", style="bold"), ct]
    return out


def _abbrev(name: str, minlength: int) -> str:
    """R's abbreviate(name, minlength), as lme4's summary shortens the names of the fixed effects: lower-case
    vowels dropped from the right (never the first character), then lower-case letters, then the end cut
    ("(Intercept)" -> "(Intr)", "period2" -> "perid2")."""
    chars = list(name)
    for drop in ("aeiou", "abcdefghijklmnopqrstuvwxyz"):
        i = len(chars) - 1
        while len(chars) > minlength and i > 0:
            if chars[i] in drop:
                del chars[i]
            i -= 1
    return "".join(chars[:minlength] if len(chars) > minlength else chars)


def print_fit(d: dict[str, Any]) -> None:
    _show(*fit_renderables(d))


def print_ranef(rows: list[dict[str, Any]]) -> None:
    t = _plain_table("Group", "Level", "Term", "Mode", "Cond. SD", right=(3, 4))
    for r in rows:
        t.add_row(r["group"], str(r["level"]), r["term"], sig(r["mode"], 5), sig(r["cond_sd"], 5))
    _show(Text("Conditional modes of the random effects (BLUPs) and conditional SDs", style="bold"), t)


# --------------------------------------------------------------------------------------------------
# spline
# --------------------------------------------------------------------------------------------------


def print_spline(d: dict[str, Any]) -> None:
    parts: list[Any] = []
    head = Text()
    head.append("Penalized regression spline (rk basis, Wood 2006 ch. 3)\n", style="bold")
    head.append(f"{d['y']} ~ s({d['x']}),  n = {d['n']},  {len(d['knots'])} interior knots\n")
    how = {"fixed": "given", "gcv": "chosen by GCV", "reml": "chosen by REML"}.get(
        d["lambda_method"], d["lambda_method"]
    )
    head.append(f"lambda = {sig(d['lambda'], 6)} ({how})")
    parts.append(head)
    st = _plain_table("EDF", "RSS", "sigma", "GCV", "R-sq.", right=(0, 1, 2, 3, 4))
    st.add_row(fixed(d["edf"], 3), sig(d["rss"]), sig(d["sigma"]), sig(d["gcv"]), fixed(d["r_squared"], 4))
    parts.append(st)
    kt = _plain_table("knot", d["x"], "scaled", right=(1, 2))
    for i, (k, ks) in enumerate(zip(d["knots"], d["knots_scaled"]), 1):
        kt.add_row(str(i), sig(k, 6), fixed(ks, 4))
    parts.append(Text("\nKnots:", style="bold"))
    parts.append(kt)
    ct = _plain_table("coefficient", "estimate", right=(1,))
    labels = ["(Intercept)", d["x"]] + [f"rk({d['x']}, knot {i})" for i in range(1, len(d["knots"]) + 1)]
    for lab, c in zip(labels, d["coefficients"]):
        ct.add_row(lab, sig(c, 6))
    parts.append(Text("\nCoefficients (on the scaled x):", style="bold"))
    parts.append(ct)
    if d.get("mixed_form"):
        m = d["mixed_form"]
        parts.append(
            Text("As a mixed model (Wood 2017, 6.6): y = X_F b_F + Z g + e,  g ~ N(0, sigma_g^2 I)", style="bold")
        )
        parts.append(Text("  X_F = X U_F (the penalty's null space: constant and linear), Z = X U_R D+^(-1/2)"))
        parts.append(Text(f"  fitted by REML: criterion {sig(m.get('reml_criterion'), 8)}"))
        mt = _plain_table("Groups", "Name", "Variance", "Std.Dev.", right=(2, 3))
        for r in m.get("random_effects", []):
            mt.add_row(r["group"], r["term"] or "", sig(r["variance"], 6), sig(r["std_dev"], 6))
        parts.append(mt)
        ft = _plain_table("fixed", "estimate", right=(1,))
        for f in m.get("fixed_effects", []):
            ft.add_row(f["term"], sig(f["estimate"], 6))
        parts.append(ft)
        parts.append(Text(f"  lambda = sigma^2 / sigma_g^2 = {sig(m.get('lambda'), 6)}"))
    if d.get("predictions"):
        pt = _plain_table(d["x"], "fit", "se", right=(0, 1, 2))
        for p in d["predictions"]:
            pt.add_row(sig(p["x"], 6), sig(p["fit"], 6), sig(p["se"], 4))
        parts.append(Text("\nPredictions:", style="bold"))
        parts.append(pt)
    _show(*parts)


def print_gamm(d: dict[str, Any], *, predictions: bool) -> None:
    """The gamm's fit, and its predictions when asked for."""
    parts = fit_renderables(d)
    if predictions:
        rows = d.get("predictions") or []
        parts += _predictions(rows, list(rows[0].keys()) if rows else [], d.get("re_form") == "conditional")
    _show(*parts)


def _predictions(rows: list[dict[str, Any]], cols: list[str], conditional: bool = False) -> list[Any]:
    t = _plain_table(*cols, right=tuple(range(len(cols))))
    for r in rows:
        t.add_row(*[sig(r[c], 6) if isinstance(r[c], float) or r[c] is None else str(r[c]) for c in cols])
    what = (
        "conditional (random effects of each row's levels; 0 for a new level)"
        if conditional
        else "population level, random effects at zero"
    )
    return [Text(f"Predictions, {what}:", style="bold"), t]


# --------------------------------------------------------------------------------------------------
# degrees of freedom and anova (lmerTest's summary and anova)
# --------------------------------------------------------------------------------------------------


def p_coef(p: float | None) -> str:
    """A p-value as R's printCoefmat prints it: three significant digits, or < 2e-16."""
    if p is None or not math.isfinite(p):
        return "NA"
    return "< 2e-16" if p < 2.2e-16 else f"{p:.3g}"


def df_table(fe: list[dict[str, Any]], dec: int) -> Table:
    """lmerTest's coefficient table: Estimate, Std. Error, df, t value, Pr(>|t|)."""
    ft = _plain_table("", "Estimate", "Std. Error", "df", "t value", "Pr(>|t|)", right=(1, 2, 3, 4, 5))
    for x in fe:
        ft.add_row(
            x["term"],
            fixed(x["estimate"], dec),
            fixed(x["std_error"], dec),
            fixed(x["df"], 3),
            fixed(x["t_value"], 2),
            p_coef(x["p_value"]),
        )
    return ft
