"""Realize a polynomial in matrix variables as schedule ops (parity typing, carriers, Gram symbols).

An odd monomial in rectangular variables is (even part)·X_c for a *carrier* X_c; the even part is a product
of Gram symbols X_i X_jᵀ, which are symmetric and commute because all variables share singular vectors.
So Σ monomials = Σ_c H_c(Grams)·X_c, and each H_c goes to the symmetric evaluator. Loop-invariant pieces
(Muon^p's XXᵀX) are built once in the prologue.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from polygen.ir.poly import Monomial, Poly
from polygen.ir.schedule import Ref, Scalar
from polygen.passes.builder import Aff, Builder
from polygen.passes.evaluate_poly import SymEnv, eval_sym


def gram_symbol(a: str, b: str) -> str:
    a, b = sorted((a, b))
    return f"gram({a},{b})"


@dataclass
class Scope:
    """Matrix names (or known constants) of the symbols visible in one step."""

    names: dict[str, str]  # symbol -> matrix name
    kinds: dict[str, str]  # symbol -> "L" | "S" | "N"
    invariant: frozenset[str]  # symbols whose matrix never changes (hoistable)
    builder: Builder
    prologue: Builder
    hoist_memo: dict  # shared across steps
    method: str = "auto"
    runtime: dict[str, str] = field(default_factory=dict)  # fitted parameters bound in this step -> code names
    _env: SymEnv | None = field(default=None)

    def eval(self, h: Poly) -> Aff:
        """eval_sym, except that a run-time scalar a splits h = h₀ + a·h₁ into one fused combination."""
        rt = sorted(h.symbols & self.runtime.keys())
        if not rt:
            return eval_sym(self.symenv(), h)
        if len(rt) > 1 or h.degree(rt[0]) > 1:
            from polygen.errors import ScheduleError

            raise ScheduleError(f"only one fitted parameter, to the first power, may appear in {h}")
        a = rt[0]
        h0 = Poly.from_dict({m: c for m, c in h.terms if a not in dict(m)})
        h1 = Poly.from_dict({tuple(x for x in m if x[0] != a): c for m, c in h.terms if a in dict(m)})
        p0, p1 = eval_sym(self.symenv(), h0), eval_sym(self.symenv(), h1)
        terms: list[tuple[Scalar, str]] = []
        if p0.m is not None:
            terms.append((p0.k1, p0.m))
        if p1.m is not None:
            terms.append((affine_scalar(0.0, p1.k1, self.runtime[a]), p1.m))
        return Aff(0.0, 1.0, self.builder.lincomb(terms, gamma=affine_scalar(p0.k0, p1.k0, self.runtime[a]),
                                                   note=f"uses the fitted {a}"))

    def symenv(self) -> SymEnv:
        if self._env is None:
            self._env = SymEnv(builder=self.builder, lookup=self._lookup, hoisted=self._hoisted,
                               prologue=self.prologue, hoist_memo=self.hoist_memo, method=self.method)
        return self._env

    def _sym_invariant(self, s: str) -> bool:
        if s.startswith("gram("):
            a, b = s[5:-1].split(",")
            return a in self.invariant and b in self.invariant
        return s in self.invariant

    def _hoisted(self, mono: Monomial) -> bool:
        return all(self._sym_invariant(s) for s, _ in mono)

    def _lookup(self, s: str) -> str:
        if s in self.names:
            return self.names[s]
        if s.startswith("gram("):
            a, b = s[5:-1].split(",")
            hoist = self._sym_invariant(s)
            bld = self.prologue if hoist else self.builder
            return bld.matmul(self.names[a], self.names[b], tb=True, note=f"{a}{b}ᵀ")
        return self.names[s]


def _split_monomial(mono: Monomial, rect: set[str]) -> tuple[dict[str, int], Monomial]:
    """(power of each rectangular factor, the rest): counts, not a list of factors, so x**16383 costs one entry."""
    factors: dict[str, int] = {}
    other = []
    for s, e in mono:
        if s in rect:
            factors[s] = factors.get(s, 0) + e
        else:
            other.append((s, e))
    return factors, tuple(other)


def _pair(counts: dict[str, int]) -> list[tuple[str, int]]:
    """Pair rectangular factors into Gram symbols: identical ones first, then neighbours."""
    grams: dict[str, int] = {}
    left: list[str] = []
    for f in sorted(counts):
        n = counts[f]
        if n // 2:
            grams[gram_symbol(f, f)] = grams.get(gram_symbol(f, f), 0) + n // 2
        if n % 2:
            left.append(f)
    assert len(left) % 2 == 0
    for i in range(0, len(left), 2):
        g = gram_symbol(left[i], left[i + 1])
        grams[g] = grams.get(g, 0) + 1
    return sorted(grams.items())


def to_gram_poly(poly: Poly, rect: set[str]) -> Poly:
    """An even polynomial in rectangular symbols → a polynomial in Gram symbols (and symmetric ones)."""
    d: dict[Monomial, float] = {}
    for mono, c in poly.terms:
        factors, other = _split_monomial(mono, rect)
        m = tuple(sorted(list(other) + _pair(factors)))
        d[m] = d.get(m, 0.0) + c
    return Poly.from_dict(d)


def carriers(poly: Poly, rect: set[str], prefer: tuple[str, ...] = ()) -> dict[str, Poly]:
    """Odd polynomial → {carrier: H_c over Gram/symmetric symbols} with poly = Σ H_c·carrier."""
    out: dict[str, dict[Monomial, float]] = {}
    for mono, c in poly.terms:
        factors, other = _split_monomial(mono, rect)
        odd = sorted(f for f, n in factors.items() if n % 2)
        carrier = next((p for p in prefer if p in odd), odd[0])
        factors[carrier] -= 1
        m = tuple(sorted(list(other) + _pair(factors)))
        h = out.setdefault(carrier, {})
        h[m] = h.get(m, 0.0) + c
    return {k: Poly.from_dict(v) for k, v in out.items()}


def affine_scalar(const: float, coef: float, name: str) -> Scalar:
    """const + coef·name as a Scalar (a plain float when coef = 0)."""
    return const if coef == 0.0 else Ref(name, coef, const)


def realize_even(scope: Scope, poly: Poly, rect: set[str]) -> Aff:
    return scope.eval(to_gram_poly(poly, rect))


def realize_odd(scope: Scope, poly: Poly, rect: set[str], out: str = "") -> str:
    """Σ_c H_c·X_c with the scalar parts of every H_c fused into one combination and matmul epilogues."""
    b = scope.builder
    invariant_first = tuple(sorted(s for s in rect if s not in scope.invariant))
    scalar_terms: list[tuple[float, str]] = []
    products: list[tuple[float, str, str]] = []  # k1 · M @ X_c
    for carrier, h in sorted(carriers(poly, rect, prefer=invariant_first).items()):
        aff = scope.eval(h)
        xc = scope.names[carrier]
        if aff.k0:
            scalar_terms.append((aff.k0, xc))
        if aff.m is None:
            continue
        # hoistable only when the even factor itself was built before the loop: one that combines invariant
        # products with per-step coefficients (e·XXᵀ + f·(XXᵀ)², e and f a table's) is a temporary of the step
        if (carrier in scope.invariant and all(scope._sym_invariant(s) for s in h.symbols)
                and not scope.builder.owns(aff.m)):
            key = ("hoisted-product", aff.m, xc)
            if key not in scope.hoist_memo:
                scope.hoist_memo[key] = scope.prologue.matmul(aff.m, xc, note="loop-invariant product")
            scalar_terms.append((aff.k1, scope.hoist_memo[key]))
        else:
            products.append((aff.k1, aff.m, xc))
    if not products:
        return b.lincomb(scalar_terms, out=out)
    c, beta = "", 0.0
    if len(scalar_terms) == 1:
        beta, c = scalar_terms[0]
    elif scalar_terms:
        c, beta = b.lincomb(scalar_terms), 1.0
    for i, (k1, m, xc) in enumerate(products):
        last = i == len(products) - 1
        c = b.matmul(m, xc, alpha=k1, c=c, beta=beta, out=out if last else "")
        beta = 1.0
    return c
