"""Clients of content-addressed storage: the :class:`BlobStore` interface and :class:`KuboClient`.

``KuboClient`` speaks the Kubo RPC API, so it works against the bundled
storage node, a real Kubo daemon or an IPFS Cluster proxy alike.  It never
trusts the node: the CID of every blob it adds is computed locally and must
equal the node's answer, and every blob it reads is re-imported and must
hash to the CID asked for.  Either mismatch raises
:class:`~mbds_py.storage.errors.ContentMismatchError` (an ``IntegrityError``)
naming the CID, and no unverified byte is returned.
"""

from __future__ import annotations

import json
import re
from typing import Protocol, runtime_checkable

import requests

from mbds_py.storage import multipart, unixfs
from mbds_py.storage.errors import (
    BlobTooLargeError,
    ContentMismatchError,
    MalformedRequestError,
    NodeUnavailableError,
    NotFoundError,
    StorageError,
)

__all__ = ["DEFAULT_MAX_READ", "BlobStore", "KuboClient", "normalize_api_url"]

DEFAULT_MAX_READ = 1024 * 1024 * 1024
"""Largest blob :meth:`KuboClient.cat` reads before giving up."""

# Kubo's wording for an absent block (offline or local-only), and for a pin that is not there
_NOT_FOUND_RE = re.compile(r"not found|could not find|no link named", re.IGNORECASE)
_NOT_PINNED_RE = re.compile(r"not pinned", re.IGNORECASE)
_CORRUPT_RE = re.compile(r"different hash than requested|is corrupt|not a valid unixfs node", re.IGNORECASE)

# the import settings the client's CID check assumes, sent explicitly so a Kubo
# configured otherwise (Import.CidVersion, Import.UnixFSRawLeaves, ...) still matches
_ADD_PARAMS = {
    "cid-version": "0",
    "raw-leaves": "false",
    "chunker": "size-262144",
    "hash": "sha2-256",
}


@runtime_checkable
class BlobStore(Protocol):
    """Content-addressed blob storage: bytes in, CID out, verified bytes back."""

    def add(self, data: bytes) -> str:
        """Store ``data`` (pinned); return its CID."""
        ...

    def cat(self, cid: str) -> bytes:
        """The bytes stored under ``cid``, verified against it."""
        ...

    def pin(self, cid: str) -> None:
        """Keep ``cid`` (and its whole DAG) from garbage collection."""
        ...

    def unpin(self, cid: str) -> None:
        """Release a pin; unpinning an unpinned CID is a no-op."""
        ...


def normalize_api_url(url: str) -> str:
    """``http://host:port`` from a URL or a multiaddr such as ``/ip4/127.0.0.1/tcp/5001``."""
    if url.startswith("/"):
        parts = url.strip("/").split("/")
        if len(parts) >= 4 and parts[0] in ("ip4", "ip6", "dns", "dns4", "dns6") and parts[2] == "tcp":
            host = f"[{parts[1]}]" if parts[0] == "ip6" else parts[1]
            scheme = "https" if "https" in parts[4:] else "http"
            return f"{scheme}://{host}:{parts[3]}"
        raise ValueError(f"cannot turn multiaddr {url!r} into an HTTP URL")
    if not re.match(r"^https?://", url):
        raise ValueError(f"storage node URL must start with http:// or https://, got {url!r}")
    return url.rstrip("/")


