"""A model with a te() smooth, fitted as mgcv's ``gam(method = "REML" | "ML")`` does: the design, the fit by
:mod:`mmcli.gam_reml`, predictions and the `gamm` JSON for it.

te()'s penalties overlap (S_λ = λ₁S₁ + λ₂S₂ on the same coefficients), so it cannot be written as independent
random effects, which is why gamm4 refuses it. mmcli fits such a model as mgcv's ``gam`` would: every smooth
(s(), te(), t2()) with its own penalties, and each random intercept ``(1 | g)`` as mgcv's ``s(g, bs = "re")``,
an identity penalty on the level indicators whose smoothing parameter is σ²/σ_g². That is exactly the
Gaussian mixed model an lme4 user means, fitted by REML (or ML); random slopes are not offered on this path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mmcli.design import categorical_columns, group_codes, offset_values, response, tensor_data
from mmcli.errors import DataError, ModelError
from mmcli.fixed import FixedPart, model_matrix
from mmcli.gam_reml import GamFit, PenalizedModel, Penalty

if TYPE_CHECKING:
    import pandas as pd

    from mmcli.formula import ModelSpec


@dataclass(frozen=True, eq=False)
class GamBlock:
    """One penalized block of X: a smooth (``s``, ``te``, ``t2``) or a random intercept (``re``)."""

    kind: str
    label: str
    cols: np.ndarray
    smooth: Any = None  # the basis object (predict_matrix), None for a random intercept
    vars: tuple[str, ...] = ()
    levels: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class GamDesign:
    X: np.ndarray
    y: np.ndarray
    penalties: list[Penalty]
    blocks: list[GamBlock]
    fixed: FixedPart
    weights: np.ndarray | None
    offset: np.ndarray | None
    offsets: tuple[Any, ...]

    def model(self) -> PenalizedModel:
        return PenalizedModel(self.X, self.y, self.penalties, self.weights, self.offset)

    def new_rows(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
        """Rows of X for new data at the population level (random intercepts at zero), and their offset."""
        n = len(frame)
        G = np.zeros((n, self.X.shape[1]))
        p0 = len(self.fixed.names)
        G[:, :p0] = self.fixed.rows(frame)
        for b in self.blocks:
            if b.smooth is None:
                continue
            if b.kind == "s":
                x = frame[b.vars[0]].to_numpy(dtype=float)
            else:
                x = np.column_stack([frame[v].to_numpy(dtype=float) for v in b.vars])
            G[:, b.cols] = b.smooth.predict_matrix(x)
        return G, offset_values(frame, self.offsets)


def build_gam_design(
    spec: ModelSpec, frame: pd.DataFrame, factors: set[str], *, weights: str | None = None
) -> GamDesign:
    """X = [parametric columns, each smooth's constrained basis, each random intercept's indicators] and the
    penalties of each block (smoothCon's, and the identity for a random intercept)."""
    from mmcli.smooths import smooth_construct
    from mmcli.tensor import t2_construct, te_construct

    cats = categorical_columns(spec, frame, factors)
    if spec.response in cats:
        raise DataError(f"The response '{spec.response}' must be numeric; it was declared or read as a factor.")
    for rt in spec.random:
        if rt.expr != "1":
            raise ModelError(
                f"With te() mmcli fits the model as mgcv's gam, where a random effect is a penalized term: only "
                f"random intercepts (1 | g) are available there, not {rt}. Use t2() instead of te() to fit it "
                "as a mixed model (as gamm4 does)."
            )
    Xp, fixed = model_matrix(spec.fixed_terms, frame, cats)
    cols: list[np.ndarray] = [Xp]
    pens: list[Penalty] = []
    blocks: list[GamBlock] = []
    start = Xp.shape[1]

    def add(kind: str, label: str, X: np.ndarray, S: list[np.ndarray], **extra: Any) -> None:
        nonlocal start
        idx = np.arange(start, start + X.shape[1])
        b = len(blocks)
        blocks.append(GamBlock(kind, label, idx, **extra))
        pens.extend(Penalty(idx, Sj, b) for Sj in S)
        cols.append(X)
        start += X.shape[1]

    for s in spec.smooths:
        if s.var in cats:
            raise DataError(f"Cannot smooth '{s.var}': it is not a numeric column. A smooth needs numeric x.")
        sm = smooth_construct(frame[s.var].to_numpy(dtype=float), var=s.var, bs=s.bs, k=s.k)
        add("s", sm.term, sm.X, [sm.S], smooth=sm, vars=(s.var,))
    for t in spec.tensors:
        xs = tensor_data(t, frame, cats)
        tsm = (te_construct if t.kind == "te" else t2_construct)(xs, vars_=t.vars, bs=t.bs, k=t.k)
        add(t.kind, tsm.term, tsm.X, list(tsm.S), smooth=tsm, vars=t.vars)
    for rt in spec.random:
        codes, labels = group_codes(frame, rt.factors)
        from mmcli.memory import check_allocation

        check_allocation(8.0 * len(frame) * len(labels), f"the indicators of {rt.group} ({len(frame)} x {len(labels)})")
        Zg = np.zeros((len(frame), len(labels)))
        Zg[np.arange(len(frame)), codes] = 1.0
        add("re", rt.group, Zg, [np.eye(len(labels))], levels=tuple(labels))
    return GamDesign(
        X=np.column_stack(cols),
        y=response(frame, spec.response),
        penalties=pens,
        blocks=blocks,
        fixed=fixed,
        weights=None if weights is None else frame[weights].to_numpy(dtype=float),
        offset=offset_values(frame, spec.offsets),
        offsets=spec.offsets,
    )


def predict_gam(fit: GamFit, G: np.ndarray, offset: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Population-level predictions and se = √(g'Vp g), as mgcv's ``predict.gam(se.fit = TRUE)`` with the
    random intercepts excluded."""
    se = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", G, fit.Vp, G), 0.0))
    fit_ = G @ fit.beta
    return (fit_ + offset if offset is not None else fit_), se


def gam_dict(
    fit: GamFit,
    design: GamDesign,
    *,
    formula: str,
    data: str,
    dropped_rows: int,
    weights: str | None,
    offset: list[str],
) -> dict[str, Any]:
    """The `gamm` JSON of a model fitted as mgcv's gam: the fields of the mixed-model fit that apply, and the
    smooths with one λ per penalty. ``reml_criterion`` (or ``deviance`` for ML) is −2 times mgcv's score."""
    from mmcli.report import finite, plain, quantiles_type7

    p0 = len(design.fixed.names)
    se = np.sqrt(np.diag(fit.Vp))
    fixed_rows = [
        {"term": nm, "estimate": finite(b), "std_error": finite(s), "t_value": finite(b / s) if s > 0 else None}
        for nm, b, s in zip(design.fixed.names, fit.beta[:p0], se[:p0])
    ]
    lam_of: dict[int, list[float]] = {}
    for pen, lam in zip(design.penalties, fit.lam):
        lam_of.setdefault(pen.block, []).append(float(lam))
    from mmcli.smooth_test import gam_smooth_tests

    tests = gam_smooth_tests(fit, design)
    smooths, re_rows, ngroups = [], [], {}
    for b, blk in enumerate(design.blocks):
        lams = lam_of[b]
        t = tests[b]
        row = {"ref_df": finite(t.ref_df), "F": finite(t.F), "p_value": finite(t.p_value), "test": t.test}
        if blk.kind == "re":  # summary.gam lists s(g, bs = "re") among the smooth terms
            smooths.append(
                {
                    "term": t.term,
                    "basis": "re",
                    "k": len(blk.levels),
                    "edf": finite(t.edf),
                    **row,
                    "knots": None,
                    "lambda": finite(lams[0]),
                    "coefficients": plain(fit.beta[blk.cols]),
                    "levels": list(blk.levels),
                    "std_errors": plain(se[blk.cols]),
                }
            )
            var = fit.scale / lams[0]
            re_rows.append(
                {"group": blk.label, "term": "(Intercept)", "variance": finite(var), "std_dev": finite(math.sqrt(var))}
            )
            ngroups[blk.label] = len(blk.levels)
            continue
        sm = blk.smooth
        one = blk.kind == "s"
        smooths.append(
            {
                "term": sm.term,
                "basis": sm.bs,
                "k": sm.k if one else list(sm.k),
                "edf": finite(float(fit.edf[blk.cols].sum())),
                **row,
                "knots": plain(sm.knots),
                "lambda": finite(lams[0]) if one else [finite(v) for v in lams],
                "coefficients": plain(fit.beta[blk.cols]),
            }
        )
    sigma = math.sqrt(fit.scale)
    re_rows.append({"group": "Residual", "term": None, "variance": finite(fit.scale), "std_dev": finite(sigma)})
    resid = design.y - fit.fitted
    if design.weights is not None:
        resid = resid * np.sqrt(design.weights)
    edf_total = float(fit.edf.sum())
    return {
        "model": "gam",
        "formula": formula,
        "data": data,
        "method": "REML" if fit.reml else "ML",
        "nobs": fit.n,
        "ngroups": ngroups,
        "weights": weights,
        "offset": offset,
        "fixed_effects": fixed_rows,
        "random_effects": re_rows,
        "correlations": [],
        "sigma": finite(sigma),
        "loglik": finite(-fit.criterion / 2),
        "aic": None,
        "bic": None,
        "deviance": None if fit.reml else finite(fit.criterion),
        "reml_criterion": finite(fit.criterion) if fit.reml else None,
        "mgcv_score": finite(fit.score),
        "edf_total": finite(edf_total),
        "df_resid": round(fit.n - edf_total, 2),  # mgcv's residual df, n - EDF
        "scaled_residuals": plain([q / sigma for q in quantiles_type7(resid)]) if sigma > 0 else None,
        "smooths": smooths,
        "singular": False,
        "converged": fit.converged,
        "optimizer": plain(fit.optimizer),
        "dropped_columns": [],
        "dropped_rows": dropped_rows,
    }
