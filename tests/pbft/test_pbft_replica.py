"""Replica behaviour on a hand-driven 4-replica cluster (FIFO delivery, explicit clock)."""

import dataclasses

import coincurve
import pytest

from conftest import slip
from mbds_py.pbft import (
    Block,
    Blocks,
    Commit,
    Fetch,
    Hold,
    NewView,
    PbftConfig,
    PrePrepare,
    Prepare,
    Request,
    Want,
    encode_message,
    merkle_root,
)
from mbds_py.pbft.crypto import address_of_public_key
from mbds_py.pbft.errors import PbftConfigError
from mbds_py.pbft.types import NULL_DIGEST, CommitSignature, QuorumCertificate, commit_vote_digest


def _primary_block(cluster, seq, slips, *, view=0, timestamp=None):
    """A correctly signed pre-prepare the primary of ``view`` could have sent."""
    cfg = cluster.config
    primary = cfg.primary(view)
    r = cluster.r(primary) if cluster.replicas[primary] else cluster.r((primary + 1) % cluster.n)
    parent = r.head
    header = dataclasses.replace(
        r.ordering._make_block(seq, parent, tuple(slips), cluster.now).header,
        creator=cfg.validators[primary],
        timestamp=timestamp if timestamp is not None else int(cluster.now * 1000),
    )
    block = Block(header, tuple(slips))
    pp = PrePrepare(view, seq, cfg.scheme.header_digest(header), primary, block)
    return r.auth.sign(pp, cluster.signers[primary])


# --- normal case -------------------------------------------------------------------------


def test_block_is_cut_at_max_slips_and_committed_by_every_replica(cluster_factory):
    c = cluster_factory()
    for k in range(4):
        assert c.submit(slip(k), to=1 + k % 3) is None  # relayed to the primary
    for i in range(4):
        [block] = c.chain(i)
        assert block.header.height == 1 and block.header.seq == 1
        assert {s.slip_id for s in block.slips} == {slip(k).slip_id for k in range(4)}
        assert block.header.creator == c.config.validators[0]
        assert block.header.merkle_root == merkle_root([c.config.scheme.slip_leaf(s) for s in block.slips])
    qc = c.outboxes[2].delivered[0].qc
    assert len({s.signer for s in qc.signatures}) == c.config.quorum == 3


def test_partial_block_is_cut_after_max_wait(cluster_factory):
    c = cluster_factory(max_wait=0.5)
    c.submit(slip(1))
    c.advance(0.3)
    assert c.heights() == [0, 0, 0, 0]
    c.advance(0.3)
    assert c.heights() == [1, 1, 1, 1]


def test_blocks_chain_by_previous_hash_and_height(cluster_factory):
    c = cluster_factory(max_slips=2)
    for k in range(8):
        c.submit(slip(k))
    chain = c.outboxes[3].delivered
    assert [cb.block.header.height for cb in chain] == [1, 2, 3, 4]
    for parent, child in zip(chain, chain[1:]):
        assert child.block.header.prev_hash == c.config.scheme.header_digest(parent.block.header)


def test_duplicate_slip_is_committed_exactly_once(cluster_factory):
    c = cluster_factory(max_slips=1)
    assert c.submit(slip(7), to=1) is None
    assert c.submit(slip(7), to=2) == "already-committed"
    c.r(3).on_message(c.r(1).sign(Request((slip(7),), 1)))
    c.advance(2.0)
    ids = [s.slip_id for b in c.chain(0) for s in b.slips]
    assert ids == [slip(7).slip_id]


def test_invalid_slip_is_refused_by_on_request(cluster_factory):
    c = cluster_factory(validate_slip=lambda s: "unsigned" if s.payload == b"bad" else None)
    assert c.submit(slip(1, b"bad")) == "unsigned"
    c.advance(1.0)
    assert c.heights() == [0, 0, 0, 0]


# --- relay by digest: HOLD / WANT ----------------------------------------------------------


def _sent(c, src, kind):
    return [(dst, msg) for s, dst, msg in c.delivered_log if s == src and type(msg) is kind]


