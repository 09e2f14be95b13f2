"""The portal's HTTP boundary over real sockets: locking, sessions, CSRF, Host checks, headers, bad forms.

The portal runs in-process (``make_server``) against AccessPolicy on the session Anvil, with
keystores written by a real KMC; nothing here needs the full network (the e2e test covers it).
"""

from __future__ import annotations

import http.client
import re
import socket
import threading

import pytest
import requests

from mbds_py.identity import Role
from mbds_py.kmc import KeyManagementCenter
from mbds_py.portal.app import Portal, PortalError
from mbds_py.portal.discovery import NetworkView
from mbds_py.portal.live import Update
from mbds_py.portal.server import make_server
from mbds_py.sharing.agent import AccessPolicyAgent
from mbds_py.spec import load_spec
from tests.sharing._support import CONFIG

PASSPHRASE = "correct horse battery staple"


@pytest.fixture(scope="module")
def view(tmp_path_factory, session_client, deployer, identity_address) -> NetworkView:
    state = tmp_path_factory.mktemp("portal-server") / "devnet"
    kmc = KeyManagementCenter(state / "kmc", PASSPHRASE, scrypt_n=2**10)
    hospital = kmc.enroll("hospital-a", Role.HOSPITAL, "City General Hospital", PASSPHRASE)
    people = {"hospital-a": hospital,
              "alice": kmc.enroll("alice", Role.PATIENT, "Alice Chen", PASSPHRASE),
              "dr-li": kmc.enroll("dr-li", Role.DOCTOR, "Dr. Li Wei", PASSPHRASE, institution=hospital)}
    policy = AccessPolicyAgent.deploy(session_client, deployer, identity_address, CONFIG)
    return NetworkView(load_spec(None, state_dir=state), session_client.url, policy.address, (), (), (), (), people)


@pytest.fixture()
def served(view):
    """A running portal of alice: its URL, the portal, its state and its server."""
    portal = Portal(view, "alice")
    server, state = make_server(portal)
    server.start()
    yield f"http://127.0.0.1:{state.port}", portal, state, server
    server.stop()
    state.stop()


@pytest.fixture()
def portal_url(served):
    url, portal, _state, _server = served
    return url, portal


def _unlock(url: str, passphrase: str = PASSPHRASE) -> requests.Session:
    s = requests.Session()
    resp = s.post(url + "/unlock", data={"passphrase": passphrase}, allow_redirects=False)
    assert resp.status_code == 303, resp.text
    return s


def _csrf(page: str) -> str:
    return page.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def test_a_locked_portal_serves_only_the_unlock_form(portal_url):
    url, portal = portal_url
    page = requests.get(url + "/")
    assert page.status_code == 200 and 'id="unlock-form"' in page.text and 'for="passphrase"' in page.text
    for path in ("/section/records", "/events"):
        assert requests.get(url + path).status_code == 401
    assert requests.get(url + "/healthz").json() == {"unlocked": False}
    assert not portal.unlocked


def test_a_wrong_passphrase_is_answered_on_the_page_and_unlocks_nothing(portal_url):
    url, portal = portal_url
    resp = requests.post(url + "/unlock", data={"passphrase": "guess"}, allow_redirects=False)
    assert resp.status_code == 401
    assert "Wrong passphrase: the keystore could not be decrypted. Nothing was unlocked" in resp.text
    assert "Set-Cookie" not in resp.headers
    assert not portal.unlocked


def test_unlocking_gives_a_strict_http_only_session_and_never_sends_the_key(portal_url):
    url, portal = portal_url
    resp = requests.post(url + "/unlock", data={"passphrase": PASSPHRASE}, allow_redirects=False)
    assert resp.status_code == 303
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    page = requests.get(url + "/", cookies=resp.cookies)
    assert page.status_code == 200 and 'id="whoami">alice<' in page.text
    key = bytes(portal.patient.account.key).hex()
    assert key not in page.text and PASSPHRASE not in page.text
    assert page.headers["Cache-Control"] == "no-store"
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"


