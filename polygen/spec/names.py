"""Which names a spec may give its symbols: they become Python identifiers in generated code.

Spec names are lower-case identifiers of bounded length and never Python keywords: the compiler's own
names are upper-case (variables become ``X``, ``Y``), ``_private`` helpers and numbered temporaries, and
lets and coefficients never reach the code by name. Names that do appear as written — fitted parameters,
bound as plan-function locals — may in addition be no builtin and no name the generated modules bind
themselves; tests/test_spec_hostile.py checks RESERVED against every generated module, so a template that
starts binding a new name must add it here.
"""

from __future__ import annotations

import builtins
import keyword
import re

from polygen.runtime.specfiles import SPEC_NAME

NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
# Lower-case names bound at module level or inside plan functions by the templates and the passes.
RESERVED = frozenset({
    "apply", "choose_plan", "coef", "lincomb", "math", "matmul", "os", "pair_matmul", "polygen", "sym_matmul",
    "table", "tile_shared_bytes", "tl", "torch", "triton", "triton_op", "typing", "wrap_triton",
})
TEMPORARY = re.compile(r"[cthio][0-9]+|.*_kernel")  # builder temporaries (t0, h1, i2, o3), loop params (c0)


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
