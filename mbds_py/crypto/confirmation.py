"""Paper Algorithm 2: the patient reviews and confirms a record; opening it later.

:func:`review_envelope` checks the envelope is for this patient, verifies the
doctor's signature (and that it is the expected doctor), checks C_M against
the signed hash, decrypts, checks H(M) = keccak256(salt ‖ M) with the salt
inside C_M, and checks the PEKS keyword ciphertexts: exactly
``KEYWORD_SLOTS`` of them, each pad the one its seed (inside C_M) derives, each
other one the PEKS of the keyword C_M lists for it — so no ciphertext hides a
keyword the patient did not see.  The keyword check recomputes each ciphertext
from the record's randomness r the doctor put inside C_M (every slot's A = g^r,
each keyword's B = H2(E_w^r), each pad's B from its seed: no pairing once E_w is
cached; docs/crypto-notes.md); a payload of the older format without r is
checked with the pairing test.  The stored record drops r.  It then re-keys the record: the
payload is encrypted again under the patient's **per-record key** (derived
from the record id), so a kfrag made for this record opens no other.  The
caller stores ``reviewed.record_blob`` and passes its storage address to
:func:`confirm_record`, which encrypts the address under the record key and
signs the confirmation as the patient (EIP-712)::

    HmiConfirmation(bytes32 recordId,address patient,bytes32 hmiHash,bytes32 recordKeys,
                    bytes32 recordCiphertext,bytes32 storageAddress)

    recordId         = the doctor's EIP-712 digest (RecordHeader.digest)
    recordKeys       = keccak256(record public key ‖ kfrag verifying key)   # 33 + 33 bytes
    recordCiphertext = keccak256(record_blob)
    storageAddress   = keccak256(Enc(record key, address).to_bytes())

The :class:`ConfirmedRecord` holds everything the slip stores (no big ciphertext).
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import umbral_pre

from . import peks
from ._hash import keccak256 as keccak
from ._codec import KIND_CONFIRMED_RECORD, Reader, Writer
from .envelope import KEYWORD_SLOTS, HmiEnvelope, HmiPayload, RecordHeader
from .errors import (CiphertextMismatchError, DecryptionError, EnvelopeError, HmiHashMismatchError,
                     KeywordCiphertextMismatchError, KeywordError, KeywordMismatchError, MalformedDataError,
                     WrongRecipientError)
from .keys import UMBRAL_PUBLIC_KEY_SIZE, PatientKeyring, PatientSecrets, umbral_public_key
from .keywords import to_keyword
from .pre import UmbralCiphertext, decrypt_reencrypted, pre_decrypt, pre_encrypt
from .signing import SIGNATURE_SIZE, Eip712Domain, struct, verify_signer

MAX_STORAGE_ADDRESS = 1024

CONFIRMATION_STRUCT = struct("HmiConfirmation", [
    ("recordId", "bytes32"),
    ("patient", "address"),
    ("hmiHash", "bytes32"),
    ("recordKeys", "bytes32"),
    ("recordCiphertext", "bytes32"),
    ("storageAddress", "bytes32"),
])


def _version_for(header: RecordHeader, patient: PatientSecrets | PatientKeyring) -> PatientSecrets:
    """The key set the record was made under: ``patient`` itself, or the keyring's version the record names."""
    if isinstance(patient, PatientKeyring):
        if header.patient.address != patient.current.address and \
                all(s.address != header.patient.address for s in patient):
            raise WrongRecipientError(f"record is addressed to patient {header.patient.address}, not to any key "
                                      f"version of {patient.current.address}")
        return patient.for_keys(header.patient)
    _check_recipient(header, patient)
    return patient


def _check_recipient(header: RecordHeader, patient: PatientSecrets) -> None:
    mine = patient.public_keys
    if header.patient == mine:
        return
    if header.patient.address == mine.address:
        raise WrongRecipientError(f"record for {mine.address} was encrypted to other keys than this key set's "
                                  "(stale keys after a rotation?)")
    raise WrongRecipientError(f"record is addressed to patient {header.patient.address}, not to {mine.address}")


def _check_hmi(payload: HmiPayload, header: RecordHeader) -> None:
    if payload.hmi_hash != header.hmi_hash:
        raise HmiHashMismatchError(f"decrypted HMI with its salt hashes to 0x{payload.hmi_hash.hex()}, but the "
                                   f"record says H(M) = keccak256(salt ‖ M) = 0x{header.hmi_hash.hex()}")


