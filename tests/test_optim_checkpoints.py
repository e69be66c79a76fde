"""Specs keyed by content, checkpoints across torch.optim.Muon and polygen's optimizers, checkpoints that cannot
apply, sparse gradients and empty parameters."""

from __future__ import annotations

import copy
import io
import math
import os

import pytest
import torch
from conftest import same_state
from torch import nn

import polygen
from polygen.optim import Mixed, Muon, MuonP, MuonWithAdamW, NonFiniteGradError, Shampoo, split_params
from polygen.spec import spec_hash, spec_text

NS5 = (3.4445, -4.7750, 2.0315)
MODES = ("raise", "skip", "off")


def _need(spec: str) -> None:
    if spec not in polygen.list_specs():
        pytest.skip(f"built-in spec {spec} not available yet")


def _ns_reference(G: torch.Tensor, steps: int, coeffs=NS5, eps: float = 1e-7) -> torch.Tensor:
    """The quintic Newton–Schulz of muon_ns5 in float64 (normalized by ‖G‖_F + eps, as the spec)."""
    a, b, c = coeffs
    X = G.double()
    tall = X.size(-2) > X.size(-1)
    X = X.mT if tall else X
    X = X / (torch.linalg.matrix_norm(X, keepdim=True) + eps)
    for _ in range(steps):
        A = X @ X.mT
        X = a * X + (b * A + c * A @ A) @ X
    return X.mT if tall else X


def _round_trip(state_dict: dict) -> dict:
    """torch.save + torch.load (weights_only): what a checkpoint file gives back."""
    buf = io.BytesIO()
    torch.save(state_dict, buf)
    buf.seek(0)
    return torch.load(buf)


# --- specs are keyed by their content ----------------------------------------------------------------------

def _renamed(builtin: str, name: str) -> str:
    """A built-in spec's text under another name, its [verify] claim dropped (fewer steps would break it)."""
    text = spec_text(builtin)[0].replace(f'name = "{builtin}"', f'name = "{name}"')
    head, sep, _ = text.partition("\n[verify]\n")
    assert sep
    return head + sep + 'expect = "none"\n'


def _ns_text(steps: int) -> str:
    """muon_ns5 as "my_ns" with ``steps`` steps (one digit: texts of equal size)."""
    text = _renamed("muon_ns5", "my_ns")
    assert "repeat = 5\n" in text and 1 <= steps <= 9
    return text.replace("repeat = 5\n", f"repeat = {steps}\n")


def _muon_update(spec: object, G: torch.Tensor) -> torch.Tensor:
    """One step of a new Muon (fp32, no momentum, no decay, lr 1, wide G: lr scale 1): its update."""
    w = nn.Parameter(torch.zeros_like(G))
    opt = Muon([w], lr=1.0, weight_decay=0.0, momentum=0.0, nesterov=False, spec=spec, ns_dtype=torch.float32)
    w.grad = G.clone()
    opt.step()
    return -w.detach().double()


def _rewrite_keeping_mtime(path, text: str) -> None:
    """Edit a file in place to ``text`` of the same size and put its mtime back: only the content says it changed."""
    st = path.stat()
    assert len(text.encode()) == st.st_size
    with open(path, "r+", encoding="utf-8") as fh:
        fh.write(text)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_mtime_ns == st.st_mtime_ns and path.stat().st_size == st.st_size


