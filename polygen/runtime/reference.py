"""Ground truth in float64: the spec's exact spectral map through an SVD / eigh, and the exact targets.

These are what tests and ``polygen compare`` measure generated code against.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from polygen.ir.evaluate import output_map
from polygen.ir.spectral import SpectralMap


def _scale(smap: SpectralMap, G64: torch.Tensor) -> torch.Tensor:
    nz = smap.normalization
    if nz.norm == "none":
        return torch.ones(G64.shape[:-2] + (1, 1), dtype=torch.float64)
    return torch.linalg.vector_norm(G64, dim=(-2, -1), keepdim=True) * nz.safety + nz.eps


def spectral_reference(smap: SpectralMap, G: torch.Tensor) -> torch.Tensor:
    """U f(S) Vᵀ (or Q f(Λ) Qᵀ) with f the spec's composed scalar map, normalization and rescaling exact."""
    G64 = G.detach().to(torch.float64).cpu()
    s = _scale(smap, G64)
    X = G64 / s
    if smap.input_kind == "symmetric":
        lam, Qm = torch.linalg.eigh((X + X.mT) / 2)
        f = torch.from_numpy(np.asarray(output_map(smap, lam.numpy()), dtype=np.float64))
        Y = (Qm * f.unsqueeze(-2)) @ Qm.mT
    else:
        U, S, Vh = torch.linalg.svd(X, full_matrices=False)
        f = torch.from_numpy(np.asarray(output_map(smap, S.numpy()), dtype=np.float64))
        f = torch.where(S > 0, f, torch.zeros_like(f))  # odd maps send 0 to 0
        Y = (U * f.unsqueeze(-2)) @ Vh
    out = smap.output
    if out.rescale == "rms":
        m, n = Y.shape[-2:]
        Y = Y * (math.sqrt(m * n) / torch.linalg.vector_norm(Y, dim=(-2, -1), keepdim=True).clamp_min(1e-300))
    elif out.rescale == "norm":
        Y = Y * s**out.exponent
    return Y


def polar(G: torch.Tensor) -> torch.Tensor:
    """U Vᵀ in float64."""
    U, _, Vh = torch.linalg.svd(G.detach().to(torch.float64).cpu(), full_matrices=False)
    return U @ Vh


def power(G: torch.Tensor, p: float, *, rms: bool = True) -> torch.Tensor:
    """U S^p Vᵀ in float64 (rescaled to unit RMS like Muon^p when ``rms``)."""
    U, S, Vh = torch.linalg.svd(G.detach().to(torch.float64).cpu(), full_matrices=False)
    Y = (U * S.pow(p).unsqueeze(-2)) @ Vh
    if rms:
        m, n = Y.shape[-2:]
        Y = Y * (math.sqrt(m * n) / torch.linalg.vector_norm(Y, dim=(-2, -1), keepdim=True))
    return Y


def matrix_power_sym(A: torch.Tensor, e: float) -> torch.Tensor:
    """A^e for symmetric positive definite A, by eigh in float64."""
    A64 = A.detach().to(torch.float64).cpu()
    lam, Q = torch.linalg.eigh((A64 + A64.mT) / 2)
    return (Q * lam.clamp_min(0).pow(e).unsqueeze(-2)) @ Q.mT


def target_reference(smap: SpectralMap, G: torch.Tensor) -> torch.Tensor:
    """The mathematical target of the spec (what the iteration approximates), in float64."""
    if smap.target == "polar":
        return polar(G)
    if smap.target == "power":
        return power(G, smap.power, rms=smap.output.rescale == "rms")
    if smap.target == "sqrt":
        return matrix_power_sym(G, 0.5)
    return matrix_power_sym(G, -smap.power)


def random_with_spectrum(shape: tuple[int, ...], cond: float = 1e3, *, seed: int = 0, dtype: Any = torch.float32,
                         symmetric: bool = False, spectrum: Any = None) -> torch.Tensor:
    """U diag(s) Vᵀ with log-spaced s in [1/cond, 1] (or the given ``spectrum``), exactly orthogonal factors."""
    gen = torch.Generator().manual_seed(seed)
    *batch, m, n = shape
    k = min(m, n)
    s = torch.as_tensor(spectrum, dtype=torch.float64) if spectrum is not None else \
        torch.logspace(0, -math.log10(cond), k, dtype=torch.float64)
    s = s.expand(*batch, k) if batch else s
    U, _ = torch.linalg.qr(torch.randn(*batch, m, k, generator=gen, dtype=torch.float64))
    if symmetric:
        return ((U * s.unsqueeze(-2)) @ U.mT).to(dtype)
    V, _ = torch.linalg.qr(torch.randn(*batch, n, k, generator=gen, dtype=torch.float64))
    return ((U * s.unsqueeze(-2)) @ V.mT).to(dtype)
