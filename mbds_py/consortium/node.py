"""`mbds consortium run`: one consortium institution's DPoS node as its own OS process.

Every node keeps a mempool of consortium slips (submitted by the private
chains' bridge nodes over HTTP and gossiped once to every peer) and follows the
chain's ``BlockCommitted`` log.  In its slot the scheduled RPN builds a block of
≤ 128 slips, sends it to the ATNs, and commits it to ``ConsortiumIndex`` with a
quorum of attestations.  An ATN attests only after :func:`verify_block` passed,
including the cross-chain check (:mod:`.audit`): every summary item's slip is
proven against the header committed in its chain's ``SlipLedger`` (one proof
and one body fetch per private block), and its patient, keywords and HMI hash
match the slip.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import socket
import sqlite3
import sys
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import requests
from aiohttp import web

from ..cli_options import consortium_arguments
from ..errors import ConfigError, MBDSError
from ..listen import bind_listener, inherited_sockets, listener
from ..web import Server, blocking, json_response, make_app, read_body, read_json_object
from .audit import ItemChecker, PrivateChainRef
from .blocks import (Attestation, AttestationSet, BlockHeader, ConsortiumBlock, ConsortiumSlip,
                     attest, build_block, decode_body, encode_body, reject, verify_block)
from .cid import cid_v0
from .errors import InvalidBlock

log = logging.getLogger("mbds.consortium")

MAX_BODY = 32 * 1024 * 1024


@dataclass(frozen=True)
class ConsortiumPeer:
    institution_id: str
    url: str


@dataclass(frozen=True)
class ConsortiumNodeConfig:
    rpc_url: str
    credit_registry: str
    consortium_index: str
    institution_id: str
    host: str
    port: int
    peers: tuple[ConsortiumPeer, ...]
    private_chains: tuple[PrivateChainRef, ...]
    storage: tuple[str, ...] = ()
    storage_replicas: int = 1
    data_dir: str = ".mbds/consortium"
    max_slips: int = 128
    poll_interval: float = 0.25  # at most this late for a slot's start
    follow_interval: float = 1.0  # idle between slots: the chain is read at least this often

    @classmethod
    def load(cls, path: str | Path) -> "ConsortiumNodeConfig":
        try:
            raw = json.loads(Path(path).read_text())
            raw["peers"] = tuple(ConsortiumPeer(**p) for p in raw["peers"])
            raw["private_chains"] = tuple(PrivateChainRef(**{**c, "api_urls": tuple(c["api_urls"])})
                                          for c in raw["private_chains"])
            raw["storage"] = tuple(raw.get("storage", ()))
            return cls(**raw)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"bad consortium node configuration: {exc}", path=str(path)) from exc

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(asdict(self), indent=2))

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class ConsortiumNode:
    """Mempool, chain follower, producer (when RPN) and auditor (when ATN)."""

    def __init__(self, config: ConsortiumNodeConfig, private_key: bytes):
        from eth_account import Account

        from ..chain.client import ChainClient
        from .agents import ConsortiumIndexAgent, CreditRegistryAgent
        from .eip712 import AccountSigner

        self.config = config
        self.account = Account.from_key(private_key)
        self.signer = AccountSigner(self.account)
        self.me = bytes.fromhex(config.institution_id[2:])
        self.index = ConsortiumIndexAgent(ChainClient(config.rpc_url, name="consortium"), config.consortium_index)
        self.credit = CreditRegistryAgent(ChainClient(config.rpc_url, name="consortium"), config.credit_registry)
        self.domain = self.index.domain()
        self.clock = self.index.clock()
        self.session = requests.Session()
        self.pool = ThreadPoolExecutor(max_workers=8)
        self._open_index(Path(config.data_dir) / config.institution_id[2:10])
        self._blob_store = self._make_store()
        self.checker = ItemChecker(config.private_chains, self._blob_store)
        self._stop = threading.Event()

    def _open_index(self, data: Path) -> None:
        """The node's view of the chain: mempool, head, and the patient index in ``data``/index.sqlite."""
        self.lock = threading.RLock()
        self.follow_lock = threading.Lock()  # one follower at a time: the loop, readers and auditors all follow
        self._blocks: OrderedDict[int, ConsortiumBlock] = OrderedDict()  # decoded committed blocks (LRU)
        self.mempool: dict[bytes, ConsortiumSlip] = {}
        self.included: set[bytes] = set()
        self.proposals: dict[bytes, ConsortiumBlock] = {}  # block hash -> block we saw as proposal
        self.head: BlockHeader | None = None
        self.next_evm_block = 0
        self.attempted_slots: set[int] = set()
        self.stats = {"produced": 0, "attested": 0, "rejected": 0, "committed_seen": 0, "missed": 0}
        data.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(data / "index.sqlite"), check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(
            "CREATE TABLE IF NOT EXISTS block (height INTEGER PRIMARY KEY, header BLOB, body BLOB);"
            "CREATE TABLE IF NOT EXISTS item (patient BLOB, height INTEGER, slip INTEGER, idx INTEGER,"
            " PRIMARY KEY (height, slip, idx));"
            "CREATE INDEX IF NOT EXISTS item_patient ON item (patient);")

    def _make_store(self):
        if not self.config.storage:
            return None
        from ..storage.client import KuboClient
        from ..storage.replicated import ReplicatedStore

        return ReplicatedStore([KuboClient(u, timeout=10.0) for u in self.config.storage],
                               replicas=min(self.config.storage_replicas, len(self.config.storage)))

    # -- mempool ---------------------------------------------------------------------------

    def account_of(self, institution_id: bytes) -> str | None:
        try:
            record = self.credit.institution(institution_id)
        except MBDSError:
            return None
        return getattr(record, "account", None)

    def submit(self, slip: ConsortiumSlip, *, gossip: bool) -> str:
        with self.lock:
            if slip.slip_id in self.mempool or slip.slip_id in self.included:
                return "known"
        account = self.account_of(slip.origin)
        signer = slip.signer(self.domain)
        if account is None or signer is None or signer.lower() != account.lower():
            raise MBDSError(f"consortium slip 0x{slip.slip_id.hex()} is not signed by its origin institution")
        if not 1 <= len(slip.items) <= 10:
            raise MBDSError(f"a consortium slip carries 1..10 items, got {len(slip.items)}")
        with self.lock:
            self.mempool[slip.slip_id] = slip
        if gossip:
            body = encode_body([slip])
            for peer in self.config.peers:
                if peer.url != self.config.url:
                    self.pool.submit(self._post_quietly, f"{peer.url}/v1/slips?gossip=0", body)
        return "accepted"

    def _post_quietly(self, url: str, body: bytes) -> None:
        try:
            self.session.post(url, data=body, timeout=5)
        except requests.RequestException:
            pass

    # -- following the chain ------------------------------------------------------------------

    def follow(self) -> None:
        """Apply the blocks committed since the last follow, each once.  The node loop, ``/v1/items`` readers
        and auditors call this from several threads: they take turns, and a later one finds nothing new."""
        with self.follow_lock:
            latest = self.index.client.w3.eth.block_number
            if latest < self.next_evm_block:
                return
            for committed in self.index.committed_blocks(from_block=self.next_evm_block, to_block=latest):
                self._apply(committed.header)
            self.next_evm_block = latest + 1

    def _apply(self, header: BlockHeader) -> None:
        """Index one committed block, then take it into memory: a failed index write changes nothing, and the
        next follow applies the block again (its proposal, whose body may be stored nowhere else, is kept)."""
        with self.lock:
            block = self.proposals.get(header.block_hash)
        if block is None:
            block = self._fetch_body(header)
        if block is not None:
            rows = [(item.patient_id, header.height, s, i) for s, slip in enumerate(block.slips)
                    for i, item in enumerate(slip.items)]
            self.db.execute("BEGIN")
            try:
                self.db.execute("INSERT OR REPLACE INTO block VALUES (?, ?, ?)", (header.height, header.encode(),
                                                                                   block.body()))
                self.db.executemany("INSERT OR IGNORE INTO item VALUES (?, ?, ?, ?)", rows)
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
        with self.lock:
            self.proposals.pop(header.block_hash, None)
            self.head = header
            self.stats["committed_seen"] += 1
            if block is not None:
                for slip in block.slips:
                    self.mempool.pop(slip.slip_id, None)
                    self.included.add(slip.slip_id)

    def _fetch_body(self, header: BlockHeader) -> ConsortiumBlock | None:
        if header.item_count == 0:
            return ConsortiumBlock(header, ())
        if self._blob_store is None:
            return None
        try:
            return ConsortiumBlock(header, decode_body(self._blob_store.cat(cid_v0(header.body_cid))))
        except MBDSError as exc:
            log.warning("body of consortium block %d unavailable: %s", header.height, exc)
            return None

    # -- producing (RPN) --------------------------------------------------------------------------

    def chain_now(self) -> int:
        return int(time.time())

    def maybe_produce(self) -> None:
        now = self.chain_now()
        slot = self.clock.slot_at(now)
        if slot in self.attempted_slots or (self.head is not None and slot <= self.head.slot):
            return
        producer, _account = self.index.producer_of(slot)
        if producer != self.me:
            return
        self.attempted_slots.add(slot)
        if self.credit.is_suspended(self.me):  # ConsortiumIndex refuses a suspended producer's block
            log.warning("slot %d: this institution is suspended in the IdentityRegistry; not producing", slot)
            return
        if now >= self.clock.slot_end(slot) - 0:
            return
        with self.lock:
            slips = list(self.mempool.values())[: self.config.max_slips]
            prev = self.head
        block = build_block(slips, prev=prev, slot=slot, producer=self.me, timestamp=self.clock.slot_start(slot))
        if self._blob_store is not None and slips:
            try:
                self._blob_store.add(block.body())
            except MBDSError as exc:
                log.warning("cannot publish consortium body for slot %d: %s", slot, exc)
                return
        # only ATNs that are not suspended: ConsortiumIndex refuses a block carrying a suspended attester
        votes = AttestationSet(block.header.digest(self.domain), frozenset(self.credit.attester_accounts()))
        proposal = json.dumps({"header": "0x" + block.header.encode().hex(), "body": "0x" + block.body().hex(),
                               "producer": "0x" + self.me.hex()}).encode()
        futures = [self.pool.submit(self._ask, peer.url, proposal) for peer in self.config.peers
                   if peer.url != self.config.url]
        for fut in futures:
            att = fut.result()
            if att is not None:
                try:
                    votes.add(att)
                except MBDSError:
                    pass
        quorum = self.index.attestation_quorum()  # shrinks with the ATN set once the reserve ran out
        if len(votes) < quorum:
            log.warning("slot %d: only %d of %d attestations", slot, len(votes), quorum)
            return
        try:
            gas = 600_000 + 40_000 * len(block.patient_ids) + 4_000 * block.header.item_count
            self.index.commit(self.account, block, votes.signatures(), gas=min(gas, 25_000_000))
            with self.lock:
                self.proposals[block.header.block_hash] = block
            self.stats["produced"] += 1
        except MBDSError as exc:
            log.warning("commit for slot %d failed: %s", slot, exc)

    def _ask(self, url: str, proposal: bytes) -> Attestation | None:
        try:
            resp = self.session.post(f"{url}/v1/proposals", data=proposal, timeout=5)
        except requests.RequestException:
            return None
        if resp.status_code != 200:
            return None
        doc = resp.json()
        return Attestation(doc["signer"], bytes.fromhex(doc["signature"][2:]))

    # -- auditing (ATN) -----------------------------------------------------------------------------

    def audit(self, header: BlockHeader, body: bytes) -> tuple[bool, Attestation, str]:
        """Verify a proposal; returns (attested?, attestation or rejection, reason)."""
        atns = [a.lower() for a in self.credit.atn_accounts()]
        if self.account.address.lower() not in atns:
            raise MBDSError("this node is not an audit node of the current round")
        if self.credit.is_suspended(self.me):
            raise MBDSError("this institution is suspended in the IdentityRegistry: it does not attest")
        if self.credit.is_suspended(header.producer):
            self.stats["rejected"] += 1
            return False, reject(header, self.domain, self.signer), "the producer is suspended in the IdentityRegistry"
        block = ConsortiumBlock(header, decode_body(body))
        self.checker.prefetch(item for slip in block.slips for item in slip.items)  # each private block once
        try:
            self.follow()
            verify_block(block, prev=self.head, clock=self.clock, rpn=self.credit.rpn_set(), domain=self.domain,
                         account_of=self.account_of, check_item=self.checker)
        except InvalidBlock as exc:
            self.stats["rejected"] += 1
            return False, reject(header, self.domain, self.signer), str(exc)
        with self.lock:
            self.proposals[header.block_hash] = block
        self.stats["attested"] += 1
        return True, attest(header, self.domain, self.signer), "ok"

    # -- queries ------------------------------------------------------------------------------------

    def _stored_block(self, height: int) -> ConsortiumBlock:
        """A committed block decoded once (its Merkle tree built once), kept in a small LRU."""
        with self.lock:
            block = self._blocks.get(height)
            if block is not None:
                self._blocks.move_to_end(height)
                return block
        h, b = self.db.execute("SELECT header, body FROM block WHERE height = ?", (height,)).fetchone()
        block = ConsortiumBlock(BlockHeader.decode(h), decode_body(b))
        with self.lock:
            self._blocks[height] = block
            while len(self._blocks) > 256:
                self._blocks.popitem(last=False)
        return block

    def items_of(self, patient_id: bytes, after: int = 0) -> list[dict[str, Any]]:
        """The patient's items (index ``item_patient``) in blocks above height ``after``, with their proofs."""
        rows = self.db.execute("SELECT height, slip, idx FROM item WHERE patient = ? AND height > ? "
                               "ORDER BY height, slip, idx", (patient_id, int(after))).fetchall()
        out = []
        for height, s, i in rows:
            block = self._stored_block(height)
            header, slips = block.header, block.slips
            item = slips[s].items[i]
            proof = block.item_proof(s, i)
            out.append({"height": height, "slip": s, "index": i, "chain_id": item.chain_id,
                        "block_height": item.block_height, "slip_id": "0x" + item.slip_id.hex(),
                        "hmi_hash": "0x" + item.hmi_hash.hex(), "keywords": ["0x" + k.hex() for k in item.keywords],
                        "header": "0x" + header.encode().hex(), "slip_hash": "0x" + proof.slip_hash.hex(),
                        "proof": ["0x" + p.hex() for p in proof.proof]})
        return out

    def status(self) -> dict[str, Any]:
        return {"institution": "0x" + self.me.hex(), "head": self.head.height if self.head else 0,
                "mempool": len(self.mempool), **self.stats, "audit": dict(self.checker.stats)}

    # -- lifecycle ------------------------------------------------------------------------------------

    def run(self, sock: socket.socket | None = None) -> None:
        """Serve on ``sock`` (inherited from the launcher) or on a socket bound to the configured port."""
        sock = sock or bind_listener(self.config.host, self.config.port, what="consortium node")
        server = Server(_app_for(self), sock, name="http").start()
        log.info("consortium node %s listening on %s", self.config.institution_id, server.url)
        while not self._stop.is_set():
            try:
                self.follow()
                self.maybe_produce()
            except Exception as exc:  # noqa: BLE001 - keep the node alive; the chain may be restarting
                log.warning("consortium loop: %s", exc)
            self._stop.wait(self._idle_wait())
        server.stop()

    def stop(self) -> None:
        self._stop.set()

    def _idle_wait(self) -> float:
        """Sleep until just after the next slot starts (a producer must not miss it), but read the chain at
        least every ``follow_interval``: between slots there is nothing to produce, and readers of
        ``/v1/items`` follow the chain themselves — so an idle node costs a quarter of the polls it used to."""
        now = time.time()
        try:
            to_next = self.clock.slot_start(self.clock.slot_at(int(now)) + 1) - now + 0.01
        except ValueError:  # before the genesis time
            to_next = self.config.follow_interval
        return max(self.config.poll_interval, min(self.config.follow_interval, to_next))


