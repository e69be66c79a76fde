"""validate_translation: every plan, interpreted on the spec's domain, must compute the spec's spectral map.

The driver runs this on every spec — built-in, user file, or the compile backend's recovered loop — before any
code is emitted: each distinct schedule of each dtype class and form is run by ir/interpret in float64 on a grid
of the domain (one spectrum of GRID_POINTS values, an exact sketch), and compared with ir/evaluate's map of the
spec *as parsed* (normalize is a pass too). A mismatch is a ScheduleError naming the spec, the plan and the worst
grid point, so no lowering slip — a dropped epilogue coefficient, a wrong carrier or power, two symbols merged
into one schedule name — reaches a generated module.

What it cannot see is what happens after the schedule: the emitters, the templates and the runtime helpers read
the schedule's names and ops as text. A name the emitter gave two meanings (a fitted parameter printed as the
Triton loop's ``coef``), for instance, is invisible to the interpreter, which keys values by the schedule's own
names. Names are guarded by construction (ir/names.py) and by tests/test_names.py, which runs generated modules
against the spectral map.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from polygen.errors import ScheduleError
from polygen.ir.evaluate import evaluate_map
from polygen.ir.interpret import interpret
from polygen.ir.schedule import Schedule
from polygen.ir.spectral import SpectralMap

GRID_POINTS = 256
# float64 on both sides; only association order differs (Horner against Paterson-Stockmeyer, a Gram plan's
# Q·X₀ against the direct steps), which the built-ins show at up to ~1e-13 relative (RESULTS: "Translation
# validation"); a slip in a coefficient or a name is O(1).
TOLERANCE = 1e-8


def domain_grid(smap: SpectralMap, points: int = GRID_POINTS) -> np.ndarray:
    """Half log-spaced (the small singular values, where iterations differ most), half evenly, both ends in."""
    lo, hi = smap.domain
    small = max(lo, hi * 1e-6)
    x = np.concatenate([np.geomspace(small, hi, points // 2), np.linspace(lo, hi, points - points // 2)])
    return np.unique(x)


def plan_error(smap: SpectralMap, sched: Schedule, x: np.ndarray,
               peak: dict[str, float] | None = None) -> tuple[float, float, float, float]:
    """(worst relative error, where, the plan's value, the map's value) over the outputs at the points ``x``.

    The error is taken against max(|map|, 1e-4·max|map|), so values near a zero of the map count absolutely.
    Where the map itself is not finite (allowed only with expect = "none") the point is skipped; where the map
    is finite and the plan is not, the error is infinite."""
    exact = evaluate_map(smap, x)
    got = interpret(sched, x, peak=peak)
    worst = (0.0, float(x[0]), 0.0, 0.0)
    with np.errstate(all="ignore"):
        for out, value in zip(smap.outputs, got):
            want = np.asarray(exact[out.var], dtype=float) * np.ones_like(x)
            value = np.asarray(value, dtype=float) * np.ones_like(x)
            finite = np.isfinite(want)
            if not finite.any():
                continue
            scale = np.maximum(np.abs(want), 1e-4 * float(np.max(np.abs(want[finite]))))
            err = np.where(finite, np.abs(value - want) / np.where(scale > 0, scale, 1.0), 0.0)
            err = np.where(finite & ~np.isfinite(value), np.inf, err)
            i = int(np.argmax(np.where(np.isnan(err), np.inf, err)))
            if err[i] > worst[0] or np.isnan(err[i]):
                worst = (float(np.inf if np.isnan(err[i]) else err[i]), float(x[i]), float(value[i]), float(want[i]))
    return worst


def validate_translation(smap: SpectralMap, plans: Mapping[str, Mapping[str, Schedule]]) -> dict[str, float]:
    """Raise ScheduleError unless every plan in ``plans`` (dtype class -> form -> schedule) computes ``smap``'s
    spectral map to TOLERANCE on the domain grid; a schedule shared by several dtype classes is run once.
    Returns, per dtype class, the largest magnitude any of its plans' intermediates reaches on the grid."""
    x = domain_grid(smap)
    peaks: dict[int, float] = {}
    largest: dict[str, float] = {}
    for dtype, forms in plans.items():
        for form, sched in forms.items():
            if id(sched) in peaks:
                largest[dtype] = max(largest.get(dtype, 0.0), peaks[id(sched)])
                continue
            peak: dict[str, float] = {}
            err, at, got, want = plan_error(smap, sched, x, peak)
            peaks[id(sched)] = max(peak.values(), default=0.0)
            largest[dtype] = max(largest.get(dtype, 0.0), peaks[id(sched)])
            if not err <= TOLERANCE:
                raise ScheduleError(
                    f"{smap.name} ({smap.source}): the {form} plan for {dtype} does not compute the spec's spectral "
                    f"map: {got!r} instead of {want!r} at x = {at!r} (relative error {err:.3g} > {TOLERANCE:g}). "
                    "This is a compiler bug; no code was generated. Please report it with the spec.")
    return largest
