"""Load generated code by spec name and dispatch by device; what the optimizers import (never codegen/)."""

from polygen.runtime.loader import GENERATED_DIR, PolygenFunction, load

__all__ = ["GENERATED_DIR", "PolygenFunction", "load"]
