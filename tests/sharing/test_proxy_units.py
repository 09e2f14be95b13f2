"""The proxy's pure parts: refusal codes, signed digests, key custody, rate monitoring, combination."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from mbds_py.crypto import HmiPayload
from mbds_py.sharing.clients import SharedRecord, combine
from mbds_py.sharing.policy import ZERO32, Reason
from mbds_py.sharing.proxy import (ChainRef, HeldKey, KeyStore, ProxyConfig, ProxyRefused, RateMonitor, Refusal,
                                   SearchToken, check_search_work, decode_trapdoor_sets, deposit_digest,
                                   encode_trapdoor_sets, info_digest, read_digest, search_digest, token_digest)

P, G, R1, R2 = (bytes([i]) * 32 for i in (1, 2, 3, 4))
PROXY_A = "0x" + "aa" * 20
PROXY_B = "0x" + "bb" * 20


def held(record: bytes, epoch: int, kw: bytes = ZERO32) -> HeldKey:
    return HeldKey(P, G, record, epoch, 43101, b"kfrag-%d" % epoch, b"addr", kw)


# --- refusals ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("reason", [r for r in Reason if r is not Reason.OK])
def test_every_policy_reason_has_its_refusal_and_back(reason):
    refusal = Refusal.of(reason)
    err = ProxyRefused(refusal, proxy="nha")
    assert err.reason is reason
    assert reason.message in str(err) and "nha" in str(err)
    assert isinstance(err, PermissionError)


def test_refusal_http_status_says_whose_fault():
    assert Refusal.REVOKED.http_status == 403
    assert Refusal.STALE_EPOCH.http_status == 409
    assert Refusal.INTEGRITY.http_status == 422
    assert Refusal.UNAUTHENTICATED.http_status == 401
    assert Refusal.UNAVAILABLE.http_status == 503
    assert ProxyRefused(Refusal.STALE_EPOCH).reason is None


# --- what is signed -------------------------------------------------------------------------------------


def test_read_digest_binds_the_proxy_and_every_field():
    base = read_digest(PROXY_A, P, G, R1, 43101, 1, 1_700_000_000, b"\x00" * 16)
    assert read_digest(PROXY_B, P, G, R1, 43101, 1, 1_700_000_000, b"\x00" * 16) != base
    assert read_digest(PROXY_A, P, G, R2, 43101, 1, 1_700_000_000, b"\x00" * 16) != base
    assert read_digest(PROXY_A, P, G, R1, 43101, 2, 1_700_000_000, b"\x00" * 16) != base
    assert read_digest(PROXY_A, P, G, R1, 43101, 1, 1_700_000_000, b"\x01" * 16) != base


def test_deposit_digest_binds_epoch_kfrag_and_address():
    args = [PROXY_A, P, G, R1, 43101, 0, ZERO32, b"kfrag", b"address", 1]
    base = deposit_digest(*args)
    for i, other in ((5, 1), (7, b"other kfrag"), (8, b"other address"), (0, PROXY_B)):
        changed = list(args)
        changed[i] = other
        assert deposit_digest(*changed) != base
    assert info_digest(PROXY_A, "nha", b"\x02" * 33) != info_digest(PROXY_A, "pha", b"\x02" * 33)


# --- key custody ----------------------------------------------------------------------------------------


def test_keystore_keeps_the_newest_epoch_per_record(tmp_path):
    ks = KeyStore(tmp_path / "k.sqlite")
    ks.put(held(R1, 0))
    ks.put(held(R2, 0))
    ks.put(held(R1, 1))
    assert ks.newest(P, G, R1).epoch == 1
    assert ks.count() == 2  # the epoch-0 key of R1 was replaced
    assert ks.newest(P, G, b"\x09" * 32) is None


def test_keystore_deletes_by_record_keyword_set_or_pair(tmp_path):
    kw = b"\x07" * 32
    ks = KeyStore(tmp_path / "k.sqlite")
    ks.put(held(R1, 0))
    ks.put(held(R2, 0, kw))
    assert ks.delete(P, G, record_id=R1) == 1
    assert ks.delete(P, G, keyword_set_hash=kw) == 1
    ks.put(held(R1, 3))
    assert ks.delete(P, G) == 1 and ks.count() == 0


def test_keystore_survives_a_restart(tmp_path):
    KeyStore(tmp_path / "k.sqlite").put(held(R1, 2))
    again = KeyStore(tmp_path / "k.sqlite")
    assert again.newest(P, G, R1) == held(R1, 2)
    again.set_meta("last_block", 41)
    assert KeyStore(tmp_path / "k.sqlite").get_meta("last_block") == 41


# --- abnormal access ---------------------------------------------------------------------------------------


def test_rate_monitor_flags_only_above_the_limit_within_the_window():
    m = RateMonitor(limit=3, window=60)
    counts = [m.hit(G, t) for t in (0, 1, 2, 3)]
    assert counts == [1, 2, 3, 4]
    assert [m.abnormal(c) for c in counts] == [False, False, False, True]
    assert m.hit(G, 100) == 1  # the old hits left the window
    assert m.hit(P, 100) == 1  # per requester


def test_rate_monitor_forgets_hits_a_suspension_answered():
    m = RateMonitor(limit=2, window=60)
    for t in (10, 11, 12, 20):
        m.hit(G, t)
    assert m.forget_before(G, 15) == 1
    m.reset(G)
    assert m.hit(G, 21) == 1


# --- configuration and combination ------------------------------------------------------------------


def test_proxy_config_round_trips(tmp_path):
    cfg = ProxyConfig("nha", "http://127.0.0.1:1", "0x" + "11" * 20, "0x" + "22" * 20, ("http://c:1",),
                      (ChainRef("hospital-a", 43101, "http://127.0.0.1:2", "0x" + "33" * 20, ("http://r:1",)),),
                      ("http://s:1",), port=5, rate_limit=7)
    cfg.save(tmp_path / "p.json")
    assert ProxyConfig.load(tmp_path / "p.json") == cfg
    assert cfg.private_chains[0].domain.chain_id == 43101


def _shared(rid: bytes, t: int, chain_id: int) -> SharedRecord:
    return SharedRecord(rid, f"chain-{chain_id}", chain_id, t, "consultation", f"text {t}", "0x" + "00" * 20,
                        HmiPayload(b"{}", ("icd10|R05",), bytes(32)))


def test_combine_orders_by_time_and_drops_duplicates():
    a, b, c = _shared(R1, 30, 1), _shared(R2, 10, 2), _shared(P, 20, 3)
    timeline = combine([a, b, c, a])
    assert [e.timestamp for e in timeline.entries] == [10, 20, 30]
    assert len(timeline) == 3
    assert "chain-2" in timeline.lines()[0]


def test_proxy_refused_keeps_the_proxy_name_in_its_message():
    err = ProxyRefused("stale-epoch", proxy="pha")
    assert err.code is Refusal.STALE_EPOCH and "pha" in str(err) and "re-issue" in str(err)
    assert SimpleNamespace(code=err.code).code.value == "stale-epoch"


# --- search tokens (issue 13 item 11) ------------------------------------------------------------------


def test_token_digest_binds_proxy_patient_grantee_grant_expiry_and_trapdoors():
    args = [PROXY_A, P, G, 0, ZERO32, 1_700_000_000, b"encrypted trapdoors"]
    base = token_digest(*args)
    for i, other in ((0, PROXY_B), (1, R1), (2, R2), (3, 1), (4, R1), (5, 1_700_000_001), (6, b"other")):
        changed = list(args)
        changed[i] = other
        assert token_digest(*changed) != base, i


def test_search_digest_binds_the_proxy_the_token_and_the_nonce():
    base = search_digest(PROXY_A, R1, 1_700_000_000, b"\x00" * 16)
    assert search_digest(PROXY_B, R1, 1_700_000_000, b"\x00" * 16) != base
    assert search_digest(PROXY_A, R2, 1_700_000_000, b"\x00" * 16) != base
    assert search_digest(PROXY_A, R1, 1_700_000_000, b"\x01" * 16) != base


def test_search_work_is_capped_with_its_own_codes(tmp_path):
    config = SimpleNamespace(max_search_trapdoors=3, max_search_items=100)
    check_search_work([[1, 2], [3]], 50, config)  # 3 trapdoors, 50 items x 2 sets = 100: at the caps
    with pytest.raises(ProxyRefused) as info:
        check_search_work([[1, 2], [3, 4]], None, config)
    assert info.value.code is Refusal.TOO_MANY_TRAPDOORS and info.value.code.http_status == 413
    with pytest.raises(ProxyRefused) as info:
        check_search_work([[1], [2]], 51, config)
    assert info.value.code is Refusal.TOO_MANY_ITEMS and "cap of 100" in str(info.value)


def test_trapdoor_sets_round_trip_and_garbage_is_a_bad_request():
    from mbds_py.crypto import PatientSecrets

    sk = PatientSecrets.derive(b"\x05" * 32)
    sets = [[sk.trapdoor("icd10|I10").to_bytes(), sk.trapdoor("icd10|E11.9").to_bytes()]]
    assert [[t.to_bytes() for t in one] for one in decode_trapdoor_sets(encode_trapdoor_sets(sets))] == sets
    for bad in (b"not json", b"[]", b"[[]]", b'[["0x00"]]'):
        with pytest.raises(ProxyRefused) as info:
            decode_trapdoor_sets(bad)
        assert info.value.code is Refusal.BAD_REQUEST


def test_search_ticket_text_round_trips_and_refuses_garbage():
    from mbds_py.sharing.clients import SearchTicket, SharingError

    tokens = tuple(SearchToken(proxy, P, G, 0, ZERO32, 1_700_000_000, b"ct-" + proxy.encode(), b"\x01" * 65)
                   for proxy in (PROXY_A, PROXY_B))
    ticket = SearchTicket(P, G, 1_700_000_000, tokens)
    again = SearchTicket.from_text(ticket.to_text())
    assert again == ticket and again.token_for(PROXY_B.upper().replace("0X", "0x")) == tokens[1]
    for bad in ("0xdeadbeef", "mbds-search-ticket:!!!", "mbds-search-ticket:W10"):
        with pytest.raises(SharingError):
            SearchTicket.from_text(bad)


def test_nonces_survive_a_keystore_restart_and_expire(tmp_path):
    path = tmp_path / "nha.sqlite"
    store = KeyStore(path)
    assert store.use_nonce(b"n" * 16, 1000.0, 600.0)
    assert not store.use_nonce(b"n" * 16, 1001.0, 600.0)
    store.db.close()
    again = KeyStore(path)
    assert not again.use_nonce(b"n" * 16, 1002.0, 600.0)  # a restart does not forget it
    assert again.use_nonce(b"n" * 16, 1700.0, 600.0)  # outside the window the timestamp check refuses it anyway
    assert again.use_nonce(b"m" * 16, 1700.0, 600.0)


def test_new_refusals_say_whose_fault():
    assert Refusal.REPLAYED.http_status == 401 and Refusal.TOKEN_EXPIRED.http_status == 401
    assert Refusal.WRONG_PROXY.http_status == 421 and Refusal.WRONG_GRANTEE.http_status == 403
    assert "ask the patient for a new one" in str(ProxyRefused(Refusal.TOKEN_EXPIRED))
