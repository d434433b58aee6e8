"""`mmcli gamm` for a formula with te(): the model fitted as mgcv's gam (:mod:`mmcli.gam_design`), in the
command's shape (the JSON, the rows of its CSV, the notes). No printing."""

from __future__ import annotations

from typing import Any

from mmcli import data as dataio


def run_gam(path: str, opts: Any, spec: Any, table: dataio.Table, *, reml: bool, predict: str | None) -> Any:
    """Fit, report and predict; ``table`` holds the model's columns, already read."""
    from mmcli.commands import Outcome
    from mmcli.gam_design import build_gam_design, gam_dict
    from mmcli.gam_reml import fit_gam

    design = build_gam_design(spec, table.frame, set(opts.factor), weights=opts.weights)
    fit = fit_gam(design.model(), reml=reml)
    d = gam_dict(
        fit,
        design,
        formula=spec.text,
        data=table.source,
        dropped_rows=table.dropped_rows,
        weights=opts.weights,
        offset=[str(o) for o in spec.offsets],
    )
    notes = list(table.notes)
    notes.append(
        "te() has overlapping penalties, so the model is fitted as mgcv's gam(method = "
        f'"{"REML" if reml else "ML"}") with one smoothing parameter per penalty'
        + (' and each random intercept as s(g, bs = "re")' if spec.random else "")
        + "; gamm4 does not take te()."
    )
    rows, columns = d["fixed_effects"], ["term", "estimate", "std_error", "t_value"]
    if predict:
        rows, predicted_notes = _predictions(predict, spec, opts, design, fit)
        d["predictions"] = rows
        notes += predicted_notes
        columns = list(rows[0].keys()) if rows else ["fit", "se"]
    return Outcome(d, rows, columns, None, notes, fit.converged)


def _predictions(path: str, spec: Any, opts: Any, design: Any, fit: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """Population-level predictions for the rows of the --predict file (its grouping columns are not needed:
    the random intercepts are excluded, as mgcv's ``predict.gam(exclude = "s(g)")``)."""
    from mmcli.commands import _predict_table, predict_notes
    from mmcli.errors import DataError
    from mmcli.gam_design import predict_gam

    groups = {f for t in spec.random for f in t.factors}
    need = [c for c in spec.variables() if c != spec.response and c not in groups]
    svars = {s.var for s in spec.smooths} | {v for t in spec.tensors for v in t.vars} | {o.var for o in spec.offsets}
    new = _predict_table(
        path,
        numeric=[c for c in need if c in svars],
        categorical=[c for c in need if c in opts.factor],
        other=[c for c in need if c not in svars and c not in opts.factor],
        na=opts.na,
    )
    try:
        fit_, se = predict_gam(fit, *design.new_rows(new.frame))
    except DataError as e:
        raise DataError(f"In the --predict file: {e}") from None
    values = dataio.records(new, need)
    return [{**v, "fit": float(f), "se": float(s)} for v, f, s in zip(values, fit_, se)], predict_notes(new)
