"""Map TOML key paths to line numbers, so every SpecError can name its line (tomllib has no positions)."""

from __future__ import annotations

import re

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\" ]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+(?:\s*\.\s*[A-Za-z0-9_\-]+)*|\"[^\"]*\")\s*=")  # dotted keys too
# anchored after "{" or ",": an unanchored key pattern backtracks quadratically over a long run of "-" in a value
_INLINE_KEY = re.compile(r"(?:^|[{,])\s*([A-Za-z0-9_\-]+)\s*=")


class Locator:
    """``line_of(("steps", 0, "update", "x"))`` → the 1-based line of that field (or of its parent)."""

    def __init__(self, text: str):
        self.lines: dict[tuple, int] = {}
        table: tuple = ()
        counts: dict[tuple, int] = {}
        for no, raw in enumerate(text.splitlines(), start=1):
            line = raw.split("#", 1)[0] if '"' not in raw else raw
            m = _HEADER.match(line)
            if m and not _KEY.match(line):
                parts = _in_array(tuple(p.strip().strip('"') for p in m.group(2).split(".")), counts)
                if m.group(1) == "[[":
                    idx = counts.get(parts, 0)
                    counts[parts] = idx + 1
                    table = parts + (idx,)
                else:
                    table = parts
                self.lines.setdefault(table, no)
                continue
            k = _KEY.match(line)
            if k:
                key = k.group(1)
                keys = (key.strip('"'),) if key.startswith('"') else tuple(p.strip() for p in key.split("."))
                path = table + keys
                self.lines.setdefault(path, no)
                rest = line[k.end():]
                if "{" in rest:
                    for sub in _INLINE_KEY.finditer("{" + rest.split("{", 1)[1]):
                        self.lines.setdefault(path + (sub.group(1),), no)

    def line_of(self, path: tuple) -> int:
        """The field's line, else its nearest recorded parent's, else the first line under it (an array of
        tables ``[[steps]]`` records its entries), else line 1: a missing top-level field."""
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            under = [no for q, no in self.lines.items() if q[:len(p)] == p]
            if under:
                return min(under)
            p = p[:-1]
        return 1


def _in_array(parts: tuple, counts: dict[tuple, int]) -> tuple:
    """``[steps.let]`` below ``[[steps]]`` is a table of the latest steps entry: ("steps", i, "let")."""
    for k in range(len(parts), 0, -1):
        if parts[:k] in counts:
            return parts[:k] + (counts[parts[:k]] - 1,) + _in_array(parts[k:], {})
    return parts


def field_name(path: tuple) -> str:
    """``steps[0].update.x``; a key longer than 64 characters is cut (keys are the spec's text)."""
    out = ""
    for p in path:
        p = p if isinstance(p, int) or len(str(p)) <= 64 else str(p)[:64] + "…"
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out
