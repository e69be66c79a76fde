"""Torch emitter: every candidate plan of a spec → one torch.compile-friendly Python module."""

from __future__ import annotations

from polygen.codegen.env import Code, ident, py, render, seal
from polygen.codegen.views import module_view, plan_views, runtime_scalars, torch_op_view
from polygen.ir.schedule import Loop, Schedule, long_side_sums
from polygen.passes.pipeline import Stages


def _function_view(key: str, sched: Schedule, tables: list[dict]) -> dict:
    rt = runtime_scalars(sched)
    shapes = sched.shapes()
    blocks = []
    for blk in sched.blocks:
        if isinstance(blk, Loop):
            if blk.params:
                tname = f"_TABLE_{len(tables)}"
                tables.append({"name": Code(tname), "rows": [[py(float(v)) for v in row] for row in blk.table]})
                header = Code(f"for {', '.join(map(ident, blk.params))} in {tname}:  # {py(blk.label)}")
            else:
                header = Code(f"for _ in range({int(blk.trips)}):  # {py(blk.label)}")
            blocks.append({"loop": True, "header": header, "body": [torch_op_view(op, rt, shapes) for op in blk.body]})
        else:
            blocks.append({"loop": False, "op": torch_op_view(blk, rt, shapes)})
    name = ident(f"_plan_{key}")
    restarts = f", restarts after steps {list(sched.restarts)}" if sched.restarts else ""
    doc = (f"{sched.form} plan: {sched.matmuls} matmuls ({sched.count(touches_long=True)} touch the long "
           f"side){restarts}.")
    return {"name": name, "key": py(key), "blocks": blocks, "output": ident(sched.outputs[0]), "doc": py(doc)}


def emit_torch(stages: Stages, source_label: str | None = None) -> str:
    functions, tables, seen, plans = plan_views(stages, "torch", _function_view)
    name = stages.spec.name
    about = (f'Generated from the spec "{name}" by polygen: one function per plan; `apply` normalizes the input,\n'
             "transposes tall matrices, picks the cheapest plan for the shape and dtype, and rescales the output.")
    return seal(render(
        "torch/module.py.jinja", **module_view(stages, "torch", about, source_label),
        matmul_counts=py({seen[s]: s.matmuls for s in seen}), tables=tables, functions=functions, plans=plans,
        long_side_sums=py({seen[s]: long_side_sums(s) for s in seen}),
    ))
