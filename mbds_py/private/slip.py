"""Transaction slips (paper Figure 3) and the validity checks every replica runs before preparing.

A slip wraps the patient-confirmed record (doctor's EIP-712 signature over
t‖Type‖Text‖PK_d‖PK_p‖H(M)‖C_M‖C_w plus the patient's confirmation) with the
participant IDs of doctor, patient and hospital.  Its ID is the record ID
(the doctor's EIP-712 digest), so the same record can never enter twice.
Pure: identity lookups go through the injected :class:`IdentityView`.

Replicas check a slip as signed bytes (:class:`SlipView`): the framing (version,
type tags, every length), both signatures over the exact signed byte ranges, the
identities, duplicates and hospital membership — without parsing the Umbral keys,
capsule or PEKS ciphertexts into curve points.  Point validity is checked where
the points are used: the patient's client parses the doctor's envelope (PEKS
ciphertexts) before she confirms and makes the Umbral keys and capsule herself,
and the proxies parse the slip (:meth:`TransactionSlip.from_bytes`) before they
search or re-encrypt, refusing invalid points with a named reason.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Protocol

import coincurve

from ..crypto.confirmation import CONFIRMATION_STRUCT, MAX_STORAGE_ADDRESS, ConfirmedRecord
from ..crypto.envelope import MAX_KEYWORDS, MAX_RECORD_TYPE, MAX_TEXT, RECORD_STRUCT
from ..crypto.signing import SIGNATURE_SIZE, Eip712Domain, checksum_address
from ..errors import InvalidSlip, MBDSError
from ..identity import Role
from ..pbft.crypto import keccak256 as keccak
from ..pbft.types import SlipEnvelope

SLIP_VERSION = 1


@dataclass(frozen=True)
class IdentityEntry:
    """What a replica needs to know about a participant (from IdentityRegistry)."""

    id: bytes
    role: Role
    institution: bytes
    suspended: bool


class IdentityView(Protocol):
    """Read-only identity lookups (IdentityRegistry on this private chain, possibly cached)."""

    def by_address(self, address: str) -> IdentityEntry | None: ...


@dataclass(frozen=True)
class TransactionSlip:
    """One slip of a private chain: the confirmed record plus who is who."""

    hospital_id: bytes
    doctor_id: bytes
    patient_id: bytes
    record: ConfirmedRecord

    def __post_init__(self) -> None:
        for name in ("hospital_id", "doctor_id", "patient_id"):
            v = getattr(self, name)
            if not isinstance(v, bytes) or len(v) != 32:
                raise InvalidSlip(f"{name} must be a 32-byte participant ID")

    # -- the paper's fields ---------------------------------------------------------------

    def slip_id(self, domain: Eip712Domain) -> bytes:
        """Slip ID = record ID = the doctor's EIP-712 digest."""
        return self.record.record_id(domain)

    @property
    def timestamp(self) -> int:
        return self.record.header.timestamp

    @property
    def record_type(self) -> str:
        return self.record.header.record_type

    @property
    def content(self) -> str:
        return self.record.header.text

    @property
    def encrypted_keywords(self):
        return self.record.header.keyword_ciphertexts

    @property
    def encrypted_storage_address(self):
        return self.record.encrypted_address

    @property
    def hmi_hash(self) -> bytes:
        return self.record.header.hmi_hash

    @property
    def doctor_signature(self) -> bytes:
        return self.record.header.doctor_signature

    @property
    def patient_confirmation(self) -> bytes:
        return self.record.patient_signature

    # -- encoding ---------------------------------------------------------------------------

    @cached_property
    def _bytes(self) -> bytes:
        return bytes([SLIP_VERSION]) + self.hospital_id + self.doctor_id + self.patient_id + self.record.to_bytes()

    def to_bytes(self) -> bytes:
        """The canonical encoding: what the Merkle leaf commits to."""
        return self._bytes

    @classmethod
    def from_bytes(cls, data: bytes) -> "TransactionSlip":
        if len(data) < 97 or data[0] != SLIP_VERSION:
            raise InvalidSlip(f"not a version-{SLIP_VERSION} transaction slip ({len(data)} bytes)")
        try:
            record = ConfirmedRecord.from_bytes(data[97:])
        except (MBDSError, ValueError) as exc:
            raise InvalidSlip(f"malformed confirmed record in slip: {exc}") from exc
        return cls(data[1:33], data[33:65], data[65:97], record)

    def envelope(self, domain: Eip712Domain) -> SlipEnvelope:
        """The slip as the PBFT core orders it."""
        return SlipEnvelope(self.slip_id(domain), self.to_bytes())



