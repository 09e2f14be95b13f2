"""The agreed value: blocks of transaction slips, their digests and quorum certificates.

A block header follows the paper's Figure 3 (height, previous hash, timestamp,
creator, Merkle root of the slips) plus the PBFT sequence number it was
ordered at and the CID of the block body.  The digests that reach the chain
are pluggable through :class:`DigestScheme`; the defaults are already
Solidity-friendly:

* header digest = EIP-712 ``hashStruct(BlockHeader)``
  (``BlockHeader(uint64 height,uint64 seq,bytes32 prevHash,uint64 timestamp,
  address creator,bytes32 merkleRoot,bytes bodyCid)``);
* commit digest (what each COMMIT signature covers) =
  ``keccak256(abi.encode(bytes32 domain, bytes32 headerDigest, uint256 view, uint256 seq))``;
* slip leaf = ``keccak256(bytes.concat(keccak256(abi.encode(bytes32 slipId, bytes payload))))``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .crypto import keccak256
from .errors import MalformedMessage

ZERO32 = bytes(32)
NULL_DIGEST = ZERO32
"""Digest of the PBFT null request that fills sequence gaps after a view change."""


def _check_len(name: str, value: bytes, size: int) -> None:
    if len(value) != size:
        raise MalformedMessage(f"{name} must be {size} bytes, got {len(value)}")


@dataclass(frozen=True)
class SlipEnvelope:
    """A transaction slip as the consensus core sees it: an id and opaque bytes."""

    slip_id: bytes
    payload: bytes

    def __post_init__(self) -> None:
        _check_len("slip_id", self.slip_id, 32)


@dataclass(frozen=True)
class BlockHeader:
    """Header of a private-chain block (paper Figure 3)."""

    height: int
    seq: int
    prev_hash: bytes
    timestamp: int
    """Milliseconds since the Unix epoch, chosen by the primary."""
    creator: bytes
    """Validator address (20 bytes) of the primary that proposed the block."""
    merkle_root: bytes
    body_cid: bytes

    def __post_init__(self) -> None:
        _check_len("prev_hash", self.prev_hash, 32)
        _check_len("creator", self.creator, 20)
        _check_len("merkle_root", self.merkle_root, 32)


@dataclass(frozen=True)
class Block:
    """A block: header plus the slips whose Merkle root it commits to."""

    header: BlockHeader
    slips: tuple[SlipEnvelope, ...]


@dataclass(frozen=True)
class Head:
    """Tip of a replica's applied chain."""

    height: int
    hash: bytes
    timestamp: int


@dataclass(frozen=True)
class CommitSignature:
    """One validator's COMMIT signature (over the commit digest)."""

    signer: int
    signature: bytes


@dataclass(frozen=True)
class QuorumCertificate:
    """Proof that a header was committed: quorum COMMIT signatures from one view.

    Each signature covers ``scheme.commit_digest(domain, view, header.seq,
    scheme.header_digest(header))``; signers are distinct and sorted.
    """

    header: BlockHeader
    view: int
    signatures: tuple[CommitSignature, ...]


@dataclass(frozen=True)
class CertifiedBlock:
    """A committed block with its quorum certificate: what state transfer ships."""

    block: Block
    qc: QuorumCertificate


# --- digests -----------------------------------------------------------------------------

BLOCK_HEADER_TYPE = (
    b"BlockHeader(uint64 height,uint64 seq,bytes32 prevHash,uint64 timestamp,"
    b"address creator,bytes32 merkleRoot,bytes bodyCid)"
)
BLOCK_HEADER_TYPEHASH = keccak256(BLOCK_HEADER_TYPE)


def _u256(value: int) -> bytes:
    return value.to_bytes(32, "big")


def header_struct_hash(header: BlockHeader) -> bytes:
    """EIP-712 ``hashStruct`` of a header: the default header digest."""
    return keccak256(
        BLOCK_HEADER_TYPEHASH
        + _u256(header.height)
        + _u256(header.seq)
        + header.prev_hash
        + _u256(header.timestamp)
        + bytes(12)
        + header.creator
        + header.merkle_root
        + keccak256(header.body_cid)
    )


def commit_vote_digest(domain: bytes, view: int, seq: int, digest: bytes) -> bytes:
    """``keccak256(abi.encode(domain, digest, view, seq))``: what a COMMIT signs.

    Binding the view matters: signatures from different views must never add up
    to a certificate (see the module docs of :mod:`mbds_py.pbft.ordering`).
    """
    return keccak256(domain + digest + _u256(view) + _u256(seq))


def slip_leaf(slip: SlipEnvelope) -> bytes:
    """``StandardMerkleTree`` leaf of ``abi.encode(bytes32 slipId, bytes payload)``."""
    payload = slip.payload
    padded = payload + bytes(-len(payload) % 32)
    encoded = slip.slip_id + _u256(64) + _u256(len(payload)) + padded
    return keccak256(keccak256(encoded))


@dataclass(frozen=True)
class DigestScheme:
    """The hash functions the chain contract must agree with; override to change them."""

    header_digest: Callable[[BlockHeader], bytes] = header_struct_hash
    commit_digest: Callable[[bytes, int, int, bytes], bytes] = commit_vote_digest
    slip_leaf: Callable[[SlipEnvelope], bytes] = slip_leaf


DEFAULT_SCHEME = DigestScheme()

GENESIS_HEAD = Head(height=0, hash=ZERO32, timestamp=0)


__all__ = [
    "BLOCK_HEADER_TYPEHASH",
    "Block",
    "BlockHeader",
    "CertifiedBlock",
    "CommitSignature",
    "DEFAULT_SCHEME",
    "DigestScheme",
    "GENESIS_HEAD",
    "Head",
    "NULL_DIGEST",
    "QuorumCertificate",
    "SlipEnvelope",
    "ZERO32",
    "commit_vote_digest",
    "header_struct_hash",
    "slip_leaf",
]