def test_a_backup_relays_ids_and_the_primary_wants_only_what_it_lacks(cluster_factory):
    c = cluster_factory(max_slips=4)
    assert c.submit(slip(1), to=0) is None  # the client reached the primary and backup 1 with slip 1 ...
    assert c.submit(slip(1), to=1) is None
    assert c.submit(slip(2), to=1) is None  # ... and backup 1 alone with slip 2
    holds = _sent(c, 1, Hold)
    assert holds and all(dst == 0 for dst, _ in holds)
    assert not [m for _d, m in _sent(c, 1, Request)
                if slip(1).slip_id in {x.slip_id for x in m.slips}]  # slip 1's body never relayed
    [(dst, want)] = _sent(c, 0, Want)
    assert dst == 1 and want.slip_ids == (slip(2).slip_id,)  # the primary asked for slip 2 only
    [(dst, req)] = _sent(c, 1, Request)
    assert dst == 0 and [x.slip_id for x in req.slips] == [slip(2).slip_id]
    c.advance(1.0)
    assert {x.slip_id for b in c.chain(3) for x in b.slips} == {slip(1).slip_id, slip(2).slip_id}


def test_a_hold_reaching_a_backup_asks_for_nothing(cluster_factory):
    c = cluster_factory()
    c.r(2).on_message(c.r(1).sign(Hold((slip(5).slip_id,), 1)))
    assert c.outboxes[2].drain() == [] and c.r(2).state.rejection_counts == {}


def test_a_want_from_a_replica_that_is_not_the_primary_is_refused(cluster_factory):
    c = cluster_factory()
    c.r(2).on_request(slip(3))
    c.outboxes[2].drain()
    c.r(2).on_message(c.r(3).sign(Want((slip(3).slip_id,), 3)))  # replica 3 fishing for bodies
    assert c.outboxes[2].drain() == []
    assert c.r(2).state.rejection_counts == {"stale": 1}
    c.r(2).on_message(c.r(0).sign(Want((slip(3).slip_id, slip(4).slip_id), 0)))  # the primary: answered
    [(to, req)] = c.outboxes[2].drain()
    assert to == 0 and [x.slip_id for x in req.slips] == [slip(3).slip_id]  # only what it holds


def test_oversized_hold_and_want_are_malformed(cluster_factory):
    c = cluster_factory(max_slips=4)
    ids = tuple(slip(k).slip_id for k in range(17))  # more than 4 x max_slips
    c.r(0).on_message(c.r(1).sign(Hold(ids, 1)))
    c.r(1).on_message(c.r(0).sign(Want(ids, 0)))
    assert c.r(0).state.rejection_counts == {"malformed": 1}
    assert c.r(1).state.rejection_counts == {"malformed": 1}
    assert c.outboxes[0].drain() == [] and c.outboxes[1].drain() == []


def test_a_hold_with_a_short_slip_id_does_not_decode(cluster_factory):
    c = cluster_factory()
    good = encode_message(c.r(1).sign(Hold((slip(1).slip_id,), 1)))
    bad = good.replace(slip(1).slip_id, slip(1).slip_id[:31] + b"", 1)
    c.r(0).on_wire(bad)
    assert c.r(0).state.rejection_counts == {"malformed": 1}


# --- rejected messages ---------------------------------------------------------------------


def test_bad_signature_is_rejected_and_recorded(cluster_factory):
    c = cluster_factory()
    forged = c.r(1).auth.sign(Prepare(0, 1, b"\x01" * 32, 2), c.signers[1])  # claims replica 2
    c.r(3).on_message(forged)
    state = c.r(3).state
    assert state.rejection_counts == {"bad-signature": 1}
    assert state.rejections[-1][0] == "bad-signature" and state.prepares.count(0, 1, b"\x01" * 32) == 0


def test_unknown_sender_and_malformed_bytes_are_rejected_without_crashing(cluster_factory):
    c = cluster_factory()
    c.r(0).on_message(Prepare(0, 1, b"\x01" * 32, 9, b"sig"))
    c.r(0).on_wire(b"\x03garbage")
    c.r(0).on_wire(encode_message(Prepare(0, 1, b"\x01" * 32, 1, b"sig")) + b"tail")
    assert c.r(0).state.rejection_counts == {"unknown-sender": 1, "malformed": 2}


