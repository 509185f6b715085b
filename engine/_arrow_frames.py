"""The framing of an Arrow IPC stream: where its messages start and end, and their kinds.

An encapsulated IPC message is a continuation marker (0xFFFFFFFF), the length of
its flatbuffer metadata, the metadata, then a body of the length the metadata
names; a stream is a schema message, dictionary and record batch messages, and
an end marker. Reading only that much lets engine.codecs read and write many
one-batch streams of one schema (and the same dictionaries) in a single pass,
without pyarrow opening a stream per message. See the Arrow columnar format,
"Encapsulated message format".
"""

from __future__ import annotations

import struct
from typing import NamedTuple

SCHEMA = 1
DICTIONARY_BATCH = 2
RECORD_BATCH = 3
END_OF_STREAM = b"\xff\xff\xff\xff\x00\x00\x00\x00"

_PREFIX = struct.Struct("<ii")  # continuation marker, metadata length
_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")
_U16 = struct.Struct("<H")
_I64 = struct.Struct("<q")
_HEADER_TYPE_SLOT = 4 + 2 * 1
"""Vtable slots of the Message table's fields (Message.fbs): header_type is field 1,
bodyLength field 3."""
_BODY_LENGTH_SLOT = 4 + 2 * 3


class Layout(NamedTuple):
    """Where the parts of a one-stream payload lie."""

    header_end: int
    """data[:header_end] is the schema and the dictionaries before the first record batch."""
    body_end: int
    """The record batches are data[header_end:body_end]."""
    record_batches: int


def layout(data: bytes) -> Layout | None:
    """The layout of a payload holding one Arrow stream; None if it is not framed as one,
    or replaces a dictionary after a record batch (such a payload is read alone).

    The first message is taken to be the schema (a schema has no body): a payload that
    starts otherwise is not a stream, and pyarrow says so when it reads it.
    """
    try:
        marker, meta_len = _PREFIX.unpack_from(data, 0)
        if marker != -1 or meta_len <= 0:
            return None
        pos = header_end = 8 + meta_len
        size, batches = len(data), 0
        while pos < size:
            marker, meta_len = _PREFIX.unpack_from(data, pos)
            if marker != -1 or meta_len < 0:
                return None
            if meta_len == 0:
                return Layout(header_end, pos, batches)
            kind, body_len = message_header(data, pos + 8)
            if kind == DICTIONARY_BATCH and batches:
                return None  # a dictionary replaced mid-stream would carry over to the next payload
            batches += kind == RECORD_BATCH
            pos += 8 + meta_len + body_len
            if kind == DICTIONARY_BATCH:
                header_end = pos
        return Layout(header_end, size, batches) if pos == size else None
    except (struct.error, IndexError):  # lengths or offsets that point past the payload
        return None


def message_at(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    """(kind, end) of the message that starts at `pos`; kind 0 if none can be read there."""
    try:
        marker, meta_len = _PREFIX.unpack_from(data, pos)
        if marker != -1 or meta_len <= 0:
            return 0, pos
        kind, body_len = message_header(data, pos + 8)
    except (struct.error, IndexError):
        return 0, pos
    return kind, pos + 8 + meta_len + body_len


def message_header(data: bytes | memoryview, at: int) -> tuple[int, int]:
    """(header_type, bodyLength) of the flatbuffer Message table whose buffer starts at `at`."""
    table = at + _U32.unpack_from(data, at)[0]
    vtable = table - _I32.unpack_from(data, table)[0]
    vtable_len = _U16.unpack_from(data, vtable)[0]
    kind_at = (
        _U16.unpack_from(data, vtable + _HEADER_TYPE_SLOT)[0]
        if _HEADER_TYPE_SLOT < vtable_len
        else 0
    )
    body_at = (
        _U16.unpack_from(data, vtable + _BODY_LENGTH_SLOT)[0]
        if _BODY_LENGTH_SLOT < vtable_len
        else 0
    )
    kind = data[table + kind_at] if kind_at else 0
    body_len = _I64.unpack_from(data, table + body_at)[0] if body_at else 0
    return kind, body_len
