"""Signers, verifiers and the digests the chain contract must reproduce."""

import dataclasses

import pytest

from eth_abi import encode as abi_encode

from mbds_py.pbft.crypto import EthSigner, EthVerifier, FakeKeyring, keccak256
from mbds_py.pbft.errors import BadSignature
from mbds_py.pbft.messages import Commit, MessageAuth, Prepare
from mbds_py.pbft.types import (
    BLOCK_HEADER_TYPEHASH,
    DEFAULT_SCHEME,
    BlockHeader,
    commit_vote_digest,
    header_struct_hash,
)

_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def test_eth_signature_recovers_the_address_like_eth_account():
    from eth_account import Account

    key = keccak256(b"k")
    signer = EthSigner(key)
    digest = keccak256(b"message")
    sig = signer.sign(digest)
    assert len(sig) == 65 and sig[64] in (27, 28)
    assert signer.address == bytes.fromhex(Account.from_key(key).address[2:])
    assert Account._recover_hash(digest, signature=sig) == Account.from_key(key).address
    verifier = EthVerifier()
    assert verifier.verify(digest, sig, signer.address)
    assert not verifier.verify(keccak256(b"other"), sig, signer.address)


def test_eth_verifier_rejects_high_s_like_openzeppelin_ecdsa():
    signer = EthSigner(keccak256(b"k"))
    digest = keccak256(b"m")
    sig = signer.sign(digest)
    r, s, v = sig[:32], int.from_bytes(sig[32:64], "big"), sig[64]
    malleated = r + (_N - s).to_bytes(32, "big") + bytes([55 - v])  # same point, flipped parity
    assert not EthVerifier().verify(digest, malleated, signer.address)
    assert not EthVerifier().verify(digest, sig[:64], signer.address)


def test_fake_keyring_verifies_only_the_right_signer():
    ring = FakeKeyring(4)
    digest = keccak256(b"m")
    sig = ring.signers[1].sign(digest)
    assert ring.verify(digest, sig, ring.addresses[1])
    assert not ring.verify(digest, sig, ring.addresses[2])
    assert not ring.verify(digest, sig, b"\x00" * 20)


def test_header_digest_is_the_eip712_struct_hash():
    header = BlockHeader(5, 9, b"\x01" * 32, 1_700_000_000_123, b"\x02" * 20, b"\x03" * 32, b"bafybeigdyr")
    expected = keccak256(
        abi_encode(
            ["bytes32", "uint64", "uint64", "bytes32", "uint64", "address", "bytes32", "bytes32"],
            [BLOCK_HEADER_TYPEHASH, 5, 9, header.prev_hash, header.timestamp, "0x" + "02" * 20, header.merkle_root,
             keccak256(header.body_cid)],
        )
    )
    assert header_struct_hash(header) == expected == DEFAULT_SCHEME.header_digest(header)
    assert BLOCK_HEADER_TYPEHASH == keccak256(
        b"BlockHeader(uint64 height,uint64 seq,bytes32 prevHash,uint64 timestamp,address creator,"
        b"bytes32 merkleRoot,bytes bodyCid)"
    )


def test_commit_signature_covers_the_abi_encoded_commit_digest():
    domain, digest = keccak256(b"chain"), keccak256(b"header")
    expected = keccak256(abi_encode(["bytes32", "bytes32", "uint256", "uint256"], [domain, digest, 4, 17]))
    assert commit_vote_digest(domain, 4, 17, digest) == expected
    ring = FakeKeyring(4)
    auth = MessageAuth(domain, ring.addresses, ring, DEFAULT_SCHEME)
    commit = auth.sign(Commit(4, 17, digest, 2), ring.signers[2])
    assert ring.verify(expected, commit.signature, ring.addresses[2])
    # a different view is a different vote
    assert auth.signing_hash(dataclasses.replace(commit, view=5)) != expected


def test_signatures_are_bound_to_the_chain_domain():
    ring = FakeKeyring(4)
    a = MessageAuth(keccak256(b"hospital-a"), ring.addresses, ring, DEFAULT_SCHEME)
    b = MessageAuth(keccak256(b"hospital-b"), ring.addresses, ring, DEFAULT_SCHEME)
    prepare = a.sign(Prepare(0, 1, b"\x09" * 32, 1), ring.signers[1])
    a.check(prepare)
    with pytest.raises(BadSignature):
        b.check(prepare)
