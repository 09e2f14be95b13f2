"""The bundled storage node: a subset of the Kubo RPC API over a durable block store.

Endpoints (all ``POST``, as in Kubo)::

    /api/v0/add       multipart upload; ?pin=true&only-hash=false; NDJSON {"Name","Hash","Size"}
    /api/v0/cat       ?arg=CID[&offset=N][&length=N]; the file bytes
    /api/v0/pin/add   ?arg=CID...; {"Pins": [...]}
    /api/v0/pin/rm    ?arg=CID...; {"Pins": [...]}
    /api/v0/pin/ls    [?arg=CID...][&type=all|recursive|indirect|direct]; {"Keys": {...}}
    /api/v0/version   {"Version": ...}

CIDs are those of Kubo's default ``ipfs add`` (see :mod:`mbds_py.storage.unixfs`).
Errors are Kubo-shaped: ``{"Message": ..., "Code": 0, "Type": "error"}`` with
HTTP 500 (Code 1 and HTTP 400 for malformed requests, HTTP 413 for a blob over
the size limit).  Logs name CIDs and sizes, never content.

Run it with ``python -m mbds_py.storage.node --data-dir D [--port 5001]`` or
:func:`serve` from Python.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import signal
import socket
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from mbds_py import __version__
from mbds_py.cli_options import STORAGE_DEFAULT_MAX_BLOB_SIZE, STORAGE_DEFAULT_PORT, parse_size, storage_arguments
from mbds_py.errors import IntegrityError
from mbds_py.listen import inherited_sockets
from mbds_py.storage import multipart, unixfs
from mbds_py.storage.errors import (
    BlobTooLargeError,
    MalformedRequestError,
    NotFoundError,
    StorageError,
    UnsupportedContentError,
)
from mbds_py.storage.repo import FORMAT_VERSION, Repo

__all__ = [
    "DEFAULT_MAX_BLOB_SIZE",
    "DEFAULT_PORT",
    "StorageServer",
    "add_arguments",
    "main",
    "parse_size",
    "run_storage_node",
    "serve",
]

log = logging.getLogger("mbds.storage.node")

DEFAULT_PORT = STORAGE_DEFAULT_PORT
"""Kubo's RPC API port."""
DEFAULT_MAX_BLOB_SIZE = STORAGE_DEFAULT_MAX_BLOB_SIZE
"""Largest file accepted by ``add`` unless configured otherwise."""
MULTIPART_OVERHEAD = 64 * 1024
"""Room for multipart headers and delimiters on top of the blob limit."""
SMALL_BODY_LIMIT = 1024 * 1024
"""Largest body accepted by endpoints that take none (``cat``, ``pin/*``)."""
DRAIN_LIMIT = 1024 * 1024 * 1024
"""A rejected body up to this size is read and discarded so the client sees the error."""
AGENT = f"mbds-storage/{__version__}"


class _ApiError(Exception):
    """An error response: HTTP status, Kubo error code, message."""

    def __init__(self, status: int, message: str, code: int = 0):
        self.status = status
        self.code = code
        super().__init__(message)


def _api_error(exc: BaseException) -> _ApiError:
    """Map a storage error to the response Kubo would give."""
    if isinstance(exc, _ApiError):
        return exc
    if isinstance(exc, BlobTooLargeError):
        return _ApiError(413, str(exc), 1)
    if isinstance(exc, MalformedRequestError):
        return _ApiError(400, str(exc), 1)
    if isinstance(exc, (NotFoundError, IntegrityError, UnsupportedContentError, StorageError)):
        return _ApiError(500, str(exc), 0)
    if isinstance(exc, OSError):  # disk full, permissions, ...
        log.error("storage I/O failed: %s", exc)
        return _ApiError(500, f"storage I/O failed on the node: {exc}", 0)
    log.exception("internal error")
    return _ApiError(500, f"internal error: {type(exc).__name__}", 2)


# ---------------------------------------------------------------------------------------
# query helpers
# ---------------------------------------------------------------------------------------

_TRUE = {"1", "t", "true"}
_FALSE = {"0", "f", "false"}


