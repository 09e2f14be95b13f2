"""Checking a fetched blob against the content hash recorded in a transaction slip."""

from __future__ import annotations

from collections.abc import Callable

from mbds_py.storage.client import BlobStore
from mbds_py.storage.errors import ContentMismatchError

__all__ = ["fetch_verified", "keccak256"]


def keccak256(data: bytes) -> bytes:
    """Keccak-256 (Ethereum's), the hash slips record for ciphertexts."""
    from eth_utils import keccak  # imported lazily: eth_utils is slow to import

    return keccak(data)


def fetch_verified(store: BlobStore, cid: str, expected_hash: bytes,
                   hash_fn: Callable[[bytes], bytes] = keccak256) -> bytes:
    """Read ``cid`` from ``store`` and return it only if ``hash_fn(data) == expected_hash``.

    ``store.cat`` already checks the bytes against the CID; this checks them
    against the slip, so a blob swapped for another valid blob is caught too.
    Raises :class:`ContentMismatchError` (an ``IntegrityError``) naming the CID.
    """
    data = store.cat(cid)
    actual = hash_fn(data)
    if actual != expected_hash:
        raise ContentMismatchError(
            f"{cid}: content hash 0x{actual.hex()} does not match 0x{bytes(expected_hash).hex()} "
            "recorded in the slip; the blob was replaced or the slip points at the wrong CID",
            cid=cid)
    return data
