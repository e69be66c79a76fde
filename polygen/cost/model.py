"""FLOPs and bytes of every schedule op for a shape, and an estimated time per backend.

Shape classes: S = m×m, L = m×n, N = n×n (m <= n after transposing tall inputs). A symmetric output
costs half its FLOPs on Triton, whose kernels compute only the upper-triangular tiles, and (k + 1)/2k on torch,
which computes the upper triangle of k×k blocks: for the products whose Kernel (passes.select_kernels) says
so; the model reads those fields and decides nothing itself.

The torch figures model eager execution on the CPU, where they were measured. Two of the emitter's run-time
rules are not in them: the 16-bit long-side XXᵀ stays one GEMM on CUDA and under torch.compile, and a product
of fewer than SYM_MIN_ROWS (256) rows stays whole at any dtype; a cost polynomial Σ c·m^i·n^j has no place for
either. Where the discount does not apply it favours the direct form, which forms XXᵀ every step while the
Gram form does so once per (re)start, so there the model tends to err towards the direct form.
"""

from __future__ import annotations

from dataclasses import dataclass

from polygen.dtypes import ITEMSIZE, dtype_name
from polygen.ir.schedule import Alias, Fit, Identity, LinComb, MatMul, Op, Schedule, Sketch
from polygen.runtime.tuning import SYM_BLOCKS


@dataclass(frozen=True)
class Machine:
    """Throughput figures used to turn FLOPs and bytes into a time estimate."""

    name: str
    flops_per_s: float
    bytes_per_s: float
    symmetric_discount: float  # fraction of FLOPs paid for a symmetric output
    launch_s: float = 0.0
    pairs_products: bool = False  # runs passes.fuse_pairs' pairs in one launch


# The torch backend computes a symmetric product as the upper triangle of SYM_BLOCKS² blocks and mirrors it
# (polygen.runtime.torch_ops.sym_bmm), paying (k + 1) / 2k of the FLOPs (passes.symmetry.block_triangle_ops says
# which products).
TORCH_SYM_BLOCKS = SYM_BLOCKS

MACHINES = {
    "torch": Machine("torch", 1.0e11, 1.0e10, (TORCH_SYM_BLOCKS + 1) / (2 * TORCH_SYM_BLOCKS), 2e-6),
    "triton": Machine("triton", 7.0e14, 3.0e12, 0.5, 5e-6, pairs_products=True),
}



def dim_factors(shape_class: str, input_shape: str = "L") -> tuple[str, str]:
    """Rows and columns of a shape class as symbols: "m", "n", "p" (sketch rows) or "1"."""
    side = "m" if input_shape == "L" else "n"
    return {"S": ("m", "m"), "L": ("m", "n"), "N": ("n", "n"), "P": ("p", side), "C": ("1", "1")}[shape_class]


def dims(shape_class: str, m: int, n: int, p: int = 0, input_shape: str = "L") -> tuple[int, int]:
    val = {"m": m, "n": n, "p": p, "1": 1}
    r, c = dim_factors(shape_class, input_shape)
    return val[r], val[c]


@dataclass(frozen=True)
class Cost:
    matmuls: int
    long_matmuls: int  # matmuls that read or write an m×n value
    flops: int  # FLOPs actually paid on this backend (symmetric discount applied)
    dense_flops: int  # FLOPs of the same ops as plain GEMMs
    bytes: int
    ops: int  # kernel launches (matmuls + elementwise ops)
    seconds: float  # estimate on the backend's machine

    def __str__(self) -> str:
        dense = f" ({self.dense_flops / 1e9:.2f} as plain GEMMs)" if self.dense_flops != self.flops else ""
        return (f"{self.matmuls} matmuls ({self.long_matmuls} long-side), {self.flops / 1e9:.2f} GFLOP{dense}, "
                f"{self.bytes / 1e6:.1f} MB, est. {self.seconds * 1e3:.2f} ms")


def op_terms(op: Op, shapes: dict[str, str], input_shape: str = "L") -> tuple[list[tuple[tuple[str, ...], float]],
                                                                           list[tuple[tuple[str, ...], float]], bool]:
    """FLOPs and elements moved by one op, as lists of (dimension symbols, multiplier); and symmetric-output?"""
    f = lambda sc: dim_factors(sc, input_shape)  # noqa: E731
    if isinstance(op, MatMul):
        r, c = f(op.shape)
        k = f(shapes[op.a])[1]
        flops: list[tuple[tuple[str, ...], float]] = [((r, c, k), 2.0)]
        operands = (op.a, op.b) + ((op.c,) if op.c else ())
        elems: list[tuple[tuple[str, ...], float]] = [(tuple(f(shapes[x])), 1.0) for x in operands]
        elems.append(((r, c), 1.0))
        return flops, elems, op.symmetric
    if isinstance(op, LinComb):
        rc = f(op.shape)
        return [(rc, 2.0 * len(op.terms))], [(rc, len(op.terms) + 1.0)], False
    if isinstance(op, (Identity, Sketch)):
        return [], [(f(op.shape), 1.0)], False
    if isinstance(op, Fit):
        d = float(len(op.args))
        rc = f(shapes[op.args[0]])
        return [(rc, 2.0 * d * d)], [(rc, d)], False
    assert isinstance(op, Alias)
    return [], [], False


