"""Where the designed inverse roots' float32 error comes from: step design × update form × product order.

    .venv/bin/python bench/roots_rounding.py [--r 4 2] [--sizes 128 256 512] [--kappas 1e2 1e3 1e4] [--seeds 3]

Every variant runs the same coupled iteration X ← X·t_k(M), M ← t_k(M)^r·M in float32 torch ops, in the order
polygen's generated code runs it (t's powers of M by repeated products, t^r by squaring), and is scored against
float64 `eigh` of the same fp32 input (‖X − T‖₂/‖T‖₂, the mean over ``--seeds`` inputs A = Q diag(λ) Qᵀ with λ
log-spaced over [1/κ, 1], as bench/bench_roots.py makes them). The variants:

* design: the shipped spec's coefficients (``polygen fit root`` with its spread bound max t / min t ≤ 4), or the
  same search without the spread bound (``--spread inf``: one matmul fewer for r = 4, designed here, ~1 min);
* form: ``plain`` (X·t and t^r, one product each) or ``residual`` (z = t − 1: X + X·z and M + M·(t^r − 1) with
  t^r − 1 by squaring residuals, e ← e² + 2e; the form the shipped specs are written in);
* order: M's update multiplied from the left (t^r·M, Distributed Shampoo's order) or from the right (M·t^r, the
  side X is multiplied on; the shipped order).

The ``shipped`` column is the generated function itself (polygen.load), which must match its simulated row.
Errors only (no timings): the matmul counts are the designs'.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import polygen  # noqa: E402
from polygen.fit.roots import DEFAULT_CONDITIONING, design_roots  # noqa: E402
from polygen.runtime.reference import random_with_spectrum  # noqa: E402


def spec_coeffs(name: str) -> list[tuple[float, ...]]:
    """Each step's t coefficients (constant first) from a shipped spec's tables."""
    import tomllib

    spec = tomllib.loads(polygen.spec.spec_text(name)[0])
    steps: list[tuple[float, ...]] = []
    for table in spec["steps"]:
        cols = [table["table"][k] for k in sorted(table["table"])]
        steps += [tuple(float(c[j]) for c in cols) for j in range(len(cols[0]))]
    return steps


def regenerate_conditioning(name: str) -> float:
    """The conditioning bound of a shipped design, from the `polygen fit root` command its header records."""
    import re

    text = polygen.spec.spec_text(name)[0]
    command = re.search(r"^# Regenerate: (polygen fit root .*)$", text, re.M)
    if command is None:
        raise SystemExit(f"{name}: no 'Regenerate: polygen fit root ...' line in its header")
    found = re.search(r"--conditioning (\S+)", command.group(1))
    return float(found.group(1)) if found else DEFAULT_CONDITIONING


def run(A: torch.Tensor, steps: list[tuple[float, ...]], r: int, form: str, right: bool) -> torch.Tensor:
    """The coupled iteration in float32; returns X·s^(−1/r) ≈ A^(−1/r)."""
    n = A.size(-1)
    s = 2 * float(torch.linalg.matrix_norm(A.double())) / (r + 1)
    M = (A.double() / s).float()
    eye = torch.eye(n)
    X: torch.Tensor | None = None
    for k, c in enumerate(steps):
        powers = [eye, M]
        for _ in range(2, len(c)):
            powers.append(powers[-1] @ M)
        last = k == len(steps) - 1
        if form == "residual":
            z = (c[0] - 1) * eye + sum(ci * p for ci, p in zip(c[1:], powers[1:]))
            X = eye + z if X is None else torch.addmm(X, X, z)
            if not last:
                acc: torch.Tensor | None = None
                cur, e = z, r
                while e:
                    if e & 1:
                        acc = cur if acc is None else torch.addmm(acc + cur, acc, cur)
                    e >>= 1
                    if e:
                        cur = torch.addmm(cur, cur, cur, beta=2.0)
                assert acc is not None
                M = torch.addmm(M, M, acc) if right else torch.addmm(M, acc, M)
        else:
            t = sum(ci * p for ci, p in zip(c, powers))
            X = t if X is None else X @ t
            if not last:
                tr = torch.linalg.matrix_power(t, r)
                M = M @ tr if right else tr @ M
    assert X is not None
    return X.double() * s ** (-1.0 / r)


Variant = Callable[[torch.Tensor], torch.Tensor]


def make_variants(r: int, fn: Variant, shipped: list[tuple[float, ...]],
                  free: list[tuple[float, ...]]) -> dict[str, Variant]:
    return {
        "shipped": fn,
        "resid,right": lambda A: run(A, shipped, r, "residual", True),
        "resid,left": lambda A: run(A, shipped, r, "residual", False),
        "plain,right": lambda A: run(A, shipped, r, "plain", True),
        "plain,left": lambda A: run(A, shipped, r, "plain", False),
        "free,resid,right": lambda A: run(A, free, r, "residual", True),
        "free,plain,left": lambda A: run(A, free, r, "plain", False),
    }


def error(X: torch.Tensor, A: torch.Tensor, r: int) -> float:
    w, V = torch.linalg.eigh(A.double())
    T = (V * w.pow(-1.0 / r)) @ V.mT
    return float(torch.linalg.matrix_norm(X.double() - T, 2) / torch.linalg.matrix_norm(T, 2))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--r", type=int, nargs="+", default=[4, 2])
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    ap.add_argument("--kappas", type=float, nargs="+", default=[1e2, 1e3, 1e4])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    for r in args.r:
        name = f"inv_root_{r}"
        shipped = spec_coeffs(name)
        smap = polygen.load_spec(name)
        free = design_roots(r, smap.domain[0], conditioning=regenerate_conditioning(name), spread=math.inf,
                            degrees=(1, 2))
        fn = polygen.load(name, backend="torch")
        mm_shipped = polygen.schedule(name, (128, 128)).matmuls
        variants = make_variants(r, fn, shipped, [s.coeffs for s in free.steps])
        print(f"\nr = {r}: shipped design {mm_shipped} matmuls (spread <= 4); free = no spread bound, "
              f"{free.matmuls} matmuls, degrees {free.degrees}")
        print(f"{'n':>5} {'kappa':>6} " + " ".join(f"{v:>16}" for v in variants))
        for n in args.sizes:
            for kappa in args.kappas:
                errs: dict[str, list[float]] = {v: [] for v in variants}
                for seed in range(args.seeds):
                    A = random_with_spectrum((n, n), cond=kappa, seed=seed, dtype=torch.float64, symmetric=True)
                    A = ((A + A.mT) / 2).float()
                    for v, f in variants.items():
                        errs[v].append(error(f(A), A, r))
                print(f"{n:5d} {kappa:6.0e} " + " ".join(f"{statistics.mean(e):16.2e}" for e in errs.values()),
                      flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
