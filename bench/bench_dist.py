"""Distributed polygen.optim.Muon on this CPU with gloo (bench/RESULTS.md §9).

For W = 2 and 4 processes (``torch.distributed.run``, OMP_NUM_THREADS=1 each) and COUNT matrices of SHAPE as
FSDP2-style Shard(0) DTensors, in bf16 and fp32 iterations: the per-rank optimizer step time of polygen's
sharded Muon (owner all-to-all), of the naive "gather every update, every rank computes everything" baseline,
and of single-process polygen.optim.Muon (run here first, with W threads), plus the bytes each rank sends per
step against the formula 2·(W−1)/W² of the updates in the iteration dtype (naive: (W−1)/W in float32).
This machine has 2 cores: at W = 4 the ranks share them, so W = 4 measures correctness and communication
volume, not speed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}


def make_full(count: int, shape: tuple[int, int], seed: int = 0) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return ([torch.randn(*shape, generator=gen) for _ in range(count)],
            [torch.randn(*shape, generator=gen) for _ in range(count)])


def single(args: argparse.Namespace, threads: int) -> dict[str, float]:
    from polygen.optim import Muon

    torch.set_num_threads(threads)
    out = {}
    for name in args.dtypes:
        params, grads = make_full(args.count, args.shape)
        ps = [torch.nn.Parameter(p) for p in params]
        for p, g in zip(ps, grads):
            p.grad = g
        opt = Muon(ps, lr=0.02, ns_dtype=DTYPES[name])
        opt.step()
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            opt.step()
            times.append(time.perf_counter() - t)
        out[name] = statistics.median(times)
    return out


@torch.no_grad()
def naive_step(ps, bufs, world, ns_dtype, fn) -> int:
    """Gather every whole update, run all matrices on every rank, keep this rank's rows; returns bytes sent."""
    import torch.distributed as dist

    rank = dist.get_rank()
    sent = 0
    fulls = []
    for p, b in zip(ps, bufs):
        g = p.grad.to_local()
        b.lerp_(g, 0.05)
        u = g.lerp(b, 0.95)
        full = u.new_empty(world * u.shape[0], *u.shape[1:])
        dist.all_gather_single(full, u.contiguous())
        sent += u.numel() * u.element_size() * (world - 1)
        fulls.append(full)
    out = fn(torch.stack(fulls).to(ns_dtype))
    rows = ps[0].to_local().shape[0]
    for p, o in zip(ps, out):
        p.to_local().mul_(1 - 0.02 * 0.1).add_(o[rank * rows:(rank + 1) * rows], alpha=-0.02)
    return sent


def worker(args: argparse.Namespace) -> None:
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    import polygen
    from polygen.optim import Muon
    from polygen.optim import distributed as pd

    dist.init_process_group("gloo")
    world, rank = dist.get_world_size(), dist.get_rank()
    mesh = init_device_mesh("cpu", (world,))
    result: dict = {"world": world}
    for name in args.dtypes:
        ns_dtype = DTYPES[name]
        params, grads = make_full(args.count, args.shape)
        ps = [torch.nn.Parameter(distribute_tensor(p, mesh, [Shard(0)])) for p in params]
        for p, g in zip(ps, grads):
            p.grad = distribute_tensor(g, mesh, [Shard(0)])
        opt = Muon(ps, lr=0.02, ns_dtype=ns_dtype)
        sent = [0]
        orig = pd.dist.all_to_all_single

        def counting(out, inp, out_splits=None, in_splits=None, group=None, _orig=orig, _sent=sent):
            _sent[0] += (inp.numel() - in_splits[rank]) * inp.element_size()
            return _orig(out, inp, out_splits, in_splits, group=group)

        pd.dist.all_to_all_single = counting
        opt.step()
        pd.dist.all_to_all_single = orig
        fn = polygen.load("muon_ns5", backend="torch")
        bufs = [torch.zeros_like(p.to_local()) for p in ps]
        naive_sent = naive_step(ps, bufs, world, ns_dtype, fn)
        times: dict[str, list[float]] = {"polygen": [], "naive": []}
        for _ in range(args.repeats):
            for label in times:
                dist.barrier()
                t = time.perf_counter()
                opt.step() if label == "polygen" else naive_step(ps, bufs, world, ns_dtype, fn)
                times[label].append(time.perf_counter() - t)
        item = torch.empty((), dtype=ns_dtype).element_size()
        update = args.count * args.shape[0] * args.shape[1] * item
        result[name] = {"polygen_s": statistics.median(times["polygen"]), "naive_s": statistics.median(times["naive"]),
                        "bytes": sent[0], "formula": round(2 * (world - 1) / world**2 * update),
                        "naive_bytes": naive_sent}
    if rank == 0:
        print(json.dumps(result), flush=True)
    dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worlds", nargs="+", type=int, default=[2, 4])
    ap.add_argument("--dtypes", nargs="+", default=["bfloat16", "float32"])
    ap.add_argument("--count", type=int, default=24)
    ap.add_argument("--shape", default="1024x4096")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--worker", action="store_true")
    args = ap.parse_args(argv)
    args.shape = tuple(int(v) for v in args.shape.split("x"))
    if args.worker:
        worker(args)
        return 0
    print(f"torch {torch.__version__}; {args.count} matrices of {args.shape[0]}x{args.shape[1]}, median of "
          f"{args.repeats}\n")
    print("| W | dtype | polygen step s (per rank) | naive step s | one process s (W threads) | vs naive | "
          "vs one process | bytes sent / rank / step | formula | naive bytes |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for world in args.worlds:
        one = single(args, threads=min(world, os.cpu_count() or 1))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={world}",
               str(Path(__file__).resolve()), "--worker", "--count", str(args.count), "--shape",
               f"{args.shape[0]}x{args.shape[1]}", "--repeats", str(args.repeats), "--dtypes", *args.dtypes]
        out = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"),
                             cwd=ROOT, check=True)
        res = json.loads(next(ln for ln in out.stdout.splitlines() if ln.startswith("{")))
        for name in args.dtypes:
            r = res[name]
            print(f"| {world} | {name} | {r['polygen_s']:.3f} | {r['naive_s']:.3f} | {one[name]:.3f} | "
                  f"{r['naive_s'] / r['polygen_s']:.2f}x | {one[name] / r['polygen_s']:.2f}x | {r['bytes']:,} | "
                  f"{r['formula']:,} | {r['naive_bytes']:,} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
