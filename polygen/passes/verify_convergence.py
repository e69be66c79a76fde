"""verify_convergence: evaluate the composed scalar map on a dense grid of the domain, in float64.

Reports the image of the domain, the worst relative error to the target, sign flips, blow-ups and the
sub-interval where the map is within 5 % of its target; fails a spec that breaks its own ``[verify]`` claim.
Whatever the claim (``expect = "none"`` too), every constant and every intermediate value of the map must be
finite in float32 and float64; the dtypes it is finite in (float16 often not) are recorded for the generated
module, which refuses the others at call time.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from polygen.errors import ConvergenceError
from polygen.ir.evaluate import largest_magnitude, output_map
from polygen.ir.spectral import SpectralMap, target_exponent

BLOWUP = 1e6
# The dtypes a generated module serves, and the largest finite value of each.
DTYPE_MAX = {"float32": float(np.finfo(np.float32).max), "bfloat16": 3.3895313892515355e38,
             "float16": float(np.finfo(np.float16).max), "float64": float(np.finfo(np.float64).max)}
REQUIRED = ("float32", "float64")  # a spec not finite in these is refused outright
HEADROOM = 16.0  # the largest value seen on the grid, times this, must be finite: the grid samples the domain
SCALES = (1e-2, 1e2)  # input scales the output scaling is checked at (besides 1)


def domain_grid(lo: float, hi: float, n: int = 4001) -> np.ndarray:
    """Log-spaced where the domain spans decades (small singular values matter), plus a linear grid."""
    lin = np.linspace(lo, hi, n)
    if lo > 0:
        return np.unique(np.concatenate([np.geomspace(lo, hi, n), lin]))
    return lin


@dataclass(frozen=True)
class Report:
    name: str
    domain: tuple[float, float]
    image: tuple[float, float]
    worst_error: float  # max relative error to the target
    worst_at: float
    sign_flip: bool
    blowup: bool
    within_5pct: tuple[float, float] | None  # largest sub-interval with relative error <= 5 %
    failures: tuple[str, ...]
    scale_error: float = 0.0  # worst relative error for inputs scaled by SCALES (not normalized to 1)
    largest: float = 0.0  # the largest constant or intermediate magnitude of the map on the domain
    largest_at: str = ""  # where it occurs
    finite_dtypes: tuple[str, ...] = tuple(DTYPE_MAX)  # the dtypes in which largest * HEADROOM is finite

    @property
    def ok(self) -> bool:
        return not self.failures

    def __str__(self) -> str:
        w = (f"[{self.within_5pct[0]:.4g}, {self.within_5pct[1]:.4g}]" if self.within_5pct else "nowhere")
        lines = [
            f"spectral map {self.name} on [{self.domain[0]:.4g}, {self.domain[1]:.4g}]:",
            f"  image           [{self.image[0]:.6g}, {self.image[1]:.6g}]",
            f"  worst rel error {self.worst_error:.3e} at x = {self.worst_at:.4g}",
            f"  within 5 %      {w}",
            f"  sign flip       {'YES' if self.sign_flip else 'no'}",
            f"  blow-up         {'YES' if self.blowup else 'no'}",
            f"  largest value   {self.largest:.4g} ({self.largest_at})",
            f"  finite in       {', '.join(self.finite_dtypes) or 'no served dtype'}",
        ]
        lines += [f"  FAIL: {f}" for f in self.failures]
        return "\n".join(lines)


def _largest_run(mask: np.ndarray, x: np.ndarray) -> tuple[float, float] | None:
    best, start, best_len = None, None, -1.0
    for i, ok in enumerate(list(mask) + [False]):
        if ok and start is None:
            start = i
        if not ok and start is not None:
            lo, hi = x[start], x[i - 1]
            if hi - lo > best_len:
                best, best_len = (float(lo), float(hi)), hi - lo
            start = None
    return best


def _intervals(mask: np.ndarray, x: np.ndarray) -> str:
    parts, start = [], None
    for i, bad in enumerate(list(mask) + [False]):
        if bad and start is None:
            start = i
        if not bad and start is not None:
            parts.append(f"[{x[start]:.4g}, {x[i - 1]:.4g}]")
            start = None
    return ", ".join(parts[:4]) + (" …" if len(parts) > 4 else "")


def finite_dtypes(largest: float) -> tuple[str, ...]:
    """The served dtypes in which a map whose values reach ``largest`` stays finite (with HEADROOM)."""
    return tuple(d for d, top in DTYPE_MAX.items() if np.isfinite(largest) and largest * HEADROOM <= top)


def verify_map(smap: SpectralMap, n: int = 4001) -> Report:
    x = domain_grid(*smap.domain, n=n)
    y = np.asarray(output_map(smap, x), dtype=float)
    with np.errstate(all="ignore"):
        t = smap.target_value(x)
    finite = np.isfinite(y)
    # x = 0 (a domain may start there): an odd map is 0 at 0, as the polar factor and U S^p Vᵀ are on the null
    # space; a symmetric target that is 0 there (sqrt) is met when y is 0 too. Inverse roots cannot start at 0.
    exempt = (x == 0) & ((smap.input_kind == "rectangular") | (y == t))
    with np.errstate(all="ignore"):
        rel = np.where(exempt, 0.0, np.where(finite, np.abs(y - t) / np.abs(t), np.inf))
    blow = ~finite | (np.abs(np.nan_to_num(y, nan=np.inf)) > BLOWUP)
    flip = finite & (y <= 0) & ~exempt
    i = int(np.argmax(rel))
    failures: list[str] = []
    pol = smap.verify
    if blow.any():
        failures.append(f"blows up for x in {_intervals(blow, x)}")
    if flip.any():
        failures.append(f"sign flip (y <= 0) for x in {_intervals(flip, x)}")
    if pol.expect == "converge" and rel[i] > pol.tolerance:
        failures.append(f"does not converge to within {pol.tolerance:g}: relative error > tolerance for x in "
                        f"{_intervals(rel > pol.tolerance, x)} (worst {rel[i]:.3e} at x = {x[i]:.4g})")
    if pol.expect == "bounded":
        out = finite & ((y <= pol.lower) | (y > pol.upper)) & ~exempt
        if out.any():
            failures.append(f"image leaves ({pol.lower:g}, {pol.upper:g}] for x in {_intervals(out, x)}")
    if pol.expect == "none":
        failures = []
    largest, largest_at = largest_magnitude(smap, x)
    dtypes = finite_dtypes(largest)
    missing = [d for d in REQUIRED if d not in dtypes]
    if missing:
        failures.append(f"not finite in {' and '.join(missing)}: {largest_at} reaches {largest:.3g} on the "
                        f"domain (at most {DTYPE_MAX[missing[0]] / HEADROOM:.3g} in {missing[0]}, {HEADROOM:g}x "
                        "below its largest value)")
    scale_error, scale_failure = _unnormalized_error(smap, y, t, finite & ~exempt)
    if scale_failure:
        failures.append(scale_failure)
    img = (float(np.nanmin(np.where(finite, y, np.nan))) if finite.any() else float("nan"),
           float(np.nanmax(np.where(finite, y, np.nan))) if finite.any() else float("nan"))
    return Report(smap.name, smap.domain, img, float(rel[i]), float(x[i]), bool(flip.any()), bool(blow.any()),
                  _largest_run(rel <= 0.05, x), tuple(failures), scale_error, largest, largest_at, dtypes)


def _unnormalized_error(smap: SpectralMap, y: np.ndarray, t: np.ndarray, finite: np.ndarray) -> tuple[float, str]:
    """The map's error on the matrix the user passes, not its normalized copy: an input of scale s has
    singular values s·x, target s**k·t(x), and output s**e·y(x) (e from [output]). Any e ≠ k is wrong by
    s**(e−k) − 1: 46 % at s = 0.01 for an inverse square root left unscaled. ``rescale = "rms"`` (power) and
    unnormalized inputs are scale-free by construction."""
    out = smap.output
    if out.rescale == "rms" or smap.normalization.norm == "none" or not finite.any():
        return 0.0, ""
    k = target_exponent(smap.target, smap.power)
    e = out.exponent if out.rescale == "norm" else 0.0
    with np.errstate(all="ignore"):
        errs = {s: float(np.max(np.abs(s ** (e - k) * y[finite] / t[finite] - 1.0))) for s in SCALES}
    worst_s = max(errs, key=errs.__getitem__)
    if abs(e - k) <= 1e-12 * max(1.0, abs(k)):
        return errs[worst_s], ""
    return errs[worst_s], (f"output is the target of the normalized input only: for an input of scale {worst_s:g} "
                           f"it is off by {errs[worst_s]:.0%} (the target scales as s^{k:g}, the output as "
                           f"s^{e:g}); set [output] rescale = \"norm\", exponent = {k:g}")


def verify_convergence(smap: SpectralMap, rep: Report | None = None) -> Report:
    """Raise :class:`ConvergenceError` when the map breaks its ``[verify]`` claim on the domain (``rep``: its
    report, when already made)."""
    rep = verify_map(smap) if rep is None else rep
    if not rep.ok:
        raise ConvergenceError("; ".join(rep.failures) + f"\n{rep}", source=smap.source, field="verify",
                               line=smap.line_of("verify") or smap.line_of("domain"))
    return rep


def require_finite(smap: SpectralMap, rep: Report) -> None:
    """Raise :class:`ConvergenceError` (with every failure of ``rep``, the blow-up interval first) when the map's
    values overflow a dtype every module serves (float32, float64), whatever the spec's ``expect``: no plan of it
    could run."""
    if any(f.startswith("not finite in") for f in rep.failures):
        verify_convergence(smap, rep)


def with_plan_peaks(smap: SpectralMap, rep: Report, peaks: dict[str, float]) -> Report:
    """The report with ``finite_dtypes`` narrowed to the dtypes whose plans' intermediates (``peaks``: dtype
    class -> largest magnitude, from validate_translation) also fit with HEADROOM; a required dtype that no
    longer fits is a ConvergenceError naming the plan class."""
    from polygen.dtypes import plan_class

    keep = tuple(d for d in rep.finite_dtypes if peaks.get(plan_class(d), 0.0) * HEADROOM <= DTYPE_MAX[d])
    lost = [d for d in REQUIRED if d in rep.finite_dtypes and d not in keep]
    if lost:
        d = lost[0]
        raise ConvergenceError(f"not finite in {d}: an intermediate of the {plan_class(d)} plans reaches "
                               f"{peaks[plan_class(d)]:.3g} on the domain (at most {DTYPE_MAX[d] / HEADROOM:.3g})",
                               source=smap.source, field="verify",
                               line=smap.line_of("verify") or smap.line_of("domain"))
    return rep if keep == rep.finite_dtypes else replace(rep, finite_dtypes=keep)
