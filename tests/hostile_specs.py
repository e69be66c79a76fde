"""A corpus of hostile and malformed specs, and the child process that runs them under resource limits.

Each malformed case must end in a ``polygen.SpecError`` naming the expected field; each hostile-but-valid
case (injection attempts through free text and file names, valid text at every cap) must load, run, and
execute nothing. Run as ``python tests/hostile_specs.py WORKDIR LIMIT_S ADDRESS_SPACE`` it takes the cases
from stdin as JSON and prints one JSON line per case; tests/test_spec_hostile.py drives it. Each case runs in
a process forked from a warmed-up parent and is killed at LIMIT_S seconds, so even a hang inside C code (a
backtracking regex holds the interpreter) is a result, ``TimeoutError``, and not a stuck run.
"""

from __future__ import annotations

import json
import os
import resource
import select
import signal
import sys
import time
from pathlib import Path

SENTINEL_NAME = "PWNED"

BASE = '''\
name = "hostile"
description = "corpus base"
target = "polar"
domain = ["1e-3", "1"]

[input]
kind = "rectangular"
eps = "1e-7"

[variables.x]
kind = "rectangular"
init = "g"

[[steps]]
repeat = 5
label = "ns5"
coefficients = { a = "3.4445", b = "-4.7750", c = "2.0315" }
update = { x = "a*x + b*x**3 + c*x**5" }

[output]
var = "x"

[verify]
expect = "bounded"
lower = "0.3"
upper = "1.3"
'''

UPDATE = 'update = { x = "a*x + b*x**3 + c*x**5" }'
SPECS = Path(__file__).resolve().parent.parent / "polygen" / "specs"
NS_CUBIC = (SPECS / "ns_cubic.toml").read_text()


def payload(sentinel: str) -> str:
    """Python that would create the sentinel file if it ever ran."""
    return f"__import__('pathlib').Path({sentinel!r}).write_text('pwned')"


def _toml_str(s: str) -> str:
    return json.dumps(s)  # a JSON string is a valid TOML basic string


def _sub(old: str, new: str, text: str = BASE) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def _expr(e: str) -> str:
    return _sub(UPDATE, f"update = {{ x = {_toml_str(e)} }}")


def _inline(key: str, value: str) -> str:
    """BASE with ``key = value`` inserted at the top level."""
    return _sub('target = "polar"\n', f'target = "polar"\n{key} = {value}\n')


EXPR = "steps[0].update.x"

