"""KuboClient: round trips, and never returning bytes that do not match their CID."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from _storage_support import corrupt_block, flip_payload_byte, payload

from mbds_py.errors import IntegrityError, NotFoundError, StorageError
from mbds_py.storage.client import BlobStore, KuboClient, normalize_api_url
from mbds_py.storage.errors import BlobTooLargeError, ContentMismatchError, NodeUnavailableError
from mbds_py.storage.node import StorageServer, serve
from mbds_py.storage.unixfs import CHUNK_SIZE, cid_of, import_bytes

UNKNOWN_CID = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQX"


def test_kubo_client_is_a_blob_store(client: KuboClient) -> None:
    assert isinstance(client, BlobStore)


@pytest.mark.parametrize("size", [0, 1, 1024, 10 * 1024, CHUNK_SIZE + 1, 3 * CHUNK_SIZE])
def test_add_then_cat_round_trips(client: KuboClient, size: int) -> None:
    data = payload(size)
    cid = client.add(data)
    assert cid == cid_of(data)
    assert client.cat(cid) == data


def test_pin_unpin_and_pins(client: KuboClient) -> None:
    cid = client.add(b"record")
    assert cid in client.pins()
    client.unpin(cid)
    client.unpin(cid)  # idempotent
    assert cid not in client.pins()
    client.pin(cid)
    assert cid in client.pins()


def test_cat_of_unknown_cid_raises_not_found_naming_it(client: KuboClient) -> None:
    with pytest.raises(NotFoundError, match=UNKNOWN_CID):
        client.cat(UNKNOWN_CID)


def test_offline_client_sends_kubos_global_offline_option(thread_node: StorageServer) -> None:
    with KuboClient(thread_node.url, offline=True) as kubo:
        cid = kubo.add(b"local only")
        assert kubo.cat(cid) == b"local only"
        kubo.pin(cid)
        with pytest.raises(NotFoundError, match=UNKNOWN_CID):
            kubo.cat(UNKNOWN_CID)


def test_pin_of_unknown_cid_raises_not_found(client: KuboClient) -> None:
    with pytest.raises(NotFoundError, match=UNKNOWN_CID):
        client.pin(UNKNOWN_CID)


# ---------------------------------------------------------------------------------------------
# tampering and truncation on disk
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def trusting_node(tmp_path: Path) -> Iterator[StorageServer]:
    """A node that serves blocks without re-hashing them, so only the client can notice."""
    server = serve("127.0.0.1", 0, tmp_path / "trusting", verify_on_read=False)
    try:
        yield server
    finally:
        server.shutdown()


@pytest.mark.parametrize("node_fixture", ["thread_node", "trusting_node"])
def test_tampered_blob_on_disk_raises_integrity_error_naming_the_cid(
        request: pytest.FixtureRequest, node_fixture: str) -> None:
    node: StorageServer = request.getfixturevalue(node_fixture)
    with KuboClient(node.url) as kubo:
        cid = kubo.add(b"diagnosis: healthy")
        corrupt_block(node.repo.root, cid, flip_payload_byte)
        with pytest.raises(ContentMismatchError) as info:
            kubo.cat(cid)
    assert isinstance(info.value, IntegrityError)
    assert info.value.cid == cid and cid in str(info.value)


@pytest.mark.parametrize("node_fixture", ["thread_node", "trusting_node"])
def test_truncated_blob_on_disk_raises_integrity_error(
        request: pytest.FixtureRequest, node_fixture: str) -> None:
    node: StorageServer = request.getfixturevalue(node_fixture)
    data = payload(2 * CHUNK_SIZE)
    leaf = import_bytes(data).blocks[0].cid
    with KuboClient(node.url) as kubo:
        cid = kubo.add(data)
        corrupt_block(node.repo.root, str(leaf), lambda block: block[: len(block) // 2])
        with pytest.raises(IntegrityError, match=cid):
            kubo.cat(cid)


def test_client_catches_tampering_a_trusting_node_serves(trusting_node: StorageServer) -> None:
    with KuboClient(trusting_node.url) as kubo:
        cid = kubo.add(b"diagnosis: healthy")
        corrupt_block(trusting_node.repo.root, cid, flip_payload_byte)
        served = requests.post(f"{trusting_node.url}/api/v0/cat", params={"arg": cid}, timeout=10)
        assert served.status_code == 200 and served.content == b"eiagnosis: healthy"
        with pytest.raises(ContentMismatchError, match=cid):
            kubo.cat(cid)


def test_tampered_leaf_is_repaired_by_adding_the_content_again(thread_node: StorageServer,
                                                               client: KuboClient) -> None:
    cid = client.add(b"x-ray report")
    corrupt_block(thread_node.repo.root, cid, flip_payload_byte)
    client.add(b"x-ray report")
    assert client.cat(cid) == b"x-ray report"


def test_blob_over_the_node_limit_raises_blob_too_large(tmp_path: Path) -> None:
    server = serve("127.0.0.1", 0, tmp_path / "small", max_blob_size=100)
    try:
        with KuboClient(server.url) as kubo, pytest.raises(BlobTooLargeError, match="limit of 100 bytes"):
            kubo.add(payload(101))
    finally:
        server.shutdown()


# ---------------------------------------------------------------------------------------------
# nodes that are down or lie
# ---------------------------------------------------------------------------------------------


def test_node_down_raises_node_unavailable(tmp_path: Path) -> None:
    server = serve("127.0.0.1", 0, tmp_path / "gone")
    url = server.url
    server.shutdown()
    with KuboClient(url, timeout=5) as kubo, pytest.raises(NodeUnavailableError, match=url):
        kubo.cat(UNKNOWN_CID)


class _LyingHandler(BaseHTTPRequestHandler):
    """Answers add with the CID of other bytes and cat with other bytes."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.startswith("/api/v0/add"):
            body = json.dumps({"Name": "x", "Hash": cid_of(b"something else"), "Size": "22"}).encode()
        else:
            body = b"forged record"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def lying_node() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _LyingHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def test_add_raises_when_the_node_answers_another_cid(lying_node: str) -> None:
    with KuboClient(lying_node) as kubo, pytest.raises(ContentMismatchError) as info:
        kubo.add(b"true record")
    assert info.value.cid == cid_of(b"true record")


def test_cat_never_returns_forged_bytes(lying_node: str) -> None:
    cid = cid_of(b"true record")
    with KuboClient(lying_node) as kubo, pytest.raises(ContentMismatchError, match=cid):
        kubo.cat(cid)


# ---------------------------------------------------------------------------------------------
# URLs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("given, expected", [
    ("http://127.0.0.1:5001/", "http://127.0.0.1:5001"),
    ("/ip4/127.0.0.1/tcp/5001", "http://127.0.0.1:5001"),
    ("/ip6/::1/tcp/5001", "http://[::1]:5001"),
    ("/dns/cluster.example/tcp/9095/https", "https://cluster.example:9095"),
])
def test_normalize_api_url_accepts_urls_and_multiaddrs(given: str, expected: str) -> None:
    assert normalize_api_url(given) == expected


def test_normalize_api_url_rejects_other_schemes() -> None:
    with pytest.raises(ValueError, match="http://"):
        normalize_api_url("ftp://x")


def test_storage_errors_are_catchable_as_builtins(client: KuboClient) -> None:
    with pytest.raises(LookupError, match=f"{UNKNOWN_CID}: not stored on"):
        client.cat(UNKNOWN_CID)
    with pytest.raises(OSError, match=f"{UNKNOWN_CID}: not stored on"):
        client.cat(UNKNOWN_CID)
    assert issubclass(NotFoundError, StorageError)
