"""The consortium node's HTTP layer (aiohttp, mbds_py.web) against an attacker: bounded bodies, bad JSON,
unknown endpoints, wrong methods, broken chunked framing; keep-alive; the sync work off the event loop.  The
node is a stub: only the HTTP layer is tested (its operations are in test_core.py)."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
from types import SimpleNamespace
from typing import Any, Iterator

import pytest

from mbds_py.consortium.node import MAX_BODY, _app_for
from mbds_py.listen import bind_listener
from mbds_py.web import Server
from tests.helpers import http_conn, json_answer


@pytest.fixture()
def node() -> Iterator[SimpleNamespace]:
    stub = SimpleNamespace(follows=0)

    def follow() -> None:
        stub.follows += 1

    def items_of(pid: bytes, after: int) -> list[dict[str, Any]]:
        return [{"patient": "0x" + pid.hex(), "after": after, "thread": threading.current_thread().name}]

    stub.status, stub.follow, stub.items_of = (lambda: {"head": 7}), follow, items_of
    with Server(_app_for(stub), bind_listener("127.0.0.1", 0)) as server:
        stub.port = server.port
        yield stub


def _conn(node) -> "http.client.HTTPConnection":
    return http_conn(node.port, timeout=30)


def test_keep_alive_serves_several_requests_on_one_connection_in_the_worker_pool(node):
    conn = _conn(node)
    conn.request("GET", "/v1/status")
    resp = conn.getresponse()
    assert (resp.status, resp.version, resp.getheader("Server")) == (200, 11, "mbds-consortium/1")
    assert json.loads(resp.read()) == {"head": 7}
    sock = conn.sock
    patient = "0x" + "ab" * 32
    for after in range(3):
        conn.request("GET", f"/v1/items?patient={patient}&after={after}")
        status, doc = json_answer(conn)
        assert status == 200 and doc["items"][0]["patient"] == patient and doc["items"][0]["after"] == after
        assert doc["items"][0]["thread"].startswith("mbds-consortium")  # not the event loop's thread
    assert conn.sock is sock and node.follows == 3


def test_a_body_over_max_body_is_refused_with_413_from_its_header_alone(node):
    conn = _conn(node)
    conn.putrequest("POST", "/v1/slips")
    conn.putheader("Content-Length", str(MAX_BODY + 1))
    conn.endheaders()  # the body never follows: the answer comes from the header
    status, doc = json_answer(conn)
    assert status == 413 and str(MAX_BODY) in doc["error"]


@pytest.mark.parametrize(("body", "reason"), [(b"{nope", "not JSON"), (b"[1, 2]", "must be a JSON object"),
                                              (b"", "needs a body")])
def test_a_proposal_that_is_not_a_json_object_is_refused_with_400(node, body, reason):
    conn = _conn(node)
    conn.request("POST", "/v1/proposals", body=body)
    status, doc = json_answer(conn)
    assert status == 400 and reason in doc["error"]


def test_a_bad_patient_or_height_is_400(node):
    conn = _conn(node)
    conn.request("GET", "/v1/items?patient=0x01")
    assert json_answer(conn) == (400, {"error": "GET /v1/items needs ?patient=0x<32-byte participant ID>"})
    conn.request("GET", f"/v1/items?patient=0x{'ab' * 32}&after=top")
    assert json_answer(conn) == (400, {"error": "GET /v1/items: ?after= must be a block height"})
    assert node.follows == 0


def test_an_unknown_endpoint_is_404_json(node):
    conn = _conn(node)
    conn.request("POST", "/v1/blocks", body=b"\x00")
    assert json_answer(conn) == (404, {"error": "unknown endpoint POST /v1/blocks"})


def test_a_wrong_method_is_405_with_the_allowed_one(node):
    conn = _conn(node)
    conn.request("GET", "/v1/slips")
    resp = conn.getresponse()
    assert (resp.status, resp.getheader("Allow")) == (405, "POST")
    assert json.loads(resp.read()) == {"error": "method GET not allowed on /v1/slips"}


def test_a_negative_chunk_size_is_refused_at_once(node):
    with socket.create_connection(("127.0.0.1", node.port), timeout=5) as sock:
        sock.sendall(b"POST /v1/slips HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nabc\r\n")
        answer = sock.recv(4096)  # within the 5 s timeout: the parser refuses, no handler waits for a body
    assert answer.split(b"\r\n")[0].endswith(b" 400 Bad Request")
    assert b"chunk size" in answer


_SERVE_UNTIL_SIGTERM = """
import signal, threading
from types import SimpleNamespace
from mbds_py.consortium.node import ConsortiumNode
from mbds_py.listen import bind_listener

sock = bind_listener("127.0.0.1", 0)
stub = SimpleNamespace(config=SimpleNamespace(institution_id="0x" + "11" * 32), _stop=threading.Event(),
                       follow=lambda: None, maybe_produce=lambda: None, _idle_wait=lambda: 0.05,
                       status=lambda: {"head": 7})
signal.signal(signal.SIGTERM, lambda *_: ConsortiumNode.stop(stub))
print(sock.getsockname()[1], flush=True)
ConsortiumNode.run(stub, sock)
"""


def test_sigterm_stops_the_node_cleanly_without_a_traceback():
    """``run()`` serves until SIGTERM, then stops its server and returns: exit 0, nothing on stderr."""
    proc = subprocess.Popen([sys.executable, "-c", _SERVE_UNTIL_SIGTERM], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        port = int(proc.stdout.readline())
        conn = http_conn(port)
        conn.request("GET", "/v1/status")
        assert json_answer(conn) == (200, {"head": 7})  # served, and the connection is left open
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0 and err == b""
