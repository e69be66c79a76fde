"""Benchmark polygen's inverse-root specs against Distributed Shampoo's coupled Newton iteration, in one run.

    .venv/bin/python bench/bench_roots.py [--specs inv_root_4,inv_root_2] [--sizes 512 1024] \\
        [--kappas 1e2 1e3 1e4] [--batch 1] [--repeats 5] [--threads 2] [--epsilon 1e-12] [--json FILE]

What it measures, per size n, condition number κ and batch b: the wall time (median of ``--repeats`` rounds,
after one warm-up call each) and the error of

* each polygen spec of ``--specs`` (any ``target = "inverse_root"`` spec: its root r is read from the loaded
  function, r = 1/``fn.power``), called as polygen's Shampoo calls it: ``fn(A + εI)`` on the fp32 (b, n, n)
  batch (an (n, n) matrix when b = 1), a fixed step count and no host sync;
* the peer: ``matrix_inverse_root_newton`` of facebookresearch/optimizers (Distributed Shampoo), reached
  through its public entry point ``matrix_inverse_root(A, Fraction(r), CoupledNewtonConfig(), epsilon=ε)``
  with the config's defaults (early exit at ‖M − I‖_max ≤ 1e-6, at most 100 iterations; one host sync per
  iteration for that test). It takes one matrix, so for b > 1 it is called once per matrix of the batch and
  its time is the whole loop's. Its iteration count is what the function itself returns (the 4th element of
  its result; see "peer code" below), reported as the min–max over the batch.

The inputs are A = Q diag(λ) Qᵀ with a seeded random orthogonal Q (float64), λ log-spaced over [1/κ, 1],
rounded to float32: both methods get the same fp32 A. Damping is the same for both: ε·I with ε = ``--epsilon``
(default 1e-12, the default epsilon of both polygen's Shampoo and Distributed Shampoo; polygen's is added by
the caller, ``A + ε·I``, exactly as polygen.optim.shampoo does, the peer's by the function itself,
``A.add(I, alpha=ε)``; in fp32 both are no-ops at this ε). The ground truth is the float64 ``eigh`` of that
damped matrix, (A₃₂ + εI)^(−1/r) = V diag(w^(−1/r)) Vᵀ; the errors are the relative spectral norm
‖X − T‖₂/‖T‖₂ and the relative Frobenius norm ‖X − T‖_F/‖T‖_F, computed in float64 (the worst over the batch).
The methods run interleaved in each round (the order rotating) so a shared machine's load drift hits all of
them alike: the ratios ``peer/polygen`` (the peer of the same r over the spec) are meaningful, absolute
seconds less so. ``matmuls`` is polygen's plan's count from its generated module, and for the peer its
iterations × (2 + the products of ``torch.linalg.matrix_power(·, r)``).

Peer code: it is not on PyPI and is not copied into this repository. It is read at run time from a git mirror
of facebookresearch/optimizers (``--peer-git-dir``, default the first /work/.mirror/facebookresearch+optimizers*
that holds one) with ``git show <rev>:<path>``: ``matrix_functions.py`` (found in the tree at ``--peer-rev``,
default HEAD, unless ``--peer-path`` names it) and every ``distributed_shampoo.*`` module it imports,
transitively (today ``preconditioner/matrix_functions_types.py`` and ``utils/abstract_dataclass.py``), are
written to a temporary directory in their package layout and imported from there. Stubbed: only the
packages' ``__init__.py`` files, written empty — the real top-level ``distributed_shampoo/__init__.py`` imports
the whole optimizer (DistributedShampoo, FSDP/DDP distributors, torch.distributed), none of which the Newton
function uses; the sub-packages' real ``__init__.py`` files hold only a license docstring. One module global of
the peer is wrapped, not replaced: ``_assign_function_args_from_config``, which ``matrix_inverse_root`` uses to
bind the config to its nested ``matrix_inverse_root_newton``; the wrapper calls the original and records the
iteration count and convergence flag from the Newton function's own return value (nothing is recomputed).
"""

from __future__ import annotations

import argparse
import ast
import glob
import itertools
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import polygen  # noqa: E402
from polygen.runtime.reference import random_with_spectrum  # noqa: E402

PEER_PACKAGE = "distributed_shampoo"
PEER_FILE = "matrix_functions.py"
MIRROR_GLOB = "/work/.mirror/facebookresearch+optimizers*"


# --- the peer, from its git mirror ------------------------------------------------------------------------
def default_peer_git_dir() -> str | None:
    for cand in sorted(glob.glob(MIRROR_GLOB)):
        for d in (Path(cand) / "repo", Path(cand)):
            if (d / "HEAD").is_file() and (d / "objects").is_dir():
                return str(d)
    return None


