"""The node's Kubo RPC API subset, spoken over raw HTTP."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from _storage_support import corrupt_block, count_blocks, payload

from mbds_py.storage import multipart, node
from mbds_py.storage.errors import StorageError
from mbds_py.storage.node import StorageServer, serve
from mbds_py.storage.unixfs import CHUNK_SIZE, cid_of

HELLO = b"hello world\n"
HELLO_CID = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
UNKNOWN_CID = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQX"


@pytest.fixture
def api(thread_node: StorageServer) -> Iterator[Api]:
    with requests.Session() as session:
        yield Api(thread_node.url, session, thread_node.repo.root)


class Api:
    def __init__(self, url: str, session: requests.Session, data_dir: Path):
        self.url = url
        self.session = session
        self.data_dir = data_dir

    def post(self, command: str, params: dict | None = None, **kwargs) -> requests.Response:
        return self.session.post(f"{self.url}/api/v0/{command}", params=params or {}, timeout=10, **kwargs)

    def add(self, *files: tuple[str, bytes], **params: str) -> requests.Response:
        body, content_type = multipart.encode_files(list(files))
        return self.post("add", params, data=body, headers={"Content-Type": content_type})


def _kubo_error(resp: requests.Response, status: int, code: int) -> str:
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"] == "application/json"
    body = resp.json()
    assert set(body) == {"Message", "Code", "Type"}
    assert body["Type"] == "error" and body["Code"] == code
    return body["Message"]


# ---------------------------------------------------------------------------------------------
# add / cat / version
# ---------------------------------------------------------------------------------------------


def test_version_answers_like_kubo(api: Api) -> None:
    body = api.post("version").json()
    assert {"Version", "Commit", "Repo", "System", "Golang"} <= set(body)


def test_add_returns_kubo_name_hash_size(api: Api) -> None:
    resp = api.add(("hello.txt", HELLO))
    assert resp.status_code == 200
    assert json.loads(resp.text.splitlines()[0]) == {"Name": "hello.txt", "Hash": HELLO_CID, "Size": "20"}


def test_add_of_several_files_answers_one_line_each(api: Api) -> None:
    resp = api.add(("a", b"a"), ("b", b"b"))
    lines = [json.loads(line) for line in resp.text.splitlines()]
    assert [line["Hash"] for line in lines] == [cid_of(b"a"), cid_of(b"b")]


def test_add_pins_by_default_and_not_with_pin_false(api: Api) -> None:
    api.add(("p", b"pinned"))
    api.add(("u", b"unpinned"), pin="false")
    keys = api.post("pin/ls", {"type": "recursive"}).json()["Keys"]
    assert keys == {cid_of(b"pinned"): {"Type": "recursive"}}
    assert api.post("cat", {"arg": cid_of(b"unpinned")}).content == b"unpinned"


def test_add_only_hash_stores_nothing(api: Api) -> None:
    resp = api.add(("x", b"never stored"), **{"only-hash": "true"})
    assert resp.json()["Hash"] == cid_of(b"never stored")
    assert count_blocks(api.data_dir) == 0
    assert api.post("pin/ls").json()["Keys"] == {}


def test_add_accepts_a_chunked_upload(api: Api) -> None:
    data = payload(CHUNK_SIZE + 5)
    body, content_type = multipart.encode_files([("big", data)])
    chunks = (body[i:i + 65536] for i in range(0, len(body), 65536))  # generator => chunked encoding
    resp = api.post("add", data=chunks, headers={"Content-Type": content_type})
    assert resp.json()["Hash"] == cid_of(data)


def test_add_rejects_non_default_import_options(api: Api) -> None:
    message = _kubo_error(api.add(("x", b"x"), **{"cid-version": "1"}), 400, 1)
    assert "cid-version=1 is not supported" in message
    assert count_blocks(api.data_dir) == 0


def test_cat_streams_multi_block_files_and_honours_offset_and_length(api: Api) -> None:
    data = payload(3 * CHUNK_SIZE + 17)
    cid = api.add(("big", data)).json()["Hash"]
    assert api.post("cat", {"arg": cid}).content == data
    part = api.post("cat", {"arg": cid, "offset": CHUNK_SIZE - 3, "length": 10})
    assert part.content == data[CHUNK_SIZE - 3:CHUNK_SIZE + 7]
    assert part.headers["X-Content-Length"] == str(len(data))
    assert api.post("cat", {"arg": cid, "offset": len(data) + 5}).content == b""


def test_cat_accepts_the_cid_v1_and_ipfs_path_forms(api: Api) -> None:
    api.add(("h", HELLO))
    assert api.post("cat", {"arg": "/ipfs/" + HELLO_CID}).content == HELLO
    assert api.post("cat", {"arg": "bafybeicg2rebjoofv4kbyovkw7af3rpiitvnl6i7ckcywaq6xjcxnc2mby"}).content == HELLO


def test_cat_of_unknown_cid_is_a_kubo_500_naming_it(api: Api) -> None:
    message = _kubo_error(api.post("cat", {"arg": UNKNOWN_CID}), 500, 0)
    assert message == f"block was not found locally (offline): ipld: could not find {UNKNOWN_CID}"


def test_cat_without_arg_or_with_bad_cid_is_a_client_error(api: Api) -> None:
    assert _kubo_error(api.post("cat"), 400, 1) == 'argument "ipfs-path" is required'
    assert "not a CID" in _kubo_error(api.post("cat", {"arg": "hello"}), 400, 1)
    assert "negative offset" in _kubo_error(api.post("cat", {"arg": HELLO_CID, "offset": "-1"}), 400, 1)


# ---------------------------------------------------------------------------------------------
# pins
# ---------------------------------------------------------------------------------------------


def test_pin_rm_then_pin_add_round_trips(api: Api) -> None:
    api.add(("h", HELLO))
    assert api.post("pin/rm", {"arg": HELLO_CID}).json() == {"Pins": [HELLO_CID]}
    assert api.post("pin/ls", {"type": "recursive"}).json()["Keys"] == {}
    assert api.post("pin/add", {"arg": HELLO_CID}).json() == {"Pins": [HELLO_CID]}
    assert api.post("pin/ls", {"arg": HELLO_CID}).json()["Keys"] == {HELLO_CID: {"Type": "recursive"}}


def test_pin_rm_of_unpinned_cid_says_not_pinned(api: Api) -> None:
    assert "not pinned" in _kubo_error(api.post("pin/rm", {"arg": HELLO_CID}), 500, 0)


def test_pin_add_of_absent_blocks_fails_naming_the_cid(api: Api) -> None:
    assert UNKNOWN_CID in _kubo_error(api.post("pin/add", {"arg": UNKNOWN_CID}), 500, 0)


def test_pin_ls_lists_leaves_of_pinned_files_as_indirect(api: Api) -> None:
    data = payload(2 * CHUNK_SIZE)
    root = api.add(("big", data)).json()["Hash"]
    keys = api.post("pin/ls").json()["Keys"]
    assert keys[root] == {"Type": "recursive"}
    assert sorted(value["Type"] for key, value in keys.items() if key != root) == ["indirect", "indirect"]
    leaf = next(key for key in keys if key != root)
    assert api.post("pin/ls", {"arg": leaf}).json()["Keys"][leaf]["Type"] == f"indirect through {root}"
    assert "is not pinned" in _kubo_error(api.post("pin/ls", {"arg": HELLO_CID}), 500, 0)


# ---------------------------------------------------------------------------------------------
# malformed, oversized and truncated requests store nothing
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type, body, expected", [
    (None, b"x", "Content-Type is missing"),
    ("application/octet-stream", b"x", "multipart/form-data"),
    ("multipart/form-data", b"--b\r\n", "no valid boundary"),
    ("multipart/form-data; boundary=b", b"garbage without boundary", "does not contain its boundary"),
    ("multipart/form-data; boundary=b",
     b'--b\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n\r\nhalf a file', "truncated"),
    ("multipart/form-data; boundary=b", b"--b\r\nContent-Type: text/plain\r\n\r\ndata\r\n--b--\r\n",
     "Content-Disposition"),
    ("multipart/form-data; boundary=b",
     b'--b\r\nContent-Disposition: form-data; name="file"; filename="d"\r\n'
     b"Content-Type: application/x-directory\r\n\r\n\r\n--b--\r\n", "directories"),
    ("multipart/form-data; boundary=b", b"--b--\r\n", "holds no file"),
])
def test_malformed_multipart_is_a_clear_400_and_stores_nothing(
        api: Api, content_type: str | None, body: bytes, expected: str) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    message = _kubo_error(api.post("add", data=body, headers=headers), 400, 1)
    assert expected in message
    assert count_blocks(api.data_dir) == 0
    assert api.post("version").status_code == 200  # the kept-alive connection is still in sync


@pytest.fixture
def small_node(tmp_path: Path) -> Iterator[StorageServer]:
    server = serve("127.0.0.1", 0, tmp_path / "small", max_blob_size=1024)
    try:
        yield server
    finally:
        server.shutdown()


def test_blob_over_the_limit_is_a_413_and_stores_nothing(small_node: StorageServer) -> None:
    with requests.Session() as session:
        api = Api(small_node.url, session, small_node.repo.root)
        message = _kubo_error(api.add(("big", payload(1025))), 413, 1)
        assert "exceeds this node's limit of 1024 bytes" in message
        # far over the limit: rejected from Content-Length, before parsing
        message = _kubo_error(api.add(("huge", payload(200_000))), 413, 1)
        assert "request body of" in message
        assert count_blocks(api.data_dir) == 0
        assert api.add(("ok", payload(1024))).status_code == 200  # same connection, still usable


def _raw_add_head(body: bytes, content_type: str) -> bytes:
    return (f"POST /api/v0/add HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()


def _read_all(sock: socket.socket) -> bytes:
    reply = b""
    while chunk := sock.recv(65536):
        reply += chunk
    return reply


def test_request_body_cut_off_by_the_client_stores_nothing(thread_node: StorageServer) -> None:
    body, content_type = multipart.encode_files([("f", payload(5000))])
    with socket.create_connection(("127.0.0.1", thread_node.port), timeout=10) as sock:
        sock.sendall(_raw_add_head(body, content_type) + body[: len(body) // 2])
        sock.shutdown(socket.SHUT_WR)  # the client dies mid-upload: the node drops the connection
        assert _read_all(sock) == b""
    assert count_blocks(thread_node.repo.root) == 0
    assert requests.post(f"{thread_node.url}/api/v0/version", timeout=10).status_code == 200


def test_stalled_request_body_is_a_400_and_the_connection_closes(thread_node: StorageServer,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(node, "BODY_TIMEOUT", 0.5)  # the node waits 60 s; the test does not
    body, content_type = multipart.encode_files([("f", payload(5000))])
    with socket.create_connection(("127.0.0.1", thread_node.port), timeout=10) as sock:
        sock.sendall(_raw_add_head(body, content_type) + body[: len(body) // 2])  # then silence
        reply = _read_all(sock)  # the node answers and closes
    head, _, answer = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request") and b"Connection: close" in head
    assert json.loads(answer) == {"Message": "request body not received in full (nothing for 0.5 s)",
                                  "Code": 1, "Type": "error"}
    assert count_blocks(thread_node.repo.root) == 0


@pytest.mark.parametrize("split", [False, True], ids=["one-packet", "headers-then-body"])
@pytest.mark.parametrize("endpoint", ["add", "cat?arg=" + HELLO_CID])
def test_negative_chunk_size_is_a_400_at_once_and_closes_the_connection(thread_node: StorageServer, split: bool,
                                                                       endpoint: str) -> None:
    head = (f"POST /api/v0/{endpoint} HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            "Transfer-Encoding: chunked\r\n" + ("Expect: 100-continue\r\n" if split else "") + "\r\n").encode()
    with socket.create_connection(("127.0.0.1", thread_node.port), timeout=5) as sock:  # 5 s, not a minute
        if split:  # the bad chunk arrives once the request is with its handler (which said 100 Continue)
            sock.sendall(head)
            assert sock.recv(4096) == b"HTTP/1.1 100 Continue\r\n\r\n"
            sock.sendall(b"-1\r\nabc\r\n")
        else:
            sock.sendall(head + b"-1\r\nabc\r\n")
        reply = _read_all(sock)  # answered, then closed
    head, _, answer = reply.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0].endswith(b" 400 Bad Request")
    if split:  # answered by the endpoint, Kubo-shaped
        assert b"Connection: close" in head
        assert json.loads(answer) == {"Message": "malformed request body: Invalid character in chunk size:",
                                      "Code": 1, "Type": "error"}
    else:  # answered by the HTTP layer before the request reached the node
        assert answer.startswith(b"Invalid character in chunk size")
    assert count_blocks(thread_node.repo.root) == 0


def test_unsupported_transfer_encoding_is_a_400(thread_node: StorageServer) -> None:
    with socket.create_connection(("127.0.0.1", thread_node.port), timeout=5) as sock:
        sock.sendall(b"POST /api/v0/version HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabc")
        assert _read_all(sock).startswith(b"HTTP/1.0 400 Bad Request")


def test_body_over_the_limit_of_an_endpoint_that_takes_none_is_a_413(api: Api) -> None:
    message = _kubo_error(api.post("version", data=b"x" * (node.SMALL_BODY_LIMIT + 1)), 413, 1)
    assert f"limit of {node.SMALL_BODY_LIMIT} bytes" in message
    chunked = iter([b"x" * node.SMALL_BODY_LIMIT, b"y"])  # no Content-Length: counted as it streams
    assert "at least" in _kubo_error(api.post("version", data=chunked), 413, 1)
    assert api.post("version").status_code == 200


def test_keep_alive_serves_every_request_on_one_connection(thread_node: StorageServer) -> None:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", thread_node.port, timeout=10)
    body, content_type = multipart.encode_files([("h", HELLO)])
    conn.request("POST", "/api/v0/add", body=body, headers={"Content-Type": content_type})
    first = conn.getresponse()
    assert (first.status, first.version, json.loads(first.read())["Hash"]) == (200, 11, HELLO_CID)
    sock = conn.sock
    for path in (f"/api/v0/cat?arg={HELLO_CID}", "/api/v0/version", "/api/v0/nowhere"):
        conn.request("POST", path)
        resp = conn.getresponse()
        resp.read()
        assert resp.status in (200, 404) and not resp.will_close
    conn.request("GET", "/api/v0/version")  # refused with 405, the connection stays open
    assert conn.getresponse().status == 405
    assert conn.sock is sock


def test_cat_streams_a_file_larger_than_one_batch(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(node, "CAT_BATCH", CHUNK_SIZE)  # several trips to the worker pool per answer
    data = payload(5 * CHUNK_SIZE + 3, seed=9)
    cid = api.add(("big", data)).json()["Hash"]
    resp = api.session.post(f"{api.url}/api/v0/cat", params={"arg": cid}, stream=True, timeout=10)
    assert resp.headers["Content-Length"] == str(len(data)) and resp.headers["X-Stream-Output"] == "1"
    assert b"".join(resp.iter_content(65536)) == data


# ---------------------------------------------------------------------------------------------
# method, origin, unknown endpoint
# ---------------------------------------------------------------------------------------------


def test_get_is_refused_with_405(api: Api) -> None:
    resp = api.session.get(f"{api.url}/api/v0/version", timeout=10)
    assert "takes POST" in _kubo_error(resp, 405, 1)


def test_browser_origin_is_refused_with_403(api: Api) -> None:
    resp = api.post("version", headers={"Origin": "http://evil.example"})
    assert "cross-origin" in _kubo_error(resp, 403, 1)


def test_unknown_endpoint_is_404(api: Api) -> None:
    resp = api.post("swarm/peers")
    assert resp.status_code == 404
    assert resp.text == "404 page not found\n"


# ---------------------------------------------------------------------------------------------
# concurrency and options
# ---------------------------------------------------------------------------------------------


def test_concurrent_clients_adding_and_reading_the_same_and_different_blobs(thread_node: StorageServer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from mbds_py.storage.client import KuboClient

    def worker(seed: int) -> None:
        with KuboClient(thread_node.url, timeout=30) as kubo:
            for i in range(15):
                for data in (payload(2048, seed * 100 + i), b"shared blob"):
                    assert kubo.cat(kubo.add(data)) == data

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(worker, range(6)))
    assert count_blocks(thread_node.repo.root) == 6 * 15 + 1


@pytest.mark.parametrize("text, expected", [
    ("67108864", 64 * 1024 * 1024), ("64MiB", 64 * 1024 * 1024), ("64M", 64 * 1024 * 1024),
    ("512KiB", 512 * 1024), ("1GiB", 1024 ** 3), ("10b", 10),
])
def test_parse_size_reads_bytes_and_binary_units(text: str, expected: int) -> None:
    from mbds_py.storage.node import parse_size

    assert parse_size(text) == expected


@pytest.mark.parametrize("text,expected", [("", "invalid size ''"), ("0", "size must be positive"),
                                           ("-1", "invalid size '-1'"), ("64 parsecs", "invalid size '64 parsecs'"),
                                           ("1.5M", "invalid size '1.5M'")])
def test_parse_size_rejects_nonsense(text: str, expected: str) -> None:
    import argparse

    from mbds_py.storage.node import parse_size

    with pytest.raises(argparse.ArgumentTypeError, match=expected):
        parse_size(text)


def test_shutdown_ends_open_connections_closes_the_repo_and_is_idempotent(tmp_path: Path) -> None:
    server = serve("127.0.0.1", 0, tmp_path / "node")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as kept:
        kept.sendall(b"POST /api/v0/version HTTP/1.1\r\nHost: x\r\n\r\n")
        assert kept.recv(65536).startswith(b"HTTP/1.1 200 OK")
        server.shutdown()
        assert kept.recv(65536) == b""
    server.shutdown()
    with pytest.raises(StorageError, match="is closed"):
        server.repo.pins()
    serve("127.0.0.1", 0, tmp_path / "node").shutdown()  # the data-dir lock was released


def test_block_failing_mid_stream_closes_the_connection_short(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from mbds_py.storage.repo import Repo

    data = payload(3 * CHUNK_SIZE, seed=5)
    cid = api.add(("big", data)).json()["Hash"]
    last_leaf = cid_of(data[2 * CHUNK_SIZE:])  # a leaf is the node of a one-chunk file
    assert api.post("pin/ls", {"arg": last_leaf}).json()["Keys"][last_leaf]["Type"] == f"indirect through {cid}"
    monkeypatch.setattr(node, "CAT_BATCH", CHUNK_SIZE)
    monkeypatch.setattr(Repo, "CAT_CACHE_BYTES", 0)  # blocks are read again while streaming
    pulls = []

    def pull_then_corrupt(chunks):  # the headers are out after the first batch: corrupt a later block
        pulls.append(1)
        if len(pulls) == 2:
            corrupt_block(api.data_dir, last_leaf, lambda block: block[:-1] + bytes([block[-1] ^ 1]))
        return pull(chunks)

    pull = node._pull
    monkeypatch.setattr(node, "_pull", pull_then_corrupt)
    resp = api.session.post(f"{api.url}/api/v0/cat", params={"arg": cid}, stream=True, timeout=10)
    assert resp.status_code == 200 and resp.headers["Content-Length"] == str(len(data))
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        b"".join(resp.iter_content(65536))  # fewer bytes than announced, then the connection closes
