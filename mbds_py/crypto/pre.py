"""Umbral proxy re-encryption: ciphertexts, per-record kfrags, proxy and delegatee helpers.

``C = (capsule, ciphertext)``: Umbral encapsulates a fresh symmetric key to a
public key and encrypts the plaintext with it (ChaCha20-Poly1305).  A patient
makes ``n`` kfrags (threshold ``m``) from the *per-record* key to a delegatee;
each proxy turns the capsule into a cfrag; the delegatee opens the ciphertext
with ``m`` cfrags.  Only verified Umbral types (``VerifiedKeyFrag``,
``VerifiedCapsuleFrag``) pass between these functions; bytes coming from the
network are verified on load.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import umbral_pre

from ._codec import KIND_UMBRAL_CIPHERTEXT, Reader, Writer
from .errors import (CapsuleFragVerificationError, DecryptionError, KeyFragVerificationError, MalformedDataError,
                     UnverifiedFragError)
from .keys import PatientSecrets, umbral_public_key

MAX_CIPHERTEXT_SIZE = 64 * 1024 * 1024
_MAX_CAPSULE_SIZE = 512

PublicKeyLike = umbral_pre.PublicKey | bytes


@dataclass(frozen=True, eq=False)
class UmbralCiphertext:
    """An Umbral capsule and the symmetric ciphertext it unlocks."""

    capsule: umbral_pre.Capsule
    ciphertext: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.capsule, umbral_pre.Capsule) or not isinstance(self.ciphertext, bytes):
            raise MalformedDataError("Umbral ciphertext: expected (Capsule, bytes)")

    def to_bytes(self) -> bytes:
        return Writer(KIND_UMBRAL_CIPHERTEXT).blob(bytes(self.capsule)).blob(self.ciphertext).getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "UmbralCiphertext":
        r = Reader(data, "Umbral ciphertext", KIND_UMBRAL_CIPHERTEXT)
        raw_capsule = r.blob(_MAX_CAPSULE_SIZE)
        ciphertext = r.blob(MAX_CIPHERTEXT_SIZE)
        r.done()
        try:
            capsule = umbral_pre.Capsule.from_bytes(raw_capsule)
        except ValueError as exc:
            raise MalformedDataError(f"Umbral ciphertext: invalid capsule ({exc})") from None
        if bytes(capsule) != raw_capsule:
            raise MalformedDataError("Umbral ciphertext: non-canonical capsule encoding")
        return cls(capsule, ciphertext)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, UmbralCiphertext):
            return NotImplemented
        return self.to_bytes() == other.to_bytes()

    def __hash__(self) -> int:
        return hash(self.to_bytes())

    def __repr__(self) -> str:
        return f"UmbralCiphertext({len(self.ciphertext)} bytes)"


def pre_encrypt(public_key: PublicKeyLike, plaintext: bytes) -> UmbralCiphertext:
    """Enc(PK, m)."""
    capsule, ciphertext = umbral_pre.encrypt(umbral_public_key(public_key), bytes(plaintext))
    return UmbralCiphertext(capsule, ciphertext)


def pre_decrypt(secret_key: umbral_pre.SecretKey, ciphertext: UmbralCiphertext) -> bytes:
    """Dec(SK, C); :class:`DecryptionError` on a wrong key or a tampered ciphertext."""
    try:
        return umbral_pre.decrypt_original(secret_key, ciphertext.capsule, ciphertext.ciphertext)
    except ValueError as exc:
        raise DecryptionError(f"ciphertext does not open with this key: wrong key, wrong record, or tampered "
                              f"({exc})") from None


# --- patient: kfrags -----------------------------------------------------------------------


def make_record_kfrags(patient: PatientSecrets, record_label: bytes, delegatee_pk: PublicKeyLike,
                       threshold: int, shares: int,
                       signer: umbral_pre.Signer | None = None) -> list[umbral_pre.VerifiedKeyFrag]:
    """``shares`` kfrags (any ``threshold`` re-encrypt) from the record's key to ``delegatee_pk``.

    ``record_label`` is the record id.  The kfrags are signed by ``signer``
    (default: the patient's kfrag-signing key) over the delegating and receiving
    keys, so a proxy can check both on load.
    """
    if not (isinstance(threshold, int) and isinstance(shares, int) and 1 <= threshold <= shares <= 255):
        raise ValueError(f"need 1 ≤ threshold ≤ shares ≤ 255, got threshold={threshold}, shares={shares}")
    return umbral_pre.generate_kfrags(
        delegating_sk=patient.record_secret_key(record_label),
        receiving_pk=umbral_public_key(delegatee_pk, "delegatee public key"),
        signer=signer if signer is not None else patient.kfrag_signer,
        threshold=threshold,
        shares=shares,
        sign_delegating_key=True,
        sign_receiving_key=True,
    )


def load_kfrag(data: bytes, *, verifying_pk: PublicKeyLike, delegating_pk: PublicKeyLike,
               receiving_pk: PublicKeyLike) -> umbral_pre.VerifiedKeyFrag:
    """Proxy side: parse a kfrag and verify it was made by ``verifying_pk`` for these keys."""
    try:
        kfrag = umbral_pre.KeyFrag.from_bytes(bytes(data))
    except (ValueError, TypeError) as exc:
        raise MalformedDataError(f"kfrag: cannot parse ({exc})") from None
    try:
        return kfrag.verify(umbral_public_key(verifying_pk, "kfrag verifying key"),
                            umbral_public_key(delegating_pk, "delegating key"),
                            umbral_public_key(receiving_pk, "receiving key"))
    except umbral_pre.VerificationError as exc:
        raise KeyFragVerificationError(f"kfrag was not made by this signer for this record key and receiver "
                                       f"({exc})") from None


# --- proxy: re-encryption ------------------------------------------------------------------


def reencrypt(capsule: umbral_pre.Capsule, kfrag: umbral_pre.VerifiedKeyFrag) -> umbral_pre.VerifiedCapsuleFrag:
    """Proxy side: one cfrag of ``capsule``; only a *verified* kfrag is accepted."""
    if not isinstance(kfrag, umbral_pre.VerifiedKeyFrag):
        raise UnverifiedFragError(f"reencrypt needs a VerifiedKeyFrag (use load_kfrag), got {type(kfrag).__name__}")
    if isinstance(capsule, UmbralCiphertext):
        capsule = capsule.capsule
    if not isinstance(capsule, umbral_pre.Capsule):
        raise TypeError(f"reencrypt needs a Capsule, got {type(capsule).__name__}")
    return umbral_pre.reencrypt(capsule, kfrag)


# --- delegatee -----------------------------------------------------------------------------


def load_cfrag(data: bytes, *, capsule: umbral_pre.Capsule, verifying_pk: PublicKeyLike,
               delegating_pk: PublicKeyLike, receiving_pk: PublicKeyLike) -> umbral_pre.VerifiedCapsuleFrag:
    """Delegatee side: parse a cfrag and verify it re-encrypts ``capsule`` for these keys."""
    try:
        cfrag = umbral_pre.CapsuleFrag.from_bytes(bytes(data))
    except (ValueError, TypeError) as exc:
        raise MalformedDataError(f"cfrag: cannot parse ({exc})") from None
    if isinstance(capsule, UmbralCiphertext):
        capsule = capsule.capsule
    try:
        return cfrag.verify(capsule, umbral_public_key(verifying_pk, "kfrag verifying key"),
                            umbral_public_key(delegating_pk, "delegating key"),
                            umbral_public_key(receiving_pk, "receiving key"))
    except umbral_pre.VerificationError as exc:
        raise CapsuleFragVerificationError(f"cfrag does not re-encrypt this capsule with a kfrag of this record "
                                           f"key for this receiver ({exc})") from None


def decrypt_reencrypted(receiving_sk: umbral_pre.SecretKey, delegating_pk: PublicKeyLike,
                        ciphertext: UmbralCiphertext,
                        verified_cfrags: Sequence[umbral_pre.VerifiedCapsuleFrag]) -> bytes:
    """Delegatee side: open ``ciphertext`` with ≥ threshold verified cfrags."""
    cfrags = list(verified_cfrags)
    for c in cfrags:
        if not isinstance(c, umbral_pre.VerifiedCapsuleFrag):
            raise UnverifiedFragError(f"decrypt_reencrypted needs VerifiedCapsuleFrag items (use load_cfrag), "
                                      f"got {type(c).__name__}")
    if not cfrags:
        raise DecryptionError("no capsule frags: collect at least the threshold number from the proxies")
    if len({bytes(c) for c in cfrags}) != len(cfrags):
        raise DecryptionError("the same capsule frag was given twice: cfrags must come from distinct proxies")
    try:
        return umbral_pre.decrypt_reencrypted(receiving_sk, umbral_public_key(delegating_pk, "delegating key"),
                                              ciphertext.capsule, cfrags, ciphertext.ciphertext)
    except ValueError as exc:
        raise DecryptionError(f"re-encrypted ciphertext does not open ({exc}): the cfrags must be at least the "
                              "threshold, made with kfrags of this record's key for this receiver") from None


__all__ = [
    "MAX_CIPHERTEXT_SIZE", "UmbralCiphertext", "decrypt_reencrypted", "load_cfrag", "load_kfrag",
    "make_record_kfrags", "pre_decrypt", "pre_encrypt", "reencrypt",
]
