"""Worst-case time and memory of the hostile/malformed spec corpus (tests/hostile_specs.py), one child process.

    python bench/spec_corpus.py

Prints the slowest cases and the largest growth of the child's peak RSS over a case; figures go to
bench/RESULTS.md ("Hostile specs").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import hostile_specs as corpus  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory() as root:
        work = Path(root) / "work"
        work.mkdir()
        cases = [{"id": i, "file": f"c{n}.toml", "text": t} for n, (i, t, _) in enumerate(corpus.MALFORMED)]
        cases += [{"id": i, "file": f"b{n}.toml", "bytes": b.hex()} for n, (i, b, _) in
                  enumerate(corpus.MALFORMED_BYTES)]
        cases += [{"id": i, "file": f, "text": t} for i, f, t, _ in corpus.valid_cases(str(Path(root) / "S"))]
        cases += [{"id": i, "file": f"w{n}.toml", "text": t} for n, (i, t) in enumerate(corpus.WORST[1:])]
        env = dict(os.environ, POLYGEN_CACHE=str(Path(root) / "cache"), HOME=root, OMP_NUM_THREADS="1")
        proc = subprocess.run([sys.executable, corpus.__file__, str(work), "20", str(6 * 2**30)],
                              input=json.dumps(cases), capture_output=True, text=True, cwd=work, env=env, check=True)
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    results: dict[str, int] = {}
    for r in rows:
        results[r["result"]] = results.get(r["result"], 0) + 1
    print(f"{len(rows)} cases: " + ", ".join(f"{k} {v}" for k, v in sorted(results.items())))
    peak = max(r["maxrss_kib"] for r in rows) / 1024
    print(f"total {sum(r['seconds'] for r in rows):.2f} s; largest peak RSS of a case (each forked from the "
          f"warmed-up parent) {peak:.0f} MiB")
    for kind in sorted(results):
        worst = max((r for r in rows if r["result"] == kind), key=lambda r: r["seconds"])
        print(f"slowest {kind}: {worst['seconds']:.3f} s ({worst['id']})")
    print("slowest:")
    for r in sorted(rows, key=lambda r: -r["seconds"])[:7]:
        print(f"  {r['seconds']:7.3f} s  {r['result']:<10} {r['id']}")
    print("largest peak RSS of one case's process (the parent's pages it shares count once it touches them):")
    for r in sorted(rows, key=lambda r: -r["maxrss_kib"])[:3]:
        print(f"  {r['maxrss_kib'] / 1024:7.1f} MiB  {r['result']:<10} {r['id']}")


def compile_times() -> None:
    """Parse, schedule (256×1024 bf16) and generate (verification included) of the valid specs at the caps."""
    import time

    import polygen

    print("at the caps, in this process:")
    from polygen.driver import clear_caches

    for name, text in corpus.WORST:
        clear_caches()
        t0 = time.perf_counter()
        try:
            smap = polygen.parse_spec(text, source="worst.toml")
            t1 = time.perf_counter()
            plan = polygen.schedule(smap, (256, 1024), "bfloat16")
            t2 = time.perf_counter()
            polygen.generate(smap, backend="torch")
            t3 = time.perf_counter()
        except polygen.PolygenError as e:
            print(f"  refused in {time.perf_counter() - t0:.2f} s: {type(e).__name__}: {str(e)[:150]}  ({name})")
            continue
        print(f"  parse {t1 - t0:.2f} s  schedule {t2 - t1:.2f} s  generate {t3 - t2:.2f} s  "
              f"({plan.matmuls} matmuls)  {name}")

if __name__ == "__main__":
    main()
    compile_times()
