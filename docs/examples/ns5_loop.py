"""Keller Jordan's Newton–Schulz loop as users write it: `polygen explain docs/examples/ns5_loop.py:ns5 --shape
1024x4096` shows what torch.compile(ns5, backend="polygen") does with it."""

import torch


def ns5(G: torch.Tensor, steps: int = 5) -> torch.Tensor:
    a, b, c = (3.4445, -4.7750, 2.0315)
    X = G.bfloat16()
    if G.size(-2) > G.size(-1):
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for _ in range(steps):
        A = X @ X.mT
        B = b * A + c * A @ A
        X = a * X + B @ X
    if G.size(-2) > G.size(-1):
        X = X.mT
    return X
