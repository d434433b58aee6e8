"""What each command computes, as one library function per command: read the data, build the design, fit,
report. The command line only parses options, calls one of these and renders what it returns; a program
can call them too. No printing here: notes come back with the result."""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mmcli import data as dataio
from mmcli.columns import Columns
from mmcli.errors import DataError, ModelError, UsageError
from mmcli.formula import ModelSpec, build_formula, parse_formula
from mmcli.formula.syntax import names_in
from mmcli.report import dropped_columns_note, fit_dict, gamm_dict, mixed_spline_dict, ranef_rows, spline_dict

Progress = Callable[[int, float], None] | None


@dataclass
class Outcome:
    """A command's result: the JSON object, the rows and columns of its CSV, the fitted object (for figures),
    the notes for standard error, and whether the optimizer converged."""

    data: dict[str, Any]
    csv_rows: list[dict[str, Any]]
    csv_columns: list[str]
    result: Any = None
    notes: list[str] = field(default_factory=list)
    converged: bool = True


@dataclass(frozen=True)
class ModelOptions:
    """The model as the options give it: a formula, or the columns that build one."""

    formula: str | None = None
    y: str | None = None
    fixed: tuple[str, ...] = ()
    group: tuple[str, ...] = ()
    slope: tuple[str, ...] = ()
    smooth: tuple[str, ...] = ()
    bs: str = "cr"
    k: int = 10
    factor: tuple[str, ...] = ()
    weights: str | None = None
    na: tuple[str, ...] = ()  # cells read as missing besides NA and the empty cell (data and --predict files)

    def spec(self, *, smooths: bool) -> ModelSpec:
        if self.formula and (self.y or self.fixed or self.group or self.slope or self.smooth):
            raise UsageError("Give either a formula or the column options (--y, --fixed, --group, ...), not both.")
        text = self.formula or build_formula(
            self.y, list(self.fixed), list(self.group), list(self.slope), list(self.smooth), self.bs, self.k
        )
        return parse_formula(text, allow_smooths=smooths)


def _load_model_data(
    path: str, spec: ModelSpec, opts: ModelOptions, *, response_as_read: bool = False, arrays: bool = False
) -> dataio.Table:
    """The columns the model uses: the response, smooth variables, weights and offsets numeric; grouping and
    --factor columns categorical; the rest as read (the response too with ``response_as_read``: a binomial
    response may be text with two levels). ``arrays``: the frame may be Columns (:func:`mmcli.data.load`)."""
    used = spec.variables()
    numeric = [] if response_as_read else [spec.response]
    numeric += list(spec.failures) + [v for s in spec.smooths for v in s.variables] + [o.var for o in spec.offsets]
    numeric += [v for t in spec.tensors for v in t.vars]
    numeric += [opts.weights] if opts.weights else []
    numeric = list(dict.fromkeys(numeric))
    # a grouping column is a factor inside its random-effects term only: used elsewhere too (Days in
    # 'Reaction ~ Days + (1 | Days)'), it keeps the type it is read with, as in lme4
    elsewhere = {n for _, t in spec.fixed_terms for n in names_in(t)} | {
        n for rt in spec.random for _, t in rt.terms for n in names_in(t)
    }
    groups = [f for t in spec.random for f in t.factors if f not in elsewhere and f not in numeric]
    categorical = list(dict.fromkeys(groups + [f for f in opts.factor if f in used]))
    other = [c for c in used if c not in numeric and c not in categorical]
    table = dataio.load(path, numeric=numeric, categorical=categorical, other=other, na=opts.na, arrays=arrays)
    for f in opts.factor:
        if f not in used:
            dataio.resolve(f, list(table.columns))
    return table


