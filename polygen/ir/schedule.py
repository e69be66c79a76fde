"""The schedule IR: a straight list of matrix ops with fused scalar epilogues, plus loops over tables.

Every product is ``out = alpha · A @ op(B) + beta · C + gamma · I`` (``op`` = transpose when ``tb``), which is
exactly what ``addmm``/``baddbmm`` and a GEMM epilogue compute; ``lincomb`` is the only elementwise op.
Each value has a *shape class*: ``S`` (m×m, the small Gram side), ``L`` (m×n, the long side) or ``N``
(n×n, a symmetric input's side); FLOPs and bytes follow from the class and the shape at hand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field, replace
from typing import Any, ClassVar

from polygen.ir.names import INPUT

MATMUL = "matmul"
LINCOMB = "lincomb"
IDENTITY = "identity"  # out = gamma · I
ALIAS = "alias"  # out = a (a rename; costs nothing)
SKETCH = "sketch"  # out = a Gaussian (rows × side) matrix / √rows, drawn once per call
FIT = "fit"  # out = argmin over [lo, hi] of the sketched next residual (a run-time scalar per batch)
OP_KINDS = (MATMUL, LINCOMB, IDENTITY, ALIAS, SKETCH, FIT)


@dataclass(frozen=True)
class Ref:
    """A scalar known at run time only: const + coef·name, where name is a loop parameter (a column of its
    loop's table) or a fitted value (a (batch, 1, 1) tensor at run time). Printers render it; nobody parses it."""

    name: str
    coef: float = 1.0
    const: float = 0.0

    def __str__(self) -> str:
        term = self.name if self.coef == 1.0 else f"{self.coef!r}*{self.name}"
        return term if self.const == 0.0 else f"({self.const!r} + {term})"

    def value(self, env: Mapping[str, Any]) -> Any:
        return self.const + self.coef * env[self.name] if (self.coef, self.const) != (1.0, 0.0) else env[self.name]

    @property
    def is_name(self) -> bool:
        """The bare name (a loop parameter read as is)."""
        return self.coef == 1.0 and self.const == 0.0


# A number, or a run-time scalar.
Scalar = float | Ref


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
    """One schedule op; ``out`` is (re)bound to its result, a value of shape class ``shape``. One subclass per
    kind, each with its own fields; ``kind`` names it in views and listings."""

    out: str
    shape: str  # "S" | "L" | "N" | "P" (sketch rows × side) | "C" (a scalar per matrix)
    _: KW_ONLY
    symmetric: bool = False
    note: str = ""  # why this op exists (printed in listings)
    kind: ClassVar[str] = ""

    @property
    def scalars(self) -> tuple[Scalar, ...]:
        """The op's scalars, in the order with_scalars takes them back."""
        return ()

    def with_scalars(self, values: Sequence[Scalar]) -> Op:
        return self

    @property
    def matrix_reads(self) -> tuple[str, ...]:
        return ()

    @property
    def is_matmul(self) -> bool:
        return isinstance(self, MatMul)

    @property
    def scalar_names(self) -> tuple[str, ...]:
        """Names of the run-time scalars the op reads (loop parameters, fitted values)."""
        return tuple(v.name for v in self.scalars if isinstance(v, Ref))

    @property
    def reads(self) -> tuple[str, ...]:
        return self.matrix_reads + self.scalar_names


@dataclass(frozen=True, kw_only=True)
class MatMul(Op):
    """out = alpha · a @ op(b) + beta · c + gamma · I (op = transpose when ``tb``)."""

    kind: ClassVar[str] = MATMUL
    a: str
    b: str
    tb: bool = False  # use bᵀ (Gram products X Xᵀ)
    alpha: Scalar = 1.0
    c: str = ""  # the addend
    beta: Scalar = 0.0
    gamma: Scalar = 0.0  # + gamma · I (S and N shapes only)
    kernel: Kernel = PLAIN  # how the backends run it (passes.select_kernels)

    @property
    def scalars(self) -> tuple[Scalar, ...]:
        return (self.alpha, self.beta, self.gamma)

    def with_scalars(self, values: Sequence[Scalar]) -> MatMul:
        alpha, beta, gamma = values
        return replace(self, alpha=alpha, beta=beta, gamma=gamma)

    @property
    def matrix_reads(self) -> tuple[str, ...]:
        return tuple(x for x in (self.a, self.b, self.c) if x)


@dataclass(frozen=True, kw_only=True)
class LinComb(Op):
    """out = Σ k·M + gamma · I, elementwise."""

    kind: ClassVar[str] = LINCOMB
    terms: tuple[tuple[Scalar, str], ...]
    gamma: Scalar = 0.0

    @property
    def scalars(self) -> tuple[Scalar, ...]:
        return (self.gamma,) + tuple(k for k, _ in self.terms)

    def with_scalars(self, values: Sequence[Scalar]) -> LinComb:
        return replace(self, gamma=values[0], terms=tuple((k, m) for k, (_, m) in zip(values[1:], self.terms)))

    @property
    def matrix_reads(self) -> tuple[str, ...]:
        return tuple(m for _, m in self.terms)


@dataclass(frozen=True, kw_only=True)
class Identity(Op):
    """out = gamma · I."""

    kind: ClassVar[str] = IDENTITY
    gamma: Scalar

    @property
    def scalars(self) -> tuple[Scalar, ...]:
        return (self.gamma,)

    def with_scalars(self, values: Sequence[Scalar]) -> Identity:
        return replace(self, gamma=values[0])


@dataclass(frozen=True, kw_only=True)
class Alias(Op):
    """out = a (a rename; costs nothing)."""

    kind: ClassVar[str] = ALIAS
    a: str

    @property
    def matrix_reads(self) -> tuple[str, ...]:
        return (self.a,)


@dataclass(frozen=True, kw_only=True)
class Sketch(Op):
    """out = a Gaussian ``rows`` × side(a) matrix / √rows, drawn once per call."""

    kind: ClassVar[str] = SKETCH
    a: str
    rows: int

    @property
    def matrix_reads(self) -> tuple[str, ...]:
        return (self.a,)


@dataclass(frozen=True, kw_only=True)
class Fit(Op):
    """out = argmin over [lo, hi] of the sketched next residual, a run-time scalar per matrix.

    ``args`` are the sketched powers S·R^0 … S·R^d (or R^0 … R^d when exact), ``a`` the residual R (its spectrum
    defines the exact objective), ``data[i][j]`` the coefficient of R^j in H_i, where the next residual is
    Σ_i out^i·H_i(R)."""

    kind: ClassVar[str] = FIT
    a: str
    args: tuple[str, ...]
    data: tuple[tuple[float, ...], ...]
    lo: float
    hi: float

    @property
    def matrix_reads(self) -> tuple[str, ...]:
        return (self.a,) + self.args


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
        sh = {INPUT: self.input_shape}
        for op, _ in self.flat_ops():
            sh[op.out] = op.shape
        return sh


def contracts_long(op: Op, shapes: dict[str, str]) -> bool:
    """A product that sums over the long side (X·Xᵀ of an m×n value into m×m): with the long side sharded
    across ranks, its result is the sum of every rank's partial product, and nothing else in a plan is."""
    return isinstance(op, MatMul) and op.tb and shapes.get(op.a) == "L" and shapes.get(op.b) == "L"


def long_side_sums(sched: Schedule) -> int | None:
    """How many long-side sums (one all-reduce each, when the long side is sharded) the plan runs; None for a
    plan with a sketch or a fitted scalar, whose run-time values would need sums of their own."""
    if any(isinstance(op, (Sketch, Fit)) for op, _ in sched.flat_ops()):
        return None
    shapes = sched.shapes()
    return sum(times for op, times in sched.flat_ops() if contracts_long(op, shapes))


def op_touches_long(op: Op, sched: Schedule) -> bool:
    """A matmul touches the long side when it reads or writes an m×n value (2·m²·n FLOPs)."""
    return _touches_long(op, sched.shapes())


def _touches_long(op: Op, shapes: dict[str, str]) -> bool:
    return op.shape == "L" or (isinstance(op, MatMul) and op.tb and shapes.get(op.a) == "L")
