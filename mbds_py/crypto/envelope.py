"""The HMI envelope of paper Algorithm 1: what a doctor produces for a patient.

From HMI ``M``, keywords ``w``, the patient's public keys ``PK_p`` and the
doctor's account key ``SK_d``::

    s    = 32 random bytes (the salt)
    H(M) = keccak256(s ‖ M)
    C_M  = Umbral(PK_p.pre, payload)           payload = M, s, the normalised keywords, the pad seeds, r
    C_w  = PEKS(PK_p.peks, w_i; r) for each keyword, one r for the record (inside C_M), padded with
           peks_pad(seed_j, g^r) to KEYWORD_SLOTS ciphertexts (sorted by ciphertext: order leaks nothing)
    Sig  = EIP-712 signature of SK_d over t‖Type‖Text‖PK_d‖PK_p‖H(M)‖C_M‖C_w

The signed struct (``HmiRecord``) carries the variable-length parts as
keccak256 hashes of their canonical encodings, so a contract can verify the
signature from the slip alone::

    HmiRecord(uint64 timestamp,string recordType,string text,address doctor,address patient,
              bytes32 patientKeys,bytes32 hmiHash,bytes32 hmiCiphertext,bytes32 keywordCiphertexts)

    patientKeys        = keccak256(PatientPublicKeys.to_bytes())
    hmiCiphertext      = keccak256(UmbralCiphertext.to_bytes())     # C_M
    keywordCiphertexts = keccak256(C_w[0].to_bytes() ‖ C_w[1].to_bytes() ‖ …)   # 80 bytes each

The salt keeps H(M) from confirming a guessed record (without it, keccak256 of a
guess equals the chain's value); whoever decrypts C_M gets s and rechecks H(M).
Padding keeps the number of keyword ciphertexts — the same for every record —
from telling how many keywords a record has; the pad seeds inside C_M let the
patient check that every pad is one (hides no keyword) and which ciphertexts
are real.

The EIP-712 digest of that struct is the **record id**.  ``type`` and ``text``
are stored in clear on the private chain (paper: transaction type and
content); put nothing sensitive there.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, Union


from ._hash import keccak256 as keccak
from ._codec import KIND_ENVELOPE, KIND_PAYLOAD, KIND_RECORD_HEADER, Reader, Writer
from .errors import CiphertextMismatchError, EnvelopeError
from .keys import PatientPublicKeys
from .keywords import KeywordLike, to_keyword
from .peks import (CIPHERTEXT_SIZE, PAD_SEED_SIZE, RANDOMNESS_SIZE, PeksCiphertext, new_pad_seed, parse_ciphertexts,
                   peks_encrypt, peks_encrypt_record, peks_pad)
from .pre import MAX_CIPHERTEXT_SIZE, UmbralCiphertext, pre_encrypt
from .signing import (SIGNATURE_SIZE, Eip712Domain, SignerLike, address_bytes, as_signer, checksum_address,
                      struct, verify_signer)

MAX_HMI_SIZE = 32 * 1024 * 1024
MAX_KEYWORDS = 32
#: Every record carries exactly this many PEKS ciphertexts (its keywords + padding), so the chain does not show
#: how many keywords it has; a record with more keywords is refused.  A pad costs one G1 multiplication when
#: built and when checked, but every slot costs the proxies one pairing per trapdoor on every search that does
#: not match the record: 4 covers the 3-keyword benchmark record with a spare for +33 % search work, where 8
#: would cost +167 % (docs/threat-model.md has the figures).  Doctor and patient must agree on it.
KEYWORD_SLOTS = 4
SALT_SIZE = 32
MAX_RECORD_TYPE = 64
MAX_TEXT = 4096
_MAX_KEYWORD_BYTES = 1024

RECORD_STRUCT = struct("HmiRecord", [
    ("timestamp", "uint64"),
    ("recordType", "string"),
    ("text", "string"),
    ("doctor", "address"),
    ("patient", "address"),
    ("patientKeys", "bytes32"),
    ("hmiHash", "bytes32"),
    ("hmiCiphertext", "bytes32"),
    ("keywordCiphertexts", "bytes32"),
])

HmiLike = Union[bytes, bytearray, memoryview, Mapping[str, Any]]


def canonical_hmi(hmi: HmiLike) -> bytes:
    """M as bytes: given bytes unchanged; a FHIR JSON dict as sorted, compact UTF-8 JSON (no NaN)."""
    if isinstance(hmi, (bytes, bytearray, memoryview)):
        data = bytes(hmi)
    elif isinstance(hmi, Mapping):
        try:
            data = json.dumps(hmi, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise EnvelopeError(f"HMI dict is not plain JSON (str keys, no NaN/Infinity): {exc}") from None
    else:
        raise EnvelopeError(f"HMI must be bytes or a FHIR JSON dict, got {type(hmi).__name__}")
    if not data:
        raise EnvelopeError("HMI is empty")
    if len(data) > MAX_HMI_SIZE:
        raise EnvelopeError(f"HMI of {len(data)} bytes exceeds the limit of {MAX_HMI_SIZE}")
    return data


def hmi_hash(hmi: HmiLike, salt: bytes) -> bytes:
    """H(M) = keccak256(salt ‖ canonical HMI bytes); ``salt`` is the record's 32 random bytes."""
    return keccak(_check_salt(salt) + canonical_hmi(hmi))


