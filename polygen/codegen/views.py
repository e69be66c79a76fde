"""What both emitters show their templates: one view per op (the torch form, which the Triton module also
uses for ops without a kernel), the module's spec fields, and the plan table. Every printed value is encoded
here (env's filters): a spec is data all the way to the emitted source."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from polygen.codegen.env import Code, comment, docstring, ident, provenance_header, py, scalar
from polygen.cost.model import cost_polynomial
from polygen.errors import ScheduleError
from polygen.ir.names import may_bind
from polygen.ir.schedule import (
    Alias,
    Fit,
    Identity,
    LinComb,
    Loop,
    MatMul,
    Op,
    Ref,
    Scalar,
    Schedule,
    Sketch,
    contracts_long,
)
from polygen.passes.pipeline import Stages
from polygen.runtime.compiler_key import compiler_key

TARGET_DOC = {
    "polar": "The polar factor U Vᵀ (approximately, per the spec's map)",
    "power": "The fractional power U S^p Vᵀ, rescaled as the spec says,",
    "inverse_root": "The inverse root A^(-1/r) of a symmetric positive definite A",
    "sqrt": "The square root A^(1/2) of a symmetric positive definite A",
}


def fmt(v: Scalar) -> Code:
    return scalar(v)


def runtime_scalars(sched: Schedule) -> set[str]:
    """Names of the fitted values a plan computes (run-time scalars, (batch, 1, 1) tensors)."""
    return {op.out for op, _ in sched.flat_ops() if isinstance(op, Fit)}


def _runtime_gamma(gamma: Scalar, runtime: set[str]) -> bool:
    return isinstance(gamma, Ref) and gamma.name in runtime


def torch_op_view(op: Op, runtime: set[str], shapes: dict[str, str] | None = None) -> dict:
    """What templates/torch/ops.py.jinja needs of one op. A product's Kernel says whether torch computes it as
    a mirrored block triangle (in 16-bit dtypes too: ``sym16``); run-time code applies the dtype rule, since
    one plan function serves several dtypes. A product summing over the long side (``long_sum``) goes through
    torch_ops.long_side, which sums it over ranks when the long side is sharded."""
    view: dict = {"kind": op.kind, "out": ident(op.out), "note": comment(op.note)}
    match op:
        case MatMul():
            view |= {"long_sum": shapes is not None and contracts_long(op, shapes),
                     "sym": op.kernel.torch_blocked, "sym16": op.kernel.torch_blocked_16, "a": ident(op.a),
                     "b": ident(op.b), "tb": op.tb, "c": ident(op.c) if op.c else "", "alpha": fmt(op.alpha),
                     "beta": fmt(op.beta), "gamma": fmt(op.gamma),
                     "gamma_runtime": _runtime_gamma(op.gamma, runtime)}
        case LinComb():
            view |= {"terms": [(fmt(k), ident(m)) for k, m in op.terms], "gamma": fmt(op.gamma),
                     "gamma_runtime": _runtime_gamma(op.gamma, runtime)}
        case Identity():
            view |= {"gamma": fmt(op.gamma)}
        case Sketch():
            view |= {"a": ident(op.a), "rows": op.rows, "scale": py(1.0 / op.rows ** 0.5)}
        case Fit():
            view |= {"args": [ident(a) for a in op.args], "lo": py(op.lo), "hi": py(op.hi),
                     "data": py(tuple(tuple(float(v) for v in row) for row in op.data))}
        case Alias():
            view |= {"a": ident(op.a)}
    return view


def check_bindings(sched: Schedule, spec: str) -> None:
    """Every name the schedule binds is the compiler's temporary or a spec symbol's code name (ir/names.py), never
    a name the templates bind or read: the last check before a plan function is printed."""
    for blk in sched.blocks:
        names = [op.out for op in (blk.body if isinstance(blk, Loop) else (blk,))]
        names += list(blk.params) if isinstance(blk, Loop) else []
        for name in names:
            if not may_bind(name, sched.form):
                raise ScheduleError(f"{spec}: the {sched.form} plan binds {name!r}, a name of the generated code's own")


def plan_views(stages: Stages, backend: str, function_view: Callable[[str, Schedule, list[dict]], dict]
               ) -> tuple[list[dict], list[dict], dict[Schedule, str], dict[str, list[dict]]]:
    """What both emitters' modules are made of: one function view per distinct schedule (a schedule shared by
    several dtypes is emitted once), the loop tables they read, each schedule's key, and per dtype the plans
    with their cost polynomials on ``backend``."""
    functions: list[dict] = []
    tables: list[dict] = []
    seen: dict[Schedule, str] = {}
    plans: dict[str, list[dict]] = {}
    for dt, forms in stages.plans.items():
        entries = []
        for form, sched in forms.items():
            if sched not in seen:
                check_bindings(sched, stages.spec.name)
                key = form if form == "direct" else f"{form}_{dt}"
                seen[sched] = key
                functions.append(function_view(key, sched, tables))
            poly = cost_polynomial(sched, dtype=dt, backend=backend)
            poly_src = py(tuple(((int(i), int(j)), float(c)) for (i, j), c in sorted(poly.items())))
            entries.append({"fn": ident(f"_plan_{seen[sched]}"), "poly": poly_src})
        plans[py(dt)] = entries
    return functions, tables, seen, plans


def module_view(stages: Stages, backend: str, about: str, source_label: str | None = None) -> dict[str, object]:
    """What both module templates print of the spec itself, each value encoded: the spec's name as an
    identifier and a literal, its description inside a docstring made of literals, numbers as reprs.
    ``about`` is the emitter's own paragraph under the description."""
    from polygen import __version__

    smap = stages.spec
    out = smap.outputs[0]
    source = source_label or _relative_source(smap.source)
    return {
        "header": provenance_header(smap.name, smap.source_hash, __version__, backend, source, compiler_key(backend)),
        "docstring": docstring(f"{smap.description or smap.name}\n\n{about}\n"),
        "name_literal": py(smap.name), "spec_hash": py(smap.source_hash),
        "version": py(__version__), "target": py(smap.target), "power": py(smap.power), "input_kind": smap.input_kind,
        "input_kind_literal": py(smap.input_kind), "target_doc": Code(TARGET_DOC[smap.target]),
        "norm_literal": py(smap.normalization.norm), "safety": py(smap.normalization.safety),
        "eps": py(smap.normalization.eps), "rescale_literal": py(out.rescale), "exponent": py(out.exponent),
        "finite_dtypes": py(stages.report.finite_dtypes),
    }


def _relative_source(source: str) -> str:
    p = Path(source)
    parts = p.parts
    if "polygen" in parts and "specs" in parts:
        return "/".join(parts[parts.index("specs") - 1:])
    return p.name
