"""Scheduler and cost model: pinned matmul counts, plan choice by shape and dtype, exactness of every plan."""

from __future__ import annotations

import dataclasses
from itertools import combinations

import numpy as np
import pytest

import polygen
from polygen.cost.model import plan_cost
from polygen.cost.search import candidates
from polygen.ir.evaluate import apply_step, evaluate_map, trajectory
from polygen.ir.interpret import interpret
from polygen.ir.poly import Poly
from polygen.ir.schedule import LINCOMB, MATMUL
from polygen.passes.builder import Builder
from polygen.passes.evaluate_poly import SymEnv, choose_univariate, eval_sym, univariate_costs
from polygen.passes.lower_direct import lower_direct
from polygen.passes.normalize import normalize
from polygen.passes.place_restarts import (
    NEG_LIMIT,
    UNIT_ROUNDOFF,
    _grid,
    _segments,
    choose_restarts,
    place_restarts,
    restart_budget,
)
from polygen.passes.plan_gram_space import gram_space_applicable, plan_gram_space
from polygen.passes.verify_convergence import domain_grid
from polygen.spec.parse import MAX_TOTAL_STEPS


def spectral(name):
    return normalize(polygen.load_spec(name))


def test_muon_ns5_direct_is_15_matmuls_3_per_step():
    sched = lower_direct(spectral("muon_ns5"))
    assert sched.matmuls == 15
    assert sched.count(touches_long=True) == 10
    assert sched.count(touches_long=False) == 5
    ops = [op for op, _ in sched.flat_ops() if op.kind != "alias"]
    assert all(op.kind == MATMUL for op in ops), "every scalar must ride on a matmul epilogue"
    gram, b_op, x_op = ops
    assert gram.tb and gram.symmetric
    assert (b_op.alpha, b_op.beta) == (2.0315, -4.775) and b_op.c == gram.out  # B = bA + cA²
    assert x_op.beta == 3.4445 and x_op.c == "X"  # X⁺ = aX + BX


def test_gram_plan_for_aspect_4_has_fewer_flops_and_2_long_matmuls():
    plan = polygen.schedule("muon_ns5", (1024, 4096), dtype="float32")
    assert plan.form == "gram"
    direct = dict(plan.alternatives)["direct"]
    assert plan.flops < direct.flops
    assert plan.cost.long_matmuls == 2
    assert plan.schedule.restarts == ()


def test_square_stays_direct():
    plan = polygen.schedule("muon_ns5", (1024, 1024), dtype="float32")
    assert plan.form == "direct" and plan.matmuls == 15


def test_tall_input_is_transposed_to_the_small_gram_side():
    tall = polygen.schedule("muon_ns5", (4096, 1024))
    wide = polygen.schedule("muon_ns5", (1024, 4096))
    assert tall.transposed and not wide.transposed
    assert tall.flops == wide.flops and tall.form == wide.form


def test_restarts_are_derived_from_the_dtype():
    smap = spectral("muon_ns5")
    assert place_restarts(smap, "float32") == ()
    bf16 = place_restarts(smap, "bfloat16")
    # once, after step 3: the last segment's q = x₅/x₃ ≤ 12 fits 16u; one restart earlier leaves q = 40 there,
    # one later fails twice over: q = 140 before it, and R's rounding-born negative eigenvalue outgrows the
    # spectrum (|r|/max r: 0.004 → 23 by step 4)
    assert bf16 == (2,)
    # float16: (1,) passes every filter (its q = 40 fits a tenth of NS5's own error) and loses to (2,) only on
    # the negative excursion, 0.070 against 0.048
    assert place_restarts(smap, "float16") == (2,)
    g0 = plan_gram_space(smap, ())
    g1 = plan_gram_space(smap, bf16)
    # each restart rebuilds X = QX₀ and R = XXᵀ: exactly two more long-side matmuls
    assert g1.count(touches_long=True) - g0.count(touches_long=True) == 2 * len(bf16)


