"""The runtime half of the compile backend: one torch.library op that runs a recovered spec's plan.

The rewritten graph holds ``polygen::recovered(X, spec_text, plan)``; the op keeps one PolygenFunction per spec
text, whose module comes from the same content-keyed cache as any user spec's (compiled on the first call
only, and never again in a process with a warm cache). Inductor calls it as an extern kernel.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from polygen.runtime.loader import PolygenFunction
from polygen.runtime.specfiles import SpecText

SOURCE = "<recovered by polygen.compile>"


@functools.lru_cache(maxsize=256)
def function_for(spec_text: str, backend: str = "auto") -> PolygenFunction:
    return PolygenFunction(SpecText(spec_text, SOURCE), backend=backend)


@torch.library.custom_op("polygen::recovered", mutates_args=())
def recovered(x: torch.Tensor, spec_text: str, plan: str, backend: str) -> torch.Tensor:
    """The recovered iteration of ``x`` (already normalized by the user's code), through polygen's plan."""
    f = function_for(spec_text, backend)
    return f(x, plan=plan or None).contiguous()


@recovered.register_fake
def _(x: torch.Tensor, spec_text: str, plan: str, backend: str) -> Any:
    return x.new_empty(x.shape)
