"""Hostile and malformed specs: every one is a located SpecError or a safe load, within time and memory limits,
and no spec text ever runs or writes outside the output folder (tests/hostile_specs.py holds the corpus)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import hostile_specs as corpus
import pytest

LIMIT_S = 10.0  # per case: the case's forked process is killed then (a kill limit, not a timing assertion)
ADDRESS_SPACE = 6 * 2**30  # the child's RLIMIT_AS: torch's own mappings need ~3 GiB of address space
REPO = Path(__file__).resolve().parent.parent
WHOLE_FILE = {"file over 256 KiB"}  # a limit on the whole file: no line to name


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def _generated_state() -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in (REPO / "generated").rglob("*.py")}


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory):
    """Run the whole corpus in one child process with an address-space limit; it forks each case and kills it
    at the per-case time limit."""
    root = tmp_path_factory.mktemp("hostile")
    work, cache, home = root / "work", root / "cache", root / "home"
    for d in (work, cache, home):
        d.mkdir()
    sentinel = str(root / corpus.SENTINEL_NAME)
    cases = [{"id": i, "file": f"case{n}.toml", "text": t, "field": f} for n, (i, t, f) in
             enumerate(corpus.MALFORMED)]
    cases += [{"id": i, "file": f"bytes{n}.toml", "bytes": b.hex(), "field": f} for n, (i, b, f) in
              enumerate(corpus.MALFORMED_BYTES)]
    valid = corpus.valid_cases(sentinel)
    cases += [{"id": i, "file": fname, "text": t, "valid": True} for i, fname, t, _ in valid]
    before_files = _files(root)
    before_generated = _generated_state()
    import polygen  # the child imports the same polygen as this process, from the same tree

    path = os.pathsep.join([str(REPO / "tests"), str(Path(polygen.__file__).parent.parent)])
    env = dict(os.environ, POLYGEN_CACHE=str(cache), HOME=str(home), PYTHONPATH=path, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(Path(corpus.__file__)), str(work), str(LIMIT_S), str(ADDRESS_SPACE)],
                          input=json.dumps(cases), capture_output=True, text=True, cwd=work, env=env,
                          timeout=LIMIT_S * 8 + 240)
    results = {r["id"]: r for r in map(json.loads, proc.stdout.splitlines())}
    return {"cases": cases, "results": results, "proc": proc, "root": root, "work": work, "cache": cache,
            "sentinel": Path(sentinel), "before_files": before_files, "before_generated": before_generated,
            "benign": {i: b for i, _, _, b in valid}}


def test_corpus_is_large_and_ran_completely(corpus_run):
    cases, results = corpus_run["cases"], corpus_run["results"]
    assert len(cases) >= 100
    missing = [c["id"] for c in cases if c["id"] not in results]
    assert not missing, (missing, corpus_run["proc"].stderr[-3000:])


@pytest.mark.parametrize("case_id,field", [(i, f) for i, _, f in corpus.MALFORMED]
                         + [(i, f) for i, _, f in corpus.MALFORMED_BYTES])
def test_malformed_spec_is_a_located_spec_error(corpus_run, case_id, field):
    r = corpus_run["results"].get(case_id)
    assert r is not None, corpus_run["proc"].stderr[-2000:]
    assert r["result"] == "SpecError", r
    assert r["field"] == field, r
    assert r["source_label"].endswith(".toml"), r
    if case_id not in WHOLE_FILE:
        assert r["line"] is not None, r


@pytest.mark.parametrize("case_id", [i for i, _, _, _ in corpus.valid_cases("x")])
def test_hostile_text_loads_runs_and_generates_the_benign_code(corpus_run, case_id):
    r = corpus_run["results"][case_id]
    assert r["result"] == "loaded", r
    assert r["finite"]
    benign = corpus_run["benign"][case_id]
    import polygen

    want = polygen.generate(polygen.parse_spec(benign, source="benign.toml"), backend="torch")
    assert _code_shape(r["source"]) == _code_shape(want)


def _code_shape(src: str) -> str:
    """The module's AST with every string literal blanked: spec text may differ only inside literals."""
    tree = ast.parse(src)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            node.value = ""
    return ast.dump(tree)


def test_nothing_ran_and_nothing_was_written_outside_the_cache(corpus_run):
    assert not corpus_run["sentinel"].exists()
    assert not (corpus_run["work"] / corpus.SENTINEL_NAME).exists()
    new = _files(corpus_run["root"]) - corpus_run["before_files"]
    outside = [p for p in new if not (p.is_relative_to(corpus_run["cache"]) or p.is_relative_to(corpus_run["work"]))]
    assert not outside, outside
    # in the working folder only the spec files the corpus itself wrote
    written = {c["file"] for c in corpus_run["cases"]}
    strays = [p for p in new if p.is_relative_to(corpus_run["work"]) and p.name not in written]
    assert not strays, strays
    assert _generated_state() == corpus_run["before_generated"]


def test_no_case_hit_the_limits(corpus_run):
    """Every case ends well inside the child's time and memory limits (those limits turn a hang or an
    exhausted memory into a failure here instead of a stuck CI)."""
    bad = {i: r["result"] for i, r in corpus_run["results"].items() if r["result"] in ("TimeoutError", "MemoryError",
                                                                                      "RecursionError", "Killed")}
    assert not bad


def test_the_injection_payload_would_run(tmp_path):
    """The sentinel check can fail: the payload, executed, does create the file."""
    sentinel = tmp_path / "PWNED"
    exec(corpus.payload(str(sentinel)))  # noqa: S102 - proving the payload is live
    assert sentinel.exists()


@pytest.mark.parametrize("case", corpus.RENAMED, ids=[c[0] for c in corpus.RENAMED])
def test_symbols_named_like_the_compilers_own_compute_the_same_map(case, tmp_path, monkeypatch):
    """Spec symbols spelled like generated code's own names (g beside g_, which both became G_; temporaries t0, c0,
    i0) compute what the shipped spec computes, in float64 to 1e-12: names can merge nothing."""
    import torch

    import polygen

    name, text, shipped = case
    monkeypatch.setenv("POLYGEN_CACHE", str(tmp_path / "cache"))
    path = tmp_path / f"{shipped}_renamed.toml"
    path.write_text(text)
    gen = torch.Generator().manual_seed(0)
    G = torch.randn(3, 24, 40, generator=gen, dtype=torch.float64)
    if polygen.load_spec(shipped).input_kind == "symmetric":
        G = G @ G.mT / 40 + 1e-3 * torch.eye(24, dtype=torch.float64)
    got, want = polygen.load(path, backend="torch")(G), polygen.load(shipped, backend="torch")(G)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
