"""`mmcli gamm --predict`: predictions of a fitted gamm for the rows of another CSV, at the population level
(random effects at zero, with mgcv's standard errors) or conditional on each row's grouping levels.

Conditional (lme4's ``re.form = NULL`` on gamm4's ``fit$mer``): the population prediction, smooths included,
plus for each random-effects term of the formula the row's template columns (intercept, slopes) times the
conditional mode of the row's level; a level the fit has not seen contributes 0, as lme4's
``allow.new.levels = TRUE``. The smooths' own random parts are part of the population curve, not of this sum.
No standard error is given for a conditional prediction, as lme4's ``predict`` gives none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from mmcli import data as dataio
from mmcli.errors import DataError, UsageError

if TYPE_CHECKING:
    import pandas as pd

    from mmcli.commands import ModelOptions
    from mmcli.design import Design
    from mmcli.formula import ModelSpec
    from mmcli.gamm import GammFit
    from mmcli.predict import RandomPart

RE_FORMS = ("population", "conditional")


def grouping_parts(spec: ModelSpec, g: GammFit, frame: pd.DataFrame, factors: set[str]) -> list[tuple[int, RandomPart]]:
    """Each random-effects term of the formula with the index of its term in the fit, matched by group and
    column names (the fit orders its terms as lme4 does, the smooths' random parts among them)."""
    from mmcli.design import categorical_columns
    from mmcli.fixed import model_matrix
    from mmcli.predict import RandomPart

    cats = categorical_columns(spec, frame, factors)
    free = [i for i, t in enumerate(g.lmm.terms) if t.indicator]
    out = []
    for rt in spec.random:
        part = RandomPart(rt.factors, model_matrix(rt.terms, frame, cats)[1])
        i = next(i for i in free if g.lmm.terms[i].group == rt.group and g.lmm.terms[i].names == tuple(part.part.names))
        free.remove(i)
        out.append((i, part))
    return out


def conditional_effects(
    g: GammFit, parts: list[tuple[int, RandomPart]], frame: pd.DataFrame
) -> tuple[np.ndarray, dict[str, int], np.ndarray]:
    """Sum over the grouping terms of T_new b[level] for the new rows (0 for a new level); the number of rows
    with a new level per grouping factor; and which rows have one."""
    from mmcli.predict import _labels

    n = len(frame)
    total, new = np.zeros(n), np.zeros(n, dtype=bool)
    per: dict[str, int] = {}
    for i, rp in parts:
        term, b = g.lmm.terms[i], g.lmm.ranef[i]
        index = {lab: j for j, lab in enumerate(term.levels)}
        lev = np.array([index.get(lab, -1) for lab in _labels(frame, rp.factors)], dtype=np.int64)
        seen = lev >= 0
        T = rp.part.rows(frame)
        total += np.where(seen, np.einsum("ij,ij->i", T, b[np.where(seen, lev, 0)]), 0.0)
        new |= ~seen
        if not seen.all():
            per[term.group] = max(per.get(term.group, 0), int((~seen).sum()))
    return total, per, new


def check_re_form(spec: ModelSpec, re_form: str, predict: str | None) -> None:
    """--re-form names one of the two kinds; conditional needs --predict and a random-effects term."""
    if re_form not in RE_FORMS:
        raise UsageError(f"--re-form is 'population' or 'conditional', not '{re_form}'.")
    if re_form == "conditional" and not predict:
        raise UsageError("--re-form conditional says how to predict: give the rows with --predict FILE.csv.")
    if re_form == "conditional" and not spec.random:
        raise UsageError(
            f"The model '{spec.text}' has no random-effects term, so its conditional predictions are its "
            "population predictions: leave out --re-form conditional."
        )


def gamm_ranef_check(spec: ModelSpec) -> bool:
    """Whether ranef fits this formula as a gamm (it has smooths); such a formula needs a grouping factor."""
    if not spec.smooths and not spec.tensors:
        return False
    if not spec.random:
        raise UsageError(
            f"The model '{spec.text}' has no random-effects term: its smooths' random parts are not listed by "
            "ranef. Add one, e.g. '+ (1 | group)'."
        )
    return True


def predict_table(
    path: str, spec: ModelSpec, opts: ModelOptions, conditional: bool, frame: pd.DataFrame | None = None
) -> tuple[dataio.Table, list[str]]:
    """The --predict file of a gamm or gam formula and the columns the model needs from it, read with the
    smooths' and offsets' variables as numbers and the grouping columns (conditional predictions only) as
    levels. With the fitted ``frame``, a grouping column the fit read as numbers stays numeric."""
    from mmcli.commands import _predict_table

    groups = {f for t in spec.random for f in t.factors}
    response = {spec.response, *spec.failures}  # cbind(successes, failures): neither is needed to predict
    need = [c for c in spec.variables() if c not in response and (conditional or c not in groups)]
    svars = (
        [v for s in spec.smooths for v in s.variables]
        + [o.var for o in spec.offsets]
        + [v for t in spec.tensors for v in t.vars]
    )
    cats = [
        c
        for c in need
        if c in opts.factor or (c in groups and c not in svars and (frame is None or frame[c].dtype.kind not in "fiu"))
    ]
    new = _predict_table(
        path,
        numeric=[c for c in need if c in svars],
        categorical=cats,
        other=[c for c in need if c not in svars and c not in cats],
        na=opts.na,
    )
    return new, need


def gamm_predictions(
    path: str,
    spec: ModelSpec,
    opts: ModelOptions,
    design: Design,
    g: GammFit,
    frame: pd.DataFrame,
    re_form: str = "population",
) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows of the --predict file with their predictions: ``fit`` and ``se`` (population), or ``fit`` alone
    (conditional), and the notes to show."""
    from mmcli.commands import predict_notes
    from mmcli.predict import levels_note

    check_re_form(spec, re_form, path)
    conditional = re_form == "conditional"
    new, need = predict_table(path, spec, opts, conditional, frame)
    notes = predict_notes(new)
    try:
        rows = design.new_rows(new.frame)
        fit, se = g.predict(rows)
        if conditional:
            parts = grouping_parts(spec, g, frame, set(opts.factor))
            extra, per, is_new = conditional_effects(g, parts, new.frame)
            notes += [n for n in [levels_note(per, is_new, "--predict")] if n]
    except DataError as e:
        raise DataError(f"In the --predict file: {e}") from None
    values = dataio.records(new, need)
    if conditional:
        return [{**v, "fit": float(f + e)} for v, f, e in zip(values, fit, extra)], notes
    return [{**v, "fit": float(f), "se": float(s)} for v, f, s in zip(values, fit, se)], notes


def gam_ranef_rows(d: dict[str, Any]) -> list[dict[str, Any]]:
    """The random intercepts of a model fitted as mgcv's gam (a te() formula): the coefficients of each
    s(g, bs = "re") (mgcv's conditional modes) and their posterior standard deviations, sqrt(diag(Vp))."""
    return [
        {"group": s["term"][2:-1], "level": lev, "term": "(Intercept)", "mode": b, "cond_sd": sd}
        for s in d["smooths"]
        if s["basis"] == "re"
        for lev, b, sd in zip(s["levels"], s["coefficients"], s["std_errors"])
    ]
