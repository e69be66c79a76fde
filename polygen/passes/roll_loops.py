"""roll_loops: consecutive step instances with the same op structure become one loop over a table.

The emitted code then reads ``for a, b, c in TABLE:`` (unrolled again by torch.compile), instead of eight
copies of the same three lines. Scalars that are equal in every row stay literals.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from polygen.ir.schedule import Block, Loop, Op

_SCALAR_FIELDS = ("alpha", "beta", "gamma")


@dataclass(frozen=True)
class Region:
    ops: tuple[Op, ...]
    label: str = ""


def _slots(op: Op) -> list:
    """Every scalar of an op: alpha, beta, gamma, then the lincomb coefficients."""
    return [op.alpha, op.beta, op.gamma] + [k for k, _ in op.terms]


def _scalars(op: Op) -> list[float]:
    """The rollable (numeric) scalars; strings (run-time expressions) belong to the op's structure."""
    return [float(v) for v in _slots(op) if not isinstance(v, str)]


def _shape_key(op: Op) -> tuple:
    d = {f.name: getattr(op, f.name) for f in fields(op) if f.name not in _SCALAR_FIELDS + ("terms", "note")}
    structural = tuple(v if isinstance(v, str) else (v == 0.0) for v in _slots(op))
    return (tuple(sorted(d.items())), tuple(m for _, m in op.terms), structural)


def _key(region: Region) -> tuple:
    return tuple(_shape_key(op) for op in region.ops)


def _with_scalars(op: Op, vals: list, start: int) -> tuple[Op, int]:
    slots = _slots(op)
    new = []
    for v in slots:
        if isinstance(v, str):
            new.append(v)
        else:
            new.append(vals[start])
            start += 1
    terms = tuple((k, m) for k, (_, m) in zip(new[3:], op.terms))
    return replace(op, alpha=new[0], beta=new[1], gamma=new[2], terms=terms), start


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
            names = {k: f"c{n}" for n, k in enumerate(varying)}
            template = [names.get(k, rows[0][k]) for k in range(len(rows[0]))]
            body, pos = [], 0
            for op in group[0].ops:
                new, pos = _with_scalars(op, template, pos)
                body.append(new)
            table = tuple(tuple(row[k] for k in varying) for row in rows)
            labels = sorted({r.label for r in group})
            out.append(Loop(params=tuple(names.values()), table=table, body=tuple(body), label=", ".join(labels)))
        i = j
    return tuple(out)
