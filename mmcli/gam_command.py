"""`mmcli gamm` for a formula with te(): the model fitted as mgcv's gam (:mod:`mmcli.gam_design`), in the
command's shape (the JSON, the rows of its CSV, the notes). No printing."""

from __future__ import annotations

from typing import Any

from mmcli import data as dataio
from mmcli.errors import DataError


def run_gam(path: str, opts: Any, spec: Any, table: dataio.Table, *, reml: bool, predict: str | None) -> Any:
    """Fit, report and predict; ``table`` holds the model's columns, already read."""
    from mmcli.commands import Outcome, _predict_table, predict_notes
    from mmcli.gam_design import build_gam_design, gam_dict, predict_gam
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
        groups = {f for t in spec.random for f in t.factors}
        need = [c for c in spec.variables() if c != spec.response and c not in groups]
        svars = (
            {s.var for s in spec.smooths} | {v for t in spec.tensors for v in t.vars} | {o.var for o in spec.offsets}
        )
        new = _predict_table(
            predict,
            numeric=[c for c in need if c in svars],
            categorical=[c for c in need if c in opts.factor],
            other=[c for c in need if c not in svars and c not in opts.factor],
            na=opts.na,
        )
        try:
            from mmcli.design import offset_values

            G = design.new_rows(new.frame)
            off = offset_values(new.frame, design.offsets)
        except DataError as e:
            raise DataError(f"In the --predict file: {e}") from None
        fit_, se = predict_gam(fit, G, off)
        values = dataio.records(new, need)
        rows = [{**v, "fit": float(f), "se": float(s)} for v, f, s in zip(values, fit_, se)]
        d["predictions"] = rows
        notes += predict_notes(new)
        columns = list(rows[0].keys()) if rows else ["fit", "se"]
    return Outcome(d, rows, columns, None, notes, fit.converged)
