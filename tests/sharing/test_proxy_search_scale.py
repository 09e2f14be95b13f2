"""Issue 15 item 4: the proxy parses each indexed item once (bounded cache keyed by the item hash), tests on
a thread pool, does not test again what an earlier query of the same search matched, and keeps each
patient's items up to date incrementally (only items of newer blocks are fetched).  No network: the
consortium node is a function here; seeded randomness."""

from __future__ import annotations

import hashlib
import random

import pytest

from mbds_py.crypto import PatientSecrets, peks
from mbds_py.sharing import proxy as proxy_mod
from mbds_py.sharing.proxy import ItemIndex, ParsedItems, ProxyRefused, Refusal, match_items

WORD = "icd10|R05"


@pytest.fixture(scope="module")
def patient() -> PatientSecrets:
    return PatientSecrets.derive(hashlib.sha256(b"mbds-test/search-scale").digest())


def _items(patient, n: int, hits: set[int], seed: int = 15) -> list[dict]:
    """``n`` items of 4 distinct ciphertexts each (pads), the items in ``hits`` carrying PEKS(WORD)."""
    rng = random.Random(seed)
    pk = patient.public_keys.peks_key
    out = []
    for i in range(n):
        cts = [peks.peks_pad(rng.randbytes(32)) for _ in range(4)]
        if i in hits:
            cts[rng.randrange(4)] = peks._encrypt_with(pk, WORD, rng.randrange(1, peks.GROUP_ORDER))
        out.append({"height": 1 + i // 3, "slip": 0, "index": i % 3, "slip_id": f"#{i}",
                    "keywords": ["0x" + c.to_bytes().hex() for c in cts]})
    return out


def _counting_parse(monkeypatch) -> list[int]:
    """Counts the G1 parses (decompression + subgroup check) of ciphertext A's."""
    calls = []
    real = peks._g1_from_bytes

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(peks, "_g1_from_bytes", counted)
    return calls


def _shared_items(patient, n: int, hits: set[int], seed: int = 15) -> list[dict]:
    """Items as build_envelope now makes them: one r per record, every slot (keywords and pads) sharing A."""
    rng = random.Random(seed)
    pk = patient.public_keys.peks_key
    out = []
    for i in range(n):
        words = [WORD if i in hits else "icd10|E11.9", "snomed|44054006"]
        cts, a, _ = peks.peks_encrypt_record(pk, words)
        cts += [peks.peks_pad(rng.randbytes(32), a) for _ in range(2)]
        out.append({"height": 1 + i, "slip": 0, "index": 0, "slip_id": f"#{i}",
                    "keywords": ["0x" + c.to_bytes().hex() for c in sorted(cts, key=lambda c: c.to_bytes())]})
    return out


def test_items_are_parsed_once_across_searches(patient, monkeypatch):
    items = _items(patient, 40, {7, 31})
    cache = ParsedItems()
    calls = _counting_parse(monkeypatch)
    td = [patient.trapdoor(WORD)]
    assert match_items(items, td, cache=cache) == [7, 31]
    assert len(calls) == 40 * 4 and cache.misses == 40
    assert match_items(items, td, cache=cache) == [7, 31]
    assert match_items(list(reversed(items)), td, cache=cache) == [8, 32]  # same items, other positions
    assert len(calls) == 40 * 4 and cache.hits == 80


def test_the_cache_is_bounded_and_keyed_by_what_is_parsed(patient):
    items = _items(patient, 10, {3})
    cache = ParsedItems(capacity=4)
    assert match_items(items, [patient.trapdoor(WORD)], cache=cache) == [3]
    assert len(cache) == 4
    # a node serving other ciphertexts at the same position is not answered from the cache
    swapped = dict(items[3], keywords=items[4]["keywords"])
    assert match_items([swapped], [patient.trapdoor(WORD)], cache=cache) == []


