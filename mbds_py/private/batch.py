"""Batches of confirmed records for ``POST /v1/slips/batch``: one request, many slips.

Wire format: ``b"MBSB"``, a version byte (1), a u16 count, then per record a u32
length and the record's bytes (:meth:`ConfirmedRecord.to_bytes`).  Decoding
refuses a truncated, oversized or over-long batch and trailing bytes as a whole
(:class:`BatchError`, answered 400) — nothing of it is ordered; a batch that
decodes gets one answer per record, a bad record refused alone with its reason.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidSlip

MAGIC = b"MBSB"
VERSION = 1
MAX_SLIPS = 256
"""Records per batch, at most."""
MAX_RECORD = 64 * 1024
"""Bytes per record, at most (a confirmed record is about 1 KiB; text and storage address are bounded)."""
MAX_BATCH = 8 + MAX_SLIPS * (4 + MAX_RECORD)
_HEAD = struct.Struct(">4sBH")
_LEN = struct.Struct(">I")


class BatchError(InvalidSlip):
    """A batch that does not decode (truncated, oversized, bad header): refused as a whole."""


def encode_batch(records: list[bytes]) -> bytes:
    if not 1 <= len(records) <= MAX_SLIPS:
        raise BatchError(f"a batch holds 1..{MAX_SLIPS} records, got {len(records)}")
    parts = [_HEAD.pack(MAGIC, VERSION, len(records))]
    for r in records:
        if not 0 < len(r) <= MAX_RECORD:
            raise BatchError(f"a record in a batch is 1..{MAX_RECORD} bytes, got {len(r)}")
        parts += [_LEN.pack(len(r)), bytes(r)]
    return b"".join(parts)


def decode_batch(data: bytes) -> list[bytes]:
    if len(data) < _HEAD.size:
        raise BatchError(f"truncated batch: {len(data)} bytes, the header alone is {_HEAD.size}")
    magic, version, count = _HEAD.unpack_from(data)
    if magic != MAGIC or version != VERSION:
        raise BatchError(f"not a version-{VERSION} slip batch (header {data[:5].hex()})")
    if not 1 <= count <= MAX_SLIPS:
        raise BatchError(f"a batch holds 1..{MAX_SLIPS} records, this one says {count}")
    pos, out = _HEAD.size, []
    for i in range(count):
        if pos + 4 > len(data):
            raise BatchError(f"truncated batch: record {i} of {count} is missing")
        (n,) = _LEN.unpack_from(data, pos)
        if not 0 < n <= MAX_RECORD:
            raise BatchError(f"record {i} of the batch is {n} bytes (allowed 1..{MAX_RECORD})")
        pos += 4
        if pos + n > len(data):
            raise BatchError(f"truncated batch: record {i} needs {n} bytes, {len(data) - pos} left")
        out.append(data[pos:pos + n])
        pos += n
    if pos != len(data):
        raise BatchError(f"{len(data) - pos} trailing bytes after the batch's {count} records")
    return out


@dataclass(frozen=True)
class SlipAck:
    """One record's answer: its slip ID and status (``accepted``, ``already-pending``, ``committed`` …),
    or why it was refused."""

    slip_id: str | None
    status: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "SlipAck":
        return cls(doc.get("slip_id"), doc.get("status"), doc.get("error"))

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in (("slip_id", self.slip_id), ("status", self.status), ("error", self.error))
                if v is not None}
