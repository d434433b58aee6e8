"""Model spec + data columns -> y, X with R's column names, the random-effects terms in lme4's order, the
smooths' bases, prior weights and the offset: the one design path of fit, ranef and gamm. With data.py, the
only module that handles pandas objects."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from mmcli.columns import Coded, Columns, Frame, floats
from mmcli.data import level_order
from mmcli.errors import DataError, ModelError
from mmcli.fixed import FixedPart, model_matrix, plain_columns
from mmcli.formula import ModelSpec, Num, OffsetTerm, TensorTerm
from mmcli.formula.syntax import deep_trees, names_in
from mmcli.lmm import LmmModel, ReTerm, general_term, indicator_term
from mmcli.threads import copy_rows

if TYPE_CHECKING:
    import pandas as pd

    from mmcli.smooths import MixedSmooth, Smooth


@dataclass(frozen=True, eq=False)
class SmoothPart:
    """One s() term of a gamm: the mgcv basis, its mixed-model form, and the index in the design's terms of
    its random part (-1 when the penalty has rank 0)."""

    smooth: Smooth
    mixed: MixedSmooth
    term: int
    x: np.ndarray  # the data of its variable (n × d for several; the by values after them, if any)


@dataclass(frozen=True, eq=False)
class Design:
    """y, X (named as R names them), the random-effects terms in lme4's order, the smooths, prior weights and
    the offset: everything the numeric core needs, and what prediction needs to build new rows."""

    XY: np.ndarray  # [X y] in one array: the core reads it in place (X alone when ``has_y`` is False)
    xnames: list[str]
    terms: list[ReTerm]  # lme4's order (smooths' random parts included)
    fixed: FixedPart  # the parametric columns, the first len(fixed.names) of X
    smooths: list[SmoothPart] = field(default_factory=list)
    weights: np.ndarray | None = None
    offset: np.ndarray | None = None
    offsets: tuple[OffsetTerm, ...] = ()
    has_y: bool = True

    @property
    def X(self) -> np.ndarray:
        return self.XY[:, :-1] if self.has_y else self.XY

    @property
    def y(self) -> np.ndarray:
        assert self.has_y, "a design built without its response"
        return self.XY[:, -1]

    @property
    def ngroups(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.terms:
            if t.indicator:
                out.setdefault(t.group, t.nlevels)
        return out

    def model(self, method: str = "fast", *, overwrite_y: bool = False) -> LmmModel:
        """The core's model of this design: X, y, the terms, the names, prior weights and the offset.
        ``overwrite_y`` when the design's y is not used again (its memory then holds the working response)."""
        return LmmModel(
            self.X,
            self.y,
            self.terms,
            xnames=self.xnames,
            weights=self.weights,
            offset=self.offset,
            method=method,
            overwrite_y=overwrite_y,
        )

    def new_rows(self, frame: pd.DataFrame) -> NewRows:
        """The parametric columns, each smooth's x and the offset for new rows (prediction)."""
        return NewRows(
            X=self.fixed.rows(frame),
            names=list(self.fixed.names),
            smooth_x=[smooth_input(frame, sp.smooth.vars, sp.smooth.by, sp.smooth.by_level) for sp in self.smooths],
            offset=offset_values(frame, self.offsets),
        )


@dataclass(frozen=True, eq=False)
class NewRows:
    X: np.ndarray  # parametric columns, named by ``names``
    names: list[str]
    smooth_x: list[np.ndarray]  # per smooth: its variables (1-D for one), then the by values if it has a by
    offset: np.ndarray | None


def categorical_columns(spec: ModelSpec, frame: Frame, factors: set[str]) -> set[str]:
    """Columns treated as factors in the fixed part: --factor columns and text columns (as R does)."""
    out = set(factors)
    if isinstance(frame, Columns):
        return out | {c for c in frame.columns if isinstance(frame[c], Coded)}
    import pandas as pd

    for c in frame.columns:
        if not pd.api.types.is_numeric_dtype(frame[c].dtype):  # text (object, pandas 3's str) or category
            out.add(c)
    return out


