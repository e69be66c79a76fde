"""Direct tests of the passes and the printer that were only exercised end to end: roll_loops, eliminate_dead,
format_op / format_schedule, realize; each pins the exact output on a small hand-built schedule."""

from __future__ import annotations

from polygen.ir.printing import format_op, format_schedule
from polygen.ir.schedule import Alias, Identity, LinComb, Loop, MatMul, Ref, Schedule
from polygen.passes.eliminate_dead import eliminate_dead
from polygen.passes.roll_loops import Region, roll_loops


def _step(a: float, b: float, c: float, label: str) -> Region:
    """One quintic step as the direct lowering writes it: A = XXᵀ, B = cA² + bA, X ← aX + BX."""
    return Region((
        MatMul("t0", "S", symmetric=True, a="X", b="X", tb=True),
        MatMul("t1", "S", symmetric=True, a="t0", b="t0", alpha=c, c="t0", beta=b),
        MatMul("X", "L", a="t1", b="X", c="X", beta=a),
    ), label)


def test_roll_loops_turns_equal_structure_into_one_table_loop():
    regions = [_step(3.0, -4.0, 2.0, "s0"), _step(3.0, -5.0, 2.5, "s1"), _step(3.0, -6.0, 2.0, "s2")]
    (loop,) = roll_loops(regions)
    assert isinstance(loop, Loop) and loop.trips == 3 and loop.label == "s0, s1, s2"
    # a (= 3.0) is equal in every row and stays a literal; b and c vary and become the columns c0, c1
    assert loop.params == ("c0", "c1")
    assert loop.table == ((2.0, -4.0), (2.5, -5.0), (2.0, -6.0))
    assert (loop.body[1].alpha, loop.body[1].beta, loop.body[2].beta) == (Ref("c0"), Ref("c1"), 3.0)


def test_roll_loops_keeps_different_structure_apart():
    odd = Region((MatMul("X", "L", a="X", b="X", alpha=0.5),), "odd")
    blocks = roll_loops([_step(3.0, -4.0, 2.0, "s0"), odd, _step(3.0, -4.0, 2.0, "s1"), _step(3.0, -4.0, 2.0, "s2")])
    assert [type(b).__name__ for b in blocks] == ["MatMul", "MatMul", "MatMul", "MatMul", "Loop"]
    assert blocks[-1].params == () and blocks[-1].trips == 2  # identical rows: a plain repeat


def test_eliminate_dead_drops_the_unread_last_update():
    """The coupled root's last M ← T·M is never read: only the ops feeding the output survive."""
    step = lambda label: Region((  # noqa: E731
        LinComb("T", "N", terms=((-0.5, "M"),), gamma=1.5),
        MatMul("X", "N", a="X", b="T"),
        MatMul("M", "N", a="T", b="M"),
    ), label)
    first, last = eliminate_dead([step("0"), step("1")], [], ("X",))
    assert [op.out for op in first.ops] == ["T", "X", "M"]  # M is read by the next step's T
    assert [op.out for op in last.ops] == ["T", "X"]
    (only,) = eliminate_dead([step("0")], [Alias("Y", "N", a="M")], ("Y",))
    assert [op.out for op in only.ops] == ["T", "M"]  # the tail reads M, not X


def test_format_op_pins_every_kind():
    assert format_op(MatMul("t1", "S", symmetric=True, a="t0", b="t0", alpha=2.0315, c="t0", beta=-4.775,
                        note="B = cA² + bA")) == \
        "t1 = 2.0315·t0 @ t0 + -4.775·t0                  # matmul S [sym]  B = cA² + bA"
    assert format_op(MatMul("R", "S", a="X", b="X", tb=True, gamma=1.0)) == \
        "R = X @ Xᵀ + 1·I                                 # matmul S"
    assert format_op(LinComb("t2", "S", terms=((Ref("c0"), "h0"), (0.5, "t1")), gamma=-1.0)) == \
        "t2 = c0·h0 + 0.5·t1 + -1·I                       # elementwise S"
    assert format_op(Identity("Z", "N", gamma=0.25)) == "Z = 0.25·I"
    assert format_op(Alias("Q", "S", a="t0")) == "Q = t0"


