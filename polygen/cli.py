"""``polygen`` command line: list, show, build, check, cost, compare, plot, fit."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from polygen.dtypes import DTYPES
from polygen.errors import PolygenError


def _shape(text: str) -> tuple[int, int]:
    try:
        m, n = text.lower().split("x")
        shape = (int(m), int(n))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape must look like 1024x4096, got {text!r}") from None
    if min(shape) < 1:
        raise argparse.ArgumentTypeError("shape dimensions must be positive")
    return shape


def cmd_list(args: argparse.Namespace) -> int:
    import polygen

    for name in polygen.list_specs():
        s = polygen.load_spec(name)
        print(f"{name:<20} {s.target:<13} {s.total_steps:>3} steps  {s.description}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    import polygen
    from polygen.driver import compile_stages

    if args.stage == "spectral":
        st = compile_stages(args.spec, check=False)
        sm = st.spectral
        print(f"spec {sm.name}: target={sm.target} domain={list(sm.domain)} input={sm.input_kind}")
        print("variables: " + ", ".join(f"{v.name} ({v.kind}, init {v.init})" for v in sm.variables))
        for s in sm.steps:
            print(f"step {s.label} ×{s.repeat}:")
            for let in s.lets:
                print(f"    let {let.name} = {let.expr}")
            for var, p in s.updates:
                print(f"    {var} ← {p}")
        print(st.report)
        return 0 if st.report.ok else 1
    if args.stage == "schedule":
        smap = polygen.load_spec(args.spec)
        shape = args.shape or ((1024, 1024) if smap.input_kind == "symmetric" else (1024, 4096))
        print(polygen.schedule(smap, shape, dtype=args.dtype, backend=args.backend))
        return 0
    print(polygen.generate(args.spec, backend=args.stage), end="")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from polygen.driver import build
    from polygen.runtime import loader
    from polygen.runtime.files import inside

    files = build(args.specs or None, out=args.out)
    for p, changed in files.items():
        if changed:
            print(f"wrote {p}")
    if any(inside(p, loader.CACHE_DIR) for p in files) and args.out is None:
        print(f"user specs went to the cache polygen.load reads ({loader.CACHE_DIR}); pass --out DIR to write "
              "them to a folder of your own")
    same = sum(not changed for changed in files.values())
    if same:
        print(f"unchanged: {same} file(s) already held the generated text")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from polygen.driver import check

    problems = check(out=args.out)
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        print(f"generated/ is out of date ({len(problems)} problem(s)); run `polygen build`", file=sys.stderr)
        return 1
    print("generated/ is up to date")
    return 0


def cmd_cost(args: argparse.Namespace) -> int:
    import polygen

    rows = []
    for name in args.specs:
        smap = polygen.load_spec(name)
        shape = (args.shape[0], args.shape[0]) if smap.input_kind == "symmetric" else args.shape
        plan = polygen.schedule(smap, shape, dtype=args.dtype, backend=args.backend, batch=args.batch)
        alts = {k: c for k, c in plan.alternatives}
        errs = _form_errors(polygen.load(name, backend="torch"), shape, args.dtype)
        rows.append({"spec": plan.spec, "shape": f"{shape[0]}x{shape[1]}", "form": plan.form, "matmuls": plan.matmuls,
                     "long_matmuls": plan.cost.long_matmuls, "gflop": plan.cost.flops / 1e9,
                     "dense_gflop": plan.cost.dense_flops / 1e9, "mbytes": plan.cost.bytes / 1e6,
                     "est_ms": plan.cost.seconds * 1e3, "est_error": errs.get(plan.form),
                     "restarts": list(plan.schedule.restarts),
                     "alternatives": {k: {"matmuls": c.matmuls, "gflop": c.flops / 1e9, "est_ms": c.seconds * 1e3,
                                          "est_error": errs.get(k)} for k, c in alts.items()}})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    m, n = args.shape
    print(f"cost at {m}x{n} {args.dtype} (batch {args.batch}) on {args.backend}; est err: relative error against "
          f"the exact map at kappa = 1e3, measured at a proxy shape")
    head = (f"{'spec':<20} {'form':<7} {'matmuls':>7} {'long':>5} {'GFLOP':>9} {'MB':>9} {'est ms':>9} "
            f"{'est err':>9}  alternatives")
    print(head)
    print("-" * len(head))
    for r in rows:
        alt_text = "; ".join(f"{k}: {a['matmuls']} mm, {a['gflop']:.2f} GFLOP, err {_sci(a['est_error'])}"
                             for k, a in r["alternatives"].items())
        print(f"{r['spec']:<20} {r['form']:<7} {r['matmuls']:>7} {r['long_matmuls']:>5} {r['gflop']:>9.2f} "
              f"{r['mbytes']:>9.1f} {r['est_ms']:>9.2f} {_sci(r['est_error']):>9}  {alt_text}")
    return 0


def _sci(x: float | None) -> str:
    return "-" if x is None else f"{x:.1e}"


def _form_errors(f: Any, shape: tuple[int, int], dtype: str) -> dict[str, float]:
    """Estimated error per plan form ("direct", "gram") for this shape and dtype (polygen.runtime.accuracy);
    a generated plan is named by its form and the dtype class it was placed for."""
    import torch

    errs = f.plan_errors(shape, getattr(torch, dtype))
    return {name.split("_")[0]: e for name, e in errs.items()}


def cmd_compare(args: argparse.Namespace) -> int:
    from polygen.compare import compare, format_rows

    rows = compare(args.specs, args.shape, dtype=args.dtype, cond=args.cond, repeats=args.repeats,
                   peers=not args.no_peers)
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
    else:
        print(format_rows(rows, args.shape, args.dtype))
    if args.plot:
        from polygen.plot import plot_compare

        plot_compare(rows, args.plot, title=f"{args.shape[0]}x{args.shape[1]} {args.dtype}")
        print(f"wrote {args.plot}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from polygen.plot import plot_maps

    plot_maps(args.specs, args.output)
    print(f"wrote {args.output}")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    """What torch.compile(fn, backend="polygen") would do to FILE.py:FUNCTION on a random input of the shape."""
    import importlib.util

    import torch

    from polygen.compile import explain

    path, _, name = args.target.rpartition(":")
    if not path or not name:
        raise PolygenError(f"expected FILE.py:FUNCTION, got {args.target!r}")
    if not Path(path).is_file():
        raise PolygenError(f"{path}: no such file (expected FILE.py:FUNCTION)")
    spec = importlib.util.spec_from_file_location("_polygen_explain_target", path)
    if spec is None or spec.loader is None:
        raise PolygenError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fn = getattr(module, name, None)
    if not callable(fn):
        raise PolygenError(f"{path} has no function {name!r}")
    G = torch.randn(*args.shape, dtype=getattr(torch, args.dtype))
    regions = explain(fn, G)
    print(f"{'status':<10} {'steps':>5}  {'plan':<14} {'coefficients (first step)':<40} reason")
    for r in regions:
        first = ", ".join(f"{c:.6g}" for c in r.coefficients[0]) if r.coefficients else ""
        print(f"{r.status:<10} {len(r.steps):>5}  {r.plan or 'auto':<14} {first:<40} {r.reason}")
    if not regions:
        print("no polynomial iteration found")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="polygen", description="Compile polynomial matrix iterations from spec files.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("list", help="list the built-in specs")
    s.set_defaults(func=cmd_list)

    s = sub.add_parser("show", help="print one stage of a spec's compilation")
    s.add_argument("spec")
    s.add_argument("--stage", choices=("spectral", "schedule", "torch", "triton"), default="schedule")
    s.add_argument("--shape", type=_shape, default=None, help="default 1024x4096 (1024x1024 for symmetric specs)")
    s.add_argument("--dtype", default="float32", choices=DTYPES)
    s.add_argument("--backend", default="torch", choices=("torch", "triton"))
    s.set_defaults(func=cmd_show)

    s = sub.add_parser("build", help="write generated/ for the given (default: all) built-in specs; a user spec "
                                     "goes to the cache polygen.load reads, or to --out DIR")
    s.add_argument("specs", nargs="*")
    s.add_argument("--out", type=Path, default=None)
    s.set_defaults(func=cmd_build)

    s = sub.add_parser("check", help="fail when generated/ is stale, missing or orphaned")
    s.add_argument("--out", type=Path, default=None)
    s.set_defaults(func=cmd_check)

    s = sub.add_parser("cost", help="price the chosen plan (and alternatives) for a shape")
    s.add_argument("specs", nargs="+")
    s.add_argument("--shape", type=_shape, required=True)
    s.add_argument("--dtype", default="float32", choices=DTYPES)
    s.add_argument("--backend", default="torch", choices=("torch", "triton"))
    s.add_argument("--batch", type=int, default=1)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_cost)

    s = sub.add_parser("compare", help="measure time and error against float64 SVD, with peers")
    s.add_argument("specs", nargs="+")
    s.add_argument("--shape", type=_shape, required=True)
    s.add_argument("--dtype", default="float32", choices=DTYPES)
    s.add_argument("--cond", type=float, default=1e3, help="condition number of the test matrix")
    s.add_argument("--repeats", type=int, default=3)
    s.add_argument("--no-peers", action="store_true")
    s.add_argument("--json", action="store_true")
    s.add_argument("--plot", type=Path, default=None)
    s.set_defaults(func=cmd_compare)

    s = sub.add_parser("plot", help="draw the specs' scalar maps on their domains (PNG)")
    s.add_argument("specs", nargs="+")
    s.add_argument("-o", "--output", type=Path, required=True)
    s.set_defaults(func=cmd_plot)

    s = sub.add_parser("explain", help="what torch.compile(backend=\"polygen\") would rewrite in FILE.py:FUNCTION")
    s.add_argument("target", help="FILE.py:FUNCTION, called with one random (..., m, n) tensor")
    s.add_argument("--shape", type=_shape, required=True)
    s.add_argument("--dtype", default="float32", choices=DTYPES)
    s.set_defaults(func=cmd_explain)

    try:
        from polygen.fit.cli import add_fit_parser
    except ImportError:  # pragma: no cover - fit/ ships with polygen
        pass
    else:
        add_fit_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except PolygenError as e:
        print(f"polygen: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