# (id, spec text, expected field) — every one must raise SpecError with exactly that field.
MALFORMED: list[tuple[str, str, str | None]] = [
    # bounded work: numbers, powers, degrees, sizes
    ("tower of powers", _expr("((10**1000)**1000)**1000*x"), EXPR),
    ("exp tower", _expr("exp(exp(exp(exp(10))))*x"), EXPR),
    ("trinomial to 1001", _expr("(x + x**3 + x**5)**1001"), EXPR),
    ("power of power", _expr("(x**65536)**65536*x"), EXPR),
    ("6000-term sum", _expr("+".join(["x"] * 6000)), EXPR),
    ("19000 unary minus", _expr("-" * 19000 + "x"), EXPR),
    ("5000 parentheses", _expr("(" * 5000 + "x" + ")" * 5000), EXPR),
    ("150 nested negations", _expr("-(" * 150 + "x" + ")" * 150), EXPR),
    ("huge symbol exponent", _expr("x**(10**10)"), EXPR),
    ("float literal out of range", _expr("1e999999*x"), EXPR),
    ("power tower literal", _expr("10**10**10*x"), EXPR),
    ("9**9**9", _expr("9**9**9*x"), EXPR),
    ("5000-digit literal", _expr("9" * 5000 + "*x"), EXPR),
    ("200-digit literal", _expr("9" * 200 + "*x"), EXPR),
    ("expression too long", _expr("x+" * 10001 + "x"), EXPR),
    ("binomial to 16384", _expr("x*(1 + x**2)**16384"), EXPR),
    ("multinomial blow-up", _sub(UPDATE, 'let = { ' + ", ".join(f'q{i} = "x*x"' for i in range(6))
                                 + ' }\nupdate = { x = "x*(1 + q0 + q1 + q2 + q3 + q4 + q5)**12" }'), EXPR),
    ("exp(1000)", _expr("exp(1000)*x"), EXPR),
    ("big numeric power", _expr("2**5000*x"), EXPR),
    ("tiny numeric power", _expr("2**(-5000)*x"), EXPR),
    ("exact big product", _expr("x*" + "*".join(["10**300"] * 20)), EXPR),
    # expressions that are not polynomial arithmetic
    ("dunder import", _expr("__import__('os').system('true')"), EXPR),
    ("attribute", _expr("x.__class__"), EXPR),
    ("lambda", _expr("(lambda: x)()"), EXPR),
    ("comprehension", _expr("[x for x in [1]]"), EXPR),
    ("conditional", _expr("x if x else x"), EXPR),
    ("subscript", _expr("x[0]"), EXPR),
    ("string constant", _expr("'a'*x"), EXPR),
    ("f-string", _expr("f'{x}'"), EXPR),
    ("matmul operator", _expr("x @ x"), EXPR),
    ("floor division", _expr("x // 2"), EXPR),
    ("modulo", _expr("x % 2"), EXPR),
    ("shift", _expr("x << 2"), EXPR),
    ("function of a variable", _expr("sqrt(x)*x"), EXPR),
    ("eval call", _expr("eval('x')"), EXPR),
    ("log of zero", _expr("log(0)*x"), EXPR),
    ("log of negative", _expr("log(-1)*x"), EXPR),
    ("sqrt of negative", _expr("sqrt(-1)*x"), EXPR),
    ("division by zero", _expr("1/0*x"), EXPR),
    ("division by a variable", _expr("x/x"), EXPR),
    ("negative power", _expr("x**-1"), EXPR),
    ("fractional power", _expr("x**0.5"), EXPR),
    ("symbolic exponent", _expr("x**x"), EXPR),
    ("Rational by zero", _expr("Rational(1, 0)*x"), EXPR),
    ("Rational of a variable", _expr("Rational(x, 2)"), EXPR),
    ("exp of a variable", _expr("exp(x)"), EXPR),
    ("keyword arguments", _expr("sqrt(x=2)*x"), EXPR),
    ("statement", _expr("x; import os"), EXPR),
    ("newline statement", _expr("x\nimport os"), EXPR),
    ("NUL byte", _expr("x\u0000"), EXPR),
    ("walrus", _expr("(y := x)"), EXPR),
    ("undeclared symbol", _expr("a*y"), EXPR),
    ("boolean expression", _sub(UPDATE, "update = { x = true }"), EXPR),
    ("table expression", _sub(UPDATE, "update = { x = { a = 1 } }"), EXPR),
    ("array expression", _sub(UPDATE, 'update = { x = ["x"] }'), EXPR),
    ("inf expression", _sub(UPDATE, "update = { x = inf }"), EXPR),
    ("empty expression", _expr("   "), EXPR),
    ("mixed parity", _expr("x + x**2"), EXPR),
    # numbers in fields
    ("domain out of range", _sub('domain = ["1e-3", "1"]', 'domain = ["1e999", "2"]'), "domain"),
    ("domain reversed", _sub('domain = ["1e-3", "1"]', "domain = [1, 0]"), "domain"),
    ("domain nan", _sub('domain = ["1e-3", "1"]', 'domain = ["nan", 1]'), "domain"),
    ("domain exp", _sub('domain = ["1e-3", "1"]', 'domain = [0, "exp(1000)"]'), "domain"),
    ("domain one value", _sub('domain = ["1e-3", "1"]', "domain = [1]"), "domain"),
    ("domain of symbols", _sub('domain = ["1e-3", "1"]', 'domain = ["x", "1"]'), "domain"),
    ("domain a string", _sub('domain = ["1e-3", "1"]', 'domain = "0 to 1"'), "domain"),
    ("negative eps", _sub('eps = "1e-7"', 'eps = "-1"'), "input.eps"),
    ("nan eps", _sub('eps = "1e-7"', 'eps = "nan"'), "input.eps"),
    ("zero safety", _sub('eps = "1e-7"', 'eps = "1e-7"\nsafety = "0"'), "input.safety"),
    ("negative safety", _sub('eps = "1e-7"', 'eps = "1e-7"\nsafety = -1'), "input.safety"),
    ("unknown norm", _sub('eps = "1e-7"', 'eps = "1e-7"\nnorm = "max"'), "input.norm"),
    ("symmetric polar input", _sub('kind = "rectangular"\neps', 'kind = "symmetric"\neps'), "input.kind"),
    ("keyword input symbol", _sub('eps = "1e-7"', 'eps = "1e-7"\nsymbol = "import"'), "input.symbol"),
    ("input symbol collides", _sub('eps = "1e-7"', 'eps = "1e-7"\nsymbol = "x"'), "variables.x"),
    ("dunder input symbol", _sub('eps = "1e-7"', 'eps = "1e-7"\nsymbol = "__class__"'), "input.symbol"),
    ("zero tolerance", _sub('expect = "bounded"', 'expect = "converge"\ntolerance = "0"'), "verify.tolerance"),
    ("verify bounds reversed", _sub('upper = "1.3"', 'upper = "0.1"'), "verify.upper"),
    # unknown or misspelled keys, in every table
    ("verify tolerence", _sub('upper = "1.3"', 'upper = "1.3"\ntolerence = "0.1"'), "verify.tolerence"),
    ("variable knid", _sub('kind = "rectangular"\ninit', 'knid = "rectangular"\ninit'), "variables.x.knid"),
    ("input misspelled", _sub('eps = "1e-7"', 'epsilon = "1e-7"'), "input.epsilon"),
    ("output misspelled", _sub('var = "x"', 'var = "x"\nrescal = "none"'), "output.rescal"),
    ("hints misspelled", BASE + '\n[hints]\nrestart = 2\n', "hints.restart"),
    ("top-level misspelled", _inline("colour", '"red"'), "colour"),
    ("step misspelled", _sub("repeat = 5", "repeats = 5"), "steps[0].repeats"),
    ("fit misspelled", _sub(UPDATE, UPDATE + '\nfit = { param = "al", interval = [0, 1], residual = "r", '
                                              'sketchy = 3 }'), "steps[0].fit.sketchy"),
    ("input not a table", _sub('[input]\nkind = "rectangular"\neps = "1e-7"\n', "").replace(
        'target = "polar"\n', 'target = "polar"\ninput = 3\n'), "input"),
    # types and lengths of text and names
    ("label a number", _sub('label = "ns5"', "label = 3"), "steps[0].label"),
    ("label a table", _sub('label = "ns5"', "label = { a = 1 }"), "steps[0].label"),
    ("label too long", _sub('label = "ns5"', f"label = {_toml_str('l' * 5000)}"), "steps[0].label"),
    ("description a number", _sub('description = "corpus base"', "description = 5"), "description"),
    ("description too long", _sub('description = "corpus base"', f"description = {_toml_str('d' * 10000)}"),
     "description"),
    ("name a number", _sub('name = "hostile"', "name = 3"), "name"),
    ("name with a space", _sub('name = "hostile"', 'name = "a b"'), "name"),
    ("name a path", _sub('name = "hostile"', 'name = "../../etc/passwd"'), "name"),
    ("name too long", _sub('name = "hostile"', f'name = "{"n" * 100}"'), "name"),
    ("name a keyword", _sub('name = "hostile"', 'name = "import"'), "name"),
    ("name with a newline", _sub('name = "hostile"', r'name = "a\nb"'), "name"),
    ("name with a quote", _sub('name = "hostile"', r'name = "a\"b"'), "name"),
    ("name empty", _sub('name = "hostile"', 'name = ""'), "name"),
    ("name missing", _sub('name = "hostile"\n', ""), "name"),
    # caps
    ("repeat a million", _sub("repeat = 5", "repeat = 1000000"), "steps[0].repeat"),
    ("repeat zero", _sub("repeat = 5", "repeat = 0"), "steps[0].repeat"),
    ("repeat negative", _sub("repeat = 5", "repeat = -1"), "steps[0].repeat"),
    ("repeat a boolean", _sub("repeat = 5", "repeat = true"), "steps[0].repeat"),
    ("repeat a string", _sub("repeat = 5", 'repeat = "5"'), "steps[0].repeat"),
    ("300 [[steps]] entries", BASE.split("[[steps]]")[0]
     + ("[[steps]]\nrepeat = 1\nupdate = { x = \"1.5*x - 0.5*x**3\" }\n" * 300) + "[output]\nvar = \"x\"\n", "steps"),
    ("2000 table rows", _sub('coefficients = { a = "3.4445", b = "-4.7750", c = "2.0315" }\n',
                             "table = { a = [" + ", ".join(["3.4445"] * 2000) + "], b = ["
                             + ", ".join(["-4.775"] * 2000) + "], c = [" + ", ".join(["2.0315"] * 2000) + "] }\n"
                             ).replace("repeat = 5\n", ""), "steps[0].table.a"),
    ("257 step instances", _sub("repeat = 5", "repeat = 200").replace(
        "[output]", "[[steps]]\nrepeat = 57\nupdate = { x = \"1.5*x - 0.5*x**3\" }\n\n[output]"), "steps[1]"),
    ("100 coefficients", _sub('coefficients = { a = "3.4445", b = "-4.7750", c = "2.0315" }',
                              "coefficients = { a = \"3.4445\", b = \"-4.7750\", c = \"2.0315\", "
                              + ", ".join(f'k{i} = "1"' for i in range(100)) + " }"), "steps[0].coefficients"),
    ("dunder coefficient", _sub('a = "3.4445"', '__import__ = "3.4445"'), "steps[0].coefficients.__import__"),
    ("upper-case coefficient", _sub('a = "3.4445"', 'A = "3.4445"'), "steps[0].coefficients.A"),
    ("upper-case variable", _sub("[variables.x]", "[variables.X]"), "variables.X"),
    ("keyword variable", _sub("[variables.x]", "[variables.if]"), "variables.if"),
    ("keyword let", _sub(UPDATE, UPDATE + '\nlet = { class = "x*x" }'), "steps[0].let.class"),
    ("variable not a table", _sub('[variables.x]\nkind = "rectangular"\ninit = "g"\n', "[variables]\nx = 3\n"),
     "variables.x"),
    ("wrong parity init", _sub('init = "g"', 'init = "g*g"'), "variables.x.init"),
    ("steps not an array", BASE[:BASE.index("[[steps]]")].replace('target = "polar"\n', 'target = "polar"\nsteps = 3\n')
     + BASE[BASE.index("[output]"):], "steps"),
    ("update of undeclared", _sub(UPDATE, 'update = { y = "x" }'), "steps[0].update.y"),
    # targets and output scaling
    ("p on polar", _inline("p", '"1/2"'), "p"),
    ("r on polar", _inline("r", "2"), "r"),
    ("power p = 2", _sub('target = "polar"', 'target = "power"\np = "2"').replace(
        'var = "x"', 'var = "x"\nrescale = "rms"'), "p"),
    ("power p = 1/0", _sub('target = "polar"', 'target = "power"\np = "1/0"'), "p"),
    ("power without rescale", _sub('target = "polar"', 'target = "power"\np = "1/2"'), "output.rescale"),
    ("polar with rms", _sub('var = "x"', 'var = "x"\nrescale = "rms"'), "output.rescale"),
    ("polar rescaled by norm", _sub('var = "x"', 'var = "x"\nrescale = "norm"\nexponent = "1"'),
     "output.exponent"),
    ("rescale without normalization", _sub('eps = "1e-7"', 'eps = "1e-7"\nnorm = "none"').replace(
        'var = "x"', 'var = "x"\nrescale = "norm"\nexponent = "0"'), "output.rescale"),
    # restart hints and fitted parameters
    ("restart_every negative", BASE + "\n[hints]\nrestart_every = -1\n", "hints.restart_every"),
    ("restart_every huge", BASE + "\n[hints]\nrestart_every = 1000000000\n", "hints.restart_every"),
    ("unknown form", BASE + '\n[hints]\nform = "weird"\n', "hints.form"),
]


