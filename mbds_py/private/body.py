"""Block bodies: the canonical bytes every replica keeps and publishes to storage.

The header commits to the body by its CID (the CIDv0 Kubo's default ``ipfs
add`` gives for these bytes), so any replica can recompute it and any reader
can check a fetched body against the header.
"""

from __future__ import annotations

import struct

from ..errors import IntegrityError
from ..pbft.types import SlipEnvelope
from ..storage.unixfs import b58decode, b58encode, cid_of

MAGIC = b"MBDS-BODY/1\n"
_U32 = struct.Struct(">I")


def encode_body(slips: tuple[SlipEnvelope, ...] | list[SlipEnvelope]) -> bytes:
    parts = [MAGIC, _U32.pack(len(slips))]
    for s in slips:
        parts += [s.slip_id, _U32.pack(len(s.payload)), s.payload]
    return b"".join(parts)


def decode_body(data: bytes) -> tuple[SlipEnvelope, ...]:
    if not data.startswith(MAGIC):
        raise IntegrityError("not an MBDS block body (bad magic)")
    pos = len(MAGIC)
    try:
        (count,) = _U32.unpack_from(data, pos)
        pos += 4
        out = []
        for _ in range(count):
            slip_id = data[pos:pos + 32]
            (size,) = _U32.unpack_from(data, pos + 32)
            pos += 36
            payload = data[pos:pos + size]
            if len(payload) != size or len(slip_id) != 32:
                raise IntegrityError("truncated block body")
            pos += size
            out.append(SlipEnvelope(slip_id, payload))
    except struct.error as exc:
        raise IntegrityError(f"truncated block body: {exc}") from exc
    if pos != len(data):
        raise IntegrityError("trailing bytes after the block body")
    return tuple(out)


def body_cid_bytes(slips: tuple[SlipEnvelope, ...]) -> bytes:
    """Binary CIDv0 (the sha2-256 multihash) of the encoded body: the header's ``bodyCid``."""
    return b58decode(cid_of(encode_body(slips)))


def cid_text(body_cid: bytes) -> str:
    """``Qm…`` text form of a header's ``bodyCid``."""
    return b58encode(body_cid)
