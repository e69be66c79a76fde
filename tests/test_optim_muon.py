"""polygen.optim.Muon against torch.optim.Muon, batching, parameter shapes, specs and argument checking."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import polygen
from polygen.optim import Muon

LR = 0.02


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32, bias=False), nn.Tanh(), nn.Linear(32, 32, bias=False), nn.Tanh(),
                         nn.Linear(32, 8, bias=False))


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(64, 16, generator=g), torch.randn(64, 8, generator=g)


def _train(make_opt, steps: int = 10) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    model = _mlp()
    X, Y = _data()
    p0 = [p.detach().clone() for p in model.parameters()]
    opt = make_opt(model.parameters())
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.mse_loss(model(X), Y).backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()], p0


def _ns_reference(G: torch.Tensor, coeffs, steps: int, eps: float = 1e-7) -> torch.Tensor:
    """torch.optim.Muon's Newton–Schulz in float64 (normalized by ‖G‖_F + eps, as the spec)."""
    a, b, c = coeffs
    X = G.double()
    tall = X.size(-2) > X.size(-1)
    if tall:
        X = X.mT
    X = X / (torch.linalg.matrix_norm(X, keepdim=True) + eps)
    for _ in range(steps):
        A = X @ X.mT
        X = a * X + (b * A + c * A @ A) @ X
    return X.mT if tall else X


@pytest.mark.parametrize("ns_plan", [None, "direct"])
def test_trajectory_matches_torch_muon_to_bf16_rounding(ns_plan):
    """10 steps, defaults (muon_ns5, bf16): the displacement from θ₀ agrees with torch.optim.Muon's to a few %,
    the size of bf16's own effect (our fp32 iteration differs from torch's bf16 one by as much)."""
    ref, p0 = _train(lambda ps: torch.optim.Muon(ps, lr=LR))
    ours, _ = _train(lambda ps: Muon(ps, lr=LR, ns_plan=ns_plan))
    fp32, _ = _train(lambda ps: Muon(ps, lr=LR, ns_dtype=torch.float32))
    for r, o, f, q in zip(ref, ours, fp32, p0):
        dev = float((o - r).norm() / (r - q).norm())
        dev32 = float((f - r).norm() / (r - q).norm())
        assert dev < 0.08, dev
        assert dev < 2 * dev32 + 0.01, (dev, dev32)


@pytest.mark.parametrize("shape", [(32, 16), (24, 24), (8, 32)])
@pytest.mark.parametrize("ns_plan", [None, "direct"])
def test_bf16_orthogonalization_is_as_accurate_as_torchs(shape, ns_plan):
    """One step (no momentum, no decay) from a Gaussian gradient: our bf16 update is within bf16 rounding of
    torch.optim.Muon's (rel. 3e-2) and as close to the float64 iteration as torch's own bf16 result is."""
    torch.manual_seed(sum(shape))
    G = torch.randn(*shape)
    updates = []
    for make in (torch.optim.Muon, lambda ps, **kw: Muon(ps, ns_plan=ns_plan, **kw)):
        w = nn.Parameter(torch.zeros(*shape))
        opt = make([w], lr=1.0, weight_decay=0.0, momentum=0.0, nesterov=False)
        w.grad = G.clone()
        opt.step()
        updates.append(-w.detach().double() / max(1.0, shape[0] / shape[1]) ** 0.5)
    theirs, ours = updates
    exact = _ns_reference(G, (3.4445, -4.7750, 2.0315), 5)

    def rel(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a - b).norm() / b.norm())

    assert rel(ours, theirs) < 3e-2
    assert rel(ours, exact) < 1.5 * rel(theirs, exact) + 2e-3


def test_custom_coefficients_generate_an_equivalent_spec():
    coeffs, steps = (2.0, -1.5, 0.5), 7
    torch.manual_seed(3)
    w = nn.Parameter(torch.randn(12, 20))
    w0 = w.detach().clone()
    opt = Muon([w], lr=LR, weight_decay=0.0, momentum=0.0, nesterov=False, ns_coefficients=coeffs, ns_steps=steps,
               ns_dtype=torch.float32)
    w.grad = torch.randn(12, 20)
    G = w.grad.clone()
    opt.step()
    update = (w0 - w.detach()) / LR  # lr scale √max(1, 12/20) = 1
    torch.testing.assert_close(update.double(), _ns_reference(G, coeffs, steps), rtol=0, atol=2e-5)
    fn = opt.function_for(opt.param_groups[0])
    assert fn.spec.total_steps == steps and fn.spec.name == "muon_ns_custom"
    assert opt.function_for(opt.param_groups[0]) is fn  # cached per (coefficients, steps, eps)


def test_float32_default_spec_matches_float64_reference():
    torch.manual_seed(4)
    w = nn.Parameter(torch.randn(24, 8))  # tall: transposed inside, lr scale √3
    w0 = w.detach().clone()
    opt = Muon([w], lr=LR, weight_decay=0.0, momentum=0.0, nesterov=False, ns_dtype=torch.float32)
    w.grad = torch.randn(24, 8)
    G = w.grad.clone()
    opt.step()
    update = (w0 - w.detach()) / (LR * 3**0.5)
    torch.testing.assert_close(update.double(), _ns_reference(G, (3.4445, -4.7750, 2.0315), 5), rtol=0, atol=2e-5)


