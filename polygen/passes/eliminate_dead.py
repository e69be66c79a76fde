"""eliminate_dead: drop ops whose results nobody reads (the last step's update of a coupled partner).

Runs on straight-line step regions *before* loops are rolled, so liveness is exact: the coupled Newton
root's final M ← T^r·M is never read and costs nothing.
"""

from __future__ import annotations

from dataclasses import replace

from polygen.ir.schedule import Op
from polygen.passes.roll_loops import Region


def eliminate_dead(regions: list[Region], tail: list[Op], outputs: tuple[str, ...]) -> list[Region]:
    live = set(outputs)
    for op in reversed(tail):
        live.discard(op.out)
        live.update(op.reads)
    out: list[Region] = []
    for region in reversed(regions):
        kept: list[Op] = []
        for op in reversed(region.ops):
            if op.out not in live:
                continue
            kept.append(op)
            live.discard(op.out)
            live.update(op.reads)
        out.append(replace(region, ops=tuple(reversed(kept))))
    return list(reversed(out))


