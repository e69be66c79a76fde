"""Generated code: reproducible, provenance header, `polygen check` catches staleness, torch.compile-clean."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch

import polygen
from polygen.driver import available_backends, build, check
from polygen.runtime.loader import GENERATED_DIR


def test_generated_dir_is_up_to_date():
    """`polygen check` inside the suite (make test runs no separate one): the whole tree is regenerated here
    once, and the driver keeps what it built for every later test of this process."""
    assert check() == []


def test_the_tree_is_generated_once_per_process(monkeypatch, tmp_path: Path):
    """After one regeneration (check, build, generate), the same specs cost no further emitter run."""
    import polygen.codegen.torch_emitter as te
    import polygen.codegen.triton_emitter as tr

    assert check() == []
    calls = []
    for mod, name in ((te, "emit_torch"), (tr, "emit_triton")):
        real = getattr(mod, name)
        monkeypatch.setattr(mod, name, lambda *a, real=real, **k: calls.append(1) or real(*a, **k))
    assert check() == [] and build(out=tmp_path)
    assert polygen.generate("muon_ns5") == polygen.generate("muon_ns5", backend="torch")
    assert calls == []


def test_regenerating_into_a_temp_dir_reproduces_generated(tmp_path: Path):
    build(out=tmp_path)
    for be in available_backends():
        for p in sorted((GENERATED_DIR / be).glob("*.py")):
            assert (tmp_path / be / p.name).read_text() == p.read_text(), p


def test_check_fails_on_stale_missing_and_orphaned(tmp_path: Path):
    shutil.copytree(GENERATED_DIR, tmp_path / "gen")
    gen = tmp_path / "gen"
    target = gen / "torch" / "muon_ns5.py"
    text = target.read_text()
    assert "3.4445" in text
    target.write_text(text.replace("3.4445", "3.4446", 1))
    (gen / "torch" / "ns_cubic.py").unlink()
    (gen / "torch" / "retired_spec.py").write_text("# old\n")
    problems = check(out=gen)
    assert any(p.startswith("stale:") and "muon_ns5" in p for p in problems)
    assert any(p.startswith("missing:") and "ns_cubic" in p for p in problems)
    assert any(p.startswith("orphaned:") and "retired_spec" in p for p in problems)


def test_header_carries_spec_hash_version_and_command():
    smap = polygen.load_spec("polar_express")
    src = polygen.generate("polar_express")
    head = src.splitlines()[:4]
    assert f"# spec sha256: {smap.source_hash}" in head
    assert any(f"polygen {polygen.__version__}" in line for line in head)
    assert "# regenerate:  polygen build polar_express" in head
    assert src == polygen.generate("polar_express"), "generation must be deterministic"


def test_generated_code_has_no_host_syncs():
    for name in polygen.list_specs():
        src = polygen.generate(name)
        for bad in (r"\.item\(\)", r"\.tolist\(\)", r"\.cpu\(\)", r"(?<![.\w])float\(", r"print\("):
            assert not re.search(bad, src), (name, bad)


def test_stale_builtin_is_recompiled_into_the_cache_with_a_warning(tmp_path, monkeypatch):
    import polygen.runtime.loader as loader

    monkeypatch.setattr(loader, "GENERATED_DIR", tmp_path)
    monkeypatch.setattr(loader, "CACHE_DIR", tmp_path / "cache")
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "ns_cubic.py").write_text("# spec sha256: 0000\nraise RuntimeError('stale file ran')\n")
    import sys

    for k in [k for k in sys.modules if k.startswith("polygen_generated.torch.ns_cubic")]:
        del sys.modules[k]
    with pytest.warns(UserWarning, match="stale"):
        f = polygen.load("ns_cubic", backend="torch")
    assert f(torch.eye(3)).shape == (3, 3)
    assert list((tmp_path / "cache").glob("torch_ns_cubic_*.py"))


def test_user_spec_path_loads_through_the_cache(tmp_path, monkeypatch):
    import polygen.runtime.loader as loader

    monkeypatch.setattr(loader, "CACHE_DIR", tmp_path / "cache")
    text = polygen.spec.spec_text("muon_ns5")[0].replace('name = "muon_ns5"', 'name = "my_ns"')
    p = tmp_path / "my_ns.toml"
    p.write_text(text)
    f = polygen.load(str(p), backend="torch")
    g = polygen.load("muon_ns5", backend="torch")
    G = torch.randn(16, 40, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(f(G), g(G), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["muon_ns5"])
def test_torch_compile_fullgraph_no_graph_breaks(name, monkeypatch):
    """A first inductor compile takes ~20 s on this CPU: one spec in the default run, the rest are slow.
    CPU_CHUNK_BYTES is set so that eager calls chunk the batch; traced calls must take it whole."""
    from polygen.runtime import tuning

    f = polygen.load(name, backend="torch")
    monkeypatch.setattr(tuning, "CPU_CHUNK_BYTES", 1)
    torch.manual_seed(0)
    G = torch.randn(2, 24, 64)
    compiled = torch.compile(lambda x: f(x), fullgraph=True, dynamic=False)
    torch.testing.assert_close(compiled(G), f(G), rtol=1e-4, atol=1e-5)
    explain = torch._dynamo.explain(lambda x: f(x))(G)
    assert explain.graph_break_count == 0
    # one traced call of the plan: the graph holds the Gram/direct plan's matmuls once, not once per matrix
    bmms = sum(str(n.target).count("bmm") for g in explain.graphs for n in g.graph.nodes if n.op == "call_function")
    assert 0 < bmms <= polygen.schedule(name, (24, 64)).matmuls


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in polygen.list_specs() if n != "muon_ns5"])
def test_torch_compile_fullgraph_all_specs(name):
    torch._dynamo.reset()  # one lambda per spec would otherwise count against the recompile limit
    smap = polygen.load_spec(name)
    f = polygen.load(name, backend="torch")
    torch.manual_seed(0)
    G = torch.randn(2, 24, 24) if smap.input_kind == "symmetric" else torch.randn(2, 24, 64)
    if smap.input_kind == "symmetric":
        G = G @ G.mT / 24 + 0.5 * torch.eye(24)
    compiled = torch.compile(lambda x: f(x), fullgraph=True, dynamic=False)
    torch.testing.assert_close(compiled(G), f(G), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["muon_ns5", "muonp_1_3", "inv_root_4"])
def test_eager_cpu_batches_run_in_chunks_with_the_same_result(name, monkeypatch):
    """A CPU batch larger than CPU_CHUNK_BYTES goes through the plan in chunks (faster there, see
    bench/RESULTS.md); every matrix must come out as it does from one call over the whole batch."""
    from polygen.runtime import torch_ops, tuning

    f = polygen.load(name, backend="torch")
    smap = polygen.load_spec(name)
    gen = torch.Generator().manual_seed(3)
    if smap.input_kind == "symmetric":
        A = torch.randn(5, 20, 20, generator=gen, dtype=torch.float64)
        G = (A @ A.mT / 20 + 0.5 * torch.eye(20, dtype=torch.float64)).float()
    else:
        G = torch.randn(5, 41, 19, generator=gen)  # tall: chunks run on the transposed view
    whole = f(G)
    calls = []
    real = torch_ops._apply_batch
    monkeypatch.setattr(torch_ops, "_apply_batch", lambda X, *a: calls.append(X.size(0)) or real(X, *a))
    monkeypatch.setattr(tuning, "CPU_CHUNK_BYTES", 2 * G[0].numel() * G.element_size())
    chunked = f(G)
    assert calls == [2, 2, 1]
    assert chunked.shape == G.shape and chunked.dtype == G.dtype
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-6)
    monkeypatch.setattr(tuning, "CPU_CHUNK_BYTES", 10**12)
    calls.clear()
    f(G)
    assert calls == [5]