INV_ROOT = (SPECS / "inv_root_2.toml").read_text()
INV_OUT = 'rescale = "norm"\nexponent = "-1/2"'
MALFORMED += [
    ("inverse root unscaled", INV_ROOT.replace(INV_OUT, ""), "output.rescale"),
    ("inverse root wrong exponent", INV_ROOT.replace(INV_OUT, 'rescale = "norm"\nexponent = "-1/4"'),
     "output.exponent"),
    ("inverse root r = 2.5", INV_ROOT.replace('r = "2"', 'r = "2.5"'), "r"),
    ("inverse root r = 0", INV_ROOT.replace('r = "2"', "r = 0"), "r"),
    ("p on inverse root", INV_ROOT.replace('r = "2"', 'r = "2"\np = "1/2"'), "p"),
]

PRISM = (SPECS / "prism_polar.toml").read_text()
PRISM_UPDATE = next(line for line in PRISM.splitlines() if line.startswith("update"))
FIT = 'fit = { param = "alpha", interval = ["3/8", "29/20"], residual = "r", sketch = 8 }'
MALFORMED += [
    ("fit param torch", PRISM.replace('param = "alpha"', 'param = "torch"').replace("alpha", "torch"),
     "steps[0].fit.param"),
    ("fit param temporary", PRISM.replace("alpha", "t0"), "steps[0].fit.param"),
    ("fit param builtin", PRISM.replace("alpha", "range"), "steps[0].fit.param"),
    ("fit residual not a let", PRISM.replace('residual = "r"', 'residual = "q"'), "steps[0].fit.residual"),
    ("fit sketch huge", PRISM.replace("sketch = 8", "sketch = 1000000000"), "steps[0].fit.sketch"),
    ("fit interval reversed", PRISM.replace('["3/8", "29/20"]', '["29/20", "3/8"]'), "steps[0].fit.interval"),
    ("fit step of high degree", PRISM.replace('"1 - x**2"', '"1 - x**40"'), "steps[0].fit"),
    ("fit residual uses the parameter", PRISM.replace('"1 - x**2"', '"1 - x**2 + alpha"'), "steps[0].fit.residual"),
    ("fit let before the residual", PRISM.replace('let = { r = "1 - x**2"', 'let = { q = "alpha*x*x", r = "1 - x**2"'),
     "steps[0].fit.residual"),
    ("fit residual a variable", PRISM.replace('"1 - x**2"', '"x"').replace(
        PRISM_UPDATE, 'update = { x = "x*(1 + alpha)" }'), "steps[0].fit.residual"),
    ("forced gram on a fitted spec", PRISM + '\n[hints]\nform = "gram"\nforce = true\n', "hints.form"),
]

