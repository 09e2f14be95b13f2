"""Participants of MBDS: roles and public key sets (pure; mirrors IIdentityRegistry)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Role(IntEnum):
    """Mirror of ``IIdentityRegistry.Role`` (same order, same values)."""

    NONE = 0
    HOSPITAL = 1
    INTERNET_PLATFORM = 2
    DOCTOR = 3
    PATIENT = 4
    AUTHORITY_NATIONAL = 5
    AUTHORITY_PROVINCIAL = 6
    AUTHORITY_MUNICIPAL = 7
    INSURER = 8
    RESEARCH_INSTITUTE = 9
    PHARMA_COMPANY = 10

    @property
    def is_authority(self) -> bool:
        return self in (Role.AUTHORITY_NATIONAL, Role.AUTHORITY_PROVINCIAL, Role.AUTHORITY_MUNICIPAL)

    @property
    def is_institution(self) -> bool:
        return self not in (Role.NONE, Role.DOCTOR, Role.PATIENT)

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")

    @classmethod
    def parse(cls, text: str) -> "Role":
        key = text.strip().upper().replace("-", "_").replace(" ", "_")
        try:
            return cls[key]
        except KeyError:
            choices = ", ".join(r.label for r in cls if r is not Role.NONE)
            raise ValueError(f"unknown role {text!r}; expected one of: {choices}") from None


@dataclass(frozen=True)
class Participant:
    """The public record of one participant, as registered on every chain."""

    id: bytes  # 32-byte stable participant ID (a KMC commitment, not the real identity)
    name: str  # local label, e.g. "dr-li"; not registered on-chain
    role: Role
    address: str  # checksummed secp256k1 address
    pre_key: bytes  # Umbral public key, 33 bytes
    peks_key: bytes  # PEKS public key
    institution: bytes = b"\x00" * 32  # for doctors: the hospital/platform ID
    key_version: int = 1
    suspended: bool = False

    @property
    def id_hex(self) -> str:
        return "0x" + self.id.hex()
