"""The spectral semantics of a spectral map: apply its scalar steps to numbers (float64 ground truth)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from polygen.ir.poly import Poly
from polygen.ir.spectral import Fit, SpectralMap, Step

Watch = Callable[[str, Poly, dict[str, Any]], None]  # (what, polynomial, the values it is evaluated at)


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


def apply_step(step: Step, env: dict[str, Any], watch: Watch | None = None) -> dict[str, Any]:
    """One simultaneous update on scalar (array) values; lets first, in order.

    A fitted parameter is chosen from the whole spectrum at once (the exact, unsketched objective).
    ``watch`` sees every polynomial with the values it is evaluated at (for :func:`largest_magnitude`).
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
        if watch is not None:
            watch(f"let {let.name}", let.expr, local)
        local[let.name] = let.expr.evaluate(local)
    if fit is not None and fit.param not in local:
        do_fit()
    new = dict(env)
    for var, poly in step.updates:
        if watch is not None:
            watch(f"update of {var}", poly, local)
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


def largest_magnitude(smap: SpectralMap, x: Any) -> tuple[float, str]:
    """The largest magnitude the map's computation meets on ``x`` (float64), and where.

    Every constant (coefficients, eps, safety, a fitted parameter's interval) and, at every step instance,
    every polynomial's terms: each factor's power |v|^k, each monomial, each |c|·|monomial|, and Σ|c|·|monomial|,
    which bounds every partial sum whatever order a schedule adds the terms in. Matrix entries are bounded by
    the spectral norm, so these scalar bounds bound the matrices' entries and running sums too. Non-finite
    values count as infinite.
    """
    norm = smap.normalization
    top, top_at = max(norm.eps, norm.safety), "[input] eps/safety"

    def see(value: Any, what: str) -> None:
        nonlocal top, top_at
        v = float(value) if np.isfinite(value) else float("inf")
        if v > top:
            top, top_at = v, what

    where = [""]

    def watch(what: str, poly: Poly, values: dict[str, Any]) -> None:
        total: Any = 0.0
        for mono, c in poly.terms:
            see(abs(c), f"a coefficient of the {what} in {where[0]}")
            m = np.ones(np.shape(x))
            for sym, k in mono:
                pk = np.abs(np.asarray(values[sym], dtype=float)) ** k
                see(np.max(pk, initial=0.0), f"{sym}**{k} in the {what} in {where[0]}")
                m = m * pk
            see(np.max(m, initial=0.0), f"a monomial of the {what} in {where[0]}")
            total = total + abs(c) * m
        see(np.max(total, initial=0.0), f"the {what} in {where[0]}")

    x = np.asarray(x, dtype=float)
    with np.errstate(all="ignore"):
        g = {smap.input_symbol: x}
        where[0] = "the initial values"
        for v in smap.variables:
            watch(f"init of {v.name}", v.init, g)
        env = initial_env(smap, x)
        n = 0
        for step in smap.steps:
            if step.fit is not None:
                see(max(abs(step.fit.lo), abs(step.fit.hi)), f"the fitted parameter's interval in {step.label}")
            for _ in range(step.repeat):
                where[0] = f"step instance {n} ({step.label})"
                env = apply_step(step, env, watch)
                for var, val in env.items():
                    see(np.max(np.abs(np.asarray(val, dtype=float)), initial=0.0), f"{var} after {where[0]}")
                n += 1
    return top, top_at
