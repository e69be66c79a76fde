"""polygen as a torch.compile backend: ``torch.compile(fn, backend="polygen")`` finds the polynomial iterations
(Newton–Schulz, Polar Express lists, a user's own loop) in the graph, proves what they compute and runs
polygen's cheapest plan in their place; ``PolygenPass`` does the same under ``backend="inductor"``, and
``explain`` reports what would happen. Imported on first use only (an entry point names ``backend``)."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["PolygenPass", "Region", "backend", "explain"]

_LAZY = {"PolygenPass": "polygen.compile.graph_pass", "backend": "polygen.compile.graph_pass",
         "explain": "polygen.compile.graph_pass", "Region": "polygen.compile.recover"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import polygen.compile.ops  # noqa: F401 - registers polygen::recovered before any graph uses it

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'polygen.compile' has no attribute {name!r}")
