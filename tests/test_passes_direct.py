"""Direct tests of the passes and the printer that were only exercised end to end: roll_loops, eliminate_dead,
format_op / format_schedule; each pins the exact output on a small hand-built schedule."""

from __future__ import annotations

from polygen.ir.printing import format_op, format_schedule
from polygen.ir.schedule import ALIAS, IDENTITY, LINCOMB, MATMUL, Loop, Op, Schedule
from polygen.passes.eliminate_dead import eliminate_dead
from polygen.passes.roll_loops import Region, roll_loops


def _step(a: float, b: float, c: float, label: str) -> Region:
    """One quintic step as the direct lowering writes it: A = XXᵀ, B = cA² + bA, X ← aX + BX."""
    return Region((
        Op(MATMUL, "t0", "S", symmetric=True, a="X", b="X", tb=True),
        Op(MATMUL, "t1", "S", symmetric=True, a="t0", b="t0", alpha=c, c="t0", beta=b),
        Op(MATMUL, "X", "L", a="t1", b="X", c="X", beta=a),
    ), label)


def test_roll_loops_turns_equal_structure_into_one_table_loop():
    regions = [_step(3.0, -4.0, 2.0, "s0"), _step(3.0, -5.0, 2.5, "s1"), _step(3.0, -6.0, 2.0, "s2")]
    (loop,) = roll_loops(regions)
    assert isinstance(loop, Loop) and loop.trips == 3 and loop.label == "s0, s1, s2"
    # a (= 3.0) is equal in every row and stays a literal; b and c vary and become the columns c0, c1
    assert loop.params == ("c0", "c1")
    assert loop.table == ((2.0, -4.0), (2.5, -5.0), (2.0, -6.0))
    assert (loop.body[1].alpha, loop.body[1].beta, loop.body[2].beta) == ("c0", "c1", 3.0)


def test_roll_loops_keeps_different_structure_apart():
    odd = Region((Op(MATMUL, "X", "L", a="X", b="X", alpha=0.5),), "odd")
    blocks = roll_loops([_step(3.0, -4.0, 2.0, "s0"), odd, _step(3.0, -4.0, 2.0, "s1"), _step(3.0, -4.0, 2.0, "s2")])
    assert [type(b).__name__ for b in blocks] == ["Op", "Op", "Op", "Op", "Loop"]
    assert blocks[-1].params == () and blocks[-1].trips == 2  # identical rows: a plain repeat


def test_eliminate_dead_drops_the_unread_last_update():
    """The coupled root's last M ← T·M is never read: only the ops feeding the output survive."""
    step = lambda label: Region((  # noqa: E731
        Op(LINCOMB, "T", "N", terms=((-0.5, "M"),), gamma=1.5),
        Op(MATMUL, "X", "N", a="X", b="T"),
        Op(MATMUL, "M", "N", a="T", b="M"),
    ), label)
    first, last = eliminate_dead([step("0"), step("1")], [], ("X",))
    assert [op.out for op in first.ops] == ["T", "X", "M"]  # M is read by the next step's T
    assert [op.out for op in last.ops] == ["T", "X"]
    (only,) = eliminate_dead([step("0")], [Op(ALIAS, "Y", "N", a="M")], ("Y",))
    assert [op.out for op in only.ops] == ["T", "M"]  # the tail reads M, not X


def test_format_op_pins_every_kind():
    assert format_op(Op(MATMUL, "t1", "S", symmetric=True, a="t0", b="t0", alpha=2.0315, c="t0", beta=-4.775,
                        note="B = cA² + bA")) == \
        "t1 = 2.0315·t0 @ t0 + -4.775·t0                  # matmul S [sym]  B = cA² + bA"
    assert format_op(Op(MATMUL, "R", "S", a="X", b="X", tb=True, gamma=1.0)) == \
        "R = X @ Xᵀ + 1·I                                 # matmul S"
    assert format_op(Op(LINCOMB, "t2", "S", terms=(("c0", "h0"), (0.5, "t1")), gamma=-1.0)) == \
        "t2 = c0·h0 + 0.5·t1 + -1·I                       # elementwise S"
    assert format_op(Op(IDENTITY, "Z", "N", gamma=0.25)) == "Z = 0.25·I"
    assert format_op(Op(ALIAS, "Q", "S", a="t0")) == "Q = t0"


def test_format_schedule_pins_a_listing():
    loop = Loop(("c0",), ((1.5,), (2.5,)), (Op(MATMUL, "X", "L", a="X", b="X", alpha="c0"),), "steps[0]")
    sched = Schedule("direct", (Op(ALIAS, "X", "L", a="G"), loop), ("X",), restarts=())
    assert format_schedule(sched) == "\n".join([
        "schedule form=direct matmuls=2 (long-side 2, small 0)",
        "  X = G",
        "  for (c0) in 2 rows:  # steps[0]",
        "      # 1.5",
        "      # 2.5",
        "      " + "X = c0·X @ X".ljust(48) + " # matmul L",
        "  return X",
    ])
