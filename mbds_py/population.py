"""The network's population: institutions, authorities, doctors and patients (embedded defaults or a file)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError
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


def load_population(path: str | Path) -> tuple[Member, ...]:
    """Read a population TOML file: ``[[members]]`` tables with ``name``, ``role``, ``real_identity``
    and, for doctors, ``institution``; for hospitals and platforms, the private ``chain`` they run.

    A malformed file raises :class:`ConfigError` naming the file, the member and the field.
    """
    label = str(path)
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the population file: {exc.strerror}", path=label) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=label) from None
    raw = data.get("members")
    if not isinstance(raw, list) or not raw:
        raise ConfigError("expected a non-empty list of [[members]] tables", path=label, field="members")
    members: list[Member] = []
    names: set[str] = set()
    for i, m in enumerate(raw):
        f = f"members[{i}]"
        if not isinstance(m, dict):
            raise ConfigError(f"got {m!r}; expected a table", path=label, field=f)
        extra = set(m) - {"name", "role", "real_identity", "institution", "chain"}
        if extra:
            raise ConfigError(f"unknown key(s) {sorted(extra)}", path=label, field=f)
        name = m.get("name")
        if not isinstance(name, str) or not name or not all(c.isalnum() or c in "-_." for c in name):
            raise ConfigError(f"got {name!r}; expected letters, digits, '-', '_' or '.'", path=label,
                              field=f"{f}.name")
        if name in names:
            raise ConfigError(f"{name!r} appears twice", path=label, field=f"{f}.name")
        try:
            role = Role.parse(str(m.get("role", "")))
        except ValueError as exc:
            raise ConfigError(str(exc), path=label, field=f"{f}.role") from None
        identity = m.get("real_identity")
        if not isinstance(identity, str) or not identity:
            raise ConfigError("missing; expected the participant's real identity (kept encrypted)", path=label,
                              field=f"{f}.real_identity")
        institution, chain = m.get("institution"), m.get("chain")
        if role is Role.DOCTOR and institution not in names:
            raise ConfigError(f"got {institution!r}; a doctor names a hospital or platform listed before it",
                              path=label, field=f"{f}.institution")
        if chain is not None and role not in (Role.HOSPITAL, Role.INTERNET_PLATFORM):
            raise ConfigError("only hospitals and platforms run a private chain", path=label, field=f"{f}.chain")
        names.add(name)
        members.append(Member(name, role, identity, institution, chain))
    return tuple(members)
