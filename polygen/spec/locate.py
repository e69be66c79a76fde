"""Map TOML key paths to line numbers, so every SpecError can name its line (tomllib has no positions).

One left-to-right pass that knows enough TOML to never mistake text for structure: basic and literal strings,
single- and multi-line, with escapes; comments; table headers; dotted, quoted and escaped keys; arrays and
inline tables, kept on an explicit stack. A ``[x]`` line inside a ``\"\"\"`` description is text, not a header,
and ``[variables."х"]`` is the key ``х`` at its own line. The pass is linear in the text: every pattern below is
one character class under one quantifier (tests/test_spec_errors.py checks that no pattern in polygen/spec/
nests quantifiers), each search resumes where the last one stopped, and line numbers come from a bisection
over the newline positions. It also enforces the nesting caps before tomllib (which recurses) sees the text.
Text that is not valid TOML is skipped line by line; tomllib reports it.
"""

from __future__ import annotations

import bisect
import re
import reprlib
import unicodedata

MAX_NESTING = 32  # arrays / inline tables inside each other
MAX_KEY_DEPTH = 64  # a key's full path: tables, dotted parts, inline tables and array entries together

_BARE = re.compile(r"[A-Za-z0-9_\-]+")
_SCALAR = re.compile(r"[^,\]}\n#]*")  # a number, boolean or date: up to the next delimiter
_BASIC_STOP = re.compile(r'["\\\n]')  # in a basic string: its end, an escape or a line end
_SHOW = reprlib.Repr()
_SHOW.maxlevel, _SHOW.maxdict, _SHOW.maxlist, _SHOW.maxstring, _SHOW.maxother, _SHOW.maxlong = 2, 4, 4, 60, 60, 40
_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\"}


class LocatorLimit(ValueError):
    """The text nests deeper than a cap; ``line`` is where (1-based)."""

    def __init__(self, message: str, line: int):
        super().__init__(message)
        self.line = line


class _Skip(Exception):
    """Not TOML this scanner can follow (tomllib will say why): resume after the line where it stopped."""

    def __init__(self, at: int):
        super().__init__(at)
        self.at = at


