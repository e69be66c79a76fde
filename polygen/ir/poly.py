"""Sparse multivariate polynomials with float coefficients: the frozen form of a spectral map.

SymPy is the front door only (``polygen.spec``); once a spec is parsed every polynomial lives here, as an
immutable, hashable value whose term order we control, so passes can pattern-match on it safely.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Monomial = tuple[tuple[str, int], ...]  # sorted (symbol, exponent>0) pairs; () is the constant term


def _mono_mul(a: Monomial, b: Monomial) -> Monomial:
    out: dict[str, int] = dict(a)
    for s, e in b:
        out[s] = out.get(s, 0) + e
    return tuple(sorted(out.items()))


@dataclass(frozen=True)
class Poly:
    """Sum of ``coefficient * monomial`` terms; zero terms are dropped, terms sorted by monomial."""

    terms: tuple[tuple[Monomial, float], ...] = ()

    # -- construction -------------------------------------------------------------------------
    @staticmethod
    def from_dict(d: Mapping[Monomial, float]) -> Poly:
        items = [(tuple(sorted((s, e) for s, e in m if e)), float(c)) for m, c in d.items()]
        acc: dict[Monomial, float] = {}
        for m, c in items:
            acc[m] = acc.get(m, 0.0) + c
        return Poly(tuple(sorted((m, c) for m, c in acc.items() if c != 0.0)))

    @staticmethod
    def const(c: float) -> Poly:
        return Poly.from_dict({(): c})

    @staticmethod
    def sym(name: str, exp: int = 1, coef: float = 1.0) -> Poly:
        return Poly.from_dict({((name, exp),): coef})

    # -- algebra ------------------------------------------------------------------------------
    def as_dict(self) -> dict[Monomial, float]:
        return dict(self.terms)

    def __add__(self, other: Poly | float) -> Poly:
        o = other if isinstance(other, Poly) else Poly.const(other)
        d = self.as_dict()
        for m, c in o.terms:
            d[m] = d.get(m, 0.0) + c
        return Poly.from_dict(d)

    __radd__ = __add__

    def __neg__(self) -> Poly:
        return self.scale(-1.0)

    def __sub__(self, other: Poly | float) -> Poly:
        o = other if isinstance(other, Poly) else Poly.const(other)
        return self + (-o)

    def __rsub__(self, other: float) -> Poly:
        return Poly.const(other) - self

    def scale(self, k: float) -> Poly:
        return Poly.from_dict({m: c * k for m, c in self.terms})

    def __mul__(self, other: Poly | float) -> Poly:
        if not isinstance(other, Poly):
            return self.scale(float(other))
        d: dict[Monomial, float] = {}
        for m1, c1 in self.terms:
            for m2, c2 in other.terms:
                m = _mono_mul(m1, m2)
                d[m] = d.get(m, 0.0) + c1 * c2
        return Poly.from_dict(d)

    __rmul__ = __mul__

    def __pow__(self, n: int) -> Poly:
        out, base = Poly.const(1.0), self
        while n:
            if n & 1:
                out = out * base
            base, n = base * base, n >> 1
        return out

    def subs(self, mapping: Mapping[str, Poly]) -> Poly:
        """Substitute polynomials for symbols (used to inline cheap lets and known constant inits)."""
        out = Poly()
        for m, c in self.terms:
            term = Poly.const(c)
            for s, e in m:
                term = term * (mapping[s] ** e if s in mapping else Poly.sym(s, e))
            out = out + term
        return out

    # -- inspection ---------------------------------------------------------------------------
    @property
    def symbols(self) -> frozenset[str]:
        return frozenset(s for m, _ in self.terms for s, _ in m)

    def degree(self, sym: str | None = None) -> int:
        if not self.terms:
            return -1
        if sym is None:
            return max(sum(e for _, e in m) for m, _ in self.terms)
        return max(dict(m).get(sym, 0) for m, _ in self.terms)

    def is_zero(self) -> bool:
        return not self.terms

    def constant(self) -> float:
        return self.as_dict().get((), 0.0)

    def is_constant(self) -> bool:
        return all(m == () for m, _ in self.terms)

    def univariate(self, sym: str) -> dict[int, float] | None:
        """{exponent: coefficient} if only ``sym`` occurs, else None."""
        if not self.symbols <= {sym}:
            return None
        return {dict(m).get(sym, 0): c for m, c in self.terms}

    def evaluate(self, env: Mapping[str, Any]) -> Any:
        """Evaluate with numbers or numpy arrays bound to the symbols (float64 ground truth)."""
        total: Any = 0.0
        for m, c in self.terms:
            t: Any = c
            for s, e in m:
                t = t * env[s] ** e
            total = total + t
        return total

    def __str__(self) -> str:
        if not self.terms:
            return "0"
        parts = []
        for m, c in self.terms:
            mono = "*".join(s if e == 1 else f"{s}**{e}" for s, e in m)
            parts.append(f"{c!r}" if not mono else (mono if c == 1.0 else f"{c!r}*{mono}"))
        return " + ".join(parts).replace("+ -", "- ")


def monomials(polys: Iterable[Poly]) -> set[Monomial]:
    return {m for p in polys for m, _ in p.terms}
