"""Body CIDs as ``bytes32``: the sha2-256 digest of a CIDv0 (dag-pb) multihash.

Kubo's default ``ipfs add`` (and the bundled storage node) returns CIDv0 ``Qm…``
names: base58btc of ``0x12 0x20 ‖ digest``. The header stores only the digest;
:func:`cid_v0` turns it back into the name to fetch the body with.
"""

from __future__ import annotations

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_SHA256_PREFIX = b"\x12\x20"


def cid_v0(digest: bytes) -> str:
    """The CIDv0 string of a sha2-256 digest."""
    if len(digest) != 32:
        raise ValueError(f"a sha2-256 digest is 32 bytes, got {len(digest)}")
    num = int.from_bytes(_SHA256_PREFIX + digest, "big")
    out = []
    while num:
        num, rem = divmod(num, 58)
        out.append(_B58[rem])
    return "".join(reversed(out))


def cid_v0_digest(cid: str) -> bytes:
    """The 32-byte digest of a CIDv0 ``Qm…`` string."""
    text = cid.strip().removeprefix("/ipfs/")
    if len(text) != 46 or not text.startswith("Qm"):
        raise ValueError(f"{cid!r} is not a CIDv0 ('Qm…', 46 characters); the header stores CIDv0 digests only")
    num = 0
    for ch in text:
        index = _B58.find(ch)
        if index < 0:
            raise ValueError(f"{cid!r}: invalid base58 character {ch!r}")
        num = num * 58 + index
    raw = num.to_bytes(34, "big")
    if raw[:2] != _SHA256_PREFIX:
        raise ValueError(f"{cid!r} is not a sha2-256 multihash")
    return raw[2:]


def default_cid_of(data: bytes) -> bytes:
    """Digest of the CID Kubo's default ``ipfs add`` gives ``data`` (the bundled storage node's CID)."""
    from ..storage.unixfs import cid_of  # storage is optional for the pure core

    return cid_v0_digest(str(cid_of(data)))


__all__ = ["cid_v0", "cid_v0_digest", "default_cid_of"]
