"""The dtypes polygen serves and how each is planned: one table, read by the compiler (which never imports
torch: dtypes are names here) and by the run-time code that keys a generated module's plan tables.

float64 has no plans of its own: restarts are placed against a dtype's unit roundoff, and every segment a
placement for float32's roundoff admits is admitted for float64's smaller one too, so float64 runs float32's
plans (valid, though possibly with a restart float64 alone would not need), priced at its own item size.
"""

from __future__ import annotations

UNIT_ROUNDOFF = {"float64": 2.0**-53, "float32": 2.0**-24, "bfloat16": 2.0**-8, "float16": 2.0**-11}
ITEMSIZE = {"float64": 8, "float32": 4, "bfloat16": 2, "float16": 2}
DTYPES = tuple(UNIT_ROUNDOFF)  # every dtype a generated function accepts
PLAN_CLASSES = ("float32", "bfloat16", "float16")  # the plan tables a generated module carries, one per class


def dtype_name(dtype: object) -> str:
    """The name of a served dtype given as a name ("float64"), a torch dtype or its str ("torch.float64");
    a ValueError names the served ones for anything else."""
    name = str(dtype).removeprefix("torch.")
    if name not in UNIT_ROUNDOFF:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}; got {str(dtype)[:40]!r}")
    return name


def plan_class(dtype: object) -> str:
    """Which plan table serves ``dtype``: its own, or float32's for float64."""
    name = dtype_name(dtype)
    return "float32" if name == "float64" else name