def test_pre_prepare_with_invalid_slip_is_primary_misbehaviour(cluster_factory):
    c = cluster_factory(validate_slip=lambda s: "doctor signature invalid" if s.payload == b"bad" else None)
    pp = _primary_block(c, 1, [slip(1), slip(2, b"bad")])
    c.r(2).on_message(pp)
    state = c.r(2).state
    assert [f.kind for f in state.faults] == ["invalid-pre-prepare"] and state.faults[0].replica == 0
    assert "doctor signature invalid" in state.faults[0].detail
    assert state.view == 1 and not state.active  # asked for a view change
    assert state.my_view_change is not None and state.my_view_change.new_view == 1


def test_pre_prepare_with_wrong_merkle_root_is_rejected(cluster_factory):
    c = cluster_factory()
    pp = _primary_block(c, 1, [slip(1), slip(2)])
    bad_block = Block(pp.block.header, (slip(1), slip(3)))
    c.r(1).on_message(c.r(0).sign(dataclasses.replace(pp, block=bad_block, signature=b"")))
    assert "Merkle root" in c.r(1).state.faults[0].detail


def test_pre_prepare_with_skewed_timestamp_is_rejected(cluster_factory):
    c = cluster_factory(max_clock_skew=30.0)
    pp = _primary_block(c, 1, [slip(1)], timestamp=int((c.now + 120) * 1000))
    c.r(1).on_message(pp)
    assert "timestamp" in c.r(1).state.faults[0].detail


def test_equivocating_primary_is_recorded_and_triggers_a_view_change(cluster_factory):
    c = cluster_factory()
    first = _primary_block(c, 1, [slip(1)])
    second = _primary_block(c, 1, [slip(1)], timestamp=first.block.header.timestamp + 1)
    assert first.digest != second.digest
    backup = c.r(3)
    backup.on_message(first)
    backup.on_message(second)
    [fault] = backup.state.faults
    assert fault.kind == "equivocation" and fault.replica == 0 and fault.evidence == (first, second)
    assert backup.state.view == 1 and backup.state.rejection_counts["equivocation"] == 1


def test_double_vote_is_evidence_and_the_second_vote_does_not_count(cluster_factory):
    c = cluster_factory()
    pp = _primary_block(c, 1, [slip(1)])
    backup = c.r(1)
    backup.on_message(pp)
    other = b"\x77" * 32
    backup.on_message(c.r(2).sign(Prepare(0, 1, other, 2)))
    backup.on_message(c.r(2).sign(Prepare(0, 1, pp.digest, 2)))
    [fault] = backup.state.faults
    assert fault.kind == "double-vote" and fault.replica == 2
    assert backup.state.prepares.signers(0, 1, pp.digest) == {1}  # only its own prepare
    assert backup.state.rejection_counts["double-vote"] == 1


# --- checkpoints and garbage collection -----------------------------------------------------


def test_stable_checkpoint_collects_the_log_below_it(cluster_factory):
    c = cluster_factory(max_slips=1, checkpoint_interval=4, window=8)
    for k in range(10):
        c.submit(slip(k))
    for i in range(4):
        state = c.r(i).state
        assert state.last_executed == 10 and state.stable.seq == 8
        assert len(state.stable.proof) == c.config.quorum
        assert all(seq > 8 for seq in state.slots)
        assert all(seq > 8 for seq in state.prepared_certs)
        assert all(seq > 8 for seq in state.checkpoint_votes)
        assert all(k[1] > 8 for k in state.prepares._choice) and all(k[1] > 8 for k in state.commits._choice)
        store = c.stores[i]
        assert all(seq > 8 for _, seq in store.pre_prepares) and all(seq > 8 for seq in store.prepared)
        assert store.stable.seq == 8 and len(store.blocks) == 10


def test_primary_stops_at_the_high_water_mark_until_a_checkpoint_is_stable(cluster_factory):
    c = cluster_factory(max_slips=1, checkpoint_interval=2, window=4, max_inflight=4)
    c.drop = lambda src, dst, msg: type(msg).__name__ == "Checkpoint"
    for k in range(6):
        c.submit(slip(k))
    assert c.r(0).state.last_executed == 4  # window (0, 4] full, no stable checkpoint
    c.drop = lambda src, dst, msg: False
    c.advance(3.0)  # checkpoints are retransmitted in answer to STATUS
    assert c.r(0).state.stable.seq >= 4 and c.heights() == [6, 6, 6, 6]


# --- view change ------------------------------------------------------------------------------


