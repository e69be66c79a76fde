"""Every Triton kernel polygen launches compiles for real GPUs (sm_90, H100) on this CPU-only machine.

The interpreter (test_triton_backend.py) checks what the kernels compute; it also accepts code the real
compiler rejects (pointer arithmetic, layouts, shared-memory budgets). ``triton.compile`` with a GPUTarget
runs the whole NVIDIA pipeline — TTIR, TTGIR, LLVM IR, PTX and ptxas to a cubin — with no device, so each
kernel is compiled here with the largest tile configuration of the CUDA registry and both epilogue forms
(constants baked in; scalars read from the device table).

The kernels are written once (polygen/runtime/triton_ops.py), so the cases are dtypes and epilogue forms, not
specs. Each case runs in a fresh Python process: the interpreter tests import the same module with
TRITON_INTERPRET=1 and register its torch ops under the same names, and neither may see the other's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

triton = pytest.importorskip("triton")
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
H100 = GPUTarget("cuda", 90, 32)
TORCH_TO_TRITON = {"bfloat16": "bf16", "float32": "fp32", "float16": "fp16"}


def _kernels():
    from polygen.runtime import triton_ops

    return triton_ops


H100_SHARED = 227 * 1024  # bytes of shared memory per block on an H100 (sm_90)
ITEMSIZE = {"bf16": 2, "fp16": 2, "fp32": 4}


def _biggest(mod, configs: tuple[dict, ...], dtype: str) -> dict:
    """The configuration with the most pipelined shared memory among those the autotuning prune keeps on an
    H100 (the one most likely to exceed a resource limit); lincomb configurations have no shared tiles."""
    if "BLOCK_K" not in configs[0]:
        return max(configs, key=lambda c: c["BLOCK_M"] * c["BLOCK_N"])
    from polygen.runtime.triton_support import tile_shared_bytes

    kept = [c for c in configs if tile_shared_bytes(c, ITEMSIZE[dtype]) <= H100_SHARED]
    assert kept, "every registry configuration overflows an H100's shared memory"
    return max(kept, key=lambda c: tile_shared_bytes(c, ITEMSIZE[dtype]))


def _launch_specialization(fn, cons: dict) -> tuple[dict, dict]:
    """What a real launch on contiguous, 16-aligned operands specializes: every column stride (the last of a
    (batch, row, column) stride triple) equals 1 and becomes a constant, and pointers, sizes and the other
    strides are divisible by 16. Without it Triton compiles a kernel that does not pipeline its tile loads,
    and the shared memory it reports is not what a GPU launch allocates."""
    ints = [a for a in fn.arg_names if a not in cons and not a.endswith("_ptr")]
    triples: dict[str, list[str]] = {}
    for a in ints:
        if a.startswith("stride_"):
            triples.setdefault(a[:-1], []).append(a)
    ones = {names[-1]: 1 for names in triples.values() if len(names) == 3}
    aligned = [i for i, a in enumerate(fn.arg_names) if a not in cons and a not in ones]
    return ones, {(i,): [["tt.divisibility", 16]] for i in aligned}


def _compile(kernel, constexprs: dict, dtype: str, config: dict):
    fn = kernel.fn  # under the autotuner
    cons = dict(constexprs, **{k: v for k, v in config.items() if k.isupper()})
    missing = [p.name for p in fn.params if p.is_constexpr and p.name not in cons]
    assert not missing, f"constexprs not set: {missing}"
    ones, attrs = _launch_specialization(fn, cons)
    cons.update(ones)
    sig = {a: "constexpr" if a in cons else ("*fp32" if a == "coef_ptr" else f"*{dtype}") if a.endswith("_ptr")
           else "i32" for a in fn.arg_names}
    out = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=cons, attrs=attrs), target=H100,
                         options={"num_warps": config["num_warps"], "num_stages": config["num_stages"]})
    assert out.asm["cubin"] and ".entry" in out.asm["ptx"]
    assert out.metadata.shared <= H100_SHARED
    return out


def _epilogues(which: str) -> list[dict]:
    fixed = dict(ALPHA=2.0315, BETA=-4.775, GAMMA=3.4445, ALPHA_IDX=-1, BETA_IDX=-1, GAMMA_IDX=-1, HAS_C=True)
    table = dict(ALPHA=1.0, BETA=0.0, GAMMA=0.0, ALPHA_IDX=0, BETA_IDX=1, GAMMA_IDX=2, HAS_C=True)
    plain = dict(ALPHA=1.0, BETA=0.0, GAMMA=0.0, ALPHA_IDX=-1, BETA_IDX=-1, GAMMA_IDX=-1, HAS_C=False)
    return {"fixed": [fixed], "table": [table], "all": [fixed, table, plain]}[which]


def _lincomb_constexprs(terms: int, by_table: bool) -> dict:
    """The first ``terms`` slots in use (as the launcher fills them: unused slots weigh 0 and read no table)."""
    from polygen.runtime.tuning import LINCOMB_SLOTS

    cons: dict = {"NUM_TERMS": terms, "GAMMA": 1.0, "GAMMA_IDX": 0 if by_table else -1, "EMULATE_BF16": False}
    for i in range(LINCOMB_SLOTS):
        used = i < terms
        cons[f"K{i}"] = 0.5 * (i + 1) if used and not by_table else 0.0
        cons[f"K{i}_IDX"] = i + 1 if used and by_table else -1
    return cons


CASES = [  # (dtype, epilogue forms): one in the default run, the rest marked slow (≈1–3 s per kernel)
    pytest.param("bfloat16", "fixed", id="bf16"),
    pytest.param("float32", "all", id="fp32", marks=pytest.mark.slow),
    pytest.param("bfloat16", "table", id="bf16-table", marks=pytest.mark.slow),
    pytest.param("float16", "all", id="fp16", marks=pytest.mark.slow),
]


def _isolated(case: str, *args: str) -> None:
    """Run ``case(*args)`` of this file in a fresh interpreter without TRITON_INTERPRET."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    code = f"import sys; from tests import test_triton_aot as t; t.{case}(*sys.argv[1:])"
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"{case}{args} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"