def test_a_malformed_item_is_skipped_and_remembered(patient, monkeypatch):
    items = _items(patient, 3, {2})
    items[0] = dict(items[0], keywords=["0x" + "00" * 80] + items[0]["keywords"][1:])  # not a point
    cache = ParsedItems()
    calls = _counting_parse(monkeypatch)
    assert match_items(items, [patient.trapdoor(WORD)], cache=cache) == [2]
    first = len(calls)
    assert match_items(items, [patient.trapdoor(WORD)], cache=cache) == [2]
    assert len(calls) == first  # the malformed item is not parsed again either
    with pytest.raises(ProxyRefused) as info:
        ParsedItems.item_hash({"keywords": "0x00"})
    assert info.value.code is Refusal.INTEGRITY


def test_threads_and_one_thread_agree(patient):
    items = _items(patient, 24, {0, 11, 23})
    td = [patient.trapdoor(WORD)]
    assert match_items(items, td, workers=1) == match_items(items, td, workers=2) == [0, 11, 23]


def test_an_earlier_querys_hits_are_not_tested_again(patient, monkeypatch):
    items = _items(patient, 12, {1, 5})
    cache = ParsedItems()
    match_items(items, [patient.trapdoor(WORD)], cache=cache)  # parse
    tested = []
    real = peks._matches_all
    monkeypatch.setattr(peks, "_matches_all", lambda pts, cts: tested.append(cts) or real(pts, cts))
    assert match_items(items, [patient.trapdoor(WORD)], cache=cache, skip={1, 5}, workers=1) == []
    assert len(tested) == 10


def test_the_item_index_fetches_only_newer_blocks_and_is_bounded():
    store = {b"p" * 32: [{"height": h, "slip": 0, "index": 0, "keywords": [], "slip_id": f"#{h}"} for h in (1, 2)]}
    asked = []

    def fetch(patient, after):
        asked.append((patient[:1], after))
        return [it for it in store.get(patient, []) if it["height"] > after]

    index = ItemIndex(fetch, patients=2, clock=lambda: 0.0)
    assert [i["height"] for i in index.items(b"p" * 32)] == [1, 2]
    store[b"p" * 32].append({"height": 5, "slip": 1, "index": 0, "keywords": [], "slip_id": "#5"})
    assert [i["height"] for i in index.items(b"p" * 32)] == [1, 2, 5]
    assert index.items(b"p" * 32)[-1]["slip_id"] == "#5"
    assert asked == [(b"p", 0), (b"p", 2), (b"p", 5)]
    # a node that ignores ?after= and serves everything again: no duplicates
    index2 = ItemIndex(lambda p, after: store[b"p" * 32], patients=2, clock=lambda: 0.0)
    index2.items(b"p" * 32)
    assert len(index2.items(b"p" * 32)) == 3
    for name in (b"a", b"b", b"c"):
        index.items(name * 32)
    assert len(index._by_patient) == 2


def test_the_item_index_refuses_an_item_without_its_position():
    index = ItemIndex(lambda p, after: [{"keywords": []}])
    with pytest.raises(ProxyRefused) as info:
        index.items(b"p" * 32)
    assert info.value.code is Refusal.INTEGRITY


def test_a_records_shared_a_is_parsed_once_and_paired_once_per_trapdoor(patient, monkeypatch):
    items = _shared_items(patient, 12, {4, 9})
    assert all(len({k[:98] for k in it["keywords"]}) == 1 for it in items)  # one A per item
    calls = _counting_parse(monkeypatch)
    cache = ParsedItems()
    pairings = []
    real = proxy_mod.match_all.__globals__["_bls"].pair_lines
    monkeypatch.setattr(peks._bls, "pair_lines", lambda q, p: pairings.append(1) or real(q, p))
    assert match_items(items, [patient.trapdoor(WORD)], cache=cache, workers=1) == [4, 9]
    assert len(calls) == 12  # one A per item
    assert len(pairings) == 12  # one pairing per item and trapdoor, not one per ciphertext
    pairings.clear()
    both = [patient.trapdoor(WORD), patient.trapdoor("snomed|44054006")]
    assert match_items(items, both, cache=cache, workers=1) == [4, 9]
    assert len(pairings) == 12 + 2  # the second trapdoor only for the items the first matched