# --- the replica's view: signed byte ranges, framing checked, no curve points parsed -------------

_MAGIC = b"MBDS"
_CONFIRMED_TAG = _MAGIC + bytes((0x07, 1))  # KIND_CONFIRMED_RECORD, version 1
_CIPHERTEXT_TAG = _MAGIC + bytes((0x01, 1))  # KIND_UMBRAL_CIPHERTEXT, version 1
_PATIENT_KEYS = {_MAGIC + bytes((0x02, 1)): 107, _MAGIC + bytes((0x02, 2)): 111}  # tag -> encoded size
_PEKS_SIZE = 80  # compressed G1 (48) + 32
_UMBRAL_KEY = 33  # compressed secp256k1 point
_MAX_CAPSULE = 512
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


class _Cursor:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise InvalidSlip(f"malformed confirmed record: truncated in {what} at byte {self.pos}")
        out = self.data[self.pos:end]
        self.pos = end
        return out

    def blob(self, limit: int, what: str) -> bytes:
        (n,) = _U32.unpack(self.take(4, what))
        if n > limit:
            raise InvalidSlip(f"malformed confirmed record: {what} of {n} bytes exceeds {limit}")
        return self.take(n, what)


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidSlip(f"malformed confirmed record: {what} is not UTF-8") from None


def _compressed_key(raw: bytes, what: str) -> None:
    if raw[0] not in (2, 3):
        raise InvalidSlip(f"malformed confirmed record: {what} is not a compressed secp256k1 key (prefix {raw[0]})")


def _pad(address: bytes) -> bytes:
    return bytes(12) + address


