"""Durable block store and pin set behind the bundled storage node.

Layout of a data directory::

    D/storage.json          format marker ({"format": 1})
    D/repo.lock             held (flock) by the one node using D
    D/blocks/XY/<KEY>.data  one block per file, KEY = base32 multihash (Kubo flatfs style,
                            XY = next-to-last two characters of KEY)
    D/tmp/                  blocks being written; emptied on open
    D/pins.sqlite           recursive pins

Every block is written to ``tmp/``, fsynced, renamed into place and its
directory fsynced, so a block file is either absent or complete.  The blocks
of a file are written children first and the pin is recorded last: a crash
can leave unreferenced blocks, never a pin or a root whose blocks are missing.
Reads verify each block against its multihash (Kubo's ``HashOnRead``) unless
``verify_on_read`` is off.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import logging
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mbds_py.storage import unixfs
from mbds_py.storage.errors import ContentMismatchError, NotFoundError, StorageError
from mbds_py.storage.unixfs import CID, ImportResult

__all__ = ["FORMAT_VERSION", "CatStream", "Repo", "block_file", "pin_key"]

log = logging.getLogger("mbds.storage.repo")

FORMAT_VERSION = 1


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def pin_key(cid: CID) -> str:
    """Canonical text of a CID for the pin set: CIDv0 where one exists."""
    if cid.codec == unixfs.DAG_PB and cid.multihash.startswith(b"\x12\x20"):
        return str(CID.v0(cid.multihash))
    return str(cid)


def block_file(data_dir: str | os.PathLike[str], cid: CID) -> Path:
    """Path of the block file for ``cid`` under ``data_dir`` (the file need not exist)."""
    key = base64.b32encode(cid.multihash).decode("ascii").rstrip("=")
    return Path(data_dir) / "blocks" / key[-3:-1] / f"{key}.data"


def _not_found(cid: CID | str) -> NotFoundError:
    # same wording as Kubo offline, so clients can match either
    return NotFoundError(f"block was not found locally (offline): ipld: could not find {cid}")


@dataclass(frozen=True, slots=True)
class CatStream:
    """A file ready to stream: total content size, bytes in range, and the chunks."""

    filesize: int
    length: int
    chunks: Iterator[memoryview]


class Repo:
    """Blocks on disk plus a pin set; thread-safe; one process per data directory."""

    CAT_CACHE_BYTES = 8 * 1024 * 1024
    """Bytes of blocks a single :meth:`cat` keeps between checking and streaming."""

    def __init__(self, data_dir: str | os.PathLike[str], *, verify_on_read: bool = True):
        self.root = Path(data_dir)
        self.verify_on_read = verify_on_read
        self._blocks = self.root / "blocks"
        self._tmp = self.root / "tmp"
        self._db_lock = threading.Lock()
        self._closed = False
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._lock_fd = self._acquire_lock()
        except StorageError:
            raise
        except OSError as exc:
            raise StorageError(f"cannot open storage data dir {self.root}: {exc}") from exc
        try:
            self._check_format()
            self._blocks.mkdir(exist_ok=True)
            self._tmp.mkdir(exist_ok=True)
            _fsync_dir(self.root)
            for leftover in self._tmp.iterdir():  # partial writes of a crashed run
                leftover.unlink()
            try:
                self._db = sqlite3.connect(self.root / "pins.sqlite", check_same_thread=False,
                                           isolation_level=None)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.execute("CREATE TABLE IF NOT EXISTS pins ("
                                 "cid TEXT PRIMARY KEY, pinned_at REAL NOT NULL)")
            except sqlite3.Error as exc:
                raise StorageError(f"pin database {self.root / 'pins.sqlite'} is unusable: {exc}") from exc
        except BaseException:
            os.close(self._lock_fd)
            raise

    # -- lifecycle -----------------------------------------------------------------------

    def _acquire_lock(self) -> int:
        fd = os.open(self.root / "repo.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise StorageError(
                f"storage data dir {self.root} is in use by another storage node (pid {holder}); "
                "stop it or choose another --data-dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        return fd

    def _check_format(self) -> None:
        marker = self.root / "storage.json"
        if marker.exists():
            try:
                fmt = json.loads(marker.read_text())["format"]
            except (ValueError, KeyError, TypeError) as exc:
                raise StorageError(f"{marker} is unreadable ({exc}); is {self.root} a storage data dir?") from exc
            if fmt != FORMAT_VERSION:
                raise StorageError(f"{self.root} holds storage format {fmt}; this node reads {FORMAT_VERSION}")
            return
        if any(p.name not in ("repo.lock",) for p in self.root.iterdir()):
            raise StorageError(f"{self.root} is not empty and has no storage.json; refusing to use it")
        self._write_atomic(marker, json.dumps({"format": FORMAT_VERSION}).encode(), tmp_dir=self.root)

    def close(self) -> None:
        """Close the pin database and release the data-dir lock (idempotent)."""
        if self._closed:
            return
        self._closed = True
        with self._db_lock:
            self._db.close()
        os.close(self._lock_fd)

    def __enter__(self) -> Repo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- blocks ----------------------------------------------------------------------------

    def block_path(self, cid: CID) -> Path:
        """Where the block with this CID's multihash lives."""
        return block_file(self.root, cid)

    def _write_atomic(self, path: Path, data: bytes, *, tmp_dir: Path | None = None) -> None:
        fd, tmp_name = tempfile.mkstemp(dir=tmp_dir or self._tmp, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_name, path)
        except BaseException:
            try:
                os.unlink(tmp_name)
            except FileNotFoundError:
                pass
            raise
        _fsync_dir(path.parent)

    def has_block(self, cid: CID) -> bool:
        """True if a block file for ``cid`` exists (not verified)."""
        return self.block_path(cid).is_file()

    def put_block(self, block: unixfs.Block) -> None:
        """Store one block durably; a present, intact block is left as is, a corrupt one replaced."""
        if hashlib.sha256(block.data).digest() != block.cid.digest:
            raise ContentMismatchError(f"refusing to store block that does not hash to {block.cid}",
                                       cid=str(block.cid))
        path = self.block_path(block.cid)
        if path.is_file():
            try:
                if self._read_verified(block.cid, path) is not None:
                    return
            except ContentMismatchError:
                log.warning("replacing corrupt block %s", block.cid)
        if not path.parent.is_dir():
            path.parent.mkdir(exist_ok=True)
            _fsync_dir(self._blocks)  # make the new shard directory itself durable
        self._write_atomic(path, block.data)

    def _read_verified(self, cid: CID, path: Path) -> bytes:
        data = path.read_bytes()
        if cid.hash_code != unixfs.SHA2_256:
            raise ContentMismatchError(f"cannot verify {cid}: only sha2-256 is supported", cid=str(cid))
        if hashlib.sha256(data).digest() != cid.digest:
            raise ContentMismatchError(
                f"block in storage has different hash than requested: {cid} is corrupt "
                f"({len(data)} bytes on disk at {path.name}); re-add the content to repair it",
                cid=str(cid))
        return data

    def get_block(self, cid: CID) -> bytes:
        """The bytes of block ``cid``; :class:`NotFoundError` if absent, verified if configured."""
        path = self.block_path(cid)
        try:
            if self.verify_on_read:
                return self._read_verified(cid, path)
            return path.read_bytes()
        except FileNotFoundError:
            raise _not_found(cid) from None

    def dag_blocks(self, cid: CID) -> Iterator[CID]:
        """Every block CID of the file DAG under ``cid``, root first; each is read and checked."""
        stack = [cid]
        while stack:
            current = stack.pop()
            yield current
            if current.codec != unixfs.DAG_PB:
                continue
            node = unixfs.decode_file_node(current, self.get_block(current))
            stack.extend(reversed([child for child, _ in node.children]))

    # -- files -------------------------------------------------------------------------------

    def add(self, data: bytes | memoryview, *, pin: bool = True, only_hash: bool = False) -> ImportResult:
        """Import ``data``; store its blocks (children first) and, if ``pin``, pin the root."""
        result = unixfs.import_bytes(data, keep_blocks=not only_hash)
        if only_hash:
            return result
        for block in result.blocks:  # children before parents, root last
            self.put_block(block)
        if pin:
            self._insert_pin(result.root)
        return ImportResult(result.root, result.size, result.filesize)

    def cat(self, cid: str | CID, *, offset: int = 0, length: int | None = None) -> CatStream:
        """Resolve ``cid`` and check every block in range before any byte is streamed.

        Blocks checked here are kept in memory up to :attr:`CAT_CACHE_BYTES`;
        the rest are read (and verified) again while streaming, so a block
        corrupted in between raises mid-stream rather than going out.
        """
        parsed = unixfs.parse_cid(cid)
        cache: dict[bytes, bytes] = {}
        budget = self.CAT_CACHE_BYTES

        def get(block_cid: CID) -> bytes:
            nonlocal budget
            data = cache.get(block_cid.multihash)
            if data is None:
                data = self.get_block(block_cid)
                if len(data) <= budget:
                    cache[block_cid.multihash] = data
                    budget -= len(data)
            return data

        filesize = unixfs.file_size(get, parsed)
        start = min(offset, filesize)
        stop = filesize if length is None else min(filesize, start + length)
        for _ in unixfs.iter_file(get, parsed, start, stop - start):
            pass  # raises NotFoundError / ContentMismatchError before headers are sent
        return CatStream(filesize, stop - start, unixfs.iter_file(get, parsed, start, stop - start))

    # -- pins ----------------------------------------------------------------------------------

    def _sql(self, statement: str, params: tuple = ()) -> tuple[int, list[tuple]]:
        """Run one statement (autocommit, durable); return ``(rowcount, rows)``."""
        with self._db_lock:
            if self._closed:
                raise StorageError(f"storage repo {self.root} is closed")
            try:
                cursor = self._db.execute(statement, params)
                return cursor.rowcount, cursor.fetchall()
            except sqlite3.Error as exc:
                raise StorageError(f"pin database of {self.root} failed: {exc}") from exc

    def _insert_pin(self, cid: CID) -> None:
        self._sql("INSERT OR IGNORE INTO pins (cid, pinned_at) VALUES (?, ?)", (pin_key(cid), time.time()))

    def pin(self, cid: str | CID) -> CID:
        """Pin ``cid`` recursively; every block of its DAG must be present and intact."""
        parsed = unixfs.parse_cid(cid)
        for _ in self.dag_blocks(parsed):
            pass
        self._insert_pin(parsed)
        return parsed

    def unpin(self, cid: str | CID) -> CID:
        """Remove a recursive pin; :class:`NotFoundError` if ``cid`` is not pinned."""
        parsed = unixfs.parse_cid(cid)
        if self._sql("DELETE FROM pins WHERE cid = ?", (pin_key(parsed),))[0] == 0:
            raise NotFoundError(f"{cid}: not pinned or pinned indirectly")
        return parsed

    def pins(self) -> list[CID]:
        """Recursive pins, oldest first."""
        _, rows = self._sql("SELECT cid FROM pins ORDER BY pinned_at, cid")
        return [unixfs.parse_cid(row[0]) for row in rows]

    def is_pinned(self, cid: str | CID) -> bool:
        """True if ``cid`` (either CID version) is pinned recursively."""
        parsed = unixfs.parse_cid(cid)
        return bool(self._sql("SELECT 1 FROM pins WHERE cid = ?", (pin_key(parsed),))[1])
