"""The bridge node's batching (mbds_py/private/bridge.py): ten summary items per consortium slip, a batch every
``every_blocks`` committed blocks, or a partial one once ``max_wait`` has passed since the oldest unsent block.

Real slips (doctor-signed, patient-confirmed records) in certified-block containers, a real SQLite progress table,
and an HTTP receiver on loopback that decodes what the bridge posts and checks it as a consortium node's
``/v1/slips`` does (origin signature, 1..10 items). The bridge's clock is a fake one the test moves; the run loop
is followed through its own ``stop.wait`` calls, never by sleeping.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Iterator

import pytest
from eth_utils import keccak

from mbds_py.consortium.blocks import decode_body
from mbds_py.consortium.eip712 import index_domain
from mbds_py.crypto.signing import Eip712Domain, EthSigner
from mbds_py.pbft.types import Block, BlockHeader, CertifiedBlock, QuorumCertificate
from mbds_py.private import bridge as bridge_module
from mbds_py.private.bridge import ITEMS_PER_SLIP, Bridge, BridgeConfig, summary_items
from mbds_py.private.slip import TransactionSlip
from mbds_py.private.testbed import make_record

PRIVATE_CHAIN_ID = 43151
CONSORTIUM_CHAIN_ID = 43152
INDEX_ADDRESS = "0x" + "1d" * 20
RECORD_DOMAIN = Eip712Domain(PRIVATE_CHAIN_ID, "0x" + "5e" * 20)
HOSPITAL_ID = keccak(text="bridge-test/hospital")
BRIDGE_KEY = keccak(text="bridge-test/hospital-key")


# -- fixtures ----------------------------------------------------------------------------------------------------


class Receiver:
    """What consortium nodes were sent: one entry per POST /v1/slips body, decoded."""

    def __init__(self) -> None:
        self.bodies: list[tuple] = []
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers["Content-Length"]))
                assert self.path == "/v1/slips"
                with receiver.arrived:
                    receiver.bodies.append(decode_body(body))
                    receiver.arrived.notify_all()
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def wait_for(self, n: int, timeout: float = 30.0) -> None:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.bodies) >= n, timeout), f"{len(self.bodies)} POSTs, not {n}"


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    rx = Receiver()
    thread = threading.Thread(target=rx.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield rx
    rx.server.shutdown()
    rx.server.server_close()


class FakeClock:
    """Stands in for the bridge module's ``time``: ``monotonic`` is moved by the test, ``time`` is real."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return time.time()


@pytest.fixture()
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(bridge_module, "time", SimpleNamespace(monotonic=fake.monotonic, time=fake.time))
    return fake


@pytest.fixture(scope="module")
def slips() -> list[TransactionSlip]:
    """Thirty real slips, each for its own patient ID."""
    out = []
    for n in range(30):
        _env, confirmed = make_record(RECORD_DOMAIN, n, tag="bridge")
        out.append(TransactionSlip(HOSPITAL_ID, keccak(text="bridge-test/doctor"), keccak(text=f"patient-{n}"),
                                   confirmed))
    return out


def certified(height: int, slips: list[TransactionSlip]) -> CertifiedBlock:
    header = BlockHeader(height=height, seq=height, prev_hash=bytes(32), timestamp=1_700_000_000_000 + height,
                         creator=bytes(20), merkle_root=keccak(height.to_bytes(8, "big")),
                         body_cid=b"\x12\x20" + bytes(32))
    block = Block(header, tuple(s.envelope(RECORD_DOMAIN) for s in slips))
    return CertifiedBlock(block, QuorumCertificate(header, 0, ()))


def make_bridge(url: str, db: sqlite3.Connection, *, every_blocks: int, max_wait: float) -> Bridge:
    config = BridgeConfig((url,), CONSORTIUM_CHAIN_ID, INDEX_ADDRESS, every_blocks=every_blocks, max_wait=max_wait)
    return Bridge(config, PRIVATE_CHAIN_ID, HOSPITAL_ID, EthSigner(BRIDGE_KEY), db, threading.Lock())


def check_as_a_consortium_node(slip) -> None:
    """What ``ConsortiumNode.submit`` accepts: signed by the origin institution's account, 1..10 items."""
    assert slip.origin == HOSPITAL_ID
    assert slip.signer(index_domain(CONSORTIUM_CHAIN_ID, INDEX_ADDRESS)) == EthSigner(BRIDGE_KEY).address
    assert 1 <= len(slip.items) <= 10


# -- tests -------------------------------------------------------------------------------------------------------


