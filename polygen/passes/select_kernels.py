"""Write onto every product how the backends run it (pystencils' SelectFunctions: decide once, print many).

Rule: a product is ``mirrored`` when passes.symmetry.half_tile_ops finds its computed result symmetric to
rounding error; torch blocks the mirrored products of rectangular inputs (``torch_blocked``), in 16-bit dtypes
only the Gram products of the long side (``torch_blocked_16``, passes.symmetry.block_triangle_ops); adjacent
plain products sharing a left factor run as a ``pair`` (passes.fuse_pairs). The cost model and both emitters
read these fields and decide nothing themselves. Precondition: the schedule is complete (nothing is added
after this pass); the pass is idempotent, since no decision reads the field it writes.
"""

from __future__ import annotations

from dataclasses import replace

from polygen.ir.schedule import Kernel, Loop, MatMul, Op, Schedule
from polygen.passes.fuse_pairs import paired_products
from polygen.passes.symmetry import block_triangle_ops, half_tile_ops

__all__ = ["select_kernels"]


def select_kernels(sched: Schedule) -> Schedule:
    """``sched`` with every product's :class:`Kernel` filled in."""
    half = half_tile_ops(sched)
    blocked = block_triangle_ops(sched, "float32")
    blocked16 = block_triangle_ops(sched, "bfloat16")
    pairs = paired_products(sched)
    role = {first: "first" for first, _ in pairs} | {second: "second" for _, second in pairs}

    def choose(pos: tuple[int, int], op: Op) -> Op:
        if not isinstance(op, MatMul):
            return op
        return replace(op, kernel=Kernel(mirrored=pos in half, torch_blocked=pos in blocked,
                                         torch_blocked_16=pos in blocked16, pair=role.get(pos, "")))

    blocks = tuple(replace(blk, body=tuple(choose((i, j), op) for j, op in enumerate(blk.body)))
                   if isinstance(blk, Loop) else choose((i, -1), blk) for i, blk in enumerate(sched.blocks))
    return replace(sched, blocks=blocks)
