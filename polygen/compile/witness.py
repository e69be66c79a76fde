"""A numerical witness for a recovered region: replay its ops at a small proxy shape in float64 on
U diag(s) Vᵀ with random orthogonal U, V, and compare with the recovered steps applied to s.

The replay runs the graph's own aten ops (only shapes are adapted: eye sizes and the input), so a rule that
misreads an op (an entrywise product taken for a matmul, swapped α and β, a dropped transpose) disagrees here
even though the recovery believed it. A diagonal input would not do: an entrywise product of diagonal
matrices is their matrix product.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import torch
from torch.fx import Node

from polygen.compile.recover import _SAME_SHAPE, Region

aten = torch.ops.aten
prims = torch.ops.prims
RTOL = 1e-8
_PASS_THROUGH = (prims.convert_element_type.default, aten._to_copy.default) + _SAME_SHAPE


def _proxy_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    m, n = shape[-2], shape[-1]
    mm, nn = (5, 9) if m < n else (9, 5) if m > n else (7, 7)
    return (2,) * (len(shape) - 2) + (mm, nn)


def proxy_input(shape: tuple[int, ...], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(X = U diag(s) Vᵀ, U, s, Vᵀ) in float64 at the proxy of ``shape``: singular values spread over an
    interval, scaled to ‖s‖₂ = 1 (a seed as a Frobenius normalization leaves it)."""
    gen = torch.Generator().manual_seed(seed)
    ps = _proxy_shape(shape)
    batch, (m, n) = ps[:-2], ps[-2:]
    k = min(m, n)
    U, _ = torch.linalg.qr(torch.randn(*batch, m, k, generator=gen, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(*batch, n, k, generator=gen, dtype=torch.float64))
    s = torch.linspace(0.05, 1.0, k, dtype=torch.float64)
    s = (s / torch.linalg.vector_norm(s)).expand(*batch, k).clone()  # a seed: ‖X‖_F = 1, as normalized
    return U @ torch.diag_embed(s) @ V.mT, U, s, V.mT


def apply_steps(steps: list[tuple[Fraction, ...]], s: torch.Tensor) -> torch.Tensor:
    """The recovered map on singular values s: each step's polynomial by Horner, in s's dtype."""
    for coeffs in steps:
        acc = torch.zeros_like(s)
        for c in reversed(coeffs):
            acc = acc * s + float(c)
        s = acc
    return s


def replay(region: Region, X: torch.Tensor) -> torch.Tensor:
    """The region's own ops on ``X`` (a seed of the region's rank), in X's dtype: float64 for the witness, the
    user's dtype for the accuracy gate."""
    real = region.shape
    sizes = {real[-2]: X.shape[-2], real[-1]: X.shape[-1]}
    assert region.seed is not None and region.output is not None
    env: dict[Any, Any] = {region.seed: X}

    def arg(a: Any) -> Any:
        if isinstance(a, Node):
            return env[a]
        if isinstance(a, (list, tuple)):
            return type(a)(arg(x) for x in a)
        return a

    for n in region.nodes:
        if n is region.seed:
            continue
        args: Any = n.args
        if n.target == aten.eye.default:
            env[n] = torch.eye(sizes[args[0]], dtype=X.dtype)
            continue
        if n.target in _PASS_THROUGH:  # dtype casts and shape-keeping views: the proxy keeps its own
            env[n] = env[args[0]]
            continue
        kwargs = {k: arg(v) for k, v in n.kwargs.items() if k not in ("dtype", "device", "layout", "pin_memory")}
        target: Any = n.target
        env[n] = target(*arg(args), **kwargs)
    return env[region.output]


def witness(region: Region, seed: int = 0) -> tuple[bool, float]:
    """(agrees, relative error) of the replayed region against the recovered steps at the proxy shape."""
    X, U, s, Vt = proxy_input(region.shape, seed)
    try:
        got = replay(region, X)
    except (RuntimeError, TypeError, KeyError, ValueError, IndexError):
        return False, float("inf")  # an op that does not replay at another shape: refuse
    want = U @ torch.diag_embed(apply_steps(region.steps, s)) @ Vt
    if region.transposed:
        want = want.mT
    if got.shape != want.shape or not torch.isfinite(want).all():
        return False, float("inf")  # a map that overflows on its own domain proves nothing: refuse
    err = float(torch.linalg.norm(got - want) / torch.linalg.norm(want).clamp_min(1e-300))
    return err <= RTOL, err