def _check_salt(salt: object) -> bytes:
    if not isinstance(salt, (bytes, bytearray)) or len(salt) != SALT_SIZE:
        raise EnvelopeError(f"the H(M) salt must be {SALT_SIZE} bytes")
    return bytes(salt)


def keyword_ciphertexts_hash(ciphertexts: Iterable[PeksCiphertext]) -> bytes:
    return keccak(b"".join(c.to_bytes() for c in ciphertexts))


# --- the payload inside C_M ------------------------------------------------------------------


@dataclass(frozen=True)
class HmiPayload:
    """What C_M encrypts: M, the H(M) salt, the normalised keywords (in the order of their ciphertexts in C_w),
    the seeds of the padding ciphertexts (in their order in C_w) and, from format 3, the record's PEKS
    randomness r — every keyword ciphertext and pad of the record shares A = g^r — so that the patient checks
    each ciphertext by recomputing it, without a pairing.  ``repr`` hides M.

    Encoding (format 2): ``blob M ‖ salt (32) ‖ u16 n ‖ n × text keyword ‖ u16 p ‖ p × seed (32)``;
    format 3 appends ``r (32, big-endian)``.  A payload without r encodes as format 2, byte for byte as
    before; both formats decode.
    """

    hmi: bytes
    keywords: tuple[str, ...]
    salt: bytes
    pads: tuple[bytes, ...] = ()
    randomness: bytes = b""

    def __post_init__(self) -> None:
        object.__setattr__(self, "keywords", tuple(self.keywords))
        object.__setattr__(self, "pads", tuple(bytes(p) for p in self.pads))
        object.__setattr__(self, "salt", _check_salt(self.salt))
        if len(self.keywords) + len(self.pads) > MAX_KEYWORDS:
            raise EnvelopeError(f"{len(self.keywords)} keywords and {len(self.pads)} pads exceed the limit of "
                                f"{MAX_KEYWORDS} keyword ciphertexts")
        if any(len(p) != PAD_SEED_SIZE for p in self.pads):
            raise EnvelopeError(f"pad seeds must be {PAD_SEED_SIZE} bytes")
        object.__setattr__(self, "randomness", bytes(self.randomness))
        if self.randomness and len(self.randomness) != RANDOMNESS_SIZE:
            raise EnvelopeError(f"the PEKS randomness must be {RANDOMNESS_SIZE} bytes (or absent)")

    def to_bytes(self) -> bytes:
        w = Writer(KIND_PAYLOAD, version=3 if self.randomness else 2)
        w.blob(self.hmi).raw(self.salt).u16(len(self.keywords))
        for k in self.keywords:
            w.text(k)
        w.u16(len(self.pads))
        for p in self.pads:
            w.raw(p)
        if self.randomness:
            w.raw(self.randomness)
        return w.getvalue()

    def without_randomness(self) -> "HmiPayload":
        """The payload as stored after the patient's check (format 2): r is needed by no reader."""
        return replace(self, randomness=b"") if self.randomness else self

    @classmethod
    def from_bytes(cls, data: bytes) -> "HmiPayload":
        version = 3 if isinstance(data, (bytes, bytearray, memoryview)) and len(data) > 5 and data[5] == 3 else 2
        r = Reader(data, "HMI payload", KIND_PAYLOAD, version=version)
        hmi = r.blob(MAX_HMI_SIZE)
        salt = r.raw(SALT_SIZE)
        count = r.u16()
        if count > MAX_KEYWORDS:
            raise r.fail(f"{count} keywords exceed the limit of {MAX_KEYWORDS}")
        keywords = tuple(r.text(_MAX_KEYWORD_BYTES) for _ in range(count))
        pads = r.u16()
        if count + pads > MAX_KEYWORDS:
            raise r.fail(f"{count} keywords and {pads} pads exceed the limit of {MAX_KEYWORDS}")
        seeds = tuple(r.raw(PAD_SEED_SIZE) for _ in range(pads))
        randomness = r.raw(RANDOMNESS_SIZE) if version == 3 else b""
        r.done()
        return cls(hmi, keywords, salt, seeds, randomness)

    @property
    def hmi_hash(self) -> bytes:
        """H(M) = keccak256(salt ‖ M), what the record header commits to."""
        return keccak(self.salt + self.hmi)

    def hmi_json(self) -> Any:
        """M parsed as JSON (for FHIR resources)."""
        return json.loads(self.hmi)

    def __repr__(self) -> str:
        return f"HmiPayload({len(self.hmi)} bytes, {len(self.keywords)} keywords)"


