"""Readable listings of schedules (``polygen show --stage schedule``, ``str(plan)``)."""

from __future__ import annotations

from polygen.ir.schedule import ALIAS, IDENTITY, LINCOMB, MATMUL, Loop, Op, Scalar, Schedule


def _s(v: Scalar) -> str:
    return v if isinstance(v, str) else f"{float(v):.10g}"


def format_op(op: Op) -> str:
    if op.kind == MATMUL:
        rhs = f"{op.b}ᵀ" if op.tb else op.b
        expr = f"{op.a} @ {rhs}"
        if op.alpha != 1.0:
            expr = f"{_s(op.alpha)}·{expr}"
        if op.c:
            expr += f" + {_s(op.beta)}·{op.c}"
        if op.gamma:
            expr += f" + {_s(op.gamma)}·I"
        tag = " [sym]" if op.symmetric else ""
        body = f"{op.out} = {expr}"
        return f"{body:<48} # matmul {op.shape}{tag}" + (f"  {op.note}" if op.note else "")
    if op.kind == LINCOMB:
        expr = " + ".join(f"{_s(k)}·{m}" for k, m in op.terms)
        if op.gamma:
            expr += f" + {_s(op.gamma)}·I"
        return f"{op.out} = {expr}".ljust(48) + f" # elementwise {op.shape}"
    if op.kind == IDENTITY:
        return f"{op.out} = {_s(op.gamma)}·I"
    assert op.kind == ALIAS
    return f"{op.out} = {op.a}"


def format_schedule(s: Schedule) -> str:
    lines = [f"schedule form={s.form} matmuls={s.matmuls} "
             f"(long-side {s.count(touches_long=True)}, small {s.count(touches_long=False)})"
             + (f" restarts after steps {list(s.restarts)}" if s.restarts else "")]
    for blk in s.blocks:
        if isinstance(blk, Loop):
            lines.append(f"  for ({', '.join(blk.params)}) in {blk.trips} rows:  # {blk.label}"
                         if blk.params else f"  repeat {blk.trips}:  # {blk.label}")
            if blk.params:
                for row in blk.table:
                    lines.append("      # " + ", ".join(f"{v:.10g}" for v in row))
            lines.extend("      " + format_op(op) for op in blk.body)
        else:
            lines.append("  " + format_op(blk))
    lines.append(f"  return {', '.join(s.outputs)}")
    return "\n".join(lines)
