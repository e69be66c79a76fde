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
smallest max q over all segments (gram-newton-schulz's ranking), then the earliest cuts. A few dynamic
programmes over segments find that placement in O(T²) for T step instances. Preconditions: the map is
gram_space_applicable, and the dtype's unit roundoff is in UNIT_ROUNDOFF (polygen.dtypes). The
measurements behind FACTOR, MID, NEG_LIMIT and the ranking are in bench/RESULTS.md, "Restart placement".
"""

from __future__ import annotations

import numpy as np

from polygen.dtypes import UNIT_ROUNDOFF
from polygen.ir.evaluate import apply_step, output_map, trajectory
from polygen.ir.spectral import SpectralMap
from polygen.passes.plan_gram_space import gram_space_applicable

FACTOR = 16.0
MID = 4.0  # an earlier segment's u·max q may reach MID × the budget (later steps contract its error)
NEG_LIMIT = 1.0  # a rounding-born negative eigenvalue may grow to at most this × the spectrum's max r
SIGNAL = 0.1  # errors count on singular values >= SIGNAL·hi; below, both forms sit on the noise floor


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
    (0-based instances) evaluate their polynomial when the segment starts from r = −u·max r. Once a start's probe
    turns non-finite, its later entries (q included) stay inf: no segment from there can pass."""
    # Only Gram-form maps get here: one variable, no fitted scalars (apply_step fits on real spectra only, and
    # the probe below is complex).
    assert gram_space_applicable(smap), smap.name
    var = smap.variables[0].name
    xs = np.array([np.asarray(env[var], dtype=float) for env in trajectory(smap, _grid(smap))])
    steps = [step for step in smap.steps for _ in range(step.repeat)]
    total = len(steps)
    with np.errstate(all="ignore"):
        # top[k]: the spectrum's max r before step k (top[0]: input); fmax.reduce is nanmax without its warning
        top = np.fmax.reduce(xs * xs, axis=1).tolist()
        # All starts' probes run through each step together (T apply_step calls, not T²/2). x² = −u·max r: R's
        # most negative rounding eigenvalue. Probes are grouped by dtype: an update without x (the parser rejects
        # one, a hand-built map may not) returns reals, which complex arithmetic could turn from inf·0 into NaN.
        neg = np.full((total, total), np.inf)
        worst = np.zeros(total)
        stop = np.full(total, total - 1)  # the last step each start's probe ran (then it broke off)
        groups: list[tuple[np.ndarray, np.ndarray]] = []
        for e, step in enumerate(steps):
            groups = _by_dtype([*groups, (np.array([e]), np.array([1j * np.sqrt(u * top[e])]))])
            live_groups = []
            for starts, x in groups:
                # numpy's scalar ** 2 calls libm pow, which the array square differs from by an ulp at times
                ratio = np.array([float(m**2) for m in np.abs(x)]) / top[e]
                w = np.where(ratio > worst[starts], ratio, worst[starts])  # max(worst, ratio): NaN never replaces
                worst[starts] = neg[starts, e] = w
                x = np.asarray(apply_step(step, {var: x})[var])
                live = np.isfinite(w) & np.isfinite(x)
                stop[starts[~live]] = e
                if live.any():
                    live_groups.append((starts[live], x[live]))
            groups = live_groups
        # |a/b| == |a|/|b| exactly (division rounds sign-symmetrically), so take magnitudes once
        mag = np.abs(xs)
        q = np.full((total, total), np.inf)
        for s in range(total):
            q[s, s:stop[s] + 1] = u * np.fmax.reduce(mag[s + 1:stop[s] + 2] / mag[s], axis=1)
    return q, neg


def _by_dtype(groups: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
    merged: dict[np.dtype, tuple[np.ndarray, np.ndarray]] = {}
    for starts, x in groups:
        if x.dtype in merged:
            s0, x0 = merged[x.dtype]
            starts, x = np.concatenate([s0, starts]), np.concatenate([x0, x])
        merged[x.dtype] = (starts, x)
    return list(merged.values())


def _suffix(ok: np.ndarray, key: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """count[p]: the fewest ok segments covering steps p..T−1 (> T: none), and worst[p]: the smallest max key over
    such covers. (count, max) composes monotonically, so a backward DP over the start is exact."""
    total = ok.shape[0]
    count = np.full(total + 1, total + 1)
    count[total] = 0
    worst = np.full(total + 1, -np.inf)
    for p in range(total - 1, -1, -1):
        ends = np.flatnonzero(ok[p, p:]) + p
        if not ends.size:
            continue
        c = count[ends + 1]
        best = c.min()
        if best > total:
            continue
        count[p] = best + 1
        if key is not None:
            tied = ends[c == best]
            worst[p] = np.maximum(key[p, tied], worst[tied + 1]).min()
    return count, worst


def _search(ok: np.ndarray, nkey: np.ndarray, qkey: np.ndarray, *, by_neg: bool = True,
            by_q: bool = True) -> tuple[int, float, tuple[int, ...]] | None:
    """(count, max neg, cut) of the best placement from ok segments, or None: fewest segments, then (optionally)
    the smallest max neg, then the smallest max q, then the earliest cuts. (max neg, max q) does not compose, so
    each bound is fixed in turn and the next stage keeps only segments within it."""
    total = ok.shape[0]
    count, nmax = _suffix(ok, nkey)
    if count[0] > total:
        return None
    if by_neg:
        ok = ok & (nkey <= nmax[0])
    if by_q:
        ok = ok & (qkey <= _suffix(ok, qkey)[1][0])
    count = _suffix(ok)[0]
    # Lexicographically smallest cut tuple (all have count[0] − 1 entries): the earliest end from which the
    # rest still needs exactly one segment fewer.
    cut: list[int] = []
    p = 0
    while True:
        ends = np.flatnonzero(ok[p, p:]) + p
        e = int(ends[count[ends + 1] == count[p] - 1][0])
        if e == total - 1:
            return int(count[0]), float(nmax[0]), tuple(cut)
        cut.append(e)
        p = e + 1


def choose_restarts(q: np.ndarray, neg: np.ndarray, budget: float, mid_budget: float) -> tuple[int, ...]:
    """The cut place_restarts takes given the segment tables: among placements every segment of which passes,
    fewest restarts, then smallest max neg, then smallest max q, then the lexicographically smallest cut. Pure,
    so it can be checked against enumerating every placement (which is what place_restarts used to do)."""
    total = q.shape[0]
    if total <= 1:
        return ()
    with np.errstate(invalid="ignore"):
        cap = np.full(total, mid_budget)
        cap[-1] = budget  # the last segment's error reaches the output unchanged
        ok = np.triu((q <= cap) & (neg <= NEG_LIMIT), 1)
    ok[np.diag_indices(total)] = True  # a restart cannot split a single step
    # Only a single-step segment can carry NaN (any other fails its test). The enumeration ranked placements with
    # Python's max and min, and this keeps their outcome: max skips a NaN except the first segment's, so NaN
    # counts as −inf; the first segment's, [0, 0] (cut[0] = 0, the placements enumerated first), is handled below.
    nkey = np.where(np.isnan(neg), -np.inf, neg)
    qkey = np.where(np.isnan(q), -np.inf, q)
    nan_neg, nan_q = bool(np.isnan(neg[0, 0])), bool(np.isnan(q[0, 0]))
    if not (nan_neg or nan_q):
        best = _search(ok, nkey, qkey)
        assert best is not None  # restarting after every step always passes
        return best[2]
    # A NaN key compares neither less than nor equal to anything, so min kept the earliest placement opening with
    # [0, 0] (with the smallest max neg among them when only q is NaN) unless one without that cut had a strictly
    # smaller max neg; with neg NaN nothing displaced it.
    fewest = int(_suffix(ok)[0][0])
    opening, others = ok.copy(), ok.copy()
    opening[0, 1:] = False
    others[0, 0] = False
    a, b = _search(opening, nkey, qkey, by_neg=not nan_neg, by_q=False), _search(others, nkey, qkey)
    a = a if a is not None and a[0] == fewest else None
    b = b if b is not None and b[0] == fewest else None
    if a is not None and (b is None or nan_neg or b[1] >= a[1]):
        return a[2]
    assert b is not None
    return b[2]


def place_restarts(smap: SpectralMap, dtype: str) -> tuple[int, ...]:
    """0-based step instances after which the Gram plan restarts; () when none are needed."""
    total = smap.total_steps
    if smap.hints.restart_every:
        k = smap.hints.restart_every
        return tuple(t for t in range(k - 1, total - 1, k))
    budget, mid_budget = restart_budget(smap, dtype), restart_budget(smap, dtype, last=False)
    q, neg = _segments(smap, UNIT_ROUNDOFF[dtype])
    return choose_restarts(q, neg, budget, mid_budget)
