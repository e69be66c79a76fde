"""Polar Express coefficient design: greedy per-step minimax odd polynomials.

Amsel, Persson, Musco, Gower, "The Polar Express" (arXiv 2505.16932), summarized in DESIGN §4:

* ℓ₁ = ``lower``, u₁ = ``upper``; step t uses the odd polynomial p_t of the given degree that minimizes
  max |p(x) − 1| on [ℓ_t, u_t] (closed form for degree 3, a Remez exchange for degree ≥ 5);
* the greedy choice is optimal for the whole composition, and the image of [ℓ_t, u_t] is [ℓ_{t+1}, u_{t+1}]
  with ℓ_{t+1} = p_t(ℓ_t), u_{t+1} = 2 − ℓ_{t+1}, so 1 − ℓ_{t+1} is the guaranteed worst-case error after t steps;
* cushion (App. G): when ℓ_t < cushion·u_t the polynomial is designed on [cushion·u_t, u_t] (which keeps the
  coefficients moderate) and re-centred by 2/(min p + max p) so that its image straddles 1 symmetrically;
* safety factor: all but the last step run as p_t(x/safety), guarding against round-off pushing a singular
  value just above the designed interval.

Everything is scalar float64 numpy: a polynomial iteration acts on each singular value independently.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.polynomial import Chebyshev

#: App. G of the paper: design on [0.02407327424182761·u, u] when ℓ is smaller than that.
DEFAULT_CUSHION = 0.02407327424182761
DEFAULT_SAFETY = 1.01
#: Below this worst-case error the maximally flat polynomial is used (Remez points are noise there).
FLAT_ERROR = 1e-14

Coefficients = tuple[float, ...]


# ---------------------------------------------------------------------------------------------------------------
# scalar helpers
# ---------------------------------------------------------------------------------------------------------------
def odd_eval(coeffs: Sequence[float], x: np.ndarray | float) -> np.ndarray | float:
    """p(x) = c1·x + c3·x³ + c5·x⁵ + … for ``coeffs`` = (c1, c3, c5, …), by Horner in x²."""
    x2 = np.asarray(x, dtype=float) ** 2 if isinstance(x, np.ndarray) else float(x) ** 2
    acc: np.ndarray | float = 0.0
    for c in reversed(coeffs):
        acc = acc * x2 + c
    return acc * x


def odd_derivative_roots(coeffs: Sequence[float], lo: float, hi: float) -> list[float]:
    """Real critical points of the odd polynomial in (lo, hi): p′(x) = Σ (2k+1) c_k w^k with w = x²."""
    dw = [(2 * k + 1) * c for k, c in enumerate(coeffs)]
    if len(dw) < 2:
        return []
    roots = np.roots(dw[::-1])
    out = []
    for w in roots:
        if abs(w.imag) <= 1e-12 * max(1.0, abs(w.real)) and w.real > 0:
            x = math.sqrt(w.real)
            if lo < x < hi:
                out.append(x)
    return sorted(out)


def range_on(coeffs: Sequence[float], lo: float, hi: float) -> tuple[float, float]:
    """Exact (min, max) of the odd polynomial on [lo, hi]: endpoints and critical points."""
    pts = [lo, hi, *odd_derivative_roots(coeffs, lo, hi)]
    vals = [float(odd_eval(coeffs, p)) for p in pts]
    return min(vals), max(vals)


def scale_argument(coeffs: Sequence[float], s: float) -> Coefficients:
    """Coefficients of x ↦ p(x/s): c_k / s^(2k+1)."""
    return tuple(c / s ** (2 * k + 1) for k, c in enumerate(coeffs))


# ---------------------------------------------------------------------------------------------------------------
# one step: the odd minimax approximation of 1 on [lo, hi]
# ---------------------------------------------------------------------------------------------------------------
def cubic_minimax(lo: float, hi: float) -> Coefficients:
    """Closed form (DESIGN §4): p(x) = β(3/2·αx − 1/2·(αx)³), α = √(3/(u²+ℓu+ℓ²)), β = 4/(2 + ℓu(ℓ+u)α³)."""
    alpha = math.sqrt(3.0 / (hi * hi + lo * hi + lo * lo))
    beta = 4.0 / (2.0 + lo * hi * (lo + hi) * alpha**3)
    return (1.5 * alpha * beta, -0.5 * alpha**3 * beta)


def flat_polynomial(degree: int, hi: float = 1.0) -> Coefficients:
    """The maximally flat odd polynomial with p(hi) = 1 and p′(hi) = … = p^(n−1)(hi) = 0 (n = degree//2 + 1).

    p(x) = Σ_{k<n} binom(2k, k)/4^k · s(1 − s²)^k with s = x/hi: the classical Newton–Schulz polynomial of that
    degree (1.5, −0.5) for degree 3 and (15/8, −10/8, 3/8) for degree 5. It is the limit of the minimax
    polynomial as ℓ/u → 1.
    """
    n = degree // 2 + 1
    acc = np.zeros(n)
    for k in range(n):
        # s(1 − s²)^k = Σ_j binom(k, j)(−1)^j s^(2j+1)
        w = math.comb(2 * k, k) / 4**k
        for j in range(k + 1):
            acc[j] += w * math.comb(k, j) * (-1) ** j
    return scale_argument(tuple(float(a) for a in acc), hi)


@dataclass(frozen=True)
class RemezResult:
    """Minimax odd polynomial of 1 on [lo, hi]: coefficients, the levelled error E and the alternation points.

    p(points[i]) = 1 − (−1)^i·E: below 1 at ``lo``, alternating across the interval.
    """

    coefficients: Coefficients
    error: float
    points: tuple[float, ...]
    iterations: int


def _cheb_to_odd(h: Chebyshev, hi: float) -> Coefficients:
    """s·h(s²) with s = x/hi → monomial coefficients in x."""
    mono = h.convert(kind=np.polynomial.Polynomial, domain=[-1, 1], window=[-1, 1]).coef
    return scale_argument(tuple(float(c) for c in mono), hi)


def remez_odd(degree: int, lo: float, hi: float, *, tol: float = 1e-15, max_iter: int = 100) -> RemezResult:
    """Remez exchange for the odd degree-``degree`` polynomial minimizing max |p(x) − 1| on [lo, hi].

    n = degree//2 + 1 coefficients, n + 1 alternation points (ℓ, n − 1 interior points, u). Each iteration
    solves the linear system p(x_i) + (−1)^i E = 1 for the coefficients and E, then moves the interior points
    to the critical points of p (roots of p′). The unknown polynomial is written as s·h(s²) with s = x/hi and h
    in a Chebyshev basis on [ρ², 1] (ρ = lo/hi), which keeps the system well conditioned even when ρ → 1.
    """
    if degree < 3 or degree % 2 == 0:
        raise ValueError(f"degree must be odd and >= 3, got {degree}")
    if not 0 < lo < hi:
        raise ValueError(f"need 0 < lo < hi, got [{lo}, {hi}]")
    n = degree // 2 + 1
    rho = lo / hi
    dom = [rho * rho, 1.0]
    # initial alternation points: Chebyshev extrema of [ρ, 1]
    s = 0.5 * (1 + rho) - 0.5 * (1 - rho) * np.cos(np.pi * np.arange(n + 1) / n)
    signs = (-1.0) ** np.arange(n + 1)
    E_old = math.inf
    h = Chebyshev([1.0], domain=dom)
    E = 0.0
    iterations = 0
    for iterations in range(1, max_iter + 1):  # noqa: B007 (reported in the result)
        w = s * s
        A = np.empty((n + 1, n + 1))
        for j in range(n):
            basis = Chebyshev.basis(j, domain=dom)
            A[:, j] = s * basis(w)
        A[:, n] = signs
        sol = np.linalg.solve(A, np.ones(n + 1))
        h = Chebyshev(sol[:n], domain=dom)
        E = float(sol[n])
        # interior points ← critical points of s·h(s²): d/ds = h(w) + 2w h′(w)
        deriv = h + 2 * Chebyshev.identity(domain=dom) * h.deriv()
        crit = _interior_roots(deriv, dom)
        if len(crit) != n - 1:
            crit = _grid_extrema(h, rho, n - 1)
        s_new = np.concatenate([[rho], np.sqrt(crit), [1.0]])
        moved = float(np.max(np.abs(s_new - s)))
        s = s_new
        if abs(E - E_old) <= tol * max(abs(E), 1e-300) * 1e3 or moved <= 1e-13:
            break
        E_old = E
    coeffs = _cheb_to_odd(h, hi)
    return RemezResult(coeffs, E, tuple(float(v * hi) for v in s), iterations)


def _interior_roots(poly: Chebyshev, dom: list[float]) -> np.ndarray:
    roots = np.asarray(poly.roots(), dtype=complex)
    lo, hi = dom
    keep = (np.abs(roots.imag) <= 1e-9 * np.maximum(1.0, np.abs(roots.real))) & (roots.real > lo) & (roots.real < hi)
    return np.sort(roots.real[keep].astype(float))


def _grid_extrema(h: Chebyshev, rho: float, count: int) -> np.ndarray:
    """Fallback: the ``count`` strongest interior local extrema of s·h(s²) − 1 on a dense grid (returns w = s²)."""
    sg = np.linspace(rho, 1.0, 20001)
    e = sg * h(sg * sg) - 1.0
    d = np.diff(e)
    idx = np.nonzero(np.sign(d[1:]) != np.sign(d[:-1]))[0] + 1
    if len(idx) < count:
        raise RuntimeError(f"Remez exchange lost its alternation (found {len(idx)} extrema, need {count})")
    best = idx[np.argsort(-np.abs(e[idx]))[:count]]
    return np.sort(sg[best] ** 2)


def step_minimax(degree: int, lo: float, hi: float) -> tuple[Coefficients, float]:
    """The odd minimax polynomial of 1 on [lo, hi] and its error: closed form for degree 3, Remez otherwise.

    When ℓ/u is so close to 1 that even the maximally flat polynomial is within ``FLAT_ERROR`` of 1, that
    polynomial is returned (the exchange points are round-off there; the paper's code does the same for
    ℓ/u ≥ 1 − 5e-6).
    """
    flat = flat_polynomial(degree, hi)
    flat_err = 1.0 - float(odd_eval(flat, lo))
    if lo / hi >= 1 - 5e-6 or flat_err <= FLAT_ERROR:
        return flat, flat_err
    if degree == 3:
        c = cubic_minimax(lo, hi)
        return c, 1.0 - float(odd_eval(c, lo))
    try:
        res = remez_odd(degree, lo, hi)
    except (RuntimeError, np.linalg.LinAlgError):
        return flat, flat_err
    # guard: at the edge of float64 (E ~ 1e-13 and below) keep whichever is really better on the interval
    x = np.linspace(lo, hi, 4001)
    if float(np.max(np.abs(odd_eval(res.coefficients, x) - 1.0))) > flat_err:
        return flat, flat_err
    return res.coefficients, abs(res.error)


# ---------------------------------------------------------------------------------------------------------------
# the composition
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MinimaxDesign:
    """A Polar Express design: ``steps`` odd polynomials of degree ``degree`` mapping [lower, upper] towards 1.

    ``raw_coefficients``: per step (c1, c3, c5, …) of p_t as designed. ``coefficients``: the ones to run,
    p_t(x/safety) for all but the last step (what a hand-written kernel's table holds). ``bounds``: (ℓ_t, u_t)
    before each step. ``errors``: guaranteed worst-case |p(x) − 1| over [lower, upper] after each step of the
    raw composition (1 − ℓ_{t+1}).
    """

    degree: int
    lower: float
    upper: float
    cushion: float
    safety: float
    raw_coefficients: tuple[Coefficients, ...]
    coefficients: tuple[Coefficients, ...]
    bounds: tuple[tuple[float, float], ...]
    errors: tuple[float, ...]

    @property
    def steps(self) -> int:
        return len(self.raw_coefficients)

    @property
    def matmuls_per_step(self) -> int:
        """Direct form: gram XXᵀ, degree//2 − 1 small products for the powers, one long product."""
        return self.degree // 2 + 1

    @property
    def matmuls(self) -> int:
        return self.steps * self.matmuls_per_step

    @property
    def final_error(self) -> float:
        return self.errors[-1] if self.errors else 1.0 - self.lower

    def evaluate(self, x: np.ndarray | float, *, safe: bool = True) -> np.ndarray:
        """The composed scalar map on normalized singular values ``x`` (with or without the safety factor)."""
        y = np.asarray(x, dtype=float)
        table = self.coefficients if safe else self.raw_coefficients
        for c in table:
            y = np.asarray(odd_eval(c, y))
        return y

    def measured_error(self, *, safe: bool = True, n: int = 20001) -> float:
        """max |map(x) − 1| on a dense log + linear grid of [lower, upper] (float64)."""
        x = _grid(self.lower, self.upper, n)
        return float(np.max(np.abs(self.evaluate(x, safe=safe) - 1.0)))

    def image(self, *, safe: bool = True, n: int = 20001) -> tuple[float, float]:
        y = self.evaluate(_grid(self.lower, self.upper, n), safe=safe)
        return float(np.min(y)), float(np.max(y))

    def to_toml(self, name: str, description: str | None = None, command: str | None = None) -> str:
        """A polygen spec (docs/spec-format.md) running this design, safety applied through ``let u = x/s``.

        ``command`` (the regenerating command line) goes in a comment.
        """
        return _design_toml(self, name, description, command)


def _grid(lo: float, hi: float, n: int) -> np.ndarray:
    return np.unique(np.concatenate([np.geomspace(lo, hi, n), np.linspace(lo, hi, n)]))


def minimax(degree: int, steps: int, lower: float, cushion: float = DEFAULT_CUSHION, safety: float = DEFAULT_SAFETY,
            upper: float = 1.0) -> MinimaxDesign:
    """Greedy per-step minimax design (Polar Express, Alg. 1 + App. G) of ``steps`` odd degree-``degree`` steps.

    >>> d = minimax(5, 8, 1e-3)
    >>> round(d.errors[4], 3), [round(c, 6) for c in d.raw_coefficients[0]]
    (0.124, [8.287212, -23.595887, 17.300387])
    """
    if degree < 3 or degree % 2 == 0:
        raise ValueError(f"degree must be odd and >= 3, got {degree}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not 0 < lower < upper:
        raise ValueError(f"need 0 < lower < upper, got lower={lower}, upper={upper}")
    if not 0 <= cushion < 1:
        raise ValueError(f"cushion must be in [0, 1), got {cushion}")
    if safety < 1:
        raise ValueError(f"safety must be >= 1, got {safety}")
    lo, hi = float(lower), float(upper)
    raw: list[Coefficients] = []
    bounds: list[tuple[float, float]] = []
    errors: list[float] = []
    for _ in range(steps):
        bounds.append((lo, hi))
        design_lo = max(lo, cushion * hi)
        coeffs, _ = step_minimax(degree, design_lo, hi)
        # re-centre: the image of [lo, hi] straddles 1 symmetrically (a no-op for an equioscillating step)
        pmin, pmax = range_on(coeffs, lo, hi)
        k = 2.0 / (pmin + pmax)
        coeffs = tuple(c * k for c in coeffs)
        raw.append(coeffs)
        lo = k * pmin
        hi = 2.0 - lo
        errors.append(1.0 - lo)
    safe = [scale_argument(c, safety) for c in raw[:-1]] + [raw[-1]]
    return MinimaxDesign(degree=degree, lower=float(lower), upper=float(upper), cushion=cushion, safety=safety,
                         raw_coefficients=tuple(raw), coefficients=tuple(safe), bounds=tuple(bounds),
                         errors=tuple(errors))


# ---------------------------------------------------------------------------------------------------------------
# trade-off: error after a matmul budget, per degree
# ---------------------------------------------------------------------------------------------------------------
def error_after_budget(degree: int, budget: int, lower: float, cushion: float = DEFAULT_CUSHION,
                       upper: float = 1.0) -> tuple[int, float]:
    """(steps that fit, guaranteed error) for ``budget`` matmuls of degree-``degree`` direct-form steps."""
    per = degree // 2 + 1
    steps = budget // per
    if steps == 0:
        return 0, 1.0 - lower / upper
    return steps, minimax(degree, steps, lower, cushion=cushion, safety=1.0, upper=upper).final_error


def budget_table(lower: float, budgets: Sequence[int] = (6, 12, 18, 24, 30), degrees: Sequence[int] = (3, 5, 7, 9),
                 cushion: float = DEFAULT_CUSHION) -> dict[int, dict[int, tuple[int, float]]]:
    """{budget: {degree: (steps, error)}}: the guaranteed error after the same number of matmuls."""
    return {b: {d: error_after_budget(d, b, lower, cushion) for d in degrees} for b in budgets}


def format_summary(design: MinimaxDesign, budgets: Sequence[int] = (4, 8, 12, 15, 20, 24, 30)) -> str:
    """Human-readable report: per-step bounds, coefficients and guaranteed errors, then error per matmul."""
    lines = [f"Polar Express minimax design: degree {design.degree}, {design.steps} steps on "
             f"[{design.lower:g}, {design.upper:g}], cushion {design.cushion:g}, safety {design.safety:g}",
             f"{'step':>4} {'matmuls':>7} {'l_t':>12} {'u_t':>12} {'guaranteed err':>15}  raw coefficients"]
    for t, ((lo, hi), err, c) in enumerate(zip(design.bounds, design.errors, design.raw_coefficients), 1):
        lines.append(f"{t:>4} {t * design.matmuls_per_step:>7} {lo:>12.6g} {hi:>12.6g} {err:>15.4e}  "
                     + ", ".join(f"{v:.10g}" for v in c))
    lines.append(f"measured max |p-1| on the domain with safety {design.safety:g}: "
                 f"{design.measured_error(safe=True):.4e}")
    lines.append("")
    lines.append("error per matmul (a degree-(2k+1) step costs k+1 matmuls: gram + k-1 small + 1 long product):")
    degrees = (3, 5, 7, 9)
    lines.append(f"{'matmuls':>7} " + " ".join(f"{'deg ' + str(d) + ' (steps)':>22}" for d in degrees))
    for b, row in budget_table(design.lower, budgets, degrees, design.cushion).items():
        cells = [f"{row[d][1]:>16.3e} ({row[d][0]:>2})" for d in degrees]
        best = min(degrees, key=lambda d: row[d][1])
        lines.append(f"{b:>7} " + " ".join(f"{c:>22}" for c in cells) + f"   best: degree {best}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# spec writer
# ---------------------------------------------------------------------------------------------------------------
def _verify_block(design: MinimaxDesign) -> list[str]:
    measured = design.measured_error(safe=True)
    worst = max(design.final_error, measured)
    if worst < 0.5:
        tol = max(1.1 * worst, 1e-12)  # float64 evaluation noise floor
        return ["[verify]", 'expect = "converge"', f"tolerance = {toml_string(fmt_float(tol, up=True))}"]
    img_lo, img_hi = design.image(safe=True)
    lower = max(0.0, 0.95 * min(img_lo, 1.0 - design.final_error))
    upper = 1.05 * max(img_hi, 1.0 + design.final_error)
    return ["[verify]", 'expect = "bounded"', f"lower = {toml_string(fmt_float(lower, up=False))}",
            f"upper = {toml_string(fmt_float(upper, up=True))}"]


def _design_toml(design: MinimaxDesign, name: str, description: str | None, command: str | None) -> str:
    names = [f"c{2 * k + 1}" for k in range(design.degree // 2 + 1)]

    def update(var: str) -> str:
        terms = [f"{n}*{var}" if k == 0 else f"{n}*{var}**{2 * k + 1}" for k, n in enumerate(names)]
        return " + ".join(terms)

    desc = description or (f"Polar Express (degree {design.degree}, l = {design.lower:g}), {design.steps} steps, "
                           f"safety {design.safety:g}")
    safety = fmt_float(design.safety)
    comment = [
        "Polar Express greedy minimax design (Amsel et al., arXiv 2505.16932), written by `polygen fit minimax`:",
        f"degree {design.degree}, {design.steps} steps, domain [{design.lower:g}, {design.upper:g}], "
        f"cushion {design.cushion!r}, safety {design.safety:g}.",
        "Guaranteed worst-case |p(x) - 1| after each step: "
        + ", ".join(f"{e:.3g}" for e in design.errors) + ".",
        "Safety factor: p_t(x/safety) on all but the last step (the let u below); input normalized by",
        "||G||_F * safety + eps.",
    ]
    if command:
        comment.append(f"Regenerate: {command}")
    lines = spec_header(comment, name, desc, "polar", design.lower, design.upper)
    lines += ["", "[input]", 'norm = "frobenius"', f"safety = {toml_string(safety)}", 'eps = "1e-7"',
              "", "[variables.x]", 'kind = "rectangular"', 'init = "g"']
    raw = design.raw_coefficients
    if design.steps > 1 and design.safety != 1.0:
        lines += ["", "[[steps]]"]
        for k, n in enumerate(names):
            lines.append(f"table.{n} = " + toml_list([repr(float(row[k])) for row in raw[:-1]]))
        lines.append(f"let = {{ u = {toml_string('x/' + safety)} }}")
        lines.append(f"update = {{ x = {toml_string(update('u'))} }}")
        last = [raw[-1]]
    else:
        last = list(raw)
    if len(last) == 1:
        lines += ["", "[[steps]]", "repeat = 1",
                  "coefficients = { " + ", ".join(f"{n} = {toml_string(repr(float(last[0][k])))}"
                                                  for k, n in enumerate(names)) + " }"]
    else:
        lines += ["", "[[steps]]"]
        for k, n in enumerate(names):
            lines.append(f"table.{n} = " + toml_list([repr(float(row[k])) for row in last]))
    lines.append(f"update = {{ x = {toml_string(update('x'))} }}")
    lines += ["", "[output]", 'var = "x"', ""] + _verify_block(design)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# TOML writing helpers (shared by the fit modules; the spec format is docs/spec-format.md)
# ---------------------------------------------------------------------------------------------------------------
def toml_string(text: str) -> str:
    """A TOML basic string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def toml_list(items: Sequence[str], per_line: int = 3, indent: int = 4) -> str:
    """A TOML array of strings, wrapped ``per_line`` items a line."""
    quoted = [toml_string(i) for i in items]
    if len(quoted) <= per_line:
        return "[" + ", ".join(quoted) + "]"
    rows = [", ".join(quoted[i:i + per_line]) for i in range(0, len(quoted), per_line)]
    pad = " " * indent
    return "[\n" + ",\n".join(pad + r for r in rows) + ",\n]"


def fmt_float(v: float, up: bool | None = None) -> str:
    """Short decimal for a tolerance or bound: 3 significant digits, rounded up (or down) when asked."""
    if v == 0 or not math.isfinite(v):
        return repr(float(v))
    if up is None:
        return f"{v:.6g}"
    e = math.floor(math.log10(abs(v))) - 2
    m = v / 10.0**e
    m = math.ceil(m - 1e-9) if up else math.floor(m + 1e-9)
    return f"{m * 10.0**e:.3g}"


def spec_header(comment: Sequence[str], name: str, description: str, target: str, lo: float, hi: float,
                extra: Sequence[str] = ()) -> list[str]:
    """Comment block, name, description, target (plus ``extra`` lines such as p), domain."""
    lines = [f"# {c}" for c in comment]
    lines += [f"name = {toml_string(name)}", f"description = {toml_string(description)}",
              f"target = {toml_string(target)}", *extra,
              f"domain = [{toml_string(fmt_float(lo))}, {toml_string(fmt_float(hi))}]"]
    return lines
