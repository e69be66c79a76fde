"""Import the generated module of a spec (``generated/<backend>/<name>.py``) and wrap it as a callable.

A built-in spec whose generated file is missing or stale (its SPEC_HASH or polygen version differs) is
compiled afresh into the user cache instead, with a warning, so ``polygen.load`` always runs the spec as
written; ``polygen check`` is what fails on stale files. User spec paths always go through the cache,
keyed by content hash (like Inductor's code cache).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

from polygen.resources import generated_dir
from polygen.runtime.files import BODY_HASH, body_digest, write_atomic

GENERATED_DIR = generated_dir()
CACHE_DIR = Path(os.environ.get("POLYGEN_CACHE", Path.home() / ".cache" / "polygen"))
BACKENDS = ("torch", "triton")


def _import_path(path: Path, modname: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(modname, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[modname] = mod
    spec.loader.exec_module(mod)
    return mod


def _fresh(mod_path: Path, spec_hash: str) -> bool:
    """Whether ``mod_path`` was generated from this spec text by this polygen and not edited since (its
    ``# body sha256:`` line covers everything else in the file); a hand edit is reported, never run."""
    from polygen import __version__

    if not mod_path.exists():
        return False
    text = mod_path.read_text(encoding="utf-8")
    head = text[:2000]
    if f"# spec sha256: {spec_hash}" not in head or f"polygen {__version__} " not in head:
        return False
    recorded = next((line[len(BODY_HASH):] for line in head.splitlines() if line.startswith(BODY_HASH)), None)
    if recorded != body_digest(text):
        warnings.warn(f"{mod_path} was edited by hand (its body sha256 does not match its header); not running "
                      "it. Run `polygen build` to regenerate it.", stacklevel=4)
        return False
    return True


def module_for(spec: Any, backend: str) -> ModuleType:
    """The generated module of ``spec`` (name, path or SpectralMap) for ``backend``."""
    from polygen.spec import BUILTIN_DIR, load_spec

    smap = load_spec(spec)
    key = f"polygen_generated.{backend}.{smap.name}_{smap.source_hash[:12]}"
    if key in sys.modules:
        return sys.modules[key]
    builtin = Path(smap.source).resolve().parent == BUILTIN_DIR
    path = GENERATED_DIR / backend / f"{smap.name}.py"
    if builtin and _fresh(path, smap.source_hash):
        return _import_path(path, key)
    if builtin:
        warnings.warn(f"generated/{backend}/{smap.name}.py is missing or stale; compiling {smap.name} into the "
                      f"cache (run `polygen build` to refresh generated/)", stacklevel=3)
    from polygen.driver import generate

    src = generate(smap, backend=backend)
    digest = hashlib.sha256(src.encode()).hexdigest()[:16]
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    cpath = CACHE_DIR / f"{backend}_{smap.name}_{digest}.py"
    if not (cpath.is_file() and not cpath.is_symlink() and cpath.read_text(encoding="utf-8") == src):
        write_atomic(cpath, src)
    return _import_path(cpath, key)


class PolygenFunction:
    """``f(G)``: the spec's spectral map on a (..., m, n) tensor; same shape and dtype out.

    ``backend="auto"`` runs the Triton kernels on CUDA tensors (when Triton is installed) and the torch
    code otherwise; ``"torch"`` and ``"triton"`` force one.
    """

    def __init__(self, spec: Any, backend: str = "auto"):
        from polygen.spec import load_spec

        if backend not in BACKENDS + ("auto",):
            raise ValueError(f"backend must be one of auto, torch, triton; got {backend!r}")
        self.spec = load_spec(spec)
        self.backend = backend
        self._modules: dict[str, ModuleType] = {}
        if backend != "auto":
            self._module(backend)

    def _module(self, backend: str) -> ModuleType:
        if backend not in self._modules:
            self._modules[backend] = module_for(self.spec, backend)
        return self._modules[backend]

    def backend_for(self, G: Any) -> str:
        if self.backend != "auto":
            return self.backend
        if getattr(G, "is_cuda", False) and importlib.util.find_spec("triton") is not None:
            return "triton"
        return "torch"

    def __call__(self, G: Any, plan: str | None = None) -> Any:
        mod = self._module(self.backend_for(G))
        fn = mod.PLAN_FUNCTIONS[plan] if plan is not None else None
        return mod.apply(G, plan=fn)

    def plan_for(self, shape: tuple[int, ...], dtype: Any, backend: str = "torch") -> str:
        """The name of the plan ``f`` runs for an input of this shape and dtype."""
        mod = self._module(backend)
        m, n = shape[-2:]
        if self.spec.input_kind == "rectangular" and m > n:
            m, n = n, m
        fn = mod.choose_plan(m, n, dtype)
        return next(k for k, v in mod.PLAN_FUNCTIONS.items() if v is fn)

    @property
    def plans(self) -> list[str]:
        return list(self._module("torch").PLAN_FUNCTIONS)

    def __repr__(self) -> str:
        return f"polygen.load({self.spec.name!r}, backend={self.backend!r})"


def load(spec: Any, backend: str = "auto") -> PolygenFunction:
    """A callable for a built-in spec name, a spec path or a parsed spec."""
    return PolygenFunction(spec, backend=backend)
