"""Coefficient design that writes specs (DESIGN §4).

* :func:`minimax` — Polar Express greedy per-step minimax odd polynomials for the polar factor;
* :func:`fit_ifnso` — IFNSO's single high-degree polynomial, learned by Adam as in the paper;
* :func:`fit_power` — Muon^p per-step damped-Newton coefficients for U S^p Vᵀ.

Each returns a frozen design dataclass whose ``to_toml(name)`` writes a spec (docs/spec-format.md);
``polygen fit …`` (:mod:`polygen.fit.cli`) is the command-line front end.
"""

from polygen.fit.ifnso import IfnsoDesign, fit_ifnso
from polygen.fit.minimax import MinimaxDesign, minimax
from polygen.fit.power import PowerDesign, PowerForm, fit_power

__all__ = ["IfnsoDesign", "MinimaxDesign", "PowerDesign", "PowerForm", "fit_ifnso", "fit_power", "minimax"]
