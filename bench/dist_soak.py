"""Run the distributed tests N times in a row and count failures (issue 23, item 9: a launch must not fail for
torch's teardown, ~1 in 20 four-rank gloo launches aborted as its processes exited).

    python bench/dist_soak.py 50                 # pytest tests/test_distributed.py, 50 consecutive runs
    python bench/dist_soak.py 50 --worker 4      # 50 launches of tests/dist_worker.py at 4 ranks, all checks

Every run is reported (exit code, wall seconds); the output of failing runs goes to --log. No retries: the
count is of consecutive runs as they came. Exit status 1 if any run failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def command(args: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    if args.worker:
        env.update(OMP_NUM_THREADS="1", POLYGEN_DIST_CHECKS="all", POLYGEN_DIST_DIR="")
        return ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.worker}",
                 str(ROOT / "tests" / "dist_worker.py")], env)
    return [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "tests/test_distributed.py"], env


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", type=int)
    ap.add_argument("--worker", type=int, default=0, help="launch tests/dist_worker.py at this many ranks instead")
    ap.add_argument("--log", default="dist_soak_failures.log", help="where failing runs' output goes")
    args = ap.parse_args()
    cmd, env = command(args)
    print("command:", " ".join(cmd), flush=True)
    failures = 0
    for i in range(1, args.runs + 1):
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=1800)
        wall = time.perf_counter() - t0
        ok = out.returncode == 0
        failures += not ok
        print(f"run {i}/{args.runs}: rc {out.returncode} {'pass' if ok else 'FAIL'} {wall:.1f} s", flush=True)
        if not ok:
            with open(args.log, "a") as f:
                f.write(f"=== run {i} rc {out.returncode}\n--- stdout\n{out.stdout}\n--- stderr\n{out.stderr}\n")
    print(f"{args.runs - failures}/{args.runs} passed, {failures} failed", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
