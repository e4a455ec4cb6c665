"""`edgekit demo`, the README's first command: every installed target, a real model, one table."""
import pytest

from edgekit.cli import main
from edgekit.registry import TARGETS, get_target_class

pytestmark = pytest.mark.slow


def test_demo_takes_the_digits_cnn_through_every_installed_target(tmp_path, capsys):
    code = main(["demo", "-o", str(tmp_path), "-q"])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("target"))
    rows = [line.split() for line in lines[header + 2 :] if line and not line.startswith(("p50", "not installed"))]
    installed = [n for n in TARGETS if get_target_class(n).available()]
    assert sorted({r[0] for r in rows}) == sorted(installed)
    accuracy = float(lines[[i for i, l in enumerate(lines) if l.startswith("digits CNN")][0]].split("accuracy ")[1].split()[0])
    assert accuracy >= 0.95
    for row in rows:
        target, precision, status = row[0], row[1], row[-1]
        if status == "unverified":  # Core ML on Linux: structural checks only, and said so
            continue
        assert status == "passed", row
        test_acc, p50 = float(row[6]), float(row[7])
        assert test_acc >= accuracy - 0.01, row  # int8 loses at most a point of real test accuracy
        assert 0 < p50 < 50, row
    assert any(r[0] == "tflite" and r[1] == "int8" for r in rows)
    # every target's manifest is one the typed schema reads back unchanged
    from edgekit import manifest as manifest_mod

    written = sorted(tmp_path.rglob("*.edgekit.json"))
    assert {manifest_mod.load(p).target for p in written} == set(installed)
    for path in written:
        doc = manifest_mod.read(path)
        assert manifest_mod.Manifest.from_dict(doc).to_dict() == doc, path
