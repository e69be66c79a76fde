"""Recovery of polynomial iterations from aten graphs (polygen.compile.recover), its refusals and its witness.

Graphs come from make_fx over functionalize (the same functional aten ops Inductor's post-grad graph holds,
in a fraction of a second), so the corpora run in the default suite; tests/test_compile_backend.py compiles.
Coefficients are compared as exact rationals of the source floats.
"""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch
from torch.fx.experimental.proxy_tensor import make_fx

from polygen.compile import recover
from polygen.compile.graph_pass import PolygenPass
from polygen.compile.recover import Interpreter

NS5 = (3.4445, -4.7750, 2.0315)
PE = [(8.28721201814563, -23.595886519098837, 17.300387312530933),
      (4.107059111542203, -2.9478499167379106, 0.5448431082926601),
      (3.9486908534822946, -2.908902115962949, 0.5518191394370137)]


def kj(G, coeffs=(NS5,) * 5):
    """Keller Jordan's zeropower_via_newtonschulz5, with a per-step coefficient list."""
    X = G
    if G.size(-2) > G.size(-1):
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for a, b, c in coeffs:
        A = X @ X.mT
        B = b * A + c * A @ A
        X = a * X + B @ X
    if G.size(-2) > G.size(-1):
        X = X.mT
    return X


def torch_muon(G):
    from torch.optim._muon import _zeropower_via_newtonschulz

    return _zeropower_via_newtonschulz(G, NS5, 5, 1e-7)


def right_multiplied(G):
    X = G / G.norm(dim=(-2, -1), keepdim=True).clamp_min(1e-7)
    for a, b, c in PE:
        A = X.mT @ X
        X = a * X + X @ (b * A + c * (A @ A))
    return X


def cubic_horner_eye(G):
    X = G / (torch.linalg.vector_norm(G, dim=(-2, -1), keepdim=True) + 1e-6)
    eye = torch.eye(G.size(-2), dtype=G.dtype)
    for _ in range(8):
        X = (1.5 * eye - 0.5 * (X @ X.mT)) @ X
    return X


def graph(fn, x):
    return make_fx(torch.func.functionalize(lambda g: fn(g)), tracing_mode="fake")(x).graph


def regions(fn, x, *, settle=True):
    g = graph(fn, x)
    found = Interpreter(g).run()
    p = PolygenPass(rewrite=False, accuracy="fastest")
    for r in found:
        if settle and r.status == "recoverable":
            p._settle(r)
    return found


def _odd(step):
    """(a, b, c) → the coefficient tuple of a·x + b·x³ + c·x⁵, as the interpreter writes it."""
    out = [Fraction(0)] * (2 * len(step))
    for i, k in enumerate(step):
        out[2 * i + 1] = Fraction(k)
    return tuple(out)


