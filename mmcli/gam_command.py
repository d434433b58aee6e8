"""`mmcli gamm` for a formula with te(): the model fitted as mgcv's gam (:mod:`mmcli.gam_design`), in the
command's shape (the JSON, the rows of its CSV, the notes). No printing."""

from __future__ import annotations

from typing import Any

import numpy as np

from mmcli import data as dataio


def run_gam(
    path: str,
    opts: Any,
    spec: Any,
    table: dataio.Table,
    *,
    reml: bool,
    predict: str | None,
    re_form: str = "population",
) -> Any:
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
        rows, predicted_notes = _predictions(predict, spec, opts, design, fit, re_form == "conditional")
        d["predictions"], d["re_form"] = rows, re_form
        notes += predicted_notes
        columns = list(rows[0].keys()) if rows else ["fit", "se"]
    return Outcome(d, rows, columns, None, notes, fit.converged)


def _predictions(
    path: str, spec: Any, opts: Any, design: Any, fit: Any, conditional: bool
) -> tuple[list[dict[str, Any]], list[str]]:
    """Predictions for the rows of the --predict file: population level (the random intercepts excluded, as
    mgcv's ``predict.gam(exclude = "s(g)")``; the grouping columns are not needed), or conditional on each row's
    group (``predict.gam`` with the group: the s(g, bs = "re") coefficient of the row's level is added, 0 for a
    level the fit has not seen), both with predict.gam's standard errors."""
    from mmcli.commands import predict_notes
    from mmcli.errors import DataError
    from mmcli.gam_design import predict_gam
    from mmcli.gamm_predict import predict_table
    from mmcli.predict import _labels, levels_note

    new, need = predict_table(path, spec, opts, conditional)
    notes = predict_notes(new)
    try:
        G, offset = design.new_rows(new.frame)
        if conditional:
            per: dict[str, int] = {}
            is_new = np.zeros(len(new.frame), dtype=bool)
            for blk, rt in zip([b for b in design.blocks if b.kind == "re"], spec.random):
                index = {lab: j for j, lab in enumerate(blk.levels)}
                lev = np.array([index.get(lab, -1) for lab in _labels(new.frame, rt.factors)], dtype=np.int64)
                seen = np.flatnonzero(lev >= 0)
                G[seen, blk.cols[lev[seen]]] = 1.0
                if seen.size < lev.size:
                    per[blk.label] = int(lev.size - seen.size)
                is_new |= lev < 0
            notes += [n for n in [levels_note(per, is_new, "--predict")] if n]
        fit_, se = predict_gam(fit, G, offset)
    except DataError as e:
        raise DataError(f"In the --predict file: {e}") from None
    values = dataio.records(new, need)
    return [{**v, "fit": float(f), "se": float(s)} for v, f, s in zip(values, fit_, se)], notes
