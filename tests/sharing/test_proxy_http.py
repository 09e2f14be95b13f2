"""The proxy's HTTP layer (aiohttp, mbds_py.web) against an attacker: bounded bodies, bad JSON, unknown
endpoints, wrong methods, broken chunked framing; keep-alive; every error is ``{"error", "code"}`` with the
refusal's status, and refused requests are counted.  The service is a stub: only the HTTP layer is tested."""

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

from mbds_py.errors import ChainError, ContractRevert
from mbds_py.listen import bind_listener
from mbds_py.sharing.proxy import MAX_BODY, ProxyRefused, Refusal, _app_for
from mbds_py.web import Server
from tests.helpers import http_conn, json_answer


def _search(doc: dict[str, Any]) -> dict[str, Any]:
    """Echo the request, or fail as ``doc["fail"]`` says."""
    fail = doc.get("fail")
    if fail == "refuse":
        raise ProxyRefused(Refusal.WRONG_PROXY)
    if fail == "chain":
        raise ChainError("consortium RPC did not answer")
    if fail == "revert":
        raise ContractRevert("AccessPolicy", "AccessPolicyNoGrant")
    if fail == "bug":
        raise RuntimeError("bug")
    return {"echo": doc, "thread": threading.current_thread().name}


@pytest.fixture()
def proxy() -> Iterator[SimpleNamespace]:
    stub = SimpleNamespace(_lock=threading.Lock(), stats={"refusals": 0}, info=lambda: {"name": "proxy-a"},
                           status=lambda: {"keys": 0}, search_request=_search, deposit=_search, reencrypt=_search)
    with Server(_app_for(stub), bind_listener("127.0.0.1", 0)) as server:
        stub.port = server.port
        yield stub


def _conn(proxy) -> "http.client.HTTPConnection":
    return http_conn(proxy.port, timeout=30)


def test_keep_alive_serves_several_requests_on_one_connection_in_the_worker_pool(proxy):
    conn = _conn(proxy)
    conn.request("GET", "/v1/info")
    resp = conn.getresponse()
    assert (resp.status, resp.version, resp.getheader("Server")) == (200, 11, "mbds-proxy/1")
    assert json.loads(resp.read()) == {"name": "proxy-a"}
    sock = conn.sock
    for i in range(3):
        conn.request("POST", "/v1/search", body=json.dumps({"i": i}))
        status, doc = json_answer(conn)
        assert status == 200 and doc["echo"] == {"i": i}
        assert doc["thread"].startswith("mbds-proxy")  # not the event loop's thread
    assert conn.sock is sock  # the same connection throughout


def test_a_body_over_max_body_is_refused_with_413_from_its_header_alone(proxy):
    conn = _conn(proxy)
    conn.putrequest("POST", "/v1/reencrypt")
    conn.putheader("Content-Length", str(MAX_BODY + 1))
    conn.endheaders()  # the body never follows: the answer comes from the header
    status, doc = json_answer(conn)
    assert status == 413 and doc["code"] == "bad-request" and str(MAX_BODY) in doc["error"]
    assert proxy.stats["refusals"] == 1


def test_a_chunked_body_over_max_body_is_refused_with_413(proxy):
    conn = _conn(proxy)
    chunk = b"x" * (1024 * 1024)
    conn.request("POST", "/v1/kfrags", body=iter([chunk] * 5), encode_chunked=True)
    status, doc = json_answer(conn)
    assert status == 413 and doc["code"] == "bad-request"


@pytest.mark.parametrize(("body", "reason"), [(b"{nope", "not JSON"), (b"[1, 2]", "must be a JSON object"),
                                              (b"", "needs a body")])
def test_a_body_that_is_not_a_json_object_is_refused_with_400_bad_request(proxy, body, reason):
    conn = _conn(proxy)
    conn.request("POST", "/v1/search", body=body)
    status, doc = json_answer(conn)
    assert status == 400 and doc["code"] == "bad-request" and reason in doc["error"]
    assert proxy.stats["refusals"] == 1


def test_an_unknown_endpoint_is_404_json(proxy):
    conn = _conn(proxy)
    conn.request("POST", "/v1/keys", body=b"{}")
    assert json_answer(conn) == (404, {"error": "unknown endpoint POST /v1/keys"})
    assert proxy.stats["refusals"] == 0


def test_a_wrong_method_is_405_with_the_allowed_one(proxy):
    conn = _conn(proxy)
    conn.request("GET", "/v1/search")
    resp = conn.getresponse()
    assert (resp.status, resp.getheader("Allow")) == (405, "POST")
    assert json.loads(resp.read()) == {"error": "method GET not allowed on /v1/search", "code": "bad-request"}


def test_a_negative_chunk_size_is_refused_at_once(proxy):
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(b"POST /v1/search HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nabc\r\n")
        answer = sock.recv(4096)  # within the 5 s timeout: the parser refuses, no handler waits for a body
    assert answer.split(b"\r\n")[0].endswith(b" 400 Bad Request")
    assert b"chunk size" in answer


@pytest.mark.parametrize(("fail", "status", "code", "counted"), [
    ("refuse", 421, "wrong-proxy", 1), ("chain", 503, "unavailable", 0), ("revert", 400, "bad-request", 0),
    ("bug", 500, "unavailable", 0)])
def test_service_errors_keep_their_status_code_and_count(proxy, fail, status, code, counted):
    conn = _conn(proxy)
    conn.request("POST", "/v1/reencrypt", body=json.dumps({"fail": fail}))
    answer_status, doc = json_answer(conn)
    assert (answer_status, doc["code"], set(doc)) == (status, code, {"error", "code"})
    assert proxy.stats["refusals"] == counted


_SERVE_UNTIL_SIGTERM = """
import signal, threading
from types import SimpleNamespace
from mbds_py.listen import bind_listener
from mbds_py.sharing.proxy import ProxyService

sock = bind_listener("127.0.0.1", 0)
stub = SimpleNamespace(config=SimpleNamespace(name="proxy-a", watch_interval=0.05), address="0x" + "aa" * 20,
                       _stop=threading.Event(), _lock=threading.Lock(), stats={"refusals": 0},
                       watch_revocations=lambda: 0, info=lambda: {"name": "proxy-a"})
signal.signal(signal.SIGTERM, lambda *_: ProxyService.stop(stub))
print(sock.getsockname()[1], flush=True)
ProxyService.run(stub, sock)
"""


def test_sigterm_stops_the_proxy_cleanly_without_a_traceback():
    """``run()`` serves until SIGTERM, then stops its server and returns: exit 0, nothing on stderr."""
    proc = subprocess.Popen([sys.executable, "-c", _SERVE_UNTIL_SIGTERM], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        port = int(proc.stdout.readline())
        conn = http_conn(port)
        conn.request("GET", "/v1/info")
        assert json_answer(conn) == (200, {"name": "proxy-a"})  # served, and the connection is left open
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0 and err == b""
