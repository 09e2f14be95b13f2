"""Canonical encoding: round trips, what is signed, and rejection of malformed bytes."""

import dataclasses

import pytest

from mbds_py.pbft.codec import decode_message, encode_message, signing_bytes
from mbds_py.pbft.errors import MalformedMessage
from mbds_py.pbft.messages import (
    Blocks,
    Checkpoint,
    Commit,
    Fetch,
    NewView,
    PrePrepare,
    Prepare,
    PreparedCert,
    Request,
    Status,
    ViewChange,
)
from mbds_py.pbft.types import Block, BlockHeader, CertifiedBlock, CommitSignature, QuorumCertificate, SlipEnvelope

D = b"\x11" * 32
HEADER = BlockHeader(3, 7, b"\x22" * 32, 1_700_000_000_000, b"\x33" * 20, b"\x44" * 32, b"bafy-cid")
BLOCK = Block(HEADER, (SlipEnvelope(b"\x55" * 32, b"slip one"), SlipEnvelope(b"\x66" * 32, b"")))
PP = PrePrepare(2, 7, D, 1, BLOCK, b"sig-pp")
PREP = Prepare(2, 7, D, 3, b"sig-p")
CP = Checkpoint(8, 3, D, 5, 0, b"sig-c")
VC = ViewChange(3, 8, (CP,), (PreparedCert(PP, (PREP,)),), 2, b"sig-vc")
QC = QuorumCertificate(HEADER, 2, (CommitSignature(0, b"a"), CommitSignature(2, b"b")))

ALL = [
    Request((SlipEnvelope(b"\x01" * 32, b"x"), SlipEnvelope(b"\x02" * 32, b"")), 0, b"s"),
    PP,
    dataclasses.replace(PP, block=None),
    PREP,
    Commit(2, 7, D, 0, b"sig-cm"),
    CP,
    VC,
    NewView(3, (VC,), (dataclasses.replace(PP, view=3, block=None),), 3, b"sig-nv"),
    Status(2, True, 7, 3, 4, 1, b"st"),
    Fetch(4, 2, b"f"),
    Blocks((CertifiedBlock(BLOCK, QC),), (CP,), 3, 1, b"b"),
]


@pytest.mark.parametrize("msg", ALL, ids=lambda m: type(m).__name__)
def test_every_message_round_trips_through_its_wire_bytes(msg):
    wire = encode_message(msg)
    assert decode_message(wire) == msg
    assert encode_message(decode_message(wire)) == wire


def test_signing_bytes_leave_out_the_signature_and_the_pre_prepare_block():
    assert signing_bytes(PREP) == signing_bytes(dataclasses.replace(PREP, signature=b"other"))
    assert signing_bytes(PP) == signing_bytes(dataclasses.replace(PP, block=None, signature=b""))
    assert signing_bytes(PP) != signing_bytes(dataclasses.replace(PP, digest=b"\x12" * 32))
    assert signing_bytes(PREP) != signing_bytes(Commit(PREP.view, PREP.seq, PREP.digest, PREP.sender))


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00", b"\xff" + encode_message(PREP)[1:], encode_message(PREP)[:-1], encode_message(PREP) + b"\x00"],
    ids=["empty", "tag-zero", "unknown-tag", "truncated", "trailing"],
)
def test_malformed_bytes_raise_malformed_message(data):
    with pytest.raises(MalformedMessage):
        decode_message(data)


def test_wrong_digest_length_is_malformed():
    wire = bytearray(encode_message(PREP))
    # view(8) seq(8) then the digest's 4-byte length prefix: claim 31 bytes
    wire[1 + 16 : 1 + 20] = (31).to_bytes(4, "big")
    with pytest.raises(MalformedMessage):
        decode_message(bytes(wire[:-1]))


def test_integers_outside_uint64_cannot_be_encoded():
    with pytest.raises(MalformedMessage):
        encode_message(dataclasses.replace(PREP, seq=-1))
    with pytest.raises(MalformedMessage):
        encode_message(dataclasses.replace(PREP, seq=1 << 64))
