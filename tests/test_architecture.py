"""A new target is one package plus one registry entry: a toy target from a temporary distribution
(its own Target, Runtime and settings, registered as an ``edgekit.targets`` entry point) goes
through convert, verify, inspect and bench without any edit to edgekit itself.

The toy format is a real one: the ExportedProgram saved with torch.export.save and run with
torch.export.load, so verification compares two real computations.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

TOY_TARGET = '''
from __future__ import annotations

import collections
import os
from dataclasses import dataclass

from edgekit.errors import UsageError
from edgekit.targets.base import ConvertedArtifact, OnDevice, Runtime, Target, TargetSettings, TensorSpec, choice


@dataclass(frozen=True)
class ToySettings(TargetSettings):
    flavour: str = choice("plain", ("plain", "salted"), "--toy-flavour")


class ToyRuntime(Runtime):
    def load(self, path, threads=1):
        import torch

        self._program = torch.export.load(path)
        self._module = self._program.module()
        args, _ = self._program.example_inputs
        self._inputs = [TensorSpec(f"in{i}", tuple(a.shape), "float32") for i, a in enumerate(args)]
        outs = self._module(*args)
        outs = outs if isinstance(outs, (tuple, list)) else (outs,)
        self._outputs = [TensorSpec(f"out{i}", tuple(o.shape), "float32") for i, o in enumerate(outs)]
        return self

    def inputs(self):
        return self._inputs

    def outputs(self):
        return self._outputs

    def run(self, inputs):
        import torch

        with torch.no_grad():
            outs = self._module(*[torch.from_numpy(x) for x in inputs])
        outs = outs if isinstance(outs, (tuple, list)) else (outs,)
        return [o.numpy() for o in outs]

    def version(self):
        return "toy-runtime 1.0"


class ToyTarget(Target):
    name = "toy"
    suffix = ".toy"
    precisions = ("none",)
    requires = ("torch",)
    extra = "toy"
    on_device = OnDevice("Toy", python_module="torch")
    settings_class = ToySettings

    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument("--toy-flavour", dest="toy_flavour", default=None)

    @classmethod
    def options_from_args(cls, args):
        return {} if args.toy_flavour is None else {"flavour": args.toy_flavour}

    def convert(self, model, precision, options, calibration, workdir):
        import torch

        settings = self.read_settings(options, precision)
        path = os.path.join(workdir, "model.toy")
        torch.export.save(model.exported_program(), path)
        runtime = ToyRuntime().load(path)
        return ConvertedArtifact(path, runtime.inputs(), runtime.outputs(), {"toy-converter": "1.0"},
                                 details={"flavour": settings.flavour})

    def runtime(self):
        return ToyRuntime()

    def inspect(self, path):
        program = ToyRuntime().load(path)._program
        ops = collections.Counter(str(n.target) for n in program.graph.nodes if n.op == "call_function")
        runtime = ToyRuntime().load(path)
        return {"target": "toy", "size_bytes": os.path.getsize(path), "ops": dict(ops),
                "inputs": [s.to_dict() for s in runtime.inputs()], "outputs": [s.to_dict() for s in runtime.outputs()],
                "quantized_tensors": [], "summary": {"format": "toy"}}
'''

TOY_MODEL = '''
import torch


def mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
'''


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory):
    """A folder holding the toy distribution (package + dist-info with its entry point), on PYTHONPATH."""
    root = tmp_path_factory.mktemp("plugin")
    (root / "toyplug").mkdir()
    (root / "toyplug" / "__init__.py").write_text("")
    (root / "toyplug" / "target.py").write_text(textwrap.dedent(TOY_TARGET))
    (root / "toymodels.py").write_text(textwrap.dedent(TOY_MODEL))
    info = root / "toyplug-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toyplug\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[edgekit.targets]\ntoy = toyplug.target:ToyTarget\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    return root, env


def _edgekit(args, env, cwd):
    return subprocess.run([sys.executable, "-m", "edgekit", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def test_a_plugin_target_converts_verifies_inspects_and_benches(plugin_env, tmp_path):
    root, env = plugin_env
    out = tmp_path / "out"
    proc = _edgekit(["convert", "--model", "toymodels:mlp", "--input", "x:1x8", "--target", "toy",
                     "--toy-flavour", "salted", "-o", str(out), "--name", "mlp"], env, root)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "mlp.toy.edgekit.json").read_text())
    assert manifest["target"] == "toy" and manifest["format"] == "toy"
    assert manifest["status"] == "passed"
    assert manifest["parity"]["cosine"] > 0.99999
    assert manifest["target_details"] == {"flavour": "salted"}
    assert manifest["versions"]["runtime"] == "toy-runtime 1.0"

    proc = _edgekit(["inspect", str(out / "mlp.toy"), "--json"], env, root)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["ops"]["aten.linear.default"] == 2
    assert info["manifest"]["status"] == "passed"

    report = tmp_path / "bench.json"
    proc = _edgekit(["bench", str(out / "mlp.toy"), "--runs", "5", "--warmup", "1", "--json", str(report)], env, root)
    assert proc.returncode == 0, proc.stderr
    records = json.loads(report.read_text())
    records = records.get("results", records) if isinstance(records, dict) else records
    assert records[0]["status"] == "ok", records[0]
    assert records[0]["artifact"]["target"] == "toy"


def test_a_plugin_target_validates_its_own_settings(plugin_env, tmp_path):
    root, env = plugin_env
    proc = _edgekit(["convert", "--model", "toymodels:mlp", "--input", "x:1x8", "--target", "toy",
                     "--toy-flavour", "spicy", "-o", str(tmp_path / "out")], env, root)
    assert proc.returncode == 2
    assert "--toy-flavour 'spicy': choose one of plain, salted" in proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_unknown_target_lists_plugins_too(plugin_env):
    root, env = plugin_env
    proc = _edgekit(["convert", "--model", "toymodels:mlp", "--input", "x:1x8", "--target", "tyo"], env, root)
    assert proc.returncode == 2
    assert "did you mean 'toy'?" in proc.stderr


def test_every_builtin_target_declares_the_interface():
    from edgekit.registry import TARGETS, get_target_class
    from edgekit.targets.base import OnDevice, Target, TargetSettings

    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    for name in TARGETS:
        cls = get_target_class(name)
        assert issubclass(cls, Target) and issubclass(cls.settings_class, TargetSettings)
        assert isinstance(cls.on_device, OnDevice), name
        assert cls.suffix.startswith(".") and cls.default_precision in cls.precisions
        assert set(cls.on_device.apps) <= {"android", "ios"}
        # the extra a missing module points to (named after the target unless declared) is a real one
        assert (cls.name if cls.extra is None else cls.extra) in {"", *extras}, name
        cls()  # abstract methods all implemented


def test_a_missing_module_points_to_the_extra_named_after_the_target():
    from edgekit.errors import EXIT_MISSING_DEPENDENCY, MissingDependencyError
    from edgekit.targets.base import Target

    class Needy(Target):
        name, suffix, precisions, requires = "needy", ".needy", ("none",), ("edgekit_no_such_module",)

    class Core(Needy):
        name, extra = "core", ""  # needs nothing beyond edgekit's own dependencies

    with pytest.raises(MissingDependencyError) as err:
        Needy.require()
    assert err.value.exit_code == EXIT_MISSING_DEPENDENCY
    assert str(err.value) == ("the needy target needs edgekit_no_such_module, which is not installed "
                              "(pip install 'edgekit[needy]')")
    with pytest.raises(MissingDependencyError, match=r"\(pip install edgekit\)$"):
        Core.require()


def test_each_typed_error_takes_its_exit_code_from_its_class_line():
    from edgekit import errors

    codes = {cls.__name__: cls.exit_code for cls in (
        errors.UsageError, errors.ModelLoadError, errors.UnsafePickleError, errors.DataError, errors.ConversionError,
        errors.MissingDependencyError, errors.OutputError, errors.DeviceError, errors.VerificationFailed)}
    assert codes == {"UsageError": 2, "ModelLoadError": 3, "UnsafePickleError": 3, "DataError": 4,
                     "ConversionError": 5, "MissingDependencyError": 6, "OutputError": 7, "DeviceError": 8,
                     "VerificationFailed": 1}
    assert errors.EdgekitError("x").exit_code == 70 and set(codes.values()) <= set(errors.EXIT_CODES)


def test_each_direct_recipe_is_declared_once_with_what_it_calls():
    """benchmarks/suite/direct.py: a recipe's docstring is the text RESULTS.md shows for it."""
    from benchmarks.suite import direct

    assert set(direct.RECIPES) == set(direct.CONVERT) and len(direct.CONVERT) == 14
    assert direct.RECIPES[("tflite", "none")] == "litert_torch.convert(model, args).export(path)"
    assert direct.RECIPES[("onnx", "int8")] == (
        "torch.onnx.export, then onnxruntime quant_pre_process (left out where it fails, as its symbolic shape "
        "inference does on BERT's Expand) and quantize_static(model, out, reader) with its "
        "defaults (QDQ, per-tensor, QInt8, MinMax)")
    assert {target for target, _ in direct.CONVERT} == set(direct.SUFFIX)  # every target has its file suffix


def test_a_target_missing_a_method_cannot_be_built():
    from edgekit.targets.base import Target

    class Half(Target):
        name, suffix, precisions = "half", ".half", ("none",)

    with pytest.raises(TypeError, match="abstract"):
        Half()
