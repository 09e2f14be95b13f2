"""The auditor's cross-chain check, one private block at a time.

An ATN attests a consortium block only if every summary item in it is backed by
a slip its private chain committed.  Checking each item on its own (fetch the
slip's receipt, ``eth_call`` ``verifySlip``, parse the slip) costs milliseconds
per item per ATN; instead the first item of a private block proves that block:

1. one receipt from any replica of the chain (its header and one Merkle proof);
2. one ``verifySlip`` call: the header is the one anchored in ``SlipLedger`` at
   that height (certified by a quorum of its validators) and the slip is in it;
3. the whole body, fetched once by the header's CID from storage, must hash to
   that CID and its slips to the header's Merkle root;

after which every item of that block is checked locally against its slip
(patient, HMI hash, encrypted keywords).  Verified blocks are kept (bounded),
so the items of one private block spread over several consortium blocks cost
nothing more.  Without storage, or when a body cannot be fetched, an item falls
back to its own receipt and ``verifySlip`` call.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import requests

from ..errors import MBDSError
from ..pbft.merkle import merkle_root
from ..pbft.types import SlipEnvelope, slip_leaf
from .blocks import SummaryItem

log = logging.getLogger("mbds.consortium.audit")

Summary = tuple[bytes, bytes, tuple[bytes, ...]]  # (patient ID, HMI hash, encrypted keywords)


@dataclass(frozen=True)
class PrivateChainRef:
    """How an auditor reaches a private chain to check an item."""

    chain_id: int
    rpc_url: str
    slip_ledger: str
    api_urls: tuple[str, ...]


def summary_of(payload: bytes) -> Summary:
    """What a summary item must repeat of its slip (read from the slip's framing; no point parsed)."""
    from ..private.slip import slip_summary

    return slip_summary(payload)


def body_summaries(header: Any, slips: tuple[SlipEnvelope, ...]) -> dict[bytes, Summary] | None:
    """The summaries of a private block's body, or None when the body is not the header's (CID or Merkle root)."""
    from ..private.body import body_cid_bytes

    if not slips or body_cid_bytes(slips) != header.body_cid:
        return None
    if merkle_root([slip_leaf(s) for s in slips]) != header.merkle_root:
        return None
    out: dict[bytes, Summary] = {}
    for s in slips:
        try:
            out[s.slip_id] = summary_of(s.payload)
        except MBDSError:
            continue  # a slip that does not parse backs no item
    return out


class ItemChecker:
    """Callable per summary item (``verify_block``'s ``check_item``); see the module docstring."""

    def __init__(self, chains: tuple[PrivateChainRef, ...], blob_store: Any = None, *, max_blocks: int = 1024,
                 workers: int = 8):
        from ..chain.client import ChainClient
        from ..chain.slip_ledger import SlipLedgerAgent

        self.chains = {c.chain_id: c for c in chains}
        self.ledgers = {c.chain_id: SlipLedgerAgent(ChainClient(c.rpc_url, name=f"chain-{c.chain_id}"), c.slip_ledger)
                        for c in chains}
        self.blob_store = blob_store
        self.session = requests.Session()
        self.max_blocks = max_blocks
        self.stats = {"blocks_verified": 0, "receipts_fetched": 0, "items_checked": 0}
        self._blocks: OrderedDict[tuple[int, int], dict[bytes, Summary]] = OrderedDict()
        self._ok: set[bytes] = set()
        self._lock = threading.Lock()
        self._loading: dict[tuple[int, int], threading.Lock] = {}
        self._heads: dict[int, int] = {}  # chain ID -> highest anchored height seen (only grows)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="audit")

    def prefetch(self, items: Iterable[SummaryItem]) -> None:
        """Prove the private blocks behind ``items`` concurrently (one item of each block not yet proven)."""
        first: dict[tuple[int, int], SummaryItem] = {}
        with self._lock:
            for item in items:
                key = (item.chain_id, item.block_height)
                if key not in self._blocks and key not in first and item.chain_id in self.chains:
                    first[key] = item
        for fut in [self._pool.submit(self._block, item) for item in first.values()]:
            fut.result()

    def __call__(self, item: SummaryItem) -> bool:
        with self._lock:
            if item.struct_hash in self._ok:
                return True
        if item.chain_id not in self.chains:
            return False
        if not self._anchored(item.chain_id, item.block_height):
            return False  # no item of a block the ledger does not hold yet can be proven: one call, not four
        block = self._block(item)
        if block is not None:
            ok = block.get(item.slip_id) == (item.patient_id, item.hmi_hash, item.keywords)
        else:
            ok = self._check_alone(item)
        with self._lock:
            self.stats["items_checked"] += 1
            if ok:
                self._ok.add(item.struct_hash)
        return ok

    def _anchored(self, chain_id: int, height: int) -> bool:
        """Whether ``SlipLedger`` holds a header at ``height`` (the head is read again only above the last seen)."""
        with self._lock:
            if height <= self._heads.get(chain_id, 0):
                return True
        try:
            head = self.ledgers[chain_id].head()[0]
        except MBDSError:
            return True  # the chain is not answering: the proof itself will say
        with self._lock:
            self._heads[chain_id] = max(head, self._heads.get(chain_id, 0))
        return height <= head

    # -- one block --------------------------------------------------------------------------------

    def _block(self, item: SummaryItem) -> dict[bytes, Summary] | None:
        """The proven summaries of ``item``'s private block, or None (no storage, body unavailable, not proven)."""
        if self.blob_store is None:
            return None
        key = (item.chain_id, item.block_height)
        with self._lock:
            if key in self._blocks:
                self._blocks.move_to_end(key)
                return self._blocks[key]
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:  # one load per block, however many items ask at once
            with self._lock:
                if key in self._blocks:
                    return self._blocks[key]
            summaries = self._load(item)
            with self._lock:
                self._loading.pop(key, None)
                if summaries is not None:
                    self._blocks[key] = summaries
                    while len(self._blocks) > self.max_blocks:
                        self._blocks.popitem(last=False)
            return summaries

    def _load(self, item: SummaryItem) -> dict[bytes, Summary] | None:
        from ..private.body import cid_text, decode_body

        receipt = self._receipt(item)
        if receipt is None or receipt.height != item.block_height or not self._proven(item.chain_id, receipt):
            return None
        try:
            slips = decode_body(self.blob_store.cat(cid_text(receipt.header.body_cid)))
        except MBDSError as exc:
            log.warning("body of block %d of chain %d unavailable (%s): checking its items one by one",
                        receipt.height, item.chain_id, exc)
            return None
        summaries = body_summaries(receipt.header, slips)
        if summaries is None:
            log.warning("body of block %d of chain %d does not match its anchored header", receipt.height,
                        item.chain_id)
            return None
        with self._lock:
            self.stats["blocks_verified"] += 1
        return summaries

    # -- one item -----------------------------------------------------------------------------------

    def _check_alone(self, item: SummaryItem) -> bool:
        receipt = self._receipt(item)
        if receipt is None or receipt.height != item.block_height or not self._proven(item.chain_id, receipt):
            return False
        try:
            return summary_of(receipt.payload) == (item.patient_id, item.hmi_hash, item.keywords)
        except MBDSError:
            return False

    def _receipt(self, item: SummaryItem) -> Any:
        """The slip's inclusion receipt from any replica of its chain (None if none has it)."""
        from ..private.client import Receipt

        with self._lock:
            self.stats["receipts_fetched"] += 1
        for url in self.chains[item.chain_id].api_urls:
            try:
                resp = self.session.get(f"{url}/v1/slips/0x{item.slip_id.hex()}/receipt", timeout=5)
            except requests.RequestException:
                continue
            if resp.status_code == 200:
                try:
                    return Receipt.from_json(resp.json())
                except (ValueError, KeyError, TypeError):
                    continue  # a replica answering garbage: ask the next
            if resp.status_code == 404:
                return None
        return None

    def _proven(self, chain_id: int, receipt: Any) -> bool:
        """The receipt's header is the one anchored at its height and its slip is in it (one ``eth_call``)."""
        try:
            return bool(self.ledgers[chain_id].verify_slip(receipt.header, receipt.proof, receipt.envelope))
        except MBDSError:
            return False
