"""The portal's HTTP boundary over real sockets: locking, sessions, CSRF, Host checks, headers, bad forms.

The portal runs in-process (``make_server``) against AccessPolicy on the session Anvil, with
keystores written by a real KMC; nothing here needs the full network (the e2e test covers it).
"""

from __future__ import annotations

import re
import threading

import pytest
import requests

from mbds_py.identity import Role
from mbds_py.kmc import KeyManagementCenter
from mbds_py.portal.app import Portal, PortalError
from mbds_py.portal.discovery import NetworkView
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
def portal_url(view):
    portal = Portal(view, "alice")
    server, state = make_server(portal)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{state.port}", portal
    server.shutdown()
    state.stop()
    server.server_close()


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
    assert resp.status_code == 400 and "form too large" in resp.text


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
