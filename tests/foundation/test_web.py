"""The shared aiohttp plumbing (mbds_py.web): keep-alive, bounded bodies, chunked input, error answers."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading

import pytest
from aiohttp import web

from mbds_py.errors import MBDSError
from mbds_py.listen import bind_listener
from mbds_py.web import Server, blocking, json_response, make_app, read_body, read_json_object


def _app() -> web.Application:
    app = make_app(server_name="mbds-test/1", max_body=1024)
    routes = web.RouteTableDef()

    @routes.get("/v1/hello")
    async def hello(request: web.Request) -> web.Response:
        return json_response({"hello": request.query.get("name", "world")})

    @routes.post("/v1/echo")
    async def echo(request: web.Request) -> web.Response:
        return json_response(await read_json_object(request))

    @routes.post("/v1/size")
    async def size(request: web.Request) -> web.Response:
        return json_response({"size": len(await read_body(request))})

    @routes.get("/v1/thread")
    async def thread(request: web.Request) -> web.Response:
        return json_response({"thread": await blocking(request, lambda: threading.current_thread().name)})

    @routes.get("/v1/refuse")
    async def refuse(request: web.Request) -> web.Response:
        raise MBDSError("patient 0x01 has not granted this")

    @routes.get("/v1/crash")
    async def crash(request: web.Request) -> web.Response:
        raise RuntimeError("bug")

    app.add_routes(routes)
    return app


@pytest.fixture()
def server():
    with Server(_app(), bind_listener("127.0.0.1", 0), name="test") as running:
        yield running


def _conn(server: Server) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)


def _json(resp: http.client.HTTPResponse) -> dict:
    return json.loads(resp.read())


def test_keep_alive_serves_many_requests_on_one_connection(server):
    conn = _conn(server)
    for name in ("a", "b", "c"):
        conn.request("GET", f"/v1/hello?name={name}")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.version == 11
        assert resp.getheader("Server") == "mbds-test/1"
        assert _json(resp) == {"hello": name}
    assert conn.sock is not None  # never closed between requests


def test_blocking_code_runs_in_the_worker_pool_not_on_the_loop(server):
    conn = _conn(server)
    conn.request("GET", "/v1/thread")
    assert _json(conn.getresponse())["thread"].startswith("mbds-test")


def test_body_over_the_limit_is_refused_with_413_before_it_is_read(server):
    conn = _conn(server)
    conn.putrequest("POST", "/v1/size")
    conn.putheader("Content-Length", str(10 * 1024 * 1024))
    conn.endheaders()  # the 10 MiB never follow: the answer comes from the header alone
    resp = conn.getresponse()
    assert resp.status == 413
    assert "1024" in _json(resp)["error"]


def test_streamed_chunked_body_over_the_limit_is_refused(server):
    conn = _conn(server)
    conn.request("POST", "/v1/size", body=iter([b"x" * 600, b"y" * 600]), encode_chunked=True)
    assert conn.getresponse().status == 413


def test_chunked_body_is_decoded_by_the_framework(server):
    conn = _conn(server)
    conn.request("POST", "/v1/size", body=iter([b"x" * 100, b"y" * 200]), encode_chunked=True)
    resp = conn.getresponse()
    assert resp.status == 200 and _json(resp) == {"size": 300}


def test_negative_chunk_size_is_refused_at_once_and_logged_without_a_traceback(caplog):
    caplog.set_level(logging.INFO, logger="aiohttp.server")
    with Server(_app(), bind_listener("127.0.0.1", 0)) as running, \
            socket.create_connection(("127.0.0.1", running.port), timeout=5) as sock:
        sock.sendall(b"POST /v1/size HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nabc\r\n")
        answer = sock.recv(4096)  # within the 5 s timeout, not after a minute
    assert answer.split(b"\r\n")[0].endswith(b" 400 Bad Request")
    assert b"chunk size" in answer
    records = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert records and all(r.exc_info is None and r.levelno == logging.INFO for r in records)
    assert "chunk size" in records[0].getMessage()


def test_empty_and_non_json_bodies_get_400_with_the_reason(server):
    conn = _conn(server)
    conn.request("POST", "/v1/size", body=b"")
    resp = conn.getresponse()
    assert resp.status == 400 and "needs a body" in _json(resp)["error"]
    conn.request("POST", "/v1/echo", body=b"[1, 2]")
    resp = conn.getresponse()
    assert resp.status == 400 and "JSON object" in _json(resp)["error"]
    conn.request("POST", "/v1/echo", body=b"{nope")
    resp = conn.getresponse()
    assert resp.status == 400 and "not JSON" in _json(resp)["error"]


def test_errors_are_json_mbds_errors_400_bugs_500_unknown_404_wrong_method_405(server):
    conn = _conn(server)
    for method, path, status, text in (("GET", "/v1/refuse", 400, "has not granted"),
                                       ("GET", "/v1/crash", 500, "RuntimeError: bug"),
                                       ("GET", "/v1/nowhere", 404, "unknown endpoint GET /v1/nowhere"),
                                       ("DELETE", "/v1/hello", 405, "not allowed")):
        conn.request(method, path)
        resp = conn.getresponse()
        assert resp.status == status
        assert resp.getheader("Content-Type").startswith("application/json")
        assert text in _json(resp)["error"]


def test_stop_closes_the_socket_and_is_idempotent():
    running = Server(_app(), bind_listener("127.0.0.1", 0)).start()
    port = running.port
    running.stop()
    running.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()