def _git(git_dir: str, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", git_dir, *args], check=True, capture_output=True, text=True).stdout


def _peer_imports(source: str) -> set[str]:
    """The ``distributed_shampoo.*`` modules a module's source imports (at any depth of its body)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        out.update(n for n in names if n == PEER_PACKAGE or n.startswith(PEER_PACKAGE + "."))
    return out


class Peer:
    """Distributed Shampoo's ``matrix_inverse_root`` with its coupled Newton config, loaded from a git mirror."""

    def __init__(self, git_dir: str, rev: str = "HEAD", path: str | None = None):
        self.git_dir = git_dir
        self.commit = _git(git_dir, "rev-parse", rev).strip()
        tree = _git(git_dir, "ls-tree", "-r", "--name-only", self.commit).splitlines()
        if path is None:
            found = [p for p in tree if p.endswith("/" + PEER_FILE) and p.startswith(PEER_PACKAGE + "/")
                     and "/tests/" not in p]
            if len(found) != 1:
                raise SystemExit(f"{git_dir}@{self.commit[:12]}: expected one {PEER_FILE} under {PEER_PACKAGE}/, "
                                 f"found {found}; pass --peer-path")
            path = found[0]
        self.path = path
        self.tmp = tempfile.TemporaryDirectory(prefix="peer_shampoo_")
        root = Path(self.tmp.name)
        self.files: list[str] = []
        self.stubs: list[str] = []
        todo, seen = [path[:-3].replace("/", ".")], set()
        while todo:  # the module and, transitively, every distributed_shampoo module it imports
            mod = todo.pop()
            if mod in seen:
                continue
            seen.add(mod)
            rel = mod.replace(".", "/")
            if rel + ".py" in tree:
                rel += ".py"
            elif rel + "/__init__.py" in tree:
                continue  # a package: its __init__ is stubbed below
            else:
                raise SystemExit(f"peer module {mod} not found in {git_dir}@{self.commit[:12]}")
            text = _git(git_dir, "show", f"{self.commit}:{rel}")
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text, encoding="utf-8")
            self.files.append(rel)
            todo.extend(_peer_imports(text))
        for d in sorted({p.parent for p in root.rglob("*.py")}):  # stub every package's __init__ (empty)
            while d != root:
                init = d / "__init__.py"
                if not init.exists():
                    init.write_text("", encoding="utf-8")
                    self.stubs.append(str(init.relative_to(root)))
                d = d.parent
        for name in [m for m in sys.modules if m == PEER_PACKAGE or m.startswith(PEER_PACKAGE + ".")]:
            del sys.modules[name]
        sys.path.insert(0, str(root))
        try:
            import importlib

            mf: Any = importlib.import_module(path[:-3].replace("/", "."))
            types_mod = importlib.import_module(f"{PEER_PACKAGE}.preconditioner.matrix_functions_types")
        finally:
            sys.path.remove(str(root))
        self.mf: ModuleType = mf
        self.config = types_mod.CoupledNewtonConfig()
        self.last: dict[str, Any] = {}
        original = mf._assign_function_args_from_config

        def assign(func: Callable[..., Any], config: object) -> Callable[..., Any]:
            bound = original(func=func, config=config)
            if getattr(func, "__name__", "") != "matrix_inverse_root_newton":
                return bound

            def newton(*args: Any, **kwargs: Any) -> Any:
                out = bound(*args, **kwargs)  # (X, M, termination_flag, iteration, error)
                self.last = {"iterations": int(out[3]), "flag": out[2].name}
                return out
            return newton

        mf._assign_function_args_from_config = assign

    def describe(self) -> str:
        deps = ", ".join(f for f in self.files if f != self.path)
        return (f"{self.git_dir} @ {self.commit[:12]}: {self.path} (+ {deps}; stubbed empty: {', '.join(self.stubs)})"
                f"; CoupledNewtonConfig() = {self.config}")

    def root(self, A: torch.Tensor, r: int, epsilon: float) -> tuple[torch.Tensor, list[int], list[str]]:
        """(A + εI)^(−1/r) of one (n, n) matrix or, one call per matrix, of a (b, n, n) batch."""
        mats = [A] if A.dim() == 2 else list(A.unbind(0))
        outs, iters, flags = [], [], []
        for M in mats:
            self.last = {}
            outs.append(self.mf.matrix_inverse_root(M, root=Fraction(r), root_inv_config=self.config,
                                                    epsilon=epsilon))
            iters.append(self.last.get("iterations", -1))
            flags.append(self.last.get("flag", "?"))
        return (outs[0] if A.dim() == 2 else torch.stack(outs)), iters, flags


