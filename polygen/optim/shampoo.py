"""Shampoo with Adam grafting (after facebookresearch/optimizers' Distributed Shampoo), whose inverse roots
come from polygen's designed coupled iterations (``inv_root_4``, ``inv_root_2``) or from ``eigh``.

For a matrix parameter (3-D tensors are batches of matrices; 4-D+ are flattened to (shape[0], prod(rest)))
cut into blocks of at most ``max_preconditioner_dim`` per side, every block G keeps::

    L ← β₂ L + (1 − β₂) G Gᵀ,   R ← β₂ R + (1 − β₂) Gᵀ G          (β₂ = 1: plain sums)
    every precondition_frequency steps:  Q_L = (L/c + εI)^(−1/r),  Q_R = (R/c + εI)^(−1/r)   (r = inv_root, 4)

with c = 1 − β₂ᵗ at step t (β₂ < 1 and use_bias_correction; else c = 1): Distributed Shampoo's bias correction
of the factors. Without it an EMA factor is c times the average it estimates, so εI weighs 1/c times more
against it early on (at β₂ = 0.999, 100× at step 10) and the trajectory parts from Distributed Shampoo's.

and the step (Distributed Shampoo's order) is, with M the bias-corrected EMA (β₁) of the gradient::

    A = M / (√(v̂) + ε_graft)                  # Adam grafting direction (v̂: EMA β_graft of g², bias-corrected
                                              # always, as Distributed Shampoo's Adam grafting is)
    D = Q_L M Q_R · ‖A‖_F / ‖Q_L M Q_R‖_F      # per block; D = A before start_preconditioning_step
    D ← D + λθ (decoupled weight decay);  momentum / Nesterov on D;  θ ← θ − lr·D

1-D (and 0-D) parameters take the diagonal path D = A (Adam). Roots of all same-sized factor matrices (across
blocks and parameters) are computed in one batched call per size.

The polygen roots run a fixed number of coupled Newton steps (no host sync) on A/(0.4‖A‖_F) — designed for
eigenvalues down to 1e-6 of that scale; directions with smaller eigenvalues get a clipped (smaller) inverse
root rather than a blow-up, which acts as extra damping. ``root_method="eigh"`` computes exact roots in
float64 for comparison.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from polygen.optim._common import (
    BACKENDS,
    NONFINITE_MODES,
    cached_spec,
    check_choice,
    check_lr,
    check_number,
    check_state_shapes,
    content_key,
    guarded_step,
    loadable_groups,
    matrix_shape,
    resolve_backend,
    spec_function,
)
from polygen.optim.distributed import (
    COLUMNS,
    LOCAL,
    REPLICATED,
    DistributedLayouts,
    local,
    owner,
    owners_compute,
    shared_compute,
)
from polygen.runtime.torch_ops import frobenius, product

__all__ = ["Shampoo", "eigh_inverse_root"]

ROOT_METHODS = ("polygen", "eigh")
GRAFTINGS = ("adam", "none")


def eigh_inverse_root(A: Tensor, r: int, epsilon: float) -> Tensor:
    """(A + εI)^(−1/r) of symmetric (k, n, n) A through float64 eigh (eigenvalues clamped at ε)."""
    n = A.size(-1)
    eye = torch.eye(n, dtype=torch.float64, device=A.device)
    lam, Q = torch.linalg.eigh(A.double() + epsilon * eye)
    lam = lam.clamp_min(epsilon).pow(-1.0 / r)
    return ((Q * lam.unsqueeze(-2)) @ Q.mT).to(A.dtype)


def _blocks(b: int, m: int, n: int, d: int) -> list[tuple[int, int, int, int, int]]:
    """(matrix index, row0, row1, col0, col1) of each block of a (b, m, n) parameter cut at ``d``."""
    return [(k, r0, min(r0 + d, m), c0, min(c0 + d, n))
            for k in range(b) for r0 in range(0, m, d) for c0 in range(0, n, d)]


class Shampoo(DistributedLayouts, Optimizer):
    r"""Two-sided Shampoo with Adam grafting; inverse roots by polygen's generated iterations.

    Args:
        params: parameters or param groups (``(name, tensor)`` pairs name parameters in errors).
        lr: learning rate (default 1e-2; the grafted step has Adam's size, so Adam-like lrs apply).
        betas: (β₁, β₂): β₁ for the gradient EMA that is preconditioned, β₂ for the factor matrices L, R
            (default (0.9, 0.999); β₂ = 1 sums them as original Shampoo).
        epsilon: εI damping added to the (bias-corrected) L and R before the root (default 1e-12, Distributed
            Shampoo's).
        momentum, nesterov: heavy-ball momentum on the grafted direction (default 0, False).
        weight_decay, use_decoupled_weight_decay: λ added to the direction (decoupled, default) or to the
            gradient (L2).
        max_preconditioner_dim: blocks are at most this many rows/columns (default 1024).
        precondition_frequency: roots are recomputed every this many steps (default 10).
        start_preconditioning_step: first step using Shampoo's direction (default: precondition_frequency);
            before it the step is the grafting (Adam) direction.
        inv_root: r in L^(−1/r) (default 4: the two-sided exponent 1/4; r = 2 is also built in).
        root_method: ``"polygen"`` (default; spec ``inv_root_<r>`` or ``root_spec``) or ``"eigh"``.
        root_spec: a ``target = "inverse_root"`` spec overriding the built-in one.
        grafting: ``"adam"`` (default) or ``"none"`` (raw Shampoo direction, not rescaled).
        grafting_beta2, grafting_epsilon: Adam grafting's β₂ and ε (defaults 0.999, 1e-8).
        use_bias_correction: bias-correct the β₁ EMA and the factors L, R (divided by 1 − β₂ᵗ before εI is
            added and the root taken), as Distributed Shampoo's flag does (default True). Adam grafting's
            second moment is bias-corrected either way (it is Adam, as in Distributed Shampoo).
        backend: polygen backend for the roots (``"auto"``, ``"torch"``, ``"triton"``).
        nonfinite: ``"raise"`` (default), ``"skip"`` or ``"off"`` (see :class:`polygen.optim.Muon`).

    A group's root function (spec file included) is read when the group is added or loaded, as in Muon.
    """

    dense_grads_only = True  # sparse gradients raise before anything changes (see guarded_step)

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 1e-2,
        betas: tuple[float, float] = (0.9, 0.999),
        epsilon: float = 1e-12,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        use_decoupled_weight_decay: bool = True,
        max_preconditioner_dim: int = 1024,
        precondition_frequency: int = 10,
        start_preconditioning_step: int | None = None,
        inv_root: int = 4,
        root_method: str = "polygen",
        root_spec: str | Path | Any | None = None,
        grafting: str = "adam",
        grafting_beta2: float = 0.999,
        grafting_epsilon: float = 1e-8,
        use_bias_correction: bool = True,
        *,
        backend: str = "auto",
        nonfinite: str = "raise",
        process_group: Any = None,
    ) -> None:
        check_choice("nonfinite", nonfinite, NONFINITE_MODES)
        self.nonfinite = nonfinite
        self.skipped_steps = 0
        self._root_fns: dict[tuple, Callable[[Tensor], Tensor]] = {}
        self._init_layouts(process_group)
        self._owners: dict[Tensor, int] = {}  # matrix parameter → its index among all groups' matrices
        defaults = {
            "lr": lr, "betas": betas, "epsilon": epsilon, "momentum": momentum, "nesterov": nesterov,
            "weight_decay": weight_decay, "use_decoupled_weight_decay": use_decoupled_weight_decay,
            "max_preconditioner_dim": max_preconditioner_dim, "precondition_frequency": precondition_frequency,
            "start_preconditioning_step": start_preconditioning_step, "inv_root": inv_root,
            "root_method": root_method, "root_spec": root_spec, "grafting": grafting,
            "grafting_beta2": grafting_beta2, "grafting_epsilon": grafting_epsilon,
            "use_bias_correction": use_bias_correction, "backend": backend,
        }
        super().__init__(params, defaults)
        self._finish_layouts()

    # --- validation -------------------------------------------------------------------------------------
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        gi = len(self.param_groups) - 1
        try:
            layouts = self._layouts_for(self.param_groups[gi], gi)
            root_fns = self._check_group(self.param_groups[gi])
        except ValueError:
            self.param_groups.pop()
            raise
        self._commit_functions(root_fns)
        for p in self.param_groups[gi]["params"]:
            if p.ndim >= 2 and p not in self._owners:
                self._owners[p] = len(self._owners)
        self._commit_layouts(layouts)

    def _owns(self, p: Tensor) -> bool:
        """Whether this rank keeps p's factors and roots (every rank, for a local parameter)."""
        lay = self.layout(p)
        return lay.kind == LOCAL or owner(self._owners[p], lay.world) == lay.rank

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's load, after every saved group is completed (keys it lacks take the constructor's values) and
        validated as ``add_param_group`` does, and its state's shapes checked against the parameters (blocks
        included): a bad group or shape raises ValueError here and changes nothing."""
        groups, root_fns = loadable_groups(self, state_dict["param_groups"])
        check_state_shapes(type(self).__name__, state_dict["state"], groups, self.param_groups, self._state_shapes)
        super().load_state_dict({**state_dict, "param_groups": groups})
        self._commit_functions(root_fns)

    @staticmethod
    def _state_shapes(group: dict[str, Any], p: Tensor) -> dict[str, Any]:
        """The shape of each state entry of ``p`` under ``group``'s blocking (checked at load; global shapes for
        a DTensor): elementwise ones p's, factors and roots one square per block."""
        shapes: dict[str, Any] = dict.fromkeys(("exp_avg", "exp_avg_sq", "momentum_buffer"), tuple(p.shape))
        if p.ndim >= 2:
            blocks = _blocks(*matrix_shape(p.shape), group["max_preconditioner_dim"])
            rows = [(r1 - r0, r1 - r0) for _, r0, r1, _, _ in blocks]
            cols = [(c1 - c0, c1 - c0) for _, _, _, c0, c1 in blocks]
            shapes.update(factor_L=rows, inv_root_L=rows, factor_R=cols, inv_root_R=cols)
        return shapes

    def _commit_functions(self, root_fns: dict[tuple, Callable[[Tensor], Tensor]]) -> None:
        self._root_fns.update(root_fns)

    def _check_group(self, group: dict[str, Any]) -> dict[tuple, Callable[[Tensor], Tensor]]:
        """Validate a group and load its root function per device now (spec file read now); returns them for
        the caller to commit once the group (or checkpoint) is accepted."""
        self._validate_group(group)
        root_fns = {}
        for device in {p.device for p in group["params"]}:  # a loop, not a comprehension: warnings' stacklevel
            root_fns[self._root_key(group, device)] = self._make_root_fn(group, device)
        return root_fns

    def _spec_label(self, group: dict[str, Any]) -> str:
        return (f"root_method={group.get('root_method')!r}, root_spec={group.get('root_spec')!r}, "
                f"inv_root={group.get('inv_root')!r}")

    def _validate_group(self, group: dict[str, Any]) -> None:
        check_lr(group["lr"])
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2); got {betas!r}")
        check_number("betas[0]", betas[0], lo=0.0, hi=1.0, hi_open=True)
        check_number("betas[1]", betas[1], lo=0.0, hi=1.0, lo_open=True)
        check_number("epsilon", group["epsilon"], lo=0.0, lo_open=True)
        check_number("momentum", group["momentum"], lo=0.0, hi=1.0, hi_open=True)
        check_number("weight_decay", group["weight_decay"], lo=0.0)
        check_number("grafting_beta2", group["grafting_beta2"], lo=0.0, hi=1.0, lo_open=True, hi_open=True)
        check_number("grafting_epsilon", group["grafting_epsilon"], lo=0.0, lo_open=True)
        for name in ("max_preconditioner_dim", "precondition_frequency", "inv_root"):
            v = group[name]
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {v!r}")
        s = group["start_preconditioning_step"]
        if s is not None and (isinstance(s, bool) or not isinstance(s, int) or s < 1):
            raise ValueError(f"start_preconditioning_step must be None or an integer >= 1; got {s!r}")
        for name in ("nesterov", "use_decoupled_weight_decay", "use_bias_correction"):
            if not isinstance(group[name], bool):
                raise ValueError(f"{name} must be a bool; got {group[name]!r}")
        check_choice("root_method", group["root_method"], ROOT_METHODS)
        check_choice("grafting", group["grafting"], GRAFTINGS)
        check_choice("backend", group["backend"], BACKENDS)
        if group["root_spec"] is not None:
            self._check_root_spec(group["root_spec"], group["inv_root"])

    @staticmethod
    def _check_root_spec(spec: Any, r: int) -> Any:
        try:
            smap = cached_spec(spec)
        except ValueError as e:
            raise ValueError(f"root_spec={spec!r}: {e}") from e
        if smap.target != "inverse_root" or smap.input_kind != "symmetric":
            raise ValueError(f"root_spec={spec!r}: Shampoo needs a symmetric-input spec with target 'inverse_root', "
                             f"{smap.name!r} has target {smap.target!r} ({smap.input_kind} input)")
        if abs(smap.power - 1.0 / r) > 1e-12:
            raise ValueError(f"root_spec={spec!r} computes A^(-{smap.power:g}) but inv_root={r} asks for A^(-1/{r})")
        return smap

    # --- roots ------------------------------------------------------------------------------------------
    def _root_fn(self, group: dict[str, Any], device: torch.device) -> Callable[[Tensor], Tensor]:
        """The batched map (k, n, n) factor matrices → (L + εI)^(−1/r) for this group, as loaded when the group
        was added or loaded: a compiled step finds it here rather than tracing the spec lookup."""
        key = self._root_key(group, device)
        if key not in self._root_fns:  # settings changed by hand since
            self._root_fns[key] = self._make_root_fn(group, device)
        return self._root_fns[key]

    @staticmethod
    def _root_key(group: dict[str, Any], device: torch.device) -> tuple:
        spec = group["root_spec"]
        skey = spec if spec is None or isinstance(spec, (str, Path)) else content_key(spec)
        return (group["root_method"], skey, group["inv_root"], float(group["epsilon"]), group["backend"], device)

    def _make_root_fn(self, group: dict[str, Any], device: torch.device) -> Callable[[Tensor], Tensor]:
        r, eps = group["inv_root"], float(group["epsilon"])
        spec = group["root_spec"]
        if group["root_method"] == "polygen":
            if spec is None:
                from polygen.runtime.specfiles import list_specs

                name = f"inv_root_{r}"
                if name in list_specs():
                    spec = name
                else:
                    warnings.warn(f"Shampoo: no built-in spec {name!r} for inv_root={r}; falling back to "
                                  f"root_method='eigh' (pass root_spec= a target='inverse_root' spec)", stacklevel=6)
            if spec is not None:
                smap = self._check_root_spec(spec, r)  # read now: the content keys the shared cache
                fn = spec_function(content_key(smap), lambda: smap.spec, resolve_backend(group["backend"], device))

                def polygen_root(A: Tensor) -> Tensor:
                    eye = torch.eye(A.size(-1), dtype=A.dtype, device=A.device)
                    return fn(A + eps * eye)
                return polygen_root
        return lambda A: eigh_inverse_root(A, r, eps)

    # --- the step ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One step; raises :class:`polygen.optim.NonFiniteGradError` (or skips, with ``nonfinite='skip'``)
        before touching anything when a gradient holds NaN or Inf."""
        return guarded_step(self, closure, self._update, groups=self.process_groups)

    def _update(self) -> None:
        for group in self.param_groups:
            self._group_step(group)

    def _init_state(self, group: dict[str, Any], p: Tensor) -> dict[str, Any]:
        state = self.state[p]
        if len(state) == 0:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if group["momentum"] > 0:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if p.ndim >= 2 and self._owns(p):  # factors and roots live on the parameter's owner rank only
                b, m, n = matrix_shape(p.shape)
                blocks = _blocks(b, m, n, group["max_preconditioner_dim"])
                f32, dev = torch.float32, p.device
                state["factor_L"] = [torch.zeros(r1 - r0, r1 - r0, dtype=f32, device=dev) for _, r0, r1, _, _ in blocks]
                state["factor_R"] = [torch.zeros(c1 - c0, c1 - c0, dtype=f32, device=dev) for _, _, _, c0, c1 in blocks]
                state["inv_root_L"] = [torch.eye(r1 - r0, dtype=f32, device=dev) for _, r0, r1, _, _ in blocks]
                state["inv_root_R"] = [torch.eye(c1 - c0, dtype=f32, device=dev) for _, _, _, c0, c1 in blocks]
        return state

    def _group_step(self, group: dict[str, Any]) -> None:
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return
        lr = group["lr"].item() if isinstance(group["lr"], Tensor) else group["lr"]
        beta1 = group["betas"][0]  # β₂ is the factors' (_matrix_dirs)
        bg, wd = group["grafting_beta2"], group["weight_decay"]
        states = [self._init_state(group, p) for p in params]
        for st in states:
            st["step"] += 1
        # elementwise work on each rank's own rows (a DTensor parameter's local shard; plain tensors as they are)
        locals_ = [local(p) for p in params]
        grads = [local(p.grad) for p in params]
        if wd != 0 and not group["use_decoupled_weight_decay"]:
            grads = list(torch._foreach_add(grads, locals_, alpha=wd))

        # gradient statistics: grafting second moment, β₁ EMA, Shampoo factors (from the raw gradient)
        vs = [local(st["exp_avg_sq"]) for st in states]
        torch._foreach_mul_(vs, bg)
        torch._foreach_addcmul_(vs, grads, grads, value=1 - bg)
        ms = [local(st["exp_avg"]) for st in states]
        if beta1 > 0:
            torch._foreach_lerp_(ms, grads, 1 - beta1)
        else:
            for mt, g in zip(ms, grads):
                mt.copy_(g)
        steps = [st["step"] for st in states]
        if group["use_bias_correction"] and beta1 > 0:
            m_hat = [mt / (1 - beta1**t) for mt, t in zip(ms, steps)]
        else:
            m_hat = ms
        denom = [(v / (1 - bg**t)).sqrt_().add_(group["grafting_epsilon"]) for v, t in zip(vs, steps)]
        adam_dirs = torch._foreach_div(m_hat, denom)

        # matrix parameters: factors, roots and preconditioned directions on whole matrices, on the owner rank
        dirs = list(adam_dirs)
        mats = [i for i, p in enumerate(params) if p.ndim >= 2]
        by_layout: dict[tuple, list[int]] = {}
        for i in mats:
            lay = self.layout(params[i])
            by_layout.setdefault((lay.kind, id(lay.group)), []).append(i)
        for idx in by_layout.values():
            lay = self.layout(params[idx[0]])
            if lay.kind == LOCAL:
                new = self._matrix_dirs(group, [params[i].shape for i in idx], [states[i] for i in idx],
                                        [grads[i] for i in idx], [m_hat[i] for i in idx], [adam_dirs[i] for i in idx])
            else:
                new = self._distributed_dirs(group, lay, [params[i] for i in idx], [states[i] for i in idx],
                                             [grads[i] for i in idx], [m_hat[i] for i in idx],
                                             [adam_dirs[i] for i in idx])
            for i, d_i in zip(idx, new):
                dirs[i] = d_i
        if wd != 0 and group["use_decoupled_weight_decay"]:
            torch._foreach_add_(dirs, locals_, alpha=wd)
        if group["momentum"] > 0:
            bufs = [local(st["momentum_buffer"]) for st in states]
            torch._foreach_mul_(bufs, group["momentum"])
            torch._foreach_add_(bufs, dirs)
            dirs = list(torch._foreach_add(dirs, bufs, alpha=group["momentum"])) if group["nesterov"] else bufs
        torch._foreach_add_(locals_, dirs, alpha=-lr)

    def _distributed_dirs(self, group: dict[str, Any], lay: Any, params: list[Tensor], states: list[dict],
                          grads: list[Tensor], m_hat: list[Tensor], adam: list[Tensor]) -> list[Tensor]:
        """The directions of matrices that live across ranks: each one's gradient, bias-corrected EMA and Adam
        direction travel packed side by side to its owner (rows by all-to-all for Shard(0), columns — as the
        rows of the transposes — for Shard(1); the owner's share of replicated ones), whose factors, roots and
        blocks give the direction, which travels back."""
        dtype = grads[0].dtype
        for t in (*grads, *m_hat, *adam):
            dtype = torch.promote_types(dtype, t.dtype)
        owners = [owner(self._owners[p], lay.world) for p in params]
        mine = [j for j, o in enumerate(owners) if o == lay.rank]
        flip = lay.kind == COLUMNS  # 2-D only: work on transposes, whose rows are the sharded columns
        shapes = [torch.Size((p.shape[1], p.shape[0])) if flip else p.shape for p in params]  # as they travel

        def pack(g: Tensor, m: Tensor, a: Tensor, shape: torch.Size) -> Tensor:
            ts = [t.mT if flip else t for t in (g, m, a)]
            rows, inner = ts[0].shape[0], math.prod(shape[1:])  # rows may be 0: an empty shard
            return torch.cat([t.to(dtype).reshape(rows, inner) for t in ts], dim=1)

        def compute(wholes: list[Tensor]) -> list[Tensor]:
            unpacked = [w.reshape(w.shape[0], 3, w.shape[1] // 3).unbind(1) for w in wholes]
            G, M, A = ([u[k].reshape(shapes[j]).mT if flip else u[k].reshape(shapes[j])
                        for u, j in zip(unpacked, mine)] for k in range(3))
            dirs = self._matrix_dirs(group, [params[j].shape for j in mine], [states[j] for j in mine], G, M, A)
            return [d.mT if flip else d for d in dirs]

        parts = [pack(local(g), local(m), local(a), sh) for g, m, a, sh in zip(grads, m_hat, adam, shapes)]
        if lay.kind == REPLICATED:
            outs = shared_compute(parts, dtype, lay.group, compute, owners, shapes)
        else:
            packed = [torch.Size((sh[0], 3 * math.prod(sh[1:]))) for sh in shapes]
            outs = owners_compute(parts, packed, dtype, lay.group, compute, owners, shapes)
        return [(o.mT if flip else o).reshape(local(p).shape).to(p.dtype) for o, p in zip(outs, params)]

    def _matrix_dirs(self, group: dict[str, Any], shapes: list[torch.Size], states: list[dict],
                     grads: list[Tensor], m_hat: list[Tensor], adam_dirs: list[Tensor]) -> list[Tensor]:
        """Whole matrix parameters (of ``shapes``): update their factors from the raw gradients, recompute the
        roots that are due (batched per size), and return each one's direction — the grafted Shampoo
        direction from its start_preconditioning_step, the Adam direction before."""
        d = group["max_preconditioner_dim"]
        freq = group["precondition_frequency"]
        start = group["start_preconditioning_step"] or freq
        beta2 = group["betas"][1]
        steps = [st["step"] for st in states]
        by_shape: dict[tuple[int, int], list[tuple[int, int, tuple]]] = {}
        for i, shape in enumerate(shapes):
            b, m, n = matrix_shape(shape)
            for j, blk in enumerate(_blocks(b, m, n, d)):
                by_shape.setdefault((blk[2] - blk[1], blk[4] - blk[3]), []).append((i, j, blk))

        def block(t: Tensor, i: int, blk: tuple) -> Tensor:
            b, m, n = matrix_shape(shapes[i])
            k, r0, r1, c0, c1 = blk
            return t.reshape(b, m, n)[k, r0:r1, c0:c1]

        for entries in by_shape.values():
            G = torch.stack([block(grads[i], i, blk) for i, _, blk in entries]).float()
            GGt, GtG = product(G, G.mT, None, 0.0, 1.0), product(G.mT, G, None, 0.0, 1.0)
            Ls = [states[i]["factor_L"][j] for i, j, _ in entries]
            Rs = [states[i]["factor_R"][j] for i, j, _ in entries]
            if beta2 < 1:
                torch._foreach_mul_(Ls, beta2)
                torch._foreach_mul_(Rs, beta2)
            torch._foreach_add_(Ls, list(GGt.unbind(0)), alpha=1 - beta2 if beta2 < 1 else 1.0)
            torch._foreach_add_(Rs, list(GtG.unbind(0)), alpha=1 - beta2 if beta2 < 1 else 1.0)

        # inverse roots, batched per factor size over all blocks whose step is due
        due = [i for i in range(len(shapes)) if steps[i] >= start and (steps[i] - start) % freq == 0]
        if due:
            self._recompute_roots(group, [states[i] for i in due])

        dirs = list(adam_dirs)
        use = {i for i in range(len(shapes)) if steps[i] >= start}
        for i in use:
            dirs[i] = torch.zeros(shapes[i], dtype=adam_dirs[i].dtype, device=adam_dirs[i].device)
        for entries in by_shape.values():
            entries = [e for e in entries if e[0] in use]
            if not entries:
                continue
            M = torch.stack([block(m_hat[i], i, blk) for i, _, blk in entries]).float()
            QL = torch.stack([states[i]["inv_root_L"][j] for i, j, _ in entries])
            QR = torch.stack([states[i]["inv_root_R"][j] for i, j, _ in entries])
            P = product(product(QL, M, None, 0.0, 1.0), QR, None, 0.0, 1.0)
            if group["grafting"] == "adam":
                A = torch.stack([block(adam_dirs[i], i, blk) for i, _, blk in entries]).float()
                P = P * (frobenius(A, torch.float32) / (frobenius(P, torch.float32) + 1e-16))
            for (i, _, blk), pb in zip(entries, P.unbind(0)):
                block(dirs[i], i, blk).copy_(pb)
        return dirs

    def _recompute_roots(self, group: dict[str, Any], states: list[dict]) -> None:
        """Q = (F/c + εI)^(−1/r) for every factor F of ``states``, c = 1 − β₂ᵗ at each one's step t (1 when
        β₂ = 1 or without bias correction), batched per size."""
        beta2 = group["betas"][1]
        corrected = group["use_bias_correction"] and beta2 < 1
        by_size: dict[tuple[int, torch.device], list[tuple[dict, str, int]]] = {}
        for st in states:
            for side in ("L", "R"):
                for j, F in enumerate(st[f"factor_{side}"]):
                    by_size.setdefault((F.size(0), F.device), []).append((st, side, j))
        for (_, device), entries in by_size.items():
            root = self._root_fn(group, device)
            A = torch.stack([st[f"factor_{side}"][j] / (1 - beta2 ** int(st["step"])) if corrected
                             else st[f"factor_{side}"][j] for st, side, j in entries])
            Q = root(A)
            for (st, side, j), q in zip(entries, Q.unbind(0)):
                st[f"inv_root_{side}"][j].copy_(q)

    @staticmethod
    def block_count(shape: torch.Size | tuple[int, ...], max_preconditioner_dim: int) -> int:
        """How many preconditioned blocks a parameter of ``shape`` has (0 for 1-D)."""
        if len(shape) < 2:
            return 0
        b, m, n = matrix_shape(shape)
        return b * math.ceil(m / max_preconditioner_dim) * math.ceil(n / max_preconditioner_dim)
