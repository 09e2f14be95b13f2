"""Four replica processes on loopback: slips in, certified blocks out, anchored and provable."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import requests

from mbds_py.devnet import is_running
from mbds_py.errors import IntegrityError, InvalidSlip
from mbds_py.pbft.store import SqliteStore
from mbds_py.private.client import NodeUnavailable, Receipt, verify_receipt
from mbds_py.private.cluster import start_replica, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("replicas")]

REPLICAS = range(4)


def anchored(testbed, height: int) -> bool:
    return testbed.ledger.head()[0] >= height


def statuses(testbed) -> list[dict | None]:
    out = []
    for i in REPLICAS:
        try:
            out.append(testbed.api(i).status())
        except NodeUnavailable:
            out.append(None)
    return out


def heads(testbed) -> list[int | None]:
    return [s and s["head"] for s in statuses(testbed)]


def settled(testbed) -> bool:
    """Every replica answers, in one view with one active primary, at one head."""
    ss = statuses(testbed)
    return (None not in ss and len({s["view"] for s in ss}) == 1 and sum(s["primary"] for s in ss) == 1
            and len({s["head"] for s in ss}) == 1)


@pytest.fixture()
def all_replicas(testbed):
    """Every replica running (one an earlier test crashed is restarted), settled in one view at one head."""
    services = testbed.devnet.load_services()
    for i, name in enumerate(testbed.cluster.service_names):
        svc = services.get(name)
        if svc is None or not is_running(svc.pid, svc.started):
            start_replica(testbed.devnet, testbed.cluster.config_path, testbed.cluster.config, i, testbed.keys[i])
    wait_until(lambda: settled(testbed), 90, "every replica in one view at one head")
    return testbed


def same_commit(a: Receipt, b: Receipt) -> bool:
    """Two replicas' receipts for one slip name the same block and proof (who anchored it may differ)."""
    fields = ("slip_id", "chain", "height", "header", "proof", "payload", "body_cid")
    return all(getattr(a, f) == getattr(b, f) for f in fields)


def stored_blocks(testbed, index: int):
    """The certified blocks replica ``index`` has committed, by height, read from its own durable store."""
    cfg = testbed.cluster.config
    store = SqliteStore(str(Path(cfg.data_dir) / cfg.chain / f"replica-{index}" / "replica.sqlite"))
    try:
        return list(store.iter_blocks())
    finally:
        store.close()


def agreed_blocks(testbed, height: int):
    """Once every replica is at ``height`` or above: the blocks 1..``height``, the same on every replica (header
    and slips; each replica keeps the quorum certificate it collected, so the signer sets may differ)."""
    wait_until(lambda: None not in (h := heads(testbed)) and min(h) >= height, 90,
               f"every replica to reach height {height}")
    per_replica = [[b for b in stored_blocks(testbed, i) if b.block.header.height <= height] for i in REPLICAS]
    assert [b.block.header.height for b in per_replica[0]] == list(range(1, height + 1))
    quorum = 3
    for i in REPLICAS:
        assert [b.block for b in per_replica[i]] == [b.block for b in per_replica[0]], \
            f"replica {i} committed other blocks than replica 0"
        for b in per_replica[i]:
            assert b.qc.header == b.block.header and len(b.qc.signatures) >= quorum
    return [b.block for b in per_replica[0]]


def test_confirmed_slips_commit_anchor_and_verify(testbed):
    api = testbed.api()
    slip_ids = [api.submit_confirmed(testbed.record(i, tag="a")[1].to_bytes()) for i in range(20)]
    receipts = [api.wait_receipt(s, timeout=60) for s in slip_ids]
    top = max(r.height for r in receipts)
    wait_until(lambda: anchored(testbed, top), 60, f"SlipLedger to reach height {top}")
    for r in receipts:
        verify_receipt(r, testbed.ledger)  # the lightweight client trusts only the chain
    # the block body was published under the CID in the header
    body = testbed.storage.cat(receipts[0].body_cid)
    assert receipts[0].payload in body