_checksum = lru_cache(maxsize=65536)(checksum_address)  # the same doctors and patients sign again and again
_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def _signer(digest: bytes, signature: bytes, role: str) -> bytes:
    """The raw address that signed ``digest``: 65 bytes r‖s‖v, v in {27, 28}, low s (as
    :func:`mbds_py.crypto.signing.recover_address` and OpenZeppelin ECDSA), compared as bytes."""
    v = signature[64]
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    if v not in (27, 28) or not (0 < r < _SECP256K1_N and 0 < s <= _SECP256K1_N // 2):
        raise InvalidSlip(f"signature check failed: malformed {role} signature (v, r or s out of range; "
                          "high-s signatures are refused)")
    try:
        pub = coincurve.PublicKey.from_signature_and_message(signature[:64] + bytes((v - 27,)), digest, hasher=None)
    except Exception:  # noqa: BLE001 - coincurve raises plain Exception on a failed recovery
        raise InvalidSlip(f"signature check failed: the {role} signature recovers to no key") from None
    return keccak(pub.format(compressed=False)[1:])[-20:]


@dataclass(frozen=True)
class RecordView:
    """A confirmed record as signed bytes: the two EIP-712 digests, both signatures and who claims them.

    :meth:`parse` checks the framing of every field (the exact encoding
    :meth:`ConfirmedRecord.to_bytes` writes); :meth:`verify` recovers both signers.
    """

    doctor_address: bytes  # raw 20 bytes
    patient_address: bytes
    record_id: bytes  # the doctor's EIP-712 digest
    confirmation_digest: bytes  # the patient's
    doctor_signature: bytes
    patient_signature: bytes

    @property
    def doctor(self) -> str:
        return _checksum(self.doctor_address)

    @property
    def patient(self) -> str:
        return _checksum(self.patient_address)

    @classmethod
    def parse(cls, data: bytes, domain: Eip712Domain) -> "RecordView":
        c = _Cursor(bytes(data))
        if c.take(6, "header") != _CONFIRMED_TAG:
            raise InvalidSlip("malformed confirmed record: not an MBDS confirmed-record encoding (bad header)")
        timestamp = c.take(8, "timestamp")
        rtype = c.blob(MAX_RECORD_TYPE, "record type")
        if not _text(rtype, "record type").strip():
            raise InvalidSlip("malformed confirmed record: empty record type")
        text = c.blob(MAX_TEXT, "text")
        _text(text, "text")
        doctor = c.take(20, "doctor address")
        keys = c.blob(256, "patient keys")
        if _PATIENT_KEYS.get(keys[:6]) != len(keys):
            raise InvalidSlip("malformed confirmed record: not an MBDS patient-keys encoding")
        _compressed_key(keys[26:59], "patient PRE key")
        patient = keys[6:26]
        hmi = c.take(32, "H(M)")
        cm = c.take(32, "C_M hash")
        (count,) = _U16.unpack(c.take(2, "keyword count"))
        if not 1 <= count <= MAX_KEYWORDS:
            raise InvalidSlip(f"malformed confirmed record: {count} keyword ciphertexts; expected 1-{MAX_KEYWORDS}")
        keywords = c.take(count * _PEKS_SIZE, "keyword ciphertexts")
        for i in range(0, len(keywords), _PEKS_SIZE):
            if keywords[i] < 0x80:  # a compressed G1 point sets the top bit; 0x01-0x7f tags other versions
                raise InvalidSlip("malformed confirmed record: keyword ciphertext of an unsupported PEKS version")
        doctor_sig = c.take(SIGNATURE_SIZE, "doctor signature")
        record_keys = c.take(2 * _UMBRAL_KEY, "record keys")
        _compressed_key(record_keys[:_UMBRAL_KEY], "record key")
        _compressed_key(record_keys[_UMBRAL_KEY:], "kfrag verifying key")
        ct_hash = c.take(32, "record ciphertext hash")
        address = c.blob(MAX_STORAGE_ADDRESS + 1024, "encrypted storage address")
        a = _Cursor(address)
        if a.take(6, "encrypted storage address") != _CIPHERTEXT_TAG:
            raise InvalidSlip("malformed confirmed record: the encrypted storage address is not an Umbral ciphertext")
        a.blob(_MAX_CAPSULE, "capsule")
        a.blob(len(address), "storage ciphertext")
        if a.pos != len(address):
            raise InvalidSlip("malformed confirmed record: trailing bytes in the encrypted storage address")
        patient_sig = c.take(SIGNATURE_SIZE, "patient signature")
        if c.pos != len(c.data):
            raise InvalidSlip(f"malformed confirmed record: {len(c.data) - c.pos} trailing bytes")
        record_hash = keccak(RECORD_STRUCT.type_hash + bytes(24) + timestamp + keccak(rtype) + keccak(text)
                             + _pad(doctor) + _pad(patient) + keccak(keys) + hmi + cm + keccak(keywords))
        record_id = keccak(b"\x19\x01" + domain.separator + record_hash)
        confirmation = keccak(CONFIRMATION_STRUCT.type_hash + record_id + _pad(patient) + hmi + keccak(record_keys)
                              + ct_hash + keccak(address))
        return cls(doctor, patient, record_id,
                   keccak(b"\x19\x01" + domain.separator + confirmation), doctor_sig, patient_sig)

    def verify(self) -> bytes:
        """Both signatures recover to the doctor and patient the record names; returns the record ID."""
        if _signer(self.record_id, self.doctor_signature, "doctor") != self.doctor_address:
            raise InvalidSlip(f"signature check failed: the doctor signature does not recover to {self.doctor}")
        if _signer(self.confirmation_digest, self.patient_signature, "patient") != self.patient_address:
            raise InvalidSlip(f"signature check failed: the patient confirmation does not recover to {self.patient}")
        return self.record_id


@dataclass(frozen=True)
class SlipView:
    """A transaction slip as a replica checks it: who is who, and the record's signed bytes."""

    hospital_id: bytes
    doctor_id: bytes
    patient_id: bytes
    record: RecordView

    @classmethod
    def parse(cls, data: bytes, domain: Eip712Domain) -> "SlipView":
        if len(data) < 97 or data[0] != SLIP_VERSION:
            raise InvalidSlip(f"not a version-{SLIP_VERSION} transaction slip ({len(data)} bytes)")
        return cls(data[1:33], data[33:65], data[65:97], RecordView.parse(data[97:], domain))


def slip_summary(data: bytes) -> tuple[bytes, bytes, tuple[bytes, ...]]:
    """(patient ID, H(M), keyword ciphertexts): what a consortium summary item repeats of an encoded slip.

    Read from the framing alone, no point parsed: the bridge and the consortium's auditors take it from
    slips a quorum of replicas certified (and checked in full, :class:`SlipView`).
    """
    if len(data) < 97 or data[0] != SLIP_VERSION:
        raise InvalidSlip(f"not a version-{SLIP_VERSION} transaction slip ({len(data)} bytes)")
    c = _Cursor(bytes(data[97:]))
    if c.take(6, "header") != _CONFIRMED_TAG:
        raise InvalidSlip("malformed confirmed record: not an MBDS confirmed-record encoding (bad header)")
    c.take(8, "timestamp")
    c.blob(MAX_RECORD_TYPE, "record type")
    c.blob(MAX_TEXT, "text")
    c.take(20, "doctor address")
    c.blob(256, "patient keys")
    hmi = c.take(32, "H(M)")
    c.take(32, "C_M hash")
    (count,) = _U16.unpack(c.take(2, "keyword count"))
    if not 1 <= count <= MAX_KEYWORDS:
        raise InvalidSlip(f"malformed confirmed record: {count} keyword ciphertexts; expected 1-{MAX_KEYWORDS}")
    keywords = c.take(count * _PEKS_SIZE, "keyword ciphertexts")
    return bytes(data[65:97]), hmi, tuple(keywords[i:i + _PEKS_SIZE] for i in range(0, len(keywords), _PEKS_SIZE))


def slip_bytes(hospital_id: bytes, doctor_id: bytes, patient_id: bytes, record: bytes) -> bytes:
    """The canonical slip encoding (as :meth:`TransactionSlip.to_bytes`) from a confirmed record's bytes."""
    return bytes([SLIP_VERSION]) + hospital_id + doctor_id + patient_id + bytes(record)


class SlipValidator:
    """The checks every replica runs before it prepares a slip.

    The framing and both signatures over the signed byte ranges (:class:`SlipView`);
    doctor and patient registered, active and in the right roles; the doctor
    belongs to this hospital; the slip names the right IDs; no slip ID committed
    before.
    """

    CACHE = 100_000

    def __init__(self, hospital_id: bytes, domain: Eip712Domain, identities: IdentityView,
                 committed: "SlipIndex | None" = None):
        self.hospital_id = hospital_id
        self.domain = domain
        self.identities = identities
        self.committed = committed
        # keccak(slip bytes) -> what the identity re-check needs, for slips whose framing and signatures
        # passed: a replica sees a slip on the client API, in the relayed REQUEST and in the PRE-PREPARE,
        # and checks its signatures only once (identities can change: they are checked every time)
        self._checked: dict[bytes, tuple[bytes, str, str, bytes, bytes]] = {}

    def check_bytes(self, data: bytes, view: SlipView | None = None) -> bytes:
        """Return the slip ID of the encoded slip or raise :class:`InvalidSlip` saying which check failed
        (``view``: ``data`` already parsed)."""
        fingerprint = keccak(data)
        known = self._checked.get(fingerprint)
        if known is None:
            view = view or SlipView.parse(data, self.domain)
            slip_id = view.record.verify()
            if view.hospital_id != self.hospital_id:
                raise InvalidSlip(f"slip is for hospital 0x{view.hospital_id.hex()}, this chain is "
                                  f"0x{self.hospital_id.hex()}")
            known = (slip_id, view.record.doctor, view.record.patient, view.doctor_id, view.patient_id)
            if len(self._checked) >= self.CACHE:
                self._checked.pop(next(iter(self._checked)))
            self._checked[fingerprint] = known
        slip_id, doctor, patient, doctor_id, patient_id = known
        self._check_people(doctor, patient, doctor_id, patient_id)
        if self.committed is not None and self.committed.contains(slip_id):
            raise InvalidSlip(f"duplicate slip 0x{slip_id.hex()}: already committed")
        return slip_id

    def check(self, slip: TransactionSlip) -> bytes:
        """:meth:`check_bytes` of a slip object."""
        return self.check_bytes(slip.to_bytes())

    def _check_people(self, doctor_address: str, patient_address: str, doctor_id: bytes, patient_id: bytes) -> None:
        doctor = self.identities.by_address(doctor_address)
        if doctor is None or doctor.role is not Role.DOCTOR:
            raise InvalidSlip(f"doctor {doctor_address} is not a registered doctor")
        if doctor.suspended:
            raise InvalidSlip(f"doctor {doctor_address} is suspended")
        if doctor.institution != self.hospital_id:
            raise InvalidSlip(f"doctor {doctor_address} does not belong to this hospital")
        if doctor.id != doctor_id:
            raise InvalidSlip("slip doctor ID does not match the doctor's registered ID")
        patient = self.identities.by_address(patient_address)
        if patient is None or patient.role is not Role.PATIENT:
            raise InvalidSlip(f"patient {patient_address} is not a registered patient")
        if patient.suspended:
            raise InvalidSlip(f"patient {patient_address} is suspended")
        if patient.id != patient_id:
            raise InvalidSlip("slip patient ID does not match the patient's registered ID")

    def check_envelope(self, env: SlipEnvelope) -> str | None:
        """Adapter for the PBFT core's ``validate_slip`` hook: None if valid, else the reason."""
        try:
            slip_id = self.check_bytes(env.payload)
        except InvalidSlip as exc:
            return str(exc)
        if slip_id != env.slip_id:
            return "slip ID does not match the record ID"
        return None


class SlipIndex(Protocol):
    """Committed slip IDs (the replica's durable log)."""

    def contains(self, slip_id: bytes) -> bool: ...