def test_a_new_muon_runs_what_the_spec_file_says_now(tmp_path):
    torch.manual_seed(0)
    G = torch.randn(8, 16)
    five, two = _ns_reference(G, 5), _ns_reference(G, 2)
    assert float((five - two).norm() / five.norm()) > 0.1  # the two files are told apart by the update
    path = tmp_path / "my_ns.toml"
    path.write_text(_ns_text(5), encoding="utf-8")
    w = nn.Parameter(torch.zeros(8, 16))
    old = Muon([w], lr=1.0, weight_decay=0.0, momentum=0.0, nesterov=False, spec=str(path), ns_dtype=torch.float32)
    torch.testing.assert_close(_muon_update(str(path), G), five, rtol=0, atol=2e-5)

    _rewrite_keeping_mtime(path, _ns_text(2))
    torch.testing.assert_close(_muon_update(str(path), G), two, rtol=0, atol=2e-5)
    torch.testing.assert_close(_muon_update(path, G), two, rtol=0, atol=2e-5)  # a Path too
    w.grad = G.clone()  # an optimizer built before the edit keeps the function it read: no file access per step
    old.step()
    torch.testing.assert_close(-w.detach().double(), five, rtol=0, atol=2e-5)


def test_a_relative_spec_path_is_the_file_of_the_current_directory(tmp_path, monkeypatch):
    torch.manual_seed(1)
    G = torch.randn(8, 16)
    for steps in (5, 2):
        (tmp_path / str(steps)).mkdir()
        (tmp_path / str(steps) / "spec.toml").write_text(_ns_text(steps), encoding="utf-8")
    for steps in (5, 2, 5):
        monkeypatch.chdir(tmp_path / str(steps))
        torch.testing.assert_close(_muon_update("spec.toml", G), _ns_reference(G, steps), rtol=0, atol=2e-5)


def test_muonp_spec_path_is_keyed_by_content(tmp_path, monkeypatch):
    _need("muonp_1_3")
    base = _renamed("muonp_1_3", "my_power")
    texts = {steps: base.replace("repeat = 6\n", f"repeat = {steps}\n") for steps in (6, 2)}
    for steps, text in texts.items():
        (tmp_path / str(steps)).mkdir()
        (tmp_path / str(steps) / "spec.toml").write_text(text, encoding="utf-8")
    updates = []
    for steps, text in texts.items():
        monkeypatch.chdir(tmp_path / str(steps))
        w = nn.Parameter(torch.zeros(8, 16))
        opt = MuonP([w], spec="spec.toml", lr=1.0, weight_decay=0.0, momentum=0.0, nesterov=False,
                    ns_dtype=torch.float32)
        assert opt.function_for(opt.param_groups[0]).spec.source_hash == spec_hash(text)
        w.grad = torch.randn(8, 16, generator=torch.Generator().manual_seed(2))
        opt.step()
        updates.append(w.detach().clone())
    assert float((updates[0] - updates[1]).norm() / updates[0].norm()) > 1e-2


def test_a_new_shampoo_runs_what_the_root_spec_file_says_now(tmp_path):
    _need("inv_root_4_newton")
    text = _renamed("inv_root_4_newton", "my_root")
    assert "repeat = 20\n" in text
    path = tmp_path / "my_root.toml"
    path.write_text(text, encoding="utf-8")

    def update(**kw: object) -> torch.Tensor:
        """First step without grafting: L^(-1/4) G R^(-1/4), a direction that depends on the roots' accuracy."""
        w = nn.Parameter(torch.zeros(12, 20))
        opt = Shampoo([w], lr=1.0, betas=(0.0, 0.5), epsilon=1e-10, precondition_frequency=1, grafting="none", **kw)
        w.grad = torch.randn(12, 20, generator=torch.Generator().manual_seed(3))
        opt.step()
        return -w.detach().double()

    exact = update(root_method="eigh")
    torch.testing.assert_close(update(root_spec=str(path)), exact, rtol=0, atol=2e-3 * float(exact.abs().max()))
    _rewrite_keeping_mtime(path, text.replace("repeat = 20\n", "repeat = 1 \n"))
    assert float((update(root_spec=str(path)) - exact).norm() / exact.norm()) > 0.05


# --- checkpoints of torch.optim.Muon --------------------------------------------------------------------------

def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(16, 32, bias=False), nn.Tanh(), nn.Linear(32, 32, bias=False), nn.Tanh(),
                         nn.Linear(32, 8, bias=False))


