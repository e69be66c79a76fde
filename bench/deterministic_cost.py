"""What torch.use_deterministic_algorithms(True) costs polygen's eager CPU code (bench/RESULTS.md §7).

Under the switch, every product runs as one 2-D GEMM per matrix and every norm per matrix, so that a
matrix's result does not depend on what else is in its batch (torch's batched CPU bmm and reductions take
another order for a batch of one). Times `polygen.load(spec)` on batched stacks with the switch off and on,
interleaved, median of --repeats rounds, and checks that the switch makes a matrix's result batch-independent.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import polygen  # noqa: E402

SHAPES = [(8, 512, 2048), (16, 256, 1024), (64, 128, 512), (256, 64, 256)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", default="muon_ns5")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    f = polygen.load(args.spec)

    def timed(X: torch.Tensor, deterministic: bool) -> float:
        torch.use_deterministic_algorithms(deterministic)
        try:
            t = time.perf_counter()
            f(X)
            return time.perf_counter() - t
        finally:
            torch.use_deterministic_algorithms(False)

    print(f"{args.spec}, eager CPU, {torch.get_num_threads()} threads, median of {args.repeats} interleaved rounds\n")
    print("| batch × m × n | dtype | batched ms | deterministic ms | ratio | matrix 0 alone = in the batch |")
    print("| --- | --- | --- | --- | --- | --- |")
    for shape in SHAPES:
        for dtype in (torch.float32, torch.bfloat16):
            X = torch.randn(*shape, generator=torch.Generator().manual_seed(0)).to(dtype)
            timed(X, False), timed(X, True)
            off, on = [], []
            for _ in range(args.repeats):
                off.append(timed(X, False))
                on.append(timed(X, True))
            torch.use_deterministic_algorithms(True)
            same = torch.equal(f(X)[0], f(X[:1].clone())[0])
            torch.use_deterministic_algorithms(False)
            a, b = statistics.median(off) * 1e3, statistics.median(on) * 1e3
            print(f"| {'×'.join(map(str, shape))} | {str(dtype).removeprefix('torch.')} | {a:.1f} | {b:.1f} | "
                  f"{b / a:.2f}× | {same} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
