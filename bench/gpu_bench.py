"""GPU benchmark of polygen's Triton backend (CUDA only).

For each shape, in bfloat16, the medians of triton.testing.do_bench for
  * the Triton backend, every plan the spec has for the dtype and the one `apply` picks ("auto"),
  * the torch backend, the same plans,
  * torch.optim.Muon's Newton–Schulz (torch.optim._muon._zeropower_via_newtonschulz, one matrix at a time),
  * cuBLAS: torch.mm / torch.bmm of the plans' dominant product (m×n @ n×m), the practical matmul peak.
TFLOP/s counts each plan's dense FLOPs (symmetric products at full price, so half-tile kernels show up as
a higher rate); ratios are Triton against the torch backend, against Muon and against the cuBLAS rate.

    .venv/bin/python bench/gpu_bench.py [--specs muon_ns5 polar_express] [--shapes 4096x4096 4096x16384 16x1024x4096]

Without CUDA (or Triton) it prints "skipped: no CUDA" and exits 0.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DEFAULT_SHAPES = ["4096x4096", "4096x16384", "16x1024x4096"]
MUON_COEFFICIENTS = (3.4445, -4.775, 2.0315)


def parse_shape(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.lower().split("x"))


def plan_flops(spec: str, key: str, m: int, n: int, batch: int, dtype: str) -> int:
    """Dense FLOPs of one plan (symmetric products at full price) from polygen's cost model."""
    from polygen.cost.model import plan_cost
    from polygen.driver import compile_stages

    for dt, plans in compile_stages(spec).plans.items():  # plan keys as the emitters name them
        for form, sched in plans.items():
            if key == (form if form == "direct" else f"{form}_{dt}"):
                return plan_cost(sched, m, n, batch=batch, dtype=dtype, backend="triton").dense_flops
    raise KeyError(f"{spec} has no plan {key!r}")


def muon_ns(G: torch.Tensor) -> torch.Tensor:
    from torch.optim._muon import _zeropower_via_newtonschulz

    if G.dim() == 2:
        return _zeropower_via_newtonschulz(G, MUON_COEFFICIENTS, 5, 1e-7)
    return torch.stack([_zeropower_via_newtonschulz(g, MUON_COEFFICIENTS, 5, 1e-7) for g in G])


def run_shape(shape: tuple[int, ...], specs: list[str], bench) -> None:
    import polygen
    from polygen.runtime.torch_ops import dtype_class

    dtype, tdt = "bfloat16", torch.bfloat16
    batch = shape[0] if len(shape) == 3 else 1
    m, n = sorted(shape[-2:])
    G = torch.randn(shape, device="cuda", dtype=tdt)
    A = torch.randn(batch, m, n, device="cuda", dtype=tdt)
    t_mm = bench(lambda: torch.bmm(A, A.mT) if batch > 1 else torch.mm(A[0], A[0].T))
    peak = 2 * batch * m * m * n / (t_mm * 1e-3) / 1e12
    t_muon = bench(lambda: muon_ns(G))
    print(f"\n== {'x'.join(map(str, shape))} (m={m}, n={n}, batch={batch})  cuBLAS {m}x{n}@{n}x{m}: {t_mm:.3f} ms, "
          f"{peak:.1f} TFLOP/s;  torch.optim.Muon NS5: {t_muon:.3f} ms")
    print(f"{'spec':<16} {'plan':<20} {'triton ms':>10} {'torch ms':>10} {'TFLOP/s':>8} {'vs torch':>9} "
          f"{'vs Muon':>8} {'of cuBLAS':>10}")
    for spec in specs:
        f_tri = polygen.load(spec, backend="triton")
        f_torch = polygen.load(spec, backend="torch")
        mod = f_tri._module("triton")
        candidates = [fn for fn, _ in mod._PLANS[dtype_class(tdt)]]
        keys = [k for k, fn in mod.PLAN_FUNCTIONS.items() if any(fn is c for c in candidates)]
        auto = next(k for k, fn in mod.PLAN_FUNCTIONS.items() if fn is mod.choose_plan(m, n, tdt))
        for key in keys:
            t_tri = bench(lambda f=f_tri, k=key: f(G, plan=k))
            t_torch = bench(lambda f=f_torch, k=key: f(G, plan=k))
            tflops = plan_flops(spec, key, m, n, batch, dtype) / (t_tri * 1e-3) / 1e12
            label = key + (" (auto)" if key == auto else "")
            print(f"{spec:<16} {label:<20} {t_tri:>10.3f} {t_torch:>10.3f} {tflops:>8.1f} "
                  f"{t_torch / t_tri:>8.2f}x {t_muon / t_tri:>7.2f}x {tflops / peak:>9.0%}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--specs", nargs="+", default=["muon_ns5", "polar_express"])
    ap.add_argument("--shapes", nargs="+", default=DEFAULT_SHAPES, help="MxN or BxMxN")
    ap.add_argument("--warmup", type=int, default=25, help="do_bench warmup (ms)")
    ap.add_argument("--rep", type=int, default=100, help="do_bench repetition time (ms)")
    args = ap.parse_args(argv)

    if not torch.cuda.is_available():
        print("skipped: no CUDA (the Triton backend benchmark needs a CUDA GPU)")
        return 0
    try:
        import triton
        from triton.testing import do_bench
    except ImportError:
        print("skipped: no CUDA-capable Triton installed")
        return 0

    import polygen

    def bench(fn) -> float:
        return do_bench(fn, warmup=args.warmup, rep=args.rep, return_mode="median")  # milliseconds

    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}  triton {triton.__version__}  "
          f"polygen {polygen.__version__}  dtype bfloat16")
    for text in args.shapes:
        run_shape(parse_shape(text), args.specs, bench)
    return 0


if __name__ == "__main__":
    sys.exit(main())
