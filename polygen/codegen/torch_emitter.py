"""Torch emitter: every candidate plan of a spec → one torch.compile-friendly Python module."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from polygen.codegen.env import provenance_header, render
from polygen.cost.model import TORCH_SYM_BLOCKS, cost_polynomial
from polygen.ir.schedule import FIT, Loop, Op, Schedule
from polygen.passes.pipeline import Stages
from polygen.passes.symmetry import block_triangle_ops

TARGET_DOC = {
    "polar": "The polar factor U Vᵀ (approximately, per the spec's map)",
    "power": "The fractional power U S^p Vᵀ, rescaled as the spec says,",
    "inverse_root": "The inverse root A^(-1/r) of a symmetric positive definite A",
    "sqrt": "The square root A^(1/2) of a symmetric positive definite A",
}


def fmt(v: float | str) -> str:
    return v if isinstance(v, str) else repr(float(v))


def _op_view(op: Op, runtime: set[str], sym: bool = False, sym16: bool = False) -> dict:
    """What the op templates need of one op; ``sym``: computed as a block triangle and mirrored (``sym16``:
    in 16-bit dtypes too)."""
    gamma_rt = isinstance(op.gamma, str) and bool(set(op.scalar_names) & runtime)
    return {
        "sym": sym, "sym16": sym16,
        "kind": op.kind, "out": op.out, "a": op.a, "b": op.b, "tb": op.tb, "c": op.c,
        "alpha": fmt(op.alpha), "beta": fmt(op.beta), "gamma": fmt(op.gamma), "note": op.note,
        "terms": [(fmt(k), m) for k, m in op.terms], "gamma_runtime": gamma_rt,
        "args": list(op.args), "data": repr(tuple(tuple(float(v) for v in row) for row in op.data)),
        "lo": repr(op.lo), "hi": repr(op.hi), "rows": op.rows, "scale": repr(1.0 / op.rows ** 0.5) if op.rows else "",
    }


def runtime_scalars(sched: Schedule) -> set[str]:
    return {op.out for op, _ in sched.flat_ops() if op.kind == FIT}


def _function_view(key: str, sched: Schedule, tables: list[dict]) -> dict:
    rt = runtime_scalars(sched)
    sym = block_triangle_ops(sched, "float32")  # _sym_bmm applies the dtype rule at run time
    sym16 = block_triangle_ops(sched, "bfloat16")

    def view(op: Op, pos: tuple[int, int]) -> dict:
        return _op_view(op, rt, pos in sym, pos in sym16)

    blocks = []
    for i, blk in enumerate(sched.blocks):
        if isinstance(blk, Loop):
            if blk.params:
                tname = f"_TABLE_{len(tables)}"
                tables.append({"name": tname, "rows": [[repr(float(v)) for v in row] for row in blk.table]})
                header = f"for {', '.join(blk.params)} in {tname}:  # {blk.label}"
            else:
                header = f"for _ in range({blk.trips}):  # {blk.label}"
            blocks.append({"loop": True, "header": header, "body": [view(op, (i, j)) for j, op in enumerate(blk.body)]})
        else:
            blocks.append({"loop": False, "op": view(blk, (i, -1))})
    name = f"_plan_{key}"
    restarts = f", restarts after steps {list(sched.restarts)}" if sched.restarts else ""
    doc = (f"{sched.form} plan: {sched.matmuls} matmuls ({sched.count(touches_long=True)} touch the long "
           f"side){restarts}.")
    return {"name": name, "key": key, "blocks": blocks, "output": sched.outputs[0], "doc": doc}


# Eager CPU runs of a batch go in chunks of about 4 MiB of input (generated `CPU_CHUNK_BYTES`): on the 2-core
# CPU, NS5 on batches of 256x1024 ... 2048x2048 ran fastest with 2-8 MiB chunks, 1.1-1.9x faster than one call
# over the whole batch (bench/chunk_bench.py; bench/RESULTS.md, "CPU batch chunking").
CPU_CHUNK_BYTES = "4 * 2**20"


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
            poly_src = "(" + ", ".join(f"(({i}, {j}), {c!r})" for (i, j), c in sorted(poly.items())) + ",)"
            entries.append({"fn": f"_plan_{seen[sched]}", "poly": poly_src})
        plans[dt] = entries
    return functions, tables, seen, plans


def emit_torch(stages: Stages, source_label: str | None = None) -> str:
    from polygen import __version__

    smap = stages.spec
    functions, tables, seen, plans = plan_views(stages, "torch", _function_view)
    counts = {seen[s]: s.matmuls for s in seen}
    source = source_label or _relative_source(smap.source)
    out = stages.spec.outputs[0]
    return render(
        "torch/module.py.jinja",
        header=provenance_header(smap.name, smap.source_hash, __version__, "torch", source),
        name=smap.name, description=smap.description or smap.name, spec_hash=smap.source_hash,
        version=__version__, target=smap.target, input_kind=smap.input_kind, target_doc=TARGET_DOC[smap.target],
        matmul_counts=repr(counts), tables=tables, functions=functions, plans=plans,
        norm=smap.normalization.norm, safety=repr(smap.normalization.safety), eps=repr(smap.normalization.eps),
        rescale=out.rescale, exponent=repr(out.exponent), cpu_chunk_bytes=CPU_CHUNK_BYTES,
        sym_blocks=TORCH_SYM_BLOCKS, uses_sym=any(block_triangle_ops(s, "float32") for s in seen),
        uses_runtime_scalars=any(runtime_scalars(s) for s in seen), uses_fit=any(runtime_scalars(s) for s in seen),
    )


def _relative_source(source: str) -> str:
    p = Path(source)
    parts = p.parts
    if "polygen" in parts and "specs" in parts:
        return "/".join(parts[parts.index("specs") - 1:])
    return p.name


