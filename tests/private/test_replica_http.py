"""The replica's client API as an attacker meets it: bounded bodies, broken frames, unknown routes, keep-alive.

The API (:func:`mbds_py.private.node.make_api`) is served in-process over a stub of the replica whose batch
path is the replica's own code (``ReplicaNode.submit_batch`` → ``submit_records`` → ``_admit``) up to the
checks of each record, so decoding and back-pressure are the real ones; no chain is needed.  ``tests/private/test_replicas.py`` runs the same
API in four real replica processes.
"""

from __future__ import annotations

import http.client
import json
import socket
from functools import partial
from types import SimpleNamespace

import pytest

from mbds_py.listen import bind_listener
from mbds_py.pbft.types import SlipEnvelope
from mbds_py.private.batch import encode_batch
from mbds_py.private.node import ReplicaNode, make_api
from mbds_py.web import Server
from tests.helpers import http_conn, json_answer

LIMIT = 4096
SLIP_ID = "0x" + "11" * 32


def _stub(backlog: int = 0) -> SimpleNamespace:
    """A replica whose every record checks out as slip ``SLIP_ID``, holding ``backlog`` unordered slips."""

    def check_records(records: list[bytes]) -> tuple:
        envs = [SlipEnvelope(bytes.fromhex(SLIP_ID[2:]), r) for r in records]
        return [None] * len(records), envs, list(range(len(records))), []

    node = SimpleNamespace(index=0, config=SimpleNamespace(max_pending=8), _check_records=check_records,
                           replica=SimpleNamespace(state=SimpleNamespace(pool=[b""] * backlog),
                                                   on_requests=lambda envs: [None] * len(envs)),
                           status=lambda: {"chain": "hospital-a", "head": 3}, receipt=lambda slip_id: None)
    for name in ("backlog", "_admit", "submit_records", "submit_batch"):
        setattr(node, name, partial(getattr(ReplicaNode, name), node))
    return node


@pytest.fixture()
def replica():
    with Server(make_api(_stub(), max_body=LIMIT), bind_listener("127.0.0.1", 0), name="replica-test") as running:
        yield running


def _conn(server) -> "http.client.HTTPConnection":
    return http_conn(server.port, timeout=10)


def test_keep_alive_serves_several_requests_on_one_connection(replica):
    conn = _conn(replica)
    conn.request("GET", "/v1/status")
    assert json_answer(conn) == (200, {"chain": "hospital-a", "head": 3})
    sock = conn.sock
    conn.request("POST", "/v1/slips/batch", body=encode_batch([b"r1", b"r2"]))
    assert json_answer(conn) == (200, {"results": [{"slip_id": SLIP_ID, "status": "accepted"}] * 2})
    conn.request("GET", f"/v1/slips/{SLIP_ID}/receipt")
    assert json_answer(conn) == (404, {"status": "not-committed", "slip_id": SLIP_ID})
    assert conn.sock is sock  # one connection for all three


def test_a_body_declared_over_the_limit_is_refused_with_413_before_it_is_sent(replica):
    conn = _conn(replica)
    conn.putrequest("POST", "/v1/slips/batch")
    conn.putheader("Content-Length", str(LIMIT + 1))
    conn.endheaders()  # the body never follows: the answer comes from the header alone
    status, doc = json_answer(conn)
    assert status == 413 and f"{LIMIT}" in doc["error"]


def test_a_chunked_body_streamed_over_the_limit_is_refused_with_413(replica):
    conn = _conn(replica)
    conn.request("POST", "/v1/slips/batch", body=iter([b"x" * LIMIT, b"y"]), encode_chunked=True)
    status, doc = json_answer(conn)
    assert status == 413 and f"{LIMIT}" in doc["error"]


def test_a_truncated_batch_frame_is_refused_with_400_and_the_connection_still_serves(replica):
    conn = _conn(replica)
    conn.request("POST", "/v1/slips/batch", body=encode_batch([b"record-one"])[:-3])
    status, doc = json_answer(conn)
    assert status == 400 and doc["error"].startswith("truncated batch: record 0 needs 10 bytes")
    conn.request("GET", "/v1/status")
    assert json_answer(conn)[0] == 200


def test_a_negative_chunk_size_is_refused_at_once(replica):
    with socket.create_connection(("127.0.0.1", replica.port), timeout=5) as sock:
        sock.sendall(b"POST /v1/slips/batch HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nabc\r\n")
        answer = sock.recv(4096)  # within the 5 s timeout: the rest of the body is never awaited
    assert answer.split(b"\r\n")[0].endswith(b" 400 Bad Request")
    assert b"chunk size" in answer


def test_an_unknown_endpoint_is_a_json_404(replica):
    conn = _conn(replica)
    for method in ("GET", "POST"):
        conn.request(method, "/v1/blocks", body=b"\x00" if method == "POST" else None)
        assert json_answer(conn) == (404, {"error": f"unknown endpoint {method} /v1/blocks"})


def test_a_wrong_method_is_a_json_405_naming_the_allowed_one(replica):
    conn = _conn(replica)
    conn.request("GET", "/v1/slips/batch")
    resp = conn.getresponse()
    assert (resp.status, resp.getheader("Allow")) == (405, "POST")
    assert json.loads(resp.read()) == {"error": "method GET not allowed on /v1/slips/batch"}
    conn.request("PUT", "/v1/status", body=b"{}")
    assert json_answer(conn) == (405, {"error": "method PUT not allowed on /v1/status"})


def test_an_empty_body_is_refused_with_400(replica):
    conn = _conn(replica)
    conn.request("POST", "/v1/slips/batch", body=b"")
    status, doc = json_answer(conn)
    assert status == 400 and "needs a body" in doc["error"]


def test_a_full_replica_answers_429_with_retry_after_and_keeps_the_connection():
    with Server(make_api(_stub(backlog=8)), bind_listener("127.0.0.1", 0), name="replica-test") as full:
        conn = _conn(full)
        conn.request("POST", "/v1/slips/batch", body=encode_batch([b"r1"]))
        resp = conn.getresponse()
        assert (resp.status, resp.getheader("Retry-After")) == (429, "1")
        assert json.loads(resp.read()) == {
            "error": "replica 0 holds 8 unordered slips (limit 8): retry later", "retry_after": 0.2}
        conn.request("GET", "/v1/status")
        assert json_answer(conn)[0] == 200
