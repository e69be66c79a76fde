"""Time one optimizer step on a model of many same-shaped matrices: polygen's Muon vs torch.optim.Muon.

polygen.optim.Muon stacks same-shaped matrices and orthogonalizes them in one batched call of the generated
code (whose plan — direct or Gram-space — the cost model picks per shape and dtype); torch.optim.Muon loops
over the matrices one at a time. Both run the iteration in bf16 by default, as torch.optim.Muon does.

    .venv/bin/python bench/optim_step.py                 # 24 matrices of 1024×4096 (the lead runs this one)
    .venv/bin/python bench/optim_step.py --small         # 8 matrices of 256×1024, a few seconds
    .venv/bin/python bench/optim_step.py --count 12 --shape 2048x2048 --ns-dtype float32 --specs muon_ns5 polar_express

Timings are medians over ``--repeats`` steps after one warm-up step, all from the same process, so the
ratios are meaningful on a shared machine; absolute seconds are not. Writes out/optim_step.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from polygen.optim import Muon  # noqa: E402

DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}


def time_steps(opt: torch.optim.Optimizer, params: list[nn.Parameter], grads: list[torch.Tensor],
               repeats: int) -> float:
    for p, g in zip(params, grads):
        p.grad = g
    opt.step()  # warm-up: state allocation, first-call costs
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        opt.step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=None, help="number of matrices (default 24; 8 with --small)")
    ap.add_argument("--shape", default=None, help="MxN of each matrix (default 1024x4096; 256x1024 with --small)")
    ap.add_argument("--small", action="store_true", help="a quick run: 8 matrices of 256x1024")
    ap.add_argument("--ns-dtype", choices=list(DTYPES), default="bfloat16")
    ap.add_argument("--specs", nargs="+", default=["muon_ns5"], help="polygen specs to time (target polar)")
    ap.add_argument("--repeats", type=int, default=None, help="timed steps (default 5; 3 with --small)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--out", default="out/optim_step.md")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    count = args.count or (8 if args.small else 24)
    m, n = (int(v) for v in (args.shape or ("256x1024" if args.small else "1024x4096")).lower().split("x"))
    repeats = args.repeats or (3 if args.small else 5)
    ns_dtype = DTYPES[args.ns_dtype]

    torch.manual_seed(0)
    params = [nn.Parameter(torch.randn(m, n) * 0.02) for _ in range(count)]
    grads = [torch.randn(m, n) for _ in range(count)]
    rows = []
    if ns_dtype is torch.bfloat16:
        t_torch = time_steps(torch.optim.Muon(params, lr=1e-3), params, grads, repeats)
        rows.append(("torch.optim.Muon (loop, bf16)", "-", t_torch))
    else:
        t_torch = None
    for spec in args.specs:
        opt = Muon(params, lr=1e-3, spec=spec, ns_dtype=ns_dtype, nonfinite="off")
        plan = opt.function_for(opt.param_groups[0]).plan_for((m, n), ns_dtype)
        rows.append((f"polygen Muon {spec} (batched, {args.ns_dtype})", plan, time_steps(opt, params, grads, repeats)))
        opt = Muon(params, lr=1e-3, spec=spec, ns_dtype=ns_dtype, nonfinite="raise")
        rows.append((f"polygen Muon {spec} + non-finite guard", plan, time_steps(opt, params, grads, repeats)))

    lines = [f"Optimizer step, {count} matrices of {m}x{n} (fp32 params), {torch.get_num_threads()} threads, "
             f"median of {repeats}:", "",
             "| optimizer | plan | step s | torch.optim.Muon / this |", "|---|---|---|---|"]
    for name, plan, t in rows:
        ratio = f"{t_torch / t:.2f}x" if t_torch else "-"
        lines.append(f"| {name} | {plan} | {t:.3f} | {ratio} |")
    text = "\n".join(lines)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
