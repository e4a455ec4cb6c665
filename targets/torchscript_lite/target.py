"""The TorchScript Lite target (legacy PyTorch Mobile): eager module -> TorchScript -> .ptl.

Legacy: upstream no longer maintains PyTorch Mobile; ExecuTorch (``--target executorch``) is its
successor. This target serves apps still linked against the lite interpreter.

Flow: capture (torch.jit.trace by default, torch.jit.script with --ptl-script) -> optional dynamic
int8 -> optimize_for_mobile when this torch has XNNPACK, else torch.jit.freeze (constant weights,
Conv+BatchNorm folded) -> _save_for_lite_interpreter -> reload through the lite interpreter.
"""
from __future__ import annotations

import json
import os
from typing import Any

from edgekit.errors import ConversionError, UsageError, first_line
from edgekit.targets.base import ConvertedArtifact, OnDevice, Target, TensorSpec
from edgekit.targets.torchscript_lite import quantize as recipes
from edgekit.targets.torchscript_lite.runtime import (
    METADATA_NAME,
    TorchScriptLiteRuntime,
    op_histogram,
    quantized_tensors,
    read_metadata,
)
from edgekit.targets.torchscript_lite.settings import TorchScriptLiteSettings

NO_XNNPACK = "skipped: this torch was built without XNNPACK"


def xnnpack_enabled() -> bool:
    import torch.backends.xnnpack

    return bool(torch.backends.xnnpack.enabled)


class TorchScriptLiteTarget(Target):
    name = "torchscript-lite"
    suffix = ".ptl"
    settings_class = TorchScriptLiteSettings
    precisions = ("none",) + recipes.RECIPES
    requires = ("torch",)
    extra = ""  # torch is one of edgekit's own dependencies
    dynamic_unsupported_reason = "a TorchScript Lite program is captured and verified at the --input shapes only; use --target onnx or executorch for dynamic shapes"
    # the lite interpreter ships in the legacy PyTorch Mobile AARs/pods only; no sample app or runner of ours loads it
    on_device = OnDevice("TorchScript Lite", python_module="torch")

    def __init__(self):
        # staged path -> (module, I/O description): embed_manifest re-saves with torch's own writer
        self._saved: dict[str, tuple[Any, dict[str, Any]]] = {}

    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument(
            "--ptl-script", dest="torchscript_lite_script", action="store_true",
            help="capture with torch.jit.script instead of torch.jit.trace (keeps Python control flow; the model must be scriptable)",
        )

    @classmethod
    def options_from_args(cls, args) -> dict[str, Any]:
        return {"script": True} if getattr(args, "torchscript_lite_script", False) else {}

    def convert(self, model, precision, options, calibration, workdir) -> ConvertedArtifact:
        import torch

        script = self.read_settings(options, precision).script
        details: dict[str, Any] = {"capture": "torch.jit.script" if script else "torch.jit.trace", "legacy": True}
        warnings: list[str] = []

        def capture(module):
            return _capture(module, model, script)

        scripted = capture(model.module)
        if precision == "int8-dynamic":
            try:
                scripted, details["quantization"] = recipes.quantize_dynamic(scripted, model.module, model.example_inputs, capture)
            except ConversionError:
                raise
            except Exception as exc:
                raise ConversionError(f"torch dynamic quantization failed: {first_line(exc)}") from exc
        final, details["optimize_for_mobile"], note = _optimize(scripted.eval())
        if note:
            warnings.append(note)
        path = os.path.join(workdir, f"model{self.suffix}")
        inputs = [TensorSpec(s.name, tuple(s.shape), s.dtype) for s in model.inputs]
        output_specs = _output_specs(final, model)
        meta = {"inputs": [s.to_dict() for s in inputs], "outputs": [s.to_dict() for s in output_specs]}
        try:
            _write_lite(final, path, meta)
            TorchScriptLiteRuntime().load(path).run([t.numpy() for t in model.example_inputs])
        except Exception as exc:
            raise ConversionError(f"the lite interpreter cannot run the saved program: {first_line(exc)}") from exc
        self._saved[path] = (final, meta)
        ops = op_histogram(path)
        details["ops"] = ops
        details["bytecode_version"] = _bytecode_version(path)
        if precision == "int8-dynamic":
            quantized_calls = sum(n for op, n in ops.items() if op.startswith("quantized::"))
            details["quantized_ops"] = quantized_calls
            details["quantized_tensors"] = len(quantized_tensors(path))
            if not quantized_calls:
                warnings.append(
                    "torchscript-lite int8-dynamic: the model has no linear layers to quantize; the artifact stays float32"
                )
        return ConvertedArtifact(
            path=path,
            inputs=inputs,
            outputs=output_specs,
            converter={"torch": torch.__version__},
            details=details,
            warnings=warnings,
        )

    def embed_manifest(self, path: str, manifest: dict[str, Any]) -> None:
        """Store the manifest (less its size and sha256) beside the I/O description in the archive's
        extra/edgekit.json, re-saving with torch's writer (which aligns records as its readers expect)."""
        saved = self._saved.pop(path, None)
        if saved is None:
            return
        from edgekit.manifest import dumps

        module, meta = saved
        body = {k: v for k, v in manifest.items() if k not in ("size_bytes", "sha256")}
        meta = {**meta, "manifest": json.loads(dumps(body))}
        _write_lite(module, path, meta)

    def runtime(self) -> TorchScriptLiteRuntime:
        return TorchScriptLiteRuntime()

    def inspect(self, path: str) -> dict[str, Any]:
        from edgekit.ui import captured_native_output

        meta = read_metadata(path)
        runtime = TorchScriptLiteRuntime()
        try:
            with captured_native_output():  # torch's C++ deprecation notices for quantized tensors
                runtime.load(path)
        except Exception as exc:
            raise UsageError(f"{path}: the lite interpreter cannot load it ({first_line(exc)})") from None
        ops = op_histogram(path)
        quantized = quantized_tensors(path)
        return {
            "target": self.name,
            "inputs": meta.get("inputs", []),
            "outputs": meta.get("outputs", []),
            "ops": ops,
            "quantized_tensors": quantized,
            "size_bytes": os.path.getsize(path),
            "runtime": runtime.version(),
            "metadata": meta.get("manifest"),
            "summary": {
                "bytecode version": _bytecode_version(path),
                "embedded manifest": (
                    f"precision {meta['manifest'].get('precision')}, status {meta['manifest'].get('status')}"
                    if meta.get("manifest") else "none"
                ),
                "quantized op calls": sum(n for op, n in ops.items() if op.startswith("quantized::")),
                "note": "legacy PyTorch Mobile format: upstream no longer maintains it; prefer executorch",
            },
        }


