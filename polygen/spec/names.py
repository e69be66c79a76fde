"""Which names a spec may give its symbols, some of which become Python identifiers in generated code.

Spec names are lower-case identifiers of bounded length and never Python keywords (``SPEC_SYMBOL``). How they
reach generated code is decided in one place, polygen/ir/names.py: matrix variables become upper-case names
(``x`` → ``X``), fitted parameters keep their spelling, and a trailing underscore escapes any name that would
meet the compiler's own (``g`` → ``G_``, ``g_`` → ``G__``), a bijection that the compiler checks. Lets,
coefficients and table columns never reach the code by name. So collisions are impossible by construction;
the one rule kept here on top is that a fitted parameter, which the generated code shows as written, is no
builtin and no name the generated modules use (RESERVED, TEMPORARY: ir/names.py's own lists), so that the code
reads the parameter under the name the spec gave it. Names valid before issue 23 stay valid.
"""

from __future__ import annotations

import builtins
import keyword

from polygen.ir.names import SPEC_SYMBOL, TEMPLATE_NAMES, TEMPORARY
from polygen.runtime.specfiles import SPEC_NAME

NAME = SPEC_SYMBOL
# Lower-case names bound at module level or inside plan functions by the templates and the passes.
RESERVED = frozenset(n for n in TEMPLATE_NAMES if n[:1].islower())
__all__ = ["NAME", "RESERVED", "TEMPORARY", "check_name", "check_spec_name"]


def check_name(value: object, what: str, *, in_code: bool = False) -> str:
    """``value`` if it may name a spec symbol (``in_code``: one that appears in generated code as written),
    else ValueError saying why."""
    if not isinstance(value, str):
        raise ValueError(f"{what} name must be a string, got {type(value).__name__}")
    if not NAME.fullmatch(value):
        raise ValueError(f"{what} name {value[:40]!r} must be a lower-case identifier of at most 32 characters "
                         "(a-z, then a-z, 0-9, _)")
    if keyword.iskeyword(value) or keyword.issoftkeyword(value):
        raise ValueError(f"{what} name {value!r} is a Python keyword")
    if in_code and (hasattr(builtins, value) or value in RESERVED or TEMPORARY.fullmatch(value)):
        raise ValueError(f"{what} name {value!r} is reserved (a Python builtin or a name the generated code "
                         "uses)")
    return value


def check_spec_name(value: str) -> str:
    """A spec's own name: it names generated files, modules and kernels, so an identifier and never a path."""
    if not SPEC_NAME.fullmatch(value) or keyword.iskeyword(value) or keyword.issoftkeyword(value):
        raise ValueError(f"name must be an identifier of at most 64 characters (letters, digits, _), got "
                         f"{value[:80]!r}")
    return value
