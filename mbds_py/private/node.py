"""`mbds node run`: one PBFT replica of a private chain as its own OS process.

The pure :class:`~mbds_py.pbft.replica.Replica` is driven by an asyncio loop:
peer frames from the TCP :class:`~mbds_py.private.transport.Mesh`, client
slips from the HTTP API (an aiohttp app on the same loop; its worker threads
check slips and hand them to the loop), and timers from ``outbox.wake_at``.
Durable state lives in SQLite (WAL), so a SIGKILLed replica restarts where it
was and catches up from its peers.

Every applied block is indexed for receipts; its body is published to the
storage nodes and its certified header anchored in ``SlipLedger`` by the
primary that proposed it, by another replica only after a grace period without
anchoring progress (:mod:`mbds_py.private.anchor`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import socket
import sqlite3
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from aiohttp import web

from ..crypto.envelope import HmiEnvelope
from ..crypto.signing import Eip712Domain
from ..cli_options import node_arguments
from ..errors import ConfigError, InvalidSlip, MBDSError, Overloaded
from ..listen import inherited_sockets, listener
from ..web import Handler, blocking, bytes_response, json_response, make_app, read_body, serve_on_loop
from ..identity import Role
from ..pbft.config import PbftConfig
from ..pbft.crypto import EthSigner, EthVerifier
from ..pbft.merkle import merkle_proof
from ..pbft.messages import Message
from ..pbft.codec import decode, encode_message
from ..pbft.replica import Replica
from ..pbft.store import SqliteStore
from ..pbft.types import CertifiedBlock, SlipEnvelope
from .anchor import Anchorer
from .batch import SlipAck, decode_batch
from .body import body_cid_bytes, cid_text, encode_body
from .slip import IdentityEntry, RecordView, SlipValidator, SlipView, slip_bytes
from .transport import Mesh, PeerAddress

log = logging.getLogger("mbds.node")
Offload = Callable[..., Awaitable[Any]]
"""``await offload(fn, *args)`` runs the blocking ``fn(*args)`` off the loop (the HTTP app's worker pool)."""

SLIP_LEDGER_DOMAIN_NAME = "MBDS SlipLedger"
ANCHOR_GAS = 400_000
"""Gas limit of one commitBlock (≈ 75k for n = 4; generous for larger validator sets), and per header of a
commitBlocks batch: a fixed limit saves the eth_estimateGas round trip per block — the proposer is the only
sender, so a revert is rare."""


# --------------------------------------------------------------------------------------------
# configuration (no secrets: the key comes from the environment or an encrypted keystore)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PeerConfig:
    index: int
    host: str
    port: int
    http_port: int

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"


@dataclass(frozen=True)
class NodeConfig:
    """One private chain's replica group, as written by the devnet launcher."""

    chain: str
    chain_id: int
    rpc_url: str
    slip_ledger: str
    identity_registry: str
    hospital_id: str
    validators: tuple[str, ...]
    peers: tuple[PeerConfig, ...]
    storage: tuple[str, ...] = ()
    storage_replicas: int = 1
    data_dir: str = ".mbds/nodes"
    max_slips: int = 128
    max_wait: float = 600.0
    request_timeout: float = 10.0
    view_change_timeout: float = 10.0
    checkpoint_interval: int = 16
    anchor: bool = True
    anchor_grace: float = 3.0
    anchor_batch: int = 8  # at most this many certified headers per commitBlocks (anchoring fell behind)
    max_inflight: int = 2  # blocks ordered but not yet executed, at most (holds the commit p99 under load)
    max_pending: int = 4096  # unordered slips a replica holds before it answers 429 (back-pressure)
    identity_ttl: float = 2.0
    bridge: dict | None = None  # BridgeConfig fields; run by the institution's own replica

    @classmethod
    def load(cls, path: str | Path) -> "NodeConfig":
        try:
            raw = json.loads(Path(path).read_text())
            raw["peers"] = tuple(PeerConfig(**p) for p in raw["peers"])
            raw["validators"] = tuple(raw["validators"])
            raw["storage"] = tuple(raw.get("storage", ()))
            return cls(**raw)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"bad node configuration: {exc}", path=str(path)) from exc

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(asdict(self), indent=2))

    @property
    def record_domain(self) -> Eip712Domain:
        """EIP-712 domain of records and confirmations on this chain."""
        return Eip712Domain(self.chain_id, self.slip_ledger)

    @property
    def pbft_domain(self) -> bytes:
        """The SlipLedger's EIP-712 domain separator: the PBFT signature domain."""
        return Eip712Domain(self.chain_id, self.slip_ledger, name=SLIP_LEDGER_DOMAIN_NAME).separator

    def pbft_config(self) -> PbftConfig:
        return PbftConfig(
            validators=tuple(bytes.fromhex(v[2:]) for v in self.validators), domain=self.pbft_domain,
            max_slips=self.max_slips, max_wait=self.max_wait, request_timeout=self.request_timeout,
            view_change_timeout=self.view_change_timeout, checkpoint_interval=self.checkpoint_interval,
            window=max(64, 4 * self.checkpoint_interval), max_inflight=self.max_inflight,
        )


