"""The one HTTP framework of every MBDS service: aiohttp.

Why aiohttp (measured and recorded in ``docs/operations.md``): it is already in the pinned tree (web3
depends on it), so the services add no second server stack; its streaming request reader, multipart
reader and chunked decoding are maintained upstream; aiohttp-sse (aio-libs) serves the portal's events;
and in a keep-alive micro-benchmark it was level with Starlette on uvicorn (httptools) for small JSON
answers and faster for streamed uploads.

This module holds only the plumbing every service shares:

- :class:`Server` serves an :class:`aiohttp.web.Application` on an already-listening socket from a
  thread of its own (its own event loop), for the services whose core is synchronous;
  :func:`serve_on_loop` serves one on a loop that is already running (a replica's).
- :func:`json_response`, :func:`read_body`, :func:`read_json_object`: bounded bodies, JSON answers.
- :func:`blocking` runs synchronous service code in the app's worker pool, off the event loop.
- :func:`error_middleware` answers exceptions: the MBDS error root and bad input with 400 and the
  message, anything else with 500 (logged, with its traceback; never a request body).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from .apidoc import PATH as OPENAPI_PATH
from .apidoc import openapi_bytes
from .errors import MBDSError
from .listen import BACKLOG
from .spec import http_url

T = TypeVar("T")
log = logging.getLogger("mbds.http")

DEFAULT_MAX_BODY = 16 * 1024 * 1024
DEFAULT_WORKERS = 32  # blocking handlers (chain calls, crypto) in flight at once per service
SHUTDOWN_TIMEOUT = 2.0  # seconds open requests get to finish when a service stops
KEEPALIVE_TIMEOUT = 60.0  # seconds an idle kept-alive connection stays open
EXECUTOR = web.AppKey("executor", ThreadPoolExecutor)
MAX_BODY = web.AppKey("max_body", int)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _MalformedRequestFilter(logging.Filter):
    """aiohttp logs a request it cannot parse (a bad chunk size, a broken header) with a traceback;
    that is the client's fault, answered with 400, so one line without the traceback is enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg, record.args = "refused a malformed request: %s", (str(exc.message).splitlines()[0],)
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.exc_info = record.exc_text = None
        return True


logging.getLogger("aiohttp.server").addFilter(_MalformedRequestFilter())


class RequestError(MBDSError, ValueError):
    """A malformed request; answered with HTTP 400 and the message."""


def make_app(*, server_name: str, max_body: int = DEFAULT_MAX_BODY, workers: int = DEFAULT_WORKERS,
             middlewares: tuple[Any, ...] = (), openapi: str | None = None) -> web.Application:
    """An application with the shared middlewares, a body limit and a worker pool for blocking code.

    ``server_name`` is sent as the ``Server`` header (e.g. ``mbds-proxy/1``); ``max_body`` bounds any
    body read whole (aiohttp answers 413 beyond it); ``middlewares`` run inside the error middleware;
    ``openapi`` names the service whose committed OpenAPI document ``GET /openapi.json`` serves.
    """
    app = web.Application(client_max_size=max_body,
                          middlewares=[_server_header(server_name), error_middleware, *middlewares])
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=server_name.split("/")[0])
    app[EXECUTOR] = executor
    app[MAX_BODY] = max_body

    async def close_executor(_app: web.Application) -> None:
        executor.shutdown(wait=False, cancel_futures=True)

    app.on_cleanup.append(close_executor)
    if openapi is not None:
        document = openapi_bytes(openapi)

        async def serve_document(_request: web.Request) -> web.Response:
            return bytes_response(document, content_type="application/json")

        app.router.add_get(OPENAPI_PATH, serve_document)
    return app


def _server_header(name: str):
    @web.middleware
    async def server_header(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if not response.prepared:
            response.headers["Server"] = name
        return response

    return server_header


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Exceptions become JSON answers: HTTP errors keep their status, bad input is 400, the rest 500."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        reason = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        if exc.status == 404:
            reason = f"unknown endpoint {request.method} {request.path}"
        elif exc.status == 405:
            reason = f"method {request.method} not allowed on {request.path}"
        return json_response({"error": reason}, status=exc.status, headers=_kept_headers(exc))
    except (MBDSError, ValueError, KeyError) as exc:
        return json_response({"error": str(exc)}, status=400)
    except (asyncio.CancelledError, ConnectionError):
        raise
    except Exception as exc:  # noqa: BLE001 - answer, never drop the connection silently
        log.exception("%s %s failed", request.method, request.path)
        return json_response({"error": f"{type(exc).__name__}: {exc}"}, status=500)


def _kept_headers(exc: web.HTTPException) -> dict[str, str]:
    return {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}


def json_response(doc: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """``doc`` as a JSON answer."""
    return web.Response(body=json.dumps(doc).encode(), status=status, headers=headers,
                        content_type="application/json")


def bytes_response(data: bytes, *, status: int = 200, content_type: str = "application/octet-stream") -> web.Response:
    return web.Response(body=data, status=status, content_type=content_type)


async def read_body(request: web.Request, *, limit: int | None = None) -> bytes:
    """The whole request body, 1..``limit`` bytes (default: the app's ``client_max_size``).

    A declared or streamed body over the limit is refused with 413 without being read in full.
    """
    limit = limit if limit is not None else request.app[MAX_BODY]
    declared = request.content_length
    if declared is not None and declared > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=declared)
    data = bytearray()
    async for chunk in request.content.iter_any():
        data += chunk
        if len(data) > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(data))
    if not data:
        raise RequestError(f"{request.method} {request.path}: the request needs a body (1..{limit} bytes)")
    return bytes(data)


