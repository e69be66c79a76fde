"""Spec files: safe parsing, validation, and the built-in library in ``polygen/specs/``."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from polygen.errors import SpecError
from polygen.ir.spectral import SpectralMap
from polygen.spec.names import SPEC_NAME
from polygen.spec.parse import MAX_SPEC_BYTES, parse_spec, spec_hash

BUILTIN_DIR = Path(str(files("polygen") / "specs"))  # package data, found as the templates are

__all__ = ["BUILTIN_DIR", "list_specs", "load_spec", "parse_spec", "spec_hash", "spec_path", "spec_text"]


def list_specs() -> list[str]:
    """Names of the built-in specs."""
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.toml"))


def spec_path(name_or_path: str | Path) -> Path:
    """The file of a built-in name (an identifier, looked up in ``polygen/specs/``) or of a ``.toml`` path."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        if not p.is_file():
            raise SpecError("no such spec file", source=str(p))
        return p
    if not SPEC_NAME.fullmatch(str(name_or_path)):
        raise SpecError(f"{str(name_or_path)[:80]!r} is neither a built-in spec name nor a .toml file",
                        source=str(name_or_path)[:200])
    cand = BUILTIN_DIR / f"{name_or_path}.toml"
    if not cand.exists():
        raise SpecError(f"unknown spec {str(name_or_path)!r}; built-ins: {', '.join(list_specs())}",
                        source=str(name_or_path))
    return cand


def spec_text(name_or_path: str | Path) -> tuple[str, str]:
    """(text, source label) of a built-in name or a path; a file too large or not UTF-8 is a SpecError."""
    p = spec_path(name_or_path)
    with open(p, "rb") as fh:
        raw = fh.read(MAX_SPEC_BYTES + 1)
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError(f"spec file is larger than {MAX_SPEC_BYTES} bytes", source=str(p))
    try:
        return raw.decode("utf-8"), str(p)
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise SpecError(f"spec file is not UTF-8 text (byte {e.start}: {e.reason})", source=str(p),
                        line=line) from None


def load_spec(name_or_path: str | Path | SpectralMap) -> SpectralMap:
    """A built-in name (``"muon_ns5"``) or a path to a TOML file → frozen spectral IR."""
    if isinstance(name_or_path, SpectralMap):
        return name_or_path
    text, source = spec_text(name_or_path)
    smap = parse_spec(text, source=source)
    p = spec_path(name_or_path)
    if p.parent == BUILTIN_DIR and smap.name != p.stem:
        raise SpecError(f"built-in spec name {smap.name!r} must match its file name {p.stem!r}",
                        source=source, line=1, field="name")
    return smap
