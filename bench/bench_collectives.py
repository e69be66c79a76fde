"""The latency and bandwidth of one gloo all_reduce on this CPU, which runtime/tuning.py's
COLLECTIVE_LATENCY_S and COLLECTIVE_BYTES_PER_S model (bench/RESULTS.md §9):

    OMP_NUM_THREADS=1 python -m torch.distributed.run --standalone --nproc-per-node 2 bench/bench_collectives.py
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.distributed as dist


def main() -> None:
    dist.init_process_group("gloo")
    for n in (1, 2**10, 2**16, 2**20, 2**22):
        t = torch.ones(n)
        for _ in range(3):
            dist.all_reduce(t)
        dist.barrier()
        times = []
        for _ in range(10):
            start = time.perf_counter()
            dist.all_reduce(t)
            times.append(time.perf_counter() - start)
        if dist.get_rank() == 0:
            print(f"all_reduce of {n * 4:>10,} B: median {statistics.median(times) * 1e6:8.0f} us")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
