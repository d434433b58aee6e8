"""`mmcli predict`: a fitted LMM's predictions for new rows, as lme4's ``predict.merMod``.

Population level (``re.form = NA``): X_new beta + offset, with the standard error sqrt(diag(X_new V X_new')),
V the covariance of beta. Conditional (``re.form = NULL``, lme4's default): the same plus, for every
random-effects term, the row's template columns (intercept, slopes, taken from the new row) times the
conditional mode b of the row's level. A level the fit has not seen contributes 0 for that term, as lme4's
``allow.new.levels = TRUE`` (Bates et al. 2015, section 2: b ~ N(0, sigma^2 Lambda Lambda'), so its best
prediction without data is its mean).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mmcli import data as dataio
from mmcli.commands import ModelOptions, Outcome, Progress, _load_model_data
from mmcli.errors import DataError, UsageError
from mmcli.formula.syntax import names_in
from mmcli.report import dropped_columns_note, fit_dict

if TYPE_CHECKING:
    import pandas as pd

    from mmcli.design import Design
    from mmcli.fixed import FixedPart
    from mmcli.formula import ModelSpec
    from mmcli.lmm import LmmFit

RE_FORMS = ("conditional", "population")


@dataclass(frozen=True, eq=False)
class RandomPart:
    """How a random-effects term is built for new rows: its grouping columns (``a:b``: both, in lme4's order)
    and the model matrix of its own formula (intercept, slopes)."""

    factors: tuple[str, ...]
    part: FixedPart


@dataclass(frozen=True, eq=False)
class NewRows:
    """New rows in the fitted model's terms: X in the columns of ``fit.xnames``, the offset, and per
    random-effects term (in the fit's order) the template columns and the index of each row's level in the
    term's levels (-1 for a level the fit has not seen)."""

    X: np.ndarray
    offset: np.ndarray | None
    T: list[np.ndarray]
    level: list[np.ndarray]


def random_parts(spec: ModelSpec, design: Design, frame: pd.DataFrame, factors: set[str]) -> list[RandomPart]:
    """The random-effects terms of the spec, in the design's (lme4's) order, each with the model matrix
    builder of its formula, learned from the fitted data as the design learned it."""
    from mmcli.design import categorical_columns, lme4_order
    from mmcli.fixed import model_matrix

    cats = categorical_columns(spec, frame, factors)
    parts = [RandomPart(rt.factors, model_matrix(rt.terms, frame, cats)[1]) for rt in spec.random]
    order = lme4_order([len(set(_labels(frame, p.factors))) for p in parts])
    parts = [parts[i] for i in order]
    assert [tuple(p.part.names) for p in parts] == [t.names for t in design.terms]
    return parts


def _labels(frame: pd.DataFrame, factors: tuple[str, ...]) -> np.ndarray:
    """Each row's level of the grouping factor a:b, labelled as lme4 labels it ('a1:b2'; numbers as R prints
    them)."""
    out: np.ndarray | None = None
    for f in factors:
        labels, codes = dataio.level_order(frame[f])
        lab = np.asarray(labels, dtype=object)[codes]
        out = lab if out is None else out + ":" + lab
    assert out is not None
    return out


def new_rows(design: Design, parts: list[RandomPart], fit: LmmFit, frame: pd.DataFrame, *, random: bool) -> NewRows:
    """The new rows in the fitted model's terms (``random``: the random-effects terms too). A fixed-effect
    factor level the fit has not seen is an error; a grouping level it has not seen is marked -1."""
    X = design.fixed.rows(frame)
    keep = [design.xnames.index(n) for n in fit.xnames]  # aliased columns were dropped by the fit
    from mmcli.design import offset_values

    T, level = [], []
    if random:
        for term, rp in zip(fit.terms, parts):
            T.append(rp.part.rows(frame))
            index = {lab: j for j, lab in enumerate(term.levels)}
            level.append(np.array([index.get(lab, -1) for lab in _labels(frame, rp.factors)], dtype=np.int64))
    return NewRows(X=X[:, keep], offset=offset_values(frame, design.offsets), T=T, level=level)


def predict_population(fit: LmmFit, rows: NewRows) -> tuple[np.ndarray, np.ndarray]:
    """X_new beta + offset, and its standard error sqrt(diag(X_new V X_new')) (lme4's ``re.form = NA``)."""
    fitted = rows.X @ fit.beta
    if rows.offset is not None:
        fitted = fitted + rows.offset
    se = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", rows.X, fit.vcov, rows.X), 0.0))
    return fitted, se


def predict_conditional(fit: LmmFit, rows: NewRows) -> tuple[np.ndarray, np.ndarray]:
    """X_new beta + offset + sum over terms of T_new b[level] (lme4's ``re.form = NULL``), a new level's b
    being 0 (``allow.new.levels = TRUE``); and for each row whether some term's level was new."""
    fitted = predict_population(fit, rows)[0]
    new = np.zeros(fitted.shape[0], dtype=bool)
    for b, T, lev in zip(fit.ranef, rows.T, rows.level):
        seen = lev >= 0
        fitted = fitted + np.where(seen, np.einsum("ij,ij->i", T, b[np.where(seen, lev, 0)]), 0.0)
        new |= ~seen
    return fitted, new


def needed_columns(spec: ModelSpec, *, random: bool) -> list[str]:
    """The columns of the new data a prediction needs, in the formula's order: the fixed part's variables and
    offsets; with ``random`` also the slopes' variables and the grouping columns."""
    cols = [n for _, t in spec.fixed_terms for n in names_in(t)] + [o.var for o in spec.offsets]
    if random:
        for rt in spec.random:
            cols += [n for _, t in rt.terms for n in names_in(t)] + list(rt.factors)
    return list(dict.fromkeys(c for c in cols if c != spec.response))


def _load_newdata(
    path: str, spec: ModelSpec, opts: ModelOptions, need: list[str], random: bool, fitted: pd.DataFrame
) -> dataio.Table:
    """The new data's needed columns, typed as the fitted data's are (a column numeric there must be numeric
    here); errors say which file they are about."""
    groups = {f for rt in spec.random for f in rt.factors} if random else set()
    numeric = [o.var for o in spec.offsets]
    numeric += [c for c in need if c not in groups and c not in opts.factor and fitted[c].dtype.kind in "fiu"]
    numeric = list(dict.fromkeys(numeric))
    categorical = [c for c in need if (c in groups or c in opts.factor) and c not in numeric]
    try:
        if not need:  # an intercept-only population prediction: only the number of rows matters
            table = dataio.load_all(path, na=opts.na)
            return dataio.Table(table.frame.iloc[:, :0], table.source, table.columns)
        return dataio.load(
            path,
            numeric=numeric,
            categorical=categorical,
            other=[c for c in need if c not in numeric and c not in categorical],
            na=opts.na,
        )
    except DataError as e:
        raise DataError(f"In the --newdata file: {e}") from None


def run_predict(
    path: str,
    opts: ModelOptions,
    *,
    newdata: str,
    re_form: str = "conditional",
    reml: bool = False,
    method: str = "fast",
    progress: Progress = None,
) -> Outcome:
    """`mmcli predict`: fit the model to DATA, predict for the rows of NEWDATA (population or conditional)."""
    from mmcli.design import build_design

    if re_form not in RE_FORMS:
        raise UsageError(f"--re-form is 'population' or 'conditional', not '{re_form}'.")
    if path == "-" and newdata == "-":
        raise UsageError("The data and the --newdata file cannot both be - (standard input): give one as a file.")
    spec = opts.spec(smooths=False)
    if not spec.random:
        raise UsageError(
            f"The model '{spec.text}' has no random-effects term: add one, e.g. '+ (1 | group)', or use --group COL."
        )
    random = re_form == "conditional"
    table = _load_model_data(path, spec, opts)
    design = build_design(spec, table.frame, set(opts.factor), weights=opts.weights)
    parts = random_parts(spec, design, table.frame, set(opts.factor)) if random else []
    fit = design.model(method).fit(reml, progress)
    need = needed_columns(spec, random=random)
    new = _load_newdata(newdata, spec, opts, need, random, table.frame)
    try:
        rows = new_rows(design, parts, fit, new.frame, random=random)
    except DataError as e:
        raise DataError(f"In the --newdata file: {e}") from None
    notes = list(table.notes) + [f"In the --newdata file: {n[0].lower()}{n[1:]}" for n in new.notes]
    notes += [n for n in [dropped_columns_note(fit.dropped_columns)] if n]
    values = dataio.records(new, need) if need else [{} for _ in range(len(new.frame))]
    if random:
        fitted, is_new = predict_conditional(fit, rows)
        preds: list[dict[str, Any]] = [{**v, "fit": float(f)} for v, f in zip(values, fitted)]
        notes += [n for n in [new_levels_note(fit, rows)] if n]
        columns = [*need, "fit"]
    else:
        fitted, se = predict_population(fit, rows)
        preds = [{**v, "fit": float(f), "se": float(s)} for v, f, s in zip(values, fitted, se)]
        is_new = np.zeros(len(preds), dtype=bool)
        columns = [*need, "fit", "se"]
    d = {
        "re_form": re_form,
        "newdata": new.source,
        "predictions": preds,
        "new_level_rows": int(is_new.sum()),
        "dropped_rows": new.dropped_rows,
        "fit": fit_dict(
            fit,
            formula=spec.text,
            ngroups=design.ngroups,
            dropped_rows=table.dropped_rows,
            data=table.source,
            weights=opts.weights,
            offset=[str(o) for o in spec.offsets],
        ),
    }
    return Outcome(d, preds, columns, fit, notes, fit.converged)


def new_levels_note(fit: LmmFit, rows: NewRows) -> str | None:
    """How many rows have a grouping level the fit has not seen, per grouping factor."""
    if not rows.level:
        return None
    any_new = np.zeros(rows.X.shape[0], dtype=bool)
    per: dict[str, int] = {}
    for term, lev in zip(fit.terms, rows.level):
        any_new |= lev < 0
        if np.any(lev < 0):
            per[term.group] = max(per.get(term.group, 0), int(np.sum(lev < 0)))
    return levels_note(per, any_new, "--newdata")


def levels_note(per: dict[str, int], any_new: np.ndarray, option: str) -> str | None:
    """The note on rows of the ``option`` file with a new level: ``per`` counts them per grouping factor,
    ``any_new`` marks the rows with at least one."""
    if not per:
        return None
    n, m = int(any_new.sum()), any_new.size
    where = ", ".join(f"{g}: {k}" for g, k in per.items())
    verb = "has" if n == 1 else "have"
    return (
        f"{n} of {m} rows of the {option} file {verb} a level the fitted data do not have ({where}); "
        "for such a row the random effect of that factor is 0 (population level), as lme4's allow.new.levels = TRUE."
    )
