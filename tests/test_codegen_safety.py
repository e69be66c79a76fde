"""Spec text reaches generated code only encoded; generated files are written safely and checked on load."""

from __future__ import annotations

import ast
import dataclasses
import glob
import os
import sys
import tomllib
import warnings
from pathlib import Path

import pytest
import tomli_w
from conftest import generated_names
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markupsafe import Markup

import polygen
from polygen import SpecError
from polygen.codegen import env
from polygen.errors import PolygenError
from polygen.runtime.files import write_atomic
from polygen.spec.names import check_name

REPO = Path(__file__).resolve().parent.parent
HOSTILE = '"""\nimport subprocess  # \r\n{{ x }}\u2028'


def test_templates_refuse_raw_strings():
    tpl = env.environment().from_string("{{ x }}")
    with pytest.raises(env.UnsafeTemplateValue):
        tpl.render(x="text")
    assert tpl.render(x=env.Code("code")) == "code" and tpl.render(x=3) == "3"
    assert tpl.render(x=env.py(HOSTILE)) == repr(HOSTILE)
    with pytest.raises(env.UnsafeTemplateValue):
        env.environment().from_string("{{ xs | join(', ') }}").render(xs=["a", env.Code("b")])
    for unsafe in ("tojson", "safe", "string"):
        assert unsafe not in env.environment().filters


@pytest.mark.parametrize("bad", ["a b", "import", "x.y", "1x", "", "a\nb", None])
def test_ident_refuses_what_is_not_an_identifier(bad):
    with pytest.raises(env.UnsafeTemplateValue):
        env.ident(bad)


@pytest.mark.parametrize("bad", ["__import__('os')", "x.y", "(1.0 + 0.5*alpha)", "alpha", None, True])
def test_scalars_are_values_never_text(bad):
    """A scalar is a number or an ir.schedule.Ref; text is refused outright (nothing is parsed back)."""
    with pytest.raises(env.UnsafeTemplateValue):
        env.scalar(bad)


@pytest.mark.parametrize("bad", ["__import__('os')", "x.y", "a b", "import", ""])
def test_run_time_scalar_names_must_be_identifiers(bad):
    from polygen.ir.schedule import Ref

    with pytest.raises(env.UnsafeTemplateValue):
        env.scalar(Ref(bad, 0.5, 1.0))


def test_run_time_scalars_print_from_their_parts():
    from polygen.ir.schedule import Ref

    assert env.scalar(Ref("alpha", 0.5, 1.0)) == "(1.0 + 0.5*alpha)"
    assert env.scalar(Ref("alpha", 2.5e-05, 1e-07)) == "(1e-07 + 2.5e-05*alpha)"
    assert env.scalar(Ref("c0")) == "c0" and env.scalar(-0.25) == "-0.25"
    assert Ref("alpha", 2.5e-05, 1e-07).value({"alpha": 2.0}) == 1e-07 + 2.5e-05 * 2.0
    # the old string form read 1e-07 as a variable e; a Ref names only what it reads
    from polygen.ir.schedule import LinComb

    op = LinComb("t", "S", terms=((Ref("alpha", 2.5e-05, 1e-07), "h0"),))
    assert op.scalar_names == ("alpha",)


def _captured_contexts(monkeypatch, spec: str) -> list[tuple[str, dict]]:
    """Every (template, context) the emitters render for ``spec``, both backends."""
    import polygen.codegen.torch_emitter as te
    import polygen.codegen.triton_emitter as tr
    from polygen.driver import clear_caches

    clear_caches()  # generate() keeps what it built: this test must watch the emitters run
    seen: list[tuple[str, dict]] = []

    def spy(template: str, **context: object) -> str:
        seen.append((template, context))
        return env.render(template, **context)

    monkeypatch.setattr(te, "render", spy)
    monkeypatch.setattr(tr, "render", spy)
    polygen.generate(spec, backend="torch")
    polygen.generate(spec, backend="triton")
    return seen