def _grads(model: nn.Module, i: int) -> None:
    g = torch.Generator().manual_seed(10 + i)
    X, Y = torch.randn(64, 16, generator=g), torch.randn(64, 8, generator=g)
    model.zero_grad()
    nn.functional.mse_loss(model(X), Y).backward()


TORCH_MUON = dict(lr=0.02, weight_decay=0.01, momentum=0.9, nesterov=True)


def _trained_torch_muon(steps: int = 3) -> tuple[nn.Module, torch.optim.Muon]:
    model = _mlp()
    opt = torch.optim.Muon(model.parameters(), **TORCH_MUON)
    for i in range(steps):
        _grads(model, i)
        opt.step()
    return model, opt


def _muon_step_reference(p: torch.Tensor, g: torch.Tensor, buf: torch.Tensor) -> torch.Tensor:
    """torch.optim.Muon's step for TORCH_MUON in float64 from momentum ``buf`` (what both optimizers compute)."""
    mu, lr, wd = TORCH_MUON["momentum"], TORCH_MUON["lr"], TORCH_MUON["weight_decay"]
    buf = buf.double().lerp(g.double(), 1 - mu)
    ortho = _ns_reference(g.double().lerp(buf, mu), 5)
    return p.double() * (1 - lr * wd) - lr * max(1.0, p.size(0) / p.size(1)) ** 0.5 * ortho


# Tolerances on the parameters one step after the load, as fractions of that step's largest entry. float32:
# polygen's muon_ns5 is the float64 iteration up to fp32 rounding amplified by NS5's slope (up to 3.4445⁵ ≈ 480
# near 0): 1e-4 (measured 4e-6). bfloat16, and torch.optim.Muon, which always iterates in bf16: u = 2⁻⁸ amplified
# by the same slope; on this model's square layer, whose Nesterov momentum is ill-conditioned, torch's and
# polygen's bf16 steps both lie ~10 % (Frobenius) and up to 19 % of the largest entry from the float64 step. So
# polygen's bf16 step must be as accurate as torch's (1.5x + 2e-3, as in test_optim_muon), and any two of these
# steps agree entrywise within 0.4 of the largest entry.
FP32_STEP_TOL = 1e-4
BF16_STEP_TOL = 0.4


def _rel(p: torch.Tensor, p0: torch.Tensor, exact: torch.Tensor) -> float:
    """Relative Frobenius distance of the step p0 → p from the step p0 → exact."""
    step = exact - p0.double()
    return float(((p.detach().double() - p0.double()) - step).norm() / step.norm())


@pytest.mark.parametrize("ns_dtype", [torch.float32, torch.bfloat16])
def test_torch_muon_checkpoint_continues_in_polygen_muon(ns_dtype):
    theirs, topt = _trained_torch_muon()
    ours = copy.deepcopy(theirs)
    ckpt = _round_trip(topt.state_dict())
    saved = [ckpt["state"][i]["momentum_buffer"].clone() for i in range(3)]  # loading aliases, steps mutate
    opt = Muon(ours.parameters(), lr=1.0, momentum=0.5, nesterov=False, spec="muon_ns5", ns_dtype=ns_dtype)
    opt.load_state_dict(ckpt)
    group = opt.param_groups[0]
    assert {k: group[k] for k in TORCH_MUON} == TORCH_MUON  # the checkpoint's hyperparameters …
    assert (group["spec"], group["ns_dtype"], group["backend"]) == ("muon_ns5", ns_dtype, "auto")  # … ours
    for p, buf in zip(ours.parameters(), saved):
        assert torch.equal(opt.state[p]["momentum_buffer"], buf)

    _grads(theirs, 3)
    for p, q in zip(ours.parameters(), theirs.parameters()):
        p.grad = q.grad.clone()
    before = [p.detach().clone() for p in ours.parameters()]
    topt.step()
    opt.step()
    for p, q, p0, buf in zip(ours.parameters(), theirs.parameters(), before, saved):
        torch.testing.assert_close(opt.state[p]["momentum_buffer"], topt.state[q]["momentum_buffer"])
        exact = _muon_step_reference(p0, p.grad, buf)
        largest = float((exact - p0.double()).abs().max())
        if ns_dtype == torch.float32:
            torch.testing.assert_close(p.detach().double(), exact, rtol=0, atol=FP32_STEP_TOL * largest)
        else:
            assert _rel(p, p0, exact) < 1.5 * _rel(q, p0, exact) + 2e-3
        torch.testing.assert_close(p.detach(), q.detach(), rtol=0, atol=BF16_STEP_TOL * largest)


