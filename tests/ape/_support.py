"""Constants and helpers of the Ape modules (fixtures in conftest.py)."""

from __future__ import annotations

from contextlib import contextmanager

import ape
from ape.exceptions import CustomError
from eth_utils import keccak
from hexbytes import HexBytes

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


@contextmanager
def reverts(error, **inputs):
    """`ape.reverts(error, **inputs)`, made exact.  Ape 0.8 lets through a revert it could not decode (one
    raised in a deployment, or bubbled up through the governor from its target) and an input name the error
    lacks; here the revert data must carry `error`'s selector and the inputs must match by name."""
    with ape.reverts(error, **inputs) as info:
        yield info
    raised = info.value
    if isinstance(raised, CustomError):
        name, actual = type(raised).__name__, dict(raised.inputs)
    else:  # undecoded: decode the revert data against the expected error's ABI
        data = HexBytes(raised.revert_message) if str(raised.revert_message).startswith("0x") else HexBytes(b"")
        assert data[:4] == keccak(text=error.abi.selector)[:4], f"expected {error.__name__}, got {raised!r}"
        name = error.__name__
        actual = ape.networks.provider.network.ecosystem.decode_calldata(error.abi, data[4:])
    assert name == error.__name__, f"expected {error.__name__}, got {name}"
    assert set(inputs) <= set(actual), f"{error.__name__} has no input {set(inputs) - set(actual)}"
    wrong = {k: (v, actual[k]) for k, v in inputs.items() if actual[k] != v}
    assert not wrong, f"{error.__name__}: (expected, actual) {wrong}"
