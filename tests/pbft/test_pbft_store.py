"""Durable replica store: SQLite (WAL) round trips, GC, and crash-restart of a replica."""

import sqlite3

import pytest

from conftest import slip
from mbds_py.pbft import Commit, MemoryStore, SqliteStore
from mbds_py.pbft.errors import ReplicaStoreError


class TeeStore:
    """Writes every call to a MemoryStore and a SqliteStore (to compare them)."""

    def __init__(self, path):
        self.memory, self.sqlite = MemoryStore(), SqliteStore(str(path))

    def __getattr__(self, name):
        if name.startswith("save_"):
            def both(*args):
                getattr(self.memory, name)(*args)
                getattr(self.sqlite, name)(*args)
            return both
        return getattr(self.memory, name)


def test_sqlite_store_records_exactly_what_the_memory_store_records(cluster_factory, tmp_path):
    stores = [TeeStore(tmp_path / f"r{i}.db") for i in range(4)]
    c = cluster_factory(max_slips=1, checkpoint_interval=2, window=4, stores=stores)
    c.drop = lambda src, dst, msg: isinstance(msg, Commit) and msg.seq == 6  # leave seq 6 prepared only
    for k in range(6):
        c.submit(slip(k))
    c.r(1).view_change.start(1, c.now)  # a view change in progress on replica 1
    for i, tee in enumerate(stores):
        reopened = SqliteStore(str(tmp_path / f"r{i}.db"))
        assert reopened.load() == tee.memory.load()
        assert list(reopened.iter_blocks()) == tee.memory.blocks
        assert reopened.blocks_from(3, 2) == tee.memory.blocks_from(3, 2)
    state = stores[1].memory.load()
    assert state.view == 1 and not state.active and state.stable.seq == 4
    assert [cert.seq for cert in state.prepared] == [5, 6] and state.last_executed == 5


def test_sqlite_store_runs_in_wal_mode(tmp_path):
    SqliteStore(str(tmp_path / "r.db"))
    mode = sqlite3.connect(str(tmp_path / "r.db")).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_unreadable_store_raises_replica_store_error(tmp_path):
    path = tmp_path / "not-a-db"
    path.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(ReplicaStoreError):
        SqliteStore(str(path))


def test_replica_restarts_from_sqlite_with_its_prepared_and_committed_state(cluster_factory, tmp_path):
    stores = [SqliteStore(str(tmp_path / f"r{i}.db")) for i in range(4)]
    c = cluster_factory(max_slips=1, stores=stores)
    for k in range(3):
        c.submit(slip(k))
    c.drop = lambda src, dst, msg: isinstance(msg, Commit)
    c.submit(slip(3))
    before = c.r(2).state
    c.crash(2)
    stores[2].close()
    c.stores[2] = SqliteStore(str(tmp_path / "r2.db"))  # a new process opens the same file
    restored = c.boot(2).state
    assert (restored.last_executed, restored.head) == (before.last_executed, before.head)
    assert restored.applied_slips == before.applied_slips
    assert restored.slots[4].prepared and restored.prepared_certs == before.prepared_certs
    c.drop = lambda src, dst, msg: False
    c.advance(2.0)
    assert c.heights() == [4, 4, 4, 4] and c.chain(2) == c.chain(0)


def test_the_slip_index_is_written_with_the_block_in_one_transaction(cluster_factory, tmp_path):
    stores = [TeeStore(tmp_path / f"r{i}.db") for i in range(4)]
    c = cluster_factory(max_slips=2, checkpoint_interval=2, window=4, stores=stores)
    for k in range(4):
        c.submit(slip(k))
    db = sqlite3.connect(str(tmp_path / "r0.db"))
    indexed = {row[0]: (row[1], row[2]) for row in db.execute("SELECT slip_id, height, pos FROM slip")}
    expected = {s.slip_id: (b.block.header.height, i) for b in stores[0].memory.blocks
                for i, s in enumerate(b.block.slips)}
    assert indexed == expected and len(expected) == 4
    # a write that fails leaves neither the block nor its index (one transaction)
    sqlite_store = stores[0].sqlite
    top = stores[0].memory.blocks[-1]
    with pytest.raises(ReplicaStoreError):
        sqlite_store.save_executed(top.block.header.seq, stores[0].memory.load().head, top)  # height taken
    assert {row[0] for row in db.execute("SELECT slip_id FROM slip")} == set(expected)


def test_a_store_written_before_the_slip_index_is_indexed_when_opened(cluster_factory, tmp_path):
    stores = [TeeStore(tmp_path / f"r{i}.db") for i in range(4)]
    c = cluster_factory(max_slips=2, checkpoint_interval=2, window=4, stores=stores)
    for k in range(4):
        c.submit(slip(k))
    db = sqlite3.connect(str(tmp_path / "r1.db"), isolation_level=None)
    db.execute("DROP TABLE slip")
    SqliteStore(str(tmp_path / "r1.db"))
    assert db.execute("SELECT COUNT(*) FROM slip").fetchone()[0] == 4
