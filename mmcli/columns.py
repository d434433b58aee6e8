"""A model's columns as numpy arrays, without pandas: what the large-file readers (Parquet, pyarrow's CSV reader)
give when every used column is a number or a grouping column of text, and what a linear mixed model's design
reads of them. Such a fit never imports pandas (0.2-0.3 s of a 10^7-row fit's 2 s); anything else asks for the
data frame (:meth:`Columns.frame`), which holds the same values.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Coded:
    """A grouping column as int32 codes into its distinct labels (code -1: missing). ``levels``: the labels are
    R's levels already, as R prints them and in R's order (a column of integers, sorted as numbers), so that
    nothing need parse them. ``counts``: the rows of each label, when the reader counted them as it made the
    codes (None once rows are dropped)."""

    codes: np.ndarray
    labels: list[Any]
    levels: bool = False
    counts: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.codes.size)


class Columns:
    """Named columns of equal length: float64 arrays (NaN: missing) and :class:`Coded` text. Read, replaced and
    deleted by name, as a data frame's are."""

    def __init__(self, cols: dict[str, np.ndarray | Coded]):
        self._cols = dict(cols)

    @property
    def columns(self) -> list[str]:
        return list(self._cols)

    def __len__(self) -> int:
        return len(next(iter(self._cols.values()))) if self._cols else 0

    def __iter__(self) -> Iterator[str]:
        return iter(self._cols)

    def __contains__(self, name: object) -> bool:
        return name in self._cols

    def __getitem__(self, name: str) -> np.ndarray | Coded:
        return self._cols[name]

    def __setitem__(self, name: str, values: np.ndarray | Coded) -> None:
        self._cols[name] = values

    def __delitem__(self, name: str) -> None:
        del self._cols[name]

    def head(self, n: int) -> Columns:
        """The first n rows."""
        return self.rows(slice(0, n))

    def rows(self, which: slice | np.ndarray) -> Columns:
        """The rows a slice or a boolean mask selects (a Coded column keeps all its labels)."""
        return Columns(
            {
                c: Coded(v.codes[which], v.labels, v.levels) if isinstance(v, Coded) else v[which]
                for c, v in self._cols.items()
            }
        )

    def frame(self) -> pd.DataFrame:
        """The same columns as a pandas data frame (text as categoricals; no number is copied)."""
        import pandas as pd

        from mmcli.arrowcsv import categorical

        cols = {c: categorical(v.codes, v.labels) if isinstance(v, Coded) else v for c, v in self._cols.items()}
        return pd.DataFrame(cols, copy=False)


Frame = Union["pd.DataFrame", Columns]
"""The data a design is built from: a pandas data frame, or :class:`Columns`."""


def floats(frame: Frame, name: str) -> np.ndarray:
    """A column of numbers as float64 (no copy when it is held so), from either kind of frame."""
    if isinstance(frame, Columns):
        values = frame[name]
        if isinstance(values, Coded):
            raise TypeError(f"column {name} holds text")
        return values
    return frame[name].to_numpy(dtype=float)
