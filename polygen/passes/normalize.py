"""normalize: inline scalar-multiple lets and peel steps whose variables are still known constants.

``u = x/1.01`` costs nothing once substituted (it scales coefficients); ``z = I`` at the start of the
coupled square root makes its first ``Z·Y`` free. Both are rewrites of the spectral IR, so the scheduler
never sees them.
"""

from __future__ import annotations

from dataclasses import replace

from polygen.ir.poly import Poly
from polygen.ir.spectral import Let, SpectralMap, Step


def _is_scaled_symbol(p: Poly) -> bool:
    return len(p.terms) == 1 and len(p.terms[0][0]) == 1 and p.terms[0][0][0][1] == 1


def inline_scalar_lets(step: Step) -> Step:
    subs: dict[str, Poly] = {}
    lets = []
    for let in step.lets:
        expr = let.expr.subs(subs)
        if _is_scaled_symbol(expr) or expr.is_constant():
            subs[let.name] = expr
        else:
            lets.append(Let(let.name, expr))
    updates = tuple((v, p.subs(subs)) for v, p in step.updates)
    return replace(step, lets=tuple(lets), updates=updates)


def substitute_constants(step: Step, known: dict[str, float]) -> Step:
    sub = {k: Poly.const(v) for k, v in known.items()}
    lets = []
    for let in step.lets:
        expr = let.expr.subs(sub)
        if expr.is_constant():
            sub[let.name] = expr
        else:
            lets.append(Let(let.name, expr))
    return replace(step, lets=tuple(lets), updates=tuple((v, p.subs(sub)) for v, p in step.updates))


def normalize(smap: SpectralMap) -> SpectralMap:
    steps = [inline_scalar_lets(s) for s in smap.steps]
    known = {v.name: v.init.constant() for v in smap.variables if v.init.is_constant()}
    out: list[Step] = []
    for step in steps:
        if not known:
            out.append(step)
            continue
        first = substitute_constants(replace(step, repeat=1), known)
        out.append(first)
        for var, poly in first.updates:
            if poly.is_constant():
                known[var] = poly.constant()
            else:
                known.pop(var, None)
        if step.repeat > 1:
            steps_left = replace(step, repeat=step.repeat - 1)
            if known:
                # still constant after a full step (rare): keep peeling one at a time
                for _ in range(step.repeat - 1):
                    s = substitute_constants(replace(step, repeat=1), known)
                    out.append(s)
                    for var, poly in s.updates:
                        if poly.is_constant():
                            known[var] = poly.constant()
                        else:
                            known.pop(var, None)
            else:
                out.append(steps_left)
    # drop identity updates (v ← v)
    out = [replace(s, updates=tuple((v, p) for v, p in s.updates if p != Poly.sym(v))) for s in out]
    return replace(smap, steps=tuple(out))
