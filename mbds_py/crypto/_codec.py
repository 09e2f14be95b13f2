"""A small strict binary codec: the one canonical encoding of crypto types.

Integers are big-endian and fixed width; variable-length fields carry a u32
length prefix; strings are UTF-8.  Composite types start with a 6-byte header
``b"MBDS" + kind + version``.  Decoding rejects truncation, oversize fields,
unknown headers and trailing bytes, so ``from_bytes(x).to_bytes() == x``.
"""

from __future__ import annotations

import struct

from .errors import MalformedDataError

MAGIC = b"MBDS"

# kinds of composite objects (second-to-last header byte)
KIND_UMBRAL_CIPHERTEXT = 0x01
KIND_PATIENT_KEYS = 0x02
KIND_PATIENT_SECRETS = 0x03
KIND_PAYLOAD = 0x04
KIND_RECORD_HEADER = 0x05
KIND_ENVELOPE = 0x06
KIND_CONFIRMED_RECORD = 0x07

_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


class Writer:
    """Append-only encoder."""

    __slots__ = ("_parts",)

    def __init__(self, kind: int | None = None, version: int = 1):
        self._parts: list[bytes] = []
        if kind is not None:
            self._parts.append(MAGIC + bytes((kind, version)))

    def u8(self, value: int) -> "Writer":
        self._parts.append(_U8.pack(value))
        return self

    def u16(self, value: int) -> "Writer":
        self._parts.append(_U16.pack(value))
        return self

    def u64(self, value: int) -> "Writer":
        self._parts.append(_U64.pack(value))
        return self

    def raw(self, data: bytes) -> "Writer":
        """Fixed-size field: the reader must know its length."""
        self._parts.append(bytes(data))
        return self

    def blob(self, data: bytes) -> "Writer":
        self._parts.append(_U32.pack(len(data)))
        self._parts.append(bytes(data))
        return self

    def text(self, value: str) -> "Writer":
        return self.blob(value.encode("utf-8"))

    def getvalue(self) -> bytes:
        return b"".join(self._parts)


class Reader:
    """Strict decoder; every failure is a :class:`MalformedDataError` naming ``what``."""

    __slots__ = ("_data", "_pos", "_what")

    def __init__(self, data: bytes, what: str, kind: int | None = None, version: int = 1):
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise MalformedDataError(f"{what}: expected bytes, got {type(data).__name__}")
        self._data = bytes(data)
        self._pos = 0
        self._what = what
        if kind is not None:
            header = self.raw(6)
            if header[:4] != MAGIC or header[4] != kind:
                raise MalformedDataError(f"{what}: not an MBDS {what} encoding (bad header {header.hex()})")
            if header[5] != version:
                raise MalformedDataError(f"{what}: unsupported encoding version {header[5]} (expected {version})")

    def fail(self, message: str) -> MalformedDataError:
        return MalformedDataError(f"{self._what}: {message}")

    def _take(self, n: int) -> bytes:
        end = self._pos + n
        if end > len(self._data):
            raise self.fail(f"truncated at byte {self._pos}: needs {n} more bytes, "
                            f"{len(self._data) - self._pos} left")
        out = self._data[self._pos:end]
        self._pos = end
        return out

    def u8(self) -> int:
        return self._take(1)[0]

    def u16(self) -> int:
        return _U16.unpack(self._take(2))[0]

    def u64(self) -> int:
        return _U64.unpack(self._take(8))[0]

    def raw(self, n: int) -> bytes:
        return self._take(n)

    def blob(self, max_len: int) -> bytes:
        n = _U32.unpack(self._take(4))[0]
        if n > max_len:
            raise self.fail(f"field of {n} bytes exceeds the limit of {max_len}")
        return self._take(n)

    def text(self, max_len: int) -> str:
        raw = self.blob(max_len)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.fail(f"text field is not UTF-8 ({exc.reason})") from None

    def done(self) -> None:
        if self._pos != len(self._data):
            raise self.fail(f"{len(self._data) - self._pos} trailing bytes after the encoding")
