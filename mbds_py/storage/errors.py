"""Storage-specific errors, narrower subclasses of the families in :mod:`mbds_py.errors`.

``IntegrityError`` and ``NotFoundError`` are used as they are; the classes
below add the cases a caller may want to handle on their own.
"""

from __future__ import annotations

from mbds_py.errors import IntegrityError, NotFoundError, StorageError

__all__ = [
    "BlobTooLargeError",
    "ContentMismatchError",
    "IntegrityError",
    "InvalidCIDError",
    "MalformedRequestError",
    "NodeUnavailableError",
    "NotFoundError",
    "ReplicationError",
    "StorageError",
    "UnsupportedContentError",
]


class NodeUnavailableError(StorageError, ConnectionError):
    """A storage node could not be reached (refused, reset, timed out)."""


class BlobTooLargeError(StorageError, ValueError):
    """A blob exceeds the node's configured maximum size."""


class MalformedRequestError(StorageError, ValueError):
    """A request to a storage node is malformed (bad multipart body, bad argument)."""


class UnsupportedContentError(StorageError, ValueError):
    """A CID names something this code does not serve (a directory, an unknown codec)."""


class ReplicationError(StorageError):
    """Fewer storage nodes than required accepted a write or a pin.

    ``cid`` is the blob, ``accepted`` how many nodes took it, ``required`` how
    many were needed, and ``failures`` maps each failing node to its error.
    """

    def __init__(self, message: str, *, cid: str, accepted: int, required: int,
                 failures: dict[str, BaseException] | None = None):
        self.cid = cid
        self.accepted = accepted
        self.required = required
        self.failures = dict(failures or {})
        super().__init__(message)


class InvalidCIDError(MalformedRequestError):
    """A string or byte sequence is not a CID this code understands."""


class ContentMismatchError(IntegrityError):
    """Bytes served or stored under a CID do not hash to that CID.

    ``cid`` is the CID that was asked for; the message says what was found.
    """

    def __init__(self, message: str, *, cid: str):
        self.cid = cid
        super().__init__(message)
