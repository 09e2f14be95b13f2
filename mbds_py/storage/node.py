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

Served by aiohttp (:mod:`mbds_py.web`): ``add`` reads the multipart upload part by part
(at most one file, bounded by ``--max-blob-size``, in memory at a time) and ``cat``
streams the file out; the repo's blocking work runs in the app's worker pool.

Run it with ``python -m mbds_py.storage.node --data-dir D [--port 5001]`` or
:func:`serve` from Python.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import itertools
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
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

from aiohttp import BodyPartReader, hdrs, web
from aiohttp.helpers import parse_mimetype
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.multipart import parse_content_disposition

from mbds_py import __version__
from mbds_py.cli_options import STORAGE_DEFAULT_MAX_BLOB_SIZE, STORAGE_DEFAULT_PORT, parse_size, storage_arguments
from mbds_py.errors import IntegrityError, MBDSError
from mbds_py.listen import bind_listener, inherited_sockets
from mbds_py.storage import unixfs
from mbds_py.storage.errors import (
    BlobTooLargeError,
    MalformedRequestError,
    NotFoundError,
    StorageError,
    UnsupportedContentError,
)
from mbds_py.storage.repo import FORMAT_VERSION, Repo
from mbds_py.web import EXECUTOR, Server, blocking, make_app

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

T = TypeVar("T")
log = logging.getLogger("mbds.storage.node")

DEFAULT_PORT = STORAGE_DEFAULT_PORT
"""Kubo's RPC API port."""
DEFAULT_MAX_BLOB_SIZE = STORAGE_DEFAULT_MAX_BLOB_SIZE
"""Largest file accepted by ``add`` unless configured otherwise."""
MULTIPART_OVERHEAD = 64 * 1024
"""Room for multipart headers and delimiters: a declared ``add`` body over the limit plus this is refused at once."""
SMALL_BODY_LIMIT = 1024 * 1024
"""Largest body accepted by endpoints that take none (``cat``, ``pin/*``)."""
BODY_TIMEOUT = 60.0
"""Seconds a request body may stay silent before the request is refused and its connection closed."""
PART_CHUNK = 256 * 1024
"""Bytes asked of the multipart reader at a time."""
CAT_BATCH = 1024 * 1024
"""Bytes of a file ``cat`` reads from the repo per trip to the worker pool."""
AGENT = f"mbds-storage/{__version__}"
_DIRECTORY_TYPES = {"application/x-directory", "application/symlink"}


class _ApiError(StorageError):
    """An error response: HTTP status, Kubo error code, message."""

    def __init__(self, status: int, message: str, code: int = 0):
        self.status = status
        self.code = code
        super().__init__(message)


class _BrokenBody(MalformedRequestError):
    """The request body stalled, broke off or broke its framing: answered 400, connection closed."""


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


def _too_large(what: str, size: str, limit: int) -> BlobTooLargeError:
    return BlobTooLargeError(f"{what} of {size} bytes exceeds this node's limit of {limit} bytes; "
                             "split the data or raise the node's --max-blob-size")


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
# request bodies
# ---------------------------------------------------------------------------------------


async def _read(pending: Awaitable[T]) -> T:
    """One read of a request body; silence, a lost connection or broken framing is :class:`_BrokenBody`."""
    try:
        async with asyncio.timeout(BODY_TIMEOUT):
            return await pending
    except TimeoutError:
        raise _BrokenBody(f"request body not received in full (nothing for {BODY_TIMEOUT:g} s)") from None
    except ConnectionError:
        raise _BrokenBody("request body not received in full (connection lost)") from None
    except HttpProcessingError as exc:
        raise _BrokenBody(f"malformed request body: {str(exc.message).splitlines()[0]}") from None


async def _skip_body(request: web.Request, limit: int = SMALL_BODY_LIMIT) -> None:
    """Read and drop the body of an endpoint that takes none (up to ``limit`` bytes)."""
    if not request.body_exists:
        return
    declared = request.content_length
    if declared is not None and declared > limit:
        raise _too_large("request body", str(declared), limit)
    total = 0
    while chunk := await _read(request.content.readany()):
        total += len(chunk)
        if total > limit:
            raise _too_large("request body", f"at least {total}", limit)


