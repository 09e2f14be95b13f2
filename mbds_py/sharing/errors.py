"""Sharing-specific errors, narrower subclasses of the families in :mod:`mbds_py.errors`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mbds_py.errors import MBDSError, PolicyDenied

if TYPE_CHECKING:  # pragma: no cover
    from .policy import Decision

__all__ = ["AccessDenied", "PolicyViolation", "PolicyDenied"]


class PolicyViolation(MBDSError, ValueError):
    """The pure policy model refused a change, for the reason the contract would.

    ``error_name`` is the name of the AccessPolicy custom error the contract
    reverts with in the same situation, ``args_decoded`` its arguments, so a
    test can compare the model's refusal with the chain's.
    """

    def __init__(self, error_name: str, args: tuple = (), message: str | None = None):
        self.error_name = error_name
        self.args_decoded = tuple(args)
        super().__init__(message or f"AccessPolicy would revert with {error_name}{self.args_decoded!r}")


class AccessDenied(PolicyDenied):
    """An access was refused by the patient's policy; ``decision`` says why and at which epoch."""

    def __init__(self, decision: "Decision", *, patient: bytes, grantee: bytes, record_id: bytes, action: int):
        self.decision = decision
        self.patient = patient
        self.grantee = grantee
        self.record_id = record_id
        self.action = action
        super().__init__(
            f"access denied: grantee 0x{grantee.hex()[:12]}… may not {_action_name(action)} record "
            f"0x{record_id.hex()[:12]}… of patient 0x{patient.hex()[:12]}…: {decision.reason.message}"
        )


def _action_name(action: int) -> str:
    names = {1: "read", 2: "write", 4: "copy"}
    return names.get(int(action), f"perform action {int(action)} on")
