"""The spectral semantics of a spectral map: apply its scalar steps to numbers (float64 ground truth)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from polygen.ir.spectral import SpectralMap, Step


def apply_step(step: Step, env: dict[str, Any]) -> dict[str, Any]:
    """One simultaneous update on scalar (array) values; lets first, in order."""
    local = dict(env)
    for let in step.lets:
        local[let.name] = let.expr.evaluate(local)
    new = dict(env)
    for var, poly in step.updates:
        new[var] = poly.evaluate(local) * np.ones_like(np.asarray(env[next(iter(env))], dtype=float))
    return new


def initial_env(smap: SpectralMap, x: Any) -> dict[str, Any]:
    x = np.asarray(x, dtype=float)
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
