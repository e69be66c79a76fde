"""polygen.optim.Shampoo against Distributed Shampoo's update rule (facebookresearch/optimizers,
``distributed_shampoo``), written here in float64 from its documented rule — no network, no mirror:

* per matrix G:  L ← β₂L + (1−β₂)GGᵀ,  R ← β₂R + (1−β₂)GᵀG;  at a root step t, with c = 1 − β₂ᵗ,
  Q_L = (L/c + εI)^(−1/4) (its eigh path: eigh(L/c + εI), eigenvalues shifted up to ε when the smallest is below);
* M ← β₁M + (1−β₁)G, M̂ = M/(1−β₁ᵗ);  Adam grafting A = M̂/(√(V/(1−β₂ᵍᵗ)) + ε_g), always bias-corrected;
* D = Q_L M̂ Q_R · ‖A‖/(‖Q_L M̂ Q_R‖ + 1e-16);  θ ← θ − lr·D.

The yardstick of a root method is DS's own coupled Newton (its documented iteration, float32, tolerance 1e-6,
at most 100 steps) trained the same way: how far a root DS itself ships moves the float64 trajectory.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

import polygen
from polygen.optim import Shampoo

IN, HID, OUT, BATCH, STEPS = 12, 24, 6, 32, 20
HYPER = dict(lr=0.01, beta1=0.9, beta2=0.999, graft_beta2=0.999, graft_eps=1e-8, freq=1)


def _need(spec: str) -> None:
    if spec not in polygen.list_specs():
        pytest.skip(f"built-in spec {spec} not available yet")


def loss_of(Ws: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A bias-free MLP with softmax cross-entropy (biases would take DS's 1-factor path, polygen's Adam path)."""
    return F.cross_entropy(torch.tanh(x @ Ws[0].T) @ Ws[1].T, y)


def problem(seed: int = 0) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    W0 = [torch.randn(HID, IN, generator=g, dtype=torch.float64) / IN**0.5,
          torch.randn(OUT, HID, generator=g, dtype=torch.float64) / HID**0.5]
    xs = [torch.randn(BATCH, IN, generator=g, dtype=torch.float64) for _ in range(STEPS)]
    ys = [torch.randint(0, OUT, (BATCH,), generator=g) for _ in range(STEPS)]
    return W0, xs, ys


def ds_eigh_root(A: torch.Tensor, eps: float, r: int = 4) -> torch.Tensor:
    """DS's eigh root rule in float64: eigh(A + εI); if the smallest eigenvalue λ is below ε, all shift by ε − λ."""
    lam, Q = torch.linalg.eigh(A.double() + eps * torch.eye(A.shape[-1], dtype=torch.float64))
    if lam.min() < eps:
        lam = lam - lam.min() + eps
    return (Q * lam.pow(-1.0 / r)) @ Q.T


def ds_newton_root(A: torch.Tensor, eps: float, r: int = 4, tol: float = 1e-6, iters: int = 100) -> torch.Tensor:
    """DS's coupled inverse Newton as its docstring states it, in float32: X₀ = z^(1/r) I, M₀ = z(A + εI) with
    z = (r+1)/(2‖A + εI‖_F); M' = (1 − α)I + αM (α = −1/r), X ← XM', M ← M'^r M until max|M − I| ≤ tol."""
    n = A.shape[-1]
    eye = torch.eye(n)
    ridge = A.float() + eps * eye
    z = (r + 1) / (2 * torch.linalg.norm(ridge))
    X, M = z ** (1.0 / r) * eye, z * ridge
    for _ in range(iters):
        if not (M - eye).abs().max() > tol:  # also stops on NaN, as DS's while condition does
            break
        Mp = (1 + 1.0 / r) * eye - M / r
        X, M = X @ Mp, torch.linalg.matrix_power(Mp, r) @ M
    return X.double()