def test_another_browser_must_give_the_passphrase_too(portal_url):
    url, portal = portal_url
    _unlock(url)
    assert portal.unlocked
    stranger = requests.get(url + "/")
    assert 'id="unlock-form"' in stranger.text and 'id="whoami"' not in stranger.text
    assert requests.post(url + "/unlock", data={"passphrase": "guess"}).status_code == 401


def test_a_form_without_its_csrf_token_is_refused(portal_url):
    url, _ = portal_url
    s = _unlock(url)
    resp = s.post(url + "/do/approve", data={"request": "1"}, allow_redirects=False)
    assert resp.status_code == 403 and "form token" in resp.text
    resp = s.post(url + "/do/approve", data={"request": "1", "csrf": "forged"}, allow_redirects=False)
    assert resp.status_code == 403


def test_a_foreign_host_header_is_refused(portal_url):
    url, _ = portal_url
    port = url.rsplit(":", 1)[1]
    resp = requests.get(url + "/", headers={"Host": f"evil.example:{port}"})
    assert resp.status_code == 421


def test_bad_input_in_a_form_is_named_on_the_page(portal_url):
    url, _ = portal_url
    s = _unlock(url)
    token = _csrf(s.get(url + "/").text)
    resp = s.post(url + "/do/approve", data={"request": "one", "csrf": token})
    assert resp.status_code == 200 and "request must be a whole number; got &#x27;one&#x27;" in resp.text
    resp = s.post(url + "/do/receipt", data={"record": "0x1234", "csrf": token})
    assert "record ID must be 32 bytes" in resp.text
    resp = s.post(url + "/do/search", data={"patient": "alice", "trapdoors": "0x00", "csrf": token})
    assert "Unknown action &#x27;search&#x27; for a patient. Nothing changed." in resp.text


def test_an_oversized_form_is_refused(portal_url):
    url, _ = portal_url
    s = _unlock(url)
    resp = s.post(url + "/do/trapdoor", data={"keyword": "x" * 70_000})
    assert resp.status_code == 413 and resp.text == "form too large (more than 65536 bytes)"


def test_the_event_stream_opens_for_an_unlocked_session(portal_url):
    url, _ = portal_url
    s = _unlock(url)
    with s.get(url + "/events", stream=True, timeout=10) as resp:
        assert resp.headers["Content-Type"] == "text/event-stream"
        lines = [resp.raw.readline() for _ in range(3)]
    first = b"".join(lines)
    assert b"event: ready" in first


def test_locking_forgets_the_keys_and_every_session(portal_url):
    url, portal = portal_url
    s = _unlock(url)
    token = _csrf(s.get(url + "/").text)
    resp = s.post(url + "/lock", data={"csrf": token}, allow_redirects=False)
    assert resp.status_code == 303 and "Max-Age=0" in resp.headers["Set-Cookie"]
    assert not portal.unlocked
    assert 'id="unlock-form"' in s.get(url + "/").text


def test_the_portal_serves_patients_and_doctors_only(view):
    with pytest.raises(PortalError, match="hospital-a is a hospital: the portal serves patients and doctors"):
        Portal(view, "hospital-a")


def test_an_unknown_participant_is_named_with_those_enrolled(view):
    from mbds_py.errors import ConfigError

    with pytest.raises(ConfigError, match=r"no keystore for 'carol' .* \(enrolled: alice, dr-li, hospital-a\)"):
        Portal(view, "carol")


def test_static_files_only_from_the_static_folder(portal_url):
    from mbds_py.portal.server import STATIC

    url, _ = portal_url
    served = requests.get(url + "/static/portal.js")
    assert served.status_code == 200 and served.content == (STATIC / "portal.js").read_bytes()
    # app.py exists one folder up: the 404s are the portal refusing to leave its static folder, not a missing file
    assert (STATIC.parent / "app.py").is_file() and not (STATIC / "app.py").exists()
    for path in ("/static/..%2Fapp.py", "/static/app.py", "/static/%2E%2E%2Fapp.py"):
        resp = requests.get(url + path)
        assert resp.status_code == 404 and resp.content == b"not found", path


def test_a_chain_that_is_down_at_start_is_named(view):
    import dataclasses

    from mbds_py.errors import ChainError

    dead = dataclasses.replace(view, consortium_rpc="http://127.0.0.1:9")
    with pytest.raises(ChainError, match=r"the consortium chain at http://127.0.0.1:9 does not answer .*"
                                         r"is the network running\?"):
        Portal(dead, "alice")


