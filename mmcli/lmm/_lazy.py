"""scipy.linalg and scipy.sparse, imported on first use: they cost a fifth of a second to import, and a model
with one grouping factor needs neither (numpy's LAPACK does its few small factorizations).

``sla.lapack`` is scipy's compiled LAPACK module itself (``scipy.linalg._flapack``, the functions
``scipy.linalg.lapack`` exports), loaded without importing scipy.linalg (:mod:`mmcli.lmm.compiled`); the rest
of ``sla`` imports scipy.linalg."""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any


class _LazyModule:
    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        import importlib

        return getattr(importlib.import_module(self._name), attr)


class _LazyLinalg(_LazyModule):
    @property
    def lapack(self) -> ModuleType:
        from mmcli.lmm.compiled import lapack

        return lapack()


if TYPE_CHECKING:
    import scipy.linalg as sla
    import scipy.sparse as sp
else:
    sla = _LazyLinalg("scipy.linalg")
    sp = _LazyModule("scipy.sparse")

__all__ = ["sla", "sp"]
