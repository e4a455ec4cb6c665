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
    for sg in model.subgraphs:
        remap: dict[int, int] = {}
        front, back = [], []
        for pos, index in enumerate(list(sg.inputs)):
            if is_quantized_io(sg.tensors[index]):
                twin = float_twin(sg, index)
                op = fb.OperatorT()
                op.opcodeIndex = opcode(fb.BuiltinOperator.QUANTIZE)
                op.inputs, op.outputs = [twin], [index]
                op.builtinOptionsType = fb.BuiltinOptions.QuantizeOptions
                op.builtinOptions = fb.QuantizeOptionsT()
                front.append(op)
                sg.inputs[pos] = twin
                remap[index] = twin
        for pos, index in enumerate(list(sg.outputs)):
            if index in remap:  # an input passed straight through: keep it simple and leave it
                continue
            if is_quantized_io(sg.tensors[index]):
                twin = float_twin(sg, index)
                op = fb.OperatorT()
                op.opcodeIndex = opcode(fb.BuiltinOperator.DEQUANTIZE)
                op.inputs, op.outputs = [index], [twin]
                op.builtinOptionsType = fb.BuiltinOptions.DequantizeOptions
                op.builtinOptions = fb.DequantizeOptionsT()
                back.append(op)
                sg.outputs[pos] = twin
                remap[index] = twin
        sg.operators = front + list(sg.operators or []) + back
        remaps.append(remap)
    for signature in model.signatureDefs or []:
        remap = remaps[signature.subgraphIndex]
        for tensor_map in list(signature.inputs or []) + list(signature.outputs or []):
            tensor_map.tensorIndex = remap.get(tensor_map.tensorIndex, tensor_map.tensorIndex)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))