# --------------------------------------------------------------------------------------------
# identity lookups against IdentityRegistry (cached; refreshed after `identity_ttl`)
# --------------------------------------------------------------------------------------------


class ChainIdentityView:
    """IdentityView over the private chain's IdentityRegistry."""

    def __init__(self, agent: Any, ttl: float):
        self.agent = agent
        self.ttl = ttl
        self._cache: dict[str, tuple[float, IdentityEntry | None]] = {}
        self._lock = threading.Lock()

    def by_address(self, address: str) -> IdentityEntry | None:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(address)
        if hit and now - hit[0] < self.ttl:
            return hit[1]
        pid = self.agent.id_of(address)
        entry = None
        if pid != bytes(32):
            e = self.agent.get(pid)
            entry = IdentityEntry(pid, e.role, e.institution, e.suspended)
        with self._lock:
            self._cache[address] = (now, entry)
        return entry


# --------------------------------------------------------------------------------------------
# the replica process
# --------------------------------------------------------------------------------------------


class _Outbox:
    def __init__(self, node: "ReplicaNode"):
        self.node = node

    def send(self, to: int, msg: Message) -> None:
        self.node.mesh.send(to, encode_message(msg))

    def broadcast(self, msg: Message) -> None:
        self.node.mesh.broadcast(encode_message(msg))

    def deliver(self, block: CertifiedBlock) -> None:
        self.node.on_deliver(block)

    def wake_at(self, when: float | None) -> None:
        self.node.schedule(when)


@dataclass
class NodeStats:
    started: float = field(default_factory=time.time)
    delivered_blocks: int = 0
    delivered_slips: int = 0
    anchored: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    commit_latency_ms: list[tuple[int, int, float]] = field(default_factory=list)


