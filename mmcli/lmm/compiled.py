"""scipy's compiled modules loaded without their package's ``__init__``: the LAPACK wrappers of scipy.linalg
(``_flapack``) and the L-BFGS-B routine of scipy.optimize (``_lbfgsb``). Each is an extension module that needs
only numpy, while importing its package runs scipy's array-API layer, docstring processing and every
submodule (scipy.optimize: about 0.3-0.5 s; scipy.linalg: about 0.1 s after pandas). The functions are the
very objects the packages export (``scipy.linalg.lapack.dpotrf is _flapack.dpotrf``), so results are the same.

A module loaded here is not left in ``sys.modules``: a later ``import scipy.linalg`` loads it the ordinary way
and binds it to its package, as if this module had not run."""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import importlib.util
import os
import sys
import threading
from types import ModuleType

_loaded: dict[str, ModuleType | None] = {}
_loading = threading.Lock()  # a module is loaded once, whichever thread asks first (see preload)


def extension(package: str, name: str) -> ModuleType | None:
    """The extension module ``package.name``, or None when it cannot be found or loaded. When the package has
    been imported already, its own module is returned."""
    full = f"{package}.{name}"
    if full in sys.modules:
        return sys.modules[full]
    if package in sys.modules:
        try:
            return importlib.import_module(full)
        except ImportError:
            return None
    with _loading:
        if full not in _loaded:
            _loaded[full] = _load(package, name)
    return _loaded[full]


def _load(package: str, name: str) -> ModuleType | None:
    full = f"{package}.{name}"
    try:
        spec = importlib.util.find_spec(package)  # imports the parents (scipy itself is cheap), not the package
        if spec is None or not spec.submodule_search_locations:
            return None
        for d in spec.submodule_search_locations:
            for suffix in importlib.machinery.EXTENSION_SUFFIXES:
                path = os.path.join(d, name + suffix)
                if os.path.isfile(path):
                    loader = importlib.machinery.ExtensionFileLoader(full, path)
                    mspec = importlib.util.spec_from_file_location(full, path, loader=loader)
                    if mspec is None:
                        return None
                    module = importlib.util.module_from_spec(mspec)
                    loader.exec_module(module)
                    sys.modules.pop(full, None)  # single-phase modules register themselves; see the module's doc
                    return module
    except (ImportError, OSError, ValueError):
        return None
    return None


def preload() -> None:
    """Load what a fit calls compiled: scipy's LAPACK wrappers (with scipy's own OpenBLAS, about 50 ms to load)
    and L-BFGS-B's routine; for a caller to do on a thread while it reads the data. A failure is left for the fit
    to meet and report."""
    from mmcli.lmm.setulb import load

    with contextlib.suppress(Exception):
        lapack()
        load()


def lapack() -> ModuleType:
    """scipy's LAPACK wrappers: the compiled module when it loads, else ``scipy.linalg.lapack``."""
    module = extension("scipy.linalg", "_flapack")
    if module is not None:
        return module
    import scipy.linalg.lapack

    return scipy.linalg.lapack
