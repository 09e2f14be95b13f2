"""PBFT messages (Castro–Liskov 1999, signature variant) as frozen dataclasses.

Every message names its ``sender`` (validator index) and carries the sender's
signature over :func:`MessageAuth.signing_hash`: ``keccak256(domain ‖
signing_bytes(msg))`` for all messages except COMMIT, whose signature covers the
commit digest so that a set of COMMITs *is* the quorum certificate the chain
contract verifies.  A PRE-PREPARE's signature covers ``(view, seq, digest)``
only; the block travels beside it and is bound through the digest.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Union

from .codec import message, signing_bytes
from .crypto import Signer, Verifier, keccak256
from .errors import BadSignature, MalformedMessage, UnknownSender
from .types import Block, CertifiedBlock, DigestScheme, Head, SlipEnvelope, _check_len


@message(1)
@dataclass(frozen=True)
class Request:
    """Slips relayed between replicas (clients hand slips to ``Replica.on_request(s)``)."""

    slips: tuple[SlipEnvelope, ...]
    sender: int
    signature: bytes = b""


@message(2, unsigned=("signature", "block"))
@dataclass(frozen=True)
class PrePrepare:
    """Primary assigns ``digest`` (a block, or the null request) to ``seq`` in ``view``."""

    view: int
    seq: int
    digest: bytes
    sender: int
    block: Block | None = None
    signature: bytes = b""

    def __post_init__(self) -> None:
        _check_len("digest", self.digest, 32)

    def without_block(self) -> PrePrepare:
        return dataclasses.replace(self, block=None)


@message(3)
@dataclass(frozen=True)
class Prepare:
    """Backup ``sender`` accepted the pre-prepare ``(view, seq, digest)``."""

    view: int
    seq: int
    digest: bytes
    sender: int
    signature: bytes = b""

    def __post_init__(self) -> None:
        _check_len("digest", self.digest, 32)


@message(4)
@dataclass(frozen=True)
class Commit:
    """``sender`` is prepared for ``(view, seq, digest)``; signature covers the commit digest."""

    view: int
    seq: int
    digest: bytes
    sender: int
    signature: bytes = b""

    def __post_init__(self) -> None:
        _check_len("digest", self.digest, 32)


@message(5)
@dataclass(frozen=True)
class Checkpoint:
    """``sender``'s chain head after executing every sequence number up to ``seq``."""

    seq: int
    height: int
    head_hash: bytes
    head_timestamp: int
    sender: int
    signature: bytes = b""

    def __post_init__(self) -> None:
        _check_len("head_hash", self.head_hash, 32)

    @property
    def head(self) -> Head:
        return Head(self.height, self.head_hash, self.head_timestamp)


@dataclass(frozen=True)
class PreparedCert:
    """A pre-prepare (with its block unless null) and quorum-1 matching PREPAREs."""

    pre_prepare: PrePrepare
    prepares: tuple[Prepare, ...]

    @property
    def view(self) -> int:
        return self.pre_prepare.view

    @property
    def seq(self) -> int:
        return self.pre_prepare.seq

    @property
    def digest(self) -> bytes:
        return self.pre_prepare.digest


@dataclass(frozen=True)
class StableCheckpoint:
    """A checkpoint proven stable by a quorum of matching CHECKPOINT messages."""

    seq: int
    head: Head
    proof: tuple[Checkpoint, ...]


@message(6)
@dataclass(frozen=True)
class ViewChange:
    """``sender`` moves to ``new_view``: its stable checkpoint proof and prepared set P."""

    new_view: int
    stable_seq: int
    checkpoints: tuple[Checkpoint, ...]
    prepared: tuple[PreparedCert, ...]
    sender: int
    signature: bytes = b""


@message(7)
@dataclass(frozen=True)
class NewView:
    """The new primary's proof (quorum VIEW-CHANGEs) and the re-issued pre-prepares O."""

    view: int
    view_changes: tuple[ViewChange, ...]
    pre_prepares: tuple[PrePrepare, ...]
    sender: int
    signature: bytes = b""