def ds_trajectory(W0, xs, ys, eps: float, root=ds_eigh_root) -> list[torch.Tensor]:
    """Distributed Shampoo's step (float64 state and weights; ``root`` computes the inverse 4th roots)."""
    h = HYPER
    b1, b2, gb2 = h["beta1"], h["beta2"], h["graft_beta2"]
    W = [w.clone() for w in W0]
    st = [{"L": torch.zeros(w.shape[0], w.shape[0], dtype=torch.float64), "M": torch.zeros_like(w),
           "R": torch.zeros(w.shape[1], w.shape[1], dtype=torch.float64), "V": torch.zeros_like(w)} for w in W]
    for t, (x, y) in enumerate(zip(xs, ys), start=1):
        Wg = [w.clone().requires_grad_() for w in W]
        loss_of(Wg, x, y).backward()
        for w, wg, s in zip(W, Wg, st):
            G = wg.grad
            s["L"] = b2 * s["L"] + (1 - b2) * G @ G.T
            s["R"] = b2 * s["R"] + (1 - b2) * G.T @ G
            s["V"] = gb2 * s["V"] + (1 - gb2) * G * G
            if t % h["freq"] == 0:
                c = 1 - b2**t
                s["QL"], s["QR"] = root(s["L"] / c, eps), root(s["R"] / c, eps)
            s["M"] = b1 * s["M"] + (1 - b1) * G
            M_hat = s["M"] / (1 - b1**t)
            A = M_hat / ((s["V"] / (1 - gb2**t)).sqrt() + h["graft_eps"])
            P = s["QL"] @ M_hat @ s["QR"]
            w -= h["lr"] * P * (A.norm() / (P.norm() + 1e-16))
    return W


def polygen_trajectory(W0, xs, ys, eps: float, **kw) -> list[torch.Tensor]:
    h = HYPER
    ps = [torch.nn.Parameter(w.float().clone()) for w in W0]
    opt = Shampoo(ps, lr=h["lr"], betas=(h["beta1"], h["beta2"]), epsilon=eps, grafting_beta2=h["graft_beta2"],
                  grafting_epsilon=h["graft_eps"], precondition_frequency=h["freq"], **kw)
    for x, y in zip(xs, ys):
        opt.zero_grad()
        loss_of(ps, x.float(), y).backward()
        opt.step()
    return [p.detach().double() for p in ps]


def parting(W: list[torch.Tensor], ref: list[torch.Tensor], W0: list[torch.Tensor]) -> float:
    """How far a trajectory ends from the reference, relative to how far the reference moved (worst layer)."""
    return max(float((a - b).norm() / (b - w0).norm()) for a, b, w0 in zip(W, ref, W0))


def test_trains_as_distributed_shampoo_at_beta2_0999():
    """20 steps, β₂ = 0.999, ε = 1e-6, roots every step: polygen (float32, inv_root_4) ends within 3e-5 of DS's
    float64 trajectory, and within 10× of how far DS's own coupled Newton (float32) ends from it (measured:
    Newton 1.3e-6, polygen 3.5e-6, polygen with float64 eigh roots 2.7e-6 — float32 arithmetic, not the
    root, sets the gap). Without the factors' bias correction the gap is 6e-2: εI weighs 1/(1 − β₂ᵗ) more."""
    _need("inv_root_4")
    W0, xs, ys = problem()
    ref = ds_trajectory(W0, xs, ys, eps=1e-6)
    yardstick = parting(ds_trajectory(W0, xs, ys, eps=1e-6, root=ds_newton_root), ref, W0)
    ours = parting(polygen_trajectory(W0, xs, ys, eps=1e-6), ref, W0)
    assert ours < 3e-5 and ours < 10 * yardstick, (ours, yardstick)


