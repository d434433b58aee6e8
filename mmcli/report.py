"""Results -> the plain dictionaries of docs/cli.md: the one way from a result to what is printed. One dict
feeds JSON, the table and CSV alike, so the three never disagree."""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from mmcli.threads import on_two_threads, row_halves

if TYPE_CHECKING:
    from mmcli.gamm import GammFit
    from mmcli.lmm import LmmFit, OptimizerRecord
    from mmcli.spline import MixedSplineForm, SplineFit


def finite(x: Any) -> float | None:
    """A number for JSON: None where JSON has none (inf, nan) or where there is no value."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def plain(obj: Any) -> Any:
    """Records, dicts, lists and numpy values as JSON-ready values (non-finite numbers as None)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [plain(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return finite(obj)
    return obj if isinstance(obj, str) or obj is None else str(obj)


SELECT_MIN_ROWS = 1 << 17
"""From this many values on, the quartiles' order statistics are selected from a narrow band of values instead of
by partitioning a copy of the whole vector (which costs a 10^7-row fit about 0.3 s)."""


def quantiles_type7(x: np.ndarray, *, overwrite: bool = False) -> list[float]:
    """R's quantile(x) (type 7): min, 1st quartile, median, 3rd quartile, max. With h = (n - 1) p, the value
    is x_(j) + g (x_(j+1) - x_(j)) for j = floor(h), g = h - j, of the sorted x (Hyndman and Fan 1996); for
    g >= 1/2 it is computed from the upper end, x_(j+1) - (1 - g)(x_(j+1) - x_(j)), as numpy does, so that
    the numbers equal np.quantile's. ``overwrite`` lets a short x be reordered in place (no copy of a vector
    that is not used again); a long one is never copied."""
    x = np.asarray(x, dtype=float)
    n = x.size
    ends = [float(x.min()), float(x.max())] if n else []
    if n < SELECT_MIN_ROWS or not all(map(math.isfinite, ends)):  # NaN or inf: numpy's rules
        return [float(v) for v in np.quantile(x, [0.0, 0.25, 0.5, 0.75, 1.0], overwrite_input=overwrite)]
    hs = [(n - 1) * p for p in (0.25, 0.5, 0.75)]
    pairs = _order_statistics(x, [int(h) for h in hs], 2)
    out = ends[:1]
    for h, (a, b) in zip(hs, pairs):
        g = h - int(h)
        out.append(float(a + (b - a) * g if g < 0.5 else b - (b - a) * (1.0 - g)))
    return [*out, ends[1]]


_SELECT_BLOCK = 1 << 17  # values looked at a block at a time, while the block is in the cache


def _order_statistics(x: np.ndarray, ks: list[int], m: int) -> list[np.ndarray]:
    """For each k of ks, the (k+1)-th to (k+m)-th smallest of x (finite values; k + m <= x.size). A strided
    sample of about 2^16 values brackets each; one pass over x, block by block (each half of a long x on a
    thread of its own), counts the values below each bracket and takes those inside it, and only those are
    partitioned. Exact whatever the sample: when a bracket misses (a sample unlike the data), the whole vector
    is partitioned instead."""
    n = x.size
    step = max(n >> 16, 1)
    sample = np.sort(x[::step])
    s = sample.size
    margin = 4 * int(np.sqrt(s)) + 8  # about 8 standard deviations of a sample quantile's rank
    brackets = []
    for k in ks:
        lo_at, hi_at = (k * s) // n - margin, ((k + m) * s) // n + margin
        brackets.append((sample[lo_at] if lo_at >= 0 else -np.inf, sample[hi_at] if hi_at < s else np.inf))

    def scan(rows: slice) -> tuple[list[int], list[list[np.ndarray]]]:
        below: list[int] = [0] * len(ks)
        parts: list[list[np.ndarray]] = [[] for _ in ks]
        part = x[rows]
        for start in range(0, part.size, _SELECT_BLOCK):
            v = part[start : start + _SELECT_BLOCK]
            for q, (lo, hi) in enumerate(brackets):
                inside = v >= lo  # finite values: the others are below
                below[q] += v.size - int(np.count_nonzero(inside))
                inside &= v <= hi
                parts[q].append(v[inside])
        return below, parts

    scans = on_two_threads(scan, row_halves(n))
    below = [sum(b[q] for b, _ in scans) for q in range(len(ks))]
    parts = [[v for _, p in scans for v in p[q]] for q in range(len(ks))]
    out = []
    for k, b, part in zip(ks, below, parts):
        band = np.concatenate(part)
        if b <= k and k + m <= b + band.size:
            band.partition(list(range(k - b, k - b + m)))
            out.append(band[k - b : k - b + m])
        else:
            out.append(np.partition(x, list(range(k, k + m)))[k : k + m])
    return out


# --------------------------------------------------------------------------------------------------
# linear mixed models


def varcorr_names(groups: list[str]) -> list[str]:
    """lme4's VarCorr names: a grouping factor's second term is 'Subject.1', its third 'Subject.2' (R's
    make.unique over the terms in their order)."""
    seen: dict[str, int] = {}
    out = []
    for g in groups:
        k = seen.get(g, 0)
        seen[g] = k + 1
        out.append(g if k == 0 else f"{g}.{k}")
    return out


def random_effect_rows(fit: LmmFit) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Variance components per term and column (lme4's VarCorr), then the correlations within terms."""
    rows: list[dict[str, Any]] = []
    corrs: list[dict[str, Any]] = []
    for t, C, group in zip(fit.terms, fit.term_covariances(), varcorr_names([t.group for t in fit.terms])):
        sd = np.sqrt(np.maximum(np.diag(C), 0.0))
        for i, name in enumerate(t.names):
            rows.append(
                {"group": group, "factor": t.group, "term": name, "variance": finite(C[i, i]), "std_dev": finite(sd[i])}
            )
        for j in range(t.p):
            for i in range(j + 1, t.p):
                r = C[i, j] / (sd[i] * sd[j]) if sd[i] > 0 and sd[j] > 0 else None
                corrs.append({"group": group, "term1": t.names[j], "term2": t.names[i], "corr": finite(r)})
    rows.append(
        {
            "group": "Residual",
            "factor": None,
            "term": None,
            "variance": finite(fit.sigma**2),
            "std_dev": finite(fit.sigma),
        }
    )
    return rows, corrs


def optimizer_dict(rec: OptimizerRecord) -> dict[str, Any]:
    out = plain(rec)
    out["seconds"] = round(rec.seconds, 6)
    return out


def dropped_columns_note(columns: tuple[str, ...] | list[str]) -> str | None:
    """lme4's message for aliased fixed-effect columns, with their names."""
    if not columns:
        return None
    what = "column / coefficient" if len(columns) == 1 else "columns / coefficients"
    return f"fixed-effect model matrix is rank deficient so dropping {len(columns)} {what}: {', '.join(columns)}"


def non_finite_note(where: dict[str, int], written_as: str) -> str | None:
    """How many numbers of the output are infinite or NaN (a prediction far outside the data overflows, say),
    under which fields (``{"predictions.fit": 1}``), and what stands in their place."""
    if not where:
        return None
    n = sum(where.values())
    what = "1 value is not a finite number" if n == 1 else f"{n} values are not finite numbers"
    fields = ", ".join(f"{k} ({v})" for k, v in where.items())
    return f"{what} (too large for a float, or undefined) and written as {written_as}: {fields}."


def fit_dict(
    fit: LmmFit,
    *,
    formula: str,
    ngroups: dict[str, int],
    dropped_rows: int,
    data: str,
    weights: str | None = None,
    offset: list[str] | None = None,
    model: str = "lmm",
) -> dict[str, Any]:
    """The `fit` JSON object (docs/cli.md)."""
    se = fit.std_errors
    fixed = [
        {"term": name, "estimate": finite(b), "std_error": finite(s), "t_value": finite(b / s) if s > 0 else None}
        for name, b, s in zip(fit.xnames, fit.beta, se)
    ]
    re_rows, corrs = random_effect_rows(fit)
    corr_fixed = fit.corr_fixed
    res = fit.pearson_residuals  # empty for a fit from summed statistics (--dask): no quantiles then
    scaled = [q / fit.sigma for q in quantiles_type7(res)] if fit.sigma > 0 and res.size else None
    return {
        "model": model,
        "formula": formula,
        "data": data,
        "method": "REML" if fit.reml else "ML",
        "nobs": fit.n,
        "ngroups": ngroups,
        "weights": weights,
        "offset": list(offset or []),
        "fixed_effects": fixed,
        "random_effects": re_rows,
        "correlations": corrs,
        "theta": plain(fit.theta),
        "sigma": finite(fit.sigma),
        "loglik": finite(fit.loglik),
        "aic": finite(fit.aic),
        "bic": finite(fit.bic),
        "deviance": None if fit.reml else finite(fit.objective),
        "reml_criterion": finite(fit.objective) if fit.reml else None,
        "df_resid": fit.df_resid,
        "vcov": plain(fit.vcov),
        "fixed_correlation": plain(corr_fixed),
        "scaled_residuals": plain(scaled),
        "singular": fit.singular,
        "converged": fit.converged,
        "optimizer": optimizer_dict(fit.optimizer),
        "dropped_columns": list(fit.dropped_columns),
        "dropped_rows": dropped_rows,
    }


def ranef_rows(fit: LmmFit) -> list[dict[str, Any]]:
    """Conditional modes and standard deviations, one row per group, level and term (lme4's ranef, condVar)."""
    rows = []
    for t, b, sd in zip(fit.terms, fit.ranef, fit.cond_sd):
        group = t.group
        if not t.indicator:
            continue
        for j, level in enumerate(t.levels):
            for i, name in enumerate(t.names):
                rows.append(
                    {"group": group, "level": level, "term": name, "mode": finite(b[j, i]), "cond_sd": finite(sd[j, i])}
                )
    return rows


# --------------------------------------------------------------------------------------------------
# gamm


def gamm_dict(g: GammFit, base: dict[str, Any]) -> dict[str, Any]:
    """The `gamm` JSON: the fit object of its LMM plus the smooths."""
    d = dict(base)
    d["model"] = "gamm"
    smooths = []
    for j, sp in enumerate(g.smooths):
        lam = g.lam(j)
        smooths.append(
            {
                "term": sp.smooth.term,
                "basis": sp.smooth.bs,
                "k": sp.smooth.k,
                "edf": finite(g.edf[j]),
                **smooth_test_fields(g, j),
                "knots": plain(sp.smooth.knots),
                "lambda": finite(lam),
                "variance": finite(g.lmm.sigma**2 / lam) if lam else 0.0,
                "coefficients": plain(g.coefficients(j)),
            }
        )
    d["smooths"] = smooths
    return d


def smooth_test_fields(g: GammFit, j: int) -> dict[str, Any]:
    """Smooth j's row of summary.gam's smooth-terms table: Ref.df, F, p-value and which test gave them."""
    if j >= len(g.tests):
        return {}
    t = g.tests[j]
    return {"ref_df": finite(t.ref_df), "F": finite(t.F), "p_value": finite(t.p_value), "test": t.test}


# --------------------------------------------------------------------------------------------------
# splines


def mixed_spline_dict(m: MixedSplineForm) -> dict[str, Any]:
    """The spline's mixed-model form: fixed null space, random rest, fitted by REML."""
    return {
        "model": "lmm",
        "method": "REML",
        "fixed_effects": [{"term": f"Xf{i + 1}", "estimate": finite(v)} for i, v in enumerate(m.beta_f)],
        "random_effects": [
            {"group": "Xr", "term": m.term, "variance": finite(m.sigma_g**2), "std_dev": finite(m.sigma_g)},
            {"group": "Residual", "term": None, "variance": finite(m.sigma**2), "std_dev": finite(m.sigma)},
        ],
        "theta": [finite(m.theta)],
        "sigma": finite(m.sigma),
        "lambda": finite(m.lam),
        "reml_criterion": finite(m.reml_criterion),
        "ranef": plain(m.b),
        "fitted": plain(m.fitted),
        "converged": bool(m.converged),
        "optimizer": {**(optimizer_dict(m.optimizer) if m.optimizer else {}), "starts": plain(m.starts)},
    }


def spline_dict(f: SplineFit) -> dict[str, Any]:
    """The `spline` JSON (the caller adds "predictions" and "mixed_form")."""
    out: dict[str, Any] = {
        "model": "penalized_spline",
        "basis": "rk",
        "x": f.x_name,
        "y": f.y_name,
        "n": int(f.n),
        "knots": plain(f.knots),
        "knots_scaled": plain(f.knots_scaled),
        "lambda": finite(f.lam),
        "lambda_method": f.lam_method,
        "coefficients": plain(f.coef),
        "edf": finite(f.edf),
        "rss": finite(f.rss),
        "sigma": finite(f.sigma),
        "gcv": finite(f.gcv),
        "r_squared": finite(f.r_squared),
        "adj_r_squared": finite(f.adj_r_squared),
        "fitted": plain(f.fitted),
        "x_range": [float(f.x_min), float(f.x_max)],
    }
    if f.mixed is not None:
        m = mixed_spline_dict(f.mixed)
        keys = ("theta", "sigma", "reml_criterion", "converged", "optimizer", "lambda")
        out["lambda_search"] = {"criterion": "REML", "sigma_g": finite(f.mixed.sigma_g), **{k: m[k] for k in keys}}
        out["lambda_search"]["theta"] = m["theta"][0]
        out["mixed_model"] = m
    elif f.lambda_search is not None:
        out["lambda_search"] = plain(f.lambda_search)
    return out


def add_ddf(d: dict[str, Any], inf: Any) -> None:
    """Each fixed effect of a fit's dict gets df and p_value (under Kenward-Roger also its adjusted se and t, as
    lmerTest's summary prints them); the method and, for Kenward-Roger, the adjusted covariance are added."""
    for row, c in zip(d["fixed_effects"], inf.coefficients, strict=True):
        if inf.vcov_adjusted is not None:  # Kenward-Roger: the se and t of the adjusted covariance
            row.update(std_error=c.std_error, t_value=c.t_value)
        row.update(df=c.df, p_value=c.p_value)
    d["ddf_method"] = inf.method
    if inf.vcov_adjusted is not None:
        d["vcov_adjusted"] = inf.vcov_adjusted.tolist()


def anova_rows(inf: Any) -> list[dict[str, Any]]:
    """lmerTest's type III anova table, one row per fixed term."""
    return [
        {
            "term": f.term,
            "sum_sq": f.sum_sq,
            "mean_sq": f.mean_sq,
            "num_df": f.num_df,
            "den_df": f.den_df,
            "f_value": f.f_value,
            "p_value": f.p_value,
        }
        for f in inf.anova or []
    ]