def _mime(content_type: str | None) -> str:
    """``type/subtype`` of a Content-Type header, lower-cased (``application/octet-stream`` if absent)."""
    mime = parse_mimetype(content_type or "application/octet-stream")
    return f"{mime.type}/{mime.subtype}"


def _multipart_type(content_type: str | None) -> None:
    """Refuse a Content-Type that is not multipart with a usable boundary."""
    if not content_type:
        raise MalformedRequestError("add needs a multipart/form-data body with the file; Content-Type is missing")
    if (mime := _mime(content_type)) not in ("multipart/form-data", "multipart/mixed"):
        raise MalformedRequestError(f"add needs a multipart/form-data body, got Content-Type {mime!r}")
    if not 1 <= len(parse_mimetype(content_type).parameters.get("boundary", "")) <= 70:
        raise MalformedRequestError("multipart Content-Type has no valid boundary parameter")


@functools.lru_cache(maxsize=64)
def _disposition(header: str | None) -> tuple[str, str | None]:
    """The lower-cased type and the (percent-decoded) file name of a part's Content-Disposition.

    Cached: aiohttp's parser takes ~0.1 ms a call, and a client sends the same header with every file.
    """
    disposition, params = parse_content_disposition(header)
    filename = params.get("filename")
    return (disposition or "").lower(), urllib.parse.unquote(filename) if filename is not None else None


async def _multipart_step(pending: Awaitable[T], malformed: str) -> T:
    """One step of aiohttp's multipart reader; a body it cannot read is refused, saying ``malformed``."""
    try:
        return await _read(pending)
    except StorageError:
        raise
    except (ValueError, AssertionError) as exc:  # how aiohttp's reader meets a malformed body
        raise MalformedRequestError(f"{malformed} ({exc})") from None


async def _files(request: web.Request, limit: int) -> AsyncIterator[tuple[str | None, bytearray]]:
    """The files of a multipart upload, one at a time, each read whole (at most ``limit`` bytes).

    A file is handed out only once the delimiter after it has arrived: a body cut short stores nothing of its
    last part.
    """
    _multipart_type(request.headers.get(hdrs.CONTENT_TYPE))
    reader = await request.multipart()
    done: tuple[str | None, bytearray] | None = None
    count = 0
    while True:
        part = await _multipart_step(reader.next(), "multipart body is truncated or malformed" if count
                                     else "multipart body does not contain its boundary")
        if done is not None:
            yield done
        if part is None:
            break
        count += 1
        if not isinstance(part, BodyPartReader) or _mime(part.headers.get(hdrs.CONTENT_TYPE)) in _DIRECTORY_TYPES:
            raise MalformedRequestError("directories and symlinks are not supported; add each file on its own")
        disposition, filename = _disposition(part.headers.get(hdrs.CONTENT_DISPOSITION))
        if disposition != "form-data":
            raise MalformedRequestError("multipart part without 'Content-Disposition: form-data'")
        data = bytearray()
        while chunk := await _multipart_step(part.read_chunk(PART_CHUNK),
                                             "multipart body is truncated: closing boundary missing"):
            data += chunk
            if len(data) > limit:
                raise _too_large(f"file {filename or ''!r}", f"more than {limit}", limit)
        done = filename, data
    if not count:
        raise MalformedRequestError("multipart body holds no file")


# ---------------------------------------------------------------------------------------
# request handler
# ---------------------------------------------------------------------------------------

Query = dict[str, list[str]]
Endpoint = Callable[[web.Request, Query], Awaitable[web.StreamResponse]]


def _json_response(obj: object) -> web.Response:
    return web.Response(body=json.dumps(obj).encode() + b"\n", headers={"Content-Type": "application/json"})


def _error_response(err: _ApiError) -> web.Response:
    body = json.dumps({"Message": str(err), "Code": err.code, "Type": "error"}).encode() + b"\n"
    return web.Response(status=err.status, body=body, headers={"Content-Type": "application/json"})


def _pull(chunks: Iterator[memoryview]) -> list[memoryview]:
    """The next chunks of a file, about :data:`CAT_BATCH` bytes (blocking: reads and checks blocks)."""
    batch: list[memoryview] = []
    size = 0
    for chunk in chunks:
        batch.append(chunk)
        size += len(chunk)
        if size >= CAT_BATCH:
            break
    return batch