def _capture(module, model, script: bool):
    """A TorchScript module of ``module``, traced on the example inputs or scripted."""
    import torch

    from edgekit.export import describe_conversion_error

    try:
        if script:
            return torch.jit.script(module)
        # Traced with autograd on: eval-mode fused fast paths (nn.TransformerEncoder's) are skipped
        # while parameters require grad, so the graph holds plain aten ops every lite-interpreter
        # build carries. check_trace is off because its re-run happens under no_grad, takes that fast
        # path and reports a false mismatch; verification compares real outputs instead.
        return torch.jit.trace(module, tuple(model.example_inputs), strict=False, check_trace=False)
    except Exception as exc:
        err = describe_conversion_error(exc, model, "torch.jit.script" if script else "torch.jit.trace")
        if not script:
            err.hint = "if the model branches on tensor values, try --ptl-script; or use --target executorch"
        raise err from exc


def _output_specs(module, model) -> list[TensorSpec]:
    """Names from the model, shapes and dtypes from one run of the TorchScript module."""
    import torch

    from edgekit.export import flatten_outputs
    from edgekit.targets.torchscript_lite.runtime import mobile_engine

    try:
        with mobile_engine(), torch.no_grad():
            outputs = flatten_outputs(module(*model.example_inputs))
    except Exception as exc:
        raise ConversionError(f"the TorchScript program fails on the example inputs: {first_line(exc)}") from exc
    if len(outputs) != len(model.output_names):
        raise ConversionError(f"the TorchScript program returns {len(outputs)} tensors, the model {len(model.output_names)}")
    return [
        TensorSpec(name, tuple(int(d) for d in out.shape), str(out.dtype).replace("torch.", ""))
        for name, out in zip(model.output_names, outputs)
    ]


def _optimize(module):
    """(module to save, what happened for the manifest, warning or None)."""
    import torch

    if xnnpack_enabled():
        from torch.utils.mobile_optimizer import optimize_for_mobile

        try:
            return optimize_for_mobile(module), "applied", None
        except Exception as exc:
            status = f"failed: {first_line(exc)}"
    else:
        status = NO_XNNPACK
    try:
        frozen = torch.jit.freeze(module)
    except Exception:  # freezing is an optimisation: an unfreezable module still runs
        frozen = module
    return frozen, status, f"torchscript-lite: optimize_for_mobile {status}; saved a frozen module (weights constant, Conv+BatchNorm folded) instead"


def _bytecode_version(path: str) -> int | None:
    try:
        from torch.jit.mobile import _get_model_bytecode_version

        return int(_get_model_bytecode_version(path))
    except Exception:
        return None


def _write_lite(module, path: str, meta: dict) -> None:
    """Serialise in memory, then write from Python: torch's file writer aborts the whole process
    (std::terminate) when the disk fills mid-write, while a Python write raises OSError (ENOSPC),
    which edgekit reports as exit 7 with the staging folder removed."""
    data = module._save_to_buffer_for_lite_interpreter(_extra_files={METADATA_NAME: json.dumps(meta)})
    with open(path, "wb") as fh:
        fh.write(data)