class Locator:
    """``line_of(("steps", 0, "update", "x"))`` → the 1-based line of that field (or of its parent).

    Raises :class:`LocatorLimit` for text nested past ``MAX_NESTING`` or with a key path past ``MAX_KEY_DEPTH``.
    """

    def __init__(self, text: str):
        self.lines: dict[tuple, int] = {}
        self._t = text
        self._n = len(text)
        self._nl = [m.start() for m in re.finditer("\n", text)]
        self._table: tuple = ()
        self._counts: dict[tuple, int] = {}
        i = 0
        while i < self._n:
            i = self._blank(i)
            if i >= self._n:
                break
            try:
                i = self._header(i) if text[i] == "[" else self._key_value(i)
            except _Skip as e:
                i = self._eol(max(i, e.at)) + 1

    # -- positions --------------------------------------------------------------------------------------
    def _line(self, i: int) -> int:
        return bisect.bisect_left(self._nl, i) + 1

    def _eol(self, i: int) -> int:
        """Index of the newline that ends the line holding ``i`` (or the text's length)."""
        k = bisect.bisect_left(self._nl, i)
        return self._nl[k] if k < len(self._nl) else self._n

    def _spaces(self, i: int) -> int:
        t, n = self._t, self._n
        while i < n and t[i] in " \t":
            i += 1
        return i

    def _blank(self, i: int) -> int:
        """Past spaces, line ends and comments."""
        t, n = self._t, self._n
        while i < n:
            c = t[i]
            if c in " \t\r\n":
                i += 1
            elif c == "#":
                i = self._eol(i)
            else:
                break
        return i

    def _record(self, path: tuple, i: int) -> tuple:
        if len(path) > MAX_KEY_DEPTH:
            raise LocatorLimit(f"keys nest deeper than {MAX_KEY_DEPTH} levels (tables, dotted keys, inline "
                               "tables and arrays together)", self._line(i))
        self.lines.setdefault(path, self._line(i))
        return path

    # -- keys and strings --------------------------------------------------------------------------------
    def _key(self, i: int, base: tuple) -> tuple[tuple, int]:
        """A (dotted) key starting at ``i`` on one line → (base + its decoded parts, index after it)."""
        t = self._t
        eol = self._eol(i)
        parts = list(base)
        while True:
            i = self._spaces(i)
            c = t[i] if i < eol else ""
            if c == '"':
                part, i = self._basic_key(i + 1, eol)
            elif c == "'":
                j = t.find("'", i + 1, eol)
                if j < 0:
                    raise _Skip(i)
                part, i = t[i + 1:j], j + 1
            else:
                m = _BARE.match(t, i, eol)
                if not m:
                    raise _Skip(i)
                part, i = m.group(), m.end()
            parts.append(part)
            if len(parts) > MAX_KEY_DEPTH:
                self._record(tuple(parts), i)  # raises
            i = self._spaces(i)
            if i < eol and t[i] == ".":
                i += 1
                continue
            return tuple(parts), i

    def _basic_key(self, i: int, eol: int) -> tuple[str, int]:
        """A quoted key's text with its escapes decoded (as tomllib decodes it) → (text, index after it)."""
        t, out = self._t, []
        while True:
            m = _BASIC_STOP.search(t, i, eol)
            if not m:
                raise _Skip(i)
            out.append(t[i:m.start()])
            i = m.end()
            if m.group() == '"':
                return "".join(out), i
            c = t[i:i + 1]
            width = {"u": 4, "U": 8}.get(c, 0)
            if width:
                try:
                    out.append(chr(int(t[i + 1:i + 1 + width], 16)))
                except ValueError:
                    raise _Skip(i) from None
                i += 1 + width
            elif c in _ESCAPES:
                out.append(_ESCAPES[c])
                i += 1
            else:
                raise _Skip(i)

    def _string(self, i: int) -> int:
        """Index after the string value starting at ``i`` (any of TOML's four kinds)."""
        t, n = self._t, self._n
        q = t[i]
        if t.startswith(q * 3, i):
            if q == "'":
                j = t.find("'''", i + 3)
                if j < 0:
                    return n
            else:
                j = i + 3
                while True:
                    m = _BASIC_STOP.search(t, j)
                    if not m:
                        return n
                    if m.group() == "\\":
                        j = m.end() + 1
                    elif t.startswith('"""', m.start()):
                        j = m.start()
                        break
                    else:
                        j = m.end()
            end = j + 3
            while end < n and end - j < 5 and t[end] == q:
                end += 1  # a multi-line string may end in up to two quotes of its own
            return end
        if q == "'":
            j = t.find("'", i + 1, self._eol(i))
            if j < 0:
                raise _Skip(i)
            return j + 1
        j = i + 1
        while True:
            m = _BASIC_STOP.search(t, j)
            if not m or m.group() == "\n":
                raise _Skip(j)
            if m.group() == '"':
                return m.end()
            j = m.end() + 1

    # -- statements ----------------------------------------------------------------------------------------
    def _header(self, i: int) -> int:
        t = self._t
        many = t.startswith("[[", i)
        parts, i = self._key(i + (2 if many else 1), ())
        close = "]]" if many else "]"
        if not t.startswith(close, i):
            raise _Skip(i)
        parts = _in_array(parts[:-1], self._counts) + parts[-1:]
        if many:
            idx = self._counts.get(parts, 0)
            self._counts[parts] = idx + 1
            parts = parts + (idx,)
        self._table = self._record(parts, i)
        return self._eol(i) + 1  # a comment, or nothing, follows

    def _key_value(self, i: int) -> int:
        path, i = self._key(i, self._table)
        self._record(path, i)
        if not self._t.startswith("=", i):
            raise _Skip(i)
        i = self._value(i + 1, path)
        i = self._spaces(i)
        return self._eol(i) + 1 if i < self._n and self._t[i] in "#\r\n" else i

    def _value(self, i: int, path: tuple) -> int:
        """Index after the value starting at (or after spaces from) ``i``. Arrays and inline tables are walked
        with an explicit stack of [bracket, path, entries so far]; each entry is recorded at its own line."""
        t, n = self._t, self._n
        stack: list[list] = []
        while True:  # here a value starts
            i = self._blank(i) if stack and stack[-1][0] == "[" else self._spaces(i)
            c = t[i] if i < n else ""
            if c and c in "[{":
                if len(stack) >= MAX_NESTING:
                    raise LocatorLimit(f"arrays or inline tables nest deeper than {MAX_NESTING} levels",
                                       self._line(i))
                stack.append([c, path, 0])
                i, opened = i + 1, True
            elif c and c in "\"'":
                i, opened = self._string(i), False
            else:
                m = _SCALAR.match(t, i)
                if m is None or m.end() == i:
                    raise _Skip(i)
                i, opened = m.end(), False
            while stack:  # close what ends here, then find where the next value starts
                bracket, base, count = stack[-1]
                i = self._blank(i) if bracket == "[" else self._spaces(i)
                c = t[i] if i < n else ""
                if c == ("]" if bracket == "[" else "}"):
                    stack.pop()
                    i, opened = i + 1, False
                    continue
                if not opened:
                    if c != ",":
                        raise _Skip(i)
                    i += 1
                    if bracket == "[" and t.startswith("]", self._blank(i)):
                        continue  # a trailing comma
                    count = stack[-1][2] = count + 1
                if bracket == "[":
                    path = self._record(base + (count,), self._blank(i))
                else:
                    path, i = self._key(i, base)
                    self._record(path, i)
                    if not t.startswith("=", i):
                        raise _Skip(i)
                    i += 1
                break
            else:
                return i

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
    """``[steps.let]`` below ``[[steps]]`` is a table of the latest steps entry: ("steps", i, "let"); every
    prefix that is an array of tables takes its latest index (``[[a]]``, ``[[a.b]]``, ``[a.b.c]``: a/0/b/0/c)."""
    out: tuple = ()
    for p in parts:
        out += (p,)
        if out in counts:
            out += (counts[out] - 1,)
    return out


def field_name(path: tuple) -> str:
    """``steps[0].update.x``; a key longer than 64 characters is cut (keys are the spec's text), and a path
    deeper than 16 keeps its first 16 parts."""
    out = ""
    for p in path[:16]:
        p = p if isinstance(p, int) or len(str(p)) <= 64 else str(p)[:64] + "…"
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out + ("…" if len(path) > 16 else "")


def show(value: object) -> str:
    """A spec value for an error message: its repr, cut to a bounded length and depth (a value may be a
    100 kB string or a table nested 64 deep; a plain repr of either is unbounded work and text)."""
    try:
        return _SHOW.repr(value)
    except (ValueError, RecursionError):  # an int past the int-to-str digit limit
        return f"<{type(value).__name__}>"


def non_ascii(text: str) -> str:
    """The first non-ASCII character of ``text``, as ``'ｘ' (U+FF58 FULLWIDTH LATIN SMALL LETTER X)``."""
    ch = next(c for c in text if not c.isascii())
    return f"{ch!r} (U+{ord(ch):04X} {unicodedata.name(ch, 'unnamed')})"
