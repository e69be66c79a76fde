"""polygen's optimizers on torch.distributed (gloo, CPU) at W = 2 and 4: each run of tests/dist_worker.py checks
FSDP2-sharded (Shard(0) DTensor) and replicated (process_group=) Muon and MuonP bitwise against one process
over 3 steps (wide, tall, square, a mixed bucket, uneven rows, an empty shard, a bucket of three, 3-D and conv
parameters; Nesterov on and off, weight decay), the collectives and bytes per step against the formula, a NaN
on one rank, and refused placements."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_worker(world: int, checks: str = "all") -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", POLYGEN_DIST_CHECKS=checks)
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={world}",
                          str(ROOT / "tests" / "dist_worker.py")], capture_output=True, text=True, timeout=600,
                         env=env, cwd=ROOT)
    assert out.returncode == 0, (out.stdout[-3000:], out.stderr[-5000:])
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("{"))
    return json.loads(line)


@pytest.mark.parametrize("world", [2, 4])
def test_distributed_optimizers_match_one_process(world):
    report = run_worker(world)
    assert report["world"] == world
    modes = [(r["mode"], r["optimizer"], r["dtype"]) for r in report["results"] if "mode" in r]
    assert len(modes) == 6 and {m for m, _, _ in modes} == {"sharded", "replicated"}
    sharded = [r for r in report["results"] if r.get("mode") == "sharded"]
    # bf16 updates travel in bf16: half the bytes of float32
    by_dtype = {r["dtype"]: r["bytes_off"] for r in sharded if r["optimizer"] == "Muon"}
    assert by_dtype["torch.float32"] == 2 * by_dtype["torch.bfloat16"]
    assert {"raise": "raised", "skip": "skipped"} in report["results"]
