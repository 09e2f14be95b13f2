"""The one canonical byte encoding of PBFT data (what is hashed, signed and sent).

A tiny schema-driven TLV-free format derived from the dataclass field types,
fields in declaration order:

* ``int``  -> 8-byte big-endian unsigned (uint64)
* ``bool`` -> one byte, 0 or 1
* ``bytes`` -> 4-byte big-endian length, then the bytes
* ``X | None`` -> one byte 0 (absent) or 1 followed by ``X``
* ``tuple[X, ...]`` -> 4-byte count, then the items
* a dataclass -> its fields

Top-level messages are prefixed by a one-byte type tag.  Encoding is a pure
function of the value, so two replicas always produce the same bytes.  Any
decoding problem raises :class:`MalformedMessage`.
"""

from __future__ import annotations

import dataclasses
import struct
import types
import typing
from typing import Any, Callable

from .errors import MalformedMessage

_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")
_MAX_U64 = (1 << 64) - 1

Encoder = Callable[[Any, bytearray], None]
Decoder = Callable[[memoryview, int], tuple[Any, int]]

_encoders: dict[Any, Encoder] = {}
_decoders: dict[Any, Decoder] = {}
_tags: dict[type, int] = {}
_classes: dict[int, type] = {}
_signed_encoders: dict[type, Encoder] = {}


def _enc_int(value: int, out: bytearray) -> None:
    if type(value) is not int or not 0 <= value <= _MAX_U64:
        raise MalformedMessage(f"integer field out of uint64 range: {value!r}")
    out += _U64.pack(value)


def _dec_int(buf: memoryview, pos: int) -> tuple[int, int]:
    end = pos + 8
    if end > len(buf):
        raise MalformedMessage("truncated integer")
    return _U64.unpack_from(buf, pos)[0], end


def _enc_bool(value: bool, out: bytearray) -> None:
    if type(value) is not bool:
        raise MalformedMessage(f"boolean field is not a bool: {value!r}")
    out.append(1 if value else 0)


def _dec_bool(buf: memoryview, pos: int) -> tuple[bool, int]:
    if pos >= len(buf) or buf[pos] > 1:
        raise MalformedMessage("bad boolean")
    return buf[pos] == 1, pos + 1


def _enc_bytes(value: bytes, out: bytearray) -> None:
    if not isinstance(value, (bytes, bytearray)):
        raise MalformedMessage(f"bytes field is not bytes: {type(value).__name__}")
    out += _U32.pack(len(value))
    out += value


def _dec_bytes(buf: memoryview, pos: int) -> tuple[bytes, int]:
    if pos + 4 > len(buf):
        raise MalformedMessage("truncated length")
    (n,) = _U32.unpack_from(buf, pos)
    pos += 4
    end = pos + n
    if end > len(buf):
        raise MalformedMessage("truncated bytes")
    return bytes(buf[pos:end]), end


def _optional_codec(inner: Any) -> tuple[Encoder, Decoder]:
    enc_inner, dec_inner = _encoder(inner), _decoder(inner)

    def enc(value: Any, out: bytearray) -> None:
        if value is None:
            out.append(0)
        else:
            out.append(1)
            enc_inner(value, out)

    def dec(buf: memoryview, pos: int) -> tuple[Any, int]:
        if pos >= len(buf) or buf[pos] > 1:
            raise MalformedMessage("bad optional marker")
        if buf[pos] == 0:
            return None, pos + 1
        return dec_inner(buf, pos + 1)

    return enc, dec


def _tuple_codec(inner: Any) -> tuple[Encoder, Decoder]:
    enc_inner, dec_inner = _encoder(inner), _decoder(inner)

    def enc(value: Any, out: bytearray) -> None:
        if not isinstance(value, tuple):
            raise MalformedMessage(f"sequence field is not a tuple: {type(value).__name__}")
        out += _U32.pack(len(value))
        for item in value:
            enc_inner(item, out)

    def dec(buf: memoryview, pos: int) -> tuple[Any, int]:
        if pos + 4 > len(buf):
            raise MalformedMessage("truncated count")
        (n,) = _U32.unpack_from(buf, pos)
        pos += 4
        if n > len(buf) - pos:  # every item takes at least one byte
            raise MalformedMessage("count larger than the message")
        items = []
        for _ in range(n):
            item, pos = dec_inner(buf, pos)
            items.append(item)
        return tuple(items), pos

    return enc, dec


