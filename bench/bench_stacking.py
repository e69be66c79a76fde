"""Same-shape chains stacked into one polygen call against the same graph rewritten chain by chain, and
Inductor, in one process, interleaved (bench/RESULTS.md §8): a compiled torch.optim.Muon step over COUNT
matrices of SHAPE. The one-by-one variant replaces polygen.compile.graph_pass.stacks by singletons while it
compiles; the stacked one forces stacking even where the pass would not stack (CPU matrices of
CPU_CHUNK_BYTES or more), which is what this measures."""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    import polygen.compile.graph_pass as gp

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("shape")
    ap.add_argument("--count", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    shape = tuple(int(v) for v in args.shape.split("x"))
    torch.manual_seed(0)

    def make():
        ps = [torch.nn.Parameter(torch.randn(*shape)) for _ in range(args.count)]
        for p in ps:
            p.grad = torch.randn_like(p)
        return torch.optim.Muon(ps, lr=0.02)

    def stacked(graph, regions):
        key = gp._stack_key
        try:
            gp._stack_key = lambda r: key(r)[:-1]  # drop the "alone" marker: stack every same-shape chain
            return original(graph, regions)
        finally:
            gp._stack_key = key

    original = gp.stacks
    steps = {}
    for label, grouping in (("stacked", stacked), ("one by one", lambda g, rs: [[r] for r in rs]),
                            ("inductor", None)):
        gp.stacks = grouping or original
        step = torch.compile(make().step, backend="inductor" if grouping is None else "polygen",
                             options={"fx_graph_cache": False})
        step()
        steps[label] = step
    gp.stacks = original
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(args.repeats):
        for k, step in steps.items():
            t = time.perf_counter()
            step()
            times[k].append(time.perf_counter() - t)
    print(f"torch.optim.Muon.step, {args.count} x {args.shape}, median of {args.repeats}: " +
          ", ".join(f"{k} {statistics.median(v):.3f} s" for k, v in times.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