def matrix_power_products(r: int) -> int:
    """Products torch.linalg.matrix_power(·, r) performs (binary powering)."""
    return max(0, r.bit_length() - 1 + bin(r).count("1") - 1)


# --- polygen -----------------------------------------------------------------------------------------------
def spec_root(fn: Any) -> int:
    if fn.target != "inverse_root":
        raise SystemExit(f"spec {fn.name!r} has target {fn.target!r}, not 'inverse_root'")
    r = 1.0 / fn.power
    if abs(r - round(r)) > 1e-9:
        raise SystemExit(f"spec {fn.name!r} computes A^(-{fn.power:g}): the peer needs an integer root")
    return round(r)


def polygen_matmuls(fn: Any, shape: tuple[int, ...], dtype: torch.dtype, backend: str) -> tuple[str, int]:
    try:
        plan = fn.plan_for(shape, dtype, backend)
        return plan, int(fn._module(backend).MATMULS[plan])
    except (AttributeError, KeyError):
        return "?", -1


# --- inputs, truth, errors ------------------------------------------------------------------------------------
def make_input(n: int, kappa: float, batch: int, seed: int) -> torch.Tensor:
    """fp32 (batch, n, n) A = Q diag(λ) Qᵀ, λ log-spaced over [1/κ, 1], Q random orthogonal (float64, seeded)."""
    A = random_with_spectrum((batch, n, n), cond=kappa, seed=seed, dtype=torch.float64, symmetric=True)
    return ((A + A.mT) / 2).float()


def truth(A32: torch.Tensor, r: int, epsilon: float) -> torch.Tensor:
    """(A + εI)^(−1/r) in float64 through eigh of the fp32 input itself."""
    eye = torch.eye(A32.size(-1), dtype=torch.float64)
    w, V = torch.linalg.eigh(A32.double() + epsilon * eye)
    return (V * w.pow(-1.0 / r).unsqueeze(-2)) @ V.mT


def errors(X: torch.Tensor, T: torch.Tensor) -> tuple[float, float]:
    """Worst over the batch of ‖X − T‖₂/‖T‖₂ and ‖X − T‖_F/‖T‖_F, in float64."""
    X = X.reshape(T.shape).double().cpu()
    if not torch.isfinite(X).all():
        return math.inf, math.inf
    D = X - T
    spec = torch.linalg.matrix_norm(D, ord=2) / torch.linalg.matrix_norm(T, ord=2)
    fro = torch.linalg.matrix_norm(D) / torch.linalg.matrix_norm(T)
    return float(spec.max()), float(fro.max())


# --- the run ---------------------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_case(n: int, kappa: float, args: argparse.Namespace, fns: dict[str, Any], roots: dict[str, int],
             peer: Peer, device: torch.device) -> list[dict[str, Any]]:
    eps, b = args.epsilon, args.batch
    A = make_input(n, kappa, b, seed=args.seed + n + int(round(math.log10(kappa) * 1000)))
    truths = {r: truth(A, r, eps) for r in sorted(set(roots.values()))}
    Ad = A.to(device)
    x = Ad[0] if b == 1 else Ad  # polygen: the (n, n) matrix for b = 1, else the (b, n, n) batch
    eye = torch.eye(n, dtype=x.dtype, device=device)
    peer_iters: dict[int, list[int]] = {}
    peer_flags: dict[int, list[str]] = {}

    calls: dict[str, Callable[[], torch.Tensor]] = {}
    for name, fn in fns.items():
        def call_polygen(fn: Any = fn) -> torch.Tensor:
            return fn(x + eps * eye)  # as polygen.optim.shampoo damps: fn(A + εI)
        calls[name] = call_polygen
    for r in dict.fromkeys(roots.values()):  # one peer per root, in the order of the specs
        def call_peer(r: int = r) -> torch.Tensor:
            X, its, flags = peer.root(x, r, eps)
            peer_iters[r], peer_flags[r] = its, flags
            return X
        calls[f"peer_newton_r{r}"] = call_peer

    errs: dict[str, tuple[float, float]] = {}
    for key, call in calls.items():  # warm-up; its output gives the errors
        X = call()
        _sync(device)
        r = roots[key] if key in roots else int(key.rsplit("r", 1)[1])
        errs[key] = errors(X, truths[r])
    times: dict[str, list[float]] = {k: [] for k in calls}
    keys = list(calls)
    for i in range(args.repeats):  # interleaved rounds, the order rotating
        for key in keys[i % len(keys):] + keys[:i % len(keys)]:
            _sync(device)
            t0 = time.perf_counter()
            calls[key]()
            _sync(device)
            times[key].append(time.perf_counter() - t0)

    med = {k: statistics.median(v) for k, v in times.items()}
    rows = []
    for key in keys:
        is_peer = key not in fns
        r = int(key.rsplit("r", 1)[1]) if is_peer else roots[key]
        if is_peer:
            its = peer_iters[r]
            plan, mm = "early-exit", sum(its) // len(its) * (2 + matrix_power_products(r))
            it_s = str(its[0]) if min(its) == max(its) else f"{min(its)}-{max(its)}"
            flags = sorted(set(peer_flags[r]))
        else:
            plan, mm = polygen_matmuls(fns[key], tuple(x.shape), x.dtype, fns[key].backend_for(x))
            it_s, flags = "fixed", []
        rows.append({
            "n": n, "kappa": kappa, "batch": b, "method": key, "r": r, "plan": plan, "iterations": it_s,
            "peer_flags": flags, "matmuls": mm, "median_s": med[key], "times_s": times[key],
            "err_spec": errs[key][0], "err_fro": errs[key][1],
            "peer_over_polygen": None if is_peer else med[f"peer_newton_r{r}"] / med[key],
        })
    return rows


