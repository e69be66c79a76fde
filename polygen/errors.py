"""Errors that users see. Each names where the problem is, so nothing has to be guessed."""

from __future__ import annotations


class PolygenError(Exception):
    """Base class of every error polygen raises on purpose."""


class SpecError(PolygenError, ValueError):
    """A spec file is malformed; carries the file (``source``), ``line`` and ``field``."""

    def __init__(self, message: str, *, source: str = "<str>", line: int | None = None, field: str | None = None):
        self.source = source
        self.line = line
        self.field = field
        self.reason = message
        where = source if line is None else f"{source}:{line}"
        what = f" [{field}]" if field else ""
        super().__init__(f"{where}:{what} {message}")


class ConvergenceError(SpecError):
    """The composed scalar map fails the spec's own convergence claim on its domain."""


class ScheduleError(PolygenError):
    """The scheduler cannot realize a spectral map as matrix operations."""


class StaleGeneratedError(PolygenError):
    """A file in ``generated/`` does not match what ``polygen build`` would write now."""
