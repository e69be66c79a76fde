"""The four Triton kernels every generated Triton module launches, written and registered once.

sym_matmul (a symmetric product on its upper-triangular tiles), matmul (a GEMM with the fused epilogue
αAB + βC + γI), pair_matmul (two products sharing a left factor in one launch) and lincomb (Σ kᵢMᵢ + γI).
Each has a ``*_kernel`` jitted function and a plain launcher that checks, allocates and launches, registered
as the torch.library triton_op ``polygen::<kernel>`` and launched through wrap_triton, so
torch.compile(fullgraph=True) traces through it (Triton tutorial 03 and Inductor's templates are the models).

Numbers are constexprs (a multiplication by 1 or an addition of 0 compiles away); a scalar whose ``*_IDX`` is
>= 0 is read from ``coef_ptr[*_IDX]`` instead, a row of a loop's coefficient table or a value fitted on the
device, so nothing syncs to the host. Tile configurations come from triton_configs.toml: autotuned over on
CUDA, one small one under TRITON_INTERPRET=1.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Callable
from importlib.resources import files
from typing import Any

import torch
import triton
import triton.language as tl
from torch.library import triton_op, wrap_triton

from polygen.runtime.triton_support import (
    INTERPRET,
    check_matmul_operands,
    coef_arg,
    emulate_bf16,
    fits_shared_memory,
    input_precision,
    triangle_row,
)
from polygen.runtime.tuning import LINCOMB_SLOTS

__all__ = ["KERNELS", "POISON_OUTPUTS", "TILE_CONFIGS", "lincomb", "matmul", "pair_matmul", "sym_matmul",
           "tile_configs"]

KERNELS = ("sym_matmul", "matmul", "lincomb", "pair_matmul")

# Debug aid: allocate every kernel output filled with NaN, so an element a kernel fails to write shows up.
POISON_OUTPUTS = os.environ.get("POLYGEN_TRITON_POISON", "0") not in ("", "0")


def tile_configs(data: dict[str, Any]) -> dict[str, dict[str, list[dict[str, int]]]]:
    """The registry ({"cuda" | "interpreter": {kernel: [config, ...]}}), every kernel's entries checked."""
    out: dict[str, dict[str, list[dict[str, int]]]] = {}
    for where in ("interpreter", "cuda"):
        kinds = data.get(where, {})
        missing = [k for k in KERNELS if not kinds.get(k)]
        if missing:
            raise ValueError(f"triton_configs.toml: [{where}] has no configuration for {missing}")
        for kind in KERNELS:
            square = kind in ("sym_matmul", "pair_matmul")  # a tile and its mirror cover the same index ranges
            need = {"num_warps", "num_stages"} | ({"BLOCK", "BLOCK_K"} if square else {"BLOCK_M", "BLOCK_N"})
            for cfg in kinds[kind]:
                if not need <= set(cfg):
                    raise ValueError(f"triton_configs.toml: [{where}] {kind} entry {cfg} lacks "
                                     f"{sorted(need - set(cfg))}")
        out[where] = {k: [dict(c) for c in kinds[k]] for k in KERNELS}
    return out


TILE_CONFIGS = tile_configs(tomllib.loads((files("polygen.runtime") / "triton_configs.toml").read_text("utf-8")))


def _configs(kernel: str) -> list[triton.Config]:
    entries = TILE_CONFIGS["interpreter" if INTERPRET else "cuda"][kernel]
    return [triton.Config({k: v for k, v in e.items() if k.isupper()}, num_warps=e["num_warps"],
                          num_stages=e["num_stages"]) for e in entries]


def _register(kernel: str) -> Callable[[Callable[..., Any]], Any]:
    """Register a launcher as the torch op polygen::<kernel>; a second import (a reload) reuses the first."""

    def register(fn: Callable[..., Any]) -> Any:
        if hasattr(torch.ops.polygen, kernel):
            return getattr(torch.ops.polygen, kernel).default
        return triton_op(f"polygen::{kernel}", fn, mutates_args=())

    return register


