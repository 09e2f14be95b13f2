"""multipart/form-data as the Kubo RPC ``add`` endpoint speaks it (RFC 7578), client side.

:func:`encode_files` builds a request body; the node reads one with aiohttp's multipart reader.
"""

from __future__ import annotations

import secrets
import urllib.parse

__all__ = ["encode_files"]


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
