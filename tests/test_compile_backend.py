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


def _pass_over(fn, *xs):
    """fn's functional graph (as the post-grad pass sees it) after PolygenPass, and the regions it settled."""
    from torch.fx.experimental.proxy_tensor import make_fx

    from polygen.compile import PolygenPass

    gm = make_fx(torch.func.functionalize(fn), tracing_mode="fake")(*xs)
    p = PolygenPass(accuracy="fastest")
    p(gm.graph)
    gm.recompile()
    return gm, p.regions


def _targets(gm):
    return [n.target for n in gm.graph.nodes if n.op == "call_function"]


def test_same_shape_chains_are_stacked_into_one_batched_call():
    """Three chains of one spec and seed shape (one of them a tall input, transposed by the loop) become one
    polygen::recovered_stack call; each output is its slice, and the graph computes what polygen computes per
    matrix. The fourth chain, of another shape, gets its own call."""
    from polygen.compile.ops import function_for

    def step(a, b, c, d):
        return kj(a), kj(b) - 1.0, kj(c), kj(d)  # "- 1.0" is not spectral: it stays after the call

    xs = [random_with_spectrum(s, 1e3, seed=i) for i, s in enumerate([(24, 80), (24, 80), (80, 24), (16, 40)])]
    gm, regions = _pass_over(step, *xs)
    assert [r.stacked for r in regions] == [3, 3, 3, 1] and all(r.status == "rewritten" for r in regions)
    ops = _targets(gm)
    assert ops.count(torch.ops.polygen.recovered_stack.default) == 1 and ops.count(torch.ops.aten.mm.default) == 0
    assert ops.count(torch.ops.polygen.recovered.default) == 1
    assert len({r.spec_text for r in regions[:3]}) == 1
    got = gm(*xs)
    for i, (y, x, r) in enumerate(zip(got, xs, regions)):
        tall = x.size(-2) > x.size(-1)
        X = x.mT if tall else x
        want = function_for(r.spec_text, "torch")(X / (X.norm() + 1e-7))
        want = (want.mT if tall else want) - (1.0 if i == 1 else 0.0)
        torch.testing.assert_close(y, want, rtol=1e-5, atol=1e-6)


def test_a_chain_fed_by_another_chains_output_is_not_stacked_with_it():
    def twice(a):
        return kj(kj(a) - 1.0)

    x = random_with_spectrum((24, 80), 1e3, seed=5)
    gm, regions = _pass_over(twice, x)
    assert [r.stacked for r in regions] == [1, 1] and all(r.status == "rewritten" for r in regions)
    assert _targets(gm).count(torch.ops.polygen.recovered.default) == 2
    # the Gram plan the gate admits (within 2x the user's loop's error at kappa = 1e3) on an input whose second
    # chain starts from kj(x) - 1: float32 rounding of both sides, 1.2e-4 at worst on this machine
    torch.testing.assert_close(gm(x), kj(kj(x) - 1.0), rtol=1e-3, atol=3e-4)


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
    """torch.optim.Muon's step: the three chains of seed shape 32×96 (one a tall 96×32 parameter) are rewritten
    and stacked into one call, the square one's direct bf16 plan is left to Inductor; a second step does not
    recompile, and both steps match eager within bf16 rounding."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(32, 96)), torch.nn.Parameter(torch.randn(96, 32)),
              torch.nn.Parameter(torch.randn(64, 64)), torch.nn.Parameter(torch.randn(32, 96))]
    twins = [torch.nn.Parameter(p.detach().clone()) for p in params]
    for p, q in zip(params, twins):
        p.grad = torch.randn_like(p)
        q.grad = p.grad.clone()
    opt = torch.optim.Muon(params, lr=0.02)
    ref = torch.optim.Muon(twins, lr=0.02)
    reports = []
    step = torch.compile(opt.step, backend="polygen", options=_opts(reports))
    with torch._dynamo.config.patch(error_on_recompile=True):
        for _ in range(2):
            step()
            ref.step()
            for p, q in zip(params, twins):
                torch.testing.assert_close(p, q, rtol=0, atol=3e-3)  # bf16 iterations in another association
    statuses = sorted((r.status, r.stacked, "gains nothing" in r.reason) for r in reports)
    assert statuses == [("refused", 1, True)] + [("rewritten", 3, False)] * 3, \
        [(r.status, r.reason) for r in reports]
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


@pytest.mark.slow
def test_training_graphs_are_left_alone_and_gradients_unchanged():
    """A forward that orthogonalizes its weight with the NS loop (as in orthogonal parametrizations): under
    autograd the pass sees training graphs and leaves them, so outputs and gradients are bitwise Inductor's."""
    torch.manual_seed(0)
    W0, x = torch.randn(32, 96), torch.randn(8, 32)

    def loss(W, x):
        return (x @ kj(W)).square().sum()

    grads = {}
    for label in ("polygen", "inductor"):
        torch._dynamo.reset()
        reports = []
        W = W0.clone().requires_grad_(True)
        opts = _opts(reports) if label == "polygen" else {"fx_graph_cache": False}
        out = torch.compile(loss, backend=label, options=opts)(W, x)
        out.backward()
        grads[label] = (out.detach(), W.grad)
        if label == "polygen":
            assert reports == []  # nothing considered: training graphs never reach recovery
    assert torch.equal(grads["polygen"][0], grads["inductor"][0])
    assert torch.equal(grads["polygen"][1], grads["inductor"][1])
    torch._dynamo.reset()


@pytest.mark.slow
def test_a_recovered_spec_goes_through_the_content_keyed_cache(tmp_path):
    """The first process compiles the recovered spec into POLYGEN_CACHE under its content key; a second process
    compiling the same loop finds it there and never loads polygen's compiler (no polygen.driver import)."""
    code = ("import sys, torch\n"
            "from tests.test_compile_recover import kj\n"
            "G = torch.randn(24, 80)\n"
            "with torch.no_grad():\n"
            "    torch.compile(kj, backend='polygen', options={'fx_graph_cache': False})(G)\n"
            "print('polygen.driver' in sys.modules)\n")
    import os
    from pathlib import Path

    env = dict(os.environ, POLYGEN_CACHE=str(tmp_path), OMP_NUM_THREADS="1")
    root = str(Path(__file__).resolve().parent.parent)
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env,
                           cwd=root) for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[-1].stderr[-3000:]
    assert [r.stdout.split()[-1] for r in runs] == ["True", "False"]
    cached = sorted(p.name for p in tmp_path.glob("*.py"))
    assert len(cached) == 1 and cached[0].startswith("torch__recovered_by_polygen_"), cached
