"""The same fit on a Dask cluster: the rows stay on the workers, only sums of them travel.

A glob of CSV or Parquet files is read with dask.dataframe, partition by partition. Three passes, each a task
per partition, with the sums added in a tree on the cluster:

1. the levels of every grouping factor (and of every a:b combination) found in the partition, and the
   first pass of :mod:`mmcli.lmm.stats` (R of X, X'X, X'y, ...), after the rows with a missing value in a
   used column are dropped (and counted);
2. here, locally: the levels in R's order (as :func:`mmcli.data.level_order` sorts them), the terms in lme4's
   order, the aliased columns, M, b0 and the template scales;
3. the second pass: the Gram blocks of each partition in the working parametrization, summed.

The optimizer then runs here on the summed Gram matrix (:class:`mmcli.lmm.stats.StatsModel`), which is the
one the in-memory fit builds, up to the order of the additions.

What it supports: ``fit`` of any random-effects structure mmcli fits (intercepts and correlated or
uncorrelated slopes; crossed, nested and a:b factors), ML or REML, prior weights and offsets, fixed effects
that are numeric columns or row-wise transforms of them (I(), log, ...). Not: categorical fixed effects
(factor(), text or --factor columns), the transforms that learn from the whole column (poly, scale, center),
smooths, and what needs the rows at the end (scaled residuals, degrees of freedom, predictions).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mmcli.errors import DataError, UsageError

if TYPE_CHECKING:
    import pandas as pd

    from mmcli.formula import ModelSpec
    from mmcli.lmm.stats import Chunk, FirstPass, SecondPass, Setup

_STATEFUL = ("poly", "scale", "center", "factor")


@dataclass(frozen=True)
class Plan:
    """What every partition needs (small, sent with each task)."""

    formula: str
    numeric: tuple[str, ...]  # read as numbers
    groups: tuple[str, ...]  # grouping columns, read as text
    weights: str | None = None


@dataclass(frozen=True, eq=False)
class Coding:
    """Level codes, agreed across partitions: per term, per factor the raw values and their codes in R's
    order, and the sorted keys of the combinations (a:b) present."""

    values: list[list[Any]]  # per term, per factor: a pandas Index of the raw values
    codes: list[list[np.ndarray]]
    sizes: list[list[int]]
    keys: list[np.ndarray]


@dataclass
class Levels:
    combos: list[pd.DataFrame] = field(default_factory=list)  # per term, the distinct rows of its factors


@functools.lru_cache(maxsize=8)
def _spec(formula: str) -> ModelSpec:
    from mmcli.formula import parse_formula

    return parse_formula(formula, allow_smooths=False)


def check_supported(spec: ModelSpec, factors: tuple[str, ...]) -> None:
    """A clean error for what the distributed fit does not do."""
    from mmcli.formula import Call
    from mmcli.formula.syntax import names_in

    def calls(node: Any) -> list[str]:
        out = [node.func] if isinstance(node, Call) else []
        for child in vars(node).values() if hasattr(node, "__dict__") else []:
            for c in child if isinstance(child, tuple | list) else [child]:
                if hasattr(c, "__dict__") or isinstance(c, Call):
                    out += calls(c)
        return out

    terms = list(spec.fixed_terms) + [t for rt in spec.random for t in rt.terms]
    for _, t in terms:
        bad = [f for f in calls(t) if f in _STATEFUL]
        if bad:
            raise UsageError(
                f"--dask fits numeric fixed effects and row-wise transforms of them; {bad[0]}() needs "
                "the whole column (or makes a categorical fixed effect). Fit it without --dask."
            )
        for name in names_in(t):
            if name in factors:
                raise UsageError(
                    f"--dask does not fit categorical fixed effects ('{name}' is declared a factor). Code it as "
                    "numeric 0/1 columns, or fit it without --dask."
                )
    if spec.smooths:
        raise UsageError("--dask fits linear mixed models (fit); smooths are not supported.")


def plan_for(spec: ModelSpec, weights: str | None) -> Plan:
    groups = tuple(dict.fromkeys(f for rt in spec.random for f in rt.factors))
    numeric = [c for c in spec.variables() if c not in groups]
    numeric += [weights] if weights else []
    return Plan(spec.text, tuple(dict.fromkeys(numeric)), groups, weights)


# --------------------------------------------------------------------------------------------------
# What runs on a worker, one partition at a time


def _complete(pdf: pd.DataFrame, plan: Plan) -> tuple[pd.DataFrame, int]:
    """The partition's rows without a missing value in a used column, numbers as float, groups as text."""
    used = list(plan.numeric) + list(plan.groups)
    frame = pdf[used]
    ok = frame.notna().all(axis=1).to_numpy()
    for c in plan.numeric:
        if frame[c].dtype.kind not in "fiub":
            raise DataError(f"Column '{c}' must be numeric; it holds text.")
    frame = frame.loc[ok]
    out = {c: frame[c].to_numpy(dtype=float) for c in plan.numeric}
    for g in plan.groups:
        col = frame[g]
        out[g] = col.astype(str).str.strip().to_numpy(dtype=object) if col.dtype.kind != "O" else col.to_numpy()
    import pandas as pd

    return pd.DataFrame(out), int((~ok).sum())