# --- the signed header -------------------------------------------------------------------------


def _check_fields(timestamp: int, record_type: str, text: str) -> None:
    if not isinstance(timestamp, int) or isinstance(timestamp, bool) or not 0 <= timestamp < 2**64:
        raise EnvelopeError(f"timestamp must be unix seconds as an unsigned 64-bit int, got {timestamp!r}")
    if not isinstance(record_type, str) or not record_type.strip() or len(record_type.encode()) > MAX_RECORD_TYPE:
        raise EnvelopeError(f"record type must be a non-empty string of at most {MAX_RECORD_TYPE} UTF-8 bytes, "
                            f"got {record_type!r}")
    if not isinstance(text, str) or len(text.encode()) > MAX_TEXT:
        raise EnvelopeError(f"text must be a string of at most {MAX_TEXT} UTF-8 bytes")


@dataclass(frozen=True)
class RecordHeader:
    """The doctor-signed part of a record; everything a slip needs except the big ciphertext.

    ``hmi_ciphertext_hash`` is keccak256 of C_M's canonical encoding;
    ``doctor_signature`` is the doctor's 65-byte EIP-712 signature.
    """

    timestamp: int
    record_type: str
    text: str
    doctor: str
    patient: PatientPublicKeys
    hmi_hash: bytes
    hmi_ciphertext_hash: bytes
    keyword_ciphertexts: tuple[PeksCiphertext, ...]
    doctor_signature: bytes

    def __post_init__(self) -> None:
        _check_fields(self.timestamp, self.record_type, self.text)
        object.__setattr__(self, "doctor", checksum_address(self.doctor, "doctor address"))
        object.__setattr__(self, "keyword_ciphertexts", tuple(self.keyword_ciphertexts))
        if not isinstance(self.patient, PatientPublicKeys):
            raise EnvelopeError("patient must be PatientPublicKeys")
        for name in ("hmi_hash", "hmi_ciphertext_hash"):
            v = getattr(self, name)
            if not isinstance(v, bytes) or len(v) != 32:
                raise EnvelopeError(f"{name} must be 32 bytes")
        if not 1 <= len(self.keyword_ciphertexts) <= MAX_KEYWORDS or not all(
                isinstance(c, PeksCiphertext) for c in self.keyword_ciphertexts):
            raise EnvelopeError(f"a record needs 1-{MAX_KEYWORDS} PEKS keyword ciphertexts")
        if not isinstance(self.doctor_signature, bytes) or len(self.doctor_signature) != SIGNATURE_SIZE:
            raise EnvelopeError(f"doctor signature must be {SIGNATURE_SIZE} bytes")

    def struct_values(self) -> dict[str, Any]:
        """The ``HmiRecord`` EIP-712 message."""
        return {
            "timestamp": self.timestamp,
            "recordType": self.record_type,
            "text": self.text,
            "doctor": self.doctor,
            "patient": self.patient.address,
            "patientKeys": keccak(self.patient.to_bytes()),
            "hmiHash": self.hmi_hash,
            "hmiCiphertext": self.hmi_ciphertext_hash,
            "keywordCiphertexts": keyword_ciphertexts_hash(self.keyword_ciphertexts),
        }

    @cached_property
    def _struct_hash(self) -> bytes:
        return RECORD_STRUCT.hash_struct(self.struct_values())

    def struct_hash(self) -> bytes:
        """EIP-712 ``hashStruct`` of the ``HmiRecord`` message."""
        return self._struct_hash

    def digest(self, domain: Eip712Domain) -> bytes:
        """The EIP-712 digest the doctor signs — also the record id."""
        return domain.digest(self.struct_hash())

    record_id = digest

    def typed_data(self, domain: Eip712Domain) -> dict[str, Any]:
        """The full EIP-712 document (wallets, ``eth_account.messages.encode_typed_data``)."""
        return RECORD_STRUCT.typed_data(domain, self.struct_values())

    def verify(self, domain: Eip712Domain, *, expected_doctor: str | None = None) -> bytes:
        """Check the doctor's signature (and the doctor); returns the record id."""
        digest = self.digest(domain)
        verify_signer(digest, self.doctor_signature, claimed=self.doctor, expected=expected_doctor, role="doctor")
        return digest

    def _write(self, w: Writer) -> Writer:
        w.u64(self.timestamp).text(self.record_type).text(self.text).raw(address_bytes(self.doctor))
        w.blob(self.patient.to_bytes()).raw(self.hmi_hash).raw(self.hmi_ciphertext_hash)
        w.u16(len(self.keyword_ciphertexts))
        for c in self.keyword_ciphertexts:
            w.raw(c.to_bytes())
        return w.raw(self.doctor_signature)

    @classmethod
    def _read(cls, r: Reader) -> "RecordHeader":
        timestamp = r.u64()
        record_type = r.text(MAX_RECORD_TYPE)
        text = r.text(MAX_TEXT)
        doctor = checksum_address(r.raw(20), "doctor address")
        patient = PatientPublicKeys.from_bytes(r.blob(256))
        hmi = r.raw(32)
        cm = r.raw(32)
        count = r.u16()
        if not 1 <= count <= MAX_KEYWORDS:
            raise r.fail(f"{count} keyword ciphertexts; expected 1-{MAX_KEYWORDS}")
        cws = parse_ciphertexts([r.raw(CIPHERTEXT_SIZE) for _ in range(count)], prepare=False)  # shared A once
        sig = r.raw(SIGNATURE_SIZE)
        try:
            return cls(timestamp, record_type, text, doctor, patient, hmi, cm, cws, sig)
        except EnvelopeError as exc:
            raise r.fail(str(exc)) from None

    def to_bytes(self) -> bytes:
        return self._write(Writer(KIND_RECORD_HEADER)).getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "RecordHeader":
        r = Reader(data, "record header", KIND_RECORD_HEADER)
        header = cls._read(r)
        r.done()
        return header


