"""Whitelisting expression parser: Python ``ast`` → SymPy, never ``eval``/``sympify`` of raw text.

A spec file is data. Only numbers, declared symbols, ``+ - * / **``, parentheses and a few named
functions are accepted; every other node is rejected before anything is evaluated.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping

import sympy as sp

MAX_EXPR_CHARS = 20_000
MAX_NUMERIC_EXPONENT = 1_000  # 2**(N/2) is fine, 10**10**10 is not
MAX_SYMBOL_EXPONENT = 1 << 16  # IFNSO needs r**8192

FUNCTIONS = {"sqrt": sp.sqrt, "exp": sp.exp, "log": sp.log, "Rational": sp.Rational}
CONSTANTS = {"pi": sp.pi, "E": sp.E}


class ExprError(ValueError):
    """Raised with a plain message; the caller adds file, line and field."""


def parse_expr(text: object, symbols: Mapping[str, sp.Symbol]) -> sp.Expr:
    """Parse ``text`` into a SymPy expression over ``symbols`` (and numeric constants only)."""
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise ExprError(f"expected an expression string or a number, got {type(text).__name__}")
    src = str(text) if not isinstance(text, float) else repr(text)
    if len(src) > MAX_EXPR_CHARS:
        raise ExprError(f"expression longer than {MAX_EXPR_CHARS} characters")
    if not src.strip():
        raise ExprError("empty expression")
    try:
        tree = ast.parse(src.strip(), mode="eval")
    except SyntaxError as e:
        raise ExprError(f"syntax error in {src!r}: {e.msg}") from None
    return _Converter(src.strip(), symbols).visit(tree.body)


class _Converter:
    def __init__(self, src: str, symbols: Mapping[str, sp.Symbol]):
        self.src = src
        self.symbols = symbols

    def visit(self, node: ast.AST) -> sp.Expr:
        if isinstance(node, ast.Constant):
            v = node.value
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ExprError(f"only numbers are allowed, not {v!r}")
            seg = ast.get_source_segment(self.src, node) or repr(v)
            return sp.Integer(v) if isinstance(v, int) else sp.Rational(seg.replace("_", ""))
        if isinstance(node, ast.Name):
            if node.id in self.symbols:
                return self.symbols[node.id]
            if node.id in CONSTANTS:
                return CONSTANTS[node.id]
            raise ExprError(f"unknown symbol {node.id!r} (declared: {', '.join(sorted(self.symbols)) or 'none'})")
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
            v = self.visit(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.BinOp):
            left, right = self.visit(node.left), self.visit(node.right)
            if isinstance(node.op, ast.Add):
                return left + right
            if isinstance(node.op, ast.Sub):
                return left - right
            if isinstance(node.op, ast.Mult):
                return left * right
            if isinstance(node.op, ast.Div):
                if right == 0:
                    raise ExprError("division by zero")
                return left / right
            if isinstance(node.op, ast.Pow):
                return self._pow(left, right)
            raise ExprError(f"operator {type(node.op).__name__} is not allowed (only + - * / **)")
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                name = node.func.id if isinstance(node.func, ast.Name) else ast.dump(node.func)[:40]
                raise ExprError(f"function {name!r} is not allowed (allowed: {', '.join(sorted(FUNCTIONS))})")
            if node.keywords or not 1 <= len(node.args) <= 2:
                raise ExprError(f"{node.func.id}() takes one or two positional arguments")
            args = [self.visit(a) for a in node.args]
            if any(a.free_symbols for a in args):
                raise ExprError(f"{node.func.id}() takes numbers only")
            return FUNCTIONS[node.func.id](*args)
        raise ExprError(f"{type(node).__name__} is not allowed in a spec expression")

    def _pow(self, base: sp.Expr, exp: sp.Expr) -> sp.Expr:
        if exp.free_symbols:
            raise ExprError("exponents must be numbers")
        if not base.free_symbols:
            if abs(float(exp)) > MAX_NUMERIC_EXPONENT:
                raise ExprError(f"numeric exponent {exp} too large")
            return base**exp
        if not (exp.is_Integer and 0 <= int(exp) <= MAX_SYMBOL_EXPONENT):
            raise ExprError(f"powers of variables must be integers in [0, {MAX_SYMBOL_EXPONENT}], got {exp}")
        return base**exp


def symbol_order(text: object) -> tuple[str, ...]:
    """Names in an (already validated) expression in left-to-right reading order, first occurrence only."""
    tree = ast.parse(str(text).strip(), mode="eval")
    seen: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Name) and node.id not in seen:
            seen.append(node.id)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree.body)
    return tuple(seen)
