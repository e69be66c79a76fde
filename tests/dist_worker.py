"""One rank of the distributed optimizer checks (tests/test_distributed.py runs it under torch.distributed.run
with gloo): each check raises on failure, and rank 0 prints one JSON line of what it measured once every rank
passed; ranks leave through os._exit (see leave())."""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import NoReturn

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from polygen.optim import Muon, MuonP  # noqa: E402
from polygen.optim import distributed as pd  # noqa: E402

# wide + tall (one mixed bucket), square, uneven rows, an empty shard at W = 4, a bucket of three (not divisible
# by W), a 3-D parameter in that bucket, a conv weight (flattened to 8 × 12)
SHAPES = [(16, 40), (40, 16), (24, 24), (7, 20), (3, 10), (12, 20), (12, 20), (20, 12), (2, 12, 20), (8, 3, 2, 2)]
STEPS = 3


def full_tensors(seed: int) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
    gen = torch.Generator().manual_seed(seed)
    params = [torch.randn(*s, generator=gen) for s in SHAPES]
    grads = [[torch.randn(*s, generator=gen) for s in SHAPES] for _ in range(STEPS)]
    return params, grads


def groups(params: list) -> list[dict]:
    """Two groups: Nesterov with weight decay, and plain momentum without."""
    half = len(params) // 2
    return [{"params": params[:half], "nesterov": True, "weight_decay": 0.1},
            {"params": params[half:], "nesterov": False, "weight_decay": 0.0}]


def rows_of(t: torch.Tensor, world: int, rank: int) -> torch.Tensor:
    counts = pd.row_counts(t.shape[0], world)
    start = sum(counts[:rank])
    return t[start:start + counts[rank]]


class Traffic:
    """Records every all_to_all_single / all_gather_single / all_reduce the optimizer issues: counts, and
    the bytes this rank sends to other ranks."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.bytes_off = 0
        self._orig = {k: getattr(dist, k) for k in ("all_to_all_single", "all_gather_single", "all_reduce")}

    def __enter__(self) -> Traffic:
        me, world = dist.get_rank(), dist.get_world_size()

        def a2a(out, inp, out_splits=None, in_splits=None, group=None):
            self.calls["all_to_all_single"] = self.calls.get("all_to_all_single", 0) + 1
            self.bytes_off += (inp.numel() - in_splits[me]) * inp.element_size()
            return self._orig["all_to_all_single"](out, inp, out_splits, in_splits, group=group)

        def gather(out, inp, group=None):
            self.calls["all_gather_single"] = self.calls.get("all_gather_single", 0) + 1
            self.bytes_off += inp.numel() * inp.element_size() * (world - 1)
            return self._orig["all_gather_single"](out, inp, group=group)

        def reduce(t, op=dist.ReduceOp.SUM, group=None):
            self.calls["all_reduce"] = self.calls.get("all_reduce", 0) + 1
            return self._orig["all_reduce"](t, op=op, group=group)

        for k, f in (("all_to_all_single", a2a), ("all_gather_single", gather), ("all_reduce", reduce)):
            setattr(pd.dist, k, f)
        return self

    def __exit__(self, *exc) -> None:
        for k, f in self._orig.items():
            setattr(pd.dist, k, f)


def expected_sharded_bytes(world: int, rank: int, ns_dtype: torch.dtype, counted: list[int]) -> int:
    """Bytes this rank sends off-rank per step in the sharded mode: its rows of every matrix another rank owns,
    there, plus the rows of its own matrices every other rank holds, back (entry i → rank i mod W, per bucket)."""
    item = torch.empty((), dtype=ns_dtype).element_size()
    total = 0
    for bucket in counted:
        for i, s in enumerate(bucket):
            rows, inner = pd.row_counts(s[0], world), int(torch.Size(s[1:]).numel())
            own = i % world
            if own != rank:
                total += rows[rank] * inner * item
            else:
                total += sum(rows[r] for r in range(world) if r != rank) * inner * item
    return total


def buckets_of(shapes: list[tuple[int, ...]]) -> list[list[tuple[int, ...]]]:
    """The optimizer's buckets (same short and long side), in parameter order, over both groups."""
    from polygen.optim._common import matrix_shape

    out: dict[tuple, list] = {}
    for s in shapes:
        _, m, n = matrix_shape(s)
        out.setdefault((min(m, n), max(m, n)), []).append(s)
    return list(out.values())


