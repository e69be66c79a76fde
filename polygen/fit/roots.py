"""Inverse-root coefficient design: Polar Express's idea applied to the coupled Newton iteration for A^(-1/r).

The coupled iteration (Guo & Higham 2006; Distributed Shampoo) keeps X₀ = I, M₀ = A/s and repeats
t = t_k(M), X ← X·t, M ← M·t^r. For *any* polynomial t_k the invariant M = X^r·A/s holds, so on an eigenvalue
m₀ of A/s the output is x = (m_K/m₀)^(1/r) and its relative error is m_K^(1/r) − 1, where
m_K = f_K ∘ … ∘ f_1(m₀) and f_k(m) = m·t_k(m)^r. Newton's t = ((r+1) − m)/r grows a small eigenvalue only by
((r+1)/r)^r ≈ 2.4 a step, which is why it needs 11–15 steps at κ = 1e3…1e4.

Here each step's t_k is designed greedily on the interval [ℓ_k, u_k] the eigenvalues occupy: among polynomials
of the step's degree, the one that maximizes min f_k / max f_k on [ℓ_k, u_k] (the worst ratio left to the
later steps), then scaled so the image straddles 1 symmetrically; its image is the next interval. A quadratic
t grows small eigenvalues ~30× a step for one matmul more than an affine t.

Float32 rounding, measured step by step against float64 `eigh` (bench/RESULTS.md §11), sets three rules:

* A conditioning bound (Σ|terms|)/t ≤ ``conditioning`` on the interval (Newton's own is 3): an aggressive
  step has t close to 0 at the top of the interval, computed as a cancelling sum of O(1) terms, and its
  relative rounding, raised to the r-th power, lands in M and is amplified by every later step (float32 at
  κ = 1e2: 1.3e-4 unbounded, where Newton gives 2.8e-6).
* A spread bound max t / min t ≤ ``spread`` on the interval: t^r is formed by squaring and M·t^r rounds
  relative to the largest t^r, while the eigenvalues where t is smallest can land at the bottom of the
  next interval. An affine step of spread ~5.5 that folds the top of [ℓ, u] onto its bottom was most of
  the error at n = 128 (κ = 1e2: 2.4e-6 without the bound, 9e-7 with spread ≤ 4, for one matmul more).
* The written spec updates in residual form: with z = t − 1, X ← X + X·z and M ← M + M·((1 + z)^r − 1), the
  r-th power built by squaring residuals (e ← e² + 2e). Near convergence z is of the order of the residual,
  so each product rounds relative to |z| instead of |t| ≈ 1, and the addends ride in the GEMM epilogue: the
  same matmuls (1.2–2× less error). M is multiplied from the right like X (M·t^r, not Distributed Shampoo's
  t^r·M); both orders are exact, the right one up to 1.7× more accurate at κ = 1e2.

The step degrees are chosen by a branch-and-bound search over degree sequences for the fewest matmuls that
reach ``tolerance`` on m_K − 1 (degree d costs d − 1 powers of M, the r-th power by squaring, M·t^r and X·t;
the first step's X·t and the last step's M update are free, which the compiler's dead-code pass finds too).
Everything is scalar float64 numpy: the iteration acts on each eigenvalue separately.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from polygen.fit.minimax import fmt_float, spec_header, toml_list, toml_string

DEFAULT_CONDITIONING = 10.0
DEFAULT_SPREAD = 4.0
DEFAULT_SAFETY = 1.01
DEFAULT_TOLERANCE = 4e-6
MAX_STEPS = 14


def power_matmuls(r: int) -> int:
    """Matmuls for t^r by binary powering (squarings plus one product per extra set bit)."""
    return r.bit_length() - 1 + bin(r).count("1") - 1


def step_matmuls(r: int, degree: int, first: bool, last: bool) -> int:
    """Matmuls of one step: powers M²…M^d for t, then (unless last) t^r and t^r·M, then (unless first) X·t."""
    powers = degree - 1
    update_m = 0 if last else power_matmuls(r) + 1
    return powers + update_m + (0 if first else 1)


@dataclass(frozen=True)
class RootStep:
    """t(m) = Σ_i coeffs[i]·m^i (coeffs[0] the constant term)."""

    coeffs: tuple[float, ...]

    @property
    def degree(self) -> int:
        return len(self.coeffs) - 1

    def t(self, m: np.ndarray) -> np.ndarray:
        acc = np.zeros_like(m) + self.coeffs[-1]
        for c in reversed(self.coeffs[:-1]):
            acc = acc * m + c
        return acc


@dataclass(frozen=True)
class RootDesign:
    r: int
    lower: float
    upper: float
    steps: tuple[RootStep, ...]
    conditioning: float
    safety: float
    spread: float = math.inf

    @property
    def degrees(self) -> tuple[int, ...]:
        return tuple(s.degree for s in self.steps)

    @property
    def matmuls(self) -> int:
        k = len(self.steps)
        return sum(step_matmuls(self.r, s.degree, i == 0, i == k - 1) for i, s in enumerate(self.steps))

    def evaluate(self, m0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(m_K, x_K) for eigenvalues m₀ of A/s (float64)."""
        m = np.asarray(m0, dtype=float).copy()
        x = np.ones_like(m)
        for s in self.steps:
            t = s.t(m)
            x, m = x * t, m * t**self.r
        return m, x

    def worst_error(self, n: int = 20001) -> float:
        """Worst |x_K·m₀^(1/r) − 1| (the output's relative error) on a dense grid of the domain."""
        m0 = _grid(self.lower, self.upper, n)
        _, x = self.evaluate(m0)
        return float(np.max(np.abs(x * m0 ** (1.0 / self.r) - 1.0)))

    def to_toml(self, name: str, description: str | None = None, command: str | None = None) -> str:
        return _root_toml(self, name, description, command)