@message(8)
@dataclass(frozen=True)
class Status:
    """Periodic anti-entropy beacon: peers answer with what ``sender`` is missing."""

    view: int
    active: bool
    last_executed: int
    height: int
    stable_seq: int
    sender: int
    signature: bytes = b""


@message(9)
@dataclass(frozen=True)
class Fetch:
    """State transfer request: committed blocks from ``from_height`` on."""

    from_height: int
    sender: int
    signature: bytes = b""


@message(10)
@dataclass(frozen=True)
class Blocks:
    """State transfer reply: certified blocks and the responder's stable checkpoint proof."""

    blocks: tuple[CertifiedBlock, ...]
    checkpoints: tuple[Checkpoint, ...]
    height: int
    sender: int
    signature: bytes = b""


def _check_slip_ids(slip_ids: tuple[bytes, ...]) -> None:
    for slip_id in slip_ids:
        _check_len("slip_id", slip_id, 32)


@message(11)
@dataclass(frozen=True)
class Hold:
    """A backup holds these client slips (their IDs only): the primary, which usually has them from the client
    too, answers with a WANT for the ones it lacks instead of receiving every body twice."""

    slip_ids: tuple[bytes, ...]
    sender: int
    signature: bytes = b""

    def __post_init__(self) -> None:
        _check_slip_ids(self.slip_ids)


@message(12)
@dataclass(frozen=True)
class Want:
    """The primary lacks these slips a HOLD announced: the holder sends their bodies in a REQUEST."""

    slip_ids: tuple[bytes, ...]
    sender: int
    signature: bytes = b""

    def __post_init__(self) -> None:
        _check_slip_ids(self.slip_ids)


Message = Union[Request, PrePrepare, Prepare, Commit, Checkpoint, ViewChange, NewView, Status, Fetch, Blocks, Hold,
                Want]
MESSAGE_TYPES: tuple[type, ...] = (
    Request, PrePrepare, Prepare, Commit, Checkpoint, ViewChange, NewView, Status, Fetch, Blocks, Hold, Want,
)


class MessageAuth:
    """Signs and checks messages for one chain (``domain``) and validator set."""

    def __init__(self, domain: bytes, validators: tuple[bytes, ...], verifier: Verifier, scheme: DigestScheme):
        self.domain = domain
        self.validators = validators
        self.verifier = verifier
        self.scheme = scheme

    def signing_hash(self, msg: Message) -> bytes:
        """The 32-byte hash ``msg.signature`` must cover."""
        if type(msg) is Commit:
            return self.scheme.commit_digest(self.domain, msg.view, msg.seq, msg.digest)
        return keccak256(self.domain + signing_bytes(msg))

    def sign(self, msg: Message, signer: Signer) -> Message:
        """``msg`` with its signature filled in by ``signer``."""
        return dataclasses.replace(msg, signature=signer.sign(self.signing_hash(msg)))

    def check(self, msg: Message) -> None:
        """Raise unless ``msg`` is from a known validator and its signature verifies."""
        if type(msg) not in MESSAGE_TYPES:
            raise MalformedMessage(f"not a PBFT message: {type(msg).__name__}")
        sender = msg.sender
        if type(sender) is not int or not 0 <= sender < len(self.validators):
            raise UnknownSender(f"sender {sender!r} is not one of the {len(self.validators)} validators")
        if not self.verifier.verify(self.signing_hash(msg), msg.signature, self.validators[sender]):
            raise BadSignature(f"{type(msg).__name__} from replica {sender}: signature does not verify")


__all__ = [
    "Blocks",
    "Checkpoint",
    "Commit",
    "Fetch",
    "Hold",
    "MESSAGE_TYPES",
    "Message",
    "MessageAuth",
    "NewView",
    "PrePrepare",
    "Prepare",
    "PreparedCert",
    "Request",
    "StableCheckpoint",
    "Status",
    "ViewChange",
    "Want",
]
