"""The consortium node's chain follower under concurrency and a failing index write.

The node loop, ``/v1/items`` readers and auditors all call ``follow()`` from their own threads.  Before
followers took turns, two of them applied the same committed blocks at once and the second one's ``BEGIN``
on the shared SQLite connection failed (``cannot start a transaction within a transaction``; seen in the
portal e2e run beside a concurrent suite).  The chain is a test double here only to hold a follower inside
its chain read; the index is the node's real SQLite store.
"""

from __future__ import annotations

import sqlite3
import threading
from types import SimpleNamespace

import pytest

from mbds_py.consortium.blocks import BlockHeader, ConsortiumBlock
from mbds_py.consortium.node import ConsortiumNode

BLOCKS = 3


def header(height: int) -> BlockHeader:
    return BlockHeader(height=height, prev_hash=bytes(32), timestamp=1_700_000_000 + height, slot=height,
                       producer=bytes(32), merkle_root=bytes(32), item_count=0, patients_hash=bytes(32),
                       body_cid=bytes(32))


class SlowChain:
    """``committed_blocks`` of a chain with ``BLOCKS`` committed blocks; the first call waits (bounded) for a
    second caller to arrive at the same time, and the most callers seen inside at once is counted."""

    def __init__(self, wait: float) -> None:
        self.client = SimpleNamespace(w3=SimpleNamespace(eth=SimpleNamespace(block_number=10)))
        self.wait = wait
        self.inside = 0
        self.most_inside = 0
        self.second = threading.Event()
        self.calls = 0
        self._lock = threading.Lock()

    def committed_blocks(self, *, from_block: int, to_block: int) -> list[SimpleNamespace]:
        with self._lock:
            self.calls += 1
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
            first = self.calls == 1
            if not first:
                self.second.set()
        if first:
            self.second.wait(self.wait)  # a follower that may run beside this one has had its chance
        with self._lock:
            self.inside -= 1
        return [SimpleNamespace(header=header(h)) for h in range(1, BLOCKS + 1)]


def bare_node(tmp_path, chain) -> ConsortiumNode:
    """A node with its real index store and ``chain`` as its ConsortiumIndex, without the chain calls of its
    constructor (domain, clock, registries)."""
    node = ConsortiumNode.__new__(ConsortiumNode)
    node._open_index(tmp_path / "index")
    node.index = chain
    node._blob_store = None
    return node


def stored_heights(node: ConsortiumNode) -> list[int]:
    return [h for (h,) in node.db.execute("SELECT height FROM block ORDER BY height")]


def test_concurrent_followers_apply_each_committed_block_once(tmp_path):
    chain = SlowChain(wait=2.0)
    node = bare_node(tmp_path, chain)
    errors: list[BaseException] = []

    def follow() -> None:
        try:
            node.follow()
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=follow) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert chain.most_inside == 1  # followers took turns
    assert chain.calls == 1  # the later one found nothing new
    assert node.stats["committed_seen"] == BLOCKS
    assert stored_heights(node) == list(range(1, BLOCKS + 1))
    assert node.next_evm_block == 11


class FailingWrites:
    """The node's SQLite connection, whose next ``executemany`` fails as a full disk would."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.fail = True

    def execute(self, *args):
        return self.db.execute(*args)

    def executemany(self, *args):
        if self.fail:
            self.fail = False
            raise sqlite3.OperationalError("database or disk is full")
        return self.db.executemany(*args)


def test_a_failed_index_write_is_rolled_back_and_applied_by_the_next_follow(tmp_path):
    node = bare_node(tmp_path, SlowChain(wait=0))
    real = node.db
    first = header(1)
    node.proposals[first.block_hash] = ConsortiumBlock(first, ())  # the node saw block 1 as a proposal
    node.db = FailingWrites(real)
    with pytest.raises(sqlite3.OperationalError, match="disk is full"):
        node.follow()
    assert not real.in_transaction  # no transaction left open for the next BEGIN to trip on
    assert node.next_evm_block == 0  # nothing counted as followed
    assert (node.head, node.stats["committed_seen"]) == (None, 0)  # nor applied in memory
    assert first.block_hash in node.proposals  # kept: its body may be stored nowhere else
    node.follow()
    assert stored_heights(node) == list(range(1, BLOCKS + 1))
    assert node.next_evm_block == 11
    assert node.stats["committed_seen"] == BLOCKS  # each block counted once
    assert node.head == header(BLOCKS) and node.proposals == {}
