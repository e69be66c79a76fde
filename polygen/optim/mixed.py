"""One optimizer over several: Muon (or MuonP, Shampoo) for hidden matrices, AdamW for the rest.

:func:`split_params` splits a model the way Muon's authors and later users recommend (KellerJordan/Muon,
Moonshot's Moonlight, princeton-pli/muon-p): 2-D+ weights of hidden layers go to the Muon family; embeddings,
the output head (lm_head / classifier), norms, biases and other vectors or scalars go to AdamW.

:class:`Mixed` steps several optimizers as one ``torch.optim.Optimizer``: its ``param_groups`` are the
sub-optimizers' own group dicts (an LR scheduler on the Mixed object drives them all), its ``state`` is one dict
shared with them, ``state_dict()`` / ``load_state_dict()`` cover everything, and the non-finite-gradient guard
runs once over all parameters before any of them steps.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from polygen.optim._common import (
    NONFINITE_MODES,
    check_choice,
    check_state_shapes,
    elementwise_state_shapes,
    guarded_step,
    loadable_groups,
)

__all__ = ["Mixed", "MuonWithAdamW", "split_params"]

EMBEDDING_NAMES = ("embed", "embeds", "embedding", "embeddings", "embed_tokens", "embed_positions", "wte", "wpe",
                   "tok_embeddings", "pos_embedding", "word_embeddings", "position_embeddings")
HEAD_NAMES = ("lm_head", "head", "classifier", "cls", "score", "unembed", "output_layer", "fc_out")


def _parts(name: str) -> list[str]:
    return name.lower().split(".")


def _matches(name: str, keywords: Sequence[str]) -> bool:
    return any(k in _parts(name) for k in keywords)


def split_params(
    model: nn.Module,
    *,
    head: str | None = "auto",
    exclude: Iterable[str] = (),
) -> tuple[list[tuple[str, nn.Parameter]], list[tuple[str, nn.Parameter]]]:
    """``(muon_params, adamw_params)`` as ``(name, parameter)`` lists (trainable parameters only; tied weights once).

    Muon family: parameters with ``ndim >= 2`` that are not embeddings (``nn.Embedding``/``nn.EmbeddingBag``
    weights or names with a part like ``embed``, ``wte``, ``wpe``) and not the output head. AdamW: everything
    else — the head, embeddings, and every parameter with ``ndim < 2`` (norm weights, biases, scalars).

    ``head``: ``"auto"`` finds the head by name (a name part ``lm_head``, ``head``, ``classifier``, ``cls``,
    ``score``, ``unembed``, ``output_layer``, ``fc_out``), else takes the last ``nn.Linear`` registered in the
    model; a module name (``"decoder.proj"``) names it; ``None`` keeps every matrix in the Muon family.
    ``exclude``: regular expressions; matching parameter names go to AdamW.
    """
    patterns = [re.compile(p) for p in exclude]
    embed_ids = {id(m.weight) for m in model.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag))}
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    head_ids: set[int] = set()
    if head == "auto":
        head_ids = {id(p) for n, p in named if _matches(n, HEAD_NAMES)}
        if not head_ids:
            linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
            if len(linears) > 1:
                head_ids = {id(p) for p in linears[-1].parameters()}
    elif head is not None:
        try:
            mod = model.get_submodule(head)
        except AttributeError as e:
            raise ValueError(f"head={head!r}: no such submodule in the model") from e
        head_ids = {id(p) for p in mod.parameters()}
    muon: list[tuple[str, torch.nn.Parameter]] = []
    adamw: list[tuple[str, torch.nn.Parameter]] = []
    for n, p in named:
        to_adamw = (p.ndim < 2 or id(p) in embed_ids or id(p) in head_ids or _matches(n, EMBEDDING_NAMES)
                    or any(pat.search(n) for pat in patterns))
        (adamw if to_adamw else muon).append((n, p))
    return muon, adamw


class Mixed(Optimizer):
    """Several optimizers over disjoint parameters, stepped as one ``torch.optim.Optimizer``.

    ``Mixed(muon, adamw)`` (or a list). The sub-optimizers keep working on their own groups; ``param_groups``
    here are the same dict objects (so ``group["lr"]`` changes by an LR scheduler reach them) and ``state`` is
    shared. ``nonfinite`` (``"raise"``/``"skip"``/``"off"``) is checked here over every gradient before any
    sub-optimizer steps; sub-optimizers that have their own guard (polygen's) are set to ``"off"``.
    ``add_param_group(group, optimizer_index=i)`` adds a group to the i-th sub-optimizer.
    """

    def __init__(self, *optimizers: Optimizer | Sequence[Optimizer], nonfinite: str = "raise") -> None:
        if len(optimizers) == 1 and isinstance(optimizers[0], (list, tuple)):
            optimizers = tuple(optimizers[0])
        if not optimizers or not all(isinstance(o, Optimizer) for o in optimizers):
            raise ValueError("Mixed needs one or more torch.optim.Optimizer instances")
        check_choice("nonfinite", nonfinite, NONFINITE_MODES)
        self.optimizers: list[Optimizer] = list(optimizers)  # type: ignore[arg-type]
        self.nonfinite = nonfinite
        self.skipped_steps = 0
        self._initializing = True
        super().__init__([g for o in self.optimizers for g in o.param_groups], {})
        self._initializing = False
        for o in self.optimizers:
            self.state.update(o.state)
        self._relink()
        for o in self.optimizers:
            if hasattr(o, "nonfinite"):
                o.nonfinite = "off"

    def _relink(self) -> None:
        """Give the sub-optimizers our group dicts (in order) and our state dict."""
        i = 0
        for o in self.optimizers:
            n = len(o.param_groups)
            o.param_groups = self.param_groups[i:i + n]
            o.state = self.state
            i += n

    def add_param_group(self, param_group: dict[str, Any], optimizer_index: int | None = None) -> None:
        if self._initializing:
            super().add_param_group(param_group)
            return
        if optimizer_index is None:
            raise ValueError("Mixed.add_param_group: pass optimizer_index= (which sub-optimizer gets the group)")
        mine = {p for g in self.param_groups for p in g["params"]}
        o = self.optimizers[optimizer_index]
        o.add_param_group(param_group)
        if not mine.isdisjoint(o.param_groups[-1]["params"]):
            o.param_groups.pop()
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups = [g for opt in self.optimizers for g in opt.param_groups]
        self._relink()

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One step of every sub-optimizer, after the sparse-gradient check of polygen's sub-optimizers and the
        non-finite guard over all parameters: an error leaves every sub-optimizer as it was."""
        dense_only = [o for o in self.optimizers if getattr(o, "dense_grads_only", False)]
        return guarded_step(self, closure, self._update, dense_only=dense_only)

    def _update(self) -> None:
        for o in self.optimizers:
            o.step()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's load, after each polygen sub-optimizer completed and validated its saved groups (see
        :func:`polygen.optim._common.loadable_groups`) and every state tensor's shape was checked against its
        parameter's: a bad group or shape raises ValueError and changes nothing."""
        groups, commits = self._loadable_groups(state_dict["param_groups"])
        if len(groups) == len(self.param_groups):
            start = 0
            for o in self.optimizers:  # each sub-optimizer's own shapes; torch's elementwise ones for the rest
                stop = start + len(o.param_groups)
                check_state_shapes(type(self).__name__, state_dict["state"], groups[start:stop],
                                   self.param_groups[start:stop],
                                   getattr(o, "_state_shapes", elementwise_state_shapes), first=start)
                start = stop
        super().load_state_dict({**state_dict, "param_groups": groups})
        for o, functions in commits:
            o._commit_functions(functions)
        self._relink()

    def _loadable_groups(self, saved: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[tuple[Any, dict]]]:
        """The saved groups, cut by sub-optimizer, as each polygen sub-optimizer will hold them; other
        sub-optimizers' groups as saved. A different number of groups is left to torch's own check."""
        if len(saved) != len(self.param_groups):
            return saved, []
        groups: list[dict[str, Any]] = []
        commits = []
        for k, o in enumerate(self.optimizers):
            start, stop = len(groups), len(groups) + len(o.param_groups)
            part = saved[start:stop]
            if hasattr(o, "_commit_functions"):  # polygen's optimizers
                try:
                    part, functions = loadable_groups(o, part)
                except ValueError as e:
                    raise ValueError(f"{type(self).__name__}.load_state_dict: param_groups[{start}:{stop}] belong to "
                                     f"sub-optimizer {k}; {e}") from e
                commits.append((o, functions))
            groups += part
        return groups, commits


