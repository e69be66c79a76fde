"""The seed families as compiled specs: Muon^p, inverse roots, coupled square root (issue 3)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import polygen
from polygen.passes.verify_convergence import verify_map
from polygen.runtime.reference import matrix_power_sym, power, random_with_spectrum
from tests.conftest import rel_err


def per_step(name: str, shape=(256, 1024)) -> tuple[int, int]:
    """(matmuls per repeated step, matmuls outside the loop) of the chosen plan."""
    from polygen.ir.schedule import Loop

    plan = polygen.schedule(name, shape)
    loops = [b for b in plan.schedule.blocks if isinstance(b, Loop)]
    inner = sum(op.is_matmul for op in loops[0].body)
    outer = plan.matmuls - sum(sum(op.is_matmul for op in lp.body) * lp.trips for lp in loops)
    return inner, outer


def test_muonp_pinned_counts_and_hoisting():
    assert per_step("muonp_1_3") == (2, 0)
    assert per_step("muonp_1_5") == (3, 0)
    inner, hoisted = per_step("muonp_3_5")
    assert inner == 3 and hoisted == 2  # XXᵀ and (XXᵀ)X once, not per step
    text = str(polygen.schedule("muonp_3_5", (256, 1024)))
    assert "loop-invariant product" in text


@pytest.mark.parametrize("name,p", [("muonp_1_3", 1 / 3), ("muonp_1_5", 1 / 5), ("muonp_3_5", 3 / 5)])
def test_muonp_reports_where_it_is_within_5_percent(name, p):
    rep = verify_map(polygen.load_spec(name))
    assert rep.ok and not rep.sign_flip and not rep.blowup
    lo, hi = rep.within_5pct
    assert hi == pytest.approx(1.0) and lo < 0.6


def test_published_muonp_half_default_is_flagged_diverging():
    text = polygen.spec.spec_text("muonp_1_3")[0]
    text = text.replace('name = "muonp_1_3"', 'name = "muonp_1_2_published"').replace('p = "1/3"', 'p = "1/2"')
    text = text.replace('coefficients = { c = "0.66" }', 'coefficients = { c = "3.0", d = "-0.795918" }')
    text = text.replace('update = { y = "y - c*(y**3 - x)" }', 'update = { y = "y - (y**4 - x**2)*(c*x + d*y)" }')
    smap = polygen.parse_spec(text, source="published.toml")
    rep = verify_map(smap)
    assert not rep.ok
    msg = " ".join(rep.failures)
    assert "blows up" in msg or "sign flip" in msg or "image leaves" in msg
    with pytest.raises(polygen.ConvergenceError) as ei:
        polygen.generate(smap)
    # the failing sub-interval is reported, and it lies in the upper half (0.5, 1) of the domain
    import re

    lows = [float(a) for a, _ in re.findall(r"\[([0-9.e-]+), ([0-9.e-]+)\]", str(ei.value).split("\n")[0])]
    assert lows and min(lows) > 0.5


@pytest.mark.parametrize("name", ["muonp_1_3", "muonp_1_5", "muonp_3_5"])
def test_muonp_output_matches_spectral_map_and_is_unit_rms(name):
    f = polygen.load(name, backend="torch")
    G = random_with_spectrum((3, 48, 130), 1e2, seed=4)
    Y = f(G)
    rms = torch.linalg.vector_norm(Y, dim=(-2, -1)) / math.sqrt(48 * 130)
    torch.testing.assert_close(rms, torch.ones(3), rtol=1e-5, atol=1e-5)
    from polygen.runtime.reference import spectral_reference

    assert rel_err(Y, spectral_reference(polygen.load_spec(name), G)) < 1e-5
    smap = polygen.load_spec(name)
    # and for a spectrum inside its 5 % interval the map is U S^p Vᵀ (normalized: Σσ² = 1, so few values)
    lo, _ = verify_map(smap).within_5pct
    k = max(1, min(16, int(1 / (1.2 * lo) ** 2)))
    s = torch.linspace(1.0, 0.8, k, dtype=torch.float64)
    s = s / s.norm()
    assert s.min() >= lo
    G2 = random_with_spectrum((k, 40), seed=1, spectrum=s)
    assert rel_err(f(G2.float()), power(G2, smap.power)) < 0.05


@pytest.mark.parametrize("name,expo", [("inv_root_4", -0.25), ("inv_root_2", -0.5), ("inv_root_4_ho", -0.25),
                                       ("sqrt_coupled_ns", 0.5)])
@pytest.mark.parametrize("n", [64, 200])
def test_roots_against_eigh_fp32(name, expo, n):
    f = polygen.load(name, backend="torch")
    for cond in (1e2, 1e4):
        A = random_with_spectrum((3, n, n), cond, seed=n, symmetric=True) * 7.0
        assert rel_err(f(A), matrix_power_sym(A, expo)) <= 1e-4, cond


@pytest.mark.slow
@pytest.mark.parametrize("name,expo", [("inv_root_4", -0.25), ("inv_root_2", -0.5), ("inv_root_4_ho", -0.25)])
def test_roots_against_eigh_fp32_large(name, expo):
    f = polygen.load(name, backend="torch")
    A = random_with_spectrum((2, 1024, 1024), 1e4, seed=9, symmetric=True)
    assert rel_err(f(A), matrix_power_sym(A, expo)) <= 1e-4


@pytest.mark.parametrize("name,matmuls", [("inv_root_4", 30), ("inv_root_2", 28)])
def test_designed_roots_pinned_matmuls(name, matmuls):
    """The designed coupled iterations (polygen fit root): the count the design promised, which is what makes
    them faster than Distributed Shampoo's early-exit Newton (48-52 matmuls for r = 4 at kappa = 1e3)."""
    assert polygen.schedule(name, (128, 128)).matmuls == matmuls
    assert polygen.schedule(f"{name}_newton", (128, 128)).matmuls >= 2 * matmuls


