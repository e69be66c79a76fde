"""Writing generated modules without ever following a planted link or leaving half a file behind."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file created exclusively (O_EXCL, random name) in the
    same folder, then renamed over ``path``: a symlink planted at ``path`` or at any predictable temporary name
    is replaced, never written through, and readers see the old file or the new one, nothing in between."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a generated module is as readable as any file
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` (resolved, links followed) lies inside ``folder``."""
    return path.resolve().is_relative_to(folder.resolve())


BODY_HASH = "# body sha256: "


def body_digest(source: str) -> str:
    """sha256 of a generated module without its own ``# body sha256:`` line: covers header and body, so a
    hand edit anywhere shows."""
    lines = [line for line in source.splitlines() if not line.startswith(BODY_HASH)]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()
