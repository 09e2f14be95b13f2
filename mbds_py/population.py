"""The demo population: institutions, authorities, doctors and patients (embedded defaults)."""

from __future__ import annotations

from dataclasses import dataclass

from .identity import Role


@dataclass(frozen=True)
class Member:
    name: str
    role: Role
    real_identity: str
    institution: str | None = None  # name of the hospital/platform, for doctors
    chain: str | None = None  # the private chain an institution runs


DEFAULT_POPULATION: tuple[Member, ...] = (
    Member("hospital-a", Role.HOSPITAL, "City General Hospital (USCC 12340000A)", chain="hospital-a"),
    Member("hospital-b", Role.HOSPITAL, "Provincial People's Hospital (USCC 12340000B)", chain="hospital-b"),
    Member("platform-c", Role.INTERNET_PLATFORM, "HealthLink Internet Medicine Platform (USCC 91340000C)",
           chain="platform-c"),
    Member("nha", Role.AUTHORITY_NATIONAL, "National Health Commission"),
    Member("pha", Role.AUTHORITY_PROVINCIAL, "Provincial Health Commission"),
    Member("mha", Role.AUTHORITY_MUNICIPAL, "Municipal Health Commission"),
    Member("insurer", Role.INSURER, "Mutual Health Insurance Co."),
    Member("research", Role.RESEARCH_INSTITUTE, "Institute of Clinical Research"),
    Member("pharma", Role.PHARMA_COMPANY, "Pharma Co. Ltd."),
    Member("dr-li", Role.DOCTOR, "Dr. Li Wei, licence 110-2231", institution="hospital-a"),
    Member("dr-wang", Role.DOCTOR, "Dr. Wang Fang, licence 110-4410", institution="hospital-b"),
    Member("dr-zhao", Role.DOCTOR, "Dr. Zhao Min, licence 110-7781", institution="platform-c"),
    Member("alice", Role.PATIENT, "Alice Chen, ID 3201-1990-0101"),
    Member("bob", Role.PATIENT, "Bob Liu, ID 3201-1985-0707"),
)
