"""Durable replica state: the :class:`ReplicaStore` protocol and two implementations.

The replica writes through the store *before* it sends any message that
depends on the write, so a crash-restart (``Replica.restore``) can never make
it contradict itself:

* the view (and whether a view change is under way) before a VIEW-CHANGE;
* an accepted PRE-PREPARE (with its block) before the PREPARE;
* a prepared certificate before the COMMIT;
* a NEW-VIEW before it is broadcast;
* an executed sequence number (and the applied block with its certificate)
  before the block is delivered;
* a stable checkpoint, after which entries at or below it are collected.

:class:`MemoryStore` keeps immutable objects in dicts (it survives a simulated
crash because the simulation keeps the object).  :class:`SqliteStore` is the
production store: SQLite in WAL mode, one transaction per write — an applied
block, its slips' index (slip ID → height, position) and the executed mark
are one transaction, so a slip is findable exactly when its block is durable.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Iterator, Protocol

from .codec import decode, decode_message, encode, encode_message
from .errors import ReplicaStoreError
from .messages import NewView, PrePrepare, PreparedCert, StableCheckpoint
from .types import CertifiedBlock, Head


@dataclass(frozen=True)
class StoredState:
    """Everything :meth:`ReplicaStore.load` returns (blocks are read separately)."""

    view: int = 0
    active: bool = True
    new_view: NewView | None = None
    stable: StableCheckpoint | None = None
    last_executed: int = 0
    head: Head | None = None
    pre_prepares: tuple[PrePrepare, ...] = ()
    prepared: tuple[PreparedCert, ...] = ()


class ReplicaStore(Protocol):
    """What the replica persists; every ``save_*`` is durable when it returns."""

    def load(self) -> StoredState: ...

    def iter_blocks(self) -> Iterator[CertifiedBlock]:
        """All applied blocks, ascending height."""
        ...

    def blocks_from(self, height: int, limit: int) -> list[CertifiedBlock]: ...

    def save_view(self, view: int, active: bool) -> None:
        """Current view; pre-prepares of lower views are dropped."""
        ...

    def save_new_view(self, new_view: NewView) -> None: ...

    def save_pre_prepare(self, pre_prepare: PrePrepare) -> None:
        """An accepted pre-prepare of the current view, block attached."""
        ...

    def save_prepared(self, cert: PreparedCert) -> None:
        """The latest prepared certificate for ``cert.seq`` (replaces an older view's)."""
        ...

    def save_executed(self, seq: int, head: Head, block: CertifiedBlock | None) -> None:
        """Execution reached ``seq``; ``block`` is the applied block, None for null/orphan."""
        ...

    def save_stable_checkpoint(self, stable: StableCheckpoint) -> None:
        """New stable checkpoint; entries at or below ``stable.seq`` may be collected."""
        ...


class MemoryStore:
    """In-memory :class:`ReplicaStore` for tests and the simulation."""

    def __init__(self) -> None:
        self.view = 0
        self.active = True
        self.new_view: NewView | None = None
        self.stable: StableCheckpoint | None = None
        self.last_executed = 0
        self.head: Head | None = None
        self.pre_prepares: dict[tuple[int, int], PrePrepare] = {}
        self.prepared: dict[int, PreparedCert] = {}
        self.blocks: list[CertifiedBlock] = []  # index = height - first height
        self.writes = 0

    def load(self) -> StoredState:
        return StoredState(
            view=self.view,
            active=self.active,
            new_view=self.new_view,
            stable=self.stable,
            last_executed=self.last_executed,
            head=self.head,
            pre_prepares=tuple(self.pre_prepares[k] for k in sorted(self.pre_prepares)),
            prepared=tuple(self.prepared[k] for k in sorted(self.prepared)),
        )

    def iter_blocks(self) -> Iterator[CertifiedBlock]:
        return iter(list(self.blocks))

    def blocks_from(self, height: int, limit: int) -> list[CertifiedBlock]:
        if not self.blocks:
            return []
        start = height - self.blocks[0].block.header.height
        return self.blocks[max(start, 0) : max(start, 0) + limit] if start < len(self.blocks) else []

    def save_view(self, view: int, active: bool) -> None:
        self.writes += 1
        if view != self.view:
            self.pre_prepares = {k: v for k, v in self.pre_prepares.items() if k[0] >= view}
        self.view, self.active = view, active

    def save_new_view(self, new_view: NewView) -> None:
        self.writes += 1
        self.new_view = new_view

    def save_pre_prepare(self, pre_prepare: PrePrepare) -> None:
        self.writes += 1
        self.pre_prepares[(pre_prepare.view, pre_prepare.seq)] = pre_prepare

    def save_prepared(self, cert: PreparedCert) -> None:
        self.writes += 1
        self.prepared[cert.seq] = cert

    def save_executed(self, seq: int, head: Head, block: CertifiedBlock | None) -> None:
        self.writes += 1
        self.last_executed, self.head = seq, head
        if block is not None:
            self.blocks.append(block)

    def save_stable_checkpoint(self, stable: StableCheckpoint) -> None:
        self.writes += 1
        self.stable = stable
        self.pre_prepares = {k: v for k, v in self.pre_prepares.items() if k[1] > stable.seq}
        self.prepared = {k: v for k, v in self.prepared.items() if k > stable.seq}


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS pre_prepare (view INTEGER NOT NULL, seq INTEGER NOT NULL, data BLOB NOT NULL,
                                        PRIMARY KEY (view, seq));
CREATE TABLE IF NOT EXISTS prepared (seq INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS block (height INTEGER PRIMARY KEY, seq INTEGER NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS slip (slip_id BLOB PRIMARY KEY, height INTEGER NOT NULL, pos INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class _ExecutedMeta:
    seq: int
    head: Head


@dataclass(frozen=True)
class _ViewMeta:
    view: int
    active: bool


class SqliteStore:
    """SQLite (WAL) :class:`ReplicaStore`.

    ``synchronous="NORMAL"`` survives process crashes (the WAL is on disk when a
    transaction commits); use ``"FULL"`` to also survive power loss.
    """

    def __init__(self, path: str, *, synchronous: str = "NORMAL"):
        if synchronous.upper() not in ("NORMAL", "FULL", "EXTRA"):
            raise ValueError("synchronous must be NORMAL, FULL or EXTRA")
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self._db.executescript(_SCHEMA)
            self._index_old_blocks()
        except sqlite3.Error as exc:
            raise ReplicaStoreError(f"cannot open replica store {path}: {exc}") from exc

    def _index_old_blocks(self) -> None:
        """A store written before the slip index: index its blocks once."""
        if self._db.execute("SELECT 1 FROM slip LIMIT 1").fetchone() is not None:
            return
        rows = [(s.slip_id, cb.block.header.height, i) for cb in self.iter_blocks()
                for i, s in enumerate(cb.block.slips)]
        if rows:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT OR IGNORE INTO slip (slip_id, height, pos) VALUES (?, ?, ?)", rows)
            self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()

    # --- helpers ---

    def _write(self, *statements: tuple[str, tuple], many: tuple[str, list[tuple]] | None = None) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            for sql, args in statements:
                self._db.execute(sql, args)
            if many is not None:
                self._db.executemany(*many)
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise ReplicaStoreError(f"replica store write failed: {exc}") from exc

    def _meta(self, key: str) -> bytes | None:
        row = self._db.execute("SELECT v FROM meta WHERE k = ?", (key,)).fetchone()
        return row[0] if row else None

    @staticmethod
    def _put(key: str, value: bytes) -> tuple[str, tuple]:
        return ("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", (key, value))

    # --- ReplicaStore ---

    def load(self) -> StoredState:
        try:
            view_raw = self._meta("view")
            view = decode(_ViewMeta, view_raw) if view_raw else _ViewMeta(0, True)
            nv_raw = self._meta("new_view")
            stable_raw = self._meta("stable")
            exec_raw = self._meta("executed")
            executed = decode(_ExecutedMeta, exec_raw) if exec_raw else None
            pps = tuple(
                decode_message(row[0])
                for row in self._db.execute("SELECT data FROM pre_prepare ORDER BY view, seq")
            )
            certs = tuple(
                decode(PreparedCert, row[0]) for row in self._db.execute("SELECT data FROM prepared ORDER BY seq")
            )
        except sqlite3.Error as exc:
            raise ReplicaStoreError(f"cannot read replica store: {exc}") from exc
        return StoredState(
            view=view.view,
            active=view.active,
            new_view=decode_message(nv_raw) if nv_raw else None,
            stable=decode(StableCheckpoint, stable_raw) if stable_raw else None,
            last_executed=executed.seq if executed else 0,
            head=executed.head if executed else None,
            pre_prepares=pps,
            prepared=certs,
        )

    def iter_blocks(self) -> Iterator[CertifiedBlock]:
        cursor = self._db.execute("SELECT data FROM block ORDER BY height")
        for (data,) in cursor:
            yield decode(CertifiedBlock, data)

    def blocks_from(self, height: int, limit: int) -> list[CertifiedBlock]:
        rows = self._db.execute(
            "SELECT data FROM block WHERE height >= ? ORDER BY height LIMIT ?", (height, limit)
        ).fetchall()
        return [decode(CertifiedBlock, data) for (data,) in rows]

    def save_view(self, view: int, active: bool) -> None:
        self._write(
            self._put("view", encode(_ViewMeta(view, active))),
            ("DELETE FROM pre_prepare WHERE view < ?", (view,)),
        )

    def save_new_view(self, new_view: NewView) -> None:
        self._write(self._put("new_view", encode_message(new_view)))

    def save_pre_prepare(self, pre_prepare: PrePrepare) -> None:
        self._write(
            (
                "INSERT OR REPLACE INTO pre_prepare (view, seq, data) VALUES (?, ?, ?)",
                (pre_prepare.view, pre_prepare.seq, encode_message(pre_prepare)),
            )
        )

    def save_prepared(self, cert: PreparedCert) -> None:
        self._write(("INSERT OR REPLACE INTO prepared (seq, data) VALUES (?, ?)", (cert.seq, encode(cert))))

    def save_executed(self, seq: int, head: Head, block: CertifiedBlock | None) -> None:
        statements = [self._put("executed", encode(_ExecutedMeta(seq, head)))]
        many = None
        if block is not None:
            height = block.block.header.height
            statements.append(
                (
                    "INSERT INTO block (height, seq, data) VALUES (?, ?, ?)",
                    (height, block.block.header.seq, encode(block)),
                )
            )
            many = ("INSERT OR IGNORE INTO slip (slip_id, height, pos) VALUES (?, ?, ?)",
                    [(s.slip_id, height, i) for i, s in enumerate(block.block.slips)])
        self._write(*statements, many=many)

    def save_stable_checkpoint(self, stable: StableCheckpoint) -> None:
        self._write(
            self._put("stable", encode(stable)),
            ("DELETE FROM pre_prepare WHERE seq <= ?", (stable.seq,)),
            ("DELETE FROM prepared WHERE seq <= ?", (stable.seq,)),
        )


__all__ = ["MemoryStore", "ReplicaStore", "SqliteStore", "StoredState"]