def _lmm_outcome(
    path: str, opts: ModelOptions, reml: bool, method: str, progress: Progress, ddf: str = "none", anova: bool = False
) -> Outcome:
    from mmcli.design import build_design
    from mmcli.inference import check_ddf
    from mmcli.lmm import preload

    spec = opts.spec(smooths=False)
    check_linear_response(spec)
    if not spec.random:
        raise UsageError(
            f"The model '{spec.text}' has no random-effects term: add one, e.g. '+ (1 | group)', or use --group COL."
        )
    loading = threading.Thread(target=preload, daemon=True)
    loading.start()  # the fit's compiled routines load while the data are read (pyarrow reads without the lock)
    table = _load_model_data(path, spec, opts, arrays=not anova)  # anova reads the data as a pandas frame
    loading.join()
    design = build_design(spec, table.data, set(opts.factor), weights=opts.weights)
    check_ddf(ddf, reml)
    fixed_terms = _fixed_terms(design, table.frame) if anova else None  # needs the data: before they go
    source, dropped_rows, notes = table.source, table.dropped_rows, list(table.notes)
    cycles = not isinstance(table.data, Columns)
    del table  # the columns now live in the design: free the frame before the fit
    if cycles:
        gc.collect()  # pandas objects hold reference cycles: without this the frame outlives the fit
    model = design.model(method, overwrite_y=True)  # y is not used again: its memory holds the working response
    fit = model.fit(reml, progress)
    d = fit_dict(
        fit,
        formula=spec.text,
        ngroups=design.ngroups,
        dropped_rows=dropped_rows,
        data=source,
        weights=opts.weights,
        offset=[str(o) for o in spec.offsets],
    )
    notes += [n for n in [dropped_columns_note(fit.dropped_columns)] if n]
    columns = ["term", "estimate", "std_error", "t_value"]
    out = Outcome(d, d["fixed_effects"], columns, fit, notes, fit.converged)
    if ddf != "none":
        _add_inference(out, model, design, ddf, fixed_terms)
    return out


def check_linear_response(spec: ModelSpec) -> None:
    """A cbind(successes, failures) response belongs to a binomial model."""
    if spec.failures:
        raise UsageError(f"The response {spec.lhs} counts successes and failures: fit it with --family binomial.")


def run_fit(
    path: str,
    opts: ModelOptions,
    *,
    reml: bool,
    method: str = "fast",
    progress: Progress = None,
    ddf: str = "satterthwaite",
) -> Outcome:
    """`mmcli fit`: a linear mixed model by ML or REML; with ``ddf``, df and p-values of the fixed effects."""
    return _lmm_outcome(path, opts, reml, method, progress, ddf)


def run_ranef(
    path: str, opts: ModelOptions, *, reml: bool | None = None, method: str = "fast", progress: Progress = None
) -> Outcome:
    """`mmcli ranef`: the conditional modes and standard deviations of the random effects. A formula with
    smooths is fitted as `gamm` fits it (REML unless ``reml`` is False, as gamm4) and its grouping factors'
    effects are listed (the smooths' random parts are not); otherwise ML unless ``reml``."""
    from mmcli.gamm_predict import gam_ranef_rows, gamm_ranef_check

    if gamm_ranef_check(opts.spec(smooths=True)):
        out = run_gamm(path, opts, reml=reml is not False)
        if method != "fast":
            out.notes.append(f"--method {method} is for models without smooths; this one is fitted as gamm fits it.")
        rows = ranef_rows(out.result.lmm) if out.result is not None else gam_ranef_rows(out.data)
    else:
        out = _lmm_outcome(path, opts, bool(reml), method, progress)
        rows = ranef_rows(out.result)
    out.data = {"ranef": rows, "fit": out.data}
    out.csv_rows, out.csv_columns = rows, ["group", "level", "term", "mode", "cond_sd"]
    return out


@dataclass(frozen=True)
class SplineOptions:
    x: str | None = None
    y: str | None = None
    knots: int | None = None
    knot_values: list[float] | None = None
    lam: float | str = "gcv"
    as_mixed: bool = False
    predict: str | None = None
    na: tuple[str, ...] = ()


def _spline_table(path: str, x: str | None, y: str | None, na: tuple[str, ...]) -> tuple[dataio.Table, str, str]:
    if x is not None and y is not None:
        return dataio.load(path, numeric=[x, y], categorical=[], na=na), x, y
    table = dataio.load_all(path, na=na)
    nums = dataio.numeric_columns(table)
    if len(table.columns) != 2 and len(nums) != 2:
        raise UsageError(
            f"'{table.source}' has {len(nums)} numeric columns ({', '.join(nums) or 'none'}): "
            "say which to use with --x COL --y COL."
        )
    x, y = nums if len(nums) == 2 else (table.columns[0], table.columns[1])
    return dataio.subset(table, [x, y], numeric=[x, y]), x, y