def test_format_schedule_pins_a_listing():
    loop = Loop(("c0",), ((1.5,), (2.5,)), (MatMul("X", "L", a="X", b="X", alpha=Ref("c0")),), "steps[0]")
    sched = Schedule("direct", (Alias("X", "L", a="G"), loop), ("X",), restarts=())
    assert format_schedule(sched) == "\n".join([
        "schedule form=direct matmuls=2 (long-side 2, small 0)",
        "  X = G",
        "  for (c0) in 2 rows:  # steps[0]",
        "      # 1.5",
        "      # 2.5",
        "      " + "X = c0·X @ X".ljust(48) + " # matmul L",
        "  return X",
    ])


def _scope(names: dict[str, str], invariant: frozenset[str] = frozenset()):
    from polygen.passes.builder import Builder
    from polygen.passes.realize import Scope

    shapes = {m: "L" for m in names.values()}
    step, prologue = Builder(shapes, prefix="t"), Builder(shapes, prefix="h")
    return Scope(dict(names), {s: "L" for s in names}, invariant, step, prologue, {}), step, prologue


def test_realize_odd_puts_every_scalar_on_an_epilogue():
    """NS5's step x(a + bx² + cx⁴) is three products and no elementwise op: XXᵀ, cA² + bA, BX + aX."""
    from polygen.ir.poly import Poly
    from polygen.passes.realize import realize_odd

    x = Poly.sym("x")
    scope, step, prologue = _scope({"x": "X"})
    assert realize_odd(scope, 3.4445 * x - 4.775 * x**3 + 2.0315 * x**5, {"x"}, out="X") == "X"
    assert [format_op(op) for op in step.ops] == [
        "t0 = X @ Xᵀ                                      # matmul S [sym]  xxᵀ",
        "t1 = 2.0315·t0 @ t0 + -4.775·t0                  # matmul S [sym]",
        "X = t1 @ X + 3.4445·X                            # matmul L",
    ]
    assert prologue.ops == []


def test_realize_hoists_a_loop_invariant_gram_product_into_the_prologue():
    """y(1.5 - 0.5·xxᵀ) with x invariant (Muon^p's XXᵀ of the input): the Gram product is built once."""
    from polygen.ir.poly import Poly
    from polygen.passes.realize import realize_odd

    x, y = Poly.sym("x"), Poly.sym("y")
    scope, step, prologue = _scope({"x": "X", "y": "Y"}, frozenset({"x"}))
    assert realize_odd(scope, 1.5 * y - 0.5 * y * x * x, {"x", "y"}, out="Y") == "Y"
    assert [format_op(op) for op in prologue.ops] == [
        "h0 = X @ Xᵀ                                      # matmul S [sym]  xxᵀ"]
    assert [format_op(op) for op in step.ops] == [
        "Y = -0.5·h0 @ Y + 1.5·Y                          # matmul L"]


def test_realize_even_returns_an_affine_form_with_the_constant_left_over():
    """1 + 2x² + 0.5x⁴ is k0·I + k1·M with M = 0.5A² + 2A, A = XXᵀ; the +1·I stays for the consumer to fold."""
    from polygen.ir.poly import Poly
    from polygen.passes.builder import Aff
    from polygen.passes.realize import carriers, realize_even

    x = Poly.sym("x")
    scope, step, _ = _scope({"x": "X"})
    assert realize_even(scope, 1.0 + 2.0 * x**2 + 0.5 * x**4, {"x"}) == Aff(1.0, 1.0, "t1")
    assert [format_op(op) for op in step.ops] == [
        "t0 = X @ Xᵀ                                      # matmul S [sym]  xxᵀ",
        "t1 = 0.5·t0 @ t0 + 2·t0                          # matmul S [sym]",
    ]
    (carrier, h), = carriers(x + x**3 + x**5, {"x"}).items()
    assert carrier == "x" and h == Poly.from_dict({(): 1.0, (("gram(x,x)", 1),): 1.0, (("gram(x,x)", 2),): 1.0})
