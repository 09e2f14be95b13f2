"""The anchoring worker: the proposer anchors at once and tracks the head itself; a backup only after a grace
period without progress; each body is published once (pure: a fake chain and a fake clock)."""

from __future__ import annotations

from mbds_py.errors import MBDSError
from mbds_py.pbft.types import Block, BlockHeader, CertifiedBlock, QuorumCertificate
from mbds_py.private.anchor import Anchorer


def block(height: int, view: int) -> CertifiedBlock:
    header = BlockHeader(height, height, bytes(32), 1000 * height, bytes(20), bytes(32), b"cid")
    return CertifiedBlock(Block(header, ()), QuorumCertificate(header, view, ()))


class Chain:
    """SlipLedger's anchoring rule: height h goes on top of h - 1, a replayed header is refused."""

    def __init__(self):
        self.height = 0
        self.by: dict[int, int] = {}
        self.head_reads = 0
        self.txs: list[list[int]] = []  # heights anchored by each transaction

    def head(self) -> int:
        self.head_reads += 1
        return self.height

    def committer(self, who: int):
        def commit(b: CertifiedBlock) -> str:
            h = b.block.header.height
            if h != self.height + 1:
                raise MBDSError(f"OutOfOrder({h})")
            self.height = h
            self.by[h] = who
            self.txs.append([h])
            return f"tx{h}"
        return commit

    def batch_committer(self, who: int):
        """commitBlocks: consecutive headers from head + 1, all or nothing."""
        def commit_many(blocks: list[CertifiedBlock]) -> str:
            heights = [b.block.header.height for b in blocks]
            if heights != list(range(self.height + 1, self.height + 1 + len(heights))):
                raise MBDSError(f"OutOfOrder({heights})")
            self.height = heights[-1]
            self.by.update({h: who for h in heights})
            self.txs.append(heights)
            return f"tx{heights[0]}-{heights[-1]}"
        return commit_many


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def anchorer(chain: Chain, clock: Clock, index: int, published: list, *, batch: int = 0) -> Anchorer:
    """``batch``: anchor up to that many ready blocks per commitBlocks (0: one transaction per block)."""
    a = Anchorer(index, 4, head=chain.head, commit=chain.committer(index),
                 publish=lambda b: published.append((index, b.block.header.height)), grace=5.0, clock=clock,
                 retry_pause=0.0, commit_many=chain.batch_committer(index) if batch else None,
                 max_batch=batch or 8)
    a._refresh_head()  # what run() does first
    return a


def feed(a: Anchorer, *blocks: CertifiedBlock) -> None:
    """What run() does with queued blocks: hold them, anchor our own at once."""
    for b in blocks:
        a._take(b)
    mine = [h for h, b in a._held.items() if a.proposer(b) == a.index]
    if mine:
        a._anchor_up_to(max(mine))


def test_the_proposer_anchors_each_block_once_without_reading_the_head_per_block():
    chain, clock, published = Chain(), Clock(), []
    primary, backups = anchorer(chain, clock, 0, published), [anchorer(chain, clock, i, published) for i in (1, 2, 3)]
    reads = chain.head_reads
    for h in range(1, 21):
        for a in [primary, *backups]:
            feed(a, block(h, 0))
    assert chain.height == 20 and set(chain.by.values()) == {0}
    assert chain.head_reads == reads  # the proposer tracked the anchored height itself
    assert published == [(0, h) for h in range(1, 21)]  # each body once, by the proposer
    assert all(len(b._held) == 20 for b in backups)  # backups hold them until a grace period ends
    clock.now += 5.0
    for b in backups:
        b._on_grace_over()  # progress seen: one head() each, nothing re-sent
    assert chain.by == {h: 0 for h in range(1, 21)} and all(not b._held for b in backups)
    assert len(published) == 20


