"""ReplicatedStore over real node processes: placement, a node down, partial writes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _storage_support import NodeFactory, NodeProcess, corrupt_block, flip_payload_byte, payload

from mbds_py.errors import IntegrityError, NotFoundError, StorageError
from mbds_py.storage.client import BlobStore, KuboClient
from mbds_py.storage.errors import ReplicationError
from mbds_py.storage.replicated import ReplicatedStore
from mbds_py.storage.unixfs import cid_of

pytestmark = pytest.mark.slow

UNKNOWN_CID = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQX"


class Cluster:
    def __init__(self, nodes: list[NodeProcess]):
        self.nodes = nodes
        self.clients = [node.client(timeout=5) for node in nodes]
        self.store = ReplicatedStore(self.clients, replicas=2)

    def holders(self, cid: str) -> list[int]:
        """Indexes of the nodes pinning ``cid`` (asks only the nodes that are up)."""
        return [i for i, (node, kubo) in enumerate(zip(self.nodes, self.clients))
                if node.proc.poll() is None and cid in kubo.pins()]

    def close(self) -> None:
        for kubo in self.clients:
            kubo.close()


@pytest.fixture
def cluster(node_factory: NodeFactory, tmp_path: Path) -> Iterator[Cluster]:
    nodes = [node_factory.start(tmp_path / f"node{i}") for i in range(3)]
    group = Cluster(nodes)
    try:
        yield group
    finally:
        group.close()


def test_replicated_store_is_a_blob_store(cluster: Cluster) -> None:
    assert isinstance(cluster.store, BlobStore)


def test_write_lands_on_exactly_r_nodes_in_placement_order(cluster: Cluster) -> None:
    for seed in range(6):
        cid = cluster.store.add(payload(1024, seed))
        assert cluster.holders(cid) == sorted(cluster.store.placement(cid)[:2])


def test_reads_survive_one_node_down(cluster: Cluster) -> None:
    blobs = {cluster.store.add(payload(2048, seed)): payload(2048, seed) for seed in range(8)}
    cluster.nodes[0].kill()
    for cid, data in blobs.items():
        assert cluster.store.cat(cid) == data


def test_write_with_one_node_down_still_reaches_r_nodes(cluster: Cluster) -> None:
    cluster.nodes[1].kill()
    for seed in range(4):
        cid = cluster.store.add(payload(512, seed))
        assert len(cluster.holders(cid)) == 2
        assert 1 not in cluster.holders(cid)


def test_write_with_too_few_nodes_fails_and_leaves_no_pin(cluster: Cluster) -> None:
    data = payload(700, seed=9)
    cid = cid_of(data)
    survivor = cluster.store.placement(cid)[0]
    for i, node in enumerate(cluster.nodes):
        if i != survivor:
            node.kill()
    with pytest.raises(ReplicationError) as info:
        cluster.store.add(data)
    err = info.value
    assert (err.cid, err.accepted, err.required) == (cid, 1, 2)
    assert cid in str(err) and "only 1 of the 2 required" in str(err)
    assert len(err.failures) == 2
    assert cluster.holders(cid) == []  # the one copy made was unpinned


def test_unknown_cid_on_all_nodes_raises_not_found_naming_it(cluster: Cluster) -> None:
    with pytest.raises(NotFoundError, match=UNKNOWN_CID):
        cluster.store.cat(UNKNOWN_CID)


def test_unknown_cid_with_one_node_down_is_still_not_found(cluster: Cluster) -> None:
    cluster.nodes[2].kill()
    with pytest.raises(NotFoundError, match=UNKNOWN_CID):
        cluster.store.cat(UNKNOWN_CID)


def test_all_nodes_down_is_a_storage_error_not_not_found(cluster: Cluster) -> None:
    for node in cluster.nodes:
        node.kill()
    with pytest.raises(StorageError, match=f"{UNKNOWN_CID}: no storage node could serve it") as info:
        cluster.store.cat(UNKNOWN_CID)
    assert not isinstance(info.value, NotFoundError)
    assert str(info.value).count("is unreachable for cat") == len(cluster.nodes)


def test_tampered_replica_is_skipped_for_an_intact_one(cluster: Cluster) -> None:
    cid = cluster.store.add(b"lab result: negative")
    first = cluster.store.placement(cid)[0]
    corrupt_block(cluster.nodes[first].data_dir, cid, flip_payload_byte)
    assert cluster.store.cat(cid) == b"lab result: negative"


def test_every_replica_tampered_raises_integrity_error(cluster: Cluster) -> None:
    cid = cluster.store.add(b"lab result: positive")
    for i in cluster.holders(cid):
        corrupt_block(cluster.nodes[i].data_dir, cid, flip_payload_byte)
    with pytest.raises(IntegrityError, match=cid):
        cluster.store.cat(cid)


def test_unpin_releases_every_copy_and_pin_restores_r(cluster: Cluster) -> None:
    cid = cluster.store.add(b"consent form")
    cluster.store.unpin(cid)
    assert cluster.holders(cid) == []
    cluster.store.pin(cid)
    assert len(cluster.holders(cid)) == 2


def test_pin_below_r_copies_raises_replication_error(cluster: Cluster) -> None:
    cid = cluster.store.add(b"discharge letter")
    cluster.nodes[cluster.holders(cid)[0]].kill()
    with pytest.raises(ReplicationError, match="pinned on 1 storage nodes, 2 required"):
        cluster.store.pin(cid)


def test_constructor_rejects_more_replicas_than_stores() -> None:
    with pytest.raises(ValueError, match="3 replicas need at least 3 stores"):
        ReplicatedStore([KuboClient("http://127.0.0.1:1"), KuboClient("http://127.0.0.1:2")], replicas=3)
