"""polygen.fit.power: Muon^p damped-Newton designs (arXiv 2606.13867) and polygen/specs/muonp_1_2.toml."""

from __future__ import annotations

import tomllib
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import polygen
from polygen.fit import PowerDesign, fit_power
from polygen.fit.power import PUBLISHED_HALF, constant_design, dense_grid, power_form
from polygen.passes.verify_convergence import verify_map

SPEC = Path(polygen.__file__).parent / "specs" / "muonp_1_2.toml"
X = dense_grid(1e-3, 1.0, 20001)  # log + linear grid of [1e-3, 1]
REFIT_SLACK = 0.05  # a refit's worst error may exceed the shipped table's by this fraction (docs/regenerating.md)


def _half_trajectory(rows: list[tuple[float, float]], x: np.ndarray) -> list[np.ndarray]:
    """Independent float64 evaluation of y ← y − (y⁴ − x²)(c x + d y), Y₀ = X; every intermediate y."""
    ys, y = [], x.copy()
    with np.errstate(all="ignore"):
        for c, d in rows:
            y = y - (y**4 - x**2) * (c * x + d * y)
            ys.append(y)
    return ys


def _shipped_rows() -> list[tuple[float, float]]:
    table = tomllib.loads(SPEC.read_text())["steps"][0]["table"]
    return [(float(c), float(d)) for c, d in zip(table["c"], table["d"])]


