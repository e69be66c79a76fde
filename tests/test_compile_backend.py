"""torch.compile(fn, backend="polygen") end to end: registration, a rewrite, a refusal left bitwise as Inductor
compiles it, explain. A first compile takes seconds on this CPU: one of each kind runs by default, the rest
are marked slow."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from polygen.runtime.reference import random_with_spectrum
from tests.test_compile_recover import NS5, kj


def _opts(reports: list) -> dict:
    """polygen's report, and no FX graph cache: a cache hit (rightly) skips the pass and its report."""
    return {"polygen.report": reports.extend, "fx_graph_cache": False}


def _exact_ns5(G: torch.Tensor) -> torch.Tensor:
    U, S, Vh = torch.linalg.svd(G.double(), full_matrices=False)
    s = S / torch.linalg.norm(G.double())
    for a, b, c in [NS5] * 5:
        s = a * s + b * s**3 + c * s**5
    return U @ torch.diag_embed(s) @ Vh


def test_backend_is_found_by_name_in_a_process_that_never_imported_polygen():
    code = ("import sys, torch; names = torch._dynamo.list_backends(); before = 'polygen' in sys.modules; "
            "fn = torch._dynamo.lookup_backend('polygen'); print(before, 'polygen' in names, callable(fn))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.split() == ["False", "True", "True"], out.stderr[-2000:]


def test_compiled_ns5_loop_is_rewritten_and_matches_the_exact_map():
    """fp32 at 48×160: the region is rewritten (polygen::recovered in the graph), the result is as close to the
    exact map as the user's own loop (within 2×, the accuracy policy's bound), and a second call does not
    recompile. The FX graph cache is off: a cache hit (rightly) skips the pass, and its report."""
    torch._dynamo.reset()
    reports = []
    G = random_with_spectrum((48, 160), 1e3, seed=3)
    f = torch.compile(kj, backend="polygen", options=_opts(reports))
    with torch.no_grad():
        y = f(G)
        f(G)
    assert [r.status for r in reports] == ["rewritten"], [(r.status, r.reason) for r in reports]
    ref = _exact_ns5(G)
    err = float(torch.linalg.norm(y.double() - ref) / torch.linalg.norm(ref))
    eager = float(torch.linalg.norm(kj(G).double() - ref) / torch.linalg.norm(ref))
    assert err <= 2 * eager + 1e-7, (err, eager)
    torch._dynamo.reset()


def test_explain_reports_without_running_and_names_coefficients():
    from polygen.compile import explain

    G = torch.randn(32, 96)
    before = G.clone()
    (r,) = explain(kj, G)
    assert r.status == "rewritten" and r.coefficients == [NS5] * 5 and "repeat = 5" in r.spec_text
    assert torch.equal(G, before)


def test_unknown_polygen_option_is_an_error():
    from polygen.compile.graph_pass import _options

    with pytest.raises(ValueError, match="unknown polygen option"):
        _options({"polygen.bakend": "torch"})
    ours, rest = _options({"polygen.backend": "torch", "max_autotune": False})
    assert ours["backend"] == "torch" and rest == {"max_autotune": False}


def test_pass_uuid_covers_the_compiler_and_the_options():
    from polygen.compile import PolygenPass

    a, b = PolygenPass(), PolygenPass(accuracy="direct")
    assert a.uuid() == PolygenPass().uuid() != b.uuid()


@pytest.mark.slow
def test_a_refused_region_is_bitwise_what_inductor_compiles():
    def entrywise(G):
        X = G / (G.norm(dim=(-2, -1), keepdim=True) + 1e-7)
        for _ in range(3):
            A = X @ X.mT
            X = 1.5 * X - 0.5 * (A * A) @ X
        return X

    G = torch.randn(24, 64)
    torch._dynamo.reset()
    reports = []
    with torch.no_grad():
        ours = torch.compile(entrywise, backend="polygen", options=_opts(reports))(G)
        torch._dynamo.reset()
        theirs = torch.compile(entrywise, backend="inductor")(G)
    assert reports and all(r.status == "refused" for r in reports)
    assert torch.equal(ours, theirs)
    torch._dynamo.reset()


@pytest.mark.slow
def test_compiled_torch_optim_muon_step_rewrites_every_chain():
    torch._dynamo.reset()
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(32, 96)), torch.nn.Parameter(torch.randn(96, 32)),
              torch.nn.Parameter(torch.randn(64, 64))]
    twins = [torch.nn.Parameter(p.detach().clone()) for p in params]
    for p, q in zip(params, twins):
        p.grad = torch.randn_like(p)
        q.grad = p.grad.clone()
    opt = torch.optim.Muon(params, lr=0.02)
    ref = torch.optim.Muon(twins, lr=0.02)
    reports = []
    step = torch.compile(opt.step, backend="polygen", options=_opts(reports))
    step()
    ref.step()
    # the two rectangular chains are rewritten; the square one's direct bf16 plan is left to Inductor
    statuses = sorted((r.status, "gains nothing" in r.reason) for r in reports)
    assert statuses == [("refused", True), ("rewritten", False), ("rewritten", False)], \
        [(r.status, r.reason) for r in reports]
    for p, q in zip(params, twins):
        torch.testing.assert_close(p, q, rtol=0, atol=2e-3)  # bf16 iterations in another association
    torch._dynamo.reset()


@pytest.mark.slow
def test_polygens_own_muon_step_is_not_rewritten_twice():
    from polygen.optim import Muon

    torch._dynamo.reset()
    ps = [torch.nn.Parameter(torch.randn(32, 96)) for _ in range(2)]
    for p in ps:
        p.grad = torch.randn_like(p)
    reports = []
    torch.compile(Muon(ps, lr=0.02).step, backend="polygen", options=_opts(reports))()
    assert reports and all(r.status == "refused" for r in reports)
    assert any("not rewritten twice" in r.reason for r in reports)
    torch._dynamo.reset()


def test_explain_command_prints_the_table_and_refuses_bad_targets(capsys, tmp_path):
    from polygen.cli import main

    assert main(["explain", "docs/examples/ns5_loop.py:ns5", "--shape", "32x96"]) == 0
    out = capsys.readouterr().out
    assert "rewritten" in out and "3.4445, -4.775, 2.0315" in out
    assert main(["explain", str(tmp_path / "missing.py") + ":f", "--shape", "8x8"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["explain", "docs/examples/ns5_loop.py:nope", "--shape", "8x8"]) == 2
    assert "no function 'nope'" in capsys.readouterr().err
