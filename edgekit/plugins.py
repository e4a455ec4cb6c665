"""Entry-point plugins for edgekit's registries (targets, device kinds): one lookup, one loader.

A registry keeps its built-ins as ``name -> "module:Class"``; a distribution adds more through an
entry point group. Standard library only, and nothing is read until a registry asks.
"""
from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from edgekit.errors import UsageError


@lru_cache(maxsize=None)
def entry_points_of(group: str) -> tuple[tuple[str, str], ...]:
    """(lower-case name, "module:Class") of every entry point in ``group``, read once per process."""
    from importlib.metadata import entry_points

    return tuple((ep.name.lower(), ep.value) for ep in entry_points(group=group))


@dataclass(frozen=True)
class Registry:
    """One registry: its built-in table, its entry point group, and what its entries are called in
    messages ("target", "device kind"). A built-in name always wins over a plugin of that name."""

    builtin: Mapping[str, str]
    group: str
    what: str

    def plugins(self) -> dict[str, str]:
        """The group's entry points whose names the built-in table does not already hold."""
        return {name: ref for name, ref in entry_points_of(self.group) if name not in self.builtin}

    def refs(self) -> dict[str, str]:
        """Every entry, built-in first (their order is the order of tables and of `--target all`)."""
        return {**self.builtin, **self.plugins()}

    def load(self, name: str):
        """The class registered as ``name``; the entry points are read only when no built-in has it."""
        return load(self.builtin.get(name) or self.refs()[name], f"{self.what} {name!r}")


def load(ref: str, what: str):
    """Import ``module:Class``; a wrong or broken reference is a usage error naming ``what``."""
    module_name, _, class_name = ref.partition(":")
    try:
        return getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"{what}: cannot load {ref} ({type(exc).__name__}: {exc})") from exc
