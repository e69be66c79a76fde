"""The Triton backend against the torch backend, kernel by kernel and plan by plan.

Without CUDA the kernels run in Triton's interpreter on CPU tensors: TRITON_INTERPRET=1 is set below before
any kernel is defined (triton reads it when `@triton.jit` runs, i.e. when a generated module is imported).
The interpreter is slow (~30 ms a launch), so shapes are small and odd (edge tiles everywhere) and the
default run takes one (dtype, shape) per spec and plan family; `-m slow` runs the full cross product.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path

import pytest
import torch

CUDA = torch.cuda.is_available()
if not CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")
DEVICE = "cuda" if CUDA else "cpu"

triton = pytest.importorskip("triton")

import polygen  # noqa: E402
from polygen.driver import available_backends  # noqa: E402
from polygen.runtime.reference import random_with_spectrum  # noqa: E402

SPECS = polygen.list_specs()
SHAPES = [(33, 95), (95, 33), (3, 40, 72)]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_MODULES: dict[str, types.ModuleType] = {}


def triton_module(name: str, tmp_dir) -> types.ModuleType:
    """The Triton module of a spec, generated from the current templates and imported under a fresh name."""
    if name not in _MODULES:
        path = tmp_dir / f"{name}_triton.py"
        path.write_text(polygen.generate(name, backend="triton"), encoding="utf-8")
        spec = importlib.util.spec_from_file_location(f"polygen_test_triton_{name}", path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
        _MODULES[name] = mod
    return _MODULES[name]


@pytest.fixture(scope="module", autouse=True)
def poisoned_outputs():
    """Every kernel output starts as NaN while this file runs: an element a kernel fails to write shows up."""
    from polygen.runtime import triton_ops

    before, triton_ops.POISON_OUTPUTS = triton_ops.POISON_OUTPUTS, True
    yield
    triton_ops.POISON_OUTPUTS = before


@pytest.fixture(scope="module")
def gen_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("triton_generated")


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.norm(a.double() - b.double()) / torch.linalg.norm(b.double()))


def plan_dtypes(key: str) -> list[str]:
    """The dtypes a plan is meant for: gram_bfloat16 → bfloat16; dtype-independent plans → float32, bfloat16
    (float16 plans run in the slow set only)."""
    for dt in DTYPES:
        if key.endswith("_" + dt):
            return [dt] if dt != "float16" else []
    return ["float32", "bfloat16"]


def cases():
    """(spec, plan, dtype, shape) for every spec, plan family, dtype and shape (the slow set); the default run
    takes one of each spec's plan families' (dtype, shape) pairs in rotation, so that every spec and plan
    family runs, and every shape and both dtypes come up across the specs."""
    out = []
    for i, name in enumerate(SPECS):
        torch_fn = polygen.load(name, backend="torch")
        matmuls = torch_fn._module("torch").MATMULS
        for j, key in enumerate(torch_fn.plans):
            combos = [(dt, shape) for dt in plan_dtypes(key) for shape in SHAPES]
            pick = combos[(i + j) % len(combos)] if combos else None
            if pick and matmuls.get(key, 0) > 40:  # the long iterations (inverse roots, PRISM) at the smallest shape
                pick = (pick[0], SHAPES[0])
            for dt, shape in combos + [("float16", shape) for shape in SHAPES if key.endswith("_float16")]:
                marks = () if (dt, shape) == pick else (pytest.mark.slow,)
                out.append(pytest.param(name, key, dt, shape, marks=marks, id=f"{name}-{key}-{dt}-{shape}"))
    return out


def spec_input(name: str, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """A well-conditioned input in the spec's domain (SPD for symmetric specs: square in the last two dims)."""
    smap = polygen.load_spec(name)
    sym = smap.input_kind == "symmetric"
    if sym:  # square, the smaller side: 33×33 and 3×40×40
        k = min(shape[-2:])
        shape = shape[:-2] + (k, k)
    cond = min(10.0, 0.5 / smap.domain[0]) if smap.domain[0] > 0 else 10.0
    return random_with_spectrum(shape, cond, seed=seed, symmetric=sym)


