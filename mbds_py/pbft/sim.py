"""Deterministic simulation of a PBFT group: seeded network, faults and byzantine replicas.

Everything (latency, reordering, loss, very long delays, partitions, crashes
and restarts from the durable store, equivocating primaries, double voters,
client submissions) is drawn from one ``random.Random(seed)``, so a seed
replays exactly.  Messages cross the simulated network through the canonical
codec: each send or broadcast is encoded to wire bytes and decoded once, and
every recipient gets that decoded copy.

:func:`run` returns a :class:`SimResult`; :meth:`SimResult.check` raises
:class:`~mbds_py.pbft.errors.SimulationSafetyError` or
:class:`~mbds_py.pbft.errors.SimulationLivenessError` unless

* safety: no two honest replicas applied different blocks at the same height,
  every applied block carries a valid quorum certificate, no slip twice;
* certificates: every block for which a quorum of COMMIT signatures was ever
  sent (anyone could assemble a certificate for the chain contract) is a
  block the honest replicas applied;
* liveness: after the faults stop, every submitted slip is applied exactly
  once at every running honest replica.
"""

from __future__ import annotations

import dataclasses
import heapq
import random
from dataclasses import dataclass, field
from typing import Any, Callable

from .codec import decode_message, encode_message
from .config import PbftConfig
from .crypto import FakeKeyring, keccak256
from .errors import SimulationLivenessError, SimulationSafetyError
from .messages import Commit, Message, PrePrepare, Prepare
from .replica import Replica
from .store import MemoryStore
from .types import NULL_DIGEST, Block, CertifiedBlock, SlipEnvelope


@dataclass(frozen=True)
class FaultEvent:
    """A scheduled fault: ``crash`` / ``restart`` a replica, ``partition`` into groups, ``heal``."""

    at: float
    kind: str
    replica: int = -1
    groups: tuple[frozenset[int], ...] = ()


@dataclass(frozen=True)
class Scenario:
    """One simulated run; every field has a small default so scenarios stay fast."""

    seed: int
    n: int = 4
    slips: int = 24
    max_slips: int = 4
    max_wait: float = 0.05
    max_inflight: int = 2
    checkpoint_interval: int = 4
    window: int = 16
    submit_until: float = 2.0
    submit_to_all: bool = False
    loss: float = 0.0
    latency: tuple[float, float] = (0.002, 0.03)
    long_delay: float = 0.0
    """Probability that a message is delayed 3-12 s (far beyond every timeout) while faults last."""
    faults: tuple[FaultEvent, ...] = ()
    byzantine: tuple[tuple[int, str], ...] = ()
    """(replica, behaviour): ``equivocate`` (as primary) or ``double-vote``."""
    faults_until: float = 0.0
    horizon: float = 90.0
    request_timeout: float = 1.0
    view_change_timeout: float = 1.0
    status_interval: float = 0.4

    def describe(self) -> str:
        parts = [f"seed={self.seed} n={self.n} slips={self.slips}"]
        if self.loss:
            parts.append(f"loss={self.loss:.2f}")
        if self.long_delay:
            parts.append(f"long_delay={self.long_delay:.2f}")
        parts += [f"{e.kind}@{e.at:.2f}:{e.replica if e.replica >= 0 else [sorted(g) for g in e.groups]}" for e in self.faults]
        parts += [f"byz{r}={b}" for r, b in self.byzantine]
        return " ".join(parts)