def test_view_change_carries_a_prepared_block_into_the_new_view(cluster_factory):
    c = cluster_factory()
    c.drop = lambda src, dst, msg: isinstance(msg, Commit)  # prepared everywhere, committed nowhere
    for k in range(4):
        c.submit(slip(k), to=1)
    digests = {c.r(i).state.prepared_certs[1].digest for i in range(4)}
    assert len(digests) == 1 and c.heights() == [0, 0, 0, 0]
    c.crash(0)
    c.drop = lambda src, dst, msg: isinstance(msg, Commit) and msg.view == 0  # view 0 never commits
    c.advance(8.0)
    for i in (1, 2, 3):
        state = c.r(i).state
        assert state.view == 1 and state.active
        [certified] = c.outboxes[i].delivered
        assert c.config.scheme.header_digest(certified.block.header) in digests
        assert certified.block.header.creator == c.config.validators[0]  # proposed in view 0
        assert certified.qc.view == 1  # committed in view 1
    nv = c.r(1).state.new_view
    assert [(pp.seq, pp.digest) for pp in nv.pre_prepares] == [(1, digests.pop())]


def test_new_view_that_drops_a_prepared_block_is_rejected(cluster_factory):
    c = cluster_factory()
    c.drop = lambda src, dst, msg: isinstance(msg, (Commit, NewView))
    for k in range(4):
        c.submit(slip(k))
    c.crash(0)
    c.advance(3.0)  # request timer (2 s) fires; the NEW-VIEW timer (2 s more) has not
    new_primary = c.r(1)
    assert new_primary.state.view == 1 and new_primary.state.new_view is not None
    honest_nv = new_primary.state.new_view
    null_pp = new_primary.sign(PrePrepare(1, 1, b"\x00" * 32, 1))
    forged = new_primary.sign(dataclasses.replace(honest_nv, pre_prepares=(null_pp,), signature=b""))
    backup = c.r(2)
    assert not backup.state.active
    backup.on_message(forged)
    assert backup.state.rejection_counts["invalid-certificate"] == 1 and not backup.state.active
    backup.on_message(honest_nv)
    assert backup.state.active and backup.state.view == 1


def test_replica_joins_a_view_change_when_f_plus_one_peers_ask(cluster_factory):
    c = cluster_factory()
    c.drop = lambda src, dst, msg: dst == 3  # replica 3 hears nothing... for now
    asks = []
    for i in (1, 2):
        c.r(i).view_change.start(1, c.now)
        asks.append(c.r(i).state.my_view_change)
    c.r(3).on_message(asks[0])
    assert c.r(3).state.view == 0  # one replica (<= f) cannot drag it along
    c.r(3).on_message(asks[1])
    assert c.r(3).state.view == 1 and not c.r(3).state.active
    c.drop = lambda src, dst, msg: False
    c.flush()
    assert all(c.r(i).state.active and c.r(i).view == 1 for i in range(4))


# --- certificates and state transfer -------------------------------------------------------------


def test_quorum_certificate_verifies_against_validator_addresses(cluster_factory):
    """What SlipLedger checks: >= quorum distinct validators signed the commit digest."""
    c = cluster_factory(eth=True)
    for k in range(4):
        c.submit(slip(k))
    certified = c.outboxes[1].delivered[0]
    header, qc = certified.block.header, certified.qc
    digest = commit_vote_digest(c.config.domain, qc.view, header.seq, c.config.scheme.header_digest(header))
    signers = set()
    for sig in qc.signatures:
        v = sig.signature[64] - 27
        public = coincurve.PublicKey.from_signature_and_message(sig.signature[:64] + bytes([v]), digest, hasher=None)
        address = address_of_public_key(public)
        assert address == c.config.validators[sig.signer]
        signers.add(address)
    assert len(signers) >= c.config.quorum


def test_lagging_replica_fetches_blocks_and_verifies_their_certificates(cluster_factory):
    c = cluster_factory(max_slips=1)
    c.drop = lambda src, dst, msg: dst == 3
    for k in range(5):
        c.submit(slip(k))
    assert c.heights() == [5, 5, 5, 0]
    c.drop = lambda src, dst, msg: False
    c.advance(2.0)
    assert c.heights() == [5, 5, 5, 5]
    assert c.chain(3) == c.chain(0)


