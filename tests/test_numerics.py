"""Generated torch code against float64 ground truth (SVD / eigh) on matrices with controlled spectra."""

from __future__ import annotations

import inspect
import math
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import polygen
from polygen.runtime.reference import polar, random_with_spectrum, spectral_reference
from tests.conftest import TOL_MAP, rel_err, tol

POLAR = [n for n in polygen.list_specs() if polygen.load_spec(n).target == "polar"]
SHAPES = [(37, 101), (101, 37), (64, 64), (3, 40, 72), (2, 2, 33, 20)]


def in_domain_spectrum(smap, k, cond):
    """Singular values log-spaced over [max(lo, hi/cond), hi] of the spec's domain (scaled by the norm)."""
    lo, hi = smap.domain
    s = torch.logspace(math.log10(hi), math.log10(max(lo, hi / cond)), k, dtype=torch.float64)
    return s


def spec_matrix(smap, shape, cond, seed=0):
    """A matrix whose *normalized* singular values span the spec's domain up to condition number cond."""
    sym = smap.input_kind == "symmetric"
    if sym:
        shape = shape[:-1] + (shape[-2],)
    k = min(shape[-2:])
    s = in_domain_spectrum(smap, k, cond)
    # Frobenius normalization divides by ‖s‖₂: scale so that s/‖s‖ keeps the top value at the domain's top
    G = random_with_spectrum(shape, seed=seed, symmetric=sym, spectrum=s / s.norm() * s[0] / s.norm())
    return G


def exact_variant(name: str):
    """The spec itself, or for sketched fits (PRISM) the same spec with the exact objective: a sketch is
    random, the exact spectral map is defined for the unsketched fit."""
    smap = polygen.load_spec(name)
    if not any(st.fit is not None and st.fit.sketch for st in smap.steps):
        return smap
    text = re.sub(r"sketch = \d+", 'sketch = "exact"', polygen.spec.spec_text(name)[0])
    return polygen.parse_spec(text.replace(f'name = "{name}"', f'name = "{name}_exact"'), source=f"{name}_exact")


@pytest.mark.parametrize("name", polygen.list_specs())
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("cond", [10.0, 1e4], ids=["well", "ill"])
def test_generated_matches_exact_spectral_map_fp32(name, shape, cond):
    smap = exact_variant(name)
    f = polygen.load(smap, backend="torch")
    G = random_with_spectrum(shape if smap.input_kind != "symmetric" else shape[:-1] + (shape[-2],),
                             cond if smap.input_kind != "symmetric" else min(cond, 1 / smap.domain[0] / 2),
                             seed=3, symmetric=smap.input_kind == "symmetric")
    ref = spectral_reference(smap, G)
    for plan in f.plans:
        Y = f(G, plan=plan)
        assert Y.shape == G.shape and Y.dtype == G.dtype
        assert rel_err(Y, ref) <= tol("well" if cond <= 10 else "ill", "float32", name), plan


@pytest.mark.parametrize("name", POLAR)
@pytest.mark.parametrize("shape", [(37, 101), (3, 40, 72)], ids=str)
def test_generated_matches_exact_spectral_map_bf16(name, shape):
    smap = polygen.load_spec(name)
    f = polygen.load(name, backend="torch")
    G = random_with_spectrum(shape, 10.0, seed=5, dtype=torch.bfloat16)
    ref = spectral_reference(smap, G)
    direct = rel_err(f(G, plan="direct"), ref)
    assert direct <= tol("well", "bfloat16", name)
    key = f.plan_for(shape, torch.bfloat16)
    if key != "direct":
        Y = f(G, plan=key)
        assert Y.dtype == torch.bfloat16
        # the Gram form may trade some accuracy for FLOPs, but at most 5× the direct form's error and 16u
        assert rel_err(Y, ref) <= min(5 * direct, 16 * 2.0**-8), key


def test_bf16_restarts_keep_gram_plan_as_accurate_as_direct():
    """Without its dtype-derived restarts the Gram plan is garbage in bf16; with them it matches direct."""
    smap = polygen.load_spec("muon_ns5")
    f = polygen.load("muon_ns5", backend="torch")
    G = random_with_spectrum((64, 256), 1e3, seed=2, dtype=torch.bfloat16)
    ref = spectral_reference(smap, G)
    direct = rel_err(f(G, plan="direct"), ref)
    restarted = rel_err(f(G, plan="gram_bfloat16"), ref)
    unrestarted = rel_err(f(G, plan="gram_float32"), ref)
    assert restarted <= 2 * direct + 1e-2
    assert unrestarted > 5 * restarted


