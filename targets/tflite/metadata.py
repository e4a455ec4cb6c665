"""The edgekit manifest inside the .tflite flatbuffer (a ``metadata`` entry named "edgekit", JSON),
so that a .tflite found alone still says where it came from, how to feed it (preprocessing, labels,
I/O quantization) and how it verified. Size and sha256 are left out: they describe the final bytes,
which the embedding itself changes; the manifest beside the artifact carries them.

The legacy TFLite Support metadata schema is not used: its tooling (tflite-support) is unmaintained
and does not install beside current LiteRT. Apps read the sidecar manifest or this entry.
"""
from __future__ import annotations

import json
from typing import Any

NAME = "edgekit"


def embed(model_bytes: bytes, info: dict[str, Any]) -> bytes:
    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools import flatbuffer_utils

    # read_model_from_bytearray inlines buffers stored after the flatbuffer (offset/size),
    # which ai-edge-quantizer writes for larger models; re-packing without that would drop them
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
    buffer = fb.BufferT()
    buffer.data = list(json.dumps(info, sort_keys=False, default=str).encode())
    model.buffers.append(buffer)
    entry = fb.MetadataT()
    entry.name = NAME.encode()
    entry.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name != NAME.encode()] + [entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def read(path: str) -> dict[str, Any] | None:
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(path)
    for entry in model.metadata or []:
        if entry.name == NAME.encode():
            return json.loads(bytes(model.buffers[entry.buffer].data).decode())
    return None
