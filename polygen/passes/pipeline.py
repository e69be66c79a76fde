"""The compiler's stages as data (Devito/pystencils style: every intermediate stage is returned), and the
candidate schedules of a spectral map, each built once."""

from __future__ import annotations

from dataclasses import dataclass

from polygen.dtypes import PLAN_CLASSES
from polygen.errors import SpecError
from polygen.ir.schedule import Schedule
from polygen.ir.spectral import SpectralMap
from polygen.passes.lower_direct import lower_direct
from polygen.passes.place_restarts import place_restarts
from polygen.passes.plan_gram_space import gram_space_applicable, plan_gram_space
from polygen.passes.select_kernels import select_kernels
from polygen.passes.verify_convergence import Report

DTYPE_CLASSES = PLAN_CLASSES  # float64 shares float32's plans (polygen.dtypes)


@dataclass(frozen=True)
class Stages:
    spec: SpectralMap  # as parsed
    spectral: SpectralMap  # normalized
    report: Report  # convergence verification on the domain
    plans: dict[str, dict[str, Schedule]]  # dtype class -> form -> schedule


def candidate_plans(spectral: SpectralMap) -> dict[str, dict[str, Schedule]]:
    """Every plan the scheduler considers, per dtype class (shape-independent).

    Rule: the direct plan (one evaluator per polynomial) for every dtype, lowered once since it does not depend
    on the dtype; and, when the map is x·h(x²) in one variable over at least two steps, the Gram-space plan
    with restarts placed for each dtype class. A forced ``hints.form`` keeps that form only, and is a
    SpecError naming ``[hints]`` when the map cannot be realized so. Every schedule leaves with its kernels
    selected (passes.select_kernels). Precondition: ``spectral`` is normalized.
    """
    forced = spectral.hints.form if spectral.hints.force and spectral.hints.form != "auto" else ""
    gram_ok = gram_space_applicable(spectral) and spectral.total_steps > 1
    if forced and forced not in (("direct", "gram") if gram_ok else ("direct",)):
        raise SpecError(f"hint form = {forced!r} with force = true cannot be realized: the gram form needs one "
                        "rectangular variable, started at the input and updated by x·h(x²) in each of at least "
                        "two steps, and no fitted step", source=spectral.source,
                        line=spectral.line_of("hints"), field="hints.form")
    direct = select_kernels(lower_direct(spectral)) if forced != "gram" else None
    plans: dict[str, dict[str, Schedule]] = {}
    for dt in DTYPE_CLASSES:
        forms: dict[str, Schedule] = {"direct": direct} if direct is not None else {}
        if gram_ok and forced != "direct":
            forms["gram"] = select_kernels(plan_gram_space(spectral, place_restarts(spectral, dt)))
        plans[dt] = forms
    return plans
