"""The ONNX target: ExportedModel -> .onnx (torch.onnx) -> quantized (onnxruntime) -> verified (onnxruntime)."""
from __future__ import annotations

import collections
import json
import os
from typing import Any

from edgekit.errors import ConversionError, UsageError, first_line
from edgekit.targets.base import ConvertedArtifact, OnDevice, Target, package_version
from edgekit.targets.onnx import export as onnx_export
from edgekit.targets.onnx import quantize as recipes
from edgekit.targets.onnx import int8 as onnx_int8
from edgekit.targets.onnx.runtime import ONNXRuntime
from edgekit.targets.onnx.settings import ONNXSettings

MANIFEST_KEY = "edgekit.manifest"  # model-level metadata_props entry holding the manifest
_INTEGER_TYPES = ("INT8", "UINT8", "INT4", "UINT4", "INT16", "UINT16")


class ONNXTarget(Target):
    name = "onnx"
    suffix = ".onnx"
    precisions = ("none",) + recipes.RECIPES
    requires = ("onnx", "onnxruntime", "onnxscript")
    supports_dynamic = True
    shared_int8 = True
    on_device = OnDevice("ONNX", python_module="onnxruntime")
    settings_class = ONNXSettings

    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument(
            "--opset", dest="onnx_opset", type=int, metavar="N",
            help=f"ONNX opset to write (default {onnx_export.DEFAULT_OPSET}; below 18 uses torch's TorchScript-based exporter)",
        )
        parser.add_argument(
            "--onnx-reduce-range", dest="onnx_reduce_range", action="store_true",
            help="int8 / int8-dynamic: 7-bit weights, for x86 CPUs with AVX2 but without VNNI (whose onnxruntime "
            "kernels saturate with full-range weights); the default full 8-bit range is exact on ARM and VNNI",
        )
        parser.add_argument(
            "--onnx-full-range", dest="onnx_full_range", action="store_true",
            help="full 8-bit weights (the default; kept for older command lines)",
        )

    @classmethod
    def options_from_args(cls, args) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if getattr(args, "onnx_opset", None) is not None:
            out["opset"] = args.onnx_opset
        if getattr(args, "onnx_reduce_range", False) and getattr(args, "onnx_full_range", False):
            raise UsageError("--onnx-reduce-range and --onnx-full-range contradict each other; give one")
        if getattr(args, "onnx_reduce_range", False):
            out["reduce_range"] = True
        elif getattr(args, "onnx_full_range", False):
            out["reduce_range"] = False
        return out

    def convert(self, model, precision, options, calibration, workdir) -> ConvertedArtifact:
        self.require()
        settings = self.read_settings(options, precision)  # targets/onnx/settings.py
        float_path = os.path.join(workdir, "float.onnx")
        details = onnx_export.export_onnx(model, settings.opset, float_path)
        details["opset_requested"] = settings.opset
        final_path = os.path.join(workdir, f"model{self.suffix}")
        try:
            if precision == "none":
                os.replace(float_path, final_path)
            elif precision == "fp16":
                details["quantization"] = recipes.to_fp16(float_path, final_path)
            elif precision == "int8":  # the shared PT2E decision as QDQ (targets/onnx/int8.py)
                details.update(onnx_int8.static_int8(model, options, calibration, settings, float_path, final_path, workdir))
            else:
                prepared_path = os.path.join(workdir, "preprocessed.onnx")
                details["preprocess"] = recipes.preprocess(float_path, prepared_path)
                if precision == "int8-dynamic":
                    details["quantization"] = recipes.quantize_dynamic(prepared_path, final_path, settings.reduce_range)
                else:  # pragma: no cover - the pipeline checks precisions against self.precisions
                    raise UsageError(f"the onnx target does not support --quantize {precision}")
            if precision != "none":
                recipes.tidy(final_path)
        except (UsageError, ConversionError):
            raise
        except Exception as exc:
            raise ConversionError(f"onnxruntime could not apply {precision}: {first_line(exc)}") from exc
        return self._describe(final_path, details, settings)

    def _describe(self, path: str, details: dict[str, Any], settings: ONNXSettings) -> ConvertedArtifact:
        import onnx

        proto = onnx.load(path)
        warnings = []
        written = onnx_export.default_opset(proto)
        if written != settings.opset:
            # onnxruntime's quantizer raises old opsets (per-channel QDQ needs 13): say so, do not hide it
            warnings.append(f"onnx: opset {written} written, not the {settings.opset} asked for: onnxruntime's quantizer needs at least {written}")
        details["opset"] = written
        details["ops"] = op_histogram(proto)
        details["quantized_tensors"] = len(quantized_tensors(proto))
        try:
            runtime = ONNXRuntime().load(path)
        except Exception as exc:
            raise ConversionError(f"onnxruntime cannot load the converted model: {first_line(exc)}") from exc
        return ConvertedArtifact(
            path=path,
            inputs=runtime.inputs(),
            outputs=runtime.outputs(),
            converter={"onnx": package_version("onnx"), "onnxruntime": package_version("onnxruntime"), "onnxscript": package_version("onnxscript")},
            details=details,
            warnings=warnings,
        )

    def embed_manifest(self, path: str, manifest: dict[str, Any]) -> None:
        """Store the manifest (less its size and sha256) in the model's metadata_props, which
        onnxruntime exposes as ``session.get_modelmeta().custom_metadata_map``."""
        import onnx

        from edgekit.manifest import dumps

        body = {k: v for k, v in manifest.items() if k not in ("size_bytes", "sha256")}
        proto = onnx.load(path)
        kept = [p for p in proto.metadata_props if p.key != MANIFEST_KEY]
        del proto.metadata_props[:]
        proto.metadata_props.extend(kept)
        entry = proto.metadata_props.add()
        entry.key, entry.value = MANIFEST_KEY, json.dumps(json.loads(dumps(body)), separators=(",", ":"))
        onnx_export.save(proto, path)

    def runtime(self) -> ONNXRuntime:
        return ONNXRuntime()

    def inspect(self, path: str) -> dict[str, Any]:
        import onnx

        self.require()
        try:
            proto = onnx.load(path)
        except Exception as exc:
            raise UsageError(f"{path}: not a readable ONNX file ({first_line(exc)})") from None
        runtime = ONNXRuntime().load(path)
        float16 = sum(1 for init in proto.graph.initializer if init.data_type == onnx.TensorProto.FLOAT16)
        embedded = next((json.loads(p.value) for p in proto.metadata_props if p.key == MANIFEST_KEY), None)
        return {
            "target": self.name,
            "inputs": [s.to_dict() for s in runtime.inputs()],
            "outputs": [s.to_dict() for s in runtime.outputs()],
            "ops": op_histogram(proto),
            "quantized_tensors": quantized_tensors(proto),
            "size_bytes": os.path.getsize(path),
            "runtime": runtime.version(),
            "metadata": embedded,
            "summary": {
                "opset": onnx_export.default_opset(proto),
                "ir_version": proto.ir_version,
                "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
                "float16 initializers": float16,
                "quantized activations (QuantizeLinear nodes)": sum(
                    1 for n in recipes.all_nodes(proto.graph) if n.op_type in ("QuantizeLinear", "DynamicQuantizeLinear")
                ),
                "embedded manifest": (
                    f"precision {embedded.get('precision')}, status {embedded.get('status')}, edgekit {embedded.get('versions', {}).get('edgekit')}"
                    if embedded else "none"
                ),
            },
        }


