"""IFNSO coefficient design: one high-degree polynomial instead of an iteration (arXiv 2602.02500, DESIGN §4).

Y = (I + Σ_{k=1}^{N−1} a_k R^(2^(k−1)) + c_N R^(2^(N−1)))·X with R = I − XXᵀ and X = G/‖G‖_F. On a singular
value x (r = 1 − x²) the map is

    f(x) = x·(1 + Σ_k a_k r^(2^(k−1)) + c_N r^(2^(N−1))),   c_N = √e·(2^(N/2) − 1) − Σ_k a_k,  a_k > 0.

The constraint fixes the slope at 0 to 1 + √e·(2^(N/2) − 1) (≈ 210 for N = 14), which is what lifts tiny
singular values. The paper learns a_k by Adam on MSE(f(x), 1) over a uniform grid of [0, 1]
(greekinRoma/Unified_Newton_Schulz_Orthogonalization, TrainUSCO.py: 10000 points, lr 0.1, StepLR(10000, 0.5),
|a| for positivity); ``fit_ifnso`` reproduces that procedure in float64 with a softplus parametrization.

f must always be evaluated as a function of r (powers r^(2^k) by repeated squaring), never expanded in x:
the expanded polynomial has degree 16385 and astronomically cancelling coefficients.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from polygen.fit.minimax import fmt_float, spec_header, toml_string

#: The paper's claim for N = 14: max |f(σ) − 1| ≤ 0.0073 for σ in [0.05, 1].
PAPER_BOUND = 0.0073
PAPER_INTERVAL = (0.05, 1.0)


def coefficient_total(N: int) -> float:
    """Σ a_k + c_N = √e·(2^(N/2) − 1)."""
    return math.exp(0.5) * (2.0 ** (N / 2) - 1.0)


def last_coefficient(a: Sequence[float], N: int) -> float:
    """c_N from the constraint."""
    return coefficient_total(N) - float(sum(a))


def ifnso_map(a: Sequence[float], c_last: float, x: np.ndarray | float) -> np.ndarray:
    """f(x) in float64, as a function of r = 1 − x² (repeated squaring for r^(2^k))."""
    x = np.asarray(x, dtype=float)
    r = 1.0 - x * x
    acc = np.ones_like(x)
    power = r
    for ak in a:
        acc = acc + ak * power
        power = power * power
    return x * (acc + c_last * power)


@dataclass(frozen=True)
class IfnsoDesign:
    """IFNSO coefficients a_1 … a_{N−1} and c_N; ``source`` says where they come from."""

    N: int
    a: tuple[float, ...]
    c_last: float
    source: str = "fitted"
    training: dict[str, float] = field(default_factory=dict, compare=False)

    @property
    def coefficients(self) -> tuple[float, ...]:
        """(a_1, …, a_{N−1}, c_N)."""
        return (*self.a, self.c_last)

    @property
    def names(self) -> tuple[str, ...]:
        return (*(f"a{k}" for k in range(1, self.N)), f"c{self.N}")

    def evaluate(self, x: np.ndarray | float) -> np.ndarray:
        return ifnso_map(self.a, self.c_last, x)

    def max_error(self, lo: float = PAPER_INTERVAL[0], hi: float = 1.0, n: int = 200001) -> float:
        """max |f(x) − 1| on a dense uniform + log grid of [lo, hi] (float64)."""
        x = np.unique(np.concatenate([np.linspace(lo, hi, n), np.geomspace(lo, hi, n // 4)]))
        return float(np.max(np.abs(self.evaluate(x) - 1.0)))

    def to_toml(self, name: str, description: str | None = None, lo: float = PAPER_INTERVAL[0],
                command: str | None = None) -> str:
        """A polygen spec on [lo, 1]; ``command`` (the regenerating command line) goes in a comment."""
        return _ifnso_toml(self, name, description, lo, command)


def fit_ifnso(N: int = 14, grid: np.ndarray | int = 10000, steps: int = 20000, lr: float = 0.1, seed: int = 0,
              lr_step: int = 10000, lr_gamma: float = 0.5) -> IfnsoDesign:
    """Reproduce the paper's learning procedure: Adam on MSE(f(x), 1) over a uniform grid of [0, 1].

    a_k = softplus(θ_k) > 0 (θ ~ N(0, 1) from ``seed``), c_N from the constraint; StepLR schedule
    (``lr_step``, ``lr_gamma``) as in the reference script. ``grid``: the x values or their number.
    """
    import torch  # heavy import: only when fitting

    if N < 2:
        raise ValueError(f"N must be >= 2, got {N}")
    x = torch.as_tensor(np.linspace(0.0, 1.0, grid) if isinstance(grid, int) else np.asarray(grid, dtype=float),
                        dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    theta = torch.randn(N - 1, generator=gen, dtype=torch.float64).requires_grad_(True)
    total = coefficient_total(N)
    opt = torch.optim.Adam([theta], lr=lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=lr_step, gamma=lr_gamma)
    r = 1.0 - x * x
    loss_value = math.nan
    for _ in range(steps):
        opt.zero_grad()
        a = torch.nn.functional.softplus(theta)
        acc, power = torch.ones_like(x), r
        for k in range(N - 1):
            acc = acc + a[k] * power
            power = power * power
        f = x * (acc + (total - a.sum()) * power)
        loss = torch.mean((f - 1.0) ** 2)
        loss.backward()
        opt.step()
        sched.step()
        loss_value = float(loss.detach())
    a_final = tuple(float(v) for v in torch.nn.functional.softplus(theta.detach()))
    return IfnsoDesign(N=N, a=a_final, c_last=last_coefficient(a_final, N), source="fitted",
                       training={"steps": steps, "lr": lr, "seed": seed, "grid": float(len(x)), "mse": loss_value})


def format_summary(design: IfnsoDesign) -> str:
    lines = [f"IFNSO N = {design.N} ({design.source} coefficients), sum a_k + c_N = sqrt(e)*(2^(N/2) - 1) = "
             f"{coefficient_total(design.N):.6f}"]
    lines += [f"  {n:>4} = {v:.12g}" for n, v in zip(design.names, design.coefficients)]
    if design.training:
        lines.append("  training: " + ", ".join(f"{k} {v:g}" for k, v in design.training.items()))
    err = design.max_error()
    lines.append(f"max |f(x) - 1| on [{PAPER_INTERVAL[0]}, 1]: {err:.5f}  (paper's claim for its coefficients: "
                 f"<= {PAPER_BOUND})")
    return "\n".join(lines)


def _ifnso_toml(design: IfnsoDesign, name: str, description: str | None, lo: float, command: str | None) -> str:
    N = design.N
    err = design.max_error(lo)
    tol = fmt_float(max(1.02 * err, 1e-12), up=True)
    powers = " + ".join(f"{n}*r" + ("" if k == 0 else f"**{2 ** k}") for k, n in enumerate(design.names))
    desc = description or f"IFNSO: one degree-{2 ** N + 1} polynomial, N = {N}, on [{lo:g}, 1]"
    comment = [
        f"IFNSO (arXiv 2602.02500): Y = (I + sum_k a_k R^(2^(k-1)) + c{N} R^(2^({N}-1))) X, R = I - X X^T,",
        "X = G/||G||_F; one step. The scalar map x*(1 + a1*r + ... ) with r = 1 - x^2 is evaluated in r.",
        f"c{N} = sqrt(e)*(2^({N}/2) - 1) - sum_k a_k (the paper's constraint; slope at 0 = 1 + sqrt(e)*(2^(N/2)-1)).",
    ]
    if design.source == "fitted":
        comment += [
            "NOTE: these are NOT the published coefficients (those ship only as a binary checkpoint,",
            "output/poly_model_N_14.pth, which we could not read); they were fitted with the paper's procedure",
            f"by `polygen fit ifnso --N {N}` (Adam on MSE(f(x), 1), 10000 points of [0, 1], softplus a_k > 0, "
            f"{int(design.training.get('steps', 0))} steps).",
        ]
    comment.append(f"max |f(x) - 1| on [{lo:g}, 1]: {err:.5f} (float64); "
                   f"the paper claims <= {PAPER_BOUND} for its own.")
    if command:
        comment.append(f"Regenerate: {command}")
    lines = spec_header(comment, name, desc, "polar", lo, 1.0)
    lines += ["", "[input]", 'norm = "frobenius"', 'safety = "1"', 'eps = "1e-7"',
              "", "[variables.x]", 'kind = "rectangular"', 'init = "g"',
              "", "[[steps]]", "repeat = 1"]
    for n, v in zip(design.names[:-1], design.a):
        lines.append(f"coefficients.{n} = {toml_string(repr(float(v)))}")
    total_a = float(sum(design.a))
    scale = f"(2**{N // 2} - 1)" if N % 2 == 0 else f"(sqrt(2)**{N} - 1)"
    lines.append(f"coefficients.{design.names[-1]} = {toml_string(f'sqrt(E)*{scale} - {total_a!r}')}")
    lines.append('let = { r = "1 - x**2" }')
    lines.append(f"update = {{ x = {toml_string('x*(1 + ' + powers + ')')} }}")
    lines += ["", "[output]", 'var = "x"', "", "[verify]", 'expect = "converge"', f"tolerance = {toml_string(tol)}"]
    return "\n".join(lines) + "\n"