def test_a_backup_takes_over_after_the_grace_period_without_progress():
    chain, clock, published = Chain(), Clock(), []
    backup = anchorer(chain, clock, 1, published)
    feed(backup, block(1, 0), block(2, 0))  # the proposer (replica 0) crashed before anchoring
    clock.now += 4.9
    assert backup._held and chain.height == 0  # still within the grace period: not even a head() read
    clock.now += 0.1
    backup._on_grace_over()
    assert chain.by == {1: 1, 2: 1} and published == [(1, 1), (1, 2)]
    assert backup.stats.takeovers == 1


def test_the_grace_period_is_not_cut_short_by_the_next_block():
    """The old loop ended a backup's grace period as soon as the next block was queued."""
    chain, clock, published = Chain(), Clock(), []
    backup = anchorer(chain, clock, 2, published)
    for h in range(1, 6):
        feed(backup, block(h, 0))
        clock.now += 0.5
    assert chain.height == 0 and published == []


def test_a_new_proposer_first_anchors_the_blocks_its_predecessor_left():
    chain, clock, published = Chain(), Clock(), []
    new_primary = anchorer(chain, clock, 1, published)
    feed(new_primary, block(1, 0), block(2, 0))  # proposed in view 0 by replica 0, which then died
    assert chain.height == 0
    feed(new_primary, block(3, 1))  # view 1: replica 1 proposes
    assert chain.by == {1: 1, 2: 1, 3: 1}


def test_a_block_anchored_by_another_replica_meanwhile_is_not_sent_again():
    chain, clock, published = Chain(), Clock(), []
    slow = anchorer(chain, clock, 0, published)
    other = chain.committer(3)
    other(block(1, 0))  # replica 3 anchored block 1 after its grace period
    feed(slow, block(1, 0), block(2, 0))
    assert chain.by == {1: 3, 2: 0}


def test_blocks_waiting_together_go_in_one_commit_blocks_and_a_single_one_in_commit_block():
    chain, clock, published = Chain(), Clock(), []
    primary = anchorer(chain, clock, 0, published, batch=4)
    feed(primary, block(1, 0))
    assert chain.txs == [[1]]  # one block ready: commitBlock
    feed(primary, *(block(h, 0) for h in range(2, 12)))  # anchoring fell behind: 10 ready at once
    assert chain.txs == [[1], [2, 3, 4, 5], [6, 7, 8, 9], [10, 11]]  # at most max_batch per transaction
    assert chain.height == 11 and not primary._held
    assert primary.stats.anchored == 11 and primary.stats.batches == 3
    assert published == [(0, h) for h in range(1, 12)]


def test_a_batch_stops_at_a_gap_and_the_rest_waits_for_its_proposer():
    chain, clock, published = Chain(), Clock(), []
    a = anchorer(chain, clock, 1, published, batch=8)
    feed(a, block(1, 1), block(2, 1), block(4, 1))  # 3 not delivered here yet
    assert chain.txs == [[1, 2]] and 4 in a._held
    feed(a, block(3, 0))  # view 0's block, held below ours: anchored with 4 in one transaction
    feed(a, block(5, 1))
    assert chain.txs == [[1, 2], [3, 4], [5]]


def test_a_batch_partly_anchored_by_another_replica_sends_only_the_rest():
    chain, clock, published = Chain(), Clock(), []
    slow = anchorer(chain, clock, 0, published, batch=8)
    for a in range(2):
        slow._take(block(a + 1, 0))
    other = chain.committer(3)
    for h in (1, 2):
        other(block(h, 0))  # a backup took over meanwhile
    feed(slow, block(3, 0), block(4, 0))  # the batch 1-4 is refused; the head is 2: 3-4 go on top
    assert chain.by == {1: 3, 2: 3, 3: 0, 4: 0} and chain.txs[-1] == [3, 4]
    assert not slow._held


def test_without_commit_many_every_block_is_its_own_transaction():
    chain, clock, published = Chain(), Clock(), []
    a = anchorer(chain, clock, 0, published)
    feed(a, *(block(h, 0) for h in range(1, 4)))
    assert chain.txs == [[1], [2], [3]]
