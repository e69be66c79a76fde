"""The compiler driver: spec → spectral IR → schedules → source, with every stage available."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from polygen.cost.search import Plan, candidates, choose
from polygen.ir.spectral import SpectralMap
from polygen.passes.normalize import normalize
from polygen.passes.pipeline import Stages, lower
from polygen.passes.place_restarts import dtype_class
from polygen.spec import load_spec


def _spec(spec: Any) -> SpectralMap:
    return spec if isinstance(spec, SpectralMap) else load_spec(spec)


def compile_stages(spec: Any, *, check: bool = True) -> Stages:
    return lower(_spec(spec), check=check)


def schedule(spec: Any, shape: tuple[int, int], dtype: Any = "float32", backend: str = "torch",
             batch: int = 1) -> Plan:
    """The cheapest plan for one problem; ``plan.matmuls``, ``plan.flops``, ``plan.form``, ``str(plan)``."""
    smap = _spec(spec)
    m, n = int(shape[0]), int(shape[1])
    if smap.input_kind == "symmetric" and m != n:
        from polygen.errors import ScheduleError

        raise ScheduleError(f"{smap.name} takes square symmetric matrices; got shape {m}x{n}")
    transposed = smap.input_kind == "rectangular" and m > n
    mm, nn = (n, m) if transposed else (m, n)
    dt = dtype_class(dtype)
    spectral = normalize(smap)
    best, costs = choose(spectral, mm, nn, batch=batch, dtype=dt, backend=backend)
    sched = candidates(spectral, dt)[best]
    alts = tuple((k, c) for k, c in costs.items() if k != best)
    return Plan(smap.name, (m, n), transposed, dt, backend, sched, costs[best], alts)


def generate(spec: Any, backend: str = "torch") -> str:
    """Source text of the generated module for ``backend`` ("torch" or "triton")."""
    stages = compile_stages(spec)
    if backend == "torch":
        from polygen.codegen.torch_emitter import emit_torch

        return emit_torch(stages)
    if backend == "triton":
        from polygen.codegen.triton_emitter import emit_triton

        return emit_triton(stages)
    raise ValueError(f"backend must be 'torch' or 'triton', got {backend!r}")


def available_backends() -> tuple[str, ...]:
    from polygen.codegen.env import TEMPLATE_DIR

    return ("torch", "triton") if (TEMPLATE_DIR / "triton").is_dir() and any((TEMPLATE_DIR / "triton").iterdir()) \
        else ("torch",)


def build(specs: list[str] | None = None, out: Path | None = None, backends: tuple[str, ...] | None = None
          ) -> list[Path]:
    """Write generated/<backend>/<spec>.py for the given (default: all built-in) specs."""
    from polygen.runtime.loader import GENERATED_DIR
    from polygen.spec import list_specs

    out = Path(out) if out is not None else GENERATED_DIR
    backends = backends or available_backends()
    written = []
    for name in specs or list_specs():
        smap = _spec(name)
        for be in backends:
            path = out / be / f"{smap.name}.py"
            path.parent.mkdir(parents=True, exist_ok=True)
            src = generate(smap, backend=be)
            if not path.exists() or path.read_text(encoding="utf-8") != src:
                tmp = path.with_suffix(".py.tmp")
                tmp.write_text(src, encoding="utf-8")
                tmp.replace(path)
            written.append(path)
    return written


def check(out: Path | None = None, backends: tuple[str, ...] | None = None) -> list[str]:
    """Problems with generated/: missing, stale or orphaned files (empty list = up to date)."""
    from polygen.runtime.loader import GENERATED_DIR
    from polygen.spec import list_specs

    out = Path(out) if out is not None else GENERATED_DIR
    backends = backends or available_backends()
    problems = []
    names = list_specs()
    for name in names:
        smap = _spec(name)
        for be in backends:
            path = out / be / f"{smap.name}.py"
            if not path.exists():
                problems.append(f"missing: {path}")
                continue
            if path.read_text(encoding="utf-8") != generate(smap, backend=be):
                problems.append(f"stale: {path} (regenerate with `polygen build {name}`)")
    for be in backends:
        for p in sorted((out / be).glob("*.py")) if (out / be).is_dir() else []:
            if p.stem not in names:
                problems.append(f"orphaned: {p} (no built-in spec {p.stem!r})")
    return problems
