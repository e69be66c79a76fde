"""The compiler's identity, one key per backend: a hash of exactly the sources that decide what that backend's
generated text says (the compiler packages, the backend's emitter and templates) and polygen's version, which
the text prints. It is known before any code generation, so a cache lookup needs no compiler, and a change to
what decides a backend's text invalidates every cached or generated module of that backend (Inductor's
``torch_key`` idea).

What does not decide the text is left out, so that it cannot make shipped modules stale: the versions of torch,
Triton, SymPy or NumPy (the text never reads them; a library that would derive other text is what
``polygen check`` finds, by regenerating and comparing), the run-time modules the text calls (torch_ops.py,
triton_ops.py), and the other backend's emitter and templates. A torch-only install therefore runs the shipped
torch modules as they are, and an edit to the Triton emitter leaves the torch modules current. The price: a
change to a run-time helper's name or signature that generated text calls (``torch_ops.apply``, ``Problem``)
must come with a new polygen version, or cached user modules of the same version fail at import or call
instead of being recompiled.
"""

from __future__ import annotations

import functools
import hashlib
from importlib.resources import files
from importlib.resources.abc import Traversable

BACKENDS = ("torch", "triton")
# Shared by every backend's text: the parser, IR, passes and cost model (cost polynomials are printed), the
# emitters' common code, the dtype table, the driver's stages, the seal and spec hash, the tuning constants.
COMPILER_PACKAGES = ("spec", "ir", "passes", "cost", "codegen")
COMPILER_MODULES = ("dtypes.py", "driver.py", "runtime/files.py", "runtime/specfiles.py", "runtime/tuning.py")
# Each backend's own emitter (left out of the other backend's key) and its template folders: the Triton
# templates import the torch ones' macros (tests/test_codegen.py checks that these lists cover every import).
EMITTERS = {"torch": "codegen/torch_emitter.py", "triton": "codegen/triton_emitter.py"}
TEMPLATE_DIRS = {"torch": ("torch",), "triton": ("triton", "torch")}
# The run-time modules generated code calls: in no module's key, but in the all-backends key for caches of
# code that inlines them (the compile pass's FX graph cache).
RUNTIME_MODULES = ("runtime/torch_ops.py", "runtime/triton_ops.py", "runtime/triton_support.py")


def _walk(root: Traversable, suffixes: tuple[str, ...]) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    stack = [(root, "")]
    while stack:
        node, rel = stack.pop()
        for child in node.iterdir():
            name = f"{rel}/{child.name}" if rel else child.name
            if child.is_dir():
                if child.name != "__pycache__":
                    stack.append((child, name))
            elif child.name.endswith(suffixes):
                out.append((name, child.read_bytes()))
    return sorted(out)


def key_sources(backend: str) -> list[tuple[str, bytes]]:
    """(name, bytes) of every file that decides ``backend``'s generated text, sorted by name."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    pkg = files("polygen")
    others = {path for be, path in EMITTERS.items() if be != backend}
    parts = [(f"polygen/{p}/{name}", data) for p in COMPILER_PACKAGES for name, data in _walk(pkg / p, (".py",))
             if f"{p}/{name}" not in others]
    parts += [(f"polygen/{m}", (pkg / m).read_bytes()) for m in COMPILER_MODULES]
    templates = files("polygen._templates")
    for folder in TEMPLATE_DIRS[backend]:
        parts += [(f"templates/{folder}/{name}", data) for name, data in _walk(templates / folder, (".jinja",))]
    return sorted(parts)


def _digest(parts: list[tuple[str, bytes]]) -> str:
    from polygen import __version__

    h = hashlib.sha256(f"polygen=={__version__}\0".encode())
    for name, data in parts:
        h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest()


@functools.cache
def compiler_key(backend: str | None = None) -> str:
    """sha256 (hex) of what decides ``backend``'s generated text; with no backend, of every backend's sources
    and the run-time modules as well (for a cache whose entries inline run-time code)."""
    if backend is not None:
        return _digest(key_sources(backend))
    pkg = files("polygen")
    parts = {p for be in BACKENDS for p in key_sources(be)}
    parts |= {(f"polygen/{m}", (pkg / m).read_bytes()) for m in RUNTIME_MODULES}
    return _digest(sorted(parts))
