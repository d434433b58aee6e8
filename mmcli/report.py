"""Fit results -> the plain dictionaries of CONTRACT.md. One dict feeds JSON, the table and CSV alike."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mmcli.lmm import LmmFit


def _f(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def quantiles_type7(x: np.ndarray) -> list[float]:
    """R's quantile(x) (type 7): min, 1st quartile, median, 3rd quartile, max."""
    return [float(v) for v in np.quantile(x, [0.0, 0.25, 0.5, 0.75, 1.0])]


def random_effect_rows(fit: LmmFit) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Variance components per term and column (lme4's VarCorr), then the correlations within terms."""
    rows: list[dict[str, Any]] = []
    corrs: list[dict[str, Any]] = []
    for t, C in zip(fit.terms, fit.term_covariances()):
        sd = np.sqrt(np.maximum(np.diag(C), 0.0))
        for i, name in enumerate(t.names):
            rows.append({"group": t.group, "term": name, "variance": _f(C[i, i]), "std_dev": _f(sd[i])})
        for j in range(t.p):
            for i in range(j + 1, t.p):
                r = C[i, j] / (sd[i] * sd[j]) if sd[i] > 0 and sd[j] > 0 else float("nan")
                corrs.append({"group": t.group, "term1": t.names[j], "term2": t.names[i], "corr": _f(r)})
    rows.append({"group": "Residual", "term": None, "variance": _f(fit.sigma**2), "std_dev": _f(fit.sigma)})
    return rows, corrs


def fit_dict(
    fit: LmmFit,
    *,
    formula: str,
    ngroups: dict[str, int],
    dropped_rows: int,
    data: str,
    model: str = "lmm",
) -> dict[str, Any]:
    """The `fit` JSON object of CONTRACT.md."""
    se = np.sqrt(np.maximum(np.diag(fit.vcov), 0.0))
    fixed = [
        {
            "term": name,
            "estimate": _f(b),
            "std_error": _f(s),
            "t_value": _f(b / s) if s > 0 else None,
        }
        for name, b, s in zip(fit.xnames, fit.beta, se)
    ]
    re_rows, corrs = random_effect_rows(fit)
    d = np.sqrt(np.diag(fit.vcov))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr_fixed = fit.vcov / np.outer(d, d)
    return {
        "model": model,
        "formula": formula,
        "data": data,
        "method": "REML" if fit.reml else "ML",
        "nobs": fit.n,
        "ngroups": ngroups,
        "fixed_effects": fixed,
        "random_effects": re_rows,
        "correlations": corrs,
        "theta": [float(t) for t in fit.theta],
        "sigma": _f(fit.sigma),
        "loglik": _f(fit.loglik),
        "aic": _f(fit.aic),
        "bic": _f(fit.bic),
        "deviance": None if fit.reml else _f(fit.objective),
        "reml_criterion": _f(fit.objective) if fit.reml else None,
        "df_resid": fit.df_resid,
        "vcov": [[float(v) for v in row] for row in fit.vcov],
        "fixed_correlation": [[_f(v) for v in row] for row in corr_fixed],
        "scaled_residuals": [q / fit.sigma for q in quantiles_type7(fit.residuals)] if fit.sigma > 0 else None,
        "singular": fit.singular,
        "converged": fit.converged,
        "optimizer": {
            "name": fit.optimizer.name,
            "evaluations": fit.optimizer.evaluations,
            "message": fit.optimizer.message,
            "theta_start": list(fit.optimizer.theta_start),
            "theta_end": list(fit.optimizer.theta_end),
            "seconds": round(fit.optimizer.seconds, 6),
        },
        "dropped_columns": list(fit.dropped_columns),
        "dropped_rows": dropped_rows,
    }


def ranef_rows(fit: LmmFit) -> list[dict[str, Any]]:
    """Conditional modes and standard deviations, one row per group, level and term (lme4's ranef, condVar)."""
    rows = []
    for t, b, sd in zip(fit.terms, fit.ranef, fit.cond_sd):
        if not t.indicator:
            continue
        for j, level in enumerate(t.levels):
            for i, name in enumerate(t.names):
                rows.append(
                    {
                        "group": t.group,
                        "level": level,
                        "term": name,
                        "mode": _f(b[j, i]),
                        "cond_sd": _f(sd[j, i]),
                    }
                )
    return rows
