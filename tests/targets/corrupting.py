"""One helper for the tests that make a target write a wrong artifact: the real converter runs, then
``corrupt(path)`` damages what it wrote, before verification sees it."""
from __future__ import annotations

from typing import Any, Callable


def corrupt_after_convert(monkeypatch, target_class, corrupt: Callable[[str], Any]) -> list:
    """Patch ``target_class.convert``; the returned list gets what ``corrupt`` returned, per conversion."""
    real_convert = target_class.convert
    corrupted: list = []

    def convert_then_corrupt(self, *args, **kwargs):
        converted = real_convert(self, *args, **kwargs)
        corrupted.append(corrupt(converted.path))
        return converted

    monkeypatch.setattr(target_class, "convert", convert_then_corrupt)
    return corrupted