class KuboClient:
    """:class:`BlobStore` over the Kubo RPC API at ``url`` (e.g. ``http://127.0.0.1:5001``).

    One ``requests.Session`` keeps connections alive between calls.
    ``timeout`` bounds each request (seconds); ``max_read`` bounds a read.
    ``offline=True`` sends Kubo's global ``offline`` option with reads and
    pins, so a real Kubo daemon answers "not found" for blocks it lacks
    instead of searching the IPFS network until the timeout (the bundled node
    is always offline).
    """

    def __init__(self, url: str, *, timeout: float = 30.0, max_read: int = DEFAULT_MAX_READ,
                 offline: bool = False, session: requests.Session | None = None):
        self.url = normalize_api_url(url)
        self.timeout = timeout
        self.max_read = max_read
        self._extra = {"offline": "true"} if offline else {}
        self._session = session or requests.Session()
        self._owns_session = session is None

    def __repr__(self) -> str:
        return f"KuboClient({self.url!r})"

    # -- BlobStore ------------------------------------------------------------------------------

    def add(self, data: bytes, *, pin: bool = True) -> str:
        """Upload ``data``; the node's CID must equal the locally computed one."""
        expected = unixfs.import_bytes(data, keep_blocks=False).root
        body, content_type = multipart.encode_files([("blob", data)])
        params = dict(_ADD_PARAMS, pin="true" if pin else "false")
        resp = self._post("add", params, data=body, headers={"Content-Type": content_type})
        try:
            entries = [json.loads(line) for line in resp.text.splitlines() if line.strip()]
        except ValueError:
            raise StorageError(f"{self.url} answered add with something other than JSON lines") from None
        hashes = [entry["Hash"] for entry in entries if isinstance(entry, dict) and "Hash" in entry]
        if len(hashes) != 1:
            raise StorageError(f"{self.url} answered add with {len(hashes)} hashes; expected one")
        returned = hashes[0]
        try:
            same = unixfs.parse_cid(returned).same_content(expected)
        except ValueError:
            same = False
        if not same:
            raise ContentMismatchError(
                f"{self.url} stored the blob as {returned}, but its CID is {expected}; "
                "the node altered the data or does not import with Kubo's defaults",
                cid=str(expected))
        return str(expected)

    def cat(self, cid: str) -> bytes:
        """Read ``cid``; the bytes must re-import to ``cid`` (or hash to it, for raw CIDs)."""
        unixfs.parse_cid(cid)
        resp = self._post("cat", {"arg": cid, **self._extra}, stream=True, cid=cid)
        try:
            declared = resp.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_read:
                raise BlobTooLargeError(f"{cid} is {declared} bytes, over this client's max_read "
                                        f"of {self.max_read}")
            buf = bytearray()
            try:
                for piece in resp.iter_content(chunk_size=1 << 20):
                    buf += piece
                    if len(buf) > self.max_read:
                        raise BlobTooLargeError(f"{cid} exceeds this client's max_read of {self.max_read} bytes")
            except requests.RequestException as exc:
                raise StorageError(
                    f"{cid}: {self.url} broke off after {len(buf)} bytes ({exc.__class__.__name__}); "
                    "the node failed mid-stream or found a block corrupt while serving it") from exc
            trailer_error = resp.headers.get("X-Stream-Error")
            if trailer_error:
                raise StorageError(f"{self.url} failed while serving {cid}: {trailer_error}")
        finally:
            resp.close()
        data = bytes(buf)
        unixfs.verify_content(cid, data)
        return data

    def pin(self, cid: str) -> None:
        """Pin ``cid`` recursively; :class:`NotFoundError` if the node lacks its blocks."""
        unixfs.parse_cid(cid)
        self._post("pin/add", {"arg": cid, **self._extra}, cid=cid)

    def unpin(self, cid: str) -> None:
        """Remove the recursive pin on ``cid``; a no-op if it was not pinned."""
        unixfs.parse_cid(cid)
        try:
            self._post("pin/rm", {"arg": cid}, cid=cid)
        except StorageError as exc:
            if not _NOT_PINNED_RE.search(str(exc)):
                raise

    # -- extras ---------------------------------------------------------------------------------

    def pins(self) -> frozenset[str]:
        """CIDs pinned recursively on the node."""
        answer = self._json(self._post("pin/ls", {"type": "recursive"}), "pin/ls")
        return frozenset(answer.get("Keys") or {})

    def version(self) -> dict[str, str]:
        """The node's ``/api/v0/version`` answer; a cheap liveness probe."""
        return self._json(self._post("version", {}), "version")

    def close(self) -> None:
        """Close pooled connections (only if this client created the session)."""
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> KuboClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport --------------------------------------------------------------------------------

    def _post(self, command: str, params: dict[str, str], *, cid: str | None = None,
              stream: bool = False, **kwargs: object) -> requests.Response:
        endpoint = f"{self.url}/api/v0/{command}"
        try:
            resp = self._session.post(endpoint, params=params, timeout=self.timeout, stream=stream, **kwargs)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise NodeUnavailableError(
                f"storage node {self.url} is unreachable for {command}: {exc.__class__.__name__}; "
                "check that it is running and the URL is right") from exc
        except requests.RequestException as exc:
            raise StorageError(f"{command} on {self.url} failed: {exc}") from exc
        if resp.status_code == 200:
            return resp
        try:
            self._raise_for(resp, command, cid)
        finally:
            resp.close()
        raise AssertionError("unreachable")  # pragma: no cover

    def _json(self, resp: requests.Response, command: str) -> dict:
        try:
            answer = resp.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise StorageError(f"{self.url} answered {command} with something other than a JSON object")
        return answer

    def _raise_for(self, resp: requests.Response, command: str, cid: str | None) -> None:
        try:
            payload = resp.json()
            message = str(payload.get("Message", "")) if isinstance(payload, dict) else ""
        except ValueError:
            message = ""
        message = message or resp.text.strip()[:200] or resp.reason or ""
        where = f"{command} on {self.url}"
        subject = f"{cid}: " if cid else ""
        status = resp.status_code
        if status == 413:
            raise BlobTooLargeError(f"{where} rejected the blob: {message}")
        if status == 400:
            raise MalformedRequestError(f"{where} rejected the request: {message}")
        if status == 404 and not message.startswith("{"):
            raise StorageError(f"{where}: endpoint not found (HTTP 404); is {self.url} a Kubo RPC API?")
        if cid and _CORRUPT_RE.search(message):
            raise ContentMismatchError(f"{subject}{where} reports the stored blob corrupt: {message}", cid=cid)
        if cid and _NOT_FOUND_RE.search(message):
            raise NotFoundError(f"{subject}not stored on {self.url} ({message})")
        raise StorageError(f"{subject}{where} failed (HTTP {status}): {message}")
