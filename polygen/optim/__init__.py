"""Optimizers on polygen's generated iterations (they import ``polygen.runtime``, never ``polygen.codegen``).

- :class:`Muon` — torch.optim.Muon's arguments and semantics; orthogonalization by any ``polar`` spec
  (``muon_ns5`` default, ``polar_express``, ``prism_polar`` …), same-shaped matrices in one batched call.
- :class:`MuonP` — Muon^p: unit-RMS U S^p Vᵀ of the momentum (``muonp_1_3`` …).
- :class:`Shampoo` — two-sided Shampoo with Adam grafting; inverse roots from ``inv_root_4`` / ``inv_root_2``.
- :func:`split_params`, :class:`Mixed`, :class:`MuonWithAdamW` — Muon family for hidden matrices, AdamW for
  the rest, as one optimizer.

Every optimizer checks gradients for NaN/Inf before it changes anything (``nonfinite="raise"`` default,
``"skip"`` or ``"off"``) and raises :class:`NonFiniteGradError`.
"""

from polygen.optim._common import NonFiniteGradError
from polygen.optim.mixed import Mixed, MuonWithAdamW, split_params
from polygen.optim.muon import Muon
from polygen.optim.muon_p import MuonP
from polygen.optim.shampoo import Shampoo

__all__ = ["Mixed", "Muon", "MuonP", "MuonWithAdamW", "NonFiniteGradError", "Shampoo", "split_params"]