@dataclass
class SimResult:
    scenario: Scenario
    chains: dict[int, list[CertifiedBlock]]
    honest: set[int]
    running: set[int]
    submitted: set[bytes]
    config: PbftConfig
    verifier: Any
    end_time: float
    messages: int
    faults: dict[int, list]
    views: dict[int, int]
    certifiable: set[bytes] = field(default_factory=set)

    def check(self) -> None:
        """Raise :class:`SimulationSafetyError` or :class:`SimulationLivenessError` (see module docs)."""
        cfg = self.config
        by_height: dict[int, tuple[int, bytes]] = {}
        for r in sorted(self.honest):
            seen: set[bytes] = set()
            for i, cb in enumerate(self.chains[r]):
                header = cb.block.header
                if header.height != i + 1:
                    raise self._unsafe(f"replica {r} chain not contiguous at {i + 1}")
                digest = cfg.scheme.header_digest(header)
                other = by_height.setdefault(header.height, (r, digest))
                if other[1] != digest:
                    raise self._unsafe(f"replicas {other[0]} and {r} applied different blocks at height {header.height}")
                ids = [x.slip_id for x in cb.block.slips]
                if seen.intersection(ids):
                    raise self._unsafe(f"replica {r} applied a slip twice")
                seen.update(ids)
                if not _qc_holds(cb, cfg, self.verifier):
                    raise self._unsafe(f"bad QC at height {header.height}")
            if not seen <= self.submitted:
                raise self._unsafe(f"replica {r} applied slips nobody submitted")
            diverged = [f for f in self.faults.get(r, ()) if f.kind == "diverged"]
            if diverged:
                raise self._unsafe(f"replica {r}: {diverged[0].detail}")
        rogue = self.certifiable - {digest for _, digest in by_height.values()}
        if rogue:
            raise self._unsafe(f"{len(rogue)} certifiable block(s) never applied")
        for r in sorted(self.honest & self.running):
            missing = self.submitted.difference(x.slip_id for cb in self.chains[r] for x in cb.block.slips)
            if missing:
                raise SimulationLivenessError(
                    f"[{self.scenario.describe()}] LIVENESS: replica {r} lacks {len(missing)} of "
                    f"{len(self.submitted)} slips at t={self.end_time:.1f} (views {self.views})",
                    scenario=self.scenario,
                )

    def _unsafe(self, problem: str) -> SimulationSafetyError:
        return SimulationSafetyError(f"[{self.scenario.describe()}] SAFETY: {problem}", scenario=self.scenario)


def _qc_holds(cb: CertifiedBlock, cfg: PbftConfig, verifier: Any) -> bool:
    header = cb.block.header
    digest = cfg.scheme.commit_digest(cfg.domain, cb.qc.view, header.seq, cfg.scheme.header_digest(header))
    signers = {s.signer for s in cb.qc.signatures if verifier.verify(digest, s.signature, cfg.validators[s.signer])}
    return cb.qc.header == header and len(signers) >= cfg.quorum


class _Outbox:
    """Outbox of one simulated replica; byzantine behaviours rewrite outgoing messages."""

    def __init__(self, sim: Simulation, me: int, behaviour: str | None):
        self.sim, self.me, self.behaviour = sim, me, behaviour
        self.replica: Replica | None = None

    def send(self, to: int, msg: Message) -> None:
        self.sim.transmit(self.me, to, msg)

    def broadcast(self, msg: Message) -> None:
        if self.behaviour == "equivocate" and type(msg) is PrePrepare and msg.block is not None:
            self._equivocate(msg)
            return
        if self.behaviour == "double-vote" and type(msg) in (Prepare, Commit):
            self._double_vote(msg)
        received = self.sim.wire(msg)
        for to in range(self.sim.scenario.n):
            if to != self.me:
                self.sim.transmit(self.me, to, msg, received)

    def _equivocate(self, pp: PrePrepare) -> None:
        """Send one block to half the backups and a conflicting one to the rest (sometimes both)."""
        replica, rng = self.replica, self.sim.rng
        assert replica is not None and pp.block is not None
        header = dataclasses.replace(pp.block.header, timestamp=pp.block.header.timestamp + 1)
        alt_block = Block(header, pp.block.slips)
        alt = replica.sign(PrePrepare(pp.view, pp.seq, replica.config.scheme.header_digest(header), self.me, alt_block))
        peers = [p for p in range(self.sim.scenario.n) if p != self.me]
        rng.shuffle(peers)
        half = len(peers) // 2
        for i, to in enumerate(peers):
            self.sim.transmit(self.me, to, pp if i < half else alt)
        if rng.random() < 0.3:
            self.sim.transmit(self.me, peers[0], alt if half > 0 else pp)

    def _double_vote(self, vote: Prepare | Commit) -> None:
        """Also send a signed vote for a random digest, first, to some peers."""
        replica, rng = self.replica, self.sim.rng
        if replica is None:  # still being restored
            return
        bogus = replica.sign(dataclasses.replace(vote, digest=rng.randbytes(32), signature=b""))
        for to in range(self.sim.scenario.n):
            if to != self.me and rng.random() < 0.5:
                self.sim.transmit(self.me, to, bogus)

    def deliver(self, block: CertifiedBlock) -> None:
        self.sim.chains[self.me].append(block)
        self.sim.on_applied(self.me)

    def wake_at(self, when: float | None) -> None:
        self.sim.schedule_timer(self.me, when)


