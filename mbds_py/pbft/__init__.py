"""PBFT core of a hospital's private chain (Castro–Liskov 1999), pure and I/O-free.

Layout::

    types.py       Block / BlockHeader / SlipEnvelope / QuorumCertificate, digest scheme
    messages.py    the ten signed messages, prepared / stable-checkpoint certificates
    codec.py       the canonical byte encoding (signed, hashed and sent)
    crypto.py      keccak256, Signer / Verifier protocols, secp256k1 and fake signers
    merkle.py      OpenZeppelin-compatible Merkle trees and proofs
    votes.py       VoteSet (duplicates are no-ops, double votes become evidence)
    config.py      PbftConfig (validators, quorum, batching, water marks, timeouts)
    state.py       ReplicaState shared by the services
    ordering.py    requests, block cutting, pre-prepare / prepare / commit, execution
    checkpoint.py  checkpoints + GC, state transfer and retransmission (STATUS/FETCH/BLOCKS)
    viewchange.py  VIEW-CHANGE / NEW-VIEW
    replica.py     Replica (inputs) and the Outbox protocol (outputs)
    store.py       ReplicaStore protocol, MemoryStore, SqliteStore (WAL)
    sim.py         deterministic simulation used by the tests
"""

from .config import PbftConfig
from .crypto import EthSigner, EthVerifier, FakeKeyring, FakeSigner, Signer, Verifier, keccak256
from .errors import (
    BadSignature,
    Equivocation,
    InvalidCertificate,
    InvalidPrePrepare,
    MalformedMessage,
    MessageRejected,
    StaleMessage,
    UnknownSender,
)
from .merkle import merkle_proof, merkle_root, standard_leaf, verify
from .messages import (
    Blocks,
    Checkpoint,
    Commit,
    Fetch,
    Hold,
    Message,
    MessageAuth,
    NewView,
    PrePrepare,
    Prepare,
    PreparedCert,
    Request,
    StableCheckpoint,
    Status,
    ViewChange,
    Want,
)
from .codec import decode_message, encode_message
from .replica import Outbox, RecordingOutbox, Replica
from .store import MemoryStore, ReplicaStore, SqliteStore, StoredState
from .types import (
    Block,
    BlockHeader,
    CertifiedBlock,
    CommitSignature,
    DigestScheme,
    Head,
    QuorumCertificate,
    SlipEnvelope,
)
from .votes import DoubleVote, VoteOutcome, VoteSet

__all__ = [
    "BadSignature",
    "Block",
    "BlockHeader",
    "Blocks",
    "CertifiedBlock",
    "Checkpoint",
    "Commit",
    "CommitSignature",
    "DigestScheme",
    "DoubleVote",
    "Equivocation",
    "EthSigner",
    "EthVerifier",
    "FakeKeyring",
    "FakeSigner",
    "Fetch",
    "Hold",
    "Head",
    "InvalidCertificate",
    "InvalidPrePrepare",
    "MalformedMessage",
    "MemoryStore",
    "Message",
    "MessageAuth",
    "MessageRejected",
    "NewView",
    "Outbox",
    "PbftConfig",
    "PrePrepare",
    "Prepare",
    "PreparedCert",
    "QuorumCertificate",
    "RecordingOutbox",
    "Replica",
    "ReplicaStore",
    "Request",
    "Signer",
    "SlipEnvelope",
    "SqliteStore",
    "StableCheckpoint",
    "StaleMessage",
    "Status",
    "StoredState",
    "UnknownSender",
    "Verifier",
    "ViewChange",
    "Want",
    "VoteOutcome",
    "VoteSet",
    "decode_message",
    "encode_message",
    "keccak256",
    "merkle_proof",
    "merkle_root",
    "standard_leaf",
    "verify",
]