def run_spline(path: str, opts: SplineOptions) -> Outcome:
    """`mmcli spline`: Wood's penalized regression spline, lambda given or chosen by GCV or REML."""
    from mmcli.spline import check_lambda, fit_spline, mixed_form

    lam = check_lambda(opts.lam)  # before reading the data: a bad option is a usage error
    if opts.knots is not None and opts.knot_values is not None:
        raise UsageError("Give --knots or --knot-values, not both.")
    if opts.x is not None and opts.x == opts.y:
        raise UsageError(f"--x and --y both name '{opts.x}': the response cannot be its own predictor.")
    if (opts.x is None) != (opts.y is None):
        raise UsageError("Give both --x and --y, or neither (for a file with exactly two numeric columns).")
    _stdin_once(path, opts.predict)
    table, x, y = _spline_table(path, opts.x, opts.y, opts.na)
    xs, ys = dataio.column(table, x), dataio.column(table, y)
    result = fit_spline(xs, ys, knots=opts.knots, knot_values=opts.knot_values, lam=lam, x_name=x, y_name=y)
    d = spline_dict(result)
    d["dropped_rows"] = table.dropped_rows
    if opts.as_mixed:
        d["mixed_form"] = mixed_spline_dict(mixed_form(result))
    rows = [{x: a, y: b, "fitted": c} for a, b, c in zip(xs, ys, d["fitted"])]
    notes = list(table.notes)
    columns = [x, y, "fitted"]
    if opts.predict:
        new = _predict_table(opts.predict, numeric=[x], categorical=[], na=opts.na)
        notes += predict_notes(new)
        px = dataio.column(new, x)
        fit, se = result.predict(px)
        d["predictions"] = rows = [{"x": float(a), "fit": float(b), "se": float(c)} for a, b, c in zip(px, fit, se)]
        columns = ["x", "fit", "se"]
    return Outcome(d, rows, columns, result, notes)


def predict_notes(table: dataio.Table) -> list[str]:
    """The --predict file's notes (rows dropped for a missing value, counted), said of that file."""
    return [f"In the --predict file: {n[0].lower()}{n[1:]}" for n in table.notes]


def _stdin_once(data: str, predict: str | None) -> None:
    """Standard input can be read once: it cannot be both the data and the --predict file."""
    if data == "-" and predict == "-":
        raise UsageError("The data and the --predict file cannot both be - (standard input): give one as a file.")


def _predict_table(path: str, **columns: Any) -> dataio.Table:
    """The --predict file, with errors that say which file they are about."""
    try:
        return dataio.load(path, **columns)
    except DataError as e:
        raise DataError(f"In the --predict file: {e}") from None


def run_gamm(
    path: str, opts: ModelOptions, *, reml: bool = True, predict: str | None = None, re_form: str = "population"
) -> Outcome:
    """`mmcli gamm`: smooths and random effects as one mixed model (gamm4's construction); with ``predict``,
    predictions at the population level or conditional on the rows' grouping levels (``re_form``)."""
    from mmcli.design import build_design
    from mmcli.gamm import fit_gamm
    from mmcli.gamm_predict import check_re_form, gamm_predictions

    spec = opts.spec(smooths=True)
    check_linear_response(spec)
    _stdin_once(path, predict)
    check_re_form(spec, re_form, predict)
    table = _load_model_data(path, spec, opts)
    if any(t.kind == "te" for t in spec.tensors):  # overlapping penalties: mgcv's gam (mmcli.gam_design)
        from mmcli.gam_command import run_gam

        return run_gam(path, opts, spec, table, reml=reml, predict=predict, re_form=re_form)  # type: ignore[no-any-return]
    design = build_design(spec, table.frame, set(opts.factor), weights=opts.weights)
    g = fit_gamm(design, reml=reml)
    notes = list(table.notes)
    notes += [n for n in [dropped_columns_note(g.lmm.dropped_columns)] if n]
    ngroups = {t.group: t.nlevels for t in g.lmm.terms if t.indicator}
    base = fit_dict(
        g.lmm,
        formula=spec.text,
        ngroups=ngroups,
        dropped_rows=table.dropped_rows,
        data=table.source,
        weights=opts.weights,
        offset=[str(o) for o in spec.offsets],
    )
    d = gamm_dict(g, base)
    if spec.tensors:  # the penalty blocks of each t2 joined into one row
        from mmcli.tensor_mixed import join_t2_rows

        d["smooths"] = join_t2_rows(d["smooths"], g.smooths)
    rows, columns = d["fixed_effects"], ["term", "estimate", "std_error", "t_value"]
    if predict:
        rows, predicted_notes = gamm_predictions(predict, spec, opts, design, g, table.frame, re_form)
        d["predictions"], d["re_form"] = rows, re_form
        notes += predicted_notes
        columns = list(rows[0].keys()) if rows else ["fit", "se"]
    return Outcome(d, rows, columns, g, notes, g.lmm.converged)


