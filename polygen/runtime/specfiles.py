"""Spec files as text: where built-ins live, reading a name or path, and the content hash. No parsing here:
the product reads and hashes spec text to find generated code; only the compiler parses it."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from polygen.errors import SpecError

BUILTIN_DIR = Path(str(files("polygen") / "specs"))  # package data, found as the templates are
MAX_SPEC_BYTES = 256 * 1024
SPEC_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")


def list_specs() -> list[str]:
    """Names of the built-in specs."""
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.toml"))


def spec_hash(text: str) -> str:
    return hashlib.sha256(text.replace("\r\n", "\n").encode()).hexdigest()


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


@dataclass(frozen=True)
class SpecText:
    """A spec's text as read at one moment, with its source label: what the runtime hashes and, on a cache
    miss, what the compiler parses, so both see the same content even if the file changes in between."""

    text: str
    source: str

    @property
    def source_hash(self) -> str:
        return spec_hash(self.text)


def read_spec(name_or_path: str | Path) -> SpecText:
    return SpecText(*spec_text(name_or_path))


def is_builtin(source: str) -> bool:
    """Whether a source label names a file of the built-in library."""
    return Path(source).resolve().parent == BUILTIN_DIR.resolve()
