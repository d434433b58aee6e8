"""`mmcli gamm --family`: smooths and random effects with a binomial or Poisson response, as gamm4 with a family
(glmer on the mixed-model form of the smooths, Laplace approximation). No printing: notes come back with the
result."""

from __future__ import annotations

from typing import Any

from mmcli.commands import ModelOptions, Outcome, Progress, _load_model_data, _stdin_once
from mmcli.errors import UsageError
from mmcli.report import dropped_columns_note, finite, gamm_dict


def run_gamm_glmm(
    path: str,
    opts: ModelOptions,
    *,
    family: str,
    link: str | None = None,
    predict: str | None = None,
    re_form: str = "population",
    progress: Progress = None,
) -> Outcome:
    """The gamm with a family: the mer part as summary(glmer), the gam part (edf, lambda) as gamm4's; with
    ``predict``, population-level predictions with standard errors on the link and response scales."""
    from mmcli.commands_glmm import check_family_response, glmm_dict, glmm_response
    from mmcli.design import build_design
    from mmcli.gamm_glmm import fit_gamm_glmm
    from mmcli.gamm_predict import gamm_predictions
    from mmcli.glmm import family as make_family

    fam = make_family(family, link)
    spec = opts.spec(smooths=True)
    check_family_response(opts, spec, fam)
    if spec.tensors:
        raise UsageError("te() and t2() smooths are not available with --family; use s() terms.")
    if re_form != "population":
        raise UsageError("With --family, --predict gives population-level predictions only: leave out --re-form.")
    _stdin_once(path, predict)
    table = _load_model_data(path, spec, opts, response_as_read=fam.name == "binomial" and not spec.failures)
    frame = table.frame
    y, prior = glmm_response(frame, spec, fam)
    frame[spec.response] = y
    design = build_design(spec, frame, set(opts.factor))
    g = fit_gamm_glmm(design, fam, y, prior, progress)
    fit = g.glmm
    ngroups = {t.group: t.nlevels for t in fit.terms if t.indicator}
    base = glmm_dict(fit, formula=spec.text, ngroups=ngroups, data=table.source, dropped_rows=table.dropped_rows)
    base["offset"] = [str(o) for o in spec.offsets]
    d = gamm_dict(g, base)
    d["model"] = "gamm_glmm"
    for s, t in zip(d["smooths"], g.tests, strict=True):  # no residual variance: the smooth's variance is 1 / lambda
        s["variance"] = finite(1.0 / s["lambda"]) if s["lambda"] else 0.0
        del s["F"]  # the scale is known: summary.gam's Chi.sq in place of F
        s["chi_sq"] = finite(t.stat)
    notes = list(table.notes) + [n for n in [dropped_columns_note(fit.dropped_columns)] if n]
    rows: list[dict[str, Any]] = d["fixed_effects"]
    columns = ["term", "estimate", "std_error", "z_value", "p_value"]
    if predict:
        rows, predicted_notes = gamm_predictions(predict, spec, opts, design, g, frame, "population")
        import numpy as np

        mu, se_mu = g.to_response(np.array([r["fit"] for r in rows]), np.array([r["se"] for r in rows]))
        rows = [
            {**r, "fit_response": float(m), "se_response": float(s)} for r, m, s in zip(rows, mu, se_mu, strict=True)
        ]
        d["predictions"], d["re_form"] = rows, "population"
        notes += predicted_notes
        columns = list(rows[0].keys()) if rows else ["fit", "se", "fit_response", "se_response"]
    return Outcome(d, rows, columns, g, notes, fit.converged)
