"""The consortium chain: credit-scored DPoS election and blocks of summary slips.

Pure core (no web3): :mod:`.credit` (scores), :mod:`.election` (ranking, seats,
replacement), :mod:`.schedule` (slot clock), :mod:`.blocks` (items, slips, headers,
build/verify, attestations), :mod:`.eip712`, :mod:`.merkle`, :mod:`.cid`.
Chain adapters: :mod:`.agents` (``CreditRegistryAgent``, ``ConsortiumIndexAgent``),
imported on demand so the core stays importable without web3.
"""

from .blocks import (
    Attestation,
    AttestationSet,
    BlockHeader,
    ConsortiumBlock,
    ConsortiumSlip,
    ItemProof,
    SummaryItem,
    attest,
    build_block,
    decode_body,
    encode_body,
    item_leaf,
    ordered_signatures,
    patients_hash,
    reject,
    verify_block,
)
from .credit import CreditRecord, Dimensions, Incentives, Offence, SeatKind, Service, Weights, credit_score
from .eip712 import AccountSigner, Domain, Signer, index_domain, recover
from .election import Candidate, Election, Roster, elect, eligible_ranking, rank
from .errors import BlockFault, ConsortiumError, ElectionError, InvalidBlock, InvalidSignature
from .schedule import SlotClock

__all__ = [
    "AccountSigner",
    "Attestation",
    "AttestationSet",
    "BlockFault",
    "BlockHeader",
    "Candidate",
    "ConsortiumBlock",
    "ConsortiumError",
    "ConsortiumSlip",
    "CreditRecord",
    "Dimensions",
    "Domain",
    "Election",
    "ElectionError",
    "Incentives",
    "InvalidBlock",
    "InvalidSignature",
    "ItemProof",
    "Offence",
    "Roster",
    "SeatKind",
    "Service",
    "Signer",
    "SlotClock",
    "SummaryItem",
    "Weights",
    "attest",
    "build_block",
    "credit_score",
    "decode_body",
    "elect",
    "eligible_ranking",
    "encode_body",
    "index_domain",
    "item_leaf",
    "ordered_signatures",
    "patients_hash",
    "rank",
    "recover",
    "reject",
    "verify_block",
]
