"""`mmcli fit` and `mmcli ranef` with --family: a generalized linear mixed model, as lme4's glmer. No printing:
notes come back with the result."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mmcli.commands import ModelOptions, Outcome, Progress, _load_model_data
from mmcli.data import release_memory
from mmcli.errors import DataError, UsageError
from mmcli.formula import ModelSpec
from mmcli.glmm import GlmmModel, unit_weights
from mmcli.report import (
    dropped_columns_note,
    finite,
    optimizer_dict,
    plain,
    quantiles_type7,
    random_effect_rows,
    ranef_rows,
)

if TYPE_CHECKING:
    import pandas as pd

    from mmcli.glmm import Family, GlmmFit


GC_MIN_CELLS = 1_000_000
"""A data frame of at least this many cells is collected before the fit (a full collection costs ~0.05-0.1 s;
below, the frame's memory is not worth it)."""


@dataclass
class _Prepared:
    model: GlmmModel
    spec: ModelSpec
    ngroups: dict[str, int]
    source: str
    dropped_rows: int
    notes: list[str]


def _prepare(path: str, opts: ModelOptions, family: str, link: str | None, nagq: int) -> _Prepared:
    from mmcli.design import build_design
    from mmcli.glmm import GlmmModel
    from mmcli.glmm import family as make_family

    fam = make_family(family, link)
    spec = opts.spec(smooths=False)
    check_family_response(opts, spec, fam)
    if not spec.random:
        raise UsageError(f"The model '{spec.text}' has no random-effects term: add one, e.g. '+ (1 | group)'.")
    table = _load_model_data(path, spec, opts, response_as_read=fam.name == "binomial" and not spec.failures)
    frame = table.frame
    cells = frame.shape[0] * frame.shape[1]
    y, prior = glmm_response(frame, spec, fam)
    if y.dtype != frame[spec.response].dtype or spec.failures:  # else y holds the column's own values
        frame[spec.response] = y  # the column read goes: y is the one copy kept
    # X alone (y stays apart: the fit keeps y, not X), and the frame's columns go as X takes them
    design = build_design(spec, frame, set(opts.factor), with_y=False, consume=True)
    source, dropped, notes = table.source, table.dropped_rows, list(table.notes)
    del table, frame
    if cells >= GC_MIN_CELLS:  # pandas objects hold reference cycles: free a large frame before the fit
        release_memory()
    model = GlmmModel(
        design.X, y, design.terms, fam, prior=prior, offset=design.offset, xnames=design.xnames, nagq=nagq
    )
    return _Prepared(model, spec, design.ngroups, source, dropped, notes)


def check_family_response(opts: ModelOptions, spec: ModelSpec, fam: Family) -> None:
    """No --weights with a family (binomial trials come from cbind), and cbind only with binomial."""
    if opts.weights:
        raise UsageError(
            "--weights is not used with --family: give binomial trials as cbind(successes, failures) in the formula."
        )
    if spec.failures and fam.name != "binomial":
        raise UsageError(f"The response {spec.lhs} counts successes and failures: it needs --family binomial.")


def glmm_model(path: str, opts: ModelOptions, *, family: str, link: str | None = None, nagq: int = 1) -> GlmmModel:
    """The GLMM of a data file and model options, prepared but not fitted (its deviance at any theta and beta)."""
    return _prepare(path, opts, family, link, nagq).model


def run_glmm(
    path: str,
    opts: ModelOptions,
    *,
    family: str,
    link: str | None = None,
    nagq: int = 1,
    fitted: bool = False,
    ranef: bool = False,
    progress: Progress = None,
) -> Outcome:
    """A GLMM fitted by the Laplace approximation (nagq = 1) or adaptive Gauss-Hermite quadrature; with
    ``ranef``, the conditional modes as `mmcli ranef` reports them."""
    pre = _prepare(path, opts, family, link, nagq)
    fit = pre.model.fit(progress)
    del pre.model  # X is not needed for the report: its memory goes before the residuals are formed
    d = glmm_dict(fit, formula=pre.spec.text, ngroups=pre.ngroups, data=pre.source, dropped_rows=pre.dropped_rows)
    d["offset"] = [str(o) for o in pre.spec.offsets]
    if fitted:
        d["fitted"] = {"link": plain(fit.eta), "response": plain(fit.mu)}
    notes = pre.notes + [n for n in [dropped_columns_note(fit.dropped_columns)] if n]
    if not fit.hessian_vcov:
        notes.append(
            "the finite-difference Hessian is not positive definite: the standard errors come from the weighted "
            "system's factor (lme4's vcov(use.hessian = FALSE))"
        )
    out = Outcome(d, d["fixed_effects"], ["term", "estimate", "std_error", "z_value", "p_value"], fit, notes)
    out.converged = fit.converged
    if ranef:
        rows = ranef_rows(fit)  # type: ignore[arg-type]
        out.data = {"ranef": rows, "fit": d}
        out.csv_rows, out.csv_columns = rows, ["group", "level", "term", "mode", "cond_sd"]
    return out


def glmm_response(frame: pd.DataFrame, spec: ModelSpec, fam: Family) -> tuple[np.ndarray, np.ndarray]:
    """y and the prior weights as glmer takes them: a 0/1 (or two-level) response, successes / trials with the
    trials as weights for cbind(successes, failures), counts for Poisson. Values outside the family's range are
    errors."""
    import pandas as pd

    col = frame[spec.response]
    name = spec.response
    if fam.name == "poisson":
        v = col.to_numpy(dtype=float)
        _check_counts(v, f"The Poisson response '{name}'")
        return v, unit_weights(v.size)
    if spec.failures:
        s = col.to_numpy(dtype=float)
        f = frame[spec.failures[0]].to_numpy(dtype=float)
        if len(spec.failures) == 2:
            f = f - frame[spec.failures[1]].to_numpy(dtype=float)
        _check_counts(s, f"The successes '{name}' of {spec.lhs}")
        if np.any(f < 0):
            i = int(np.argmax(f < 0))
            raise DataError(
                f"The response {spec.lhs} has more successes than trials (row {i + 1}: {s[i]:g} successes, "
                f"{s[i] + f[i]:g} trials)."
            )
        _check_counts(f, f"The failures of {spec.lhs}")
        n = s + f
        if np.any(n == 0):
            raise DataError(f"The response {spec.lhs} has rows with no trials (row {int(np.argmax(n == 0)) + 1}).")
        return s / n, n
    if pd.api.types.is_bool_dtype(col.dtype) or pd.api.types.is_numeric_dtype(col.dtype):
        v = col.to_numpy(dtype=float)
        bad = ~np.isin(v, (0.0, 1.0))
        if np.any(bad):
            raise DataError(
                f"The binomial response '{name}' must be 0 or 1 (or text with two levels); "
                f"row {int(np.argmax(bad)) + 1} holds {v[bad][0]:g}. For counts of successes out of trials write "
                "cbind(successes, failures)."
            )
        return v.astype(np.int32), unit_weights(v.size)  # 0 and 1 in half the memory (see GlmmModel)
    from mmcli.data import level_order

    labels, codes = level_order(col)
    if len(labels) != 2:
        raise DataError(
            f"The binomial response '{name}' must have two levels (the first, in R's order, is failure); it has "
            f"{len(labels)}: {', '.join(labels[:5])}{', ...' if len(labels) > 5 else ''}."
        )
    return codes.astype(np.int32), unit_weights(codes.size)


def _check_counts(v: np.ndarray, what: str) -> None:
    bad = (v < 0) | (v != np.round(v))
    if np.any(bad):
        i = int(np.argmax(bad))
        raise DataError(f"{what} must be non-negative whole numbers; row {i + 1} holds {v[i]:g}.")


def glmm_dict(fit: GlmmFit, *, formula: str, ngroups: dict[str, int], data: str, dropped_rows: int) -> dict[str, Any]:
    """The `fit --family` JSON object (docs/cli.md)."""
    se, z, p = fit.std_errors, fit.z_values, fit.p_values
    fixed = [
        {"term": nm, "estimate": finite(b), "std_error": finite(s), "z_value": finite(zz), "p_value": finite(pp)}
        for nm, b, s, zz, pp in zip(fit.xnames, fit.beta, se, z, p)
    ]
    re_rows, corrs = random_effect_rows(fit)  # type: ignore[arg-type]
    return {
        "model": "glmm",
        "formula": formula,
        "data": data,
        "family": fit.family.name,
        "link": fit.family.link,
        "method": "Laplace" if fit.nagq == 1 else f"adaptive Gauss-Hermite, nAGQ = {fit.nagq}",
        "nagq": fit.nagq,
        "nobs": fit.n,
        "ngroups": ngroups,
        "fixed_effects": fixed,
        "random_effects": re_rows[:-1],  # no residual variance in a GLMM
        "correlations": corrs,
        "theta": plain(fit.theta),
        "loglik": finite(fit.loglik),
        "aic": finite(fit.aic),
        "bic": finite(fit.bic),
        "deviance": finite(fit.deviance),
        "df_resid": fit.df_resid,
        "vcov": plain(fit.vcov),
        "vcov_source": "hessian" if fit.hessian_vcov else "factor",
        "fixed_correlation": plain(fit.corr_fixed),
        "scaled_residuals": plain(quantiles_type7(fit.pearson_residuals, overwrite=True)),  # a new vector
        "singular": fit.singular,
        "converged": fit.converged,
        "optimizer": optimizer_dict(fit.optimizer),
        "evaluations": {"stage1": fit.stage_evaluations[0], "stage2": fit.stage_evaluations[1]},
        "dropped_columns": list(fit.dropped_columns),
        "dropped_rows": dropped_rows,
    }