def test_a_state_folder_without_a_network_is_named(tmp_path):
    from mbds_py.errors import ConfigError
    from mbds_py.portal.discovery import discover

    with pytest.raises(ConfigError, match=r"no running network under .* start one with `mbds demo --keep"):
        discover(load_spec(None, state_dir=tmp_path / "nothing"))


def test_wrong_passphrases_in_a_row_pause_further_attempts(portal_url):
    url, portal = portal_url
    for _ in range(5):
        assert requests.post(url + "/unlock", data={"passphrase": "guess"}).status_code == 401
    resp = requests.post(url + "/unlock", data={"passphrase": PASSPHRASE}, allow_redirects=False)
    assert resp.status_code == 429
    assert re.search(r"Too many wrong passphrases: try again in (30|[12]\d) s\. Nothing was unlocked\.", resp.text)
    assert not portal.unlocked


def test_a_pasted_trapdoor_is_not_a_search_ticket():
    from mbds_py.sharing.clients import SearchTicket, SharingError

    with pytest.raises(SharingError, match="paste the whole ticket the patient issued"):
        SearchTicket.from_text("0x" + "a1" * 48)


def test_the_portal_serves_its_openapi_document_and_routes_what_it_documents(portal_url):
    """docs/api/portal.json: served byte for byte (locked or not), every documented route answers a documented
    code with a session, and an undocumented path answers 404 (tests/foundation/test_openapi.py)."""
    from tests.foundation.test_openapi import exercise, load, operations, request_for, served_exactly

    url, portal = portal_url
    served_exactly(url, "portal")
    s = _unlock(url)
    served_exactly(url, "portal", s)
    def form() -> dict[str, str]:  # the current session's token: POST /unlock opens a new session
        return {"csrf": _csrf(s.get(url + "/").text), "passphrase": PASSPHRASE}

    assert exercise(url, load("portal"), session=s, form=form, last=("/lock",), validate=True) == {
        "GET /openapi.json": 200, "GET /healthz": 200, "GET /": 200, "GET /section/{name}": 200,
        "GET /events": 200, "GET /static/{name}": 200, "POST /unlock": 303, "POST /do/{action}": 303,
        "POST /lock": 303}
    assert not portal.unlocked  # POST /lock went last
    s = _unlock(url)
    resp = s.get(url + "/nope")
    assert (resp.status_code, resp.text) == (404, "not found")
    token = _csrf(s.get(url + "/").text)
    resp = s.post(url + "/nope", data={"csrf": token}, allow_redirects=False)
    assert (resp.status_code, resp.text) == (404, "not found")
    port = url.rsplit(":", 1)[1]
    for method, template, op in operations(load("portal")):  # every route checks the Host first, as documented
        path, kwargs = request_for(template, op, lambda: {"csrf": token})
        resp = s.request(method, url + path, headers={"Host": f"evil.example:{port}"}, **kwargs)
        assert resp.status_code == 421 and "421" in op["responses"], (method, template)


# -- the HTTP rules the framework and the portal's guard enforce, tried as an attacker would --------------------