def test_polygen_muon_checkpoint_continues_in_torch_muon():
    model = _mlp()
    opt = Muon(model.parameters(), **TORCH_MUON)
    for i in range(3):
        _grads(model, i)
        opt.step()
    twin = copy.deepcopy(model)
    topt = torch.optim.Muon(twin.parameters())
    topt.load_state_dict(_round_trip(opt.state_dict()))
    _grads(model, 3)
    for p, q in zip(model.parameters(), twin.parameters()):
        q.grad = p.grad.clone()
    before = [p.detach().clone() for p in model.parameters()]
    opt.step()
    topt.step()
    for p, q, p0 in zip(model.parameters(), twin.parameters(), before):
        torch.testing.assert_close(topt.state[q]["momentum_buffer"], opt.state[p]["momentum_buffer"])
        atol = BF16_STEP_TOL * float((p.detach() - p0).abs().max())  # both bf16: see BF16_STEP_TOL
        torch.testing.assert_close(q.detach(), p.detach(), rtol=0, atol=atol)


def test_torch_muon_checkpoint_loads_into_muonp_with_its_momentum():
    _need("muonp_1_3")
    model, topt = _trained_torch_muon()
    ckpt = _round_trip(topt.state_dict())
    saved = [ckpt["state"][i]["momentum_buffer"].clone() for i in range(3)]
    opt = MuonP(model.parameters(), lr=1e-3, ns_dtype=torch.float32)
    opt.load_state_dict(ckpt)
    group = opt.param_groups[0]
    assert group["lr"] == TORCH_MUON["lr"] and (group["spec"], group["p"]) == ("muonp_1_3_fit", "1/3")
    _grads(model, 3)
    before = [p.detach().clone() for p in model.parameters()]
    opt.step()
    for i, (p, p0) in enumerate(zip(model.parameters(), before)):
        buf = saved[i].lerp(p.grad, 1 - TORCH_MUON["momentum"])
        torch.testing.assert_close(opt.state[p]["momentum_buffer"], buf, rtol=0, atol=0)
        assert torch.isfinite(p).all() and not torch.equal(p.detach(), p0)


def test_shampoo_checkpoint_without_polygen_keys_takes_the_constructors_values():
    _need("inv_root_4")
    kw = dict(lr=1e-2, momentum=0.5, precondition_frequency=2, max_preconditioner_dim=16, root_method="eigh")
    model = _mlp()
    opt = Shampoo(model.parameters(), **kw)
    for i in range(3):
        _grads(model, i)
        opt.step()
    ckpt = _round_trip(opt.state_dict())
    for g in ckpt["param_groups"]:  # as if saved by an optimizer without these settings
        for key in ("root_method", "root_spec", "grafting", "backend"):
            del g[key]
    twin = copy.deepcopy(model)
    topt = Shampoo(twin.parameters(), **kw)
    topt.load_state_dict(ckpt)
    assert topt.param_groups[0]["root_method"] == "eigh" and topt.param_groups[0]["grafting"] == "adam"
    for i in range(3, 6):
        for m, o in ((model, opt), (twin, topt)):
            _grads(m, i)
            o.step()
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.equal(p, q)


