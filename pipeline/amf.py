"""AMF0, the value encoding of RTMP's commands (Adobe's "Action Message Format 0" spec).

Only what a publisher sends and reads back: numbers, booleans, strings, null, objects and
arrays. Encoding takes Python values (``None`` is null, a dict is an object); decoding
gives them back.
"""

from __future__ import annotations

import struct
from typing import Any

NUMBER, BOOLEAN, STRING, OBJECT, NULL, UNDEFINED = 0x00, 0x01, 0x02, 0x03, 0x05, 0x06
ECMA_ARRAY, OBJECT_END, STRICT_ARRAY, DATE, LONG_STRING = 0x08, 0x09, 0x0A, 0x0B, 0x0C
_DOUBLE = struct.Struct(">d")
_END = b"\x00\x00\x09"


class AmfError(ValueError):
    """Bytes that are not the AMF0 this module reads."""


def encode(*values: Any) -> bytes:
    """The AMF0 encoding of ``values``, one after another (a command's body)."""
    return b"".join(_encode(value) for value in values)


def _encode(value: Any) -> bytes:
    if value is None:
        return bytes((NULL,))
    if isinstance(value, bool):
        return bytes((BOOLEAN, value))
    if isinstance(value, int | float):
        return bytes((NUMBER,)) + _DOUBLE.pack(value)
    if isinstance(value, str):
        raw = value.encode()
        if len(raw) > 0xFFFF:
            return bytes((LONG_STRING,)) + len(raw).to_bytes(4, "big") + raw
        return bytes((STRING,)) + len(raw).to_bytes(2, "big") + raw
    if isinstance(value, dict):
        return bytes((OBJECT,)) + _pairs(value)
    raise TypeError(f"AMF0 has no encoding here for {type(value).__name__}")


def _key(name: str) -> bytes:
    raw = name.encode()
    return len(raw).to_bytes(2, "big") + raw


def _pairs(mapping: dict[str, Any]) -> bytes:
    return b"".join(_key(k) + _encode(v) for k, v in mapping.items()) + _END


def decode(data: bytes) -> list[Any]:
    """Every value in ``data``, in order; raises :class:`AmfError` on what it cannot read."""
    values, offset = [], 0
    while offset < len(data):
        value, offset = _decode(data, offset)
        values.append(value)
    return values


def _decode(data: bytes, offset: int) -> tuple[Any, int]:
    try:
        marker = data[offset]
        offset += 1
        if marker == NUMBER:
            return _DOUBLE.unpack_from(data, offset)[0], offset + 8
        if marker == BOOLEAN:
            return bool(data[offset]), offset + 1
        if marker == STRING:
            return _string(data, offset, 2)
        if marker == LONG_STRING:
            return _string(data, offset, 4)
        if marker in (NULL, UNDEFINED):
            return None, offset
        if marker == OBJECT:
            return _object(data, offset)
        if marker == ECMA_ARRAY:
            return _object(data, offset + 4)  # the count is a hint; the end marker decides
        if marker == STRICT_ARRAY:
            count = int.from_bytes(data[offset : offset + 4], "big")
            offset += 4
            items = []
            for _ in range(count):
                item, offset = _decode(data, offset)
                items.append(item)
            return items, offset
        if marker == DATE:
            return _DOUBLE.unpack_from(data, offset)[0], offset + 10  # milliseconds, zone
    except (IndexError, struct.error) as exc:
        raise AmfError(f"truncated AMF0 value at byte {offset}") from exc
    raise AmfError(f"unsupported AMF0 marker 0x{marker:02x} at byte {offset - 1}")


def _string(data: bytes, offset: int, width: int) -> tuple[str, int]:
    length = int.from_bytes(data[offset : offset + width], "big")
    start = offset + width
    if start + length > len(data):
        raise AmfError(f"truncated AMF0 string at byte {offset}")
    return data[start : start + length].decode(errors="replace"), start + length


def _object(data: bytes, offset: int) -> tuple[dict[str, Any], int]:
    found: dict[str, Any] = {}
    while True:
        if data[offset : offset + 3] == _END:
            return found, offset + 3
        name, offset = _string(data, offset, 2)
        found[name], offset = _decode(data, offset)
