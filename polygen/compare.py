"""Measure generated functions: time and error against float64 SVD, with peer implementations beside.

Peers are what users run today: torch.optim.Muon's Newton–Schulz (its own function in bfloat16, the same
loop in the requested dtype otherwise) and a plain direct Horner loop written by hand.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch

from polygen import dtypes
from polygen.runtime.reference import random_with_spectrum, spectral_reference, target_reference

if TYPE_CHECKING:  # the compiler's types, for annotations only
    from polygen.cost.model import Cost
    from polygen.cost.search import Plan

DTYPES = {name: getattr(torch, name) for name in dtypes.DTYPES}
MUON_ABC = (3.4445, -4.7750, 2.0315)


def run_cost(plan: Plan, key: str) -> tuple[str, Cost]:
    """(form, cost) of the plan named ``key`` a function ran, from ``polygen.schedule``'s plan (the cost model's
    cheapest) and its alternatives: an accuracy policy may run another than the cheapest."""
    if key.startswith(plan.form):
        return plan.form, plan.cost
    form = "direct" if key == "direct" else "gram"
    return form, dict(plan.alternatives).get(form, plan.cost)


def torch_muon_ns(G: torch.Tensor, steps: int = 5, eps: float = 1e-7) -> torch.Tensor:
    """torch.optim.Muon's Newton–Schulz: its own function for bfloat16, the identical loop for other dtypes."""
    if G.dtype == torch.bfloat16 and G.ndim == 2:
        from torch.optim._muon import _zeropower_via_newtonschulz

        return _zeropower_via_newtonschulz(G, MUON_ABC, steps, eps)
    a, b, c = MUON_ABC
    X = G.mT if G.size(-2) > G.size(-1) else G
    X = X / X.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)
    for _ in range(steps):
        A = X @ X.mT
        B = torch.baddbmm(A, A, A, beta=b, alpha=c) if A.ndim == 3 else torch.addmm(A, A, A, beta=b, alpha=c)
        X = torch.baddbmm(X, B, X, beta=a) if X.ndim == 3 else torch.addmm(X, B, X, beta=a)
    return X.mT if G.size(-2) > G.size(-1) else X


def time_call(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def time_interleaved(fns: dict[str, Callable[[], object]], repeats: int = 5, warmup: int = 1
                     ) -> dict[str, list[float]]:
    """Wall times of several calls measured in rounds (one of each per round), so that the drift of a shared
    machine's load hits all of them alike and their ratios stay meaningful."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            out[k].append(time.perf_counter() - t0)
    return out


@dataclass
class Row:
    name: str
    form: str
    matmuls: int
    gflop: float
    seconds: float
    err_map: float  # relative Frobenius error against the spec's exact spectral map (NaN for peers)
    err_target: float  # relative spectral-norm error against the exact target (U Vᵀ, unit-RMS U S^p Vᵀ, A^(-1/r))
    est_err: float = float("nan")  # estimated error against the map (polygen.runtime.accuracy; NaN for peers)
    shape: str = ""  # the shape the row ran and was priced at (a symmetric spec's is square)

    def as_dict(self) -> dict:
        return asdict(self)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.norm(a.double() - b) / torch.linalg.norm(b))


def _spec_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a − b‖₂ / ‖b‖₂ (worst over a batch): relative, like err_map, so targets of any scale compare."""
    return float((torch.linalg.matrix_norm(a.double() - b, ord=2) / torch.linalg.matrix_norm(b, ord=2)).max())


def compare(specs: list[str], shape: tuple[int, int], dtype: str = "float32", cond: float = 1e3,
            repeats: int = 3, peers: bool = True, seed: int = 0) -> list[Row]:
    import polygen

    tdt = DTYPES[dtype]
    rows: list[Row] = []
    inputs: dict[bool, torch.Tensor] = {}
    polar_ref = None
    for name in specs:
        smap = polygen.load_spec(name)
        sym = smap.input_kind == "symmetric"
        if sym not in inputs:
            shp = (shape[0], shape[0]) if sym else shape
            inputs[sym] = random_with_spectrum(shp, cond, seed=seed, symmetric=sym).to(tdt)
        G = inputs[sym]
        f = polygen.load(name, backend="torch")
        plan = polygen.schedule(smap, G.shape[-2:], dtype=dtype)
        Y = f(G)
        ref = spectral_reference(smap, G)
        tgt = target_reference(smap, G)
        if smap.target == "polar":
            polar_ref = tgt
        secs = time_call(lambda: f(G), repeats)  # noqa: B023
        key = f.plan_for(G.shape[-2:], tdt)  # what f runs under its accuracy policy (guard: maybe not the cheapest)
        est = f.plan_errors(G.shape[-2:], tdt)[key]
        form, cost = run_cost(plan, key)
        rows.append(Row(name, form, cost.matmuls, cost.dense_flops / 1e9, secs, _rel(Y, ref),
                        _spec_err(Y, tgt), est, "x".join(map(str, G.shape[-2:]))))
    if peers and False in inputs:
        G = inputs[False]
        m, n = sorted(G.shape[-2:])
        Y = torch_muon_ns(G)
        tgt = polar_ref if polar_ref is not None else target_reference(polygen.load_spec("muon_ns5"), G)
        ref = spectral_reference(polygen.load_spec("muon_ns5"), G)
        secs = time_call(lambda: torch_muon_ns(G), repeats)
        flops = 5 * (2 * 2 * m * m * n + 2 * m**3) / 1e9
        rows.append(Row("torch.optim.Muon NS", "direct", 15, flops, secs, _rel(Y, ref), _spec_err(Y, tgt),
                        shape="x".join(map(str, G.shape[-2:]))))
    return rows


def format_rows(rows: list[Row], shape: tuple[int, int], dtype: str) -> str:
    base = next((r.seconds for r in rows if r.name == "torch.optim.Muon NS"), None)
    head = f"{'spec':<22} {'shape':>9} {'form':<7} {'matmuls':>7} {'GFLOP':>8} {'time ms':>9} {'GFLOP/s':>8} "
    head += f"{'est err':>9} {'err vs map':>11} {'err vs target':>13}" + (f" {'vs Muon':>8}" if base else "")
    lines = [f"compare at {shape[0]}x{shape[1]} {dtype}", head, "-" * len(head)]
    for r in rows:
        line = (f"{r.name:<22} {r.shape:>9} {r.form:<7} {r.matmuls:>7} {r.gflop:>8.2f} {r.seconds * 1e3:>9.1f} "
                f"{r.gflop / r.seconds:>8.1f} {r.est_err:>9.1e} {r.err_map:>11.2e} {r.err_target:>13.2e}")
        if base:
            line += f" {base / r.seconds:>7.2f}x"
        lines.append(line)
    return "\n".join(lines)