# TOML-level and file-level cases (field None: the error names no field, only file and line)
MALFORMED += [
    ("5000-deep arrays", _inline("p", "[" * 5000 + "]" * 5000), None),
    ("5000-deep inline tables", _inline("p", "{a = " * 5000 + "1" + "}" * 5000), None),
    ("invalid TOML", BASE + "\n[[[broken\n", None),
    ("file over 256 KiB", BASE + "#" + "x" * (300 * 1024) + "\n", None),
    ("empty file", "", "name"),
    ("NUL in a string", _sub('description = "corpus base"', 'description = "a\u0000b"'), None),
    ("integer past the digit limit", _sub("repeat = 5", "repeat = " + "1" * 4400), None),
    ("forced gram, two variables", (SPECS / "sqrt_coupled_ns.toml").read_text()
     + '\n[hints]\nform = "gram"\nforce = true\n', "hints.form"),
    ("bad let in a sub-table", _sub(UPDATE, '\n[steps.let]\nL1 = "x*x"\n[steps.update]\nx = "a*x"'), "steps[0].let.L1"),
    ("bad dotted update", _sub(UPDATE, 'update.x = "x + x**2"'), EXPR),
    ("100 kB key", _sub('a = "3.4445"', "k" * 100_000 + ' = "1", a = "3.4445"'),
     "steps[0].coefficients." + "k" * 64 + "\u2026"),
]

