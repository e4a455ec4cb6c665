"""The weight blobs of a Core AI program, read straight from its MLIR bytecode (main.mlirb).

coreai-core's Python bindings load the module but expose no reader for ``dense_resource`` blobs (MLIR's
``DenseResourceElementsAttr`` binding can only create them), and printing the module as text writes every
weight as hex: about 180 MB of text for MiniLM, per read. The bytecode stores each blob raw, so this
module reads the two sections that hold them, following MLIR's documented bytecode format
(mlir/docs/BytecodeFormat.md, the reader in mlir/lib/Bytecode/Reader/BytecodeReader.cpp):

- file: magic ``ML\\xefR``, version varint, producer (NUL-terminated), then sections;
- section: ``id | aligned << 7`` byte, length varint, [alignment varint, 0xCB padding], data;
- string section (0): count, the lengths in reverse order (NUL included), then the strings;
- resource offset section (6): external groups (string key + group), then dialect groups (dialect index +
  group); group: count, then per entry key (string index), size (varint), kind (byte: 0 blob);
- resource section (5): the entries back to back; a blob: alignment varint, size varint, 0xCB padding
  to the alignment (relative to the start of the file), the raw bytes.

Only blobs are returned (bool and string resources carry no weights). A file this reader cannot follow
raises BytecodeError; the caller then falls back to the module's text form.
"""
from __future__ import annotations

MAGIC = b"ML\xefR"
STRING, RESOURCE, RESOURCE_OFFSET = 0, 5, 6
BLOB = 0
PADDING = 0xCB


class BytecodeError(Exception):
    """The bytecode is not in the layout this reader follows (one line)."""


class _Reader:
    """A cursor over ``data[start:end]``; offsets stay absolute, so alignment is relative to the file."""

    def __init__(self, data: memoryview, start: int = 0, end: int | None = None):
        self.data, self.pos, self.end = data, start, len(data) if end is None else end

    def empty(self) -> bool:
        return self.pos >= self.end

    def byte(self) -> int:
        if self.pos >= self.end:
            raise BytecodeError("unexpected end of the bytecode")
        self.pos += 1
        return self.data[self.pos - 1]

    def take(self, count: int) -> tuple[int, int]:
        """(start, end) of the next ``count`` bytes."""
        if count > self.end - self.pos:
            raise BytecodeError(f"a field of {count} bytes runs past its section")
        self.pos += count
        return self.pos - count, self.pos

    def varint(self) -> int:
        first = self.byte()
        if first & 1:
            return first >> 1
        if first == 0:  # the marker byte of a full 64-bit value
            start, end = self.take(8)
            return int.from_bytes(self.data[start:end], "little")
        extra = (first & -first).bit_length() - 1  # trailing zeros = count of additional bytes
        start, end = self.take(extra)
        return (first | int.from_bytes(self.data[start:end], "little") << 8) >> (extra + 1)

    def align(self, alignment: int) -> None:
        if alignment < 1 or alignment & (alignment - 1):
            raise BytecodeError(f"alignment {alignment} is not a power of two")
        while self.pos % alignment:
            if self.byte() != PADDING:
                raise BytecodeError("expected an alignment byte (0xCB)")


def _sections(data: memoryview) -> dict[int, tuple[int, int]]:
    if bytes(data[:4]) != MAGIC:
        raise BytecodeError("not MLIR bytecode (no ML\\xefR magic)")
    reader = _Reader(data, 4)
    reader.varint()  # the bytecode version: the sections read here have kept their layout since version 0
    nul = bytes(data[reader.pos:reader.pos + 4096]).find(b"\0")
    if nul < 0:
        raise BytecodeError("the producer string is not terminated")
    reader.pos += nul + 1
    sections = {}
    while not reader.empty():
        head = reader.byte()
        length = reader.varint()
        if head & 0x80:
            reader.align(reader.varint())
        sections[head & 0x7F] = reader.take(length)
    return sections


def _strings(data: memoryview, span: tuple[int, int]) -> list[str]:
    reader = _Reader(data, *span)
    count = reader.varint()
    lengths = [reader.varint() for _ in range(count)]  # last string first
    strings, end = [], span[1]
    for length in lengths:
        if length < 1 or end - length < reader.pos:
            raise BytecodeError("a string runs outside the string section")
        strings.append(bytes(data[end - length:end - 1]).decode("utf-8", "replace"))
        end -= length
    return strings[::-1]


def read_blobs(path: str) -> dict[str, memoryview]:
    """Resource key -> raw bytes of every blob resource in the bytecode file at ``path``."""
    with open(path, "rb") as f:
        data = memoryview(f.read())
    sections = _sections(data)
    if RESOURCE_OFFSET not in sections or RESOURCE not in sections:
        return {}
    strings = _strings(data, sections[STRING])
    offsets = _Reader(data, *sections[RESOURCE_OFFSET])
    entries = _Reader(data, *sections[RESOURCE])
    blobs: dict[str, memoryview] = {}

    def group() -> None:
        for _ in range(offsets.varint()):
            index, size, kind = offsets.varint(), offsets.varint(), offsets.byte()
            if index >= len(strings):
                raise BytecodeError(f"resource key index {index} outside the string table")
            start, end = entries.take(size)
            if kind != BLOB or size == 0:  # bools, strings, and empty declarations carry no weights
                continue
            entry = _Reader(data, start, end)
            alignment, blob_size = entry.varint(), entry.varint()
            entry.align(alignment)
            begin, stop = entry.take(blob_size)
            if not entry.empty():
                raise BytecodeError(f"trailing bytes after the blob {strings[index]}")
            blobs[strings[index]] = data[begin:stop]

    for _ in range(offsets.varint()):  # external resource groups: a string key, then a group
        offsets.varint()
        group()
    while not offsets.empty():  # dialect resource groups: a dialect index, then a group
        offsets.varint()
        group()
    return blobs

