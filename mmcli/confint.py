"""Confidence intervals for a linear mixed model, as lme4's ``confint(m, method = "profile" | "Wald" | "boot")``.

The rows are lme4's (``oldNames = TRUE``): ``.sig01``, ``.sig02``, ... for the standard deviations and
correlations of the random effects (each term's lower triangle column by column, the terms in lme4's order),
``.sigma``, then the fixed effects by name.

- ``profile``: :mod:`mmcli.lmm.profile` (the ML profile, as lme4 profiles a REML fit on its ML refit);
- ``wald``: beta +- z SE(beta) from the fit (REML or ML, as asked); the variance parameters have none (NA);
- ``boot``: the parametric bootstrap's percentile intervals (:mod:`mmcli.lmm.bootstrap`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

METHODS = ("profile", "wald", "boot")


def describe(terms: Any, xnames: Any) -> list[tuple[str, str]]:
    """(lme4's row name, what it is) for every parameter."""
    out = []
    for t in terms:
        for i, j in t.template_positions():
            what = f"sd {t.names[i]}" if i == j else f"cor {t.names[j]}, {t.names[i]}"
            out.append(f"{what} | {t.group}")
    rows = [(f".sig{k + 1:02d}", w) for k, w in enumerate(out)]
    return [*rows, (".sigma", "residual sd"), *[(x, "fixed effect") for x in xnames]]


def column_names(level: float) -> tuple[str, str]:
    """R's column names: ``2.5 %`` and ``97.5 %`` for level 0.95 (format(100 * p, digits = 3) and ' %')."""

    def pct(p: float) -> str:
        return f"{float(f'{100 * p:.3g}'):g} %"

    return pct((1 - level) / 2), pct((1 + level) / 2)


def intervals(
    design: Any,
    *,
    method: str,
    level: float,
    reml: bool,
    nsim: int = 500,
    seed: int | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> tuple[Any, list[tuple[float | None, float | None]], dict[str, Any]]:
    """The fit (REML or ML, as asked), one (lower, upper) per parameter, and what else the method reports."""
    from statistics import NormalDist  # scipy.stats would take a second to import

    norm = NormalDist()

    fit = design.model().fit(reml)
    k = sum(t.ntheta for t in design.terms) + 1
    extra: dict[str, Any] = {}
    if method == "wald":
        z = float(norm.inv_cdf((1 + level) / 2))
        ends: list[tuple[float | None, float | None]] = [(None, None)] * k  # lme4's NA: none for variances
        ends += [(float(b - z * s), float(b + z * s)) for b, s in zip(fit.beta, fit.std_errors)]
    elif method == "profile":
        from mmcli.lmm import profile_intervals

        prof = profile_intervals(
            design.X,
            design.y,
            design.terms,
            xnames=design.xnames,
            weights=design.weights,
            offset=design.offset,
            level=level,
            progress=progress,
            ml_fit=None if reml else fit,
        )
        ends = [(r.lower, r.upper) for r in prof]
    else:
        from mmcli.lmm import bootstrap, percentile

        seed = int(np.random.default_rng().integers(2**31)) if seed is None else seed
        keep = [list(design.xnames).index(x) for x in fit.xnames]
        X = np.asarray(design.X, dtype=float)[:, keep]
        reps, failed = bootstrap(fit, X, design.terms, nsim=nsim, seed=seed, offset=design.offset, progress=progress)
        a = (1 - level) / 2
        ends = [(percentile(reps[:, c], a), percentile(reps[:, c], 1 - a)) for c in range(reps.shape[1])]
        extra = {"nsim": nsim, "seed": seed, "failed": failed}
    return fit, ends, extra
