"""place_restarts: where a Gram-space plan must rebuild X and R, derived from the scalar map and the dtype.

In the Gram form the output is X = Q·X₀ with q(σ) = x_t(σ)/x_s(σ) since the last restart s. Forming that
product commits a norm-wise rounding error of about u·max_σ q(σ) (u: the dtype's unit roundoff), while
the direct form commits about u·max x. Simulating the spec's scalar map on its domain tells how fast q
grows, so a restart goes in just before u·max q would exceed the budget: a tenth of the spec's own
approximation error (on the singular values that carry signal), or FACTOR·u for maps that converge.
In float32 Keller Jordan's NS5 (q ≤ 500 on [1e-3, 1]) needs none; in bfloat16 it restarts every 2 steps.

FACTOR is set by measurement. u·max q bounds the error of the smallest singular values only; what it does not
model is the rounding error R ← HRH accumulates between restarts, which the later steps of an aggressive map
amplify. FACTOR = 64 (one bf16 restart for NS5, after step 3) was as accurate as 16 for NS5 (median relative
errors 0.066 / 0.046 / 0.030 against 0.065 / 0.050 / 0.028 on 64×256 and 256×1024 at κ = 1e3 and 128×512 at κ
= 10), but it broke the bf16 plans of the maps it was not measured on: at κ = 1e3 the chosen Gram plans of
polar_express_8 and ns_cubic reached relative errors of 1e11–1e25 and 400 (direct form: 0.13 and 0.07), and
polar_express's doubled (0.15 vs 0.07). FACTOR = 16 keeps every built-in polar spec's chosen plan within 1.5×
of the direct form's error (tests/test_numerics.py::test_chosen_plan_as_accurate_as_direct_at_kappa_1e3). A
rule that also bounds R's accumulated error would let NS5 restart less often in bf16; a worst-case scalar
model of it (every eigenvalue of R shifted by u·max h²·max r per step) proved far too pessimistic to use.
Budgeting the whole own error instead of a tenth (which also restarts bf16 NS5 once) failed in float16:
NS5's Gram plan then never restarts (u·max q = 0.24 < 0.32) and its error at κ = 1e3 was 0.21 against the
direct form's 0.0095.
"""

from __future__ import annotations

import numpy as np

from polygen.ir.evaluate import output_map, trajectory
from polygen.ir.spectral import SpectralMap

UNIT_ROUNDOFF = {"float64": 2.0**-53, "float32": 2.0**-24, "bfloat16": 2.0**-8, "float16": 2.0**-11}
FACTOR = 16.0
SIGNAL = 0.1  # errors count on singular values >= SIGNAL·hi; below, both forms sit on the noise floor


def dtype_class(dtype: object) -> str:
    name = str(dtype).replace("torch.", "")
    return name if name in UNIT_ROUNDOFF else "float32"


def _grid(smap: SpectralMap) -> np.ndarray:
    lo, hi = smap.domain
    return np.geomspace(max(lo, 1e-6), hi, 513)


def restart_budget(smap: SpectralMap, dtype: str) -> float:
    x = _grid(smap)
    sig = x >= SIGNAL * x[-1]
    own = float(np.max(np.abs(output_map(smap, x) - smap.target_value(x))[sig]))
    return max(0.1 * own, FACTOR * UNIT_ROUNDOFF[dtype])


def place_restarts(smap: SpectralMap, dtype: str) -> tuple[int, ...]:
    """0-based step instances after which the Gram plan restarts; () when none are needed."""
    total = smap.total_steps
    if smap.hints.restart_every:
        k = smap.hints.restart_every
        return tuple(t for t in range(k - 1, total - 1, k))
    u = UNIT_ROUNDOFF[dtype]
    budget = restart_budget(smap, dtype)
    var = smap.variables[0].name
    xs = [np.asarray(env[var], dtype=float) for env in trajectory(smap, _grid(smap))]
    restarts: list[int] = []
    base = 0  # x index of the last restart (x_base = X₀ of the current segment)
    t = 1
    while t <= total:
        with np.errstate(all="ignore"):
            q = np.abs(xs[t] / xs[base])
        if u * float(np.nanmax(q)) > budget and t - 1 > base:
            restarts.append(t - 2)  # restart after step instance t-2, i.e. rebuild from x_{t-1}
            base = t - 1
            continue
        t += 1
    return tuple(restarts)

