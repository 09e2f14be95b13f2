"""Consortium-chain data: summary items, consortium slips, headers, blocks (paper Figure 4).

One canonical encoding, the one that is hashed and signed:

* **hashes** are EIP-712 ``hashStruct`` values, identical to ``ConsortiumIndex``:
  ``SummaryItem(bytes32 patientId,bytes[] keywords,bytes32 hmiHash,uint64 chainId,uint64 blockHeight,bytes32 slipId)``,
  ``ConsortiumSlip(bytes32 slipId,uint64 timestamp,bytes32 origin,SummaryItem[] items)`` and
  ``ConsortiumBlockHeader(uint64 height,bytes32 prevHash,uint64 timestamp,uint64 slot,bytes32 producer,
  bytes32 merkleRoot,uint32 itemCount,bytes32 patientsHash,bytes32 bodyCid)``;
* **bytes** (the block body stored under ``bodyCid``, a header on the wire) are the
  Solidity ABI encoding of the same fields (:func:`encode_body`, :meth:`BlockHeader.encode`).

A block's Merkle leaves are its items, ``keccak256(keccak256(abi.encode(slipHash,
itemIndex, itemHash)))``, in an OpenZeppelin StandardMerkleTree. ``patientsHash``
commits to the block's distinct patient IDs (ascending), which ``commitBlock``
emits as ``PatientIndexed`` logs for the proxy's search.

:func:`build_block` is what a producing RPN runs, :func:`verify_block` what an ATN
runs before attesting; :class:`AttestationSet` collects attestations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Iterable, Sequence

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_abi.exceptions import DecodingError
from eth_utils import keccak

from .cid import default_cid_of
from .credit import ZERO32
from .eip712 import Domain, Signer, recover, rejection_struct_hash, u256
from .errors import BlockFault, InvalidBlock, InvalidSignature
from .merkle import MerkleTree, item_leaf
from .schedule import SlotClock

MAX_ITEMS_PER_SLIP = 10
MAX_SLIPS_PER_BLOCK = 128
GENESIS_HASH = ZERO32

SUMMARY_ITEM_TYPE = (
    "SummaryItem(bytes32 patientId,bytes[] keywords,bytes32 hmiHash,uint64 chainId,uint64 blockHeight,bytes32 slipId)"
)
CONSORTIUM_SLIP_TYPE = "ConsortiumSlip(bytes32 slipId,uint64 timestamp,bytes32 origin,SummaryItem[] items)"
BLOCK_HEADER_TYPE = (
    "ConsortiumBlockHeader(uint64 height,bytes32 prevHash,uint64 timestamp,uint64 slot,bytes32 producer,"
    "bytes32 merkleRoot,uint32 itemCount,bytes32 patientsHash,bytes32 bodyCid)"
)
SUMMARY_ITEM_TYPEHASH = keccak(text=SUMMARY_ITEM_TYPE)
CONSORTIUM_SLIP_TYPEHASH = keccak(text=CONSORTIUM_SLIP_TYPE + SUMMARY_ITEM_TYPE)
BLOCK_HEADER_TYPEHASH = keccak(text=BLOCK_HEADER_TYPE)

_ITEM_ABI = "(bytes32,bytes[],bytes32,uint64,uint64,bytes32)"
_SLIP_ABI = f"(bytes32,uint64,bytes32,{_ITEM_ABI}[],bytes)"
_BODY_ABI = f"{_SLIP_ABI}[]"
_HEADER_ABI = "(uint64,bytes32,uint64,uint64,bytes32,bytes32,uint32,bytes32,bytes32)"


def _bytes32(name: str, value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != 32:
        raise ValueError(f"{name} must be 32 bytes, got {value!r:.40}")


def _uint(name: str, value: int, bits: int) -> None:
    if type(value) is not int or not 0 <= value < 2**bits:
        raise ValueError(f"{name} must be a uint{bits}, got {value!r}")


# --- summary items and consortium slips -----------------------------------------------------


@dataclass(frozen=True)
class SummaryItem:
    """The information summary of one private-chain slip (paper: patient ID, encrypted HMI keywords,
    HMI hash, private chain ID, block ID, slip ID)."""

    patient_id: bytes
    keywords: tuple[bytes, ...]  # PEKS ciphertexts C_w, one per keyword
    hmi_hash: bytes
    chain_id: int  # the private chain's chain ID
    block_height: int  # the private-chain block holding the slip
    slip_id: bytes  # the private-chain slip ID

    def __post_init__(self) -> None:
        object.__setattr__(self, "keywords", tuple(bytes(k) for k in self.keywords))
        _bytes32("patient_id", self.patient_id)
        _bytes32("hmi_hash", self.hmi_hash)
        _bytes32("slip_id", self.slip_id)
        _uint("chain_id", self.chain_id, 64)
        _uint("block_height", self.block_height, 64)

    @cached_property
    def struct_hash(self) -> bytes:
        keywords_hash = keccak(b"".join(keccak(k) for k in self.keywords))
        return keccak(SUMMARY_ITEM_TYPEHASH + self.patient_id + keywords_hash + self.hmi_hash
                      + u256(self.chain_id) + u256(self.block_height) + self.slip_id)

    def as_abi(self) -> tuple:
        return (self.patient_id, list(self.keywords), self.hmi_hash, self.chain_id, self.block_height, self.slip_id)


@dataclass(frozen=True)
class ConsortiumSlip:
    """A consortium transaction slip: ID, timestamp, ≤ 10 items, the submitting institution's signature."""

    slip_id: bytes
    timestamp: int  # seconds
    origin: bytes  # participant ID of the submitting (bridge) hospital or platform
    items: tuple[SummaryItem, ...]
    signature: bytes = b""  # by the origin's account over digest(domain)

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", tuple(self.items))
        _bytes32("slip_id", self.slip_id)
        _bytes32("origin", self.origin)
        _uint("timestamp", self.timestamp, 64)

    @cached_property
    def struct_hash(self) -> bytes:
        items_hash = keccak(b"".join(item.struct_hash for item in self.items))
        return keccak(CONSORTIUM_SLIP_TYPEHASH + self.slip_id + u256(self.timestamp) + self.origin + items_hash)

    def digest(self, domain: Domain) -> bytes:
        return domain.digest(self.struct_hash)

    def signed(self, domain: Domain, signer: Signer) -> "ConsortiumSlip":
        """This slip with the origin's signature."""
        return ConsortiumSlip(self.slip_id, self.timestamp, self.origin, self.items,
                              signer.sign_digest(self.digest(domain)))

    def signer(self, domain: Domain) -> str | None:
        return recover(self.digest(domain), self.signature)

    def leaves(self) -> list[bytes]:
        slip_hash = self.struct_hash
        return [item_leaf(slip_hash, i, item.struct_hash) for i, item in enumerate(self.items)]

    def as_abi(self) -> tuple:
        return (self.slip_id, self.timestamp, self.origin, [item.as_abi() for item in self.items], self.signature)

    @classmethod
    def create(cls, origin: bytes, timestamp: int, items: Sequence[SummaryItem], domain: Domain, signer: Signer,
               slip_id: bytes | None = None) -> "ConsortiumSlip":
        """A signed slip; the default ID is ``keccak256(origin ‖ timestamp ‖ item hashes)``."""
        if slip_id is None:
            slip_id = keccak(origin + u256(timestamp) + b"".join(i.struct_hash for i in items))
        return cls(slip_id, timestamp, origin, tuple(items)).signed(domain, signer)


