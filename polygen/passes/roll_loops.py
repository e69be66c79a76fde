"""roll_loops: consecutive step instances with the same op structure become one loop over a table.

The emitted code then reads ``for a, b, c in TABLE:`` (unrolled again by torch.compile), instead of eight
copies of the same three lines. Scalars that are equal in every row stay literals.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from polygen.ir.names import temporary
from polygen.ir.schedule import Block, Loop, Op, Ref

_SCALAR_FIELDS = ("alpha", "beta", "gamma", "terms", "note")  # terms: their coefficients roll, names stay


@dataclass(frozen=True)
class Region:
    ops: tuple[Op, ...]
    label: str = ""


def _scalars(op: Op) -> list[float]:
    """The rollable (numeric) scalars; run-time ones (Ref) belong to the op's structure."""
    return [float(v) for v in op.scalars if not isinstance(v, Ref)]


def _shape_key(op: Op) -> tuple:
    d = {f.name: getattr(op, f.name) for f in fields(op) if f.name not in _SCALAR_FIELDS}
    structural = tuple(v if isinstance(v, Ref) else (v == 0.0) for v in op.scalars)
    names = tuple(m for _, m in getattr(op, "terms", ()))
    return (type(op).__name__, tuple(sorted(d.items())), names, structural)


def _key(region: Region) -> tuple:
    return tuple(_shape_key(op) for op in region.ops)


def _with_scalars(op: Op, vals: list, start: int) -> tuple[Op, int]:
    new = []
    for v in op.scalars:
        if isinstance(v, Ref):
            new.append(v)
        else:
            new.append(vals[start])
            start += 1
    return op.with_scalars(new), start


def roll_loops(regions: list[Region]) -> tuple[Block, ...]:
    out: list[Block] = []
    i = 0
    while i < len(regions):
        j = i + 1
        while j < len(regions) and _key(regions[j]) == _key(regions[i]):
            j += 1
        group = regions[i:j]
        if len(group) == 1:
            out.extend(group[0].ops)
        else:
            rows = [[v for op in r.ops for v in _scalars(op)] for r in group]
            varying = [k for k in range(len(rows[0])) if len({row[k] for row in rows}) > 1]
            names = {k: Ref(temporary("c", n)) for n, k in enumerate(varying)}
            template = [names.get(k, rows[0][k]) for k in range(len(rows[0]))]
            body, pos = [], 0
            for op in group[0].ops:
                new, pos = _with_scalars(op, template, pos)
                body.append(new)
            table = tuple(tuple(row[k] for k in varying) for row in rows)
            labels = sorted({r.label for r in group})
            out.append(Loop(params=tuple(r.name for r in names.values()), table=table, body=tuple(body),
                            label=", ".join(labels)))
        i = j
    return tuple(out)
