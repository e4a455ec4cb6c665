"""Meta-tests: every registered target and command has tests, and every precision a target claims is
exercised by name in its test file (a new entry without tests fails here)."""
from pathlib import Path

import pytest

from edgekit.cli import COMMANDS
from edgekit.registry import TARGETS, get_target_class

TESTS = Path(__file__).resolve().parent


@pytest.mark.parametrize("name", list(TARGETS))
def test_every_target_has_a_test_file_naming_each_precision(name):
    path = TESTS / "targets" / f"test_{name.replace('-', '_')}.py"
    assert path.exists(), f"target {name!r} has no {path.relative_to(TESTS.parent)}"
    text = path.read_text()
    cls = get_target_class(name)
    untested = [p for p in cls.precisions if f'"{p}"' not in text and f"'{p}'" not in text and f"{cls.__name__}.precisions" not in text]
    assert not untested, f"{name}: precisions never named in its tests: {untested}"


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_is_exercised(command):
    hits = [p for p in TESTS.rglob("test_*.py") if f'"{command}"' in p.read_text() or f"'{command}'" in p.read_text()]
    assert hits, f"no test invokes the {command!r} command"
