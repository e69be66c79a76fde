"""Each plan's estimated error, and the accuracy policies that read it (``polygen.load(name, accuracy=...)``).

The cost model prices plans and says nothing about rounding, and a scalar model of the map does not see all of
it: a float32 Gram plan measured 2.5–20× the direct plan's error at κ = 1e3 even restarted after every step
(bench/RESULTS.md §8). So the estimate is a measurement, made once per (spec, proxy shape, dtype) in a
process: every plan on U diag(s) Vᵀ (V diag(s) Vᵀ for symmetric inputs) with s log-spaced over κ = COND, at a
proxy of the problem's shape of at most PROXY_ELEMENTS, against the direct plan run in float64 (the exact map
to ~1e-15, so no compiler is needed).

Policies: "fastest" runs the cost model's choice; "guard" the cheapest plan whose estimated error is within
GUARD× the direct plan's (the spec's polynomials evaluated as written); "direct" always the direct plan.
"""

from __future__ import annotations

import math
from typing import Any

import torch

POLICIES = ("fastest", "guard", "direct")
GUARD = 2.0
COND = 1e3
PROXY_ELEMENTS = 2**20


def proxy_shape(m: int, n: int) -> tuple[int, int]:
    """(m, n) scaled to at most PROXY_ELEMENTS with the same aspect ratio (rounding error grows with the
    reduction length, so a proxy keeps the shape's proportions rather than a fixed size)."""
    scale = min(1.0, math.sqrt(PROXY_ELEMENTS / (m * n)))
    return max(2, round(m * scale)), max(2, round(n * scale))


def seed(m: int, n: int, *, symmetric: bool, cond: float = COND, seed: int = 0) -> torch.Tensor:
    """A float64 m×n matrix with singular values log-spaced over [1/cond, 1] and random orthogonal factors."""
    gen = torch.Generator().manual_seed(seed)
    k = min(m, n)
    s = torch.logspace(0, -math.log10(cond), k, dtype=torch.float64)
    U, _ = torch.linalg.qr(torch.randn(m, k, generator=gen, dtype=torch.float64))
    if symmetric:
        return (U * s) @ U.mT
    V, _ = torch.linalg.qr(torch.randn(n, k, generator=gen, dtype=torch.float64))
    return (U * s) @ V.mT


_ERRORS: dict[tuple[Any, ...], dict[str, float]] = {}


def plan_errors(f: Any, m: int, n: int, dtype: torch.dtype, *, backend: str = "torch",
                device: Any = "cpu") -> dict[str, float]:
    """Relative Frobenius error against the exact map of each plan ``f`` may run for an (m, n) problem
    (m <= n for rectangular inputs) in ``dtype``, keyed by plan name, cheapest plan first. The ranking is the
    problem's own; the measurement is at its proxy shape, on ``device`` with ``backend``'s code."""
    pm, pn = proxy_shape(m, n)
    ranked = f.ranked_plans((m, n), dtype, backend)
    key = (f.source_hash, backend, str(device), pm, pn, str(dtype))
    if key not in _ERRORS:
        _ERRORS[key] = _measure(f, ranked, pm, pn, dtype, backend, torch.device(device))
    return {name: _ERRORS[key][name] for name in ranked}  # this problem's ranking (shapes may share a proxy)


@torch.no_grad()
def _measure(f: Any, names: list[str], m: int, n: int, dtype: torch.dtype, backend: str,
             device: torch.device) -> dict[str, float]:
    X = seed(m, n, symmetric=f.input_kind == "symmetric").to(device)
    ref = f._module("torch")  # float64 runs on the torch code on any device
    exact = ref.apply(X, plan=ref.PLAN_FUNCTIONS["direct"]).double()
    scale = float(torch.linalg.norm(exact))
    mod = f._module(backend)
    out = {}
    for name in names:
        Y = mod.apply(X.to(dtype), plan=mod.PLAN_FUNCTIONS[name]).double()
        out[name] = float(torch.linalg.norm(Y - exact)) / scale if scale > 0 else float(torch.linalg.norm(Y))
    return out


def guarded_plan(f: Any, m: int, n: int, dtype: torch.dtype, *, backend: str = "torch",
                 device: Any = "cpu") -> str:
    """The cheapest plan whose estimated error stays within GUARD× the direct plan's."""
    ranked = f.ranked_plans((m, n), dtype, backend)
    if ranked[0] == "direct" or "direct" not in ranked:
        return ranked[0]  # nothing cheaper than the direct plan to guard, or a spec that forces one form
    errs = plan_errors(f, m, n, dtype, backend=backend, device=device)
    limit = GUARD * errs["direct"]
    return next(name for name in ranked if errs[name] <= limit)


__all__ = ["COND", "GUARD", "POLICIES", "PROXY_ELEMENTS", "guarded_plan", "plan_errors", "proxy_shape", "seed"]
