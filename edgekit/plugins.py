"""Entry-point plugins for edgekit's registries (targets, device kinds): one lookup, one loader.

A registry keeps its built-ins as ``name -> "module:Class"``; a distribution adds more through an
entry point group. Standard library only, and nothing is read until a registry asks.
"""
from __future__ import annotations

import importlib
from functools import lru_cache

from edgekit.errors import UsageError


@lru_cache(maxsize=None)
def entry_points_of(group: str) -> tuple[tuple[str, str], ...]:
    """(lower-case name, "module:Class") of every entry point in ``group``, read once per process."""
    from importlib.metadata import entry_points

    return tuple((ep.name.lower(), ep.value) for ep in entry_points(group=group))


def plugins(group: str, builtin) -> dict[str, str]:
    """The entry points of ``group`` whose names the built-in table does not already hold."""
    return {name: ref for name, ref in entry_points_of(group) if name not in builtin}


def load(ref: str, what: str):
    """Import ``module:Class``; a wrong or broken reference is a usage error naming ``what``."""
    module_name, _, class_name = ref.partition(":")
    try:
        return getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"{what}: cannot load {ref} ({type(exc).__name__}: {exc})") from exc