def _grid(lo: float, hi: float, n: int) -> np.ndarray:
    return np.unique(np.concatenate([np.geomspace(lo, hi, n), np.linspace(lo, hi, n)]))


def design_step(lo: float, hi: float, r: int, degree: int, conditioning: float,
                spread: float = math.inf) -> tuple[RootStep, float, float]:
    """The step of ``degree`` that maximizes min f / max f on [lo, hi] (f = m·t^r, t > 0, conditioning and
    spread max t / min t bounded), scaled so that its image [ℓ', u'] has ℓ' + u' = 2; returns (step, ℓ', u')."""
    grid = _grid(lo, hi, 1500)
    powers = np.stack([grid**i for i in range(1, degree + 1)])

    def objective(b: np.ndarray) -> float:
        t = 1.0 + b @ powers
        if np.min(t) <= 1e-9:
            return 1e9
        cond = float(np.max((1.0 + np.abs(b) @ powers) / t))
        excess = max(0.0, cond - conditioning) + max(0.0, float(t.max() / t.min()) - spread)
        f = grid * t**r
        return -math.log(float(f.min() / f.max())) + 1e3 * excess

    starts = ([-0.5 / hi, 0.0, 0.0], [-0.9 / hi, 0.1 / hi**2, 0.0], [-0.2 / hi, 0.0, 0.0],
              [-1.3 / hi, 0.4 / hi**2, -0.02 / hi**3], [-0.05 / hi, 0.0, 0.0])
    best = None
    for b0 in starts:
        res = minimize(objective, np.array(b0[:degree]), method="Nelder-Mead",
                       options={"xatol": 1e-13, "fatol": 1e-15, "maxiter": 20000})
        if best is None or res.fun < best.fun:
            best = res
    assert best is not None
    b = np.asarray(best.x, dtype=float)
    fine = _grid(lo, hi, 20001)
    t = 1.0 + sum(bi * fine ** (i + 1) for i, bi in enumerate(b))
    f = fine * t**r
    scale = 2.0 / (float(f.min()) + float(f.max()))
    a = scale ** (1.0 / r)
    step = RootStep((a, *(a * float(bi) for bi in b)))
    return step, float(f.min()) * scale, float(f.max()) * scale


