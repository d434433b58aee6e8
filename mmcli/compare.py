"""`mmcli compare`: likelihood-ratio tests between LMMs fitted to the same data, as lme4's ``anova(m1, m2, ...)``.

Every model is fitted by maximum likelihood (lme4 refits REML fits by ML for this, because REML criteria of
models with different fixed effects are not comparable). The models are sorted by their number of parameters
(npar = fixed effects + variance parameters + 1, a stable sort); each row after the first is tested against the
row before: Chisq = 2 max(0, logLik_i - logLik_{i-1}) on Df = npar_i - npar_{i-1} degrees of freedom, and
Pr(>Chisq) its upper chi-square tail (Pinheiro & Bates 2000, section 2.4; no value when Df = 0).
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Iterator
from typing import Any

from mmcli import data as dataio
from mmcli.commands import ModelOptions, Outcome, _load_model_data
from mmcli.errors import DataError, UsageError
from mmcli.formula import ModelSpec
from mmcli.report import finite

CRITERIA = ("npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "Pr(>Chisq)")


def chisq_upper(x: float, df: int) -> float:
    """P(X > x) for X ~ chi-square(df), df >= 1 (R's pchisq(x, df, lower.tail = FALSE))."""
    from scipy.stats import chi2

    return float(chi2.sf(x, df))


@contextlib.contextmanager
def _replayable(path: str) -> Iterator[Any]:
    """Standard input read once, and offered again for each model's read."""
    if path != "-":
        yield contextlib.nullcontext
        return
    stdin = sys.stdin
    raw = stdin.buffer.read() if hasattr(stdin, "buffer") else stdin.read().encode("utf-8")

    @contextlib.contextmanager
    def again() -> Iterator[None]:
        sys.stdin = io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8")
        try:
            yield
        finally:
            sys.stdin = stdin

    yield again


def anova_rows(names: list[str], formulas: list[str], fits: list[Any]) -> list[dict[str, Any]]:
    """lme4's anova table of ML fits: sorted by npar (ties in the order given), each tested against the row
    before it."""
    order = sorted(range(len(fits)), key=lambda i: fits[i].npar)
    rows: list[dict[str, Any]] = []
    prev = None
    for i in order:
        f = fits[i]
        row = {
            "model": names[i],
            "formula": formulas[i],
            "npar": f.npar,
            "AIC": finite(f.aic),
            "BIC": finite(f.bic),
            "logLik": finite(f.loglik),
            "deviance": finite(f.objective),
            "Chisq": None,
            "Df": None,
            "p_value": None,
        }
        if prev is not None:
            chisq = 2.0 * max(0.0, f.loglik - prev.loglik)
            df = f.npar - prev.npar
            row.update(Chisq=finite(chisq), Df=df, p_value=finite(chisq_upper(chisq, df)) if df > 0 else None)
        rows.append(row)
        prev = f
    return rows


def run_compare(
    path: str, formulas: list[str], opts: ModelOptions, *, reml: bool = False, method: str = "fast"
) -> Outcome:
    """`mmcli compare`: fit each formula by ML to the same rows of DATA and tabulate lme4's anova()."""
    from mmcli.design import build_design

    if len(formulas) < 2:
        raise UsageError(f"compare needs at least two formulas, {len(formulas)} given: lme4's anova(m1, m2, ...).")
    specs: list[ModelSpec] = []
    for text in formulas:
        spec = ModelOptions(formula=text, factor=opts.factor, weights=opts.weights, na=opts.na).spec(smooths=False)
        if not spec.random:
            raise UsageError(f"The model '{spec.text}' has no random-effects term: add one, e.g. '+ (1 | group)'.")
        specs.append(spec)
    responses = list(dict.fromkeys(s.response for s in specs))
    if len(responses) > 1:
        raise DataError(
            f"The models have different responses ({', '.join(responses)}): likelihoods of different responses "
            "cannot be compared. Give formulas with the same left-hand side."
        )
    fits: list[Any] = []
    nobs: list[int] = []
    source, notes = "", list[str]()
    with _replayable(path) as again:
        for spec in specs:
            with again():
                table = _load_model_data(path, spec, opts)
            design = build_design(spec, table.frame, set(opts.factor), weights=opts.weights)
            source, notes = table.source, notes or list(table.notes)
            del table
            fit = design.model(method, overwrite_y=True).fit(reml=False)
            fits.append(fit)
            nobs.append(fit.n)
        if len(set(nobs)) == 1:
            with again():
                nobs.append(_rows_of_all(path, specs, opts))
    if len(set(nobs)) > 1:
        sizes = ", ".join(f"m{i + 1}: {n}" for i, n in enumerate(nobs[: len(specs)]))
        raise DataError(
            "The models were not all fitted to the same rows (lme4: 'models were not all fitted to the same size of "
            f"dataset'; rows used {sizes}): a column one model uses has missing values. Remove the rows with missing "
            "values in any of the models' columns first, so that every model sees the same rows."
        )
    names = [f"m{i + 1}" for i in range(len(specs))]
    texts = [s.text for s in specs]
    rows = anova_rows(names, texts, fits)
    if reml:
        notes.append(
            "refitting model(s) with ML (instead of REML), as lme4's anova does: the REML criteria of models with "
            "different fixed effects cannot be compared."
        )
    notes.append(
        "the likelihood-ratio test assumes each model is nested in the next one of the table; neither lme4 nor "
        "mmcli checks that. With a variance on its boundary (zero) under the smaller model, the p-value is "
        "conservative."
    )
    notes += nesting_notes(names, fits)
    if any(r["Df"] == 0 for r in rows):
        notes.append("models with the same number of parameters have Df 0 and no test (Pr(>Chisq) is NA).")
    converged = all(f.converged for f in fits)
    d = {
        "data": source,
        "method": "ML",
        "refitted": bool(reml),
        "nobs": nobs[0],
        "models": [{"model": n, "formula": t} for n, t in zip(names, texts)],
        "anova": rows,
        "converged": converged,
        "optimizer": {"message": "; ".join(f"{n}: {f.optimizer.message}" for n, f in zip(names, fits))},
    }
    columns = ["model", "formula", "npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "p_value"]
    return Outcome(d, rows, columns, fits, notes, converged)


def nesting_notes(names: list[str], fits: list[Any]) -> list[str]:
    """A necessary condition of nesting, checked for each row of the table against the row before: the
    smaller model's fixed effects are among the larger's, and each of its random-effects terms is within a
    term of the larger on the same grouping factor. (Sufficient it is not: that is what neither lme4 nor mmcli
    checks.)"""
    order = sorted(range(len(fits)), key=lambda i: fits[i].npar)
    out = []
    for a, b in zip(order, order[1:]):
        small, large = fits[a], fits[b]
        missing = [x for x in small.xnames if x not in large.xnames]
        terms = [
            "(" + " + ".join("1" if n == "(Intercept)" else n for n in t.names) + f" | {t.group})"
            for t in small.terms
            if not any(u.group == t.group and set(t.names) <= set(u.names) for u in large.terms)
        ]
        if missing or terms:
            what = ", ".join(missing + terms)
            out.append(
                f"{names[a]} is not nested in {names[b]}: {names[b]} lacks {what}. The likelihood-ratio test "
                "compares nested models only; AIC and BIC still compare them."
            )
    return out


def _rows_of_all(path: str, specs: list[ModelSpec], opts: ModelOptions) -> int:
    """Rows complete in every model's columns. With the same count in each model, this equals it exactly
    when every model used the same rows (each model's rows include these)."""
    numeric: list[str] = []
    categorical: list[str] = []
    for s in specs:
        numeric += [s.response] + [o.var for o in s.offsets]
        categorical += [f for t in s.random for f in t.factors]
    numeric += [opts.weights] if opts.weights else []
    used = list(dict.fromkeys(c for s in specs for c in s.variables()))
    numeric = list(dict.fromkeys(numeric))
    categorical = [c for c in dict.fromkeys(categorical + list(opts.factor)) if c in used and c not in numeric]
    other = [c for c in used if c not in numeric and c not in categorical]
    return len(dataio.load(path, numeric=numeric, categorical=categorical, other=other, na=opts.na).frame)
