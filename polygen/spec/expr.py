"""Whitelisting expression parser: Python ``ast`` → SymPy, never ``eval``/``sympify`` of raw text.

A spec file is data. Only numbers, declared symbols, ``+ - * / **``, parentheses and a few named
functions are accepted; every other node is rejected before anything is evaluated. The work SymPy will do
is bounded before it does it: literals and numeric powers by their size in bits, exponentials by their
argument, and each polynomial by an upper bound on its degree and on its number of terms once expanded
(:class:`Size`), so no expression can hang the compiler or exhaust its memory.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Mapping
from dataclasses import dataclass

import sympy as sp

from polygen.spec.locate import non_ascii, show

MAX_EXPR_CHARS = 20_000
MAX_DEPTH = 100  # nested operations, parentheses and calls; a sum of n terms nests n deep
MAX_LITERAL_CHARS = 100  # digits of one number literal
MAX_NUMBER_BITS = 4_096  # numerator/denominator of an exact numeric value (2**(N/2) is fine, 10**10**10 is not)
MAX_ABS_LOG = 700.0  # |log| of a numeric value: exp() arguments and magnitudes stay within float range
MAX_SYMBOL_EXPONENT = 1 << 14  # IFNSO needs r**8192 (2**(N-1) for N = 14)
MAX_DEGREE = 1 << 14  # degree of an expression in any one symbol
MAX_TERMS = 256  # terms of an expression once expanded (upper bound, before expansion)
MAX_WORK = 200_000  # term-by-term products expanding it would take (upper bound)

FUNCTIONS = {"sqrt": sp.sqrt, "exp": sp.exp, "log": sp.log, "Rational": sp.Rational}
CONSTANTS = {"pi": sp.pi, "E": sp.E}


class ExprError(ValueError):
    """Raised with a plain message; the caller adds file, line and field."""


@dataclass(frozen=True)
class Size:
    """Upper bounds on an expression once expanded: degree per symbol, number of terms, and the term-by-term
    products the expansion costs (the work SymPy will do)."""

    degrees: tuple[tuple[str, int], ...] = ()
    terms: int = 1
    work: int = 0
    bits: int = 0  # ~log2 of the largest exact coefficient: SymPy folds numeric factors into one coefficient

    def degree(self, name: str) -> int:
        return dict(self.degrees).get(name, 0)

    @property
    def dense(self) -> int:
        """The most terms a polynomial of these degrees can have."""
        return math.prod(d + 1 for _, d in self.degrees)


def _size(degrees: dict[str, int], terms: int, work: int, bits: int) -> Size:
    for name, d in degrees.items():
        if d > MAX_DEGREE:
            raise ExprError(f"degree {d} in {show(name)} exceeds {MAX_DEGREE}")
    if bits > MAX_NUMBER_BITS:
        raise ExprError(f"coefficients would need more than {MAX_NUMBER_BITS} bits")
    s = Size(tuple(sorted((k, v) for k, v in degrees.items() if v)), 1, 0)
    terms = min(terms, s.dense)
    if terms > MAX_TERMS:
        raise ExprError(f"expands to up to {terms} terms (at most {MAX_TERMS})")
    if work > MAX_WORK:
        raise ExprError(f"expanding it would take over {MAX_WORK} term products; write it in factored steps "
                        "(lets) instead")
    return Size(s.degrees, terms, work, bits)


def _number_size(e: sp.Expr) -> Size:
    if e.is_Rational:
        return _size({}, 1, 0, max(int(e.p).bit_length(), int(e.q).bit_length()) - 1 if e else 0)
    v = abs(_value(e))
    return _size({}, 1, 0, int(abs(math.log2(v))) if v else 0)


def _add(a: Size, b: Size) -> Size:
    keys = {k for k, _ in a.degrees + b.degrees}
    return _size({k: max(a.degree(k), b.degree(k)) for k in keys}, a.terms + b.terms, a.work + b.work,
                 max(a.bits, b.bits) + 1)


def _mul(a: Size, b: Size) -> Size:
    keys = {k for k, _ in a.degrees + b.degrees}
    return _size({k: a.degree(k) + b.degree(k) for k in keys}, a.terms * b.terms,
                 a.work + b.work + a.terms * b.terms, a.bits + b.bits + 1 + min(a.terms, b.terms).bit_length())


def _pow(a: Size, k: int) -> Size:
    if k == 0:
        return Size()
    for name, d in a.degrees:
        if d * k > MAX_DEGREE:
            raise ExprError(f"degree {d * k} in {show(name)} exceeds {MAX_DEGREE}")
    degrees = {n: d * k for n, d in a.degrees}
    bits = a.bits * k + (k * a.terms.bit_length() if a.terms > 1 else 0)  # multinomials: at most terms**k
    if a.terms == 1:
        return _size(degrees, 1, a.work, bits)
    if a.work + k * a.terms > MAX_WORK:
        raise ExprError(f"expanding it would take over {MAX_WORK} term products")
    terms = min(math.comb(k + a.terms - 1, a.terms - 1), math.prod(d + 1 for d in degrees.values()))
    # by repeated multiplication with the base: k products of at most `terms` × a.terms term pairs
    return _size(degrees, terms, a.work + k * terms * a.terms, bits)


def parse_expr(text: object, symbols: Mapping[str, sp.Symbol]) -> sp.Expr:
    """Parse ``text`` into a SymPy expression over ``symbols`` (and numeric constants only), refusing it
    before SymPy expands anything when its :class:`Size` bounds are exceeded."""
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise ExprError(f"expected an expression string or a number, got {type(text).__name__}")
    src = str(text) if not isinstance(text, float) else repr(text)
    if len(src) > MAX_EXPR_CHARS:
        raise ExprError(f"expression longer than {MAX_EXPR_CHARS} characters")
    if not src.strip():
        raise ExprError("empty expression")
    if not src.isascii():  # Python's parser reads fullwidth ｘ and bold 𝐱 as x (NFKC): a name would change
        raise ExprError(f"non-ASCII character {non_ascii(src)} in an expression: names and operators are ASCII")
    tree = _parse_tree(src.strip())
    return _Converter(src.strip(), symbols).visit(tree.body)[0]


def _parse_tree(src: str) -> ast.Expression:
    try:
        tree = ast.parse(src, mode="eval")
    except SyntaxError as e:
        raise ExprError(f"syntax error in {show(src[:80])}: {e.msg}") from None
    except (RecursionError, MemoryError, ValueError) as e:  # CPython's parser limits, int-to-str limits
        raise ExprError(f"expression too complex to parse ({type(e).__name__}); nest at most {MAX_DEPTH} deep") \
            from None
    stack: list[tuple[ast.AST, int]] = [(tree.body, 1)]
    while stack:  # iteratively: the converter below recurses, so depth is checked first
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ExprError(f"expression nests deeper than {MAX_DEPTH} levels (a sum or product of n terms "
                            "nests n deep)")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return tree


class _Converter:
    def __init__(self, src: str, symbols: Mapping[str, sp.Symbol]):
        self.src = src
        self.symbols = symbols

    def visit(self, node: ast.AST) -> tuple[sp.Expr, Size]:
        if isinstance(node, ast.Constant):
            e = self._number(node)
            return e, _number_size(e)
        if isinstance(node, ast.Name):
            if node.id in self.symbols:
                return self.symbols[node.id], Size(((node.id, 1),))
            if node.id in CONSTANTS:
                return CONSTANTS[node.id], _number_size(CONSTANTS[node.id])
            raise ExprError(f"unknown symbol {show(node.id)} (declared: {', '.join(sorted(self.symbols)) or 'none'})")
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
            v, s = self.visit(node.operand)
            return (-v if isinstance(node.op, ast.USub) else v), s
        if isinstance(node, ast.BinOp):
            (left, ls), (right, rs) = self.visit(node.left), self.visit(node.right)
            if isinstance(node.op, (ast.Add, ast.Sub)):
                size = _add(ls, rs)
                return _numeric(left + right if isinstance(node.op, ast.Add) else left - right), size
            if isinstance(node.op, ast.Mult):
                return _numeric(left * right), _mul(ls, rs)
            if isinstance(node.op, ast.Div):
                if right.free_symbols:
                    raise ExprError("division by a variable is not a polynomial")
                if right == 0:
                    raise ExprError("division by zero")
                return _numeric(left / right), _mul(ls, _number_size(right))
            if isinstance(node.op, ast.Pow):
                return self._pow(left, ls, right)
            raise ExprError(f"operator {type(node.op).__name__} is not allowed (only + - * / **)")
        if isinstance(node, ast.Call):
            e = self._call(node)
            return e, _number_size(e)
        raise ExprError(f"{type(node).__name__} is not allowed in a spec expression")

    def _number(self, node: ast.Constant) -> sp.Expr:
        v = node.value
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ExprError(f"only numbers are allowed, not {show(v)}")
        seg = (ast.get_source_segment(self.src, node) or repr(v)).replace("_", "")
        if len(seg) > MAX_LITERAL_CHARS:
            raise ExprError(f"number literal longer than {MAX_LITERAL_CHARS} characters")
        if isinstance(v, int):
            return _numeric(sp.Integer(v))
        if not math.isfinite(v) or (v != 0 and abs(math.log(abs(v))) > MAX_ABS_LOG):
            raise ExprError(f"number {seg} is out of range (|log| at most {MAX_ABS_LOG:g})")
        return _numeric(sp.Rational(seg))

    def _call(self, node: ast.Call) -> sp.Expr:
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            name = node.func.id if isinstance(node.func, ast.Name) else ast.dump(node.func)[:40]
            raise ExprError(f"function {show(name)} is not allowed (allowed: {', '.join(sorted(FUNCTIONS))})")
        fname = node.func.id
        if node.keywords or not 1 <= len(node.args) <= (2 if fname == "Rational" else 1):
            raise ExprError(f"{fname}() takes {'one or two' if fname == 'Rational' else 'one'} positional "
                            "argument(s)")
        args = [self.visit(a)[0] for a in node.args]
        if any(a.free_symbols for a in args):
            raise ExprError(f"{fname}() takes numbers only")
        vals = [_value(a) for a in args]
        if fname == "exp" and abs(vals[0]) > MAX_ABS_LOG:
            raise ExprError(f"exp() argument {vals[0]:.4g} is out of range (at most {MAX_ABS_LOG:g})")
        if fname == "log" and vals[0] <= 0:
            raise ExprError("log() takes a positive number")
        if fname == "sqrt" and vals[0] < 0:
            raise ExprError("sqrt() takes a non-negative number")
        if fname == "Rational" and not all(a.is_Integer for a in args):
            raise ExprError("Rational() takes integers")
        if fname == "Rational" and len(args) == 2 and args[1] == 0:
            raise ExprError("division by zero")
        return _numeric(FUNCTIONS[fname](*args))

    def _pow(self, base: sp.Expr, size: Size, exp: sp.Expr) -> tuple[sp.Expr, Size]:
        if exp.free_symbols:
            raise ExprError("exponents must be numbers")
        if not base.free_symbols:
            b, e = _value(base), _value(exp)
            if b == 0 and e < 0:
                raise ExprError("division by zero")
            if b != 0 and abs(e * math.log(abs(b))) > MAX_ABS_LOG:
                raise ExprError(f"numeric power {b:.4g}**{e:.4g} is out of range")
            if base.is_Rational and exp.is_Integer:
                bits = max(int(base.p).bit_length(), int(base.q).bit_length()) * abs(int(exp))
                if bits > MAX_NUMBER_BITS:
                    raise ExprError(f"numeric power needs {bits} bits (at most {MAX_NUMBER_BITS})")
            e = _numeric(base**exp)
            return e, _number_size(e)
        if not (exp.is_Integer and 0 <= int(exp) <= MAX_SYMBOL_EXPONENT):
            raise ExprError(f"powers of variables must be integers in [0, {MAX_SYMBOL_EXPONENT}], got {exp}")
        return base**exp, _pow(size, int(exp))


def _value(e: sp.Expr) -> float:
    """The float value of a numeric expression whose parts are already bounded."""
    v = complex(sp.N(e, 20))
    if v.imag != 0 or not math.isfinite(v.real):
        raise ExprError(f"{str(e)[:40]} is not a finite real number")
    return v.real


def _numeric(e: sp.Expr) -> sp.Expr:
    """Bound an exact numeric result's size; symbolic results pass (their sizes are bounded by :class:`Size`)."""
    if e.free_symbols:
        return e
    if e.is_Rational and max(int(e.p).bit_length(), int(e.q).bit_length()) > MAX_NUMBER_BITS:
        raise ExprError(f"exact number needs more than {MAX_NUMBER_BITS} bits")
    if not e.is_Rational:
        v = _value(e)
        if v != 0 and abs(math.log(abs(v))) > MAX_ABS_LOG:
            raise ExprError(f"number {v:.4g} is out of range")
    return e


def symbol_order(text: object) -> tuple[str, ...]:
    """Names in an (already validated) expression in left-to-right reading order, first occurrence only."""
    tree = ast.parse(str(text).strip(), mode="eval")
    seen: list[str] = []
    stack: list[ast.AST] = [tree.body]
    while stack:  # pre-order, left to right
        node = stack.pop()
        if isinstance(node, ast.Name) and node.id not in seen:
            seen.append(node.id)
        stack.extend(reversed(list(ast.iter_child_nodes(node))))
    return tuple(seen)