# Issue 23: bounded work in the locator, at every cap; ranges of numeric fields; non-ASCII names.
_NONE_BASE = _sub('expect = "bounded"', 'expect = "none"')
_WIDE = "[" + " " * 20_000  # the regex locator backtracked cubically on "[" and spaces without "]"
MALFORMED += [
    ("20,000-space line under an unknown key", BASE + '\nzz = """\n' + _WIDE + '\n"""\n', "verify.zz"),
    ("20,000-space header line", BASE + "\n" + _WIDE + "\n", None),
    ("[ [ [ description over the cap", _sub('description = "corpus base"', 'description = """\n'
                                          + "[ " * 2_100 + '\n"""'), "description"),
    ("most lines, then a misspelled key", BASE + "#\n" * 120_000 + "tolerence = 1\n", "verify.tolerence"),
    ("[x] in a description, then a misspelled key", _sub('target = "polar"\n', 'target = "polar"\ncolour = 1\n',
                                                         _sub('description = "corpus base"',
                                                              'description = """\n[x]\n[[steps]]\n"""')), "colour"),
    ("1,500-deep dotted repeat", _sub("repeat = 5", "repeat" + ".a" * 1_500 + " = 5"), None),
    ("1,500-deep dotted fit.sketch", _sub(UPDATE, UPDATE + "\nfit.sketch" + ".s" * 1_500 + " = 1"), None),
    ("65-deep dotted key", _sub("repeat = 5", "repeat = 5\nzz" + ".a" * 64 + " = 1"), None),
    ("dotted key at the cap (63 deep)", _sub("repeat = 5", "repeat = 5\nzz" + ".a" * 60 + " = 1"), "steps[0].zz"),
    ("safety 1e-300", _sub('eps = "1e-7"', 'eps = "1e-7"\nsafety = "1e-300"'), "input.safety"),
    ("safety 1e300", _sub('eps = "1e-7"', 'eps = "1e-7"\nsafety = "1e300"'), "input.safety"),
    ("eps 1e300", _sub('eps = "1e-7"', 'eps = "1e300"'), "input.eps"),
    ("domain to 1e300", _sub('domain = ["1e-3", "1"]', 'domain = ["0", "1e300"]'), "domain"),
    ("domain from 1e-300", _sub('domain = ["1e-3", "1"]', 'domain = ["1e-300", "1"]'), "domain"),
    ("coefficient 1e300, expect none", _sub('a = "3.4445"', 'a = "1e300"', _NONE_BASE), "steps[0].coefficients.a"),
    ("table entry 1e300", _sub('coefficients = { a = "3.4445", b = "-4.7750", c = "2.0315" }',
                               'table = { a = ["1e300"], b = ["-4.7750"], c = ["2.0315"] }').replace(
        "repeat = 5\n", ""), "steps[0].table.a"),
    ("literal 1e300, expect none", _sub(UPDATE, 'update = { x = "1e300*x" }', _NONE_BASE), "verify"),
    ("overflow in float32 by step 3, expect none", _sub(UPDATE, 'update = { x = "1e20*x" }', _NONE_BASE), "verify"),
    ("tolerance 1e9", _sub('expect = "bounded"', 'expect = "converge"\ntolerance = "1e9"'), "verify.tolerance"),
    ("upper 1e300", _sub('upper = "1.3"', 'upper = "1e300"'), "verify.upper"),
    ("inverse root r = 10**6", INV_ROOT.replace('r = "2"', 'r = "1000000"'), "r"),
    ("inverse root from 0", INV_ROOT.replace('domain = ["1e-06", "1.5"]', 'domain = ["0", "1.5"]'), "domain"),
    ("fit interval to 1e300", PRISM.replace('["3/8", "29/20"]', '["3/8", "1e300"]'), "steps[0].fit.interval"),
    ("fullwidth x in an expression", _expr("a*\uff58 + b*x**3 + c*x**5"), EXPR),
    ("bold x in an expression", _sub(UPDATE, 'update = { x = "a*\U0001d431 + b*x**3 + c*x**5" }'), EXPR),
    ("cyrillic variable key", _sub("[variables.x]", '[variables."\u0445"]'), "variables.\u0445"),
    ("fullwidth input symbol", _sub('eps = "1e-7"', 'eps = "1e-7"\nsymbol = "\uff47"'), "input.symbol"),
    ("escaped NUL key", _sub('a = "3.4445"', '"na\\u0000me" = "3.4445"'), "steps[0].coefficients.na\u0000me"),
    ("non-ASCII unknown key", _sub('eps = "1e-7"', 'eps = "1e-7"\n"\uff45ps" = "1"'), "input.\uff45ps"),
]

