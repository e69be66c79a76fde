"""Run a schedule on spectral values: every matrix is a function of the same singular values.

This is the schedule's scalar semantics: ``X Yᵀ`` of two rectangular values is the product of their
scalar maps, ``S@X`` likewise, so a float64 interpretation must equal the spectral map exactly (a test
for every plan). With ``unit_roundoff`` each op adds a norm-wise rounding error u·max|value| (what a
matmul in that dtype commits), which is how restart placement sees low-precision drift.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from polygen.ir.schedule import ALIAS, IDENTITY, LINCOMB, MATMUL, Loop, Op, Schedule


def _scalar(v: Any, params: dict[str, float]) -> float:
    return params[v] if isinstance(v, str) else float(v)


def interpret(sched: Schedule, x: Any, *, unit_roundoff: float = 0.0, seed: int = 0) -> tuple[Any, ...]:
    """Values of ``sched.outputs`` at normalized singular values ``x`` (numpy array)."""
    x = np.asarray(x, dtype=np.float64)
    rng = np.random.default_rng(seed)
    env: dict[str, Any] = {"G": x.copy()}

    def rnd(v: Any) -> Any:
        if unit_roundoff:
            scale = float(np.max(np.abs(v))) if np.all(np.isfinite(v)) else 0.0
            v = v + unit_roundoff * scale * rng.uniform(-1.0, 1.0, size=v.shape)
        return v

    env["G"] = rnd(env["G"])

    def run(op: Op, params: dict[str, float]) -> None:
        a = lambda k: _scalar(getattr(op, k), params)
        if op.kind == MATMUL:
            v = a("alpha") * env[op.a] * env[op.b]
            if op.c:
                v = v + a("beta") * env[op.c]
            v = v + a("gamma")
            env[op.out] = rnd(v)
        elif op.kind == LINCOMB:
            v = sum(_scalar(k, params) * env[m] for k, m in op.terms) + a("gamma")
            env[op.out] = rnd(v * np.ones_like(x))
        elif op.kind == IDENTITY:
            env[op.out] = a("gamma") * np.ones_like(x)
        elif op.kind == ALIAS:
            env[op.out] = env[op.a]
        else:  # pragma: no cover - Op kinds are closed
            raise ValueError(op.kind)

    with np.errstate(all="ignore"):
        for blk in sched.blocks:
            if isinstance(blk, Loop):
                for row in blk.table:
                    params = dict(zip(blk.params, row))
                    for op in blk.body:
                        run(op, params)
            else:
                run(blk, {})
    return tuple(env[o] for o in sched.outputs)