def test_mixed_torch_muon_checkpoint_loads_into_muon_with_adamw():
    def tiny() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 8))

    model = tiny()
    muon, adamw = split_params(model)
    opt = Mixed(torch.optim.Muon([p for _, p in muon], **TORCH_MUON), torch.optim.AdamW([p for _, p in adamw]))
    for i in range(2):
        _grads(model, i)
        opt.step()
    ckpt = _round_trip(opt.state_dict())
    ours = MuonWithAdamW(tiny(), ns_dtype=torch.float32)
    ours.load_state_dict(ckpt)
    assert ours.param_groups[0]["spec"] == "muon_ns5" and ours.param_groups[0]["ns_dtype"] == torch.float32
    assert ours.param_groups[0]["lr"] == TORCH_MUON["lr"] and ours.matrix.state is ours.state
    ours.step()  # no gradients: nothing happens, and nothing is missing from the groups
    assert torch.equal(ours.state[ours.param_groups[0]["params"][0]]["momentum_buffer"],
                       ckpt["state"][0]["momentum_buffer"])


# --- a checkpoint whose spec cannot apply fails at load time -------------------------------------------------

def _trained_muon(groups: int = 1) -> tuple[nn.Module, Muon]:
    model = _mlp()
    ps = list(model.parameters())
    opt = Muon([{"params": ps[:1]}, {"params": ps[1:]}] if groups == 2 else ps, lr=0.02)
    for i in range(2):
        _grads(model, i)
        opt.step()
    return model, opt


def _assert_load_fails_and_changes_nothing(opt: torch.optim.Optimizer, ckpt: dict, match: str) -> None:
    before = _round_trip(opt.state_dict())
    groups = [dict(g) for g in opt.param_groups]
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(ckpt)
    assert same_state(_round_trip(opt.state_dict()), before)
    assert [dict(g) for g in opt.param_groups] == groups


@pytest.mark.parametrize("edit, match", [
    ({"spec": "inv_root_2"}, r"param_groups\[0\] \(spec='inv_root_2'\).*target 'polar'"),
    ({"spec": "muonp_1_3"}, r"param_groups\[0\] \(spec='muonp_1_3'\).*target 'polar'"),
    ({"spec": "no_such_spec"}, r"param_groups\[0\] \(spec='no_such_spec'\).*unknown spec"),
    ({"backend": "cuda"}, r"param_groups\[0\] \(spec='muon_ns5'\).*backend"),
    ({"ns_dtype": torch.int8}, r"param_groups\[0\] \(spec='muon_ns5'\).*ns_dtype"),
    ({"ns_steps": 0}, r"param_groups\[0\].*ns_steps"),
])
def test_checkpoint_with_a_group_that_cannot_apply_fails_at_load(edit, match):
    _, opt = _trained_muon()
    ckpt = _round_trip(opt.state_dict())
    ckpt["param_groups"][0].update(edit)
    _assert_load_fails_and_changes_nothing(opt, ckpt, "Muon.load_state_dict: " + match)


def test_checkpoint_whose_spec_file_is_gone_fails_at_load(tmp_path):
    path = tmp_path / "my_ns.toml"
    path.write_text(_ns_text(5), encoding="utf-8")
    model = _mlp()
    saver = Muon(model.parameters(), spec=str(path), ns_dtype=torch.float32)
    _grads(model, 0)
    saver.step()
    ckpt = _round_trip(saver.state_dict())
    path.unlink()
    _, opt = _trained_muon()
    _assert_load_fails_and_changes_nothing(opt, ckpt, r"param_groups\[0\] \(spec='.*my_ns\.toml'\).*no such spec")


def test_a_bad_second_group_loads_nothing():
    _, opt = _trained_muon(groups=2)
    ckpt = _round_trip(opt.state_dict())
    ckpt["param_groups"][0]["lr"] = 0.5  # a good first group is not loaded either
    ckpt["param_groups"][1]["spec"] = "inv_root_2"
    _assert_load_fails_and_changes_nothing(opt, ckpt, r"param_groups\[1\] \(spec='inv_root_2'\)")
    assert opt.param_groups[0]["lr"] == 0.02


