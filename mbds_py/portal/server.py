"""`mbds portal --as NAME`: the online client served on localhost.

One process per participant.  The keystore is decrypted in this process (at
start with ``--passphrase-stdin``, or from the page's unlock form); the page
only ever gets a session cookie (HttpOnly, SameSite=Strict) and a CSRF token.
A second browser must give the passphrase again.  Only ``Host: 127.0.0.1`` /
``localhost`` is served (no DNS rebinding), every response is ``no-store`` and
nothing decrypted is written anywhere.  Served by aiohttp (``mbds_py.web``): HTTP/1.1 with keep-alive,
bounded forms (413), the Host, CSRF and security-header rules in one middleware, events via aiohttp-sse.

Routes (docs/api/portal.json, also ``GET /openapi.json``): ``GET /`` page, ``GET /section/NAME`` one section,
``GET /events`` server-sent events, ``GET /static/...``, ``POST /unlock``,
``POST /lock``, ``POST /do/ACTION``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import logging
import secrets
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from aiohttp import web
from aiohttp_sse import EventSourceResponse, sse_response

from ..cli_options import portal_arguments
from ..errors import KeystoreError, MBDSError
from ..listen import bind_listener
from ..sharing.policy import Scope
from ..web import Handler, Server, blocking, json_response, make_app
from .app import DOCTOR, PATIENT, Flash, Portal, PortalError, explain, parse_id
from .discovery import discover
from .live import Broadcaster, ChainWatcher, Update, affected
from .views import main_page, receipt_flash, section, sections_of, unlock_page

log = logging.getLogger("mbds.portal")
STATIC = Path(__file__).with_name("static")
_STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
COOKIE = "mbds_portal"
MAX_FORM = 64 * 1024
PING_SECONDS = 15.0  # a comment line on every open event stream this often (also notices a client that left)
MAX_FAILURES, LOCKOUT_SECONDS = 5, 30.0  # wrong passphrases in a row, then a pause
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; object-src 'none'; "
                               "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


@dataclass
class Session:
    csrf: str
    flash: Flash | None = None


@dataclass
class PortalState:
    """What the HTTP handlers share: the portal, the sessions and the live-update plumbing."""

    portal: Portal
    host: str
    port: int = 0
    sessions: dict[str, Session] = field(default_factory=dict)
    broadcaster: Broadcaster = field(default_factory=Broadcaster)
    watcher: ChainWatcher | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    failures: int = 0  # wrong passphrases in a row
    locked_out_until: float = 0.0

    def throttled(self) -> float:
        """Seconds left before another passphrase may be tried (after MAX_FAILURES wrong ones in a row)."""
        return max(0.0, self.locked_out_until - time.monotonic())

    def note_unlock(self, ok: bool) -> None:
        with self.lock:
            if ok:
                self.failures = 0
                return
            self.failures += 1
            if self.failures >= MAX_FAILURES:
                self.failures = 0
                self.locked_out_until = time.monotonic() + LOCKOUT_SECONDS

    def new_session(self) -> str:
        token = secrets.token_urlsafe(32)
        with self.lock:
            self.sessions[token] = Session(secrets.token_urlsafe(32))
        return token

    def drop_sessions(self) -> None:
        with self.lock:
            self.sessions.clear()

    # -- live updates ---------------------------------------------------------------------------

    def start_watcher(self) -> None:
        if self.watcher is not None:
            return
        d = self.portal.directory
        contracts = [d.policy.contract]
        index = _consortium_index(self.portal)
        if index is not None:
            contracts.append(index)
        self.watcher = ChainWatcher(d.policy.client.w3, contracts, self.on_event)
        self.watcher.start()

    def on_event(self, name: str, args: dict[str, Any]) -> None:
        p = self.portal
        if not p.unlocked:
            return
        update = affected(name, args, p.id, p.role, p.label)
        if update is None:
            return
        if p.role == DOCTOR and update.event in ("AccessRevoked", "AllAccessRevoked") and update.counterpart:
            p.drop_revoked(update.counterpart)
        self.broadcaster.publish(update)
        if p.role == PATIENT and update.event == "EmergencyAccessActivated" and update.counterpart:
            threading.Thread(target=self._serve_emergency, args=(update.counterpart,), daemon=True,
                             name="portal-emergency").start()

    def _serve_emergency(self, grantee: bytes) -> None:
        """The patient's online client serves an activated break-glass access: key shares for every record."""
        p = self.portal
        try:
            with p.mutex:
                n = p.serve_emergency(grantee)
            message = f"Emergency access of {p.label(grantee)}: key shares for {n} record(s) issued to the proxies."
        except Exception as exc:  # noqa: BLE001 - reported on the page; the chain still bounds the window
            message = f"Emergency access of {p.label(grantee)} could not be served: {explain(exc)}"
        self.broadcaster.publish(Update("EmergencyServed", ("emergency", "audit"), message, grantee))

    def stop(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        self.broadcaster.close()


def _consortium_index(portal: Portal) -> Any | None:
    from ..deploy import Deployer
    from ..toolchain import artifact

    table = Deployer(portal.view.spec, "").load().get(portal.view.spec.consortium.name, {})
    if "ConsortiumIndex" not in table:
        return None
    w3 = portal.directory.policy.client.w3
    return w3.eth.contract(address=table["ConsortiumIndex"].address, abi=artifact("ConsortiumIndex").abi)


STATE = web.AppKey("portal_state", PortalState)
FORM = web.RequestKey("portal_form", dict)  # a POST's form, and the session it proved
SESSION = web.RequestKey("portal_session", Session)


class _EventStream(EventSourceResponse):
    """aiohttp-sse's stream, kept out of every cache like the rest of the portal."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.headers["Cache-Control"] = "no-store"


def _text(status: int, text: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=text.encode(), content_type="text/plain", headers=headers)


def _html(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text, content_type="text/html")


def _redirect(where: str) -> web.Response:
    return web.Response(status=303, headers={"Location": where}, content_type="text/plain")


def _host_ok(request: web.Request, state: PortalState) -> bool:
    host = request.headers.get("Host", "").strip().lower()
    allowed = {f"127.0.0.1:{state.port}", f"localhost:{state.port}", f"[::1]:{state.port}"}
    if state.host not in ("127.0.0.1", "localhost", "::1"):
        allowed.add(f"{state.host}:{state.port}")
    return host in allowed


def _cookie_name(state: PortalState) -> str:
    return f"{COOKIE}_{state.port}"


def _session(request: web.Request, state: PortalState) -> Session | None:
    token = request.cookies.get(_cookie_name(state), "")
    return state.sessions.get(token)


async def _form(request: web.Request) -> dict[str, str]:
    """The posted form (its first value per field), at most :data:`MAX_FORM` bytes (413 beyond)."""
    too_large = f"form too large (more than {MAX_FORM} bytes)"
    if (request.content_length or 0) > MAX_FORM:
        raise web.HTTPRequestEntityTooLarge(MAX_FORM, request.content_length, text=too_large)
    try:
        posted = await request.post()
    except web.HTTPRequestEntityTooLarge:
        raise web.HTTPRequestEntityTooLarge(MAX_FORM, MAX_FORM + 1, text=too_large) from None
    except ValueError as exc:  # undecodable text
        raise web.HTTPBadRequest(text=f"malformed form: {exc}") from None
    form: dict[str, str] = {}
    for key, value in posted.items():
        if not isinstance(value, str):
            raise web.HTTPBadRequest(text=f"malformed form: field {key!r} is a file")
        form.setdefault(key, value)
    return form


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every request: the Host check (421); every POST: a bounded form and, but for /unlock, an unlocked
    session (else back to /) and its CSRF token (403); HTTP errors answered in plain text."""
    state = request.app[STATE]
    if not _host_ok(request, state):
        return _text(421, "wrong Host header: open the portal at its 127.0.0.1 address")
    try:
        if request.method == "POST":
            request[FORM] = form = await _form(request)
            if request.path != "/unlock":
                session = _session(request, state)
                if session is None or not state.portal.unlocked:
                    return _redirect("/")
                if not hmac.compare_digest(form.get("csrf", ""), session.csrf):
                    return _text(403, "stale or missing form token: reload the page and try again")
                request[SESSION] = session
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        text = "not found" if exc.status == 404 else exc.text or exc.reason
        if text.startswith(f"{exc.status}:"):
            text = exc.reason
        return _text(exc.status, text, {k: v for k, v in exc.headers.items() if k == "Allow"})


async def _security_headers(_request: web.Request, response: web.StreamResponse) -> None:
    for key, value in SECURITY_HEADERS.items():
        response.headers.setdefault(key, value)


# -- GET --------------------------------------------------------------------------------------------




async def _healthz(request: web.Request) -> web.Response:
    return json_response({"unlocked": request.app[STATE].portal.unlocked})


async def _static(request: web.Request) -> web.Response:
    path = STATIC / request.match_info["name"]
    if path.suffix not in _STATIC_TYPES or path.parent != STATIC or not path.is_file():
        raise web.HTTPNotFound()
    body = await blocking(request, path.read_bytes)
    return web.Response(body=body, headers={"Content-Type": _STATIC_TYPES[path.suffix], "Cache-Control": "no-cache"})


def _unlocked_session(request: web.Request) -> Session:
    state = request.app[STATE]
    session = _session(request, state) if state.portal.unlocked else None
    if session is None:
        raise web.HTTPUnauthorized(text="locked: unlock the portal first")
    return session


async def _root(request: web.Request) -> web.Response:
    state = request.app[STATE]
    session = _session(request, state) if state.portal.unlocked else None
    if session is None:
        return _html(200, unlock_page(state.portal))
    flash, session.flash = session.flash, None
    return _html(200, await blocking(request, main_page, state.portal, session.csrf, flash))


async def _section(request: web.Request) -> web.Response:
    session = _unlocked_session(request)
    portal, name = request.app[STATE].portal, request.match_info["name"]
    if name not in sections_of(portal.role):
        raise web.HTTPNotFound()
    return _html(200, await blocking(request, section, portal, name, session.csrf))


async def _events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: ``ready`` first, then one ``data:`` line of JSON per update; aiohttp-sse pings
    every :data:`PING_SECONDS`, which is how a client that left is noticed.  The stream ends on lock, when
    the server stops, or when the client leaves."""
    _unlocked_session(request)
    state = request.app[STATE]
    updates = state.broadcaster.subscribe()
    try:
        async with sse_response(request, sep="\n", ping_interval=PING_SECONDS, response_cls=_EventStream) as resp:
            with contextlib.suppress(ConnectionResetError):  # the client left while an event was written
                await resp.send("{}", event="ready", retry=1000)
                await _forward(updates, resp, state)
    finally:
        state.broadcaster.unsubscribe(updates)
    return resp


async def _forward(updates: asyncio.Queue[Update | None], resp: EventSourceResponse, state: PortalState) -> None:
    """Send each update until the stream is told to end (None), the portal is locked or the client left."""
    left = asyncio.ensure_future(resp.wait())  # done once a ping finds the connection gone
    try:
        while True:
            update = asyncio.ensure_future(updates.get())
            await asyncio.wait((update, left), return_when=asyncio.FIRST_COMPLETED)
            if not update.done():
                update.cancel()
                return
            if update.result() is None or not state.portal.unlocked:
                return
            await resp.send(_sse(update.result()))
    finally:
        left.cancel()


# -- POST -------------------------------------------------------------------------------------------


async def _unlock(request: web.Request) -> web.Response:
    state = request.app[STATE]
    portal, passphrase = state.portal, request[FORM].get("passphrase", "")
    wait = state.throttled()
    if wait:
        return _html(429, unlock_page(portal, f"Too many wrong passphrases: try again in {wait:.0f} s. "
                                               "Nothing was unlocked."))
    try:
        await blocking(request, _open_keystore, state, passphrase)
    except KeystoreError as exc:
        log.info("unlock refused for %s", portal.name)  # never the passphrase
        state.note_unlock(False)
        return _html(401, unlock_page(portal, explain(exc)))
    except MBDSError as exc:
        return _html(503, unlock_page(portal, explain(exc)))
    log.info("%s unlocked", portal.name)
    state.note_unlock(True)
    resp = _redirect("/")
    resp.set_cookie(_cookie_name(state), state.new_session(), httponly=True, samesite="Strict", path="/")
    return resp


def _open_keystore(state: PortalState, passphrase: str) -> None:
    """Unlock the portal (or, unlocked already, prove the passphrase again) and follow the chain."""
    portal = state.portal
    if portal.unlocked:
        if not portal.verify(passphrase):
            raise KeystoreError("wrong passphrase")
        return
    portal.unlock(passphrase)
    state.start_watcher()


async def _lock(request: web.Request) -> web.Response:
    state = request.app[STATE]
    await blocking(request, state.portal.lock)  # waits for an action in flight (the portal's mutex)
    state.drop_sessions()
    state.broadcaster.publish(None)
    resp = _redirect("/")
    resp.del_cookie(_cookie_name(state), path="/", httponly=True, samesite="Strict")
    return resp


async def _do(request: web.Request) -> web.Response:
    session: Session = request[SESSION]
    portal = request.app[STATE].portal
    session.flash, anchor = await blocking(request, _act, portal, request.match_info["action"], request[FORM])
    return _redirect("/#" + anchor)


def _act(p: Portal, action: str, form: dict[str, str]) -> tuple[Flash, str]:
    """Run one action; every failure becomes an error flash and changes nothing on the page's side."""
    handlers: dict[str, tuple[str, str, Callable[[], Flash]]] = {
        "approve": (PATIENT, "requests", lambda: p.approve(_int(form, "request"))),
        "reject": (PATIENT, "requests", lambda: p.reject(_int(form, "request"), form.get("reason", ""))),
        "revoke": (PATIENT, "grants", lambda: p.revoke(parse_id(form.get("grantee", ""), "grantee"),
                                                       _scope(form), parse_id(form.get("target", ""), "target"))),
        "trapdoor": (PATIENT, "trapdoor", lambda: p.trapdoor(form.get("keyword", ""), form.get("doctor", ""))),
        "receipt": (PATIENT, "records", lambda: receipt_flash(p.check_receipt(parse_id(form.get("record", ""),
                                                                                         "record ID")))),
        "request": (DOCTOR, "requests", lambda: p.request_access(form.get("patient", ""), form.get("record", ""),
                                                                 _int(form, "minutes"), form.get("reason", ""))),
        "emergency": (DOCTOR, "break-glass", lambda: p.request_emergency(form.get("patient", ""),
                                                                      _int(form, "minutes"),
                                                                      form.get("reason", ""))),
        "search": (DOCTOR, "search", lambda: p.search(form.get("patient", ""), form.get("trapdoors", ""))),
        "read": (DOCTOR, "timeline", lambda: p.read(parse_id(form["record"], "record ID")
                                                    if form.get("record") else None)),
        "forget": (DOCTOR, "timeline", lambda: (p.forget(), Flash("ok", "Forgotten."))[1]),
    }
    if action not in handlers or handlers[action][0] != p.role:
        return Flash("error", f"Unknown action {action!r} for a {p.role}. Nothing changed."), "main"
    _role, anchor, run = handlers[action]
    try:
        with p.mutex:
            return run(), anchor
    except (MBDSError, OSError, ValueError) as exc:
        log.info("%s: %s refused (%s)", p.name, action, exc.__class__.__name__)
        return Flash("error", explain(exc)), anchor
    except Exception as exc:  # noqa: BLE001 - web3/requests errors: the page must say it, not crash
        log.warning("%s: %s failed (%s)", p.name, action, exc.__class__.__name__)
        return Flash("error", explain(exc)), anchor


def _sse(update: Update) -> str:
    """The ``data`` of one update's event (JSON: the event, the sections it changes, the sentence to announce)."""
    return json.dumps({"event": update.event, "sections": list(update.sections), "message": update.message})


def _int(form: dict[str, str], name: str) -> int:
    try:
        return int(form.get(name, "").strip())
    except ValueError:
        raise PortalError(f"{name} must be a whole number; got {form.get(name, '')[:20]!r}") from None


def _scope(form: dict[str, str]) -> Scope:
    try:
        return Scope(_int(form, "scope"))
    except ValueError:
        raise PortalError(f"unknown scope {form.get('scope')!r}") from None


def portal_app(state: PortalState) -> web.Application:
    """The portal's routes (docs/api/portal.json) behind its Host, form and CSRF guard and security headers."""
    app = make_app(server_name="mbds-portal/1", max_body=MAX_FORM, middlewares=(_guard,), openapi="portal")
    app[STATE] = state
    app.on_response_prepare.append(_security_headers)

    async def end_streams(_app: web.Application) -> None:
        state.broadcaster.close()

    app.on_shutdown.append(end_streams)
    app.router.add_get("/", _root)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/static/{name}", _static)
    app.router.add_get("/section/{name}", _section)
    app.router.add_get("/events", _events)
    app.router.add_post("/unlock", _unlock)
    app.router.add_post("/lock", _lock)
    app.router.add_post("/do/{action}", _do)
    return app


def make_server(portal: Portal, host: str = "127.0.0.1", port: int = 0) -> tuple[Server, PortalState]:
    """A bound portal server, not yet serving (``start()`` it); ``port=0`` picks a free port."""
    sock = bind_listener(host, port, what="portal")
    state = PortalState(portal, host, sock.getsockname()[1])
    server = Server(portal_app(state), sock, name="portal")
    if portal.unlocked:
        state.start_watcher()
    return server, state


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------


add_arguments = portal_arguments  # the options live in mbds_py.cli_options: `--help` imports only it


def run_portal(args: argparse.Namespace) -> int:
    from ..spec import load_spec

    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    spec = load_spec(args.spec, state_dir=args.state_dir)
    portal = Portal(discover(spec), args.name)
    if args.passphrase_stdin:
        line = sys.stdin.readline()
        if not line:
            raise PortalError("--passphrase-stdin: stdin is empty; pipe the passphrase in or omit the option")
        portal.unlock(line.rstrip("\r\n"))
    server, state = make_server(portal, args.host, args.port)
    url = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '') else args.host}:{state.port}/"
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_a: stopping.set())
    signal.signal(signal.SIGINT, lambda *_a: stopping.set())
    server.start()
    print(f"MBDS portal for {portal.name} ({portal.role}) at {url}"
          f"{'' if portal.unlocked else ' — open it and unlock with the passphrase'}", flush=True)
    try:
        stopping.wait()
    finally:
        server.stop()
        state.stop()
        portal.lock()
    return 0


__all__ = ["PortalState", "add_arguments", "make_server", "portal_app", "run_portal"]
