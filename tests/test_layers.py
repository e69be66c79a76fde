"""The wall and the pipeline's direction, read from the import statements of every polygen module.

The compiler runs spec → ir → passes → cost → codegen → driver; the product (runtime/, optim/) runs what it
wrote. A layer imports only layers before it; the product imports no compiler package, except through the
two doors loader.py opens at call time (the cache miss of a user spec, and ``PolygenFunction.spec`` for
inspection) and runtime/reference.py, the float64 evaluator of a spectral map that tests and `polygen compare`
use. The compiler may read the product's tuning constants (runtime/tuning.py), which it must agree with.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "polygen"
PIPELINE = ("spec", "ir", "passes", "cost", "codegen", "driver")
COMPILER = set(PIPELINE) | {"fit"}
# spec builds ir (the parser freezes a spec into the spectral IR), so ir comes first in import order
ORDER = {"ir": 0, "spec": 1, "passes": 2, "cost": 3, "codegen": 4, "driver": 5}
DOORS = {
    ("runtime.loader", "driver"),  # compile_module, on a cache miss only
    ("runtime.loader", "spec"),  # PolygenFunction.spec, for inspection
    ("runtime.reference", "ir"),  # the float64 reference map
}


def _imports() -> list[tuple[str, str, bool]]:
    """(importing module, imported polygen package, at module level) for every polygen import."""
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        mod = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("polygen."):
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("polygen.")]
            for name in names:
                out.append((mod, name.split(".")[1], id(node) in top))
    return out


IMPORTS = _imports()


def test_the_scan_sees_the_imports():
    assert ("driver", "passes", True) in IMPORTS and ("optim.muon", "runtime", True) in IMPORTS


@pytest.mark.parametrize("product", ["runtime", "optim"])
def test_the_product_imports_no_compiler(product):
    bad = [(m, p) for m, p, _ in IMPORTS if m.split(".")[0] == product and p in COMPILER and (m, p) not in DOORS]
    assert bad == []
    doors = [(m, p, top) for m, p, top in IMPORTS if (m, p) in DOORS and p in ("driver", "spec")]
    assert doors and not any(top for _, _, top in doors), "the loader's doors open at call time only"


def test_optimizers_import_runtime_only():
    assert {p for m, p, _ in IMPORTS if m.startswith("optim")} <= {"optim", "runtime", "errors"}


def test_no_import_back_up_the_pipeline():
    """A compiler layer imports none after it (passes → cost was one: cost → passes → cost)."""
    bad = [(m, p) for m, p, _ in IMPORTS
           if m.split(".")[0] in ORDER and p in ORDER and ORDER[p] > ORDER[m.split(".")[0]]]
    assert bad == []