def test_without_bias_correction_the_factors_are_not_divided():
    """use_bias_correction=False: roots of L + εI (β₁ EMA uncorrected too); Adam grafting stays corrected."""
    w = torch.nn.Parameter(torch.zeros(3, 4))
    opt = Shampoo([w], betas=(0.0, 0.9), epsilon=1e-3, precondition_frequency=1, root_method="eigh",
                  use_bias_correction=False)
    g = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    w.grad = g
    opt.step()
    L = 0.1 * g.double() @ g.double().T  # (1 − β₂)GGᵀ, not divided by 1 − β₂ = 0.1
    torch.testing.assert_close(opt.state[w]["inv_root_L"][0].double(), ds_eigh_root(L, 1e-3), rtol=1e-5, atol=0)
    corrected = Shampoo([torch.nn.Parameter(torch.zeros(3, 4))], betas=(0.0, 0.9), epsilon=1e-3,
                        precondition_frequency=1, root_method="eigh")
    v = corrected.param_groups[0]["params"][0]
    v.grad = g
    corrected.step()
    torch.testing.assert_close(corrected.state[v]["inv_root_L"][0].double(), ds_eigh_root(L / 0.1, 1e-3),
                               rtol=1e-5, atol=0)


def _singular_factor() -> torch.Tensor:
    """An output layer's left factor under softmax cross-entropy, GGᵀ with 1ᵀG = 0 (each row of
    softmax − onehot sums to 0): exactly singular, and float32 rounds its zero eigenvalue to ±1e-9·‖GGᵀ‖,
    far below −ε at ε = 1e-12 — here pinned at −1e-9·λ_max."""
    g = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(OUT, OUT, generator=g, dtype=torch.float64))
    Q[:, 0] = 1 / OUT**0.5  # the null direction: the all-ones vector
    Q, _ = torch.linalg.qr(Q)
    lam = torch.tensor([-1e-9, 5e-3, 1e-2, 4e-2, 5e-2, 0.1], dtype=torch.float64)
    return ((Q * lam) @ Q.T).float()


def test_singular_factor_stays_finite_where_coupled_newton_does_not():
    """At ε = 1e-12 (DS's default) DS's coupled Newton diverges on the rounded-singular factor (a negative
    eigenvalue grows by ≥ (1 + 1/r)^r per step; DS then raises on the non-finite root), and float64 eigh confirms
    L + εI is indefinite there; polygen's inv_root_4 stays finite and PSD-shaped on it and on the exact one."""
    _need("inv_root_4")
    L = _singular_factor()
    assert torch.linalg.eigvalsh(L.double() + 1e-12 * torch.eye(OUT, dtype=torch.float64)).min() < 0
    assert not torch.isfinite(ds_newton_root(L, 1e-12)).all()
    opt = Shampoo([torch.nn.Parameter(torch.zeros(2, 2))], epsilon=1e-12)
    root = opt._root_fn(opt.param_groups[0], torch.device("cpu"))
    ones = torch.ones(OUT, 1, dtype=torch.float64) / OUT**0.5
    exact = L.double() - (ones.T @ L.double() @ ones) * (ones @ ones.T)  # the zero eigenvalue exactly 0
    for A in (L, exact.float()):
        Q = root(A.unsqueeze(0))[0].double()
        assert torch.isfinite(Q).all()
        assert torch.linalg.eigvalsh((Q + Q.T) / 2).min() > 0
        # on the directions that carry the gradient (not the null one), the root is the float64 one
        P = torch.eye(OUT, dtype=torch.float64) - ones @ ones.T
        torch.testing.assert_close(P @ Q @ P, P @ ds_eigh_root(A.double(), 1e-12) @ P, rtol=0, atol=2e-2)


def test_training_at_default_epsilon_stays_finite():
    """The same MLP at ε = 1e-12, where each output-layer factor is singular: 20 finite polygen steps that end
    within 1e-3 (relative) of DS's float64 eigh trajectory, the null direction's root being clipped by polygen's
    design range rather than (1e-12)^(-1/4) = 1e3."""
    _need("inv_root_4")
    W0, xs, ys = problem()
    ours = polygen_trajectory(W0, xs, ys, eps=1e-12)
    assert all(torch.isfinite(w).all() for w in ours)
    assert parting(ours, ds_trajectory(W0, xs, ys, eps=1e-12), W0) < 1e-3
