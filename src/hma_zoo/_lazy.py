"""Lazy attribute access for packages (PEP 562), so ``import hma_zoo`` and its subpackages stay light.

Imports nothing heavy itself: simulator worker processes import ``hma_zoo.data`` without importing torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_getattr(package: str, table: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``table[name]`` (a module path) on first access of ``name``."""

    def module_getattr(name: str) -> Any:
        if name in table:
            return getattr(importlib.import_module(table[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return module_getattr
