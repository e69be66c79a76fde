"""Parse time against the length of the longest line: the line locator must grow linearly.

    python bench/parse_sweep.py [--old REV]

A valid spec whose description holds one line of "[" and spaces (no "]": valid TOML inside a multi-line string,
the regex locator's worst case) of 100 … 4,000 characters (the description cap), parsed by
``polygen.parse_spec``; and the same line under an unknown key, up to 20,000 characters (no cap there: the spec
is refused only after the locator ran).
``--old REV`` also times the locator of an older revision (``git show REV:polygen/spec/locate.py``) on the
same texts, the regex one before issue 23. Median of 5 runs each; figures go to bench/RESULTS.md §6.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import types
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import hostile_specs as corpus  # noqa: E402

import polygen  # noqa: E402
from polygen.compare import time_call  # noqa: E402
from polygen.spec.locate import Locator  # noqa: E402

LENGTHS = (100, 250, 500, 1000, 2000, 3000, 4000)
WIDE = (5000, 10_000, 20_000)


def description(n: int) -> str:
    line = "[" + " " * (n - 1)
    return corpus._sub('description = "corpus base"', 'description = """\n' + line + '\n"""')


def unknown_key(n: int) -> str:
    return corpus.BASE + '\nzz = """\n[' + " " * (n - 1) + '\n"""\n'


def array(n: int) -> str:
    """A line the locator walks character by character: an array of n characters under an unknown key."""
    return corpus.BASE + "\nzz = [" + ("1, " * n)[:n - 2].rstrip(", ") + "]\n"


def parse(text: str) -> None:
    try:
        polygen.parse_spec(text, source="sweep.toml")
    except polygen.SpecError:
        pass


def old_locator(rev: str) -> type:
    src = subprocess.run(["git", "show", f"{rev}:polygen/spec/locate.py"], cwd=REPO, check=True, capture_output=True,
                         text=True).stdout
    mod = types.ModuleType("old_locate")
    exec(compile(src, f"{rev}:polygen/spec/locate.py", "exec"), mod.__dict__)  # noqa: S102 - our own history
    return mod.Locator


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", help="also time the locator of this git revision (e.g. a3f5c23~1)")
    ap.add_argument("--old-max", type=int, default=4000, help="longest line to give the old locator")
    args = ap.parse_args()
    old = old_locator(args.old) if args.old else None
    parse(description(100))  # imports, caches
    print(f"{'line chars':>10} {'parse_spec':>12} {'Locator':>12}" + (f" {'old Locator':>12}" if old else ""))
    for n, make in [(n, description) for n in LENGTHS] + [(n, unknown_key) for n in WIDE] + \
            [(n, array) for n in LENGTHS + WIDE]:
        text = make(n)
        t_parse = time_call(lambda text=text: parse(text), warmup=0)
        t_loc = time_call(lambda text=text: Locator(text), warmup=0)
        row = f"{n:>10} {t_parse * 1e3:>10.2f}ms {t_loc * 1e3:>10.3f}ms"
        if old is not None:
            if n <= args.old_max and make is description:
                t_old = time_call(lambda text=text: old(text), repeats=1 if n > 1000 else 3, warmup=0)
                row += f" {t_old * 1e3:>10.1f}ms"
            else:
                row += f" {'(skipped)':>12}"
        print(row + {description: "", unknown_key: "  (in a string under an unknown key)",
                     array: "  (an array under an unknown key)"}[make], flush=True)


if __name__ == "__main__":
    main()