def _node_with_blocks(n_blocks: int, patient: bytes):
    """A consortium node's item store (no chain: the node object without its network parts)."""
    import sqlite3
    import threading
    from collections import OrderedDict

    from mbds_py.consortium.blocks import ConsortiumSlip, SummaryItem, build_block
    from mbds_py.consortium.node import ConsortiumNode

    node = ConsortiumNode.__new__(ConsortiumNode)
    node.db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
    node.db.executescript(
        "CREATE TABLE block (height INTEGER PRIMARY KEY, header BLOB, body BLOB);"
        "CREATE TABLE item (patient BLOB, height INTEGER, slip INTEGER, idx INTEGER, PRIMARY KEY (height, slip, idx));"
        "CREATE INDEX item_patient ON item (patient);")
    node.lock = threading.RLock()
    node._blocks = OrderedDict()
    prev = None
    for h in range(1, n_blocks + 1):
        items = tuple(SummaryItem(patient if k % 2 == 0 else b"\x09" * 32, (bytes([h, k]) * 40,), bytes([h]) * 32, 1,
                                  h, bytes([h, k]) * 16) for k in range(3))
        block = build_block([ConsortiumSlip(bytes([h]) * 32, 1_700_000_000 + h, b"\x01" * 32, items)], prev=prev,
                            slot=h, producer=b"\x02" * 32, timestamp=1_700_000_000 + h)
        prev = block.header
        node.db.execute("INSERT INTO block VALUES (?, ?, ?)", (h, block.header.encode(), block.body()))
        node.db.executemany("INSERT INTO item VALUES (?, ?, ?, ?)",
                            [(it.patient_id, h, 0, i) for i, it in enumerate(items)])
    return node


def test_the_node_serves_items_above_a_height_and_decodes_each_block_once(monkeypatch):
    from mbds_py.consortium import node as node_mod
    from mbds_py.consortium.blocks import BlockHeader
    from mbds_py.consortium.merkle import verify_item

    pid = b"\x05" * 32
    node = _node_with_blocks(3, pid)
    decoded = []
    real = node_mod.decode_body
    monkeypatch.setattr(node_mod, "decode_body", lambda b: decoded.append(1) or real(b))
    every = node.items_of(pid)
    assert [(i["height"], i["index"]) for i in every] == [(h, k) for h in (1, 2, 3) for k in (0, 2)]
    assert len(decoded) == 3  # once per block, not once per item
    assert [(i["height"], i["index"]) for i in node.items_of(pid, after=2)] == [(3, 0), (3, 2)]
    assert node.items_of(pid, after=3) == []
    assert len(decoded) == 3  # the blocks stay decoded
    from mbds_py.consortium.blocks import SummaryItem
    for it in every:  # each served proof still verifies, as the proxy checks it
        header = BlockHeader.decode(bytes.fromhex(it["header"][2:]))
        summary = SummaryItem(pid, tuple(bytes.fromhex(k[2:]) for k in it["keywords"]),
                              bytes.fromhex(it["hmi_hash"][2:]), it["chain_id"], it["block_height"],
                              bytes.fromhex(it["slip_id"][2:]))
        assert verify_item([bytes.fromhex(p[2:]) for p in it["proof"]], header.merkle_root,
                           bytes.fromhex(it["slip_hash"][2:]), it["index"], summary.struct_hash)


def test_a_bad_answer_does_not_stick_past_the_full_refresh():
    """A node that once served an item claiming a far height would hide the blocks below it from ?after=;
    the whole list is fetched again after ``full_refresh_s`` (a settable clock: no sleeping)."""
    now = [0.0]
    served = [[{"height": 10**9, "slip": 0, "index": 0, "keywords": [], "slip_id": "#bad"}]]
    asked = []

    def fetch(patient, after):
        asked.append(after)
        return [it for it in served[-1] if it["height"] > after]

    index = ItemIndex(fetch, full_refresh_s=60, clock=lambda: now[0])
    assert [i["slip_id"] for i in index.items(b"p" * 32)] == ["#bad"]
    served.append([{"height": 3, "slip": 0, "index": 0, "keywords": [], "slip_id": "#3"}])
    now[0] = 59.0
    assert [i["slip_id"] for i in index.items(b"p" * 32)] == ["#bad"]
    now[0] = 60.0
    assert [i["slip_id"] for i in index.items(b"p" * 32)] == ["#3"]
    assert asked == [0, 10**9, 0]