def _value(factors: tuple[str, ...], m: int, n: int, p: int) -> int:
    val = {"m": m, "n": n, "p": p, "1": 1}
    out = 1
    for x in factors:
        out *= val[x]
    return out


def op_cost(op: Op, shapes: dict[str, str], m: int, n: int, itemsize: int, p: int = 0,
            input_shape: str = "L") -> tuple[int, int, bool]:
    """(dense FLOPs, bytes, symmetric-output?) of one op at shape (m, n)."""
    flops, elems, sym = op_terms(op, shapes, input_shape)
    fl = int(sum(k * _value(fs, m, n, p) for fs, k in flops))
    by = int(sum(k * _value(fs, m, n, p) for fs, k in elems)) * itemsize
    return fl, by, sym


def _discounted(op: Op, mach: Machine, dtype: str) -> bool:
    """Whether this backend computes the product in part and mirrors it (its Kernel, passes.select_kernels)."""
    if not isinstance(op, MatMul) or mach.symmetric_discount >= 1.0:
        return False
    if mach.name == "torch":
        return op.kernel.torch_blocked_16 if dtype in ("bfloat16", "float16") else op.kernel.torch_blocked
    return op.kernel.mirrored


def _launches_saved(sched: Schedule, mach: Machine) -> int:
    """Launches this backend saves by running paired products together (one per pair and trip)."""
    if not mach.pairs_products:
        return 0
    return sum(times for _, op, times in sched.positions() if isinstance(op, MatMul) and op.kernel.pair == "first")


def plan_cost(sched: Schedule, m: int, n: int, *, batch: int = 1, dtype: str = "float32",
              backend: str = "torch") -> Cost:
    mach = MACHINES[backend]
    itemsize = ITEMSIZE[dtype_name(dtype)]
    shapes = sched.shapes()
    matmuls = long_mm = flops = dense = nbytes = ops = 0
    for _, op, times in sched.positions():
        f, b, _ = op_cost(op, shapes, m, n, itemsize, sched.sketch_rows, sched.input_shape)
        if isinstance(op, Alias):
            continue
        ops += times
        dense += f * times * batch
        flops += int(f * (mach.symmetric_discount if _discounted(op, mach, dtype) else 1.0)) * times * batch
        nbytes += b * times * batch
        if isinstance(op, MatMul):
            matmuls += times
            if "L" in (op.shape, shapes[op.a], shapes[op.b]):
                long_mm += times
    ops -= _launches_saved(sched, mach)
    secs = flops / mach.flops_per_s + nbytes / mach.bytes_per_s + ops * mach.launch_s
    return Cost(matmuls, long_mm, flops, dense, nbytes, ops, secs)


def cost_polynomial(sched: Schedule, *, dtype: str = "float32", backend: str = "torch") -> dict[tuple[int, int], float]:
    """Estimated seconds as Σ coef·m^i·n^j, so generated code can pick a plan from the shape at call time."""
    mach = MACHINES[backend]
    itemsize = ITEMSIZE[dtype_name(dtype)]
    shapes = sched.shapes()
    poly: dict[tuple[int, int], float] = {}

    def add(factors: tuple[str, ...], c: float) -> None:
        e = (factors.count("m"), factors.count("n"))
        poly[e] = poly.get(e, 0.0) + c * float(sched.sketch_rows) ** factors.count("p")

    for _, op, times in sched.positions():
        if isinstance(op, Alias):
            continue
        poly[(0, 0)] = poly.get((0, 0), 0.0) + times * mach.launch_s
        flops, elems, _ = op_terms(op, shapes, sched.input_shape)
        disc = mach.symmetric_discount if _discounted(op, mach, dtype) else 1.0
        for fs, k in flops:
            add(fs, times * k * disc / mach.flops_per_s)
        for fs, k in elems:
            add(fs, times * k * itemsize / mach.bytes_per_s)
    poly[(0, 0)] = poly.get((0, 0), 0.0) - _launches_saved(sched, mach) * mach.launch_s
    return poly