def _alloc(shape: tuple[int, ...], like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    dtype = dtype or like.dtype
    if POISON_OUTPUTS:
        return torch.full(shape, math.nan, dtype=dtype, device=like.device)
    return torch.empty(shape, dtype=dtype, device=like.device)


def _launch_gemm(kernel: Any, grid: Callable[[dict[str, int]], tuple[int, int]], sizes: tuple[int, ...],
                 a: torch.Tensor, b: torch.Tensor, c: torch.Tensor | None, coef: torch.Tensor | None,
                 out: torch.Tensor, alpha: float, beta: float, gamma: float, alpha_idx: int, beta_idx: int,
                 gamma_idx: int) -> None:
    """Launch one of the two epilogue GEMM kernels (they share every argument but their sizes)."""
    has_c = c is not None and (beta_idx >= 0 or beta != 0.0)
    cc = c if c is not None else a  # placeholder pointer when there is no addend (never read)
    cstr = (c.stride(0), c.stride(1), c.stride(2)) if c is not None else (0, 0, 0)
    coef_t, coef_stride = coef_arg(coef, a.size(0), a)
    wrap_triton(kernel)[grid](
        a, b, cc, out, coef_t,
        *sizes,
        a.stride(0), a.stride(1), a.stride(2),
        b.stride(0), b.stride(1), b.stride(2),
        cstr[0], cstr[1], cstr[2],
        out.stride(0), out.stride(1), out.stride(2),
        coef_stride,
        ALPHA=alpha, BETA=beta, GAMMA=gamma, ALPHA_IDX=alpha_idx, BETA_IDX=beta_idx, GAMMA_IDX=gamma_idx,
        HAS_C=has_c, INPUT_PRECISION=input_precision(a.dtype), EMULATE_BF16=emulate_bf16(a.dtype),
    )


# ---------------------------------------------------------------------------------------------------------
# Helpers shared by the kernel bodies


@triton.jit
def _epilogue(acc, rows, cols, mask, c_ptr, stride_cm, stride_cn, coef_ptr,  # type: ignore[no-untyped-def]
              ALPHA: tl.constexpr, BETA: tl.constexpr, GAMMA: tl.constexpr, ALPHA_IDX: tl.constexpr,
              BETA_IDX: tl.constexpr, GAMMA_IDX: tl.constexpr, HAS_C: tl.constexpr):
    """The fused epilogue ALPHA·acc + BETA·C + GAMMA·I on one tile, in the accumulator's precision."""
    if ALPHA_IDX >= 0:
        acc = acc * tl.load(coef_ptr + ALPHA_IDX).to(acc.dtype)
    elif ALPHA != 1.0:
        acc = acc * ALPHA
    if HAS_C:
        c = tl.load(c_ptr + rows[:, None] * stride_cm + cols[None, :] * stride_cn, mask=mask, other=0.0)
        if BETA_IDX >= 0:
            acc += tl.load(coef_ptr + BETA_IDX).to(acc.dtype) * c.to(acc.dtype)
        else:
            acc += BETA * c.to(acc.dtype)
    if GAMMA_IDX >= 0:
        acc += tl.where(rows[:, None] == cols[None, :], tl.load(coef_ptr + GAMMA_IDX).to(acc.dtype), 0.0)
    elif GAMMA != 0.0:
        acc += tl.where(rows[:, None] == cols[None, :], GAMMA, 0.0)
    return acc


@triton.jit
def _to_output(acc, out_ptr, EMULATE_BF16: tl.constexpr):  # type: ignore[no-untyped-def]
    """The accumulator cast to the output dtype. Under TRITON_INTERPRET=1 (EMULATE_BF16) the interpreter's
    float32 → bfloat16 cast truncates, so round to nearest even by hand, as the GPU does."""
    if EMULATE_BF16:
        bits = acc.to(tl.float32).to(tl.uint32, bitcast=True)
        bits += 0x7FFF + ((bits >> 16) & 1)
        out = (bits >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)
    else:
        out = acc.to(out_ptr.dtype.element_ty)
    return out


@triton.jit
def _tile_product(a_ptr, b_ptr, rows, cols, M, N, K, stride_am, stride_ak,  # type: ignore[no-untyped-def]
                  stride_bk, stride_bn, acc, BLOCK_K: tl.constexpr, INPUT_PRECISION: tl.constexpr,
                  EMULATE_BF16: tl.constexpr):
    """acc + A[rows, :]·B[:, cols] over the K loop; rows/columns past the edges and the ragged last K block
    read zeros."""
    offs_k = tl.arange(0, BLOCK_K)
    a_ptrs = a_ptr + rows[:, None] * stride_am + offs_k[None, :] * stride_ak
    b_ptrs = b_ptr + offs_k[:, None] * stride_bk + cols[None, :] * stride_bn
    for k in range(0, tl.cdiv(K, BLOCK_K)):
        k_left = K - k * BLOCK_K
        a = tl.load(a_ptrs, mask=(rows[:, None] < M) & (offs_k[None, :] < k_left), other=0.0)
        b = tl.load(b_ptrs, mask=(offs_k[:, None] < k_left) & (cols[None, :] < N), other=0.0)
        if EMULATE_BF16:  # TRITON_INTERPRET=1 only: its tl.dot reads bfloat16 bits as integers
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc = tl.dot(a, b, acc, input_precision=INPUT_PRECISION)
        a_ptrs += BLOCK_K * stride_ak
        b_ptrs += BLOCK_K * stride_bk
    return acc


# ---------------------------------------------------------------------------------------------------------
# sym_matmul: a product known to be symmetric, on the upper-triangular tiles


@triton.autotune(configs=_configs("sym_matmul"), key=["M", "K"],
                 prune_configs_by={"early_config_prune": fits_shared_memory})
@triton.jit
def sym_matmul_kernel(  # type: ignore[no-untyped-def]
        # Pointers: the factors A (M×K) and B (K×M), the addend C (M×M), the output (M×M), the scalar table row
        a_ptr, b_ptr, c_ptr, out_ptr, coef_ptr,
        # Sizes: the product A·B is known to be symmetric (XXᵀ, or two commuting symmetric matrices)
        M, K,
        # Strides (batch, row, column) of each operand; Bᵀ views (XXᵀ) come in as plain strides
        stride_ab, stride_am, stride_ak,
        stride_bb, stride_bk, stride_bn,
        stride_cb, stride_cm, stride_cn,
        stride_ob, stride_om, stride_on,
        stride_qb,  # batch stride of the scalars (0: one table row shared by the whole batch)
        # Epilogue out = ALPHA·A·B + BETA·C + GAMMA·I; a *_IDX >= 0 reads that scalar from coef_ptr[*_IDX]
        ALPHA: tl.constexpr, BETA: tl.constexpr, GAMMA: tl.constexpr,
        ALPHA_IDX: tl.constexpr, BETA_IDX: tl.constexpr, GAMMA_IDX: tl.constexpr,
        HAS_C: tl.constexpr, INPUT_PRECISION: tl.constexpr, EMULATE_BF16: tl.constexpr,
        # Square tiles (from the configuration registry)
        BLOCK: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """One upper-triangular BLOCK×BLOCK tile of the symmetric product, written to its place and its mirror.

    The grid has T(T+1)/2 programs per matrix (T = cdiv(M, BLOCK)), not T²: program `pid` is mapped to the
    pid-th tile of the lower triangle in row-major order, (r, c) with c <= r, which is the upper tile
    (pid_m, pid_n) = (c, r). Half the tiles, half the FLOPs; no program exits early.
    """
    pid = tl.program_id(axis=0)
    pid_b = tl.program_id(axis=1).to(tl.int64)
    r = triangle_row(pid)  # triangular tile mapping
    pid_m = pid - r * (r + 1) // 2  # tile row    (<= pid_n: upper triangle)
    pid_n = r  # tile column

    # 64-bit batch offsets: batch × matrix size may exceed 2³¹ elements.
    a_ptr += pid_b * stride_ab
    b_ptr += pid_b * stride_bb
    c_ptr += pid_b * stride_cb
    out_ptr += pid_b * stride_ob
    coef_ptr += pid_b * stride_qb

    rows = pid_m * BLOCK + tl.arange(0, BLOCK)
    cols = pid_n * BLOCK + tl.arange(0, BLOCK)
    if out_ptr.dtype.element_ty == tl.float64:
        acc = tl.zeros((BLOCK, BLOCK), dtype=tl.float64)
    else:
        acc = tl.zeros((BLOCK, BLOCK), dtype=tl.float32)
    acc = _tile_product(a_ptr, b_ptr, rows, cols, M, M, K, stride_am, stride_ak, stride_bk, stride_bn, acc,
                        BLOCK_K, INPUT_PRECISION, EMULATE_BF16)

    mask = (rows[:, None] < M) & (cols[None, :] < M)
    acc = _epilogue(acc, rows, cols, mask, c_ptr, stride_cm, stride_cn, coef_ptr,
                    ALPHA, BETA, GAMMA, ALPHA_IDX, BETA_IDX, GAMMA_IDX, HAS_C)
    if pid_m == pid_n:
        # A diagonal tile: keep its upper triangle and mirror it, so the output is exactly symmetric.
        acc = tl.where(rows[:, None] <= cols[None, :], acc, tl.trans(acc))
    out = _to_output(acc, out_ptr, EMULATE_BF16)
    tl.store(out_ptr + rows[:, None] * stride_om + cols[None, :] * stride_on, out, mask=mask)
    if pid_m != pid_n:
        # The mirror tile (pid_n, pid_m) of the lower triangle is the transpose of this one.
        mirror = out_ptr + cols[:, None] * stride_om + rows[None, :] * stride_on
        tl.store(mirror, tl.trans(out), mask=(cols[:, None] < M) & (rows[None, :] < M))


@_register("sym_matmul")
def sym_matmul(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor | None = None,
               coef: torch.Tensor | None = None, alpha: float = 1.0, beta: float = 0.0, gamma: float = 0.0,
               alpha_idx: int = -1, beta_idx: int = -1, gamma_idx: int = -1) -> torch.Tensor:
    """alpha·a@b + beta·c + gamma·I for a (B, M, K) and b (B, K, M) whose product is symmetric.

    Only the upper-triangular tiles are computed; each is stored twice. A scalar with *_idx >= 0 is read
    from the device tensor coef[*_idx] instead of the number (loop tables, values fitted at run time).
    """
    check_matmul_operands(a, b, c, coef, (a.size(1), a.size(1)))
    torch._check(b.size(2) == a.size(1), lambda: f"symmetric product needs a square result, got {tuple(b.shape)}")
    batch, m, k = a.shape
    out = _alloc((batch, m, m), a)

    def grid(META: dict[str, int]) -> tuple[int, int]:
        tiles = triton.cdiv(m, META["BLOCK"])
        return (tiles * (tiles + 1) // 2, batch)

    _launch_gemm(sym_matmul_kernel, grid, (m, k), a, b, c, coef, out, alpha, beta, gamma, alpha_idx, beta_idx,
                 gamma_idx)
    return out


# ---------------------------------------------------------------------------------------------------------
# matmul: a GEMM with the fused epilogue


@triton.autotune(configs=_configs("matmul"), key=["M", "N", "K"],
                 prune_configs_by={"early_config_prune": fits_shared_memory})
@triton.jit
def matmul_kernel(  # type: ignore[no-untyped-def]
        # Pointers: the factors A (M×K) and B (K×N), the addend C (M×N), the output (M×N), the scalar table row
        a_ptr, b_ptr, c_ptr, out_ptr, coef_ptr,
        # Sizes
        M, N, K,
        # Strides (batch, row, column) of each operand; transposed views come in as plain strides
        stride_ab, stride_am, stride_ak,
        stride_bb, stride_bk, stride_bn,
        stride_cb, stride_cm, stride_cn,
        stride_ob, stride_om, stride_on,
        stride_qb,  # batch stride of the scalars (0: one table row shared by the whole batch)
        # Epilogue out = ALPHA·A·B + BETA·C + GAMMA·I; a *_IDX >= 0 reads that scalar from coef_ptr[*_IDX]
        ALPHA: tl.constexpr, BETA: tl.constexpr, GAMMA: tl.constexpr,
        ALPHA_IDX: tl.constexpr, BETA_IDX: tl.constexpr, GAMMA_IDX: tl.constexpr,
        HAS_C: tl.constexpr, INPUT_PRECISION: tl.constexpr, EMULATE_BF16: tl.constexpr,
        # Tiles (from the configuration registry)
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):
    """One BLOCK_M×BLOCK_N tile of ALPHA·A·B + BETA·C + GAMMA·I; axis 1 of the grid is the batch."""
    pid = tl.program_id(axis=0)
    pid_b = tl.program_id(axis=1).to(tl.int64)
    # Grouped ordering (Triton tutorial 03): GROUP_M tile rows are swept together for L2 reuse of B.
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    num_pid_in_group = GROUP_M * num_pid_n
    group_id = pid // num_pid_in_group
    first_pid_m = group_id * GROUP_M
    group_size_m = min(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + ((pid % num_pid_in_group) % group_size_m)
    pid_n = (pid % num_pid_in_group) // group_size_m

    # 64-bit batch offsets: batch × matrix size may exceed 2³¹ elements.
    a_ptr += pid_b * stride_ab
    b_ptr += pid_b * stride_bb
    c_ptr += pid_b * stride_cb
    out_ptr += pid_b * stride_ob
    coef_ptr += pid_b * stride_qb

    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    if out_ptr.dtype.element_ty == tl.float64:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float64)
    else:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    acc = _tile_product(a_ptr, b_ptr, rows, cols, M, N, K, stride_am, stride_ak, stride_bk, stride_bn, acc,
                        BLOCK_K, INPUT_PRECISION, EMULATE_BF16)

    mask = (rows[:, None] < M) & (cols[None, :] < N)
    acc = _epilogue(acc, rows, cols, mask, c_ptr, stride_cm, stride_cn, coef_ptr,
                    ALPHA, BETA, GAMMA, ALPHA_IDX, BETA_IDX, GAMMA_IDX, HAS_C)
    out = _to_output(acc, out_ptr, EMULATE_BF16)
    tl.store(out_ptr + rows[:, None] * stride_om + cols[None, :] * stride_on, out, mask=mask)


@_register("matmul")
def matmul(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor | None = None, coef: torch.Tensor | None = None,
           alpha: float = 1.0, beta: float = 0.0, gamma: float = 0.0,
           alpha_idx: int = -1, beta_idx: int = -1, gamma_idx: int = -1) -> torch.Tensor:
    """alpha·a@b + beta·c + gamma·I for a (B, M, K) and b (B, K, N), the epilogue fused into the GEMM.

    A scalar with *_idx >= 0 is read from the device tensor coef[*_idx] instead of the number.
    """
    check_matmul_operands(a, b, c, coef, (a.size(1), b.size(2)))
    batch, m, k = a.shape
    n = b.size(2)
    out = _alloc((batch, m, n), a)

    def grid(META: dict[str, int]) -> tuple[int, int]:
        return (triton.cdiv(m, META["BLOCK_M"]) * triton.cdiv(n, META["BLOCK_N"]), batch)

    _launch_gemm(matmul_kernel, grid, (m, n, k), a, b, c, coef, out, alpha, beta, gamma, alpha_idx, beta_idx,
                 gamma_idx)
    return out


# ---------------------------------------------------------------------------------------------------------
# pair_matmul: A·B1 and A·B2 in one launch


@triton.autotune(configs=_configs("pair_matmul"), key=["M", "N", "K"],
                 prune_configs_by={"early_config_prune": fits_shared_memory})
@triton.jit
def pair_matmul_kernel(  # type: ignore[no-untyped-def]
        # Pointers: the shared left factor A (M×K), the right factors B1, B2 (K×N) and the outputs (M×N)
        a_ptr, b1_ptr, out1_ptr, b2_ptr, out2_ptr,
        # Sizes
        M, N, K,
        # Strides (batch, row, column) of each operand; transposed views come in as plain strides
        stride_ab, stride_am, stride_ak,
        stride_b1b, stride_b1k, stride_b1n,
        stride_o1b, stride_o1m, stride_o1n,
        stride_b2b, stride_b2k, stride_b2n,
        stride_o2b, stride_o2m, stride_o2n,
        # MIRRORi: product i is symmetric (M = N): only its upper-triangular tiles run, each stored twice
        MIRROR1: tl.constexpr, MIRROR2: tl.constexpr,
        INPUT_PRECISION: tl.constexpr, EMULATE_BF16: tl.constexpr,
        # Square tiles (from the configuration registry): a tile and its mirror cover the same index ranges
        BLOCK: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """Both products A·B1 and A·B2 of a Gram-space step (Q ← HQ and T ← HR) in one launch.

    They share the left factor and neither reads the other, so one grid holds the tiles of both: programs
    [0, TILES1) compute A·B1, the others A·B2, each with the full tile mapping or, for a symmetric product,
    the triangular one of the sym_matmul kernel. One launch instead of two; no program exits early.
    """
    pid = tl.program_id(axis=0)
    pid_b = tl.program_id(axis=1).to(tl.int64)  # 64-bit batch offsets
    tiles_m = tl.cdiv(M, BLOCK)
    tiles_n = tl.cdiv(N, BLOCK)
    if MIRROR1:  # programs of the first product; the rest of axis 0 computes the second
        TILES1 = tiles_m * (tiles_m + 1) // 2
    else:
        TILES1 = tiles_m * tiles_n
    second = pid >= TILES1
    local = tl.where(second, pid - TILES1, pid)
    tri = tl.where(second, MIRROR2, MIRROR1)
    r = triangle_row(local)  # triangular tile mapping (see sym_matmul_kernel)
    pid_m = tl.where(tri, local - r * (r + 1) // 2, local // tiles_n)
    pid_n = tl.where(tri, r, local % tiles_n)

    if second:
        b_ptr = b2_ptr + pid_b * stride_b2b
        out_ptr = out2_ptr + pid_b * stride_o2b
    else:
        b_ptr = b1_ptr + pid_b * stride_b1b
        out_ptr = out1_ptr + pid_b * stride_o1b
    stride_bk = tl.where(second, stride_b2k, stride_b1k)
    stride_bn = tl.where(second, stride_b2n, stride_b1n)
    stride_om = tl.where(second, stride_o2m, stride_o1m)
    stride_on = tl.where(second, stride_o2n, stride_o1n)
    a_ptr += pid_b * stride_ab

    rows = pid_m * BLOCK + tl.arange(0, BLOCK)
    cols = pid_n * BLOCK + tl.arange(0, BLOCK)
    if out1_ptr.dtype.element_ty == tl.float64:
        acc = tl.zeros((BLOCK, BLOCK), dtype=tl.float64)
    else:
        acc = tl.zeros((BLOCK, BLOCK), dtype=tl.float32)
    acc = _tile_product(a_ptr, b_ptr, rows, cols, M, N, K, stride_am, stride_ak, stride_bk, stride_bn, acc,
                        BLOCK_K, INPUT_PRECISION, EMULATE_BF16)

    # A diagonal tile of a symmetric product keeps its upper triangle and mirrors it (exactly symmetric output).
    fold = tri & (pid_m == pid_n)
    acc = tl.where(fold & (rows[:, None] > cols[None, :]), tl.trans(acc), acc)
    out = _to_output(acc, out1_ptr, EMULATE_BF16)
    tl.store(out_ptr + rows[:, None] * stride_om + cols[None, :] * stride_on, out,
             mask=(rows[:, None] < M) & (cols[None, :] < N))
    # The mirror tile (pid_n, pid_m) of an off-diagonal tile of a symmetric product: its transpose.
    mirror = tri & (pid_m != pid_n)
    tl.store(out_ptr + cols[:, None] * stride_om + rows[None, :] * stride_on, tl.trans(out),
             mask=(cols[:, None] < M) & (rows[None, :] < N) & mirror)


@_register("pair_matmul")
def pair_matmul(a: torch.Tensor, b1: torch.Tensor, b2: torch.Tensor, mirror1: bool = False,
                mirror2: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(a@b1, a@b2) for a (B, M, K) and b1, b2 (B, K, N) in one launch; ``mirror*``: that product is
    symmetric and runs on half the tiles."""
    check_matmul_operands(a, b1, None, None, (a.size(1), b1.size(2)))
    check_matmul_operands(a, b2, None, None, (a.size(1), b2.size(2)))
    torch._check(b1.size(2) == b2.size(2), lambda: f"paired products of different widths: {tuple(b1.shape)}, "
                 f"{tuple(b2.shape)}")
    batch, m, k = a.shape
    n = b1.size(2)
    torch._check(not (mirror1 or mirror2) or m == n, lambda: f"a symmetric product must be square, got {m}x{n}")
    out1 = _alloc((batch, m, n), a)
    out2 = _alloc((batch, m, n), a)

    def tiles(META: dict[str, int], mirror: bool) -> int:
        t_m, t_n = triton.cdiv(m, META["BLOCK"]), triton.cdiv(n, META["BLOCK"])
        return t_m * (t_m + 1) // 2 if mirror else t_m * t_n

    def grid(META: dict[str, int]) -> tuple[int, int]:
        return (tiles(META, mirror1) + tiles(META, mirror2), batch)

    wrap_triton(pair_matmul_kernel)[grid](
        a, b1, out1, b2, out2,
        m, n, k,
        a.stride(0), a.stride(1), a.stride(2),
        b1.stride(0), b1.stride(1), b1.stride(2),
        out1.stride(0), out1.stride(1), out1.stride(2),
        b2.stride(0), b2.stride(1), b2.stride(2),
        out2.stride(0), out2.stride(1), out2.stride(2),
        MIRROR1=mirror1, MIRROR2=mirror2,
        INPUT_PRECISION=input_precision(a.dtype), EMULATE_BF16=emulate_bf16(a.dtype),
    )
    return out1, out2


# ---------------------------------------------------------------------------------------------------------
# lincomb: Σ kᵢ·Mᵢ + γI, LINCOMB_SLOTS terms per launch


@triton.jit
def _add_term(acc, m_ptr, stride_b, stride_m, stride_n, pid_b, rows, cols, mask,  # type: ignore[no-untyped-def]
              coef_ptr, K: tl.constexpr, K_IDX: tl.constexpr):
    """acc + K·M[rows, cols] (K read from coef_ptr[K_IDX] when K_IDX >= 0)."""
    x = tl.load(m_ptr + pid_b * stride_b + rows[:, None] * stride_m + cols[None, :] * stride_n,
                mask=mask, other=0.0).to(acc.dtype)
    if K_IDX >= 0:
        acc += tl.load(coef_ptr + K_IDX).to(acc.dtype) * x
    else:
        acc += K * x
    return acc


@triton.autotune(configs=_configs("lincomb"), key=["M", "N"])
@triton.jit
def lincomb_kernel(  # type: ignore[no-untyped-def]
        # Pointers: the output (M×N) and the scalar table row
        out_ptr, coef_ptr,
        # The terms M_i with their strides (batch, row, column); unused slots repeat the first term
        m0_ptr, stride_0b, stride_0m, stride_0n,
        m1_ptr, stride_1b, stride_1m, stride_1n,
        m2_ptr, stride_2b, stride_2m, stride_2n,
        m3_ptr, stride_3b, stride_3m, stride_3n,
        m4_ptr, stride_4b, stride_4m, stride_4n,
        m5_ptr, stride_5b, stride_5m, stride_5n,
        m6_ptr, stride_6b, stride_6m, stride_6n,
        m7_ptr, stride_7b, stride_7m, stride_7n,
        # Sizes, output strides, batch stride of the scalars (0: one table row shared by the whole batch)
        M, N, stride_ob, stride_om, stride_on, stride_qb,
        # out = Σ K_i·M_i + GAMMA·I over the first NUM_TERMS terms; a *_IDX >= 0 reads that scalar from coef_ptr
        NUM_TERMS: tl.constexpr,
        K0: tl.constexpr, K0_IDX: tl.constexpr, K1: tl.constexpr, K1_IDX: tl.constexpr,
        K2: tl.constexpr, K2_IDX: tl.constexpr, K3: tl.constexpr, K3_IDX: tl.constexpr,
        K4: tl.constexpr, K4_IDX: tl.constexpr, K5: tl.constexpr, K5_IDX: tl.constexpr,
        K6: tl.constexpr, K6_IDX: tl.constexpr, K7: tl.constexpr, K7_IDX: tl.constexpr,
        GAMMA: tl.constexpr, GAMMA_IDX: tl.constexpr,
        # TRITON_INTERPRET=1 with bfloat16 only: round the output by hand (the interpreter's cast truncates)
        EMULATE_BF16: tl.constexpr,
        # Tiles (from the configuration registry)
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """One BLOCK_M×BLOCK_N tile of the linear combination; axis 1 of the grid is the batch."""
    pid = tl.program_id(axis=0)
    pid_b = tl.program_id(axis=1).to(tl.int64)  # 64-bit batch offsets
    coef_ptr += pid_b * stride_qb
    num_pid_n = tl.cdiv(N, BLOCK_N)
    rows = (pid // num_pid_n) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = (pid % num_pid_n) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask = (rows[:, None] < M) & (cols[None, :] < N)
    if out_ptr.dtype.element_ty == tl.float64:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float64)
    else:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    acc = _add_term(acc, m0_ptr, stride_0b, stride_0m, stride_0n, pid_b, rows, cols, mask, coef_ptr, K0, K0_IDX)
    if NUM_TERMS > 1:
        acc = _add_term(acc, m1_ptr, stride_1b, stride_1m, stride_1n, pid_b, rows, cols, mask, coef_ptr, K1, K1_IDX)
    if NUM_TERMS > 2:
        acc = _add_term(acc, m2_ptr, stride_2b, stride_2m, stride_2n, pid_b, rows, cols, mask, coef_ptr, K2, K2_IDX)
    if NUM_TERMS > 3:
        acc = _add_term(acc, m3_ptr, stride_3b, stride_3m, stride_3n, pid_b, rows, cols, mask, coef_ptr, K3, K3_IDX)
    if NUM_TERMS > 4:
        acc = _add_term(acc, m4_ptr, stride_4b, stride_4m, stride_4n, pid_b, rows, cols, mask, coef_ptr, K4, K4_IDX)
    if NUM_TERMS > 5:
        acc = _add_term(acc, m5_ptr, stride_5b, stride_5m, stride_5n, pid_b, rows, cols, mask, coef_ptr, K5, K5_IDX)
    if NUM_TERMS > 6:
        acc = _add_term(acc, m6_ptr, stride_6b, stride_6m, stride_6n, pid_b, rows, cols, mask, coef_ptr, K6, K6_IDX)
    if NUM_TERMS > 7:
        acc = _add_term(acc, m7_ptr, stride_7b, stride_7m, stride_7n, pid_b, rows, cols, mask, coef_ptr, K7, K7_IDX)
    if GAMMA_IDX >= 0:
        acc += tl.where(rows[:, None] == cols[None, :], tl.load(coef_ptr + GAMMA_IDX).to(acc.dtype), 0.0)
    elif GAMMA != 0.0:
        acc += tl.where(rows[:, None] == cols[None, :], GAMMA, 0.0)
    out = _to_output(acc, out_ptr, EMULATE_BF16)
    tl.store(out_ptr + pid_b * stride_ob + rows[:, None] * stride_om + cols[None, :] * stride_on, out, mask=mask)


def _lincomb_launch(out: torch.Tensor, coef_t: torch.Tensor, coef_stride: int, terms: list[torch.Tensor],
                    ks: list[float], k_idx: list[int], gamma: float, gamma_idx: int) -> None:
    """One launch over at most LINCOMB_SLOTS terms; unused slots repeat the first term and are never read."""
    batch, m, n = out.shape
    free = LINCOMB_SLOTS - len(terms)
    slots = list(terms) + [terms[0]] * free
    kk = list(ks) + [0.0] * free
    ki = list(k_idx) + [-1] * free
    args: list[Any] = [out, coef_t]
    for t in slots:
        args += [t, t.stride(0), t.stride(1), t.stride(2)]
    args += [m, n, out.stride(0), out.stride(1), out.stride(2), coef_stride]
    scalars: dict[str, Any] = {"NUM_TERMS": len(terms)}
    for i in range(LINCOMB_SLOTS):
        scalars[f"K{i}"], scalars[f"K{i}_IDX"] = kk[i], ki[i]

    def grid(META: dict[str, int]) -> tuple[int, int]:
        return (triton.cdiv(m, META["BLOCK_M"]) * triton.cdiv(n, META["BLOCK_N"]), batch)

    wrap_triton(lincomb_kernel)[grid](*args, **scalars, GAMMA=gamma, GAMMA_IDX=gamma_idx,
                                      EMULATE_BF16=emulate_bf16(out.dtype))


@_register("lincomb")
def lincomb(terms: list[torch.Tensor], ks: list[float], k_idx: list[int], coef: torch.Tensor | None = None,
            gamma: float = 0.0, gamma_idx: int = -1) -> torch.Tensor:
    """Σ ks[i]·terms[i] + gamma·I over (B, M, N) tensors.

    A scalar with an index >= 0 (k_idx[i], gamma_idx) is read from the device tensor coef instead. More than
    LINCOMB_SLOTS terms take several launches through a float32 (float64) partial sum that the next launch
    adds with weight 1, in the same order one launch would: the result rounds to the output dtype once.
    """
    torch._check(len(terms) >= 1, lambda: "lincomb takes at least one term")
    torch._check(len(ks) == len(terms) and len(k_idx) == len(terms), lambda: "one coefficient per term")
    first = terms[0]
    torch._check(first.dim() == 3, lambda: f"lincomb expects (batch, rows, cols) tensors, got {tuple(first.shape)}")
    for t in terms:
        torch._check(t.shape == first.shape, lambda t=t: f"lincomb terms differ in shape: {tuple(t.shape)}")
        torch._check(t.device == first.device and t.dtype == first.dtype,
                     lambda: "lincomb terms differ in dtype/device")
    batch, m, n = first.shape
    coef_t, coef_stride = coef_arg(coef, batch, first)
    terms, ks, k_idx = list(terms), list(ks), list(k_idx)
    partial_dtype = torch.float64 if first.dtype == torch.float64 else torch.float32
    while len(terms) > LINCOMB_SLOTS:
        partial = _alloc((batch, m, n), first, partial_dtype)
        _lincomb_launch(partial, coef_t, coef_stride, terms[:LINCOMB_SLOTS], ks[:LINCOMB_SLOTS],
                        k_idx[:LINCOMB_SLOTS], 0.0, -1)
        rest = LINCOMB_SLOTS
        terms, ks, k_idx = [partial] + terms[rest:], [1.0] + ks[rest:], [-1] + k_idx[rest:]
    out = _alloc((batch, m, n), first)
    _lincomb_launch(out, coef_t, coef_stride, terms, ks, k_idx, gamma, gamma_idx)
    return out