def _one(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise MalformedRequestError(f"option {name!r} given more than once")
    return values[0]


def _bool(query: dict[str, list[str]], *names: str, default: bool) -> bool:
    for name in names:
        value = _one(query, name)
        if value is None:
            continue
        if value == "" or value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise MalformedRequestError(f"option {name!r}: {value!r} is not a boolean")
    return default


def _int(query: dict[str, list[str]], name: str, default: int | None) -> int | None:
    value = _one(query, name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise MalformedRequestError(f"option {name!r}: {value!r} is not an integer") from None
    if number < 0:
        raise MalformedRequestError(f"cannot specify negative {name}")
    return number


def _args(query: dict[str, list[str]], name: str = "ipfs-path") -> list[unixfs.CID]:
    values = query.get("arg") or []
    if not values:
        raise MalformedRequestError(f'argument "{name}" is required')
    return [unixfs.parse_cid(value) for value in values]


# add options with the only value this node implements (Kubo's defaults)
_ADD_FIXED = {
    "cid-version": {"0"},
    "raw-leaves": {"false", "0", "f"},
    "chunker": {"size-262144"},
    "hash": {"sha2-256"},
    "trickle": {"false", "0", "f"},
    "wrap-with-directory": {"false", "0", "f"},
    "inline": {"false", "0", "f"},
    "nocopy": {"false", "0", "f"},
}


# ---------------------------------------------------------------------------------------
# request handler
# ---------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = AGENT
    disable_nagle_algorithm = True
    timeout = 60  # seconds a connection may stay silent (idle keep-alive or stalled body)
    server: StorageServer

    # -- plumbing ---------------------------------------------------------------------------

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s " + format, self.client_address[0], *args)

    def _reject_method(self) -> None:
        self._started = time.perf_counter()
        self._status = 405
        self._drain_body()  # keep the connection in sync for keep-alive
        self._send_error(_ApiError(405, f"method {self.command} not allowed; the RPC API takes POST", 1))
        self._log_request()

    do_GET = do_PUT = do_DELETE = do_PATCH = _reject_method  # noqa: N815

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        self._started = time.perf_counter()
        self._status = 0
        self._body_done = False
        split = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(split.query, keep_blank_values=True)
        route = self._routes().get(split.path.rstrip("/"))
        try:
            if self.headers.get("Origin"):
                # a browser page may not drive this API (Kubo's default CORS stance)
                self._drain_body()
                raise _ApiError(403, "cross-origin requests are not allowed", 1)
            if route is None:
                self._drain_body()
                self._send_plain(404, "404 page not found\n")
            else:
                route(query)
        except Exception as exc:  # every failure becomes a Kubo-shaped response
            if self._status:  # headers already out: only closing the connection can signal it
                level = logging.DEBUG if isinstance(exc, ConnectionError) else logging.WARNING
                log.log(level, "%s failed mid-response: %s", split.path, exc)
                self.close_connection = True
            else:
                if not self._body_done:
                    self._drain_body()  # keep the connection in sync, let the client read the error
                self._send_error(_api_error(exc))
        self._log_request()

    def _log_request(self) -> None:
        elapsed = (time.perf_counter() - self._started) * 1000
        path = urllib.parse.urlsplit(self.path).path
        log.info("%s %s -> %d (%.1f ms)", self.command, path, self._status, elapsed)

    def _routes(self) -> dict[str, Callable[[dict[str, list[str]]], None]]:
        return {
            "/api/v0/add": self._add,
            "/api/v0/cat": self._cat,
            "/api/v0/pin/add": self._pin_add,
            "/api/v0/pin/rm": self._pin_rm,
            "/api/v0/pin/ls": self._pin_ls,
            "/api/v0/version": self._version,
        }

    def _send_head(self, status: int, content_type: str, length: int,
                   extra: Iterable[tuple[str, str]] = ()) -> None:
        self._status = status
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        for name, value in extra:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()

    def _send_bytes(self, status: int, content_type: str, body: bytes,
                    extra: Iterable[tuple[str, str]] = ()) -> None:
        self._send_head(status, content_type, len(body), extra)
        self.wfile.write(body)

    def _send_plain(self, status: int, text: str) -> None:
        self._send_bytes(status, "text/plain; charset=utf-8", text.encode())

    def _send_json(self, obj: object, *, lines: bool = False) -> None:
        if lines:
            body = b"".join(json.dumps(item).encode() + b"\n" for item in obj)  # type: ignore[union-attr]
        else:
            body = json.dumps(obj).encode() + b"\n"
        self._send_bytes(200, "application/json", body, [("X-Chunked-Output", "1")] if lines else [])

    def _send_error(self, err: _ApiError) -> None:
        body = json.dumps({"Message": str(err), "Code": err.code, "Type": "error"}).encode() + b"\n"
        try:
            self._send_bytes(err.status, "application/json", body)
        except OSError:  # client went away
            self.close_connection = True

    # -- request bodies ------------------------------------------------------------------------

    def _content_length(self) -> int | None:
        raw = self.headers.get("Content-Length")
        if raw is None:
            return None
        if not raw.strip().isdigit():
            self.close_connection = True
            raise MalformedRequestError(f"invalid Content-Length {raw!r}")
        return int(raw)

    def _chunked(self) -> bool:
        encoding = self.headers.get("Transfer-Encoding", "").strip().lower()
        if encoding in ("", "identity"):
            return False
        if encoding != "chunked":
            self.close_connection = True
            raise MalformedRequestError(f"unsupported Transfer-Encoding {encoding!r}")
        return True

    def _read_chunked(self, limit: int) -> bytes:
        """Decode a chunked body; past ``limit`` keep reading (up to DRAIN_LIMIT) but drop it."""
        out = bytearray()
        total = 0
        while True:
            line = self.rfile.readline(1024)
            if not line.endswith(b"\n"):
                self.close_connection = True
                raise MalformedRequestError("chunked request body ended early")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                raise MalformedRequestError("malformed chunk size in chunked request body") from None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                break
            total += size
            if total > DRAIN_LIMIT:
                self.close_connection = True
                break
            data = self.rfile.read(size)
            if len(data) != size or self.rfile.read(2) != b"\r\n":
                self.close_connection = True
                raise MalformedRequestError("chunked request body ended early")
            if total <= limit:
                out += data
        if total > limit:
            raise BlobTooLargeError(
                f"request body of at least {total} bytes exceeds this node's limit of {limit} bytes; "
                "split the data or raise the node's --max-blob-size")
        return bytes(out)

    def _read_body(self, limit: int) -> bytes:
        self._body_done = True  # from here on the body is consumed or the connection closed
        try:
            return self._read_body_unguarded(limit)
        except (TimeoutError, ConnectionError) as exc:
            self.close_connection = True
            raise MalformedRequestError(f"request body not received in full ({exc.__class__.__name__})") from exc

    def _read_body_unguarded(self, limit: int) -> bytes:
        if self._chunked():
            return self._read_chunked(limit)
        length = self._content_length()
        if length is None:
            return b""
        if length > limit:
            self._discard(length)
            raise BlobTooLargeError(
                f"request body of {length} bytes exceeds this node's limit of {limit} bytes; "
                "split the data or raise the node's --max-blob-size")
        data = self.rfile.read(length)
        if len(data) != length:
            self.close_connection = True
            raise MalformedRequestError(f"request body ended after {len(data)} of {length} bytes")
        return data

    def _discard(self, length: int) -> None:
        if length > DRAIN_LIMIT:
            self.close_connection = True
            return
        remaining = length
        while remaining:
            piece = self.rfile.read(min(remaining, 1 << 20))
            if not piece:
                self.close_connection = True
                return
            remaining -= len(piece)

    def _drain_body(self) -> None:
        self._body_done = True
        try:
            if self._chunked():
                self._read_chunked(0)
            else:
                self._discard(self._content_length() or 0)
        except (MalformedRequestError, BlobTooLargeError, OSError):
            self.close_connection = True

    # -- endpoints ---------------------------------------------------------------------------------

    def _add(self, query: dict[str, list[str]]) -> None:
        pin = _bool(query, "pin", default=True)
        only_hash = _bool(query, "only-hash", "n", default=False)
        for name, allowed in _ADD_FIXED.items():
            value = _one(query, name)
            if value is not None and value.lower() not in allowed:
                raise MalformedRequestError(
                    f"option {name}={value} is not supported; this node imports with Kubo's defaults "
                    "(cid-version=0, raw-leaves=false, chunker=size-262144, hash=sha2-256, balanced layout)")
        limit = self.server.max_blob_size
        body = self._read_body(limit + MULTIPART_OVERHEAD)
        files = multipart.parse_files(body, self.headers.get("Content-Type"))
        for part in files:
            if len(part.data) > limit:
                raise BlobTooLargeError(
                    f"file {part.filename or ''!r} of {len(part.data)} bytes exceeds this node's limit of "
                    f"{limit} bytes; split the data or raise the node's --max-blob-size")
        results = []
        for part in files:
            result = self.server.repo.add(part.data, pin=pin, only_hash=only_hash)
            log.info("added %s (%d bytes, pin=%s, only-hash=%s)", result.cid, result.filesize, pin, only_hash)
            results.append({"Name": part.filename or result.cid, "Hash": result.cid, "Size": str(result.size)})
        self._send_json(results, lines=True)

    def _cat(self, query: dict[str, list[str]]) -> None:
        self._read_body(SMALL_BODY_LIMIT)
        cids = _args(query)
        offset = _int(query, "offset", 0) or 0
        length = _int(query, "length", None)
        streams = [self.server.repo.cat(cid, offset=offset, length=length) for cid in cids]
        total = sum(stream.length for stream in streams)
        self._send_head(200, "text/plain", total, [
            ("X-Stream-Output", "1"),
            ("X-Content-Length", str(sum(stream.filesize for stream in streams))),
        ])
        for stream in streams:
            for chunk in stream.chunks:
                self.wfile.write(chunk)

    def _pin_add(self, query: dict[str, list[str]]) -> None:
        self._read_body(SMALL_BODY_LIMIT)
        if not _bool(query, "recursive", "r", default=True):
            raise MalformedRequestError("only recursive pins are supported; drop recursive=false")
        pinned = [str(self.server.repo.pin(cid)) for cid in _args(query)]
        log.info("pinned %s", ", ".join(pinned))
        self._send_json({"Pins": pinned})

    def _pin_rm(self, query: dict[str, list[str]]) -> None:
        self._read_body(SMALL_BODY_LIMIT)
        cids = _args(query)
        removed = [str(self.server.repo.unpin(cid)) for cid in cids]
        log.info("unpinned %s", ", ".join(removed))
        self._send_json({"Pins": removed})

    def _pin_ls(self, query: dict[str, list[str]]) -> None:
        self._read_body(SMALL_BODY_LIMIT)
        kind = (_one(query, "type") or "all").lower()
        if kind not in ("all", "recursive", "indirect", "direct"):
            raise MalformedRequestError(f"invalid pin type {kind!r}; use all, recursive, indirect or direct")
        repo = self.server.repo
        recursive = {str(cid): cid for cid in repo.pins()}
        keys: dict[str, dict[str, str]] = {}
        want_indirect = kind in ("all", "indirect")

        def indirect_of(root: unixfs.CID) -> list[str]:
            return [str(cid) for cid in list(repo.dag_blocks(root))[1:]]

        if query.get("arg"):
            for cid in _args(query, "ipfs-path"):
                text = str(cid)
                if repo.is_pinned(cid) and kind in ("all", "recursive"):
                    keys[text] = {"Type": "recursive"}
                    continue
                via = next((root for root, rcid in recursive.items()
                            if want_indirect and text in indirect_of(rcid)), None)
                if via is None:
                    raise NotFoundError(f"path '{text}' is not pinned")
                keys[text] = {"Type": f"indirect through {via}"}
        else:
            if kind in ("all", "recursive"):
                keys.update({text: {"Type": "recursive"} for text in recursive})
            if want_indirect:
                for rcid in recursive.values():
                    for text in indirect_of(rcid):
                        keys.setdefault(text, {"Type": "indirect"})
        self._send_json({"Keys": keys})

    def _version(self, query: dict[str, list[str]]) -> None:
        self._read_body(SMALL_BODY_LIMIT)
        self._send_json({
            "Version": __version__,
            "Commit": "",
            "Repo": str(FORMAT_VERSION),
            "System": f"{platform.machine()}/{sys.platform}",
            "Golang": "",
            "Agent": AGENT,
        })


# ---------------------------------------------------------------------------------------
# server
# ---------------------------------------------------------------------------------------


class StorageServer(ThreadingHTTPServer):
    """The HTTP server of one storage node; :meth:`shutdown` stops it and closes the repo."""

    daemon_threads = False
    block_on_close = True  # server_close joins the handler threads

    def __init__(self, address: tuple[str, int], repo: Repo, *, max_blob_size: int = DEFAULT_MAX_BLOB_SIZE,
                 sock: socket.socket | None = None):
        if max_blob_size <= 0:
            raise ValueError("max_blob_size must be positive")
        self.repo = repo
        self.max_blob_size = max_blob_size
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped = False
        super().__init__(address, _Handler, bind_and_activate=sock is None)
        if sock is not None:  # an already-listening socket handed down by the launcher
            self.socket.close()
            self.socket = sock
            self.server_address = sock.getsockname()[:2]

    @property
    def port(self) -> int:
        """The TCP port actually bound (useful after binding port 0)."""
        return self.server_address[1]

    @property
    def url(self) -> str:
        """Base URL of the RPC API, e.g. ``http://127.0.0.1:5001``."""
        host = self.server_address[0]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket) -> None:  # type: ignore[override]
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: object, client_address: object) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            log.debug("connection from %s ended: %s", client_address, exc)
        else:
            log.exception("error serving %s", client_address)

    def start(self) -> StorageServer:
        """Serve in a background thread; returns self."""
        if self._thread is None:
            self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                            name=f"storage-node:{self.port}", daemon=True)
            self._thread.start()
        return self

    def shutdown(self) -> None:
        """Stop serving, end open connections, wait for handlers, close the repo (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        if self._thread is not None:
            super().shutdown()
            self._thread.join()
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.server_close()
        self.repo.close()

    def __enter__(self) -> StorageServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def serve(host: str, port: int, data_dir: str | os.PathLike[str], *,
          max_blob_size: int = DEFAULT_MAX_BLOB_SIZE, verify_on_read: bool = True,
          sock: socket.socket | None = None) -> StorageServer:
    """Open ``data_dir``, bind ``host:port`` (0 = any free port) and serve in a background thread.

    ``sock``: an already-listening socket (handed down by the launcher) to serve instead of binding.

    Returns the running :class:`StorageServer`; call ``.shutdown()`` to stop it.
    Raises :class:`StorageError` if the data dir is in use or the port is taken.
    """
    repo = Repo(data_dir, verify_on_read=verify_on_read)
    try:
        server = StorageServer((host, port), repo, max_blob_size=max_blob_size, sock=sock)
    except OSError as exc:
        repo.close()
        raise StorageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; "
                           "choose another --port (0 picks a free one)") from exc
    except BaseException:
        repo.close()
        raise
    return server.start()


# ---------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------

add_arguments = storage_arguments  # the options live in mbds_py.cli_options (cheap to import)


def _write_ready_file(path: Path, url: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".ready-")
    with os.fdopen(fd, "w") as handle:
        json.dump({"url": url, "pid": os.getpid()}, handle)
    os.replace(tmp, path)


def run_storage_node(args: argparse.Namespace) -> int:
    """Run a node until SIGTERM or SIGINT; ``args`` as built by :func:`add_arguments`.

    Returns the process exit code (0 after a clean stop, 1 if it cannot start).
    """
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        sock = inherited_sockets(args.listen).get("http")
        server = serve(args.host, args.port, args.data_dir, sock=sock,
                       max_blob_size=args.max_blob_size, verify_on_read=args.verify_on_read)
    except StorageError as exc:
        print(f"mbds storage node: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        print(f"mbds storage node: RPC API server listening on {server.url} (data dir {args.data_dir})",
              flush=True)
        if args.ready_file is not None:
            _write_ready_file(args.ready_file, server.url)
        stop.wait()
        log.info("stopping")
    finally:
        server.shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m mbds_py.storage.node`` entry point."""
    parser = argparse.ArgumentParser(prog="python -m mbds_py.storage.node",
                                     description="MBDS storage node (Kubo RPC API subset)")
    add_arguments(parser)
    return run_storage_node(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
