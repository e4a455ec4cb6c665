"""Give an integer-I/O .tflite float inputs and outputs: QUANTIZE ops after each integer input and
DEQUANTIZE ops before each integer output, rewired in the flatbuffer (subgraphs and signatures).

Why: litert-torch's PT2E full-integer path is the most accurate static int8 route we measured
(benchmarks/int8_routes.py), but it always emits int8 model I/O. edgekit's default is float I/O, so
that app code does not change; ``--io int8`` keeps the integer I/O for NPUs and the Edge TPU.
"""
from __future__ import annotations

_INTEGER_TYPES = ("INT8", "UINT8", "INT16")


def to_float_io(model_bytes: bytes) -> bytes:
    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools import flatbuffer_utils

    # read_model_from_bytearray inlines buffers stored after the flatbuffer (offset/size),
    # which ai-edge-quantizer writes for larger models; re-packing without that would drop them
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
    integer_types = {getattr(fb.TensorType, t) for t in _INTEGER_TYPES}

    def opcode(builtin: int) -> int:
        for i, code in enumerate(model.operatorCodes):
            if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
                return i
        code = fb.OperatorCodeT()
        code.builtinCode = builtin
        code.deprecatedBuiltinCode = min(builtin, 127)
        code.version = 1
        model.operatorCodes.append(code)
        return len(model.operatorCodes) - 1

    empty_buffer = 0 if not model.buffers[0].data else None
    if empty_buffer is None:
        model.buffers.append(fb.BufferT())
        empty_buffer = len(model.buffers) - 1

    def float_twin(sg, index: int) -> int:
        quantized = sg.tensors[index]
        twin = fb.TensorT()
        twin.name = quantized.name
        quantized.name = (quantized.name or b"") + b"_int"
        twin.shape = quantized.shape
        twin.shapeSignature = quantized.shapeSignature
        twin.type = fb.TensorType.FLOAT32
        twin.buffer = empty_buffer
        sg.tensors.append(twin)
        return len(sg.tensors) - 1

    def is_quantized_io(tensor) -> bool:
        q = tensor.quantization
        return tensor.type in integer_types and q is not None and q.scale is not None and len(q.scale) == 1

    remaps: list[dict[int, int]] = []
    def cast_op(kind: str, inputs: list[int], outputs: list[int]):
        """A QUANTIZE or DEQUANTIZE operator (their options tables are empty)."""
        op = fb.OperatorT()
        op.opcodeIndex = opcode(getattr(fb.BuiltinOperator, kind))
        op.inputs, op.outputs = inputs, outputs
        name = kind.capitalize() + "Options"
        op.builtinOptionsType = getattr(fb.BuiltinOptions, name)
        op.builtinOptions = getattr(fb, name + "T")()
        return op

    for sg in model.subgraphs:
        remap: dict[int, int] = {}
        front, back = [], []
        for pos, index in enumerate(list(sg.inputs)):
            if is_quantized_io(sg.tensors[index]):
                twin = float_twin(sg, index)
                front.append(cast_op("QUANTIZE", [twin], [index]))
                sg.inputs[pos] = twin
                remap[index] = twin
        for pos, index in enumerate(list(sg.outputs)):
            if index in remap:  # an input passed straight through: keep it simple and leave it
                continue
            if is_quantized_io(sg.tensors[index]):
                twin = float_twin(sg, index)
                back.append(cast_op("DEQUANTIZE", [index], [twin]))
                sg.outputs[pos] = twin
                remap[index] = twin
        sg.operators = front + list(sg.operators or []) + back
        remaps.append(remap)
    for signature in model.signatureDefs or []:
        remap = remaps[signature.subgraphIndex]
        for tensor_map in list(signature.inputs or []) + list(signature.outputs or []):
            tensor_map.tensorIndex = remap.get(tensor_map.tensorIndex, tensor_map.tensorIndex)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def output_ranges(model, calibration, limit: int = 64) -> list[tuple[float, float]]:
    """(min, max) of each float output of the original model over the calibration samples, in the
    model's output order: what an integer output's scale and zero point are chosen from."""
    import numpy as np

    lows: list[float] = []
    highs: list[float] = []
    for outputs in model.reference_many(list(calibration)[:limit]):
        for i, out in enumerate(outputs):
            a = np.asarray(out, dtype=np.float64)
            a = a[np.isfinite(a)] if a.dtype.kind == "f" else a
            lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
            if i == len(lows):
                lows.append(lo)
                highs.append(hi)
            else:
                lows[i], highs[i] = min(lows[i], lo), max(highs[i], hi)
    return list(zip(lows, highs))


