"""lower_direct: one step after another on the matrices themselves (Horner form per step).

For a quintic polar step this is A = XXᵀ, B = bA + cA², X⁺ = aX + BX: three matmuls, two of them on the
long side, every scalar in an epilogue.
"""

from __future__ import annotations

from polygen.ir.names import INPUT, Namer
from polygen.ir.poly import Poly
from polygen.ir.schedule import Op, Schedule
from polygen.ir.spectral import RECTANGULAR, SpectralMap, Step
from polygen.passes.builder import Builder
from polygen.passes.eliminate_dead import eliminate_dead
from polygen.passes.normalize import substitute_constants
from polygen.passes.realize import Scope, realize_even, realize_odd
from polygen.passes.roll_loops import Region, roll_loops


class DirectLowering:
    def __init__(self, smap: SpectralMap, method: str = "auto"):
        self.smap = smap
        self.method = method
        self.rect_input = smap.input_kind == RECTANGULAR
        self.square = "S" if self.rect_input else "N"
        self.shapes: dict[str, str] = {INPUT: "L" if self.rect_input else "N"}
        self.kinds = {v.name: ("L" if v.kind == RECTANGULAR else self.square) for v in smap.variables}
        self.rect = {v for v, k in self.kinds.items() if k == "L"}
        self.invariant = smap.invariant_variables()
        self.prologue = Builder(self.shapes, prefix="h", square=self.square)
        self.hoist_memo: dict = {}
        self.names: dict[str, str] = {}  # variable -> its matrix's code name (self.namer's)
        self.namer = Namer(smap.name)  # the one way a spec symbol becomes a name in generated code
        self.consts: dict[str, float] = {}
        self.sketch_rows = 0

    def init_region(self) -> list[Op]:
        b = Builder(self.shapes, prefix="i", square=self.square)
        g = self.smap.input_symbol
        for v in self.smap.variables:
            if v.init.is_constant():
                self.consts[v.name] = v.init.constant()
                continue
            scope = Scope({g: INPUT}, {g: self.shapes[INPUT]}, frozenset(), b, b, {})
            code = self.namer.matrix(v.name)
            if v.init == Poly.sym(g):
                b.alias(INPUT, out=code)
            elif self.kinds[v.name] == "L":
                realize_odd(scope, v.init, {g}, out=code)
            else:
                b.materialize(realize_even(scope, v.init, {g} if self.rect_input else set()), out=code)
            self.names[v.name] = code
        return b.ops

    def step_region(self, step: Step) -> list[Op]:
        b = Builder(self.shapes, prefix="t", square=self.square)
        step = substitute_constants(step, self.consts)
        scope = Scope(dict(self.names), dict(self.kinds), self.invariant, b, self.prologue, self.hoist_memo,
                      method=self.method)
        rect = set(self.rect)
        fitted = False
        for let in step.lets:
            if step.fit is not None and not fitted and step.fit.param in let.expr.symbols:
                self.fit_region(step, scope)
                fitted = True
            scope.symenv().order = step.order_of(let.name)
            odd = any(sum(e for s, e in m if s in rect) % 2 for m, _ in let.expr.terms)
            if odd:
                scope.names[let.name] = b.pin(realize_odd(scope, let.expr, rect))
                rect.add(let.name)
            else:
                scope.names[let.name] = b.pin(b.materialize(realize_even(scope, let.expr, rect)))
        if step.fit is not None and not fitted:
            self.fit_region(step, scope)
        pending: list[tuple[str, str]] = []
        for i, (var, poly) in enumerate(step.updates):
            if poly.is_constant():
                self.consts[var] = poly.constant()
                self.names.pop(var, None)
                continue
            scope.symenv().order = step.order_of(var)
            later = any(var in p.symbols for _, p in step.updates[i + 1:])
            out = "" if later else self.namer.matrix(var)
            if var in rect:
                name = realize_odd(scope, poly, rect, out=out)
            else:
                name = b.materialize(realize_even(scope, poly, rect), out=out)
            pending.append((var, name))
        for var, name in pending:
            if name != self.namer.matrix(var):
                b.alias(name, out=self.namer.matrix(var))
            self.names[var] = self.namer.matrix(var)
            self.consts.pop(var, None)
        return b.ops

    def fit_region(self, step: Step, scope: Scope) -> None:
        """Sketched powers S·R^j (or R^j when exact) and the on-device fit of the step's parameter."""
        from polygen.passes.evaluate_poly import monomial_matrix

        fit = step.fit
        assert fit is not None
        b = scope.builder
        res = scope.names[fit.residual]
        deg = fit.degree
        if fit.sketch:
            key = ("sketch", self.shapes[res], fit.sketch)
            if key not in self.hoist_memo:  # one sketch per call, shared by every step
                self.hoist_memo[key] = self.prologue.sketch(INPUT, fit.sketch)
            self.sketch_rows = fit.sketch
            powers = [self.hoist_memo[key]]
            for _ in range(deg):
                powers.append(b.matmul(powers[-1], res, note="sketched power S·R^j"))
        else:
            env = scope.symenv()
            powers = [b.identity(1.0)] + [monomial_matrix(env, ((fit.residual, j),)) for j in range(1, deg + 1)]
        data = tuple(tuple((c.univariate(fit.residual) or {}).get(j, 0.0) for j in range(deg + 1))
                     for c in fit.coeffs)
        scope.runtime = scope.runtime | {fit.param: b.fit(self.namer.scalar(fit.param), res, powers, data, fit.lo,
                                                          fit.hi)}

    def output_region(self) -> tuple[list[Op], tuple[str, ...]]:
        b = Builder(self.shapes, prefix="o", square=self.square)
        outs = []
        for o in self.smap.outputs:
            if o.var in self.consts:
                outs.append(b.identity(self.consts[o.var], out=self.namer.matrix(o.var)))
            else:
                outs.append(self.names[o.var])
        return b.ops, tuple(outs)


def lower_direct(smap: SpectralMap, method: str = "auto") -> Schedule:
    """The direct plan (``smap`` already normalized)."""
    low = DirectLowering(smap, method=method)
    init_ops = low.init_region()
    regions: list[Region] = []
    for step in smap.steps:
        for _ in range(step.repeat):
            regions.append(Region(tuple(low.step_region(step)), step.label))
    out_ops, outs = low.output_region()
    regions = eliminate_dead(regions, out_ops, outs)
    blocks = tuple(init_ops) + tuple(low.prologue.ops) + roll_loops(regions) + tuple(out_ops)
    return Schedule(form="direct", blocks=blocks, outputs=outs, input_shape=low.shapes[INPUT],
                    sketch_rows=low.sketch_rows)
