"""place_restarts: where a Gram-space plan must rebuild X and R, derived from the scalar map and the dtype.

Between restarts the Gram form runs Q ← HQ, R ← HRH on the small side and finally forms X = QX₀, with
q(σ) = x_t(σ)/x_s(σ) since the segment's start s. Two things go wrong in low precision, and a scalar
simulation of the spec's map on its domain sees both:

* **Growth of Q.** Forming QX₀ commits a norm-wise rounding error of about u·max q (u: the dtype's unit
  roundoff). In the *last* segment that error reaches the output unchanged, so u·max q must stay under the
  budget: a tenth of the spec's own approximation error (on the singular values that carry signal) or
  FACTOR·u, whichever is larger. Errors committed in an earlier segment are followed by more steps, which pull
  perturbed singular values back towards the map's fixed point, so earlier segments get the larger of the
  same tenth and MID·FACTOR·u.
* **Negative eigenvalues of R.** Rounding makes the computed Gram matrix indefinite, with eigenvalues down to
  about −u·max r; on r < 0 a step r ← r·h(r)² grows |r| by about h(0)² per step until the polynomial is
  evaluated far outside the spectrum and Q explodes (Dao-AILab gram-newton-schulz models restarts this way).
  The simulation follows r = −u·max r from each segment's start (an imaginary x through the same steps) and
  rejects a segment once |r| would exceed the spectrum's own max r.

Among the placements every segment of which passes, the plan takes the fewest restarts (each costs two
long-side products), then the smallest negative excursion (the widest margin from that divergence), then the
smallest max q over all segments (gram-newton-schulz's ranking). In float32 Keller Jordan's NS5 needs no
restart (max q ≈ 471 on [1e-3, 1]); in bfloat16 and float16 it restarts once, after step 3 (0-based 2).

The constants were checked against matrix runs: the worst ratio, over 64×256, 256×1024 and 2×128×512 inputs
at κ = 10 and 1e3 (two seeds each), of the Gram plan's error against the exact map to the direct form's, for
every placement of up to two restarts. Chosen placements (bf16 / fp16 ratios): muon_ns5 (2,) 1.24 / 1.34
(the earlier rule's every-two-steps (1, 3): 1.13 / 1.15, one restart more); polar_express (0, 2) 1.26 / 1.28;
polar_express_8 (1, 3) 1.12 / 1.22 and 1.36 in float32 (the earlier (0, 2): 1.71 / 1.69 / 2.04); ns_cubic (6,)
1.15 / 1.00. What the rule rejects or ranks lower was measured worse: q = 40 in the last segment (muon_ns5
(1,): 2.31 in both dtypes; bf16 rejects it on q, while in float16 it passes and loses to (2,) on the
excursion, 0.070 against 0.048), a negative excursion of 23 (muon_ns5 (3,), bf16: 3.28) or 481
(polar_express_8 (1, 5), bf16, whose q passes: 1e26), and ranking by last-segment q or max q instead of
the excursion picked ns_cubic (12,) in float32 (5.3) and muon_ns5 (1,) in float16. Without any restart bf16
NS5 is 80× less accurate than the direct form, so its Gram plan cannot get down to the two long-side products
the float32 plan uses.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from polygen.ir.evaluate import apply_step, output_map, trajectory
from polygen.ir.spectral import SpectralMap
from polygen.passes.plan_gram_space import gram_space_applicable

UNIT_ROUNDOFF = {"float64": 2.0**-53, "float32": 2.0**-24, "bfloat16": 2.0**-8, "float16": 2.0**-11}
FACTOR = 16.0
MID = 4.0  # an earlier segment's u·max q may reach MID × the budget (later steps contract its error)
NEG_LIMIT = 1.0  # a rounding-born negative eigenvalue may grow to at most this × the spectrum's max r
SIGNAL = 0.1  # errors count on singular values >= SIGNAL·hi; below, both forms sit on the noise floor


def dtype_class(dtype: object) -> str:
    name = str(dtype).replace("torch.", "")
    return name if name in UNIT_ROUNDOFF else "float32"


def _grid(smap: SpectralMap) -> np.ndarray:
    lo, hi = smap.domain
    return np.geomspace(max(lo, 1e-6), hi, 513)


def restart_budget(smap: SpectralMap, dtype: str, *, last: bool = True) -> float:
    """The error u·max q a segment may commit: rounding headroom (MID× before the last restart), or what a
    tenth of the spec's own error hides anyway."""
    x = _grid(smap)
    sig = x >= SIGNAL * x[-1]
    with np.errstate(all="ignore"):
        err = np.abs(output_map(smap, x) - smap.target_value(x))[sig]
    # A map that overflows somewhere on its domain (allowed only by opting out of verification) must not turn
    # the budget into NaN, which would fail every segment and restart after each step: count finite errors.
    finite = err[np.isfinite(err)]
    own = float(np.max(finite)) if finite.size else 0.0
    return max(0.1 * own, (1.0 if last else MID) * FACTOR * UNIT_ROUNDOFF[dtype])