@pytest.mark.parametrize("name,key,dt,shape", cases())
def test_plan_matches_torch_backend(name, key, dt, shape, gen_dir):
    """Every plan of every spec: Triton == torch (fp32 ≤ 1e-5; bf16 ≤ 2e-2, or as accurate as torch's bf16)."""
    mod = triton_module(name, gen_dir)
    ref = polygen.load(name, backend="torch")
    dtype = DTYPES[dt]
    G = spec_input(name, shape).to(DEVICE)
    torch.manual_seed(0)  # sketches (PRISM) draw the same Gaussian matrices in both backends
    Y = mod.apply(G.to(dtype), plan=mod.PLAN_FUNCTIONS[key])
    torch.manual_seed(0)
    R = ref(G.to(dtype), plan=key)
    assert Y.shape == G.shape and Y.dtype == dtype
    assert torch.isfinite(Y).all(), "an output element was never written (outputs are poisoned with NaN)"
    err = rel_err(Y, R)
    if dt == "float32":
        assert err <= 1e-5, err
        return
    if err <= 2e-2:
        return
    # Two valid half-precision runs round differently (the Triton kernels round once per fused op and keep
    # symmetric products exactly symmetric); Gram-space plans amplify that. Then the Triton result must be
    # as close to the float32 run of the same plan as torch's half-precision result is.
    torch.manual_seed(0)
    R32 = ref(G.float(), plan=key)
    assert rel_err(Y, R32) <= 1.5 * rel_err(R, R32) + 5e-3, (err, rel_err(Y, R32), rel_err(R, R32))


# ---- the launchers on their own: edge tiles, every element written, scalars from device tensors ----

@pytest.fixture(scope="module")
def kmod():
    """The kernels every generated Triton module launches (written once, in polygen.runtime)."""
    from polygen.runtime import triton_ops

    return triton_ops


def _poisoned_launch(mod, fn, *args, **kwargs):
    assert mod.POISON_OUTPUTS
    out = fn(*args, **kwargs)
    assert torch.isfinite(out).all(), "unwritten output elements"
    return out


@pytest.mark.parametrize("batch,m,k", [(1, 1, 5), (2, 31, 33), (1, 33, 95), (3, 40, 72), (1, 157, 16)])
@pytest.mark.parametrize("dt", ["float32", "bfloat16"])
def test_sym_matmul_gram(kmod, batch, m, k, dt):
    """XXᵀ on the triangular grid: T(T+1)/2 programs write all T² tiles (157 = 5 tiles of 32, minus 3)."""
    dtype = DTYPES[dt]
    X = torch.randn(batch, m, k, device=DEVICE).to(dtype)
    out = _poisoned_launch(kmod, kmod.sym_matmul, X, X.mT)
    ref = (X.double() @ X.double().mT)
    assert torch.equal(out, out.mT), "symmetric output must be exactly symmetric"
    assert rel_err(out, ref) <= (1e-6 if dt == "float32" else 1e-2)


@pytest.mark.parametrize("dt", ["float32", "bfloat16"])
def test_sym_matmul_epilogue_and_commuting_factors(kmod, dt):
    """alpha·AB + beta·C + gamma·I for commuting symmetric A, B (polynomials of one R), all constants."""
    dtype = DTYPES[dt]
    X = torch.randn(2, 45, 70, device=DEVICE, dtype=torch.float64)
    R = X @ X.mT / 70
    A = 3.0 * torch.eye(45, device=DEVICE, dtype=torch.float64) - R
    B = R @ R - R
    args = [t.to(dtype) for t in (A, B, R)]
    out = _poisoned_launch(kmod, kmod.sym_matmul, args[0], args[1], c=args[2], alpha=2.0315, beta=-4.775,
                           gamma=3.4445)
    A, B, R = (t.double() for t in args)
    ref = 2.0315 * A @ B - 4.775 * R + 3.4445 * torch.eye(45, device=DEVICE, dtype=torch.float64)
    assert rel_err(out, ref) <= (1e-6 if dt == "float32" else 1e-2)


