"""How much code `polygen build` writes and how many torch ops importing it registers (bench/RESULTS.md §7).

Counts the lines of generated/torch and generated/triton, the Triton kernels defined in them (`@triton.jit`)
and in polygen/runtime, and the ops under torch.ops.polygen after importing every generated Triton module
(under TRITON_INTERPRET=1, so no GPU is needed). Run from a checkout: `--root` points at another one (an
older commit in a git worktree) to measure it the same way.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    args = ap.parse_args(argv)
    root = args.root.resolve()
    os.environ.setdefault("TRITON_INTERPRET", "1")
    sys.path.insert(0, str(root))

    import torch

    def lines(paths: list[Path]) -> int:
        return sum(len(p.read_text(encoding="utf-8").splitlines()) for p in paths)

    def kernels(paths: list[Path]) -> int:
        return sum(p.read_text(encoding="utf-8").count("@triton.jit") for p in paths)

    gen = {b: sorted(p for p in (root / "generated" / b).glob("*.py") if p.name != "__init__.py")
           for b in ("torch", "triton")}
    runtime = sorted((root / "polygen" / "runtime").glob("*.py"))
    before = {n for n in dir(torch.ops.polygen) if not n.startswith("_")}
    for path in gen["triton"]:
        spec = importlib.util.spec_from_file_location(f"_size_{path.stem}", path)
        assert spec and spec.loader
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    ops = {n for n in dir(torch.ops.polygen) if not n.startswith("_")} - before
    print(f"| root | {root} |\n| --- | --- |")
    print(f"| generated modules (torch + triton) | {len(gen['torch'])} + {len(gen['triton'])} |")
    print(f"| generated/torch lines | {lines(gen['torch']):,} |")
    print(f"| generated/triton lines | {lines(gen['triton']):,} |")
    print(f"| `@triton.jit` functions in generated/ | {kernels(gen['triton'])} |")
    print(f"| `@triton.jit` functions in polygen/runtime/ | {kernels(runtime)} |")
    print(f"| torch.ops.polygen ops after importing every generated Triton module | {len(ops)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
