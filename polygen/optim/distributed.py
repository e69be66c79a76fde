"""Where a matrix optimizer's work runs across ranks, on torch.distributed itself (no engine of its own).

Three layouts of a parameter are distributed (every other DTensor placement is refused by name):

* **sharded** — a DTensor ``Shard(0)`` on a 1-D mesh, as FSDP2's ``fully_shard`` leaves it. Each matrix of a
  bucket has one owner rank (entry i → rank i mod W); one ``all_to_all_single`` sends every rank's rows of the
  bucket's updates to their owners, each owner runs one batched polygen call on whole matrices, and a second
  one sends the rows back. No generated plan ever sees a DTensor (a ``Partial`` DTensor through a plan's
  in-place diagonal add adds the constant once per rank). Bytes off-rank per step: about 2(W−1)/W² of the
  bucket's updates in the iteration dtype, against (W−1)/W to gather them.
* **columns** — ``Shard(1)`` of a 2-D matrix (tensor parallel). When the sharded side is the long one (also
  for ``Shard(0)`` of tall matrices), every rank may instead run the plan on its own columns, each product
  over the long side and each norm summed by one all-reduce (torch_ops.long_side_sharded); columns_choice
  prices that against the owners' all-to-all per bucket.
* **replicated** — plain tensors with ``process_group=`` given (DDP): rank i mod W computes entry i, and one
  ``all_gather_single`` per bucket shares the results.

Muon and MuonP distribute by matrix; Shampoo by matrix parameter, whose owner keeps its factors and roots.

Every rank builds the same buckets in the same order (checked at construction, see ``check_same_layout``),
so the collectives pair up; the non-finite guard is reduced over the group, so one rank's NaN makes every
rank raise or skip. A matrix's result does not depend on the rest of its batch under
``torch.use_deterministic_algorithms(True)`` (polygen.runtime.torch_ops), which makes the owner and
replicated ways bitwise the single-process step on the CPU (the Gram way sums in another order: float32
rounding apart).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.distributed as dist
from torch import Tensor

LOCAL, SHARDED, COLUMNS, REPLICATED = "local", "sharded", "columns", "replicated"
TP_MODES = ("auto", "gram", "owner")


@dataclass(frozen=True)
class Layout:
    """How one parameter lives across ranks: LOCAL (every rank computes it), SHARDED (rows on dim 0 of a 1-D
    mesh), COLUMNS (a matrix's columns, Shard(1), as tensor parallelism shards) or REPLICATED (the same
    tensor on every rank of ``group``, work shared out)."""

    kind: str
    group: Any = None

    @property
    def world(self) -> int:
        return 1 if self.kind == LOCAL else dist.get_world_size(self.group)

    @property
    def rank(self) -> int:
        return 0 if self.kind == LOCAL else dist.get_rank(self.group)


def plan_seconds(mod: Any, name: str, m: int, n: int, dtype: torch.dtype) -> float:
    """The cost model's estimate for one (m, n) matrix (m <= n) through plan ``name`` of a generated module."""
    from polygen.runtime.torch_ops import dtype_class

    fn = mod.PLAN_FUNCTIONS[name]
    poly = next(p for f, p in mod._PLANS[dtype_class(dtype)] if f is fn)
    return float(sum(c * m**i * n**j for (i, j), c in poly))


