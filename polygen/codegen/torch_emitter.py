"""Torch emitter: every candidate plan of a spec → one torch.compile-friendly Python module."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from polygen.codegen.env import Code, comment, docstring, ident, provenance_header, py, render, scalar, seal
from polygen.cost.model import cost_polynomial
from polygen.ir.schedule import FIT, Loop, Op, Schedule
from polygen.passes.pipeline import Stages
from polygen.runtime.compiler_key import compiler_key

TARGET_DOC = {
    "polar": "The polar factor U Vᵀ (approximately, per the spec's map)",
    "power": "The fractional power U S^p Vᵀ, rescaled as the spec says,",
    "inverse_root": "The inverse root A^(-1/r) of a symmetric positive definite A",
    "sqrt": "The square root A^(1/2) of a symmetric positive definite A",
}


def fmt(v: float | str) -> Code:
    return scalar(v)


def _op_view(op: Op, runtime: set[str], sym: bool = False, sym16: bool = False) -> dict:
    """What the op templates need of one op, every printed value encoded; ``sym``: computed as a block triangle
    and mirrored (``sym16``: in 16-bit dtypes too)."""
    gamma_rt = isinstance(op.gamma, str) and bool(set(op.scalar_names) & runtime)
    name = lambda v: ident(v) if v else ""  # noqa: E731 - empty operands stay falsy for the templates
    return {
        "sym": sym, "sym16": sym16,
        "kind": op.kind, "out": ident(op.out), "a": name(op.a), "b": name(op.b), "tb": op.tb, "c": name(op.c),
        "alpha": fmt(op.alpha), "beta": fmt(op.beta), "gamma": fmt(op.gamma), "note": comment(op.note),
        "terms": [(fmt(k), ident(m)) for k, m in op.terms], "gamma_runtime": gamma_rt,
        "args": [ident(a) for a in op.args], "data": py(tuple(tuple(float(v) for v in row) for row in op.data)),
        "lo": py(op.lo), "hi": py(op.hi), "rows": op.rows, "scale": py(1.0 / op.rows ** 0.5) if op.rows else "",
    }


def runtime_scalars(sched: Schedule) -> set[str]:
    return {op.out for op, _ in sched.flat_ops() if op.kind == FIT}


def _function_view(key: str, sched: Schedule, tables: list[dict]) -> dict:
    rt = runtime_scalars(sched)

    def view(op: Op, pos: tuple[int, int]) -> dict:
        # runtime.torch_ops.sym_bmm applies the dtype rule at run time: one plan function serves several dtypes
        return _op_view(op, rt, op.kernel.torch_blocked, op.kernel.torch_blocked_16)

    blocks = []
    for i, blk in enumerate(sched.blocks):
        if isinstance(blk, Loop):
            if blk.params:
                tname = f"_TABLE_{len(tables)}"
                tables.append({"name": Code(tname), "rows": [[py(float(v)) for v in row] for row in blk.table]})
                header = Code(f"for {', '.join(map(ident, blk.params))} in {tname}:  # {py(blk.label)}")
            else:
                header = Code(f"for _ in range({int(blk.trips)}):  # {py(blk.label)}")
            blocks.append({"loop": True, "header": header, "body": [view(op, (i, j)) for j, op in enumerate(blk.body)]})
        else:
            blocks.append({"loop": False, "op": view(blk, (i, -1))})
    name = ident(f"_plan_{key}")
    restarts = f", restarts after steps {list(sched.restarts)}" if sched.restarts else ""
    doc = (f"{sched.form} plan: {sched.matmuls} matmuls ({sched.count(touches_long=True)} touch the long "
           f"side){restarts}.")
    return {"name": name, "key": py(key), "blocks": blocks, "output": ident(sched.outputs[0]), "doc": py(doc)}


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
        "header": provenance_header(smap.name, smap.source_hash, __version__, backend, source, compiler_key()),
        "docstring": docstring(f"{smap.description or smap.name}\n\n{about}\n"),
        "name_literal": py(smap.name), "spec_hash": py(smap.source_hash),
        "version": py(__version__), "target": py(smap.target), "power": py(smap.power), "input_kind": smap.input_kind,
        "input_kind_literal": py(smap.input_kind), "target_doc": Code(TARGET_DOC[smap.target]),
        "norm_literal": py(smap.normalization.norm), "safety": py(smap.normalization.safety),
        "eps": py(smap.normalization.eps), "rescale_literal": py(out.rescale), "exponent": py(out.exponent),
    }


def emit_torch(stages: Stages, source_label: str | None = None) -> str:
    functions, tables, seen, plans = plan_views(stages, "torch", _function_view)
    name = stages.spec.name
    about = (f'Generated from the spec "{name}" by polygen: one function per plan; `apply` normalizes the input,\n'
             "transposes tall matrices, picks the cheapest plan for the shape and dtype, and rescales the output.")
    return seal(render(
        "torch/module.py.jinja", **module_view(stages, "torch", about, source_label),
        matmul_counts=py({seen[s]: s.matmuls for s in seen}), tables=tables, functions=functions, plans=plans,
    ))


def _relative_source(source: str) -> str:
    p = Path(source)
    parts = p.parts
    if "polygen" in parts and "specs" in parts:
        return "/".join(parts[parts.index("specs") - 1:])
    return p.name


