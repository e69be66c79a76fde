"""polygen.optim.MuonP: the Muon^p update (unit-RMS U S^p Vᵀ of the momentum), its lr conventions and checks."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch
from torch import nn

import polygen
from polygen.optim import Muon, MuonP


def _need(spec: str) -> None:
    if spec not in polygen.list_specs():
        pytest.skip(f"built-in spec {spec} not available yet")


def _power_target(G: torch.Tensor, p: float) -> torch.Tensor:
    U, S, Vh = torch.linalg.svd(G.double(), full_matrices=False)
    T = (U * S**p) @ Vh
    return T * (G.numel() ** 0.5 / T.norm())


def _one_step(shape, **kw) -> tuple[torch.Tensor, torch.Tensor, MuonP]:
    torch.manual_seed(sum(shape))
    w = nn.Parameter(torch.zeros(*shape))
    opt = MuonP([w], lr=1.0, weight_decay=0.0, momentum=0.0, nesterov=False, **kw)
    w.grad = torch.randn(*shape)
    G = w.grad.clone()
    opt.step()
    return -w.detach(), G, opt


@pytest.mark.parametrize("p, spec", [(Fraction(1, 3), "muonp_1_3_fit"), ("1/5", "muonp_1_5_fit"),
                                     (0.6, "muonp_3_5_fit")])
@pytest.mark.parametrize("shape", [(16, 32), (32, 16)])
def test_update_is_unit_rms_fractional_power(p, spec, shape):
    """The default schedule is the per-step fitted spec (issue 16)."""
    _need(spec)
    update, G, opt = _one_step(shape, p=p, adjust_lr_fn="unit_rms", ns_dtype=torch.float32)
    assert opt.param_groups[0]["spec"] == spec
    # exactly the spec's function on the momentum (= G here), at unit RMS …
    torch.testing.assert_close(update, opt.function_for(opt.param_groups[0])(G), rtol=1e-5, atol=1e-6)
    assert abs(float(update.pow(2).mean().sqrt()) - 1) < 1e-4
    # … which approximates U S^p Vᵀ (the papers' step counts do not converge fully: cosine > 0.9)
    T = _power_target(G, float(Fraction(p) if not isinstance(p, float) else p))
    cos = float((update.double() * T).sum() / (update.double().norm() * T.norm()))
    assert cos > 0.9, cos


@pytest.mark.parametrize("p, spec", [(Fraction(1, 3), "muonp_1_3"), ("1/2", "muonp_1_2")])
def test_published_schedule_is_selectable(p, spec):
    _need(spec)
    opt = MuonP([torch.nn.Parameter(torch.zeros(8, 16))], p=p, schedule="published")
    assert opt.param_groups[0]["spec"] == spec
    with pytest.raises(ValueError, match="schedule must be one of"):
        MuonP([torch.nn.Parameter(torch.zeros(8, 16))], schedule="best")


@pytest.mark.parametrize("adjust, scale", [(None, 1 / 32**0.5), ("original", 1 / 32**0.5),
                                           ("match_rms_adamw", 0.2), ("unit_rms", 1.0)])
def test_lr_conventions(adjust, scale):
    """None/'original': update RMS lr/√fan_in, as Muon's orthogonal update; 'match_rms_adamw': 0.2·lr."""
    _need("muonp_1_3")
    update, _, _ = _one_step((16, 32), adjust_lr_fn=adjust)
    assert abs(float(update.pow(2).mean().sqrt()) / scale - 1) < 2e-2


def test_original_convention_matches_muon_step_size():
    _need("muonp_1_3")
    torch.manual_seed(0)
    steps = {}
    for name, cls in (("muon", Muon), ("muonp", MuonP)):
        w = nn.Parameter(torch.zeros(64, 16))
        opt = cls([w], lr=1.0, weight_decay=0.0, momentum=0.0, nesterov=False, ns_dtype=torch.float32)
        torch.manual_seed(5)
        w.grad = torch.randn(64, 16)
        opt.step()
        steps[name] = float(w.detach().pow(2).mean().sqrt())
    assert abs(steps["muonp"] / steps["muon"] - 1) < 0.25  # muon_ns5's singular values lie in ~[0.7, 1.2]


def test_momentum_and_batching_as_muon():
    _need("muonp_1_3")
    torch.manual_seed(0)
    params = [nn.Parameter(torch.randn(8, 16)) for _ in range(3)]
    opt = MuonP(params, lr=0.01)
    calls = []
    inner = opt.orthogonalize
    opt.orthogonalize = lambda fn, X: calls.append(tuple(X.shape)) or inner(fn, X)
    for _ in range(2):
        for p in params:
            p.grad = torch.randn_like(p)
        opt.step()
    assert calls == [(3, 8, 16), (3, 8, 16)]
    assert all("momentum_buffer" in opt.state[p] for p in params)


def test_spec_argument_overrides_p():
    _need("muonp_1_5")
    w = nn.Parameter(torch.zeros(4, 8))
    opt = MuonP([w], spec="muonp_1_5")
    assert Fraction(opt.param_groups[0]["p"]) == Fraction(1, 5)
    with pytest.raises(ValueError, match="disagrees"):
        MuonP([w], p=Fraction(1, 3), spec="muonp_1_5")


@pytest.mark.parametrize("kwargs, name", [
    (dict(p=0), "p"),
    (dict(p=1.5), "p"),
    (dict(p="one third"), "p"),
    (dict(p=Fraction(1, 7)), "p"),  # no built-in spec muonp_1_7
    (dict(spec="muon_ns5"), "spec"),  # target polar, not power
    (dict(lr=-0.1), "lr"),
    (dict(momentum=2.0), "momentum"),
    (dict(adjust_lr_fn="rms"), "adjust_lr_fn"),
    (dict(nonfinite="nan"), "nonfinite"),
])
def test_invalid_arguments_name_the_argument(kwargs, name):
    _need("muonp_1_3")
    with pytest.raises(ValueError, match=name):
        MuonP([nn.Parameter(torch.zeros(4, 4))], **kwargs)


def test_vector_parameter_is_named():
    _need("muonp_1_3")
    with pytest.raises(ValueError, match="'bias'"):
        MuonP(nn.Linear(3, 3).named_parameters())
