"""How spec names become names in generated code: one checked bijection, and the compiler's own names.

A spec's symbols are lower-case identifiers (``SPEC_SYMBOL``). Two kinds reach generated code as identifiers:
a matrix variable ``x`` becomes ``X`` (:func:`matrix_name`) and a fitted parameter keeps its spelling
(:func:`scalar_name`); lets, coefficients and table columns are folded into schedule ops and never appear by
name (only in comments). Either kind takes one more trailing underscore when its plain form would be one of
the compiler's own names, or already ends in an underscore: ``g → G_`` (``G`` is the input), ``g_ → G__``,
``x → X``, ``alpha → alpha``, ``torch → torch_``, ``t0 → t0_``. That is injective by construction: plain
images never end in ``_``, escaped ones always do, and each part is injective on its own (``upper()`` is, on
lower-case names); no compiler name ends in ``_``, so no image is one. Matrix names start upper-case and
scalar names lower-case, so the two kinds never meet either. :class:`Namer` hands the names out and checks
all of it again for every name, so a later change of this rule cannot silently merge two symbols (issue 23:
``g`` and ``g_`` both became ``G_``, and a spec that verified computed another function).

The compiler's own names (``COMPILER_NAMES``, ``is_compiler_name``) are every name the passes and the
templates bind or read in a generated module next to spec symbols: the input ``G``, the builders' numbered
temporaries and loop parameters (:func:`temporary`), the templates' locals, imports and module constants,
Python's builtins, and anything starting with ``_``. The Gram plan's ``X``, ``R``, ``Q`` live in plan functions
that hold no spec symbol at all (see ``GRAM_X``). tests/test_names.py checks this set
against every generated module, so a template that starts binding a new name must add it here.
"""

from __future__ import annotations

import builtins
import keyword
import re
from collections.abc import Callable

from polygen.errors import ScheduleError

SPEC_SYMBOL = re.compile(r"[a-z][a-z0-9_]{0,31}")  # what a spec may name a symbol (spec/names.py enforces it)

INPUT = "G"  # the normalized input, the plan functions' argument
GRAM_X, GRAM_R, GRAM_Q = "X", "R", "Q"  # plan_gram_space: X₀ (then QX₀), R = XXᵀ, the accumulated Q
TEMPORARY_PREFIXES = "cthio"  # c: loop parameters; t, h, i, o: temporaries of step, prologue, init, output regions
TEMPORARY = re.compile(rf"[{TEMPORARY_PREFIXES}][0-9]+|.*_kernel")

# Bound or read by the templates (templates/*/*.jinja) at module level or inside plan functions (the arguments of
# apply and choose_plan are their own locals, and keyword names such as alpha= are no bindings).
TEMPLATE_NAMES = frozenset({
    # imports and module-level names
    "torch", "triton", "tl", "triton_op", "wrap_triton", "math", "os", "typing", "polygen", "Problem",
    "lincomb", "matmul", "pair_matmul", "sym_matmul", "choose_plan", "apply", "coef", "table",
    "tile_shared_bytes",
    "SPEC_NAME", "SPEC_HASH", "POLYGEN_VERSION", "BACKEND", "TARGET", "POWER", "INPUT_KIND", "FINITE_DTYPES", "MATMULS",
    "LONG_SIDE_SUMS", "PROBLEM", "PLAN_FUNCTIONS",
})
COMPILER_NAMES = TEMPLATE_NAMES | {INPUT}
# X, R, Q are the Gram plan's own and not in COMPILER_NAMES: that plan names none of the spec's symbols (its one
# variable is always X), and each plan is a function of its own, so x → X in a direct plan meets no Gram name.
assert not any(n.endswith("_") for n in COMPILER_NAMES), "the escape rule needs compiler names without a trailing _"


def is_compiler_name(name: str) -> bool:
    """Whether generated code may use ``name`` for something of its own (so no spec symbol may become it)."""
    return (name in COMPILER_NAMES or name.startswith("_") or bool(TEMPORARY.fullmatch(name))
            or hasattr(builtins, name) or keyword.iskeyword(name) or keyword.issoftkeyword(name))


def _escaped(plain: str) -> str:
    return plain + "_" if plain.endswith("_") or is_compiler_name(plain) else plain


def matrix_name(symbol: str) -> str:
    """The code name of the matrix variable ``symbol`` (upper case, escaped: x → X, g → G_, g_ → G__)."""
    return _escaped(symbol.upper())


def scalar_name(symbol: str) -> str:
    """The code name of the fitted parameter ``symbol`` (as written, escaped: alpha → alpha, torch → torch_)."""
    return _escaped(symbol)


def may_bind(name: str, form: str) -> bool:
    """Whether a plan of ``form`` may bind ``name`` in its function: a compiler temporary or loop parameter, the
    Gram plan's own X, R, Q in a Gram plan, or a name that no template binds or reads (a spec symbol's code name).
    The emitters check every binding of every schedule with this before printing it."""
    if TEMPORARY.fullmatch(name) and not name.endswith("_kernel"):
        return True
    if form == "gram" and name in (GRAM_X, GRAM_R, GRAM_Q):
        return True
    return name.isidentifier() and not is_compiler_name(name)


def temporary(prefix: str, number: int) -> str:
    """A compiler temporary (t0, h1, i2, o3) or loop parameter (c0): never a spec symbol's code name."""
    if prefix not in TEMPORARY_PREFIXES or len(prefix) != 1:
        raise ValueError(f"temporary prefix must be one of {TEMPORARY_PREFIXES!r}, got {prefix!r}")
    return f"{prefix}{int(number)}"


class Namer:
    """The spec → code names of one schedule, checked: each spec symbol has one kind and one code name, no two
    symbols share a code name, and no code name is the compiler's own. Raises ScheduleError otherwise (a
    compiler bug, or a hand-built map with a name no spec file could hold)."""

    def __init__(self, spec: str = "") -> None:
        self.spec = spec
        self.code: dict[str, tuple[str, str]] = {}  # spec symbol -> (kind, code name)
        self.symbol: dict[str, str] = {}  # code name -> spec symbol

    def matrix(self, symbol: str) -> str:
        return self._name(symbol, "matrix", matrix_name)

    def scalar(self, symbol: str) -> str:
        return self._name(symbol, "scalar", scalar_name)

    def _name(self, symbol: str, kind: str, rule: Callable[[str], str]) -> str:
        where = f"{self.spec}: " if self.spec else ""
        if symbol in self.code:
            have, code = self.code[symbol]
            if have != kind:
                raise ScheduleError(f"{where}symbol {symbol!r} already names a {have}, not a {kind}")
            return code
        if not isinstance(symbol, str) or not SPEC_SYMBOL.fullmatch(symbol) or keyword.iskeyword(symbol) \
                or keyword.issoftkeyword(symbol):
            raise ScheduleError(f"{where}{str(symbol)[:40]!r} is not a spec name (a lower-case identifier of at "
                                "most 32 characters, no keyword)")
        code = rule(symbol)
        if code in self.symbol:
            raise ScheduleError(f"{where}symbols {self.symbol[code]!r} and {symbol!r} would both be {code!r} in "
                                "generated code")
        if is_compiler_name(code):
            raise ScheduleError(f"{where}symbol {symbol!r} would be {code!r}, a name of the generated code's own")
        self.code[symbol] = (kind, code)
        self.symbol[code] = symbol
        return code