_FAMILY = {"muon": "Muon", "muonp": "MuonP", "shampoo": "Shampoo"}


class MuonWithAdamW(Mixed):
    """Muon (or MuonP / Shampoo) for hidden matrices + ``torch.optim.AdamW`` for the rest, as one optimizer.

    ``MuonWithAdamW(model, lr=0.02, adamw_lr=3e-4, ...)`` splits the model with :func:`split_params`;
    ``MuonWithAdamW(muon_params, adamw_params, ...)`` takes the two lists. ``optimizer`` is ``"muon"``
    (default), ``"muonp"``, ``"shampoo"`` or an optimizer class; ``lr`` and ``**kwargs`` go to it, the
    ``adamw_*`` arguments to AdamW (defaults lr 3e-4, betas (0.9, 0.95), eps 1e-8, weight decay 0).
    ``self.matrix`` and ``self.adamw`` are the two sub-optimizers (``self.adamw`` is None without parameters).
    """

    def __init__(
        self,
        params: nn.Module | Iterable[Any],
        adamw_params: Iterable[Any] | None = None,
        *,
        optimizer: str | type[Optimizer] = "muon",
        lr: float = 0.02,
        adamw_lr: float = 3e-4,
        adamw_betas: tuple[float, float] = (0.9, 0.95),
        adamw_eps: float = 1e-8,
        adamw_weight_decay: float = 0.0,
        nonfinite: str = "raise",
        **kwargs: Any,
    ) -> None:
        if isinstance(params, nn.Module):
            if adamw_params is not None:
                raise ValueError("adamw_params: pass either a model (split automatically) or two parameter lists")
            params, adamw_params = split_params(params)
        params = list(params)
        adamw_params = list(adamw_params or [])
        if isinstance(optimizer, str):
            if optimizer not in _FAMILY:
                raise ValueError(f"optimizer must be one of {', '.join(_FAMILY)} or an optimizer class; "
                                 f"got {optimizer!r}")
            import polygen.optim as po

            optimizer = getattr(po, _FAMILY[optimizer])
        self.matrix = optimizer(params, lr=lr, **kwargs)  # type: ignore[operator,call-arg]
        self.adamw = (torch.optim.AdamW(adamw_params, lr=adamw_lr, betas=adamw_betas, eps=adamw_eps,
                                        weight_decay=adamw_weight_decay) if adamw_params else None)
        subs = [self.matrix] + ([self.adamw] if self.adamw is not None else [])
        super().__init__(subs, nonfinite=nonfinite)
