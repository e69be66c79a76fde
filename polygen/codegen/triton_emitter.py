"""Triton emitter: every candidate plan of a spec → one Python module of launches of Triton kernels.

The kernels do not vary per spec: they live once in polygen/runtime/triton_ops.py. Each schedule op becomes
a call to one of their launchers: the products whose Kernel (passes.select_kernels) is ``mirrored`` go to
the triangular-tile kernel, pairs to the paired kernel, the other products to the GEMM with the fused
αAB + βC + γI epilogue, linear combinations to the elementwise kernel; ops without a kernel (sketches,
fitted parameters) reuse the torch backend's code. Scalars that are plain numbers are baked in as
tl.constexpr; loop-table scalars are read from a device tensor (one table row per trip) and run-time ones
(fitted values) from a (batch, k) tensor, so the generated code never syncs to the host.
"""

from __future__ import annotations

from collections.abc import Sequence

from polygen.codegen.env import Code, comment, ident, py, render, seal
from polygen.codegen.views import fmt, module_view, plan_views, runtime_scalars, torch_op_view
from polygen.ir.schedule import Alias, Identity, LinComb, Loop, MatMul, Op, Ref, Scalar, Schedule
from polygen.passes.pipeline import Stages

_DEFAULTS = {"alpha": 1.0, "beta": 0.0, "gamma": 0.0}


def _dynamic(values: list[Scalar], params: tuple[str, ...]) -> tuple[str, list[int]]:
    """Where the run-time scalars of one op are read on the device: (coef expression or "", index into coef
    per value, -1 for numbers). Scalars that are all bare loop parameters index the loop's table row `coef`
    directly; any other (a fitted value, ``(1.0 + 0.5*alpha)``) sends them all through ``_scalars``, which
    evaluates them with the loop parameters bound by name."""
    dyn = [v for v in values if isinstance(v, Ref)]
    if not dyn:
        return "", [-1] * len(values)
    if all(v.is_name and v.name in params for v in dyn):
        return "coef", [params.index(v.name) if isinstance(v, Ref) else -1 for v in values]
    idx, i = [], 0
    for v in values:
        idx.append(i if isinstance(v, Ref) else -1)
        i += isinstance(v, Ref)
    return f"_scalars(G, {', '.join(map(fmt, dyn))})", idx


def _scalar_kwargs(names: tuple[str, ...], values: Sequence[Scalar], params: tuple[str, ...],
                   extra: Sequence[Scalar] = ()) -> tuple[list[tuple[Code, Code]], list[int]]:
    """Keyword arguments for the epilogue scalars ``names`` = ``values`` of one op (numbers unless default,
    else indices into coef); ``extra`` scalars (lincomb coefficients) share the coef tensor, their indices
    are returned."""
    values = list(values) + list(extra)
    coef, idx = _dynamic(values, params)
    kw: list[tuple[Code, Code]] = [(Code("coef"), Code(coef))] if coef else []
    for s, v, i in zip(names, values, idx):
        if i >= 0:
            kw.append((Code(f"{s}_idx"), Code(str(i))))
        elif not isinstance(v, Ref) and float(v) != _DEFAULTS[s]:
            kw.append((Code(s), fmt(v)))
    return kw, idx[len(names):]


def _op_view(op: Op, params: tuple[str, ...], runtime: set[str]) -> dict:
    """The template's view of one op; ``by_name`` says it names loop parameters in Python expressions."""
    view: dict = {"kind": op.kind, "out": ident(op.out), "note": comment(op.note)}
    fast = False
    match op:
        case MatMul():
            kw, _ = _scalar_kwargs(("alpha", "beta", "gamma"), (op.alpha, op.beta, op.gamma), params)
            view |= {"fn": Code("sym_matmul" if op.kernel.mirrored else "matmul"), "a": ident(op.a),
                     "b": _operand(op.b, op.tb), "kwargs": ([(Code("c"), ident(op.c))] if op.c else []) + kw}
            fast = all(v == "coef" for k, v in kw if k == "coef")
        case LinComb():
            ks = [k for k, _ in op.terms]
            kw, k_idx = _scalar_kwargs(("gamma",), (op.gamma,), params, ks)
            view |= {"kwargs": kw, "terms": [ident(m) for _, m in op.terms], "k_idx": [int(i) for i in k_idx],
                     "ks": [Code("0.0") if isinstance(k, Ref) else fmt(k) for k in ks]}
            fast = all(v == "coef" for k, v in kw if k == "coef")
        case Identity():
            view |= {"size": Code("G.size(-1)" if op.shape == "N" else "G.size(-2)"), "gamma": fmt(op.gamma)}
        case Alias():
            view |= {"a": ident(op.a)}
        case _:  # no Triton kernel for this op (sketch, fit): the torch backend's code for it
            view["torch"] = torch_op_view(op, runtime)
    view["by_name"] = bool(set(op.scalar_names) & set(params)) and not fast
    return view