def test_muonp_and_shampoo_checkpoints_that_cannot_apply_fail_at_load():
    _need("muonp_1_3")
    _need("inv_root_4")
    model = _mlp()
    opt = MuonP(model.parameters())
    ckpt = _round_trip(opt.state_dict())
    ckpt["param_groups"][0]["spec"] = "muon_ns5"
    _assert_load_fails_and_changes_nothing(opt, ckpt, r"MuonP.load_state_dict: param_groups\[0\] "
                                                      r"\(spec='muon_ns5'\).*target 'power'")
    sh = Shampoo(model.parameters())
    ckpt = _round_trip(sh.state_dict())
    ckpt["param_groups"][0]["root_spec"] = "muon_ns5"
    _assert_load_fails_and_changes_nothing(sh, ckpt, r"Shampoo.load_state_dict: param_groups\[0\] .*"
                                                     r"root_spec='muon_ns5'.*inverse_root")


def test_muon_with_adamw_checkpoint_that_cannot_apply_fails_at_load():
    model = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 8))
    opt = MuonWithAdamW(model)
    _grads(model, 0)
    opt.step()
    ckpt = _round_trip(opt.state_dict())
    ckpt["param_groups"][0]["spec"] = "inv_root_2"
    ckpt["param_groups"][1]["lr"] = 0.5
    _assert_load_fails_and_changes_nothing(opt, ckpt, r"MuonWithAdamW.load_state_dict: .*sub-optimizer 0.*"
                                                      r"param_groups\[0\] \(spec='inv_root_2'\)")
    assert opt.matrix.param_groups[0] is opt.param_groups[0] and opt.adamw.param_groups[0]["lr"] != 0.5