def _poison(value: object) -> object:
    """``value`` with every string in it replaced by a raw hostile str (dict keys too where they are printed
    code, not the names templates look fields up by)."""
    if isinstance(value, str):
        return HOSTILE
    if isinstance(value, dict):
        return {(_poison(k) if isinstance(k, Markup) else k): _poison(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_poison(v) for v in value)
    return value


@pytest.mark.parametrize("spec", ["muon_ns5", "prism_polar", "polar_express", "sqrt_coupled_ns"])
def test_every_template_field_refuses_raw_hostile_text(monkeypatch, spec):
    """Render every template the emitters use with hostile raw text in each field in turn: it either raises
    or never prints it. The fields that carry text must raise (so this test can fail)."""
    contexts = _captured_contexts(monkeypatch, spec)
    assert {t for t, _ in contexts} == {"torch/module.py.jinja", "triton/module.py.jinja"}
    raised = set()
    for template, context in contexts:
        for key in context:
            bad = dict(context, **{key: _poison(context[key])})
            try:
                out = env.render(template, **bad)
            except env.UnsafeTemplateValue:
                raised.add(key)
                continue
            except Exception:  # noqa: BLE001 - hostile control values may break the template's own logic
                continue
            assert "import subprocess" not in out and "{{ x }}" not in out, (template, key)
    required = {"header", "docstring", "name_literal", "functions", "plans"}
    required |= {"tables"} if any(ctx.get("tables") for _, ctx in contexts) else set()
    assert raised >= required


def test_hostile_description_and_label_stay_literals():
    text = (REPO / "polygen/specs/muon_ns5.toml").read_text()
    text = text.replace('name = "muon_ns5"', 'name = "evil"')
    text = text.replace("[[steps]]", f"[[steps]]\nlabel = {tomli_w.dumps({'l': HOSTILE})[4:].strip()}", 1)
    text = text.replace("\ndescription = ", f"\ndescription = {tomli_w.dumps({'d': HOSTILE})[4:].strip()}\n#", 1)
    smap = polygen.parse_spec(text, source='odd"\nname.toml')
    for backend in ("torch", "triton"):
        src = polygen.generate(smap, backend=backend)
        tree = ast.parse(src)
        assert ast.get_docstring(tree).startswith(HOSTILE)
        imports = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        assert "subprocess" not in imports
        assert src.count(repr(HOSTILE)) >= 1 and "\nimport subprocess  #" not in src


def test_spec_names_are_checked_against_what_generated_code_binds():
    """RESERVED covers every lower-case name the generated modules bind at module level or use in a plan
    function, except the spec's own fitted parameters: a template binding a new name fails here."""
    fitted = {"alpha"}
    for path in glob.glob(str(REPO / "generated" / "*" / "*.py")):
        names = generated_names(Path(path).read_text())
        for name in sorted(n for n in names if n[:1].islower() and n not in fitted):
            with pytest.raises(ValueError):
                check_name(name, "fitted parameter", in_code=True)


def test_hand_edited_generated_file_is_reported_not_run(monkeypatch, tmp_path):
    import polygen.runtime.loader as loader

    gen = tmp_path / "generated" / "torch"
    gen.mkdir(parents=True)
    text = (REPO / "generated/torch/muon_ns5.py").read_text()
    edited = text.replace("\nimport torch\n", "\nimport torch\nEDITED = True\n", 1)
    assert edited != text
    (gen / "muon_ns5.py").write_text(edited)
    monkeypatch.setattr(loader, "GENERATED_DIR", tmp_path / "generated")
    monkeypatch.setattr(loader, "CACHE_DIR", tmp_path / "cache")
    for key in [k for k in sys.modules if k.startswith("polygen_generated.torch.muon_ns5")]:
        monkeypatch.delitem(sys.modules, key)
    with pytest.warns(UserWarning, match="edited by hand"):
        mod = loader.module_for("muon_ns5", "torch")
    assert not hasattr(mod, "EDITED") and Path(mod.__file__).is_relative_to(tmp_path / "cache")
    # the untouched file is taken as is, without a warning
    (gen / "muon_ns5.py").write_text(text)
    for key in [k for k in sys.modules if k.startswith("polygen_generated.torch.muon_ns5")]:
        monkeypatch.delitem(sys.modules, key)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mod = loader.module_for("muon_ns5", "torch")
    assert Path(mod.__file__) == gen / "muon_ns5.py"


def test_write_atomic_never_follows_a_planted_link(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    out = tmp_path / "out"
    out.mkdir()
    target = out / "spec.py"
    target.symlink_to(victim)
    (out / "spec.py.tmp").symlink_to(victim)  # the old predictable temporary name
    write_atomic(target, "new")
    assert victim.read_text() == "keep"
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask  # as readable as a file written with open()
    assert target.read_text() == "new" and not target.is_symlink()
    assert sorted(p.name for p in out.iterdir()) == ["spec.py", "spec.py.tmp"]


def test_planted_cache_file_is_replaced_not_imported(monkeypatch, tmp_path):
    import polygen.runtime.loader as loader

    monkeypatch.setattr(loader, "CACHE_DIR", tmp_path)
    text = (REPO / "polygen/specs/muon_ns5.toml").read_text().replace('name = "muon_ns5"', 'name = "mine"')
    spec = tmp_path / "mine.toml"
    spec.write_text(text)
    planted = loader.cache_path(polygen.spec.spec_hash(text), "torch", "mine")  # the name the loader will use
    sentinel = tmp_path / "PWNED"
    planted.write_text(f"# spec sha256: {polygen.spec.spec_hash(text)}\nopen({str(sentinel)!r}, 'w')\n")
    polygen.load(spec, backend="torch")
    assert not sentinel.exists()
    assert "open(" not in planted.read_text()  # replaced by the compiled module


def test_build_keeps_built_in_files_and_its_output_folder(tmp_path, monkeypatch):
    """A user spec named like a built-in may not replace the built-in's file in the shipped tree; any other
    folder may hold it (issue 23: it was refused everywhere)."""
    from polygen.driver import build
    from polygen.runtime import loader

    shipped = tmp_path / "shipped"
    (shipped / "torch").mkdir(parents=True)
    monkeypatch.setattr(loader, "GENERATED_DIR", shipped)
    text = (REPO / "polygen/specs/muon_ns5.toml").read_text()
    mine = tmp_path / "muon_ns5.toml"
    mine.write_text(text.replace("repeat = 5", "repeat = 6"))
    with pytest.raises(SpecError) as ei:
        build([str(mine)], out=shipped, backends=("torch",))
    assert ei.value.field == "name" and "built-in" in str(ei.value)
    assert mine.read_text().splitlines()[ei.value.line - 1].startswith("name = ")
    assert not list((shipped / "torch").iterdir())
    assert list(build([str(mine)], out=tmp_path / "gen", backends=("torch",))) == [tmp_path / "gen/torch/muon_ns5.py"]
    mine.write_text(text)  # the built-in's own text may be built anywhere
    assert list(build([str(mine)], out=shipped, backends=("torch",))) == [shipped / "torch/muon_ns5.py"]

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (tmp_path / "gen2").mkdir()
    (tmp_path / "gen2" / "torch").symlink_to(outside)
    with pytest.raises(PolygenError, match="outside the output folder"):
        build(["muon_ns5"], out=tmp_path / "gen2", backends=("torch",))
    assert not list(outside.iterdir())


def test_verifier_checks_the_target_of_the_unnormalized_input():
    """A root left at the normalized matrix's scale is refused by the parser and caught by the verifier."""
    from polygen.ir.spectral import Output
    from polygen.passes.verify_convergence import verify_map

    smap = polygen.load_spec("inv_root_2")
    assert verify_map(smap).ok and verify_map(smap).scale_error < 1e-6
    unscaled = dataclasses.replace(smap, outputs=(Output(smap.output.var, "none", 0.0),))
    rep = verify_map(unscaled)
    assert not rep.ok and rep.scale_error > 5.0  # s = 100: 100**0.5 - 1 = 900 %
    assert any('rescale = "norm", exponent = -0.5' in f for f in rep.failures)


# -- whole spec files from hypothesis: parse or SpecError, nothing else -------------------------------------

KNOWN = ["name", "description", "target", "p", "r", "domain", "input", "variables", "steps", "output", "verify",
         "hints", "kind", "init", "repeat", "coefficients", "table", "let", "update", "label", "fit", "param",
         "interval", "residual", "sketch", "symbol", "norm", "safety", "eps", "var", "rescale", "exponent",
         "expect", "tolerance", "lower", "upper", "form", "restart_every", "force", "x", "y", "g", "a", "b"]
EXPR_ATOMS = ["x", "y", "g", "a", "b", "r", "1", "2.5", "1e-3", "10**400", "E", "pi", "sqrt(2)", "exp(3)", "x**5",
              "(x + x**3)", "1/0", "__import__", "x.y", "'s'", "-", "+", "*", "**", "/", "(", ")", ",", " "]
keys = st.one_of(st.sampled_from(KNOWN), st.text(alphabet="abcxyz_ -.é\"'", min_size=1, max_size=8))
exprs = st.lists(st.sampled_from(EXPR_ATOMS), min_size=1, max_size=12).map("".join)
scalars = st.one_of(exprs, st.sampled_from(["polar", "power", "inverse_root", "sqrt", "rectangular", "symmetric",
                                           "frobenius", "norm", "rms", "none", "converge", "bounded", "exact"]),
                    st.integers(min_value=-2**70, max_value=2**70), st.floats(allow_nan=False), st.booleans(),
                    st.text(max_size=30))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(keys, inner, max_size=5)), max_leaves=25)
