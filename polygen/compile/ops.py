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
from polygen.runtime.torch_ops import chunk_size

SOURCE = "<recovered by polygen.compile>"


@functools.lru_cache(maxsize=256)
def function_for(spec_text: str, backend: str = "auto") -> PolygenFunction:
    """The recovered spec's function; "fastest" because the pass picks every plan itself (its own accuracy gate,
    polygen.compile.accuracy) and passes it explicitly."""
    return PolygenFunction(SpecText(spec_text, SOURCE), backend=backend, accuracy="fastest")


@torch.library.custom_op("polygen::recovered", mutates_args=())
def recovered(x: torch.Tensor, spec_text: str, plan: str, backend: str) -> torch.Tensor:
    """The recovered iteration of ``x`` (already normalized by the user's code), through polygen's plan."""
    f = function_for(spec_text, backend)
    return f(x, plan=plan or None).contiguous()


@recovered.register_fake
def _(x: torch.Tensor, spec_text: str, plan: str, backend: str) -> Any:
    return x.new_empty(x.shape)


@torch.library.custom_op("polygen::recovered_stack", mutates_args=())
def recovered_stack(xs: list[torch.Tensor], spec_text: str, plan: str, backend: str) -> list[torch.Tensor]:
    """The same iteration of k same-shape tensors as batched calls, one output per input.

    Batched as the generated ``apply`` chunks an eager batch (about tuning.CPU_CHUNK_BYTES of input per call on
    the CPU, everything at once elsewhere); a lone matrix runs unstacked, so a large one pays no stacking copy
    in or out, and outputs of a stacked call are cloned apart (an op's outputs may not alias each other).
    """
    f = function_for(spec_text, backend)
    fn_plan = plan or None
    x0 = xs[0]
    per = len(xs)
    if x0.device.type == "cpu":
        mats = x0.numel() // max(1, x0.size(-2) * x0.size(-1))  # matrices in one input
        per = max(1, chunk_size(x0.reshape(-1, *x0.shape[-2:]), True) // max(1, mats))
    outs: list[torch.Tensor] = []
    for i in range(0, len(xs), per):
        group = xs[i:i + per]
        if len(group) == 1:
            outs.append(f(group[0], plan=fn_plan).contiguous())
        else:
            outs.extend(y.clone() for y in f(torch.stack(group), plan=fn_plan).unbind(0))
    return outs


@recovered_stack.register_fake
def _(xs: list[torch.Tensor], spec_text: str, plan: str, backend: str) -> Any:
    return [x.new_empty(x.shape) for x in xs]