def test_negative_eigenvalue_model_decides_a_placement():
    """polar_express_8 in bf16 restarts after steps 2 and 4 (0-based 1, 3). The tempting (1, 5) passes every q
    budget, yet in its middle segment R's rounding-born negative eigenvalue grows to ~480× the spectrum (matrix
    runs: error 1e26), so only the excursion model rejects it."""
    smap = spectral("polar_express_8")
    assert place_restarts(smap, "bfloat16") == (1, 3)
    q, neg = _segments(smap, UNIT_ROUNDOFF["bfloat16"])
    mid, last = restart_budget(smap, "bfloat16", last=False), restart_budget(smap, "bfloat16")
    assert q[0, 1] <= mid and q[2, 5] <= mid and q[6, 7] <= last  # (1, 5) within every q budget
    assert neg[0, 1] <= NEG_LIMIT and neg[6, 7] <= NEG_LIMIT
    assert 100 * NEG_LIMIT < neg[2, 5] < 1e3 * NEG_LIMIT


def test_restart_budget_ignores_non_finite_own_error(monkeypatch):
    """A NaN or inf in the map's own error somewhere on the grid (a spec that opts out of verification may
    overflow) must not turn the budget into NaN, which would fail every segment and restart after each step."""
    import polygen.passes.place_restarts as pr

    smap = spectral("muon_ns5")
    exact = pr.output_map

    def with_holes(sm, x):
        y = np.array(exact(sm, x), dtype=float)
        y[-1], y[-2] = np.nan, np.inf
        return y

    monkeypatch.setattr(pr, "output_map", with_holes)
    assert np.isfinite(restart_budget(smap, "bfloat16"))
    assert place_restarts(smap, "bfloat16") == (2,)


def test_restart_hint_is_honoured():
    text = polygen.spec.spec_text("muon_ns5")[0] + "\n[hints]\nrestart_every = 2\n"
    smap = normalize(polygen.parse_spec(text, source="h.toml"))
    assert place_restarts(smap, "float32") == (1, 3)


def _segments_one_start_at_a_time(smap, u):
    """The reference _segments: each start's probe through the steps on its own, breaking off once non-finite."""
    var = smap.variables[0].name
    xs = [np.asarray(env[var], dtype=float) for env in trajectory(smap, _grid(smap))]
    steps = [step for step in smap.steps for _ in range(step.repeat)]
    top = [float(np.nanmax(x * x)) for x in xs]
    total = len(steps)
    q = np.full((total, total), np.inf)
    neg = np.full((total, total), np.inf)
    with np.errstate(all="ignore"):
        for s in range(total):
            x = np.array([1j * np.sqrt(u * top[s])])
            worst = 0.0
            for e in range(s, total):
                worst = max(worst, float(np.abs(x[0]) ** 2) / top[e])
                neg[s, e] = worst
                x = np.asarray(apply_step(steps[e], {var: x})[var])
                q[s, e] = u * float(np.nanmax(np.abs(xs[e + 1] / xs[s])))
                if not np.isfinite(worst) or not np.all(np.isfinite(x)):
                    break
    return q, neg


def _choose_by_enumeration(q, neg, budget, mid_budget):
    """The reference search: every placement by increasing restart count, min over (max neg, max q, cut)."""
    total = q.shape[0]

    def passes(s, e, last):
        return s == e or bool(q[s, e] <= (budget if last else mid_budget) and neg[s, e] <= NEG_LIMIT)

    for count in range(total):
        ranked = []
        for cut in combinations(range(total - 1), count):
            bounds = list(zip((0, *(c + 1 for c in cut)), (*cut, total - 1)))
            if all(passes(s, e, last=(e == total - 1)) for s, e in bounds):
                ranked.append((max(float(neg[s, e]) for s, e in bounds),
                               max(float(q[s, e]) for s, e in bounds), cut))
        if ranked:
            return min(ranked)[2]
    raise AssertionError("unreachable: restarting after every step always passes")


