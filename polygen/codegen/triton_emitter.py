"""Triton emitter: every candidate plan of a spec → one Python module of Triton kernels and launchers.

Kernel bodies live one per file in templates/triton/ (sym_matmul, matmul_epilogue, lincomb; the fused
epilogue is a shared hook macro), the tile-configuration registry in templates/triton/configs.toml. Each
schedule op becomes a call to a launcher: symmetric products go to the triangular-tile kernel (those whose
computed result is symmetric to rounding error, see half_tile_ops), the other products to the GEMM with the
fused αAB + βC + γI epilogue, linear combinations to the elementwise kernel; ops without a kernel (sketches,
fitted parameters) reuse the torch backend's code. Scalars that are plain numbers are baked in as
tl.constexpr; loop-table scalars are read from a device tensor (one table row per trip) and run-time ones
(fitted values) from a (batch, k) tensor, so the generated code never syncs to the host.
"""

from __future__ import annotations

import hashlib
import tomllib

from polygen.codegen import env
from polygen.codegen.env import provenance_header, render
from polygen.codegen.torch_emitter import TARGET_DOC, _relative_source, fmt, plan_views, runtime_scalars
from polygen.codegen.torch_emitter import _op_view as torch_op_view
from polygen.ir.schedule import ALIAS, FIT, IDENTITY, LINCOMB, MATMUL, Loop, Op, Scalar, Schedule
from polygen.passes.fuse_pairs import paired_products
from polygen.passes.pipeline import Stages
from polygen.passes.symmetry import half_tile_ops

KERNELS = (  # (template, kernel suffix): the module holds these kernels, in this order
    ("triton/sym_matmul.py.jinja", "sym_matmul"),
    ("triton/matmul_epilogue.py.jinja", "matmul"),
    ("triton/lincomb.py.jinja", "lincomb"),
    ("triton/pair_matmul.py.jinja", "pair_matmul"),
)
CONFIG_KINDS = ("sym_matmul", "matmul", "lincomb", "pair_matmul")
_DEFAULTS = {"alpha": 1.0, "beta": 0.0, "gamma": 0.0}


def tile_configs() -> dict[str, dict[str, list[dict]]]:
    """The registry in templates/triton/configs.toml: {"cuda" | "interpreter": {kernel: [config, ...]}}."""
    with open(env.TEMPLATE_DIR / "triton" / "configs.toml", "rb") as fh:
        data = tomllib.load(fh)
    out: dict[str, dict[str, list[dict]]] = {}
    for where in ("interpreter", "cuda"):
        kinds = data.get(where, {})
        missing = [k for k in CONFIG_KINDS if not kinds.get(k)]
        if missing:
            raise ValueError(f"templates/triton/configs.toml: [{where}] has no configuration for {missing}")
        for kind in CONFIG_KINDS:
            for cfg in kinds[kind]:
                need = {"num_warps", "num_stages"} | ({"BLOCK", "BLOCK_K"} if kind in ("sym_matmul", "pair_matmul")
                                                      else {"BLOCK_M", "BLOCK_N"})
                if not need <= set(cfg):
                    raise ValueError(f"templates/triton/configs.toml: [{where}] {kind} entry {cfg} lacks "
                                     f"{sorted(need - set(cfg))}")
        out[where] = {k: [dict(c) for c in kinds[k]] for k in CONFIG_KINDS}
    return out


def _dynamic(values: list[Scalar], params: tuple[str, ...]) -> tuple[str, list[int]]:
    """Where the non-numeric scalars of one op are read on the device: (coef expression or "", index into
    coef per value, -1 for numbers). Scalars that are all loop parameters index the loop's table row `coef`
    directly; any run-time expression (a fitted value, ``(1.0 + 0.5*alpha)``) sends them all through
    ``_scalars``, which evaluates them with the loop parameters bound by name."""
    dyn = [v for v in values if isinstance(v, str)]
    if not dyn:
        return "", [-1] * len(values)
    if all(v in params for v in dyn):
        return "coef", [params.index(v) if isinstance(v, str) else -1 for v in values]
    idx, i = [], 0
    for v in values:
        idx.append(i if isinstance(v, str) else -1)
        i += isinstance(v, str)
    return f"_scalars(G, {', '.join(dyn)})", idx