def columns_choice(mod: Any, count: int, m: int, n: int, world: int, dtype: torch.dtype,
                   mode: str = "auto", allowed: Collection[str] | None = None) -> tuple[str, str]:
    """How a bucket of ``count`` (m, n) matrices with their n columns sharded over ``world`` ranks runs:
    ("gram", plan) — every rank runs ``plan`` on its columns of all of them, each long-side sum and norm one
    all-reduce of k·m² floats — or ("owner", "") — the columns move to one owner per matrix by two
    all-to-alls. The cheaper by the cost model plus tuning.collective_seconds per collective; ``mode`` forces
    one ("gram" where it applies: m <= n and a plan without sketches or fitted scalars). ``allowed``: the plans
    the function's accuracy policy admits for this problem (None: all)."""
    from polygen.runtime.torch_ops import rank_plans
    from polygen.runtime.tuning import collective_seconds

    item = torch.empty((), dtype=dtype).element_size()
    names = {f: k for k, f in mod.PLAN_FUNCTIONS.items()}
    sums = getattr(mod, "LONG_SIDE_SUMS", {})
    rescale = 1 if getattr(mod.PROBLEM, "rescale", "none") == "rms" else 0
    grams: list[tuple[float, str]] = []
    if m <= n:
        for fn in rank_plans(mod._PLANS, m, n, dtype):
            name = names[fn]
            if sums.get(name) is None or (allowed is not None and name not in allowed):
                continue
            collectives = sums[name] + 1 + rescale  # + the input's norm (+ the rms rescale's)
            grams.append((count * plan_seconds(mod, name, m, -(-n // world), dtype)
                          + collectives * collective_seconds(count * m * m * 4), name))
    best = next(names[fn] for fn in rank_plans(mod._PLANS, min(m, n), max(m, n), dtype)
                if allowed is None or names[fn] in allowed)
    owner_s = (-(-count // world) * plan_seconds(mod, best, min(m, n), max(m, n), dtype)
               + 2 * collective_seconds(2 * (world - 1) / world**2 * count * m * n * item))
    if mode == "owner" or not grams:
        return "owner", ""
    gram_s, plan = min(grams)
    if mode == "gram" or gram_s < owner_s:
        return "gram", plan
    return "owner", ""


def is_dtensor(t: Any) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


def layout_of(p: Tensor, label: str, process_group: Any = None) -> Layout:
    """The parameter's layout, or ValueError naming it for a placement polygen does not distribute."""
    if not is_dtensor(p):
        if process_group is not None and dist.get_world_size(process_group) > 1:
            return Layout(REPLICATED, process_group)
        return Layout(LOCAL)
    from torch.distributed.tensor import Replicate, Shard

    dt: Any = p
    mesh, placements = dt.device_mesh, dt.placements
    if mesh.ndim != 1:
        raise ValueError(f"parameter {label}: a DTensor on a {mesh.ndim}-D device mesh ({placements}) is not "
                         "supported; polygen distributes Shard(0) (FSDP2) and Replicate() DTensors on 1-D meshes")
    (pl,) = placements
    if type(pl) is Shard and pl.dim == 0:
        return Layout(SHARDED, mesh.get_group())
    if type(pl) is Shard and pl.dim == 1 and p.ndim == 2:
        return Layout(COLUMNS, mesh.get_group())
    if type(pl) is Replicate:
        return Layout(REPLICATED, mesh.get_group()) if mesh.size() > 1 else Layout(LOCAL)
    raise ValueError(f"parameter {label}: DTensor placement {pl!r} is not supported; polygen distributes "
                     "Shard(0) (FSDP2), Shard(1) of 2-D matrices (tensor parallel) and Replicate() DTensors on 1-D "
                     "meshes")


def local(t: Tensor) -> Tensor:
    """The rank's own part of a DTensor (a view of its storage: in-place updates land in the parameter), or t."""
    return cast(Tensor, cast(Any, t).to_local()) if is_dtensor(t) else t


def row_counts(rows: int, world: int) -> list[int]:
    """Rows of dim 0 each rank holds under Shard(0): torch.chunk's split (ceil-sized chunks, the last ranks
    possibly short or empty), as DTensor and FSDP2 shard."""
    chunk = -(-rows // world) if rows else 0
    return [max(0, min(chunk, rows - r * chunk)) for r in range(world)]


def owner(i: int, world: int) -> int:
    return i % world


def owners_compute(parts: Sequence[Tensor], shapes: Sequence[torch.Size], dtype: torch.dtype, group: Any,
                   compute: Callable[[list[Tensor]], list[Tensor]], owners: Sequence[int] | None = None,
                   out_shapes: Sequence[torch.Size] | None = None) -> list[Tensor]:
    """Entry i's result, this rank's rows of it, where rank ``owners[i]`` (default i mod W) computes entry i
    whole.

    ``parts[i]``: this rank's rows (dim 0) of entry i, of global shape ``shapes[i]``; ``compute`` maps the
    whole tensors this rank owns (in ``dtype``, entry order) to results of ``out_shapes`` (default: the same
    shapes; the same number of rows). Two ``all_to_all_single`` calls, in ``dtype``.
    """
    world, me = dist.get_world_size(group), dist.get_rank(group)
    n = len(shapes)
    out_shapes = list(out_shapes) if out_shapes is not None else list(shapes)
    rows = [row_counts(s[0], world) for s in shapes]
    inner = [math.prod(s[1:]) for s in shapes]
    inner_out = [math.prod(s[1:]) for s in out_shapes]
    who = list(owners) if owners is not None else [owner(i, world) for i in range(n)]
    by_owner = [[i for i in range(n) if who[i] == r] for r in range(world)]
    mine = by_owner[me]
    device = parts[0].device if parts else torch.device("cpu")
    # to the owners: for each destination, my rows of each entry it owns
    send_splits = [sum(rows[i][me] * inner[i] for i in by_owner[r]) for r in range(world)]
    recv_splits = [sum(rows[i][r] * inner[i] for i in mine) for r in range(world)]
    send = _flat([parts[i].to(dtype) for r in range(world) for i in by_owner[r]], dtype, device)
    recv = send.new_empty(sum(recv_splits))
    dist.all_to_all_single(recv, send, recv_splits, send_splits, group=group)
    pieces = [c.split([rows[i][r] * inner[i] for i in mine]) for r, c in enumerate(recv.split(recv_splits))]
    wholes = [torch.cat([pieces[r][j].view(rows[i][r], *shapes[i][1:]) for r in range(world)])
              for j, i in enumerate(mine)]
    results = compute(wholes) if wholes else []
    # and back: for each rank, its rows of each result I computed
    back: list[list[Tensor]] = [[] for _ in range(world)]
    for j, i in enumerate(mine):
        for r, piece in enumerate(results[j].to(dtype).reshape(out_shapes[i][0], inner_out[i]).split(rows[i])):
            back[r].append(piece)
    back_send = [sum(rows[i][r] * inner_out[i] for i in mine) for r in range(world)]
    back_recv = [sum(rows[i][me] * inner_out[i] for i in by_owner[r]) for r in range(world)]
    send = _flat([t for r in range(world) for t in back[r]], dtype, device)
    recv = send.new_empty(sum(back_recv))
    dist.all_to_all_single(recv, send, back_recv, back_send, group=group)
    out: list[Tensor] = [torch.empty(0)] * n
    for r, chunk in enumerate(recv.split(back_recv)):
        for i, t in zip(by_owner[r], chunk.split([rows[i][me] * inner_out[i] for i in by_owner[r]])):
            out[i] = t.view(rows[i][me], *out_shapes[i][1:])
    return out


def shared_compute(wholes: Sequence[Tensor], dtype: torch.dtype, group: Any,
                   compute: Callable[[list[Tensor]], list[Tensor]], owners: Sequence[int] | None = None,
                   out_shapes: Sequence[torch.Size] | None = None) -> list[Tensor]:
    """Entry i's result (of ``out_shapes[i]``, default the input's shape) on every rank, computed by rank
    ``owners[i]`` (default i mod W) and shared by one all_gather_single (each rank's results padded to the
    largest share)."""
    world, me = dist.get_world_size(group), dist.get_rank(group)
    n = len(wholes)
    shapes = list(out_shapes) if out_shapes is not None else [w.shape for w in wholes]
    who = list(owners) if owners is not None else [owner(i, world) for i in range(n)]
    by_owner = [[i for i in range(n) if who[i] == r] for r in range(world)]
    sizes = [sum(math.prod(shapes[i]) for i in idx) for idx in by_owner]
    width = max(sizes)
    device = wholes[0].device
    mine = by_owner[me]
    results = compute([wholes[i].to(dtype) for i in mine]) if mine else []
    send = torch.zeros(width, dtype=dtype, device=device)
    if mine:
        send[:sizes[me]] = _flat([r.to(dtype) for r in results], dtype, device)
    gathered = send.new_empty(world * width)
    dist.all_gather_single(gathered, send, group=group)
    out: list[Tensor] = [torch.empty(0)] * n
    for r, row in enumerate(gathered.view(world, width)):
        offset = 0
        for i in by_owner[r]:
            k = math.prod(shapes[i])
            out[i] = row[offset:offset + k].view(shapes[i])
            offset += k
    return out


def _flat(ts: Sequence[Tensor], dtype: torch.dtype, device: Any) -> Tensor:
    return torch.cat([t.reshape(-1) for t in ts]) if ts else torch.empty(0, dtype=dtype, device=device)


def groups_of(layouts: Sequence[Layout]) -> list[Any]:
    """The distinct process groups the layouts use (in first-use order)."""
    seen: list[Any] = []
    for lay in layouts:
        if lay.kind != LOCAL and all(lay.group is not g for g in seen):
            seen.append(lay.group)
    return seen


def all_agree(flags: Tensor, groups: Sequence[Any]) -> Tensor:
    """An elementwise MAX of a small int64 vector over every group (one all_reduce per group)."""
    for g in groups:
        dist.all_reduce(flags, op=dist.ReduceOp.MAX, group=g)
    return flags


def check_same_layout(signature: str, groups: Sequence[Any], owner_name: str) -> None:
    """RuntimeError on every rank when the ranks built different buckets (collectives would pair up wrongly
    and hang or mix matrices): one all_gather_object of a digest per group."""
    digest = hashlib.sha256(signature.encode()).hexdigest()
    for g in groups:
        seen: list[Any] = [None] * dist.get_world_size(g)
        dist.all_gather_object(seen, digest, group=g)
        if len(set(seen)) != 1:
            raise RuntimeError(f"{owner_name}: ranks built different parameter layouts (digests "
                               f"{sorted(set(seen))}); every rank must pass the same parameters, shapes, dtypes and "
                               "groups in the same order")


class DistributedLayouts:
    """What polygen's optimizers share about ranks: each parameter's layout (set as groups are added), the
    process groups those use, and the construction-time check that every rank built the same layout."""

    process_group: Any
    param_groups: list[dict[str, Any]]

    def _init_layouts(self, process_group: Any) -> None:
        self.process_group = process_group
        self._layouts: dict[Tensor, Layout] = {}
        self._built = False

    def _layouts_for(self, group: dict[str, Any], gi: int) -> dict[Tensor, Layout]:
        """The group's layouts (ValueError naming a parameter whose placement is not distributed)."""
        from polygen.optim._common import param_label

        return {p: layout_of(p, param_label(group, gi, i, p), self.process_group)
                for i, p in enumerate(group["params"])}

    def _commit_layouts(self, layouts: dict[Tensor, Layout]) -> None:
        self._layouts.update(layouts)
        if self._built:
            self._check_layouts()

    def _finish_layouts(self) -> None:
        self._built = True
        self._check_layouts()

    def layout(self, p: Tensor) -> Layout:
        return self._layouts.get(p, Layout(LOCAL))

    @property
    def process_groups(self) -> list[Any]:
        """The process groups this optimizer's collectives run on (empty: a single-process optimizer)."""
        return groups_of(list(self._layouts.values()))

    def _check_layouts(self) -> None:
        """Every rank must have built the same parameter layout, or the collectives pair up wrongly."""
        groups = self.process_groups
        if not groups:
            return
        sig = repr([(gi, i, tuple(p.shape), str(p.dtype), self.layout(p).kind)
                    for gi, g in enumerate(self.param_groups) for i, p in enumerate(g["params"])])
        check_same_layout(sig, groups, type(self).__name__)