def _with_repeat(name, repeat):
    text = polygen.spec.spec_text(name)[0]
    assert text.count("repeat = ") == 1
    start = text.index("repeat = ")
    end = text.index("\n", start)
    return normalize(polygen.parse_spec(text[:start] + f"repeat = {repeat}" + text[end:], source=f"{name}.toml"))


def _with_xfree_step(name):
    """A hand-built map (the parser rejects x-free updates) whose middle step sets x to a constant: its probes
    come back real, which the vectorized probe must not rerun in complex arithmetic."""
    smap = spectral(name)
    (step,) = smap.steps
    const = dataclasses.replace(step, updates=((smap.variables[0].name, Poly.const(0.5)),), repeat=1)
    return dataclasses.replace(smap, steps=(dataclasses.replace(step, repeat=3), const,
                                            dataclasses.replace(step, repeat=4)))


POLAR_GRAM = [n for n in polygen.list_specs()
              if polygen.load_spec(n).target == "polar" and gram_space_applicable(spectral(n))]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("case", [*POLAR_GRAM, "ns_cubic x60", "ns_cubic x-free"])
def test_segments_equal_the_one_start_loop(case, dtype):
    """Running all starts' probes together and the q ratios in bulk changes no entry of either table."""
    smap = (_with_repeat("ns_cubic", 60) if case == "ns_cubic x60"
            else _with_xfree_step("ns_cubic") if case == "ns_cubic x-free" else spectral(case))
    got, want = _segments(smap, UNIT_ROUNDOFF[dtype]), _segments_one_start_at_a_time(smap, UNIT_ROUNDOFF[dtype])
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("name", POLAR_GRAM)
def test_restart_search_equals_enumeration_on_builtin_specs(name, dtype):
    smap = spectral(name)
    q, neg = _segments(smap, UNIT_ROUNDOFF[dtype])
    budget, mid = restart_budget(smap, dtype), restart_budget(smap, dtype, last=False)
    want = _choose_by_enumeration(q, neg, budget, mid)
    assert choose_restarts(q, neg, budget, mid) == want
    assert place_restarts(smap, dtype) == want


def _random_tables(rng, kind):
    """q, neg, budget, mid_budget for 1..10 steps: few levels (many exact ties, signed zeros included), continuous
    values, or few levels with inf and NaN sprinkled in (on the diagonal too, [0, 0] included)."""
    total = int(rng.integers(1, 11))
    budget, mid = (1.0, 2.0) if rng.random() < 0.7 else (2.0, 1.0)
    if kind == "continuous":
        q, neg = rng.uniform(0, 2.5, (total, total)), rng.uniform(0, 1.5, (total, total))
    else:
        q = rng.choice([-0.0, 0.0, 0.5, 1.0, 2.0, 3.0], (total, total))
        neg = rng.choice([-0.0, 0.0, 0.25, 1.0, 2.0], (total, total))
    if kind == "nan":
        for table in (q, neg):
            table[rng.random((total, total)) < 0.15] = np.inf
            table[rng.random((total, total)) < 0.15] = np.nan
            if rng.random() < 0.4:
                table[0, 0] = rng.choice([np.nan, np.inf])
    return q, neg, budget, mid


@pytest.mark.parametrize("kind", ["ties", "continuous", "nan"])
def test_restart_search_equals_enumeration_on_random_tables(kind):
    rng = np.random.default_rng(["ties", "continuous", "nan"].index(kind))
    for _ in range(200):
        q, neg, budget, mid = _random_tables(rng, kind)
        assert choose_restarts(q, neg, budget, mid) == _choose_by_enumeration(q, neg, budget, mid), (q, neg)


