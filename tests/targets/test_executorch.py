"""The ExecuTorch path end to end: real torch.export, real PT2E / torchao quantization, real
to_edge_transform_and_lower with real partitioners, real .pte / .bpte files run by executorch's
own runtime. Nothing is mocked: Core ML and Vulkan programs are really lowered here, and their
status says they cannot be run on this machine.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import edgekit
from edgekit import manifest
from edgekit.cli import main
from edgekit.errors import (
    EXIT_CONVERSION,
    EXIT_OK,
    EXIT_USAGE,
    EXIT_VERIFY_FAILED,
    MissingDependencyError,
    UsageError,
)
from edgekit.options import PRECISIONS, ConvertOptions
from edgekit.registry import canonical
from edgekit.targets.executorch import ExecuTorchTarget
from edgekit.targets.executorch import delegates
from tests import models

MODELS = list(models.FACTORIES)
# what the tests below cover: the meta-test fails when a precision or an installed delegate is added untested
TESTED_PRECISIONS = {"none", "fp16", "int8", "int8-dynamic", "int8-int4"}
TESTED_DELEGATES = {"xnnpack", "none", "coreml", "vulkan"}


# -- models with something XNNPACK or the runtime does not take (factories for --model) --------------


class CumulativeMixer(torch.nn.Module):
    def forward(self, x):
        return torch.cumsum(x, dim=-1)  # XNNPACK has no cumsum: the portable kernel runs it


class WithFallback(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(32, 16)
        self.mixer = CumulativeMixer()
        self.out = torch.nn.Linear(16, 4)

    def forward(self, x):
        return self.out(self.mixer(torch.relu(self.fc(x))))


class Gate(torch.nn.Module):
    def forward(self, x):
        return torch.special.erfinv(torch.tanh(x) * 0.5)  # executorch 1.5's runtime has no erfinv kernel


class WithErfinv(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(32, 16)
        self.gate = Gate()

    def forward(self, x):
        return self.gate(self.fc(x))


def with_fallback():
    torch.manual_seed(0)
    return WithFallback().eval()


def with_erfinv():
    torch.manual_seed(0)
    return WithErfinv().eval()


# -- shared conversions (session-scoped: each real conversion happens once) --------------------------


def _convert(model_files, calibration_files, out, name, precision=None, **kw):
    return edgekit.convert(
        model_files[name], target="executorch", quantize=precision, arch=models.FACTORIES[name],
        inputs=models.INPUT_SPECS[name], calibration=calibration_files[name], output_dir=str(out), **kw,
    )[0]


@pytest.fixture(scope="session")
def fp32(model_files, calibration_files, tmp_path_factory):
    """Every test model in fp32 (XNNPACK); the two-input dict model also with --bundle."""
    out = tmp_path_factory.mktemp("et_fp32")
    return {
        name: _convert(model_files, calibration_files, out, name,
                       target_options={"executorch": {"bundle": name == "two_input_dict"}})
        for name in MODELS
    }


@pytest.fixture(scope="session")
def cnn_precisions(model_files, calibration_files, tmp_path_factory):
    """small_cnn in each precision through Target.convert, all from ONE prepared model, as a
    multi-target run shares it; records whether the shared ExportedProgram came through untouched."""
    from edgekit.data import load_samples, split_holdout
    from edgekit.export import prepare
    from edgekit.loading import load_model
    from edgekit.options import InputSpec
    from edgekit.verify import verify

    loaded = load_model(model_files["small_cnn"], arch=models.FACTORIES["small_cnn"])
    model = prepare(loaded, [InputSpec.parse(s) for s in models.INPUT_SPECS["small_cnn"]])
    calibration, held_out = split_holdout(load_samples(calibration_files["small_cnn"], model.inputs, limit=124), 100)
    program = model.exported_program()
    weights_before = {k: v.clone() for k, v in program.state_dict.items()}
    target = ExecuTorchTarget()
    results = {}
    for precision in ("none", "fp16", "int8", "int8-dynamic"):
        options = ConvertOptions(targets=("executorch",), target_options={"executorch": {"bundle": precision == "int8"}})
        workdir = str(tmp_path_factory.mktemp(f"et_cnn_{precision}"))
        converted = target.convert(model, precision, options, calibration.samples, workdir)
        parity = verify(model, target.runtime().load(converted.path), held_out, PRECISIONS[precision].tolerance)
        target.add_extra_files(converted, model, held_out, options, workdir)
        results[precision] = {"converted": converted, "parity": parity, "size": os.path.getsize(converted.path)}
    results["shared_program_untouched"] = program is model.exported_program() and all(
        torch.equal(weights_before[k], v) for k, v in program.state_dict.items()
    )
    return results


# -- registry, flags, delegates (no conversion) ------------------------------------------------------


def test_registered_with_alias_and_flags():
    from edgekit.cli import build_parser
    from edgekit.commands.convert import options_from_args

    assert canonical("pytorch-mobile") == "executorch" and canonical("ExecuTorch") == "executorch"
    assert ExecuTorchTarget.precisions == ("none", "fp16", "int8", "int8-dynamic", "int8-int4")
    assert ExecuTorchTarget.default_precision == "none" and ExecuTorchTarget.available()
    args = build_parser().parse_args(
        ["convert", "m.pt", "-t", "pytorch-mobile", "--delegate", "vulkan", "--bundle", "--bundle-samples", "3",
         "--executorch-group-size", "64"]
    )
    assert options_from_args(args)["target_options"]["executorch"] == {
        "delegate": "vulkan", "bundle": True, "bundle_samples": 3, "group_size": 64,
    }
    plain = build_parser().parse_args(["convert", "m.pt"])
    assert "executorch" not in options_from_args(plain)["target_options"]  # nothing set, nothing passed


def test_delegates_found_without_importing_them():
    code = (
        "import sys; from edgekit.targets.executorch import delegates as d; print(','.join(d.available_names())); "
        "print(sorted(m for m in sys.modules if m.startswith(('executorch.backends.', 'coremltools', 'torch'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    # the executorch 1.5.1 Linux wheel has no MPS backend; Core ML's partitioner is there (coremltools installed)
    assert out[0] == "xnnpack,coreml,vulkan,none"
    assert out[1] == "[]"  # found by file, nothing imported: not even torch


def test_delegate_errors_name_what_is_available(monkeypatch):
    with pytest.raises(UsageError, match=r"--delegate mps: the installed executorch \(1\.5\.1\) has no MPSBackend .*"
                       r"available here: xnnpack, coreml, vulkan, none"):
        delegates.resolve("mps")
    with pytest.raises(UsageError, match=r"--delegate 'qnn': unknown delegate; choose one of: xnnpack, coreml, mps, vulkan, none"):
        delegates.resolve("qnn")
    real_find_spec = delegates.importlib.util.find_spec
    monkeypatch.setattr(delegates.importlib.util, "find_spec",
                        lambda name, *a: None if name == "coremltools" else real_find_spec(name, *a))
    with pytest.raises(MissingDependencyError, match=r"coremltools \(needed by --delegate coreml\) is not installed") as err:
        delegates.resolve("coreml")
    assert err.value.hint == "pip install 'edgekit[coreml]'"
    with pytest.raises(UsageError, match="has no option 'delgate' .did you mean 'delegate'.."):
        ExecuTorchTarget.settings(ConvertOptions(targets=("executorch",), target_options={"executorch": {"delgate": "none"}}))


def test_every_precision_and_installed_delegate_is_tested():
    assert TESTED_PRECISIONS == set(ExecuTorchTarget.precisions)
    assert TESTED_DELEGATES == set(delegates.available_names())


# -- real conversions ----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_fp32_every_model_verifies_fully_delegated(fp32, name):
    art = fp32[name]
    assert art.status == "passed", art.parity["reasons"]
    assert art.parity["cosine"] >= PRECISIONS["none"].tolerance.cosine
    assert art.parity["real_inputs"] and art.parity["samples"] == 32  # nothing calibrates fp32: all eval samples real
    doc = manifest.read(art.path)
    manifest.validate(doc)
    assert doc["target"] == "executorch" and doc["format"] == "pte" and doc["precision"] == "none"
    assert doc["sha256"] == manifest.file_digest(art.path)[1]
    assert [i["name"] for i in doc["inputs"]] == [s.split(":")[0] for s in models.INPUT_SPECS[name]]
    report = doc["target_details"]["delegation"]
    assert report["delegate"] == "xnnpack" and list(report["backends"]) == ["XnnpackBackend"]
    assert report["delegated_nodes"] + report["portable_nodes"] == report["nodes"] > 0
    assert doc["versions"]["executorch"] == "1.5.1" and doc["versions"]["runtime"] == "executorch 1.5.1"


@pytest.mark.slow
def test_delegation_report_of_the_test_models(fp32):
    reports = {name: manifest.read(fp32[name].path)["target_details"]["delegation"] for name in MODELS}
    for name in ("small_cnn", "mlp"):
        assert reports[name]["delegated_percent"] == 100.0 and reports[name]["portable_ops"] == []
    assert reports["small_cnn"]["delegated_ops"]["aten.convolution.default"] == 2
    # XNNPACK's mean takes only some dim sets: the dict model's mean over (H, W) stays portable
    assert reports["two_input_dict"]["delegated_percent"] == 87.5
    assert reports["two_input_dict"]["portable_ops"] == [{"op": "aten.mean.dim", "count": 1, "where": ["<root> (TwoInputDict)"]}]
    # the transformer's layer norms and attention masking stay on portable kernels in executorch 1.5
    transformer = reports["tiny_transformer"]
    assert transformer["delegated_percent"] == 67.5
    portable = {p["op"]: p for p in transformer["portable_ops"]}
    assert portable["aten.native_layer_norm.default"]["count"] == 4
    assert "encoder.layers.0.norm1 (LayerNorm)" in portable["aten.native_layer_norm.default"]["where"]


@pytest.mark.slow
def test_dict_outputs_keep_their_names_and_order(fp32):
    from edgekit.targets.executorch.runtime import ExecuTorchRuntime

    art = fp32["two_input_dict"]
    doc = manifest.read(art.path)
    assert [o["name"] for o in doc["outputs"]] == ["logits", "embedding"]  # read back from the .pte itself
    runtime = ExecuTorchRuntime().load(art.path)
    assert [s.name for s in runtime.inputs()] == ["image", "features"]
    model = models.two_input_dict()
    image, features = np.random.default_rng(3).standard_normal((1, 3, 16, 16), np.float32), np.ones((1, 6), np.float32)
    logits, embedding = runtime.run([image, features])
    with torch.no_grad():
        want = model(torch.from_numpy(image), torch.from_numpy(features))
    assert logits.shape == (1, 5) and embedding.shape == (1, 4)
    assert np.abs(logits - want["logits"].numpy()).max() < 1e-5
    assert np.abs(embedding - want["embedding"].numpy()).max() < 1e-5


@pytest.mark.slow
def test_bundled_program_round_trip(fp32, calibration_files, capsys):
    from executorch.devtools.bundled_program.serialize import deserialize_from_flatbuffer_to_bundled_program

    from edgekit.targets.executorch.bundle import _tensor_array, run_bundle

    art = fp32["two_input_dict"]
    doc = manifest.read(art.path)
    bpte = art.path[: -len(".pte")] + ".bpte"
    assert doc["extra_files"] == [{"path": os.path.basename(bpte), "size_bytes": os.path.getsize(bpte),
                                   "sha256": manifest.file_digest(bpte)[1]}]
    bundle = doc["target_details"]["bundle"]
    assert bundle["test_cases"] == 8 and bundle["max_abs_error"] < 1e-5
    # the device-side check, run here by executorch's runtime: every case within the recorded error
    result = run_bundle(bpte, atol=bundle["max_abs_error"] * 1.01 + 1e-9)
    assert result["test_cases"] == 8 and result["max_abs_error"] == pytest.approx(bundle["max_abs_error"])
    # what it carries: the verification samples as inputs, the eager model's outputs as expected outputs
    with open(bpte, "rb") as fh:
        (suite,) = deserialize_from_flatbuffer_to_bundled_program(fh.read()).method_test_suites
    case = suite.test_cases[3]
    image, features = (_tensor_array(v.val).astype(np.float32) for v in case.inputs)
    data = np.load(calibration_files["two_input_dict"])
    assert np.array_equal(image, data["image"][3]) and np.array_equal(features, data["features"][3])
    with torch.no_grad():
        want = models.two_input_dict()(torch.from_numpy(image), torch.from_numpy(features))
    logits, embedding = (_tensor_array(v.val) for v in case.expected_outputs)
    assert np.allclose(logits, want["logits"].numpy(), atol=1e-7) and np.allclose(embedding, want["embedding"].numpy(), atol=1e-7)
    # edgekit inspect reads the program inside the bundle, and the report from the .pte's manifest
    assert main(["inspect", bpte, "--json"]) == EXIT_OK
    info = json.loads(capsys.readouterr().out)
    assert info["bundled_test_cases"] == {"forward": 8} and info["delegate_calls"] == {"XnnpackBackend": 2}
    assert info["delegation"]["delegated_percent"] == 87.5  # the portable mean splits XNNPACK's part in two and info["ops"] == {"aten::mean.out": 1}


@pytest.mark.slow
def test_precisions_on_small_cnn(cnn_precisions):
    for precision in ("none", "fp16", "int8", "int8-dynamic"):
        parity = cnn_precisions[precision]["parity"]
        assert parity.status == "passed", (precision, parity.reasons)
        assert parity.worst_cosine >= PRECISIONS[precision].tolerance.cosine
        assert parity.real_inputs and parity.samples == 24
    sizes = {p: cnn_precisions[p]["size"] for p in ("none", "fp16", "int8", "int8-dynamic")}
    assert sizes["int8"] <= 0.55 * sizes["none"]  # int8 weights; the rest of the file is graph and metadata
    details = {p: cnn_precisions[p]["converted"].details for p in ("int8", "int8-dynamic")}
    assert details["int8"]["quantization"]["calibration_samples"] == 96  # 120 samples, a fifth held back
    assert "static int8 activations" in details["int8"]["quantization"]["scheme"]
    assert details["int8"]["delegation"]["delegated_percent"] == 100.0
    # the PT2E recipes work on copies: the program every other target of the run shares is unchanged
    assert cnn_precisions["shared_program_untouched"]


@pytest.mark.slow
def test_quantized_bundle_check_fails_below_its_error(cnn_precisions):
    from edgekit.targets.executorch.bundle import run_bundle

    converted = cnn_precisions["int8"]["converted"]
    bundle = converted.details["bundle"]
    assert 1e-4 < bundle["max_abs_error"] < 0.1  # int8 differs from the float reference, a little
    run_bundle(converted.extra_files[0], atol=bundle["max_abs_error"] * 1.01)
    with pytest.raises(RuntimeError, match="verification failed"):
        run_bundle(converted.extra_files[0], atol=bundle["max_abs_error"] / 10)


@pytest.mark.slow
def test_int8_int4_on_the_transformer(model_files, calibration_files, fp32, tmp_path):
    art = _convert(model_files, calibration_files, tmp_path, "tiny_transformer", "int8-int4", tolerance="top1=0")
    assert art.status == "passed", art.parity["reasons"]
    assert art.parity["cosine"] >= PRECISIONS["int8-int4"].tolerance.cosine
    facts = art.manifest["target_details"]["quantization"]
    assert facts["group_size"] == 32 and facts["quantized_linear_layers"] == 5  # 2 x (linear1, linear2) + head
    assert facts["float_linear_layers"] == [
        "encoder.layers.0.self_attn.out_proj (inside MultiheadAttention)",
        "encoder.layers.1.self_attn.out_proj (inside MultiheadAttention)",
    ]
    # the attention in/out projections (a third of the weights) stay float32 in this toy model
    assert art.size_bytes < 0.85 * fp32["tiny_transformer"].size_bytes


@pytest.mark.slow
def test_op_xnnpack_does_not_take_falls_back_to_portable(tmp_path, capsys):
    art = edgekit.convert(model_factory="tests.targets.test_executorch:with_fallback", target="executorch",
                          inputs=["x:1x32"], output_dir=str(tmp_path), name="fallback")[0]
    assert art.status == "passed" and art.parity["cosine"] >= PRECISIONS["none"].tolerance.cosine
    report = art.manifest["target_details"]["delegation"]
    assert report["delegated_percent"] == 75.0 and report["nodes"] == 4
    assert report["portable_ops"] == [{"op": "aten.cumsum.default", "count": 1, "where": ["mixer (CumulativeMixer)"]}]
    assert report["backends"] == {"XnnpackBackend": {"nodes": 3, "subgraphs": 2}}
    assert "75.0% of 4 nodes delegated (XnnpackBackend 3); portable kernels: aten.cumsum.default x1" in capsys.readouterr().err

    assert main(["inspect", art.path]) == EXIT_OK
    shown = capsys.readouterr().out
    assert "aten::cumsum.out" in shown and "delegate calls: XnnpackBackend x2" in shown
    assert "delegation (from the manifest): 75.0% of 4 nodes delegated" in shown
    os.remove(manifest.manifest_path(art.path))
    assert main(["inspect", art.path, "--json"]) == EXIT_OK
    info = json.loads(capsys.readouterr().out)
    assert info["ops"] == {"aten::cumsum.out": 1} and info["delegate_calls"] == {"XnnpackBackend": 2}
    assert "delegation" not in info and "need the manifest" in info["summary"]["delegation"]


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["none", "fp16"])  # fp16 wraps the graph: the dynamic axis must survive it
def test_dynamic_batch_runs_at_two_sizes(model_files, tmp_path, precision):
    from edgekit.targets.executorch.runtime import ExecuTorchRuntime

    art = edgekit.convert(model_files["mlp"], target="executorch", arch=models.FACTORIES["mlp"], inputs=["x:2x64"],
                          quantize=precision, dynamic=(edgekit.options.DynamicAxis.parse("x:0:1-8"),),
                          output_dir=str(tmp_path))[0]
    assert art.status == "passed", art.parity["reasons"]
    doc = manifest.read(art.path)
    assert doc["dynamic_axes"] == [{"input": "x", "axis": 0, "min": 1, "max": 8}]
    assert doc["target_details"]["dynamic_upper_bounds"] == {"x": [8, 64]}
    runtime = ExecuTorchRuntime().load(art.path)
    model = models.mlp()
    for batch in (1, 5):
        x = np.random.default_rng(batch).standard_normal((batch, 64), np.float32)
        (got,) = runtime.run([x])
        with torch.no_grad():
            want = model(torch.from_numpy(x)).numpy()
        cosine = float(np.dot(got.ravel(), want.ravel()) / (np.linalg.norm(got) * np.linalg.norm(want)))
        assert got.shape == (batch, 10) and cosine >= PRECISIONS[precision].tolerance.cosine
    with pytest.raises(RuntimeError):
        runtime.run([np.zeros((9, 64), np.float32)])  # above the declared maximum


@pytest.mark.slow
def test_delegate_none_runs_on_portable_kernels(model_files, tmp_path, capsys):
    code = main(["convert", model_files["small_cnn"], "--arch", models.FACTORIES["small_cnn"], "-i", "x:1x3x32x32",
                 "-t", "executorch", "--delegate", "none", "-o", str(tmp_path), "-q"])
    out = capsys.readouterr().out
    assert code == EXIT_OK
    row = next(line for line in out.splitlines() if line.startswith("executorch"))
    assert row.split()[:2] == ["executorch", "none"] and "passed" in row
    doc = manifest.read(tmp_path / "small_cnn.pte")
    report = doc["target_details"]["delegation"]
    assert report["backends"] == {} and report["delegated_percent"] == 0.0
    assert {p["op"] for p in report["portable_ops"]} >= {"aten.convolution.default", "aten.relu.default"}
    assert doc["parity"]["cosine"] >= PRECISIONS["none"].tolerance.cosine


@pytest.mark.slow
def test_vulkan_is_lowered_but_unverified_here(model_files, tmp_path):
    art = edgekit.convert(model_files["small_cnn"], target="executorch", arch=models.FACTORIES["small_cnn"],
                          inputs=["x:1x3x32x32"], output_dir=str(tmp_path),
                          target_options={"executorch": {"delegate": "vulkan", "bundle": True}})[0]
    assert art.status == "unverified"
    bundle = art.manifest["target_details"]["bundle"]  # written for the device, not run here
    assert bundle["test_cases"] == 8 and "max_abs_error" not in bundle and "not_run_here" in bundle
    assert os.path.exists(art.path[: -len(".pte")] + ".bpte")
    (reason,) = art.parity["reasons"]
    assert reason.startswith("VulkanBackend runs only on GPUs with Vulkan") and "XnnpackBackend" in reason
    report = art.manifest["target_details"]["delegation"]
    assert list(report["backends"]) == ["VulkanBackend"] and report["delegated_percent"] > 50


@pytest.mark.slow
def test_coreml_is_lowered_on_linux_and_strict_fails(model_files, tmp_path, capsys):
    code = main(["convert", model_files["small_cnn"], "--arch", models.FACTORIES["small_cnn"], "-i", "x:1x3x32x32",
                 "-t", "pytorch-mobile", "--delegate", "coreml", "--quantize", "fp16", "--strict", "--json",
                 "-o", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == EXIT_VERIFY_FAILED  # unverified is a failure under --strict
    (art,) = json.loads(captured.out)["artifacts"]
    assert art["status"] == "unverified" and art["precision"] == "fp16"
    assert art["parity"]["reasons"][0].startswith("CoreMLBackend runs only on Apple devices (iOS / macOS, Core ML)")
    report = manifest.read(art["path"])["target_details"]["delegation"]
    assert list(report["backends"]) == ["CoreMLBackend"] and report["delegated_percent"] == 100.0


@pytest.mark.slow
def test_cli_int8_json(model_files, calibration_files, tmp_path, capsys):
    code = main(["convert", model_files["mlp"], "--arch", models.FACTORIES["mlp"], "-i", "x:1x64", "-t", "executorch",
                 "--quantize", "int8", "--calibration", calibration_files["mlp"], "--tolerance", "top1=0",
                 "--json", "-o", str(tmp_path)])
    assert code == EXIT_OK
    (art,) = json.loads(capsys.readouterr().out)["artifacts"]
    assert art["target"] == "executorch" and art["precision"] == "int8" and art["status"] == "passed"
    assert art["path"].endswith("mlp_int8.pte") and art["parity"]["cosine"] >= PRECISIONS["int8"].tolerance.cosine
    assert "held back" in art["parity"]["data"]  # calibration samples are never the verification samples


def test_usage_errors_exit_2(model_files, tmp_path, capsys):
    base = ["convert", model_files["mlp"], "--arch", models.FACTORIES["mlp"], "-i", "x:1x64", "-t", "executorch",
            "-o", str(tmp_path)]
    assert main(base + ["--delegate", "mps"]) == EXIT_USAGE
    assert "error: --delegate mps: the installed executorch (1.5.1) has no MPSBackend" in capsys.readouterr().err
    assert main(base + ["--delegate", "none", "--quantize", "int8-dynamic"]) == EXIT_USAGE
    assert "no quantized ops; use --delegate xnnpack" in capsys.readouterr().err
    assert main(base + ["--delegate", "coreml", "--quantize", "int8-int4"]) == EXIT_USAGE
    assert "coreml takes none and fp16; use --delegate xnnpack" in capsys.readouterr().err
    assert main(base + ["--quantize", "palettize4"]) == EXIT_USAGE
    assert "does not support --quantize palettize4; it supports: none, fp16, int8, int8-dynamic, int8-int4" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []  # nothing half-written


@pytest.mark.slow
def test_op_without_a_runtime_kernel_is_named_with_its_module(tmp_path, capsys):
    code = main(["convert", "--model", "tests.targets.test_executorch:with_erfinv", "-i", "x:1x32",
                 "-t", "executorch", "-o", str(tmp_path), "-q"])
    assert code == EXIT_CONVERSION
    err = capsys.readouterr().err
    assert "error: executorch cannot convert op aten.erfinv at gate (Gate) (kernel aten::erfinv.out): " \
           "the executorch 1.5.1 runtime has no such kernel" in err
    assert [p for p in os.listdir(tmp_path) if not p.startswith(".")] == ["model.executorch.log"]  # the log, nothing half-written
