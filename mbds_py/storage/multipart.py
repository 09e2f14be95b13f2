"""multipart/form-data as the Kubo RPC ``add`` endpoint speaks it (RFC 7578).

:func:`encode_files` builds a request body for the client; :func:`parse_files`
reads one on the node and rejects anything malformed before a byte is stored.
"""

from __future__ import annotations

import secrets
import urllib.parse
from dataclasses import dataclass

from mbds_py.storage.errors import MalformedRequestError

__all__ = ["FilePart", "encode_files", "parse_content_type", "parse_files"]

_DIRECTORY_TYPES = {"application/x-directory", "application/symlink"}


@dataclass(frozen=True, slots=True)
class FilePart:
    """One uploaded file: its (percent-decoded) file name, if any, and its bytes."""

    filename: str | None
    data: memoryview


def parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    """Split ``type/subtype; k=v; k2="quoted"`` into the lower-cased type and its parameters."""
    main, _, rest = value.partition(";")
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        while pos < len(rest) and rest[pos] in " \t;":
            pos += 1
        if pos >= len(rest):
            break
        eq = rest.find("=", pos)
        if eq < 0:
            raise MalformedRequestError(f"malformed header parameter in {value!r}")
        key = rest[pos:eq].strip().lower()
        pos = eq + 1
        if pos < len(rest) and rest[pos] == '"':
            pos += 1
            chars = []
            while True:
                if pos >= len(rest):
                    raise MalformedRequestError(f"unterminated quoted string in {value!r}")
                ch = rest[pos]
                if ch == "\\" and pos + 1 < len(rest):
                    chars.append(rest[pos + 1])
                    pos += 2
                    continue
                pos += 1
                if ch == '"':
                    break
                chars.append(ch)
            params[key] = "".join(chars)
        else:
            end = rest.find(";", pos)
            end = len(rest) if end < 0 else end
            params[key] = rest[pos:end].strip()
            pos = end
    return main.strip().lower(), params


def encode_files(files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    """Body and Content-Type for uploading ``(filename, data)`` pairs, as Kubo clients do."""
    boundary = secrets.token_hex(16)
    parts = []
    for filename, data in files:
        quoted = urllib.parse.quote(filename, safe="")
        parts.append(
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{quoted}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode("ascii")
        )
        parts.append(data)
        parts.append(b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode("ascii"))
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _parse_part_headers(raw: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedRequestError("multipart part headers are not UTF-8") from None
    for line in text.split("\r\n"):
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise MalformedRequestError(f"malformed multipart part header {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return headers


def parse_files(body: bytes, content_type: str | None) -> list[FilePart]:
    """Parse a multipart upload into its files.

    Raises :class:`MalformedRequestError` for a missing or wrong Content-Type,
    a missing boundary, a missing closing delimiter, a part without
    ``Content-Disposition: form-data``, a directory or symlink part, or no part
    at all.
    """
    if not content_type:
        raise MalformedRequestError("add needs a multipart/form-data body with the file; Content-Type is missing")
    mime, params = parse_content_type(content_type)
    if mime not in ("multipart/form-data", "multipart/mixed"):
        raise MalformedRequestError(f"add needs a multipart/form-data body, got Content-Type {mime!r}")
    boundary = params.get("boundary", "")
    if not 1 <= len(boundary) <= 70:
        raise MalformedRequestError("multipart Content-Type has no valid boundary parameter")
    delim = b"--" + boundary.encode("latin-1")
    view = memoryview(body)
    # the first delimiter opens the body or follows a preamble line
    if body.startswith(delim):
        pos = len(delim)
    else:
        found = body.find(b"\r\n" + delim)
        if found < 0:
            raise MalformedRequestError("multipart body does not contain its boundary")
        pos = found + 2 + len(delim)
    next_delim = b"\r\n" + delim
    files: list[FilePart] = []
    while True:
        if body.startswith(b"--", pos):
            break  # closing delimiter
        # transport padding after the delimiter, then CRLF
        while pos < len(body) and body[pos] in b" \t":
            pos += 1
        if not body.startswith(b"\r\n", pos):
            raise MalformedRequestError("multipart delimiter is not followed by CRLF")
        pos += 2
        header_end = body.find(b"\r\n\r\n", pos)
        if body.startswith(b"\r\n", pos):
            header_end = pos - 2  # part without headers
        if header_end < 0:
            raise MalformedRequestError("multipart part headers are not terminated")
        headers = _parse_part_headers(body[pos:header_end])
        content_start = header_end + 4
        content_end = body.find(next_delim, content_start)
        if content_end < 0:
            raise MalformedRequestError("multipart body is truncated: closing boundary missing")
        disposition, dparams = parse_content_type(headers.get("content-disposition", ""))
        if disposition != "form-data":
            raise MalformedRequestError("multipart part without 'Content-Disposition: form-data'")
        part_type = parse_content_type(headers.get("content-type", "application/octet-stream"))[0]
        if part_type in _DIRECTORY_TYPES:
            raise MalformedRequestError("directories and symlinks are not supported; add each file on its own")
        filename = dparams.get("filename")
        if filename is not None:
            filename = urllib.parse.unquote(filename)
        files.append(FilePart(filename, view[content_start:content_end]))
        pos = content_end + len(next_delim)
    if not files:
        raise MalformedRequestError("multipart body holds no file")
    return files
