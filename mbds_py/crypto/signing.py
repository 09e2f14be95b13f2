"""EIP-712 typed-data hashing and secp256k1 signatures that contracts can verify.

Digests are computed here field by field (keccak256 of static ABI words, the
EIP-712 ``hashStruct``) — the same bytes ``eth_account.messages.encode_typed_data``
produces, which the tests check — and signed with libsecp256k1 (coincurve)
directly, without re-deriving the public key per signature.  Signatures are
65 bytes ``r ‖ s ‖ v`` (v ∈ {27, 28}, low s), the form OpenZeppelin ``ECDSA``
and ``eth_account`` accept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any, Union

import coincurve
from eth_account.signers.local import LocalAccount

from ._hash import keccak256 as keccak
from .errors import InvalidSignatureError, MalformedDataError, UnexpectedSignerError

SIGNATURE_SIZE = 65
_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_N = _SECP256K1_N // 2


def _eip55(raw: bytes) -> str:
    hex_addr = raw.hex()
    hashed = keccak(hex_addr.encode("ascii")).hex()
    return "0x" + "".join(c.upper() if int(h, 16) >= 8 else c for c, h in zip(hex_addr, hashed))


@lru_cache(maxsize=4096)
def _checksum_text(value: str) -> str | None:
    if len(value) != 42 or value[:2] not in ("0x", "0X"):
        return None
    try:
        raw = bytes.fromhex(value[2:])
    except ValueError:
        return None
    return _eip55(raw) if len(raw) == 20 else None  # fromhex skips whitespace


def checksum_address(value: str | bytes, what: str = "address") -> str:
    """EIP-55 form of a 20-byte address given as 0x-hex text (any case) or raw bytes."""
    if isinstance(value, (bytes, bytearray)):
        if len(value) == 20:
            return _eip55(bytes(value))
        raise MalformedDataError(f"{what}: expected a 20-byte address, got {len(value)} bytes")
    out = _checksum_text(value) if isinstance(value, str) else None
    if out is None:
        raise MalformedDataError(f"{what}: expected a 20-byte address as 0x-prefixed hex, got {value!r:.60}")
    return out


def address_bytes(address: str) -> bytes:
    return bytes.fromhex(address[2:])


# --- signer --------------------------------------------------------------------------------


class EthSigner:
    """A secp256k1 account key ready to sign digests; ``repr`` shows only the address."""

    __slots__ = ("_key", "address")

    def __init__(self, private_key: bytes):
        try:
            self._key = coincurve.PrivateKey(bytes(private_key))
        except (ValueError, TypeError) as exc:
            raise MalformedDataError(f"not a valid secp256k1 private key ({exc})") from None
        pub = self._key.public_key.format(compressed=False)
        self.address: str = _eip55(keccak(pub[1:])[-20:])

    @classmethod
    def from_account(cls, account: LocalAccount) -> "EthSigner":
        return cls(bytes(account.key))

    def sign_digest(self, digest: bytes) -> bytes:
        """65-byte ``r ‖ s ‖ v`` over a 32-byte digest (no further hashing)."""
        if len(digest) != 32:
            raise ValueError("sign_digest needs a 32-byte digest")
        sig = self._key.sign_recoverable(bytes(digest), hasher=None)
        return sig[:64] + bytes((sig[64] + 27,))

    def __repr__(self) -> str:
        return f"EthSigner({self.address})"

    def __reduce__(self):
        raise TypeError("EthSigner is not picklable: keep the key in a keystore")


SignerLike = Union[EthSigner, LocalAccount]


def as_signer(signer: SignerLike) -> EthSigner:
    """Accept an :class:`EthSigner` or an eth-account ``LocalAccount``."""
    if isinstance(signer, EthSigner):
        return signer
    if isinstance(signer, LocalAccount):
        return EthSigner.from_account(signer)
    raise TypeError(f"expected an EthSigner or eth_account LocalAccount, got {type(signer).__name__}")


def recover_address(digest: bytes, signature: bytes) -> str:
    """The checksummed address that signed ``digest``; rejects malformed and high-s signatures."""
    if not isinstance(signature, (bytes, bytearray)):
        raise InvalidSignatureError(f"signature must be bytes, got {type(signature).__name__}")
    if len(signature) != SIGNATURE_SIZE:
        raise InvalidSignatureError(f"signature must be {SIGNATURE_SIZE} bytes r‖s‖v, got {len(signature)}")
    v = signature[64]
    if v not in (27, 28):
        raise InvalidSignatureError(f"signature v must be 27 or 28, got {v}")
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    if not (0 < r < _SECP256K1_N and 0 < s <= _HALF_N):
        raise InvalidSignatureError("signature r/s out of range (high-s signatures are rejected, "
                                    "as by OpenZeppelin ECDSA)")
    try:
        pub = coincurve.PublicKey.from_signature_and_message(bytes(signature[:64]) + bytes((v - 27,)), bytes(digest),
                                                            hasher=None)
    except Exception as exc:  # coincurve raises plain Exception on failed recovery
        raise InvalidSignatureError(f"signature does not recover to any public key ({exc})") from None
    return _eip55(keccak(pub.format(compressed=False)[1:])[-20:])


def verify_signer(digest: bytes, signature: bytes, *, claimed: str, expected: str | None, role: str) -> None:
    """Check that ``signature`` is ``claimed``'s signature and that ``claimed`` is the ``expected`` account.

    Raises :class:`InvalidSignatureError` if the signature does not recover to the
    signer named in the signed data (tampered data or signature) and
    :class:`UnexpectedSignerError` if that signer is not the one the caller expects.
    """
    actual = recover_address(digest, signature)
    if actual != claimed:
        raise InvalidSignatureError(f"{role} signature does not verify: it recovers to {actual}, not to the "
                                    f"{role} {claimed} named in the signed data (data or signature tampered)")
    if expected is not None:
        expected = checksum_address(expected, f"expected {role}")
        if claimed != expected:
            raise UnexpectedSignerError(f"signed by {role} {claimed}, but {expected} was expected",
                                        expected=expected, actual=claimed)


# --- EIP-712 -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Eip712Domain:
    """The EIP-712 domain of the contract that verifies MBDS signatures."""

    chain_id: int
    verifying_contract: str
    name: str = "MBDS"
    version: str = "1"

    def __post_init__(self) -> None:
        if not isinstance(self.chain_id, int) or isinstance(self.chain_id, bool) or not 0 < self.chain_id < 2**256:
            raise ValueError(f"EIP-712 chainId must be a positive integer, got {self.chain_id!r}")
        object.__setattr__(self, "verifying_contract",
                           checksum_address(self.verifying_contract, "EIP-712 verifyingContract"))

    TYPE = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"

    @cached_property
    def separator(self) -> bytes:
        """The 32-byte domain separator."""
        return keccak(keccak(self.TYPE.encode()) + keccak(self.name.encode()) + keccak(self.version.encode())
                      + self.chain_id.to_bytes(32, "big") + address_bytes(self.verifying_contract).rjust(32, b"\0"))

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "chainId": self.chain_id,
                "verifyingContract": self.verifying_contract}

    def digest(self, struct_hash: bytes) -> bytes:
        """``keccak256(0x19 0x01 ‖ domainSeparator ‖ hashStruct)``."""
        return keccak(b"\x19\x01" + self.separator + struct_hash)


@dataclass(frozen=True)
class Eip712Struct:
    """A flat EIP-712 struct type of static fields (uintN, address, bytes32) and strings."""

    name: str
    fields: tuple[tuple[str, str], ...]

    @cached_property
    def encode_type(self) -> str:
        return f"{self.name}(" + ",".join(f"{t} {n}" for n, t in self.fields) + ")"

    @cached_property
    def type_hash(self) -> bytes:
        return keccak(self.encode_type.encode())

    def hash_struct(self, values: Mapping[str, Any]) -> bytes:
        words = [self.type_hash]
        for name, typ in self.fields:
            v = values[name]
            if typ == "string":
                words.append(keccak(v.encode("utf-8")))
            elif typ == "bytes32":
                if len(v) != 32:
                    raise ValueError(f"{self.name}.{name}: bytes32 needs 32 bytes")
                words.append(bytes(v))
            elif typ == "address":
                words.append(address_bytes(v).rjust(32, b"\0"))
            elif typ.startswith("uint"):
                words.append(int(v).to_bytes(32, "big"))
            else:  # pragma: no cover - guarded by the struct definitions in this package
                raise ValueError(f"unsupported EIP-712 field type {typ}")
        return keccak(b"".join(words))

    def typed_data(self, domain: Eip712Domain, values: Mapping[str, Any]) -> dict[str, Any]:
        """The full typed-data document (for ``encode_typed_data(full_message=...)``, wallets, tests)."""
        message = {n: ("0x" + bytes(values[n]).hex() if t == "bytes32" else values[n]) for n, t in self.fields}
        return {
            "types": {
                "EIP712Domain": [{"name": "name", "type": "string"}, {"name": "version", "type": "string"},
                                 {"name": "chainId", "type": "uint256"},
                                 {"name": "verifyingContract", "type": "address"}],
                self.name: [{"name": n, "type": t} for n, t in self.fields],
            },
            "primaryType": self.name,
            "domain": domain.as_dict(),
            "message": message,
        }


def struct(name: str, fields: Sequence[tuple[str, str]]) -> Eip712Struct:
    return Eip712Struct(name, tuple(fields))


__all__ = [
    "Eip712Domain", "Eip712Struct", "EthSigner", "SIGNATURE_SIZE", "SignerLike", "address_bytes", "as_signer",
    "checksum_address", "recover_address", "verify_signer",
]
