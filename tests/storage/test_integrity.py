"""fetch_verified: the slip's content hash must match what storage returns."""

from __future__ import annotations

import hashlib

import pytest
from eth_utils import keccak

from mbds_py.errors import IntegrityError
from mbds_py.storage.client import KuboClient
from mbds_py.storage.errors import ContentMismatchError
from mbds_py.storage.integrity import fetch_verified, keccak256

CIPHERTEXT = b"\x02umbral-capsule\x00ciphertext-bytes"


def test_keccak256_is_ethereums_keccak() -> None:
    assert keccak256(b"") == bytes.fromhex("c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470")


def test_fetch_verified_returns_bytes_matching_the_slip_hash(client: KuboClient) -> None:
    cid = client.add(CIPHERTEXT)
    assert fetch_verified(client, cid, keccak(CIPHERTEXT)) == CIPHERTEXT


def test_fetch_verified_raises_naming_the_cid_when_the_slip_hash_differs(client: KuboClient) -> None:
    cid = client.add(b"another record's ciphertext")  # a valid blob, but not the one the slip names
    with pytest.raises(ContentMismatchError) as info:
        fetch_verified(client, cid, keccak(CIPHERTEXT))
    assert isinstance(info.value, IntegrityError)
    assert info.value.cid == cid
    assert cid in str(info.value) and keccak(CIPHERTEXT).hex() in str(info.value)


def test_fetch_verified_accepts_another_hash_function(client: KuboClient) -> None:
    cid = client.add(CIPHERTEXT)
    sha = lambda data: hashlib.sha256(data).digest()  # noqa: E731
    assert fetch_verified(client, cid, sha(CIPHERTEXT), sha) == CIPHERTEXT
    with pytest.raises(IntegrityError, match=f"{cid}: content hash 0x{sha(CIPHERTEXT).hex()} does not match "
                                             f"0x{keccak(CIPHERTEXT).hex()} recorded in the slip"):
        fetch_verified(client, cid, keccak(CIPHERTEXT), sha)