class Simulation:
    """Discrete-event simulation of one :class:`Scenario`."""

    def __init__(self, scenario: Scenario):
        self.scenario = sc = scenario
        self.rng = random.Random(scenario.seed)
        self.now = 0.0
        self._queue: list[tuple[float, int, Callable[..., None], tuple]] = []
        self._counter = 0
        self.keyring = FakeKeyring(sc.n, seed=b"sim-%d" % sc.seed)
        self.config = PbftConfig(
            validators=self.keyring.addresses,
            domain=keccak256(b"mbds-sim-chain"),
            max_slips=sc.max_slips,
            max_wait=sc.max_wait,
            max_inflight=sc.max_inflight,
            checkpoint_interval=sc.checkpoint_interval,
            window=sc.window,
            request_timeout=sc.request_timeout,
            censorship_timeout=sc.request_timeout * 8,
            view_change_timeout=sc.view_change_timeout,
            status_interval=sc.status_interval,
            max_clock_skew=5.0,
            fetch_batch=8,
        )
        self.behaviour = dict(sc.byzantine)
        self.stores = {i: MemoryStore() for i in range(sc.n)}
        self.replicas: dict[int, Replica | None] = {}
        self.chains: dict[int, list[CertifiedBlock]] = {i: [] for i in range(sc.n)}
        self.timer_at: dict[int, float | None] = {i: None for i in range(sc.n)}
        self.groups: tuple[frozenset[int], ...] = ()
        self.messages = 0
        self.submitted: dict[bytes, SlipEnvelope] = {}
        self.commit_votes: dict[tuple[int, int, bytes], set[int]] = {}
        self.certifiable: set[bytes] = set()
        self.done = False
        for i in range(sc.n):
            self._boot(i)

    # --- plumbing ---------------------------------------------------------------------

    def at(self, when: float, fn: Callable[..., None], *args: Any) -> None:
        self._counter += 1
        heapq.heappush(self._queue, (when, self._counter, fn, args))

    def _boot(self, i: int) -> None:
        outbox = _Outbox(self, i, self.behaviour.get(i))
        replica = Replica.restore(
            self.stores[i],
            config=self.config,
            me=i,
            signer=self.keyring.signers[i],
            verifier=self.keyring,
            clock=lambda: self.now,
            outbox=outbox,
        )
        outbox.replica = replica
        self.replicas[i] = replica
        self.chains[i] = list(self.stores[i].blocks)
        replica.start()

    def schedule_timer(self, i: int, when: float | None) -> None:
        self.timer_at[i] = when
        if when is not None:
            self.at(max(when, self.now), self._fire_timer, i, when)

    def _fire_timer(self, i: int, when: float) -> None:
        replica = self.replicas.get(i)
        if replica is not None and self.timer_at[i] == when:
            replica.on_timer(self.now)

    @staticmethod
    def wire(msg: Message) -> Message:
        """``msg`` as a peer receives it: encoded to wire bytes and decoded again."""
        return decode_message(encode_message(msg))

    def transmit(self, src: int, dst: int, msg: Message, received: Message | None = None) -> None:
        """Send ``msg`` over the simulated network (``received``: its wire copy, if already made)."""
        sc, rng = self.scenario, self.rng
        self.messages += 1
        if type(msg) is Commit and msg.digest != NULL_DIGEST:
            voters = self.commit_votes.setdefault((msg.view, msg.seq, msg.digest), set())
            voters.add(src)
            if len(voters) >= self.config.quorum:
                self.certifiable.add(msg.digest)
        faulty = self.now < sc.faults_until
        if faulty and sc.loss and rng.random() < sc.loss:
            return
        if self.groups and not any(src in g and dst in g for g in self.groups):
            return
        delay = rng.uniform(*sc.latency)
        if faulty and sc.long_delay and rng.random() < sc.long_delay:
            delay += rng.uniform(3.0, 12.0)
        self.at(self.now + delay, self._receive, dst, received if received is not None else self.wire(msg))

    def _receive(self, dst: int, msg: Message) -> None:
        replica = self.replicas.get(dst)
        if replica is not None:
            replica.on_message(msg)

    # --- workload and faults ----------------------------------------------------------

    def _submit(self, slip: SlipEnvelope) -> None:
        live = [i for i, r in self.replicas.items() if r is not None]
        targets = live if self.scenario.submit_to_all else [self.rng.choice(live)]
        for i in targets:
            replica = self.replicas[i]
            assert replica is not None
            replica.on_request(slip)

    def _client_retry(self) -> None:
        """Clients resubmit what is not yet applied everywhere (PBFT clients retransmit)."""
        if self.done:
            return
        if self.now >= self.scenario.faults_until:
            for slip in self.submitted.values():
                if any(slip.slip_id not in self._applied_ids(i) for i in self._watch()):
                    self._submit(slip)
        self.at(self.now + 3.0, self._client_retry)

    def _apply_fault(self, event: FaultEvent) -> None:
        if event.kind == "crash":
            self.replicas[event.replica] = None
            self.timer_at[event.replica] = None
        elif event.kind == "restart":
            if self.replicas.get(event.replica) is None:
                self._boot(event.replica)
        elif event.kind == "partition":
            self.groups = event.groups
        elif event.kind == "heal":
            self.groups = ()

    def _watch(self) -> list[int]:
        return [i for i, r in self.replicas.items() if r is not None and i not in self.behaviour]

    def _applied_ids(self, i: int) -> set[bytes]:
        return self.replicas[i].state.applied_slips if self.replicas[i] is not None else set()  # type: ignore[union-attr]

    def on_applied(self, i: int = -1) -> None:
        if self.now < self.scenario.faults_until or len(self.submitted) < self.scenario.slips:
            return
        if all(len(self._applied_ids(r)) >= len(self.submitted) for r in self._watch()):
            self.done = True

    def run(self) -> SimResult:
        sc = self.scenario
        for k in range(sc.slips):
            slip = SlipEnvelope(keccak256(b"slip-%d-%d" % (sc.seed, k)), self.rng.randbytes(self.rng.randint(0, 48)))
            when = self.rng.uniform(0.0, sc.submit_until)
            self.at(when, self._register_and_submit, slip)
        for event in sc.faults:
            self.at(event.at, self._apply_fault, event)
        self.at(sc.faults_until, self.on_applied)
        self.at(sc.submit_until + 1e-6, self.on_applied)
        self.at(3.0, self._client_retry)
        while self._queue and not self.done:
            when, _, fn, args = heapq.heappop(self._queue)
            if when > sc.horizon:
                break
            self.now = when
            fn(*args)
        running = {i for i, r in self.replicas.items() if r is not None}
        return SimResult(
            scenario=sc,
            chains=self.chains,
            honest={i for i in range(sc.n) if i not in self.behaviour},
            running=running,
            submitted=set(self.submitted),
            config=self.config,
            verifier=self.keyring,
            end_time=self.now,
            messages=self.messages,
            faults={i: list(r.faults) for i, r in self.replicas.items() if r is not None},
            views={i: r.view for i, r in self.replicas.items() if r is not None},
            certifiable=self.certifiable,
        )

    def _register_and_submit(self, slip: SlipEnvelope) -> None:
        self.submitted[slip.slip_id] = slip
        self._submit(slip)