def check_mode(mode: str, cls: type, ns_dtype: torch.dtype, world: int, rank: int) -> dict:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor
    from torch.distributed.tensor.debug import CommDebugMode

    params, grads = full_tensors(seed=1)
    mesh = init_device_mesh("cpu", (world,))
    ref_params = [torch.nn.Parameter(p.clone()) for p in params]
    ref = cls(groups(ref_params), lr=0.02, ns_dtype=ns_dtype)
    if mode == "sharded":
        ours = [torch.nn.Parameter(distribute_tensor(p.clone(), mesh, [Shard(0)])) for p in params]
        opt = cls(groups(ours), lr=0.02, ns_dtype=ns_dtype)
    else:
        ours = [torch.nn.Parameter(p.clone()) for p in params]
        opt = cls(groups(ours), lr=0.02, ns_dtype=ns_dtype, process_group=dist.group.WORLD)

    seen_inputs = []
    orig = opt.orthogonalize

    def spy(fn, X):
        seen_inputs.append(type(X).__name__)
        return orig(fn, X)

    opt.orthogonalize = spy
    traffic = None
    dispatched: dict[str, int] = {}
    for step in range(STEPS):
        for p, q, g in zip(ours, ref_params, grads[step]):
            q.grad = g.clone()
            p.grad = distribute_tensor(g.clone(), mesh, [Shard(0)]) if mode == "sharded" else g.clone()
        with Traffic() as t, CommDebugMode() as comm:
            opt.step()
        traffic = traffic or t
        # every collective the dispatcher saw, DTensor's implicit ones included
        dispatched = dispatched or {str(k): v for k, v in comm.get_comm_counts().items()}
        ref.step()
        for i, (p, q) in enumerate(zip(ours, ref_params)):
            got = p.to_local() if mode == "sharded" else p.detach()
            want = rows_of(q.detach(), world, rank) if mode == "sharded" else q.detach()
            if not torch.equal(got, want):
                raise AssertionError(f"{mode} {cls.__name__} {ns_dtype} step {step} param {SHAPES[i]} rank {rank}: "
                                     f"max diff {(got - want).abs().max().item():.3e}")
    assert set(seen_inputs) == {"Tensor"}, seen_inputs  # no DTensor ever reaches a generated plan
    if mode == "sharded":  # momentum state stays sharded
        buf = opt.state[ours[0]]["momentum_buffer"]
        assert pd.is_dtensor(buf) and buf.to_local().shape[0] == pd.row_counts(SHAPES[0][0], world)[rank]
    assert traffic is not None
    nb = len(buckets_of(SHAPES))
    calls = traffic.calls
    if mode == "sharded":
        assert calls == {"all_to_all_single": 2 * nb, "all_reduce": 1}, calls
        assert dispatched == {"c10d.alltoall_base_": 2 * nb, "c10d.allreduce_": 1}, dispatched  # no all-gather
        want = expected_sharded_bytes(world, rank, ns_dtype, buckets_of(SHAPES))
        assert traffic.bytes_off == want, (traffic.bytes_off, want)
    else:
        assert calls == {"all_gather_single": nb, "all_reduce": 1}, calls
        assert dispatched == {"c10d._allgather_base_": nb, "c10d.allreduce_": 1}, dispatched
    return {"mode": mode, "optimizer": cls.__name__, "dtype": str(ns_dtype), "calls": calls,
            "bytes_off": traffic.bytes_off}


