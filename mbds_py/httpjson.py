"""The small HTTP/JSON plumbing shared by the MBDS services (replicas, consortium nodes, proxies)."""

from __future__ import annotations

import json
import logging
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs

from .errors import MBDSError


class RequestError(MBDSError, ValueError):
    """A malformed request; answered with HTTP 400 and the message."""


class JsonHandler(BaseHTTPRequestHandler):
    """Base request handler: JSON and byte answers, bounded bodies, quiet logs (never bodies)."""

    server_version = "mbds/1"
    max_body = 16 * 1024 * 1024
    log = logging.getLogger("mbds.http")
    # one write per response and no Nagle: headers and body in separate segments would meet the
    # client's delayed ACK (a 40 ms stall per request on loopback)
    wbufsize = -1
    disable_nagle_algorithm = True

    def log_message(self, fmt: str, *args: Any) -> None:
        self.log.debug("%s %s", self.command, self.path)

    def send_json(self, code: int, doc: Any) -> None:
        self.send_bytes(code, json.dumps(doc).encode(), "application/json")

    def send_bytes(self, code: int, data: bytes, content_type: str = "application/octet-stream") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def read_body(self) -> bytes:
        size = int(self.headers.get("Content-Length") or 0)
        if not 0 < size <= self.max_body:
            raise RequestError(f"request body must be 1..{self.max_body} bytes, got {size}")
        return self.rfile.read(size)

    @property
    def route(self) -> tuple[list[str], dict[str, str]]:
        """Path segments and query parameters (first value of each)."""
        path, _, query = self.path.partition("?")
        return [p for p in path.split("/") if p], {k: v[0] for k, v in parse_qs(query).items()}

    def fail(self, exc: BaseException) -> None:
        """Answer an exception: 400 for MBDS errors (bad input), 500 otherwise (logged)."""
        if isinstance(exc, (MBDSError, ValueError, KeyError)):
            self.send_json(400, {"error": str(exc)})
        else:
            self.log.exception("%s %s failed", self.command, self.path)
            self.send_json(500, {"error": f"{type(exc).__name__}: {exc}"})
