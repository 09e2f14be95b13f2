"""Errors of the PBFT core: narrower subclasses of the MBDS families.

Every message a replica refuses raises (internally) a :class:`MessageRejected`
subclass; the replica records it and carries on.  ``reason`` is a short
machine-readable tag used in the replica's rejection log and metrics.
"""

from __future__ import annotations

from typing import Any

from mbds_py.errors import ConfigError, ConsensusError, IntegrityError, SignatureError, StorageError


class MessageRejected(ConsensusError):
    """A consensus message was refused; the replica ignores it and records why."""

    reason = "rejected"


class UnknownSender(MessageRejected, LookupError):
    """The sender index is not a validator of this chain: check the validator set."""

    reason = "unknown-sender"


class BadSignature(MessageRejected, SignatureError):
    """The signature does not verify against the sender's validator address."""

    reason = "bad-signature"


class MalformedMessage(MessageRejected, ValueError):
    """The message cannot be decoded or a field has the wrong size or range."""

    reason = "malformed"


class StaleMessage(MessageRejected):
    """The message is for an old view, or outside the water marks; it is dropped."""

    reason = "stale"


class InvalidPrePrepare(MessageRejected):
    """The primary proposed an invalid block (bad digest, root, slip, timestamp or chain link).

    Backups treat this as primary misbehaviour and move to a view change.
    """

    reason = "invalid-pre-prepare"


class Equivocation(InvalidPrePrepare):
    """The primary signed two different pre-prepares for the same view and sequence number."""

    reason = "equivocation"


class InvalidCertificate(MessageRejected):
    """A quorum, prepared, checkpoint or new-view certificate does not hold."""

    reason = "invalid-certificate"


class EmptyMerkleTree(IntegrityError):
    """A Merkle tree needs at least one leaf; a block carries at least one slip."""


class InvalidProof(IntegrityError):
    """A Merkle proof index or shape is invalid."""


class SimulationError(ConsensusError):
    """A simulated PBFT run broke a property; the message names the scenario (replay it by seed)."""

    def __init__(self, message: str, *, scenario: Any = None):
        super().__init__(message)
        self.scenario = scenario


class SimulationSafetyError(SimulationError):
    """Honest replicas diverged, applied a slip twice or a bad certificate, or a certifiable block was lost."""


class SimulationLivenessError(SimulationError):
    """After the faults stopped, a running honest replica did not apply every submitted slip."""


class ReplicaStoreError(StorageError):
    """The durable replica store could not be read or written; the replica must stop."""


class PbftConfigError(ConfigError):
    """The PBFT configuration is inconsistent (too few replicas, window below the checkpoint interval)."""


__all__ = [
    "BadSignature",
    "EmptyMerkleTree",
    "Equivocation",
    "InvalidCertificate",
    "InvalidPrePrepare",
    "InvalidProof",
    "MalformedMessage",
    "MessageRejected",
    "PbftConfigError",
    "ReplicaStoreError",
    "SimulationError",
    "SimulationLivenessError",
    "SimulationSafetyError",
    "StaleMessage",
    "UnknownSender",
]
