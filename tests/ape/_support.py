"""Constants and helpers of the Ape modules (fixtures in conftest.py)."""

from __future__ import annotations

ZERO32 = b"\x00" * 32
PRE_KEY = b"\x02" + b"\x11" * 32  # a compressed secp256k1 point's length (33 bytes)
PEKS_KEY = b"\x22" * 96  # a G2 point's length
DAY = 86_400

# IIdentityRegistry.Role
HOSPITAL, INTERNET_PLATFORM, DOCTOR, PATIENT = 1, 2, 3, 4
AUTHORITY_NATIONAL, AUTHORITY_PROVINCIAL, AUTHORITY_MUNICIPAL = 5, 6, 7
AUTHORITY_ROLES = (AUTHORITY_NATIONAL, AUTHORITY_PROVINCIAL, AUTHORITY_MUNICIPAL)


def pid(label: str) -> bytes:
    """A participant ID: the label, zero-padded to 32 bytes (readable in a failing assertion)."""
    return label.encode().ljust(32, b"\x00")


def call(contract, method: str, *args) -> tuple[str, bytes]:
    """One IAuthorityGovernor.Call: the target and its ABI-encoded calldata."""
    return contract.address, bytes(getattr(contract, method).encode_input(*args))


def govern(governor, authorities, calls, chain, salt: bytes = ZERO32):
    """Propose (authority 0), approve (authority 1), wait out the delay if the operation has one, execute."""
    op = governor.hashOperation(calls, salt)
    governor.propose(calls, salt, sender=authorities[0])
    governor.approve(op, sender=authorities[1])
    ready_at = governor.getOperation(op).readyAt
    if ready_at >= chain.pending_timestamp:
        chain.pending_timestamp = ready_at + 1
    return governor.execute(calls, salt, sender=authorities[2])
