"""Recover polynomial iterations from a functionalized post-grad FX graph, by exact rules.

Abstract interpretation: a node's value is either opaque or a *spectral polynomial* of the current iterate X
(U Σ Vᵀ): ``L`` = U p(Σ) Vᵀ (p odd), ``Lt`` its transpose, ``S`` = U q(Σ) Uᵀ and ``N`` = V q(Σ) Vᵀ (q even), ``I``
= c·I (either side). Products, sums, number scalings, transposes of the last two dims, eye terms and dtype casts
have exact rules; anything else (entrywise products of matrices, matrix + scalar, tensor-valued coefficients,
reductions) is opaque. The seed is a division of a tensor by a bound on its Frobenius norm (``‖T‖_F + eps`` or
``max(‖T‖_F, eps)``: singular values in [0, 1]); an iterate is a value whose Gram product X·Xᵀ or Xᵀ·X the graph
forms, and each iterate's polynomial in the previous one is a step. Coefficients are exact rationals of the
graph's floats. A region is accepted only when its one escaping value is the last iterate (or its transpose),
every op between the seed and it runs in one dtype and reads nothing but the seed, and a numerical witness
(polygen.compile.witness) agrees; anything else is refused with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, cast

import torch
from torch.fx import Graph, Node

aten = torch.ops.aten
prims = torch.ops.prims

MAX_DEGREE = 31  # of one step's polynomial: anything longer is not an optimizer's iteration
MAX_STEPS = 128  # the spec format's cap
Coeffs = tuple[Fraction, ...]  # coefficient of x^i at index i


@dataclass(frozen=True)
class Value:
    """A spectral polynomial of iterate ``it``: kind L | Lt | S | N | I, coefficients lowest power first."""

    kind: str
    coeffs: Coeffs
    it: int


@dataclass
class Region:
    """One candidate iteration: what explain() reports and what the pass rewrites."""

    status: str  # "rewritten" | "refused" (explain reports "recoverable" before a pass has run)
    reason: str
    seed: Node | None = None
    output: Node | None = None
    transposed: bool = False  # the escaping value is the transpose of the last iterate
    steps: list[Coeffs] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)  # the region's nodes, in graph order
    dtype: torch.dtype | None = None
    shape: tuple[int, ...] = ()
    spec_text: str = ""
    plan: str = ""
    stacked: int = 1  # how many chains share its polygen call (same spec, plan, shape and dtype in one graph)

    @property
    def coefficients(self) -> list[tuple[float, ...]]:
        """Per step, the odd-power coefficients as the loop applies them: (a, b, c) for a·x + b·x³ + c·x⁵."""
        return [tuple(float(c) for c in step[1::2]) for step in self.steps]


def _mul(p: Coeffs, q: Coeffs) -> Coeffs:
    out = [Fraction(0)] * (len(p) + len(q) - 1)
    for i, a in enumerate(p):
        if a:
            for j, b in enumerate(q):
                out[i + j] += a * b
    return _trim(out)


def _add(p: Coeffs, q: Coeffs, alpha: Fraction = Fraction(1)) -> Coeffs:
    n = max(len(p), len(q))
    return _trim([(p[i] if i < len(p) else 0) + alpha * (q[i] if i < len(q) else 0) for i in range(n)])


def _scale(p: Coeffs, k: Fraction) -> Coeffs:
    return _trim([k * c for c in p])


def _trim(c: list[Fraction] | Coeffs) -> Coeffs:
    c = list(c)
    while len(c) > 1 and c[-1] == 0:
        c.pop()
    return tuple(Fraction(x) for x in c)


X = (Fraction(0), Fraction(1))  # the iterate itself

_PRODUCT = {  # (kind of A, kind of B) -> kind of A @ B
    ("L", "Lt"): "S", ("Lt", "L"): "N", ("S", "L"): "L", ("L", "N"): "L", ("S", "S"): "S", ("N", "N"): "N",
    ("Lt", "S"): "Lt", ("N", "Lt"): "Lt",
}
_TRANSPOSE = {"L": "Lt", "Lt": "L", "S": "S", "N": "N", "I": "I"}


def _number(a: Any) -> Fraction | None:
    """A Python number in the graph (never a tensor: tensor-valued coefficients are opaque)."""
    if isinstance(a, bool) or not isinstance(a, (int, float)):
        return None
    return Fraction(a)


def _val(node: Any) -> Any:
    return node.meta.get("val") if isinstance(node, Node) else None


def _swaps_last_two(node: Node) -> Any:
    """The input of a transpose of the last two dims (permute/transpose/t), else None."""
    t, args = node.target, cast(Any, node.args)
    if t == aten.permute.default:
        src, dims = args[0], list(args[1])
        n = len(dims)
        if n >= 2 and dims[:-2] == list(range(n - 2)) and dims[-2:] == [n - 1, n - 2]:
            return src
    elif t == aten.transpose.int:
        src, d0, d1 = args[0], args[1], args[2]
        rank = _val(src).dim() if _val(src) is not None else 0
        if rank >= 2 and {d0 % rank, d1 % rank} == {rank - 2, rank - 1}:
            return src
    elif t == aten.t.default:
        return args[0]
    return None


def _strip_casts(node: Any) -> Any:
    while isinstance(node, Node) and node.target in (prims.convert_element_type.default, aten.clone.default,
                                                     aten._to_copy.default, aten.alias.default):
        node = node.args[0]
    return node


def _frobenius_bound_of(denom: Any) -> Node | None:
    """T when ``denom`` provably bounds ‖T‖_F from above per matrix: ‖T‖_F + eps (eps >= 0), max(‖T‖_F, eps),
    through dtype casts; ‖T‖_F as linalg_vector_norm(T, 2, last two dims) or sqrt(sum(T², last two dims))."""
    d = _strip_casts(denom)
    if not isinstance(d, Node):
        return None
    eps = _number(d.args[1]) if len(d.args) > 1 else None
    if d.target == aten.add.Tensor and eps is not None and eps >= 0:
        return _frobenius_bound_of(d.args[0])
    if d.target in (aten.clamp_min.default, aten.clamp.default) and _number(d.args[1]) is not None:
        return _frobenius_bound_of(d.args[0])
    if d.target == aten.linalg_vector_norm.default:
        ord_ = d.args[1] if len(d.args) > 1 else d.kwargs.get("ord", 2)
        dims = d.args[2] if len(d.args) > 2 else d.kwargs.get("dim")
        src = d.args[0]
        if ord_ == 2 and _covers_last_two(src, dims):
            return _strip_casts(src)
        return None
    root = None
    if d.target == aten.pow.Tensor_Scalar and d.args[1] == 0.5:
        root = _strip_casts(d.args[0])
    elif d.target == aten.sqrt.default:
        root = _strip_casts(d.args[0])
    if isinstance(root, Node) and root.target in (aten.sum.dim_IntList, aten.sum.default):
        sq = _strip_casts(root.args[0])
        dims = root.args[1] if root.target == aten.sum.dim_IntList else None
        if isinstance(sq, Node) and _covers_last_two(sq, dims) and (
                (sq.target == aten.pow.Tensor_Scalar and sq.args[1] == 2)
                or (sq.target == aten.mul.Tensor and sq.args[0] is sq.args[1])):
            return _strip_casts(sq.args[0])
    return None


def _covers_last_two(src: Any, dims: Any) -> bool:
    v = _val(src)
    if v is None:
        return False
    rank = v.dim()
    if dims is None:  # a full reduction: the matrix's norm only for a single matrix
        return rank == 2
    return sorted(int(d) % rank for d in dims) == [rank - 2, rank - 1]


class Interpreter:
    """One pass over the graph in order, assigning a Value (or None: opaque) to every node."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.values: dict[Node, Value] = {}
        self.grams = self._gram_operands()
        self.seeds: dict[Node, Node] = {}  # seed node -> the tensor it normalizes

    def _gram_operands(self) -> set[Node]:
        """Nodes whose Gram product X·Xᵀ or Xᵀ·X the graph forms: the iterates (up to casts). Products traced
        from polygen's own generated code are not candidates: its plan is already the rewrite."""
        out = set()
        self.polygen_products = 0
        for n in self.graph.nodes:
            if n.op != "call_function" or n.target not in (aten.mm.default, aten.bmm.default, aten.addmm.default,
                                                          aten.baddbmm.default):
                continue
            if _from_polygen(n):
                self.polygen_products += 1
                continue
            a, b = (n.args[1], n.args[2]) if n.target in (aten.addmm.default, aten.baddbmm.default) else n.args[:2]
            a, b = _unwrap(a), _unwrap(b)
            if isinstance(b, Node) and _unwrap(_swaps_last_two(b)) is a:
                out.add(a)
            elif isinstance(a, Node) and _unwrap(_swaps_last_two(a)) is b:
                out.add(b)
        return out

    def run(self) -> list[Region]:
        steps: dict[int, list[Coeffs]] = {}  # seed id -> steps committed so far
        self.owner: dict[Node, int] = {}  # node -> the seed (chain) it belongs to
        self.chain_steps = steps
        for n in self.graph.nodes:
            if n.op != "call_function":
                continue
            v = self._rule(n)
            if v is None:
                continue
            if n in self.grams and v.kind in ("L", "Lt") and v.coeffs != X:
                chain = self.owner[n]
                if len(steps[chain]) != v.it:  # pragma: no cover - iterates are committed in order
                    continue
                steps[chain].append(v.coeffs)
                v = Value(v.kind, X, v.it + 1)
            self.values[n] = v
        regions = [self._region(seed) for seed in self.seeds if seed.users]
        if self.polygen_products:
            regions.append(Region("refused", f"polygen's own plan ({self.polygen_products} products traced from "
                                             "its generated code): not rewritten twice"))
        elif self.grams and not self.seeds:
            regions.append(Region("refused", "Gram products, but no division by a bound on the Frobenius norm "
                                             "certifies the domain (singular values in [0, 1])"))
        return regions

    def _rule(self, n: Node) -> Value | None:
        t, args = n.target, n.args
        vals = [self.values.get(a) if isinstance(a, Node) else None for a in args]
        chains = {self.owner[a] for a in args if isinstance(a, Node) and a in self.owner}
        if len(chains) > 1:
            return None
        chain = chains.pop() if chains else None

        def own(v: Value | None) -> Value | None:
            if v is not None and chain is not None:
                self.owner[n] = chain
            return v

        if t == aten.div.Tensor and isinstance(args[1], Node) and vals[0] is None:
            src = _frobenius_bound_of(args[1])
            if src is not None and _strip_casts(args[0]) is src and _val(n) is not None and _val(n).dim() >= 2:
                self.seeds[n] = src
                self.owner[n] = len(self.chain_steps)
                self.chain_steps[self.owner[n]] = []
                return Value("L", X, 0)
            return None
        if t == aten.eye.default and len(args) == 1:  # c·I of either side: it joins the chain that reads it
            return Value("I", (Fraction(1),), -1)
        if chain is None and not any(v is not None and v.kind == "I" for v in vals):
            return None  # only eye terms live outside a chain
        if t in (aten.mm.default, aten.bmm.default):
            return own(_product(vals[0], vals[1]))
        if t in (aten.addmm.default, aten.baddbmm.default):
            beta = _number(n.kwargs.get("beta", 1))
            alpha = _number(n.kwargs.get("alpha", 1))
            prod = _product(vals[1], vals[2])
            if prod is None or alpha is None or beta is None:
                return None
            prod = Value(prod.kind, _scale(prod.coeffs, alpha), prod.it)
            if beta == 0:
                return own(prod)
            return own(_sum(prod, vals[0], beta))
        if t in (aten.add.Tensor, aten.sub.Tensor):
            alpha = _number(n.kwargs.get("alpha", 1))
            if alpha is None or len(args) < 2:
                return None
            sign = alpha if t == aten.add.Tensor else -alpha
            return own(_sum(vals[0], vals[1], sign))
        if t == aten.mul.Tensor:
            k0, k1 = _number(args[0]), _number(args[1]) if len(args) > 1 else None
            if vals[0] is not None and k1 is not None:
                return own(Value(vals[0].kind, _scale(vals[0].coeffs, k1), vals[0].it))
            if len(vals) > 1 and vals[1] is not None and k0 is not None:
                return own(Value(vals[1].kind, _scale(vals[1].coeffs, k0), vals[1].it))
            return None  # an entrywise product of matrices, or a tensor-valued coefficient
        if t == aten.div.Tensor and vals[0] is not None:
            k = _number(args[1])
            return own(Value(vals[0].kind, _scale(vals[0].coeffs, 1 / k), vals[0].it)) if k else None
        if t == aten.neg.default and vals[0] is not None:
            return own(Value(vals[0].kind, _scale(vals[0].coeffs, Fraction(-1)), vals[0].it))
        if vals and vals[0] is not None and _swaps_last_two(n) is args[0]:
            return own(Value(_TRANSPOSE[vals[0].kind], vals[0].coeffs, vals[0].it))
        if t in (prims.convert_element_type.default, aten.clone.default, aten.alias.default) and vals[0] is not None:
            return own(vals[0])
        if t == aten._to_copy.default and vals[0] is not None and set(n.kwargs) <= {"dtype"}:
            return own(vals[0])
        if t == aten.permute.default and vals[0] is not None and list(cast(Any, args[1])) == list(
                range(len(cast(Any, args[1])))):
            return own(vals[0])
        if t in _SAME_SHAPE and vals[0] is not None and _same_shape(args[0], n):
            return own(vals[0])  # expand / view / reshape that keep the shape (batched matmul spells them)
        return None

    def _region(self, seed: Node) -> Region:
        chain = self.owner[seed]
        members = [n for n in self.graph.nodes if self.owner.get(n) == chain and n in self.values]
        # eye terms (c·I, maybe scaled or summed before they meet the chain) are part of the region
        identities: set[Node] = set()
        stack = [a for n in members for a in n.all_input_nodes]
        while stack:
            a = stack.pop()
            if a not in identities and a not in self.owner and getattr(self.values.get(a), "kind", "") == "I":
                identities.add(a)
                stack.extend(a.all_input_nodes)
        members = [n for n in self.graph.nodes if n in identities or (self.owner.get(n) == chain and n in self.values)]
        member_set = set(members)
        # the seed and its transposes stay computed (the region's input; an in-place normalization writes it
        # back to the user's tensor), so their other readers do not count as escapes
        escaping = [n for n in members if any(u not in member_set for u in n.users)
                    and not (self.values[n].it == 0 and self.values[n].coeffs == X)]
        region = Region("refused", "", seed=seed, nodes=members, steps=list(self.chain_steps[chain]))
        sv = _val(seed)
        if not all(isinstance(d, int) for d in sv.shape):
            region.reason = "dynamic shapes (plans are chosen for static shapes)"
            return region
        region.dtype, region.shape = sv.dtype, tuple(sv.shape)
        if len(escaping) != 1:
            region.reason = ("no value of the iteration leaves it" if not escaping else
                             f"{len(escaping)} values escape the iteration (an intermediate is read elsewhere: "
                             f"{', '.join(e.name for e in escaping[:4])})")
            return region
        out = escaping[0]
        v = self.values[out]
        if v.kind not in ("L", "Lt"):
            region.reason = f"the value that leaves the iteration is a Gram-side polynomial ({v.kind}), not the iterate"
            return region
        if v.coeffs != X:
            region.steps.append(v.coeffs)
        region.output, region.transposed = out, v.kind == "Lt"
        if not region.steps:
            region.reason = "no polynomial step"
            return region
        dtypes = {_val(n).dtype for n in members if _val(n) is not None}
        if len(dtypes) != 1:
            region.reason = f"mixed dtypes inside the iteration: {sorted(map(str, dtypes))}"
            return region
        outside = [a for n in members if n is not seed for a in n.all_input_nodes if a not in member_set]
        if outside:
            region.reason = f"the iteration reads a tensor from outside it ({outside[0].name})"
            return region
        if any(len(s) - 1 > MAX_DEGREE for s in region.steps) or len(region.steps) > MAX_STEPS:
            region.reason = "a step of degree above 31 or more than 128 steps"
            return region
        region.status, region.reason = "recoverable", ""
        return region