def run(scenario: Scenario) -> SimResult:
    """Simulate ``scenario`` to completion (or its horizon)."""
    return Simulation(scenario).run()


# --- scenario generation ---------------------------------------------------------------

FAMILIES = (
    "clean",
    "lossy",
    "long-delay",
    "partition-2-2",
    "partition-1-3",
    "crash-primary",
    "crash-restart",
    "equivocating-primary",
    "double-voter",
    "mixed",
    "chaos",
)


def random_scenario(seed: int, family: str | None = None) -> Scenario:
    """A small scenario of ``family`` (default: chosen by the seed), fully determined by ``seed``."""
    rng = random.Random(seed * 7919 + 17)
    family = family or FAMILIES[seed % len(FAMILIES)]
    n = rng.choice((4, 4, 4, 5, 7)) if family in ("clean", "lossy", "crash-primary", "mixed") else 4
    faults_until = rng.uniform(2.0, 5.0)
    interval = rng.choice((2, 3, 4))
    kw: dict[str, Any] = dict(
        seed=seed,
        n=n,
        slips=rng.randint(12, 32),
        max_slips=rng.choice((2, 3, 4, 6)),
        max_inflight=rng.choice((1, 2, 3)),
        checkpoint_interval=interval,
        window=interval * rng.choice((2, 3, 4)),
        request_timeout=rng.choice((0.5, 1.0, 2.0)),
        view_change_timeout=rng.choice((0.5, 1.0)),
        status_interval=rng.choice((0.2, 0.4, 1.0, 2.0)),
        submit_to_all=rng.random() < 0.3,
        submit_until=rng.uniform(0.5, 3.0),
        faults_until=faults_until,
    )
    faults: list[FaultEvent] = []
    replicas = list(range(n))
    if family == "lossy":
        kw["loss"] = rng.uniform(0.05, 0.30)
    elif family == "long-delay":
        kw["long_delay"] = rng.uniform(0.02, 0.1)
        kw["loss"] = rng.uniform(0.0, 0.1)
    elif family in ("partition-2-2", "partition-1-3"):
        rng.shuffle(replicas)
        cut = 2 if family == "partition-2-2" else 1
        groups = (frozenset(replicas[:cut]), frozenset(replicas[cut:]))
        start = rng.uniform(0.0, faults_until / 2)
        faults += [FaultEvent(start, "partition", groups=groups), FaultEvent(faults_until, "heal")]
        kw["loss"] = rng.choice((0.0, 0.0, 0.1))
    elif family == "crash-primary":
        faults.append(FaultEvent(rng.uniform(0.0, 1.5), "crash", 0))
    elif family == "crash-restart":
        victim = rng.randrange(n)
        down = rng.uniform(0.2, 2.0)
        faults += [FaultEvent(down, "crash", victim), FaultEvent(rng.uniform(down + 0.1, faults_until), "restart", victim)]
        kw["loss"] = rng.choice((0.0, 0.05))
    elif family == "equivocating-primary":
        kw["byzantine"] = ((0, "equivocate"),)
        kw["loss"] = rng.choice((0.0, 0.05))
    elif family == "double-voter":
        kw["byzantine"] = ((rng.randrange(n), "double-vote"),)
        kw["loss"] = rng.choice((0.0, 0.05))
    elif family == "mixed":
        kw["loss"] = rng.uniform(0.0, 0.2)
        kw["long_delay"] = rng.choice((0.0, 0.03))
        victim = rng.randrange(n)
        faults += [FaultEvent(rng.uniform(0.0, 1.0), "crash", victim)]
        if rng.random() < 0.5:
            faults.append(FaultEvent(rng.uniform(1.0, faults_until), "restart", victim))
        if rng.random() < 0.5:
            others = [r for r in replicas if r != victim]
            rng.shuffle(others)
            start = rng.uniform(0.0, faults_until / 2)
            faults += [
                FaultEvent(start, "partition", groups=(frozenset(others[:1]), frozenset(replicas) - frozenset(others[:1]))),
                FaultEvent(faults_until, "heal"),
            ]
    elif family == "chaos":
        kw["loss"] = rng.uniform(0.0, 0.3)
        kw["long_delay"] = rng.choice((0.0, 0.02, 0.05))
        kw["faults_until"] = faults_until = rng.uniform(3.0, 8.0)
        if rng.random() < 0.4:
            kw["byzantine"] = ((rng.randrange(n), rng.choice(("equivocate", "double-vote"))),)
        t = 0.0
        while t < faults_until:
            t += rng.uniform(0.2, 1.5)
            if t >= faults_until:
                break
            what = rng.random()
            if what < 0.4:
                victim = rng.randrange(n)
                back = min(t + rng.uniform(0.1, 2.0), faults_until)
                faults += [FaultEvent(t, "crash", victim), FaultEvent(back, "restart", victim)]
            elif what < 0.8:
                rng.shuffle(replicas)
                cut = rng.choice((1, 2))
                faults.append(FaultEvent(t, "partition", groups=(frozenset(replicas[:cut]), frozenset(replicas[cut:]))))
            else:
                faults.append(FaultEvent(t, "heal"))
        faults.append(FaultEvent(faults_until, "heal"))
    kw["faults"] = tuple(sorted(faults, key=lambda e: e.at))
    return Scenario(**kw)


__all__ = ["FAMILIES", "FaultEvent", "Scenario", "SimResult", "Simulation", "random_scenario", "run"]