@pytest.mark.parametrize(("dtype", "forms"), CASES)
def test_kernels_compile_for_h100(dtype, forms):
    _isolated("compile_case", dtype, forms)


def test_shared_memory_estimate_matches_the_compiler_and_prunes_fp32():
    """The prune's estimate is exactly what ptxas allocates for a launch-specialized kernel, and the prune drops
    the fp32 128×256×64 3-stage tile on an H100 while keeping it in bf16."""
    _isolated("shared_memory_case")


def compile_case(dtype: str, forms: str) -> None:
    from polygen.runtime.tuning import LINCOMB_SLOTS

    mod = _kernels()
    cuda = mod.TILE_CONFIGS["cuda"]
    precision = "tf32" if dtype == "float32" else "ieee"
    tdt = TORCH_TO_TRITON[dtype]
    for epi in _epilogues(forms):
        common = dict(epi, INPUT_PRECISION=precision, EMULATE_BF16=False)
        _compile(mod.sym_matmul_kernel, common, tdt, _biggest(mod, cuda["sym_matmul"], tdt))
        _compile(mod.matmul_kernel, common, tdt, _biggest(mod, cuda["matmul"], tdt))
    for mirrors in [(False, True), (True, True), (False, False)] if forms == "all" else [(False, True)]:
        cons = dict(MIRROR1=mirrors[0], MIRROR2=mirrors[1], INPUT_PRECISION=precision, EMULATE_BF16=False)
        _compile(mod.pair_matmul_kernel, cons, tdt, _biggest(mod, cuda["pair_matmul"], tdt))
    for by_table in ([False, True] if forms == "all" else [forms == "table"]):
        for terms in (1, LINCOMB_SLOTS):
            _compile(mod.lincomb_kernel, _lincomb_constexprs(terms, by_table), tdt, _biggest(mod, cuda["lincomb"], tdt))


def shared_memory_case() -> None:
    from types import SimpleNamespace

    from polygen.runtime import triton_support
    from polygen.runtime.triton_support import tile_shared_bytes

    mod = _kernels()
    cfg = {"BLOCK_M": 128, "BLOCK_N": 256, "BLOCK_K": 64, "GROUP_M": 8, "num_warps": 8, "num_stages": 3}
    assert cfg in list(mod.TILE_CONFIGS["cuda"]["matmul"])
    assert tile_shared_bytes(cfg, 4) == 294912 > H100_SHARED >= tile_shared_bytes(cfg, 2)
    common = dict(_epilogues("fixed")[0], INPUT_PRECISION="ieee", EMULATE_BF16=False)
    out = _compile(mod.matmul_kernel, common, "bf16", cfg)
    assert out.metadata.shared == tile_shared_bytes(cfg, 2)  # the estimate is what ptxas allocates
    # the autotuning prune, as on an H100: keeps the bf16 tile, drops it in fp32
    fits = triton_support.fits_shared_memory
    triton_support.INTERPRET = False
    triton_support.shared_memory_limit = lambda device: H100_SHARED
    configs = mod._configs("matmul")
    big = [c for c in configs if c.kwargs["BLOCK_M"] == 128 and c.kwargs["BLOCK_N"] == 256 and c.num_stages == 3]
    assert big

    def tensor(itemsize: int):
        return SimpleNamespace(device=SimpleNamespace(type="cuda", index=0), element_size=lambda: itemsize)

    assert all(c in fits(configs, {"a_ptr": tensor(2)}) for c in big)
    kept32 = fits(configs, {"a_ptr": tensor(4)})
    assert kept32 and not any(c in kept32 for c in big)