def _scalar_kwargs(op: Op, names: tuple[str, ...], params: tuple[str, ...], extra: list[Scalar] = ()
                   ) -> tuple[list[tuple[str, str]], list[int]]:
    """Keyword arguments for the epilogue scalars of one op (numbers unless default, else indices into coef);
    ``extra`` scalars (lincomb coefficients) share the coef tensor, their indices are returned."""
    values = [getattr(op, s) for s in names] + list(extra)
    coef, idx = _dynamic(values, params)
    kw: list[tuple[str, str]] = [("coef", coef)] if coef else []
    for s, v, i in zip(names, values, idx):
        if i >= 0:
            kw.append((f"{s}_idx", str(i)))
        elif float(v) != _DEFAULTS[s]:
            kw.append((s, fmt(v)))
    return kw, idx[len(names):]


def _op_view(op: Op, params: tuple[str, ...], runtime: set[str], half: bool = False) -> dict:
    """The template's view of one op; ``by_name`` says it names loop parameters in Python expressions."""
    view: dict = {"kind": op.kind, "out": op.out, "note": op.note, "a": op.a}
    if op.kind == MATMUL:
        view["fn"] = "sym_matmul" if half else "matmul"
        view["b"] = f"{op.b}.mT" if op.tb else op.b
        kw, _ = _scalar_kwargs(op, ("alpha", "beta", "gamma"), params)
        view["kwargs"] = ([("c", op.c)] if op.c else []) + kw
    elif op.kind == LINCOMB:
        ks = [k for k, _ in op.terms]
        view["kwargs"], k_idx = _scalar_kwargs(op, ("gamma",), params, ks)
        view["terms"] = [m for _, m in op.terms]
        view["ks"] = ["0.0" if isinstance(k, str) else fmt(k) for k in ks]
        view["k_idx"] = [str(i) for i in k_idx]
    elif op.kind == IDENTITY:
        view["size"] = "G.size(-1)" if op.shape == "N" else "G.size(-2)"
        view["gamma"] = fmt(op.gamma)
    elif op.kind != ALIAS:  # no Triton kernel for this op (sketch, fit): the torch backend's code for it
        view["torch_code"] = str(env.environment().get_template("torch/ops.py.jinja").module.emit(
            torch_op_view(op, runtime)))
    fast = op.kind in (MATMUL, LINCOMB) and all(v == "coef" for k, v in view["kwargs"] if k == "coef")
    view["by_name"] = bool(set(op.scalar_names) & set(params)) and not fast
    return view


def _pair_view(first: Op, second: Op, half: tuple[bool, bool]) -> dict:
    """Two products with one left factor and no epilogue, in one launch of the paired kernel."""
    b = [f"{op.b}.mT" if op.tb else op.b for op in (first, second)]
    note = "; ".join(n for n in (first.note, second.note) if n)
    return {"kind": "pair", "out": first.out, "out2": second.out, "a": first.a, "b": b[0], "b2": b[1],
            "mirror": half, "note": f"one launch: {note}" if note else "one launch", "by_name": False}