def test_doctor_upload_then_patient_confirmation_flow(testbed):
    api = testbed.api(1)
    env, confirmed = testbed.record(1, tag="flow", patient="patient2")
    record_id = api.submit_envelope(env.to_bytes())
    assert record_id in api.pending(testbed.people["patient2"].address)
    assert api.envelope(record_id) == env.to_bytes()
    slip_id = api.submit_confirmed(confirmed.to_bytes())
    assert slip_id == record_id  # the slip ID is the record ID
    api.wait_receipt(slip_id, timeout=60)
    assert record_id not in api.pending(testbed.people["patient2"].address)


def test_tampered_receipt_fails_verification(testbed):
    api = testbed.api()
    slip_id = api.submit_confirmed(testbed.record(1, tag="tamper")[1].to_bytes())
    r = api.wait_receipt(slip_id, timeout=60)
    wait_until(lambda: anchored(testbed, r.height), 60, "anchoring")
    payload = r.payload[:-1] + bytes([r.payload[-1] ^ 0x01])  # a fixed byte could equal the real one
    forged = Receipt(r.slip_id, r.chain, r.height, r.header, r.proof, payload, r.body_cid, r.anchor_tx)
    with pytest.raises(IntegrityError, match="does not verify"):
        verify_receipt(forged, testbed.ledger)


def test_slip_from_doctor_of_another_hospital_is_rejected(testbed):
    _env, confirmed = testbed.record(1, doctor="outsider", tag="outsider")
    with pytest.raises(InvalidSlip, match="does not belong to this hospital"):
        testbed.api().submit_confirmed(confirmed.to_bytes())


def test_slip_with_forged_patient_confirmation_is_rejected(testbed):
    from dataclasses import replace

    _env, confirmed = testbed.record(2, tag="forged")
    sig = confirmed.patient_signature  # flip one bit of r: a fixed value could equal the real byte (1 run in 512)
    forged = replace(confirmed, patient_signature=bytes([sig[0] ^ 0x01]) + sig[1:])
    with pytest.raises(InvalidSlip, match="signature check failed"):
        testbed.api().submit_confirmed(forged.to_bytes())


def test_slip_for_unregistered_patient_is_rejected(testbed):
    _env, confirmed = testbed.record(3, patient="stranger", tag="stranger")
    with pytest.raises(InvalidSlip, match="not registered"):
        testbed.api().submit_confirmed(confirmed.to_bytes())


def test_malformed_slip_gets_a_clear_error(testbed):
    url = testbed.cluster.api_urls[0]
    resp = requests.post(f"{url}/v1/slips", data=b"\x00garbage")
    assert resp.status_code == 400 and "malformed confirmed record" in resp.json()["error"]


def test_duplicate_slip_is_committed_once(all_replicas):
    testbed = all_replicas
    _env, confirmed = testbed.record(4, tag="dup")
    # the same slip twice while it is being ordered, through two replicas
    first = testbed.api(0).submit_confirmed(confirmed.to_bytes())
    assert testbed.api(1).submit_confirmed(confirmed.to_bytes()) == first
    receipt = testbed.api(0).wait_receipt(first, timeout=60)
    # and again through the other two once it is committed
    for i in (2, 3):
        assert testbed.api(i).submit_confirmed(confirmed.to_bytes()) == first
    # a later slip: once it is committed, a re-ordered duplicate would be committed too
    marker = testbed.api(3).submit_confirmed(testbed.record(5, tag="dup-marker")[1].to_bytes())
    top = testbed.api(3).wait_receipt(marker, timeout=60).height
    assert top >= receipt.height

    blocks = agreed_blocks(testbed, top)  # identical on every replica
    ids = Counter(s.slip_id for b in blocks for s in b.slips)
    assert ids[bytes.fromhex(first.removeprefix("0x"))] == 1
    assert ids[bytes.fromhex(marker.removeprefix("0x"))] == 1
    assert [sid for sid, n in ids.items() if n > 1] == []  # no slip of the chain is in two places
    [holder] = [b for b in blocks if any(s.slip_id == receipt.slip_id for s in b.slips)]
    assert holder.header == receipt.header
    assert same_commit(testbed.api(2).wait_receipt(first, timeout=5), receipt)