def _check_keywords(patient: PatientSecrets, payload: HmiPayload, header: RecordHeader, slots: int) -> None:
    cts = header.keyword_ciphertexts
    if len(cts) != slots:
        raise KeywordMismatchError(f"record carries {len(cts)} keyword ciphertexts; every record must carry "
                                   f"exactly {slots} (its keywords padded) so that their number does not show")
    if len(payload.keywords) + len(payload.pads) != len(cts):
        raise KeywordMismatchError(f"record carries {len(cts)} encrypted keywords but C_M lists "
                                   f"{len(payload.keywords)} keywords and {len(payload.pads)} pads")
    shared_a = None
    if payload.randomness:  # format 3: one r for the record, every slot shares A = g^r
        shared_a = peks.randomness_point(payload.randomness)
        if shared_a is None:
            raise KeywordCiphertextMismatchError("the PEKS randomness inside C_M is not a scalar in [1, q)")
    pads = {peks.peks_pad(seed, shared_a).to_bytes() for seed in payload.pads}
    real = [c for c in cts if c.to_bytes() not in pads]
    if len(pads) != len(payload.pads) or len(real) != len(payload.keywords):
        raise KeywordMismatchError("a padding ciphertext of the record is not the one its seed in C_M derives "
                                   "(it may hide a keyword)")
    pk = patient.public_keys.peks_key
    for i, (word, ct) in enumerate(zip(payload.keywords, real)):
        try:
            canonical = to_keyword(word).canonical
        except KeywordError as exc:
            raise KeywordMismatchError(f"keyword {i} inside C_M is not a valid keyword: {exc}") from None
        if canonical != word:
            raise KeywordMismatchError(f"keyword {i} inside C_M is not in canonical form ({word!r})")
        if shared_a is not None:
            # recompute PEKS(h, w; r) from the r inside C_M — no pairing once E_w is cached
            if not (hmac.compare_digest(ct.to_bytes()[:48], shared_a)
                    and hmac.compare_digest(peks.record_b(pk, canonical, payload.randomness), ct.b)):
                raise KeywordCiphertextMismatchError(
                    f"encrypted keyword {i} does not encrypt {canonical!r} under this patient's PEKS key with "
                    "the randomness r inside C_M (recomputed PEKS(h, w; r) differs)")
        elif not peks.test(patient.trapdoor(canonical), ct):  # format 2 (no r): the pairing test
            raise KeywordCiphertextMismatchError(f"encrypted keyword {i} does not encrypt {canonical!r} under this "
                                                 "patient's PEKS key")


def _payload(plaintext: bytes) -> HmiPayload:
    try:
        return HmiPayload.from_bytes(plaintext)
    except MalformedDataError as exc:
        raise MalformedDataError(f"decrypted record is not an MBDS HMI payload: {exc}") from None


# --- review -----------------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class ReviewedRecord:
    """A verified, decrypted envelope awaiting the patient's confirmation.  Holds plaintext: never log it."""

    envelope: HmiEnvelope
    domain: Eip712Domain
    record_id: bytes
    payload: HmiPayload
    record_key: umbral_pre.PublicKey  # the per-record public key
    record_ciphertext: UmbralCiphertext  # the payload under the per-record key

    @property
    def hmi(self) -> bytes:
        return self.payload.hmi

    @property
    def keywords(self) -> tuple[str, ...]:
        return self.payload.keywords

    @cached_property
    def record_blob(self) -> bytes:
        """What to put into storage (C_M under the per-record key)."""
        return self.record_ciphertext.to_bytes()

    def __repr__(self) -> str:
        return f"ReviewedRecord(record_id=0x{self.record_id.hex()}, doctor={self.envelope.header.doctor})"


def review_envelope(envelope: HmiEnvelope, patient: PatientSecrets | PatientKeyring, *, domain: Eip712Domain,
                    expected_doctor: str, check_keywords: bool = True,
                    keyword_slots: int = KEYWORD_SLOTS) -> ReviewedRecord:
    """Algorithm 2 up to the patient's decision: verify, decrypt, check, re-key.

    With a :class:`PatientKeyring` the key version the envelope names is used throughout (identity
    key, PEKS check, per-record key), so an envelope made before a rotation still reviews.
    ``keyword_slots`` is the number of keyword ciphertexts every record must carry.

    Raises :class:`WrongRecipientError`, ``InvalidSignatureError`` /
    ``UnexpectedSignerError`` (signature), :class:`CiphertextMismatchError`
    (C_M altered), :class:`DecryptionError`, :class:`HmiHashMismatchError`,
    :class:`KeywordMismatchError`.
    """
    if not isinstance(envelope, HmiEnvelope):
        raise TypeError(f"review_envelope needs an HmiEnvelope, got {type(envelope).__name__}")
    header = envelope.header
    patient = _version_for(header, patient)
    record_id = envelope.verify(domain, expected_doctor=expected_doctor)
    plaintext = pre_decrypt(patient.identity_secret_key, envelope.hmi_ciphertext)
    payload = _payload(plaintext)
    _check_hmi(payload, header)
    if check_keywords:
        _check_keywords(patient, payload, header, keyword_slots)
    if payload.randomness:  # checked: r goes no further (the stored record is format 2)
        payload = payload.without_randomness()
        plaintext = payload.to_bytes()
    record_pk = patient.record_public_key(record_id)
    return ReviewedRecord(envelope, domain, record_id, payload, record_pk, pre_encrypt(record_pk, plaintext))