def _fewest_segments(q, neg, budget, mid):
    """Breadth-first over segment starts: the fewest passing segments that cover every step."""
    total = q.shape[0]
    with np.errstate(invalid="ignore"):
        ok = np.triu((q <= np.where(np.arange(total) == total - 1, budget, mid)) & (neg <= NEG_LIMIT), 1)
    ok |= np.eye(total, dtype=bool)
    reached, frontier, layers = np.zeros(total + 1, dtype=bool), np.zeros(total + 1, dtype=bool), 0
    frontier[0] = reached[0] = True
    while not reached[total]:
        nxt = np.zeros(total + 1, dtype=bool)
        nxt[1:] = ok[frontier[:total]].any(axis=0)
        frontier = nxt & ~reached
        reached |= frontier
        layers += 1
    return layers


@pytest.mark.parametrize(("repeat", "dtype"), [(60, "float32"), (60, "bfloat16"), (60, "float16"),
                                               (MAX_TOTAL_STEPS, "float32"), (MAX_TOTAL_STEPS, "bfloat16")])
def test_long_specs_get_a_passing_placement_with_fewest_restarts(repeat, dtype):
    """Enumerating placements never finished for ns_cubic at repeat = 60; the DP search must, up to the
    MAX_TOTAL_STEPS step instances a spec may have."""
    smap = _with_repeat("ns_cubic", repeat)
    assert smap.total_steps == repeat
    cut = place_restarts(smap, dtype)
    assert all(isinstance(c, int) for c in cut) and list(cut) == sorted(set(cut))
    assert all(0 <= c < repeat - 1 for c in cut)
    q, neg = _segments(smap, UNIT_ROUNDOFF[dtype])
    budget, mid = restart_budget(smap, dtype), restart_budget(smap, dtype, last=False)
    for s, e in zip((0, *(c + 1 for c in cut)), (*cut, repeat - 1)):
        assert s == e or (q[s, e] <= (budget if e == repeat - 1 else mid) and neg[s, e] <= NEG_LIMIT), (s, e)
    assert len(cut) + 1 == _fewest_segments(q, neg, budget, mid)
    assert cut == choose_restarts(q, neg, budget, mid)


@pytest.mark.parametrize("name", polygen.list_specs())
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_every_plan_computes_the_spectral_map_exactly(name, dtype):
    """The schedule's scalar semantics (float64) equals the spec's composed map: no plan changes the math."""
    smap = spectral(name)
    x = domain_grid(*smap.domain, n=301)
    want = evaluate_map(smap, x)[smap.output.var]
    for form, sched in candidates(smap, dtype).items():
        (got,) = interpret(sched, x)
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12, err_msg=f"{name} {form}")


def _env(poly_symbol="s"):
    shapes = {"S": "S"}
    b = Builder(shapes)
    return b, SymEnv(builder=b, lookup=lambda s: "S")


def test_horner_for_low_degree():
    b, env = _env()
    s = Poly.sym("s")
    aff = eval_sym(env, 1.0 + 2 * s + 3 * s**2 + 4 * s**3)
    assert aff.k0 == 1.0
    assert sum(op.kind == MATMUL for op in b.ops) == 2
    assert not any(op.kind == LINCOMB for op in b.ops)


def test_paterson_stockmeyer_beats_horner_at_high_degree():
    coeffs = {e: 1.0 / e for e in range(1, 13)}
    costs = univariate_costs(coeffs)
    assert costs["horner"][0] == 11
    method = choose_univariate(coeffs)
    assert method.startswith("ps") and costs[method][0] < 11
    b, env = _env()
    poly = sum((c * Poly.sym("s", e) for e, c in coeffs.items()), Poly())
    eval_sym(env, poly)
    assert sum(op.kind == MATMUL for op in b.ops) == costs[method][0]


def test_sparse_powers_use_repeated_squaring():
    coeffs = {2**k: 0.5**k for k in range(13)}  # Σ a_k s^(2^k), degree 4096
    assert choose_univariate(coeffs) == "chain"
    b, env = _env()
    poly = sum((c * Poly.sym("s", e) for e, c in coeffs.items()), Poly())
    eval_sym(env, poly)
    assert sum(op.kind == MATMUL for op in b.ops) == 12  # s², s⁴, …, s^4096


