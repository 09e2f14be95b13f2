"""Publishing block bodies and anchoring certified headers in ``SlipLedger`` (a replica's worker thread).

The proposer of a block (``qc.view mod n``) publishes its body and anchors it at
once; it keeps the anchored height itself, so it asks the chain for ``head()``
only at start and after a failed submission.  Every other replica holds the
block and anchors (publishing the body first) only when the grace period has
passed without anchoring progress — one ``head()`` per grace period while it
holds blocks.  So each body is published and each header anchored by one
replica in normal operation; a crashed or slow proposer is replaced after the
grace period.  A proposer anchors any earlier blocks it holds first (after a
view change the old proposer's last blocks may not be anchored yet).  When more
than one consecutive block is ready (anchoring fell behind), up to ``max_batch``
of them go in one ``commitBlocks`` transaction (``commit_many``); a single block
keeps ``commitBlock``.
Blocking I/O (web3, HTTP): this runs in its own thread, fed by :meth:`offer`.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import MBDSError
from ..pbft.types import CertifiedBlock

log = logging.getLogger("mbds.anchor")


@dataclass
class AnchorStats:
    anchored: int = 0  # headers this replica committed to SlipLedger
    published: int = 0  # bodies this replica published
    head_reads: int = 0  # head() calls
    takeovers: int = 0  # grace periods that ended without progress
    batches: int = 0  # commitBlocks transactions (several headers each)


class Anchorer:
    """Anchors delivered blocks in height order (see the module docstring).

    ``head()`` returns the anchored height on chain; ``commit(block)`` anchors one
    certified header (raising :class:`MBDSError` on a revert) and returns the
    transaction hash; ``commit_many(blocks)`` anchors consecutive ones in one
    transaction, all or nothing (None: one at a time); ``publish(block)`` stores its
    body.  ``clock`` is monotonic.
    """

    def __init__(self, index: int, n: int, *, head: Callable[[], int], commit: Callable[[CertifiedBlock], str],
                 publish: Callable[[CertifiedBlock], None], grace: float, anchor: bool = True,
                 clock: Callable[[], float] = time.monotonic, retry_pause: float = 0.2,
                 commit_many: Callable[[list[CertifiedBlock]], str] | None = None, max_batch: int = 8):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.index = index
        self.n = n
        self._head = head
        self._commit = commit
        self._commit_many = commit_many
        self.max_batch = max_batch
        self._publish = publish
        self.grace = grace
        self.anchor = anchor
        self.clock = clock
        self.retry_pause = retry_pause
        self.stats = AnchorStats()
        self.anchored_height = -1  # unknown until the first head() succeeds
        self._queue: "queue.Queue[CertifiedBlock | None]" = queue.Queue()
        self._held: dict[int, CertifiedBlock] = {}  # delivered, not known anchored, by height
        self._published: set[int] = set()
        self._since = 0.0  # start of the current grace period

    def offer(self, block: CertifiedBlock) -> None:
        """A delivered block (from any thread)."""
        self._queue.put(block)

    def stop(self) -> None:
        self._queue.put(None)

    def proposer(self, block: CertifiedBlock) -> int:
        return block.qc.view % self.n

    # -- the worker ----------------------------------------------------------------------

    def run(self) -> None:
        if self.anchor:
            self._refresh_head()
        while True:
            timeout = None
            if self._held:
                timeout = max(0.0, self._since + self.grace - self.clock())
            try:
                block = self._queue.get(timeout=timeout)
            except queue.Empty:
                block = False  # the grace period ended
            if block is None:
                return
            if block is not False:
                self._take(block)
                while True:  # whatever else is queued, before deciding anything
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        return
                    self._take(more)
                mine = [h for h, b in self._held.items() if self.proposer(b) == self.index]
                if mine:
                    self._anchor_up_to(max(mine))
            if self._held and self.clock() - self._since >= self.grace:
                self._on_grace_over()

    def _take(self, block: CertifiedBlock) -> None:
        height = block.block.header.height
        if height <= self.anchored_height:
            return
        if not self._held:
            self._since = self.clock()
        self._held[height] = block

    def _on_grace_over(self) -> None:
        """No anchoring of our own for a grace period: look at the chain; take over if it did not move."""
        if not self.anchor:  # nothing to watch: the proposer published the bodies
            self._held.clear()
            return
        before = self.anchored_height
        if not self._refresh_head():
            self._since = self.clock()
            return
        if self.anchored_height > before:
            self._since = self.clock()  # someone is anchoring: wait another grace period
            return
        if self._held:
            self.stats.takeovers += 1
            log.info("replica %d: no anchoring progress for %.1fs, anchoring up to %d itself", self.index,
                     self.grace, max(self._held))
            self._anchor_up_to(max(self._held))
        self._since = self.clock()

    def _refresh_head(self) -> bool:
        try:
            self.stats.head_reads += 1
            height = self._head()
        except Exception as exc:  # noqa: BLE001 - chain down: retry later, never crash the replica
            log.warning("replica %d: reading the anchored head failed: %s", self.index, exc)
            return False
        self.anchored_height = max(self.anchored_height, height)
        for h in [h for h in self._held if h <= self.anchored_height]:
            del self._held[h]
        return True

    def _anchor_up_to(self, top: int) -> None:
        """Publish and anchor every held block up to ``top``, in height order; consecutive ones in batches."""
        if self.anchored_height < 0 and not self._refresh_head():
            return
        ready: list[CertifiedBlock] = []  # consecutive, from anchored_height + 1
        for height in sorted(h for h in self._held if h <= top):
            block = self._held.get(height)
            if block is None:
                continue  # anchored by someone else meanwhile (seen on a head() refresh)
            if height not in self._published:
                self._publish(block)
                self.stats.published += 1
                self._published.add(height)
            if not self.anchor:
                del self._held[height]
                self.anchored_height = max(self.anchored_height, height)
                continue
            if ready and (height != ready[-1].block.header.height + 1 or len(ready) >= self.max_batch):
                if not self._flush(ready):
                    return
                ready = []
            if not ready:
                if height > self.anchored_height + 1:  # a block below is not anchored yet and not held here
                    self._refresh_head()
                    if height > self.anchored_height + 1:
                        return  # its proposer anchors it, or a grace period ends
                if height <= self.anchored_height:
                    self._held.pop(height, None)
                    continue
            ready.append(block)
        if ready and not self._flush(ready):
            return
        if len(self._published) > 4096:
            self._published = {h for h in self._published if h > self.anchored_height}

    def _flush(self, blocks: list[CertifiedBlock]) -> bool:
        """Anchor consecutive ``blocks`` (the first at anchored_height + 1): one transaction for several."""
        if len(blocks) == 1 or self._commit_many is None:
            return all(self._commit_one(b) for b in blocks)
        return self._commit_batch(blocks)

    def _commit_batch(self, blocks: list[CertifiedBlock]) -> bool:
        first, last = blocks[0].block.header.height, blocks[-1].block.header.height
        for attempt in range(5):
            try:
                self._commit_many(blocks)
            except MBDSError as exc:
                if self._refresh_head() and self.anchored_height >= first:
                    # another replica anchored some of them first: the rest (if any) on top of its head
                    rest = [b for b in blocks if b.block.header.height > self.anchored_height]
                    return not rest or self._flush(rest)
                log.warning("replica %d: anchoring blocks %d-%d failed (attempt %d): %s", self.index, first, last,
                            attempt + 1, exc)
            except Exception as exc:  # noqa: BLE001 - chain down: retry, never crash the replica
                log.warning("replica %d: anchoring blocks %d-%d: chain unreachable (%s)", self.index, first, last,
                            exc)
            else:
                self.stats.anchored += len(blocks)
                self.stats.batches += 1
                self.anchored_height = max(self.anchored_height, last)
                for b in blocks:
                    self._held.pop(b.block.header.height, None)
                self._since = self.clock()
                return True
            time.sleep(self.retry_pause * (attempt + 1))
        return False

    def _commit_one(self, block: CertifiedBlock) -> bool:
        height = block.block.header.height
        for attempt in range(5):
            try:
                self._commit(block)
            except MBDSError as exc:
                if self._refresh_head() and self.anchored_height >= height:
                    return True  # another replica anchored it first
                log.warning("replica %d: anchoring block %d failed (attempt %d): %s", self.index, height,
                            attempt + 1, exc)
            except Exception as exc:  # noqa: BLE001 - chain down: retry, never crash the replica
                log.warning("replica %d: anchoring block %d: chain unreachable (%s)", self.index, height, exc)
            else:
                self.stats.anchored += 1
                self.anchored_height = max(self.anchored_height, height)
                self._held.pop(height, None)
                self._since = self.clock()
                return True
            time.sleep(self.retry_pause * (attempt + 1))
        return False