def patients_hash(patient_ids: Sequence[bytes]) -> bytes:
    """``keccak256(abi.encodePacked(ids))`` of the distinct IDs, ascending."""
    return keccak(b"".join(patient_ids))


def encode_body(slips: Sequence[ConsortiumSlip]) -> bytes:
    """The canonical block body: ``abi.encode(ConsortiumSlip[])`` including signatures."""
    return abi_encode([_BODY_ABI], [[s.as_abi() for s in slips]])


def decode_body(data: bytes) -> tuple[ConsortiumSlip, ...]:
    """The slips of a block body; :class:`InvalidBlock` (``bad-slip``) if the bytes do not decode."""
    try:
        (raw,) = abi_decode([_BODY_ABI], data)
    except DecodingError as exc:
        raise InvalidBlock(BlockFault.BAD_SLIP, f"the body does not decode as ConsortiumSlip[] ({exc})") from None
    return tuple(
        ConsortiumSlip(bytes(sid), ts, bytes(origin),
                       tuple(SummaryItem(bytes(p), tuple(bytes(k) for k in kws), bytes(h), c, b, bytes(s))
                             for p, kws, h, c, b, s in items), bytes(sig))
        for sid, ts, origin, items, sig in raw
    )


# --- headers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlockHeader:
    """``IConsortiumIndex.BlockHeader``."""

    height: int
    prev_hash: bytes
    timestamp: int  # seconds, within the slot
    slot: int
    producer: bytes  # institution ID of the RPN
    merkle_root: bytes
    item_count: int
    patients_hash: bytes
    body_cid: bytes  # sha2-256 digest of the body's CIDv0

    def __post_init__(self) -> None:
        for name in ("prev_hash", "producer", "merkle_root", "patients_hash", "body_cid"):
            _bytes32(name, getattr(self, name))
        for name in ("height", "timestamp", "slot"):
            _uint(name, getattr(self, name), 64)
        _uint("item_count", self.item_count, 32)

    @cached_property
    def block_hash(self) -> bytes:
        """EIP-712 ``hashStruct``: what is stored per height and what ``prev_hash`` refers to."""
        return keccak(BLOCK_HEADER_TYPEHASH + u256(self.height) + self.prev_hash + u256(self.timestamp)
                      + u256(self.slot) + self.producer + self.merkle_root + u256(self.item_count)
                      + self.patients_hash + self.body_cid)

    def digest(self, domain: Domain) -> bytes:
        """What an attestation (and the producer's signature) covers."""
        return domain.digest(self.block_hash)

    def rejection_digest(self, domain: Domain) -> bytes:
        """What an ATN signs to reject this header."""
        return domain.digest(rejection_struct_hash(self.block_hash))

    def as_abi(self) -> tuple:
        return (self.height, self.prev_hash, self.timestamp, self.slot, self.producer, self.merkle_root,
                self.item_count, self.patients_hash, self.body_cid)

    def encode(self) -> bytes:
        return abi_encode([_HEADER_ABI], [self.as_abi()])

    @classmethod
    def decode(cls, data: bytes) -> "BlockHeader":
        (raw,) = abi_decode([_HEADER_ABI], data)
        return cls.from_abi(raw)

    @classmethod
    def from_abi(cls, raw: Sequence) -> "BlockHeader":
        h, prev, ts, slot, producer, root, count, phash, cid = raw
        return cls(h, bytes(prev), ts, slot, bytes(producer), bytes(root), count, bytes(phash), bytes(cid))


