"""polygen.fit.minimax: Polar Express greedy minimax design (arXiv 2505.16932) and the specs it writes."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import polygen
from polygen.fit import MinimaxDesign, minimax
from polygen.fit.minimax import (
    DEFAULT_CUSHION,
    cubic_minimax,
    error_after_budget,
    flat_polynomial,
    odd_eval,
    remez_odd,
    scale_argument,
)
from polygen.passes.verify_convergence import verify_map

# Amsel et al., Alg. 1: degree 5, l = 1e-3, cushion 0.02407327424182761, no safety factor.
PUBLISHED = [
    (8.28721201814563, -23.595886519098837, 17.300387312530933),
    (4.107059111542203, -2.9478499167379106, 0.5448431082926601),
    (3.9486908534822946, -2.908902115962949, 0.5518191394370137),
    (3.3184196573706015, -2.488488024314874, 0.51004894012372),
    (2.300652019954817, -1.6689039845747493, 0.4188073119525673),
    (1.891301407787398, -1.2679958271945868, 0.37680408948524835),
    (1.8750014808534479, -1.2500016453999487, 0.3750001645474248),
    (1.875, -1.25, 0.375),
]


@pytest.fixture(scope="module")
def pe8() -> MinimaxDesign:
    return minimax(5, 8, 1e-3)


def test_reproduces_published_table(pe8: MinimaxDesign) -> None:
    assert pe8.degree == 5 and pe8.steps == 8
    got = np.array(pe8.raw_coefficients)
    np.testing.assert_allclose(got, np.array(PUBLISHED), rtol=1e-6)


def test_published_worst_case_errors(pe8: MinimaxDesign) -> None:
    # the paper: about 0.124 after 5 steps and 1.2e-3 after 6 on [1e-3, 1]
    assert pe8.errors[4] == pytest.approx(0.124, abs=1e-3)
    assert pe8.errors[5] == pytest.approx(1.2e-3, rel=0.05)
    assert all(a > b for a, b in zip(pe8.errors, pe8.errors[1:]))
    assert pe8.errors[-1] < 1e-14


def test_bounds_and_errors_are_consistent(pe8: MinimaxDesign) -> None:
    assert pe8.bounds[0] == (1e-3, 1.0)
    for err, (nlo, nhi) in zip(pe8.errors, pe8.bounds[1:]):
        assert nlo == pytest.approx(1.0 - err) and nhi == pytest.approx(2.0 - nlo)


def test_safety_factor_applied_to_all_but_last(pe8: MinimaxDesign) -> None:
    for raw, safe in zip(pe8.raw_coefficients[:-1], pe8.coefficients[:-1]):
        assert safe == pytest.approx(scale_argument(raw, 1.01))
        x = np.linspace(0.0, 1.0, 11)
        np.testing.assert_allclose(odd_eval(safe, x), odd_eval(raw, x / 1.01), rtol=1e-13, atol=1e-15)
    assert pe8.coefficients[-1] == pe8.raw_coefficients[-1]


@pytest.mark.parametrize("degree,steps", [(3, 10), (5, 6), (7, 5), (9, 4)])
def test_guarantee_matches_the_composition(degree: int, steps: int) -> None:
    d = minimax(degree, steps, 1e-3, safety=1.0)
    assert d.measured_error(safe=False) == pytest.approx(d.final_error, rel=1e-8, abs=1e-15)


@pytest.mark.parametrize("lo", [1e-3, 0.024, 0.1, 0.5, 0.9, 0.99])
def test_cubic_closed_form_matches_remez(lo: float) -> None:
    closed = cubic_minimax(lo, 1.0)
    res = remez_odd(3, lo, 1.0)
    np.testing.assert_allclose(res.coefficients, closed, rtol=1e-10)
    assert abs(res.error) == pytest.approx(1.0 - odd_eval(closed, lo), rel=1e-9)


def _assert_equioscillates(degree: int, lo: float, hi: float) -> None:
    res = remez_odd(degree, lo, hi)
    n = degree // 2 + 1
    pts = np.array(res.points)
    assert len(pts) == n + 1 and pts[0] == pytest.approx(lo) and pts[-1] == pytest.approx(hi)
    assert np.all(np.diff(pts) > 0)
    e = odd_eval(res.coefficients, pts) - 1.0
    signs = -((-1.0) ** np.arange(n + 1))  # below 1 at lo, then alternating
    np.testing.assert_allclose(e, signs * res.error, rtol=1e-7, atol=1e-13)
    x = np.linspace(lo, hi, 100001)
    assert np.max(np.abs(odd_eval(res.coefficients, x) - 1.0)) <= abs(res.error) * (1 + 1e-7) + 1e-14


def test_each_published_step_equioscillates(pe8: MinimaxDesign) -> None:
    for (lo, hi), raw in zip(pe8.bounds, pe8.raw_coefficients):
        design_lo = max(lo, DEFAULT_CUSHION * hi)
        if 1.0 - odd_eval(flat_polynomial(5, hi), design_lo) < 1e-12:
            continue  # converged steps use the maximally flat polynomial
        _assert_equioscillates(5, design_lo, hi)
        # the step is that polynomial, re-centred by a positive scalar
        res = remez_odd(5, design_lo, hi)
        ratio = np.array(raw) / np.array(res.coefficients)
        np.testing.assert_allclose(ratio, ratio[0], rtol=1e-9)


@settings(max_examples=15, deadline=None)
@given(degree=st.sampled_from([5, 7, 9]), lo=st.floats(0.01, 0.9))
def test_remez_equioscillates(degree: int, lo: float) -> None:
    _assert_equioscillates(degree, lo, 1.0)


def test_flat_polynomial_is_newton_schulz() -> None:
    assert flat_polynomial(3) == pytest.approx((1.5, -0.5))
    assert flat_polynomial(5) == pytest.approx((15 / 8, -10 / 8, 3 / 8))


def test_higher_degree_wins_per_matmul_where_it_does() -> None:
    # a degree-(2k+1) step costs k+1 matmuls; compare the guaranteed error after the same budget on [1e-3, 1]
    def err(degree: int, budget: int) -> float:
        return error_after_budget(degree, budget, 1e-3)[1]

    assert err(7, 20) < err(5, 20)  # 5 degree-7 steps (20 matmuls) beat 6 degree-5 steps (18)
    assert err(7, 8) < err(5, 8)
    assert err(9, 5) < err(5, 5)  # one degree-9 step beats one degree-5 step
    # ... but not everywhere: at 12 and 15 matmuls degree 5 is better than both
    assert err(5, 12) < min(err(7, 12), err(9, 12))
    assert err(5, 15) < min(err(7, 15), err(9, 15))


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        minimax(4, 3, 1e-3)
    with pytest.raises(ValueError):
        minimax(5, 0, 1e-3)
    with pytest.raises(ValueError):
        minimax(5, 3, 0.0)


def test_to_toml_converging_spec(pe8: MinimaxDesign) -> None:
    text = pe8.to_toml("pe_fit_8")
    doc = tomllib.loads(text)
    assert doc["target"] == "polar" and doc["domain"] == ["0.001", "1"]
    assert doc["input"] == {"norm": "frobenius", "safety": "1.01", "eps": "1e-7"}
    assert doc["variables"]["x"] == {"kind": "rectangular", "init": "g"}
    first, last = doc["steps"]
    assert sorted(first["table"]) == ["c1", "c3", "c5"] and len(first["table"]["c1"]) == 7
    assert first["let"] == {"u": "x/1.01"}
    assert first["update"] == {"x": "c1*u + c3*u**3 + c5*u**5"}
    assert "let" not in last and last["update"] == {"x": "c1*x + c3*x**3 + c5*x**5"}
    assert float(last["coefficients"]["c1"]) == pytest.approx(1.875, rel=1e-6)
    assert doc["output"]["var"] == "x"
    assert doc["verify"]["expect"] == "converge" and float(doc["verify"]["tolerance"]) <= 1e-10
    rep = verify_map(polygen.parse_spec(text, source="<fit>"))
    assert rep.ok, str(rep)


def test_to_toml_tolerance_and_bounded() -> None:
    five = minimax(5, 5, 1e-3)
    doc = tomllib.loads(five.to_toml("pe5"))
    tol = float(doc["verify"]["tolerance"])
    assert doc["verify"]["expect"] == "converge" and five.final_error < tol < 1.3 * five.measured_error()
    assert verify_map(polygen.parse_spec(five.to_toml("pe5"), source="<fit>")).ok
    three = minimax(5, 3, 1e-3)  # error 0.87: not converged, so the spec claims boundedness
    doc = tomllib.loads(three.to_toml("pe3"))
    assert doc["verify"]["expect"] == "bounded"
    assert verify_map(polygen.parse_spec(three.to_toml("pe3"), source="<fit>")).ok
    one = minimax(7, 1, 0.5)  # a single step: no safety block
    doc = tomllib.loads(one.to_toml("pe1"))
    assert len(doc["steps"]) == 1 and sorted(doc["steps"][0]["coefficients"]) == ["c1", "c3", "c5", "c7"]
    assert verify_map(polygen.parse_spec(one.to_toml("pe1"), source="<fit>")).ok


def test_cli_minimax(tmp_path, capsys) -> None:
    from polygen.cli import main

    out = tmp_path / "pe.toml"
    assert main(["fit", "minimax", "--degree", "5", "--steps", "6", "--lower", "1e-3", "--name", "pe6",
                 "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "guaranteed err" in err and "error per matmul" in err and "deg 9" in err
    spec = polygen.parse_spec(out.read_text(), source=str(out))
    assert spec.name == "pe6" and verify_map(spec).ok
    assert main(["fit", "minimax", "--steps", "2", "--lower", "0.1"]) == 0
    assert 'target = "polar"' in capsys.readouterr().out
