"""polygen: a compiler for polynomial matrix iterations (spec → spectral IR → schedule → generated code).

Public API (../shared/DESIGN.md §2): ``load_spec``, ``parse_spec``, ``list_specs``, ``schedule``, ``generate``,
``load``; optimizers live in ``polygen.optim``. Names are imported on first use, so ``import polygen`` and
``polygen.load("muon_ns5")`` stay light: the compiler (SymPy, the passes, the templates) loads only for
``parse_spec``, ``schedule``, ``generate`` and user specs not yet in the cache.
"""

from __future__ import annotations

import importlib
from typing import Any

from polygen.errors import ConvergenceError, PolygenError, ScheduleError, SpecError, StaleGeneratedError
from polygen.torch_version import check_torch

__version__ = "0.1.0"
check_torch()  # an untested torch minor version is an ImportError with the tested range (polygen.torch_version)

_LAZY = {
    "generate": "polygen.driver", "schedule": "polygen.driver",
    "load": "polygen.runtime", "list_specs": "polygen.runtime.specfiles",
    "load_spec": "polygen.spec", "parse_spec": "polygen.spec",
}

__all__ = [
    "ConvergenceError", "PolygenError", "ScheduleError", "SpecError", "StaleGeneratedError",
    "__version__", "generate", "list_specs", "load", "load_spec", "parse_spec", "schedule",
]


_SUBMODULES = {"cli", "codegen", "compare", "cost", "driver", "dtypes", "errors", "fit", "ir", "optim", "passes",
               "plot", "resources", "runtime", "spec"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _SUBMODULES:  # ``polygen.spec.…`` works after a bare ``import polygen``, as before
        value = importlib.import_module(f"polygen.{name}")
    else:
        raise AttributeError(f"module 'polygen' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
