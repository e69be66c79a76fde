"""Run a schedule on spectral values: every matrix is a function of the same singular values.

This is the schedule's scalar semantics: ``X Yᵀ`` of two rectangular values is the product of their
scalar maps, ``S@X`` likewise, so a float64 interpretation must equal the spectral map exactly (a test
for every plan). With ``unit_roundoff`` each op adds a norm-wise rounding error u·max|value| (what a
matmul in that dtype commits), which is how restart placement sees low-precision drift.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from polygen.ir.evaluate import fit_objective, minimize_on_interval
from polygen.ir.names import INPUT
from polygen.ir.poly import Poly
from polygen.ir.schedule import Alias, Identity, LinComb, Loop, MatMul, Op, Ref, Scalar, Schedule, Sketch
from polygen.ir.schedule import Fit as FitOp
from polygen.ir.spectral import Fit


def _scalar(v: Scalar, params: dict[str, Any]) -> Any:
    """A number, or a run-time scalar evaluated with the loop parameters and fitted values bound."""
    return v.value(params) if isinstance(v, Ref) else float(v)


def interpret(sched: Schedule, x: Any, *, unit_roundoff: float = 0.0, seed: int = 0,
              peak: dict[str, float] | None = None) -> tuple[Any, ...]:
    """Values of ``sched.outputs`` at normalized singular values ``x`` (numpy array). ``peak``, when given, gets
    the largest magnitude each op's output name takes (NaN as inf): a plan's own
    intermediates (a Gram plan's Q grows like y/x) must fit the dtype it runs in, not only the map's."""
    x = np.asarray(x, dtype=np.float64)
    rng = np.random.default_rng(seed)
    env: dict[str, Any] = {INPUT: x.copy()}

    def rnd(v: Any) -> Any:
        if unit_roundoff:
            scale = float(np.max(np.abs(v))) if np.all(np.isfinite(v)) else 0.0
            v = v + unit_roundoff * scale * rng.uniform(-1.0, 1.0, size=v.shape)
        return v

    env[INPUT] = rnd(env[INPUT])

    def run(op: Op, params: dict[str, Any]) -> None:
        match op:
            case MatMul():
                v = _scalar(op.alpha, params) * env[op.a] * env[op.b]
                if op.c:
                    v = v + _scalar(op.beta, params) * env[op.c]
                env[op.out] = rnd(v + _scalar(op.gamma, params))
            case LinComb():
                v = sum(_scalar(k, params) * env[m] for k, m in op.terms) + _scalar(op.gamma, params)
                env[op.out] = rnd(v * np.ones_like(x))
            case Identity():
                env[op.out] = _scalar(op.gamma, params) * np.ones_like(x)
            case Alias():
                env[op.out] = env[op.a]
            case Sketch():
                env[op.out] = np.ones_like(x)  # spectrally, an (exact) sketch preserves the residual's spectrum
            case FitOp():
                coeffs = [Poly.from_dict({((op.a, j),): c for j, c in enumerate(row)}) for row in op.data]
                fit = Fit(op.out, op.lo, op.hi, op.a, 0, tuple(coeffs))
                best = minimize_on_interval(fit_objective(fit, env[op.a]), op.lo, op.hi)
                params[op.out] = float(best)
                runtime[op.out] = float(best)
            case _:  # pragma: no cover - Op kinds are closed
                raise ValueError(op.kind)
        if peak is not None and op.out in env:
            top = float(np.max(np.abs(env[op.out]), initial=0.0))
            peak[op.out] = max(peak.get(op.out, 0.0), np.inf if np.isnan(top) else top)

    runtime: dict[str, float] = {}  # fitted scalars, visible to the ops after their fit
    with np.errstate(all="ignore"):
        for blk in sched.blocks:
            if isinstance(blk, Loop):
                for row in blk.table:
                    params = runtime | dict(zip(blk.params, row))
                    for op in blk.body:
                        run(op, params)
            else:
                run(blk, dict(runtime))
    return tuple(env[o] for o in sched.outputs)
