"""Byzantine garbage: mutated (and even correctly re-signed) messages never crash a replica."""

import dataclasses
import random

from conftest import slip
from mbds_py.pbft import Commit, NewView, decode_message, encode_message
from mbds_py.pbft.errors import MalformedMessage


def _traffic(cluster_factory):
    """Real messages of every kind: normal case, checkpoints, a view change, state transfer."""
    c = cluster_factory(max_slips=2, checkpoint_interval=2, window=4)
    for k in range(6):
        c.submit(slip(k), to=k % 4)
    c.drop = lambda src, dst, msg: isinstance(msg, Commit) and msg.view == 0
    c.submit(slip(99))
    c.advance(5.0)
    c.drop = lambda src, dst, msg: False
    c.advance(3.0)
    assert any(isinstance(m, NewView) for _, _, m in c.delivered_log)
    return c, [m for _, _, m in c.delivered_log]


def _mutate(rng: random.Random, wire: bytes) -> bytes:
    data = bytearray(wire)
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        pos = rng.randrange(len(data))
        if choice < 0.5:
            data[pos] = rng.randrange(256)
        elif choice < 0.7:
            del data[pos : pos + rng.randint(1, 8)]
        elif choice < 0.9:
            data[pos:pos] = rng.randbytes(rng.randint(1, 8))
        else:
            data[pos] ^= 0x80
        if not data:
            data = bytearray(b"\x01")
    return bytes(data)


def test_mutated_and_resigned_messages_are_rejected_without_crashing(cluster_factory):
    c, messages = _traffic(cluster_factory)
    rng = random.Random(2024)
    target = c.r(2)
    resigned = 0
    for _ in range(3000):
        original = rng.choice(messages)
        wire = _mutate(rng, encode_message(original))
        target.on_wire(wire)  # as received: most fail to decode or to verify
        try:
            msg = decode_message(wire)
        except MalformedMessage:
            continue
        # replica 3 turns byzantine (f = 1) and signs the garbage properly
        target.on_message(target.auth.sign(dataclasses.replace(msg, sender=3), c.signers[3]))
        resigned += 1
    assert resigned > 300
    counts = target.state.rejection_counts
    assert counts["bad-signature"] > 500 and counts["malformed"] > 300
    assert counts["stale"] > 100 and counts["unknown-sender"] > 50  # each defence of on_message was reached
    c.flush()
    c.advance(3.0)
    c.submit(slip(1000))
    c.advance(2.0)
    heights = c.heights()
    assert len(set(heights)) == 1 and heights[0] >= 4  # still live, still in agreement
