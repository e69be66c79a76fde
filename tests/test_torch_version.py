"""polygen declares the torch versions it is tested on and refuses others at import with a message
(issue 23: it declared torch>=2.5 while `pip install polygen` brought 2.15, untested)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from polygen import torch_version

REPO = Path(__file__).resolve().parent.parent


def test_pyproject_and_readme_declare_the_tested_range():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert [d for d in deps if d.startswith("torch")] == [torch_version.requirement()] == ["torch>=2.13,<2.14"]
    assert f"`{torch_version.requirement()}`" in (REPO / "README.md").read_text()


@pytest.mark.parametrize("version,refused", [
    ("2.13.0+cpu", False), ("2.13.0", False), ("2.13.1", False), ("2.14.0", True), ("2.15.0", True),
    ("2.15.0.dev20260101+cu128", True), ("2.12.1", True), ("2.5.0", True), ("3.0.0", True), ("nonsense", True),
])
def test_untested_versions(version, refused):
    assert torch_version.untested(version) == refused


def _import_with_torch(version: str, **env: str) -> subprocess.CompletedProcess:
    """``import polygen`` in a fresh interpreter whose package metadata reports ``version`` for torch."""
    code = ("import importlib.metadata as md\n"
            "real = md.version\n"
            f"md.version = lambda d: {version!r} if d == 'torch' else real(d)\n"
            "import polygen, sys\n"
            "assert 'torch' not in sys.modules\n"
            "print('imported')\n")
    full = {k: v for k, v in os.environ.items() if k != torch_version.OVERRIDE}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(full, **env))


def test_an_untested_torch_is_refused_at_import_with_the_range_and_the_override():
    proc = _import_with_torch("2.15.0")
    assert proc.returncode != 0 and "imported" not in proc.stdout
    assert "ImportError" in proc.stderr and "torch 2.15.0 is installed" in proc.stderr
    assert "torch>=2.13,<2.14" in proc.stderr and "POLYGEN_UNTESTED_TORCH=1" in proc.stderr
    assert "imported" in _import_with_torch("2.15.0", POLYGEN_UNTESTED_TORCH="1").stdout
    assert "imported" in _import_with_torch("2.13.1").stdout
