"""Errors of the consortium chain core (all under :class:`mbds_py.errors.ConsensusError`)."""

from __future__ import annotations

from enum import Enum

from ..errors import ConsensusError


class ConsortiumError(ConsensusError):
    """A rule of the consortium chain (credit, election, DPoS block) was broken."""


class ElectionError(ConsortiumError, ValueError):
    """A ranking or an election is impossible or inconsistent (e.g. fewer candidates than seats)."""


class BlockFault(str, Enum):
    """Why a consortium block is invalid: what an ATN refuses to attest."""

    WRONG_HEIGHT = "wrong-height"
    WRONG_PREV_HASH = "wrong-prev-hash"
    WRONG_SLOT = "wrong-slot"
    WRONG_PRODUCER = "wrong-producer"
    TIMESTAMP_OUT_OF_SLOT = "timestamp-out-of-slot"
    TOO_MANY_SLIPS = "too-many-slips"
    BAD_SLIP = "bad-slip"
    DUPLICATE_SLIP = "duplicate-slip"
    BAD_SLIP_SIGNATURE = "bad-slip-signature"
    FORGED_ITEM = "forged-item"
    WRONG_ROOT = "wrong-root"
    WRONG_ITEM_COUNT = "wrong-item-count"
    WRONG_PATIENTS = "wrong-patients"
    WRONG_BODY_CID = "wrong-body-cid"


class InvalidBlock(ConsortiumError, ValueError):
    """A consortium block failed verification; ``fault`` says which rule, the message says where."""

    def __init__(self, fault: BlockFault, message: str):
        self.fault = fault
        super().__init__(f"{fault.value}: {message}")


class InvalidSignature(ConsortiumError, ValueError):
    """A signature is malformed, not canonical (high s) or from the wrong signer."""


__all__ = ["BlockFault", "ConsortiumError", "ElectionError", "InvalidBlock", "InvalidSignature"]
