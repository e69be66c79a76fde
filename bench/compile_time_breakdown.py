"""Where a first torch.compile(backend="polygen") call spends its time (bench/RESULTS.md §8): polygen's pass
(recovery, parse, witness, the accuracy gate) timed inside, against the whole first call; then Inductor's
first call of another loop, and a second polygen compile of a new spec, in the same process."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_compile import NS5, loop  # noqa: E402


def main() -> int:
    import polygen.compile.accuracy as acc
    import polygen.compile.graph_pass as gp

    spent: dict[str, float] = {}

    def timed(name, f):
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return f(*a, **k)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - t
        return wrapper

    gp.PolygenPass.__call__ = timed("pass", gp.PolygenPass.__call__)
    acc._guard = timed("gate", acc._guard)
    G = torch.randn(1024, 4096)
    opts = {"fx_graph_cache": False}
    for label, coeffs, backend in (("first polygen call", NS5, "polygen"),
                                   ("inductor first call (another loop)", [NS5[0]] * 4, "inductor"),
                                   ("second polygen compile (new spec)", [(3.0, -3.2, 1.1)] * 5, "polygen")):
        torch._dynamo.reset()
        spent.clear()
        f = torch.compile(loop(coeffs), backend=backend, options=opts)
        t = time.perf_counter()
        with torch.no_grad():
            f(G)
        parts = ", ".join(f"{k} {v:.2f} s" for k, v in spent.items())
        print(f"{label}: {time.perf_counter() - t:.2f} s" + (f" ({parts})" if parts else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