# --- the confirmed record ----------------------------------------------------------------------


@dataclass(frozen=True)
class ConfirmedRecord:
    """What the private-chain slip stores: the doctor's header plus the patient's confirmation.

    ``record_key`` is the per-record Umbral public key the stored ciphertext is
    encrypted to (the delegating key of every kfrag for this record);
    ``kfrag_verifying_key`` is the key those kfrags are signed with; both are
    covered by the patient's signature, so a proxy can trust them from the slip.
    """

    header: RecordHeader
    record_key: bytes
    kfrag_verifying_key: bytes
    record_ciphertext_hash: bytes
    encrypted_address: UmbralCiphertext
    patient_signature: bytes

    def __post_init__(self) -> None:
        for name in ("record_key", "kfrag_verifying_key"):
            umbral_public_key(getattr(self, name), name)
            object.__setattr__(self, name, bytes(getattr(self, name)))
        if not isinstance(self.record_ciphertext_hash, bytes) or len(self.record_ciphertext_hash) != 32:
            raise EnvelopeError("record_ciphertext_hash must be 32 bytes")
        if not isinstance(self.patient_signature, bytes) or len(self.patient_signature) != SIGNATURE_SIZE:
            raise EnvelopeError(f"patient signature must be {SIGNATURE_SIZE} bytes")

    @cached_property
    def record_public_key(self) -> umbral_pre.PublicKey:
        return umbral_pre.PublicKey.from_compressed_bytes(self.record_key)

    @cached_property
    def verifying_public_key(self) -> umbral_pre.PublicKey:
        return umbral_pre.PublicKey.from_compressed_bytes(self.kfrag_verifying_key)

    def record_id(self, domain: Eip712Domain) -> bytes:
        return self.header.digest(domain)

    def struct_values(self, domain: Eip712Domain) -> dict[str, Any]:
        """The ``HmiConfirmation`` EIP-712 message."""
        return {
            "recordId": self.record_id(domain),
            "patient": self.header.patient.address,
            "hmiHash": self.header.hmi_hash,
            "recordKeys": keccak(self.record_key + self.kfrag_verifying_key),
            "recordCiphertext": self.record_ciphertext_hash,
            "storageAddress": keccak(self.encrypted_address.to_bytes()),
        }

    def digest(self, domain: Eip712Domain) -> bytes:
        """The EIP-712 digest the patient signs."""
        return domain.digest(CONFIRMATION_STRUCT.hash_struct(self.struct_values(domain)))

    def typed_data(self, domain: Eip712Domain) -> dict[str, Any]:
        return CONFIRMATION_STRUCT.typed_data(domain, self.struct_values(domain))

    def verify(self, domain: Eip712Domain, *, expected_doctor: str | None = None,
               expected_patient: str | None = None) -> bytes:
        """Both signatures (and optionally who made them); returns the record id."""
        record_id = self.header.verify(domain, expected_doctor=expected_doctor)
        verify_signer(self.digest(domain), self.patient_signature, claimed=self.header.patient.address,
                      expected=expected_patient, role="patient")
        return record_id

    def load_ciphertext(self, record_blob: bytes) -> UmbralCiphertext:
        """Parse the stored blob after checking it is the one the patient confirmed."""
        if keccak(bytes(record_blob)) != self.record_ciphertext_hash:
            raise CiphertextMismatchError("stored record ciphertext does not match the hash the patient "
                                          "confirmed: the blob was altered or is another record's")
        return UmbralCiphertext.from_bytes(record_blob)

    def to_bytes(self) -> bytes:
        w = self.header._write(Writer(KIND_CONFIRMED_RECORD))
        w.raw(self.record_key).raw(self.kfrag_verifying_key).raw(self.record_ciphertext_hash)
        return w.blob(self.encrypted_address.to_bytes()).raw(self.patient_signature).getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "ConfirmedRecord":
        r = Reader(data, "confirmed record", KIND_CONFIRMED_RECORD)
        header = RecordHeader._read(r)
        record_key = r.raw(UMBRAL_PUBLIC_KEY_SIZE)
        vk = r.raw(UMBRAL_PUBLIC_KEY_SIZE)
        ct_hash = r.raw(32)
        enc_addr = UmbralCiphertext.from_bytes(r.blob(MAX_STORAGE_ADDRESS + 1024))
        sig = r.raw(SIGNATURE_SIZE)
        r.done()
        try:
            return cls(header, record_key, vk, ct_hash, enc_addr, sig)
        except EnvelopeError as exc:
            raise r.fail(str(exc)) from None

    def __repr__(self) -> str:
        return (f"ConfirmedRecord(doctor={self.header.doctor}, patient={self.header.patient.address}, "
                f"t={self.header.timestamp}, type={self.header.record_type!r})")


