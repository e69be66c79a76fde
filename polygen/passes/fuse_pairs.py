"""Which adjacent products can share one launch: a pure function of the schedule.

A Gram-space step H = p(R); Q ← HQ; T ← HR; R ← TH has data dependencies that allow three launches, not four:
Q ← HQ and T ← HR share their left factor and neither reads the other's result. Backends with a paired
kernel (Triton) run such products together; the cost model charges them one launch. Only plain products
(no addend, α = 1, no +γI) of the same shape pair, so the paired kernel needs no epilogue.
"""

from __future__ import annotations

from polygen.ir.schedule import Loop, MatMul, Op, Ref, Schedule

__all__ = ["paired_products"]


def _plain_product(op: Op) -> bool:
    return (isinstance(op, MatMul) and not op.c and not isinstance(op.alpha, Ref) and float(op.alpha) == 1.0
            and not isinstance(op.gamma, Ref) and float(op.gamma) == 0.0)


def _pairable(first: Op, second: Op) -> bool:
    return (_plain_product(first) and _plain_product(second) and isinstance(first, MatMul)
            and isinstance(second, MatMul) and first.a == second.a
            and first.shape == second.shape and first.out != second.out
            and first.out not in second.matrix_reads)


def paired_products(sched: Schedule) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Positions (block, index in a loop body or -1) of the products that run as pairs, first then second.

    Pairs are adjacent ops of one loop body or adjacent top-level ops; each op is in at most one pair.
    """
    pairs: list[tuple[tuple[int, int], tuple[int, int]]] = []
    for i, blk in enumerate(sched.blocks):
        if isinstance(blk, Loop):
            j = 0
            while j + 1 < len(blk.body):
                if _pairable(blk.body[j], blk.body[j + 1]):
                    pairs.append(((i, j), (i, j + 1)))
                    j += 2
                else:
                    j += 1
    i = 0
    while i + 1 < len(sched.blocks):
        a, b = sched.blocks[i], sched.blocks[i + 1]
        if not isinstance(a, Loop) and not isinstance(b, Loop) and _pairable(a, b):
            pairs.append(((i, -1), (i + 1, -1)))
            i += 2
        else:
            i += 1
    return pairs
