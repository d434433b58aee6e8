"""scipy.linalg and scipy.sparse, imported on first use: they cost a fifth of a second to import, and a model
with one grouping factor needs neither (numpy's LAPACK does its few small factorizations)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any


class _LazyModule:
    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        import importlib

        return getattr(importlib.import_module(self._name), attr)


if TYPE_CHECKING:
    import scipy.linalg as sla
    import scipy.sparse as sp
else:
    sla = _LazyModule("scipy.linalg")
    sp = _LazyModule("scipy.sparse")

__all__ = ["sla", "sp"]