def test_coupled_root_last_step_drops_the_dead_partner_update():
    plan = polygen.schedule("inv_root_4_newton", (128, 128))
    steps = polygen.load_spec("inv_root_4_newton").total_steps
    # x·t (1) + t², t⁴, t⁴·m (3) per step; the first x·t is free (x = I) and the last m-update is dead
    assert plan.matmuls == 4 * steps - 1 - 3


@pytest.mark.parametrize("r", [4, 2])
def test_designed_roots_no_less_accurate_than_coupled_newton(r):
    """The designed iteration (polygen fit root) against float64 eigh, beside the coupled Newton iteration it
    replaces (t^r·M, plain products: Distributed Shampoo's form, which is also that peer's accuracy): fp32 no
    worse at every kappa and size, including the small sizes and kappa = 1e2 where float32 rounding of the
    aggressive early steps once made it 2x worse (the spread bound and the residual form, polygen/fit/roots.py),
    and bf16 inputs (run in float32 by the spec: coupled roots keep their input dtype) to bf16 input rounding."""
    f, newton = polygen.load(f"inv_root_{r}", backend="torch"), polygen.load(f"inv_root_{r}_newton", backend="torch")
    for n, cond in itertools.product((128, 256), (1e2, 1e3, 1e4)):
        A = random_with_spectrum((2, n, n), cond, seed=r, symmetric=True) * 3.0
        exact = matrix_power_sym(A, -1.0 / r)
        ours, theirs = rel_err(f(A), exact), rel_err(newton(A), exact)
        assert ours <= theirs, (n, cond, ours, theirs)
    A = random_with_spectrum((2, 96, 96), 1e2, seed=5, symmetric=True)
    Ab = A.bfloat16()
    exact = matrix_power_sym(Ab.float(), -1.0 / r)
    assert rel_err(f(Ab).float(), exact) <= 3e-2


def _power_case(m: int = 96, n: int = 256, seed: int = 0):
    """U diag(x) Vᵀ (float64) with normalized singular values x (Σx² = 1) from 0.90 down to 0.01, the issue's
    test spectrum: one large value and eleven log-spaced over [0.01, 0.3]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.cat([torch.tensor([0.9]), torch.logspace(math.log10(0.3), -2, 11)]).double()
    x = x / x.norm()
    U, _ = torch.linalg.qr(torch.randn(m, len(x), generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(n, len(x), generator=g, dtype=torch.float64))
    return U, x, V


def _worst_singular_error(name: str, p: float, dtype: torch.dtype) -> float:
    """Worst relative error of a singular value of the unit-RMS output against unit-RMS U S^p Vᵀ (the
    singular values read in the exact singular basis, float64)."""
    U, x, V = _power_case()
    m, n = U.shape[0], V.shape[0]
    Y = polygen.load(name, backend="torch")(((U * (3.0 * x)) @ V.T).to(dtype)).double()
    t = x**p
    t = t / t.norm() * math.sqrt(m * n)
    y = torch.einsum("mk,mn,nk->k", U, Y, V)
    return float(((y - t).abs() / t).max())


# fitted spec, p, worst error in float32 / bfloat16 (measured 0.069 / 0.071, 0.0059 / 0.012, 0.010 / 0.011,
# 0.0004 / 0.0010), and the published recurrences measured 0.74, 0.91, 0.81, 0.88 (polygen's muonp_1_2)
FITTED_POWERS = [("muonp_1_3_fit", 1 / 3, 0.08, 0.08), ("muonp_1_5_fit", 1 / 5, 0.008, 0.016),
                 ("muonp_3_5_fit", 3 / 5, 0.013, 0.015), ("muonp_1_2_fit", 1 / 2, 1e-3, 2e-3)]


@pytest.mark.parametrize("name,p,tol32,tol16", FITTED_POWERS)
def test_fitted_powers_reach_u_s_p_vt_four_times_closer_than_published(name, p, tol32, tol16):
    published = _worst_singular_error(name.removesuffix("_fit"), p, torch.float32)
    assert published > 0.7  # the recurrence's own miss (issue 16: 0.76 / 0.93 / 0.82 / 0.90)
    for dtype, tol in ((torch.float32, tol32), (torch.bfloat16, tol16)):
        ours = _worst_singular_error(name, p, dtype)
        assert ours <= tol and 4 * ours <= published, (dtype, ours, published)


@pytest.mark.parametrize("name,counts", [("muonp_1_3_fit", (2, 0)), ("muonp_1_5_fit", (3, 0)),
                                         ("muonp_3_5_fit", (3, 2)), ("muonp_1_2_fit", (3, 2))])
def test_fitted_powers_pinned_matmuls_no_more_than_published(name, counts):
    assert per_step(name) == counts
    assert polygen.schedule(name, (256, 1024)).matmuls <= polygen.schedule(name.removesuffix("_fit"),
                                                                            (256, 1024)).matmuls