class _Handler:
    """The RPC API of one node: one aiohttp handler dispatching to the endpoints."""

    def __init__(self, server: StorageServer):
        self.server = server
        self.repo = server.repo
        self.routes = self._routes()

    def _routes(self) -> dict[str, Endpoint]:
        return {
            "/api/v0/add": self._add,
            "/api/v0/cat": self._cat,
            "/api/v0/pin/add": self._pin_add,
            "/api/v0/pin/rm": self._pin_rm,
            "/api/v0/pin/ls": self._pin_ls,
            "/api/v0/version": self._version,
        }

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Answer one request and log its outcome (never its content)."""
        started = time.perf_counter()
        response = await self._answer(request)
        log.info("%s %s -> %d (%.1f ms)", request.method, request.path, response.status,
                 (time.perf_counter() - started) * 1000)
        return response

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        """Every failure before the answer starts becomes a Kubo-shaped error (the unread body is drained)."""
        try:
            if request.method != "POST":
                raise _ApiError(405, f"method {request.method} not allowed; the RPC API takes POST", 1)
            if request.headers.get("Origin"):
                # a browser page may not drive this API (Kubo's default CORS stance)
                raise _ApiError(403, "cross-origin requests are not allowed", 1)
            route = self.routes.get(request.path.rstrip("/"))
            if route is None:
                return web.Response(status=404, text="404 page not found\n")
            query = urllib.parse.parse_qs(request.rel_url.raw_query_string, keep_blank_values=True)
            return await route(request, query)
        except Exception as exc:  # every failure becomes a Kubo-shaped response
            response = _error_response(_api_error(exc))
            if isinstance(exc, _BrokenBody):  # the rest of the body will not come or not make sense: hang up
                response.force_close()
                await response.prepare(request)
                await response.write_eof()
                request.protocol.force_close()  # sends what is written, then closes
            return response

    # -- endpoints ---------------------------------------------------------------------------------

    async def _add(self, request: web.Request, query: Query) -> web.Response:
        pin = _bool(query, "pin", default=True)
        only_hash = _bool(query, "only-hash", "n", default=False)
        for name, allowed in _ADD_FIXED.items():
            value = _one(query, name)
            if value is not None and value.lower() not in allowed:
                raise MalformedRequestError(
                    f"option {name}={value} is not supported; this node imports with Kubo's defaults "
                    "(cid-version=0, raw-leaves=false, chunker=size-262144, hash=sha2-256, balanced layout)")
        limit = self.server.max_blob_size
        declared = request.content_length
        if declared is not None and declared > limit + MULTIPART_OVERHEAD:
            raise _too_large("request body", str(declared), limit)
        add = functools.partial(self.repo.add, pin=pin, only_hash=only_hash)
        lines = []
        async for filename, data in _files(request, limit):
            result = await blocking(request, add, memoryview(data))
            log.info("added %s (%d bytes, pin=%s, only-hash=%s)", result.cid, result.filesize, pin, only_hash)
            lines.append(json.dumps({"Name": filename or result.cid, "Hash": result.cid,
                                     "Size": str(result.size)}).encode() + b"\n")
        return web.Response(body=b"".join(lines),
                            headers={"Content-Type": "application/json", "X-Chunked-Output": "1"})

    def _open(self, cids: list[unixfs.CID], offset: int, length: int | None
              ) -> tuple[int, int, Iterator[memoryview], list[memoryview]]:
        """Check every block in range; the bytes to send, the files' size, the chunks and the first batch."""
        streams = [self.repo.cat(cid, offset=offset, length=length) for cid in cids]
        chunks = itertools.chain.from_iterable(stream.chunks for stream in streams)
        return (sum(stream.length for stream in streams), sum(stream.filesize for stream in streams),
                chunks, _pull(chunks))

    async def _cat(self, request: web.Request, query: Query) -> web.StreamResponse:
        await _skip_body(request)
        cids = _args(query)
        offset = _int(query, "offset", 0) or 0
        length = _int(query, "length", None)
        total, filesize, chunks, batch = await blocking(request, self._open, cids, offset, length)
        headers = {"Content-Type": "text/plain", "X-Stream-Output": "1", "X-Content-Length": str(filesize)}
        if sum(map(len, batch)) == total:  # all of it came in the first batch: one write
            return web.Response(body=b"".join(batch), headers=headers)
        response = web.StreamResponse(headers=headers)
        response.content_length = total
        await response.prepare(request)
        remaining = total
        try:
            while True:
                for chunk in batch:
                    await response.write(chunk)
                    remaining -= len(chunk)
                if remaining <= 0 or not batch:
                    break
                batch = await blocking(request, _pull, chunks)
        except (MBDSError, OSError) as exc:  # headers are out: only closing the connection can signal it
            level = logging.DEBUG if isinstance(exc, ConnectionError) else logging.WARNING
            log.log(level, "%s failed mid-response: %s", request.path, exc)
            response.force_close()
            return response
        await response.write_eof()
        return response

    async def _pin_add(self, request: web.Request, query: Query) -> web.Response:
        await _skip_body(request)
        if not _bool(query, "recursive", "r", default=True):
            raise MalformedRequestError("only recursive pins are supported; drop recursive=false")
        cids = _args(query)
        pinned = await blocking(request, lambda: [str(self.repo.pin(cid)) for cid in cids])
        log.info("pinned %s", ", ".join(pinned))
        return _json_response({"Pins": pinned})

    async def _pin_rm(self, request: web.Request, query: Query) -> web.Response:
        await _skip_body(request)
        cids = _args(query)
        removed = await blocking(request, lambda: [str(self.repo.unpin(cid)) for cid in cids])
        log.info("unpinned %s", ", ".join(removed))
        return _json_response({"Pins": removed})

    async def _pin_ls(self, request: web.Request, query: Query) -> web.Response:
        await _skip_body(request)
        kind = (_one(query, "type") or "all").lower()
        if kind not in ("all", "recursive", "indirect", "direct"):
            raise MalformedRequestError(f"invalid pin type {kind!r}; use all, recursive, indirect or direct")
        asked = _args(query, "ipfs-path") if query.get("arg") else None
        return _json_response({"Keys": await blocking(request, self._pin_keys, kind, asked)})

    def _pin_keys(self, kind: str, asked: list[unixfs.CID] | None) -> dict[str, dict[str, str]]:
        repo = self.repo
        recursive = {str(cid): cid for cid in repo.pins()}
        keys: dict[str, dict[str, str]] = {}
        want_indirect = kind in ("all", "indirect")

        def indirect_of(root: unixfs.CID) -> list[str]:
            return [str(cid) for cid in list(repo.dag_blocks(root))[1:]]

        if asked is not None:
            for cid in asked:
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
        return keys

    async def _version(self, request: web.Request, query: Query) -> web.Response:
        await _skip_body(request)
        return _json_response({
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


class StorageServer:
    """The HTTP server of one storage node; :meth:`shutdown` stops it and closes the repo."""

    def __init__(self, address: tuple[str, int], repo: Repo, *, max_blob_size: int = DEFAULT_MAX_BLOB_SIZE,
                 sock: socket.socket | None = None):
        if max_blob_size <= 0:
            raise ValueError("max_blob_size must be positive")
        self.repo = repo
        self.max_blob_size = max_blob_size
        if sock is None:  # else an already-listening socket handed down by the launcher
            sock = bind_listener(address[0], address[1], what="storage node")
        app = make_app(server_name=AGENT, max_body=SMALL_BODY_LIMIT)
        app.router.add_route("*", "/{path:.*}", _Handler(self).handle)
        self._server = Server(app, sock, name="storage-node")
        self._stopped = False

    @property
    def port(self) -> int:
        """The TCP port actually bound (useful after binding port 0)."""
        return self._server.port

    @property
    def url(self) -> str:
        """Base URL of the RPC API, e.g. ``http://127.0.0.1:5001``."""
        return self._server.url

    def start(self) -> StorageServer:
        """Serve from a background thread (its own event loop); returns self."""
        self._server.start()
        return self

    def shutdown(self) -> None:
        """Stop serving, end open connections, wait for the repo work in flight, close the repo (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        self._server.stop()
        self._server.app[EXECUTOR].shutdown(wait=True)
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