async def read_json_object(request: web.Request, *, limit: int | None = None) -> dict[str, Any]:
    """The request body as a JSON object; :class:`RequestError` when it is not one."""
    body = await read_body(request, limit=limit)
    try:
        doc = json.loads(body)
    except ValueError:
        raise RequestError(f"{request.method} {request.path}: the request body is not JSON") from None
    if not isinstance(doc, dict):
        raise RequestError(f"{request.method} {request.path}: the request body must be a JSON object")
    return doc


async def blocking(request: web.Request, fn: Callable[..., T], *args: Any) -> T:
    """Run the synchronous ``fn(*args)`` in the app's worker pool and await its result."""
    return await asyncio.get_running_loop().run_in_executor(request.app[EXECUTOR], fn, *args)


def url_of(sock: socket.socket) -> str:
    """``http://host:port`` of a listening socket (IPv6 hosts bracketed)."""
    host, port = sock.getsockname()[:2]
    return http_url(host, port)


async def serve_on_loop(app: web.Application, sock: socket.socket) -> web.AppRunner:
    """Serve ``app`` on ``sock`` from the running loop; ``await runner.cleanup()`` stops it."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT,
                           keepalive_timeout=KEEPALIVE_TIMEOUT)
    await runner.setup()
    await web.SockSite(runner, sock, backlog=BACKLOG).start()
    return runner


def _cancel_remaining(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel the tasks still pending on ``loop`` and let them finish, so none is destroyed pending."""
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


class Server:
    """An aiohttp application served on a listening socket from a thread with its own event loop.

    ``start()`` returns once the socket is being served; ``stop()`` ends open requests (after
    :data:`SHUTDOWN_TIMEOUT`), closes the socket and joins the thread.  Both are idempotent.
    """

    def __init__(self, app: web.Application, sock: socket.socket, *, name: str = "http"):
        self.app = app
        self.sock = sock
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self.sock.getsockname()[:2]

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def url(self) -> str:
        return url_of(self.sock)

    def start(self) -> Server:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"{self.name}:{self.port}", daemon=True)
            self._thread.start()
            self._ready.wait()
            if self._failure is not None:
                raise self._failure
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._runner = loop.run_until_complete(serve_on_loop(self.app, self.sock))
        except BaseException as exc:  # noqa: BLE001 - handed to start()
            self._failure = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._runner.cleanup())
            _cancel_remaining(loop)  # e.g. a keep-alive connection's handler: as asyncio.run does
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self) -> None:
        thread, loop = self._thread, self._loop
        if thread is None or loop is None or not thread.is_alive():
            self.sock.close()
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        self.sock.close()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["DEFAULT_MAX_BODY", "EXECUTOR", "MAX_BODY", "RequestError", "Server", "blocking", "bytes_response",
           "error_middleware", "json_response", "make_app", "read_body", "read_json_object", "serve_on_loop",
           "url_of"]


def _fail_bodies_on_parse_errors() -> None:
    """Make a broken request body fail its handler at once (installed on import).

    aiohttp's C parser, meeting a malformed chunk (e.g. size ``-1``) after the request was already handed to its
    handler (headers and body in separate packets), queues its 400 but never tells the body being read: the
    handler waits for the rest until the client hangs up.  Its pure-Python parser fails that body; so does this.
    """
    from aiohttp.web_protocol import RequestHandler, _ErrInfo

    received = RequestHandler.data_received

    def data_received(self: RequestHandler, data: bytes) -> None:
        request, queued = self._current_request, len(self._messages)
        received(self, data)
        if request is not None and len(self._messages) > queued:
            error = self._messages[-1][0]
            if isinstance(error, _ErrInfo) and error.exc is not None and not request.content.is_eof():
                request.content.set_exception(error.exc)

    RequestHandler.data_received = data_received  # type: ignore[method-assign]


_fail_bodies_on_parse_errors()
