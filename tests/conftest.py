"""Shared helpers: matrices with controlled spectra and per-dtype tolerances."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("POLYGEN_CACHE", os.path.join(os.path.dirname(__file__), "..", ".pytest_cache", "polygen"))
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

# Relative Frobenius error of a generated function against the spec's exact spectral map (float64 SVD).
# The maps amplify input rounding by their slope (up to ~3.4^5 ≈ 500 near 0 for NS5), hence κ-dependence.
TOL_MAP = {
    ("float32", "well"): 5e-6,  # κ <= 10
    ("float32", "ill"): 1e-3,  # κ <= 1e4: slopes up to ~500 near 0 times u times √m
    ("bfloat16", "well"): 3e-2,
    ("bfloat16", "ill"): 0.25,
}


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.norm(a.double() - b.double()) / torch.linalg.norm(b.double()))


@pytest.fixture(autouse=True)
def _quiet_stale_warning(recwarn):  # generated/ may be rebuilt while tests run; the warning is expected then
    yield