# --- blocks ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemProof:
    """An item's Merkle leaf and its proof against the header's root, with what the leaf hashes
    (a verifier recomputes the leaf from ``slip_hash``, ``index`` and ``item_hash``, see
    :func:`mbds_py.consortium.merkle.verify_item`)."""

    leaf: bytes
    proof: tuple[bytes, ...]
    slip_hash: bytes = b""
    index: int = 0
    item_hash: bytes = b""


@dataclass(frozen=True)
class ConsortiumBlock:
    header: BlockHeader
    slips: tuple[ConsortiumSlip, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "slips", tuple(self.slips))

    @cached_property
    def leaves(self) -> tuple[bytes, ...]:
        return tuple(leaf for slip in self.slips for leaf in slip.leaves())

    @cached_property
    def tree(self) -> MerkleTree | None:
        return MerkleTree(self.leaves) if self.leaves else None

    @cached_property
    def patient_ids(self) -> tuple[bytes, ...]:
        """Distinct patient IDs of the items, ascending (``commitBlock``'s ``patientIds``)."""
        return tuple(sorted({item.patient_id for slip in self.slips for item in slip.items}))

    def body(self) -> bytes:
        return encode_body(self.slips)

    def item_proof(self, slip_index: int, item_index: int) -> ItemProof:
        slip = self.slips[slip_index]
        item_hash = slip.items[item_index].struct_hash
        leaf = item_leaf(slip.struct_hash, item_index, item_hash)
        assert self.tree is not None
        return ItemProof(leaf, tuple(self.tree.proof(leaf)), slip.struct_hash, item_index, item_hash)

    def items_of(self, patient_id: bytes) -> list[tuple[int, int, SummaryItem]]:
        """(slip index, item index, item) of every item of one patient."""
        return [(s, i, item) for s, slip in enumerate(self.slips) for i, item in enumerate(slip.items)
                if item.patient_id == patient_id]