def _segments(smap: SpectralMap, u: float) -> tuple[np.ndarray, np.ndarray]:
    """q[s, e] = u·max|x_{e+1}/x_s| over the grid, and neg[s, e] = the largest |r|/max r at which steps s..e
    (0-based instances) evaluate their polynomial when the segment starts from r = −u·max r."""
    # Only Gram-form maps get here: one variable, no fitted scalars (apply_step fits on real spectra only, and
    # the probe below is complex).
    assert gram_space_applicable(smap), smap.name
    var = smap.variables[0].name
    xs = [np.asarray(env[var], dtype=float) for env in trajectory(smap, _grid(smap))]
    steps = [step for step in smap.steps for _ in range(step.repeat)]
    top = [float(np.nanmax(x * x)) for x in xs]  # top[k]: the spectrum's max r before step k (top[0]: input)
    total = len(steps)
    q = np.full((total, total), np.inf)
    neg = np.full((total, total), np.inf)
    with np.errstate(all="ignore"):
        for s in range(total):
            x = np.array([1j * np.sqrt(u * top[s])])  # x² = −u·max r: R's most negative rounding eigenvalue
            worst = 0.0
            for e in range(s, total):
                worst = max(worst, float(np.abs(x[0]) ** 2) / top[e])
                neg[s, e] = worst
                x = np.asarray(apply_step(steps[e], {**{v.name: x for v in smap.variables}})[var])
                q[s, e] = u * float(np.nanmax(np.abs(xs[e + 1] / xs[s])))
                if not np.isfinite(worst) or not np.all(np.isfinite(x)):
                    break
    return q, neg


def place_restarts(smap: SpectralMap, dtype: str) -> tuple[int, ...]:
    """0-based step instances after which the Gram plan restarts; () when none are needed."""
    total = smap.total_steps
    if smap.hints.restart_every:
        k = smap.hints.restart_every
        return tuple(t for t in range(k - 1, total - 1, k))
    budget, mid_budget = restart_budget(smap, dtype), restart_budget(smap, dtype, last=False)
    q, neg = _segments(smap, UNIT_ROUNDOFF[dtype])

    def passes(s: int, e: int, last: bool) -> bool:
        if s == e:
            return True  # a restart cannot split a single step
        return bool(q[s, e] <= (budget if last else mid_budget) and neg[s, e] <= NEG_LIMIT)

    # Exact lexicographic ranking: try placements by increasing restart count (each costs two long-side
    # products) and stop at the first count with a feasible one; specs restart a few times at most, so the
    # enumeration stays small (C(total-1, k) placements at count k).
    for count in range(total):
        ranked: list[tuple[float, float, tuple[int, ...]]] = []
        for cut in combinations(range(total - 1), count):
            bounds = list(zip((0, *(c + 1 for c in cut)), (*cut, total - 1)))
            if all(passes(s, e, last=(e == total - 1)) for s, e in bounds):
                ranked.append((max(float(neg[s, e]) for s, e in bounds),
                               max(float(q[s, e]) for s, e in bounds), cut))
        if ranked:
            return min(ranked)[2]
    raise AssertionError("restarting after every step always passes")  # pragma: no cover