def response(frame: Frame, name: str, *, as_float: bool = True) -> np.ndarray:
    """The response as floats (as it is held, without ``as_float``); a constant one is an error (there is no
    variance to split into components)."""
    y = floats(frame, name) if isinstance(frame, Columns) else frame[name].to_numpy()
    # most responses differ within their first rows: the whole column is compared only when those do not
    if y.size and np.all(y[:1024] == y[0]) and np.all(y == y[0]):
        raise DataError(
            f"The response '{name}' is constant (every value is {float(y[0]):g}): there is nothing to model. "
            "Check that the right column is named as the response."
        )
    return y.astype(float, copy=False) if as_float else y


def offset_values(frame: Frame, offsets: Sequence[OffsetTerm]) -> np.ndarray | None:
    """The sum of the offset terms, or None without any."""
    if not offsets:
        return None
    total = np.zeros(len(frame))
    for o in offsets:
        v = floats(frame, o.var)
        if o.log:
            if np.any(v <= 0):
                raise DataError(f"offset(log({o.var})) needs positive values of '{o.var}'.")
            v = np.log(v)
        total += v
    return total


def group_codes(frame: Frame, factors: tuple[str, ...]) -> tuple[np.ndarray, list[str]]:
    """The grouping factor a:b:... as level codes and labels ('a1:b2'), in R's order for ':' on factors
    (lexicographic, the first factor varying slowest; combinations absent from the data dropped)."""
    codes, labels = None, None
    for f in factors:
        values = frame[f]
        assert not isinstance(values, np.ndarray), f  # Columns' grouping factors are coded (build_design)
        lab, cod = level_order(values)
        if codes is None:
            codes, labels = cod, lab
            continue
        assert labels is not None
        key = codes.astype(np.int64) * len(lab) + cod
        uniq, inv = np.unique(key, return_inverse=True)
        labels = [f"{labels[k // len(lab)]}:{lab[k % len(lab)]}" for k in uniq]
        codes = inv.astype(np.int32)
    assert codes is not None and labels is not None
    return codes, labels


def lme4_order(nlevels: list[int]) -> list[int]:
    """lme4's mkReTrms: terms reordered by decreasing number of levels when any later term has more
    (rev(order(nl)), so ties come out reversed)."""
    if any(b > a for a, b in zip(nlevels, nlevels[1:])):
        asc = sorted(range(len(nlevels)), key=lambda i: nlevels[i])
        return asc[::-1]
    return list(range(len(nlevels)))


def build_design(
    spec: ModelSpec,
    frame: Frame,
    factors: set[str],
    *,
    weights: str | None = None,
    with_y: bool = True,
    consume: bool = False,
) -> Design:
    """y, X and the random-effects terms of a model spec on these data (:func:`_build_design`). Without
    ``with_y`` the design holds X alone (the caller keeps y: a GLMM's response, whose fit outlives X). With
    ``consume`` the frame loses each column that only the fixed part uses as soon as X holds it, so that a large
    data set is not held twice. Columns (no pandas) serve a model of numeric columns and grouping factors of
    text as they are; any other model is built from their pandas frame."""
    if isinstance(frame, Columns) and not _reads_columns(spec, frame, factors):
        frame = frame.frame()
    with deep_trees():
        return _build_design(spec, frame, factors, weights, with_y, consume)


def _reads_columns(spec: ModelSpec, frame: Columns, factors: set[str]) -> bool:
    """Whether the design of a model can be built from Columns: no smooth, every term of the fixed part and of
    each random-effects term a numeric column (or the intercept), every grouping factor coded text."""
    if spec.smooths or spec.tensors:
        return False
    cats = categorical_columns(spec, frame, factors)
    parts = [spec.fixed_terms, *(rt.terms for rt in spec.random)]
    plain = [plain_columns(terms, cats) for terms in parts]
    return all(
        p is not None and all(c in frame and isinstance(frame[c], np.ndarray) for c in p) for p in plain
    ) and all(f in frame and isinstance(frame[f], Coded) for rt in spec.random for f in rt.factors)


