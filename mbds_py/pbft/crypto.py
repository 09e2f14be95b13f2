"""Hashing and the injected signer/verifier of PBFT messages.

The production signer is secp256k1 as Ethereum does it: a replica signs a
32-byte hash with its eth key (``r ‖ s ‖ v``, ``v`` in {27, 28}, low ``s``)
and a verifier recovers the address, exactly what OpenZeppelin ``ECDSA.recover``
accepts.  The simulation uses :class:`FakeKeyring`, a keyed-hash stand-in that
is deterministic and ~50x faster; both satisfy the same two protocols.
"""

from __future__ import annotations

import hashlib
from typing import Protocol, runtime_checkable

import coincurve

try:  # safe-pysha3: ~10x faster than the pure eth-hash backends
    from sha3 import keccak_256 as _keccak_256

    def keccak256(data: bytes) -> bytes:
        """Keccak-256 (Ethereum's hash) of ``data``."""
        return _keccak_256(data).digest()

except ImportError:  # pragma: no cover - fallback when pysha3 is absent
    from Crypto.Hash import keccak as _keccak

    def keccak256(data: bytes) -> bytes:
        """Keccak-256 (Ethereum's hash) of ``data``."""
        return _keccak.new(digest_bits=256, data=data).digest()


_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


@runtime_checkable
class Signer(Protocol):
    """Signs 32-byte hashes for one replica."""

    @property
    def address(self) -> bytes:
        """The 20-byte validator address the signatures recover to."""
        ...

    def sign(self, digest: bytes) -> bytes:
        """Signature over the 32-byte ``digest``."""
        ...


@runtime_checkable
class Verifier(Protocol):
    """Checks that a signature over a hash was made by a given address."""

    def verify(self, digest: bytes, signature: bytes, address: bytes) -> bool:
        """True iff ``signature`` over ``digest`` was made by ``address``."""
        ...


# --- secp256k1 (production) -------------------------------------------------------------


def address_of_public_key(public_key: coincurve.PublicKey) -> bytes:
    """Ethereum address (20 bytes) of a secp256k1 public key."""
    return keccak256(public_key.format(compressed=False)[1:])[12:]


class EthSigner:
    """secp256k1 signer over raw 32-byte hashes (no EIP-191 prefix)."""

    def __init__(self, private_key: bytes):
        if len(private_key) != 32:
            raise ValueError("an eth private key is 32 bytes")
        self._key = coincurve.PrivateKey(private_key)
        self._address = address_of_public_key(self._key.public_key)

    @property
    def address(self) -> bytes:
        return self._address

    def sign(self, digest: bytes) -> bytes:
        sig = self._key.sign_recoverable(digest, hasher=None)
        return sig[:64] + bytes([27 + sig[64]])

    def __repr__(self) -> str:  # never show the key
        return f"EthSigner(0x{self._address.hex()})"


class EthVerifier:
    """Recovers the signer address with coincurve; rejects high-``s`` like OZ ``ECDSA``.

    Recovered addresses are cached by (digest, signature) so a signature that
    reappears inside a certificate is not recovered twice.
    """

    def __init__(self, cache_size: int = 65536):
        self._cache: dict[tuple[bytes, bytes], bytes | None] = {}
        self._cache_size = cache_size

    def recover(self, digest: bytes, signature: bytes) -> bytes | None:
        """Address that made ``signature`` over ``digest``, or None if it is invalid."""
        key = (digest, signature)
        if key in self._cache:
            return self._cache[key]
        address = self._recover(digest, signature)
        if len(self._cache) >= self._cache_size:
            self._cache.pop(next(iter(self._cache)))
        self._cache[key] = address
        return address

    @staticmethod
    def _recover(digest: bytes, signature: bytes) -> bytes | None:
        if len(digest) != 32 or len(signature) != 65:
            return None
        v = signature[64]
        v = v - 27 if v >= 27 else v
        if v not in (0, 1) or int.from_bytes(signature[32:64], "big") > _SECP256K1_N // 2:
            return None
        try:
            public = coincurve.PublicKey.from_signature_and_message(
                signature[:64] + bytes([v]), digest, hasher=None
            )
        except Exception:  # coincurve raises plain Exception on invalid points
            return None
        return address_of_public_key(public)

    def verify(self, digest: bytes, signature: bytes, address: bytes) -> bool:
        return self.recover(digest, signature) == address


# --- keyed-hash stand-in (simulation) ----------------------------------------------------


class FakeSigner:
    """Deterministic keyed-hash 'signature' for the simulation (not secure outside it)."""

    def __init__(self, secret: bytes):
        self._secret = secret
        self._address = keccak256(b"fake-address" + secret)[12:]

    @property
    def address(self) -> bytes:
        return self._address

    def sign(self, digest: bytes) -> bytes:
        return hashlib.blake2b(digest, key=self._secret, digest_size=32).digest()


class FakeKeyring:
    """Per-replica fake keys derived from a seed, and the verifier that knows them all."""

    def __init__(self, n: int, seed: bytes = b"mbds-sim"):
        self.signers = [FakeSigner(keccak256(seed + i.to_bytes(4, "big"))) for i in range(n)]
        self._secret_by_address = {s.address: s._secret for s in self.signers}

    @property
    def addresses(self) -> tuple[bytes, ...]:
        return tuple(s.address for s in self.signers)

    def verify(self, digest: bytes, signature: bytes, address: bytes) -> bool:
        secret = self._secret_by_address.get(address)
        if secret is None:
            return False
        return hashlib.blake2b(digest, key=secret, digest_size=32).digest() == signature


__all__ = [
    "EthSigner",
    "EthVerifier",
    "FakeKeyring",
    "FakeSigner",
    "Signer",
    "Verifier",
    "address_of_public_key",
    "keccak256",
]