# Cases given as raw bytes (not UTF-8): (id, bytes, field)
MALFORMED_BYTES: list[tuple[str, bytes, str | None]] = [
    ("latin-1 file", BASE.replace("corpus base", "caf\u00e9").encode("latin-1"), None),
    ("lone continuation byte", b"name = \"a\x80\"\n" + BASE.encode(), None),
]


def valid_cases(sentinel: str) -> list[tuple[str, str, str, str]]:
    """(id, file name, spec text, benign text): injection attempts that are valid specs. Each must load and run,
    execute nothing, and generate a module with the same code as the benign text (only literals differ)."""
    p = payload(sentinel)
    desc = _sub('description = "corpus base"',
                f"description = {_toml_str(chr(34) * 3 + chr(10) + p + chr(10) + chr(34) * 3)}")
    desc2 = _sub('description = "corpus base"',
                 f"description = {_toml_str(chr(39) * 3 + chr(10) + p + chr(10) + chr(39) * 3 + chr(92))}")
    label = _sub('label = "ns5"', f"label = {_toml_str('ns5' + chr(10) + p + chr(10) + '#')}")
    label_cr = _sub('label = "ns5"', f"label = {_toml_str('ns5' + chr(13) + p)}")
    odd = _sub('description = "corpus base"',
               f"description = {_toml_str('{{ 7*7 }} {% raw %} ' + chr(0x2028) + chr(0x0c) + chr(0x85) + p)}")
    cubic = NS_CUBIC.replace("repeat = 14", "repeat = 60") if "repeat = 14" in NS_CUBIC else None
    cases = [
        ("docstring break", "desc.toml", desc, BASE),
        ("docstring break single quotes", "desc2.toml", desc2, BASE),
        ("label newline", "label.toml", label, BASE),
        ("label carriage return", "label_cr.toml", label_cr, BASE),
        ("jinja syntax and separators", "odd.toml", odd, BASE),
        # a file name cannot hold "/": this payload writes the sentinel into the working folder
        ("file name newline", "spec\n" + payload(SENTINEL_NAME) + "\n#.toml", BASE, BASE),
        ("file name quotes", "sp'e\"c{{x}}.toml", BASE, BASE),
        # Python reads "coding[:=]..." on line 1 or 2 of a module as its encoding: the source path must not be there
        ("file name encoding declaration", "x coding=utf_16 .toml", BASE, BASE),
    ]
    if cubic is not None:
        cases.append(("ns_cubic repeat 60", "cubic.toml", cubic, cubic))
    # valid text at the locator's caps (issue 23): the longest description, every line "[ [ [", a 20,000-space
    # line inside a string, the most lines the size cap allows, and the deepest key path
    brackets = 'description = """\n' + "\n".join(["[ " * 39] * 50) + '\n"""'
    cases += [
        ("description of 4,000 [ [ [", "brackets.toml", _sub('description = "corpus base"', brackets), BASE),
        ("description: [ and 3,998 spaces", "spaces.toml", _sub('description = "corpus base"', 'description = """\n'
                                                              + _WIDE[:3_999] + '\n"""'), BASE),
        ("description of 4,000 [[x]]", "headers.toml", _sub('description = "corpus base"', 'description = """'
                                                          + "\n[[steps]]\n[x]" * 285 + '"""'), BASE),
        ("4,000-space label after a [", "wide.toml", _sub('label = "ns5"', 'label = """' + _WIDE[:3_999] + '"""'),
         BASE),
        ("most lines (120,000 comments)", "lines.toml", BASE + "#\n" * 120_000, BASE),
        ("the longest line (250 KB comment)", "line.toml", BASE + "# " + "[ " * 125_000 + "\n", BASE),
        ("dotted let key", "dotted.toml", BASE.replace('[[steps]]\n', '[[steps]]\nlet.r = "x*x"\n'),
         BASE.replace('[[steps]]\n', '[[steps]]\nlet = { r = "x*x" }\n')),
        ("domain from 0", "zero.toml", (SPECS / "muonp_1_3.toml").read_text().replace(
            'domain = ["0.001", "1"]', 'domain = ["0", "1"]'), (SPECS / "muonp_1_3.toml").read_text().replace(
            'domain = ["0.001", "1"]', 'domain = ["0", "1"]')),
        ("finite in float32, not float16", "f32.toml", _F32_ONLY, _F32_ONLY),
    ]
    cases += [(i, f"worst{n}.toml", t, t) for n, (i, t) in enumerate(WORST[:1])]
    return cases