def _checked(frame: pd.DataFrame, plan: Plan) -> None:
    from mmcli.data import HUGE

    for c in plan.numeric:
        v = frame[c].to_numpy()
        if v.size and not np.all(np.abs(v) <= HUGE):
            raise DataError(f"Column '{c}' has an infinite value or one too large (above 1e154 in size).")
    if plan.weights and frame[plan.weights].size and not np.all(frame[plan.weights].to_numpy() > 0):
        raise DataError(f"The prior weights '{plan.weights}': every value must be positive.")


def _chunk(frame: pd.DataFrame, plan: Plan, coding: Coding | None) -> tuple[Chunk, list[str], list[list[str]]]:
    from mmcli.design import offset_values
    from mmcli.fixed import model_matrix
    from mmcli.lmm.stats import Chunk

    spec = _spec(plan.formula)
    X, part = model_matrix(spec.fixed_terms, frame, set())
    y = frame[spec.response].to_numpy(dtype=float)
    off = offset_values(frame, spec.offsets)
    if off is not None:
        y = y - off
    Ts, tnames, codes = [], [], []
    for k, rt in enumerate(spec.random):
        T, tp = model_matrix(rt.terms, frame, set())
        Ts.append(np.ascontiguousarray(T))
        tnames.append(tp.names)
        codes.append(_codes(frame, rt.factors, coding, k) if coding is not None else np.zeros(len(frame), np.int32))
    w = frame[plan.weights].to_numpy(dtype=float) if plan.weights else None
    return Chunk(X=X, y=y, w=w, codes=codes, T=Ts), list(part.names), tnames


def _codes(frame: pd.DataFrame, factors: tuple[str, ...], coding: Coding, k: int) -> np.ndarray:
    key = np.zeros(len(frame), dtype=np.int64)
    for j, f in enumerate(factors):
        pos = coding.values[k][j].get_indexer(frame[f].to_numpy())
        key = key * coding.sizes[k][j] + coding.codes[k][j][pos]
    return np.searchsorted(coding.keys[k], key).astype(np.int32)


def first_task(pdf: pd.DataFrame, plan: Plan) -> tuple[FirstPass, Levels, int, list[str], list[list[str]]]:
    from mmcli.lmm.stats import first_pass

    frame, dropped = _complete(pdf, plan)
    _checked(frame, plan)
    spec = _spec(plan.formula)
    levels = Levels([frame[list(rt.factors)].drop_duplicates() for rt in spec.random])
    chunk, xnames, tnames = _chunk(frame, plan, None)
    return first_pass(chunk), levels, dropped, xnames, tnames


def second_task(pdf: pd.DataFrame, plan: Plan, coding: Coding, st: Setup, order: list[int]) -> SecondPass:
    from mmcli.lmm.stats import Chunk, second_pass

    frame, _ = _complete(pdf, plan)
    c, _, _ = _chunk(frame, plan, coding)
    return second_pass(st, Chunk(c.X, c.y, c.w, [c.codes[i] for i in order], [c.T[i] for i in order]))


