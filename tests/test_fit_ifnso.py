"""polygen.fit.ifnso: IFNSO's single high-degree polynomial (arXiv 2602.02500); polygen/specs/ifnso_14.toml (the
published coefficients) and ifnso_14_fit.toml (polygen's refit of the paper's procedure)."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import numpy as np
import pytest

import polygen
from polygen.fit import IfnsoDesign, fit_ifnso
from polygen.fit.ifnso import PAPER_BOUND, coefficient_total, ifnso_map, last_coefficient
from polygen.ir.evaluate import output_map
from polygen.passes.verify_convergence import verify_map

SPEC = Path(polygen.__file__).parent / "specs" / "ifnso_14.toml"
FIT_SPEC = SPEC.with_name("ifnso_14_fit.toml")
PUBLISHED = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "ifnso_published.toml"


def _shipped(spec: Path = SPEC) -> IfnsoDesign:
    doc = tomllib.loads(spec.read_text())
    coeffs = doc["steps"][0]["coefficients"]
    a = tuple(float(coeffs[f"a{k}"]) for k in range(1, 14))
    return IfnsoDesign(N=14, a=a, c_last=last_coefficient(a, 14), source="shipped")


def _reference(a, c, x: np.ndarray) -> np.ndarray:
    """Independent float64 evaluation as a function of r = 1 − x² (np.power, no repeated squaring)."""
    r = 1.0 - x * x
    terms = sum(ak * np.power(r, 2 ** k) for k, ak in enumerate(a))
    return x * (1.0 + terms + c * np.power(r, 2 ** len(a)))


def test_constraint_and_slope() -> None:
    assert coefficient_total(14) == pytest.approx(math.sqrt(math.e) * 127)
    d = _shipped()
    assert sum(d.coefficients) == pytest.approx(coefficient_total(14), rel=1e-12)
    assert all(ak > 0 for ak in d.a)
    # f(0) = 0, slope at 0 = 1 + sqrt(e)*(2^7 - 1) (the point of the constraint)
    assert d.evaluate(0.0) == 0.0
    assert d.evaluate(1e-9) / 1e-9 == pytest.approx(1 + coefficient_total(14), rel=1e-6)


def test_shipped_spec_is_the_published_set_and_meets_the_paper_bound() -> None:
    """ifnso_14 holds the authors' coefficients (as shared/data records them, magnitudes of the checkpoint's
    float32 values) and meets the paper's max |f - 1| <= 0.0073 on [0.05, 1]; the refit misses it by 5 %."""
    d = _shipped()
    if PUBLISHED.is_file():  # the record lives beside the checkout, not in the wheel
        published = tomllib.loads(PUBLISHED.read_text())
        assert d.a == tuple(published["a"])
        assert d.c_last == pytest.approx(published["c14"], rel=1e-15)
    x = np.linspace(0.05, 1.0, 400001)
    err = float(np.max(np.abs(_reference(d.a, d.c_last, x) - 1.0)))
    # the paper prints its bound to four decimals: 7.341e-3 is its 0.0073
    assert round(err, 4) <= PAPER_BOUND and err == pytest.approx(7.341e-3, abs=1e-6)
    assert d.max_error() == pytest.approx(err, rel=1e-3)
    assert err <= float(tomllib.loads(SPEC.read_text())["verify"]["tolerance"])
    fit = _shipped(FIT_SPEC)
    fit_err = float(np.max(np.abs(_reference(fit.a, fit.c_last, x) - 1.0)))
    assert round(fit_err, 4) > PAPER_BOUND and fit_err <= 1.1 * PAPER_BOUND  # polygen's refit: 7.64e-3
    assert fit_err <= float(tomllib.loads(FIT_SPEC.read_text())["verify"]["tolerance"])


def test_spec_pipeline_evaluates_in_r() -> None:
    spec = polygen.load_spec("ifnso_14")
    assert spec.domain == (0.05, 1.0) and spec.target == "polar" and spec.total_steps == 1
    d = _shipped()
    x = np.linspace(0.0, 1.0, 20001)
    np.testing.assert_allclose(output_map(spec, x), _reference(d.a, d.c_last, x), rtol=1e-12, atol=1e-12)
    rep = verify_map(spec)
    assert rep.ok, str(rep)


def test_map_matches_direct_evaluation() -> None:
    rng = np.random.default_rng(0)
    a = rng.uniform(0.0, 5.0, 13)
    c = last_coefficient(a, 14)
    x = np.linspace(0.0, 1.0, 5001)
    np.testing.assert_allclose(ifnso_map(a, c, x), _reference(a, c, x), rtol=1e-12, atol=1e-12)


def test_fit_reproduces_the_procedure_fast() -> None:
    # a reduced budget of the paper's Adam/MSE procedure already lands within 2x of the paper's bound
    d = fit_ifnso(N=14, grid=1000, steps=3000, lr=0.1, seed=0)
    assert d.N == 14 and len(d.coefficients) == 14 and all(ak > 0 for ak in d.a)
    assert sum(d.coefficients) == pytest.approx(coefficient_total(14))
    assert d.max_error() <= 2 * PAPER_BOUND
    text = d.to_toml("ifnso_fit")
    doc = tomllib.loads(text)
    assert doc["domain"] == ["0.05", "1"] and doc["steps"][0]["let"] == {"r": "1 - x**2"}
    assert doc["steps"][0]["update"]["x"].startswith("x*(1 + a1*r + a2*r**2 + a3*r**4")
    assert doc["steps"][0]["update"]["x"].endswith("c14*r**8192)")
    assert doc["verify"]["expect"] == "converge"
    assert verify_map(polygen.parse_spec(text, source="<fit>")).ok


REFIT_SLACK = 0.05  # a refit's worst error may exceed the shipped table's by this fraction (docs/regenerating.md)


@pytest.mark.slow
def test_fit_full_budget_matches_shipped() -> None:
    """The Regenerate command of ifnso_14_fit reaches the shipped table's worst error within REFIT_SLACK: Adam
    on an MSE lands on slightly different coefficients per BLAS build (7.81e-3 here against the shipped
    7.64e-3), so the coefficients are not pinned, their error is; all stay positive, the constraint exact."""
    d = fit_ifnso()
    assert d.max_error() <= (1 + REFIT_SLACK) * _shipped(FIT_SPEC).max_error()
    assert all(ak > 0 for ak in d.a) and sum(d.coefficients) == pytest.approx(coefficient_total(14))


def test_cli_ifnso(tmp_path, capsys) -> None:
    from polygen.cli import main

    out = tmp_path / "ifnso.toml"
    assert main(["fit", "ifnso", "--N", "6", "--steps-adam", "20", "--seed", "1", "-o", str(out)]) == 0
    assert "IFNSO N = 6" in capsys.readouterr().err
    spec = polygen.parse_spec(out.read_text(), source=str(out))
    assert spec.name == "ifnso_6"


def test_both_ifnso_specs_cost_the_same_fifteen_matmuls() -> None:
    """The published set and the refit share one form: R = I − XXᵀ, 13 squarings, the final product (15)."""
    for name in ("ifnso_14", "ifnso_14_fit"):
        plan = polygen.schedule(name, (512, 2048))
        assert plan.matmuls == 15 and plan.form == "direct", (name, plan.matmuls)
