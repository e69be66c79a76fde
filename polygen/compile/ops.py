"""The runtime half of the compile backend: torch.library ops that run a recovered spec's plan.

The rewritten graph holds ``polygen::recovered(X, spec_text, plan, backend)``, or for k chains of one spec,
plan, shape and dtype ``polygen::recovered_stack([X1, ..., Xk], ...)``, one batched call. The ops keep one
PolygenFunction per spec text, whose module comes from the same content-keyed cache as any user spec's
(compiled on the first call only, and never again in a process with a warm cache). Inductor calls them as
extern kernels.
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


@torch.library.custom_op("polygen::recovered_stack", mutates_args=())
def recovered_stack(xs: list[torch.Tensor], spec_text: str, plan: str, backend: str) -> torch.Tensor:
    """The same iteration of k same-shape tensors as one batched call: (k, *x.shape) out, stacked in order."""
    f = function_for(spec_text, backend)
    return f(torch.stack(xs), plan=plan or None).contiguous()


@recovered_stack.register_fake
def _(xs: list[torch.Tensor], spec_text: str, plan: str, backend: str) -> Any:
    return xs[0].new_empty((len(xs), *xs[0].shape))
