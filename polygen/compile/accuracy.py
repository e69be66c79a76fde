"""The accuracy gate: a replacement may not make the user's result meaningfully less accurate.

Rule (policy "guard"): at the region's shape (one matrix of a batch; above 1M elements a same-aspect proxy of
about 1M, which keeps the measurement's share of compile time small) and dtype, on U diag(s) Vᵀ with s
log-spaced over κ = 1e3 and ‖s‖₂ = 1 (a seed as the user's
normalization leaves it), the cheapest plan, by the cost model's ranking, whose error against the exact map
(U p(s) Vᵀ in float64) stays within GUARD × the user's own loop's runs; when none does, the direct plan runs,
which still gains fused epilogues and block triangles. "fastest" keeps the cost model's choice, "direct"
always takes the direct plan: the policies of ``polygen.load(name, accuracy=...)`` (polygen.runtime.accuracy,
which measures against the spec's direct plan, there being no user loop).
"""

from __future__ import annotations

import math

import torch

from polygen.compile.recover import Region
from polygen.compile.witness import apply_steps, replay
from polygen.runtime.accuracy import proxy_shape

GUARD = 2.0
COND = 1e3


def _gate_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    """The region's matrix shape, or above PROXY_ELEMENTS a proxy of the same aspect ratio (as
    polygen.runtime.accuracy estimates plans: the errors' ratio, which the gate reads, keeps with the aspect)."""
    return proxy_shape(shape[-2], shape[-1])


def errors(region: Region) -> dict[str, float]:
    """Relative errors against the exact map at the gate's shape: the user's loop and every polygen plan."""
    from polygen.compile.ops import function_for

    assert region.dtype is not None
    m, n = _gate_shape(region.shape)
    gen = torch.Generator().manual_seed(0)
    k = min(m, n)
    U, _ = torch.linalg.qr(torch.randn(m, k, generator=gen, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(n, k, generator=gen, dtype=torch.float64))
    s = torch.logspace(0, -math.log10(COND), k, dtype=torch.float64)
    s = s / torch.linalg.vector_norm(s)  # the seed as the user's normalization leaves it: ‖X‖_F = 1
    X = (U * s) @ V.mT
    lead = (1,) * (len(region.shape) - 2)
    exact = (U * apply_steps(region.steps, s)) @ V.mT
    if region.transposed:
        exact = exact.mT
    Xd = X.to(region.dtype).reshape(*lead, m, n)

    def err(Y: torch.Tensor) -> float:
        Y = Y.reshape(exact.shape).double()
        return float(torch.linalg.norm(Y - exact) / torch.linalg.norm(exact))

    out = {"user": err(replay(region, Xd))}
    f = function_for(region.spec_text, "torch")
    for plan in f.ranked_plans(region.shape[-2:], region.dtype):
        Y = f(Xd, plan=plan)
        out[plan] = err(Y.mT if region.transposed else Y)
    return out


_DECIDED: dict[tuple, str] = {}  # one measurement per distinct region (a step's 24 equal chains: one)


def _signature(region: Region) -> tuple:
    """What decides the gate: the spec, the shape and dtype, and the user's ops with their number arguments."""
    ops = tuple((str(n.target), tuple(a if isinstance(a, (int, float)) else type(a).__name__ for a in n.args))
                for n in region.nodes)
    return (region.spec_text, region.shape, str(region.dtype), region.transposed, ops)


def choose_plan(region: Region, policy: str) -> str:
    """The plan key for the replacement ("" = the cost model's choice at run time)."""
    if policy == "fastest":
        return ""
    if policy == "direct":
        return "direct"
    key = _signature(region)
    if key not in _DECIDED:
        _DECIDED[key] = _guard(region)
    return _DECIDED[key]


def _guard(region: Region) -> str:
    """The cheapest plan within GUARD× the user's error ("" when that is the cost model's own choice)."""
    from polygen.compile.ops import function_for

    assert region.dtype is not None
    f = function_for(region.spec_text, "torch")
    ranked = f.ranked_plans(region.shape[-2:], region.dtype)
    if ranked[0] == "direct":
        return ""
    errs = errors(region)
    passing = [name for name in ranked if errs[name] <= GUARD * errs["user"]]
    best = passing[0] if passing else "direct"
    return "" if best == ranked[0] else best