_F32_ONLY = _sub(UPDATE, 'update = { x = "1e5*x" }', _sub("repeat = 5", "repeat = 1", _NONE_BASE))
_NONE = NS_CUBIC.replace('expect = "converge"', 'expect = "none"')
_CUBIC_UPDATE = 'update = { x = "3/2*x - 1/2*x**3" }'
# Valid specs at the caps (docs/spec-format.md, "Limits"): the most work a spec can ask for. The first runs in
# the test corpus, all of them in bench/spec_corpus.py.
WORST: list[tuple[str, str]] = [
    ("quintic at the step cap (256)", BASE.replace("repeat = 5", "repeat = 256")),
    ("dense degree-511 step x7", _NONE.replace("repeat = 14", "repeat = 7").replace(
        _CUBIC_UPDATE, 'let = { r = "x*x" }\nupdate = { x = "x*(1 - r)**255" }')),
    ("x**16383 x256", _NONE.replace("repeat = 14", "repeat = 256").replace(_CUBIC_UPDATE,
                                                                         'update = { x = "x**16383" }')),
    ("91-term sum x21", _NONE.replace("repeat = 14", "repeat = 21").replace(
        _CUBIC_UPDATE, 'let = { r = "x*x" }\nupdate = { x = "x*(' + "+".join(f"r**{k}/{k + 1}" for k in range(90))
        + ')" }')),
]


def _run_case(case: dict, work: Path) -> dict:
    import polygen
    from polygen.errors import SpecError

    path = work / case["file"]
    if "bytes" in case:
        path.write_bytes(bytes.fromhex(case["bytes"]))
    else:
        path.write_text(case["text"], encoding="utf-8")
    out: dict = {"id": case["id"]}
    try:
        fn = polygen.load(path, backend="torch")
        import torch

        y = fn(torch.randn(2, 8, 16, dtype=torch.float32, generator=torch.Generator().manual_seed(0)))
        out["result"] = "loaded"
        out["finite"] = bool(torch.isfinite(y).all())
        src = polygen.generate(polygen.load_spec(path), backend="torch")
        out["source"] = src
    except SpecError as e:
        out.update(result="SpecError", field=e.field, line=e.line, source_label=e.source, message=str(e)[:300])
    except Exception as e:  # noqa: BLE001 - the corpus reports whatever else escapes
        out.update(result=type(e).__name__, message=str(e)[:300])
    return out


