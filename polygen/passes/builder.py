"""Emit schedule ops while folding scalar work into the epilogue of the op that produced a value.

The builder is where ``fuse_epilogues`` happens: an affine form k0·I + k1·M whose M was just produced by
a matmul (and is read by nobody else) is folded into that matmul's alpha/beta/gamma instead of costing an
elementwise pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from polygen.ir.names import temporary
from polygen.ir.schedule import Alias, Fit, Identity, LinComb, MatMul, Op, Ref, Scalar, Sketch


@dataclass(frozen=True)
class Aff:
    """k0·I + k1·M (M = None means the scalar k0·I)."""

    k0: float
    k1: float
    m: str | None


def _num(v: Scalar) -> float:
    assert not isinstance(v, Ref), "only numbers fold"
    return float(v)


def _scaled(op: Op, k1: float, k0: float) -> Op:
    """k1·op + k0·I, folded into the op's own scalars (all numbers)."""
    if isinstance(op, MatMul):
        return replace(op, alpha=_num(op.alpha) * k1, beta=_num(op.beta) * k1, gamma=_num(op.gamma) * k1 + k0)
    if isinstance(op, LinComb):
        return replace(op, gamma=_num(op.gamma) * k1 + k0, terms=tuple((_num(k) * k1, m) for k, m in op.terms))
    assert isinstance(op, Identity)
    return replace(op, gamma=_num(op.gamma) * k1 + k0)


def result_shape(sa: str, sb: str, tb: bool) -> str:
    if tb:
        if sa == "L" and sb == "L":
            return "S"
        if sa == sb and sa in ("S", "N"):
            return sa
        raise ValueError(f"cannot form {sa} @ {sb}ᵀ")
    if sa == "S" and sb in ("S", "L"):
        return sb
    if sa == "N" and sb == "N":
        return "N"
    if sa == "P" and sb in ("S", "N"):
        return "P"
    raise ValueError(f"cannot form {sa} @ {sb}")


class Builder:
    """Accumulates ops for one region (a step, or the prologue); temporaries are named t0, t1, …"""

    def __init__(self, shapes: dict[str, str], prefix: str = "t", square: str = "S"):
        self.ops: list[Op] = []
        self.shape = shapes  # shared between regions: name -> shape class
        self.prefix = prefix
        self.square = square  # the shape class of small symmetric values ("S", or "N" for symmetric inputs)
        self._n = 0
        self._temps: set[str] = set()
        self._uses: dict[str, int] = {}
        self.memos: list[dict] = []  # CSE tables that may hand out our temps; a fold forgets them there
        self._pinned: set[str] = set()  # names bound to a symbol (lets): read later, never folded or renamed

    def owns(self, name: str) -> bool:
        """Whether ``name`` is a temporary of this region (so not visible before it, e.g. in a prologue)."""
        return name in self._temps

    def fresh(self) -> str:
        name = temporary(self.prefix, self._n)
        self._n += 1
        self._temps.add(name)
        return name

    def _emit(self, op: Op) -> str:
        for r in op.reads:
            self._uses[r] = self._uses.get(r, 0) + 1
        self.ops.append(op)
        self.shape[op.out] = op.shape
        return op.out

    def matmul(self, a: str, b: str, *, tb: bool = False, alpha: Scalar = 1.0, c: str = "",
               beta: Scalar = 0.0, gamma: Scalar = 0.0, out: str = "", note: str = "") -> str:
        shape = result_shape(self.shape[a], self.shape[b], tb)
        if gamma and shape == "L":
            raise ValueError("+γI on a rectangular value")
        out = out or self.fresh()
        sym = shape in ("S", "N")  # every square value is a polynomial in commuting symmetric matrices
        return self._emit(MatMul(out, shape, symmetric=sym, a=a, b=b, tb=tb, alpha=alpha,
                                 c=c if beta else "", beta=beta if c else 0.0, gamma=gamma, note=note))

    def lincomb(self, terms: Sequence[tuple[Scalar, str]], *, gamma: Scalar = 0.0, out: str = "",
                note: str = "") -> str:
        terms = [(k, m) for k, m in terms if k != 0.0]
        if not terms:
            return self.identity(gamma, out=out)
        if len(terms) == 1 and terms[0][0] == 1.0 and not gamma:
            return self.alias(terms[0][1], out=out) if out else terms[0][1]
        shape = self.shape[terms[0][1]]
        out = out or self.fresh()
        sym = all(self.shape[m] in ("S", "N") for _, m in terms)
        return self._emit(LinComb(out, shape, symmetric=sym, terms=tuple(terms), gamma=gamma, note=note))

    def identity(self, gamma: Scalar, *, out: str = "") -> str:
        out = out or self.fresh()
        return self._emit(Identity(out, self.square, symmetric=True, gamma=gamma))

    def sketch(self, like: str, rows: int, *, out: str = "") -> str:
        """A Gaussian rows × side(like) sketch, scaled by 1/√rows, drawn once per call."""
        out = out or self.fresh()
        return self._emit(Sketch(out, "P", a=like, rows=rows, note=f"Gaussian sketch, {rows} rows"))

    def fit(self, param: str, residual: str, powers: list[str], data: tuple[tuple[float, ...], ...],
            lo: float, hi: float) -> str:
        """param = argmin over [lo, hi] of ‖Σ_i param^i Σ_j data[i][j]·powers[j]‖_F² (a run-time scalar)."""
        return self._emit(Fit(param, "C", a=residual, args=tuple(powers), data=data, lo=lo, hi=hi,
                              note=f"fit {param} in [{lo:g}, {hi:g}]"))

    def alias(self, a: str, *, out: str) -> str:
        if a == out:
            return out
        return self._emit(Alias(out, self.shape[a], a=a))

    # -- fusion ---------------------------------------------------------------------------------
    def pin(self, name: str) -> str:
        self._pinned.add(name)
        return name

    def _producer(self, name: str) -> int | None:
        if name not in self._temps or self._uses.get(name, 0) or name in self._pinned:
            return None
        for i in range(len(self.ops) - 1, -1, -1):
            if self.ops[i].out == name:
                return i if isinstance(self.ops[i], (MatMul, LinComb, Identity)) else None
        return None

    def materialize(self, aff: Aff, *, out: str = "") -> str:
        """Make k0·I + k1·M a matrix, folding the scalars into M's producer when nobody else reads M."""
        if aff.m is None:
            return self.identity(aff.k0, out=out)
        if aff.k1 == 1.0 and aff.k0 == 0.0 and not out:
            return aff.m
        i = self._producer(aff.m)
        if i is not None and all(isinstance(v, float) for v in self.ops[i].scalars) and isinstance(aff.k1, float):
            op = self.ops[i]
            for memo in self.memos:
                for key in [k for k, v in memo.items() if v == op.out]:
                    del memo[key]
            k1 = aff.k1
            new = _scaled(op, k1, aff.k0)
            if out:
                self._temps.discard(op.out)
                new = replace(new, out=out)
            self.ops[i] = new
            self.shape[new.out] = new.shape
            return new.out
        if aff.k1 == 1.0 and aff.k0 == 0.0:
            return self.alias(aff.m, out=out)
        return self.lincomb([(aff.k1, aff.m)], gamma=aff.k0, out=out)

    def rename_last(self, name: str, out: str) -> str:
        """Make the op that produced temp ``name`` write ``out`` directly (saves an alias)."""
        i = self._producer(name)
        if i is None:
            return self.alias(name, out=out)
        self._temps.discard(name)
        self.ops[i] = replace(self.ops[i], out=out)
        self.shape[out] = self.ops[i].shape
        return out
