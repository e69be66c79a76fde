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


def _scalars(op: Op) -> list[float]:
    vals = [float(getattr(op, f)) for f in _SCALAR_FIELDS]  # type: ignore[arg-type]
    vals += [float(k) for k, _ in op.terms]  # type: ignore[arg-type]
    return vals


def _shape_key(op: Op) -> tuple:
    d = {f.name: getattr(op, f.name) for f in fields(op) if f.name not in _SCALAR_FIELDS + ("terms", "note")}
    return (tuple(sorted(d.items())), tuple(m for _, m in op.terms),
            tuple(getattr(op, f) == 0.0 for f in _SCALAR_FIELDS))


def _key(region: Region) -> tuple:
    return tuple(_shape_key(op) for op in region.ops)


def _with_scalars(op: Op, vals: list, start: int) -> tuple[Op, int]:
    kw = {f: vals[start + i] for i, f in enumerate(_SCALAR_FIELDS)}
    n = len(_SCALAR_FIELDS)
    terms = tuple((vals[start + n + j], m) for j, (_, m) in enumerate(op.terms))
    return replace(op, terms=terms, **kw), start + n + len(op.terms)


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
