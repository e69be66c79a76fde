"""PRISM: fitted step parameters derived with SymPy, fitted on the device from sketched residual powers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar

import polygen
from polygen import SpecError
from polygen.runtime.loader import module_for
from polygen.runtime.reference import matrix_power_sym, random_with_spectrum
from tests.conftest import rel_err


def test_next_residual_is_derived_symbolically():
    fit = polygen.load_spec("prism_polar").steps[0].fit
    # R⁺ = I − (I − R)(I + R/2 + αR²)²  =  (3/4 R² + 1/4 R³) + α(−2R² + R³ + R⁴) + α²(R⁵ − R⁴)
    got = [c.univariate("r") for c in fit.coeffs]
    assert got == [{2: 0.75, 3: 0.25}, {2: -2.0, 3: 1.0, 4: 1.0}, {4: -1.0, 5: 1.0}]
    assert fit.degree == 5 and (fit.lo, fit.hi) == (0.375, 1.45) and fit.sketch == 8
    # the coupled square root has the same residual algebra (R = I − ZY)
    sq = polygen.load_spec("prism_sqrt").steps[0].fit
    assert [c.univariate("r") for c in sq.coeffs] == got


def _residual_objective(R: np.ndarray, a: float) -> float:
    eye = np.eye(R.shape[-1])
    H = eye + R / 2 + a * R @ R
    Rn = eye - (eye - R) @ H @ H
    return float(np.sum(Rn**2))


def _random_residual(m=48, seed=0, lo=0.5):
    """R = I − XXᵀ for singular values of X spread over [lo, 1]: the optimal α is inside the interval."""
    s = torch.linspace(1.0, lo, m, dtype=torch.float64)
    X = random_with_spectrum((m, 3 * m), seed=seed, spectrum=s, dtype=torch.float64)
    return torch.eye(m, dtype=torch.float64) - X @ X.mT


def _fit(R: torch.Tensor, powers: list[torch.Tensor]) -> float:
    mod = module_for("prism_polar", "torch")
    fit = polygen.load_spec("prism_polar").steps[0].fit
    data = tuple(tuple(c.univariate("r").get(j, 0.0) for j in range(6)) for c in fit.coeffs)
    return float(mod._fit_param(powers, data, fit.lo, fit.hi).reshape(-1)[0])


def test_exact_fit_equals_float64_reference_minimiser():
    for seed, lo in enumerate((0.3, 0.5, 0.8)):
        R = _random_residual(seed=seed, lo=lo)
        powers = [torch.linalg.matrix_power(R, j)[None] for j in range(6)]
        alpha = _fit(R, powers)
        Rn = R.numpy()
        ref = minimize_scalar(lambda a, Rn=Rn: _residual_objective(Rn, a), bounds=(0.375, 1.45),
                              method="bounded", options={"xatol": 1e-10}).x
        assert 0.4 < ref < 1.4  # an interior optimum: the test can tell a wrong fit from the boundary
        assert alpha == pytest.approx(ref, abs=2e-4)


def test_sketched_fit_converges_to_exact_as_the_sketch_grows():
    R = _random_residual(m=64, seed=1, lo=0.4)
    exact = _fit(R, [torch.linalg.matrix_power(R, j)[None] for j in range(6)])
    errs = []
    for p in (2, 8, 32, 128):
        e = []
        for seed in range(8):
            S = torch.randn(1, p, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)) / p**0.5
            powers = [S]
            for _ in range(5):
                powers.append(powers[-1] @ R)
            e.append(abs(_fit(R, powers) - exact))
        errs.append(float(np.mean(e)))
    assert errs[0] > 0.01 and errs[-1] < errs[1] < errs[0] and errs[-1] < 0.02, errs


def test_prism_beats_polar_express_on_a_gaussian_2048x512():
    """The PRISM paper's claim: after 5 steps ‖I − XᵀX‖_F is far below Polar Express's."""
    torch.manual_seed(0)
    G = torch.randn(2048, 512)
    eye = torch.eye(512, dtype=torch.float64)
    res = {}
    for name in ("prism_polar", "polar_express"):
        Y = polygen.load(name, backend="torch")(G).double()
        res[name] = float(torch.linalg.norm(eye - Y.mT @ Y))
    assert res["prism_polar"] < 0.05 * res["polar_express"], res


def test_prism_sqrt_against_eigh():
    f = polygen.load("prism_sqrt", backend="torch")
    for cond in (1e2, 1e4):
        A = random_with_spectrum((2, 96, 96), cond, seed=3, symmetric=True) * 5
        assert rel_err(f(A), matrix_power_sym(A, 0.5)) < 1e-4


def test_prism_plan_fits_on_device_without_host_sync():
    src = polygen.generate("prism_polar")
    assert "_fit_param(" in src and ".item()" not in src
    plan = polygen.schedule("prism_polar", (512, 2048))
    assert plan.cost.long_matmuls == 10  # R = I − XXᵀ and X⁺ = H·X per step; the sketch stays small


BASE = polygen.spec.spec_text("prism_polar")[0]


@pytest.mark.parametrize("old,new,field,msg", [
    ('interval = ["3/8", "29/20"], ', "", "steps[0].fit", "needs an interval"),
    ("sketch = 8", "sketch = 0", "steps[0].fit.sketch", "sketch must be a number of rows"),
    ('residual = "r"', 'residual = "q"', "steps[0].fit.residual", "must name a let"),
    ('interval = ["3/8", "29/20"]', 'interval = ["2", "1"]', "steps[0].fit.interval", "lo < hi"),
    ('param = "alpha"', 'param = "x"', "steps[0].fit.param", "must be a new name"),
])
def test_fit_errors(old, new, field, msg):
    assert old in BASE
    with pytest.raises(SpecError, match=msg) as ei:
        polygen.parse_spec(BASE.replace(old, new), source="prism.toml")
    assert ei.value.field == field and ei.value.line is not None


def test_torch_compile_prism_no_graph_break():
    f = polygen.load("prism_polar", backend="torch")
    G = torch.randn(2, 16, 48, generator=torch.Generator().manual_seed(0))
    explain = torch._dynamo.explain(lambda x: f(x))(G)
    assert explain.graph_break_count == 0