def _add_first_results(a: tuple, b: tuple) -> tuple:
    import pandas as pd

    from mmcli.lmm.stats import add_first

    levels = Levels([pd.concat([x, y]).drop_duplicates() for x, y in zip(a[1].combos, b[1].combos)])
    return add_first(a[0], b[0]), levels, a[2] + b[2], a[3], a[4]


def _tree(client: Any, futures: list[Any], add: Any) -> Any:
    """Add the partitions' results pairwise on the cluster; only the total comes back."""
    while len(futures) > 1:
        pairs = [client.submit(add, futures[i], futures[i + 1]) for i in range(0, len(futures) - 1, 2)]
        futures = pairs + ([futures[-1]] if len(futures) % 2 else [])
    return futures[0].result()


# --------------------------------------------------------------------------------------------------
# Here


def level_coding(spec: ModelSpec, levels: Levels) -> tuple[Coding, list[list[str]]]:
    """The codes of every level in R's order, and each term's labels (a1:b2 for a:b, as in memory)."""
    import pandas as pd

    from mmcli.data import level_order

    values, codes, sizes, keys, labels = [], [], [], [], []
    for rt, combos in zip(spec.random, levels.combos):
        vs, cs, ns, key, labs = [], [], [], np.zeros(len(combos), dtype=np.int64), None
        for f in rt.factors:
            raw = pd.unique(combos[f].to_numpy())
            lab, cod = level_order(pd.Series(raw, dtype=object))
            vs.append(pd.Index(raw, dtype=object))
            cs.append(cod.astype(np.int64))
            ns.append(len(lab))
            key = key * len(lab) + cod.astype(np.int64)[vs[-1].get_indexer(combos[f].to_numpy())]
            labs = lab if labs is None else [f"{a}:{b}" for a in labs for b in lab]
        uniq = np.unique(key)
        assert labs is not None
        labels.append([labs[int(k)] for k in uniq])
        values.append(vs)
        codes.append(cs)
        sizes.append(ns)
        keys.append(uniq)
    return Coding(values, codes, sizes, keys), labels