def test_polar_express_8_reaches_the_polar_factor_to_fp32_accuracy():
    f = polygen.load("polar_express_8", backend="torch")
    for shape in [(50, 120), (120, 50), (4, 32, 48)]:
        # normalized singular values in [2e-3, 1]: inside the design domain [1e-3, 1] after ‖·‖_F·1.01
        G = random_with_spectrum(shape, 1e2, seed=7)
        err = float(torch.linalg.matrix_norm(f(G, plan="direct").double() - polar(G), ord=2).max())
        assert err < 1e-4, err


def test_zero_matrix_returns_zeros():
    for name in POLAR:
        f = polygen.load(name, backend="torch")
        for plan in f.plans:
            Y = f(torch.zeros(3, 8, 20), plan=plan)
            assert torch.equal(Y, torch.zeros(3, 8, 20)), (name, plan)


@pytest.mark.parametrize("name", polygen.list_specs())
def test_empty_inputs_keep_their_shape(name):
    """Empty matrices and empty batches come back empty, same shape and dtype (reshape(-1, m, n) once raised)."""
    f = polygen.load(name, backend="torch")
    sym = polygen.load_spec(name).input_kind == "symmetric"
    for shape in [(3, 0, 0), (0, 4, 4)] if sym else [(3, 0, 5), (0, 4, 6), (2, 5, 0)]:
        G = torch.zeros(shape, dtype=torch.bfloat16)
        Y = f(G)
        assert Y.shape == G.shape and Y.dtype == G.dtype, shape


def test_rejects_bad_input():
    f = polygen.load("muon_ns5", backend="torch")
    with pytest.raises(ValueError, match="expects a"):
        f(torch.zeros(5))
    with pytest.raises(TypeError, match="floating-point"):
        f(torch.zeros(4, 4, dtype=torch.int64))


@settings(max_examples=25, deadline=None)
@given(
    m=st.integers(2, 24), n=st.integers(2, 48),
    logs=st.lists(st.floats(-3.0, 0.0), min_size=24, max_size=24),
    name=st.sampled_from(POLAR),
)
def test_property_any_spectrum_in_domain(m, n, logs, name):
    smap = polygen.load_spec(name)
    k = min(m, n)
    s = torch.tensor(sorted(logs[:k], reverse=True), dtype=torch.float64).exp2()
    G = random_with_spectrum((m, n), seed=m * 100 + n, spectrum=s)
    f = polygen.load(name, backend="torch")
    ref = spectral_reference(smap, G)
    for plan in f.plans:
        assert rel_err(f(G, plan=plan), ref) <= TOL_MAP[("float32", "ill")]


@pytest.mark.parametrize("name", polygen.list_specs())
def test_float64_input_runs_in_float64(name):
    """float64 in, float64 out, and tighter than any float32 run could be (norms must not drop to float32)."""
    smap = exact_variant(name)
    f = polygen.load(smap, backend="torch")
    sym = smap.input_kind == "symmetric"
    G = random_with_spectrum((30, 30) if sym else (30, 70), 10.0, seed=11, symmetric=sym, dtype=torch.float64)
    ref = spectral_reference(smap, G)
    for plan in f.plans:
        Y = f(G, plan=plan)
        assert Y.dtype == torch.float64
        assert rel_err(Y, ref) <= 1e-10, plan


def _symmetric_plans_module(name):
    """The torch function of a spec and the run-time module its block-triangle products go through."""
    from polygen.runtime import torch_ops

    return polygen.load(name, backend="torch", accuracy="fastest"), torch_ops  # the cost model's plans


RECTANGULAR = [n for n in polygen.list_specs() if polygen.load_spec(n).input_kind == "rectangular"]


