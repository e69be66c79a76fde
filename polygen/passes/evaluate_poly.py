"""Evaluate a polynomial in commuting symmetric matrices with as few matmuls as possible.

Candidates for one symbol: Horner (d−1 matmuls, every addition fused into an epilogue),
Paterson–Stockmeyer (≈2√d matmuls plus a few elementwise block sums) and a sparse power chain by
repeated squaring (IFNSO's Σ a_k R^(2^(k−1)): one matmul per distinct power). Several symbols use a
greedy multivariate Horner. The result is an affine form k0·I + k1·M so that the consumer can fuse
k0 and k1 into its own epilogue.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from polygen.ir.poly import Monomial, Poly
from polygen.passes.builder import Aff, Builder


@dataclass
class SymEnv:
    """How to get the matrix of a symbol or monomial; memoizes products (common subexpressions)."""

    builder: Builder
    lookup: Callable[[str], str]  # symbol -> matrix name (may emit ops, e.g. a Gram product)
    hoisted: Callable[[Monomial], bool] = lambda m: False  # True: compute in the prologue
    prologue: Builder | None = None
    memo: dict[Monomial, str] | None = None
    hoist_memo: dict[Monomial, str] | None = None
    method: str = "auto"  # "auto" | "horner" | "ps" | "chain": force a univariate method
    order: tuple[str, ...] = ()  # left-to-right order of symbols as the spec wrote them

    def rank(self, sym: str) -> int:
        return self.order.index(sym) if sym in self.order else len(self.order)

    def __post_init__(self) -> None:
        self.memo = {} if self.memo is None else self.memo
        self.hoist_memo = {} if self.hoist_memo is None else self.hoist_memo
        self.builder.memos.append(self.memo)


def monomial_matrix(env: SymEnv, mono: Monomial) -> str:
    """The matrix of a product of symbol powers, by repeated squaring, shared with earlier requests."""
    hoist = env.hoisted(mono) and env.prologue is not None
    memo = env.hoist_memo if hoist else env.memo
    b = env.prologue if hoist else env.builder
    assert memo is not None and b is not None
    if mono in memo:
        return memo[mono]
    if len(mono) == 1 and mono[0][1] == 1:
        name = env.lookup(mono[0][0])
    elif len(mono) == 1:
        s, e = mono[0]
        if e % 2 == 0:
            half = monomial_matrix(env, ((s, e // 2),))
            name = b.matmul(half, half, note=f"{s}^{e}")
        else:
            name = b.matmul(monomial_matrix(env, ((s, e - 1),)), monomial_matrix(env, ((s, 1),)), note=f"{s}^{e}")
    else:
        ordered = tuple(sorted(mono, key=lambda se: (env.rank(se[0]), se[0])))
        head, tail = ordered[:1], tuple(sorted(ordered[1:]))
        name = b.matmul(monomial_matrix(env, head), monomial_matrix(env, tail))
    memo[mono] = name
    return name


def _chain_cost(exps: list[int]) -> int:
    """Matmuls to form every power in ``exps`` by binary powering with shared intermediates."""
    have = {1}

    def need(e: int) -> int:
        if e in have:
            return 0
        n = need(e // 2) + 1
        have.add(e // 2 * 2)
        if e % 2:
            n += 1
            have.add(e)
        return n

    return sum(need(e) for e in sorted(exps))


def univariate_costs(coeffs: dict[int, float]) -> dict[str, tuple[int, int]]:
    """(matmuls, elementwise ops) of each univariate method for Σ c_e s^e (e ≥ 1)."""
    d = max(coeffs)
    exps = sorted(coeffs)
    costs = {"horner": (d - 1, 0), "chain": (_chain_cost(exps), 0 if len(exps) == 1 else 1)}
    for k in range(2, max(2, math.isqrt(d) + 2)):
        q = d // k  # blocks above block 0
        if q < 1:
            continue
        costs[f"ps{k}"] = ((k - 1) + q - (1 if d % k == 0 else 0), q + 1)
    return costs


def choose_univariate(coeffs: dict[int, float]) -> str:
    costs = univariate_costs(coeffs)
    return min(costs, key=lambda k: (costs[k], 0 if k == "horner" else 1))


def eval_sym(env: SymEnv, poly: Poly) -> Aff:
    """Realize ``poly`` (over symmetric, commuting symbols) as k0·I + k1·M."""
    k0 = poly.constant()
    rest = poly - k0
    if rest.is_zero():
        return Aff(k0, 0.0, None)
    if len(rest.terms) == 1:
        mono, c = rest.terms[0]
        return Aff(k0, c, monomial_matrix(env, mono))
    syms = sorted(rest.symbols)
    if len(syms) == 1:
        s = syms[0]
        coeffs = rest.univariate(s)
        assert coeffs is not None
        method = env.method if env.method != "auto" else choose_univariate(coeffs)
        if method == "chain":
            return Aff(k0, 1.0, _chain(env, s, coeffs))
        if method.startswith("ps"):
            return Aff(k0, 1.0, _paterson_stockmeyer(env, s, coeffs, int(method[2:]) if method != "ps" else 2))
    return Aff(k0, 1.0, _horner(env, rest))


def _split(poly: Poly, s: str) -> tuple[Poly, Poly]:
    """poly = s·A + B."""
    a: dict[Monomial, float] = {}
    bb: dict[Monomial, float] = {}
    for m, c in poly.terms:
        d = dict(m)
        if d.get(s, 0) > 0:
            d[s] -= 1
            a[tuple(sorted(d.items()))] = c
        else:
            bb[m] = c
    return Poly.from_dict(a), Poly.from_dict(bb)


def _horner(env: SymEnv, rest: Poly) -> str:
    """rest (no constant term) = S·A + B with S the most frequent symbol; A and B recursively."""
    count: dict[str, int] = {}
    for m, _ in rest.terms:
        for s, _e in m:
            count[s] = count.get(s, 0) + 1
    s = max(sorted(count), key=lambda k: count[k])
    a_poly, b_poly = _split(rest, s)
    b = env.builder
    S = monomial_matrix(env, ((s, 1),))
    aa = eval_sym(env, a_poly)
    bb = eval_sym(env, b_poly) if not b_poly.is_zero() else Aff(0.0, 0.0, None)
    if aa.m is None:  # S·k0 + B
        terms = [(aa.k0, S)] + ([(bb.k1, bb.m)] if bb.m else [])
        return b.lincomb(terms, gamma=bb.k0)
    # S·(a0 + a1·MA) + B = a1·S@MA + (a0·S + B)
    if aa.k0 == 0.0:
        c, beta = (bb.m or ""), bb.k1
    elif bb.m is None:
        c, beta = S, aa.k0
    else:
        c, beta = b.lincomb([(aa.k0, S), (bb.k1, bb.m)]), 1.0
    # keep the written order: S on the right when the spec wrote the other factors first
    right = env.order and env.rank(s) > min((env.rank(t) for t in a_poly.symbols), default=env.rank(s))
    lhs, rhs = (aa.m, S) if right else (S, aa.m)
    return b.matmul(lhs, rhs, alpha=aa.k1, c=c, beta=beta if c else 0.0, gamma=bb.k0)


def _chain(env: SymEnv, s: str, coeffs: dict[int, float]) -> str:
    powers = [(c, monomial_matrix(env, ((s, e),))) for e, c in sorted(coeffs.items())]
    return env.builder.lincomb(powers, note=f"sparse powers of {s}")


def _paterson_stockmeyer(env: SymEnv, s: str, coeffs: dict[int, float], k: int) -> str:
    d = max(coeffs)
    b = env.builder
    p = {i: monomial_matrix(env, ((s, i),)) for i in range(1, k + 1)}
    q = d // k

    def block(j: int) -> tuple[list[tuple[float, str]], float]:
        terms = [(coeffs.get(j * k + i, 0.0), p[i]) for i in range(1, k)]
        return [(c, m) for c, m in terms if c], coeffs.get(j * k, 0.0) if j else 0.0

    top_terms, top_g = block(q)
    acc: str | float = b.lincomb(top_terms, gamma=top_g) if top_terms else top_g
    for j in range(q - 1, -1, -1):
        terms, g = block(j)
        if isinstance(acc, float):  # S^k · (scalar I) + B_j needs no matmul
            acc = b.lincomb([(acc, p[k])] + terms, gamma=g)
            continue
        c = b.lincomb(terms, gamma=g) if (terms or g) else ""
        acc = b.matmul(p[k], acc, c=c, beta=1.0 if c else 0.0)
    assert isinstance(acc, str)
    return acc
