"""Content-addressed storage for MBDS: Kubo-compatible CIDs, a bundled node, verifying clients.

- :mod:`~mbds_py.storage.unixfs` — CIDs exactly as Kubo's default ``ipfs add`` (pure code).
- :mod:`~mbds_py.storage.node` — the bundled storage node (Kubo RPC API subset).
- :mod:`~mbds_py.storage.client` — :class:`BlobStore` and :class:`KuboClient`.
- :mod:`~mbds_py.storage.replicated` — :class:`ReplicatedStore` over several nodes.
- :mod:`~mbds_py.storage.integrity` — :func:`fetch_verified` against a slip's content hash.
"""

from mbds_py.storage.client import BlobStore, KuboClient
from mbds_py.storage.integrity import fetch_verified, keccak256
from mbds_py.storage.replicated import ReplicatedStore
from mbds_py.storage.unixfs import CID, cid_of, parse_cid

__all__ = [
    "CID",
    "BlobStore",
    "KuboClient",
    "ReplicatedStore",
    "cid_of",
    "fetch_verified",
    "keccak256",
    "parse_cid",
]
