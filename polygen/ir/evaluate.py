"""The spectral semantics of a spectral map: apply its scalar steps to numbers (float64 ground truth)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from polygen.ir.spectral import Fit, SpectralMap, Step


def fit_objective(fit: Fit, r: Any) -> np.ndarray:
    """Coefficients (lowest power first) of Σ_spectrum R⁺(param)², a polynomial in the parameter.

    ``r`` holds residual values along the last axis (one spectrum per leading index).
    """
    r = np.asarray(r, dtype=float)
    h = [np.asarray(c.evaluate({fit.residual: r}) * np.ones_like(r)) for c in fit.coeffs]
    k = len(h)
    out = np.zeros(r.shape[:-1] + (2 * k - 1,))
    for i in range(k):
        for j in range(k):
            out[..., i + j] += np.sum(h[i] * h[j], axis=-1)
    return out


def minimize_on_interval(coeffs: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """argmin over [lo, hi] of the polynomial Σ c_k a^k (along the last axis): endpoints and critical points."""
    coeffs = np.asarray(coeffs, dtype=float)
    flat = coeffs.reshape(-1, coeffs.shape[-1])
    best = np.empty(flat.shape[0])
    for n, c in enumerate(flat):
        cands = [lo, hi]
        d = np.polynomial.polynomial.polyder(c)
        if np.any(d[1:] != 0):
            roots = np.polynomial.polynomial.polyroots(d)
            cands += [float(z.real) for z in roots if abs(z.imag) <= 1e-9 * max(1.0, abs(z)) and lo <= z.real <= hi]
        vals = np.polynomial.polynomial.polyval(np.array(cands), c)
        best[n] = cands[int(np.argmin(vals))]
    return best.reshape(coeffs.shape[:-1])


def apply_step(step: Step, env: dict[str, Any]) -> dict[str, Any]:
    """One simultaneous update on scalar (array) values; lets first, in order.

    A fitted parameter is chosen from the whole spectrum at once (the exact, unsketched objective).
    """
    local = dict(env)
    fit = step.fit

    def do_fit() -> None:
        assert fit is not None
        r = np.asarray(local[fit.residual], dtype=float)
        a = minimize_on_interval(fit_objective(fit, r), fit.lo, fit.hi)
        local[fit.param] = np.expand_dims(a, -1) if np.ndim(a) else float(a)

    for let in step.lets:
        if fit is not None and fit.param not in local and fit.param in let.expr.symbols:
            do_fit()
        local[let.name] = let.expr.evaluate(local)
    if fit is not None and fit.param not in local:
        do_fit()
    new = dict(env)
    for var, poly in step.updates:
        new[var] = poly.evaluate(local) * np.ones(np.shape(env[next(iter(env))]))
    return new


def initial_env(smap: SpectralMap, x: Any) -> dict[str, Any]:
    """Start values of every variable at ``x``; complex ``x`` is kept, so the maps extend to complex arguments."""
    x = np.asarray(x, dtype=complex if np.iscomplexobj(x) else float)
    g = {smap.input_symbol: x}
    return {v.name: v.init.evaluate(g) * np.ones_like(x) for v in smap.variables}


def trajectory(smap: SpectralMap, x: Any) -> Iterator[dict[str, Any]]:
    """Values of every variable before the first step and after each step instance (repeats unrolled)."""
    env = initial_env(smap, x)
    yield env
    with np.errstate(all="ignore"):
        for step in smap.steps:
            for _ in range(step.repeat):
                env = apply_step(step, env)
                yield env


def evaluate_map(smap: SpectralMap, x: Any) -> dict[str, Any]:
    """Final values of every variable at normalized singular values / eigenvalues ``x``."""
    *_, last = trajectory(smap, x)
    return last


def output_map(smap: SpectralMap, x: Any) -> Any:
    """The scalar map of the primary output variable, before output rescaling."""
    return evaluate_map(smap, x)[smap.output.var]
