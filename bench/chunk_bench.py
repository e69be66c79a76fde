"""How eager CPU runs of a batch should be split: polygen's chunking (about CPU_CHUNK_BYTES of input per call)
against one call over the whole batch and against one call per matrix, for NS5 (``muon_ns5``).

    .venv/bin/python bench/chunk_bench.py                  # the table in bench/RESULTS.md
    .venv/bin/python bench/chunk_bench.py --dtypes bfloat16 --repeats 3

The three variants run the same generated code; only the number of matrices per call differs. Rounds are
interleaved (polygen.compare.time_interleaved), so the ratios hold on a shared machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import polygen  # noqa: E402
from polygen.compare import time_interleaved  # noqa: E402
from polygen.runtime import tuning  # noqa: E402

DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}
CASES = ((48, 256, 1024), (24, 512, 2048), (12, 1024, 4096), (6, 2048, 2048))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dtypes", nargs="+", choices=list(DTYPES), default=list(DTYPES))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--spec", default="muon_ns5")
    args = ap.parse_args(argv)

    f = polygen.load(args.spec, backend="torch")
    chunk_bytes = tuning.CPU_CHUNK_BYTES

    def with_chunk(nbytes: int, X: torch.Tensor):
        def run() -> None:
            tuning.CPU_CHUNK_BYTES = nbytes
            try:
                f(X)
            finally:
                tuning.CPU_CHUNK_BYTES = chunk_bytes
        return run

    print(f"{args.spec}, eager, {torch.get_num_threads()} threads, CPU_CHUNK_BYTES = {chunk_bytes / 2**20:g} MiB, "
          f"median of {args.repeats} interleaved rounds\n")
    print("| batch | dtype | matrices per call (polygen) | polygen s | whole batch s | one per matrix s "
          "| whole / polygen | one-per-matrix / polygen |")
    print("|---|---|---|---|---|---|---|---|")
    torch.manual_seed(0)
    for k, m, n in CASES:
        for name in args.dtypes:
            X = torch.randn(k, m, n).to(DTYPES[name])
            per = max(1, chunk_bytes // (m * n * X.element_size()))
            t = time_interleaved({
                "polygen": with_chunk(chunk_bytes, X),
                "whole": with_chunk(10**15, X),
                "single": with_chunk(1, X),
            }, repeats=args.repeats)
            med = {key: statistics.median(v) for key, v in t.items()}
            print(f"| {k}x{m}x{n} | {name} | {min(per, k)} | {med['polygen']:.3f} | {med['whole']:.3f} | "
                  f"{med['single']:.3f} | {med['whole'] / med['polygen']:.2f}x | "
                  f"{med['single'] / med['polygen']:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
