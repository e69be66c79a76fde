"""The compiler's identity: a hash of the sources that decide what generated code says (the compiler packages,
the templates) and of the torch and Triton versions it was made for (read from package metadata, never
imported). It is known before any code generation, so a cache lookup needs no compiler, and any change to
the compiler invalidates every cached or generated module (Inductor's ``torch_key`` idea)."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
from importlib.resources import files
from importlib.resources.abc import Traversable

# What generated text depends on: the compiler packages and modules, the helpers that seal and hash it, the
# tuning constants the cost model reads, and the run-time modules whose names and signatures it calls.
COMPILER_PACKAGES = ("spec", "ir", "passes", "cost", "codegen")
COMPILER_MODULES = ("driver.py", "runtime/files.py", "runtime/specfiles.py", "runtime/tuning.py",
                    "runtime/torch_ops.py", "runtime/triton_ops.py", "runtime/triton_support.py")
VERSIONED = ("torch", "triton")


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


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist).split("+")[0]  # 2.13.0+cpu and 2.13.0 generate the same code
    except importlib.metadata.PackageNotFoundError:
        return "absent"


@functools.lru_cache(maxsize=1)
def compiler_key() -> str:
    """sha256 (hex) over the compiler's sources, the templates, and the torch/Triton versions."""
    h = hashlib.sha256()
    pkg = files("polygen")
    parts = [(f"polygen/{p}/{name}", data) for p in COMPILER_PACKAGES for name, data in _walk(pkg / p, (".py",))]
    parts += [(f"polygen/{m}", (pkg / m).read_bytes()) for m in COMPILER_MODULES]
    parts += [(f"templates/{name}", data) for name, data in _walk(files("polygen._templates"), (".jinja", ".toml"))]
    for name, data in parts:
        h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    for dist in VERSIONED:
        h.update(f"{dist}=={_version(dist)}\0".encode())
    return h.hexdigest()