BASE_DOC = tomllib.loads((REPO / "polygen/specs/muon_ns5.toml").read_text())


def _mutate(doc: dict, path: list, value: object) -> dict:
    """``doc`` with the value at ``path`` (keys, created as needed) replaced."""
    out = dict(doc)
    node = out
    for key in path[:-1]:
        child = node.get(key)
        child = dict(child) if isinstance(child, dict) else {}
        node[key] = child
        node = child
    node[path[-1]] = value
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(
    st.dictionaries(keys, values, max_size=8),  # random documents
    st.builds(_mutate, st.just(BASE_DOC), st.lists(keys, min_size=1, max_size=3), values),  # one field off
))
def test_random_spec_files_parse_or_raise_spec_error(doc):
    try:
        text = tomli_w.dumps(doc)
    except (TypeError, ValueError):
        return  # not representable as TOML
    try:
        smap = polygen.parse_spec(text, source="random.toml")
    except SpecError as e:
        assert e.source == "random.toml" and e.line is not None
        return
    assert smap.total_steps >= 1


def test_spec_path_names_are_identifiers_not_paths(tmp_path):
    with pytest.raises(SpecError, match="neither a built-in spec name"):
        polygen.load_spec("../specs/muon_ns5")
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b'name = "caf\xe9"\n')
    with pytest.raises(SpecError, match="not UTF-8") as ei:
        polygen.load_spec(bad)
    assert ei.value.line == 1


def test_the_demos_broken_spec_is_refused_with_the_fix():
    """`make demo` shows this refusal; it must stay a refusal naming the line and the missing rescale."""
    with pytest.raises(SpecError) as ei:
        polygen.load_spec(REPO / "docs/examples/unscaled_root.toml")
    assert ei.value.field == "output.rescale" and 'exponent = "-1/2"' in str(ei.value)
    text = (REPO / "docs/examples/unscaled_root.toml").read_text()
    assert text.splitlines()[ei.value.line - 1] == "[output]"
