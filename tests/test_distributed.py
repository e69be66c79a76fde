"""polygen's optimizers on torch.distributed (gloo, CPU) at W = 2 and 4: each run of tests/dist_worker.py checks
FSDP2-sharded (Shard(0) DTensor) and replicated (process_group=) Muon, MuonP and Shampoo bitwise against one
process over 3 steps (wide, tall, square, a mixed bucket, uneven rows, an empty shard, a bucket of three, 3-D
and conv parameters; Nesterov on and off, weight decay), the collectives and bytes per step against the formula, a NaN
on one rank, refused placements, and a small FSDP2 model trained against one process; and a checkpoint saved
at one world size resumed at others."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_worker(world: int, checks: str = "all", where: Path | None = None) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", POLYGEN_DIST_CHECKS=checks, POLYGEN_DIST_DIR=str(where or ""))
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
    assert [r["shampoo"] for r in report["results"] if "shampoo" in r] == ["sharded", "replicated"]
    (model,) = [r for r in report["results"] if "fsdp_model_max_diff" in r]
    assert model["fsdp_model_max_diff"] < 1e-5  # FSDP2 training: close to one process, not bitwise


def test_a_checkpoint_saved_at_two_ranks_resumes_at_four_and_one(tmp_path):
    """torch.distributed.checkpoint: saved after 2 sharded steps at W = 2, loaded at W = 4 and at W = 1, step 3
    is bitwise one process's step 3."""
    assert run_worker(2, "dcp-save", tmp_path)["results"] == [{"saved_at": 2}]
    assert run_worker(4, "dcp-load", tmp_path)["results"] == [{"resumed_at": 4}]
    assert run_worker(1, "dcp-load", tmp_path)["results"] == [{"resumed_at": 1}]