def _dataclass_codec(cls: type, skip: frozenset[str] = frozenset()) -> tuple[Encoder, Decoder]:
    hints = typing.get_type_hints(cls)
    fields = [f.name for f in dataclasses.fields(cls) if f.name not in skip]
    parts = [(name, _encoder(hints[name]), _decoder(hints[name])) for name in fields]

    def enc(value: Any, out: bytearray) -> None:
        if type(value) is not cls:
            raise MalformedMessage(f"expected {cls.__name__}, got {type(value).__name__}")
        for name, enc_field, _ in parts:
            enc_field(getattr(value, name), out)

    def dec(buf: memoryview, pos: int) -> tuple[Any, int]:
        values = []
        for _, _, dec_field in parts:
            value, pos = dec_field(buf, pos)
            values.append(value)
        try:
            return cls(*values), pos
        except (TypeError, ValueError) as exc:
            raise MalformedMessage(f"invalid {cls.__name__}: {exc}") from exc

    return enc, dec


def _build(tp: Any) -> tuple[Encoder, Decoder]:
    if tp is int:
        return _enc_int, _dec_int
    if tp is bool:
        return _enc_bool, _dec_bool
    if tp is bytes:
        return _enc_bytes, _dec_bytes
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType) and len(args) == 2 and type(None) in args:
        return _optional_codec(args[0] if args[1] is type(None) else args[1])
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return _tuple_codec(args[0])
    if dataclasses.is_dataclass(tp):
        return _dataclass_codec(tp)
    raise TypeError(f"no canonical encoding for {tp!r}")


def _encoder(tp: Any) -> Encoder:
    if tp not in _encoders:  # the message types are not recursive: build eagerly
        _encoders[tp], _decoders[tp] = _build(tp)
    return _encoders[tp]


def _decoder(tp: Any) -> Decoder:
    _encoder(tp)
    return _decoders[tp]


# --- public API ------------------------------------------------------------------------


def encode(value: Any) -> bytes:
    """Canonical bytes of a dataclass value (no type tag)."""
    out = bytearray()
    _encoder(type(value))(value, out)
    return bytes(out)


def decode(cls: type, data: bytes) -> Any:
    """Inverse of :func:`encode` for ``cls``; rejects trailing bytes."""
    buf = memoryview(data)
    try:
        value, pos = _decoder(cls)(buf, 0)
    except struct.error as exc:  # pragma: no cover - guarded by explicit length checks
        raise MalformedMessage(str(exc)) from exc
    if pos != len(buf):
        raise MalformedMessage(f"{len(buf) - pos} trailing bytes after {cls.__name__}")
    return value


def message(tag: int, unsigned: tuple[str, ...] = ("signature",)):
    """Class decorator registering a top-level message type under a one-byte ``tag``.

    ``unsigned`` names the fields left out of :func:`signing_bytes` (the
    signature itself, and bulky payloads that are bound through a digest).
    """

    def register(cls: type) -> type:
        if tag in _classes or not 0 < tag < 256:
            raise ValueError(f"message tag {tag} is taken or out of range")
        _tags[cls] = tag
        _classes[tag] = cls
        cls._unsigned_fields = frozenset(unsigned)  # type: ignore[attr-defined]
        return cls

    return register


def _signed_encoder(cls: type) -> Encoder:
    enc = _signed_encoders.get(cls)
    if enc is None:
        enc = _dataclass_codec(cls, cls._unsigned_fields)[0]  # type: ignore[attr-defined]
        _signed_encoders[cls] = enc
    return enc


def encode_message(msg: Any) -> bytes:
    """Wire bytes of a registered message: type tag, then its canonical encoding."""
    tag = _tags.get(type(msg))
    if tag is None:
        raise MalformedMessage(f"{type(msg).__name__} is not a registered message")
    out = bytearray([tag])
    _encoder(type(msg))(msg, out)
    return bytes(out)


def decode_message(data: bytes) -> Any:
    """Parse wire bytes back into a message; :class:`MalformedMessage` on any defect."""
    if not data:
        raise MalformedMessage("empty message")
    cls = _classes.get(data[0])
    if cls is None:
        raise MalformedMessage(f"unknown message tag {data[0]}")
    return decode(cls, bytes(data[1:]))


def signing_bytes(msg: Any) -> bytes:
    """The bytes a message's signature covers: tag + fields minus the unsigned ones."""
    tag = _tags.get(type(msg))
    if tag is None:
        raise MalformedMessage(f"{type(msg).__name__} is not a registered message")
    out = bytearray([tag])
    _signed_encoder(type(msg))(msg, out)
    return bytes(out)


__all__ = ["decode", "decode_message", "encode", "encode_message", "message", "signing_bytes"]