@dataclass(frozen=True)
class HmiEnvelope:
    """Algorithm 1's output: the signed header plus C_M (the ciphertext for the patient)."""

    header: RecordHeader
    hmi_ciphertext: UmbralCiphertext

    def check_ciphertext(self) -> None:
        """C_M must be the ciphertext the doctor signed (:class:`CiphertextMismatchError` otherwise)."""
        if keccak(self.hmi_ciphertext.to_bytes()) != self.header.hmi_ciphertext_hash:
            raise CiphertextMismatchError("C_M does not match the hash the doctor signed: the ciphertext was "
                                          "altered after signing")

    def verify(self, domain: Eip712Domain, *, expected_doctor: str | None = None) -> bytes:
        """Doctor's signature, expected doctor and C_M integrity; returns the record id."""
        record_id = self.header.verify(domain, expected_doctor=expected_doctor)
        self.check_ciphertext()
        return record_id

    def to_bytes(self) -> bytes:
        w = self.header._write(Writer(KIND_ENVELOPE))
        return w.blob(self.hmi_ciphertext.to_bytes()).getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "HmiEnvelope":
        r = Reader(data, "HMI envelope", KIND_ENVELOPE)
        header = RecordHeader._read(r)
        ct = UmbralCiphertext.from_bytes(r.blob(MAX_CIPHERTEXT_SIZE + 64))
        r.done()
        return cls(header, ct)


def _normalised_keywords(keywords: Iterable[KeywordLike], slots: int) -> list[str]:
    if isinstance(keywords, (str, bytes, Mapping)):
        raise EnvelopeError("keywords must be a list of 'system|code' strings, Keywords or FHIR Codings")
    seen: dict[str, None] = {}
    for k in keywords:
        seen.setdefault(to_keyword(k).canonical, None)
    if not seen:
        raise EnvelopeError(f"a record needs 1-{slots} distinct keywords, got 0")
    if len(seen) > slots:
        raise EnvelopeError(f"a record carries at most {slots} distinct keywords (every record is padded to {slots} "
                            f"keyword ciphertexts so that their number does not show), got {len(seen)}: "
                            "keep the most specific codes, or split the record")
    return list(seen)


