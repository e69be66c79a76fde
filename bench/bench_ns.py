"""Benchmark polygen's muon_ns5 against torch.optim.Muon's Newton–Schulz and the direct Horner form.

All timings come from one run, measured in interleaved rounds (medians), so ratios are meaningful on a shared,
noisy machine; absolute seconds are not. GFLOP/s counts the FLOPs each implementation performs and is
compared with a plain torch.mm of the plan's dominant product (m×m @ m×n): its best round is the machine's
practical matmul peak.

    .venv/bin/python bench/bench_ns.py [--shapes 1024x4096 ...] [--dtypes float32 bfloat16] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import polygen  # noqa: E402
from polygen.compare import DTYPES, run_cost, time_interleaved, torch_muon_ns  # noqa: E402
from polygen.runtime.reference import polar, random_with_spectrum, spectral_reference  # noqa: E402

DEFAULT_SHAPES = ["1024x4096", "4096x1024", "2048x2048", "768x3072"]


def ns5_flops(m: int, n: int) -> float:
    m, n = min(m, n), max(m, n)
    return 5 * (2 * 2 * m * m * n + 2 * m**3)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.norm(a.double() - b) / torch.linalg.norm(b))


def spec_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.matrix_norm(a.double() - b, ord=2))


def bench(shape: tuple[int, int], dtype: str, repeats: int) -> dict:
    tdt = DTYPES[dtype]
    m, n = shape
    G = random_with_spectrum(shape, 1e3, seed=0).to(tdt)
    f = polygen.load("muon_ns5", backend="torch")
    plan = polygen.schedule("muon_ns5", shape, dtype=dtype)
    key = f.plan_for(shape, tdt)
    smap = polygen.load_spec("muon_ns5")
    ref = spectral_reference(smap, G)
    uv = polar(G)
    a, b = sorted(shape)
    A = torch.randn(a, a, dtype=tdt)
    B = torch.randn(a, b, dtype=tdt)
    times = time_interleaved({
        "mm": lambda: torch.mm(A, B), "polygen": lambda: f(G), "direct": lambda: f(G, plan="direct"),
        "muon": lambda: torch_muon_ns(G)}, repeats)
    med = {k: statistics.median(v) for k, v in times.items()}
    t_mm, t_poly, t_direct, t_muon = med["mm"], med["polygen"], med["direct"], med["muon"]
    peak = 2 * a * a * b / min(times["mm"])  # the best of the rounds: the machine's practical peak
    # the cost of the plan f runs (its accuracy policy may take another than the cost model's cheapest)
    _, cost = run_cost(plan, key)
    flops_plan = cost.flops  # performed: symmetric products pay only their computed blocks
    return {
        "shape": f"{m}x{n}", "dtype": dtype, "plan": key, "matmuls": cost.matmuls,
        "t_polygen": t_poly, "t_direct": t_direct, "t_muon": t_muon, "t_mm": t_mm,
        "speedup_vs_muon": t_muon / t_poly, "speedup_vs_direct": t_direct / t_poly,
        "gflops_polygen": flops_plan / t_poly / 1e9, "gflops_muon": ns5_flops(m, n) / t_muon / 1e9,
        "gflops_mm_peak": peak / 1e9, "pct_of_peak": flops_plan / t_poly / peak * 100,
        "err_polygen": rel(f(G), ref), "err_muon": rel(torch_muon_ns(G), ref),
        "polar_err_polygen": spec_err(f(G), uv), "polar_err_muon": spec_err(torch_muon_ns(G), uv),
        **well_conditioned_errors(f, smap, shape, tdt),
    }


def well_conditioned_errors(f, smap, shape: tuple[int, int], tdt: torch.dtype) -> dict:
    """Errors against the exact map at κ = 10 too: there every singular value carries signal, which is where
    the Gram form's squared spectrum costs the most in bf16."""
    G = random_with_spectrum(shape, 10.0, seed=1).to(tdt)
    ref = spectral_reference(smap, G)
    return {"err10_polygen": rel(f(G), ref), "err10_muon": rel(torch_muon_ns(G), ref)}


def table(rows: list[dict]) -> str:
    head = ("| shape | dtype | polygen plan | polygen ms | direct ms | torch.optim.Muon ms | vs Muon | vs direct "
            "| polygen GFLOP/s | mm peak GFLOP/s | % of peak | err vs map: polygen / Muon | ‖Y−UVᵀ‖₂: polygen / Muon "
            "| err vs map at κ = 10: polygen / Muon |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(
            f"| {r['shape']} | {r['dtype']} | {r['plan']} ({r['matmuls']} mm) | {r['t_polygen'] * 1e3:.1f} | "
            f"{r['t_direct'] * 1e3:.1f} | {r['t_muon'] * 1e3:.1f} | {r['speedup_vs_muon']:.2f}x | "
            f"{r['speedup_vs_direct']:.2f}x | {r['gflops_polygen']:.1f} | {r['gflops_mm_peak']:.1f} | "
            f"{r['pct_of_peak']:.0f}% | {r['err_polygen']:.1e} / {r['err_muon']:.1e} | "
            f"{r['polar_err_polygen']:.3f} / {r['polar_err_muon']:.3f} | "
            f"{r['err10_polygen']:.1e} / {r['err10_muon']:.1e} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", nargs="+", default=DEFAULT_SHAPES)
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    rows = []
    for s in args.shapes:
        m, n = (int(v) for v in s.split("x"))
        for dt in args.dtypes:
            rows.append(bench((m, n), dt, args.repeats))
            print(f"done {s} {dt}", file=sys.stderr)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
