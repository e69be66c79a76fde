"""The built wheel works outside a checkout: templates/ and generated/ travel in it and are found through
importlib.resources (a wheel without them could not run a single spec)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
IGNORE = shutil.ignore_patterns(".venv", ".git", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis", "out",
                                "build", "*.egg-info", "__pycache__", ".whl")

SCRIPT = textwrap.dedent('''
    import subprocess, sys, warnings
    from pathlib import Path
    warnings.simplefilter("error")  # a stale or missing generated module would warn: not in a good wheel
    target = Path(sys.argv[1])
    import torch
    import polygen
    from polygen.optim import Muon, MuonP, Shampoo
    from polygen.runtime.loader import module_for

    assert Path(polygen.__file__).is_relative_to(target), polygen.__file__
    for name in ("muon_ns5", "inv_root_2", "muonp_1_3"):
        mod = module_for(name, "torch")
        assert Path(mod.__file__).is_relative_to(target / "polygen" / "_generated"), mod.__file__
    G = torch.randn(2, 16, 48, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(polygen.load("polar_express", backend="torch")(G)).all()
    for opt_cls, kw in ((Muon, {"ns_dtype": torch.float32}), (MuonP, {}), (Shampoo, {})):
        p = torch.nn.Parameter(torch.randn(16, 24, generator=torch.Generator().manual_seed(1)))
        before = p.detach().clone()
        opt = opt_cls([p], lr=0.01, **kw)
        p.grad = torch.randn_like(p)
        opt.step()
        assert torch.isfinite(p).all() and not torch.equal(p, before), opt_cls.__name__
    src = polygen.generate("muon_ns5", backend="torch")
    assert src == (target / "polygen/_generated/torch/muon_ns5.py").read_text()
    out = Path("built")
    subprocess.run([sys.executable, "-m", "polygen.cli", "build", "muon_ns5", "--out", str(out)], check=True)
    assert (out / "torch" / "muon_ns5.py").read_text() == src
    text = (target / "polygen/specs/muon_ns5.toml").read_text().replace('name = "muon_ns5"', 'name = "mine"')
    Path("mine.toml").write_text(text.replace("repeat = 5", "repeat = 6"))
    assert torch.isfinite(polygen.load("mine.toml", backend="torch")(G)).all()
    # a user spec built without --out goes to the cache, not into site-packages, so check stays clean
    subprocess.run([sys.executable, "-m", "polygen.cli", "build", "mine.toml"], check=True)
    assert not list((target / "polygen/_generated").rglob("mine*")), "a user module in site-packages"
    subprocess.run([sys.executable, "-m", "polygen.cli", "check"], check=True)
    print("wheel ok")
''')


# A torch-only install (no `[triton]` extra), made from this environment by a sitecustomize on the child's
# PYTHONPATH: `import triton` fails, importlib.util.find_spec("triton") is None, and importlib.metadata finds no
# triton distribution (what a compiler key reading Triton's version would see).
HIDE_TRITON = textwrap.dedent('''
    import importlib.metadata, sys

    def _hidden(name):
        return (name or "").split(".")[0].lower().replace("-", "_") == "triton"

    class _WithoutTriton:
        def __init__(self, inner):
            self.inner = inner

        def find_spec(self, name, path=None, target=None):
            find = getattr(self.inner, "find_spec", None)
            return None if _hidden(name) or find is None else find(name, path, target)

        def find_distributions(self, context=importlib.metadata.DistributionFinder.Context()):
            find = getattr(self.inner, "find_distributions", None)
            if find is None or _hidden(getattr(context, "name", None)):
                return iter(())
            return (d for d in find(context) if not _hidden(d.metadata["Name"]))

        def __getattr__(self, attr):
            return getattr(self.inner, attr)

    sys.meta_path[:] = [_WithoutTriton(f) for f in sys.meta_path]
''')

TORCH_ONLY = textwrap.dedent('''
    import importlib.metadata, importlib.util, os, subprocess, sys, warnings
    from pathlib import Path
    warnings.simplefilter("error")  # a stale generated module warns (and raises under POLYGEN_STRICT=1)
    target = Path(sys.argv[1])
    assert importlib.util.find_spec("triton") is None
    try:
        importlib.metadata.version("triton")
        raise AssertionError("triton's metadata is visible")
    except importlib.metadata.PackageNotFoundError:
        pass
    import torch
    import polygen
    from polygen.optim import Muon, MuonP, Shampoo

    assert Path(polygen.__file__).is_relative_to(target), polygen.__file__
    for name in polygen.list_specs():
        f = polygen.load(name)  # backend="auto": the torch code on CPU tensors
        A = torch.randn(2, 8, 8, generator=torch.Generator().manual_seed(0))
        G = A @ A.mT + torch.eye(8) if f.input_kind == "symmetric" else A[..., :6, :]
        assert torch.isfinite(f(G)).all(), name
    COMPILER = ("sympy", "triton", "polygen.spec", "polygen.passes", "polygen.codegen", "polygen.driver",
                "polygen.cost", "polygen.ir")
    assert not [m for m in sys.modules if m.startswith(COMPILER)], sorted(sys.modules)
    for opt_cls in (Muon, MuonP, Shampoo):
        p = torch.nn.Parameter(torch.randn(16, 24, generator=torch.Generator().manual_seed(1)))
        p.grad = torch.randn_like(p)
        opt_cls([p], lr=0.01).step()
        assert torch.isfinite(p).all(), opt_cls.__name__
    try:  # the Triton modules cannot run without Triton: a message saying so, not a warning or a compile
        polygen.load("muon_ns5", backend="triton")
        raise AssertionError("backend='triton' loaded without Triton")
    except ImportError as e:
        assert "polygen[triton]" in str(e), e
    # (torch's own optimizer machinery may import SymPy; polygen adds none of the compiler)
    assert not [m for m in sys.modules if m.startswith(COMPILER[1:])], sorted(sys.modules)
    cache = Path(os.environ["POLYGEN_CACHE"])
    assert not cache.exists() or not list(cache.iterdir()), list(cache.iterdir())  # nothing compiled
    check = subprocess.run([sys.executable, "-m", "polygen.cli", "check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr[-3000:]
    print("torch-only ok")
''')


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    root = tmp_path_factory.mktemp("wheel")
    src, wheels, target = root / "src", root / "dist", root / "site"
    shutil.copytree(REPO, src, ignore=IGNORE)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(src)], check=True,
                   capture_output=True)
    (wheel,) = wheels.glob("polygen-*.whl")
    subprocess.run(pip + ["install", "--no-deps", "--target", str(target), str(wheel)], check=True,
                   capture_output=True)
    return root, target


def test_wheel_runs_specs_optimizers_and_the_compiler_outside_a_checkout(installed):
    root, target = installed
    work = root / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("POLYGEN_GENERATED", "PYTHONPATH")}
    env.update(PYTHONPATH=str(target), POLYGEN_CACHE=str(root / "cache"), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(target)], cwd=work, env=env, capture_output=True,
                          text=True)
    assert proc.returncode == 0 and "wheel ok" in proc.stdout, proc.stderr[-3000:]


def test_wheel_carries_templates_and_generated(installed):
    _, target = installed
    pkg = target / "polygen"
    assert (pkg / "_templates" / "torch" / "module.py.jinja").is_file()
    assert (pkg / "_templates" / "triton" / "module.py.jinja").is_file()
    assert (pkg / "runtime" / "triton_configs.toml").is_file()
    names = sorted(p.stem for p in (REPO / "polygen" / "specs").glob("*.toml"))
    for backend in ("torch", "triton"):
        assert sorted(p.stem for p in (pkg / "_generated" / backend).glob("*.py")) == names


def test_a_torch_only_install_runs_the_shipped_modules_as_they_are(installed):
    """Without the `[triton]` extra (issue 23): every built-in loads from the wheel's generated modules with no
    warning (POLYGEN_STRICT=1 raises on a stale one), no SymPy or compiler module imported, nothing compiled into
    the cache, and `polygen check` clean: each backend's compiler key covers only what decides its text."""
    root, target = installed
    work, hide = root / "torch_only", root / "hide_triton"
    work.mkdir()
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(HIDE_TRITON)
    env = {k: v for k, v in os.environ.items() if k not in ("POLYGEN_GENERATED", "PYTHONPATH", "TRITON_INTERPRET")}
    env.update(PYTHONPATH=os.pathsep.join([str(hide), str(target)]), POLYGEN_CACHE=str(root / "cache_torch_only"),
               POLYGEN_STRICT="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", TORCH_ONLY, str(target)], cwd=work, env=env, capture_output=True,
                          text=True)
    assert proc.returncode == 0 and "torch-only ok" in proc.stdout, proc.stderr[-3000:]