def _other_mlp(seed: int = 1) -> nn.Module:
    """Same parameter count and order as _mlp, other shapes: its checkpoint maps onto _mlp's parameters."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(16, 24, bias=False), nn.Tanh(), nn.Linear(24, 32, bias=False), nn.Tanh(),
                         nn.Linear(32, 8, bias=False))


@pytest.mark.parametrize("kind", ["muon", "muonp", "shampoo"])
def test_a_checkpoint_of_other_shapes_fails_at_load_and_changes_nothing(kind):
    """torch.optim.Muon loads such a checkpoint and fails at the next step(); here load refuses it, naming the
    parameter (index, or name when the optimizer was given names) and both shapes."""
    if kind == "muonp":
        _need("muonp_1_3")
    make = {"muon": lambda ps: Muon(ps, lr=0.02), "muonp": lambda ps: MuonP(ps, lr=0.02),
            "shampoo": lambda ps: Shampoo(ps, precondition_frequency=1)}[kind]
    other = _other_mlp()
    saver = make(other.parameters())
    _grads(other, 0)
    saver.step()
    ckpt = _round_trip(saver.state_dict())
    model = _mlp()
    opt = make(model.parameters())
    _grads(model, 0)
    opt.step()
    first = "momentum_buffer" if kind != "shampoo" else "exp_avg"
    _assert_load_fails_and_changes_nothing(
        opt, ckpt, rf"{type(opt).__name__}.load_state_dict: the checkpoint's state '{first}' of "
                   rf"param_groups\[0\].params\[0\] \(shape \(32, 16\)\) has shape \(24, 16\), this parameter needs "
                   rf"\(32, 16\); nothing was loaded")
    _grads(model, 1)
    opt.step()  # still usable
    named = make(list(model.named_parameters()))
    _assert_load_fails_and_changes_nothing(named, ckpt, r"'0\.weight' \(shape \(32, 16\)\)")


def test_shampoo_checkpoint_blocks_are_checked_against_the_loaded_blocking():
    """Factors and roots are one square per block: a factor of another size, or a checkpoint whose group blocks
    at another max_preconditioner_dim than its factors were made with, is refused at load."""
    _need("inv_root_4")
    model = _mlp()
    opt = Shampoo(model.parameters(), precondition_frequency=1, max_preconditioner_dim=16)
    _grads(model, 0)
    opt.step()
    ckpt = _round_trip(opt.state_dict())
    ok = _round_trip(opt.state_dict())
    ckpt["state"][1]["factor_R"][1] = torch.zeros(8, 8)
    _assert_load_fails_and_changes_nothing(opt, ckpt, r"'factor_R' of param_groups\[0\]\.params\[1\] "
                                                      r"\(shape \(32, 32\)\) has shape \[\(16, 16\), \(8, 8\), "
                                                      r".*needs \[\(16, 16\), \(16, 16\)")
    ok["param_groups"][0]["max_preconditioner_dim"] = 32
    _assert_load_fails_and_changes_nothing(opt, ok, r"'factor_L' of param_groups\[0\]\.params\[0\]")
    ok["param_groups"][0]["max_preconditioner_dim"] = 16
    opt.load_state_dict(ok)  # the checkpoint as saved loads


def test_muon_with_adamw_checkpoint_of_other_shapes_fails_at_load():
    """The AdamW part is checked too (torch's elementwise state has the parameter's shape)."""
    def model_of(width: int) -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, width))

    other = model_of(6)
    saver = MuonWithAdamW(other)
    _grads_any(other, 6)
    saver.step()
    ckpt = _round_trip(saver.state_dict())
    model = model_of(8)
    opt = MuonWithAdamW(model)
    _grads_any(model, 8)
    opt.step()
    _assert_load_fails_and_changes_nothing(opt, ckpt, r"MuonWithAdamW.load_state_dict: the checkpoint's state "
                                                      r"'exp_avg' of '.*' \(shape \((8, 32|8)\)\) "
                                                      r"has shape \((6, 32|6)\)")


def _grads_any(model: nn.Module, out: int) -> None:
    g = torch.Generator().manual_seed(5)
    model.zero_grad()
    nn.functional.mse_loss(model(torch.randn(64, 16, generator=g)), torch.randn(64, out, generator=g)).backward()


# --- sparse gradients and empty parameters ---------------------------------------------------------------------

def _make(kind: str, params: list, mode: str) -> torch.optim.Optimizer:
    if kind == "muon":
        return Muon(params, lr=0.02, nonfinite=mode)
    if kind == "muon_adamw_rms":
        return Muon(params, lr=0.02, adjust_lr_fn="match_rms_adamw", nonfinite=mode)
    if kind == "muonp":
        _need("muonp_1_3")
        return MuonP(params, lr=0.02, nonfinite=mode)
    _need("inv_root_4")
    return Shampoo(params, lr=1e-2, momentum=0.5, precondition_frequency=1, max_preconditioner_dim=4,
                   nonfinite=mode)


KINDS = ("muon", "muon_adamw_rms", "muonp", "shampoo")


def _snapshot(params: list, opt: torch.optim.Optimizer) -> tuple[list[torch.Tensor], dict, int]:
    return [p.detach().clone() for p in params], _round_trip(opt.state_dict()), opt.skipped_steps


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["muon", "muonp", "shampoo"])
def test_sparse_gradient_raises_the_clear_error_before_anything_changes(kind, mode):
    torch.manual_seed(0)
    a, b = nn.Parameter(torch.randn(6, 8)), nn.Parameter(torch.randn(6, 8))
    opt = _make(kind, [{"params": [a]}, {"params": [b]}], mode)
    a.grad, b.grad = torch.randn(6, 8), torch.randn(6, 8)
    opt.step()  # state exists: a half-done step would show in it
    a.grad = torch.randn(6, 8)
    b.grad = torch.randn(6, 8).to_sparse()
    if mode != "off":
        a.grad[0, 0] = math.nan  # the sparse check comes first, whatever the guard would say
    before = _snapshot([a, b], opt)
    with pytest.raises(RuntimeError, match=r"does not support sparse gradients: param_groups\[1\]\.params\[0\]"):
        opt.step()
    after = _snapshot([a, b], opt)
    assert all(torch.equal(x, y) for x, y in zip(before[0], after[0]))
    assert same_state(before[1], after[1]) and before[2] == after[2]


@pytest.mark.parametrize("mode", MODES)
def test_sparse_gradient_in_muon_with_adamw_changes_nothing(mode):
    model = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 8))
    opt = MuonWithAdamW(model, nonfinite=mode)
    _grads(model, 0)
    opt.step()
    _grads(model, 1)
    model[2].weight.grad = model[2].weight.grad.to_sparse()
    before = _snapshot(list(model.parameters()), opt)
    with pytest.raises(RuntimeError, match="Muon does not support sparse gradients"):
        opt.step()
    after = _snapshot(list(model.parameters()), opt)
    assert all(torch.equal(x, y) for x, y in zip(before[0], after[0]))
    assert same_state(before[1], after[1])


@pytest.mark.parametrize("mode", MODES)
def test_mixed_guard_reads_sparse_gradients_of_optimizers_that_take_them(mode):
    emb = nn.Embedding(10, 4, sparse=True)
    w = nn.Parameter(torch.randn(6, 8))
    opt = Mixed(Muon([w], lr=0.02), torch.optim.SparseAdam(emb.parameters()), nonfinite=mode)
    emb(torch.tensor([1, 2])).sum().backward()
    w.grad = torch.randn(6, 8)
    before = emb.weight.detach().clone()
    opt.step()
    assert not torch.equal(before, emb.weight) and opt.skipped_steps == 0
    if mode == "off":
        return
    emb.zero_grad()
    (emb(torch.tensor([3])).sum() * math.inf).backward()
    if mode == "raise":
        with pytest.raises(NonFiniteGradError, match="param_groups"):
            opt.step()
    else:
        opt.step()
        assert opt.skipped_steps == 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", [(5, 0), (0, 5), (2, 0, 4)])
@pytest.mark.parametrize("kind", KINDS)
def test_empty_parameters_step_alongside_a_normal_one(kind, shape, mode):
    torch.manual_seed(0)
    empty, w = nn.Parameter(torch.zeros(shape)), nn.Parameter(torch.randn(6, 10))
    ref = nn.Parameter(w.detach().clone())
    opt, ref_opt = _make(kind, [empty, w], mode), _make(kind, [ref], mode)
    for i in range(3):
        g = torch.randn(6, 10, generator=torch.Generator().manual_seed(i))
        empty.grad, w.grad, ref.grad = torch.zeros(shape), g.clone(), g.clone()
        opt.step()
        ref_opt.step()
    assert torch.equal(w, ref) and empty.shape == shape and opt.skipped_steps == 0
    for st in opt.state.values():
        for v in st.values():
            for t in v if isinstance(v, list) else [v]:
                assert not isinstance(t, torch.Tensor) or torch.isfinite(t).all()


@pytest.mark.parametrize("adjust_lr_fn", [None, "original", "match_rms_adamw"])
def test_lr_scale_of_an_empty_matrix_is_finite(adjust_lr_fn):
    opt = Muon([nn.Parameter(torch.zeros(5, 0))], adjust_lr_fn=adjust_lr_fn)
    assert all(math.isfinite(opt._lr_scale(opt.param_groups[0], m, n)) for m, n in [(5, 0), (0, 5), (0, 0)])
    if "muonp_1_3" in polygen.list_specs():
        optp = MuonP([nn.Parameter(torch.zeros(5, 0))], adjust_lr_fn=adjust_lr_fn)
        assert all(math.isfinite(optp._lr_scale(optp.param_groups[0], m, n)) for m, n in [(5, 0), (0, 5)])