def _fork_case(case: dict, work: Path, limit_s: float) -> dict:
    """Run one case in a forked child; kill it at ``limit_s``. Adds the child's seconds and peak RSS."""
    r, w = os.pipe()
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child: run, report, leave without the interpreter's teardown
        os.close(r)
        try:
            res = _run_case(case, work)
        except BaseException as e:  # noqa: BLE001 - MemoryError, RecursionError … are results too
            res = {"id": case["id"], "result": type(e).__name__, "message": str(e)[:300]}
        with os.fdopen(w, "wb") as f:
            f.write(json.dumps(res).encode())
        os._exit(0)
    os.close(w)
    data, deadline, done = b"", t0 + limit_s, False
    while not done:
        left = deadline - time.perf_counter()
        if left <= 0 or not select.select([r], [], [], left)[0]:
            break
        chunk = os.read(r, 1 << 16)
        data += chunk
        done = not chunk
    os.close(r)
    if not done:
        os.kill(pid, signal.SIGKILL)
    _, status, usage = os.wait4(pid, 0)
    if not done:
        res = {"id": case["id"], "result": "TimeoutError", "message": f"killed after {limit_s} s"}
    elif not data:
        res = {"id": case["id"], "result": "Killed", "message": f"child ended with status {status}"}
    else:
        res = json.loads(data)
    res["seconds"] = time.perf_counter() - t0
    res["maxrss_kib"] = usage.ru_maxrss
    return res


def _warm_up(work: Path) -> None:
    """Compile and run one spec in the parent, so each forked case pays only for itself."""
    import torch

    import polygen

    torch.set_num_threads(1)  # no thread pool may be running when the parent forks
    path = work / "warm-up.toml"
    path.write_text(BASE, encoding="utf-8")
    polygen.load(path, backend="torch")(torch.ones(1, 2, 3))
    path.unlink()


def main() -> None:
    work = Path(sys.argv[1])
    limit_s = float(sys.argv[2])
    as_bytes = int(sys.argv[3])
    cases = json.loads(sys.stdin.read())
    _warm_up(work)
    resource.setrlimit(resource.RLIMIT_AS, (as_bytes, as_bytes))
    base_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for case in cases:
        res = _fork_case(case, work, limit_s)
        res["rss_growth_kib"] = max(0, res["maxrss_kib"] - base_kib)
        print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()


def _renamed(name: str, *edits: tuple[str, str]) -> str:
    """A shipped spec's text with ``edits`` applied, each of which must match."""
    text = (SPECS / f"{name}.toml").read_text().replace(f'name = "{name}"', f'name = "{name}_renamed"')
    for old, new in edits:
        assert old in text, (name, old)
        text = text.replace(old, new)
    return text


_SQRT_TO_G = (('norm = "frobenius"', 'symbol = "u"\nnorm = "frobenius"'), ('init = "g"', 'init = "u"'))
# Valid specs that name their symbols the way the compiler names its own (issue 23: g and g_ both became G_, and a
# spec that verified computed another function): (id, text, the shipped spec it must compute, to 1e-12 in float64).
RENAMED: list[tuple[str, str, str]] = [
    ("sqrt: variables g and g_", _renamed(
        "sqrt_coupled_ns", *_SQRT_TO_G, ("[variables.y]", "[variables.g]"), ("[variables.z]", "[variables.g_]"),
        ('"3/2 - z*y/2"', '"3/2 - g_*g/2"'), ('{ y = "y*t", z = "t*z" }', '{ g = "g*t", g_ = "t*g_" }'),
        ('var = "y"', 'var = "g"')), "sqrt_coupled_ns"),
    ("sqrt: variables g_ and g, swapped", _renamed(
        "sqrt_coupled_ns", *_SQRT_TO_G, ("[variables.y]", "[variables.g_]"), ("[variables.z]", "[variables.g]"),
        ('"3/2 - z*y/2"', '"3/2 - g*g_/2"'), ('{ y = "y*t", z = "t*z" }', '{ g_ = "g_*t", g = "t*g" }'),
        ('var = "y"', 'var = "g_"')), "sqrt_coupled_ns"),
    ("muon^p: variables g and g_", _renamed(
        "muonp_1_3", ('norm = "frobenius"', 'symbol = "u"\nnorm = "frobenius"'), ("[variables.x]", "[variables.g]"),
        ("[variables.y]", "[variables.g_]"), ('init = "g"', 'init = "u"'),
        ('{ y = "y - c*(y**3 - x)" }', '{ g_ = "g_ - c*(g_**3 - g)" }'), ('var = "y"', 'var = "g_"')), "muonp_1_3"),
    ("ns5: temporaries' names t0, c0, i0, t1", _renamed(
        "muon_ns5", ('norm = "frobenius"', 'symbol = "g_"\nnorm = "frobenius"'), ("[variables.x]", "[variables.g]"),
        ('init = "g"', 'init = "g_"'), ('{ a = "3.4445", b = "-4.7750", c = "2.0315" }',
                                        '{ t0 = "3.4445", c0 = "-4.7750", i0 = "2.0315" }'),
        ('update = { x = "a*x + b*x**3 + c*x**5" }',
         'let = { t1 = "g*g" }\nupdate = { g = "t0*g + c0*g*t1 + i0*g*t1**2" }'), ('var = "x"', 'var = "g"')),
     "muon_ns5"),
]
