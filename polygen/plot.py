"""Pictures: the scalar maps of specs on their domains, and compare results (matplotlib, PNG)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from polygen.ir.evaluate import output_map  # noqa: E402
from polygen.passes.verify_convergence import domain_grid  # noqa: E402


def plot_maps(specs: list[str], output: Path | str) -> None:
    import polygen

    smaps = [polygen.load_spec(s) for s in specs]
    fig, ax = plt.subplots(figsize=(8, 5))
    targets_drawn: set[tuple] = set()
    for sm in smaps:
        x = domain_grid(sm.domain[0], sm.domain[1], n=1500)
        ax.plot(x, output_map(sm, x), label=f"{sm.name} ({sm.total_steps} steps)")
        key = (sm.target, sm.power)
        if key not in targets_drawn:
            targets_drawn.add(key)
            lbl = {"polar": "target 1", "power": f"target x^{sm.power:g}", "sqrt": "target √x",
                   "inverse_root": f"target x^-{sm.power:g}"}[sm.target]
            ax.plot(x, sm.target_value(x), "k--", lw=1, label=lbl)
    lo = min(sm.domain[0] for sm in smaps)
    if lo > 0:
        ax.set_xscale("log")
    ax.set_xlabel("normalized singular value σ")
    ax.set_ylabel("f(σ) after all steps")
    ax.set_title("polygen: composed scalar maps")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110)
    plt.close(fig)


def plot_compare(rows: list, output: Path | str, title: str = "") -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        ax.scatter(r.seconds * 1e3, max(r.err_target, 1e-16), s=40)
        ax.annotate(r.name, (r.seconds * 1e3, max(r.err_target, 1e-16)), fontsize=8, xytext=(4, 4),
                    textcoords="offset points")
    ax.set_yscale("log")
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("‖Y − target‖₂")
    ax.set_title(f"polygen compare {title}")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110)
    plt.close(fig)


