"""The frozen polynomial IR: algebra and evaluation agree with plain arithmetic."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from polygen.ir.poly import Poly

x, y = Poly.sym("x"), Poly.sym("y")


def test_algebra_matches_numbers():
    p = 3 * x + x * x * x * (-2.0) + 1.0
    q = (p * y - x) ** 2
    for xv, yv in [(0.3, -1.2), (2.0, 0.5)]:
        pv = 3 * xv - 2 * xv**3 + 1
        assert np.isclose(q.evaluate({"x": xv, "y": yv}), (pv * yv - xv) ** 2)


def test_terms_are_canonical_and_hashable():
    assert (x + y) == (y + x)
    assert hash(x * y) == hash(y * x)
    assert (x - x).is_zero()
    assert str(2 * x**3 - x) == "-1.0*x + 2.0*x**3"


def test_subs_and_degree():
    r = 1 - x * x
    p = Poly.sym("r", 3).subs({"r": r})
    assert p.degree("x") == 6 and p.constant() == 1.0
    assert p.univariate("x") == {0: 1.0, 2: -3.0, 4: 3.0, 6: -1.0}


@given(st.lists(st.floats(-3, 3), min_size=1, max_size=5), st.floats(-1.5, 1.5))
def test_evaluate_matches_horner(coeffs, xv):
    p = sum((c * x**i for i, c in enumerate(coeffs)), Poly())
    expect = 0.0
    for c in reversed(coeffs):
        expect = expect * xv + c
    assert np.isclose(p.evaluate({"x": xv}), expect, rtol=1e-9, atol=1e-9)