def confirm_record(reviewed: ReviewedRecord, patient: PatientSecrets | PatientKeyring, *,
                   storage_address: str) -> ConfirmedRecord:
    """Algorithm 2's confirmation: Enc(record key, address) and the patient's EIP-712 signature (by the
    account of the key version the record was made under)."""
    if not isinstance(reviewed, ReviewedRecord):
        raise TypeError(f"confirm_record needs a ReviewedRecord, got {type(reviewed).__name__}")
    header = reviewed.envelope.header
    patient = _version_for(header, patient)
    if not isinstance(storage_address, str) or not storage_address or \
            len(storage_address.encode()) > MAX_STORAGE_ADDRESS:
        raise EnvelopeError(f"storage address must be a non-empty string of at most {MAX_STORAGE_ADDRESS} bytes")
    record_pk = reviewed.record_key
    unsigned = ConfirmedRecord(
        header=header,
        record_key=record_pk.to_compressed_bytes(),
        kfrag_verifying_key=patient.kfrag_verifying_key.to_compressed_bytes(),
        record_ciphertext_hash=keccak(reviewed.record_blob),
        encrypted_address=pre_encrypt(record_pk, storage_address.encode("utf-8")),
        patient_signature=bytes(SIGNATURE_SIZE),
    )
    signature = patient.signer.sign_digest(unsigned.digest(reviewed.domain))
    return ConfirmedRecord(header, unsigned.record_key, unsigned.kfrag_verifying_key,
                           unsigned.record_ciphertext_hash, unsigned.encrypted_address, signature)


# --- opening a confirmed record ------------------------------------------------------------------


def record_secrets(record: ConfirmedRecord, patient: PatientSecrets | PatientKeyring) -> PatientSecrets:
    """The patient's key set this record was made under (its per-record key and kfrag signer derive from it)."""
    return _version_for(record.header, patient)


def _record_sk(record: ConfirmedRecord, patient: PatientSecrets | PatientKeyring,
               domain: Eip712Domain) -> umbral_pre.SecretKey:
    patient = _version_for(record.header, patient)
    sk = patient.record_secret_key(record.record_id(domain))
    if sk.public_key().to_compressed_bytes() != record.record_key:
        raise DecryptionError("the record key in this record is not this patient's key for its record id "
                              "(another EIP-712 domain?)")
    return sk


def open_record(record: ConfirmedRecord, record_blob: bytes, patient: PatientSecrets | PatientKeyring, *,
                domain: Eip712Domain) -> HmiPayload:
    """The patient opens its own stored record (blob hash, decryption and H(M) checked)."""
    ct = record.load_ciphertext(record_blob)
    payload = _payload(pre_decrypt(_record_sk(record, patient, domain), ct))
    _check_hmi(payload, record.header)
    return payload


def decrypt_storage_address(record: ConfirmedRecord, patient: PatientSecrets | PatientKeyring, *,
                            domain: Eip712Domain) -> str:
    """The patient decrypts Enc(record key, address)."""
    raw = pre_decrypt(_record_sk(record, patient, domain), record.encrypted_address)
    return raw.decode("utf-8")


def open_shared_record(record: ConfirmedRecord, record_blob: bytes, *, receiving_sk: umbral_pre.SecretKey,
                       cfrags: Sequence[umbral_pre.VerifiedCapsuleFrag]) -> HmiPayload:
    """A delegatee opens a record re-encrypted by the proxies (blob hash and H(M) checked)."""
    ct = record.load_ciphertext(record_blob)
    payload = _payload(decrypt_reencrypted(receiving_sk, record.record_public_key, ct, cfrags))
    _check_hmi(payload, record.header)
    return payload


def open_shared_address(record: ConfirmedRecord, *, receiving_sk: umbral_pre.SecretKey,
                        cfrags: Sequence[umbral_pre.VerifiedCapsuleFrag]) -> str:
    """A delegatee decrypts the storage address with cfrags of ``record.encrypted_address.capsule``."""
    return decrypt_reencrypted(receiving_sk, record.record_public_key, record.encrypted_address, cfrags).decode()


__all__ = [
    "CONFIRMATION_STRUCT", "ConfirmedRecord", "ReviewedRecord", "confirm_record", "decrypt_storage_address",
    "open_record", "open_shared_address", "open_shared_record", "record_secrets", "review_envelope",
]
