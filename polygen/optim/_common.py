"""Shared pieces of polygen's optimizers: non-finite gradient guard, parameter labels, matrix views, and the
cache of loaded spec functions (the optimizers import ``polygen.runtime``, never ``polygen.codegen``)."""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from polygen.runtime import load
from polygen.runtime.specfiles import read_spec

NONFINITE_MODES = ("raise", "skip", "off")
BACKENDS = ("auto", "torch", "triton")
NS_DTYPES = (torch.bfloat16, torch.float16, torch.float32, torch.float64)

_HAS_TRITON: bool | None = None
_FN_CACHE: dict[tuple, Any] = {}
_SPEC_CACHE: dict[tuple, Any] = {}


class NonFiniteGradError(FloatingPointError):
    """A gradient holds NaN or Inf; raised by ``step()`` before any parameter or optimizer state is changed."""


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def check_number(name: str, value: Any, *, lo: float | None = None, hi: float | None = None,
                 lo_open: bool = False, hi_open: bool = False) -> None:
    """ValueError naming ``name`` unless ``value`` is a finite real number in the given interval."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name}: a tensor value must have exactly one element, got shape {tuple(value.shape)}")
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    if lo is not None and (value < lo or (lo_open and value == lo)):
        raise ValueError(f"{name} must be {'>' if lo_open else '>='} {lo}; got {value!r}")
    if hi is not None and (value > hi or (hi_open and value == hi)):
        raise ValueError(f"{name} must be {'<' if hi_open else '<='} {hi}; got {value!r}")


def check_lr(lr: Any) -> None:
    """lr: a non-negative number or a one-element Tensor (as torch optimizers accept)."""
    if isinstance(lr, torch.Tensor) and lr.numel() != 1:
        raise ValueError("lr: a Tensor lr must have exactly one element")
    check_number("lr", lr, lo=0.0)


def param_label(group: dict, gi: int, i: int, p: torch.Tensor) -> str:
    """``'name' (shape …)`` when the group was given named parameters, else ``param_groups[g].params[i] (…)``."""
    names = group.get("param_names")
    where = repr(names[i]) if names is not None and i < len(names) else f"param_groups[{gi}].params[{i}]"
    return f"{where} (shape {tuple(p.shape)})"


def grads_finite(optimizer_name: str, groups: Iterable[dict], mode: str, process_groups: Sequence[Any] = ()) -> bool:
    """Check every gradient of ``groups`` for NaN/Inf with one host sync.

    Returns True when the step may proceed; False when ``mode == "skip"`` and a gradient is not finite;
    raises :class:`NonFiniteGradError` naming the parameters when ``mode == "raise"``. Nothing is modified.
    Across ``process_groups`` the verdict is global (one all_reduce per group): one rank's NaN makes every rank
    raise or skip, and ranks that disagree on which parameters have gradients raise RuntimeError together,
    where their collectives would otherwise hang.
    """
    if mode == "off":  # no check and no host sync, on one rank or many
        return True
    groups = list(groups)
    present = [p.grad is not None for g in groups for p in g["params"]]
    flags = [_all_finite(p.grad) for g in groups for p in g["params"] if p.grad is not None]
    ok = bool(torch.stack(flags).all()) if flags else True
    elsewhere = False
    if process_groups:
        from polygen.optim.distributed import all_agree

        pattern = sum(int(x) << (i % 61) for i, x in enumerate(present)) + len(present)
        votes = all_agree(torch.tensor([int(not ok), pattern, -pattern], dtype=torch.int64), process_groups)
        if int(votes[1]) != -int(votes[2]):
            raise RuntimeError(f"{optimizer_name}.step(): ranks disagree on which parameters have gradients; "
                               "no parameter or optimizer state was changed")
        elsewhere = bool(votes[0]) and ok
        ok = not bool(votes[0])
    if ok:
        return True
    if mode == "skip":
        return False
    bad = [param_label(g, gi, i, p) for gi, g in enumerate(groups) for i, p in enumerate(g["params"])
           if p.grad is not None and not bool(_all_finite(p.grad))]
    where = "another rank's gradients" if elsewhere else ", ".join(bad)
    raise NonFiniteGradError(
        f"{optimizer_name}.step(): non-finite gradient (NaN or Inf) in {where}; no parameter or "
        f"optimizer state was changed. Pass nonfinite='skip' to skip such steps instead.")


def _all_finite(grad: torch.Tensor) -> torch.Tensor:
    """A 0-d bool: no NaN/Inf in ``grad`` (of a sparse gradient, its stored values: isfinite has no sparse kernel;
    of a DTensor, this rank's part: the verdict is then reduced over the group)."""
    from polygen.optim.distributed import local

    grad = local(grad)
    return torch.isfinite(grad._values() if grad.is_sparse else grad).all()


def reject_sparse_grads(optimizer_name: str, groups: Iterable[dict]) -> None:
    """RuntimeError naming the first parameter with a sparse gradient. Runs before the non-finite guard and
    before any group steps, so that the error is this one in every ``nonfinite`` mode and nothing has changed."""
    for gi, g in enumerate(groups):
        for i, p in enumerate(g["params"]):
            if p.grad is not None and p.grad.is_sparse:
                raise RuntimeError(f"{optimizer_name} does not support sparse gradients: "
                                   f"{param_label(g, gi, i, p)} has one; no parameter or optimizer state was changed")


def guarded_step(opt: Any, closure: Callable[[], Any] | None, update: Callable[[], None],
                 dense_only: Sequence[Any] | None = None, groups: Sequence[Any] = ()) -> Any:
    """The step protocol of polygen's optimizers: evaluate the closure with grad enabled, reject sparse
    gradients of the optimizers ``dense_only`` (default: ``opt``), then run the non-finite guard
    (``opt.nonfinite``, global over the process ``groups``) before ``update`` touches any parameter or state; a
    skipped step counts in ``opt.skipped_steps``. Returns the closure's loss."""
    loss = None
    if closure is not None:
        with torch.enable_grad():
            loss = closure()
    for o in (opt,) if dense_only is None else dense_only:
        reject_sparse_grads(type(o).__name__, o.param_groups)
    if not grads_finite(type(opt).__name__, opt.param_groups, opt.nonfinite, groups):
        opt.skipped_steps += 1
        return loss
    update()
    return loss


def matrix_shape(shape: torch.Size | Sequence[int]) -> tuple[int, int, int]:
    """(batch, m, n) of the matrices a parameter is treated as: 2-D as is, 3-D as a batch of matrices,
    4-D and more (conv weights) flattened to (shape[0], prod(shape[1:]))."""
    shape = tuple(shape)
    if len(shape) == 2:
        return 1, shape[0], shape[1]
    if len(shape) == 3:
        return shape[0], shape[1], shape[2]
    return 1, shape[0], math.prod(shape[1:])


def has_triton() -> bool:
    global _HAS_TRITON
    if _HAS_TRITON is None:
        _HAS_TRITON = importlib.util.find_spec("triton") is not None
    return _HAS_TRITON


def resolve_backend(backend: str, device: torch.device) -> str:
    """The concrete backend for ``device``: resolved here (not inside the traced call) so that a compiled step
    sees plain tensor code."""
    if backend != "auto":
        return backend
    return "triton" if device.type == "cuda" and has_triton() else "torch"


def spec_function(key: tuple, make_spec: Any, backend: str) -> Any:
    """``polygen.load`` of the spec ``make_spec()`` for a concrete backend, cached by ``(key, backend)``; ``key``
    must identify the spec's content (:func:`content_key`), never a name or path whose file may change."""
    ck = (key, backend)
    fn = _FN_CACHE.get(ck)
    if fn is None:
        fn = load(make_spec(), backend=backend)
        _FN_CACHE[ck] = fn
    return fn


def content_key(smap: Any) -> tuple:
    """The cache key of a spec: its name and the sha256 of its text."""
    return ("map", smap.name, smap.source_hash)


@dataclass(frozen=True)
class SpecInfo:
    """What an optimizer checks of a spec, and the spec value to load it by. Read from the spec's generated
    module (a built-in never needs the compiler); ``spec`` is the text as read then (or the parsed spec given),
    so the function loaded later is of that same content."""

    spec: Any
    name: str
    target: str
    input_kind: str
    power: float
    source_hash: str


def cached_spec(spec: Any) -> SpecInfo:
    """A spec's :class:`SpecInfo`, memoized by content. A name or path is read and hashed at every call and keyed
    by (sha256 of the text, source label), never by path or mtime: an edited file — same size and mtime even —
    or the same relative path from another working directory is the text the file holds now."""
    value = read_spec(spec) if isinstance(spec, (str, Path)) else spec
    key = (value.source_hash, value.source)
    info = _SPEC_CACHE.get(key)
    if info is None:
        fn = load(value, backend="torch")
        info = _SPEC_CACHE[key] = SpecInfo(value, fn.name, fn.target, fn.input_kind, fn.power, fn.source_hash)
    return info


def loadable_groups(opt: Any, saved: Sequence[dict]) -> tuple[list[dict], dict]:
    """The param groups of a checkpoint as ``opt`` will hold them, and the functions they need.

    Keys a saved group lacks (a ``torch.optim.Muon`` checkpoint has no ``spec``, ``backend``, ``ns_dtype`` …)
    take the values of ``opt``'s current group, i.e. the constructor's. Every group is then validated as
    ``add_param_group`` validates (``opt._check_group``), so a spec that cannot apply fails here, with a
    ValueError naming the group and its spec, instead of at the next step. Nothing of ``opt`` is changed: the
    caller commits the returned functions once the whole load succeeded. A different number of groups is left
    to torch's own check.
    """
    if len(saved) != len(opt.param_groups):
        return list(saved), {}
    groups: list[dict] = []
    functions: dict = {}
    for gi, (old, current) in enumerate(zip(saved, opt.param_groups)):
        group = {**{k: v for k, v in current.items() if k != "params"}, **old}
        try:
            functions.update(opt._check_group({**group, "params": current["params"]}))
        except ValueError as e:
            raise ValueError(f"{type(opt).__name__}.load_state_dict: param_groups[{gi}] "
                             f"({opt._spec_label(group)}) cannot be loaded: {e}") from e
        groups.append(group)
    return groups, functions


ELEMENTWISE_STATE = ("momentum_buffer", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")


def elementwise_state_shapes(group: dict[str, Any], p: torch.Tensor) -> dict[str, Any]:
    """The state shapes torch's elementwise optimizers (SGD, Adam, AdamW, Muon's buffer) keep: the parameter's."""
    return dict.fromkeys(ELEMENTWISE_STATE, tuple(p.shape))


def _shapes_of(value: Any) -> Any:
    """A state value's shape (a DTensor's is its global one), or a list's shapes, or its type for anything else."""
    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    if isinstance(value, (list, tuple)):
        return [_shapes_of(v) for v in value]
    return type(value).__name__


def check_state_shapes(name: str, state: dict, saved_groups: Sequence[dict], groups: Sequence[dict],
                       expected: Callable[[dict[str, Any], torch.Tensor], dict[str, Any]], first: int = 0) -> None:
    """Refuse a checkpoint whose state would fail at the next ``step()``: every saved state tensor must have the
    shape its parameter needs (``expected(saved group, parameter)``: key → shape, or a list of shapes for
    Shampoo's blocks). Shapes are global — a DTensor's ``shape`` — so a checkpoint resumes across mesh shapes.
    Raises ValueError naming the parameter, before anything is loaded. Counts torch checks itself (groups,
    parameters per group) are left to torch. ``first``: index of ``groups[0]`` among the optimizer's groups."""
    if len(saved_groups) != len(groups) or any(len(s["params"]) != len(g["params"])
                                               for s, g in zip(saved_groups, groups)):
        return
    for k, (saved, group) in enumerate(zip(saved_groups, groups)):
        for i, (pid, p) in enumerate(zip(saved["params"], group["params"])):
            st = state.get(pid)
            if not st:
                continue
            for key, want in expected(saved, p).items():
                if key in st and _shapes_of(st[key]) != want:
                    raise ValueError(
                        f"{name}.load_state_dict: the checkpoint's state {key!r} of "
                        f"{param_label(group, first + k, i, p)} has shape {_shapes_of(st[key])}, this parameter "
                        f"needs {want}; nothing was loaded (is it a checkpoint of another model?)")
