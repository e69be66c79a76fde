"""Muon^p coefficient design: per-step damped-Newton iterations for U S^p Vᵀ (arXiv 2606.13867, DESIGN §4).

With X = G/‖G‖_F fixed and Y₀ = X, each step is a damped Newton step on y^q = x^r for p = r/q:

* q and r both odd:  y ← y − c_t·(y^q − x^r)                     (odd in (x, y): a rectangular update);
* otherwise (one of them even) the residual is not odd, so square both sides and multiply by an odd linear
  factor, as in the published p = 1/2 form:  y ← y − (y^(2q) − x^(2r))·(c_t·x + d_t·y).

The fixed point y = x^p is shared by every step; the per-step coefficients are fitted numerically (scipy) to
minimize the worst relative error |y_T(x) − x^p| / x^p on a log-spaced grid of the *fit interval*
[fit_lower, 1], subject to stability on the whole domain [lower, 1]: after every step 0 < y ≤ y_max at every
grid point (no sign flip, no blow-up).

Why a fit interval: every step adds only terms of degree ≥ 3 in (x, y) to y (for the squared form; the odd
form with r = 1 adds c_t·x), so y_T(x) = x + O(x³) near 0 and the relative error at x = lower is pinned near
1 − lower^(1−p) (0.968 for p = 1/2, lower = 1e-3) whatever the coefficients. A worst case taken over all of
[lower, 1] is therefore decided by that floor and says nothing about the design. ``fit_power`` instead walks
a geometric ladder of fit intervals [x_c, 1] downwards (warm-starting each fit from the previous one) and keeps
the lowest x_c whose fitted worst relative error is within ``accuracy``; ``max_rel_error`` still reports the
worst case over the whole domain, which is what a spec's ``[verify]`` checks.

``fit_power_per_step`` (``polygen fit power --per-step``) fits a richer family: y ← Σ_k θ_{t,k} x^i y^j over
a fixed set of odd monomials (by default every one the published step's matmuls already pay for), new
coefficients each step, to the *scale-free* error min_α max |y_T/(α x^p) − 1| on [fit_lower, 1] — the specs
rescale the output to unit RMS, so only the shape of y_T matters; with a y-free term such as d·x, y_T is no
longer x + O(x³) near 0 and the floor above does not apply. The last step is scaled so that the plain error
equals the scale-free one on the fit interval.

All scalar maps are evaluated in numpy float64; the matrix iteration acts on each singular value separately.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
from scipy.optimize import minimize

from polygen.fit.minimax import fmt_float, spec_header, toml_list, toml_string

#: The published Muon^p p = 1/2 default (princeton-pli/muon-p, utils.poly_half): y ← y − (y⁴ − x²)(c x + d y).
PUBLISHED_HALF = (3.0, -0.795918)
DEFAULT_Y_MAX = 1.5


# ---------------------------------------------------------------------------------------------------------------
# the update family
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PowerForm:
    """The odd damped-Newton update for p = r/q: ``exps`` = (a, b) in y^a − x^b, ``linear`` = times (c x + d y)."""

    p: Fraction
    a: int
    b: int
    linear: bool

    @property
    def names(self) -> tuple[str, ...]:
        return ("c", "d") if self.linear else ("c",)

    @property
    def update(self) -> str:
        """SymPy-syntax update of y with the coefficient names (docs/spec-format.md)."""
        res = f"y**{self.a} - {_pow('x', self.b)}"
        return f"y - ({res})*(c*x + d*y)" if self.linear else f"y - c*({res})"

    def step(self, y: np.ndarray, x: np.ndarray, coeffs: Sequence[float]) -> np.ndarray:
        """One step on scalar arrays (float64)."""
        res = y**self.a - x**self.b
        if self.linear:
            return y - res * (coeffs[0] * x + coeffs[1] * y)
        return y - coeffs[0] * res


def _pow(var: str, k: int) -> str:
    return var if k == 1 else f"{var}**{k}"


def power_form(p: Fraction | str | float) -> PowerForm:
    """The odd update family for p = r/q (lowest terms, 0 < p < 1)."""
    frac = Fraction(p).limit_denominator(1000) if isinstance(p, float) else Fraction(p)
    if not 0 < frac < 1:
        raise ValueError(f"p must satisfy 0 < p < 1, got {frac}")
    r, q = frac.numerator, frac.denominator
    if q % 2 == 1 and r % 2 == 1:
        return PowerForm(frac, q, r, linear=False)
    return PowerForm(frac, 2 * q, 2 * r, linear=True)


def iterate(form: PowerForm, coefficients: Sequence[Sequence[float]], x: np.ndarray) -> np.ndarray:
    """y_T(x) from Y₀ = X."""
    x = np.asarray(x, dtype=float)
    y = x.copy()
    with np.errstate(all="ignore"):
        for c in coefficients:
            y = form.step(y, x, c)
    return y


def trajectory_range(form: PowerForm, coefficients: Sequence[Sequence[float]],
                     x: np.ndarray) -> tuple[float, float]:
    """(min, max) of y over every step and every x (nan/inf count as a blow-up: returns ±inf)."""
    x = np.asarray(x, dtype=float)
    y = x.copy()
    lo, hi = math.inf, -math.inf
    with np.errstate(all="ignore"):
        for c in coefficients:
            y = form.step(y, x, c)
            if not np.all(np.isfinite(y)):
                return -math.inf, math.inf
            lo, hi = min(lo, float(y.min())), max(hi, float(y.max()))
    return lo, hi


def relative_error(form: PowerForm, coefficients: Sequence[Sequence[float]], x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    t = x ** float(form.p)
    with np.errstate(all="ignore"):
        return np.abs(iterate(form, coefficients, x) - t) / t


def dense_grid(lo: float, hi: float = 1.0, n: int = 20001) -> np.ndarray:
    return np.unique(np.concatenate([np.geomspace(lo, hi, n), np.linspace(lo, hi, n)]))


# ---------------------------------------------------------------------------------------------------------------
# the design
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PowerDesign:
    """Per-step coefficients of a Muon^p iteration for U S^p Vᵀ.

    ``max_rel_error``: worst |y_T − x^p|/x^p on the whole domain [lower, 1] (dense float64 grid; dominated
    by the structural floor near ``lower``). ``fit_error``: the same on the fit interval [fit_lower, 1].
    """

    p: Fraction
    steps: int
    lower: float
    fit_lower: float
    y_max: float
    form: PowerForm
    coefficients: tuple[tuple[float, ...], ...]
    max_rel_error: float
    fit_error: float

    @property
    def update(self) -> str:
        return self.form.update

    @property
    def names(self) -> tuple[str, ...]:
        return self.form.names

    def evaluate(self, x: np.ndarray | float) -> np.ndarray:
        return iterate(self.form, self.coefficients, np.asarray(x, dtype=float))

    def relative_error(self, x: np.ndarray) -> np.ndarray:
        return relative_error(self.form, self.coefficients, x)

    def converged_interval(self, tol: float = 0.01) -> tuple[float, float] | None:
        """The largest [x₀, 1] on which the relative error is ≤ ``tol``."""
        x = dense_grid(self.lower)
        bad = x[self.relative_error(x) > tol]
        if len(bad) == 0:
            return self.lower, 1.0
        above = x[x > bad.max()]
        return (float(above.min()), 1.0) if len(above) else None

    def is_stable(self, n: int = 20001) -> bool:
        lo, hi = trajectory_range(self.form, self.coefficients, dense_grid(self.lower, 1.0, n))
        return lo > 0 and hi <= self.y_max

    def to_toml(self, name: str, description: str | None = None, command: str | None = None) -> str:
        """A polygen spec (docs/spec-format.md); ``command`` (the regenerating command line) goes in a comment."""
        return _power_toml(self, name, description, command)


def _eval_points(lower: float, fit_lower: float, n_stab: int = 160, n_fit: int = 120) -> tuple[np.ndarray, np.ndarray]:
    x = np.unique(np.concatenate([np.geomspace(lower, 1, n_stab), np.linspace(lower, 1, n_stab // 2),
                                  np.geomspace(fit_lower, 1, n_fit), np.linspace(fit_lower, 1, n_fit // 2)]))
    return x, x >= fit_lower * (1 - 1e-12)


def _ipow(v: np.ndarray, k: int) -> np.ndarray:
    """v**k for a small positive integer k by repeated squaring (faster than np.power)."""
    out: np.ndarray | None = None
    while k:
        if k & 1:
            out = v if out is None else out * v
        k >>= 1
        if k:
            v = v * v
    assert out is not None
    return out


class _Objective:
    """Worst relative error on the fit points, or 10 + a graded penalty when y leaves (0, y_max]."""

    def __init__(self, form: PowerForm, steps: int, x: np.ndarray, fit: np.ndarray, y_max: float):
        self.form, self.steps, self.x, self.fit, self.y_max = form, steps, x, fit, y_max
        self.xb = _ipow(x, form.b)
        self.target = x[fit] ** float(form.p)
        self.k = len(form.names)

    def trajectory(self, theta: np.ndarray) -> tuple[np.ndarray, float]:
        x, xb, a, y, pen = self.x, self.xb, self.form.a, self.x, 0.0
        with np.errstate(all="ignore"):
            for t in range(self.steps):
                res = _ipow(y, a) - xb
                if self.k == 2:
                    y = y - res * (theta[2 * t] * x + theta[2 * t + 1] * y)
                else:
                    y = y - theta[t] * res
                lo, hi = y.min(), y.max()
                if not (lo > 0 and hi <= self.y_max):  # also catches nan
                    y = np.where(np.isfinite(y), y, 1e6)
                    low, high = np.minimum(y, 0.0), np.maximum(y - self.y_max, 0.0)
                    pen += float(np.sum(-low) + np.sum(np.minimum(high, 1e3)) + np.count_nonzero(low)
                                 + np.count_nonzero(high))
                    y = np.clip(y, 1e-300, self.y_max)
        return y, pen

    def worst(self, theta: np.ndarray) -> float:
        y, pen = self.trajectory(theta)
        if pen > 0:
            return 10.0 + pen
        return float(np.max(np.abs(y[self.fit] - self.target) / self.target))

    def smooth(self, theta: np.ndarray, order: int = 16) -> float:
        """A p-norm surrogate of the worst case, for a gradient-based first pass."""
        y, pen = self.trajectory(theta)
        if pen > 0:
            return 10.0 + pen
        rel = np.abs(y[self.fit] - self.target) / self.target
        return float(np.mean(rel**order) ** (1.0 / order))


NM_RESTARTS = 30  # at most this many Nelder–Mead runs per start (see _optimize)
NM_GAIN = 1e-3  # ... stopping once a run improves the worst case by less than this fraction


def _constant_starts(obj: _Objective, count: int) -> list[np.ndarray]:
    """The best constant-coefficient iterations (same coefficients every step) on a coarse grid."""
    if obj.k == 1:
        cands = [np.array([c]) for c in np.linspace(-1.0, 3.0, 81)]
    else:
        cands = [np.array([c, d]) for c in np.linspace(-3.0, 6.0, 28) for d in np.linspace(-6.0, 3.0, 28)]
    scored = sorted(((obj.worst(np.tile(c, obj.steps)), i) for i, c in enumerate(cands)))
    return [np.tile(cands[i], obj.steps) for v, i in scored[:count] if v < 10.0]


def _optimize(obj: _Objective, starts: Sequence[np.ndarray], maxfev: int,
              smooth_first: bool = True) -> tuple[np.ndarray, float]:
    """L-BFGS-B on the smooth surrogate, then Nelder–Mead on the true worst case, from each start.

    Nelder–Mead is restarted from its own result (a fresh simplex) until a restart gains under
    ``NM_GAIN``: on a non-smooth max in 12 dimensions one run stalls on a collapsed simplex, and where it
    stalls depends on the last bits of the arithmetic (BLAS, platform), so a single run does not reproduce
    across machines while the restarted one converges (muonp_1_2: 0.0378 after one run, 0.0138 restarted).
    """
    best, best_f = None, math.inf
    for th in starts:
        th = np.array(th, dtype=float)
        if smooth_first:
            r = minimize(obj.smooth, th, method="L-BFGS-B", options={"maxiter": 100})
            if obj.worst(r.x) < obj.worst(th):
                th = r.x
        f = obj.worst(th)
        for _ in range(NM_RESTARTS):
            r = minimize(obj.worst, th, method="Nelder-Mead",
                         options={"maxfev": maxfev, "xatol": 1e-10, "fatol": 1e-14, "adaptive": True})
            fr = obj.worst(r.x)
            stalled = fr >= f * (1 - NM_GAIN)
            if fr < f:
                th, f = r.x, fr
            if stalled:
                break
        if f < best_f:
            best, best_f = th, f
    if best is None:
        raise RuntimeError("no stable starting point found for this update family")
    return best, best_f


def fit_power(p: Fraction | str | float, steps: int = 6, lower: float = 1e-3, *, fit_lower: float | None = None,
              accuracy: float = 1e-2, y_max: float = DEFAULT_Y_MAX, starts: int = 3, maxfev: int = 3000,
              bisections: int = 5) -> PowerDesign:
    """Fit per-step coefficients of the odd damped-Newton iteration for x^p (see the module docstring).

    ``fit_lower`` given: minimize the worst relative error on [fit_lower, 1]. ``fit_lower=None``: fit on
    [0.5, 1] first, then bisect (in log x, ``bisections`` times, warm-starting from the last success) for the
    lowest left end whose worst relative error stays ≤ ``accuracy``. Stability (0 < y ≤ ``y_max`` after
    every step) is enforced on all of [lower, 1] and re-checked on a dense grid.
    """
    form = power_form(p)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not 0 < lower < 1:
        raise ValueError(f"lower must be in (0, 1), got {lower}")
    if fit_lower is not None:
        if not lower <= fit_lower < 1:
            raise ValueError(f"fit_lower must be in [lower, 1), got {fit_lower}")
        theta, err = _fit_interval(form, steps, lower, fit_lower, y_max, starts, maxfev, warm=None)
        if not math.isfinite(err):
            raise RuntimeError(f"no coefficients found that are stable on [{lower:g}, 1]")
        return _design(form, steps, lower, fit_lower, y_max, theta)
    top = max(0.5, lower)
    theta, err = _fit_interval(form, steps, lower, top, y_max, starts, maxfev, warm=None)
    if not math.isfinite(err):
        raise RuntimeError(f"no coefficients found that are stable on [{lower:g}, 1]")
    good = (top, theta)
    if err <= accuracy and top > lower:
        a, b = math.log(lower), math.log(top)  # b: log of the lowest left end known to reach the accuracy
        for _ in range(bisections):
            mid = math.exp(0.5 * (a + b))
            th, e = _fit_interval(form, steps, lower, mid, y_max, 1, maxfev, warm=good[1])
            if e <= accuracy:
                good, b = (mid, th), math.log(mid)
            else:
                a = math.log(mid)
    return _design(form, steps, lower, good[0], y_max, good[1])


def _fit_interval(form: PowerForm, steps: int, lower: float, fit_lower: float, y_max: float, starts: int,
                  maxfev: int, warm: np.ndarray | None) -> tuple[np.ndarray, float]:
    """Best coefficients for [fit_lower, 1] and their worst relative error there on a dense grid."""
    x, fit = _eval_points(lower, fit_lower)
    obj = _Objective(form, steps, x, fit, y_max)
    cands = _constant_starts(obj, starts)
    if warm is not None:
        cands = [warm, *cands[:1]]
    theta, err = _optimize(obj, cands, maxfev)
    xd = dense_grid(fit_lower, 1.0, 4001)
    for _ in range(3):  # exchange: the optimizer may hide peaks between grid points; add them and re-polish
        rel = relative_error(form, _rows(theta, steps, obj.k), xd)
        peaks = np.nonzero((rel[1:-1] >= rel[:-2]) & (rel[1:-1] >= rel[2:]) & (rel[1:-1] > err))[0] + 1
        if float(rel.max()) <= 1.01 * err or len(peaks) == 0:
            break
        x = np.unique(np.concatenate([x, xd[peaks[np.argsort(-rel[peaks])[:40]]]]))
        fit = x >= fit_lower * (1 - 1e-12)
        obj = _Objective(form, steps, x, fit, y_max)
        theta, err = _optimize(obj, [theta], maxfev, smooth_first=False)
    # the stability constraint was imposed on a grid: re-check densely and add the points that slipped
    xs = dense_grid(lower, 1.0, 8001)
    for _ in range(4):
        bad = _unstable_points(form, _rows(theta, steps, obj.k), xs, y_max)
        if len(bad) == 0:
            rel = relative_error(form, _rows(theta, steps, obj.k), xd)
            return theta, float(rel.max())
        x = np.unique(np.concatenate([x, bad[:: max(1, len(bad) // 40)]]))
        fit = x >= fit_lower * (1 - 1e-12)
        obj = _Objective(form, steps, x, fit, y_max)
        theta, err = _optimize(obj, [theta, *cands], maxfev)
    return theta, math.inf


def _unstable_points(form: PowerForm, coefficients: Sequence[Sequence[float]], x: np.ndarray,
                     y_max: float) -> np.ndarray:
    """The x at which some step leaves (0, y_max] (or is not finite)."""
    y, bad = x.copy(), np.zeros(len(x), dtype=bool)
    with np.errstate(all="ignore"):
        for c in coefficients:
            y = form.step(y, x, c)
            bad |= ~((y > 0) & (y <= y_max))
    return x[bad]


def _rows(theta: np.ndarray, steps: int, k: int) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(float(v) for v in theta[t * k:(t + 1) * k]) for t in range(steps))


def _design(form: PowerForm, steps: int, lower: float, fit_lower: float, y_max: float,
            theta: np.ndarray) -> PowerDesign:
    coeffs = _rows(theta, steps, len(form.names))
    x = dense_grid(lower)
    rel = relative_error(form, coeffs, x)
    return PowerDesign(p=form.p, steps=steps, lower=float(lower), fit_lower=float(fit_lower), y_max=y_max,
                       form=form, coefficients=coeffs, max_rel_error=float(np.max(rel)),
                       fit_error=float(np.max(rel[x >= fit_lower])))


def constant_design(p: Fraction | str, coeffs: Sequence[float], steps: int = 6, lower: float = 1e-3) -> PowerDesign:
    """A design that repeats the same coefficients every step (e.g. the published defaults), for comparison."""
    form = power_form(p)
    theta = np.tile(np.asarray(coeffs, dtype=float), steps)
    return _design(form, steps, lower, lower, math.inf, theta)


# ---------------------------------------------------------------------------------------------------------------
# report and spec writer
# ---------------------------------------------------------------------------------------------------------------
def format_summary(design: PowerDesign) -> str:
    lines = [f"Muon^p design: p = {design.p}, {design.steps} steps, update  y <- {design.update}",
             f"domain [{design.lower:g}, 1], fit interval [{design.fit_lower:.4g}, 1], stability 0 < y <= "
             f"{design.y_max:g}",
             f"{'step':>4}  " + "  ".join(f"{n:>14}" for n in design.names)]
    for t, row in enumerate(design.coefficients, 1):
        lines.append(f"{t:>4}  " + "  ".join(f"{v:>14.8g}" for v in row))
    lines.append(f"worst relative error on the fit interval: {design.fit_error:.4e}")
    lines.append(f"worst relative error on the whole domain: {design.max_rel_error:.4e} "
                 f"(floor near x = {design.lower:g}: y_T(x) = x + O(x^3))")
    for tol in (1e-2, 5e-2):
        iv = design.converged_interval(tol)
        lines.append(f"relative error <= {tol:g} on: " + (f"[{iv[0]:.4g}, 1]" if iv else "nowhere"))
    return "\n".join(lines)


def _power_toml(design: PowerDesign, name: str, description: str | None, command: str | None) -> str:
    iv = design.converged_interval(1e-2)
    iv5 = design.converged_interval(5e-2)
    desc = description or f"Muon^p: U S^({design.p}) V^T by {design.steps} fitted damped-Newton steps"
    comment = [
        f"Muon^p (arXiv 2606.13867) for p = {design.p}, written by `polygen fit power`: X = G/||G||_F fixed,",
        f"Y0 = X, per-step coefficients of  y <- {design.update}.",
        f"Fitted to minimize the worst relative error on [{design.fit_lower:.4g}, 1]: {design.fit_error:.3g};",
        f"stable (0 < y <= {design.y_max:g} after every step) on all of [{design.lower:g}, 1].",
        "relative error <= 1e-2 on " + (f"[{iv[0]:.4g}, 1]" if iv else "no interval") + ", <= 5e-2 on "
        + (f"[{iv5[0]:.4g}, 1]" if iv5 else "no interval") + f"; near x = {design.lower:g} it is pinned at "
        f"~{design.max_rel_error:.3g}",
        "(every step adds terms of degree >= 3, so y_T(x) = x + O(x^3)), which is what [verify] bounds.",
    ]
    if command:
        comment.append(f"Regenerate: {command}")
    extra = [f"p = {toml_string(f'{design.p.numerator}/{design.p.denominator}')}"]
    lines = spec_header(comment, name, desc, "power", design.lower, 1.0, extra)
    lines += ["", "[input]", 'norm = "frobenius"', 'safety = "1"', 'eps = "1e-7"',
              "", "[variables.x]", 'kind = "rectangular"', 'init = "g"',
              "", "[variables.y]", 'kind = "rectangular"', 'init = "g"',
              "", "[[steps]]"]
    for k, n in enumerate(design.names):
        lines.append(f"table.{n} = " + toml_list([repr(row[k]) for row in design.coefficients]))
    lines.append(f"update = {{ y = {toml_string(design.update)} }}")
    tol = min(1.02 * design.max_rel_error, design.max_rel_error + 0.5 * (1 - design.max_rel_error))
    lines += ["", "[output]", 'var = "y"', 'rescale = "rms"',
              "", "[verify]", 'expect = "converge"', f"tolerance = {toml_string(fmt_float(max(tol, 1e-12), up=True))}"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# per-step odd bivariate forms fitted scale-free (``polygen fit power --per-step``)
# ---------------------------------------------------------------------------------------------------------------
#: Default per-step terms for each p: every odd monomial the published step's matmuls already pay for
#: (polygen's schedule counts, tests/test_families.py), so a fitted step costs no more than a published one.
DEFAULT_TERMS: dict[Fraction, str] = {
    Fraction(1, 3): "y,y**3,x",
    Fraction(1, 5): "y,y**3,y**5,x",
    Fraction(3, 5): "y,y**3,y**5,x,x**3",
    Fraction(1, 2): "y,y**3,y**5,x,x**3,x**2*y,x**2*y**3",
}
#: The published recurrences (princeton-pli/muon-p) as (terms, coefficients, steps): y ← y − c(y^q − x^r).
PUBLISHED: dict[Fraction, tuple[str, tuple[float, ...], int]] = {
    Fraction(1, 3): ("y,y**3,x", (1.0, -0.66, 0.66), 6),
    Fraction(1, 5): ("y,y**5,x", (1.0, -0.2, 0.2), 6),
    Fraction(3, 5): ("y,y**5,x**3", (1.0, -0.2, 0.2), 6),
}
#: Shape constraints of a per-step design on the whole domain: every y_t ≥ margin·x once the gauge puts
#: max y_t = 1 (a singular value never shrinks below 2 % of its input's share, no sign flip), and hence
#: 0 < y_t ≤ 1 for t < T and y_T ≤ 1 + error ≤ PER_STEP_Y_MAX.
PER_STEP_MARGIN = 0.02
PER_STEP_Y_MAX = 1.5
_NAMES = "abcdefghjkmnpqrstuvw"  # coefficient names: lower-case, never x or y, no builtins
_MONO = re.compile(r"^(?:x(?:\*\*(\d+))?)?\*?(?:y(?:\*\*(\d+))?)?$")


def parse_terms(text: str) -> tuple[tuple[int, int], ...]:
    """``"y,y**3,x,x**2*y"`` → ((0, 1), (0, 3), (1, 0), (2, 1)): exponents (i, j) of x^i y^j, each odd in total."""
    out: list[tuple[int, int]] = []
    for raw in text.split(","):
        tok = raw.strip().replace(" ", "").replace("^", "**")
        m = _MONO.match(tok)
        if not tok or m is None or tok.endswith("*") or tok.startswith("*"):
            raise ValueError(f"a term is a monomial x**i*y**j, got {raw!r}")
        i = (int(m.group(1)) if m.group(1) else 1) if tok.startswith("x") else 0
        j = (int(m.group(2)) if m.group(2) else 1) if "y" in tok else 0
        if (i + j) % 2 != 1:
            raise ValueError(f"term {raw!r} is not odd in (x, y): a rectangular update must be odd")
        if (i, j) in out:
            raise ValueError(f"term {raw!r} given twice")
        out.append((i, j))
    return tuple(out)


def _mono(i: int, j: int) -> str:
    xs = "" if i == 0 else _pow("x", i)
    ys = "" if j == 0 else _pow("y", j)
    return "*".join(s for s in (xs, ys) if s)


@dataclass(frozen=True)
class TermForm:
    """y ← Σ_k θ_{t,k} x^{i_k} y^{j_k}: a linear combination of fixed odd monomials, new coefficients every step."""

    p: Fraction
    terms: tuple[tuple[int, int], ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(_NAMES[k] for k in range(len(self.terms)))

    @property
    def update(self) -> str:
        return " + ".join(f"{n}*{_mono(i, j)}" for n, (i, j) in zip(self.names, self.terms))

    @property
    def terms_text(self) -> str:
        return ",".join(_mono(i, j) for i, j in self.terms)

    def step(self, y: np.ndarray, x: np.ndarray, coeffs: Sequence[float]) -> np.ndarray:
        return sum((c * x**i * y**j for c, (i, j) in zip(coeffs, self.terms)), np.zeros_like(y))


def term_form(p: Fraction | str, terms: str | None = None) -> TermForm:
    frac = Fraction(p)
    if not 0 < frac < 1:
        raise ValueError(f"p must satisfy 0 < p < 1, got {frac}")
    if terms is None:
        terms = DEFAULT_TERMS.get(frac, "y,y**3,y**5,x,x**3")
    parsed = parse_terms(terms)
    if (0, 1) not in parsed:
        raise ValueError("the terms must include y (the iteration refines y)")
    if len(parsed) > len(_NAMES):
        raise ValueError(f"at most {len(_NAMES)} terms")
    return TermForm(frac, parsed)


@dataclass(frozen=True)
class PerStepDesign:
    """A fitted per-step :class:`TermForm` iteration; the last step is scaled so y_T/x^p is centred on 1.

    Errors are worst cases on dense float64 grids: ``scale_free`` = min over α of max |y_T/(α x^p) − 1|
    (what the unit-RMS output sees), ``plain`` = max |y_T/x^p − 1| (what ``[verify]`` checks), each on the fit
    interval [fit_lower, 1] and on the whole domain [lower, 1].
    """

    form: TermForm
    coefficients: tuple[tuple[float, ...], ...]
    lower: float
    fit_lower: float
    margin: float = PER_STEP_MARGIN

    @property
    def p(self) -> Fraction:
        return self.form.p

    @property
    def steps(self) -> int:
        return len(self.coefficients)

    @property
    def names(self) -> tuple[str, ...]:
        return self.form.names

    @property
    def update(self) -> str:
        return self.form.update

    def evaluate(self, x: np.ndarray | float) -> np.ndarray:
        return iterate(self.form, self.coefficients, np.asarray(x, dtype=float))  # type: ignore[arg-type]

    def errors(self, lo: float, n: int = 20001) -> tuple[float, float]:
        """(scale-free, plain) worst relative error on [lo, 1]."""
        x = dense_grid(lo, 1.0, n)
        return scale_free_error(self.evaluate(x), x, float(self.p)), plain_error(self.evaluate(x), x, float(self.p))

    def stability(self, n: int = 20001) -> tuple[float, float, float, bool]:
        """On [lower, 1]: (min y, max y) over every step, min over steps of y_t/x, and whether y_T increases."""
        x = dense_grid(self.lower, 1.0, n)
        lo, hi = trajectory_range(self.form, self.coefficients, x)  # type: ignore[arg-type]
        y, ratio = x.copy(), math.inf
        with np.errstate(all="ignore"):
            for c in self.coefficients:
                y = self.form.step(y, x, c)
                ratio = min(ratio, float(np.min(y / x)))
        return lo, hi, ratio, bool(np.all(np.diff(y) > 0))

    def is_stable(self, n: int = 20001, y_max: float = PER_STEP_Y_MAX) -> bool:
        """0 < y_t ≤ y_max and y_t ≥ margin·x after every step, y_T increasing (dense grid of [lower, 1])."""
        lo, hi, ratio, mono = self.stability(n)
        return lo > 0 and hi <= y_max and ratio >= self.margin * (1 - 1e-9) and mono

    def to_toml(self, name: str, description: str | None = None, command: str | None = None) -> str:
        return _per_step_toml(self, name, description, command)


def scale_free_error(y: np.ndarray, x: np.ndarray, p: float) -> float:
    """min_α max |y/(α x^p) − 1| = (R − 1)/(R + 1), R the spread max/min of y/x^p (inf if y ≤ 0 anywhere)."""
    with np.errstate(all="ignore"):
        r = y / x**p
    if not np.all(np.isfinite(r)) or r.min() <= 0:
        return math.inf
    return float((r.max() - r.min()) / (r.max() + r.min()))


def plain_error(y: np.ndarray, x: np.ndarray, p: float) -> float:
    with np.errstate(all="ignore"):
        e = np.abs(y / x**p - 1.0)
    return float(np.max(e)) if np.all(np.isfinite(e)) else math.inf


def published_design(p: Fraction | str, lower: float = 1e-3, fit_lower: float = 1e-2) -> PerStepDesign:
    """The published recurrence for p as a :class:`PerStepDesign` (unscaled), for comparison."""
    frac = Fraction(p)
    terms, coeffs, steps = PUBLISHED[frac]
    return PerStepDesign(term_form(frac, terms), (coeffs,) * steps, lower, fit_lower, 0.0)


class _TorchMap:
    """The composed map on fixed grids in torch float64, with the smoothed objective and the constraints.

    Gauge: scaling step t's coefficients by s scales y_t by s, and step t+1's coefficient of x^i y^j by s^−j
    undoes it, so the size of an intermediate y is no constraint at all. The map fixes it by dividing each
    y_t (t < T) by its maximum on the grid; :func:`_fold` writes those divisions into the coefficients.
    What is left to constrain is the shape: y_t ≥ margin·x (no sign flip, no collapse of small values),
    y_T increasing.
    """

    def __init__(self, form: TermForm, steps: int, lower: float, fit_lower: float, margin: float,
                 n_fit: int = 400, n_stab: int = 300, extra: np.ndarray | None = None):
        import torch

        self.torch, self.form, self.steps, self.margin = torch, form, steps, margin
        xs = np.unique(np.concatenate([np.geomspace(lower, 1, n_stab), np.linspace(lower, 1, n_stab // 3),
                                       np.geomspace(fit_lower, 1, n_fit), np.linspace(fit_lower, 1, n_fit // 3),
                                       [] if extra is None else extra]))
        self.x = torch.tensor(xs, dtype=torch.float64)
        self.fit = torch.tensor(xs >= fit_lower * (1 - 1e-12))
        self.logt = float(form.p) * torch.log(self.x[self.fit])
        self.xpow = [self.x**i for i in range(max(i for i, _ in form.terms) + 1)]
        self.jmax = max(j for _, j in form.terms)

    def trajectory(self, theta: Any) -> list[Any]:
        """y_1 … y_T on the grid, each intermediate one divided by its maximum."""
        torch = self.torch
        th = theta.reshape(self.steps, len(self.form.terms))
        y, ys = self.x, []
        for t in range(self.steps):
            yp = [torch.ones_like(y), y]
            for _ in range(2, self.jmax + 1):
                yp.append(yp[-1] * y)
            y = sum(th[t, k] * self.xpow[i] * yp[j] for k, (i, j) in enumerate(self.form.terms))
            big = y.abs() > 2.0  # exact for |y| <= 2, saturating beyond: no overflow, gradients survive
            if bool(big.any()):
                y = torch.where(big, torch.sign(y) * (2.0 + torch.tanh(y.abs().clamp(max=1e6) - 2.0)), y)
            if t < self.steps - 1:
                y = y / torch.clamp(y.max(), min=1e-12)
            ys.append(y)
        return ys

    def constraints(self, ys: list[Any]) -> Any:
        """Margins that must be ≥ 0: y_t/x − margin every step, relative increments of y_T."""
        torch = self.torch
        yt = ys[-1]
        # y_T increasing with a log-slope of at least p/10 between grid points, so it cannot dip between them
        rise = (yt[1:] - yt[:-1]) / torch.clamp(yt[:-1].abs(), min=1e-12) / (self.x[1:] / self.x[:-1] - 1)
        mono = (rise - 0.1 * float(self.form.p)) * 10
        # 10 % above the margin, so that what the grid misses between its points still passes the dense check
        return torch.cat([*(y / self.x - 1.1 * self.margin for y in ys), mono])

    def parts(self, theta: Any) -> tuple[Any, Any]:
        """(log-ratio r = log y_T − p log x on the fit grid, the constraint margins)."""
        ys = self.trajectory(theta)
        r = self.torch.log(self.torch.clamp(ys[-1][self.fit], min=1e-300)) - self.logt
        return r, self.constraints(ys)

    def smooth(self, theta: Any, beta: float, mu: float) -> Any:
        torch = self.torch
        r, g = self.parts(theta)
        spread = (torch.logsumexp(beta * r, 0) + torch.logsumexp(-beta * r, 0)) / beta
        return spread + mu * torch.sum(torch.relu(-g) ** 2)

    def exact(self, theta_np: np.ndarray) -> tuple[float, float]:
        """(true log-spread on the fit grid, worst constraint violation ≥ 0) at θ."""
        with self.torch.no_grad():
            r, g = self.parts(self.torch.tensor(theta_np, dtype=self.torch.float64))
        s = float(r.max() - r.min())
        return (s if math.isfinite(s) else math.inf), max(0.0, -float(g.min()))


def _lbfgs(m: _TorchMap, theta0: np.ndarray, iters: int) -> np.ndarray:
    """L-BFGS (strong Wolfe) on the smoothed max, with increasing sharpness β and penalty weight μ."""
    torch = m.torch
    th = torch.tensor(theta0, dtype=torch.float64, requires_grad=True)
    for beta, mu in _SCHEDULE:
        opt = torch.optim.LBFGS([th], lr=1, max_iter=iters, history_size=50, line_search_fn="strong_wolfe",
                                tolerance_grad=1e-12, tolerance_change=1e-14)

        def closure(opt: Any = opt, beta: float = beta, mu: float = mu) -> Any:
            opt.zero_grad()
            f = m.smooth(th, beta, mu)
            if not torch.isfinite(f):
                return torch.tensor(1e30, dtype=torch.float64)
            f.backward()
            return f

        opt.step(closure)
        if not bool(torch.isfinite(th).all()):
            break
    return th.detach().numpy().copy()


_SCHEDULE = ((30.0, 1e2), (100.0, 1e3), (300.0, 1e4), (1000.0, 1e5), (3000.0, 1e6), (1e4, 1e7))


def _polish_until_stalled(m: _TorchMap, theta: np.ndarray) -> np.ndarray:
    """SLSQP polish restarted from its own feasible result until a run gains under ``NM_GAIN``: one run of
    100 iterations ends where the arithmetic's last bits lead it (muonp_1_3_fit refit at one thread 0.0704,
    at two 0.0645); restarted, both reach 0.0645."""
    best, (f, _) = theta, m.exact(theta)
    for _ in range(NM_RESTARTS):
        th = _slsqp_polish(m, best)
        nf, violation = m.exact(th)
        if not (violation <= 1e-9 and nf < f):
            break
        gain = (f - nf) / f
        best, f = th, nf
        if gain < NM_GAIN:
            break
    return best


def _slsqp_polish(m: _TorchMap, theta: np.ndarray, iters: int = 100) -> np.ndarray:
    """Epigraph of the true max on the fit grid, min s s.t. |r_i − c| ≤ s, with the margins as constraints."""
    torch = m.torch
    from scipy.optimize import minimize as sp_minimize

    n = len(theta)

    def cons_t(z: Any) -> Any:
        r, g = m.parts(z[:n])
        return torch.cat([z[n + 1] - (r - z[n]), z[n + 1] + (r - z[n]), g])

    def cf(z: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return cons_t(torch.tensor(z, dtype=torch.float64)).numpy()

    def cj(z: np.ndarray) -> np.ndarray:
        # forward mode (a few dozen parameters, thousands of constraints); its first use loads torch's jvp
        # decompositions through torch.jit.script, deprecated in torch 2.13 (torch's warning, not ours)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return np.asarray(torch.func.jacfwd(cons_t)(torch.tensor(z, dtype=torch.float64)).detach().numpy())

    grad = np.zeros(n + 2)
    grad[n + 1] = 1.0
    r, _ = m.parts(torch.tensor(theta, dtype=torch.float64))
    z0 = np.concatenate([theta, [0.5 * float(r.max() + r.min()), 0.5 * float(r.max() - r.min())]])
    res = sp_minimize(lambda z: float(z[n + 1]), z0, jac=lambda z: grad, method="SLSQP",
                      constraints=[{"type": "ineq", "fun": cf, "jac": cj}], options={"maxiter": iters, "ftol": 1e-12})
    return np.asarray(res.x[:n]) if np.all(np.isfinite(res.x)) else theta


def _starts(form: TermForm, steps: int, count: int, seed: int) -> list[np.ndarray]:
    """The published recurrence tiled per step (where the form holds it), a damped Newton step
    y ← y − c(y^(2q+1) − x^(2r) y) where the form holds that, the identity, and random perturbations."""
    k = len(form.terms)
    base: list[np.ndarray] = []
    pub = PUBLISHED.get(form.p)
    if pub is not None and all(t in form.terms for t in parse_terms(pub[0])):
        row = np.zeros(k)
        for t, c in zip(parse_terms(pub[0]), pub[1]):
            row[form.terms.index(t)] = c
        base.append(np.tile(row, steps))
    q, r = form.p.denominator, form.p.numerator
    if (0, 2 * q + 1) in form.terms and (2 * r, 1) in form.terms:
        row = np.zeros(k)
        row[form.terms.index((0, 1))] = 1.0
        row[form.terms.index((0, 2 * q + 1))] = -0.3
        row[form.terms.index((2 * r, 1))] = 0.3
        base.append(np.tile(row, steps))
    ident = np.zeros(k)
    ident[form.terms.index((0, 1))] = 1.0
    base.append(np.tile(ident, steps))
    rng = np.random.default_rng(seed)
    out = list(base)
    while len(out) < count:
        b = base[len(out) % len(base)]
        out.append(b + rng.normal(0.0, 0.3, size=b.shape) * (1 + np.abs(b)))
    return out[:max(count, 1)]


def _fold(form: TermForm, theta: np.ndarray, steps: int, lower: float, fit_lower: float,
          n: int = 20001) -> tuple[tuple[float, ...], ...]:
    """Write the gauge into the coefficients: max y_t = 1 on [lower, 1] for t < T (dense grid), and the last
    step scaled so y_T/x^p on [fit_lower, 1] has its max and min symmetric about 1."""
    th = np.array(theta, dtype=float).reshape(steps, -1)
    x = dense_grid(lower, 1.0, n)
    fit = x >= fit_lower
    y = x.copy()
    with np.errstate(all="ignore"):
        for t in range(steps):
            y = form.step(y, x, th[t])
            if t < steps - 1:
                s = float(np.max(y))
            else:
                rat = y[fit] / x[fit] ** float(form.p)
                s = 0.5 * (float(rat.max()) + float(rat.min()))
            if not (math.isfinite(s) and s > 0):
                s = 1.0
            th[t] /= s
            y = y / s
    return _rows(th.reshape(-1), steps, th.shape[1])


def fit_power_per_step(p: Fraction | str, steps: int = 6, lower: float = 1e-3, fit_lower: float = 1e-2, *,
                       terms: str | None = None, margin: float = PER_STEP_MARGIN, starts: int = 6, seed: int = 0,
                       iters: int = 200, polish: bool = True, grid: int = 400) -> PerStepDesign:
    """Fit per-step coefficients of a :class:`TermForm` to x^p, scale-free, on [fit_lower, 1].

    Minimizes the log-spread max − min of log(y_T/x^p) on the fit grid (the output is rescaled to unit RMS,
    so only the shape matters) by L-BFGS on a log-sum-exp smoothing of increasing sharpness from several
    starts, then an SLSQP epigraph polish on the true max. On the whole domain [lower, 1] every y_t stays
    ≥ margin·x after its gauge (max y_t = 1) and y_T increases: penalties first, constraints in the polish,
    then a dense-grid check (failing points join the grid and the fit repeats). ``grid``: log-spaced points
    on the fit interval (3/4 as many more on the domain); ``iters``: L-BFGS iterations per sharpness.
    """
    form = term_form(p, terms)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not 0 < lower <= fit_lower < 1:
        raise ValueError(f"need 0 < lower <= fit_lower < 1, got lower={lower}, fit_lower={fit_lower}")
    extra: np.ndarray | None = None
    final: PerStepDesign | None = None
    cands = _starts(form, steps, starts, seed)
    rounds = 4
    for _round in range(rounds):
        m = _TorchMap(form, steps, lower, fit_lower, margin, n_fit=grid, n_stab=3 * grid // 4, extra=extra)
        feasible: tuple[float, np.ndarray] | None = None
        closest: tuple[float, np.ndarray] | None = None  # the lowest error, feasible on the fit grid or not
        for th0 in cands:
            tried = [th0, _lbfgs(m, th0, iters)]
            if polish and m.exact(tried[-1])[0] < math.inf:
                tried.append(_polish_until_stalled(m, tried[-1]))
            for th in tried:  # judged on the design's own terms: shape on a dense grid, then the error
                d = PerStepDesign(form, _fold(form, th, steps, lower, fit_lower, 4001), lower, fit_lower, margin)
                err = d.errors(fit_lower, 4001)[0]
                if len(_shape_violations(d, dense_grid(lower, 1.0, 4001))) == 0:
                    if feasible is None or err < feasible[0]:
                        feasible = (err, th)
                elif m.exact(th)[1] <= 1e-6 and (closest is None or err < closest[0]):
                    closest = (err, th)
        add: list[np.ndarray] = []
        cands = []
        x = dense_grid(lower, 1.0, 20001)
        if closest is not None and (feasible is None or closest[0] < feasible[0]):
            # better but fails between grid points: those points join the grid, and it is refitted
            d = PerStepDesign(form, _fold(form, closest[1], steps, lower, fit_lower), lower, fit_lower, margin)
            add.append(_shape_violations(d, x))
            cands.append(closest[1])
        if feasible is not None:
            d = PerStepDesign(form, _fold(form, feasible[1], steps, lower, fit_lower), lower, fit_lower, margin)
            bad = _shape_violations(d, x)
            if len(bad) == 0:
                if final is None or d.errors(fit_lower)[0] < final.errors(fit_lower)[0]:
                    final = d
                # exchange: peaks of the error that the grid missed join it, and the design is re-polished
                xf = dense_grid(fit_lower, 1.0, 8001)
                rel = np.abs(d.evaluate(xf) / xf ** float(form.p) - 1)
                grid_err = math.tanh(0.5 * m.exact(feasible[1])[0])
                pk = np.nonzero((rel[1:-1] >= rel[:-2]) & (rel[1:-1] >= rel[2:]) & (rel[1:-1] > grid_err))[0] + 1
                if not cands and (float(rel.max()) <= 1.02 * grid_err or len(pk) == 0):
                    return final
                add.append(xf[pk[np.argsort(-rel[pk])[:60]]])
            else:
                add.append(bad)
            cands.append(feasible[1])
        if not cands:
            cands = _starts(form, steps, starts, seed + _round + 1)
        pts = np.concatenate(add) if add else np.zeros(0)
        pts = pts[:: max(1, len(pts) // 300)]
        extra = np.unique(np.concatenate([pts, pts * (1 - 1e-4), [] if extra is None else extra]))
    if final is not None:
        return final
    raise RuntimeError(f"no per-step coefficients found that keep y_t >= {margin:g} x and y_T increasing on "
                       f"[{lower:g}, 1]")


def _shape_violations(d: PerStepDesign, x: np.ndarray) -> np.ndarray:
    """The x at which some y_t < margin·x (or is not finite), or y_T does not increase."""
    y, bad = x.copy(), np.zeros(len(x), dtype=bool)
    with np.errstate(all="ignore"):
        for c in d.coefficients:
            y = d.form.step(y, x, c)
            bad |= ~(np.isfinite(y) & (y >= d.margin * x))
    bad[1:] |= ~(np.diff(y) > 0)
    return x[bad]


def format_per_step_summary(design: PerStepDesign) -> str:
    lo, hi, ratio, mono = design.stability()
    sf2, pl2 = design.errors(design.fit_lower)
    sf3, pl3 = design.errors(design.lower)
    lines = [f"Muon^p per-step design: p = {design.p}, {design.steps} steps, update  y <- {design.update}",
             f"fit interval [{design.fit_lower:g}, 1] (scale-free), domain [{design.lower:g}, 1]",
             f"{'step':>4}  " + "  ".join(f"{n:>14}" for n in design.names)]
    for t, row in enumerate(design.coefficients, 1):
        lines.append(f"{t:>4}  " + "  ".join(f"{v:>14.8g}" for v in row))
    lines += [f"worst relative error on [{design.fit_lower:g}, 1]: scale-free {sf2:.4e}, plain {pl2:.4e}",
              f"worst relative error on [{design.lower:g}, 1]: scale-free {sf3:.4e}, plain {pl3:.4e}",
              f"every step: y in [{lo:.4g}, {hi:.4g}], min y_t/x = {ratio:.4g} (margin {design.margin:g}); "
              f"y_T increasing: {'yes' if mono else 'NO'}"]
    return "\n".join(lines)


def _per_step_toml(design: PerStepDesign, name: str, description: str | None, command: str | None) -> str:
    sf2, pl2 = design.errors(design.fit_lower)
    sf3, pl3 = design.errors(design.lower)
    lo, hi, ratio, _ = design.stability()
    desc = description or (f"Muon^p: U S^({design.p}) V^T by {design.steps} per-step fitted odd steps "
                           f"(scale-free minimax on [{design.fit_lower:g}, 1]), unit RMS")
    tol = fmt_float(max(1.02 * pl3, pl3 + 1e-3), up=True)

    def render(interval: str) -> str:
        comment = [
            f"Muon^p (arXiv 2606.13867) for p = {design.p}, written by `polygen fit power --per-step`:",
            f"X = G/||G||_F fixed, Y0 = X, {design.steps} steps with new coefficients each step of",
            f"  y <- {design.update}",
            "Fitted to minimize the scale-free worst relative error  min_a max |y_T/(a x^p) - 1|",
            f"(the output is rescaled to unit RMS) on [{design.fit_lower:g}, 1]: {sf2:.3g}; the last step is scaled",
            f"so that the plain error max |y_T/x^p - 1| there is the same ({pl2:.3g}).",
            f"On the whole domain [{design.lower:g}, 1]: scale-free {sf3:.3g}, plain {pl3:.3g}.",
            f"Stable on [{design.lower:g}, 1]: after every step y in [{lo:.3g}, {hi:.4g}] and y >= {design.margin:g} x "
            f"(min y/x = {ratio:.3g}), y_T increasing.",
            f"Verifier (plain relative error <= 5 %): {interval}.",
        ]
        if command:
            comment.append(f"Regenerate: {command}")
        extra = [f"p = {toml_string(f'{design.p.numerator}/{design.p.denominator}')}"]
        lines = spec_header(comment, name, desc, "power", design.lower, 1.0, extra)
        lines += ["", "[input]", 'norm = "frobenius"', 'safety = "1"', 'eps = "1e-7"',
                  "", "[variables.x]", 'kind = "rectangular"', 'init = "g"',
                  "", "[variables.y]", 'kind = "rectangular"', 'init = "g"',
                  "", "[[steps]]"]
        for k, n in enumerate(design.names):
            lines.append(f"table.{n} = " + toml_list([repr(row[k]) for row in design.coefficients]))
        lines.append(f"update = {{ y = {toml_string(design.update)} }}")
        lines += ["", "[output]", 'var = "y"', 'rescale = "rms"',
                  "", "[verify]", 'expect = "converge"', f"tolerance = {toml_string(tol)}"]
        return "\n".join(lines) + "\n"

    from polygen.passes.verify_convergence import verify_map
    from polygen.spec import parse_spec

    rep = verify_map(parse_spec(render("(not yet verified)"), source=f"<{name}>"))
    w = rep.within_5pct
    return render(f"within 5 % on [{w[0]:.4g}, {w[1]:.4g}]" if w else "nowhere within 5 %")
