"""Where polygen's data lives. The repository keeps ``templates/`` and ``generated/`` at its root; they are the
packages ``polygen._templates`` and ``polygen._generated`` (mapped in pyproject.toml), found through
importlib.resources, so an installed wheel finds them exactly as a checkout does."""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path


def template_dir() -> Path:
    """The Jinja2 templates of the emitters."""
    return Path(str(files("polygen._templates")))


def generated_dir() -> Path:
    """The generated modules of the built-in specs (``POLYGEN_GENERATED`` overrides, for tests and tools)."""
    return Path(os.environ.get("POLYGEN_GENERATED") or str(files("polygen._generated")))