def test_same_shapes_are_orthogonalized_in_one_batched_call():
    torch.manual_seed(0)
    params = [nn.Parameter(torch.randn(16, 16)) for _ in range(3)]
    params += [nn.Parameter(torch.randn(8, 24)), nn.Parameter(torch.randn(24, 8))]  # transposes share a call
    params += [nn.Parameter(torch.randn(2, 8, 24))]  # 3-D: a batch of two more 8×24 matrices
    opt = Muon([{"params": params[:4]}, {"params": params[4:], "lr": 0.01}])  # across groups too
    calls = []
    inner = opt.orthogonalize
    opt.orthogonalize = lambda fn, X: calls.append(tuple(X.shape)) or inner(fn, X)
    for p in params:
        p.grad = torch.randn_like(p)
    opt.step()
    assert sorted(calls) == [(3, 16, 16), (4, 8, 24)]


def test_batched_equals_one_matrix_at_a_time():
    torch.manual_seed(0)
    W = [torch.randn(8, 24) for _ in range(3)]
    G = [torch.randn(8, 24) for _ in range(3)]
    batched = [nn.Parameter(w.clone()) for w in W]
    single = [nn.Parameter(w.clone()) for w in W]
    stacked = nn.Parameter(torch.stack(W))
    kw = dict(lr=LR, ns_dtype=torch.float32)
    opts = [Muon(batched, **kw), Muon([stacked], **kw)]
    opts += [Muon([p], **kw) for p in single]
    for p, g in zip(batched, G):
        p.grad = g.clone()
    for p, g in zip(single, G):
        p.grad = g.clone()
    stacked.grad = torch.stack(G)
    for o in opts:
        o.step()
    for b, s, k in zip(batched, single, stacked.unbind(0)):
        torch.testing.assert_close(b, s, rtol=0, atol=1e-6)
        torch.testing.assert_close(b, k, rtol=0, atol=1e-6)


def test_conv_weights_are_flattened_to_matrices():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 8, 3, bias=False)
    w0 = conv.weight.detach().clone()
    opt = Muon(conv.parameters(), lr=LR, weight_decay=0.0, momentum=0.0, nesterov=False, ns_dtype=torch.float32)
    conv.weight.grad = torch.randn_like(conv.weight)
    G = conv.weight.grad.reshape(8, 27).clone()
    opt.step()
    update = ((w0 - conv.weight.detach()) / LR).reshape(8, 27)  # lr scale √max(1, 8/27) = 1
    torch.testing.assert_close(update.double(), _ns_reference(G, (3.4445, -4.7750, 2.0315), 5), rtol=0, atol=2e-5)


def test_one_dimensional_parameter_is_named_in_the_error():
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    with pytest.raises(ValueError, match=r"'0\.bias' \(shape \(4,\)\) is 1-D"):
        Muon(model.named_parameters())
    with pytest.raises(ValueError, match=r"param_groups\[0\]\.params\[1\] \(shape \(4,\)\)"):
        Muon(model.parameters())
    with pytest.raises(ValueError, match="0-D"):
        Muon([nn.Parameter(torch.tensor(1.0))])


def test_adjust_lr_fn_conventions():
    torch.manual_seed(0)
    shapes = {"original": 2.0, "match_rms_adamw": 0.2 * 32**0.5, None: 2.0}
    for fn, scale in shapes.items():
        w = nn.Parameter(torch.zeros(32, 8))
        opt = Muon([w], lr=1.0, weight_decay=0.0, momentum=0.0, nesterov=False, adjust_lr_fn=fn,
                   ns_dtype=torch.float32)
        w.grad = torch.randn(32, 8)
        X = (w.grad / w.grad.norm()).mT
        opt.step()
        o = opt.function_for(opt.param_groups[0])(X).mT
        torch.testing.assert_close(-w.detach(), scale * o, rtol=1e-5, atol=1e-6)


def test_tensor_lr_and_weight_decay():
    w = nn.Parameter(torch.ones(4, 8))
    opt = Muon([w], lr=torch.tensor(0.1), weight_decay=0.5)
    w.grad = torch.zeros(4, 8)  # zero update: only the decoupled decay θ(1 − lr·λ) acts
    opt.step()
    torch.testing.assert_close(w.detach(), torch.full((4, 8), 0.95))


@pytest.mark.parametrize("spec", ["polar_express", "ns_cubic", "prism_polar"])
def test_other_polar_specs(spec):
    if spec not in polygen.list_specs():
        pytest.skip(f"{spec} not built in")
    torch.manual_seed(0)
    w = nn.Parameter(torch.zeros(8, 16))
    opt = Muon([w], lr=1.0, weight_decay=0.0, momentum=0.0, nesterov=False, spec=spec, ns_dtype=torch.float32)
    w.grad = torch.randn(8, 16)
    opt.step()
    s = torch.linalg.svdvals(-w.detach())
    assert 0.2 < float(s.min()) and float(s.max()) < 1.5


