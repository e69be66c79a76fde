"""torch.compile(backend="polygen") against backend="inductor" and eager, in one run (bench/RESULTS.md §8).

A user's NS5 loop (Keller Jordan's) and a Polar Express coefficient-list loop at 1024×4096, 4096×1024 and
2048×2048 in float32 and bfloat16, and a compiled torch.optim.Muon.step() over 24 matrices of 1024×4096.
Reports the median of --repeats interleaved calls per variant, the ratios, each result's error against the
exact map (float64 SVD) and the compile times (the first call).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

NS5 = [(3.4445, -4.7750, 2.0315)] * 5
PE = [(8.28721201814563, -23.595886519098837, 17.300387312530933),
      (4.107059111542203, -2.9478499167379106, 0.5448431082926601),
      (3.9486908534822946, -2.908902115962949, 0.5518191394370137),
      (3.3184196573706015, -2.488488024314874, 0.51004894012372),
      (2.300652019954817, -1.6689039845747493, 0.4188073119525673),
      (1.891301407787398, -1.2679958271945868, 0.37680408948524835),
      (1.8750014808534479, -1.2500016453999487, 0.3750001645474248),
      (1.875, -1.25, 0.375)]


def loop(coeffs):
    def fn(G):
        X = G
        if G.size(-2) > G.size(-1):
            X = X.mT
        X = X / (X.norm(dim=(-2, -1), keepdim=True) + 1e-7)
        for a, b, c in coeffs:
            A = X @ X.mT
            B = b * A + c * A @ A
            X = a * X + B @ X
        if G.size(-2) > G.size(-1):
            X = X.mT
        return X
    return fn


def _opts(reports: list) -> dict:
    """polygen's report; no FX graph cache for either backend, so compile times compare like with like."""
    return {"polygen.report": reports.extend, "fx_graph_cache": False}


def exact(G: torch.Tensor, coeffs) -> torch.Tensor:
    U, S, Vh = torch.linalg.svd(G.double(), full_matrices=False)
    s = S / torch.linalg.norm(G.double())
    for a, b, c in coeffs:
        s = a * s + b * s**3 + c * s**5
    return U @ torch.diag(s) @ Vh


def rel(Y: torch.Tensor, ref: torch.Tensor) -> float:
    return float(torch.linalg.norm(Y.double() - ref) / torch.linalg.norm(ref))


def timed(fn, *args) -> float:
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def loops(args: argparse.Namespace) -> None:
    from polygen.runtime.reference import random_with_spectrum

    print("| loop | shape | dtype | polygen plan | polygen ms | inductor ms | eager ms | vs inductor | vs eager | "
          "err polygen / inductor / eager | compile s polygen / inductor |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, coeffs in (("NS5", NS5), ("Polar Express", PE)):
        for shape in args.shapes:
            for dtype in args.dtypes:
                torch._dynamo.reset()
                G = random_with_spectrum(shape, 1e3, seed=0).to(getattr(torch, dtype))
                fn = loop(coeffs)
                reports: list = []
                fp = torch.compile(fn, backend="polygen", options={**_opts(reports), "polygen.accuracy": args.accuracy})
                fi = torch.compile(loop(coeffs), backend="inductor", options={"fx_graph_cache": False})
                with torch.no_grad():
                    cp, ci = timed(fp, G), timed(fi, G)
                    tp, ti, te = [], [], []
                    for _ in range(args.repeats):
                        tp.append(timed(fp, G))
                        ti.append(timed(fi, G))
                        te.append(timed(fn, G))
                    ref = exact(G, coeffs)
                    errs = [rel(f(G), ref) for f in (fp, fi, fn)]
                p, i, e = (statistics.median(x) * 1e3 for x in (tp, ti, te))
                plan = ",".join(r.plan or "auto" if r.status == "rewritten" else "refused" for r in reports)
                print(f"| {name} | {shape[0]}x{shape[1]} | {dtype} | {plan} | {p:.1f} | {i:.1f} | {e:.1f} | "
                      f"{i / p:.2f}x | {e / p:.2f}x | {errs[0]:.1e} / {errs[1]:.1e} / {errs[2]:.1e} | "
                      f"{cp:.1f} / {ci:.1f} |", flush=True)


def muon_step(args: argparse.Namespace) -> None:
    torch._dynamo.reset()
    torch.manual_seed(0)
    shape = args.step_shape
    base = [torch.randn(*shape) for _ in range(args.count)]
    grads = [torch.randn(*shape) for _ in range(args.count)]

    def make():
        ps = [torch.nn.Parameter(b.clone()) for b in base]
        for p, g in zip(ps, grads):
            p.grad = g.clone()
        return ps, torch.optim.Muon(ps, lr=0.02)

    variants = {}
    reports: list = []
    for label in ("polygen", "inductor", "eager"):
        ps, opt = make()
        step = opt.step if label == "eager" else torch.compile(opt.step, backend=label,
                                                                   options=_opts(reports) if label == "polygen"
                                                                   else {"fx_graph_cache": False})
        compile_s = timed(step) if label != "eager" else 0.0
        variants[label] = (step, compile_s)
    times = {k: [] for k in variants}
    for _ in range(args.repeats):
        for k, (step, _) in variants.items():
            times[k].append(timed(step))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\ntorch.optim.Muon.step over {args.count} matrices of {shape[0]}x{shape[1]} (bf16 iteration), median of "
          f"{args.repeats}:\n")
    chains = [r for r in reports if r.status == "rewritten"]
    stacks = sorted({r.stacked for r in chains})
    plan = chains[0].plan or "auto" if chains else "-"
    print(f"polygen rewrote {len(chains)} chains, stacked {stacks} per call, plan {plan}\n")
    print("| variant | step s | polygen / this | compile s |\n|---|---|---|---|")
    for k in variants:
        print(f"| {k} | {med[k]:.3f} | {med[k] / med['polygen']:.2f}x | {variants[k][1]:.1f} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", nargs="+", default=["1024x4096", "4096x1024", "2048x2048"])
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--count", type=int, default=24)
    ap.add_argument("--step-shape", default="1024x4096")
    ap.add_argument("--skip-step", action="store_true")
    ap.add_argument("--skip-loops", action="store_true")
    ap.add_argument("--accuracy", default="guard", choices=("guard", "fastest", "direct"),
                    help="polygen's accuracy policy for the loops (default guard)")
    args = ap.parse_args(argv)
    args.shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes]
    args.step_shape = tuple(int(v) for v in args.step_shape.split("x"))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}\n")
    # A process's first Inductor compile pays one-time costs (imports, codecache set-up: ~2.5 s here) that
    # would land on whichever backend compiles first; one throwaway compile takes them before any timing.
    torch.compile(lambda x: (x @ x.mT).sin(), backend="inductor", options={"fx_graph_cache": False})(torch.randn(8, 8))
    torch._dynamo.reset()
    if not args.skip_loops:
        loops(args)
    if not args.skip_step:
        muon_step(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
