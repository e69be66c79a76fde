"""What every generated module runs and no spec changes: the products, the fitted-parameter solve, and
``apply`` (checks, transposing tall inputs, normalizing, choosing a plan, chunking, rescaling).

A generated module holds its plan functions, loop tables and cost polynomials, and calls these; one copy to
read and fix instead of one per spec. Plain tensor code: torch.compile(fullgraph=True) traces through it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from polygen.dtypes import DTYPES, plan_class
from polygen.runtime import tuning
from polygen.runtime.tuning import SYM_BLOCKS, SYM_MIN_ROWS

__all__ = ["FIT_GRID", "Problem", "add_diag", "apply", "choose_plan", "chunk_size", "dtype_class", "fit_param",
           "frobenius", "long_side", "long_side_sharded", "norm_dtype", "product", "rank_plans", "sym_bmm"]

Plan = Callable[[torch.Tensor], torch.Tensor]
Plans = dict[str, tuple[tuple[Plan, tuple[tuple[tuple[int, int], float], ...]], ...]]

# Read as Triton reads it (polygen.runtime.triton_support.INTERPRET), without importing Triton.
_TRITON_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
# The plan table of each served dtype, from the one classification the compiler uses too (polygen.dtypes).
_DTYPE_CLASS = {getattr(torch, name): plan_class(name) for name in DTYPES}
_DTYPE_NAME = {getattr(torch, name): name for name in DTYPES}


@dataclass(frozen=True)
class Problem:
    """What ``apply`` needs to know of a spec: its name (for messages), its input kind, how it normalizes the
    input and rescales the output, and which backend's rules apply."""

    name: str
    input_kind: str  # "rectangular" | "symmetric"
    norm: str  # "frobenius" | "none"
    safety: float
    eps: float
    rescale: str  # "rms" | "norm" | "none"
    exponent: float  # the power of the input scale the output is multiplied by (rescale = "norm")
    chunks: bool = False  # eager CPU batches run in chunks of about tuning.CPU_CHUNK_BYTES of input
    triton: bool = False  # the kernels run on CUDA tensors, or on the CPU under TRITON_INTERPRET=1
    finite: tuple[str, ...] = DTYPES  # the dtypes every constant and intermediate of the map fits (the verifier's)


def norm_dtype(dtype: torch.dtype) -> torch.dtype:
    """Norms accumulate in float32 for low-precision inputs and stay in float64 for float64 inputs."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def dtype_class(dtype: torch.dtype) -> str:
    """The key of a module's plan table for a served dtype (float64 runs the float32 plans; polygen.dtypes)."""
    cls = _DTYPE_CLASS.get(dtype)
    if cls is None:
        raise TypeError(f"polygen expects a floating-point tensor of {', '.join(DTYPES)}, got {dtype}")
    return cls


def rank_plans(plans: Plans, m: int, n: int, dtype: torch.dtype) -> list[Plan]:
    """The plans for an (m, n) problem (m <= n) in this dtype, cheapest first by their cost polynomials
    Σ c·m^i·n^j (a stable sort: ties keep the module's order, the direct plan first)."""
    entries = plans[dtype_class(dtype)]
    return [fn for fn, poly in sorted(entries, key=lambda e: sum(c * m**i * n**j for (i, j), c in e[1]))]


def choose_plan(plans: Plans, m: int, n: int, dtype: torch.dtype) -> Plan:
    """The plan whose cost polynomial is lowest for an (m, n) problem (m <= n) in this dtype (rank_plans'
    first). A loop, not rank_plans: torch.compile traces this, and dynamo cannot sort by symbolic costs."""
    best, best_cost = None, math.inf
    for fn, poly in plans[dtype_class(dtype)]:
        cost = sum(c * m**i * n**j for (i, j), c in poly)
        if cost < best_cost:
            best, best_cost = fn, cost
    assert best is not None, "a module has at least one plan per dtype"
    return best


def _matrix_by_matrix(A: torch.Tensor) -> bool:
    """Under torch.use_deterministic_algorithms(True), eager CPU code multiplies and reduces matrix by matrix.

    torch's CPU bmm shares its threads out over a batch but splits a lone matrix's GEMM between them, and its
    reductions sum a lone matrix in another order too, so a matrix rounds differently alone than beside
    others. One 2-D GEMM and one norm per matrix round the same whatever else is in the batch (an
    optimizer's bucket, a chunk, a rank's shard), at a cost for small matrices (bench/RESULTS.md §7), hence
    behind torch's own switch for reproducibility at some speed.
    """
    return (A.device.type == "cpu" and not torch.compiler.is_compiling()
            and torch.are_deterministic_algorithms_enabled())


