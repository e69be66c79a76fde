"""FLOPs and bytes of every schedule op for a shape, and an estimated time per backend.

Shape classes: S = m×m, L = m×n, N = n×n (m <= n after transposing tall inputs). A symmetric output
costs half its FLOPs on backends whose kernels compute only the upper-triangular tiles (Triton), and full
price on torch's GEMM.
"""

from __future__ import annotations

from dataclasses import dataclass

from polygen.ir.schedule import ALIAS, IDENTITY, LINCOMB, MATMUL, Op, Schedule


@dataclass(frozen=True)
class Machine:
    """Throughput figures used to turn FLOPs and bytes into a time estimate."""

    name: str
    flops_per_s: float
    bytes_per_s: float
    symmetric_discount: float  # fraction of FLOPs paid for a symmetric output
    launch_s: float = 0.0


MACHINES = {
    "torch": Machine("torch", 1.0e11, 1.0e10, 1.0, 2e-6),
    "triton": Machine("triton", 7.0e14, 3.0e12, 0.5, 5e-6),
}

ITEMSIZE = {"float64": 8, "float32": 4, "bfloat16": 2, "float16": 2}


def dims(shape_class: str, m: int, n: int) -> tuple[int, int]:
    return {"S": (m, m), "L": (m, n), "N": (n, n)}[shape_class]


def _inner(op: Op, shapes: dict[str, str], m: int, n: int) -> int:
    rows, cols = dims(shapes[op.a], m, n)
    return cols


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
        return (f"{self.matmuls} matmuls ({self.long_matmuls} long-side), {self.flops / 1e9:.2f} GFLOP, "
                f"{self.bytes / 1e6:.1f} MB, est. {self.seconds * 1e3:.2f} ms")


def op_cost(op: Op, shapes: dict[str, str], m: int, n: int, itemsize: int) -> tuple[int, int, bool]:
    """(dense FLOPs, bytes, symmetric-output?) of one op at shape (m, n)."""
    if op.kind == MATMUL:
        r, c = dims(op.shape, m, n)
        k = _inner(op, shapes, m, n)
        flops = 2 * r * c * k
        elems = sum(dims(shapes[x], m, n)[0] * dims(shapes[x], m, n)[1] for x in (op.a, op.b)) + r * c
        if op.c:
            elems += r * c
        return flops, elems * itemsize, op.symmetric
    if op.kind == LINCOMB:
        r, c = dims(op.shape, m, n)
        return 2 * r * c * len(op.terms), (len(op.terms) + 1) * r * c * itemsize, False
    if op.kind == IDENTITY:
        r, c = dims(op.shape, m, n)
        return 0, r * c * itemsize, False
    assert op.kind == ALIAS
    return 0, 0, False


def plan_cost(sched: Schedule, m: int, n: int, *, batch: int = 1, dtype: str = "float32",
              backend: str = "torch") -> Cost:
    mach = MACHINES[backend]
    itemsize = ITEMSIZE.get(dtype, 4)
    shapes = sched.shapes()
    matmuls = long_mm = flops = dense = nbytes = ops = 0
    for op, times in sched.flat_ops():
        f, b, sym = op_cost(op, shapes, m, n, itemsize)
        if op.kind == ALIAS:
            continue
        ops += times
        dense += f * times * batch
        flops += int(f * (mach.symmetric_discount if sym else 1.0)) * times * batch
        nbytes += b * times * batch
        if op.kind == MATMUL:
            matmuls += times
            if "L" in (op.shape, shapes[op.a], shapes[op.b]):
                long_mm += times
    secs = flops / mach.flops_per_s + nbytes / mach.bytes_per_s + ops * mach.launch_s
    return Cost(matmuls, long_mm, flops, dense, nbytes, ops, secs)


def _dim_exps(shape_class: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """(m, n) exponents of the rows and the columns of a shape class."""
    return {"S": ((1, 0), (1, 0)), "L": ((1, 0), (0, 1)), "N": ((0, 1), (0, 1))}[shape_class]


def cost_polynomial(sched: Schedule, *, dtype: str = "float32", backend: str = "torch") -> dict[tuple[int, int], float]:
    """Estimated seconds as Σ coef·m^i·n^j, so generated code can pick a plan from the shape at call time."""
    mach = MACHINES[backend]
    itemsize = ITEMSIZE.get(dtype, 4)
    shapes = sched.shapes()
    poly: dict[tuple[int, int], float] = {}

    def add(e: tuple[int, int], c: float) -> None:
        poly[e] = poly.get(e, 0.0) + c

    def size(sc: str) -> tuple[int, int]:
        (a, b), (c, d) = _dim_exps(sc)
        return (a + c, b + d)

    for op, times in sched.flat_ops():
        if op.kind == ALIAS:
            continue
        add((0, 0), times * mach.launch_s)
        out = size(op.shape)
        if op.kind == MATMUL:
            inner = _dim_exps(shapes[op.a])[1]
            disc = mach.symmetric_discount if op.symmetric else 1.0
            add((out[0] + inner[0], out[1] + inner[1]), times * 2 * disc / mach.flops_per_s)
            for x in (op.a, op.b) + ((op.c,) if op.c else ()):
                add(size(shapes[x]), times * itemsize / mach.bytes_per_s)
            add(out, times * itemsize / mach.bytes_per_s)
        elif op.kind == LINCOMB:
            add(out, times * (2 * len(op.terms) / mach.flops_per_s
                              + (len(op.terms) + 1) * itemsize / mach.bytes_per_s))
        else:
            add(out, times * itemsize / mach.bytes_per_s)
    return poly
