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

All scalar maps are evaluated in numpy float64; the matrix iteration acts on each singular value separately.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

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
    """L-BFGS-B on the smooth surrogate, then Nelder–Mead on the true worst case, from each start."""
    best, best_f = None, math.inf
    for th in starts:
        th = np.array(th, dtype=float)
        if smooth_first:
            r = minimize(obj.smooth, th, method="L-BFGS-B", options={"maxiter": 100})
            if obj.worst(r.x) < obj.worst(th):
                th = r.x
        r = minimize(obj.worst, th, method="Nelder-Mead",
                     options={"maxfev": maxfev, "xatol": 1e-10, "fatol": 1e-14, "adaptive": True})
        th = r.x
        f = obj.worst(th)
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
