"""A small package with a C extension module."""
from ._native import fletcher16, pointer_bits

__all__ = ["fletcher16", "pointer_bits"]