def _fixed_terms(design: Any, frame: Any) -> Any:
    from mmcli.type3 import fixed_terms

    return fixed_terms(design.fixed, frame, design.X)


def _add_inference(out: Outcome, model: Any, design: Any, ddf: str, terms: Any) -> None:
    """df and p-values of the fixed effects (and the anova table, when the terms are given) into the outcome."""
    import numpy as np

    from mmcli.inference import infer
    from mmcli.report import add_ddf, anova_rows

    try:
        inf = infer(
            model,
            out.result,
            design.X,
            list(design.xnames),
            ddf,
            weights=design.weights,
            terms=terms,
            intercept=design.fixed.intercept,
        )
    except (ArithmeticError, ValueError, np.linalg.LinAlgError) as e:  # the fit stands; its tests cannot be made
        if terms is not None:
            raise ModelError(f"The F tests cannot be computed for this fit ({e}). Check the fixed part.") from None
        out.notes.append(f"The degrees of freedom could not be computed for this fit ({e}); they are written as NA.")
        for row in out.data["fixed_effects"]:
            row.update(df=None, p_value=None)
        out.csv_columns = ["term", "estimate", "std_error", "df", "t_value", "p_value"]
        return
    add_ddf(out.data, inf)
    out.csv_columns = ["term", "estimate", "std_error", "df", "t_value", "p_value"]
    if terms is not None:
        out.data = {"anova": anova_rows(inf), "type": "III", "ddf_method": inf.method, "fit": out.data}
        out.csv_rows = out.data["anova"]
        out.csv_columns = ["term", "sum_sq", "mean_sq", "num_df", "den_df", "f_value", "p_value"]


def run_anova(
    path: str,
    opts: ModelOptions,
    *,
    reml: bool,
    method: str = "fast",
    ddf: str = "satterthwaite",
    progress: Progress = None,
) -> Outcome:
    """`mmcli anova`: lmerTest's type III F tests of the fixed terms, with Satterthwaite's or Kenward-Roger's df."""
    if ddf == "none":
        raise UsageError("The anova table needs denominator degrees of freedom: --ddf satterthwaite or kenward-roger.")
    return _lmm_outcome(path, opts, reml, method, progress, ddf, anova=True)


def run_confint(
    path: str,
    opts: ModelOptions,
    *,
    method: str = "profile",
    level: float = 0.95,
    reml: bool = False,
    nsim: int = 500,
    seed: int | None = None,
    progress: Progress = None,
) -> Outcome:
    """`mmcli confint`: confidence intervals as lme4's confint(m, method = "profile" | "Wald" | "boot")."""
    from mmcli.confint import column_names, describe, intervals
    from mmcli.design import build_design

    if not 0 < level < 1:
        raise UsageError(f"--level must lie strictly between 0 and 1, such as 0.95; not {level:g}.")
    if nsim < 1:
        raise UsageError(f"--nsim must be a positive number of simulations; not {nsim}.")
    spec = opts.spec(smooths=False)
    if not spec.random:
        raise UsageError(f"The model '{spec.text}' has no random-effects term: add one, e.g. '+ (1 | group)'.")
    table = _load_model_data(path, spec, opts)
    design = build_design(spec, table.frame, set(opts.factor), weights=opts.weights)
    fit, ends, extra = intervals(design, method=method, level=level, reml=reml, nsim=nsim, seed=seed, progress=progress)
    lo, hi = column_names(level)
    rows = [
        {"parameter": name, "description": what, "lower": a, "upper": b}
        for (name, what), (a, b) in zip(describe(design.terms, fit.xnames), ends)
    ]
    base = fit_dict(
        fit,
        formula=spec.text,
        ngroups=design.ngroups,
        dropped_rows=table.dropped_rows,
        data=table.source,
        weights=opts.weights,
        offset=[str(o) for o in spec.offsets],
    )
    d = {"method": method, "level": level, "columns": [lo, hi], "intervals": rows, **extra, "fit": base}
    csv_rows = [{"parameter": r["parameter"], lo: r["lower"], hi: r["upper"]} for r in rows]
    notes = list(table.notes) + [n for n in [dropped_columns_note(fit.dropped_columns)] if n]
    if method == "profile" and reml:
        notes.append("Profile intervals are computed on the ML deviance, as lme4 profiles a REML fit on its ML refit.")
    if extra.get("failed"):
        notes.append(f"{extra['failed']} of {nsim} bootstrap refits failed and were left out.")
    return Outcome(d, csv_rows, ["parameter", lo, hi], fit, notes, fit.converged)
