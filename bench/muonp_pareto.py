"""Muon^p: what a matmul budget buys (issue item 2): per-step fitted designs against the published recurrences.

For each p in 1/3, 1/5, 3/5, 1/2 and each number of steps T, fit the per-step odd form of
``polygen fit power --per-step`` (default terms per p: every monomial the published step's matmuls pay for)
and report its matmul count (polygen's schedule, 256×1024) and its worst *scale-free* relative error
min_α max |y_T/(α x^p) − 1| (the specs rescale the output to unit RMS) on a dense float64 grid:

* column "[1e-2,1]": the design fitted on [1e-2, 1], measured there;
* column "same fit on [1e-3,1]": that same design measured on the whole domain [1e-3, 1] (not refitted);
* column "fit on [1e-3,1]" (only with ``--wide``): a design fitted separately on [1e-3, 1], measured there.

Beside them, the published recurrence at its own matmul count (for p = 1/2: polygen's muonp_1_2). Every
design is stable on [1e-3, 1] (y_t ≥ 0.02·x after every step in its gauge, y_T increasing). Fits are cached
in out/muonp_pareto.json (delete it to refit). Default run (1 start per fit, T = 2…7; a few minutes on two
cores from a cold cache):

    .venv/bin/python bench/muonp_pareto.py

Fuller: ``--steps 2-8 --starts 2 --wide --alt`` (``--alt`` adds a second form per p where one is cheap).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

import polygen
from polygen.fit.power import (
    DEFAULT_TERMS,
    PerStepDesign,
    dense_grid,
    fit_power_per_step,
    scale_free_error,
    term_form,
)

CACHE = Path("out/muonp_pareto.json")
#: the recurrence each p is compared with, and its update (p = 1/2: polygen's per-step damped-Newton table)
PUBLISHED = {Fraction(1, 3): ("muonp_1_3", "y - 0.66*(y**3 - x)"), Fraction(1, 5): ("muonp_1_5", "y - 0.2*(y**5 - x)"),
             Fraction(3, 5): ("muonp_3_5", "y - 0.2*(y**5 - x**3)"),
             Fraction(1, 2): ("muonp_1_2", "y - (y**4 - x**2)*(c*x + d*y)")}
#: a second form per p, where one is cheap: x²y costs one hoisted matmul (XXᵀ) and no more per step
ALT_TERMS = {Fraction(1, 3): "y,y**3,x,x**2*y", Fraction(1, 5): "y,y**3,y**5,x,x**2*y",
             Fraction(1, 2): "y,y**3,y**5,x,x**3,x**2*y,x**2*y**3,x*y**2"}


def matmuls(spec: str) -> tuple[int, int, int]:
    """(per repeated step, outside the loop, total) of polygen's plan for a spec name or path."""
    from polygen.ir.schedule import Loop

    plan = polygen.schedule(spec, (256, 1024))
    loops = [b for b in plan.schedule.blocks if isinstance(b, Loop)]
    inner = sum(op.is_matmul for op in loops[0].body) if loops else 0
    outer = plan.matmuls - sum(sum(op.is_matmul for op in lp.body) * lp.trips for lp in loops)
    return inner, outer, plan.matmuls


def form_cost(design: PerStepDesign) -> tuple[int, int, int]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pareto_probe.toml"
        path.write_text(design.to_toml("pareto_probe"))
        return matmuls(str(path))


def published_errors(name: str) -> tuple[float, float]:
    from polygen.ir.evaluate import output_map

    spec = polygen.load_spec(name)
    out = []
    for lo in (1e-2, 1e-3):
        x = dense_grid(lo, 1.0, 20001)
        out.append(scale_free_error(np.asarray(output_map(spec, x), dtype=float), x, spec.power))
    return out[0], out[1]


def fitted(p: Fraction, terms: str, steps: int, fit_lower: float, starts: int, quick: bool,
           cache: dict[str, dict[str, object]]) -> dict[str, object]:
    key = f"{p}|{terms}|{steps}|{fit_lower:g}|{starts}|{'quick' if quick else 'full'}"
    if key not in cache:
        t0 = time.time()
        opts = {"grid": 200, "iters": 100} if quick else {}
        d = fit_power_per_step(p, steps, 1e-3, fit_lower, terms=terms, starts=starts, **opts)
        cache[key] = {"coefficients": [list(r) for r in d.coefficients], "fit": d.errors(fit_lower)[0],
                      "wide": d.errors(1e-3)[0], "cost": list(form_cost(d)), "seconds": time.time() - t0}
        CACHE.parent.mkdir(exist_ok=True)
        CACHE.write_text(json.dumps(cache, indent=1))
    return cache[key]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--p", default="1/3,1/5,3/5,1/2")
    ap.add_argument("--steps", default="2-7", help="range a-b of step counts (default 2-7)")
    ap.add_argument("--starts", type=int, default=1)
    ap.add_argument("--wide", action="store_true", help="also fit separately on [1e-3, 1]")
    ap.add_argument("--alt", action="store_true", help="also the second form per p (ALT_TERMS)")
    ap.add_argument("--full", action="store_true", help="the shipped specs' settings (grid 400, 200 L-BFGS "
                    "iterations per sharpness) instead of the quick ones (grid 200, 100)")
    args = ap.parse_args()
    lo, hi = (int(v) for v in args.steps.split("-"))
    cache: dict[str, dict[str, object]] = json.loads(CACHE.read_text()) if CACHE.exists() else {}
    print("| p | design | form | steps | matmuls | scale-free err [1e-2,1] | same fit on [1e-3,1] |"
          + (" fit on [1e-3,1] |" if args.wide else ""))
    print("|---|---|---|---:|---:|---:|---:|" + ("---:|" if args.wide else ""))
    for ptext in args.p.split(","):
        p = Fraction(ptext)
        pub, update = PUBLISHED[p]
        e2, e3 = published_errors(pub)
        print(f"| {p} | {pub} (published) | {update} | "
              f"{sum(s.repeat for s in polygen.load_spec(pub).steps)} | {matmuls(pub)[2]} | {e2:.3g} | {e3:.3g} |"
              + (f" {e3:.3g} |" if args.wide else ""))
        forms = [DEFAULT_TERMS[p]] + ([ALT_TERMS[p]] if args.alt and p in ALT_TERMS else [])
        for terms in forms:
            for steps in range(lo, hi + 1):
                r = fitted(p, terms, steps, 1e-2, args.starts, not args.full, cache)
                cost = r["cost"]
                assert isinstance(cost, list)
                row = (f"| {p} | per-step fit | {term_form(p, terms).update} | {steps} | {cost[2]} | "
                       f"{r['fit']:.3g} | {r['wide']:.3g} |")
                if args.wide:
                    w = fitted(p, terms, steps, 1e-3, args.starts, not args.full, cache)
                    row += f" {w['fit']:.3g} |"
                print(row, flush=True)


if __name__ == "__main__":
    main()
