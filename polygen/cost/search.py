"""Search: price every candidate plan of a spec (passes.pipeline.candidate_plans) for the shape at hand and
keep the cheapest."""

from __future__ import annotations

from dataclasses import dataclass, field

from polygen.cost.model import Cost, plan_cost
from polygen.dtypes import dtype_name, plan_class
from polygen.ir.schedule import Schedule
from polygen.ir.spectral import SpectralMap
from polygen.passes.pipeline import candidate_plans


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
    """Every plan the scheduler considers for this spec and dtype (shape-independent; passes.pipeline)."""
    return candidate_plans(smap)[plan_class(dtype)]


def choose_among(plans: dict[str, Schedule], m: int, n: int, *, batch: int = 1, dtype: str = "float32",
                 backend: str = "torch") -> tuple[str, dict[str, Cost]]:
    """The cheapest of ``plans`` for an (m, n) problem (ties go to the direct form), with every plan's cost
    priced at ``dtype``'s own item size (float64 runs float32's plans, moving twice the bytes). The choice is
    priced as the generated module's cost polynomials price it, by the plan class (float32 for float64), so
    that ``schedule`` names the plan that runs."""
    costs = {name: plan_cost(s, m, n, batch=batch, dtype=dtype_name(dtype), backend=backend)
             for name, s in plans.items()}
    ranked = costs if plan_class(dtype) == dtype_name(dtype) else {
        name: plan_cost(s, m, n, batch=batch, dtype=plan_class(dtype), backend=backend) for name, s in plans.items()}
    best = min(ranked, key=lambda k: (ranked[k].seconds, k != "direct"))
    return best, costs


def choose(smap: SpectralMap, m: int, n: int, *, batch: int = 1, dtype: str = "float32",
           backend: str = "torch") -> tuple[str, dict[str, Cost]]:
    """The cheapest candidate of a normalized map for an (m, n) problem, with every candidate's cost."""
    return choose_among(candidates(smap, dtype), m, n, batch=batch, dtype=dtype, backend=backend)