@pytest.mark.parametrize("mirror", [(False, True), (True, False), (False, False), (True, True)])
@pytest.mark.parametrize("batch,m", [(1, 1), (2, 33), (1, 70), (3, 40)])
@pytest.mark.parametrize("dt", ["float32", "bfloat16"])
def test_pair_matmul_one_launch(kmod, mirror, batch, m, dt):
    """(H·Q, H·R) in one grid: both outputs fully written, the symmetric one exactly symmetric, both correct."""
    dtype = DTYPES[dt]
    X = torch.randn(batch, m, 2 * m + 3, device=DEVICE, dtype=torch.float64)
    R = X @ X.mT / X.size(-1)
    H = 1.5 * torch.eye(m, device=DEVICE, dtype=torch.float64) - 0.5 * R
    Q = torch.randn(batch, m, m, device=DEVICE, dtype=torch.float64)
    B1 = R if mirror[0] else Q
    B2 = R if mirror[1] else Q
    h, b1, b2 = (t.to(dtype) for t in (H, B1, B2))
    assert kmod.POISON_OUTPUTS
    o1, o2 = kmod.pair_matmul(h, b1, b2, mirror1=mirror[0], mirror2=mirror[1])
    for o, b, mir in ((o1, b1, mirror[0]), (o2, b2, mirror[1])):
        assert torch.isfinite(o).all(), "unwritten output elements"
        assert rel_err(o, h.double() @ b.double()) <= (1e-6 if dt == "float32" else 1e-2)
        if mir:
            assert torch.equal(o, o.mT)


def test_gram_plans_pair_their_step_products(gen_dir):
    """The Gram step H = p(R); Q ← HQ; T ← HR; R ← TH runs in three launches: the middle two share one."""
    from polygen.passes.fuse_pairs import paired_products

    mod = triton_module("muon_ns5", gen_dir)
    stages = polygen.driver.compile_stages(polygen.load_spec("muon_ns5"))
    sched = stages.plans["float32"]["gram"]
    assert len(paired_products(sched)) == 1  # one pair in the rolled loop body
    src = Path(mod.__file__).read_text()
    assert "Q, t1 = pair_matmul(t0, Q, R, mirror1=False, mirror2=True)" in src


def test_scalars_from_device_tensors(kmod):
    """Loop-table scalars ((k,) row shared by the batch) and fitted ones ((batch, k)) give the same numbers
    as constexprs."""
    X = torch.randn(3, 37, 50, device=DEVICE)
    R = kmod.sym_matmul(X, X.mT)
    row = torch.tensor([0.5, -1.5, 2.0], device=DEVICE)
    per_batch = torch.tensor([[0.5, -1.5, 2.0], [1.0, 0.0, -1.0], [2.0, 3.0, 0.25]], device=DEVICE)
    for fn, b in ((kmod.sym_matmul, R), (kmod.matmul, torch.randn(3, 37, 37, device=DEVICE).mT)):
        const = fn(R, b, c=R, alpha=0.5, beta=-1.5, gamma=2.0)
        via_row = _poisoned_launch(kmod, fn, R, b, c=R, coef=row, alpha_idx=0, beta_idx=1, gamma_idx=2)
        torch.testing.assert_close(via_row, const, rtol=1e-6, atol=1e-6)
        via_batch = _poisoned_launch(kmod, fn, R, b, c=R, coef=per_batch, alpha_idx=0, beta_idx=1, gamma_idx=2)
        eye = torch.eye(37, device=DEVICE)
        for i, (al, be, ga) in enumerate(per_batch.tolist()):
            ref = al * R[i].double() @ b[i].double() + be * R[i].double() + ga * eye.double()
            assert rel_err(via_batch[i], ref) <= 1e-6


@pytest.mark.parametrize("m,k,n", [(33, 33, 95), (40, 17, 72), (1, 64, 1)])
def test_matmul_epilogue_on_strided_views(kmod, m, k, n):
    """A general product with a transposed (non-contiguous) right factor, an addend and +γI (square part)."""
    A = torch.randn(2, m, k, device=DEVICE)
    B = torch.randn(2, n, k, device=DEVICE).mT  # strides (n·k, 1, k)
    C = torch.randn(2, n, m, device=DEVICE).mT
    out = _poisoned_launch(kmod, kmod.matmul, A, B, c=C, alpha=-0.66, beta=1.0, gamma=0.5)
    eye = torch.eye(m, n, device=DEVICE, dtype=torch.float64)
    ref = -0.66 * A.double() @ B.double() + C.double() + 0.5 * eye
    assert rel_err(out, ref) <= 1e-6


