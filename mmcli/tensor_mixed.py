"""A t2() smooth as several independent random effects (gamm4's ``smooth2random.t2.smooth``), and the t2 rows of
the `gamm` JSON. Numbers only.

t2's penalties are identities on disjoint blocks of its columns (Wood, Scheipl & Faraway 2013), so after
smoothCon's scaling (each block's penalty 1/S.scale) the block j is a random effect Zr_j = X_j √S.scale_j with
b_j ~ N(0, σ_j² I), and the unpenalized columns (the product of the margins' null spaces, less the centring
constraint) are fixed effects named ``t2(x,z)Fx1``, ... Each block becomes one part of the gamm (one variance
component, gamm4's ``Xr``, ``Xr.0``, ...); the parts of one t2 share its basis and are joined again in the
output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mmcli.tensor import TensorSmooth


@dataclass(frozen=True, eq=False)
class T2Part:
    """One penalty block of a t2 smooth in mixed form; the fixed (null-space) columns go with part 0.
    The interface is that of :class:`mmcli.smooths.MixedSmooth` (random part, fixed part, back to the
    smooth's coefficients)."""

    term: str
    index: int  # which block of the t2
    cols: np.ndarray  # the block's columns in the constrained basis
    trans_D: np.ndarray  # noqa: N815 - mgcv's trans.D: √S.scale on the block
    null_cols: np.ndarray  # the unpenalized columns (part 0 only; empty for the others)
    m: int  # number of columns of the constrained basis
    Zr: np.ndarray
    Xf: np.ndarray
    fixed_names: tuple[str, ...]

    @property
    def rank(self) -> int:
        return int(self.cols.size)

    def random_matrix(self, X_constrained: np.ndarray) -> np.ndarray:
        return np.asarray(X_constrained)[:, self.cols] * self.trans_D

    def fixed_matrix(self, X_constrained: np.ndarray) -> np.ndarray:
        return np.asarray(X_constrained)[:, self.null_cols]

    def coefficients(self, b_rand: np.ndarray, beta_fixed: np.ndarray) -> np.ndarray:
        """This part's share of the t2's coefficients in its constrained basis (zero elsewhere): the parts'
        shares add up to the whole vector."""
        out = np.zeros(self.m)
        out[self.cols] = np.asarray(b_rand, dtype=float).ravel() * self.trans_D
        out[self.null_cols] = np.asarray(beta_fixed, dtype=float).ravel()
        return out


def t2_parts(sm: TensorSmooth) -> list[T2Part]:
    """The t2 smooth's penalty blocks as random effects, in mgcv's order (``rr``, ``nr``, ``rn``, ...)."""
    assert sm.null_cols is not None
    parts = []
    names = tuple(f"{sm.term}Fx{j + 1}" for j in range(sm.null_cols.size))
    for j, (cols, scale) in enumerate(zip(sm.blocks, sm.S_scale)):
        tD = np.full(cols.size, np.sqrt(scale))
        null = sm.null_cols if j == 0 else np.zeros(0, dtype=int)
        parts.append(
            T2Part(
                term=sm.term,
                index=j,
                cols=cols,
                trans_D=tD,
                null_cols=null,
                m=sm.X.shape[1],
                Zr=sm.X[:, cols] * tD,
                Xf=sm.X[:, null],
                fixed_names=names if j == 0 else (),
            )
        )
    return parts


def join_t2_rows(smooths: list[dict[str, Any]], parts: list[Any]) -> list[dict[str, Any]]:
    """The `gamm` JSON's smooth rows with the parts of each t2 joined into one row: EDF summed, the smooth's
    one test (Ref.df, F, p-value: its parts carry the same), one λ and one variance per penalty block (lists,
    in mgcv's order), the coefficients added up."""
    out: list[dict[str, Any]] = []
    seen: dict[int, dict[str, Any]] = {}
    for row, sp in zip(smooths, parts):
        if not isinstance(sp.mixed, T2Part):
            out.append(row)
            continue
        key = id(sp.smooth)
        if key not in seen:
            sm = sp.smooth
            tests: dict[str, Any] = {f: row[f] for f in ("ref_df", "F", "p_value", "test") if f in row}
            seen[key] = joined = {
                "term": sm.term,
                "basis": "t2",
                "k": list(sm.k),
                "margins": [{"var": mg.var, "bs": mg.bs, "k": mg.k} for mg in sm.margins],
                "edf": 0.0,
                **tests,  # one test per t2: its parts carry the same
                "knots": [[float(v) for v in kn] for kn in sm.knots],
                "lambda": [],
                "variance": [],
                "penalties": list(sm.labels),
                "coefficients": [0.0] * sm.X.shape[1],
            }
            out.append(joined)
        joined = seen[key]
        joined["edf"] = (joined["edf"] or 0.0) + (row["edf"] or 0.0)
        joined["lambda"].append(row["lambda"])
        joined["variance"].append(row["variance"])
        joined["coefficients"] = [a + b for a, b in zip(joined["coefficients"], row["coefficients"])]
    return out