def _fixed_only(spec: ModelSpec, weights: str | None) -> set[str]:
    """The columns the fixed part alone uses (none with smooths, whose design reads the frame later)."""
    if spec.smooths or spec.tensors:
        return set()
    fixed = {n for _, t in spec.fixed_terms for n in names_in(t)}
    others = {spec.response, *spec.failures, *(o.var for o in spec.offsets), *([weights] if weights else [])}
    for rt in spec.random:
        others |= {n for _, t in rt.terms for n in names_in(t)} | set(rt.factors)
    return fixed - others


def _build_design(
    spec: ModelSpec, frame: Frame, factors: set[str], weights: str | None, with_y: bool, consume: bool
) -> Design:
    """y, X and the random-effects terms of a model spec on these data: the parametric columns, then each
    smooth's unpenalized columns (its penalized part becomes a random-effects term, mgcv's smooth2random),
    and the terms in lme4's order."""
    cats = categorical_columns(spec, frame, factors)
    if spec.response in cats:
        raise DataError(f"The response '{spec.response}' must be numeric; it was declared or read as a factor.")
    for s in spec.smooths:
        for v in s.variables:
            if v in cats:
                raise DataError(f"Cannot smooth '{v}': it is not a numeric column. A smooth needs numeric x.")
    if len({(s.variables, s.by) for s in spec.smooths}) < len(spec.smooths):
        raise ModelError("Each smooth can appear once: remove the repeated s(...) term.")
    has_smooths = bool(spec.smooths or spec.tensors)
    release = _fixed_only(spec, weights) if consume else set()
    Xp, fixed = model_matrix(
        spec.fixed_terms, frame, cats, extra=0 if has_smooths or not with_y else 1, release=release
    )
    smooths, tagged, xcols, xnames = [], [], [Xp], list(fixed.names)
    if spec.smooths:  # scipy comes with the bases: a model without smooths does not pay for its import
        from mmcli.smooths import smooth_construct, smooth_to_mixed
    table = cast("pd.DataFrame", frame)  # read below only for smooths, whose models build_design gives pandas' frame
    pieces = [(s, level) for s in spec.smooths for level in by_levels(table, s.by, cats)]
    # gamm4's names Xr, Xr.0, ...: one per s() (per level of a factor by) and one per penalty of a t2
    gnames = iter(smooth_group_names(len(pieces) + sum(2 ** len(t.vars) for t in spec.tensors)))
    for (s, level), gname in zip(pieces, gnames):
        x = smooth_input(table, s.variables, None, None)
        by = None if s.by is None else smooth_input(table, (), s.by, level)
        sm = smooth_construct(x, var=s.var, bs=s.bs, k=s.k, vars=s.variables, by=s.by, by_values=by, by_level=level)
        ms = smooth_to_mixed(sm)
        smooths.append((sm, ms, x if by is None else np.column_stack([x, by])))
        xcols.append(ms.Xf)
        xnames += list(ms.fixed_names)
        if ms.rank > 0:
            tagged.append((general_term(gname, ms.term, ms.Zr), len(smooths) - 1))
    for t in spec.tensors:  # t2() as gamm4 takes it: one random-effects term per penalty block
        for sm, ms, x in t2_design_parts(t, table, cats):
            smooths.append((sm, ms, x))
            xcols.append(ms.Xf)
            xnames += list(ms.fixed_names)
            tagged.append((general_term(next(gnames), ms.term, ms.Zr), len(smooths) - 1))
    for rt in spec.random:
        codes, labels = group_codes(frame, rt.factors)
        if all(isinstance(t, Num) for _, t in rt.terms):  # (1 | g): its names from no rows, no n-vector of ones
            T, part = model_matrix(rt.terms, frame.head(0), cats)
            T = np.broadcast_to(np.ones((1, 1)), (len(frame), T.shape[1]))
        else:
            T, part = model_matrix(rt.terms, frame, cats)
        if part.names == ["(Intercept)"]:
            T = np.broadcast_to(np.ones((1, 1)), T.shape)  # a view of one number: no n-vector of ones
        tnames = part.names
        if T.shape[1] == 0:
            raise ModelError(f"The random-effects term {rt} has no columns.")
        tagged.append((indicator_term(rt.group, tnames, codes.astype(np.int32, copy=False), labels, T), -1))
    order = lme4_order([t.nlevels for t, _ in tagged])
    tagged = [tagged[i] for i in order]
    y = response(frame, spec.response, as_float=with_y)  # checked in any case
    if has_smooths:
        XY = np.column_stack([*xcols, y] if with_y else xcols)
    else:
        XY = Xp  # the response goes in its trailing column: no copy of X
        if with_y:
            copy_rows(XY[:, -1], y)
    where = {j: i for i, (_, j) in enumerate(tagged) if j >= 0}
    return Design(
        XY=XY,
        xnames=xnames,
        terms=[t for t, _ in tagged],
        fixed=fixed,
        smooths=[SmoothPart(sm, ms, where.get(j, -1), x) for j, (sm, ms, x) in enumerate(smooths)],
        weights=None if weights is None else floats(frame, weights),
        offset=offset_values(frame, spec.offsets),
        offsets=spec.offsets,
        has_y=with_y,
    )