class ReplicaNode:
    """Wires a Replica to TCP peers, an HTTP client API, storage and SlipLedger."""

    def __init__(self, config: NodeConfig, index: int, private_key: bytes):
        from ..chain.client import ChainClient
        from ..chain.identity import IdentityRegistryAgent
        from ..chain.slip_ledger import SlipLedgerAgent
        from eth_account import Account

        self.config = config
        self.index = index
        self.signer = EthSigner(private_key)
        self.account = Account.from_key(private_key)
        self.me = config.peers[index]
        self.data_dir = Path(config.data_dir) / config.chain / f"replica-{index}"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.client = ChainClient(config.rpc_url, name=config.chain)
        self.identity = IdentityRegistryAgent(self.client, config.identity_registry)
        self.ledger = SlipLedgerAgent(ChainClient(config.rpc_url, name=config.chain), config.slip_ledger)
        self.validator = SlipValidator(bytes.fromhex(config.hospital_id[2:]), config.record_domain,
                                       ChainIdentityView(self.identity, config.identity_ttl))
        self.store = SqliteStore(str(self.data_dir / "replica.sqlite"))
        # receipts are read on a connection of their own (the loop writes on the store's; WAL: readers never block)
        self.receipts_db = sqlite3.connect(str(self.data_dir / "replica.sqlite"), check_same_thread=False,
                                           isolation_level=None)
        self._receipts_lock = threading.Lock()
        self.index_db = sqlite3.connect(str(self.data_dir / "index.sqlite"), check_same_thread=False,
                                        isolation_level=None)
        self.index_db.execute("PRAGMA journal_mode=WAL")
        self.index_db.execute("PRAGMA synchronous=NORMAL")  # as the replica store: survives a killed process
        self.index_db.executescript(
            "CREATE TABLE IF NOT EXISTS pending (record_id BLOB PRIMARY KEY, patient TEXT, doctor TEXT,"
            " envelope BLOB, created REAL);"
            "CREATE TABLE IF NOT EXISTS anchor (height INTEGER PRIMARY KEY, tx TEXT);")
        self._db_lock = threading.Lock()
        self.stats = NodeStats()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.replica: Replica | None = None
        self.mesh: Mesh | None = None
        self.anchorer = Anchorer(index, len(config.validators), head=lambda: self.ledger.head()[0],
                                 commit=self._commit_header, publish=self._publish, grace=config.anchor_grace,
                                 anchor=config.anchor, commit_many=self._commit_headers,
                                 max_batch=config.anchor_batch)
        self._blob_store = self._make_store()
        self._stop_bridge = threading.Event()
        self.bridge = None
        if config.bridge and self.account.address.lower() == config.validators[0].lower():
            from ..crypto.signing import EthSigner as RecordSigner
            from .bridge import Bridge, BridgeConfig

            bc = BridgeConfig(**{**config.bridge, "consortium_urls": tuple(config.bridge["consortium_urls"])})
            self.bridge = Bridge(bc, config.chain_id, bytes.fromhex(config.hospital_id[2:]),
                                 RecordSigner(private_key), self.index_db, self._db_lock)

    def _make_store(self):
        if not self.config.storage:
            return None
        from ..storage.client import KuboClient
        from ..storage.replicated import ReplicatedStore

        clients = [KuboClient(u, timeout=10.0) for u in self.config.storage]
        return ReplicatedStore(clients, replicas=min(self.config.storage_replicas, len(clients)))

    # -- replica glue ---------------------------------------------------------------------

    def _build_replica(self) -> Replica:
        return Replica(self.config.pbft_config(), self.index, self.signer, EthVerifier(), time.time, _Outbox(self),
                       self.store, validate_slip=self.validator.check_envelope,
                       body_cid=body_cid_bytes)

    def schedule(self, when: float | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if when is not None and self.loop is not None:
            self._timer = self.loop.call_later(max(0.0, when - time.time()), self._fire)

    def _fire(self) -> None:
        self._timer = None
        self.replica.on_timer(time.time())

    def _on_frame(self, frame: bytes) -> None:
        self.replica.on_wire(frame)

    def on_deliver(self, block: CertifiedBlock) -> None:
        header = block.block.header
        # the slips' index was written with the block, in the store's transaction (SqliteStore.save_executed)
        self.stats.delivered_blocks += 1
        self.stats.delivered_slips += len(block.block.slips)
        # commit latency: from the primary's proposal (header timestamp, ms) to delivery here
        self.stats.commit_latency_ms.append((header.height, len(block.block.slips),
                                             time.time() * 1000 - header.timestamp))
        del self.stats.commit_latency_ms[:-2000]
        self.anchorer.offer(block)
        if self.bridge is not None:
            self.bridge.offer(block)

    # -- anchoring and publishing (a worker thread; web3 and HTTP are blocking) ----------------

    def _commit_header(self, block: CertifiedBlock) -> str:
        validators = list(self.config.pbft_config().validators)
        receipt = self.ledger.commit(self.account, block.qc, validators, gas=ANCHOR_GAS)
        tx = receipt["transactionHash"].hex()
        with self._db_lock:
            self.index_db.execute("INSERT OR REPLACE INTO anchor VALUES (?, ?)", (block.block.header.height, tx))
        self.stats.anchored += 1
        return tx

    def _commit_headers(self, blocks: list[CertifiedBlock]) -> str:
        validators = list(self.config.pbft_config().validators)
        receipt = self.ledger.commit_many(self.account, [b.qc for b in blocks], validators,
                                          gas=ANCHOR_GAS * len(blocks))
        tx = receipt["transactionHash"].hex()
        with self._db_lock:
            self.index_db.executemany("INSERT OR REPLACE INTO anchor VALUES (?, ?)",
                                      [(b.block.header.height, tx) for b in blocks])
        self.stats.anchored += len(blocks)
        return tx

    def _publish(self, block: CertifiedBlock) -> None:
        if self._blob_store is None:
            return
        body = encode_body(block.block.slips)
        expected = cid_text(block.block.header.body_cid)
        for attempt in range(5):
            try:
                cid = self._blob_store.add(body)
                if cid != expected:
                    log.error("storage returned CID %s for block %d, header says %s", cid,
                              block.block.header.height, expected)
                return
            except MBDSError as exc:
                log.warning("publishing body of block %d failed (attempt %d): %s", block.block.header.height,
                            attempt + 1, exc)
                time.sleep(0.2 * (attempt + 1))

    # -- client API helpers: coroutines run on the loop, blocking checks through ``offload`` ----

    def backlog(self) -> int:
        """Slips received and not yet ordered."""
        return len(self.replica.state.pool)

    def _admit(self, count: int) -> None:
        backlog = self.backlog()
        if backlog + count > self.config.max_pending:
            raise Overloaded(f"replica {self.index} holds {backlog} unordered slips (limit "
                             f"{self.config.max_pending}): retry later", retry_after=0.2)

    async def submit_confirmed(self, data: bytes, offload: Offload) -> dict[str, Any]:
        """A patient-confirmed record: build the slip, validate it, hand it to PBFT."""
        ack = (await self.submit_records([data], offload))[0]
        if ack.error is not None:
            raise InvalidSlip(ack.error)
        return ack.to_json()

    async def submit_batch(self, data: bytes, offload: Offload) -> list[dict[str, Any]]:
        """``POST /v1/slips/batch``: one answer per record (a bad record is refused alone with its reason);
        a batch that does not decode raises :class:`BatchError` and nothing of it is ordered."""
        return [ack.to_json() for ack in await self.submit_records(decode_batch(data), offload)]

    async def submit_records(self, records: list[bytes], offload: Offload) -> list[SlipAck]:
        """Check each confirmed record as every replica does (``offload``: in a worker thread), then hand the
        valid ones to PBFT together, here on the loop; one worker hop unless a record was pending here."""
        self._admit(len(records))
        acks, envs, where, held = await offload(self._check_records, records)
        if envs:
            for i, env, reason in zip(where, envs, self.replica.on_requests(envs)):
                sid = "0x" + env.slip_id.hex()
                if reason in (None, "already-pending", "already-committed"):
                    acks[i] = SlipAck(sid, "accepted" if reason is None else reason)
                else:
                    acks[i] = SlipAck(sid, error=reason)
        if held:
            await offload(self._forget_pending, held)
        return acks  # type: ignore[return-value] - every position is answered by now

    def _check_records(self, records: list[bytes]) -> tuple[list[SlipAck | None], list[SlipEnvelope], list[int],
                                                             list[tuple[bytes]]]:
        """(acks of the records refused or already committed, envelopes of the others, their positions, which
        of those were uploaded pending here) — blocking: signatures, identity lookups, SQLite."""
        acks: list[SlipAck | None] = [None] * len(records)
        envs, where, made = [], [], []
        for i, data in enumerate(records):
            try:
                made.append((i, *self.make_slip(data)))
            except InvalidSlip as exc:
                acks[i] = SlipAck(None, error=str(exc))
        committed = self.committed_among([slip_id for _i, _slip, slip_id in made])
        for i, slip, slip_id in made:
            if slip_id in committed:
                acks[i] = SlipAck("0x" + slip_id.hex(), "committed")
                continue
            envs.append(SlipEnvelope(slip_id, slip))
            where.append(i)
        held = []
        if envs:
            ids = [e.slip_id for e in envs]
            with self._db_lock:
                held = self.index_db.execute(
                    f"SELECT record_id FROM pending WHERE record_id IN ({','.join('?' * len(ids))})", ids).fetchall()
        return acks, envs, where, held

    def _forget_pending(self, held: list[tuple[bytes]]) -> None:
        """Drop the pending uploads of records now handed to PBFT (a write only when some were pending here)."""
        with self._db_lock:
            self.index_db.execute("BEGIN")
            self.index_db.executemany("DELETE FROM pending WHERE record_id = ?", held)
            self.index_db.execute("COMMIT")

    def make_slip(self, data: bytes) -> tuple[bytes, bytes]:
        """(slip bytes, slip ID) of a patient-confirmed record, checked as every replica checks it
        (:class:`~mbds_py.private.slip.SlipView`); :class:`InvalidSlip` with the reason otherwise."""
        record = RecordView.parse(data, self.config.record_domain)
        view = self.validator.identities
        doctor = view.by_address(record.doctor)
        patient = view.by_address(record.patient)
        if doctor is None:
            raise InvalidSlip(f"doctor {record.doctor} is not registered")
        if patient is None:
            raise InvalidSlip(f"patient {record.patient} is not registered")
        hospital = self.validator.hospital_id
        slip = slip_bytes(hospital, doctor.id, patient.id, data)
        return slip, self.validator.check_bytes(slip, SlipView(hospital, doctor.id, patient.id, record))

    def submit_envelope(self, data: bytes) -> dict[str, Any]:
        """A doctor's signed envelope (Algorithm 1): kept pending until the patient confirms."""
        try:
            envelope = HmiEnvelope.from_bytes(data)
        except (MBDSError, ValueError) as exc:
            raise InvalidSlip(f"malformed envelope: {exc}") from exc
        record_id = envelope.verify(self.config.record_domain)
        doctor = self.validator.identities.by_address(envelope.header.doctor)
        if doctor is None or doctor.role is not Role.DOCTOR or doctor.suspended:
            raise InvalidSlip(f"{envelope.header.doctor} is not an active registered doctor")
        if doctor.institution != self.validator.hospital_id:
            raise InvalidSlip(f"doctor {envelope.header.doctor} does not belong to this hospital")
        with self._db_lock:
            self.index_db.execute("INSERT OR IGNORE INTO pending VALUES (?, ?, ?, ?, ?)",
                                  (record_id, envelope.header.patient.address, envelope.header.doctor, data,
                                   time.time()))
        return {"record_id": "0x" + record_id.hex(), "status": "pending-confirmation"}

    def pending_for(self, patient: str) -> list[str]:
        with self._db_lock:
            rows = self.index_db.execute("SELECT record_id FROM pending WHERE patient = ? ORDER BY created",
                                         (patient,)).fetchall()
        return ["0x" + r[0].hex() for r in rows]

    def pending_envelope(self, record_id: bytes) -> bytes | None:
        with self._db_lock:
            row = self.index_db.execute("SELECT envelope FROM pending WHERE record_id = ?", (record_id,)).fetchone()
        return row[0] if row else None

    def committed_among(self, slip_ids: list[bytes]) -> set[bytes]:
        """Those of ``slip_ids`` this replica has committed (one query)."""
        if not slip_ids:
            return set()
        with self._receipts_lock:
            rows = self.receipts_db.execute(
                f"SELECT slip_id FROM slip WHERE slip_id IN ({','.join('?' * len(slip_ids))})", slip_ids).fetchall()
        return {r[0] for r in rows}

    def receipt_location(self, slip_id: bytes) -> tuple[int, int] | None:
        with self._receipts_lock:
            row = self.receipts_db.execute("SELECT height, pos FROM slip WHERE slip_id = ?", (slip_id,)).fetchone()
        return (row[0], row[1]) if row else None

    def receipt(self, slip_id: bytes) -> dict[str, Any] | None:
        """Inclusion receipt: header, Merkle proof and anchoring transaction, checkable on chain."""
        loc = self.receipt_location(slip_id)
        if loc is None:
            return None
        height, pos = loc
        with self._receipts_lock:
            (data,) = self.receipts_db.execute("SELECT data FROM block WHERE height = ?", (height,)).fetchone()
        cb = decode(CertifiedBlock, data)
        leaves = [self.config.pbft_config().scheme.slip_leaf(s) for s in cb.block.slips]
        h = cb.block.header
        with self._db_lock:
            row = self.index_db.execute("SELECT tx FROM anchor WHERE height = ?", (height,)).fetchone()
        return {
            "slip_id": "0x" + slip_id.hex(),
            "chain": self.config.chain,
            "height": height,
            "header": header_json(h),
            "proof": ["0x" + p.hex() for p in merkle_proof(leaves, pos)],
            "payload": "0x" + cb.block.slips[pos].payload.hex(),
            "body_cid": cid_text(h.body_cid),
            "anchor_tx": row[0] if row else None,
            "qc_view": cb.qc.view,
        }

    def status(self) -> dict[str, Any]:
        r = self.replica
        return {"chain": self.config.chain, "replica": self.index, "view": r.view, "primary": r.is_primary,
                "head": r.head.height, "delivered_slips": self.stats.delivered_slips,
                "anchored": self.stats.anchored, "uptime": time.time() - self.stats.started,
                "commit_latency_ms": self.stats.commit_latency_ms[-500:],
                "peers_connected": sum(1 for link in self.mesh.links.values() if link.connected)}

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, sockets: dict[str, socket.socket] | None = None) -> None:
        """Serve until ``stop``; ``sockets`` ("peer", "http") are listening sockets handed down by the
        launcher — a missing one is bound here from the configuration."""
        sockets = dict(sockets or {})
        self.loop = asyncio.get_running_loop()
        self.replica = self._build_replica()
        peers = [PeerAddress(p.index, p.host, p.port) for p in self.config.peers]
        self.mesh = Mesh(self.index, peers[self.index], peers, self._on_frame)
        await self.mesh.start(sockets.pop("peer", None))
        # blocks applied before a restart may not be anchored/published yet: the anchorer skips
        # those at or below the anchored head
        for cb in self.store.blocks_from(0, 1 << 30):
            self.anchorer.offer(cb)
        threading.Thread(target=self.anchorer.run, name="anchor", daemon=True).start()
        http_sock = listener(sockets, "http", self.me.host, self.me.http_port,
                             what=f"replica {self.index} of {self.config.chain}")
        http = await serve_on_loop(make_api(self), http_sock)
        if self.bridge is not None:
            for cb in self.store.blocks_from(self.bridge.sent_height() + 1, 1 << 30):
                self.bridge.offer(cb)
            threading.Thread(target=self.bridge.run, args=(self._stop_bridge,), name="bridge", daemon=True).start()
        self.replica.start()
        log.info("replica %d of %s up: pbft %s:%d, api %s", self.index, self.config.chain, self.me.host,
                 self.me.port, self.me.http_url)
        await stop.wait()
        self._stop_bridge.set()
        await http.cleanup()
        await self.mesh.stop()
        self.anchorer.stop()