def check_shampoo(mode: str, world: int, rank: int) -> dict:
    """Shampoo sharded by parameter: its owner keeps the factors and roots and computes the blocks (blocks of
    at most 16 here, roots every step from step 2, Adam grafting before), bitwise one process over 3 steps; a
    1-D parameter takes the local Adam path."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    from polygen.optim import Shampoo

    params, grads = full_tensors(seed=4)
    gen = torch.Generator().manual_seed(4)  # the same on every rank
    params.append(torch.randn(10, generator=gen))
    for g in grads:
        g.append(torch.randn(10, generator=gen))
    mesh = init_device_mesh("cpu", (world,))
    kw = dict(lr=0.01, max_preconditioner_dim=16, precondition_frequency=1, start_preconditioning_step=2,
              momentum=0.5, nesterov=True, weight_decay=0.01)
    ref_params = [torch.nn.Parameter(p.clone()) for p in params]
    ref = Shampoo(groups(ref_params), **kw)
    # "columns": 2-D parameters Shard(1) (tensor parallel), the rest Shard(0)
    place = [[Shard(1) if mode == "columns" and p.ndim == 2 else Shard(0)] for p in params]
    if mode != "replicated":
        ours = [torch.nn.Parameter(distribute_tensor(p.clone(), mesh, pl)) for p, pl in zip(params, place)]
        opt = Shampoo(groups(ours), **kw)
    else:
        ours = [torch.nn.Parameter(p.clone()) for p in params]
        opt = Shampoo(groups(ours), process_group=dist.group.WORLD, **kw)
    calls = None
    for step in range(STEPS):
        for p, q, g, pl in zip(ours, ref_params, grads[step], place):
            q.grad = g.clone()
            p.grad = distribute_tensor(g.clone(), mesh, pl) if mode != "replicated" else g.clone()
        with Traffic() as t:
            opt.step()
        calls = calls or t.calls
        ref.step()
        for p, q, pl in zip(ours, ref_params, place):
            got = p.to_local() if mode != "replicated" else p.detach()
            want = q.detach()
            if mode != "replicated":
                want = rows_of(want.mT, world, rank).mT if pl[0].dim == 1 else rows_of(want, world, rank)
            if not torch.equal(got, want):
                raise AssertionError(f"Shampoo {mode} step {step} param {tuple(q.shape)} rank {rank}: "
                                     f"max diff {(got - want).abs().max().item():.3e}")
    owned = sum("factor_L" in opt.state[p] for p in ours if p.ndim >= 2)
    matrices = sum(p.ndim >= 2 for p in ours)
    assert owned == len([k for k in range(matrices) if k % world == rank]), owned  # factors on owners only
    if mode == "replicated":
        assert calls == {"all_gather_single": 2, "all_reduce": 1}, calls  # two param groups
    else:  # two param groups; for "columns" the first all Shard(1), the second both kinds (3-D and 4-D Shard(0))
        assert calls == {"all_to_all_single": 4 if mode == "sharded" else 6, "all_reduce": 1}, calls
    return {"shampoo": mode, "calls": calls}


TP_SHAPES = [(16, 40), (16, 40), (16, 40), (24, 24), (12, 48), (48, 12)]  # the last: Shard(1) on its short side


def check_tp(world: int, rank: int) -> dict:
    """Matrices sharded by columns (Shard(1), tensor parallel), 3 steps: forced "owner" is bitwise one process;
    forced "gram" (every rank's columns, one all-reduce per long-side product and norm) is within float32
    rounding of it, with the collectives the plan's LONG_SIDE_SUMS say; "auto" takes the cost model's pick."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    import polygen

    mesh = init_device_mesh("cpu", (world,))
    gen = torch.Generator().manual_seed(6)
    params = [torch.randn(*s, generator=gen) for s in TP_SHAPES]
    grads = [[torch.randn(*s, generator=gen) for s in TP_SHAPES] for _ in range(STEPS)]
    out: dict = {}
    for mode in ("owner", "gram", "auto"):
        for ns_dtype in (torch.float32, torch.bfloat16):
            ref_params = [torch.nn.Parameter(p.clone()) for p in params]
            ref = Muon(ref_params, lr=0.02, ns_dtype=ns_dtype)
            ours = [torch.nn.Parameter(distribute_tensor(p.clone(), mesh, [Shard(1)])) for p in params]
            opt = Muon(ours, lr=0.02, ns_dtype=ns_dtype, tp_mode=mode)
            worst = 0.0
            calls = None
            for step in range(STEPS):
                for p, q, g in zip(ours, ref_params, grads[step]):
                    q.grad = g.clone()
                    p.grad = distribute_tensor(g.clone(), mesh, [Shard(1)])
                with Traffic() as t:
                    opt.step()
                calls = calls or t.calls
                ref.step()
                for p, q in zip(ours, ref_params):
                    got = p.detach().to_local()
                    counts = pd.row_counts(q.shape[1], world)
                    want = q.detach()[:, sum(counts[:rank]):sum(counts[:rank + 1])]
                    worst = max(worst, float((got - want).abs().max()))
                    if mode == "owner" and not torch.equal(got, want):
                        raise AssertionError(f"tp owner {ns_dtype} step {step} {tuple(q.shape)}: {worst:.3e}")
            tol = {torch.float32: 1e-5, torch.bfloat16: 2e-3}[ns_dtype]  # 0.02 · the update's rounding
            if worst > tol:
                raise AssertionError(f"tp {mode} {ns_dtype}: max diff {worst:.3e} > {tol}")
            fn = polygen.load("muon_ns5", backend="torch")
            mod = fn._module("torch")

            def choice(k: int, m: int, n: int, fn=fn, mod=mod, dt=ns_dtype) -> str:
                """The Gram way's plan among those the optimizer's accuracy policy admits (guard)."""
                allowed = {fn.plan_for((m, n), dt, "torch")}
                return pd.columns_choice(mod, k, m, n, world, dt, "gram", allowed)[1]

            if mode == "gram":
                wide = [(16, 40, 3), (24, 24, 1), (12, 48, 1)]  # buckets whose long side is sharded
                sums = 0
                for m, n, k in wide:
                    sums += mod.LONG_SIDE_SUMS[choice(k, m, n)] + 1
                # 48x12 (short side sharded) shares 12x48's bucket: that bucket goes the owner way
                sums -= mod.LONG_SIDE_SUMS[choice(1, 12, 48)] + 1
                assert calls == {"all_reduce": sums + 1, "all_to_all_single": 2}, (calls, sums)
            out[f"{mode}/{str(ns_dtype)[6:]}"] = worst
    # rows sharded on the long side (Shard(0) of tall matrices, ColwiseParallel's weights): the Gram way on the
    # transposes when forced, within float32 rounding, with no all-to-all
    tall = [(40, 16), (40, 16), (48, 12)]
    params = [torch.randn(*s, generator=gen) for s in tall]
    grads = [[torch.randn(*s, generator=gen) for s in tall] for _ in range(STEPS)]
    ref_params = [torch.nn.Parameter(p.clone()) for p in params]
    ref = Muon(ref_params, lr=0.02, ns_dtype=torch.float32)
    ours = [torch.nn.Parameter(distribute_tensor(p.clone(), mesh, [Shard(0)])) for p in params]
    opt = Muon(ours, lr=0.02, ns_dtype=torch.float32, tp_mode="gram")
    worst = 0.0
    for step in range(STEPS):
        for p, q, g in zip(ours, ref_params, grads[step]):
            q.grad = g.clone()
            p.grad = distribute_tensor(g.clone(), mesh, [Shard(0)])
        with Traffic() as t:
            opt.step()
        ref.step()
        assert "all_to_all_single" not in t.calls and t.calls["all_reduce"] >= 3, t.calls
        for p, q in zip(ours, ref_params):
            worst = max(worst, float((p.detach().to_local() - rows_of(q.detach(), world, rank)).abs().max()))
    if worst > 1e-5:
        raise AssertionError(f"tp gram on Shard(0) rows: max diff {worst:.3e}")
    out["gram-rows/float32"] = worst
    return {"tp_max_diff": out}


def check_nonfinite(world: int, rank: int) -> dict:
    """One rank's NaN: every rank raises (nothing changed), or every rank skips."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    from polygen.optim import NonFiniteGradError

    mesh = init_device_mesh("cpu", (world,))
    params, grads = full_tensors(seed=2)
    out = {}
    for mode in ("raise", "skip"):
        ps = [torch.nn.Parameter(distribute_tensor(p.clone(), mesh, [Shard(0)])) for p in params[:3]]
        opt = Muon(ps, lr=0.02, nonfinite=mode)
        for p, g in zip(ps, grads[0]):
            p.grad = distribute_tensor(g.clone(), mesh, [Shard(0)])
        if rank == world - 1:
            ps[1].grad.to_local().view(-1)[0] = float("nan")
        before = [p.to_local().clone() for p in ps]
        raised = False
        try:
            opt.step()
        except NonFiniteGradError:
            raised = True
        assert raised == (mode == "raise"), (mode, raised)
        assert all(torch.equal(p.to_local(), b) for p, b in zip(ps, before))
        assert opt.state == {} or all(len(s) == 0 for s in opt.state.values())
        if mode == "skip":
            assert opt.skipped_steps == 1
        out[mode] = "raised" if raised else "skipped"
    return out


def check_refusals(world: int) -> dict:
    """Shard(1) of a 3-D parameter is refused at construction, naming the parameter; a DTensor given to a generated
    function is a TypeError (the Partial regression: it used to run, 5 % off one process)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    import polygen

    mesh = init_device_mesh("cpu", (world,))
    try:
        polygen.load("muon_ns5", backend="torch")(distribute_tensor(torch.randn(8, 12), mesh, [Shard(0)]))
    except TypeError as e:
        assert "runs on local tensors, got a DTensor" in str(e), e
    else:
        raise AssertionError("a DTensor ran through a generated plan")
    p = torch.nn.Parameter(distribute_tensor(torch.randn(2, 8, 12), mesh, [Shard(1)]))
    try:
        Muon([("blocks.0.weight", p)])
    except ValueError as e:
        assert "blocks.0.weight" in str(e) and "Shard(dim=1)" in str(e), e
        return {"refused": str(e)[:80]}
    raise AssertionError("Shard(1) of a 3-D parameter was accepted")


def check_fsdp_model(world: int, rank: int) -> dict:
    """A small MLP under FSDP2's fully_shard trained 3 steps with Muon against the same model in one process on
    the whole batch: close, not bitwise (the gradients' reduce-scatter sums in another order)."""
    import copy

    from torch.distributed.fsdp import fully_shard

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 48, bias=False), torch.nn.Tanh(),
                                torch.nn.Linear(48, 24, bias=False), torch.nn.Tanh(),
                                torch.nn.Linear(24, 8, bias=False))
    ref = copy.deepcopy(model)
    for layer in model:
        if isinstance(layer, torch.nn.Linear):
            fully_shard(layer)
    fully_shard(model)
    opt = Muon(model.parameters(), lr=0.05, ns_dtype=torch.float32)
    ref_opt = Muon(ref.parameters(), lr=0.05, ns_dtype=torch.float32)
    gen = torch.Generator().manual_seed(5)
    worst = 0.0
    for _ in range(3):
        x, y = torch.randn(8 * world, 16, generator=gen), torch.randn(8 * world, 8, generator=gen)
        mine = slice(8 * rank, 8 * (rank + 1))
        torch.nn.functional.mse_loss(model(x[mine]), y[mine]).backward()
        torch.nn.functional.mse_loss(ref(x), y).backward()
        opt.step()
        ref_opt.step()
        opt.zero_grad()
        ref_opt.zero_grad()
        for p, q in zip(model.parameters(), ref.parameters()):
            full, q = p.detach().full_tensor(), q.detach()
            worst = max(worst, float((full - q).abs().max()))
            torch.testing.assert_close(full, q, rtol=1e-4, atol=1e-5)
    return {"fsdp_model_max_diff": worst}