def _content(slips: Sequence[ConsortiumSlip]) -> tuple[bytes, int, bytes]:
    leaves = [leaf for slip in slips for leaf in slip.leaves()]
    root = MerkleTree(leaves).root if leaves else ZERO32
    patients = sorted({item.patient_id for slip in slips for item in slip.items})
    return root, len(leaves), patients_hash(patients)


def build_block(slips: Sequence[ConsortiumSlip], *, prev: BlockHeader | None, slot: int, producer: bytes,
                timestamp: int, cid_of: Callable[[bytes], bytes] = default_cid_of) -> ConsortiumBlock:
    """The block an RPN proposes in ``slot`` on top of ``prev`` (None: the first block).

    ``cid_of`` maps the body bytes to the digest of their storage CID; pass the storage
    client's add (it stores and names the body) or a pure CID computation.
    """
    root, count, phash = _content(slips)
    body = encode_body(slips)
    header = BlockHeader(
        height=1 if prev is None else prev.height + 1,
        prev_hash=GENESIS_HASH if prev is None else prev.block_hash,
        timestamp=timestamp,
        slot=slot,
        producer=producer,
        merkle_root=root,
        item_count=count,
        patients_hash=phash,
        body_cid=cid_of(body),
    )
    return ConsortiumBlock(header, tuple(slips))


def verify_block(
    block: ConsortiumBlock,
    *,
    prev: BlockHeader | None,
    clock: SlotClock,
    rpn: Sequence[bytes],
    domain: Domain,
    account_of: Callable[[bytes], str | None],
    now: int | None = None,
    cid_of: Callable[[bytes], bytes] | None = default_cid_of,
    check_item: Callable[[SummaryItem], bool] | None = None,
    max_slips: int = MAX_SLIPS_PER_BLOCK,
    max_items: int = MAX_ITEMS_PER_SLIP,
) -> None:
    """What an ATN checks before attesting; raises :class:`InvalidBlock` naming the first fault.

    ``rpn`` are the RPN seats of the round, ``account_of`` maps an origin institution ID to its
    account (None if unknown), ``check_item`` is the cross-chain check of an item against its
    private chain (``False`` = forged), ``cid_of=None`` skips the body-CID check (e.g. when the
    body was fetched by that CID and so already matches it).
    """
    h = block.header
    expected_height = 1 if prev is None else prev.height + 1
    if h.height != expected_height:
        raise InvalidBlock(BlockFault.WRONG_HEIGHT, f"height {h.height}, expected {expected_height}")
    expected_prev = GENESIS_HASH if prev is None else prev.block_hash
    if h.prev_hash != expected_prev:
        raise InvalidBlock(BlockFault.WRONG_PREV_HASH, f"prev_hash {h.prev_hash.hex()} != {expected_prev.hex()}")
    if prev is not None and h.slot <= prev.slot:
        raise InvalidBlock(BlockFault.WRONG_SLOT, f"slot {h.slot} does not follow slot {prev.slot}")
    if now is not None and h.slot != clock.slot_at(now):
        raise InvalidBlock(BlockFault.WRONG_SLOT, f"slot {h.slot} is not the current slot {clock.slot_at(now)}")
    scheduled = clock.producer_of(h.slot, rpn)
    if h.producer != scheduled:
        raise InvalidBlock(BlockFault.WRONG_PRODUCER, f"slot {h.slot} belongs to "
                                                      f"{scheduled.hex() if scheduled else 'a vacant seat'}")
    if not clock.slot_start(h.slot) <= h.timestamp < clock.slot_end(h.slot) or (now is not None and h.timestamp > now):
        raise InvalidBlock(BlockFault.TIMESTAMP_OUT_OF_SLOT, f"timestamp {h.timestamp} outside slot {h.slot}")

    _verify_slips(block.slips, domain, account_of, check_item, max_slips, max_items)

    root, count, phash = _content(block.slips)
    if h.item_count != count:
        raise InvalidBlock(BlockFault.WRONG_ITEM_COUNT, f"header says {h.item_count} items, body has {count}")
    if h.merkle_root != root:
        raise InvalidBlock(BlockFault.WRONG_ROOT, f"merkle_root {h.merkle_root.hex()}, body gives {root.hex()}")
    if h.patients_hash != phash:
        raise InvalidBlock(BlockFault.WRONG_PATIENTS, "patients_hash does not match the items' patient IDs")
    if cid_of is not None and h.body_cid != cid_of(block.body()):
        raise InvalidBlock(BlockFault.WRONG_BODY_CID, "body_cid does not name this body")