def _rel(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.abs(y - np.sqrt(x)) / np.sqrt(x)


@pytest.mark.parametrize("p,linear,update", [
    ("1/2", True, "y - (y**4 - x**2)*(c*x + d*y)"),
    ("1/3", False, "y - c*(y**3 - x)"),
    ("3/5", False, "y - c*(y**5 - x**3)"),
    ("2/3", True, "y - (y**6 - x**4)*(c*x + d*y)"),
    ("1/4", True, "y - (y**8 - x**2)*(c*x + d*y)"),
])
def test_update_family_is_odd(p: str, linear: bool, update: str) -> None:
    form = power_form(Fraction(p))
    assert form.linear is linear and form.update == update
    # odd in (x, y): f(-x, -y) = -f(x, y), and y = x^p is a fixed point
    rng = np.random.default_rng(1)
    x, y = rng.uniform(0.1, 1, 50), rng.uniform(0.1, 1, 50)
    coeffs = (0.7, -0.3)[: len(form.names)]
    np.testing.assert_allclose(form.step(-y, -x, coeffs), -form.step(y, x, coeffs), rtol=1e-12)
    xp = x ** float(form.p)
    np.testing.assert_allclose(form.step(xp, x, coeffs), xp, rtol=1e-12)


def test_power_form_rejects_bad_p() -> None:
    for bad in ("0", "1", "3/2"):
        with pytest.raises(ValueError):
            power_form(bad)


def test_published_half_default_diverges_above_one_half() -> None:
    # DESIGN §4: (c, d) = (3.0, -0.795918) diverges for normalized x in (0.5, 1)
    x = np.linspace(0.5, 0.999, 2001)
    y = _half_trajectory([PUBLISHED_HALF] * 6, x)[-1]
    broken = ~np.isfinite(y) | (y <= 0) | (np.abs(y) > 1e6)
    assert broken.any() and x[broken].min() < 0.75
    assert not constant_design("1/2", PUBLISHED_HALF).is_stable()


def test_shipped_half_is_stable_on_the_whole_domain() -> None:
    for y in _half_trajectory(_shipped_rows(), X):
        assert np.all(np.isfinite(y)) and np.all(y > 0) and np.all(y <= 1.5)


def test_shipped_half_at_least_as_accurate_where_published_converges() -> None:
    pub = _half_trajectory([PUBLISHED_HALF] * 6, X)
    ours = _half_trajectory(_shipped_rows(), X)[-1]
    bounded = np.all([np.isfinite(y) & (y > 0) & (y <= 1.5) for y in pub], axis=0)
    rel_pub = np.where(bounded, _rel(pub[-1], X), np.inf)
    rel_ours = _rel(ours, X)
    # where the published iteration converges (relative error <= 5 %: x in about [0.32, 0.58]) ...
    conv = rel_pub <= 0.05
    assert X[conv].min() < 0.35 and X[conv & (X < 0.9)].max() > 0.55
    assert rel_ours[conv].max() <= rel_pub[conv].max()
    # ... and on everything the published one keeps bounded (x up to about 0.6): mean and worst case
    assert rel_ours[bounded].mean() <= rel_pub[bounded].mean()
    assert rel_ours[bounded].max() <= rel_pub[bounded].max()
    # our design: <= 1.4 % on [0.28, 1]
    assert rel_ours[X >= 0.28].max() < 0.014


def test_shipped_spec_passes_the_verifier() -> None:
    doc = tomllib.loads(SPEC.read_text())
    assert doc["target"] == "power" and doc["p"] == "1/2" and doc["domain"] == ["0.001", "1"]
    assert doc["variables"] == {"x": {"kind": "rectangular", "init": "g"}, "y": {"kind": "rectangular", "init": "g"}}
    assert doc["steps"][0]["update"] == {"y": "y - (y**4 - x**2)*(c*x + d*y)"}
    assert doc["output"] == {"var": "y", "rescale": "rms"}
    spec = polygen.load_spec("muonp_1_2")
    assert spec.power == pytest.approx(0.5)
    rep = verify_map(spec)
    assert rep.ok and not rep.sign_flip and not rep.blowup, str(rep)


def test_fit_power_fast_third() -> None:
    d = fit_power("1/3", steps=4, lower=1e-3, fit_lower=0.2, starts=1, maxfev=400)
    assert isinstance(d, PowerDesign) and d.p == Fraction(1, 3) and d.steps == 4
    assert d.update == "y - c*(y**3 - x)" and len(d.coefficients) == 4 and len(d.coefficients[0]) == 1
    assert d.is_stable()
    # better on its fit interval than the published constant c = 0.66 for the same number of steps
    pub = constant_design("1/3", (0.66,), steps=4)
    x = dense_grid(0.2)
    assert d.fit_error == pytest.approx(float(np.max(d.relative_error(x))))
    assert d.fit_error < float(np.max(pub.relative_error(x)))
    assert d.max_rel_error >= d.fit_error
    text = d.to_toml("muonp_fit_1_3")
    doc = tomllib.loads(text)
    assert doc["p"] == "1/3" and sorted(doc["steps"][0]["table"]) == ["c"]
    assert float(doc["verify"]["tolerance"]) > d.max_rel_error
    assert verify_map(polygen.parse_spec(text, source="<fit>")).ok


@pytest.mark.slow
def test_fit_power_regenerates_shipped_half() -> None:
    """The spec's Regenerate command reaches the shipped table's worst error on [0.28, 1] within REFIT_SLACK
    (docs/regenerating.md): a refit cannot reproduce coefficients to 1e-6 across BLAS builds and thread
    counts, but its error is what the table promises. It is stable on the whole domain, as the table is."""
    d = fit_power("1/2", steps=6, lower=1e-3, fit_lower=0.28, starts=5, maxfev=4000)
    shipped = _rel(_half_trajectory(_shipped_rows(), X)[-1], X)[X >= 0.28].max()
    assert d.fit_error <= (1 + REFIT_SLACK) * shipped, (d.fit_error, shipped)
    assert d.is_stable()


def test_cli_power(tmp_path, capsys) -> None:
    from polygen.cli import main

    out = tmp_path / "mp.toml"
    assert main(["fit", "power", "--p", "1/3", "--steps", "3", "--fit-lower", "0.3", "--starts", "1",
                 "--maxfev", "200", "-o", str(out)]) == 0
    assert "worst relative error on the fit interval" in capsys.readouterr().err
    spec = polygen.parse_spec(out.read_text(), source=str(out))
    assert spec.name == "muonp_1_3" and verify_map(spec).ok


# ---------------------------------------------------------------------------------------------------------------
# per-step fitted specs (polygen fit power --per-step): muonp_{1_3,1_5,3_5,1_2}_fit
# ---------------------------------------------------------------------------------------------------------------
#: (shipped fitted spec, the recurrence it improves on, p, the issue's target: 4x below that recurrence)
FITTED = [("muonp_1_3_fit", "muonp_1_3", 1 / 3, 0.19), ("muonp_1_5_fit", "muonp_1_5", 1 / 5, 0.23),
          ("muonp_3_5_fit", "muonp_3_5", 3 / 5, 0.20), ("muonp_1_2_fit", "muonp_1_2", 1 / 2, 0.22)]


def _spec_trajectory(name: str, x: np.ndarray) -> list[np.ndarray]:
    """y after every step, by the compiler's own scalar semantics (polygen.ir.evaluate)."""
    from polygen.ir.evaluate import trajectory

    return [np.asarray(env["y"], dtype=float) for env in list(trajectory(polygen.load_spec(name), x))[1:]]


def _scale_free(y: np.ndarray, x: np.ndarray, p: float) -> float:
    r = y / x**p
    assert np.all(np.isfinite(r)) and r.min() > 0
    return float((r.max() - r.min()) / (r.max() + r.min()))


@pytest.mark.parametrize("name,published,p,target", FITTED)
def test_fitted_spec_beats_published_four_times(name: str, published: str, p: float, target: float) -> None:
    x = dense_grid(1e-2, 1.0, 4001)
    ours = _scale_free(_spec_trajectory(name, x)[-1], x, p)
    theirs = _scale_free(_spec_trajectory(published, x)[-1], x, p)
    assert ours <= target and 4 * ours <= theirs, (ours, theirs)
    # the last step is centred: the unscaled error on the fit interval is the scale-free one
    assert float(np.max(np.abs(_spec_trajectory(name, x)[-1] / x**p - 1))) <= 1.01 * ours + 1e-9


@pytest.mark.parametrize("name,published,p,target", FITTED)
def test_fitted_spec_is_stable_and_monotone(name: str, published: str, p: float, target: float) -> None:
    ys = _spec_trajectory(name, X)
    for y in ys:
        assert np.all(np.isfinite(y)) and np.all(y >= 0.02 * X * (1 - 1e-9)) and np.all(y <= 1.5)
    assert np.all(np.diff(ys[-1]) > 0)
    rep = verify_map(polygen.load_spec(name))
    assert rep.ok and not rep.sign_flip and not rep.blowup and rep.within_5pct is not None, str(rep)
    fit = X >= 1e-2
    if _scale_free(ys[-1][fit], X[fit], p) < 0.04:  # well inside 5 % on [1e-2, 1]: the verifier agrees
        assert rep.within_5pct[0] <= 0.02 and rep.within_5pct[1] == 1.0


@pytest.mark.parametrize("name,published", [(n, q) for n, q, _, _ in FITTED])
def test_fitted_spec_costs_no_more_matmuls(name: str, published: str) -> None:
    from tests.test_families import per_step

    def total(spec: str) -> int:
        inner, outer = per_step(spec)
        return inner * len(_spec_trajectory(spec, np.array([0.5]))) + outer

    assert per_step(name)[0] <= per_step(published)[0] and total(name) <= total(published)


def test_parse_terms() -> None:
    from polygen.fit.power import parse_terms, term_form

    assert parse_terms("y, y**3, x, x**2*y, x^3") == ((0, 1), (0, 3), (1, 0), (2, 1), (3, 0))
    for bad in ("y**2", "x*y", "z", "y,y", "2*y"):
        with pytest.raises(ValueError):
            parse_terms(bad)
    form = term_form("1/3", "y,y**3,x")
    assert form.update == "a*y + b*y**3 + c*x" and form.terms_text == "y,y**3,x"


def test_cli_power_per_step(tmp_path, capsys) -> None:
    from polygen.cli import main

    out = tmp_path / "mp.toml"
    assert main(["fit", "power", "--p", "1/3", "--per-step", "--steps", "2", "--fit-lower", "0.1",
                 "--terms", "y,y**3,x", "--starts", "1", "--iters", "15", "-o", str(out)]) == 0
    assert "scale-free" in capsys.readouterr().err
    text = out.read_text()
    assert "Regenerate: polygen fit power --p 1/3 --per-step --steps 2" in text and "within 5 %" in text
    spec = polygen.parse_spec(text, source=str(out))
    assert spec.name == "muonp_1_3_fit" and verify_map(spec).ok
    doc = tomllib.loads(text)
    assert sorted(doc["steps"][0]["table"]) == ["a", "b", "c"] and len(doc["steps"][0]["table"]["a"]) == 2


@pytest.mark.slow
@pytest.mark.parametrize("name,published,p,target", FITTED)
def test_per_step_refit_regenerates_the_shipped_table(name: str, published: str, p: float, target: float,
                                                      tmp_path) -> None:
    """The spec's own Regenerate command, run as docs/regenerating.md says (single-threaded: numpy's BLAS as well
    as torch), reaches the shipped table's scale-free error on [0.01, 1] within REFIT_SLACK and verifies: what the
    table promises, not its digits. ~1-4 min a spec. The per-step fit is sensitive to the arithmetic's last bits:
    with two BLAS threads muonp_1_2_fit refits to 5.1e-4 against 2.6e-4 single-threaded (shipped: 3.4e-4)."""
    import os
    import shlex
    import subprocess
    import sys

    from polygen.ir.evaluate import trajectory

    line = next(ln for ln in polygen.spec.spec_text(name)[0].splitlines() if ln.startswith("# Regenerate: "))
    args = shlex.split(line.removeprefix("# Regenerate: polygen "))
    out = tmp_path / f"{name}.toml"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    subprocess.run([sys.executable, "-m", "polygen.cli", *args, "-o", str(out)], check=True, env=env,
                   capture_output=True, timeout=900)
    x = dense_grid(1e-2, 1.0, 4001)
    refit = polygen.parse_spec(out.read_text(), source=str(out))
    y = [np.asarray(e["y"], dtype=float) for e in list(trajectory(refit, x))[1:]][-1]
    shipped = _scale_free(_spec_trajectory(name, x)[-1], x, p)
    assert _scale_free(y, x, p) <= (1 + REFIT_SLACK) * shipped, (_scale_free(y, x, p), shipped)
    assert verify_map(refit).ok
