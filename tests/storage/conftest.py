"""Fixtures for storage tests: in-thread nodes and node processes (see _storage_support)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _storage_support import NodeFactory

from mbds_py.storage.client import KuboClient
from mbds_py.storage.node import StorageServer, serve


@pytest.fixture
def node_factory(tmp_path: Path) -> Iterator[NodeFactory]:
    factory = NodeFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture
def thread_node(tmp_path: Path) -> Iterator[StorageServer]:
    """A node served from a thread of the test process (fast; same code as the process)."""
    server = serve("127.0.0.1", 0, tmp_path / "node")
    try:
        yield server
    finally:
        server.shutdown()


@pytest.fixture
def client(thread_node: StorageServer) -> Iterator[KuboClient]:
    with KuboClient(thread_node.url, timeout=10) as kubo:
        yield kubo