def design_roots(r: int, lower: float, upper: float | None = None, *, tolerance: float = DEFAULT_TOLERANCE,
                 conditioning: float = DEFAULT_CONDITIONING, spread: float = DEFAULT_SPREAD,
                 safety: float = DEFAULT_SAFETY, degrees: Sequence[int] = (1, 2, 3),
                 max_steps: int = MAX_STEPS) -> RootDesign:
    """The fewest-matmul greedy design (over step-degree sequences) with |m_K − 1| ≤ ``tolerance`` on the domain.

    ``upper`` defaults to (r+1)/2, the top of A/s's spectrum under the Frobenius normalization s = 2‖A‖_F/(r+1).
    Every step but the last is designed on [ℓ, u·safety], so that rounding pushing an eigenvalue just above the
    interval stays in a region where t > 0 and f is controlled.
    """
    if r < 1:
        raise ValueError(f"r must be a positive integer, got {r}")
    hi = float(upper) if upper is not None else (r + 1) / 2
    if not 0 < lower < hi:
        raise ValueError(f"need 0 < lower < upper, got [{lower}, {hi}]")
    if not (conditioning > 1 and spread > 1):
        raise ValueError(f"conditioning and spread bound ratios of positive sums: both must exceed 1, got "
                         f"{conditioning:g} and {spread:g}")
    memo: dict[tuple[float, float, int, bool], tuple[RootStep, float, float]] = {}

    def step(lo: float, up: float, deg: int, last: bool) -> tuple[RootStep, float, float]:
        key = (lo, up, deg, last)
        if key not in memo:
            memo[key] = design_step(lo, up if last else up * safety, r, deg, conditioning, spread)
        return memo[key]

    best: list[tuple[int, tuple[RootStep, ...]]] = []

    def search(lo: float, up: float, chosen: tuple[RootStep, ...], cost: int) -> None:
        if best and cost >= best[0][0]:
            return
        if len(chosen) >= max_steps:
            return
        for deg in degrees:
            # close here with a last step of this degree?
            s, lo2, up2 = step(lo, up, deg, True)
            total = cost + step_matmuls(r, deg, not chosen, True)
            if max(1 - lo2, up2 - 1) <= tolerance and (not best or total < best[0][0]):
                best[:] = [(total, (*chosen, s))]
        for deg in degrees:
            s, lo2, up2 = step(lo, up, deg, False)
            search(lo2, up2, (*chosen, s), cost + step_matmuls(r, deg, not chosen, False))

    search(float(lower), hi, (), 0)
    if not best:
        raise RuntimeError(f"no design within {max_steps} steps reaches {tolerance:g} on [{lower:g}, {hi:g}]")
    return RootDesign(r, float(lower), hi, best[0][1], conditioning, safety, spread)


def newton_design(r: int, steps: int, lower: float, upper: float | None = None) -> RootDesign:
    """The classical coupled Newton iteration, t = ((r+1) − m)/r every step, for comparison."""
    hi = float(upper) if upper is not None else (r + 1) / 2
    s = RootStep(((r + 1) / r, -1.0 / r))
    return RootDesign(r, float(lower), hi, (s,) * steps, 3.0, 1.0, 2.0)


def format_summary(design: RootDesign) -> str:
    lines = [f"inverse root design: r = {design.r}, domain [{design.lower:g}, {design.upper:g}], "
             f"{len(design.steps)} steps, degrees {design.degrees}, {design.matmuls} matmuls",
             f"conditioning <= {design.conditioning:g}, spread <= {design.spread:g}, safety {design.safety:g}"]
    for k, s in enumerate(design.steps, 1):
        lines.append(f"{k:>4}  t = " + " + ".join(f"{c:.10g}*m^{i}" for i, c in enumerate(s.coeffs)))
    lines.append(f"worst relative error of x on the domain: {design.worst_error():.3e}")
    return "\n".join(lines)


def _residual_text(degree: int) -> str:
    """z = t − 1 = (a − 1) + b·m + … of a step of ``degree`` (the table holds t's own coefficients)."""
    names = "abcd"
    terms = [f"{names[0]} - 1"] + [f"{names[i]}*m" if i == 1 else f"{names[i]}*m**{i}" for i in range(1, degree + 1)]
    return " + ".join(terms)