def _app_for(node: ConsortiumNode) -> web.Application:
    """The node's HTTP API: errors are ``{"error": ...}`` (bad input 400); the node's sync work runs in the
    app's worker pool."""
    app = make_app(server_name="mbds-consortium/1", max_body=MAX_BODY, openapi="consortium")
    routes = web.RouteTableDef()

    @routes.get("/v1/status")
    async def status(request: web.Request) -> web.Response:
        return json_response(await blocking(request, node.status))

    @routes.get("/v1/items")
    async def items(request: web.Request) -> web.Response:
        pid = bytes.fromhex(request.query.get("patient", "")[2:])
        if len(pid) != 32:
            raise MBDSError("GET /v1/items needs ?patient=0x<32-byte participant ID>")
        try:
            after = int(request.query.get("after", "0"))
        except ValueError:
            raise MBDSError("GET /v1/items: ?after= must be a block height") from None

        def follow_and_read() -> list[dict[str, Any]]:
            node.follow()
            return node.items_of(pid, after)

        return json_response({"items": await blocking(request, follow_and_read)})

    @routes.post("/v1/slips")
    async def slips(request: web.Request) -> web.Response:
        gossip = request.query.get("gossip") != "0"
        body = await read_body(request)
        results = await blocking(request, lambda: [node.submit(s, gossip=gossip) for s in decode_body(body)])
        return json_response({"results": results}, status=202)

    @routes.post("/v1/proposals")
    async def proposals(request: web.Request) -> web.Response:
        doc = await read_json_object(request)

        def audit() -> tuple[bool, Attestation, str]:
            header = BlockHeader.decode(bytes.fromhex(doc["header"][2:]))
            return node.audit(header, bytes.fromhex(doc["body"][2:]))

        ok, att, reason = await blocking(request, audit)
        return json_response({"signer": att.signer, "signature": "0x" + att.signature.hex(), "attested": ok,
                              "reason": reason}, status=200 if ok else 409)

    app.add_routes(routes)
    return app


add_arguments = consortium_arguments  # the options live in mbds_py.cli_options: `--help` imports only it


def run_consortium_node(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from ..service_keys import load_service_secret

    key = load_service_secret(args, "institution", lambda bundle: bundle.account_key)
    if len(key) != 32:
        raise ConfigError(f"institution key: expected 32 bytes, got {len(key)}")
    config = ConsortiumNodeConfig.load(args.config)
    if args.port:
        from dataclasses import replace

        config = replace(config, port=args.port)
    sock = listener(inherited_sockets(args.listen), "http", config.host, config.port, what="consortium node")
    node = ConsortiumNode(config, key)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: node.stop())
    node.run(sock)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = add_arguments(argparse.ArgumentParser(prog="python -m mbds_py.consortium.node"))
    try:
        return run_consortium_node(parser.parse_args(argv))
    except MBDSError as exc:
        print(f"mbds consortium node: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["ConsortiumNode", "ConsortiumNodeConfig", "ConsortiumPeer", "ItemChecker", "PrivateChainRef"]