def test_sigkill_primary_while_streaming_then_restart_catches_up(all_replicas):
    """SIGKILL the primary mid-stream: a view change resumes commits; every acknowledged
    (receipted) slip is in a committed block; the restarted replica catches up from its peers."""
    testbed = all_replicas
    before = statuses(testbed)
    [primary] = [i for i, s in enumerate(before) if s["primary"]]
    view_before = before[primary]["view"]
    submitted = []
    for i in range(30):
        if i == 10:
            assert testbed.devnet.stop_service(testbed.cluster.service_names[primary], kill=True)
        clients = [j for j in range(4) if j != primary]
        submitted.append(testbed.api(*clients).submit_confirmed(testbed.record(i, tag="kill")[1].to_bytes()))
    survivors = testbed.api(*[j for j in range(4) if j != primary])
    receipts = [survivors.wait_receipt(s, timeout=120) for s in submitted]
    assert len({r.slip_id for r in receipts}) == 30
    views = [testbed.api(j).status()["view"] for j in range(4) if j != primary]
    assert min(views) > view_before, f"no view change happened: {views}, before {view_before}"
    top = max(r.height for r in receipts)
    wait_until(lambda: anchored(testbed, top), 90, "anchoring after the view change")
    for r in receipts:
        verify_receipt(r, testbed.ledger)
    # restart the crashed replica from its durable log; it catches up by state transfer
    start_replica(testbed.devnet, testbed.cluster.config_path, testbed.cluster.config, primary,
                  testbed.keys[primary])
    restarted = testbed.api(primary)
    wait_until(lambda: restarted.status()["head"] >= top, 90, "the restarted replica to catch up")
    for r in receipts:  # the restarted replica serves the same receipts as the survivors
        assert same_commit(restarted.receipt(r.slip_id.hex()), r)
    blocks = agreed_blocks(testbed, top)  # and holds the same blocks
    committed = Counter(s.slip_id for b in blocks for s in b.slips)
    assert all(committed[r.slip_id] == 1 for r in receipts)


def test_auditor_cross_chain_check_accepts_real_items_and_refuses_forged_ones(testbed):
    """An ATN proves each summary item against the private chain before attesting (issue 5)."""
    from dataclasses import replace

    from eth_utils import keccak

    from mbds_py.consortium.blocks import SummaryItem
    from mbds_py.consortium.node import ItemChecker, PrivateChainRef
    from mbds_py.private.slip import TransactionSlip

    api = testbed.api()
    slip_id = api.submit_confirmed(testbed.record(7, tag="audit")[1].to_bytes())
    receipt = api.wait_receipt(slip_id, timeout=60)
    wait_until(lambda: anchored(testbed, receipt.height), 60, "anchoring")
    slip = TransactionSlip.from_bytes(receipt.payload)
    cfg = testbed.cluster.config
    checker = ItemChecker((PrivateChainRef(cfg.chain_id, cfg.rpc_url, cfg.slip_ledger, tuple(testbed.cluster.api_urls)),))
    real = SummaryItem(slip.patient_id, tuple(c.to_bytes() for c in slip.encrypted_keywords), slip.hmi_hash,
                       cfg.chain_id, receipt.height, receipt.slip_id)
    assert checker(real)
    assert not checker(replace(real, slip_id=keccak(text="absent slip")))  # not on the private chain
    assert not checker(replace(real, hmi_hash=keccak(text="other record")))  # summary does not match the slip
    assert not checker(replace(real, patient_id=keccak(text="someone else")))
    assert not checker(replace(real, block_height=receipt.height + 5))  # wrong block
    assert not checker(replace(real, chain_id=99999))  # unknown private chain


