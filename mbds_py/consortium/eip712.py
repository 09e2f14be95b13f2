"""EIP-712 domain, digests, signing and recovery for the consortium chain (pure).

The domain is OpenZeppelin ``EIP712("MBDS ConsortiumIndex", "1")`` of the deployed
``ConsortiumIndex``: ``EIP712Domain(string name,string version,uint256 chainId,
address verifyingContract)``. The same domain covers block attestations, block
rejections, producer signatures and the bridge institutions' slip signatures.

Signers are passed in (:class:`Signer`): anything with an ``address`` and a
``sign_digest(digest) -> 65-byte r‖s‖v`` method. Recovery mirrors OpenZeppelin
``ECDSA.tryRecover``: 65 bytes, v ∈ {27, 28}, s in the lower half order.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

from eth_keys import keys
from eth_utils import keccak, to_checksum_address

INDEX_DOMAIN_NAME = "MBDS ConsortiumIndex"
INDEX_DOMAIN_VERSION = "1"
EIP712_DOMAIN_TYPEHASH = keccak(b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
BLOCK_REJECTION_TYPEHASH = keccak(b"BlockRejection(bytes32 headerHash)")
_SECP256K1_HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0


def u256(value: int) -> bytes:
    """``abi.encode`` of an unsigned integer."""
    return value.to_bytes(32, "big")


@dataclass(frozen=True)
class Domain:
    """An EIP-712 domain (name, version, chain ID, verifying contract)."""

    name: str
    version: str
    chain_id: int
    verifying_contract: str

    @cached_property
    def separator(self) -> bytes:
        return keccak(EIP712_DOMAIN_TYPEHASH + keccak(text=self.name) + keccak(text=self.version)
                      + u256(self.chain_id) + bytes(12) + bytes.fromhex(self.verifying_contract[2:]))

    def digest(self, struct_hash: bytes) -> bytes:
        """``_hashTypedDataV4(structHash)``."""
        return keccak(b"\x19\x01" + self.separator + struct_hash)


def index_domain(chain_id: int, index_address: str) -> Domain:
    """The domain of a ``ConsortiumIndex`` deployment."""
    return Domain(INDEX_DOMAIN_NAME, INDEX_DOMAIN_VERSION, chain_id, to_checksum_address(index_address))


def rejection_struct_hash(header_hash: bytes) -> bytes:
    """``hashStruct(BlockRejection(headerHash))``."""
    return keccak(BLOCK_REJECTION_TYPEHASH + header_hash)


class Signer(Protocol):
    """Signs 32-byte digests; the consensus core never sees a private key."""

    @property
    def address(self) -> str: ...

    def sign_digest(self, digest: bytes) -> bytes: ...


@dataclass(frozen=True)
class AccountSigner:
    """A :class:`Signer` over an eth-account ``LocalAccount``."""

    account: object

    @property
    def address(self) -> str:
        return self.account.address  # type: ignore[attr-defined]

    def sign_digest(self, digest: bytes) -> bytes:
        return bytes(self.account.unsafe_sign_hash(digest).signature)  # type: ignore[attr-defined]


def recover(digest: bytes, signature: bytes) -> str | None:
    """The checksummed signer of ``digest``, or None when OpenZeppelin ECDSA would reject the signature."""
    if len(signature) != 65 or signature[64] not in (27, 28):
        return None
    s = int.from_bytes(signature[32:64], "big")
    if s > _SECP256K1_HALF_N:
        return None
    try:
        sig = keys.Signature(signature_bytes=signature[:64] + bytes([signature[64] - 27]))
        return sig.recover_public_key_from_msg_hash(digest).to_checksum_address()
    except Exception:  # noqa: BLE001 - any failure means "does not recover"
        return None


__all__ = [
    "AccountSigner",
    "BLOCK_REJECTION_TYPEHASH",
    "Domain",
    "EIP712_DOMAIN_TYPEHASH",
    "INDEX_DOMAIN_NAME",
    "INDEX_DOMAIN_VERSION",
    "Signer",
    "index_domain",
    "recover",
    "rejection_struct_hash",
    "u256",
]
