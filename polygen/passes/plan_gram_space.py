"""plan_gram_space: iterate on the small Gram matrix and touch the long side only at the ends.

With X_t = Q_t X₀ and R_t = X_t X_tᵀ, a step x ← x·h(x²) becomes H = h(R), Q ← HQ, R ← HRH; finally
X = QX₀. Every op but the first Gram product and the last QX₀ is m×m. A restart (X₀ ← QX₀, R ← X₀X₀ᵀ,
Q ← I) bounds the growth of Q, which is what limits this form in bf16 (Dao-AILab gram-newton-schulz).
"""

from __future__ import annotations

from polygen.errors import ScheduleError
from polygen.ir.names import GRAM_Q as Q
from polygen.ir.names import GRAM_R as R
from polygen.ir.names import GRAM_X as X
from polygen.ir.names import INPUT
from polygen.ir.poly import Poly
from polygen.ir.schedule import Schedule
from polygen.ir.spectral import RECTANGULAR, SpectralMap
from polygen.passes.builder import Builder
from polygen.passes.evaluate_poly import eval_sym
from polygen.passes.realize import Scope, carriers, gram_symbol, to_gram_poly
from polygen.passes.roll_loops import Region, roll_loops


def gram_space_applicable(smap: SpectralMap) -> bool:
    """One rectangular variable started at the input, updated by x·h(x²) every step."""
    if smap.input_kind != RECTANGULAR or len(smap.variables) != 1:
        return False
    v = smap.variables[0]
    if v.kind != RECTANGULAR or v.init != Poly.sym(smap.input_symbol):
        return False
    for step in smap.steps:
        if step.fit is not None:  # fitted steps sketch the residual of X itself: direct form only
            return False
        if [name for name, _ in step.updates] != [v.name]:
            return False
        for let in step.lets:
            if any(sum(e for s, e in m if s == v.name) % 2 for m, _ in let.expr.terms):
                return False
    return True


def plan_gram_space(smap: SpectralMap, restarts: tuple[int, ...] = (), method: str = "auto") -> Schedule:
    """The Gram-space plan with restarts after the given (0-based) step instances."""
    if not gram_space_applicable(smap):
        raise ScheduleError(f"{smap.name}: the Gram-space form needs one rectangular variable x with x·h(x²) steps")
    x = smap.variables[0].name  # the spec symbol: never in the code (X, R, Q are ours)
    shapes: dict[str, str] = {INPUT: "L"}
    init = Builder(shapes, prefix="i")
    init.alias(INPUT, out=X)
    init.matmul(X, X, tb=True, out=R, note="R = XXᵀ")
    instances = [step for step in smap.steps for _ in range(step.repeat)]
    total = len(instances)
    regions: list[Region] = []
    fresh = True
    for t, step in enumerate(instances):
        b = Builder(shapes, prefix="t")
        scope = Scope({gram_symbol(x, x): R}, {}, frozenset(), b, b, {}, method=method)
        rect = {x}
        for let in step.lets:
            scope.names[let.name] = b.pin(b.materialize(eval_sym(scope.symenv(), to_gram_poly(let.expr, rect))))
        update = step.updates[0][1]
        hs = carriers(update, rect)
        if set(hs) != {x}:
            raise ScheduleError(f"{smap.name}: step {step.label} is not of the form x·h(x²)")
        h = b.materialize(eval_sym(scope.symenv(), hs[x]))
        if fresh:
            b.alias(h, out=Q)
        else:
            b.matmul(h, Q, out=Q, note="Q ← HQ")
        fresh = False
        if t == total - 1:
            pass  # the last step needs Q only
        elif t in restarts:
            b.matmul(Q, X, out=X, note="restart: X ← QX")
            b.matmul(X, X, tb=True, out=R, note="restart: R ← XXᵀ")
            fresh = True
        else:
            hr = b.matmul(h, R)
            b.matmul(hr, h, out=R, note="R ← HRH")
        regions.append(Region(tuple(b.ops), step.label))
    fin = Builder(shapes, prefix="o")
    fin.matmul(Q, X, out=X, note="X = QX₀")
    blocks = tuple(init.ops) + roll_loops(regions) + tuple(fin.ops)
    return Schedule(form="gram", blocks=blocks, outputs=(X,), input_shape="L", restarts=tuple(sorted(restarts)))