def _function_view(key: str, sched: Schedule, tables: list[dict]) -> dict:
    runtime = runtime_scalars(sched)
    half = half_tile_ops(sched)
    pairs = dict(paired_products(sched))
    seconds = set(pairs.values())

    def views(i: int, ops: list[tuple[int, Op]], params: tuple[str, ...]) -> list[dict]:
        out = []
        by_pos = dict(ops)
        for j, op in ops:
            if (i, j) in seconds:
                continue
            if (i, j) in pairs:
                k = pairs[(i, j)][1]
                out.append(_pair_view(op, by_pos[k], ((i, j) in half, pairs[(i, j)] in half)))
            else:
                out.append(_op_view(op, params, runtime, (i, j) in half))
        return out

    blocks = []
    for i, blk in enumerate(sched.blocks):
        if isinstance(blk, Loop):
            table = bind = ""
            body = views(i, list(enumerate(blk.body)), blk.params)
            if blk.params:
                table = f"_TABLE_{len(tables)}"
                tables.append({"name": table, "rows": [[repr(float(v)) for v in row] for row in blk.table]})
                if any(v["by_name"] for v in body):
                    bind = ", ".join(blk.params) + ("," if len(blk.params) == 1 else "") + " = coef.unbind(0)"
            blocks.append({"loop": True, "table": table, "bind": bind, "trips": blk.trips, "label": blk.label,
                           "body": body})
        elif (i, -1) not in seconds:
            if (i, -1) in pairs:
                nxt = sched.blocks[pairs[(i, -1)][0]]
                assert isinstance(nxt, Op)
                blocks.append({"loop": False, "op": _pair_view(blk, nxt, ((i, -1) in half, pairs[(i, -1)] in half))})
            else:
                blocks.append({"loop": False, "op": _op_view(blk, (), runtime, (i, -1) in half)})
    restarts = f", restarts after steps {list(sched.restarts)}" if sched.restarts else ""
    trips = {i: blk.trips if isinstance(blk, Loop) else 1 for i, blk in enumerate(sched.blocks)}
    sym = sum(trips[i] for i, _ in half)
    paired = sum(trips[i] for i, _ in pairs)
    doc = (f"{sched.form} plan: {sched.matmuls} matmuls ({sched.count(touches_long=True)} touch the long "
           f"side, {sym} symmetric on half the tiles, {paired} pairs sharing a launch){restarts}.")
    return {"name": f"_plan_{key}", "key": key, "blocks": blocks, "output": sched.outputs[0], "doc": doc}


def _max_terms(stages: Stages) -> int:
    return max([len(op.terms) for forms in stages.plans.values() for s in forms.values()
                for op, _ in s.flat_ops() if op.kind == LINCOMB] + [1])


def emit_triton(stages: Stages, source_label: str | None = None) -> str:
    from polygen import __version__

    smap = stages.spec
    functions, tables, seen, plans = plan_views(stages, "triton", _function_view)

    max_terms = _max_terms(stages)
    # the paired-product kernel only where some plan pairs products (passes.fuse_pairs)
    used = [(tpl, k) for tpl, k in KERNELS if k != "pair_matmul" or any(paired_products(s) for s in seen)]
    kernels = [render(tpl, name=smap.name, max_terms=max_terms).rstrip("\n") for tpl, _ in used]
    configs = tile_configs()
    tag_src = "\n".join([smap.source_hash, __version__, repr(configs)] + kernels)
    op_tag = hashlib.sha256(tag_src.encode()).hexdigest()[:10]
    config_src = {where: {kind: ["{" + ", ".join(f"{k!r}: {v!r}" for k, v in cfg.items()) + "}" for cfg in cfgs]
                          for kind, cfgs in kinds.items()} for where, kinds in configs.items()}

    out = smap.outputs[0]
    source = source_label or _relative_source(smap.source)
    return render(
        "triton/module.py.jinja",
        header=provenance_header(smap.name, smap.source_hash, __version__, "triton", source),
        name=smap.name, description=smap.description or smap.name, spec_hash=smap.source_hash,
        version=__version__, target=smap.target, input_kind=smap.input_kind, target_doc=TARGET_DOC[smap.target],
        matmul_counts=repr({seen[s]: s.matmuls for s in seen}), op_tag=op_tag, max_terms=max_terms,
        kernel_names=[f"{smap.name}_{k}_kernel" for _, k in used], kernels=kernels, tile_configs=config_src,
        tables=tables, functions=functions, plans=plans,
        uses_fit=any(op.kind == FIT for sched in seen for op, _ in sched.flat_ops()),
        norm=smap.normalization.norm, safety=repr(smap.normalization.safety), eps=repr(smap.normalization.eps),
        rescale=out.rescale, exponent=repr(out.exponent),
    )
