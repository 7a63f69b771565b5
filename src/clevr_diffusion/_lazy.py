"""PEP 562 lazy exports: a package names its public objects without importing torch to do so.

``import clevr_diffusion`` (and so every ``clevr-diffusion`` command, even ``--help``) would
otherwise import torch, diffusers and every submodule, seconds before anything happens. A package
lists where each public name lives; the module holding it is imported on first attribute access.
The same names are imported under ``TYPE_CHECKING`` in the package, for type checkers and the
API docs.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__all__ = ["install_lazy_exports"]


class _LazyPackage(types.ModuleType):
    """A package module that imports the module of a public name on the name's first use."""

    _lazy_exports: dict[str, str]

    def __getattr__(self, name: str) -> Any:
        exports = self.__dict__.get("_lazy_exports", {})
        if name not in exports:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name], self.__name__), name)
        self.__dict__[name] = value  # later look-ups skip __getattr__
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        # Importing a submodule binds it on its package: `evaluation.evaluate` the module would
        # shadow `evaluation.evaluate` the function. The exported object wins, as with eager imports.
        exports = self.__dict__.get("_lazy_exports", {})
        if isinstance(value, types.ModuleType) and name in exports and value.__name__ == f"{self.__name__}.{name}":
            value = getattr(value, name)
        super().__setattr__(name, value)

    def __dir__(self) -> list[str]:
        return sorted(set(self.__dict__) | set(self.__dict__.get("_lazy_exports", {})))


def install_lazy_exports(package: str, exports: dict[str, str]) -> None:
    """Make ``package`` import the module of each of its public names on the name's first use.

    Args:
        package: The package's ``__name__``.
        exports: Public name -> the module defining it, relative to ``package`` (e.g. ``".labels"``).
    """
    module = sys.modules[package]
    module.__dict__["_lazy_exports"] = exports
    module.__class__ = _LazyPackage