def header_json(h) -> dict[str, Any]:
    return {"height": h.height, "seq": h.seq, "prev_hash": "0x" + h.prev_hash.hex(), "timestamp": h.timestamp,
            "creator": "0x" + h.creator.hex(), "merkle_root": "0x" + h.merkle_root.hex(),
            "body_cid": "0x" + h.body_cid.hex()}


# --------------------------------------------------------------------------------------------
# HTTP client API (aiohttp, served on the replica's own loop)
# --------------------------------------------------------------------------------------------

MAX_BODY = 16 * 1024 * 1024  # a full batch (decode_batch bounds it further); aiohttp answers 413 beyond it


def _hex_id(text: str) -> bytes:
    try:
        raw = bytes.fromhex(text[2:] if text.startswith("0x") else text)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise InvalidSlip(f"expected a 32-byte hex ID, got {text!r}")
    return raw


@web.middleware
async def _overloaded(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A full replica answers 429 with a ``Retry-After`` hint (whole seconds, at least 1)."""
    try:
        return await handler(request)
    except Overloaded as exc:
        return json_response({"error": str(exc), "retry_after": exc.retry_after}, status=429,
                             headers={"Retry-After": str(max(1, round(exc.retry_after)))})


def make_api(node: ReplicaNode, *, max_body: int = MAX_BODY) -> web.Application:
    """The replica's client API over ``node``, bodies of at most ``max_body`` bytes.  Handlers run on the
    replica's loop (``status`` reads its state, slips are ordered there); checking slips (signatures,
    identity lookups) and SQLite run in the app's worker pool."""
    app = make_app(server_name="mbds-node/1", max_body=max_body, middlewares=(_overloaded,), openapi="replica")
    routes = web.RouteTableDef()

    @routes.get("/v1/status")
    async def status(_request: web.Request) -> web.Response:
        return json_response(node.status())

    @routes.get("/v1/slips/{slip_id}/receipt")
    async def receipt(request: web.Request) -> web.Response:
        slip_id = request.match_info["slip_id"]
        doc = await blocking(request, node.receipt, _hex_id(slip_id))
        if doc is None:
            return json_response({"status": "not-committed", "slip_id": slip_id}, status=404)
        return json_response(doc)

    @routes.get("/v1/records")
    async def pending(request: web.Request) -> web.Response:
        if "patient" not in request.query:
            raise InvalidSlip("GET /v1/records needs ?patient=0x…")
        return json_response({"pending": await blocking(request, node.pending_for, request.query["patient"])})

    @routes.get("/v1/records/{record_id}")
    async def envelope(request: web.Request) -> web.Response:
        data = await blocking(request, node.pending_envelope, _hex_id(request.match_info["record_id"]))
        if data is None:
            return json_response({"error": "no pending record with this ID"}, status=404)
        return bytes_response(data)

    @routes.post("/v1/slips")
    async def slip(request: web.Request) -> web.Response:
        return json_response(await node.submit_confirmed(await read_body(request), partial(blocking, request)),
                             status=202)

    @routes.post("/v1/slips/batch")
    async def batch(request: web.Request) -> web.Response:
        body = await read_body(request)
        return json_response({"results": await node.submit_batch(body, partial(blocking, request))})

    @routes.post("/v1/records")
    async def upload(request: web.Request) -> web.Response:
        return json_response(await blocking(request, node.submit_envelope, await read_body(request)), status=201)

    app.add_routes(routes)
    return app


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------


