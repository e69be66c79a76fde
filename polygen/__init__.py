"""polygen: a compiler for polynomial matrix iterations (spec → spectral IR → schedule → generated code).

Public API (see ../shared/DESIGN.md §2): ``load_spec``, ``parse_spec``, ``list_specs``, ``schedule``,
``generate``, ``load``; optimizers live in ``polygen.optim``.
"""

__version__ = "0.1.0"

from polygen.driver import generate, schedule  # noqa: E402
from polygen.errors import (  # noqa: E402
    ConvergenceError,
    PolygenError,
    ScheduleError,
    SpecError,
    StaleGeneratedError,
)
from polygen.runtime import load  # noqa: E402
from polygen.spec import list_specs, load_spec, parse_spec  # noqa: E402

__all__ = [
    "ConvergenceError", "PolygenError", "ScheduleError", "SpecError", "StaleGeneratedError",
    "__version__", "generate", "list_specs", "load", "load_spec", "parse_spec", "schedule",
]
