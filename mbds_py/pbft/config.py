"""Static parameters of one private chain's PBFT group."""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import PbftConfigError
from .types import DEFAULT_SCHEME, GENESIS_HEAD, ZERO32, DigestScheme, Head


@dataclass(frozen=True)
class PbftConfig:
    """Validator set, batching, water marks and timeouts (times in seconds).

    ``domain`` separates the signatures of one chain from every other chain's
    (health authorities validate several hospitals' chains with one key):
    derive it from the chain ID and the ``SlipLedger`` address.
    """

    validators: tuple[bytes, ...]
    domain: bytes = ZERO32
    genesis: Head = GENESIS_HEAD
    max_slips: int = 128
    max_wait: float = 600.0
    max_inflight: int = 4
    checkpoint_interval: int = 16
    window: int = 64
    request_timeout: float = 10.0
    censorship_timeout: float = 120.0
    view_change_timeout: float = 10.0
    status_interval: float = 1.0
    max_clock_skew: float = 30.0
    fetch_batch: int = 64
    scheme: DigestScheme = field(default=DEFAULT_SCHEME, compare=False)

    def __post_init__(self) -> None:
        n = len(self.validators)
        if n < 4:
            raise PbftConfigError(f"PBFT needs at least 4 replicas, got {n}", field="validators")
        if len(set(self.validators)) != n or any(len(a) != 20 for a in self.validators):
            raise PbftConfigError("validators must be distinct 20-byte addresses", field="validators")
        if len(self.domain) != 32:
            raise PbftConfigError("domain must be 32 bytes", field="domain")
        if self.checkpoint_interval < 1 or self.window < 2 * self.checkpoint_interval:
            raise PbftConfigError("window must be at least twice the checkpoint interval", field="window")
        if not 1 <= self.max_inflight <= self.window:
            raise PbftConfigError("max_inflight must be in [1, window]", field="max_inflight")
        if self.max_slips < 1 or self.max_wait < 0:
            raise PbftConfigError("max_slips must be >= 1 and max_wait >= 0", field="max_slips")
        if min(self.request_timeout, self.view_change_timeout, self.status_interval) <= 0:
            raise PbftConfigError("timeouts must be positive", field="request_timeout")

    @property
    def n(self) -> int:
        return len(self.validators)

    @property
    def f(self) -> int:
        """Faults tolerated: floor((n - 1) / 3)."""
        return (self.n - 1) // 3

    @property
    def quorum(self) -> int:
        """ceil((n + f + 1) / 2): any two quorums share f + 1 replicas; 2f + 1 when n = 3f + 1."""
        return (self.n + self.f + 2) // 2

    @property
    def weak(self) -> int:
        """f + 1: at least one honest replica."""
        return self.f + 1

    def primary(self, view: int) -> int:
        return view % self.n


__all__ = ["PbftConfig"]
