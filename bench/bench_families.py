"""Every family side by side (issue 3): polar maps, inverse roots and fractional powers on this CPU.

Polar specs: plan, matmuls (long-side / square), FLOPs, measured time and worst error ‖Y − UVᵀ‖₂ on a
κ = 1e3 test matrix. Roots: time and relative error against eigh-based roots (fp32 eigh timed, error
against float64 eigh). Powers: against an SVD-based U S^p Vᵀ. One run, so ratios are comparable.

    .venv/bin/python bench/bench_families.py [--polar-shapes 1024x4096 2048x2048] [--root-sizes 256 512 1024 2048]
        [--extra-polar out/pe_d7.toml]   # e.g. polygen fit minimax --degree 7 --steps 5 --lower 1e-3 -o out/pe_d7.toml
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import polygen  # noqa: E402
from polygen.compare import time_call, torch_muon_ns  # noqa: E402
from polygen.runtime.reference import matrix_power_sym, polar, power, random_with_spectrum  # noqa: E402


def spec_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.matrix_norm(a.double() - b, ord=2).max())


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.norm(a.double() - b) / torch.linalg.norm(b))


def polar_table(shapes: list[str], repeats: int, extra: list[str] = ()) -> str:
    """``extra``: spec files (e.g. from ``polygen fit minimax --degree 7``) timed beside the built-ins."""
    names = [n for n in polygen.list_specs() if polygen.load_spec(n).target == "polar"] + list(extra)
    lines = ["| shape | spec | plan | matmuls (long / square) | GFLOP | time ms | vs torch.optim.Muon | ‖Y−UVᵀ‖₂ |",
             "|---|---|---|---|---|---|---|---|"]
    for s in shapes:
        m, n = (int(v) for v in s.split("x"))
        G = random_with_spectrum((m, n), 1e3, seed=0)
        uv = polar(G)
        t_muon = time_call(lambda: torch_muon_ns(G), repeats)  # noqa: B023
        lines.append(f"| {s} | torch.optim.Muon NS (fp32 copy) | direct | 15 (10 / 5) | "
                     f"{5 * (4 * min(m, n) ** 2 * max(m, n) + 2 * min(m, n) ** 3) / 1e9:.1f} | {t_muon * 1e3:.0f} | "
                     f"1.00x | {spec_err(torch_muon_ns(G), uv):.3g} |")
        for name in names:
            f = polygen.load(name, backend="torch")
            plan = polygen.schedule(name, (m, n))
            t = time_call(lambda: f(G), repeats)  # noqa: B023
            long_mm = plan.cost.long_matmuls
            label = polygen.load_spec(name).name
            lines.append(f"| {s} | {label} | {plan.form} | {plan.matmuls} ({long_mm} / {plan.matmuls - long_mm}) | "
                         f"{plan.cost.dense_flops / 1e9:.1f} | {t * 1e3:.0f} | {t_muon / t:.2f}x | "
                         f"{spec_err(f(G), uv):.3g} |")
        print(f"polar {s} done", file=sys.stderr)
    return "\n".join(lines)


ROOTS = [("inv_root_4", -0.25), ("inv_root_4_ho", -0.25), ("inv_root_2", -0.5), ("sqrt_coupled_ns", 0.5),
         ("prism_sqrt", 0.5)]


def eigh_root(A: torch.Tensor, e: float) -> torch.Tensor:
    lam, Q = torch.linalg.eigh(A)
    return (Q * lam.clamp_min(1e-30).pow(e).unsqueeze(-2)) @ Q.mT


def roots_table(sizes: list[int], repeats: int) -> str:
    lines = ["| n | spec | matmuls | time ms | eigh (fp32) ms | ratio eigh/polygen | rel err polygen | "
             "rel err eigh fp32 |", "|---|---|---|---|---|---|---|---|"]
    for n in sizes:
        A = random_with_spectrum((n, n), 1e4, seed=1, symmetric=True) + 0.0
        ref = {e: matrix_power_sym(A, e) for e in {e for _, e in ROOTS}}
        for name, e in ROOTS:
            f = polygen.load(name, backend="torch")
            reps = max(1, repeats if n <= 1024 else 1)
            t = time_call(lambda: f(A), reps)  # noqa: B023
            t_e = time_call(lambda: eigh_root(A, e), reps)  # noqa: B023
            plan = polygen.schedule(name, (n, n))
            lines.append(f"| {n} | {name} | {plan.matmuls} | {t * 1e3:.1f} | {t_e * 1e3:.1f} | {t_e / t:.2f}x | "
                         f"{rel(f(A), ref[e]):.2e} | {rel(eigh_root(A, e), ref[e]):.2e} |")
        print(f"roots {n} done", file=sys.stderr)
    return "\n".join(lines)


def ranked_power(G: torch.Tensor, p: float, rank: int) -> torch.Tensor:
    """U S^p Vᵀ of G's top ``rank`` singular triplets, unit RMS: the float32 rounding of an exactly rank-r G leaves
    singular values ~1e-7·‖G‖ that S^p would lift to (1e-7)^p (4 % of the top for p = 1/5)."""
    U, S, Vh = torch.linalg.svd(G.double(), full_matrices=False)
    Y = (U[..., :rank] * S[..., :rank].pow(p).unsqueeze(-2)) @ Vh[..., :rank, :]
    return Y * (Y.numel() ** 0.5 / torch.linalg.norm(Y))


def powers_table(shape: str, repeats: int) -> str:
    m, n = (int(v) for v in shape.split("x"))
    lines = ["| shape | spec | matmuls | time ms | SVD ms | rel err vs U S^p Vᵀ (rank ≤ 16, σ in the 5 % interval) |",
             "|---|---|---|---|---|---|"]
    for name in [x for x in polygen.list_specs() if polygen.load_spec(x).target == "power"]:
        smap = polygen.load_spec(name)
        from polygen.passes.verify_convergence import verify_map

        lo = verify_map(smap).within_5pct[0]
        # a low-rank G whose normalized singular values (Σσ² = 1) stay inside the spec's 5 % interval
        rank = max(1, min(16, int(1 / (1.2 * lo) ** 2)))
        s = torch.linspace(1.0, 0.8, rank, dtype=torch.float64)
        s = s / s.norm()
        G = random_with_spectrum((m, n), seed=2, spectrum=torch.cat([s, torch.zeros(min(m, n) - rank,
                                                                                    dtype=torch.float64)]))
        f = polygen.load(name, backend="torch")
        t = time_call(lambda: f(G), repeats)  # noqa: B023
        t_svd = time_call(lambda: power(G, smap.power), max(1, repeats // 2))  # noqa: B023
        err = rel(f(G), ranked_power(G, smap.power, rank))
        lines.append(f"| {shape} | {name} | {polygen.schedule(name, (m, n)).matmuls} | {t * 1e3:.1f} | "
                     f"{t_svd * 1e3:.1f} | {err:.2e} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--polar-shapes", nargs="+", default=["1024x4096", "2048x2048"])
    ap.add_argument("--root-sizes", nargs="+", type=int, default=[256, 512, 1024, 2048])
    ap.add_argument("--power-shape", default="1024x4096")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--extra-polar", nargs="*", default=[], help="spec files to add to the polar table")
    ap.add_argument("--only", choices=("polar", "roots", "powers"), default=None)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32")
    if args.only in (None, "polar"):
        print("\n### Polar maps\n")
        print(polar_table(args.polar_shapes, args.repeats, args.extra_polar))
    if args.only in (None, "roots"):
        print("\n### Inverse roots and square roots (SPD, κ = 1e4)\n")
        print(roots_table(args.root_sizes, args.repeats))
    if args.only in (None, "powers"):
        print("\n### Fractional powers (Muon^p)\n")
        print(powers_table(args.power_shape, args.repeats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
