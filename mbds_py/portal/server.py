"""`mbds portal --as NAME`: the online client served on localhost.

One process per participant.  The keystore is decrypted in this process (at
start with ``--passphrase-stdin``, or from the page's unlock form); the page
only ever gets a session cookie (HttpOnly, SameSite=Strict) and a CSRF token.
A second browser must give the passphrase again.  Only ``Host: 127.0.0.1`` /
``localhost`` is served (no DNS rebinding), every response is ``no-store`` and
nothing decrypted is written anywhere.

Routes (docs/api/portal.json, also ``GET /openapi.json``): ``GET /`` page, ``GET /section/NAME`` one section,
``GET /events`` server-sent events, ``GET /static/...``, ``POST /unlock``,
``POST /lock``, ``POST /do/ACTION``.
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import secrets
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs

from ..apidoc import openapi_bytes
from ..cli_options import portal_arguments
from ..errors import KeystoreError, MBDSError
from ..httpjson import JsonHandler, RequestError
from ..sharing.policy import Scope
from .app import DOCTOR, PATIENT, Flash, Portal, PortalError, explain, parse_id
from .discovery import discover
from .live import Broadcaster, ChainWatcher, Update, affected
from .views import main_page, receipt_flash, section, sections_of, unlock_page

log = logging.getLogger("mbds.portal")
STATIC = Path(__file__).with_name("static")
_STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
COOKIE = "mbds_portal"
MAX_FORM = 64 * 1024
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


class PortalHandler(JsonHandler):
    """HTTP routes of the portal."""

    state: PortalState  # set on the subclass made by make_server
    log = log

    # -- plumbing -------------------------------------------------------------------------------

    def _send(self, code: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in {**SECURITY_HEADERS, **(headers or {})}.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _html(self, code: int, text: str, headers: dict[str, str] | None = None) -> None:
        self._send(code, text.encode(), "text/html; charset=utf-8", headers)

    def _redirect(self, where: str, headers: dict[str, str] | None = None) -> None:
        self._send(303, b"", "text/plain", {"Location": where, **(headers or {})})

    def _host_ok(self) -> bool:
        host = (self.headers.get("Host") or "").strip().lower()
        allowed = {f"127.0.0.1:{self.state.port}", f"localhost:{self.state.port}", f"[::1]:{self.state.port}"}
        if self.state.host not in ("127.0.0.1", "localhost", "::1"):
            allowed.add(f"{self.state.host}:{self.state.port}")
        return host in allowed

    def _session(self) -> tuple[str, Session] | None:
        raw = self.headers.get("Cookie") or ""
        for part in raw.split(";"):
            k, _, v = part.strip().partition("=")
            if k == self.cookie_name and v in self.state.sessions:
                return v, self.state.sessions[v]
        return None

    @property
    def cookie_name(self) -> str:
        return f"{COOKIE}_{self.state.port}"

    def _cookie(self, token: str) -> dict[str, str]:
        return {"Set-Cookie": f"{self.cookie_name}={token}; HttpOnly; SameSite=Strict; Path=/"}

    def _form(self) -> dict[str, str]:
        size = int(self.headers.get("Content-Length") or 0)
        if not 0 <= size <= MAX_FORM:
            raise RequestError(f"form too large ({size} bytes; at most {MAX_FORM})")
        raw = self.rfile.read(size).decode("utf-8", errors="strict") if size else ""
        return {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}

    # -- GET ------------------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        if not self._host_ok():
            return self._send(421, b"wrong Host header: open the portal at its 127.0.0.1 address", "text/plain")
        parts, _query = self.route
        try:
            if parts[:1] == ["static"] and len(parts) == 2:
                return self._static(parts[1])
            if parts == ["openapi.json"]:
                return self._send(200, openapi_bytes("portal"), "application/json")
            if parts == ["healthz"]:
                return self._send(200, json.dumps({"unlocked": self.state.portal.unlocked}).encode(),
                                  "application/json")
            sess = self._session() if self.state.portal.unlocked else None
            if sess is None:
                if parts:
                    return self._send(401, b"locked: unlock the portal first", "text/plain")
                return self._html(200, unlock_page(self.state.portal))
            token, session = sess
            if not parts:
                flash, session.flash = session.flash, None
                return self._html(200, main_page(self.state.portal, session.csrf, flash))
            if parts[0] == "section" and len(parts) == 2 and parts[1] in sections_of(self.state.portal.role):
                return self._html(200, section(self.state.portal, parts[1], session.csrf))
            if parts == ["events"]:
                return self._events()
            return self._send(404, b"not found", "text/plain")
        except (BrokenPipeError, ConnectionResetError):
            return None

    def _static(self, name: str) -> None:
        path = STATIC / name
        if path.suffix not in _STATIC_TYPES or path.parent != STATIC or not path.is_file():
            return self._send(404, b"not found", "text/plain")
        return self._send(200, path.read_bytes(), _STATIC_TYPES[path.suffix], {"Cache-Control": "no-cache"})

    def _events(self) -> None:
        """Server-sent events: one ``data:`` line of JSON per update, a comment every 15 s to keep alive."""
        q = self.state.broadcaster.subscribe()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Accel-Buffering", "no")
            self.end_headers()
            self.wfile.write(b"retry: 1000\nevent: ready\ndata: {}\n\n")
            self.wfile.flush()
            while True:
                try:
                    update = q.get(timeout=15)
                except Exception:  # queue.Empty
                    self.wfile.write(b": keep-alive\n\n")
                    self.wfile.flush()
                    continue
                if update is None or not self.state.portal.unlocked:
                    return
                self.wfile.write(_sse(update))
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            return
        finally:
            self.state.broadcaster.unsubscribe(q)
            self.close_connection = True

    # -- POST -----------------------------------------------------------------------------------

    def do_POST(self) -> None:  # noqa: N802
        if not self._host_ok():
            return self._send(421, b"wrong Host header", "text/plain")
        parts, _ = self.route
        try:
            form = self._form()
        except (RequestError, UnicodeDecodeError) as exc:
            return self._send(400, f"malformed form: {exc}".encode(), "text/plain")
        if parts == ["unlock"]:
            return self._unlock(form)
        sess = self._session()
        if sess is None or not self.state.portal.unlocked:
            return self._redirect("/")
        token, session = sess
        if not hmac.compare_digest(form.get("csrf", ""), session.csrf):
            return self._send(403, b"stale or missing form token: reload the page and try again", "text/plain")
        if parts == ["lock"]:
            self.state.portal.lock()
            self.state.drop_sessions()
            self.state.broadcaster.publish(None)
            return self._redirect("/", {"Set-Cookie": f"{self.cookie_name}=; Max-Age=0; Path=/"})
        if len(parts) == 2 and parts[0] == "do":
            session.flash, anchor = self._act(parts[1], form)
            return self._redirect("/#" + anchor)
        return self._send(404, b"not found", "text/plain")

    def _unlock(self, form: dict[str, str]) -> None:
        portal = self.state.portal
        passphrase = form.get("passphrase", "")
        wait = self.state.throttled()
        if wait:
            return self._html(429, unlock_page(portal, f"Too many wrong passphrases: try again in {wait:.0f} s. "
                                                       "Nothing was unlocked."))
        try:
            if portal.unlocked:
                if not portal.verify(passphrase):
                    raise KeystoreError("wrong passphrase")
            else:
                portal.unlock(passphrase)
                self.state.start_watcher()
        except KeystoreError as exc:
            log.info("unlock refused for %s", portal.name)  # never the passphrase
            self.state.note_unlock(False)
            return self._html(401, unlock_page(portal, explain(exc)))
        except MBDSError as exc:
            return self._html(503, unlock_page(portal, explain(exc)))
        log.info("%s unlocked", portal.name)
        self.state.note_unlock(True)
        return self._redirect("/", self._cookie(self.state.new_session()))

    def _act(self, action: str, form: dict[str, str]) -> tuple[Flash, str]:
        """Run one action; every failure becomes an error flash and changes nothing on the page's side."""
        p = self.state.portal
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


def _sse(update: Update) -> bytes:
    doc = {"event": update.event, "sections": list(update.sections), "message": update.message}
    return f"data: {json.dumps(doc)}\n\n".encode()


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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def make_server(portal: Portal, host: str = "127.0.0.1", port: int = 0) -> tuple[_Server, PortalState]:
    """A bound (not yet serving) portal server; ``port=0`` picks a free port."""
    state = PortalState(portal, host)
    handler = type("BoundPortalHandler", (PortalHandler,), {"state": state})
    server = _Server((host, port), handler)
    state.port = server.server_address[1]
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
    print(f"MBDS portal for {portal.name} ({portal.role}) at {url}"
          f"{'' if portal.unlocked else ' — open it and unlock with the passphrase'}", flush=True)

    def stop(*_a: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        state.stop()
        portal.lock()
        server.server_close()
    return 0


__all__ = ["PortalHandler", "PortalState", "add_arguments", "make_server", "run_portal"]