def test_spec_from_a_path_and_parsed(tmp_path):
    text = polygen.spec.spec_text("muon_ns5")[0].replace('name = "muon_ns5"', 'name = "my_ns"')
    path = tmp_path / "my_ns.toml"
    path.write_text(text)
    for spec in (str(path), polygen.parse_spec(text, source="<test>")):
        w = nn.Parameter(torch.zeros(4, 8))
        opt = Muon([w], spec=spec, ns_dtype=torch.float32)
        w.grad = torch.randn(4, 8)
        opt.step()
        assert torch.isfinite(w).all() and w.abs().sum() > 0


@pytest.mark.parametrize("kwargs, name", [
    (dict(lr=-1.0), "lr"),
    (dict(lr=float("nan")), "lr"),
    (dict(momentum=1.0), "momentum"),
    (dict(momentum=-0.1), "momentum"),
    (dict(weight_decay=-1e-3), "weight_decay"),
    (dict(ns_steps=0), "ns_steps"),
    (dict(ns_steps=2.5), "ns_steps"),
    (dict(ns_coefficients=(1.0, 2.0)), "ns_coefficients"),
    (dict(eps=0.0), "eps"),
    (dict(adjust_lr_fn="sqrt"), "adjust_lr_fn"),
    (dict(spec="no_such_spec"), "spec"),
    (dict(spec="muonp_1_3"), "spec"),  # target power, not polar
    (dict(spec="polar_express", ns_steps=6), "ns_coefficients / ns_steps"),
    (dict(backend="cuda"), "backend"),
    (dict(ns_dtype=torch.int8), "ns_dtype"),
    (dict(nonfinite="ignore"), "nonfinite"),
    (dict(nesterov="yes"), "nesterov"),
    (dict(ns_plan="fastest"), "ns_plan"),
    (dict(spec=3), "spec"),
])
def test_invalid_hyperparameters_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name.replace("(", r"\(")):
        Muon([nn.Parameter(torch.zeros(4, 4))], **kwargs)


def test_invalid_group_override_is_rejected_and_not_added():
    opt = Muon([nn.Parameter(torch.zeros(4, 4))])
    with pytest.raises(ValueError, match="lr"):
        opt.add_param_group({"params": [nn.Parameter(torch.zeros(4, 4))], "lr": -1})
    assert len(opt.param_groups) == 1


def test_a_lone_tall_matrix_goes_to_the_spec_as_a_contiguous_stack(monkeypatch):
    """A transposed view rounds differently from the same matrix in a stack (bf16, 512×256: 4e-4 apart), so
    every bucket reaches the generated code as a contiguous (k, m, n) stack with m <= n, in every ns_dtype
    (in the parameter's own dtype ``.to`` would hand over the transposed view itself)."""
    from polygen.optim import Muon

    seen = []
    orig = Muon.orthogonalize

    def spy(self, fn, X):
        seen.append((tuple(X.shape), X.is_contiguous()))
        return orig(self, fn, X)

    monkeypatch.setattr(Muon, "orthogonalize", spy)
    for ns_dtype in (torch.bfloat16, torch.float32):
        seen.clear()
        p = torch.nn.Parameter(torch.randn(96, 48))
        opt = Muon([p], lr=0.1, ns_dtype=ns_dtype)
        p.grad = torch.randn_like(p)
        opt.step()
        assert seen == [((1, 48, 96), True)], ns_dtype


@pytest.fixture
def deterministic():
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(before)


@pytest.mark.parametrize("ns_dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("shape", [(96, 48), (48, 96), (300, 520), (520, 300)], ids=str)
@pytest.mark.parametrize("opt_name", ["Muon", "MuonP"])
def test_an_update_is_bitwise_independent_of_its_bucket(opt_name, shape, ns_dtype, deterministic):
    """Under torch.use_deterministic_algorithms(True), the same parameter and gradient give the same bits alone
    and beside two others of its shape (one bucket, one batched call). On the CPU this needs one 2-D GEMM and
    one norm per matrix (torch's batched bmm and reductions take another order for a batch of one; without
    the switch the fp32 520×300 case is an ulp off) and a contiguous stack; 300 rows cross SYM_MIN_ROWS, so
    the block-triangle products are included. Sketched specs (prism_*) draw their sketch for the whole batch
    and are not covered."""
    from polygen.optim import Muon, MuonP

    cls = {"Muon": Muon, "MuonP": MuonP}[opt_name]
    gen = torch.Generator().manual_seed(7)
    p0 = torch.randn(*shape, generator=gen)
    grads = [torch.randn(*shape, generator=gen) for _ in range(3)]
    after = []
    for k in (1, 3):
        ps = [nn.Parameter(p0.clone()) for _ in range(k)]
        opt = cls(ps, lr=0.05, ns_dtype=ns_dtype)
        for _ in range(2):  # a second step: the momentum buffer too
            for p, g in zip(ps, grads):
                p.grad = g.clone()
            opt.step()
        after.append(ps[0].detach().clone())
    assert not torch.equal(after[0], p0)
    assert torch.equal(after[0], after[1])
