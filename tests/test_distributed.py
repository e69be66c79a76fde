"""polygen's optimizers on torch.distributed (gloo, CPU) at W = 2 and 4: each run of tests/dist_worker.py checks
FSDP2-sharded (Shard(0) DTensor) and replicated (process_group=) Muon, MuonP and Shampoo bitwise against one
process over 3 steps (wide, tall, square, a mixed bucket, uneven rows, an empty shard, a bucket of three, 3-D
and conv parameters; Nesterov on and off, weight decay), the collectives and bytes per step against the formula, a NaN
on one rank, refused placements, tensor-parallel (Shard(1)) buckets by owner (bitwise) and by Gram
all-reduce (within float32 rounding), and a small FSDP2 model trained against one process; and a checkpoint
saved at one world size resumed at others. The ranks agree their verdict and leave without the interpreter's
teardown (where gloo processes abort about once in 20 launches); a rank's failure still fails the launch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def launch(world: int, checks: str = "all", where: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", POLYGEN_DIST_CHECKS=checks, POLYGEN_DIST_DIR=str(where or ""))
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={world}",
                           str(ROOT / "tests" / "dist_worker.py")], capture_output=True, text=True, timeout=600,
                          env=env, cwd=ROOT)


def run_worker(world: int, checks: str = "all", where: Path | None = None) -> dict:
    out = launch(world, checks, where)
    assert out.returncode == 0, (out.stdout[-3000:], out.stderr[-5000:])
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("{"))
    return json.loads(line)


@pytest.mark.parametrize("world", [2, 4])
def test_distributed_optimizers_match_one_process(world):
    report = run_worker(world)
    assert report["world"] == world
    modes = [(r["mode"], r["optimizer"], r["dtype"]) for r in report["results"] if "mode" in r]
    assert len(modes) == 8 and {m for m, _, _ in modes} == {"sharded", "replicated"}
    sharded = [r for r in report["results"] if r.get("mode") == "sharded"]
    # bf16 updates travel in bf16: half the bytes of float32
    by_dtype = {r["dtype"]: r["bytes_off"] for r in sharded if r["optimizer"] == "Muon"}
    assert by_dtype["torch.float32"] == 2 * by_dtype["torch.bfloat16"]
    assert {"raise": "raised", "skip": "skipped"} in report["results"]
    assert [r["shampoo"] for r in report["results"] if "shampoo" in r] == ["sharded", "replicated", "columns"]
    (tp,) = [r["tp_max_diff"] for r in report["results"] if "tp_max_diff" in r]
    assert tp["owner/float32"] == tp["owner/bfloat16"] == 0.0 and 0 < tp["gram/float32"] < 1e-5
    (model,) = [r for r in report["results"] if "fsdp_model_max_diff" in r]
    assert model["fsdp_model_max_diff"] < 1e-5  # FSDP2 training: close to one process, not bitwise


def test_one_rank_failing_fails_the_launch_with_its_traceback():
    """The workers leave through os._exit (tests/dist_worker.py leave()), which must not hide a failure: a check
    that raises on rank 1 only (after a collective every rank joined) fails the 4-rank launch, its traceback
    in the output, and rank 0 prints no report."""
    out = launch(4, "fail-on-rank-1")
    assert out.returncode != 0
    assert "AssertionError: deliberate failure on rank 1 (all_reduce gave 4)" in out.stderr, out.stderr[-5000:]
    assert "rank 1 failed" in out.stderr
    assert not [ln for ln in out.stdout.splitlines() if ln.startswith("{")]


def test_a_checkpoint_saved_at_two_ranks_resumes_at_four_and_one(tmp_path):
    """torch.distributed.checkpoint: Muon and Shampoo saved after 2 sharded steps at W = 2, loaded at W = 4 and
    at W = 1, take a step 3 bitwise one process's (Shampoo's factors load onto their new owners)."""
    both = ["Muon", "Shampoo"]
    assert run_worker(2, "dcp-save", tmp_path)["results"] == [{"saved_at": 2, "optimizer": o} for o in both]
    assert run_worker(4, "dcp-load", tmp_path)["results"] == [{"resumed_at": 4, "optimizer": o} for o in both]
    assert run_worker(1, "dcp-load", tmp_path)["results"] == [{"resumed_at": 1, "optimizer": o} for o in both]


def test_tensor_parallel_choice_follows_the_cost_model():
    """columns_choice (no processes needed): a very long sharded side makes the Gram way's m×m all-reduces
    cheaper than moving m×n columns to owners; square matrices at W = 2 go to owners; forced modes hold, and a
    plan without LONG_SIDE_SUMS (a sketched spec) is never run the Gram way."""
    import torch

    import polygen
    from polygen.optim.distributed import columns_choice

    ns5 = polygen.load("muon_ns5", backend="torch")._module("torch")
    mode, plan = columns_choice(ns5, 1, 128, 2**17, 8, torch.float32)
    assert mode == "gram" and ns5.LONG_SIDE_SUMS[plan] <= 2
    assert columns_choice(ns5, 24, 512, 512, 2, torch.float32) == ("owner", "")
    assert columns_choice(ns5, 1, 128, 2**17, 8, torch.float32, "owner") == ("owner", "")
    assert columns_choice(ns5, 24, 512, 512, 2, torch.float32, "gram")[0] == "gram"
    assert columns_choice(ns5, 4, 64, 32, 2, torch.float32, "gram") == ("owner", "")  # short side sharded
    prism = polygen.load("prism_polar", backend="torch")._module("torch")
    assert set(prism.LONG_SIDE_SUMS.values()) == {None}
    assert columns_choice(prism, 1, 128, 2**17, 8, torch.float32, "gram") == ("owner", "")


def test_long_side_sums_partials_and_adds_c_once(monkeypatch):
    """torch_ops.long_side unsharded is exactly sym_bmm/product; sharded, every rank's partial product is summed
    (here a stand-in all-reduce of two equal ranks) and beta·C added once — added per rank it would count W
    times, the DTensor Partial trap."""
    import torch
    import torch.distributed as dist

    from polygen.runtime import torch_ops

    gen = torch.Generator().manual_seed(0)
    X, C = torch.randn(3, 8, 20, generator=gen), torch.randn(3, 8, 8, generator=gen)
    plain = torch_ops.long_side(X, X.mT, C, 0.5, 2.0, sym=True)
    assert torch.equal(plain, torch_ops.sym_bmm(X, X.mT, C, 0.5, 2.0))
    monkeypatch.setattr(dist, "all_reduce", lambda t, group=None, **kw: t.mul_(2))
    with torch_ops.long_side_sharded(object()):
        both = torch_ops.long_side(X, X.mT, C, 0.5, 2.0, sym=True)
        norm = torch_ops.frobenius(X, torch.float32)
    torch.testing.assert_close(both, 2 * (2.0 * X @ X.mT) + 0.5 * C)
    torch.testing.assert_close(norm, torch.linalg.vector_norm(X, dim=(-2, -1), keepdim=True) * 2**0.5)


def test_generated_long_side_products_are_the_ir_s():
    """The torch module routes through _long_side exactly the products the IR says sum over the long side, and
    LONG_SIDE_SUMS counts them per plan (NS5: direct 5, float32 Gram 1, bfloat16 Gram 2 with its restart)."""
    import polygen
    from polygen.driver import compile_stages
    from polygen.ir.schedule import long_side_sums

    mod = polygen.load("muon_ns5", backend="torch")._module("torch")
    assert mod.LONG_SIDE_SUMS == {"direct": 5, "gram_float32": 1, "gram_bfloat16": 2}
    stages = compile_stages("muon_ns5")
    assert long_side_sums(stages.plans["float32"]["gram"]) == 1
    src = polygen.generate("muon_ns5")
    assert src.count("_long_side(") == src.count("X, X.mT") == 4  # direct loop body 1, Gram 1, Gram bf16 2
