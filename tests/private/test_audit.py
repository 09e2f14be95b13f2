"""The consortium auditor's cross-chain check, one private block at a time (mbds_py/consortium/audit.py), against a
real private chain: four replicas, Anvil with SlipLedger, a storage node holding the published bodies."""

from __future__ import annotations

from dataclasses import replace

import pytest
from eth_utils import keccak

from mbds_py.consortium.audit import ItemChecker, PrivateChainRef, body_summaries
from mbds_py.consortium.blocks import SummaryItem
from mbds_py.errors import StorageError
from mbds_py.pbft.types import SlipEnvelope
from mbds_py.private.body import decode_body
from mbds_py.private.client import Receipt
from mbds_py.private.cluster import wait_until
from mbds_py.private.slip import TransactionSlip
from mbds_py.private.testbed import private_testbed

pytestmark = pytest.mark.xdist_group("private-audit")

CHAIN_ID = 43152


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """A private chain with six committed, anchored records; yields (testbed, receipts)."""
    with private_testbed(tmp_path_factory.mktemp("audit-chain"), CHAIN_ID) as bed:
        api = bed.api()
        ids = [api.submit_confirmed(bed.record(n, tag="audit")[1].to_bytes()) for n in range(6)]
        receipts = [api.wait_receipt(i, timeout=60) for i in ids]
        top = max(r.height for r in receipts)
        wait_until(lambda: bed.ledger.head()[0] >= top, 60, "anchoring")
        yield bed, receipts


def _ref(bed) -> PrivateChainRef:
    cfg = bed.cluster.config
    return PrivateChainRef(cfg.chain_id, cfg.rpc_url, cfg.slip_ledger, tuple(bed.cluster.api_urls))


def _item(receipt: Receipt, chain_id: int = CHAIN_ID) -> SummaryItem:
    slip = TransactionSlip.from_bytes(receipt.payload)
    return SummaryItem(slip.patient_id, tuple(c.to_bytes() for c in slip.encrypted_keywords), slip.hmi_hash,
                       chain_id, receipt.height, receipt.slip_id)


class _Tampering:
    """A storage front that serves every body with one slip's payload altered (a dishonest storage node)."""

    def __init__(self, store):
        self.store = store

    def cat(self, cid: str) -> bytes:
        slips = list(decode_body(self.store.cat(cid)))
        slips[0] = SlipEnvelope(slips[0].slip_id, slips[0].payload[:-1] + bytes([slips[0].payload[-1] ^ 1]))
        from mbds_py.private.body import encode_body

        return encode_body(slips)


class _Down:
    def cat(self, cid: str) -> bytes:
        raise StorageError(f"storage unreachable for {cid}")


def test_each_private_block_is_proven_once_and_its_items_checked_locally(chain):
    bed, receipts = chain
    checker = ItemChecker((_ref(bed),), bed.storage)
    items = [_item(r) for r in receipts]
    checker.prefetch(items)
    assert all(checker(item) for item in items)
    blocks = {r.height for r in receipts}
    assert checker.stats["blocks_verified"] == len(blocks)
    assert checker.stats["receipts_fetched"] == len(blocks)  # one receipt per block, not per item
    again = checker.stats["receipts_fetched"]
    assert checker(replace(items[0], keywords=items[0].keywords))  # cached: no more fetching
    assert checker.stats["receipts_fetched"] == again


def test_forged_items_are_refused_even_in_a_proven_block(chain):
    bed, receipts = chain
    checker = ItemChecker((_ref(bed),), bed.storage)
    real = _item(receipts[0])
    assert checker(real)
    assert not checker(replace(real, hmi_hash=keccak(text="other record")))  # summary does not match its slip
    assert not checker(replace(real, patient_id=keccak(text="someone else")))
    assert not checker(replace(real, keywords=real.keywords[:-1]))
    assert not checker(replace(real, slip_id=keccak(text="absent slip")))  # not in the block, not on the chain
    other = [r for r in receipts if r.height != real.block_height]
    if other:  # a real slip, claimed in a block it is not in
        assert not checker(replace(_item(other[0]), block_height=real.block_height))
    assert not checker(replace(real, block_height=real.block_height + 1000))  # no such block
    assert not checker(replace(real, chain_id=99999))  # unknown private chain


def test_a_body_that_is_not_the_anchored_one_is_not_trusted(chain):
    """Storage serving an altered body: the block is not proven by it; each item falls back to its own proof."""
    bed, receipts = chain
    checker = ItemChecker((_ref(bed),), _Tampering(bed.storage))
    real = _item(receipts[0])
    assert checker(real)  # proven through its own receipt and verifySlip
    assert checker.stats["blocks_verified"] == 0
    assert not checker(replace(real, hmi_hash=keccak(text="other record")))


def test_storage_down_falls_back_to_one_proof_per_item(chain):
    bed, receipts = chain
    checker = ItemChecker((_ref(bed),), _Down())
    items = [_item(r) for r in receipts]
    assert all(checker(item) for item in items)
    assert checker.stats["blocks_verified"] == 0
    assert not checker(replace(items[1], patient_id=keccak(text="someone else")))


def test_body_summaries_refuses_a_body_that_does_not_match_its_header(chain):
    bed, receipts = chain
    r = receipts[0]
    from mbds_py.private.body import cid_text

    slips = decode_body(bed.storage.cat(cid_text(r.header.body_cid)))
    assert set(body_summaries(r.header, slips)) == {s.slip_id for s in slips}
    assert body_summaries(r.header, slips[1:]) is None  # a slip left out
    assert body_summaries(r.header, ()) is None
    assert body_summaries(replace(r.header, merkle_root=keccak(text="x")), slips) is None
