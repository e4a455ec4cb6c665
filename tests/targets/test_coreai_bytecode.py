"""Core AI weight blobs read raw from main.mlirb (targets/coreai/bytecode.py) against MLIR's own printing
of the same module (the hex of ``dialect_resources``), on real coreai-torch conversions; and the varint
encoding against MLIR's documented examples (mlir/docs/BytecodeFormat.md)."""
from __future__ import annotations

import os
import re

import numpy as np
import pytest

import edgekit
from edgekit.targets.coreai import analysis, bytecode, program
from tests import models


def _encode(value: int) -> bytes:
    """MLIR's PrefixVarInt, as documented: n trailing zero bits in the first byte = n more bytes."""
    for extra in range(8):
        if value < 1 << (7 * (extra + 1)):
            return ((value << (extra + 1)) | (1 << extra)).to_bytes(extra + 1, "little")
    return b"\0" + value.to_bytes(8, "little")


@pytest.mark.parametrize("value,encoded", [(0, b"\x01"), (1, b"\x03"), (127, b"\xff"), (128, b"\x02\x02"),
                                           (2 ** 63 + 5, b"\0" + (2 ** 63 + 5).to_bytes(8, "little"))])
def test_varint_reads_the_documented_encoding(value, encoded):
    assert _encode(value) == encoded
    assert bytecode._Reader(memoryview(encoded)).varint() == value


def test_varint_round_trips_every_width():
    values = [0, 1, 126, 127, 128, 16383, 16384, 2 ** 21, 2 ** 35 + 7, 2 ** 49 - 1, 2 ** 56 + 3, 2 ** 64 - 1]
    reader = bytecode._Reader(memoryview(b"".join(_encode(v) for v in values)))
    assert [reader.varint() for _ in values] == values and reader.empty()


def test_a_file_that_is_not_bytecode_is_refused(tmp_path):
    path = tmp_path / "main.mlirb"
    path.write_bytes(b"MLIR text, not bytecode")
    with pytest.raises(bytecode.BytecodeError, match="not MLIR bytecode"):
        bytecode.read_blobs(str(path))


@pytest.fixture(scope="module")
def palettized_transformer(tmp_path_factory):
    """tiny_transformer at palettize4: sub-byte UInt4 indices, float tables, composites (private graphs)."""
    art = edgekit.convert(None, model_factory=models.FACTORIES["tiny_transformer"], target="coreai",
                          quantize="palettize4", inputs=models.INPUT_SPECS["tiny_transformer"],
                          output_dir=str(tmp_path_factory.mktemp("coreai_bytecode")), name="t", eval_samples=2)[0]
    assert art.status == "passed", art.parity
    return art.path


def _printed_blobs(asset) -> dict[str, bytes]:
    text = asset.module.operation.get_asm(enable_debug_info=False)
    return {k: bytes.fromhex(v)[4:] for k, v in program._RESOURCE.findall(text[text.find("dialect_resources"):])}


@pytest.mark.slow
def test_every_blob_equals_mlirs_own_printing(palettized_transformer):
    asset = analysis.load_asset(palettized_transformer)
    printed = _printed_blobs(asset)
    raw = bytecode.read_blobs(asset.bytecode_path)
    assert asset.bytecode_path == os.path.join(palettized_transformer, "main.mlirb")
    assert len(printed) >= 5 and set(raw) == set(printed)
    assert all(bytes(raw[k]) == printed[k] for k in printed)
    names = set(re.findall(r"dense_resource<([^>]+)>", str(asset.module)))
    assert names <= set(raw)  # every blob the program names is found in the bytecode


@pytest.mark.slow
def test_an_unreadable_bytecode_file_falls_back_to_the_printed_module(palettized_transformer, tmp_path):
    asset = analysis.load_asset(palettized_transformer)
    expected = program.read_program(asset)
    asset.bytecode_path = str(tmp_path / "missing.mlirb")  # the module stays loaded; its file is gone
    fallback = program.read_program(asset)
    for name, graph in expected.graphs.items():
        assert graph.constants.keys() == fallback.graphs[name].constants.keys()
        for vid, value in graph.constants.items():
            np.testing.assert_array_equal(value, fallback.graphs[name].constants[vid])