def load_private_key(args: argparse.Namespace) -> bytes:
    """The replica's validator key: from the launcher's pipe (``--key-fd``) or an encrypted keystore
    (``--keystore``, passphrase from a fd, a prompt or stdin); never from the environment."""
    from ..service_keys import load_service_secret

    key = load_service_secret(args, "validator", lambda bundle: bundle.account_key)
    if len(key) != 32:
        raise ConfigError(f"validator key: expected 32 bytes, got {len(key)}")
    return key


add_arguments = node_arguments  # the options live in mbds_py.cli_options: `--help` imports only it


def run_node(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    key = load_private_key(args)  # first: a bad key or passphrase fails before anything else
    config = NodeConfig.load(args.config)
    if not 0 <= args.index < len(config.peers):
        raise ConfigError(f"--index {args.index} is outside 0..{len(config.peers) - 1}", path=args.config)
    sockets = inherited_sockets(args.listen)
    node = ReplicaNode(config, args.index, key)
    if "0x" + node.signer.address.hex() != config.validators[args.index].lower():
        raise ConfigError(f"the key is not validator {args.index} ({config.validators[args.index]})",
                          path=args.config)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await node.run(stop, sockets)

    asyncio.run(main())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = add_arguments(argparse.ArgumentParser(prog="python -m mbds_py.private.node"))
    try:
        return run_node(parser.parse_args(argv))
    except MBDSError as exc:
        print(f"mbds node: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
