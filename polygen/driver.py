"""The compiler driver: spec → spectral IR → schedules → source. The stages are listed once, in ``lower``;
``schedule`` and ``generate`` read them, so each is built once per spec (and kept for the process)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from polygen.cost.search import Plan, choose_among
from polygen.dtypes import dtype_name, plan_class
from polygen.errors import PolygenError, SpecError
from polygen.ir.spectral import SpectralMap
from polygen.passes.normalize import normalize
from polygen.passes.pipeline import Stages, candidate_plans
from polygen.passes.validate_translation import validate_translation
from polygen.passes.verify_convergence import Report, require_finite, verify_convergence, verify_map, with_plan_peaks
from polygen.spec import load_spec


def _spec(spec: Any) -> SpectralMap:
    return spec if isinstance(spec, SpectralMap) else load_spec(spec)  # a name, a path or a SpecText


@functools.lru_cache(maxsize=64)
def _report(smap: SpectralMap) -> Report:
    # [A] spec -> its scalar map on the domain: the claim, and every constant and intermediate finite
    return verify_map(smap)


@functools.lru_cache(maxsize=64)
def _normalized_plans(smap: SpectralMap) -> tuple[SpectralMap, dict, dict[str, float]]:
    # a map that overflows float32/float64 is the spec's error (located), not a plan's: checked before any plan
    require_finite(smap, _report(smap))
    # [B] spec -> normalized spectral map
    spectral = normalize(smap)
    # [C] spectral map -> candidate schedules per dtype class (the direct plan once, Gram plans per dtype)
    plans = candidate_plans(spectral)
    # [C'] translation validation: every plan, interpreted on the domain, computes the spec's map (else no code);
    # it also bounds each dtype class's intermediates
    peaks = validate_translation(smap, plans)
    return spectral, plans, peaks


@functools.lru_cache(maxsize=64)
def lower(smap: SpectralMap, check: bool = True) -> Stages:
    """Every stage of one spec: [B] normalized map, [C] candidate schedules, [A] the convergence report (its
    finite dtypes narrowed to those the plans' intermediates fit)."""
    spectral, plans, peaks = _normalized_plans(smap)
    # [A] spec -> convergence verified on the domain (the map's fixed point only, when not checking)
    report = verify_convergence(smap, _report(smap)) if check else _report(smap)
    return Stages(smap, spectral, with_plan_peaks(smap, report, peaks), plans)


def compile_stages(spec: Any, *, check: bool = True) -> Stages:
    return lower(_spec(spec), check)


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
    dt = dtype_name(dtype)
    plans = _normalized_plans(smap)[1][plan_class(dt)]
    best, costs = choose_among(plans, mm, nn, batch=batch, dtype=dt, backend=backend)
    alts = tuple((k, c) for k, c in costs.items() if k != best)
    return Plan(smap.name, (m, n), transposed, dt, backend, plans[best], costs[best], alts)


def generate(spec: Any, backend: str = "torch") -> str:
    """Source text of the generated module for ``backend`` ("torch" or "triton")."""
    return _generate(_spec(spec), backend)


@functools.lru_cache(maxsize=128)
def _generate(smap: SpectralMap, backend: str) -> str:
    # [D] stages -> source text of one backend (pure: the same map gives the same text within a process)
    stages = lower(smap)
    if backend == "torch":
        from polygen.codegen.torch_emitter import emit_torch

        return emit_torch(stages)
    if backend == "triton":
        from polygen.codegen.triton_emitter import emit_triton

        return emit_triton(stages)
    raise ValueError(f"backend must be 'torch' or 'triton', got {backend!r}")


def clear_caches() -> None:
    """Forget the stages and sources built in this process (for tests that watch the compiler run)."""
    for fn in (_report, _normalized_plans, lower, _generate):
        fn.cache_clear()


def compile_module(spec: Any, backend: str) -> str:
    """The product's one way into the compiler: the source of ``spec``'s module for ``backend``, called by the
    runtime only when neither generated/ nor the cache holds it (runtime/loader.py)."""
    return generate(spec, backend=backend)


def available_backends() -> tuple[str, ...]:
    from polygen.codegen.env import TEMPLATE_DIR

    return ("torch", "triton") if (TEMPLATE_DIR / "triton").is_dir() and any((TEMPLATE_DIR / "triton").iterdir()) \
        else ("torch",)


def build(specs: list[str] | None = None, out: Path | None = None, backends: tuple[str, ...] | None = None
          ) -> dict[Path, bool]:
    """Write generated/<backend>/<spec>.py for the given (default: all built-in) specs; each file written maps to
    whether its text changed (an unchanged file is left as it is).

    Without ``out``, built-ins go to the shipped tree (generated/) and user specs to the cache that
    ``polygen.load`` reads (runtime.loader.cache_path), never into the shipped tree, which in an installed wheel
    is site-packages. Files are written through exclusive temporary files and renamed into place
    (runtime.files.write_atomic), only inside their folder; a user spec may not take a built-in's file in the
    shipped tree unless its text is the built-in's."""
    from polygen.runtime import loader
    from polygen.runtime.files import inside, write_atomic
    from polygen.runtime.specfiles import is_builtin, list_specs

    shipped = loader.GENERATED_DIR
    backends = backends or available_backends()
    maps = [_spec(name) for name in specs or list_specs()]  # every spec is checked before anything is written
    if out is not None and Path(out).resolve() == shipped.resolve():  # without out, user specs go to the cache
        for smap in maps:
            _claim_builtin_name(smap)
    written: dict[Path, bool] = {}
    for smap in maps:
        for be in backends:
            if out is None and not is_builtin(smap.source):
                folder = loader.CACHE_DIR
                path = loader.cache_path(smap.source_hash, be, loader.cache_stem(smap.source))
            else:
                folder = Path(out) if out is not None else shipped
                path = folder / be / f"{smap.name}.py"
            path.parent.mkdir(parents=True, exist_ok=True)
            if not inside(path.parent, folder) or path.is_symlink():
                raise PolygenError(f"refusing to write {path}: it leads outside the output folder {folder}")
            src = generate(smap, backend=be)
            changed = not path.exists() or path.read_text(encoding="utf-8") != src
            if changed:
                write_atomic(path, src)
            written[path] = changed
    return written


def _claim_builtin_name(smap: SpectralMap) -> None:
    """A user spec named like a built-in would overwrite the built-in's file in the shipped tree: an error,
    unless it is the built-in's text (any other folder may hold it)."""
    from polygen.spec import BUILTIN_DIR, list_specs, spec_hash, spec_text

    if smap.name not in list_specs() or Path(smap.source).resolve().parent == BUILTIN_DIR:
        return
    if spec_hash(spec_text(smap.name)[0]) != smap.source_hash:
        raise SpecError(f"name {smap.name!r} is a built-in spec's; a user spec needs a name of its own (its "
                        "generated file would replace the built-in's)", source=smap.source, line=smap.line_of("name"),
                        field="name")


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
