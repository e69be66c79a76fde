"""Bad specs get a SpecError naming file, line and field; no spec text can execute code."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import polygen
from polygen import SpecError

GOOD = textwrap.dedent('''\
    name = "t"
    target = "polar"
    domain = ["1e-3", "1"]

    [variables.x]
    kind = "rectangular"
    init = "g"

    [[steps]]
    repeat = 5
    coefficients = { a = "3.4445", b = "-4.7750", c = "2.0315" }
    update = { x = "a*x + b*x**3 + c*x**5" }

    [output]
    var = "x"

    [verify]
    expect = "bounded"
    lower = "0.3"
    upper = "1.3"
    ''')


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_good_spec_parses():
    smap = polygen.parse_spec(GOOD, source="t.toml")
    assert smap.name == "t" and smap.total_steps == 5
    (var, poly), = smap.steps[0].updates
    assert var == "x" and poly.univariate("x") == {1: 3.4445, 3: -4.775, 5: 2.0315}


@pytest.mark.parametrize("name", polygen.list_specs())
def test_builtins_parse_and_verify(name):
    smap = polygen.load_spec(name)
    assert smap.name == name
    from polygen.passes.verify_convergence import verify_convergence

    assert verify_convergence(smap).ok


CASES = [
    # (description, old, new, field, line needle, message fragment)
    ("syntax error", 'x = "a*x + b*x**3 + c*x**5"', 'x = "a*x + (b*x**3"', "steps[0].update.x", "update =", "syntax"),
    ("unknown symbol", 'x = "a*x + b*x**3 + c*x**5"', 'x = "a*x + q*x**3"', "steps[0].update.x", "update =",
     "unknown symbol 'q'"),
    ("even update of a rectangular variable", 'x = "a*x + b*x**3 + c*x**5"', 'x = "a*x**2"', "steps[0].update.x",
     "update =", "parity"),
    ("mixed parity", 'x = "a*x + b*x**3 + c*x**5"', 'x = "a*x + b*x**2"', "steps[0].update.x", "update =",
     "mixes odd and even"),
    ("repeat of 0", "repeat = 5", "repeat = 0", "steps[0].repeat", "repeat =",
     "repeat must be an integer in [1, 256]"),
    ("non-numeric coefficient", 'a = "3.4445"', 'a = "x"', "steps[0].coefficients.a", "coefficients =",
     "unknown symbol"),
    ("string coefficient", 'a = "3.4445"', 'a = "hello"', "steps[0].coefficients.a", "coefficients =",
     "unknown symbol 'hello'"),
    ("unknown target", 'target = "polar"', 'target = "sign"', "target", "target =", "expected one of"),
    ("bad domain", 'domain = ["1e-3", "1"]', 'domain = ["1", "1e-3"]', "domain", "domain =", "lo < hi"),
    ("undeclared variable update", 'update = { x = "a*x + b*x**3 + c*x**5" }',
     'update = { x = "a*x", w = "x" }', "steps[0].update.w", "update =", "undeclared variable"),
    ("non-polynomial", 'x = "a*x + b*x**3 + c*x**5"', 'x = "a*x + b/x"', "steps[0].update.x", "update =",
     "not a polynomial"),
    ("fractional power", 'x = "a*x + b*x**3 + c*x**5"', 'x = "a*x**(1/2)"', "steps[0].update.x", "update =",
     "powers of variables must be integers"),
    ("unknown output", 'var = "x"', 'var = "y"', "output.var", 'var = "y"', "unknown variable"),
    ("unknown top-level field", 'name = "t"', 'name = "t"\ncolour = "red"', "colour", "colour",
     "unknown top-level field"),
]


@pytest.mark.parametrize("desc,old,new,field,needle,msg", CASES, ids=[c[0] for c in CASES])
def test_spec_errors_name_file_line_field(desc, old, new, field, needle, msg):
    assert old in GOOD, desc
    text = GOOD.replace(old, new, 1)
    with pytest.raises(SpecError) as ei:
        polygen.parse_spec(text, source="bad.toml")
    e = ei.value
    assert e.source == "bad.toml"
    assert e.field == field
    assert e.line == line_of(text, needle), (e.line, str(e))
    assert msg in str(e)
    assert str(e).startswith(f"bad.toml:{e.line}:")


@pytest.mark.parametrize("missing", ["name", "target", "domain", "output"])
def test_missing_required_fields(missing):
    lines = GOOD.splitlines()
    if missing == "output":
        text = GOOD.replace('[output]\nvar = "x"\n', "")
    else:
        text = "\n".join(line for line in lines if not line.startswith(f"{missing} ="))
    with pytest.raises(SpecError, match="missing required"):
        polygen.parse_spec(text, source="m.toml")


def test_missing_steps_and_update():
    with pytest.raises(SpecError, match="missing required field 'steps'"):
        polygen.parse_spec(GOOD.split("[[steps]]")[0] + '[output]\nvar = "x"\n', source="s.toml")
    text = GOOD.replace('update = { x = "a*x + b*x**3 + c*x**5" }\n', "")
    with pytest.raises(SpecError) as ei:
        polygen.parse_spec(text, source="u.toml")
    assert ei.value.field == "steps[0].update"


def test_toml_syntax_error_has_line():
    text = GOOD.replace("repeat = 5", "repeat = = 5")
    with pytest.raises(SpecError) as ei:
        polygen.parse_spec(text, source="toml.toml")
    assert ei.value.line == line_of(text, "repeat = = 5")


def test_power_target_needs_p_in_unit_interval():
    text = GOOD.replace('target = "polar"', 'target = "power"\np = "3/2"')
    with pytest.raises(SpecError, match=r"power p must lie in \(0, 1\)") as ei:
        polygen.parse_spec(text, source="p.toml")
    assert ei.value.field == "p" and ei.value.line == 3


def test_table_columns_must_agree():
    text = GOOD.replace('repeat = 5\ncoefficients = { a = "3.4445", b = "-4.7750", c = "2.0315" }',
                        'table = { a = ["1", "2"], b = ["1"], c = ["1", "2"] }')
    with pytest.raises(SpecError, match="differ in length"):
        polygen.parse_spec(text, source="t.toml")


def test_diverging_spec_is_an_error_unless_it_opts_out():
    text = GOOD.replace('expect = "bounded"', 'expect = "converge"\ntolerance = "1e-3"')
    smap = polygen.parse_spec(text, source="d.toml")
    from polygen.passes.verify_convergence import verify_convergence

    with pytest.raises(polygen.ConvergenceError, match="does not converge") as ei:
        verify_convergence(smap)
    assert (ei.value.source, ei.value.field, ei.value.line) == ("d.toml", "verify", line_of(text, "[verify]"))
    with pytest.raises(polygen.ConvergenceError):
        polygen.generate(smap)
    ok = polygen.parse_spec(text.replace('expect = "converge"', 'expect = "none"'), source="d.toml")
    assert verify_convergence(ok).ok


INJECTIONS = [
    "__import__('os').system('touch {sentinel}')",
    "open('{sentinel}', 'w')",
    "exec(\"open('{sentinel}','w')\")",
    "(lambda: open('{sentinel}', 'w'))()",
    "x.__class__.__bases__[0].__subclasses__()",
    "[c for c in ().__class__.__base__.__subclasses__()]",
    "eval('1')",
    "sympify(\"open('{sentinel}','w')\")",
    "Symbol('x')",
    "x if x else x",
    "'a' + 'b'",
    "x @ x",
    "10**10**10",
    "a.__globals__",
]


@pytest.mark.parametrize("payload", INJECTIONS)
def test_no_spec_text_executes_code(payload, tmp_path: Path):
    sentinel = tmp_path / "pwned"
    expr = payload.format(sentinel=sentinel).replace('"', '\\"')
    text = GOOD.replace('x = "a*x + b*x**3 + c*x**5"', f'x = "{expr}"')
    with pytest.raises(SpecError) as ei:
        polygen.parse_spec(text, source="evil.toml")
    assert ei.value.field == "steps[0].update.x"
    assert not sentinel.exists()


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_arbitrary_expression_text_is_parsed_or_rejected_cleanly(expr):
    text = GOOD.replace('"a*x + b*x**3 + c*x**5"', '"""' + expr.replace('"', "").replace("\\", "") + '"""')
    try:
        polygen.parse_spec(text, source="fuzz.toml")
    except SpecError:
        pass


def test_builtin_name_must_match_file(tmp_path):
    p = tmp_path / "other.toml"
    p.write_text(GOOD)
    assert polygen.load_spec(str(p)).name == "t"  # user paths may use any name
    with pytest.raises(SpecError, match="unknown spec"):
        polygen.load_spec("no_such_spec")