def test_cost_model_symmetric_discounts_per_backend_and_dtype():
    from polygen.passes.select_kernels import select_kernels

    raw = lower_direct(spectral("muon_ns5"))
    m, n = 512, 2048
    for backend in ("triton", "torch"):  # before kernels are selected every product is a plain GEMM
        c = plan_cost(raw, m, n, backend=backend)
        assert c.flops == c.dense_flops
    sched = select_kernels(raw)
    triton_cost = plan_cost(sched, m, n, backend="triton")
    torch32 = plan_cost(sched, m, n, backend="torch", dtype="float32")
    torch16 = plan_cost(sched, m, n, backend="torch", dtype="bfloat16")
    # XXᵀ (2m²n) and A² (2m³) are symmetric: half price on triton, 5/8 (4×4 blocks, 10 computed) on torch
    # in float32; in bf16 torch blocks XXᵀ only (its inner dimension is the long side)
    assert triton_cost.dense_flops - triton_cost.flops == 5 * (m * m * n + m**3)
    assert torch32.dense_flops - torch32.flops == 5 * 3 * (2 * m * m * n + 2 * m**3) // 8
    assert torch16.dense_flops - torch16.flops == 5 * 3 * (2 * m * m * n) // 8


@pytest.mark.parametrize("name", ["muon_ns5", "polar_express", "inv_root_4", "muonp_3_5", "prism_polar"])
def test_select_kernels_writes_each_decision_once(name):
    """Every candidate leaves the pipeline with its products' Kernel filled in from the symmetry and pairing
    rules, nothing else is touched, and selecting again changes nothing."""
    from dataclasses import replace

    from polygen.ir.schedule import PLAIN, Loop, MatMul
    from polygen.passes.fuse_pairs import paired_products
    from polygen.passes.select_kernels import select_kernels
    from polygen.passes.symmetry import block_triangle_ops, half_tile_ops

    for dt, forms in polygen.driver.compile_stages(name).plans.items():
        for form, sched in forms.items():
            assert select_kernels(sched) == sched, (dt, form)
            pos = [(p, op, t) for p, op, t in sched.positions() if isinstance(op, MatMul)]
            assert {p for p, op, _ in pos if op.kernel.mirrored} == half_tile_ops(sched)
            assert {p for p, op, _ in pos if op.kernel.torch_blocked} == block_triangle_ops(sched, "float32")
            assert {p for p, op, _ in pos if op.kernel.torch_blocked_16} == block_triangle_ops(sched, "bfloat16")
            assert {p for p, op, _ in pos if op.kernel.pair == "first"} == {a for a, _ in paired_products(sched)}
            assert not all(op.kernel == PLAIN for _, op, _ in pos)

            def plain_op(o):
                return replace(o, kernel=PLAIN) if isinstance(o, MatMul) else o

            plain = replace(sched, blocks=tuple(
                replace(b, body=tuple(plain_op(o) for o in b.body)) if isinstance(b, Loop) else plain_op(b)
                for b in sched.blocks))
            assert select_kernels(plain) == sched


def test_plan_listing_is_readable():
    text = str(polygen.schedule("muon_ns5", (1024, 4096)))
    assert "form=gram" in text and "R = X @ Xᵀ" in text and "Q ← HQ" in text


