"""Spec files: safe parsing, validation, and the built-in library in ``polygen/specs/``."""

from __future__ import annotations

from pathlib import Path

from polygen.errors import SpecError
from polygen.ir.spectral import SpectralMap
from polygen.runtime.specfiles import BUILTIN_DIR, SpecText, list_specs, spec_hash, spec_path, spec_text
from polygen.spec.parse import parse_spec

__all__ = ["BUILTIN_DIR", "list_specs", "load_spec", "parse_spec", "spec_hash", "spec_path", "spec_text"]


def load_spec(name_or_path: str | Path | SpectralMap | SpecText) -> SpectralMap:
    """A built-in name (``"muon_ns5"``), a path to a TOML file or a SpecText read earlier → frozen spectral IR."""
    if isinstance(name_or_path, SpectralMap):
        return name_or_path
    text, source = (name_or_path.text, name_or_path.source) if isinstance(name_or_path, SpecText) \
        else spec_text(name_or_path)
    smap = parse_spec(text, source=source)
    p = Path(source)
    if p.parent == BUILTIN_DIR and smap.name != p.stem:
        raise SpecError(f"built-in spec name {smap.name!r} must match its file name {p.stem!r}",
                        source=source, line=1, field="name")
    return smap
