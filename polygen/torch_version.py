"""The torch versions polygen is built and tested on, checked when polygen is imported (from package metadata:
torch itself is not imported, so ``import polygen`` stays light).

polygen uses torch APIs younger than most installs (``CustomInferenceAwareGraphPass`` of Inductor's post-grad
passes, ``torch.optim.Muon``, ``torch.library.triton_op``) and private Inductor/Dynamo internals that change
between minor releases, so a minor version it was not tested on is refused with a message rather than left to
fail somewhere inside a step. ``POLYGEN_UNTESTED_TORCH=1`` lets a user try one anyway.
"""

from __future__ import annotations

import importlib.metadata
import os
import re

TESTED = ((2, 13), (2, 14))  # [lowest, highest) minor versions, as pyproject.toml declares: torch>=2.13,<2.14
OVERRIDE = "POLYGEN_UNTESTED_TORCH"


def requirement() -> str:
    (lo_major, lo_minor), (hi_major, hi_minor) = TESTED
    return f"torch>={lo_major}.{lo_minor},<{hi_major}.{hi_minor}"


def untested(version: str) -> bool:
    """Whether a torch version string ("2.13.0+cpu", "2.15.0.dev20260101") lies outside the tested range."""
    m = re.match(r"(\d+)\.(\d+)", version)
    if m is None:
        return True
    minor = (int(m.group(1)), int(m.group(2)))
    return not TESTED[0] <= minor < TESTED[1]


def check_torch() -> None:
    """An ImportError naming the installed torch, the tested range and the override, for an untested torch."""
    if os.environ.get(OVERRIDE, "") not in ("", "0"):
        return
    try:
        version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:  # torch built in place, without metadata: nothing to compare
        return
    if untested(version):
        raise ImportError(
            f"polygen is built and tested on {requirement()}, and torch {version} is installed: polygen uses "
            f"Inductor and Dynamo internals that change between minor versions. Install a tested torch "
            f"(pip install '{requirement()}'), or set {OVERRIDE}=1 to try this one at your own risk.")
