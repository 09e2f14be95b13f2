"""Transaction slips (paper Figure 3) and the validity checks every replica runs before preparing.

A slip wraps the patient-confirmed record (doctor's EIP-712 signature over
t‖Type‖Text‖PK_d‖PK_p‖H(M)‖C_M‖C_w plus the patient's confirmation) with the
participant IDs of doctor, patient and hospital.  Its ID is the record ID
(the doctor's EIP-712 digest), so the same record can never enter twice.
Pure: identity lookups go through the injected :class:`IdentityView`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

from ..crypto.confirmation import ConfirmedRecord
from ..crypto.signing import Eip712Domain
from ..errors import CryptoError, InvalidSlip, MBDSError
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


class SlipValidator:
    """The checks every replica runs before it prepares a slip.

    Both signatures valid; doctor and patient registered, active and in the
    right roles; the doctor belongs to this hospital; the slip names the right
    IDs; no slip ID committed before.
    """

    def __init__(self, hospital_id: bytes, domain: Eip712Domain, identities: IdentityView,
                 committed: "SlipIndex | None" = None):
        self.hospital_id = hospital_id
        self.domain = domain
        self.identities = identities
        self.committed = committed
        # signatures already verified, by (slip ID, keccak of the slip bytes): each replica sees a slip
        # on the client API, in the relayed REQUEST and in the PRE-PREPARE, and checks it only once
        self._verified: dict[bytes, bytes] = {}
        self._parsed: dict[bytes, TransactionSlip] = {}  # handed over from the client API to the core
        self._checked: dict[bytes, tuple] = {}  # keccak(slip bytes) -> what the identity re-check needs

    def remember(self, slip: TransactionSlip) -> None:
        """Keep a parsed slip for the core's check of the same bytes (saves a re-parse)."""
        if len(self._parsed) > 4096:
            self._parsed.pop(next(iter(self._parsed)))
        self._parsed[slip.to_bytes()] = slip

    def check(self, slip: TransactionSlip) -> bytes:
        """Return the slip ID or raise :class:`InvalidSlip` saying which check failed."""
        header = slip.record.header
        fingerprint = keccak(slip.to_bytes())
        slip_id = self._verified.get(fingerprint)
        if slip_id is None:
            try:
                slip_id = slip.record.verify(self.domain)
            except CryptoError as exc:
                raise InvalidSlip(f"signature check failed: {exc}") from exc
            if len(self._verified) >= 100_000:
                self._verified.pop(next(iter(self._verified)))
            self._verified[fingerprint] = slip_id
        if slip.hospital_id != self.hospital_id:
            raise InvalidSlip(f"slip is for hospital 0x{slip.hospital_id.hex()}, this chain is 0x{self.hospital_id.hex()}")
        self._check_people(header.doctor, header.patient.address, slip.doctor_id, slip.patient_id)
        if self.committed is not None and self.committed.contains(slip_id):
            raise InvalidSlip(f"duplicate slip 0x{slip_id.hex()}: already committed")
        return slip_id

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
        """Adapter for the PBFT core's ``validate_slip`` hook: None if valid, else the reason.

        A slip whose bytes were fully checked before (client API, relayed REQUEST) is not
        parsed again for the PRE-PREPARE: only the identity checks, which can change, rerun.
        """
        fingerprint = keccak(env.payload)
        known = self._checked.get(fingerprint)
        try:
            if known is not None:
                slip_id, doctor, patient, doctor_id, patient_id = known
                self._check_people(doctor, patient, doctor_id, patient_id)
            else:
                slip = self._parsed.pop(env.payload, None) or TransactionSlip.from_bytes(env.payload)
                slip_id = self.check(slip)
                if len(self._checked) >= 100_000:
                    self._checked.pop(next(iter(self._checked)))
                self._checked[fingerprint] = (slip_id, slip.record.header.doctor, slip.record.header.patient.address,
                                              slip.doctor_id, slip.patient_id)
        except InvalidSlip as exc:
            return str(exc)
        if slip_id != env.slip_id:
            return "slip ID does not match the record ID"
        return None


class SlipIndex(Protocol):
    """Committed slip IDs (the replica's durable log)."""

    def contains(self, slip_id: bytes) -> bool: ...