def test_block_with_a_forged_certificate_is_not_applied(cluster_factory):
    c = cluster_factory(max_slips=1)
    c.drop = lambda src, dst, msg: dst == 3
    c.submit(slip(1))
    good = c.outboxes[0].delivered[0]
    sigs = good.qc.signatures
    forged_sigs = (sigs[0], CommitSignature(sigs[1].signer, sigs[0].signature), sigs[2])
    forged = dataclasses.replace(good, qc=QuorumCertificate(good.qc.header, good.qc.view, forged_sigs))
    lagging = c.r(3)
    lagging.on_message(c.r(1).sign(Blocks((forged,), (), 1, 1)))
    assert lagging.head.height == 0 and lagging.state.rejection_counts["invalid-certificate"] == 1
    too_few = dataclasses.replace(good, qc=QuorumCertificate(good.qc.header, good.qc.view, sigs[:2]))
    lagging.on_message(c.r(1).sign(Blocks((too_few,), (), 1, 1)))
    assert lagging.head.height == 0 and lagging.state.rejection_counts["invalid-certificate"] == 2
    lagging.on_message(c.r(1).sign(Blocks((good,), (), 1, 1)))
    assert lagging.head.height == 1


# --- crash and restart ------------------------------------------------------------------------


def test_restart_restores_prepared_state_and_never_contradicts_itself(cluster_factory):
    c = cluster_factory()
    c.drop = lambda src, dst, msg: isinstance(msg, Commit)
    for k in range(4):
        c.submit(slip(k))
    before = c.r(2).state
    sent = [m for _, _, m in c.delivered_log if isinstance(m, Prepare) and m.sender == 2]
    c.crash(2)
    restored = c.boot(2)
    state = restored.state
    assert state.slots[1].prepared and state.slots[1].digest == before.slots[1].digest
    assert state.prepared_certs[1] == before.prepared_certs[1]
    assert state.prepares.vote_of(0, 1, 2) == sent[0]  # the very same PREPARE
    c.drop = lambda src, dst, msg: False
    c.advance(2.0)
    assert c.heights() == [1, 1, 1, 1] and c.chain(2) == c.chain(0)


def test_restarted_primary_continues_after_its_last_sequence_number(cluster_factory):
    c = cluster_factory(max_slips=1)
    for k in range(3):
        c.submit(slip(k))
    c.crash(0)
    primary = c.boot(0)
    assert primary.state.next_seq == 4 and primary.head.height == 3
    c.submit(slip(9))
    assert c.heights() == [4, 4, 4, 4]


def test_restarted_replicas_commit_again_the_null_requests_they_executed(cluster_factory):
    c = cluster_factory(max_slips=1, checkpoint_interval=8, window=16)
    c.drop = lambda src, dst, msg: isinstance(msg, Prepare) and msg.seq == 1  # seq 2 prepares, seq 1 never
    c.submit(slip(0))
    c.submit(slip(1))
    lagging = lambda src, dst, msg: isinstance(msg, Fetch) or (isinstance(msg, Commit) and dst == 3)
    c.drop = lagging  # replica 3 executes nothing in view 1 and cannot fetch
    for i in (1, 2, 3):
        c.r(i).view_change.start(1, c.now)
    c.flush()  # view 1: nulls at 1 and 2 (block 2 extends the never-prepared block 1), slips at 3 and 4
    assert [c.r(i).state.last_executed for i in range(4)] == [4, 4, 4, 0] and c.heights() == [2, 2, 2, 0]
    for i in (0, 1, 2):
        c.crash(i)
        assert c.boot(i).state.executed_digest(1) == NULL_DIGEST
    c.drop = lambda src, dst, msg: isinstance(msg, Fetch)
    for i in range(4):
        c.r(i).view_change.start(2, c.now)
    c.flush()  # view 2 re-issues the nulls: the restarted replicas commit them again
    assert [c.r(i).state.last_executed for i in range(4)] == [4, 4, 4, 4] and c.chain(3) == c.chain(0)


def test_config_needs_four_replicas():
    with pytest.raises(PbftConfigError):
        PbftConfig(validators=tuple(bytes([i]) * 20 for i in range(3)))
    assert PbftConfig(validators=tuple(bytes([i]) * 20 for i in range(7))).quorum == 5
    assert PbftConfig(validators=tuple(bytes([i]) * 20 for i in range(5))).quorum == 4