def _raw(port: int, request: bytes) -> tuple[bytes, bytes]:
    """Send ``request`` on a fresh connection; (status line, everything the portal sent until it closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer.split(b"\r\n", 1)[0], answer


def _assert_security_headers(resp: requests.Response, cache: str = "no-store") -> None:
    from mbds_py.portal.server import SECURITY_HEADERS

    for key, value in {**SECURITY_HEADERS, "Cache-Control": cache}.items():
        assert resp.headers.get(key) == value, (resp.request.method, resp.url, resp.status_code, key)


def test_every_post_needs_the_sessions_csrf_token(portal_url):
    url, portal = portal_url
    s = _unlock(url)
    token = _csrf(s.get(url + "/").text)
    for path in ("/do/approve", "/lock", "/nope"):
        for form in ({}, {"csrf": ""}, {"csrf": "forged"}, {"csrf": token[:-1]}):
            resp = s.post(url + path, data=form, allow_redirects=False)
            assert (resp.status_code, resp.text) == (
                403, "stale or missing form token: reload the page and try again"), (path, form)
    assert portal.unlocked  # the refused POST /lock locked nothing
    other = _unlock(url)  # another session's token is not this session's
    resp = other.post(url + "/lock", data={"csrf": token}, allow_redirects=False)
    assert resp.status_code == 403 and portal.unlocked


def test_a_wrong_or_missing_host_is_refused_on_get_and_post(portal_url):
    url, portal = portal_url
    port = int(url.rsplit(":", 1)[1])
    for host in (f"evil.example:{port}", "127.0.0.1", f"127.0.0.1:{port + 1}", f"localhost.evil.example:{port}"):
        get = requests.get(url + "/healthz", headers={"Host": host})
        post = requests.post(url + "/unlock", data={"passphrase": PASSPHRASE}, headers={"Host": host},
                             allow_redirects=False)
        for resp in (get, post):
            assert (resp.status_code, resp.text) == (
                421, "wrong Host header: open the portal at its 127.0.0.1 address"), host
    assert not portal.unlocked  # the refused unlock did not run
    status, _ = _raw(port, b"GET /healthz HTTP/1.0\r\n\r\n")  # no Host at all
    assert status == b"HTTP/1.0 421 Misdirected Request"
    status, answer = _raw(port, b"GET /healthz HTTP/1.1\r\n\r\n")  # HTTP/1.1 requires one: the parser refuses
    assert status.split(b" ", 1)[1] == b"400 Bad Request" and b"Missing 'Host' header" in answer


def test_an_oversized_form_is_refused_with_413_declared_or_chunked(portal_url):
    url, portal = portal_url
    body = b"passphrase=" + b"x" * 70_000
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    declared = requests.post(url + "/unlock", data=body, headers=form)
    chunked = requests.post(url + "/unlock", data=iter([body[:30_000], body[30_000:]]), headers=form)
    assert chunked.request.headers.get("Transfer-Encoding") == "chunked"
    for resp in (declared, chunked):
        assert (resp.status_code, resp.text) == (413, "form too large (more than 65536 bytes)")
    assert not portal.unlocked


def test_a_malformed_chunk_size_is_refused_at_once(portal_url):
    url, _ = portal_url
    port = int(url.rsplit(":", 1)[1])
    for size in (b"-5", b"zz"):
        status, answer = _raw(port, b"POST /unlock HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nTransfer-Encoding: chunked\r\n"
                                    b"Content-Type: application/x-www-form-urlencoded\r\n\r\n%s\r\n" % (port, size))
        # answered and closed without waiting for more of the body
        assert status.split(b" ", 1)[1] == b"400 Bad Request" and b"Invalid character in chunk size" in answer, size


def test_a_wrong_method_is_refused_with_405(portal_url):
    url, _ = portal_url
    resp = requests.put(url + "/unlock", data={"passphrase": PASSPHRASE})
    assert (resp.status_code, resp.text, resp.headers["Allow"]) == (405, "Method Not Allowed", "POST")


def test_the_security_headers_are_on_every_answer_including_errors(served):
    url, _portal, _state, _server = served
    port = url.rsplit(":", 1)[1]
    anon = [requests.get(url + "/"), requests.get(url + "/healthz"), requests.get(url + "/openapi.json"),
            requests.get(url + "/section/records"), requests.get(url + "/events"), requests.get(url + "/nope"),
            requests.get(url + "/", headers={"Host": f"evil.example:{port}"}), requests.put(url + "/"),
            requests.post(url + "/unlock", data={"passphrase": "guess"}),
            requests.post(url + "/unlock", data={"passphrase": "x" * 70_000}),
            requests.post(url + "/lock", allow_redirects=False)]
    assert [r.status_code for r in anon] == [200, 200, 200, 401, 401, 404, 421, 405, 401, 413, 303]
    s = _unlock(url)
    token = _csrf(s.get(url + "/").text)
    mine = [s.get(url + "/"), s.get(url + "/section/records"), s.post(url + "/lock", allow_redirects=False),
            s.post(url + "/do/approve", data={"request": "1", "csrf": token}, allow_redirects=False)]
    assert [r.status_code for r in mine] == [200, 200, 403, 303]
    for resp in anon + mine:
        _assert_security_headers(resp)
    with s.get(url + "/events", stream=True, timeout=30) as events:
        assert events.status_code == 200 and events.headers["Content-Type"] == "text/event-stream"
        _assert_security_headers(events)
    _assert_security_headers(requests.get(url + "/static/portal.js"), cache="no-cache")


def test_connections_are_kept_alive_over_http_1_1(portal_url):
    url, _ = portal_url
    conn = http.client.HTTPConnection(url.removeprefix("http://"), timeout=30)
    try:
        paths = ("/healthz", "/static/portal.js", "/nope", "/")
        for path in paths:
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            assert resp.version == 11 and not resp.will_close, path
            if path == paths[0]:
                first = conn.sock
        conn.request("POST", "/unlock", body="passphrase=guess",
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 401 and not resp.will_close
        assert conn.sock is first  # one connection for all five requests
    finally:
        conn.close()


def _next_event(lines) -> list[bytes]:
    event = []
    for line in lines:
        if line in (b"", b"\n"):
            if event:
                return event
            continue
        if not line.startswith(b":"):  # a ping
            event.append(line.rstrip(b"\n"))
    raise AssertionError(f"the stream ended inside an event: {event}")


def test_the_event_stream_delivers_an_update_published_from_another_thread(served):
    url, _portal, state, _server = served
    s = _unlock(url)
    update = Update("PatientIndexed", ("records",), "A new record of yours was committed.")
    with s.get(url + "/events", stream=True, timeout=30) as resp:
        lines = iter(resp.raw.readline, b"")
        assert _next_event(lines) == [b"event: ready", b"data: {}", b"retry: 1000"]
        watcher = threading.Thread(target=state.broadcaster.publish, args=(update,))  # as the chain watcher does
        watcher.start()
        watcher.join()
        assert _next_event(lines) == [b'data: {"event": "PatientIndexed", "sections": ["records"], '
                                      b'"message": "A new record of yours was committed."}']


def _watch_unsubscribe(state, monkeypatch) -> threading.Event:
    ended = threading.Event()
    unsubscribe = state.broadcaster.unsubscribe
    monkeypatch.setattr(state.broadcaster, "unsubscribe", lambda q: (unsubscribe(q), ended.set()))
    return ended


def test_the_event_stream_ends_cleanly_when_the_server_stops(served, monkeypatch):
    url, _portal, state, server = served
    ended = _watch_unsubscribe(state, monkeypatch)
    s = _unlock(url)
    with s.get(url + "/events", stream=True, timeout=30) as resp:
        lines = iter(resp.raw.readline, b"")
        assert _next_event(lines)[0] == b"event: ready"
        server.stop()
        assert ended.is_set()
        assert list(lines) == []  # the chunked stream was ended, not cut (urllib3 would raise on a cut)


def test_the_event_stream_ends_when_the_client_leaves(served, monkeypatch):
    import mbds_py.portal.server as portal_server

    url, _portal, state, _server = served
    monkeypatch.setattr(portal_server, "PING_SECONDS", 0.05)  # the ping is what notices a client that left
    ended = _watch_unsubscribe(state, monkeypatch)
    cookie = "; ".join(f"{k}={v}" for k, v in _unlock(url).cookies.items())
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {cookie}\r\n\r\n".encode())
        seen = b""
        while b"event: ready" not in seen:
            chunk = sock.recv(4096)
            assert chunk, seen
            seen += chunk
        assert not ended.is_set()
    # the tab closed: the connection is gone
    assert ended.wait(30)


def test_locking_ends_the_open_event_streams(served, monkeypatch):
    url, _portal, state, _server = served
    ended = _watch_unsubscribe(state, monkeypatch)
    s = _unlock(url)
    token = _csrf(s.get(url + "/").text)
    with s.get(url + "/events", stream=True, timeout=30) as resp:
        lines = iter(resp.raw.readline, b"")
        assert _next_event(lines)[0] == b"event: ready"
        assert requests.post(url + "/lock", data={"csrf": token}, cookies=s.cookies,
                             allow_redirects=False).status_code == 303
        assert list(lines) == []
    assert ended.wait(30)
