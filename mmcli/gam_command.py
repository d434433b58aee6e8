"""`mmcli gamm` for a formula with te(): the model fitted as mgcv's gam (:mod:`mmcli.gam_design`), in the
command's shape (the JSON, the rows of its CSV, the notes). No printing."""

from __future__ import annotations

from typing import Any

from mmcli import data as dataio


def run_gam(path: str, opts: Any, spec: Any, table: dataio.Table, *, reml: bool, predict: str | None) -> Any:
    """Fit, report and predict; ``table`` holds the model's columns, already read."""
    from mmcli.commands import Outcome, _gamm_predictions
    from mmcli.gam_design import Predictor, build_gam_design, gam_dict
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
        rows, predicted_notes = _gamm_predictions(predict, spec, opts, design, Predictor(fit))
        d["predictions"] = rows
        notes += predicted_notes
        columns = list(rows[0].keys()) if rows else ["fit", "se"]
    return Outcome(d, rows, columns, None, notes, fit.converged)