def test_lincomb(kmod):
    from polygen.runtime.tuning import LINCOMB_SLOTS

    terms = [torch.randn(3, 40, 72, device=DEVICE) for _ in range(LINCOMB_SLOTS)]
    terms[0] = terms[0].mT.contiguous().mT  # a strided term
    ks = [0.66 * (i + 1) for i in range(len(terms))]
    out = _poisoned_launch(kmod, kmod.lincomb, terms, ks, [-1] * len(terms))
    ref = sum(k * t.double() for k, t in zip(ks, terms))
    assert rel_err(out, ref) <= 1e-6
    S = torch.randn(2, 33, 33, device=DEVICE)
    coef = torch.tensor([[-0.5, 1.5], [0.25, 2.0]], device=DEVICE)
    out = _poisoned_launch(kmod, kmod.lincomb, [S], [0.0], [0], coef=coef, gamma_idx=1)
    eye = torch.eye(33, device=DEVICE, dtype=torch.float64)
    ref = torch.stack([coef[i, 0].double() * S[i].double() + coef[i, 1].double() * eye for i in range(2)])
    assert rel_err(out, ref) <= 1e-6


@pytest.mark.parametrize("count", [9, 14, 23])
def test_lincomb_past_the_slots_rounds_once(kmod, count):
    """More terms than one launch reads (IFNSO's 14): launches chained through a float32 partial sum, with
    coefficients from coef and +γI once; the bfloat16 output is the float32 sum rounded once (within one ulp:
    partial sums rounded to bfloat16 between launches are several ulps off)."""
    gen = torch.Generator().manual_seed(count)
    terms = [torch.randn(3, 40, 72, generator=gen).to(DEVICE, torch.bfloat16) for _ in range(count)]
    ks = [(-1.0) ** i * (0.5 + i / 7) for i in range(count)]
    coef = torch.tensor([ks[4], 0.75], device=DEVICE)
    k_idx = [0 if i == 4 else -1 for i in range(count)]
    out = _poisoned_launch(kmod, kmod.lincomb, terms, [0.0 if i == 4 else k for i, k in enumerate(ks)], k_idx,
                           coef=coef, gamma_idx=1)
    ref = sum(k * t.double() for k, t in zip(ks, terms)) + 0.75 * torch.eye(40, 72, device=DEVICE, dtype=torch.float64)
    assert out.dtype == torch.bfloat16
    ulp = 2.0 ** (torch.floor(torch.log2(ref.abs().clamp_min(1e-30))) - 7)
    assert ((out.double() - ref).abs() <= ulp).all()


