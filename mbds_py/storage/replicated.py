"""Replicated storage over several :class:`~mbds_py.storage.client.BlobStore` nodes.

The paper leaves "several storage providers" as future work; here every blob
goes to ``replicas`` nodes.  Placement is rendezvous hashing of the CID over
the node list, so writers and readers agree on which nodes to try first
without any shared state, and a node going down only moves its own blobs.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

from mbds_py.storage import unixfs
from mbds_py.storage.client import BlobStore
from mbds_py.storage.errors import (
    IntegrityError,
    NodeUnavailableError,
    NotFoundError,
    ReplicationError,
    StorageError,
)

__all__ = ["ReplicatedStore"]

log = logging.getLogger("mbds.storage.replicated")


def _describe(failures: dict[str, BaseException]) -> str:
    return "; ".join(f"{name}: {exc}" for name, exc in failures.items())


class ReplicatedStore:
    """A :class:`BlobStore` that writes each blob to ``replicas`` of ``stores`` and reads from any.

    - ``add`` stores on the first ``replicas`` nodes of the CID's placement
      order that accept it, moving on past failed nodes; if fewer accept, the
      copies that were made are unpinned and :class:`ReplicationError` is raised.
    - ``cat`` tries nodes in placement order and returns the first verified
      copy; tampered or missing copies elsewhere do not matter.
    - ``pin`` / ``unpin`` act on every reachable node.
    """

    def __init__(self, stores: Sequence[BlobStore], replicas: int = 2, *,
                 names: Sequence[str] | None = None):
        if replicas < 1:
            raise ValueError(f"replicas must be at least 1, got {replicas}")
        if len(stores) < replicas:
            raise ValueError(f"{replicas} replicas need at least {replicas} stores, got {len(stores)}")
        if names is not None and len(names) != len(stores):
            raise ValueError("names must name every store")
        self.stores = tuple(stores)
        self.replicas = replicas
        self.names = tuple(names) if names is not None else tuple(
            getattr(store, "url", None) or f"store[{i}]" for i, store in enumerate(stores))

    def __repr__(self) -> str:
        return f"ReplicatedStore({list(self.names)!r}, replicas={self.replicas})"

    def placement(self, cid: str) -> list[int]:
        """Store indexes in the order this CID is written to and read from."""
        key = str(unixfs.parse_cid(cid).multihash.hex())
        return sorted(range(len(self.stores)),
                      key=lambda i: hashlib.sha256(f"{key}|{self.names[i]}".encode()).digest())

    # -- BlobStore ---------------------------------------------------------------------------

    def add(self, data: bytes) -> str:
        """Store ``data`` on ``replicas`` nodes; return its CID."""
        cid = unixfs.cid_of(data)
        accepted: list[int] = []
        failures: dict[str, BaseException] = {}
        for i in self.placement(cid):
            if len(accepted) == self.replicas:
                break
            try:
                returned = self.stores[i].add(data)
            except (StorageError, IntegrityError) as exc:
                failures[self.names[i]] = exc
                log.warning("replica %s refused %s: %s", self.names[i], cid, exc)
                continue
            if returned != cid:
                failures[self.names[i]] = IntegrityError(f"{self.names[i]} returned {returned} for {cid}")
                self._quiet_unpin(i, returned)
                continue
            accepted.append(i)
        if len(accepted) < self.replicas:
            for i in accepted:
                self._quiet_unpin(i, cid)
            raise ReplicationError(
                f"{cid}: only {len(accepted)} of the {self.replicas} required storage nodes accepted the blob, "
                f"so it was not kept ({_describe(failures)}); bring nodes back or lower replicas",
                cid=cid, accepted=len(accepted), required=self.replicas, failures=failures)
        return cid

    def cat(self, cid: str) -> bytes:
        """The first verified copy of ``cid`` among the nodes, in placement order."""
        failures: dict[str, BaseException] = {}
        for i in self.placement(cid):
            try:
                return self.stores[i].cat(cid)
            except (StorageError, IntegrityError) as exc:
                failures[self.names[i]] = exc
                if not isinstance(exc, NotFoundError):
                    log.warning("replica %s could not serve %s: %s", self.names[i], cid, exc)
        integrity = [exc for exc in failures.values() if isinstance(exc, IntegrityError)]
        missing = [exc for exc in failures.values() if isinstance(exc, NotFoundError)]
        if integrity:
            raise IntegrityError(f"{cid}: no intact copy on any storage node ({_describe(failures)})")
        if missing and len(missing) + self._count_unavailable(failures) == len(failures):
            raise NotFoundError(f"{cid} is not stored on any reachable storage node ({_describe(failures)})")
        raise StorageError(f"{cid}: no storage node could serve it ({_describe(failures)})")

    def pin(self, cid: str) -> None:
        """Pin on every node holding ``cid``; :class:`ReplicationError` if fewer than ``replicas``."""
        failures: dict[str, BaseException] = {}
        pinned = 0
        for i in self.placement(cid):
            try:
                self.stores[i].pin(cid)
                pinned += 1
            except (StorageError, IntegrityError) as exc:
                failures[self.names[i]] = exc
        if pinned == 0 and all(isinstance(exc, NotFoundError) for exc in failures.values()):
            raise NotFoundError(f"{cid} is not stored on any storage node ({_describe(failures)})")
        if pinned < self.replicas:
            raise ReplicationError(
                f"{cid}: pinned on {pinned} storage nodes, {self.replicas} required ({_describe(failures)})",
                cid=cid, accepted=pinned, required=self.replicas, failures=failures)

    def unpin(self, cid: str) -> None:
        """Unpin on every node; :class:`StorageError` if a node could not be reached (its pin may remain)."""
        failures: dict[str, BaseException] = {}
        for i in range(len(self.stores)):
            try:
                self.stores[i].unpin(cid)
            except (StorageError, IntegrityError) as exc:
                failures[self.names[i]] = exc
        if failures:
            raise StorageError(f"{cid}: could not unpin on every storage node, retry later "
                               f"({_describe(failures)})")

    # -- internals ------------------------------------------------------------------------------

    @staticmethod
    def _count_unavailable(failures: dict[str, BaseException]) -> int:
        return sum(isinstance(exc, NodeUnavailableError) for exc in failures.values())

    def _quiet_unpin(self, index: int, cid: str) -> None:
        try:
            self.stores[index].unpin(cid)
        except (StorageError, IntegrityError, ValueError) as exc:
            log.warning("could not unpin partial write %s on %s: %s", cid, self.names[index], exc)
