"""The bridge node: a private chain's committed slips → summary items → the consortium.

Runs inside the institution's own replica (the hospital or platform, beside
the health authorities).  Every ``every_blocks`` committed blocks, or
``max_wait`` seconds after the oldest unsent one, it turns slips into summary
items (patient ID, encrypted keywords, HMI hash, private chain ID, block
height, slip ID), packs ten per consortium slip, signs them with the
institution's key and posts them to the consortium nodes.  Progress is durable,
so a restart resends nothing twice and skips nothing.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import dataclass

import requests

from ..consortium.blocks import ConsortiumSlip, SummaryItem, encode_body
from ..consortium.eip712 import index_domain
from ..errors import MBDSError
from ..pbft.types import CertifiedBlock
from .slip import slip_summary

log = logging.getLogger("mbds.bridge")
ITEMS_PER_SLIP = 10


@dataclass(frozen=True)
class BridgeConfig:
    consortium_urls: tuple[str, ...]
    consortium_chain_id: int
    consortium_index: str
    every_blocks: int = 10
    max_wait: float = 600.0


def summary_items(chain_id: int, block: CertifiedBlock) -> list[SummaryItem]:
    out = []
    height = block.block.header.height
    for env in block.block.slips:
        patient_id, hmi_hash, keywords = slip_summary(env.payload)  # certified bytes: framing only, no points
        out.append(SummaryItem(patient_id, keywords, hmi_hash, chain_id, height, env.slip_id))
    return out


class Bridge:
    """Batches committed blocks into signed consortium slips."""

    def __init__(self, config: BridgeConfig, chain_id: int, origin: bytes, signer, db: sqlite3.Connection,
                 db_lock: threading.Lock):
        self.config = config
        self.chain_id = chain_id
        self.origin = origin
        self.signer = signer
        self.domain = index_domain(config.consortium_chain_id, config.consortium_index)
        self.db = db
        self.db_lock = db_lock
        with db_lock:
            db.execute("CREATE TABLE IF NOT EXISTS bridge (k TEXT PRIMARY KEY, v INTEGER)")
        self.pending: list[CertifiedBlock] = []
        self.oldest: float | None = None
        self.lock = threading.Lock()
        self.session = requests.Session()
        self.sent_slips = 0

    def sent_height(self) -> int:
        with self.db_lock:
            row = self.db.execute("SELECT v FROM bridge WHERE k = 'sent_height'").fetchone()
        return row[0] if row else 0

    def offer(self, block: CertifiedBlock) -> None:
        if block.block.header.height <= self.sent_height() or not block.block.slips:
            return
        with self.lock:
            if any(b.block.header.height == block.block.header.height for b in self.pending):
                return
            self.pending.append(block)
            self.oldest = self.oldest or time.monotonic()

    def due(self) -> bool:
        with self.lock:
            return bool(self.pending) and (len(self.pending) >= self.config.every_blocks
                                           or time.monotonic() - (self.oldest or 0) >= self.config.max_wait)

    def flush(self) -> int:
        """Send everything pending; returns the number of consortium slips sent."""
        with self.lock:
            blocks = sorted(self.pending, key=lambda b: b.block.header.height)
        if not blocks:
            return 0
        items = [item for b in blocks for item in summary_items(self.chain_id, b)]
        now = int(time.time())
        slips = [ConsortiumSlip.create(self.origin, now, items[i:i + ITEMS_PER_SLIP], self.domain, self.signer)
                 for i in range(0, len(items), ITEMS_PER_SLIP)]
        body = encode_body(slips)
        errors = []
        for url in self.config.consortium_urls:
            try:
                resp = self.session.post(f"{url}/v1/slips", data=body, timeout=10)
                if resp.status_code == 202:
                    break
                errors.append(f"{url}: HTTP {resp.status_code} {resp.text[:200]}")
            except requests.RequestException as exc:
                errors.append(f"{url}: {exc.__class__.__name__}")
        else:
            raise MBDSError(f"no consortium node accepted the summary: {'; '.join(errors)}")
        top = blocks[-1].block.header.height
        with self.db_lock:
            self.db.execute("INSERT OR REPLACE INTO bridge VALUES ('sent_height', ?)", (top,))
        with self.lock:
            self.pending = [b for b in self.pending if b.block.header.height > top]
            self.oldest = time.monotonic() if self.pending else None
        self.sent_slips += len(slips)
        return len(slips)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            if self.due():
                try:
                    self.flush()
                except MBDSError as exc:
                    log.warning("bridge: %s", exc)
            stop.wait(0.2)
