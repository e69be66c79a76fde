"""polygen's Muon under FSDP2, on two CPU processes with gloo:

    OMP_NUM_THREADS=1 python -m torch.distributed.run --standalone --nproc-per-node 2 docs/examples/dist_muon.py

Each weight is sharded by rows (fully_shard); polygen.optim.Muon sends each matrix's rows to one owner rank,
orthogonalizes there in one batched call per shape, and sends the rows back (polygen.optim.distributed).

The ranks leave through os._exit after a last barrier: about 1 launch in 20 of gloo processes aborts in the
interpreter's teardown ("terminate called without an active exception"), with or without polygen. A rank that
raises prints its traceback and exits 1, which fails the launch.
"""

import os
import sys
import traceback

import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard

from polygen.optim import Muon


def main() -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256, bias=False), torch.nn.GELU(),
                                torch.nn.Linear(256, 256, bias=False), torch.nn.GELU(),
                                torch.nn.Linear(256, 10, bias=False))
    for layer in model:
        if isinstance(layer, torch.nn.Linear):
            fully_shard(layer)
    fully_shard(model)
    opt = Muon(model.parameters(), lr=0.02, weight_decay=0.0)
    gen = torch.Generator().manual_seed(1 + rank)  # each rank its own batches
    target = torch.randn(64, 10, generator=torch.Generator().manual_seed(0)) / 8  # outputs of unit scale
    for step in range(40):
        x = torch.randn(32, 64, generator=gen)
        loss = torch.nn.functional.mse_loss(model(x), x @ target)
        loss.backward()
        opt.step()
        opt.zero_grad()
        if step % 10 == 9:
            total = loss.detach().clone()
            dist.all_reduce(total)
            if rank == 0:
                print(f"step {step + 1}: loss {total.item() / world:.4f} (W = {world}, FSDP2 + polygen Muon)")
    dist.barrier()  # every rank got here: the run passed


def leave(code: int) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    if code == 0:
        dist.destroy_process_group()
    os._exit(code)


if __name__ == "__main__":
    try:
        main()
    except BaseException:
        traceback.print_exc()
        leave(1)
    leave(0)
