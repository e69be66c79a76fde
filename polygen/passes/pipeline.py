"""The compiler's stages in order (Devito/pystencils style: every intermediate stage is returned)."""

from __future__ import annotations

from dataclasses import dataclass

from polygen.ir.schedule import Schedule
from polygen.ir.spectral import SpectralMap
from polygen.passes.normalize import normalize
from polygen.passes.verify_convergence import Report, verify_convergence, verify_map

DTYPE_CLASSES = ("float32", "bfloat16", "float16")  # float64 shares float32's plans (no restarts needed)


@dataclass(frozen=True)
class Stages:
    spec: SpectralMap  # as parsed
    spectral: SpectralMap  # normalized
    report: Report  # convergence verification on the domain
    plans: dict[str, dict[str, Schedule]]  # dtype class -> form -> schedule


def lower(smap: SpectralMap, *, check: bool = True) -> Stages:
    """spec → normalized spectral IR → verified → candidate schedules per dtype class."""
    from polygen.cost.search import candidates

    spectral = normalize(smap)
    report = verify_convergence(smap) if check else verify_map(smap)
    plans = {dt: candidates(spectral, dt) for dt in DTYPE_CLASSES}
    return Stages(smap, spectral, report, plans)
