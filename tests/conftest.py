"""Shared helpers: matrices with controlled spectra and per-dtype tolerances."""

from __future__ import annotations

import os

import torch

# Without CUDA, Triton kernels run in its interpreter. triton.language decides at import time whether its own
# @jit helpers (tl.zeros, ...) are interpretable, so this must be set before any test module imports triton.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9 warns when unset; keep its default
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

# Specs whose maps amplify rounding far beyond NS-type iterations get a stated factor on TOL_MAP.
# ifnso_14 is one polynomial of degree 16385 in R = I - XXᵀ: R^(2^k) doubles R's relative rounding error at each
# squaring, and its top coefficients multiply it by ~10²; in bf16 that is a ~10 % error for κ = 10 (measured 0.13).
SENSITIVITY = {"ifnso_14": {"float32": 4.0, "bfloat16": 6.0}, "ifnso_14_fit": {"float32": 4.0, "bfloat16": 6.0}}


def tol(kind: str, dtype: str, name: str | None = None) -> float:
    """TOL_MAP[(dtype, kind)] times the spec's stated sensitivity factor."""
    return TOL_MAP[(dtype, kind)] * SENSITIVITY.get(name or "", {}).get(dtype, 1.0)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.norm(a.double() - b.double()) / torch.linalg.norm(b.double()))




def same_state(a: object, b: object) -> bool:
    """Bitwise equality of (nested) optimizer state: tensors by dtype and value, containers by structure."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same_state(x, y) for x, y in zip(a, b))
    return a == b


def generated_names(source: str) -> set[str]:
    """Every name a generated module binds or reads at module level and inside its plan functions (``_plan*``;
    other functions count by their own name only): what a spec symbol's code name must never meet."""
    import ast

    names: set[str] = set()
    for node in ast.parse(source).body:
        plan = isinstance(node, ast.FunctionDef) and node.name.startswith("_plan")
        for sub in ast.walk(node) if plan or not isinstance(node, ast.FunctionDef) else [node]:
            if isinstance(sub, ast.Name):
                names.add(sub.id)
            elif isinstance(sub, (ast.FunctionDef, ast.ClassDef)):
                names.add(sub.name)
            elif isinstance(sub, ast.alias):
                names.add((sub.asname or sub.name).split(".")[0])
    return names