def int8_params(low: float, high: float) -> tuple[float, int]:
    """Asymmetric int8 (scale, zero point) covering [low, high] and 0 (TFLite's convention: zero is
    exact). A range inside [0, 1] (probabilities) gets TFLite's fixed softmax output scale 1/256."""
    low, high = min(low, 0.0), max(high, 0.0)
    if low >= 0.0 and high <= 1.0:
        return 1.0 / 256.0, -128
    scale = (high - low) / 255.0 or 1.0
    zero_point = int(round(-128 - low / scale))
    return scale, max(-128, min(127, zero_point))


def integer_outputs(model_bytes: bytes, params: dict[str, tuple[float, int]]) -> tuple[bytes, list[str]]:
    """``--io int8``: a QUANTIZE op after every FLOAT32 output named in ``params`` (signature output
    name, else tensor name -> (scale, zero point)), so that the file's outputs really are int8 (a
    softmax that the int8 program leaves float would otherwise ship float32 under --io int8).
    Returns the new bytes and the names of the outputs changed."""
    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
    quantize = _opcode(model, fb, fb.BuiltinOperator.QUANTIZE)
    changed: list[str] = []
    for sg_index, sg in enumerate(model.subgraphs):
        names = {}
        for signature in model.signatureDefs or []:
            if signature.subgraphIndex == sg_index:
                names.update({m.tensorIndex: m.name.decode() if isinstance(m.name, bytes) else m.name for m in signature.outputs or []})
        remap = {}
        for pos, index in enumerate(list(sg.outputs)):
            tensor = sg.tensors[index]
            tname = tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)
            key = names.get(index, tname)
            if tensor.type != fb.TensorType.FLOAT32 or key not in params:
                continue
            scale, zero_point = params[key]
            twin = fb.TensorT()
            twin.name = tensor.name
            tensor.name = (tensor.name or b"") + b"_float"
            twin.shape, twin.shapeSignature, twin.type = tensor.shape, tensor.shapeSignature, fb.TensorType.INT8
            twin.buffer = 0 if not model.buffers[0].data else _empty_buffer(model, fb)
            twin.quantization = fb.QuantizationParametersT()
            twin.quantization.scale, twin.quantization.zeroPoint = [float(scale)], [int(zero_point)]
            sg.tensors.append(twin)
            op = fb.OperatorT()
            op.opcodeIndex = quantize
            op.inputs, op.outputs = [index], [len(sg.tensors) - 1]
            op.builtinOptionsType = fb.BuiltinOptions.QuantizeOptions
            op.builtinOptions = fb.QuantizeOptionsT()
            sg.operators = list(sg.operators or []) + [op]
            sg.outputs[pos] = remap[index] = len(sg.tensors) - 1
            changed.append(key)
        for signature in model.signatureDefs or []:
            if signature.subgraphIndex == sg_index:
                for tensor_map in signature.outputs or []:
                    tensor_map.tensorIndex = remap.get(tensor_map.tensorIndex, tensor_map.tensorIndex)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), changed


def _opcode(model, fb, builtin: int) -> int:
    for i, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            return i
    code = fb.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _empty_buffer(model, fb) -> int:
    model.buffers.append(fb.BufferT())
    return len(model.buffers) - 1


def int8_outputs(content: bytes, model, calibration, workdir: str) -> tuple[bytes, dict]:
    """``--io int8`` made true for every output: float outputs get a QUANTIZE op whose parameters
    come from the float model's output range on the calibration samples. Returns the bytes and the
    manifest facts (which outputs were made integer, with which range)."""
    import os

    from edgekit.targets.tflite.runtime import TFLiteRuntime
    from edgekit.verify import output_order

    path = os.path.join(workdir, "io.tflite")
    with open(path, "wb") as fh:
        fh.write(content)
    runtime = TFLiteRuntime().load(path)
    specs = runtime.outputs()
    os.remove(path)
    floats = [s.name for s in specs if str(s.dtype) == "float32"]
    if not floats:
        return content, {}
    order = output_order(model.output_names, [s.name for s in specs])
    ranges = output_ranges(model, calibration)
    params = {}
    for model_index, artifact_index in enumerate(order):
        name = specs[artifact_index].name
        if name in floats and model_index < len(ranges):
            params[name] = int8_params(*ranges[model_index])
    content, changed = integer_outputs(content, params)
    return content, {"int8_outputs_added": {n: {"scale": params[n][0], "zero_point": params[n][1]} for n in changed}}
