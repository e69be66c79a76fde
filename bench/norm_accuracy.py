"""Frobenius norms as polygen's runtime accumulates them (two stages: rows in float32, rows' squares in
float64; polygen.runtime.torch_ops.frobenius) against torch's one-stage float32 norm: relative error against
float64 and time, per shape and input dtype (bench/RESULTS.md §10)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    from polygen.runtime.torch_ops import frobenius

    print("| shape | dtype | one-stage fp32 err | polygen err | one-stage ms | polygen ms |")
    print("|---|---|---|---|---|---|")
    for shape in [(1024, 4096), (4096, 1024), (2048, 2048), (512, 512)]:
        for dt in (torch.float32, torch.bfloat16):
            X = torch.randn(1, *shape, generator=torch.Generator().manual_seed(0)).to(dt)
            ref = float(torch.linalg.vector_norm(X.double()))
            errs, times = [], []
            for two_stage in (False, True):
                def norm(X: torch.Tensor = X, two_stage: bool = two_stage) -> torch.Tensor:
                    if two_stage:
                        return frobenius(X, torch.float32)
                    return torch.linalg.vector_norm(X, dim=(-2, -1), keepdim=True, dtype=torch.float32)

                errs.append(abs(float(norm()) - ref) / ref)
                t = time.perf_counter()
                for _ in range(20):
                    norm()
                times.append((time.perf_counter() - t) / 20 * 1e3)
            print(f"| {shape[0]}x{shape[1]} | {str(dt)[6:]} | {errs[0]:.1e} | {errs[1]:.1e} | {times[0]:.2f} | "
                  f"{times[1]:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
