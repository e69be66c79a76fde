"""Spec text → validated, frozen :class:`SpectralMap`. The only module that imports SymPy.

SymPy expands and checks the algebra exactly; the result is frozen at once into ``polygen.ir.poly.Poly``
(float coefficients, our own term order) so no pass ever sees a SymPy object.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from typing import Any

import sympy as sp

from polygen.errors import SpecError
from polygen.ir.poly import Poly
from polygen.ir.spectral import (
    RECTANGULAR,
    SYMMETRIC,
    TARGETS,
    Fit,
    Hints,
    Let,
    Normalization,
    Output,
    SpectralMap,
    Step,
    Variable,
    VerifyPolicy,
    target_exponent,
)
from polygen.runtime.specfiles import MAX_SPEC_BYTES, spec_hash
from polygen.spec.expr import ExprError, parse_expr, symbol_order
from polygen.spec.locate import Locator, LocatorLimit, field_name, non_ascii, show
from polygen.spec.names import check_name, check_spec_name

_TOP_KEYS = {"name", "description", "target", "p", "r", "domain", "input", "variables", "steps", "output",
             "verify", "hints"}
_STEP_KEYS = {"repeat", "coefficients", "table", "let", "update", "label", "fit"}
_FIT_KEYS = {"param", "interval", "residual", "sketch"}
_INPUT_KEYS = {"kind", "symbol", "norm", "safety", "eps"}
_VARIABLE_KEYS = {"kind", "init"}
_OUTPUT_KEYS = {"var", "rescale", "exponent"}
_VERIFY_KEYS = {"expect", "tolerance", "lower", "upper"}
_HINT_KEYS = {"form", "restart_every", "force"}

# Caps far above any real spec (the largest built-in has 14 coefficients and 8 steps); each keeps the work of
# parsing, verifying and scheduling bounded for any input (docs/spec-format.md, "Limits").
MAX_STEPS = 128  # [[steps]] entries
MAX_REPEAT = 256
MAX_TABLE_ROWS = 256
MAX_TOTAL_STEPS = 256  # step instances: repeats and table rows, summed
MAX_NAMES = 64  # variables, lets, coefficients, updates or table columns in one table
MAX_TOTAL_TERMS = 2_000  # polynomial terms over all step instances (what lowering and verification work on)
MAX_TEXT_CHARS = 4_000  # description, label
MAX_FIT_DEGREE = 12  # total degree of a fitted step's lets and updates (PRISM's: 3), before R⁺ is derived

# Ranges of the numeric fields: wide around what real specs use (docs/spec-format.md, "Ranges"), narrow enough
# that no value in them makes a module compute garbage (a safety of 1e-300 overflows every dtype, an eps of
# 1e300 zeroes the output, a coefficient of 1e300 is not a float32).
MAX_ROOT = 32  # r of an inverse root (built-ins: 2, 4)
SAFETY = (1e-2, 1e2)  # [input] safety (built-ins: 2/(r+1) … 1.01)
MAX_EPS = 1e-3  # [input] eps (built-ins: 1e-30, 1e-7)
MAX_DOMAIN = 1e2  # normalized singular values / eigenvalues (built-ins: hi <= 2.5)
MAX_RAW_DOMAIN = 1e6  # ... of an input taken as it is ([input] norm = "none")
MIN_DOMAIN = 1e-12  # a positive lower end of the domain (built-ins: >= 1e-6)
MAX_COEFFICIENT = 1e6  # |coefficient| and |table entry| (built-ins: <= 160)
MAX_TOLERANCE = 1.0  # [verify] tolerance: a relative error
MAX_BOUND = 1e6  # [verify] upper (polygen.passes.verify_convergence.BLOWUP)
MAX_INTERVAL = 1e3  # |ends| of a fitted parameter's interval (PRISM: [3/8, 29/20])

_COEFFICIENT = (-MAX_COEFFICIENT, MAX_COEFFICIENT)


class _Ctx:
    def __init__(self, loc: Locator, source: str):
        self.source = source
        self.loc = loc

    def error(self, path: tuple, msg: str) -> SpecError:
        return SpecError(msg, source=self.source, line=self.loc.line_of(path), field=field_name(path) or None)

    def keys(self, table: Mapping[str, Any], known: set[str], path: tuple, what: str) -> None:
        """Every key of ``table`` is one of ``known``: a misspelled key is an error, never ignored."""
        for key in table:
            self.ascii(key, path + (key,), f"{what} field")
            if key not in known:
                raise self.error(path + (key,), f"unknown {what} field {show(key)} (known: {', '.join(sorted(known))})")

    def name(self, value: Any, path: tuple, what: str, in_code: bool = False) -> str:
        self.ascii(value, path, f"{what} name")
        try:
            return check_name(value, what, in_code=in_code)
        except ValueError as ex:
            raise self.error(path, str(ex)) from None

    def names(self, table: Mapping[str, Any], path: tuple, what: str) -> None:
        if len(table) > MAX_NAMES:
            raise self.error(path, f"at most {MAX_NAMES} {what}s, got {len(table)}")
        for key in table:
            self.name(key, path + (key,), what)

    def text(self, table: Mapping[str, Any], key: str, path: tuple, default: str) -> str:
        """A free-text field (description, label): a string of bounded length, kept as data."""
        v = table.get(key, default)
        if not isinstance(v, str):
            raise self.error(path + (key,), f"{key} must be a string, got {type(v).__name__}")
        if len(v) > MAX_TEXT_CHARS:
            raise self.error(path + (key,), f"{key} is longer than {MAX_TEXT_CHARS} characters")
        return v

    def require(self, table: Mapping[str, Any], key: str, path: tuple) -> Any:
        if key not in table:
            return_path = path
            raise SpecError(f"missing required field {show(key)}", source=self.source,
                            line=self.loc.line_of(return_path), field=field_name(path + (key,)))
        return table[key]

    def ascii(self, value: Any, path: tuple, what: str) -> None:
        """Names and keys are ASCII: Python reads fullwidth ``ｘ`` and bold ``𝐱`` as ``x`` (NFKC), so a
        non-ASCII name could mean another name in expressions. The message names the character."""
        if isinstance(value, str) and not value.isascii():
            raise self.error(path, f"{what} {show(value)} has the non-ASCII character {non_ascii(value)}: names "
                                   "are ASCII (a-z, 0-9, _)")

    def number(self, value: Any, path: tuple, *, positive: bool = False,
               within: tuple[float, float] | None = None, why: str = "") -> float:
        """A finite real number (an expression of numbers); ``within`` = [lo, hi] bounds its value."""
        try:
            e = parse_expr(value, {})
            v = complex(sp.N(e, 30))
        except ExprError as ex:
            raise self.error(path, str(ex)) from None
        except (TypeError, ValueError):
            raise self.error(path, f"expected a number, got {show(value)}") from None
        if v.imag != 0 or not math.isfinite(v.real):
            raise self.error(path, f"expected a finite real number, got {show(value)}")
        if positive and v.real <= 0:
            raise self.error(path, f"expected a positive number, got {show(value)}")
        if within is not None and not within[0] <= v.real <= within[1]:
            raise self.error(path, f"expected a number in [{within[0]:g}, {within[1]:g}]{why}, got {show(value)}")
        return float(v.real)

    def string(self, table: Mapping[str, Any], key: str, path: tuple, default: str | None = None,
               choices: tuple[str, ...] | None = None) -> str:
        if key not in table:
            if default is None:
                raise self.error(path + (key,), f"missing required field {show(key)}")
            return default
        v = table[key]
        if not isinstance(v, str):
            raise self.error(path + (key,), f"expected a string, got {type(v).__name__}")
        if choices and v not in choices:
            raise self.error(path + (key,), f"expected one of {', '.join(choices)}, got {show(v)}")
        return v

    def table(self, parent: Mapping[str, Any], key: str, path: tuple, required: bool = False) -> dict:
        if key not in parent:
            if required:
                raise self.error(path + (key,), f"missing required table [{field_name(path + (key,))}]")
            return {}
        v = parent[key]
        if not isinstance(v, dict):
            raise self.error(path + (key,), f"expected a table, got {type(v).__name__}")
        return v


def _toml(text: str, source: str) -> tuple[dict, Locator]:
    """tomllib, with its limits turned into SpecErrors: size, nesting (tomllib recurses) and syntax; and the
    key positions of the same text (one linear pass, which checks the nesting caps first)."""
    if not isinstance(text, str):
        raise SpecError(f"spec text must be a str, got {type(text).__name__}", source=source)
    if len(text) > MAX_SPEC_BYTES:
        raise SpecError(f"spec is larger than {MAX_SPEC_BYTES} bytes", source=source)
    try:
        loc = Locator(text)
    except LocatorLimit as e:
        raise SpecError(str(e), source=source, line=e.line) from None
    try:
        return tomllib.loads(text), loc
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"line (\d+)", str(e))
        raise SpecError(f"TOML syntax error: {e}", source=source, line=int(m.group(1)) if m else None,
                        field=None) from None
    except ValueError as e:  # an integer literal past Python's int-to-str digit limit
        raise SpecError(f"TOML value out of range: {str(e)[:120]}", source=source,
                        line=_long_number_line(text)) from None
    except (RecursionError, MemoryError) as e:  # pragma: no cover - the Locator's caps catch the known cases
        raise SpecError(f"TOML too complex to parse ({type(e).__name__})", source=source) from None


def _long_number_line(text: str) -> int | None:
    """The line of the first run of 4,000 or more digits (a single pass: each run is matched once)."""
    for m in re.finditer(r"[0-9_]+", text):
        if m.end() - m.start() >= 4000:
            return text.count("\n", 0, m.start()) + 1
    return None


def parse_spec(text: str, source: str = "<str>") -> SpectralMap:
    """Parse and validate spec text; raises :class:`polygen.SpecError` naming file, line and field."""
    doc, loc = _toml(text, source)
    ctx = _Ctx(loc, source)
    ctx.keys(doc, _TOP_KEYS, (), "top-level")

    name = ctx.string(doc, "name", ())
    try:
        check_spec_name(name)
    except ValueError as ex:
        raise ctx.error(("name",), str(ex)) from None
    target = ctx.string(doc, "target", (), choices=TARGETS)
    for key, owner in (("p", "power"), ("r", "inverse_root")):
        if key in doc and target != owner:
            raise ctx.error((key,), f"{key!r} applies to target {owner!r} only (this spec's target is "
                                    f"{show(target)})")
    power = 0.0
    if target == "power":
        power = ctx.number(ctx.require(doc, "p", ()), ("p",))
        if not 0.0 < power < 1.0:
            raise ctx.error(("p",), f"power p must lie in (0, 1), got {show(doc['p'])}")
    elif target == "inverse_root":
        r = ctx.number(ctx.require(doc, "r", ()), ("r",))
        if not 1 <= r <= MAX_ROOT or r != int(r):
            raise ctx.error(("r",), f"r must be an integer in [1, {MAX_ROOT}], got {show(doc['r'])}")
        power = 1.0 / r

    domain_raw = ctx.require(doc, "domain", ())
    if not isinstance(domain_raw, list) or len(domain_raw) != 2:
        raise ctx.error(("domain",), "domain must be a list of two numbers [lo, hi]")
    lo, hi = (ctx.number(v, ("domain",)) for v in domain_raw)
    # an unnormalized input's domain is in the matrix's own units (raw eigenvalues), a normalized one's near 1
    raw = isinstance(doc.get("input"), dict) and doc["input"].get("norm") == "none"
    top, units = (MAX_RAW_DOMAIN, "singular values or eigenvalues of the unnormalized input") if raw else (
        MAX_DOMAIN, "normalized singular values or eigenvalues")
    if not 0.0 <= lo < hi <= top:
        raise ctx.error(("domain",), f"domain must satisfy 0 <= lo < hi <= {top:g} ({units}), got [{lo:g}, {hi:g}]")
    if lo == 0.0 and target == "inverse_root":
        raise ctx.error(("domain",), f"an inverse root is infinite at 0, so its domain must start above 0: write "
                                     f"domain = [\"1e-6\", \"{hi:g}\"] (or the smallest eigenvalue it must handle)")
    if 0.0 < lo < MIN_DOMAIN:
        raise ctx.error(("domain",), f"a positive lower end of the domain must be at least {MIN_DOMAIN:g} (or 0), "
                                     f"got {lo:g}")

    inp = ctx.table(doc, "input", ())
    ctx.keys(inp, _INPUT_KEYS, ("input",), "[input]")
    input_kind = ctx.string(inp, "kind", ("input",), default=RECTANGULAR if target in ("polar", "power")
                            else SYMMETRIC, choices=(RECTANGULAR, SYMMETRIC))
    if target in ("polar", "power") and input_kind != RECTANGULAR:
        raise ctx.error(("input", "kind"), f"target {show(target)} needs a rectangular input")
    if target in ("inverse_root", "sqrt") and input_kind != SYMMETRIC:
        raise ctx.error(("input", "kind"), f"target {show(target)} needs a symmetric input")
    input_symbol = ctx.name(ctx.string(inp, "symbol", ("input",), default="g"), ("input", "symbol"), "input symbol")
    normalization = Normalization(
        norm=ctx.string(inp, "norm", ("input",), default="frobenius", choices=("frobenius", "none")),
        safety=ctx.number(inp.get("safety", "1"), ("input", "safety"), within=SAFETY,
                          why=" (the input's norm is multiplied by it)"),
        eps=ctx.number(inp.get("eps", "1e-7"), ("input", "eps"), within=(0.0, MAX_EPS),
                       why=" (it is added to the input's norm)"),
    )

    # -- variables ------------------------------------------------------------------------------------
    var_tables = ctx.table(doc, "variables", (), required=True)
    if not var_tables:
        raise ctx.error(("variables",), "at least one variable is required")
    ctx.names(var_tables, ("variables",), "variable")
    kinds: dict[str, str] = {}
    for vname, vt in var_tables.items():
        if not isinstance(vt, dict):
            raise ctx.error(("variables", vname), "each variable is a table with kind and init")
        ctx.keys(vt, _VARIABLE_KEYS, ("variables", vname), f"[variables.{vname}]")
        if vname == input_symbol:
            raise ctx.error(("variables", vname), f"variable {show(vname)} has the input symbol's name")
        kinds[vname] = ctx.string(vt, "kind", ("variables", vname), default=RECTANGULAR
                                  if input_kind == RECTANGULAR else SYMMETRIC, choices=(RECTANGULAR, SYMMETRIC))
        if input_kind == SYMMETRIC and kinds[vname] != SYMMETRIC:
            raise ctx.error(("variables", vname, "kind"), "a symmetric input has only symmetric variables")
    gsym = {input_symbol: sp.Symbol(input_symbol)}
    variables = []
    for vname, vt in var_tables.items():
        path = ("variables", vname, "init")
        init = _poly(ctx, ctx.require(vt, "init", ("variables", vname)), gsym, path)
        if input_kind == RECTANGULAR:
            want = 1 if kinds[vname] == RECTANGULAR else 0
            _check_parity(ctx, init, {input_symbol}, want, path)
        variables.append(Variable(vname, kinds[vname], init))

    # -- steps --------------------------------------------------------------------------------------
    steps_raw = ctx.require(doc, "steps", ())
    if not isinstance(steps_raw, list) or not steps_raw:
        raise ctx.error(("steps",), "steps must be a non-empty array of tables ([[steps]])")
    if len(steps_raw) > MAX_STEPS:
        raise ctx.error(("steps",), f"at most {MAX_STEPS} [[steps]] entries, got {len(steps_raw)}")
    rect_syms = {v for v, k in kinds.items() if k == RECTANGULAR}
    steps: list[Step] = []
    instances = terms = 0
    for i, st in enumerate(steps_raw):
        new = _parse_step(ctx, st, i, kinds, rect_syms, input_kind)
        steps.extend(new)
        instances += sum(s.repeat for s in new)
        if instances > MAX_TOTAL_STEPS:
            raise ctx.error(("steps", i), f"more than {MAX_TOTAL_STEPS} step instances in all (repeats and table "
                                          "rows)")
        terms += sum(s.repeat * (sum(len(lt.expr.terms) for lt in s.lets) + sum(len(p.terms) for _, p in s.updates))
                     for s in new)
        if terms > MAX_TOTAL_TERMS:
            raise ctx.error(("steps", i), f"more than {MAX_TOTAL_TERMS} polynomial terms over all step instances")

    # -- output, verify, hints ------------------------------------------------------------------------
    out_t = ctx.table(doc, "output", (), required=True)
    ctx.keys(out_t, _OUTPUT_KEYS, ("output",), "[output]")
    out_var = ctx.string(out_t, "var", ("output",))
    if out_var not in kinds:
        raise ctx.error(("output", "var"), f"unknown variable {show(out_var)}")
    if target in ("polar", "power") and kinds[out_var] != RECTANGULAR:
        raise ctx.error(("output", "var"), f"target {show(target)} returns a rectangular variable")
    rescale = ctx.string(out_t, "rescale", ("output",), default="none", choices=("none", "rms", "norm"))
    exponent = ctx.number(out_t.get("exponent", "0"), ("output", "exponent"))
    _check_output_scaling(ctx, target, power, normalization.norm, rescale, exponent, doc)
    outputs = (Output(out_var, rescale, exponent),)

    ver_t = ctx.table(doc, "verify", ())
    ctx.keys(ver_t, _VERIFY_KEYS, ("verify",), "[verify]")
    verify = VerifyPolicy(
        expect=ctx.string(ver_t, "expect", ("verify",), default="bounded", choices=("converge", "bounded", "none")),
        tolerance=ctx.number(ver_t.get("tolerance", "0.05"), ("verify", "tolerance"), positive=True,
                             within=(0.0, MAX_TOLERANCE), why=" (a relative error)"),
        lower=ctx.number(ver_t.get("lower", "0"), ("verify", "lower"), within=(0.0, MAX_BOUND)),
        upper=ctx.number(ver_t.get("upper", "2"), ("verify", "upper"), within=(0.0, MAX_BOUND)),
    )
    if not verify.lower < verify.upper:
        raise ctx.error(("verify", "upper"), f"verify needs lower < upper, got lower = {verify.lower:g}, "
                                             f"upper = {verify.upper:g}")
    hint_t = ctx.table(doc, "hints", ())
    ctx.keys(hint_t, _HINT_KEYS, ("hints",), "[hints]")
    restart = hint_t.get("restart_every", 0)
    if isinstance(restart, bool) or not isinstance(restart, int) or not 0 <= restart <= MAX_TOTAL_STEPS:
        raise ctx.error(("hints", "restart_every"), f"restart_every must be an integer in [0, {MAX_TOTAL_STEPS}]")
    force = hint_t.get("force", False)
    if not isinstance(force, bool):
        raise ctx.error(("hints", "force"), "force must be true or false")
    hints = Hints(form=ctx.string(hint_t, "form", ("hints",), default="auto", choices=("auto", "direct", "gram")),
                  restart_every=restart, force=force)
    description = ctx.text(doc, "description", (), "")

    smap = SpectralMap(name=name, target=target, domain=(lo, hi), input_kind=input_kind, input_symbol=input_symbol,
                       normalization=normalization, variables=tuple(variables), steps=tuple(steps),
                       outputs=outputs, verify=verify, hints=hints, power=power, description=description,
                       source=source, source_hash=spec_hash(text),
                       lines=tuple((f, ctx.loc.lines[(f,)]) for f in ("name", "verify", "domain", "output", "hints")
                                   if (f,) in ctx.loc.lines))
    return smap


def _parse_step(ctx: _Ctx, st: Any, i: int, kinds: dict[str, str], rect_syms: set[str],
                input_kind: str) -> list[Step]:
    path: tuple = ("steps", i)
    if not isinstance(st, dict):
        raise ctx.error(path, "each step is a table")
    ctx.keys(st, _STEP_KEYS, path, "step")
    coeffs_t = ctx.table(st, "coefficients", path)
    table_t = ctx.table(st, "table", path)
    ctx.names(coeffs_t, path + ("coefficients",), "coefficient")
    ctx.names(table_t, path + ("table",), "table column")
    label_default = f"steps[{i}]"
    label_text = ctx.text(st, "label", path, label_default)
    rows: list[dict[str, float]]
    if table_t:
        lengths = set()
        for cname, col in table_t.items():
            if not isinstance(col, list) or not col:
                raise ctx.error(path + ("table", cname), "each table column is a non-empty list of numbers")
            if len(col) > MAX_TABLE_ROWS:
                raise ctx.error(path + ("table", cname), f"at most {MAX_TABLE_ROWS} table rows, got {len(col)}")
            lengths.add(len(col))
        if len(lengths) != 1:
            raise ctx.error(path + ("table",), f"table columns differ in length: {sorted(lengths)}")
        n = lengths.pop()
        rows = [{} for _ in range(n)]
        for cname, col in table_t.items():
            for j, v in enumerate(col):
                rows[j][cname] = ctx.number(v, path + ("table", cname), within=_COEFFICIENT)
    const = {c: ctx.number(v, path + ("coefficients", c), within=_COEFFICIENT) for c, v in coeffs_t.items()}
    for c in list(const) + (list(table_t) if table_t else []):
        if c in kinds or (c in const and c in table_t):
            raise ctx.error(path + ("coefficients", c), f"coefficient {show(c)} is also a variable or a table column")
    repeat = st.get("repeat", len(rows) if table_t else None)
    if repeat is None:
        raise ctx.error(path, "missing required field 'repeat'")
    if isinstance(repeat, bool) or not isinstance(repeat, int) or not 1 <= repeat <= MAX_REPEAT:
        raise ctx.error(path + ("repeat",), f"repeat must be an integer in [1, {MAX_REPEAT}], got {show(repeat)}")
    if table_t and repeat != len(rows):
        raise ctx.error(path + ("repeat",), f"repeat = {repeat} but the table has {len(rows)} rows")
    if not table_t:
        rows = [{}]

    coef_syms = {c: sp.Symbol(c) for c in list(const) + list(table_t)}
    syms: dict[str, sp.Symbol] = {v: sp.Symbol(v) for v in kinds} | coef_syms
    fit_spec = _parse_fit_header(ctx, st, path, syms)
    if fit_spec is not None:
        syms[fit_spec["param"]] = sp.Symbol(fit_spec["param"])
    let_t = ctx.table(st, "let", path)
    ctx.names(let_t, path + ("let",), "let")
    lets_expr: list[tuple[str, sp.Expr, str]] = []  # name, expr, kind
    local_rect = set(rect_syms)
    for lname, ltext in let_t.items():
        lpath = path + ("let", lname)
        if lname in syms:
            raise ctx.error(lpath, f"let {show(lname)} has the name of a variable, coefficient or fitted parameter")
        e = _expr(ctx, ltext, syms, lpath)
        lets_expr.append((lname, e, ""))
        syms[lname] = sp.Symbol(lname)
    upd_t = ctx.table(st, "update", path, required=True)
    if not upd_t:
        raise ctx.error(path + ("update",), "a step must update at least one variable")
    ctx.names(upd_t, path + ("update",), "updated variable")
    upd_expr = []
    for vname, utext in upd_t.items():
        upath = path + ("update", vname)
        if vname not in kinds:
            raise ctx.error(upath, f"update of undeclared variable {show(vname)}")
        upd_expr.append((vname, _expr(ctx, utext, syms, upath)))

    const_syms = {coef_syms[c]: sp.Float(v, 30) if v != int(v) else sp.Integer(int(v)) for c, v in const.items()}
    mat_syms = [sp.Symbol(v) for v in kinds] + [sp.Symbol(n) for n, _, _ in lets_expr]
    if fit_spec is not None:
        _check_fit_lets(ctx, path + ("fit",), fit_spec, [(n, e) for n, e, _ in lets_expr])
        mat_syms.append(sp.Symbol(fit_spec["param"]))
    out: list[Step] = []
    for j, row in enumerate(rows):
        subs = dict(const_syms) | {coef_syms[c]: sp.Float(v, 30) for c, v in row.items()}
        lets: list[Let] = []
        for lname, e, _ in lets_expr:
            poly = _freeze(ctx, e.xreplace(subs), mat_syms, path + ("let", lname))
            if input_kind == RECTANGULAR:
                parity = _parity(ctx, poly, local_rect, path + ("let", lname))
                if parity == 1:
                    local_rect.add(lname)
            lets.append(Let(lname, poly))
        updates = []
        for vname, e in upd_expr:
            poly = _freeze(ctx, e.xreplace(subs), mat_syms, path + ("update", vname))
            if input_kind == RECTANGULAR:
                want = 1 if kinds[vname] == RECTANGULAR else 0
                _check_parity(ctx, poly, local_rect, want, path + ("update", vname))
            updates.append((vname, poly))
        label = label_text + (f" row {j}" if table_t and "label" not in st else "")
        orders = tuple((n, symbol_order(t)) for n, t in list(let_t.items()) + list(upd_t.items()))
        fit = None
        if fit_spec is not None:
            fit = _derive_fit(ctx, path, fit_spec, [(n, e.xreplace(subs)) for n, e, _ in lets_expr],
                              [(v, e.xreplace(subs)) for v, e in upd_expr], list(kinds))
        if fit_spec is not None and fit_spec["residual"] in local_rect:
            raise ctx.error(path + ("fit", "residual"), f"residual {show(fit_spec['residual'])} must be even in the "
                                                        "rectangular variables (a Gram-space matrix such as 1 - x²)")
        out.append(Step(tuple(lets), tuple(updates), repeat=1 if table_t else repeat, label=str(label),
                        orders=orders, fit=fit))
    return out


def _check_output_scaling(ctx: _Ctx, target: str, power: float, norm: str, rescale: str, exponent: float,
                          doc: Mapping[str, Any]) -> None:
    """The output must be the target of the matrix the user passed, not of its normalized copy: with input
    scale s the target scales as s**k, so a normalized input needs ``rescale = "norm", exponent = k`` (or
    ``"rms"`` for a power, Muon^p's unit-RMS convention). Refused, with what to add, rather than guessed."""
    k = target_exponent(target, power)
    exact = {"power": f'"{doc.get("p")}"', "inverse_root": f'"-1/{doc.get("r")}"', "sqrt": '"1/2"'}.get(target, "0")
    if norm == "none":
        if rescale == "norm":
            raise ctx.error(("output", "rescale"), 'rescale = "norm" needs a normalized input ([input] norm = '
                                                   '"frobenius")')
        return
    if rescale == "rms":
        if target != "power":
            raise ctx.error(("output", "rescale"), f'rescale = "rms" is for target "power" (Muon^p); target '
                                                   f'{show(target)} has a fixed scale')
        return
    got = exponent if rescale == "norm" else 0.0
    if abs(got - k) > 1e-12 * max(1.0, abs(k)):
        fix = (f'add rescale = "norm", exponent = {exact} to [output]' if k else
               'remove the rescale from [output]')
        raise ctx.error(("output", "exponent" if rescale == "norm" else "rescale"),
                        f"the output would be the {target} of the normalized input, not of the matrix passed in "
                        f"(the target scales as s^{k:g}, the output as s^{got:g}): {fix}")


def _expr(ctx: _Ctx, text: Any, syms: Mapping[str, sp.Symbol], path: tuple) -> sp.Expr:
    try:
        return parse_expr(text, syms)
    except ExprError as ex:
        raise ctx.error(path, str(ex)) from None


def _freeze(ctx: _Ctx, e: sp.Expr, gens: list[sp.Symbol], path: tuple) -> Poly:
    """Exact SymPy polynomial → frozen Poly with float coefficients."""
    free = e.free_symbols - set(gens)
    if free:
        raise ctx.error(path, f"unknown symbols {sorted(map(str, free))}")
    used = [g for g in gens if g in e.free_symbols]
    try:
        p = sp.Poly(sp.expand(e), *used) if used else None
    except sp.PolynomialError as ex:
        raise ctx.error(path, f"not a polynomial in the variables: {ex}") from None
    if p is None:
        c = complex(sp.N(e, 30))
        if c.imag or not math.isfinite(c.real):
            raise ctx.error(path, "coefficients must be finite real numbers")
        return Poly.const(c.real)
    if not p.domain.is_Numerical and not p.domain.is_RR and not p.domain.is_QQ and not p.domain.is_ZZ:
        raise ctx.error(path, f"not a polynomial in the variables (coefficient domain {p.domain})")
    terms = {}
    for monom, coef in p.terms():
        c = complex(sp.N(coef, 30))
        if c.imag or not math.isfinite(c.real):
            raise ctx.error(path, f"coefficient of {monom} is not a finite real number")
        terms[tuple((str(g), k) for g, k in zip(used, monom) if k)] = c.real
    return Poly.from_dict(terms)


def _parity(ctx: _Ctx, poly: Poly, rect: set[str], path: tuple) -> int:
    parities = {sum(e for s, e in m if s in rect) % 2 for m, _ in poly.terms}
    if len(parities) > 1:
        raise ctx.error(path, "mixes odd and even terms in the rectangular variables; "
                              "odd terms are U f(S) Vᵀ, even ones live in Gram space")
    return parities.pop() if parities else 0


def _check_parity(ctx: _Ctx, poly: Poly, rect: set[str], want: int, path: tuple) -> None:
    got = _parity(ctx, poly, rect, path)
    if poly.is_zero() and want == 1:
        raise ctx.error(path, "a rectangular variable cannot be zero")
    if got != want:
        kind = "odd (a rectangular variable, U f(S) Vᵀ)" if want else "even (a Gram-space / symmetric value)"
        raise ctx.error(path, f"wrong parity: must be {kind} in the rectangular variables")


def _poly(ctx: _Ctx, text: Any, syms: Mapping[str, sp.Symbol], path: tuple) -> Poly:
    return _freeze(ctx, _expr(ctx, text, syms, path), list(syms.values()), path)


def _parse_fit_header(ctx: _Ctx, st: dict, path: tuple, syms: Mapping[str, sp.Symbol]) -> dict | None:
    """Validate a step's ``fit`` table (PRISM): param, interval, residual, sketch."""
    fit_t = ctx.table(st, "fit", path)
    if not fit_t:
        return None
    fpath = path + ("fit",)
    for key in fit_t:
        if key not in _FIT_KEYS:
            raise ctx.error(fpath + (key,), f"unknown fit field {show(key)} (known: {', '.join(sorted(_FIT_KEYS))})")
    param = ctx.name(ctx.string(fit_t, "param", fpath), fpath + ("param",), "fitted parameter", in_code=True)
    if param in syms:
        raise ctx.error(fpath + ("param",), f"fitted parameter {show(param)} must be a new name (not a variable or "
                                            "a coefficient with a value)")
    if "interval" not in fit_t:
        raise ctx.error(fpath, f"fitted parameter {show(param)} needs an interval = [lo, hi]")
    iv = fit_t["interval"]
    if not isinstance(iv, list) or len(iv) != 2:
        raise ctx.error(fpath + ("interval",), "interval must be a list of two numbers [lo, hi]")
    lo, hi = (ctx.number(v, fpath + ("interval",), within=(-MAX_INTERVAL, MAX_INTERVAL)) for v in iv)
    if not lo < hi:
        raise ctx.error(fpath + ("interval",), f"interval must satisfy lo < hi, got [{lo}, {hi}]")
    residual = ctx.name(ctx.string(fit_t, "residual", fpath), fpath + ("residual",), "residual")
    sketch_raw = fit_t.get("sketch", "exact")
    if sketch_raw == "exact":
        sketch = 0
    elif isinstance(sketch_raw, bool) or not isinstance(sketch_raw, int) or not 1 <= sketch_raw <= 4096:
        raise ctx.error(fpath + ("sketch",), f"sketch must be a number of rows in [1, 4096] or \"exact\", "
                                             f"got {show(sketch_raw)}")
    else:
        sketch = sketch_raw
    return {"param": param, "lo": lo, "hi": hi, "residual": residual, "sketch": sketch}


def _derive_fit(ctx: _Ctx, path: tuple, spec: dict, lets: list[tuple[str, sp.Expr]],
                updates: list[tuple[str, sp.Expr]], variables: list[str]) -> Fit:
    """R⁺ as a polynomial in the fitted parameter whose coefficients are polynomials in R (SymPy, exactly).

    Substitute the updated variables into the residual's definition and reduce modulo R − residual(vars):
    what remains must depend on R and the parameter only.
    """
    fpath = path + ("fit",)
    r_sym, a_sym = sp.Symbol(spec["residual"]), sp.Symbol(spec["param"])
    defs = dict(lets)
    expand_lets = {sp.Symbol(n): e for n, e in lets if n != spec["residual"]}
    _check_fit_size(ctx, fpath, [e for _, e in lets] + [e for _, e in updates], variables)
    r_def = sp.expand(defs[spec["residual"]].xreplace(expand_lets))
    new = {sp.Symbol(v): sp.expand(e.xreplace(expand_lets)) for v, e in updates}
    r_next = sp.expand(r_def.xreplace(new))
    var_syms = [sp.Symbol(v) for v in variables]
    try:
        _, rem = sp.reduced(r_next, [r_def - r_sym], *var_syms, r_sym, a_sym, order="lex")
    except (sp.PolynomialError, sp.polys.polyerrors.GeneratorsNeeded) as e:  # pragma: no cover - defensive
        raise ctx.error(fpath, f"cannot derive the next residual: {e}") from None
    rem = sp.expand(rem)
    if rem.free_symbols - {r_sym, a_sym}:
        left = sorted(map(str, rem.free_symbols))
        raise ctx.error(fpath + ("residual",), "the next residual is not a polynomial in the residual "
                                               f"{show(spec['residual'])} alone (left: {left})")
    poly_a = sp.Poly(rem, a_sym)
    deg = poly_a.degree()
    if deg < 1:
        raise ctx.error(fpath + ("param",), f"the next residual does not depend on {show(spec['param'])}")
    coeffs = tuple(_freeze(ctx, poly_a.coeff_monomial(a_sym**i), [r_sym], fpath) for i in range(deg + 1))
    return Fit(spec["param"], spec["lo"], spec["hi"], spec["residual"], spec["sketch"], coeffs)


def _check_fit_lets(ctx: _Ctx, path: tuple, spec: dict, lets: list[tuple[str, sp.Expr]]) -> None:
    """The residual R is a let that does not depend on the fitted parameter, and every let that does comes
    after R: the generated code forms R, fits the parameter on it, then evaluates what uses the parameter."""
    names = [n for n, _ in lets]
    if spec["residual"] not in names:
        raise ctx.error(path + ("residual",), f"residual {show(spec['residual'])} must name a let of this step")
    uses: dict[str, bool] = {}
    param = sp.Symbol(spec["param"])
    for n, e in lets:
        uses[n] = param in e.free_symbols or any(uses.get(str(s), False) for s in e.free_symbols)
    if uses[spec["residual"]]:
        raise ctx.error(path + ("residual",), f"residual {show(spec['residual'])} depends on the fitted parameter "
                                              f"{show(spec['param'])}: it is what the parameter is fitted on")
    early = [n for n in names[:names.index(spec["residual"])] if uses[n]]
    if early:
        raise ctx.error(path + ("residual",), f"lets {early} use {show(spec['param'])} but come before the residual "
                                              f"{show(spec['residual'])}; define the residual first")


def _check_fit_size(ctx: _Ctx, path: tuple, exprs: list[sp.Expr], variables: list[str]) -> None:
    """The fit derivation substitutes lets and updates into each other and reduces modulo the residual
    (a Gröbner-style division): bound the degrees involved before SymPy does that work."""
    for e in exprs:
        if e.free_symbols and sp.Poly(e, *sorted(e.free_symbols, key=str)).total_degree() > MAX_FIT_DEGREE:
            raise ctx.error(path, f"a fitted step's lets and updates must have degree at most {MAX_FIT_DEGREE}")
    if len(variables) > 4:
        raise ctx.error(path, "a fitted step may have at most 4 variables")
