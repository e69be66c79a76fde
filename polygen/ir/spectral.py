"""The spectral IR: a spec frozen into scalar polynomial maps over commuting spectral variables.

With G = U S Vᵀ every matrix in these iterations is a function of S; a *rectangular* variable stands for
U f(S) Vᵀ, a *symmetric* one for an eigen-function of a symmetric input (or a Gram matrix U f(S)² Uᵀ).
A step is therefore a simultaneous update of scalar polynomials, which is all the passes need to know.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from polygen.ir.poly import Poly

RECTANGULAR = "rectangular"
SYMMETRIC = "symmetric"
TARGETS = ("polar", "power", "inverse_root", "sqrt")


def target_exponent(target: str, power: float) -> float:
    """k such that the target of c·A is c**k times the target of A (``power``: p, or 1/r for a root): the
    output of a normalized input must be rescaled by s**k to be the target of the input itself."""
    return {"polar": 0.0, "power": power, "inverse_root": -power, "sqrt": 0.5}[target]


@dataclass(frozen=True)
class Variable:
    """A matrix variable of the iteration; ``init`` is a polynomial in the normalized input symbol."""

    name: str
    kind: str
    init: Poly


@dataclass(frozen=True)
class Let:
    """A named intermediate of a step (e.g. r = 1 − x²), materialized once and reused."""

    name: str
    expr: Poly


@dataclass(frozen=True)
class Fit:
    """A step parameter chosen at run time (PRISM): argmin over [lo, hi] of ‖S·R⁺‖_F².

    ``residual`` names the let R of the step; the next residual is R⁺ = Σ_i param^i · coeffs[i](R),
    derived symbolically from the step (``coeffs`` are polynomials in the residual symbol). ``sketch`` is
    the number of rows of the Gaussian sketch S, 0 for the exact objective.
    """

    param: str
    lo: float
    hi: float
    residual: str
    sketch: int
    coeffs: tuple[Poly, ...]

    @property
    def degree(self) -> int:
        """Highest power of the residual in any coefficient: the sketched powers S·R^j needed."""
        return max(c.degree(self.residual) for c in self.coeffs)


@dataclass(frozen=True)
class Step:
    """One simultaneous update of the variables, applied ``repeat`` times with the same coefficients."""

    lets: tuple[Let, ...]
    updates: tuple[tuple[str, Poly], ...]
    repeat: int = 1
    label: str = ""
    # The order in which symbols are written in each let/update (name -> symbols, left to right). Exact
    # arithmetic commutes, floating point does not: coupled iterations are only stable as written
    # (Higham's Y ← Y·T, Z ← T·Z), so products keep the spec's left-to-right order.
    orders: tuple[tuple[str, tuple[str, ...]], ...] = ()
    fit: Fit | None = None

    def order_of(self, name: str) -> tuple[str, ...]:
        return dict(self.orders).get(name, ())

    def update_of(self, var: str) -> Poly | None:
        for name, poly in self.updates:
            if name == var:
                return poly
        return None


@dataclass(frozen=True)
class Normalization:
    """Input scaling s = ‖G‖·safety + eps (``norm`` = "frobenius") or s = 1 (``norm`` = "none")."""

    norm: str = "frobenius"
    safety: float = 1.0
    eps: float = 1e-7


@dataclass(frozen=True)
class Output:
    """Which variable is returned and how it is rescaled: none, unit RMS, or by s**exponent."""

    var: str
    rescale: str = "none"  # "none" | "rms" | "norm"
    exponent: float = 0.0


@dataclass(frozen=True)
class VerifyPolicy:
    """What the convergence verifier must confirm on the domain (``expect`` = converge|bounded|none)."""

    expect: str = "bounded"
    tolerance: float = 0.0  # converge: max relative error to the target
    lower: float = 0.0  # bounded: the image must lie in (lower, upper]
    upper: float = 2.0


@dataclass(frozen=True)
class Hints:
    """Schedule hints from the spec; the scheduler may overrule them only when told (``force``)."""

    form: str = "auto"  # "auto" | "direct" | "gram"
    restart_every: int = 0  # 0 = derive from the dtype
    force: bool = False


@dataclass(frozen=True)
class SpectralMap:
    """A whole spec, frozen: what every pass consumes and produces."""

    name: str
    target: str
    domain: tuple[float, float]
    input_kind: str
    input_symbol: str
    normalization: Normalization
    variables: tuple[Variable, ...]
    steps: tuple[Step, ...]
    outputs: tuple[Output, ...]
    verify: VerifyPolicy = field(default_factory=VerifyPolicy)
    hints: Hints = field(default_factory=Hints)
    power: float = 0.0  # p for target "power", 1/r for "inverse_root"
    description: str = ""
    source: str = "<str>"
    source_hash: str = ""
    # 1-based lines of the spec's tables, for errors raised after parsing (the verifier's): (field, line)
    lines: tuple[tuple[str, int], ...] = ()

    def line_of(self, field: str) -> int | None:
        return dict(self.lines).get(field)

    def variable(self, name: str) -> Variable:
        for v in self.variables:
            if v.name == name:
                return v
        raise KeyError(name)

    @property
    def output(self) -> Output:
        return self.outputs[0]

    @property
    def total_steps(self) -> int:
        return sum(s.repeat for s in self.steps)

    def target_value(self, x):  # type: ignore[no-untyped-def]
        """The exact scalar target at normalized singular values / eigenvalues ``x`` (numpy)."""
        if self.target == "polar":
            return x * 0.0 + 1.0
        if self.target == "power":
            return x**self.power
        if self.target == "sqrt":
            return x**0.5
        return x ** (-self.power)

    def invariant_variables(self) -> frozenset[str]:
        """Variables no step updates (Muon^p's X): products of these are hoisted out of loops."""
        updated = {name for s in self.steps for name, _ in s.updates}
        return frozenset(v.name for v in self.variables if v.name not in updated)