SHAPES = [(24, 40), (40, 24), (32, 32), (3, 24, 40)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("spelling", ["kj", "kj_pe_list", "torch_muon", "right_multiplied", "cubic_horner_eye"])
def test_recovery_corpus(spelling, shape, dtype):
    """Each spelling × wide/tall/square/batched × fp32/bf16: one region, the exact steps, the witness agrees."""
    if spelling == "torch_muon" and len(shape) == 3:
        pytest.skip("torch.optim.Muon orthogonalizes 2-D matrices")
    fn, steps = {
        "kj": (kj, [NS5] * 5), "kj_pe_list": (lambda g: kj(g, PE), PE), "torch_muon": (torch_muon, [NS5] * 5),
        "right_multiplied": (right_multiplied, PE), "cubic_horner_eye": (cubic_horner_eye, [(1.5, -0.5)] * 8),
    }[spelling]
    (r,) = regions(fn, torch.randn(*shape).to(dtype))
    assert r.status == "rewritten" or "gains nothing" in r.reason, r.reason  # a bf16 direct plan is left alone
    assert r.steps == [_odd(s) for s in steps]
    assert r.coefficients == [tuple(s) for s in steps]
    assert 'norm = "none"' in r.spec_text
    if len(set(steps)) == 1:
        assert f"repeat = {len(steps)}" in r.spec_text


REFUSALS = [
    ("entrywise", "escape"),
    ("matrix_plus_scalar", "escape"),
    ("escaping_intermediate", "escape"),
    ("tensor_coefficient", "escape"),
    ("mixed_dtypes", "mixed dtypes"),
    ("no_normalisation", "Frobenius"),
    ("max_normalisation", "Frobenius"),
]


def refusal_body(case):
    """A three-step NS-like loop with one non-spectral construction (``case``)."""
    def body(G):
        if case == "no_normalisation":
            X = G
        elif case == "max_normalisation":
            X = G / G.abs().amax()
        else:
            X = G / (G.norm(dim=(-2, -1), keepdim=True) + 1e-7)
        coef = torch.full((), -4.775)
        extra = None
        for _ in range(3):
            A = X @ X.mT
            if case == "entrywise":
                B = -4.775 * (A * A) + 2.0315 * A
            elif case == "matrix_plus_scalar":
                B = -4.775 * A + 0.5
            elif case == "tensor_coefficient":
                B = coef * A + 2.0315 * A @ A
            else:
                B = -4.775 * A + 2.0315 * A @ A
            if case == "mixed_dtypes":
                B = B.bfloat16().float()
            X = 3.4445 * X + B @ X
            extra = A if extra is None else extra
        return (X, extra) if case == "escaping_intermediate" else X
    return body


@pytest.mark.parametrize(("case", "reason"), REFUSALS)
def test_refusal_corpus(case, reason):
    """Every non-spectral construction is refused, with its reason (the graph is then left as it is)."""
    found = regions(refusal_body(case), torch.randn(24, 40))
    assert found and all(r.status == "refused" for r in found)
    assert any(reason in r.reason for r in found), [r.reason for r in found]


@pytest.mark.parametrize("broken", ["entrywise_as_matmul", "swapped_alpha_beta", "dropped_transpose"])
def test_witness_catches_broken_rules(broken, monkeypatch):
    """Deliberately wrong rules recover a wrong map; the rotated-input witness refuses it."""
    real_rule = Interpreter._rule

    def rule(self, n):
        if broken == "entrywise_as_matmul" and n.target == torch.ops.aten.mul.Tensor:
            a, b = (self.values.get(x) if isinstance(x, torch.fx.Node) else None for x in n.args)
            if a is not None and b is not None:
                self.owner[n] = self.owner[n.args[0]]
                return recover._product(a, b)
        if broken == "swapped_alpha_beta" and n.target == torch.ops.aten.addmm.default:
            n.kwargs = {"beta": n.kwargs.get("alpha", 1), "alpha": n.kwargs.get("beta", 1)}
            try:
                return real_rule(self, n)
            finally:
                n.kwargs = {"beta": n.kwargs.get("alpha", 1), "alpha": n.kwargs.get("beta", 1)}
        return real_rule(self, n)

    monkeypatch.setattr(Interpreter, "_rule", rule)
    if broken == "dropped_transpose":  # X @ X of a square X read as the Gram product X @ Xᵀ
        monkeypatch.setitem(recover._PRODUCT, ("L", "L"), "S")

    def entrywise(G):
        X = G / (G.norm(dim=(-2, -1), keepdim=True) + 1e-7)
        for _ in range(2):
            A = X @ X.mT
            X = 1.5 * X - 0.5 * (A * A) @ X
        return X

    def no_transpose(G):
        X = G / (G.norm(dim=(-2, -1), keepdim=True) + 1e-7)
        for _ in range(2):
            X = 1.5 * X - 0.5 * (X @ X) @ X
        return X

    fn = {"entrywise_as_matmul": entrywise, "swapped_alpha_beta": torch_muon, "dropped_transpose": no_transpose}[broken]
    found = regions(fn, torch.randn(24, 24) if broken == "dropped_transpose" else torch.randn(24, 40))
    assert found and all(r.status == "refused" for r in found), [(r.status, r.reason) for r in found]
    assert any("witness" in r.reason for r in found)


def test_polynomials_stay_bounded():
    """An iteration whose iterate is never Gram-multiplied composes without a commit: the interpreter gives up
    at twice the step-degree cap instead of multiplying ever longer polynomials."""
    def no_gram(G):
        X = G / (G.norm(dim=(-2, -1), keepdim=True) + 1e-7)
        A = X @ X.mT
        for _ in range(40):
            A = A @ A
        return A @ X

    found = regions(no_gram, torch.randn(8, 12))
    assert all(r.status == "refused" for r in found)


# ---- a property test over random chains of the accepted ops ----

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_COEF = st.sampled_from([0.0, 0.5, -0.75, 1.5, 2.0315, -4.775, 3.4445, 0.125])
_STEP = st.tuples(st.sampled_from([1.5, 3.4445, 1.875, 2.0]), _COEF, _COEF, _COEF)  # x, x³, x⁵, x⁷
_FORM = st.sampled_from(["left", "right", "eye", "addmm", "assoc"])


def _chain(steps, forms, tall, broken_at=None, broken="entrywise"):
    """A user's loop: normalize, then per step one spelling of X ← aX + bX³ + cX⁵ + dX⁷."""
    def fn(G):
        X = G.mT if tall else G
        X = X / (torch.linalg.vector_norm(X, dim=(-2, -1), keepdim=True) + 1e-7)
        for i, ((a, b, c, d), form) in enumerate(zip(steps, forms)):
            if form == "right":
                A = X.mT @ X
                H = b * A + c * (A @ A) + d * (A @ A @ A)
                X = a * X + X @ H
                continue
            A = X @ X.mT
            if i == broken_at:
                A = A * A if broken == "entrywise" else A + 0.25
            if form == "eye":
                eye = torch.eye(A.size(-1), dtype=A.dtype)
                X = (a * eye + b * A + c * (A @ A) + d * ((A @ A) @ A)) @ X
            elif form == "addmm":
                H = torch.addmm(b * A, A, c * A + d * (A @ A))
                X = torch.addmm(X, H, X, beta=a)
            elif form == "assoc":
                X = a * X + b * (A @ X) + c * (A @ (A @ X)) + d * (A @ (A @ (A @ X)))
            else:
                X = a * X + (b * A + c * A @ A + d * A @ A @ A) @ X
        return X.mT if tall else X
    return fn


def _composed(steps, s):
    for a, b, c, d in steps:
        s = a * s + b * s**3 + c * s**5 + d * s**7
    return s


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(steps=st.lists(_STEP, min_size=1, max_size=6), data=st.data(), tall=st.booleans())
def test_random_chains_recover_exactly_and_agree_with_float64(steps, data, tall):
    """Random association, transposes, addmm forms and eye terms, degree ≤ 7, ≤ 6 steps: the recovered steps are
    the written ones, and composing them on s agrees with running the function itself in float64."""
    from hypothesis import assume

    grid = torch.linspace(0, 1, 201, dtype=torch.float64)
    assume(bool(_composed(steps, grid).abs().max() < 1e6))  # a diverging map proves nothing (witness refuses)
    forms = data.draw(st.lists(_FORM, min_size=len(steps), max_size=len(steps)))
    fn = _chain(steps, forms, tall)
    shape = (40, 24) if tall else (24, 40)
    (r,) = regions(fn, torch.randn(*shape))
    assert r.status == "rewritten", r.reason
    want = [tuple(Fraction(0) if i % 2 == 0 else Fraction(step[i // 2]) for i in range(8)) for step in steps]
    assert [recover._trim(w) for w in want] == r.steps
    from polygen.compile.witness import proxy_input

    X, U, s, Vt = proxy_input((24, 40))
    G = X.mT if tall else X
    Y = fn(G)
    s_seed = s / (torch.linalg.vector_norm(s, dim=-1, keepdim=True) + 1e-7)  # as the function normalizes
    expect = U @ torch.diag_embed(_composed(steps, s_seed)) @ Vt
    torch.testing.assert_close(Y, expect.mT if tall else expect, rtol=1e-9, atol=1e-9)


@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(_STEP, min_size=2, max_size=5), data=st.data(),
       broken=st.sampled_from(["entrywise", "plus_scalar"]))
def test_a_non_spectral_op_in_a_chain_is_refused_or_confined(steps, data, broken):
    """One non-spectral op inserted at a random step: nothing that reaches the function's output is rewritten."""
    forms = data.draw(st.lists(st.sampled_from(["left", "eye", "addmm", "assoc"]), min_size=len(steps),
                               max_size=len(steps)))
    at = data.draw(st.integers(0, len(steps) - 1))
    g = graph(_chain(steps, forms, False, broken_at=at, broken=broken), torch.randn(24, 40))
    found = Interpreter(g).run()
    output = next(n for n in g.nodes if n.op == "output")
    for r in found:
        if r.status == "recoverable":
            assert r.output not in output.all_input_nodes  # confined before the non-spectral op
            assert len(r.steps) <= at
