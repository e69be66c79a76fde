"""``torch.compile(polygen.load(name), fullgraph=True)`` works as the very first call of a fresh process (issue 13):
the generated module is loaded when the function is made, never while Dynamo traces it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import polygen

SCRIPT = textwrap.dedent('''
    import sys, torch, polygen
    name, backend = sys.argv[1], sys.argv[2]
    f = polygen.load(name, backend=backend)
    compiled = torch.compile(f, fullgraph=True)  # fullgraph: a graph break is an error
    for shape in ((24, 40), (3, 24, 40)):  # unbatched, batched
        A = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
        if f.input_kind == "symmetric":
            A = A[..., :24, :24] @ A[..., :24, :24].mT / 24 + torch.eye(24)
        y = compiled(A)
        torch.testing.assert_close(y, f(A), rtol=1e-4, atol=1e-5)
    print("ok")
''')


def _first_call(name: str, backend: str, tmp_path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", POLYGEN_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-c", SCRIPT, name, backend], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]


def test_compile_is_the_first_call(tmp_path):
    _first_call("polar_express", "auto", tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["auto", "torch"])  # "triton" compiles only with CUDA (test_triton_backend)
@pytest.mark.parametrize("name", polygen.list_specs())
def test_compile_is_the_first_call_for_every_builtin(name, backend, tmp_path):
    _first_call(name, backend, tmp_path)
