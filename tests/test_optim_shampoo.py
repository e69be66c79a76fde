"""polygen.optim.Shampoo: roots from polygen's inverse-root specs, the Shampoo/polar identity, grafting,
blocking, the diagonal path and argument checking."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import polygen
from polygen.optim import Shampoo
from polygen.optim.shampoo import eigh_inverse_root


def _need(spec: str) -> None:
    if spec not in polygen.list_specs():
        pytest.skip(f"built-in spec {spec} not available yet")


def _spd(k: int, n: int, cond: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(k, n, n, generator=g, dtype=torch.float64))
    lam = torch.logspace(-torch.log10(torch.tensor(cond)).item(), 0, n, dtype=torch.float64)
    return (Q * lam) @ Q.mT


@pytest.mark.parametrize("r", [4, 2])
def test_polygen_roots_match_eigh(r):
    _need(f"inv_root_{r}")
    A = _spd(3, 24, cond=1e3)
    opt = Shampoo([nn.Parameter(torch.zeros(4, 4))], inv_root=r, epsilon=1e-12)
    root = opt._root_fn(opt.param_groups[0], torch.device("cpu"))
    exact = eigh_inverse_root(A, r, 1e-12)
    got = root(A.float()).double()
    assert float((got - exact).norm() / exact.norm()) < 1e-4


@pytest.mark.parametrize("root_method", ["polygen", "eigh"])
@pytest.mark.parametrize("shape", [(16, 16), (12, 20)])
def test_first_step_without_grafting_is_the_polar_factor(root_method, shape):
    """β₁ = 0, one step, no grafting: L^(-1/4) G R^(-1/4) = c·U Vᵀ (Muon without momentum)."""
    _need("inv_root_4")
    torch.manual_seed(0)
    w = nn.Parameter(torch.zeros(*shape))
    opt = Shampoo([w], lr=1.0, betas=(0.0, 0.5), epsilon=1e-10, precondition_frequency=1, grafting="none",
                  root_method=root_method)
    w.grad = torch.randn(*shape)
    U, _, Vh = torch.linalg.svd(w.grad.double(), full_matrices=False)
    opt.step()
    D = -w.detach().double()
    polar = U @ Vh
    torch.testing.assert_close(D / D.norm(), polar / polar.norm(), rtol=0, atol=2e-3)


def test_grafting_gives_adams_norm_per_block():
    _need("inv_root_4")
    torch.manual_seed(1)
    w = nn.Parameter(torch.zeros(12, 20))
    opt = Shampoo([w], lr=1.0, precondition_frequency=1, max_preconditioner_dim=8)
    w.grad = torch.randn(12, 20)
    adam = w.grad / (w.grad.abs() + 1e-8)  # step 1 of Adam with bias correction
    opt.step()
    D = -w.detach()
    for r0 in (0, 8):
        for c0 in (0, 8, 16):
            blk = (slice(r0, r0 + 8), slice(c0, c0 + 8))
            torch.testing.assert_close(D[blk].norm(), adam[blk].norm(), rtol=1e-5, atol=0)


def test_blocking_and_batched_roots():
    _need("inv_root_4")
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(12, 20))
    v = nn.Parameter(torch.randn(2, 8, 4))  # 3-D: two matrices
    opt = Shampoo([w, v], precondition_frequency=1, max_preconditioner_dim=8)
    calls = []
    inner = opt._root_fn

    def spy(group, device):
        fn = inner(group, device)
        return lambda A: calls.append(tuple(A.shape)) or fn(A)
    opt._root_fn = spy
    w.grad, v.grad = torch.randn_like(w), torch.randn_like(v)
    opt.step()
    st = opt.state[w]
    assert [tuple(F.shape) for F in st["factor_L"]] == [(8, 8)] * 3 + [(4, 4)] * 3
    assert [tuple(F.shape) for F in st["factor_R"]] == [(8, 8), (8, 8), (4, 4)] * 2
    assert len(opt.state[v]["factor_L"]) == 2 and Shampoo.block_count(v.shape, 8) == 2
    # one batched root call per factor size, over both parameters: size 8 (3 L + 4 R of w, 2 L of v), size 4
    assert sorted(calls) == [(5 + 2, 4, 4), (7 + 2, 8, 8)]


def test_diagonal_path_is_adam_for_vectors():
    torch.manual_seed(0)
    a = nn.Parameter(torch.randn(10))
    b = nn.Parameter(a.detach().clone())
    ours = Shampoo([a], lr=1e-2, betas=(0.9, 0.999), grafting_beta2=0.99, grafting_epsilon=1e-8)
    ref = torch.optim.Adam([b], lr=1e-2, betas=(0.9, 0.99), eps=1e-8)
    for _ in range(5):
        g = torch.randn(10)
        a.grad, b.grad = g.clone(), g.clone()
        ours.step()
        ref.step()
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_matrices_take_adam_steps_before_preconditioning_starts():
    torch.manual_seed(0)
    a = nn.Parameter(torch.randn(6, 5))
    b = nn.Parameter(a.detach().clone())
    ours = Shampoo([a], lr=1e-2, grafting_beta2=0.999, precondition_frequency=3)
    ref = torch.optim.Adam([b], lr=1e-2, betas=(0.9, 0.999), eps=1e-8)
    for _ in range(2):
        g = torch.randn(6, 5)
        a.grad, b.grad = g.clone(), g.clone()
        ours.step()
        ref.step()
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert torch.equal(ours.state[a]["inv_root_L"][0], torch.eye(6))  # roots not computed before step 3


def test_polygen_and_eigh_roots_train_alike():
    _need("inv_root_4")
    out = {}
    for method in ("polygen", "eigh"):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4))
        X, Y = torch.randn(32, 8), torch.randn(32, 4)
        opt = Shampoo(model.parameters(), lr=1e-2, precondition_frequency=2, root_method=method, epsilon=1e-8)
        for _ in range(6):
            opt.zero_grad()
            nn.functional.mse_loss(model(X), Y).backward()
            opt.step()
        out[method] = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert float((out["polygen"] - out["eigh"]).abs().max()) < 1e-3


def test_missing_root_spec_falls_back_to_eigh_with_a_warning():
    w = nn.Parameter(torch.zeros(4, 6))
    with pytest.warns(UserWarning, match="inv_root_3"):
        opt = Shampoo([w], inv_root=3, precondition_frequency=1)
    w.grad = torch.randn(4, 6)
    opt.step()
    assert torch.isfinite(w).all()


def test_beta2_one_sums_the_factors():
    w = nn.Parameter(torch.zeros(3, 4))
    opt = Shampoo([w], betas=(0.9, 1.0), precondition_frequency=100, root_method="eigh")
    grads = [torch.randn(3, 4) for _ in range(3)]
    for g in grads:
        w.grad = g
        opt.step()
    torch.testing.assert_close(opt.state[w]["factor_L"][0], sum(g @ g.T for g in grads))


@pytest.mark.parametrize("kwargs, name", [
    (dict(lr=-1.0), "lr"),
    (dict(betas=(1.0, 0.9)), r"betas\[0\]"),
    (dict(betas=(0.9, 0.0)), r"betas\[1\]"),
    (dict(betas=0.9), "betas"),
    (dict(epsilon=0.0), "epsilon"),
    (dict(momentum=1.0), "momentum"),
    (dict(weight_decay=-1.0), "weight_decay"),
    (dict(max_preconditioner_dim=0), "max_preconditioner_dim"),
    (dict(precondition_frequency=0), "precondition_frequency"),
    (dict(start_preconditioning_step=0), "start_preconditioning_step"),
    (dict(inv_root=0), "inv_root"),
    (dict(root_method="svd"), "root_method"),
    (dict(root_spec="muon_ns5"), "root_spec"),
    (dict(root_spec="inv_root_2", inv_root=4), "root_spec"),
    (dict(grafting="sgd"), "grafting"),
    (dict(grafting_beta2=1.0), "grafting_beta2"),
    (dict(grafting_epsilon=-1e-8), "grafting_epsilon"),
    (dict(nonfinite="warn"), "nonfinite"),
    (dict(backend="numpy"), "backend"),
])
def test_invalid_hyperparameters_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        Shampoo([nn.Parameter(torch.zeros(4, 4))], **kwargs)
