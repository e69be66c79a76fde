"""The schedule IR: a straight list of matrix ops with fused scalar epilogues, plus loops over tables.

Every product is ``out = alpha · A @ op(B) + beta · C + gamma · I`` (``op`` = transpose when ``tb``), which is
exactly what ``addmm``/``baddbmm`` and a GEMM epilogue compute; ``lincomb`` is the only elementwise op.
Each value has a *shape class*: ``S`` (m×m, the small Gram side), ``L`` (m×n, the long side) or ``N``
(n×n, a symmetric input's side); FLOPs and bytes follow from the class and the shape at hand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# A number, or a string: a loop parameter (a column of the loop's table) or an affine expression in run-time
# scalars such as "(1.0 + 0.5*alpha)" (a fitted parameter, a (batch, 1, 1) tensor at run time).
Scalar = float | str

MATMUL = "matmul"
LINCOMB = "lincomb"
IDENTITY = "identity"  # out = gamma · I
ALIAS = "alias"  # out = a (a rename; costs nothing)
SKETCH = "sketch"  # out = a Gaussian (rows × side) matrix / √rows, drawn once per call
FIT = "fit"  # out = argmin over [lo, hi] of the sketched next residual (a run-time scalar per batch)
OP_KINDS = (MATMUL, LINCOMB, IDENTITY, ALIAS, SKETCH, FIT)


@dataclass(frozen=True)
class Kernel:
    """How the backends run one product: decided once by passes.select_kernels, read by the cost model and both
    emitters (the default is a plain GEMM on every backend)."""

    mirrored: bool = False  # symmetric to rounding error: Triton's triangular-tile kernel computes half, mirrored
    torch_blocked: bool = False  # torch computes it as a mirrored block triangle in float32/float64
    torch_blocked_16: bool = False  # ... and in 16-bit dtypes too (a Gram product XXᵀ of the long side)
    pair: str = ""  # "first" | "second": one launch with the next (previous) product of its block (Triton)


PLAIN = Kernel()


@dataclass(frozen=True)
class Op:
    """One schedule op; ``out`` is (re)bound to its result."""

    kind: str
    out: str
    shape: str  # "S" | "L" | "N"
    symmetric: bool = False
    a: str = ""  # matmul: left factor
    b: str = ""  # matmul: right factor
    tb: bool = False  # matmul: use bᵀ (Gram products X Xᵀ)
    alpha: Scalar = 1.0
    c: str = ""  # matmul: addend; lincomb: unused
    beta: Scalar = 0.0
    gamma: Scalar = 0.0  # + gamma · I (S and N shapes only)
    terms: tuple[tuple[Scalar, str], ...] = ()  # lincomb: Σ k·M (+ gamma · I)
    note: str = ""  # why this op exists (printed in listings)
    # fit: ``args`` are the sketched powers S·R^0 … S·R^d (or R^0 … R^d when exact), ``a`` the residual R
    # (its spectrum defines the exact objective), ``data[i][j]`` the coefficient of R^j in H_i, where the
    # next residual is Σ_i param^i·H_i(R). sketch: ``rows`` rows, as wide as ``a``.
    args: tuple[str, ...] = ()
    data: tuple[tuple[float, ...], ...] = ()
    lo: float = 0.0
    hi: float = 0.0
    rows: int = 0
    kernel: Kernel = PLAIN  # matmul: how the backends run it (passes.select_kernels)

    @property
    def is_matmul(self) -> bool:
        return self.kind == MATMUL

    @property
    def scalar_names(self) -> tuple[str, ...]:
        """Names used inside string scalars (loop parameters, fitted run-time scalars)."""
        vals = [self.alpha, self.beta, self.gamma] + [k for k, _ in self.terms]
        return tuple(n for v in vals if isinstance(v, str) for n in re.findall(r"[A-Za-z_]\w*", v))

    @property
    def reads(self) -> tuple[str, ...]:
        return self.matrix_reads + self.scalar_names

    @property
    def matrix_reads(self) -> tuple[str, ...]:
        if self.kind == MATMUL:
            return tuple(x for x in (self.a, self.b, self.c) if x)
        if self.kind == LINCOMB:
            return tuple(m for _, m in self.terms)
        if self.kind == ALIAS:
            return (self.a,)
        if self.kind == FIT:
            return (self.a,) + self.args
        if self.kind == SKETCH:
            return (self.a,)
        return ()


@dataclass(frozen=True)
class Loop:
    """The same body run once per row of ``table``; ``params`` name the columns used as scalars."""

    params: tuple[str, ...]
    table: tuple[tuple[float, ...], ...]
    body: tuple[Op, ...]
    label: str = ""

    @property
    def trips(self) -> int:
        return len(self.table)


Block = Op | Loop


@dataclass(frozen=True)
class Schedule:
    """A complete plan: ``inputs`` are bound on entry (the normalized input is ``G``), ``outputs`` read at exit."""

    form: str  # "direct" | "gram"
    blocks: tuple[Block, ...]
    outputs: tuple[str, ...]
    input_shape: str = "L"  # "L" for rectangular inputs, "N" for symmetric ones
    sketch_rows: int = 0  # p of the "P" shape class (p × side) when the plan sketches
    restarts: tuple[int, ...] = ()  # gram form: steps after which X, R are rebuilt from Q
    dtype_class: str = "any"  # which dtypes this plan was derived for ("any", "float32", "bfloat16", ...)
    notes: tuple[str, ...] = field(default_factory=tuple)

    def positions(self) -> list[tuple[tuple[int, int], Op, int]]:
        """Every op with its position (block, index in a loop body or -1) and how many times it runs."""
        out: list[tuple[tuple[int, int], Op, int]] = []
        for i, blk in enumerate(self.blocks):
            if isinstance(blk, Loop):
                out.extend(((i, j), op, blk.trips) for j, op in enumerate(blk.body))
            else:
                out.append(((i, -1), blk, 1))
        return out

    def flat_ops(self) -> list[tuple[Op, int]]:
        """Every op with how many times it runs."""
        out: list[tuple[Op, int]] = []
        for blk in self.blocks:
            if isinstance(blk, Loop):
                out.extend((op, blk.trips) for op in blk.body)
            else:
                out.append((blk, 1))
        return out

    def count(self, *, shape_of_result: str | None = None, touches_long: bool | None = None) -> int:
        """Matmuls executed, optionally only those producing a given shape class or touching the long side."""
        n = 0
        shapes = self.shapes() if touches_long is not None else {}
        for op, times in self.flat_ops():
            if not op.is_matmul:
                continue
            if shape_of_result is not None and op.shape != shape_of_result:
                continue
            if touches_long is not None and (_touches_long(op, shapes) != touches_long):
                continue
            n += times
        return n

    @property
    def matmuls(self) -> int:
        return self.count()

    def shapes(self) -> dict[str, str]:
        """Shape class of every name (inputs included)."""
        sh = {"G": self.input_shape}
        for op, _ in self.flat_ops():
            sh[op.out] = op.shape
        return sh


def op_touches_long(op: Op, sched: Schedule) -> bool:
    """A matmul touches the long side when it reads or writes an m×n value (2·m²·n FLOPs)."""
    return _touches_long(op, sched.shapes())


def _touches_long(op: Op, shapes: dict[str, str]) -> bool:
    return op.shape == "L" or (op.tb and shapes.get(op.a) == "L")