@pytest.mark.parametrize(("name", "form", "saved", "dense"), [
    # 5 steps × (XXᵀ: 2·64²·256 + A²: 2·64³) / 2 = 5 × 1,310,720
    ("polar_express", "direct", 6_553_600, 23_592_960),
    ("polar_express", "gram", 4_456_448, 13_107_200),
    ("inv_root_4", "direct", 6_291_456, 15_745_024),
    ("muonp_3_5", "direct", 8_912_896, 32_899_072),
])
def test_cost_model_discounts_exactly_the_half_tile_products(name, form, saved, dense):
    """The Triton estimate at 64×256 (64×64 for symmetric inputs) saves half the FLOPs of the products the
    emitter runs on half the tiles, and no others (pinned figures)."""
    from polygen.passes.symmetry import half_tile_ops, op_positions

    sched = candidates(normalize(polygen.load_spec(name)), "float32")[form]
    m, n = (64, 256) if sched.input_shape == "L" else (64, 64)
    assert half_tile_ops(sched) <= {pos for pos, op, _ in op_positions(sched) if op.is_matmul and op.symmetric}
    c = plan_cost(sched, m, n, backend="triton")
    assert (c.dense_flops - c.flops, c.dense_flops) == (saved, dense)


def _op_at(sched, pos):
    i, j = pos
    blk = sched.blocks[i]
    return blk.body[j] if j >= 0 else blk


@pytest.mark.parametrize("name", ["muon_ns5", "polar_express", "inv_root_4", "muonp_3_5", "prism_polar"])
def test_torch_emitter_blocks_exactly_the_products_the_cost_model_discounts(name):
    """Every plan function of the generated torch module calls _sym_bmm (or _long_side with sym=True) on the
    block-triangle products and on no others, and the torch cost model discounts the same ones: the half-tile
    products of rectangular-input plans in float32, in bfloat16 those of them over the long side (XXᵀ, marked
    in_16_bits), and none for symmetric inputs (coupled roots)."""
    from polygen.driver import compile_stages
    from polygen.passes.symmetry import block_triangle_ops, half_tile_ops

    src = polygen.generate(name)
    stages = compile_stages(name)
    # a block-triangle product is _sym_bmm(...), or _long_side(..., sym=True) when it sums over the long side
    emitted = sum(line.count("_sym_bmm(") + line.count("sym=True") for line in src.splitlines()
                  if "def _sym_bmm" not in line)
    emitted16 = sum(line.count("in_16_bits=True)") for line in src.splitlines())
    expected = expected16 = 0
    seen = set()
    rectangular = polygen.load_spec(name).input_kind == "rectangular"
    for dt, forms in stages.plans.items():
        for sched in forms.values():
            half = half_tile_ops(sched)
            assert half
            blocked = block_triangle_ops(sched, dt)
            shapes = sched.shapes()
            long_side = {pos for pos in half if shapes[_op_at(sched, pos).a] == "L"}
            if not rectangular:
                assert blocked == set()
            else:
                assert blocked == (long_side if dt in ("bfloat16", "float16") else half)
            if sched not in seen:
                seen.add(sched)
                expected += len(block_triangle_ops(sched, "float32"))
                expected16 += len(block_triangle_ops(sched, "bfloat16"))
    assert emitted == expected and emitted16 == expected16
    assert (expected > 0) == rectangular


def test_a_per_step_coefficient_on_two_invariant_products_is_not_hoisted(tmp_path):
    """e_t·x³ + f_t·x⁵ with table coefficients: the even factor e_t·XXᵀ + f_t·(XXᵀ)² changes every step, so its
    product with X stays in the loop (it was hoisted, reading a temporary of the loop body: KeyError 't0')."""
    from polygen.runtime.reference import random_with_spectrum, spectral_reference

    text = polygen.spec.spec_text("muonp_3_5_fit")[0].replace('name = "muonp_3_5_fit"', 'name = "x5_terms"')
    text = text.replace('+ e*x**3" }', '+ e*x**3 + 0.001*x**5" }')
    assert "0.001*x**5" in text
    path = tmp_path / "x5_terms.toml"
    path.write_text(text)
    assert polygen.schedule(str(path), (64, 128)).matmuls == 31
    G = random_with_spectrum((2, 40, 72), 1e2, seed=1)
    Y = polygen.load(str(path), backend="torch")(G)
    assert float((Y.double() - spectral_reference(polygen.load_spec(str(path)), G)).norm() / G.norm()) < 2e-5
