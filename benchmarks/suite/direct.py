"""The baselines: each library called directly, the way its own documentation shows, with its defaults.

What a user gets without edgekit. Each recipe takes the eager model, its example inputs (torch tensors)
and real calibration samples (tuples of numpy arrays), writes one artifact and returns its path. The
recipes import their library inside the function: the suite times conversions with imports already
warm on both sides, and ``python -m benchmarks.suite.direct`` runs one recipe in a fresh process (the
``--target all`` comparison, where imports count as a user pays them).

    python -m benchmarks.suite.direct --model benchmarks.models:efficientnet_lite0 -i x:1x3x224x224 \
        --target tflite --precision none --out /tmp/direct.tflite [--calibration calib.npz]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from typing import Callable, Sequence

SUFFIX = {"tflite": ".tflite", "onnx": ".onnx", "executorch": ".pte", "torchscript-lite": ".ptl", "coreml": ".mlpackage"}
# the libraries each recipe uses, imported before timing starts
IMPORTS = {
    "tflite": ("litert_torch", "ai_edge_quantizer", "torchao.quantization.pt2e.quantize_pt2e", "litert_torch.quantize.pt2e_quantizer"),
    "onnx": ("onnx", "onnxscript", "onnxruntime.quantization", "torch.onnx"),
    "executorch": ("executorch.exir", "executorch.backends.xnnpack.partition.xnnpack_partitioner",
                   "executorch.backends.xnnpack.quantizer.xnnpack_quantizer", "torchao.quantization.pt2e.quantize_pt2e"),
    "torchscript-lite": ("torch.utils.mobile_optimizer",),
    "coreml": ("coremltools", "coremltools.optimize.coreml"),
}


# (target, precision) -> the recipe, and what it calls as shown in RESULTS.md (its docstring)
CONVERT: dict[tuple[str, str], Callable] = {}
RECIPES: dict[tuple[str, str], str] = {}


def recipe(target: str, precision: str):
    """Register a recipe function under (target, precision); its docstring says what it calls."""

    def register(fn: Callable) -> Callable:
        CONVERT[(target, precision)] = fn
        RECIPES[(target, precision)] = " ".join((fn.__doc__ or fn.__name__).split())  # -OO drops docstrings
        return fn

    return register


def warm_imports(target: str) -> None:
    import importlib

    for name in IMPORTS[target]:
        importlib.import_module(name)


def _tensors(sample):
    import numpy as np
    import torch

    return tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in sample)


@recipe("tflite", "none")
def tflite_none(model, args, calibration, path):
    """litert_torch.convert(model, args).export(path)"""
    import litert_torch

    litert_torch.convert(model, args).export(path)


@recipe("tflite", "int8")
def tflite_int8(model, args, calibration, path):
    """litert-torch PT2E: PT2EQuantizer(get_symmetric_quantization_config(is_per_channel=True)), prepare_pt2e,
    calibrate, convert_pt2e(fold_quantize=False), litert_torch.convert(quant_config=...)
    """
    import litert_torch
    import torch
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
    prepared = prepare_pt2e(torch.export.export(model, args).module(), quantizer)
    with torch.no_grad():
        for sample in calibration:
            prepared(*_tensors(sample))
    quantized = convert_pt2e(prepared, fold_quantize=False)
    litert_torch.convert(quantized, args, quant_config=QuantConfig(pt2e_quantizer=quantizer)).export(path)


def _ai_edge_quantizer(model, args, path, recipe_name: str):
    from ai_edge_quantizer import quantizer, recipe

    float_path = path + ".float.tflite"
    tflite_none(model, args, None, float_path)
    qt = quantizer.Quantizer(float_path)
    qt.load_quantization_recipe(getattr(recipe, recipe_name)())
    qt.quantize().export_model(path, overwrite=True)
    os.remove(float_path)


@recipe("tflite", "int8-dynamic")
def tflite_int8_dynamic(model, args, calibration, path):
    """litert_torch.convert, then ai-edge-quantizer: Quantizer(float_model),
    load_quantization_recipe(recipe.dynamic_wi8_afp32()), quantize().export_model(path)
    """
    _ai_edge_quantizer(model, args, path, "dynamic_wi8_afp32")


@recipe("tflite", "int8-weight-only")
def tflite_int8_weight_only(model, args, calibration, path):
    """litert_torch.convert, then ai-edge-quantizer with recipe.weight_only_wi8_afp32()"""
    _ai_edge_quantizer(model, args, path, "weight_only_wi8_afp32")


@recipe("onnx", "none")
def onnx_none(model, args, calibration, path):
    """torch.onnx.export(model, args, path) (dynamo exporter, torch's defaults)"""
    import torch

    torch.onnx.export(model, args, path)


@recipe("onnx", "int8-dynamic")
def onnx_int8_dynamic(model, args, calibration, path):
    """torch.onnx.export, then onnxruntime quant_pre_process (left out where it fails, as its symbolic shape
    inference does on BERT's Expand) and quantize_dynamic(model, out) with its defaults (QInt8 weights,
    per-tensor)
    """
    from onnxruntime.quantization import quantize_dynamic

    float_path, pre_path = path + ".float.onnx", path + ".pre.onnx"
    onnx_none(model, args, None, float_path)
    quantize_dynamic(_pre_processed(float_path, pre_path), path)
    _remove(float_path, pre_path)


def _pre_processed(float_path: str, pre_path: str) -> str:
    """onnxruntime's quant_pre_process, the first step of its quantization guide; the guide's step is
    optional, so where it fails (onnxruntime 1.32's symbolic shape inference on BERT: len(None) in
    _infer_Expand) the exported model is quantized as it is. Returns the path to quantize."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(float_path, pre_path)
    except TypeError:
        return float_path
    return pre_path


def _remove(*paths):
    for path in paths:
        for leftover in (path, path + ".data"):
            if os.path.exists(leftover):
                os.remove(leftover)


@recipe("onnx", "int8")
def onnx_int8(model, args, calibration, path):
    """torch.onnx.export, then onnxruntime quant_pre_process (left out where it fails, as its symbolic shape
    inference does on BERT's Expand) and quantize_static(model, out, reader) with its defaults (QDQ,
    per-tensor, QInt8, MinMax)
    """
    import numpy as np
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, quantize_static

    float_path, pre_path = path + ".float.onnx", path + ".pre.onnx"
    onnx_none(model, args, None, float_path)
    source = _pre_processed(float_path, pre_path)
    names = [i.name for i in ort.InferenceSession(source, providers=["CPUExecutionProvider"]).get_inputs()]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter([{n: np.ascontiguousarray(a) for n, a in zip(names, s)} for s in calibration])

        def get_next(self):
            return next(self.feeds, None)

    quantize_static(source, path, Reader())
    _remove(float_path, pre_path)


def _executorch(program, path):
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    et_program = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()
    with open(path, "wb") as fh:
        fh.write(et_program.buffer)


@recipe("executorch", "none")
def executorch_none(model, args, calibration, path):
    """to_edge_transform_and_lower(torch.export.export(model, args),
    partitioner=[XnnpackPartitioner()]).to_executorch()
    """
    import torch

    _executorch(torch.export.export(model, args), path)


@recipe("executorch", "int8")
def executorch_int8(model, args, calibration, path):
    """XNNPACKQuantizer(get_symmetric_quantization_config(is_per_channel=True)), prepare_pt2e, calibrate,
    convert_pt2e, then to_edge_transform_and_lower(..., [XnnpackPartitioner()])
    """
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer()
    quantizer.set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(torch.export.export(model, args).module(), quantizer)
    with torch.no_grad():
        for sample in calibration:
            prepared(*_tensors(sample))
    _executorch(torch.export.export(convert_pt2e(prepared), args), path)


@recipe("executorch", "int8-dynamic")
def executorch_int8_dynamic(model, args, calibration, path):
    """XNNPACKQuantizer(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=True)), prepare_pt2e,
    one pass, convert_pt2e, then to_edge_transform_and_lower(..., [XnnpackPartitioner()])
    """
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer()
    quantizer.set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=True))
    prepared = prepare_pt2e(torch.export.export(model, args).module(), quantizer)
    with torch.no_grad():
        prepared(*args)
    _executorch(torch.export.export(convert_pt2e(prepared), args), path)


def _lite(module, args, path):
    import json

    import torch
    import torch.backends.xnnpack
    from torch.utils.mobile_optimizer import optimize_for_mobile

    traced = torch.jit.trace(module, args)
    # A .ptl carries no I/O description; the shared runtime (and `edgekit bench`) reads one from the
    # archive's extra files. The program itself is untouched by it.
    out = traced(*args)
    io = {"inputs": [{"name": f"input_{i}", "shape": list(a.shape), "dtype": str(a.dtype).replace("torch.", "")}
                     for i, a in enumerate(args)],
          "outputs": [{"name": "output_0", "shape": list(out.shape), "dtype": str(out.dtype).replace("torch.", "")}]}
    # optimize_for_mobile needs a torch built with XNNPACK; on one without, it raises an internal
    # assert, and the documented fallback is to save the traced module as it is
    final = optimize_for_mobile(traced) if torch.backends.xnnpack.enabled else traced
    final._save_for_lite_interpreter(path, _extra_files={"edgekit.json": json.dumps(io)})


@recipe("torchscript-lite", "none")
def ptl_none(model, args, calibration, path):
    """torch.jit.trace, optimize_for_mobile (only where torch has XNNPACK; this one has not),
    _save_for_lite_interpreter (plus an I/O description in _extra_files, for the shared runtime)
    """
    _lite(model, args, path)


@recipe("torchscript-lite", "int8-dynamic")
def ptl_int8_dynamic(model, args, calibration, path):
    """torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8), then the same as FP32"""
    import torch

    _lite(torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8), args, path)


def _coreml(model, args, **kwargs):
    import coremltools as ct
    import torch

    # coremltools takes the ATen dialect: its guide runs run_decompositions({}) on the exported program
    return ct.convert(torch.export.export(model, args).run_decompositions({}), **kwargs)


@recipe("coreml", "none")
def coreml_none(model, args, calibration, path):
    """ct.convert(torch.export.export(model, args).run_decompositions({}),
    compute_precision=ct.precision.FLOAT32)
    """
    import coremltools as ct

    _coreml(model, args, compute_precision=ct.precision.FLOAT32).save(path)


@recipe("coreml", "fp16")
def coreml_fp16(model, args, calibration, path):
    """ct.convert(torch.export.export(model, args).run_decompositions({})) (its default: ML Program, float16)"""
    _coreml(model, args).save(path)




def convert(target: str, precision: str, model, args: tuple, calibration: Sequence[tuple], path: str) -> str:
    """Write ``path`` with the library's own recipe; returns it. Raises whatever the library raises."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)  # torch.onnx.export does not make its folder
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.remove(path)
    CONVERT[(target, precision)](model, args, calibration, path)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="module:factory")
    parser.add_argument("-i", "--input", action="append", required=True, metavar="NAME:SHAPE[:DTYPE]")
    parser.add_argument("--target", required=True, choices=sorted(SUFFIX))
    parser.add_argument("--precision", default="none")
    parser.add_argument("--calibration", help=".npz with one array per input name (int8 recipes)")
    parser.add_argument("--calibration-samples", type=int, default=100)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    import importlib

    import numpy as np
    import torch

    from edgekit.options import InputSpec

    specs = [InputSpec.parse(text) for text in args.input]
    module_name, _, factory = args.model.partition(":")
    model = getattr(importlib.import_module(module_name), factory)().eval()
    calibration = []
    if args.calibration:
        with np.load(args.calibration) as data:
            arrays = [data[s.name][: args.calibration_samples] for s in specs]
        calibration = [tuple(a[i : i + 1] for a in arrays) for i in range(len(arrays[0]))]
    # a real sample where there is one: tracing converters may bake in what the values select
    example = _tensors(calibration[0]) if calibration else tuple(torch.zeros(s.shape, dtype=getattr(torch, s.dtype)) for s in specs)
    convert(args.target, args.precision, model, example, calibration, args.out)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
