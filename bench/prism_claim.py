"""The PRISM paper's claim on this machine: a Gaussian 2048×512 matrix, 5 steps, ‖I − XᵀX‖_F per spec.

Polar specs are run with the same input (fp32), several seeds; PRISM's sketched α is random, so its figure
is a median and a range over seeds.

    .venv/bin/python bench/prism_claim.py [--seeds 5] [--shape 2048x512]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import polygen  # noqa: E402
from polygen.compare import torch_muon_ns  # noqa: E402

SPECS = ["prism_polar", "polar_express", "muon_ns5", "polar_express_8", "ifnso_14"]


def orth_err(X: torch.Tensor) -> float:
    X = X.double()
    k = min(X.shape)
    M = X.mT @ X if X.size(0) >= X.size(1) else X @ X.mT
    return float(torch.linalg.norm(torch.eye(k, dtype=torch.float64) - M))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--shape", default="2048x512")
    args = ap.parse_args()
    m, n = (int(v) for v in args.shape.split("x"))
    rows: dict[str, list[float]] = {s: [] for s in SPECS + ["torch.optim.Muon NS (fp32)"]}
    for seed in range(args.seeds):
        G = torch.randn(m, n, generator=torch.Generator().manual_seed(seed))
        for s in SPECS:
            torch.manual_seed(seed)  # the sketch
            rows[s].append(orth_err(polygen.load(s, backend="torch")(G)))
        rows["torch.optim.Muon NS (fp32)"].append(orth_err(torch_muon_ns(G)))
    print(f"Gaussian {m}x{n}, float32, {args.seeds} seeds: ‖I − XᵀX‖_F (median [min, max])\n")
    print("| spec | steps | matmuls (plan) | ‖I − XᵀX‖_F |\n|---|---|---|---|")
    for s, v in rows.items():
        steps = sum(st.repeat for st in polygen.load_spec(s).steps) if s in SPECS else 5
        mm = polygen.schedule(s, (m, n)).matmuls if s in SPECS else 15
        print(f"| {s} | {steps} | {mm} | {statistics.median(v):.3g} [{min(v):.3g}, {max(v):.3g}] |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
