"""The command line itself: fast start, documented exit codes, one-line errors."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edgekit.cli import COMMANDS, main
from edgekit.errors import EXIT_CODES

HEAVY = ("torch", "numpy", "litert_torch", "coremltools", "executorch", "tensorflow", "onnxruntime", "onnx", "matplotlib", "ai_edge_litert")
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["convert", "--help"]] + [[c, "--help"] for c in COMMANDS])
def test_help_imports_no_ml_framework(argv):
    code = (
        "import sys, runpy\n"
        f"sys.argv = ['edgekit'] + {argv!r}\n"
        "try:\n    runpy.run_module('edgekit', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy), file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY=\n" in proc.stderr or proc.stderr.rstrip().endswith("HEAVY="), proc.stderr[-500:]
    assert proc.stdout.strip()


def test_version():
    proc = subprocess.run([sys.executable, "-m", "edgekit", "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and re.fullmatch(r"edgekit \d+\.\d+\.\d+\n", proc.stdout)


def test_exit_codes_are_documented_in_readme():
    readme = (ROOT / "README.md").read_text()
    for code, text in EXIT_CODES.items():
        assert re.search(rf"^\|\s*{code}\s*\|", readme, re.M), f"exit code {code} missing from README.md"


def test_unknown_target_suggests_the_closest(capsys):
    assert main(["convert", "m.pt", "--target", "tflit"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown target 'tflit'; did you mean 'tflite'? known targets: tflite")
    assert "Traceback" not in err


def test_errors_are_one_line_and_verbose_adds_the_traceback(tmp_path, capsys):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00" * 64)
    assert main(["convert", str(junk), "-o", str(tmp_path / "out")]) == 3
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["  load ... failed", f"error: {junk}: not a PyTorch model file (not a torch.save, TorchScript or ExportedProgram archive)"]
    assert main(["convert", str(junk), "-o", str(tmp_path / "out"), "--verbose"]) == 3
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_bad_option_value_is_a_usage_error(capsys):
    assert main(["convert", "--model", "tests.models:mlp", "-i", "x:1x64", "--quantize", "int3"]) == 2
    assert "unknown precision 'int3'" in capsys.readouterr().err