class Params(torch.nn.Module):
    """The optimizer-only parameters as a module, so torch.distributed.checkpoint.state_dict can key them."""

    def __init__(self, params: list[torch.nn.Parameter]):
        super().__init__()
        for i, p in enumerate(params):
            self.register_parameter(f"p{i}", p)


def check_dcp(world: int, rank: int, phase: str, where: str, cls: type = Muon) -> dict:
    """Save after 2 sharded steps at one world size; load at another and take step 3, which must equal the
    single-process step 3 (written by the saving run) bitwise. Shampoo's factors and roots live on each
    matrix's owner, which another world size changes: they load onto the new owners."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
        set_model_state_dict,
        set_optimizer_state_dict,
    )
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    params, grads = full_tensors(seed=3)
    mesh = init_device_mesh("cpu", (world,))
    ours = [torch.nn.Parameter(distribute_tensor(p.clone(), mesh, [Shard(0)])) for p in params]
    module = Params(ours)
    kw = ({"lr": 0.02, "ns_dtype": torch.float32} if cls is Muon else
          {"lr": 0.01, "max_preconditioner_dim": 16, "precondition_frequency": 1, "start_preconditioning_step": 2})
    where = os.path.join(where, cls.__name__)
    os.makedirs(where, exist_ok=True)
    opt = cls(groups(ours), **kw)

    def step(k: int) -> None:
        for p, g in zip(ours, grads[k]):
            p.grad = distribute_tensor(g.clone(), mesh, [Shard(0)])
        opt.step()

    if phase == "save":
        for k in range(2):
            step(k)
        dcp.save({"model": get_model_state_dict(module), "optim": get_optimizer_state_dict(module, opt)},
                 checkpoint_id=os.path.join(where, "ckpt"))
        ref_params = [torch.nn.Parameter(p.clone()) for p in params]
        ref = cls(groups(ref_params), **kw)
        for k in range(3):
            for q, g in zip(ref_params, grads[k]):
                q.grad = g.clone()
            ref.step()
        if rank == 0:
            torch.save([q.detach() for q in ref_params], os.path.join(where, "expected.pt"))
        dist.barrier()
        return {"saved_at": world, "optimizer": cls.__name__}
    sd = {"model": get_model_state_dict(module), "optim": get_optimizer_state_dict(module, opt)}
    dcp.load(sd, checkpoint_id=os.path.join(where, "ckpt"))
    set_model_state_dict(module, sd["model"])
    set_optimizer_state_dict(module, opt, sd["optim"])
    step(2)
    expected = torch.load(os.path.join(where, "expected.pt"))
    for i, (p, q) in enumerate(zip(ours, expected)):
        if not torch.equal(p.to_local(), rows_of(q, world, rank)):
            raise AssertionError(f"{cls.__name__} resumed at W = {world}: param {SHAPES[i]} differs from one "
                                 "process's step 3")
    return {"resumed_at": world, "optimizer": cls.__name__}


def run_checks(world: int, rank: int, which: str) -> list[dict]:
    results = []
    if which == "fail-on-rank-1":  # tests/test_distributed.py: one rank's failure must fail the launch, shown
        flag = torch.ones(1)
        dist.all_reduce(flag)
        if rank == 1:
            raise AssertionError(f"deliberate failure on rank 1 (all_reduce gave {flag.item():g})")
        dist.barrier()
        return results
    if which.startswith("dcp-"):
        from polygen.optim import Shampoo

        for cls in (Muon, Shampoo):
            results.append(check_dcp(world, rank, which[4:], os.environ["POLYGEN_DIST_DIR"], cls))
        return results
    for mode in ("sharded", "replicated"):
        for cls, ns_dtype in ((Muon, torch.bfloat16), (Muon, torch.float32), (MuonP, torch.bfloat16),
                              (MuonP, torch.float32)):
            if which == "all" or (cls is Muon and ns_dtype == torch.bfloat16):
                results.append(check_mode(mode, cls, ns_dtype, world, rank))
    for mode in ("sharded", "replicated", "columns"):
        results.append(check_shampoo(mode, world, rank))
    results.append(check_tp(world, rank))
    results.append(check_nonfinite(world, rank))
    results.append(check_refusals(world))
    results.append(check_fsdp_model(world, rank))
    return results


def leave(code: int) -> NoReturn:
    """Exit with ``code`` without the interpreter's teardown: about 1 launch in 20 of gloo processes aborts there
    (``terminate called without an active exception``, SIGABRT) after every rank finished its work, with or
    without polygen. Output is flushed first; the process group is destroyed on the agreed, passing path."""
    sys.stdout.flush()
    sys.stderr.flush()
    if code == 0 and dist.is_initialized():
        dist.destroy_process_group()
    os._exit(code)


def main() -> None:
    """Every rank runs the checks. A rank whose check raises prints its traceback and exits 1 at once: the other
    ranks may be waiting in a collective it will never join, so agreeing a verdict by another collective would
    hang; the launcher sees the exit code, stops the rest and fails the launch, showing that rank's error. The
    ranks that pass meet at a barrier (so none leaves while another still checks), rank 0 prints the report, and
    every rank exits 0 through leave()."""
    dist.init_process_group("gloo")
    torch.use_deterministic_algorithms(True)  # a matrix's result independent of its batch (see torch_ops)
    world, rank = dist.get_world_size(), dist.get_rank()
    try:
        results = run_checks(world, rank, os.environ.get("POLYGEN_DIST_CHECKS", "all"))
    except BaseException:
        traceback.print_exc()
        print(f"dist_worker: rank {rank} failed (traceback above)", file=sys.stderr)
        leave(1)
    dist.barrier()  # every rank passed: a failing one left with 1 above, and the launcher fails the launch
    if rank == 0:
        print(json.dumps({"world": world, "results": results}))
    leave(0)


if __name__ == "__main__":
    main()