_SAME_SHAPE = (aten.expand.default, aten.view.default, aten._unsafe_view.default, aten.reshape.default)


def _unwrap(node: Any) -> Any:
    """The node under shape-keeping expand / view / reshape wrappers (batched matmul spells them)."""
    while isinstance(node, Node) and node.target in _SAME_SHAPE and _same_shape(node.args[0], node):
        node = node.args[0]
    return node


def _from_polygen(node: Node) -> bool:
    """Traced from polygen's generated modules or its run-time products (the stack trace Dynamo records)."""
    trace = node.meta.get("stack_trace") or ""
    return any(mark in trace for mark in ("polygen_generated", "/_generated/", "/generated/torch/",
                                          "polygen/runtime/torch_ops.py"))


def _same_shape(a: Any, b: Node) -> bool:
    va, vb = _val(a), _val(b)
    return va is not None and vb is not None and tuple(va.shape) == tuple(vb.shape)



def _same_iterate(a: Value, b: Value) -> int | None:
    """The iterate both values are polynomials of (an eye term, it = -1, fits any), None when they differ."""
    if a.it == -1 or b.it == -1 or a.it == b.it:
        return max(a.it, b.it)
    return None


def _product(a: Value | None, b: Value | None) -> Value | None:
    if a is None or b is None or _same_iterate(a, b) is None:
        return None
    if len(a.coeffs) + len(b.coeffs) - 2 > 2 * MAX_DEGREE:
        return None  # bounded work: no optimizer step has such a degree (an uncommitted composition)
    if a.kind == "I" and b.kind == "I":
        return Value("I", _mul(a.coeffs, b.coeffs), max(a.it, b.it))
    if a.kind == "I":
        return Value(b.kind, _mul(a.coeffs, b.coeffs), b.it)
    if b.kind == "I":
        return Value(a.kind, _mul(a.coeffs, b.coeffs), a.it)
    kind = _PRODUCT.get((a.kind, b.kind))
    return Value(kind, _mul(a.coeffs, b.coeffs), a.it) if kind else None


def _sum(a: Value | None, b: Value | None, alpha: Fraction) -> Value | None:
    if a is None or b is None:
        return None
    it = _same_iterate(a, b)
    kind = a.kind if b.kind in ("I", a.kind) else b.kind if a.kind == "I" else None
    if it is None or kind is None or (kind in ("L", "Lt") and "I" in (a.kind, b.kind)):
        return None  # an eye term belongs to a Gram side, never to the iterate's shape
    return Value(kind, _add(a.coeffs, b.coeffs, alpha), it)


__all__ = ["Interpreter", "Region", "Value"]
