"""Search: build every candidate plan for a spec, price each for the shape at hand, keep the cheapest.

Candidates: the direct plan (with the univariate evaluator chosen per polynomial: Horner,
Paterson–Stockmeyer or a sparse power chain), and, when the map is x·h(x²) in one variable, the
Gram-space plan with restarts derived for the dtype. Hints in the spec narrow the choice only when forced.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from polygen.cost.model import Cost, plan_cost
from polygen.ir.schedule import Schedule
from polygen.ir.spectral import SpectralMap
from polygen.passes.lower_direct import lower_direct
from polygen.passes.place_restarts import dtype_class, place_restarts
from polygen.passes.plan_gram_space import gram_space_applicable, plan_gram_space


@dataclass(frozen=True)
class Plan:
    """The chosen schedule for one (spec, shape, dtype, backend), with its cost and the alternatives."""

    spec: str
    shape: tuple[int, int]  # (m, n) as given
    transposed: bool  # tall input: the plan runs on Gᵀ
    dtype: str
    backend: str
    schedule: Schedule
    cost: Cost
    alternatives: tuple[tuple[str, Cost], ...] = field(default_factory=tuple)

    @property
    def matmuls(self) -> int:
        return self.cost.matmuls

    @property
    def flops(self) -> int:
        return self.cost.flops

    @property
    def form(self) -> str:
        return self.schedule.form

    def __str__(self) -> str:
        from polygen.ir.printing import format_schedule

        m, n = self.shape
        head = (f"plan for {self.spec} at {m}x{n} {self.dtype} on {self.backend}: form={self.form}"
                f"{' (input transposed)' if self.transposed else ''}\n  cost: {self.cost}\n")
        alts = "".join(f"  alternative {name}: {c}\n" for name, c in self.alternatives)
        return head + alts + format_schedule(self.schedule)


def candidates(smap: SpectralMap, dtype: str = "float32") -> dict[str, Schedule]:
    """Every plan the scheduler considers for this spec (shape-independent)."""
    out = {"direct": lower_direct(smap)}
    if gram_space_applicable(smap) and smap.total_steps > 1:
        out["gram"] = plan_gram_space(smap, place_restarts(smap, dtype_class(dtype)))
    if smap.hints.force and smap.hints.form != "auto":
        if smap.hints.form not in out:  # the spec asks for what its map cannot do: an error in the spec's line
            from polygen.errors import SpecError

            raise SpecError(f"hint form = {smap.hints.form!r} with force = true cannot be realized: the gram form "
                            "needs one rectangular variable, started at the input and updated by x·h(x²) in each "
                            "of at least two steps, and no fitted step", source=smap.source,
                            line=smap.line_of("hints"), field="hints.form")
        out = {smap.hints.form: out[smap.hints.form]}
    return out


def choose(smap: SpectralMap, m: int, n: int, *, batch: int = 1, dtype: str = "float32",
           backend: str = "torch") -> tuple[str, dict[str, Cost]]:
    costs = {name: plan_cost(s, m, n, batch=batch, dtype=dtype_class(dtype), backend=backend)
             for name, s in candidates(smap, dtype).items()}
    best = min(costs, key=lambda k: (costs[k].seconds, k != "direct"))
    return best, costs
