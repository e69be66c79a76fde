"""Which symmetric-flagged products may run on half the tiles: a pure function of the schedule.

The cost model (which FLOPs a backend pays) and the Triton emitter (which kernel a product runs on) must agree,
so the decision lives here rather than in either of them.
"""

from __future__ import annotations

from polygen.ir.names import INPUT
from polygen.ir.schedule import Alias, Identity, LinComb, Loop, MatMul, Op, Schedule

__all__ = ["block_triangle_ops", "half_tile_ops", "op_positions"]


def op_positions(sched: Schedule) -> list[tuple[tuple[int, int], Op, int]]:
    """Every op with its position (block, index in a loop body or -1) and how many times it runs."""
    return sched.positions()


class _Sym:
    """Which symmetric-flagged products may run on the half-tile kernel (an emitter policy, see half_tile_ops)."""

    def __init__(self, sched: Schedule):
        self.next_gen = 0
        sym_input = sched.input_shape == "N"
        self.state: dict[str, tuple[bool, int]] = {INPUT: (True, self.fresh()) if sym_input else (False, -1)}

    def fresh(self) -> int:
        self.next_gen += 1
        return self.next_gen

    def exact(self, name: str) -> tuple[bool, int]:
        return self.state.get(name, (False, -1))

    def safe(self, op: Op) -> bool:
        if not isinstance(op, MatMul):
            return False
        if op.tb and op.a == op.b:
            return True  # XXᵀ: entries (i, j) and (j, i) are the same dot product
        names = [op.a, op.b] + ([op.c] if op.c else [])
        states = [self.exact(n) for n in names]
        return all(e for e, _ in states) and len({g for _, g in states}) == 1

    def step(self, op: Op, mirror: bool) -> None:
        """Advance the state past one op; ``mirror``: the op runs on the half-tile kernel."""
        if isinstance(op, Alias):
            self.state[op.out] = self.exact(op.a)
        elif isinstance(op, Identity):
            self.state[op.out] = (True, self.fresh())
        elif isinstance(op, LinComb):
            states = [self.exact(m) for _, m in op.terms]
            gens = {g for _, g in states}
            ok = op.shape in ("S", "N") and all(e for e, _ in states)
            self.state[op.out] = (ok, gens.pop() if ok and len(gens) == 1 else self.fresh())
        elif isinstance(op, MatMul) and mirror:
            if op.tb and op.a == op.b:
                self.state[op.out] = (True, self.fresh())
                return
            gen = self.exact(op.a)[1]
            # a product that advances its own generator (R ← HRH, M ← T²M) starts a new one
            advanced = op.out in self.state and self.exact(op.out) == (True, gen)
            self.state[op.out] = (True, self.fresh() if advanced else gen)
        else:
            self.state[op.out] = (False, -1)


def half_tile_ops(sched: Schedule) -> set[tuple[int, int]]:
    """Positions (block, op within a loop body or -1) of the products that run on the symmetric kernel.

    A ``symmetric`` product is computed as its upper-triangular tiles, each stored twice, when the computed
    product is symmetric to rounding error: XXᵀ, or two exactly symmetric factors that are polynomials of
    the same matrix computed in this step (R², HR and (HR)H with H = p(R); T² and T²M with T = p(M)).
    Values are tracked with the matrix they are a polynomial of; a product that advances its own matrix
    (R ← HRH) starts a new one. Products whose symmetry holds in exact arithmetic only, through commuting
    polynomials across steps (the Gram plans' Q ← HQ, coupled iterations' X ← XT), run on the full GEMM:
    mirroring one triangle would pin that symmetry and drop the commutator error later products need
    (bench/RESULTS.md, "Symmetric products on torch", has the measurement). Loops are iterated until every
    decision holds on every trip.
    """
    chosen = {(i, j) for i, blk in enumerate(sched.blocks)
              for j, op in (enumerate(blk.body) if isinstance(blk, Loop) else [(-1, blk)])
              if op.is_matmul and op.symmetric and op.shape in ("S", "N")}
    while True:
        rejected: set[tuple[int, int]] = set()
        st = _Sym(sched)
        for i, blk in enumerate(sched.blocks):
            body = list(enumerate(blk.body)) if isinstance(blk, Loop) else [(-1, blk)]
            trips = min(blk.trips, 3) if isinstance(blk, Loop) else 1
            for _ in range(trips):
                for j, op in body:
                    mirror = (i, j) in chosen and (i, j) not in rejected and st.safe(op)
                    if (i, j) in chosen and not mirror:
                        rejected.add((i, j))
                    st.step(op, mirror)
        if not rejected:
            return chosen
        chosen -= rejected


def block_triangle_ops(sched: Schedule, dtype: str) -> set[tuple[int, int]]:
    """Positions of the products torch's emitter computes as the upper triangle of k×k blocks and mirrors.

    The same products as :func:`half_tile_ops` (mirroring is safe for exactly these), for rectangular inputs
    only (in the coupled iterations of symmetric inputs mirroring raised the error against eigh past the
    target). In 16-bit dtypes only the Gram products of the long side (XXᵀ, inner dimension n), which the
    emitter runs as 2-D GEMMs per matrix; the measurements behind both rules are in bench/RESULTS.md,
    "Symmetric products on torch". The run-time code applies the dtype rule from the element size, since one
    plan function can serve several dtypes.
    """
    if sched.input_shape == "N":
        return set()
    chosen = half_tile_ops(sched)
    if dtype in ("bfloat16", "float16"):
        shapes = sched.shapes()
        left = {pos: op.a for pos, op, _ in sched.positions() if isinstance(op, MatMul)}
        chosen = {pos for pos in chosen if shapes.get(left[pos]) == "L"}
    return chosen
