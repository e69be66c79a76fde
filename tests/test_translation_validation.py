"""Translation validation: the driver interprets every plan on the domain and compares it with the spectral map
before any code is emitted, so a lowering slip is a ScheduleError at build time, never a wrong module.

Each test injects a slip into a pass (a dropped epilogue constant, a dropped term, two symbols merged into one
schedule name as issue 23's ``canonical()`` did) and asserts that ``polygen build`` refuses."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction

import pytest

import polygen
import polygen.passes.validate_translation as vt
from polygen import driver
from polygen.errors import ScheduleError
from polygen.ir.names import Namer
from polygen.ir.poly import Poly
from polygen.passes import builder

COLLIDING_SQRT = (
    'name = "sqrt_g_g_"\ntarget = "sqrt"\ndomain = ["1e-5", "1"]\n'
    '[input]\nkind = "symmetric"\nsymbol = "u"\neps = "1e-30"\n'
    '[variables.g]\nkind = "symmetric"\ninit = "u"\n[variables.g_]\nkind = "symmetric"\ninit = "1"\n'
    '[[steps]]\nrepeat = 18\nlet = { t = "3/2 - g_*g/2" }\nupdate = { g = "g*t", g_ = "t*g_" }\n'
    '[output]\nvar = "g"\nrescale = "norm"\nexponent = "1/2"\n[verify]\nexpect = "converge"\ntolerance = "1e-6"\n'
)


@pytest.fixture(autouse=True)
def fresh_compiler() -> Iterator[None]:
    """Every test builds from scratch, and leaves nothing it built with a slip in the driver's caches."""
    driver.clear_caches()
    yield
    driver.clear_caches()


def test_every_built_in_plan_passes(tmp_path):
    """Both directions of the check: the built-ins (every dtype class and form) build as they are."""
    assert driver.build(out=tmp_path, backends=("torch",))


def test_every_distinct_plan_of_every_dtype_class_is_interpreted(monkeypatch):
    seen = []
    real = vt.interpret
    monkeypatch.setattr(vt, "interpret", lambda sched, x, **k: seen.append(sched) or real(sched, x, **k))
    stages = driver.compile_stages("muon_ns5")
    distinct = {id(s) for forms in stages.plans.values() for s in forms.values()}
    assert {id(s) for s in seen} == distinct and len(seen) == len(distinct) >= 2


def test_a_dropped_epilogue_constant_is_refused(monkeypatch, tmp_path):
    """The builder folds k0·I into a product's gamma; forgetting it changes every Newton-Schulz step."""
    real = builder._scaled
    monkeypatch.setattr(builder, "_scaled", lambda op, k1, k0: real(op, k1, 0.0))
    with pytest.raises(ScheduleError, match=r"sqrt_coupled_ns .*direct plan .* at x = .*compiler bug"):
        driver.build(["sqrt_coupled_ns"], out=tmp_path, backends=("torch",))
    assert not list(tmp_path.rglob("*.py"))  # nothing was written


def test_a_dropped_term_in_the_gram_plan_is_refused(monkeypatch, tmp_path):
    """The Gram plan's h(R) loses its highest term (the direct plan is untouched): that plan alone is caught."""
    import polygen.passes.plan_gram_space as pgs

    real = pgs.carriers

    def lossy(poly, rect):  # type: ignore[no-untyped-def]
        return {k: Poly.from_dict(dict(h.terms[:-1])) for k, h in real(poly, rect).items()}

    monkeypatch.setattr(pgs, "carriers", lossy)
    with pytest.raises(ScheduleError, match=r"muon_ns5 .*the gram plan for float32 does not compute"):
        driver.build(["muon_ns5"], out=tmp_path, backends=("torch",))


def test_two_symbols_merged_into_one_name_are_refused(monkeypatch, tmp_path):
    """Issue 23's lowering (g and g_ both G_), bypassing the Namer's own check: the interpreter runs the
    schedule by its names, so the merged variable computes another function and the build refuses."""
    monkeypatch.setattr(Namer, "matrix", lambda self, var: var.upper() if var.upper() != "G" else "G_")
    spec = tmp_path / "sqrt_g_g_.toml"
    spec.write_text(COLLIDING_SQRT)
    with pytest.raises(ScheduleError, match=r"sqrt_g_g_ .*direct plan"):
        driver.build([str(spec)], out=tmp_path / "out", backends=("torch",))
    monkeypatch.undo()
    driver.clear_caches()
    assert driver.build([str(spec)], out=tmp_path / "out", backends=("torch",))


def test_user_and_recovered_specs_are_validated(monkeypatch):
    """Not only the built-ins: a user's spec text and the compile backend's recovered loop go through it too."""
    from polygen.compile.graph_pass import spec_text_for

    calls = []
    real = driver.validate_translation
    monkeypatch.setattr(driver, "validate_translation",
                        lambda smap, plans: calls.append(smap.name) or real(smap, plans))
    polygen.generate(polygen.parse_spec(COLLIDING_SQRT, source="<user>"))
    ns5 = (Fraction(0), Fraction("3.4445"), Fraction(0), Fraction("-4.7750"), Fraction(0), Fraction("2.0315"))
    polygen.generate(polygen.parse_spec(spec_text_for([ns5] * 5, "torch.float32"), source="<recovered>"))
    assert calls[0] == "sqrt_g_g_" and calls[1].startswith("recovered_")


def test_plan_intermediates_narrow_the_dtypes_a_module_runs_in():
    """The interpreter bounds every plan's intermediates (a Gram plan's Q, which the map never shows): the Gram
    plan of muon_ns5 reaches more than its map's largest value, and a dtype class whose plans would overflow
    its dtype is dropped from FINITE_DTYPES, or refused outright when it is float32 or float64."""
    from dataclasses import replace

    from polygen.errors import ConvergenceError
    from polygen.passes.verify_convergence import with_plan_peaks

    smap = polygen.load_spec("muon_ns5")
    stages = driver.lower(smap)
    peaks = driver._normalized_plans(smap)[2]
    assert peaks["float32"] > stages.report.largest  # Q = p(x)/x near 0, the map's slope there (3.4445^5)
    assert stages.report.finite_dtypes == ("float32", "bfloat16", "float16", "float64")
    narrowed = with_plan_peaks(smap, stages.report, dict(peaks, float16=1e4))
    assert narrowed.finite_dtypes == ("float32", "bfloat16", "float64")
    with pytest.raises(ConvergenceError, match=r"not finite in float32: an intermediate of the float32 plans"):
        with_plan_peaks(smap, replace(stages.report), dict(peaks, float32=1e38))