FMT = "{:>5} {:>6} {:>3} {:<18} {:>2} {:<11} {:>6} {:>8} {:>9} {:>9} {:>9} {:>12}"
HEAD = ("n", "kappa", "b", "method", "r", "plan", "iters", "matmuls", "median_s", "err_spec", "err_fro",
        "peer/polygen")


def print_rows(rows: list[dict[str, Any]]) -> None:
    fmt = FMT
    for row in rows:
        ratio = row["peer_over_polygen"]
        print(fmt.format(row["n"], f"{row['kappa']:.0e}", row["batch"], row["method"], row["r"], row["plan"],
                         row["iterations"], row["matmuls"], f"{row['median_s']:.4f}", f"{row['err_spec']:.2e}",
                         f"{row['err_fro']:.2e}", "" if ratio is None else f"{ratio:.2f}x"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--specs", default="inv_root_4,inv_root_2",
                    help="comma-separated polygen specs (names or paths) with target 'inverse_root'")
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    ap.add_argument("--kappas", type=float, nargs="+", default=[1e2, 1e3, 1e4])
    ap.add_argument("--batch", type=int, default=1, help="matrices per call (the peer loops over them)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epsilon", type=float, default=1e-12, help="εI damping, the same for both (default 1e-12)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backend", default="auto", help="polygen backend: auto, torch or triton")
    ap.add_argument("--peer-git-dir", default=default_peer_git_dir(),
                    help=f"bare git mirror of facebookresearch/optimizers (default: {MIRROR_GLOB})")
    ap.add_argument("--peer-rev", default="HEAD")
    ap.add_argument("--peer-path", default=None, help=f"path of {PEER_FILE} in the peer tree (default: found)")
    ap.add_argument("--json", type=Path, default=None, help="write the rows (and the run's settings) here")
    args = ap.parse_args(argv)
    if args.peer_git_dir is None:
        ap.error(f"no mirror matches {MIRROR_GLOB}; pass --peer-git-dir")

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    peer = Peer(args.peer_git_dir, args.peer_rev, args.peer_path)
    names = [s.strip() for s in args.specs.split(",") if s.strip()]
    fns = {name: polygen.load(name, backend=args.backend) for name in names}
    roots = {name: spec_root(fn) for name, fn in fns.items()}
    print(f"peer: {peer.describe()}")
    print(f"polygen specs: {', '.join(f'{k} (r={v})' for k, v in roots.items())}; damping ε = {args.epsilon:g} "
          f"(both); threads = {torch.get_num_threads()}; device = {device}; batch = {args.batch}"
          + (" (peer: one call per matrix)" if args.batch > 1 else ""))
    print(FMT.format(*HEAD))
    rows: list[dict[str, Any]] = []
    for n, kappa in itertools.product(args.sizes, args.kappas):
        case = run_case(n, kappa, args, fns, roots, peer, device)
        rows.extend(case)
        print_rows(case)
        sys.stdout.flush()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {"peer_git_dir": peer.git_dir, "peer_commit": peer.commit, "peer_path": peer.path,
                "peer_files": peer.files, "peer_stubs": peer.stubs, "peer_config": str(peer.config),
                "epsilon": args.epsilon, "threads": torch.get_num_threads(), "device": str(device),
                "repeats": args.repeats, "torch": torch.__version__, "polygen": polygen.__version__}
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
