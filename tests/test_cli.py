"""The polygen command line, end to end (in-process, through polygen.cli.main)."""

from __future__ import annotations

import json

import pytest

import polygen
from polygen.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_list(capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0 and "muon_ns5" in out and "polar_express_8" in out


@pytest.mark.parametrize("stage", ["spectral", "schedule", "torch"])
def test_show_stages(capsys, stage):
    code, out, _ = run(capsys, "show", "muon_ns5", "--stage", stage, "--shape", "1024x4096")
    assert code == 0
    assert {"spectral": "image", "schedule": "form=gram", "torch": "def _plan_direct"}[stage] in out


def test_cost_json_pins_counts(capsys):
    code, out, _ = run(capsys, "cost", "muon_ns5", "--shape", "1024x1024", "--json")
    rows = json.loads(out)
    assert code == 0 and rows[0]["form"] == "direct" and rows[0]["matmuls"] == 15
    code, out, _ = run(capsys, "cost", "muon_ns5", "polar_express", "--shape", "4096x1024")
    assert code == 0 and "gram" in out


def test_cost_shows_each_plans_estimated_error(capsys):
    """Beside each plan's cost, its error estimate (polygen.runtime.accuracy): float32's Gram plan is the cheaper
    and the less accurate one at aspect 4."""
    import torch

    code, out, _ = run(capsys, "cost", "muon_ns5", "--shape", "256x1024", "--json")
    row = json.loads(out)[0]
    f = polygen.load("muon_ns5", backend="torch")
    est = f.plan_errors((256, 1024), torch.float32)
    assert row["form"] == "gram" and row["est_error"] == est["gram_float32"]
    assert row["alternatives"]["direct"]["est_error"] == est["direct"] < row["est_error"]
    code, out, _ = run(capsys, "cost", "muon_ns5", "--shape", "256x1024")
    assert "est err" in out and f"err {est['direct']:.1e}" in out and f"{est['gram_float32']:.1e}" in out


def test_compare_measures_against_svd_and_muon(capsys):
    code, out, _ = run(capsys, "compare", "muon_ns5", "polar_express_8", "--shape", "48x96", "--repeats", "1",
                       "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert code == 0 and set(rows) == {"muon_ns5", "polar_express_8", "torch.optim.Muon NS"}
    assert rows["muon_ns5"]["err_map"] < 1e-3  # generated code reproduces its own map
    assert rows["polar_express_8"]["err_target"] < 1e-3  # and PE8 reaches U Vᵀ
    assert rows["torch.optim.Muon NS"]["err_target"] > 0.2  # NS5's map stops in [0.47, 1.2]
    # the estimate (same seed, same shape under the proxy limit) is the measurement it stands for
    assert rows["muon_ns5"]["est_err"] == pytest.approx(rows["muon_ns5"]["err_map"], rel=0.1)


def test_plot_writes_png(capsys, tmp_path):
    out_png = tmp_path / "maps.png"
    code, _, _ = run(capsys, "plot", "muon_ns5", "polar_express", "ns_cubic", "-o", str(out_png))
    assert code == 0 and out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_spec_is_a_clean_error(capsys, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\ntarget = "polar"\ndomain = ["0", "1"]\n[variables.x]\ninit = "g"\n'
                   '[[steps]]\nrepeat = 1\nupdate = { x = "x**2" }\n[output]\nvar = "x"\n')
    code, _, err = run(capsys, "show", str(bad), "--stage", "schedule")
    assert code == 2 and "bad.toml:8:" in err and "parity" in err


def test_check_ok(capsys):
    code, out, _ = run(capsys, "check")
    assert code == 0 and "up to date" in out


def test_compare_err_vs_target_is_relative_and_shapes_are_as_priced(capsys):
    """err vs target is ‖Y − T‖₂ / ‖T‖₂ (a unit-RMS U S^p Vᵀ has ‖T‖₂ of order √n, so an absolute figure would
    not compare), recomputed here independently; a symmetric spec's row shows the square shape it ran at."""
    import torch

    from polygen.runtime.reference import power, random_with_spectrum

    code, out, _ = run(capsys, "compare", "muonp_1_3", "inv_root_4", "--shape", "48x96", "--repeats", "1",
                       "--no-peers", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert code == 0 and rows["muonp_1_3"]["shape"] == "48x96" and rows["inv_root_4"]["shape"] == "48x48"
    G = random_with_spectrum((48, 96), 1e3, seed=0)
    Y = polygen.load("muonp_1_3", backend="torch")(G).double()
    T = power(G, 1 / 3)
    want = float(torch.linalg.matrix_norm(Y - T, ord=2) / torch.linalg.matrix_norm(T, ord=2))
    assert rows["muonp_1_3"]["err_target"] == pytest.approx(want, rel=1e-6)
    assert rows["muonp_1_3"]["err_target"] < 1.0 < float(torch.linalg.matrix_norm(T, ord=2))


def test_compare_prints_the_plan_the_policy_runs(capsys):
    """Under accuracy="guard" the float32 NS5 function runs the direct plan where the cost model's cheapest is
    the Gram plan: compare's form and matmuls are those of the plan that ran (it printed the Gram plan's)."""
    import torch

    f = polygen.load("muon_ns5", backend="torch")
    assert polygen.schedule("muon_ns5", (256, 1024)).form == "gram"
    assert f.plan_for((256, 1024), torch.float32) == "direct"
    code, out, _ = run(capsys, "compare", "muon_ns5", "--shape", "256x1024", "--repeats", "1", "--no-peers", "--json")
    (row,) = json.loads(out)
    assert code == 0 and (row["form"], row["matmuls"]) == ("direct", 15)


def _user_spec(tmp_path, name="mine"):
    from pathlib import Path

    text = (Path(polygen.__file__).parent / "specs" / "muon_ns5.toml").read_text()
    spec = tmp_path / f"{name}.toml"
    spec.write_text(text.replace('name = "muon_ns5"', f'name = "{name}"').replace("repeat = 5", "repeat = 6"))
    return spec


def test_build_of_a_user_spec_without_out_fills_the_cache_not_the_shipped_tree(capsys, tmp_path, monkeypatch):
    """In an installed wheel the shipped tree is site-packages, where a user's module would be an orphan for
    `polygen check` (issue 23): without --out a user spec is compiled into the cache that polygen.load reads."""
    import shutil

    from polygen import driver
    from polygen.runtime import loader

    shipped = tmp_path / "shipped"
    shutil.copytree(loader.GENERATED_DIR, shipped)
    before = sorted(p.relative_to(shipped) for p in shipped.rglob("*.py"))
    monkeypatch.setattr(loader, "GENERATED_DIR", shipped)
    monkeypatch.setattr(loader, "CACHE_DIR", tmp_path / "cache")
    spec = _user_spec(tmp_path)
    code, out, err = run(capsys, "build", str(spec))
    assert code == 0, err
    assert sorted(p.relative_to(shipped) for p in shipped.rglob("*.py")) == before
    digest = polygen.spec.spec_hash(spec.read_text())
    cached = loader.cache_path(digest, "torch", "mine")
    assert cached.is_file() and f"wrote {cached}" in out and "--out DIR" in out

    def no_compiler(*a, **k):
        raise AssertionError("polygen.load compiled a spec that `polygen build` had cached")

    monkeypatch.setattr(driver, "compile_module", no_compiler)
    assert polygen.load(str(spec), backend="torch").name == "mine"


def test_build_says_which_files_it_left_unchanged(capsys, tmp_path):
    code, out, _ = run(capsys, "build", "muon_ns5", "--out", str(tmp_path))
    assert code == 0 and out.count("wrote ") == 2 and "unchanged" not in out
    code, out, _ = run(capsys, "build", "muon_ns5", "--out", str(tmp_path))
    assert code == 0 and "wrote" not in out and "unchanged: 2 file(s)" in out


def test_build_of_a_user_spec_named_like_a_built_in_goes_anywhere_but_the_shipped_tree(capsys, tmp_path):
    from polygen.runtime import loader

    spec = _user_spec(tmp_path, "muon_ns5")
    code, out, err = run(capsys, "build", str(spec), "--out", str(tmp_path / "mine"))
    assert code == 0 and (tmp_path / "mine" / "torch" / "muon_ns5.py").is_file(), err
    before = (loader.GENERATED_DIR / "torch" / "muon_ns5.py").read_bytes()
    code, out, err = run(capsys, "build", str(spec), "--out", str(loader.GENERATED_DIR))
    assert code == 2 and "built-in spec's" in err
    assert (loader.GENERATED_DIR / "torch" / "muon_ns5.py").read_bytes() == before
