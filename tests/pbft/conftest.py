"""A hand-driven PBFT cluster for unit tests: FIFO delivery, explicit clock, drop rules."""

from __future__ import annotations

from collections import deque
from typing import Callable

import pytest

from mbds_py.pbft import (
    EthSigner,
    EthVerifier,
    FakeKeyring,
    MemoryStore,
    PbftConfig,
    RecordingOutbox,
    Replica,
    SlipEnvelope,
    keccak256,
)

DropRule = Callable[[int, int, object], bool]


def slip(k: int, payload: bytes = b"") -> SlipEnvelope:
    return SlipEnvelope(keccak256(b"slip-%d" % k), payload or b"payload-%d" % k)


class Cluster:
    """n replicas wired through recording outboxes; ``flush`` delivers until quiet."""

    def __init__(self, n: int = 4, *, eth: bool = False, validate_slip=None, stores=None, **overrides):
        if eth:
            self.signers = [EthSigner(keccak256(b"validator-key-%d" % i)) for i in range(n)]
            self.verifier = EthVerifier()
        else:
            keyring = FakeKeyring(n, seed=b"unit")
            self.signers, self.verifier = keyring.signers, keyring
        params = dict(max_slips=4, max_wait=0.5, checkpoint_interval=4, window=8, request_timeout=2.0,
                      view_change_timeout=2.0, status_interval=1.0, max_inflight=2)
        params.update(overrides)
        self.config = PbftConfig(validators=tuple(s.address for s in self.signers), domain=keccak256(b"unit-chain"), **params)
        self.now = 1_000.0
        self.validate_slip = validate_slip
        self.stores = stores or [MemoryStore() for _ in range(n)]
        self.outboxes: list[RecordingOutbox] = []
        self.replicas: list[Replica | None] = []
        for i in range(n):
            self.outboxes.append(RecordingOutbox())
            self.replicas.append(None)
            self.boot(i)
        self.queue: deque[tuple[int, int, object]] = deque()
        self.drop: DropRule = lambda src, dst, msg: False
        self.delivered_log: list[tuple[int, int, object]] = []
        self.flush()

    @property
    def n(self) -> int:
        return self.config.n

    def boot(self, i: int) -> Replica:
        kwargs = {}
        if self.validate_slip is not None:
            kwargs["validate_slip"] = self.validate_slip
        replica = Replica.restore(
            self.stores[i], config=self.config, me=i, signer=self.signers[i], verifier=self.verifier,
            clock=lambda: self.now, outbox=self.outboxes[i], **kwargs,
        )
        self.replicas[i] = replica
        replica.start()
        return replica

    def crash(self, i: int) -> None:
        self.replicas[i] = None
        self.outboxes[i].drain()

    def r(self, i: int) -> Replica:
        replica = self.replicas[i]
        assert replica is not None
        return replica

    def _collect(self) -> None:
        for i, outbox in enumerate(self.outboxes):
            for to, msg in outbox.drain():
                if self.replicas[i] is None:
                    continue
                targets = [to] if to is not None else [j for j in range(self.n) if j != i]
                for j in targets:
                    self.queue.append((i, j, msg))

    def flush(self, limit: int = 200_000) -> None:
        self._collect()
        steps = 0
        while self.queue:
            src, dst, msg = self.queue.popleft()
            steps += 1
            assert steps < limit, "message storm"
            replica = self.replicas[dst]
            if replica is None or self.drop(src, dst, msg):
                continue
            self.delivered_log.append((src, dst, msg))
            replica.on_message(msg)
            self._collect()

    def advance(self, seconds: float, step: float = 0.1) -> None:
        """Move the clock forward, firing due timers and delivering everything in between."""
        end = self.now + seconds
        while self.now < end:
            self.now = min(end, self.now + step)
            for i, replica in enumerate(self.replicas):
                if replica is not None and self.outboxes[i].wake is not None and self.outboxes[i].wake <= self.now:
                    replica.on_timer(self.now)
            self.flush()

    def submit(self, s: SlipEnvelope, to: int = 0) -> str | None:
        reason = self.r(to).on_request(s)
        self.flush()
        return reason

    def chain(self, i: int):
        return [cb.block for cb in self.outboxes[i].delivered]

    def heights(self) -> list[int]:
        return [r.head.height if r else -1 for r in self.replicas]


@pytest.fixture
def cluster_factory():
    return Cluster