def _client(address: str) -> tuple[Any, Any]:
    """A client of the scheduler at ADDRESS, or of a LocalCluster started here for local[:N]."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise DataError("--dask needs dask and distributed: pip install 'mmcli[dask]'.") from None
    if address == "local" or address.startswith("local:"):
        n = address.partition(":")[2]
        if n and (not n.isdigit() or int(n) < 1):
            raise UsageError(f"--dask local:N needs a number of workers N >= 1, not '{n}'.")
        workers = int(n) if n else max(1, min(4, os.cpu_count() or 1))
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None, silence_logs=50)
        return Client(cluster), cluster
    try:
        return Client(address, timeout="15s"), None
    except (OSError, TimeoutError, ValueError) as e:
        raise DataError(f"Cannot reach the Dask scheduler at '{address}': {str(e).splitlines()[0]}") from None


def read_partitions(pattern: str, plan: Plan, na: tuple[str, ...]) -> list[Any]:
    """The delayed partitions of a glob of CSV or Parquet files, only the used columns."""
    import glob

    import dask.dataframe as dd

    from mmcli.csvread import na_tokens, numeric_na_tokens
    from mmcli.parquet import SUFFIXES

    if "://" in pattern:  # s3://, gs://, hdfs://, ...: dask lists the files (fsspec), where they are
        files: Any = pattern
        parquet = pattern.lower().rstrip("/").endswith(SUFFIXES)
    else:
        files = sorted(glob.glob(pattern)) if any(ch in pattern for ch in "*?[") else [pattern]
        if not files or not all(os.path.exists(f) for f in files):
            raise DataError(f"No file matches '{pattern}'.")
        parquet = all(f.lower().endswith(SUFFIXES) for f in files)
    used = list(plan.numeric) + list(plan.groups)
    try:
        if parquet:
            ddf = dd.read_parquet(files, columns=used)
        else:
            nas = {c: numeric_na_tokens(na) for c in plan.numeric} | {c: na_tokens(na) for c in plan.groups}
            dtypes = {c: "float64" for c in plan.numeric} | {c: "str" for c in plan.groups}
            ddf = dd.read_csv(
                files, usecols=used, dtype=dtypes, na_values=nas, keep_default_na=False, skipinitialspace=True
            )
    except (ValueError, KeyError, OSError) as e:
        raise DataError(f"Cannot read '{pattern}': {str(e).strip().splitlines()[0]}") from None
    return list(ddf.to_delayed())


def fit_on_cluster(
    address: str, pattern: str, spec: ModelSpec, *, reml: bool, weights: str | None, na: tuple[str, ...]
) -> Any:
    """The fit, its groups' sizes and the rows dropped: the passes of the module docstring."""
    from mmcli.design import lme4_order
    from mmcli.lmm.stats import StatsModel, add_second, rowless_term, setup

    plan = plan_for(spec, weights)
    parts = read_partitions(pattern, plan, na)
    client, cluster = _client(address)
    try:
        futures = client.compute([_delayed(first_task)(p, plan) for p in parts])
        fp, levels, dropped, xnames, tnames = _tree(client, futures, _add_first_results)
        if fp.n == 0:
            raise DataError(f"No complete rows: every row of '{pattern}' has a missing value in a used column.")
        coding, labels = level_coding(spec, levels)
        order = lme4_order([len(lab) for lab in labels])
        terms = [rowless_term(spec.random[i].group, tnames[i], labels[i]) for i in order]
        fp = dataclasses.replace(fp, tsq=[fp.tsq[i] for i in order])
        st = setup(fp, [t.group for t in terms], [t.nlevels for t in terms], weights is not None)
        coding_f, st_f = client.scatter(coding, broadcast=True), client.scatter(st, broadcast=True)
        futures = client.compute([_delayed(second_task)(p, plan, coding_f, st_f, order) for p in parts])
        total = _tree(client, futures, add_second)
    except (DataError, UsageError):
        raise
    except Exception as e:  # a worker's read or parse error, as one line
        raise DataError(f"Reading '{pattern}' on the cluster failed: {str(e).strip().splitlines()[0]}") from None
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    model = StatsModel(terms, xnames, st, total)
    return model, {t.group: t.nlevels for t in terms}, dropped


def _delayed(f: Any) -> Any:
    from dask import delayed

    return delayed(f, pure=False)


def run_fit_dask(address: str, pattern: str, opts: Any, *, reml: bool, ddf: str, method: str = "fast") -> Any:
    """`mmcli fit --dask ADDRESS`: the fit of the files matching ``pattern``, computed on the cluster."""
    from mmcli.commands import Outcome
    from mmcli.report import dropped_columns_note, fit_dict

    if method != "fast":
        raise UsageError("--dask fits with the blocked Cholesky: leave out --method dense.")
    spec = opts.spec(smooths=False)
    if not spec.random:
        raise UsageError(f"The model '{spec.text}' has no random-effects term: add one, e.g. '+ (1 | group)'.")
    check_supported(spec, tuple(opts.factor))
    model, ngroups, dropped = fit_on_cluster(address, pattern, spec, reml=reml, weights=opts.weights, na=opts.na)
    fit = model.fit(reml)
    d = fit_dict(
        fit,
        formula=spec.text,
        ngroups=ngroups,
        dropped_rows=dropped,
        data=pattern,
        weights=opts.weights,
        offset=[str(o) for o in spec.offsets],
    )
    d["scaled_residuals"] = None
    notes = [f"Dropped {dropped} of {fit.n + dropped} rows with a missing value in a used column."] if dropped else []
    notes += [n for n in [dropped_columns_note(fit.dropped_columns)] if n]
    if ddf != "none":
        notes.append("With --dask the fixed-effects table is lme4's (no df or p-values: they need the rows).")
    columns = ["term", "estimate", "std_error", "t_value"]
    return Outcome(d, d["fixed_effects"], columns, fit, notes, fit.converged)
