"""What every generated Triton module needs and no spec changes: launcher checks, run-time scalar tables, the
shared-memory prune of the tile autotuner, and the triangular tile mapping of the symmetric kernels.

The kernels (runtime/triton_ops.py) and the generated Triton modules (identity, scalars) import these.
Imported only on the Triton path, so the torch backend never imports triton.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import triton
import triton.language as tl

__all__ = ["INTERPRET", "check_matmul_operands", "coef_arg", "emulate_bf16", "fits_shared_memory", "identity",
           "input_precision", "scalars", "shared_memory_limit", "tile_shared_bytes", "triangle_row"]

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def tile_shared_bytes(config: Any, itemsize: int) -> int:
    """Shared memory a GEMM tile configuration pipelines: num_stages copies of its A and B tiles."""
    kw = config.kwargs if isinstance(config, triton.Config) else config
    stages = config.num_stages if isinstance(config, triton.Config) else config["num_stages"]
    if "BLOCK" in kw:  # triangular kernel: square BLOCK×BLOCK_K and BLOCK_K×BLOCK tiles
        return 2 * kw["BLOCK"] * kw["BLOCK_K"] * itemsize * stages
    return (kw["BLOCK_M"] + kw["BLOCK_N"]) * kw["BLOCK_K"] * itemsize * stages


def shared_memory_limit(device: torch.device) -> int:
    props = triton.runtime.driver.active.utils.get_device_properties(device.index or 0)
    return int(props["max_shared_mem"])


def fits_shared_memory(configs: list, named_args: dict, **kwargs: Any) -> list:
    """Autotuning prune: drop configurations whose pipelined tiles overflow this device's shared memory for
    this dtype (a float32 128×256×64 tile in 3 stages needs 288 KiB; an H100 block has 227 KiB)."""
    a = named_args["a_ptr"]
    if INTERPRET or a.device.type != "cuda":
        return configs
    limit = shared_memory_limit(a.device)
    fit = [c for c in configs if tile_shared_bytes(c, a.element_size()) <= limit]
    return fit or [min(configs, key=lambda c: tile_shared_bytes(c, a.element_size()))]


def input_precision(dtype: torch.dtype) -> str:
    """IEEE fp32 products unless torch itself allows TF32 for matmuls (its default is not to)."""
    return "tf32" if dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32 else "ieee"


def emulate_bf16(dtype: torch.dtype) -> bool:
    """Under TRITON_INTERPRET=1 only, bfloat16 kernels multiply in float32 and round their outputs by hand: the
    interpreter's tl.dot reads bfloat16 bits as integers and its float32 → bfloat16 cast truncates."""
    return INTERPRET and dtype == torch.bfloat16


def check_matmul_operands(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor | None, coef: Any,
                          out_shape: tuple[int, ...]) -> None:
    torch._check(a.dim() == 3 and b.dim() == 3, lambda: f"expected (batch, rows, cols) factors, got "
                 f"{tuple(a.shape)} and {tuple(b.shape)}")
    torch._check(a.size(0) == b.size(0) and a.size(2) == b.size(1),
                 lambda: f"cannot multiply {tuple(a.shape)} by {tuple(b.shape)}")
    torch._check(a.dtype == b.dtype and a.device == b.device, lambda: "factors differ in dtype or device")
    if c is not None:
        torch._check(c.shape == (a.size(0),) + tuple(out_shape),
                     lambda: f"addend of shape {tuple(c.shape)} for a {tuple(out_shape)} product")
        torch._check(c.device == a.device, lambda: "addend on another device")


def coef_arg(coef: torch.Tensor | None, batch: int, placeholder: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(tensor, batch stride) of the run-time scalars: a (k,) table row shared by the batch, or (batch, k)."""
    if coef is None:
        return placeholder, 0  # never read: every *_IDX is -1
    torch._check(coef.dtype == torch.float32 and coef.device == placeholder.device,
                 lambda: "coef must be a float32 tensor on the operands' device")
    torch._check(coef.dim() == 1 or (coef.dim() == 2 and coef.size(0) == batch),
                 lambda: f"coef must be (k,) or (batch, k), got {tuple(coef.shape)}")
    return coef, (coef.stride(0) if coef.dim() == 2 else 0)


def scalars(G: torch.Tensor, *values: Any) -> torch.Tensor:
    """(batch, k) float32 scalars for one op: fitted values ((batch, 1, 1) tensors), expressions, table entries."""
    return torch.stack([torch.as_tensor(v, dtype=torch.float32, device=G.device).reshape(-1).expand(G.size(0))
                        for v in values], dim=1)


def identity(G: torch.Tensor, size: int, gamma: Any) -> torch.Tensor:
    return torch.eye(size, dtype=G.dtype, device=G.device).expand(G.size(0), size, size) * gamma


@triton.jit
def triangle_row(pid):  # type: ignore[no-untyped-def]
    """Row r of the pid-th tile of a lower triangle in row-major order, the largest r with r(r+1)/2 <= pid:
    a float square root, fixed up by one step either way in case it rounded across an integer. The tile is
    (r, pid - r(r+1)/2); the triangular kernels run its transpose, an upper-triangle tile."""
    r = ((tl.sqrt(8.0 * pid.to(tl.float32) + 1.0) - 1.0) * 0.5).to(tl.int32)
    r = tl.where(r * (r + 1) // 2 > pid, r - 1, r)
    return tl.where((r + 1) * (r + 2) // 2 <= pid, r + 1, r)
