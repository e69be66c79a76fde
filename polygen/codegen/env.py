"""The Jinja2 environment, built so that no spec text can reach generated source as code.

Every ``{{ … }}`` must print a :class:`Code` value (text the emitter wrote itself, or a spec value encoded by
:func:`py` as a Python literal or by :func:`ident` as a validated identifier) or a number; a plain ``str`` is
an error at render time (``finalize``), never pasted. Macro results are ``Markup`` (autoescape is on), so they
pass without being re-encoded, and HTML escaping itself never runs: ``finalize`` rejects everything it would
have escaped. ``StrictUndefined`` makes a missing template variable an error, not empty text.
"""

from __future__ import annotations

import ast
import functools
import keyword
import re
from collections.abc import Iterable

import jinja2
from markupsafe import Markup

from polygen.ir.schedule import Ref
from polygen.resources import template_dir
from polygen.runtime.files import BODY_HASH, body_digest

TEMPLATE_DIR = template_dir()

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


class Code(Markup):
    """Source text the emitter vouches for: its own code, or spec values already encoded."""


class UnsafeTemplateValue(TypeError):
    """A template tried to print a value that is not :class:`Code` (e.g. raw spec text)."""


def py(value: object) -> Code:
    """A spec value as a Python literal: strings, numbers, booleans, None, and tuples/lists/dicts of them."""
    text = repr(value)
    try:  # repr of these types is a literal that evaluates back to the value; anything else is refused
        ok = ast.literal_eval(text) == value
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        ok = False
    if not ok:
        raise UnsafeTemplateValue(f"{type(value).__name__} value {text[:60]!r} has no Python literal form")
    return Code(text)


def ident(value: object) -> Code:
    """A validated Python identifier (spec names are checked at parse time too; this is the last line)."""
    if not isinstance(value, str) or not IDENTIFIER.fullmatch(value) or keyword.iskeyword(value) \
            or keyword.issoftkeyword(value):
        raise UnsafeTemplateValue(f"{value!r} is not a safe identifier")
    return Code(value)


def scalar(value: object) -> Code:
    """A schedule scalar: a number as its repr, or a run-time scalar (ir.schedule.Ref) printed from its parts,
    its name an identifier and its numbers literals: ``c0``, ``0.5*alpha``, ``(1e-07 + 2.5e-05*alpha)``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Code(repr(float(value)))
    if isinstance(value, Ref):
        name = ident(value.name)
        term = name if value.coef == 1.0 else f"{py(float(value.coef))}*{name}"
        return Code(term if value.const == 0.0 else f"({py(float(value.const))} + {term})")
    raise UnsafeTemplateValue(f"scalar {value!r} is neither a number nor a run-time scalar")


def comment(text: str) -> Code:
    """Text for after a ``#``: kept as is when it is one printable line, else written as a literal."""
    return Code(text) if text.isprintable() else py(text)


def docstring(text: str) -> Code:
    """A module docstring as implicitly concatenated literals, one per line: readable, and no text can close it."""
    lines = text.splitlines(keepends=True) or [""]
    if len(lines) == 1:
        return py(lines[0])
    body = "\n".join(f"    {py(line)}" for line in lines)
    return Code(f"(\n{body}\n)")


def hex_digest(value: str) -> Code:
    """A sha256 hex digest (the spec's, the body's)."""
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise UnsafeTemplateValue(f"{value[:70]!r} is not a sha256 hex digest")
    return Code(value)


def seal(source: str) -> str:
    """``source`` with a ``# body sha256:`` line after the provenance header (its first comment lines)."""
    lines = source.split("\n")
    at = next(i for i, line in enumerate(lines) if not line.startswith("#"))
    lines.insert(at, BODY_HASH + body_digest(source))
    return "\n".join(lines)


def _finalize(value: object) -> object:
    if isinstance(value, Markup):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Code(str(value))
    if isinstance(value, float):
        return Code(repr(value))
    raise UnsafeTemplateValue(f"a template printed a raw {type(value).__name__} {str(value)[:60]!r}: encode spec "
                              "values with |py or |ident, and wrap the emitter's own text in Code")


def _join(items: Iterable[object], sep: str = "") -> Code:
    """``join`` that encodes nothing implicitly: every item must be printable by ``finalize``."""
    return Code(sep.join(str(_finalize(v)) for v in items))


@functools.lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    if not TEMPLATE_DIR.is_dir():
        raise FileNotFoundError(f"polygen templates not found at {TEMPLATE_DIR} (the package polygen._templates): "
                                "a broken install")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, trim_blocks=False, lstrip_blocks=False,
                             autoescape=True, finalize=_finalize)
    env.filters.update(py=py, ident=ident, scalar=scalar, comment=comment, join=_join)
    for unsafe in ("tojson", "safe", "string"):  # each would print text as code without encoding it
        env.filters.pop(unsafe, None)
    return env


def render(template: str, **context: object) -> str:
    text = environment().get_template(template).render(**context)
    lines = [line.rstrip() for line in text.splitlines()]
    out: list[str] = []
    for line in lines:  # collapse runs of blank lines left by template control flow
        if line == "" and len(out) >= 2 and out[-1] == "" and out[-2] == "":
            continue
        out.append(line)
    return "\n".join(out).rstrip() + "\n"


def provenance_header(name: str, spec_hash: str, version: str, backend: str, source: str, compiler: str) -> Code:
    """The header's first lines; spec text enters only as literals (``source`` is a user's file name), and
    only from the third line on: Python takes a ``coding[:=]…`` comment on line 1 or 2 as the file's encoding,
    so a file named ``x coding=utf_16 .toml`` must not land there."""
    return Code("\n".join([
        f"# Generated by polygen {version} ({backend} backend) from spec {str(py(name))} -- do not edit by hand.",
        f"# spec sha256: {hex_digest(spec_hash)}",
        f"# regenerate:  polygen build {ident(name)}",
        f"# compiler key: {hex_digest(compiler)}",
        f"# spec source: {str(py(source))}",
    ]))