@pytest.mark.parametrize("name", RECTANGULAR)  # symmetric inputs (coupled roots) keep whole products
@pytest.mark.parametrize("shape", [(37, 101), (101, 37), (3, 40, 72)], ids=str)
def test_block_triangle_products_match_exact_spectral_map(name, shape, monkeypatch):
    """Symmetric products run as a 4×4 block triangle from SYM_MIN_ROWS rows on; lowering that threshold runs
    every plan through it at small odd sizes (uneven blocks) against the float64 spectral map."""
    smap = exact_variant(name)
    from polygen.runtime import torch_ops

    f = polygen.load(smap, backend="torch")
    src = inspect.getsource(f._module("torch"))
    assert "_sym_bmm(" in src or "sym=True" in src, name  # long-side products go through _long_side(..., sym=True)
    blocked = []
    product = torch_ops.product
    monkeypatch.setattr(torch_ops, "SYM_MIN_ROWS", 1)
    monkeypatch.setattr(torch_ops, "product", lambda A, *a: blocked.append(A.size(-2)) or product(A, *a))
    G = random_with_spectrum(shape, 1e3, seed=4)
    ref = spectral_reference(smap, G)
    for plan in f.plans:
        blocked.clear()
        Y = f(G, plan=plan)
        assert any(r < min(G.shape[-2:]) for r in blocked), plan  # row blocks, not whole products, ran
        assert Y.shape == G.shape
        assert rel_err(Y, ref) <= tol("ill", "float32", name), plan