def test_triangular_tile_mapping_is_a_bijection():
    """The kernel's pid → (pid_m, pid_n) formula, replayed in float32: each upper tile exactly once."""
    import numpy as np

    for T in (1, 2, 3, 7, 64, 513):
        pid = np.arange(T * (T + 1) // 2, dtype=np.int64)
        r = ((np.sqrt(8.0 * pid.astype(np.float32) + 1.0, dtype=np.float32) - 1.0) * 0.5).astype(np.int64)
        r = np.where(r * (r + 1) // 2 > pid, r - 1, r)
        r = np.where((r + 1) * (r + 2) // 2 <= pid, r + 1, r)
        pm, pn = pid - r * (r + 1) // 2, r
        assert (pm <= pn).all() and (pn < T).all() and (pm >= 0).all()
        assert len(set(zip(pm.tolist(), pn.tolist()))) == len(pid)


def test_half_tile_policy_on_gram_plans():
    """XXᵀ, polynomials of R and R ← HRH run on half the tiles; the accumulation Q ← HQ on the full GEMM."""
    from polygen.driver import compile_stages
    from polygen.ir.schedule import Loop
    from polygen.passes.symmetry import half_tile_ops

    for name in [n for n in ("muon_ns5", "polar_express") if n in SPECS]:
        for dt, forms in compile_stages(name).plans.items():
            for form, sched in forms.items():
                half = half_tile_ops(sched)
                for i, blk in enumerate(sched.blocks):
                    for j, op in (enumerate(blk.body) if isinstance(blk, Loop) else [(-1, blk)]):
                        if op.is_matmul and op.symmetric:
                            assert ((i, j) in half) == (op.out != "Q"), (name, dt, form, op)


# ---- the generated module: interface, provenance, op registration, torch.compile ----

def test_module_interface_and_header(gen_dir):
    name = "muon_ns5" if "muon_ns5" in SPECS else SPECS[0]
    src = polygen.generate(name, backend="triton")
    smap = polygen.load_spec(name)
    head = src.splitlines()[:4]
    assert f"# spec sha256: {smap.source_hash}" in head
    assert any(f"polygen {polygen.__version__} (triton backend)" in line for line in head)
    assert src == polygen.generate(name, backend="triton"), "generation must be deterministic"
    assert "triton" in available_backends()
    for bad in (".item()", ".tolist()", ".cpu()", "print("):
        assert bad not in src, bad
    mod = triton_module(name, gen_dir)
    assert (mod.SPEC_NAME, mod.SPEC_HASH, mod.BACKEND) == (name, smap.source_hash, "triton")
    assert mod.POLYGEN_VERSION == polygen.__version__
    assert set(mod.PLAN_FUNCTIONS) == set(polygen.load(name, backend="torch").plans)
    assert mod.choose_plan(64, 256, torch.bfloat16) in mod.PLAN_FUNCTIONS.values()
    # the kernels are not copied into the module: it launches the ones in polygen.runtime.triton_ops
    assert "triton.jit" not in src and "triton_op(" not in src and "import triton" not in src
    assert "from polygen.runtime.triton_ops import lincomb, matmul, pair_matmul, sym_matmul" in src


def test_ops_registered_once_and_reimport_is_safe(gen_dir):
    """The four kernels are four torch.library ops, however many generated modules are imported."""
    from polygen.runtime import triton_ops

    def polygen_ops():
        return {n for n in dir(torch.ops.polygen) if not n.startswith("_")}

    assert {"sym_matmul", "matmul", "lincomb", "pair_matmul"} <= polygen_ops()
    before = polygen_ops()
    names = [n for n in ("muon_ns5", "polar_express", "prism_polar") if n in SPECS] or SPECS[:2]
    mods = [triton_module(n, gen_dir) for n in names]
    assert polygen_ops() == before, "importing generated modules registers no op"
    assert all(mod.sym_matmul is triton_ops.sym_matmul for mod in mods)
    # the same spec imported again under another module name: no duplicate-registration error
    path = gen_dir / f"{names[0]}_again.py"
    path.write_text(polygen.generate(names[0], backend="triton"), encoding="utf-8")
    spec = importlib.util.spec_from_file_location("polygen_test_triton_again", path)
    again = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(again)
    X = torch.randn(1, 20, 30, device=DEVICE)
    torch.testing.assert_close(again.sym_matmul(X, X.mT), mods[0].sym_matmul(X, X.mT))


def test_polygen_load_triton_backend():
    name = "muon_ns5" if "muon_ns5" in SPECS else SPECS[0]
    f = polygen.load(name, backend="triton")
    G = spec_input(name, (2, 24, 40)).to(DEVICE)
    torch.testing.assert_close(f(G), polygen.load(name, backend="torch")(G), rtol=1e-4, atol=1e-5)


def test_cpu_tensor_without_interpreter_is_refused(gen_dir, monkeypatch):
    from polygen.runtime import torch_ops

    mod = triton_module(SPECS[0], gen_dir)
    monkeypatch.setattr(torch_ops, "_TRITON_INTERPRET", False)
    if not CUDA:
        with pytest.raises(RuntimeError, match="CUDA"):
            mod.apply(torch.eye(4))


@pytest.mark.skipif(not CUDA, reason="torch.compile of Triton kernels needs CUDA")
def test_torch_compile_fullgraph_traces_through_kernels(gen_dir):
    mod = triton_module("muon_ns5" if "muon_ns5" in SPECS else SPECS[0], gen_dir)
    G = torch.randn(2, 64, 256, device="cuda", dtype=torch.bfloat16)
    compiled = torch.compile(lambda x: mod.apply(x), fullgraph=True)
    torch.testing.assert_close(compiled(G), mod.apply(G), rtol=2e-2, atol=2e-2)
    explain = torch._dynamo.explain(lambda x: mod.apply(x))(G)
    assert explain.graph_break_count == 0


def test_pair_kernel_launched_only_where_a_plan_pairs_products():
    from polygen.driver import compile_stages
    from polygen.passes.fuse_pairs import paired_products

    for name in ("muon_ns5", "muonp_1_3", "inv_root_4"):
        pairs = any(paired_products(s) for forms in compile_stages(name).plans.values() for s in forms.values())
        assert ("= pair_matmul(" in polygen.generate(name, backend="triton")) == pairs, name
    assert any(paired_products(s) for s in compile_stages("muon_ns5").plans["float32"].values())