def test_items_go_ten_to_a_consortium_slip_in_height_order(receiver, clock, slips):
    db = sqlite3.connect(":memory:", check_same_thread=False)
    bridge = make_bridge(receiver.url, db, every_blocks=3, max_wait=600.0)
    blocks = [certified(1, slips[0:7]), certified(2, slips[7:15]), certified(3, slips[15:25])]
    bridge.offer(blocks[2])  # arrival order does not matter: items go by height
    bridge.offer(blocks[0])
    assert not bridge.due()  # two of three blocks
    bridge.offer(blocks[1])
    assert bridge.due()

    assert bridge.flush() == 3
    assert len(receiver.bodies) == 1  # one POST carries the whole batch
    [sent] = receiver.bodies
    assert [len(s.items) for s in sent] == [10, 10, 5]
    for s in sent:
        check_as_a_consortium_node(s)
    assert len({s.slip_id for s in sent}) == 3
    items = [item for s in sent for item in s.items]
    assert items == [item for b in blocks for item in summary_items(PRIVATE_CHAIN_ID, b)]
    expected = [(h, slip.slip_id(RECORD_DOMAIN), slip.patient_id, slip.hmi_hash)
                for h, part in ((1, slips[0:7]), (2, slips[7:15]), (3, slips[15:25])) for slip in part]
    assert [(i.block_height, i.slip_id, i.patient_id, i.hmi_hash) for i in items] == expected
    assert {i.chain_id for i in items} == {PRIVATE_CHAIN_ID}
    assert ITEMS_PER_SLIP == 10

    # progress is durable: a restarted bridge on the same database resends nothing
    assert bridge.sent_height() == 3 and not bridge.due() and bridge.flush() == 0
    again = make_bridge(receiver.url, db, every_blocks=1, max_wait=0.0)
    for b in blocks:
        again.offer(b)
    assert not again.due() and again.flush() == 0
    assert len(receiver.bodies) == 1


def test_exactly_twenty_items_make_two_full_slips(receiver, clock, slips):
    bridge = make_bridge(receiver.url, sqlite3.connect(":memory:"), every_blocks=2, max_wait=600.0)
    bridge.offer(certified(1, slips[0:10]))
    bridge.offer(certified(2, slips[10:20]))
    assert bridge.due() and bridge.flush() == 2
    assert [len(s.items) for s in receiver.bodies[0]] == [10, 10]


def test_blocks_without_slips_are_not_waited_for(receiver, clock, slips):
    bridge = make_bridge(receiver.url, sqlite3.connect(":memory:"), every_blocks=1, max_wait=600.0)
    bridge.offer(certified(1, []))
    assert not bridge.due() and bridge.flush() == 0 and receiver.bodies == []


class SteppedStop(threading.Event):
    """The run loop's stop event, counting the loop's iterations (each ends in ``stop.wait``)."""

    def __init__(self) -> None:
        super().__init__()
        self.iterations = 0
        self.stepped = threading.Condition()

    def wait(self, timeout=None):
        with self.stepped:
            self.iterations += 1
            self.stepped.notify_all()
        return super().wait(timeout)

    def two_more_iterations(self, timeout: float = 30.0) -> None:
        """Return once the loop has run a whole iteration (its ``due()`` check included) after this call."""
        with self.stepped:
            start = self.iterations
            assert self.stepped.wait_for(lambda: self.iterations >= start + 2, timeout), "the bridge loop stalled"


def test_a_partial_batch_goes_once_max_wait_has_passed_since_the_oldest_block(receiver, clock, slips):
    bridge = make_bridge(receiver.url, sqlite3.connect(":memory:", check_same_thread=False), every_blocks=10,
                         max_wait=30.0)
    stop = SteppedStop()
    loop = threading.Thread(target=bridge.run, args=(stop,), daemon=True)
    loop.start()
    try:
        bridge.offer(certified(1, slips[0:3]))  # the oldest unsent block: the wait starts now (t = 1000)
        clock.now += 20.0
        bridge.offer(certified(2, slips[3:5]))  # a later block does not restart the wait
        clock.now += 9.9  # 29.9 s after the oldest block: not yet
        stop.two_more_iterations()
        assert receiver.bodies == [] and not bridge.due()

        clock.now += 0.1  # 30 s: the partial batch (2 of 10 blocks) goes
        receiver.wait_for(1)
        [sent] = receiver.bodies
        assert [len(s.items) for s in sent] == [5]
        check_as_a_consortium_node(sent[0])
        assert [i.block_height for i in sent[0].items] == [1, 1, 1, 2, 2]
        assert [i.slip_id for i in sent[0].items] == [s.slip_id(RECORD_DOMAIN) for s in slips[0:5]]

        # the next block's wait starts when it arrives, not at the previous batch
        stop.two_more_iterations()
        clock.now += 100.0
        bridge.offer(certified(3, slips[5:6]))
        clock.now += 29.0
        stop.two_more_iterations()
        assert len(receiver.bodies) == 1
        clock.now += 1.0
        receiver.wait_for(2)
        assert [[i.block_height for i in s.items] for s in receiver.bodies[1]] == [[3]]
        stop.two_more_iterations()  # the flush records its progress after the POST returns
        assert bridge.sent_height() == 3 and len(receiver.bodies) == 2
    finally:
        stop.set()
        loop.join(timeout=10)
    assert not loop.is_alive()