# --- batches (POST /v1/slips/batch) --------------------------------------------------------------


def test_a_batch_with_one_bad_record_orders_the_others(testbed):
    from mbds_py.private.batch import encode_batch

    good = [testbed.record(i, tag="batch-mixed")[1].to_bytes() for i in range(3)]
    body = encode_batch([good[0], b"\x00garbage", good[1], good[2]])
    session = requests.Session()
    resp = session.post(f"{testbed.cluster.api_urls[1]}/v1/slips/batch", data=body)
    assert resp.status_code == 200
    results = resp.json()["results"]
    assert "malformed confirmed record" in results[1]["error"] and "slip_id" not in results[1]
    assert [r["status"] for i, r in enumerate(results) if i != 1] == ["accepted"] * 3
    api = testbed.api()
    for r in (results[0], results[2], results[3]):
        api.wait_receipt(r["slip_id"], timeout=60)
    # the same batch again: nothing is ordered twice, each record answered as it stands now
    again = session.post(f"{testbed.cluster.api_urls[2]}/v1/slips/batch", data=body).json()["results"]
    assert [r.get("slip_id") for r in again] == [r.get("slip_id") for r in results]
    assert {r.get("status") for i, r in enumerate(again) if i != 1} <= {"committed", "already-committed",
                                                                     "already-pending"}


def test_truncated_and_oversized_batches_are_refused_and_the_connection_still_serves(testbed):
    from mbds_py.private.batch import MAX_SLIPS, encode_batch

    url = testbed.cluster.api_urls[0]
    session = requests.Session()  # one keep-alive connection for all of it
    body = encode_batch([testbed.record(1, tag="batch-trunc")[1].to_bytes()])
    resp = session.post(f"{url}/v1/slips/batch", data=body[:-10])
    assert resp.status_code == 400 and "truncated batch" in resp.json()["error"]
    over = b"MBSB\x01" + (MAX_SLIPS + 1).to_bytes(2, "big") + body[7:]
    resp = session.post(f"{url}/v1/slips/batch", data=over)
    assert resp.status_code == 400 and f"1..{MAX_SLIPS} records" in resp.json()["error"]
    resp = session.post(f"{url}/v1/slips/batch", data=body + b"\x00")
    assert resp.status_code == 400 and "trailing bytes" in resp.json()["error"]
    assert session.get(f"{url}/v1/status").status_code == 200  # the same connection still serves
    assert testbed.api(0).receipt("0x" + testbed.record(1, tag="batch-trunc")[1].record_id(
        testbed.cluster.config.record_domain).hex()) is None  # nothing of a refused batch was ordered


def test_a_replica_with_too_many_unordered_slips_answers_429_with_a_retry_hint(testbed):
    from mbds_py.private.batch import encode_batch

    # the testbed's replicas hold at most 200 unordered slips: 201 more are refused up front, none parsed
    resp = requests.post(f"{testbed.cluster.api_urls[3]}/v1/slips/batch", data=encode_batch([b"x"] * 201))
    assert resp.status_code == 429
    assert resp.json()["retry_after"] > 0 and int(resp.headers["Retry-After"]) >= 1
    assert "unordered slips" in resp.json()["error"]


def test_the_client_batches_by_itself_one_ack_per_record(testbed):
    records = [testbed.record(i, tag="client-batch")[1].to_bytes() for i in range(5)]
    records.insert(2, b"\x00garbage")
    api = testbed.api()
    api.batch = 2
    acks = api.submit_confirmed_many(records)
    assert len(acks) == 6 and not acks[2].ok and "malformed" in acks[2].error
    good = [a for a in acks if a.ok]
    assert len(good) == 5 and {a.status for a in good} == {"accepted"}
    for a in good:
        verify = api.wait_receipt(a.slip_id, timeout=60)
        assert verify.slip_id.hex() == a.slip_id[2:]