def check_keyword_slots(slots: int) -> int:
    if not isinstance(slots, int) or isinstance(slots, bool) or not 1 <= slots <= MAX_KEYWORDS:
        raise EnvelopeError(f"keyword slots must be an integer 1..{MAX_KEYWORDS}, got {slots!r}")
    return slots


def build_envelope(hmi: HmiLike, keywords: Iterable[KeywordLike], patient: PatientPublicKeys,
                   doctor: SignerLike, *, timestamp: int, record_type: str, text: str,
                   domain: Eip712Domain, keyword_slots: int = KEYWORD_SLOTS, keyword_randomness: bool = True,
                   constant_time: bool = False) -> HmiEnvelope:
    """Algorithm 1: salt and hash M, encrypt it to the patient, PEKS-encrypt the keywords (padded to
    ``keyword_slots`` ciphertexts), sign as the doctor.

    Keywords are normalised and de-duplicated; a keyword outside the coding
    systems raises :class:`~mbds_py.crypto.errors.KeywordError`, more than
    ``keyword_slots`` distinct keywords :class:`EnvelopeError`.  Pass the
    doctor as an :class:`EthSigner` on hot paths (a ``LocalAccount`` is
    converted on every call).

    The record's keyword ciphertexts and pads share one randomness r (A = g^r in every slot), which C_M
    carries so that the patient checks the ciphertexts without a pairing and a proxy pairs once per record;
    ``keyword_randomness=False`` builds the earlier record (one r per ciphertext, format-2 payload without r:
    the patient checks with one pairing per keyword).  ``constant_time=True`` encrypts the keywords by the
    pairing path, constant-time throughout (:func:`~mbds_py.crypto.peks.peks_encrypt`).
    """
    _check_fields(timestamp, record_type, text)
    if not isinstance(patient, PatientPublicKeys):
        raise EnvelopeError(f"patient must be PatientPublicKeys, got {type(patient).__name__}")
    signer = as_signer(doctor)
    m = canonical_hmi(hmi)
    slots = check_keyword_slots(keyword_slots)
    words = _normalised_keywords(keywords, slots)
    seeds = [new_pad_seed() for _ in range(slots - len(words))]
    if keyword_randomness:  # one r for the record: every slot shares A = g^r, r goes inside C_M
        cts, a, randomness = peks_encrypt_record(patient.peks_key, words, constant_time=constant_time)
        pads = [(peks_pad(seed, a), seed) for seed in seeds]
    else:  # format 2: one r per ciphertext, none inside C_M (the patient checks with pairings)
        cts, randomness = [peks_encrypt(patient.peks_key, w, constant_time=constant_time) for w in words], b""
        pads = [(peks_pad(seed), seed) for seed in seeds]
    slotted = sorted(((c.to_bytes(), c, w) for c, w in [*zip(cts, words), *pads]), key=lambda t: t[0])
    cws = tuple(c for _, c, _ in slotted)
    payload = HmiPayload(m, tuple(w for _, _, w in slotted if isinstance(w, str)), secrets.token_bytes(SALT_SIZE),
                         tuple(w for _, _, w in slotted if isinstance(w, bytes)), randomness)
    c_m = pre_encrypt(patient.pre_public_key, payload.to_bytes())
    unsigned = RecordHeader(timestamp, record_type, text, signer.address, patient, payload.hmi_hash,
                            keccak(c_m.to_bytes()), cws, bytes(SIGNATURE_SIZE))
    signature = signer.sign_digest(unsigned.digest(domain))
    header = RecordHeader(timestamp, record_type, text, signer.address, patient, unsigned.hmi_hash,
                          unsigned.hmi_ciphertext_hash, cws, signature)
    return HmiEnvelope(header, c_m)


__all__ = [
    "HmiEnvelope", "HmiLike", "HmiPayload", "KEYWORD_SLOTS", "MAX_KEYWORDS", "RECORD_STRUCT", "RecordHeader",
    "SALT_SIZE", "build_envelope", "canonical_hmi", "check_keyword_slots", "hmi_hash", "keyword_ciphertexts_hash",
]
