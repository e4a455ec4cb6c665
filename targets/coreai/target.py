"""The Core AI target: ExportedModel -> .aimodel asset (Apple's successor of Core ML, iOS / macOS 27).

Flow: coreai-opt prepares the precision in PyTorch (cast, weight quantization, palettization; W8A8 comes
from the shared PT2E int8 program, targets/coreai/int8.py) -> torch.export -> coreai-torch (Core AI
decompositions, TorchConverter) -> asset folder (main.mlirb + metadata.json) -> read back through
coreai-core's bindings: I/O, op histogram, storage types. Verification executes the program with edgekit's Core AI reference interpreter
(targets/coreai/interpreter.py); a program it cannot read or execute stays ``unverified`` with the reason.
"""
from __future__ import annotations

import os
from types import MappingProxyType
from typing import Any

from edgekit.errors import ConversionError
from edgekit.targets.base import ConvertedArtifact, OnDevice, Target, package_version
from edgekit.targets.coreai import analysis
from edgekit.targets.coreai.runtime import CoreAIRuntime, reason_unverifiable
from edgekit.targets.coreai.settings import CoreAISettings

DEPLOYMENT = "iOS27 / macOS27"


class CoreAITarget(Target):
    name = "coreai"
    suffix = ".aimodel"
    # the iOS app loads .aimodel with Core AI's documented Swift API (sample_apps/ios/EdgekitDemo/CoreAIRunner.swift)
    on_device = OnDevice("Core AI", apps=MappingProxyType({"ios": "coreai"}))
    shared_int8 = True  # int8 converts the run's shared PT2E program (targets/coreai/int8.py)
    settings_class = CoreAISettings  # no options yet: any key given for it is refused
    precisions = ("none", "fp16", "int8", "int8-weight-only", "int4-weight-only", "palettize8", "palettize6", "palettize4")
    requires = ("coreai_torch", "coreai", "coreai_opt")
    dynamic_unsupported_reason = "edgekit converts Core AI programs at the --input shapes only"

    def convert(self, model, precision, options, calibration, workdir) -> ConvertedArtifact:
        self.require()
        from edgekit.targets.coreai import convert as steps

        if precision == "int8" and not calibration:
            raise ConversionError("coreai int8 needs calibration samples (--calibration)")
        exported, facts = steps.prepared_program(model, precision, calibration, options)
        path = os.path.join(workdir, "model.aimodel")
        steps.convert_program(exported, path)
        asset = analysis.load_asset(path)
        inputs, outputs = analysis.io_specs(asset)
        if len(inputs) != len(model.inputs) or len(outputs) != len(model.output_names):
            raise ConversionError(
                f"the Core AI program has {len(inputs)} inputs / {len(outputs)} outputs, the model "
                f"{len(model.inputs)} / {len(model.output_names)}"
            )
        info = analysis.summary(asset)
        verification = _verification(asset)
        details: dict[str, Any] = {
            "deployment_target": DEPLOYMENT,
            "method": analysis.entry_name(asset),  # the function an app loads (Core AI's loadFunction(named:))
            "compatibility_version": info["compatibility_version"],
            "ops": analysis.op_histogram(asset),
            "storage_types": info["storage_types"],
            "compute_types": info["compute_types"],
            "weights": info["weights"],
            "precision_recipe": facts,
            "verification": verification,
        }
        return ConvertedArtifact(
            path=path, inputs=inputs, outputs=outputs,
            converter={"coreai-torch": package_version("coreai-torch"), "coreai-core": package_version("coreai-core"),
                       "coreai-opt": package_version("coreai-opt")},
            details=details, unverifiable_reason=verification["unverifiable_reason"],
        )

    def runtime(self) -> CoreAIRuntime:
        return CoreAIRuntime()

    def inspect(self, path: str) -> dict[str, Any]:
        from edgekit.manifest import file_digest

        asset = analysis.load_asset(path)
        inputs, outputs = analysis.io_specs(asset)
        info = analysis.summary(asset)
        weights = info["weights"]
        ops = analysis.op_histogram(asset)
        compression = [k for k in ops if k in ("blockwise_shift_scale", "lut_to_dense", "quantize", "dequantize")]
        return {
            "target": self.name,
            "inputs": [s.to_dict() for s in inputs],
            "outputs": [s.to_dict() for s in outputs],
            "ops": ops,
            "quantized_tensors": [],
            "weights": weights,
            "summary": {
                "format": "Core AI asset (.aimodel: main.mlirb + metadata.json)",
                "deployment target": f"{DEPLOYMENT} (compatibility version {info['compatibility_version']})",
                "storage types": ", ".join(f"{k} {v}" for k, v in info["storage_types"].items()),
                "weights": f"{weights['compressed_elements']}/{weights['compressed_elements'] + weights['float_elements']} "
                           f"constant elements stored below 16 bits ({weights['fraction_compressed']:.1%})",
                "compression ops": ", ".join(f"{k} {ops[k]}" for k in compression) or "none",
                "execution": _verification(asset)["summary"],
            },
            "size_bytes": file_digest(path)[0],
            "runtime": CoreAIRuntime().version(),
        }


def _verification(asset) -> dict[str, Any]:
    """Who can verify the asset on this host: the reference interpreter, or nobody and why."""
    from edgekit.targets.coreai import interpreter

    reason = reason_unverifiable(asset)
    if reason is None:
        return {"by": interpreter.NAME, "unverifiable_reason": None, "reference": True,
                "summary": f"{interpreter.NAME} (the Core AI runtime needs iOS / macOS 27)"}
    return {"by": None, "unverifiable_reason": reason, "summary": reason}