def test_block_triangle_at_real_size_in_float32_and_bf16():
    """Above SYM_MIN_ROWS with no patching: muon_ns5's Gram plan (float32: symmetric products blocked; bf16:
    the long-side XXᵀ only) stays within the stated tolerances of the exact map; a blocked product equals the
    full one and mirrors its upper blocks, in float64 and, through 2-D GEMMs, in bf16."""
    smap = polygen.load_spec("muon_ns5")
    f, mod = _symmetric_plans_module("muon_ns5")
    assert mod.SYM_MIN_ROWS <= 260
    G = random_with_spectrum((260, 1040), 10.0, seed=6)
    ref = spectral_reference(smap, G)
    assert f.plan_for(G.shape, torch.float32) == "gram_float32"
    assert rel_err(f(G), ref) <= tol("well", "float32")
    Gb = G.to(torch.bfloat16)
    assert rel_err(f(Gb), ref) <= tol("well", "bfloat16")
    A = torch.randn(2, 261, 300, dtype=torch.float64)
    C = torch.randn(2, 261, 261, dtype=torch.float64)
    C = C + C.mT
    S = mod.sym_bmm(A, A.mT, C, 0.5, 2.0)
    full = torch.baddbmm(C, A, A.mT, beta=0.5, alpha=2.0)
    torch.testing.assert_close(S, full, rtol=1e-12, atol=1e-12)
    k = mod.SYM_BLOCKS
    cuts = torch.tensor([i * 261 // k for i in range(1, k)])
    blk = torch.bucketize(torch.arange(261), cuts, right=True)  # block index of each row / column
    lower = blk[:, None] > blk[None, :]
    assert lower.any() and torch.equal(S[:, lower], S.mT[:, lower])  # below the diagonal blocks: the mirror
    Ab = A.to(torch.bfloat16)
    Sb = mod.sym_bmm(Ab, Ab.mT, None, 0.0, 1.0, in_16_bits=True)
    fullb = torch.bmm(Ab, Ab.mT)
    torch.testing.assert_close(Sb.double(), (A.to(torch.bfloat16).double() @ A.to(torch.bfloat16).double().mT),
                               rtol=2**-7, atol=2**-7 * 300)  # bf16 output rounding of an fp32-accumulated GEMM
    # upper blocks: the same GEMM rows, through mm instead of bmm: a bf16 ulp apart at most (the fp32
    # summation order may differ; atol covers entries that cancel to near zero)
    torch.testing.assert_close(Sb[:, ~lower], fullb[:, ~lower], rtol=2**-7, atol=1e-3)
    assert torch.equal(Sb[:, lower], Sb.mT[:, lower])
    assert torch.equal(mod.sym_bmm(Ab, Ab.mT, None, 0.0, 1.0), fullb)  # other bf16 products stay whole


def test_bf16_gram_products_blocked_in_eager_cpu_code_only(monkeypatch):
    """In bf16 the Gram plan's XXᵀ products run through the per-matrix block path (and no m×m product does),
    and the chosen plan keeps the bf16 Gram bound against the exact map (see the test above), batched and at
    odd sizes."""
    smap = polygen.load_spec("muon_ns5")
    f, mod = _symmetric_plans_module("muon_ns5")
    calls = []
    block = mod._block_2d
    monkeypatch.setattr(mod, "SYM_MIN_ROWS", 1)
    monkeypatch.setattr(mod, "_block_2d", lambda A, B, *a: calls.append((A.size(-2), B.size(-2))) or block(A, B, *a))
    G = random_with_spectrum((3, 45, 131), 10.0, seed=8, dtype=torch.bfloat16)
    Y = f(G)
    assert f.plan_for(G.shape, torch.bfloat16).startswith("gram")
    assert calls and all(inner == 131 for _, inner in calls)  # only products over the long side
    ref = spectral_reference(smap, G)
    assert rel_err(Y, ref) <= min(5 * rel_err(f(G, plan="direct"), ref), 16 * 2.0**-8)


def test_bf16_block_path_is_skipped_under_compile(monkeypatch):
    """While torch.compile traces (is_compiling), the 16-bit XXᵀ stays one bmm: the per-matrix Python loop
    would unroll over the batch into the graph. alpha ≠ 1 without C keeps one rounding in the block path."""
    f, mod = _symmetric_plans_module("muon_ns5")
    calls = []
    block = mod._block_2d
    monkeypatch.setattr(mod, "SYM_MIN_ROWS", 1)
    monkeypatch.setattr(mod, "_block_2d", lambda A, B, *a: calls.append(A.shape) or block(A, B, *a))
    G = random_with_spectrum((2, 45, 131), 10.0, seed=9, dtype=torch.bfloat16)
    eager = f(G)
    assert calls
    calls.clear()
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    traced = f(G)
    assert not calls
    torch.testing.assert_close(traced.float(), eager.float(), rtol=0.05, atol=0.05)
    A = torch.randn(40, 70, dtype=torch.float64)
    exact = (3.0 * A.to(torch.bfloat16).double() @ A.to(torch.bfloat16).double().T).to(torch.bfloat16)
    scaled = block(A.to(torch.bfloat16), A.to(torch.bfloat16).T, None, 0.0, 3.0)
    torch.testing.assert_close(scaled, exact, rtol=2**-8, atol=1e-6)


@pytest.mark.parametrize("name", POLAR)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_chosen_plan_as_accurate_as_direct_at_kappa_1e3(name, dtype):
    """Whatever plan the cost model picks (Gram form with its derived restarts, or direct) must be as accurate
    against the exact map as the direct form, on ill-conditioned inputs where restarts matter: a restart rule
    tuned on one spec once left polar_express_8's bf16 Gram plan at 1e25."""
    smap = exact_variant(name)
    f = polygen.load(smap, backend="torch")
    for shape in [(64, 256), (2, 256, 1024)]:
        G = random_with_spectrum(shape, 1e3, seed=7, dtype=dtype)
        ref = spectral_reference(smap, G)
        key = f.plan_for(shape, dtype)
        direct = rel_err(f(G, plan="direct"), ref)
        chosen = rel_err(f(G, plan=key), ref)
        # float32: the Gram form's u·max q (q ≤ 500 for NS5) is within the stated fp32 tolerance for κ ≤ 1e4
        bound = max(1.5 * direct, tol("ill", "float32", name)) if dtype == torch.float32 else 1.5 * direct + 1e-2
        assert chosen <= bound, (shape, key, chosen, direct)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_norms_are_accurate_where_torchs_float32_norm_is_not(dtype):
    """frobenius accumulates rows in float32 and their squares in float64: at 4M entries torch's one-stage
    float32 norm is ~8e-5 off, polygen's within 1e-6 (bf16 input) / 1e-7 (float32) — so the input normalization
    and muonp's unit-RMS rescale are too."""
    from polygen.runtime.torch_ops import frobenius

    X = torch.randn(2, 1024, 4096, generator=torch.Generator().manual_seed(3)).to(dtype)
    exact = torch.linalg.vector_norm(X.double(), dim=(-2, -1), keepdim=True)
    one_stage = torch.linalg.vector_norm(X, dim=(-2, -1), keepdim=True, dtype=torch.float32).double()
    ours = frobenius(X, torch.float32).double()
    assert float(((one_stage - exact) / exact).abs().max()) > 1e-5  # the error this guards against
    assert float(((ours - exact) / exact).abs().max()) < (1e-7 if dtype == torch.float32 else 1e-6)
    Y = polygen.load("muonp_1_3", backend="torch")(X[:1].float() * 1e-3)
    rms = torch.linalg.vector_norm(Y.double()) / (1024 * 4096) ** 0.5
    assert abs(float(rms) - 1.0) < 1e-6
