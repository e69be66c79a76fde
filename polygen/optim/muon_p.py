"""Muon^p (arXiv 2606.13867; princeton-pli/muon-p): Muon with the orthogonalization U Vᵀ replaced by the
fractional power U S^p Vᵀ of the (normalized) momentum, rescaled to unit RMS.

The spec (``muonp_<num>_<den>`` for ``p``, or one given) already returns a unit-RMS matrix (``[output]
rescale = "rms"``: Y·√(mn)/‖Y‖_F), as the authors' code does. The learning rate then follows Muon's conventions
so that MuonP is a drop-in replacement at the same ``lr``:

* ``adjust_lr_fn=None`` / ``"original"``: Muon's step lr·√max(1, m/n)·U Vᵀ has RMS lr/√n (n = fan-in,
  ``shape[1]``); MuonP scales its unit-RMS update by lr/√n, the same RMS.
* ``"match_rms_adamw"``: Muon's lr·0.2·√max(m, n)·U Vᵀ has RMS 0.2·lr; MuonP uses lr·0.2.
* ``"unit_rms"``: the authors' convention, θ ← θ − lr·Y (update RMS = lr).

Equal RMS is not equal spectral norm: U S^p Vᵀ at unit RMS puts more weight on the top singular directions than
U Vᵀ does, so the best lr is smaller than Muon's (≈1/7 of it for p = 1/3 in bench/train_lm.py's sweep).

Momentum, Nesterov, decoupled weight decay, batching of same-shaped matrices and the non-finite guard are
Muon's (see :mod:`polygen.optim.muon`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from polygen.optim.muon import MatrixOptimizer, _checked_spec_factory, _load_spec_checked, _spec_key

__all__ = ["MuonP"]

_DEFAULT_P = Fraction(1, 3)
ADJUST_LR_FNS = (None, "original", "match_rms_adamw", "unit_rms")


def _as_fraction(p: Any) -> Fraction:
    if isinstance(p, bool):
        raise ValueError(f"p must be a number in (0, 1); got {p!r}")
    try:
        f = Fraction(p) if not isinstance(p, float) else Fraction(p).limit_denominator(1000)
    except (TypeError, ValueError, ZeroDivisionError) as e:
        raise ValueError(f"p must be a number in (0, 1) such as Fraction(1, 3) or '1/3'; got {p!r}") from e
    if not 0 < f < 1:
        raise ValueError(f"p must lie in (0, 1); got {p!r}")
    return f


SCHEDULES = ("fitted", "published")


def builtin_spec_for(p: Fraction, schedule: str = "fitted") -> str:
    """The built-in spec for ``p``: the per-step fitted schedule (``muonp_<num>_<den>_fit``, `polygen fit power
    --per-step`) where one ships, else (or with ``schedule="published"``) the recurrence ``muonp_<num>_<den>``."""
    from polygen.runtime.specfiles import list_specs

    base = f"muonp_{p.numerator}_{p.denominator}"
    if schedule == "fitted" and f"{base}_fit" in list_specs():
        return f"{base}_fit"
    return base


class MuonP(MatrixOptimizer):
    r"""Muon^p: momentum as Muon, update = unit-RMS U S^p Vᵀ of the momentum.

    Args:
        params: as :class:`polygen.optim.Muon` (matrices only; names in errors when given).
        p: the power (``Fraction(1, 3)`` default; also ``"1/5"``, ``0.6``). Selects the built-in spec
            ``muonp_<num>_<den>_fit`` (per-step fitted coefficients: 4-30× closer to U S^p Vᵀ than the published
            recurrences at the same matmuls, bench/RESULTS.md §12) or, with ``schedule="published"``,
            ``muonp_<num>_<den>`` (the authors' recurrence; for p = 1/2 polygen's damped-Newton fit, since the
            published default diverges).
        schedule: ``"fitted"`` (default) or ``"published"``; only used without ``spec``.
        spec: a ``target = "power"`` spec (name, path or parsed); overrides ``p`` (its own p is used; passing a
            different ``p`` explicitly is an error).
        lr, weight_decay, momentum, nesterov: as Muon (defaults 1e-3, 0.1, 0.95, True).
        adjust_lr_fn: None/"original" (update RMS lr/√fan_in, as Muon's), "match_rms_adamw" (0.2·lr) or
            "unit_rms" (lr; the authors' convention).
        backend, ns_dtype, nonfinite, ns_plan: as Muon.
    """

    _target = "power"

    def __init__(
        self,
        params: Any,
        p: Fraction | float | str = _DEFAULT_P,
        spec: str | Path | Any | None = None,
        lr: float | Tensor = 1e-3,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        adjust_lr_fn: str | None = None,
        *,
        schedule: str = "fitted",
        backend: str = "auto",
        ns_dtype: torch.dtype = torch.bfloat16,
        nonfinite: str = "raise",
        ns_plan: str | None = None,
        process_group: Any = None,
        tp_mode: str = "auto",
    ) -> None:
        explicit_p = p is not _DEFAULT_P
        frac = _as_fraction(p)
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}; got {schedule!r}")
        if spec is None:
            from polygen.runtime.specfiles import list_specs

            spec = builtin_spec_for(frac, schedule)
            if spec not in list_specs():
                have = [s for s in list_specs() if s.startswith("muonp_")]
                raise ValueError(f"p={p!r}: no built-in spec {spec!r} (have {', '.join(have) or 'none'}); "
                                 f"pass spec= a target='power' spec for this p")
        else:
            smap = _load_spec_checked(spec, "power", "MuonP")
            if explicit_p and abs(smap.power - float(frac)) > 1e-9:
                raise ValueError(f"p={p!r} disagrees with spec {smap.name!r} (p = {smap.power:g}); pass one of them")
            frac = Fraction(smap.power).limit_denominator(1000)
        defaults = {  # p as a string ("1/3"): checkpoints then load with torch.load(weights_only=True)
            "lr": lr, "weight_decay": weight_decay, "momentum": momentum, "nesterov": nesterov,
            "p": str(frac), "spec": spec, "adjust_lr_fn": adjust_lr_fn, "backend": backend, "ns_dtype": ns_dtype,
        }
        super().__init__(params, defaults, nonfinite=nonfinite, ns_plan=ns_plan, process_group=process_group,
                         tp_mode=tp_mode)

    def _validate_group(self, group: dict[str, Any]) -> None:
        super()._validate_group(group)
        if group["adjust_lr_fn"] not in ADJUST_LR_FNS:
            raise ValueError(f"adjust_lr_fn must be one of {ADJUST_LR_FNS}; got {group['adjust_lr_fn']!r}")
        _load_spec_checked(group["spec"], "power", "MuonP")

    def _function_key(self, group: dict[str, Any]) -> tuple:
        return _spec_key(group["spec"])

    def _make_spec(self, group: dict[str, Any]) -> tuple[tuple, Callable[[], Any]]:
        return _checked_spec_factory(group["spec"], self._target, type(self).__name__)

    def _lr_scale(self, group: dict[str, Any], m: int, n: int) -> float:
        fn = group["adjust_lr_fn"]
        if fn is None or fn == "original":
            return 1.0 / math.sqrt(max(n, 1))  # n = 0: an empty matrix, nothing to scale
        if fn == "match_rms_adamw":
            return 0.2
        return 1.0  # "unit_rms"
