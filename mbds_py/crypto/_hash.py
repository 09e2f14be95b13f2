"""keccak256 on the hot paths.

``eth_utils.keccak`` goes through eth-hash's backend (pycryptodome here, about
12 µs a call); safe-pysha3's C ``keccak_256`` takes about 1.5 µs.  Same digest;
the fallback keeps the package working where safe-pysha3 is absent.
"""

from __future__ import annotations

try:
    from sha3 import keccak_256 as _keccak_256

    def keccak256(data: bytes) -> bytes:
        return _keccak_256(data).digest()

except ImportError:  # pragma: no cover - depends on the environment
    from eth_utils import keccak as _eth_keccak

    def keccak256(data: bytes) -> bytes:
        return _eth_keccak(data)


__all__ = ["keccak256"]