def op_histogram(proto) -> dict[str, int]:
    counts = collections.Counter(
        f"{node.domain}.{node.op_type}" if node.domain not in ("", "ai.onnx") else node.op_type
        for node in recipes.all_nodes(proto.graph)
    )
    return dict(counts.most_common())


def quantized_tensors(proto) -> list[dict[str, Any]]:
    """Integer weight initializers and their granularity (from the scale or zero point beside them).

    Covers QDQ (DequantizeLinear's input), onnxruntime's dynamic format (MatMulInteger/ConvInteger's
    weight) and the QOperator format (QLinearConv/QLinearMatMul's weight).
    """
    from onnx import TensorProto

    graph = proto.graph
    initializers = {init.name: init for init in graph.initializer}
    weight_and_param: dict[str, str | None] = {}  # quantized weight -> the scale or zero point that tells granularity
    for node in recipes.all_nodes(graph):
        inputs = list(node.input)
        if node.op_type == "DequantizeLinear" and inputs and inputs[0] in initializers:
            weight_and_param[inputs[0]] = inputs[1] if len(inputs) > 1 else None
        elif node.op_type in ("MatMulInteger", "ConvInteger") and len(inputs) > 1 and inputs[1] in initializers:
            weight_and_param[inputs[1]] = inputs[3] if len(inputs) > 3 else None
        elif node.op_type in ("QLinearConv", "QLinearMatMul") and len(inputs) > 4 and inputs[3] in initializers:
            weight_and_param[inputs[3]] = inputs[4]
    out = []
    for name, param in weight_and_param.items():
        init = initializers[name]
        dtype = TensorProto.DataType.Name(init.data_type)
        if dtype not in _INTEGER_TYPES:
            continue
        size = 1
        if param in initializers:
            for d in initializers[param].dims:
                size *= d
        out.append(
            {
                "name": name,
                "dtype": dtype.lower(),
                "shape": [int(d) for d in init.dims],
                "granularity": "per-channel" if size > 1 else "per-tensor",
            }
        )
    return out