def _verify_slips(slips: Sequence[ConsortiumSlip], domain: Domain, account_of: Callable[[bytes], str | None],
                  check_item: Callable[[SummaryItem], bool] | None, max_slips: int, max_items: int) -> None:
    if len(slips) > max_slips:
        raise InvalidBlock(BlockFault.TOO_MANY_SLIPS, f"{len(slips)} slips, at most {max_slips}")
    seen: set[bytes] = set()
    for n, slip in enumerate(slips):
        if not 1 <= len(slip.items) <= max_items:
            raise InvalidBlock(BlockFault.BAD_SLIP, f"slip {n} has {len(slip.items)} items, 1..{max_items} allowed")
        if slip.slip_id in seen:
            raise InvalidBlock(BlockFault.DUPLICATE_SLIP, f"slip {slip.slip_id.hex()} appears twice")
        seen.add(slip.slip_id)
        account = account_of(slip.origin)
        signer = slip.signer(domain)
        if account is None or signer is None or signer.lower() != account.lower():
            raise InvalidBlock(BlockFault.BAD_SLIP_SIGNATURE,
                               f"slip {n} is not signed by its origin {slip.origin.hex()} (signer {signer})")
        if check_item is not None:
            for i, item in enumerate(slip.items):
                if not check_item(item):
                    raise InvalidBlock(BlockFault.FORGED_ITEM, f"slip {n} item {i} (slip {item.slip_id.hex()} of "
                                                               f"chain {item.chain_id}) is not on its private chain")


# --- attestations ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attestation:
    """A signature over a header digest (attestation, rejection or the producer's proposal)."""

    signer: str
    signature: bytes


def sign(digest: bytes, signer: Signer) -> Attestation:
    return Attestation(signer.address, signer.sign_digest(digest))


def attest(header: BlockHeader, domain: Domain, signer: Signer) -> Attestation:
    """An ATN's attestation of a header (also the producer's signature of its proposal)."""
    return sign(header.digest(domain), signer)


def reject(header: BlockHeader, domain: Domain, signer: Signer) -> Attestation:
    """An ATN's rejection of a header."""
    return sign(header.rejection_digest(domain), signer)


def ordered_signatures(attestations: Iterable[Attestation]) -> list[bytes]:
    """Signatures sorted by ascending signer address, one per signer (the contracts' order)."""
    by_signer = {int(a.signer, 16): a.signature for a in attestations}
    return [by_signer[k] for k in sorted(by_signer)]


@dataclass
class AttestationSet:
    """Verified signatures over one digest from a set of allowed signers; duplicates are no-ops."""

    digest: bytes
    allowed: frozenset[str]
    _votes: dict[str, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.allowed = frozenset(a.lower() for a in self.allowed)

    def add(self, attestation: Attestation) -> bool:
        """Add a vote; True if it was new. Raises :class:`InvalidSignature` for a bad or foreign one."""
        signer = recover(self.digest, attestation.signature)
        if signer is None or signer.lower() != attestation.signer.lower():
            raise InvalidSignature(f"signature does not recover to {attestation.signer}")
        if signer.lower() not in self.allowed:
            raise InvalidSignature(f"{signer} is not an attester of this round")
        if signer.lower() in self._votes:
            return False
        self._votes[signer.lower()] = attestation.signature
        return True

    def __len__(self) -> int:
        return len(self._votes)

    def signatures(self) -> list[bytes]:
        return [self._votes[k] for k in sorted(self._votes, key=lambda a: int(a, 16))]


__all__ = [
    "Attestation",
    "AttestationSet",
    "BLOCK_HEADER_TYPE",
    "BLOCK_HEADER_TYPEHASH",
    "BlockHeader",
    "CONSORTIUM_SLIP_TYPE",
    "ConsortiumBlock",
    "ConsortiumSlip",
    "GENESIS_HASH",
    "ItemProof",
    "MAX_ITEMS_PER_SLIP",
    "MAX_SLIPS_PER_BLOCK",
    "SUMMARY_ITEM_TYPE",
    "SummaryItem",
    "attest",
    "build_block",
    "decode_body",
    "encode_body",
    "item_leaf",
    "ordered_signatures",
    "patients_hash",
    "reject",
    "sign",
    "verify_block",
]