def residual_power_lets(r: int) -> tuple[list[tuple[str, str]], str]:
    """Lets forming t^r − 1 from z = t − 1 by binary powering in residual form, and the last let's name.

    (1 + u)(1 + v) − 1 = u·v + u + v and (1 + u)² − 1 = u² + 2u: one matmul each with the sum in the
    epilogue, so the count is binary powering's (:func:`power_matmuls`)."""
    lets: list[tuple[str, str]] = []
    acc: str | None = None  # t^acc_exp − 1, from the set bits of r seen so far
    acc_exp, cur, k, e = 0, "z", 1, r  # cur = t^k − 1
    while True:
        if e & 1:
            if acc is None:
                acc, acc_exp = cur, k
            else:
                acc_exp += k
                lets.append((f"z{acc_exp}", f"{acc}*{cur} + {acc} + {cur}"))
                acc = f"z{acc_exp}"
        e >>= 1
        if not e:
            break
        k *= 2
        lets.append((f"z{k}", f"{cur}**2 + 2*{cur}"))
        cur = f"z{k}"
    assert acc is not None
    return lets, acc


def _ordinal(r: int) -> str:
    return f"{r}{'th' if 10 <= r % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(r % 10, 'th')}"


def _root_toml(design: RootDesign, name: str, description: str | None, command: str | None) -> str:
    r = design.r
    err = design.worst_error()
    desc = description or (f"Designed coupled iteration A^(-1/{r}): {len(design.steps)} steps, "
                           f"{design.matmuls} matmuls, no host sync")
    comment = [
        f"Inverse {_ordinal(r)} root A^(-1/{r}) by a designed coupled iteration, written by `polygen fit root`",
        "(polygen/fit/roots.py): X0 = I, M0 = A/s with s = 2||A||_F/(r+1); t = t_k(M), X <- X t, M <- M t^r,",
        "with each t_k the greedy minimax step on the interval the eigenvalues occupy (Polar Express's idea",
        f"for coupled Newton), conditioning <= {design.conditioning:g}, spread max t/min t <= {design.spread:g}.",
        "Written in residual form for float32 (z = t - 1: X <- X + X z, M <- M + M (t^r - 1), t^r - 1 by",
        f"squaring residuals; the same matmuls). Step degrees {design.degrees}: "
        f"{design.matmuls} matmuls; worst relative error {err:.2e}",
        f"on [{design.lower:g}, {design.upper:g}] in float64 (Newton's fixed-step iteration needs 15-20 steps).",
    ]
    if command:
        comment.append(f"Regenerate: {command}")
    lines = spec_header(comment, name, desc, "inverse_root", design.lower, design.upper,
                        [f"r = {toml_string(str(r))}"])
    lines += ["", "[input]", 'kind = "symmetric"', 'norm = "frobenius"', f'safety = "2/({r} + 1)"',
              'eps = "1e-30"', "", "[variables.x]", 'kind = "symmetric"', 'init = "1"',
              "", "[variables.m]", 'kind = "symmetric"', 'init = "g"']
    k = 0
    while k < len(design.steps):  # consecutive steps of one degree share a [[steps]] table
        deg = design.steps[k].degree
        j = k
        while j < len(design.steps) and design.steps[j].degree == deg:
            j += 1
        lines += ["", "[[steps]]"]
        for i in range(deg + 1):
            lines.append(f"table.{'abcd'[i]} = " + toml_list([repr(s.coeffs[i]) for s in design.steps[k:j]]))
        power, last = residual_power_lets(r)
        lets = [("z", _residual_text(deg)), *power]
        lines.append("let = { " + ", ".join(f"{n} = {toml_string(e)}" for n, e in lets) + " }")
        lines.append(f'update = {{ x = "x + x*z", m = {toml_string(f"m + m*{last}")} }}')
        k = j
    lines += ["", "[output]", 'var = "x"', 'rescale = "norm"', f'exponent = "-1/{r}"',
              "", "[verify]", 'expect = "converge"', f"tolerance = {toml_string(fmt_float(1.5 * err, up=True))}"]
    return "\n".join(lines) + "\n"