def product(A: torch.Tensor, B: torch.Tensor, C: torch.Tensor | None, beta: float, alpha: float) -> torch.Tensor:
    """alpha·A·B + beta·C for (batch, ·, ·) stacks: one batched GEMM, or one 2-D GEMM per matrix in
    deterministic eager CPU code (see _matrix_by_matrix)."""
    if _matrix_by_matrix(A):
        out = A.new_empty(A.shape[:-1] + (B.size(-1),))
        for i in range(A.size(0)):
            _block_2d(A[i], B[i], None if C is None else C[i], beta, alpha, out=out[i])
        return out
    if C is not None:
        return torch.baddbmm(C, A, B, beta=beta, alpha=alpha)
    if alpha != 1.0:
        return torch.baddbmm(A.new_zeros(()), A, B, beta=0.0, alpha=alpha)
    return torch.bmm(A, B)


def frobenius(X: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """‖X_i‖_F of each matrix of a (batch, m, n) stack as (batch, 1, 1), in ``dtype``.

    Accumulated in two stages, each row's norm in float32 (float64 for float64 input) and the rows' in float64:
    torch's one-stage float32 norm of a 1024×4096 matrix is 8e-5 off (its reduction is not pairwise), which
    every normalization and unit-RMS rescale would inherit; two stages are right to ~1e-9 (float32 input) or
    ~5e-7 (bfloat16) and no slower (bench/RESULTS.md §10). Matrix by matrix in deterministic eager CPU code (see
    _matrix_by_matrix). With the long side sharded (:func:`long_side_sharded`), X is this rank's columns and
    the norm the whole matrix's (one all-reduce of the squares)."""
    rows_dtype = torch.float64 if X.dtype == torch.float64 else torch.float32

    def squares(Y: torch.Tensor) -> torch.Tensor:  # (batch, 1, 1) sums of squares in float64
        rows = torch.linalg.vector_norm(Y, dim=-1, dtype=rows_dtype).to(torch.float64)
        return rows.square().sum(-1).reshape(-1, 1, 1)

    group = _LONG_SIDE[-1]
    if group is not None:
        import torch.distributed as dist

        sq = squares(X)
        dist.all_reduce(sq, group=group)
        return sq.sqrt().to(dtype)
    if _matrix_by_matrix(X) and X.size(0) > 0:
        return torch.cat([squares(x.unsqueeze(0)) for x in X]).sqrt().to(dtype)
    return squares(X).sqrt().to(dtype)


_LONG_SIDE: list[Any] = [None]  # the process group over which the long side is sharded (None: it is not)


@contextmanager
def long_side_sharded(group: Any) -> Iterator[None]:
    """Within it, plans run on this rank's columns of matrices whose long side is sharded over ``group``
    (tensor parallelism): each product summing over the long side is summed over ranks (long_side), and
    norms are the whole matrices' (frobenius). Everything else in a plan is already column-local."""
    _LONG_SIDE.append(group)
    try:
        yield
    finally:
        _LONG_SIDE.pop()


def long_side(A: torch.Tensor, B: torch.Tensor, C: torch.Tensor | None, beta: float, alpha: float, *,
              sym: bool, in_16_bits: bool = False) -> torch.Tensor:
    """alpha·A·B + beta·C for a product summing over the long side (X·Xᵀ); exactly sym_bmm or product
    unsharded. Sharded, the partial products of every rank are summed in float32 before beta·C is added
    once (added per rank, C would count W times)."""
    group = _LONG_SIDE[-1]
    if group is None:
        return sym_bmm(A, B, C, beta, alpha, in_16_bits=in_16_bits) if sym else product(A, B, C, beta, alpha)
    import torch.distributed as dist

    part = sym_bmm(A, B, None, 0.0, alpha, in_16_bits=in_16_bits) if sym else product(A, B, None, 0.0, alpha)
    total = part.float()
    dist.all_reduce(total, group=group)
    out = total.to(part.dtype)
    return out if C is None else out + beta * C


def _block_2d(A: torch.Tensor, B: torch.Tensor, C: torch.Tensor | None, beta: float, alpha: float,
              out: torch.Tensor | None = None) -> torch.Tensor:
    """alpha·A·B + beta·C for single matrices (torch.mm / addmm), into ``out`` if given."""
    if C is not None:
        return torch.addmm(C, A, B, beta=beta, alpha=alpha, out=out)
    if alpha != 1.0:  # alpha inside the GEMM: one rounding to the output dtype, as in the batched form
        return torch.addmm(A.new_zeros(()), A, B, beta=0.0, alpha=alpha, out=out)
    return torch.mm(A, B, out=out)


def sym_bmm(A: torch.Tensor, B: torch.Tensor, C: torch.Tensor | None, beta: float, alpha: float,
            in_16_bits: bool = False) -> torch.Tensor:
    """alpha·A·B + beta·C, known to be symmetric: one GEMM per block row of SYM_BLOCKS² blocks for the blocks
    on and right of the diagonal, then the lower triangle mirrored.

    ``in_16_bits`` marks the products the schedule lets run blocked in 16-bit dtypes too (passes.symmetry);
    those use 2-D GEMMs in eager CPU code, since the CPU's 16-bit bmm runs column-sliced operands at half speed.
    """
    m, k = A.size(-2), SYM_BLOCKS
    if k < 2 or m < SYM_MIN_ROWS:
        return product(A, B, C, beta, alpha)
    out = A.new_empty(A.shape[:-1] + (B.size(-1),))
    cuts = [i * m // k for i in range(k + 1)]
    if A.element_size() >= 4:
        for lo, hi in zip(cuts[:-1], cuts[1:]):
            out[:, lo:hi, lo:] = product(A[:, lo:hi], B[:, :, lo:], None if C is None else C[:, lo:hi, lo:],
                                         beta, alpha)
    elif in_16_bits and A.device.type == "cpu" and not torch.compiler.is_compiling():
        for i in range(A.size(0)):
            for lo, hi in zip(cuts[:-1], cuts[1:]):
                out[i, lo:hi, lo:] = _block_2d(A[i, lo:hi], B[i, :, lo:],
                                               None if C is None else C[i, lo:hi, lo:], beta, alpha)
    else:
        return product(A, B, C, beta, alpha)
    for lo, hi in zip(cuts[1:-1], cuts[2:]):
        out[:, lo:hi, :lo] = out[:, :lo, lo:hi].mT
    return out


def add_diag(M: torch.Tensor, g: Any) -> None:
    """M += g·I in place, for a fitted run-time scalar g of shape (batch, 1, 1) (or a float)."""
    M.diagonal(dim1=-2, dim2=-1).add_(g.reshape(-1, 1) if isinstance(g, torch.Tensor) else g)


FIT_GRID = 129  # grid points of fit_param's search before its Newton steps


def fit_param(powers: Sequence[torch.Tensor], data: Sequence[Sequence[float]], lo: float, hi: float) -> torch.Tensor:
    """argmin over [lo, hi] of ‖Σ_i a^i Σ_j data[i][j]·powers[j]‖_F² per batch entry, on the device.

    powers[j] is S·R^j (sketched) or R^j (exact). The objective is a polynomial in a whose coefficients are
    quadratic forms in W = Gram(powers); it is minimised by a grid search refined with Newton steps, all in
    tensor ops (no host sync, torch.compile-clean). Returns a (batch, 1, 1) tensor.
    """
    P = torch.stack([p.flatten(1) for p in powers], dim=1).float()  # (B, d+1, p·m)
    W = P @ P.mT  # (B, d+1, d+1)
    H = torch.tensor(data, dtype=W.dtype, device=W.device)  # (k, d+1)
    Q = H @ W @ H.mT  # (B, k, k): ⟨H_i, H_j⟩
    k = H.shape[0]
    coef: list[Any] = [0.0] * (2 * k - 1)
    for i in range(k):
        for j in range(k):
            coef[i + j] = coef[i + j] + Q[:, i, j]
    C = torch.stack(coef, dim=-1)  # (B, 2k-1), lowest power first

    def powers_of(a: torch.Tensor, n: int) -> torch.Tensor:
        return torch.stack([a**e for e in range(n)], dim=-1)

    grid = torch.linspace(lo, hi, FIT_GRID, dtype=C.dtype, device=C.device)
    vals = (C.unsqueeze(1) * powers_of(grid, C.shape[-1])).sum(-1)  # (B, grid)
    a = grid[vals.argmin(dim=-1)]
    e = torch.arange(C.shape[-1], dtype=C.dtype, device=C.device)
    D1 = C[:, 1:] * e[1:]
    D2 = D1[:, 1:] * e[1:-1]
    best = a
    for _ in range(3):
        d1 = (D1 * powers_of(a, D1.shape[-1])).sum(-1)
        d2 = (D2 * powers_of(a, D2.shape[-1])).sum(-1)
        step = torch.where(d2 > 0, d1 / torch.where(d2 > 0, d2, torch.ones_like(d2)), torch.zeros_like(d1))
        a = (a - step).clamp(lo, hi)
    f_best = (C * powers_of(best, C.shape[-1])).sum(-1)
    f_new = (C * powers_of(a, C.shape[-1])).sum(-1)
    a = torch.where(f_new <= f_best, a, best)
    return a.reshape(-1, 1, 1).to(powers[0].dtype)


def chunk_size(X: torch.Tensor, chunks: bool) -> int:
    """How many matrices of the batch X one call takes: all on GPUs and under torch.compile (whose memory
    planning sees the whole graph); about tuning.CPU_CHUNK_BYTES of input in eager CPU runs."""
    if not chunks or X.device.type != "cpu" or torch.compiler.is_compiling():
        return X.size(0)
    return max(1, tuning.CPU_CHUNK_BYTES // max(1, X.size(-2) * X.size(-1) * X.element_size()))


def _apply_batch(X: torch.Tensor, fn: Plan, problem: Problem) -> torch.Tensor:
    """Normalize, run the plan and rescale a (batch, m, n) stack; the work of one call."""
    m, n = X.size(-2), X.size(-1)
    dtype = X.dtype
    scale = None
    if problem.norm == "frobenius":
        scale = frobenius(X, norm_dtype(dtype))
        scale = scale * problem.safety + problem.eps
        X = (X / scale).to(dtype)
    Y = fn(X)
    if problem.rescale == "rms":
        rms = frobenius(Y, norm_dtype(dtype))
        Y = (Y * (math.sqrt(m * n) / rms.clamp_min(1e-30))).to(dtype)
    elif problem.rescale == "norm" and scale is not None:
        Y = (Y * scale.pow(problem.exponent)).to(dtype)
    return Y


def _check_input(G: torch.Tensor, problem: Problem) -> None:
    if hasattr(G, "device_mesh") and hasattr(G, "placements"):  # a DTensor (duck-typed: no distributed import)
        raise TypeError(f"{problem.name} runs on local tensors, got a DTensor with placements {G.placements}: "
                        "through a generated plan, a Partial result's in-place diagonal add counts once per rank. "
                        "Pass .to_local() or .full_tensor(), or let polygen.optim distribute the work")
    if G.ndim < 2:
        raise ValueError(f"{problem.name} expects a (..., m, n) matrix, got shape {tuple(G.shape)}")
    if G.dtype not in _DTYPE_CLASS:
        raise TypeError(f"{problem.name} expects a floating-point tensor of {', '.join(DTYPES)}, got {G.dtype}")
    if _DTYPE_NAME[G.dtype] not in problem.finite:
        raise ValueError(f"{problem.name} does not run in {_DTYPE_NAME[G.dtype]}: a constant or an intermediate value "
                         f"of its map exceeds that dtype's range (the verifier's bound); it runs in "
                         f"{', '.join(problem.finite)}")
    if problem.triton:
        if not (G.is_cuda or _TRITON_INTERPRET):
            raise RuntimeError(f"the Triton backend of {problem.name} runs on CUDA tensors (or on CPU under "
                               f"TRITON_INTERPRET=1); got a tensor on {G.device}: use backend='torch'")
    if problem.input_kind == "symmetric" and G.size(-1) != G.size(-2):
        raise ValueError(f"{problem.name} expects square symmetric matrices, got shape {tuple(G.shape)}")


def apply(G: torch.Tensor, problem: Problem, plans: Plans, plan: Plan | None = None) -> torch.Tensor:
    """The spec's matrix function of G (..., m, n), same shape and dtype: tall inputs of a rectangular spec are
    transposed, the batch flattened, and ``plan`` (default: the cheapest of ``plans`` for the shape and dtype)
    runs on each chunk between the spec's normalization and rescaling."""
    _check_input(G, problem)
    # with the long side sharded the caller passes this rank's columns of wide matrices, however few
    transposed = problem.input_kind != "symmetric" and G.size(-2) > G.size(-1) and _LONG_SIDE[-1] is None
    if transposed:
        G = G.mT
    batch_shape = G.shape[:-2]
    m, n = G.size(-2), G.size(-1)
    X = G.reshape(math.prod(batch_shape), m, n)  # not -1: empty matrices have no inferable batch
    fn = plan if plan is not None else choose_plan(plans, m, n, G.dtype)
    per = chunk_size(X, problem.chunks)
    if per >= X.size(0):
        Y = _apply_batch(X, fn, problem)
    else:
        Y = torch.cat([_apply_batch(chunk, fn, problem) for chunk in X.split(per)])
    Y = Y.reshape(*batch_shape, m, n)
    return Y.mT if transposed else Y