def by_levels(frame: pd.DataFrame, by: str | None, cats: set[str]) -> list[str | None]:
    """One smooth per level of a factor ``by`` (mgcv's order of levels), else one smooth."""
    if by is None or by not in cats:
        return [None]
    return list(level_order(frame[by])[0])


def smooth_input(frame: pd.DataFrame, vars: Sequence[str], by: str | None, level: str | None) -> np.ndarray:
    """A smooth's data: its variables (1-D for one, else n × d), then its by values: the numeric by
    column, or for a factor by 1 where the row is at ``level`` and 0 elsewhere."""
    cols = [frame[v].to_numpy(dtype=float) for v in vars]
    if by is not None:
        if level is None:
            v = frame[by].to_numpy(dtype=float)
            if not np.all(np.isfinite(v)):
                raise DataError(f"The by variable '{by}' has non-finite values; a numeric by needs finite numbers.")
            cols.append(v)
        else:
            labels, codes = level_order(frame[by])
            cols.append((np.asarray(labels, dtype=object)[codes] == level).astype(float))
    return cols[0] if len(cols) == 1 else np.column_stack(cols)


def smooth_group_names(count: int) -> list[str]:
    """gamm4's names for the smooths' random parts: Xr, Xr.0, Xr.1, ..."""
    return ["Xr"] + [f"Xr.{i}" for i in range(count - 1)]


def tensor_data(t: TensorTerm, frame: pd.DataFrame, cats: set[str]) -> list[np.ndarray]:
    """The columns of a te() or t2() term as floats; a factor among them is an error."""
    for v in t.vars:
        if v in cats:
            raise DataError(f"Cannot smooth '{v}' in {t.label}: it is not a numeric column.")
    return [frame[v].to_numpy(dtype=float) for v in t.vars]


def t2_design_parts(t: TensorTerm, frame: pd.DataFrame, cats: set[str]) -> list[tuple[Any, Any, np.ndarray]]:
    """A t2() term's basis (mgcv's smoothCon) split into its penalty blocks (gamm4's smooth2random); the
    parts share the basis and the data (n x d)."""
    from mmcli.tensor import t2_construct
    from mmcli.tensor_mixed import t2_parts

    if t.kind != "t2":
        raise ModelError(f"{t.label} is fitted by mmcli.gam_reml, not as a mixed model.")  # pragma: no cover
    xs = tensor_data(t, frame, cats)
    sm = t2_construct(xs, vars_=t.vars, bs=t.bs, k=t.k)
    x = np.column_stack(xs)
    return [(sm, part, x) for part in t2_parts(sm)]
