"""The design card's IPFS client, ``ipfshttpclient``, against the bundled storage node (issue 17 item 3).

The node runs as its own process, serving a listening socket this test bound and handed down
(``--listen http=FD``): connections queue in the kernel until the node accepts them, so nothing is polled.
``ipfshttpclient.connect()`` refuses the node by version (the client accepts Kubo 0.4.23 ≤ v < 0.8.0 and the
node reports its own version, 0.1.0); ``ipfshttpclient.client.Client`` skips that check and works.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import ipfshttpclient
import pytest
from _storage_support import REPO_ROOT, STOP_DEADLINE_S, payload

from mbds_py import __version__
from mbds_py.listen import bind_listener, bound_port
from mbds_py.storage.client import KuboClient
from mbds_py.storage.unixfs import CHUNK_SIZE, cid_of

# urllib3 2 warns about a keyword ipfshttpclient 0.7 still passes; harmless
pytestmark = pytest.mark.filterwarnings("ignore:The 'strict' parameter:FutureWarning")


@pytest.fixture
def node(tmp_path: Path) -> Iterator[str]:
    """A storage node process; yields its multiaddr."""
    sock = bind_listener("127.0.0.1", 0, what="storage node (test)")
    log = (tmp_path / "node.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "mbds_py.storage.node", "--data-dir", str(tmp_path / "data"),
                             "--listen", f"http={sock.fileno()}"], pass_fds=(sock.fileno(),), stdout=log,
                            stderr=subprocess.STDOUT, cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    port = bound_port(sock)
    sock.close()  # the child holds its own copy
    try:
        yield f"/ip4/127.0.0.1/tcp/{port}/http"
    finally:
        proc.terminate()
        proc.wait(timeout=STOP_DEADLINE_S)
        log.close()


def test_connect_refuses_the_node_by_its_version_bound(node: str) -> None:
    with pytest.raises(ipfshttpclient.exceptions.VersionMismatch, match=rf"'{__version__}' \(not in range"):
        ipfshttpclient.connect(node)


def test_client_stores_and_fetches_through_the_node(node: str) -> None:
    big = payload(3 * CHUNK_SIZE + 5, seed=17)
    with ipfshttpclient.client.Client(node) as client:
        assert client.version()["Agent"].startswith("mbds-storage/")
        small = client.add_bytes(b"a health record, encrypted")
        assert small == cid_of(b"a health record, encrypted")  # Kubo-identical CIDs
        added = client.add(io.BytesIO(big))
        assert added["Hash"] == cid_of(big) and int(added["Size"]) > len(big)
        assert client.cat(small) == b"a health record, encrypted"
        assert client.cat(added["Hash"]) == big
        assert client.get_json(client.add_json({"kind": "test"})) == {"kind": "test"}

        assert {small, added["Hash"]} <= set(client.pin.ls(type="recursive")["Keys"])
        assert client.pin.rm(small)["Pins"] == [small]
        assert small not in client.pin.ls(type="recursive")["Keys"]
        assert client.pin.add(small)["Pins"] == [small]


def test_mbds_client_and_ipfshttpclient_read_each_others_blobs(node: str) -> None:
    port = node.split("/")[4]
    with ipfshttpclient.client.Client(node) as client, KuboClient(f"http://127.0.0.1:{port}", timeout=30) as kubo:
        theirs = client.add_bytes(b"written by ipfshttpclient")
        ours = kubo.add(b"written by MBDS")
        assert kubo.cat(theirs) == b"written by ipfshttpclient"
        assert client.cat(ours) == b"written by MBDS"
