"""Readable listings of schedules (``polygen show --stage schedule``, ``str(plan)``)."""

from __future__ import annotations

from polygen.ir.schedule import Alias, Fit, Identity, LinComb, Loop, MatMul, Op, Ref, Scalar, Schedule, Sketch


def _s(v: Scalar) -> str:
    return str(v) if isinstance(v, Ref) else f"{float(v):.10g}"


def format_op(op: Op) -> str:
    match op:
        case MatMul():
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
        case LinComb():
            expr = " + ".join(f"{_s(k)}·{m}" for k, m in op.terms)
            if op.gamma:
                expr += f" + {_s(op.gamma)}·I"
            return f"{op.out} = {expr}".ljust(48) + f" # elementwise {op.shape}"
        case Identity():
            return f"{op.out} = {_s(op.gamma)}·I"
        case Sketch():
            return f"{op.out} = randn({op.rows} × side of {op.a}) / √{op.rows}".ljust(48) + " # sketch P"
        case Fit():
            polys = "; ".join(" + ".join(f"{c:.6g}·R^{j}" for j, c in enumerate(row) if c) or "0" for row in op.data)
            return (f"{op.out} = argmin over [{op.lo:g}, {op.hi:g}] of ‖Σ {op.out}^i H_i‖² from "
                    f"{', '.join(op.args)}".ljust(48) + f" # fit; H = [{polys}] in R = {op.a}")
        case Alias():
            return f"{op.out} = {op.a}"
    raise ValueError(op.kind)  # pragma: no cover - Op kinds are closed


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