def _pair_view(first: MatMul, second: Op) -> dict:
    """Two products with one left factor and no epilogue, in one launch of the paired kernel."""
    assert isinstance(second, MatMul)
    half = (first.kernel.mirrored, second.kernel.mirrored)
    b = [_operand(op.b, op.tb) for op in (first, second)]
    note = "; ".join(n for n in (first.note, second.note) if n)
    return {"kind": "pair", "out": ident(first.out), "out2": ident(second.out), "a": ident(first.a), "b": b[0],
            "b2": b[1], "mirror": [py(h) for h in half],
            "note": comment(f"one launch: {note}" if note else "one launch"), "by_name": False}


def _operand(name: str, transposed: bool) -> Code:
    return Code(f"{ident(name)}.mT" if transposed else ident(name))


def _function_view(key: str, sched: Schedule, tables: list[dict]) -> dict:
    runtime = runtime_scalars(sched)

    def views(ops: list[Op], params: tuple[str, ...]) -> list[dict]:
        """One view per op, or per pair: a product whose Kernel is the first of a pair takes the next along."""
        out = []
        for j, op in enumerate(ops):
            pair = op.kernel.pair if isinstance(op, MatMul) else ""
            if pair == "second":
                continue
            if pair == "first":
                assert isinstance(op, MatMul)
                out.append(_pair_view(op, ops[j + 1]))
            else:
                out.append(_op_view(op, params, runtime))
        return out

    blocks: list[dict] = []
    top: list[Op] = []  # a run of top-level ops between loops: pairs form within it

    def flush() -> None:
        blocks.extend({"loop": False, "op": v} for v in views(top, ()))
        top.clear()

    for blk in sched.blocks:
        if isinstance(blk, Loop):
            flush()
            table = bind = Code("")
            body = views(list(blk.body), blk.params)
            if blk.params:
                table = Code(f"_TABLE_{len(tables)}")
                tables.append({"name": table, "rows": [[py(float(v)) for v in row] for row in blk.table]})
                if any(v["by_name"] for v in body):
                    names = ", ".join(map(ident, blk.params))
                    bind = Code(names + ("," if len(blk.params) == 1 else "") + " = coef.unbind(0)")
            blocks.append({"loop": True, "table": table, "bind": bind, "trips": int(blk.trips),
                           "label": py(blk.label), "body": body})
        else:
            top.append(blk)
    flush()
    restarts = f", restarts after steps {list(sched.restarts)}" if sched.restarts else ""
    products = [(op, times) for _, op, times in sched.positions() if isinstance(op, MatMul)]
    sym = sum(times for op, times in products if op.kernel.mirrored)
    paired = sum(times for op, times in products if op.kernel.pair == "first")
    doc = (f"{sched.form} plan: {sched.matmuls} matmuls ({sched.count(touches_long=True)} touch the long "
           f"side, {sym} symmetric on half the tiles, {paired} pairs sharing a launch){restarts}.")
    return {"name": ident(f"_plan_{key}"), "key": py(key), "blocks": blocks, "output": ident(sched.outputs[0]),
            "doc": py(doc)}


def emit_triton(stages: Stages, source_label: str | None = None) -> str:
    smap = stages.spec
    functions, tables, seen, plans = plan_views(stages, "triton", _function_view)
    about = (f'Generated from the spec "{smap.name}" by polygen (Triton backend): one function per plan, each a '
             "sequence of\n"
             "launches of the kernels in polygen.runtime.triton_ops (torch.library triton_ops, so "
             "torch.compile(fullgraph=True)\n"
             "traces through them). `apply` normalizes the input, transposes tall matrices, picks the cheapest "
             "plan for the\n"
             "shape and dtype, and rescales the output. Runs on CUDA tensors, or on CPU tensors under "
             "TRITON_INTERPRET=1\n"
             "(slow; for tests).")
    return seal(render(
        "triton/module.py.jinja", **module_view(stages, "triton", about, source_label),
        matmul_counts=py({seen[s]: s.matmuls for s in seen}), tables=tables, functions=functions, plans=plans,
    ))
