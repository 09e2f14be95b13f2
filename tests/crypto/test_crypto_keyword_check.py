"""Issue 15 item 3: the patient checks each keyword ciphertext by recomputing it from the record's randomness
r the doctor put inside C_M (every slot shares A = g^r) — no pairing once E_w is cached — and refuses every
tampered ciphertext by name.

The attacker here is the doctor: he signs whatever header he likes, so every forged envelope below is
re-signed and its C_M re-encrypted to the patient (the envelope itself verifies)."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from eth_utils import keccak

from mbds_py.crypto import (HmiEnvelope, HmiPayload, confirm_record, open_record, pre_decrypt, pre_encrypt,
                            review_envelope)
from mbds_py.crypto import _bls, peks
from mbds_py.crypto.envelope import KEYWORD_SLOTS
from mbds_py.crypto.errors import EnvelopeError, KeywordCiphertextMismatchError, KeywordMismatchError, \
    MalformedDataError
from mbds_py.crypto.keywords import normalize_keyword

OTHER = "icd10|C50.9"  # a keyword the patient never saw in this record


def _c_m(envelope, patient) -> HmiPayload:
    """What the patient decrypts from C_M (before the check strips r)."""
    return HmiPayload.from_bytes(pre_decrypt(patient.identity_secret_key, envelope.hmi_ciphertext))


def _forge(envelope, patient, doctor, domain, resign_header, payload: HmiPayload, cws=None) -> HmiEnvelope:
    c_m = pre_encrypt(patient.public_keys.pre_key, payload.to_bytes())
    changes = {"hmi_ciphertext_hash": keccak(c_m.to_bytes())}
    if cws is not None:
        changes["keyword_ciphertexts"] = tuple(cws)
    return HmiEnvelope(resign_header(envelope.header, doctor, domain, **changes), c_m)


def _real_slots(envelope, payload) -> list[int]:
    a = peks.randomness_point(payload.randomness) if payload.randomness else None
    pads = {peks.peks_pad(s, a).to_bytes() for s in payload.pads}
    return [i for i, c in enumerate(envelope.header.keyword_ciphertexts) if c.to_bytes() not in pads]


@pytest.fixture
def no_pairing(monkeypatch):
    def boom(*_args, **_kwargs):
        raise AssertionError("a pairing was spent")

    monkeypatch.setattr(_bls, "pair", boom)


# --- the honest path ----------------------------------------------------------------------------


def test_c_m_carries_the_records_randomness_and_the_check_spends_no_pairing(make_envelope, patient, doctor,
                                                                            domain, record_keywords, monkeypatch):
    envelope = make_envelope()  # the doctor's build caches E_w for (patient, keyword)
    payload = _c_m(envelope, patient)
    assert len(payload.randomness) == 32 and len(payload.keywords) == len(record_keywords)
    a = _bls.g1_mul_generator(int.from_bytes(payload.randomness, "big"))
    assert {c.to_bytes()[:48] for c in envelope.header.keyword_ciphertexts} == {a}  # every slot: A = g^r
    real = [envelope.header.keyword_ciphertexts[i] for i in _real_slots(envelope, payload)]
    for word, ct in zip(payload.keywords, real):
        assert peks.check_opening(patient.public_keys.peks_key, word, payload.randomness, ct)
    pairings = []
    real_pair = _bls.pair
    monkeypatch.setattr(_bls, "pair", lambda a, b: pairings.append(1) or real_pair(a, b))
    monkeypatch.setattr(_bls, "pair_lines", lambda *a: pairings.append(1))
    reviewed = review_envelope(envelope, patient, domain=domain, expected_doctor=doctor.address)
    assert pairings == []
    assert sorted(reviewed.keywords) == sorted(normalize_keyword(k) for k in record_keywords)


def test_a_keyword_never_seen_costs_one_pairing_then_none(make_envelope, patient, doctor, domain, monkeypatch):
    envelope = make_envelope(keywords=["icd10|E11.9"])
    peks.clear_caches()  # the patient's device has not computed E_w for this keyword yet
    pairings = []
    real_pair = _bls.pair
    monkeypatch.setattr(_bls, "pair", lambda a, b: pairings.append(1) or real_pair(a, b))
    review_envelope(envelope, patient, domain=domain, expected_doctor=doctor.address)
    assert len(pairings) == 1  # E_w, once
    review_envelope(make_envelope(keywords=["icd10|E11.9"]), patient, domain=domain, expected_doctor=doctor.address)
    assert len(pairings) == 1


def test_check_opening_is_the_pairing_test(patient, other_patient):
    """Recomputing from r decides exactly what Test(T_w, C) decides (seeded r, several keys and keywords)."""
    rng = random.Random(15)
    words = ["icd10|E11.9", "snomed|44054006", "loinc|4548-4", OTHER]
    for owner in (patient, other_patient):
        for w in words:
            r = rng.randrange(1, peks.GROUP_ORDER)
            ct = peks._encrypt_with(owner.public_keys.peks_key, w, r)
            rb = r.to_bytes(32, "big")
            for probe in words:
                assert peks.check_opening(patient.public_keys.peks_key, probe, rb, ct) == \
                    peks.test(patient.trapdoor(probe), ct) == (owner is patient and probe == w)


def test_the_stored_record_drops_the_randomness(make_envelope, patient, doctor, domain):
    envelope = make_envelope()
    reviewed = review_envelope(envelope, patient, domain=domain, expected_doctor=doctor.address)
    assert reviewed.payload.randomness == b""
    confirmed = confirm_record(reviewed, patient, storage_address="bafkrei-item-3")
    opened = open_record(confirmed, reviewed.record_blob, patient, domain=domain)
    assert opened == reviewed.payload and opened.randomness == b"" and opened.to_bytes()[5] == 2
    assert opened.keywords == _c_m(envelope, patient).keywords


# --- the doctor as attacker ----------------------------------------------------------------------


@pytest.mark.parametrize("case", ["other_keyword_same_a", "other_keyword_own_a", "flipped_b", "other_a"])
def test_tampered_keyword_ciphertext_is_refused_by_name(make_envelope, patient, doctor, domain, resign_header,
                                                        case):
    envelope = make_envelope()
    payload = _c_m(envelope, patient)
    cws = list(envelope.header.keyword_ciphertexts)
    slot = _real_slots(envelope, payload)[0]  # the ciphertext of payload.keywords[0]
    pk = patient.public_keys.peks_key
    r = payload.randomness
    if case == "other_keyword_same_a":  # hides OTHER where C_M shows keywords[0], with the record's own r
        cws[slot] = peks.PeksCiphertext.from_bytes(cws[slot].to_bytes()[:48] + peks.record_b(pk, OTHER, r))
    elif case == "other_keyword_own_a":  # a genuine ciphertext of OTHER, with another r
        cws[slot] = peks.peks_encrypt(pk, OTHER)
    elif case == "flipped_b":
        raw = cws[slot].to_bytes()
        cws[slot] = peks.PeksCiphertext.from_bytes(raw[:-1] + bytes([raw[-1] ^ 1]))
    elif case == "other_a":  # A of another r, B kept
        cws[slot] = peks.PeksCiphertext.from_bytes(_bls.g1_mul_generator(12345) + cws[slot].b)
    forged = _forge(envelope, patient, doctor, domain, resign_header, payload, cws)
    with pytest.raises(KeywordCiphertextMismatchError, match="does not encrypt") as info:
        review_envelope(forged, patient, domain=domain, expected_doctor=doctor.address)
    assert isinstance(info.value, KeywordMismatchError)


@pytest.mark.parametrize("case", ["wrong_r", "r_plus_q"])
def test_randomness_that_does_not_open_the_record_is_refused(make_envelope, patient, doctor, domain,
                                                              resign_header, case):
    """A C_M whose r is not the record's: no slot (pads included) recomputes, refused before any keyword."""
    envelope = make_envelope()
    payload = _c_m(envelope, patient)
    k = int.from_bytes(payload.randomness, "big")
    r = (k % (peks.GROUP_ORDER - 1) + 1) if case == "wrong_r" else k + peks.GROUP_ORDER  # r + q: not reduced
    forged = _forge(envelope, patient, doctor, domain, resign_header,
                    replace(payload, randomness=r.to_bytes(32, "big")))
    with pytest.raises(KeywordMismatchError):
        review_envelope(forged, patient, domain=domain, expected_doctor=doctor.address)


@pytest.mark.parametrize("r", [bytes(32), (peks.GROUP_ORDER).to_bytes(32, "big")])
def test_randomness_outside_the_scalar_range_is_refused_by_name(make_envelope, patient, doctor, domain,
                                                                 resign_header, r):
    envelope = make_envelope()
    forged = _forge(envelope, patient, doctor, domain, resign_header, replace(_c_m(envelope, patient), randomness=r))
    with pytest.raises(KeywordCiphertextMismatchError, match="not a scalar in \\[1, q\\)"):
        review_envelope(forged, patient, domain=domain, expected_doctor=doctor.address)


def test_a_pad_with_another_a_is_refused(make_envelope, patient, doctor, domain, resign_header):
    """Every pad must carry the record's A: a pad of the older kind (its own A) tells the pads apart."""
    envelope = make_envelope()
    payload = _c_m(envelope, patient)
    cws = list(envelope.header.keyword_ciphertexts)
    a = peks.randomness_point(payload.randomness)
    pad_slot = next(i for i, c in enumerate(cws) if c.to_bytes() == peks.peks_pad(payload.pads[0], a).to_bytes())
    cws[pad_slot] = peks.peks_pad(payload.pads[0])
    forged = _forge(envelope, patient, doctor, domain, resign_header, payload, cws)
    with pytest.raises(KeywordMismatchError, match="padding ciphertext"):
        review_envelope(forged, patient, domain=domain, expected_doctor=doctor.address)


def test_a_ciphertext_of_another_key_is_refused(make_envelope, patient, other_patient, doctor, domain,
                                                resign_header):
    envelope = make_envelope()
    payload = _c_m(envelope, patient)
    cws = list(envelope.header.keyword_ciphertexts)
    slot = _real_slots(envelope, payload)[0]
    other_b = peks.record_b(other_patient.public_keys.peks_key, payload.keywords[0], payload.randomness)
    cws[slot] = peks.PeksCiphertext.from_bytes(cws[slot].to_bytes()[:48] + other_b)
    forged = _forge(envelope, patient, doctor, domain, resign_header, payload, cws)
    with pytest.raises(KeywordCiphertextMismatchError):
        review_envelope(forged, patient, domain=domain, expected_doctor=doctor.address)


def test_malformed_randomness_is_refused(make_envelope, patient):
    payload = _c_m(make_envelope(), patient)
    with pytest.raises(EnvelopeError, match="randomness must be 32 bytes"):
        replace(payload, randomness=payload.randomness[:31])


def test_a_truncated_format_3_payload_does_not_decode(make_envelope, patient):
    raw = _c_m(make_envelope(), patient).to_bytes()
    with pytest.raises(MalformedDataError, match="truncated"):
        HmiPayload.from_bytes(raw[:-1])


# --- byte compatibility --------------------------------------------------------------------------


#: A format-2 payload as the code before item 3 encoded it (generated with that code).
FORMAT_2_HEX = ("4d4244530402000000077b2261223a317d000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
                "000100000022687474703a2f2f686c372e6f72672f666869722f7369642f6963642d31307c49313000010707070707"
                "070707070707070707070707070707070707070707070707070707")


def test_a_payload_without_randomness_encodes_as_format_2_byte_for_byte():
    p = HmiPayload(b'{"a":1}', ("http://hl7.org/fhir/sid/icd-10|I10",), bytes(range(32)), (b"\x07" * 32,))
    assert p.to_bytes().hex() == FORMAT_2_HEX
    assert HmiPayload.from_bytes(bytes.fromhex(FORMAT_2_HEX)) == p
    with_r = replace(p, randomness=b"\x01" * 32)
    assert with_r.to_bytes()[5] == 3
    assert with_r.to_bytes()[6:] == p.to_bytes()[6:] + b"\x01" * 32
    assert HmiPayload.from_bytes(with_r.to_bytes()) == with_r and with_r.without_randomness() == p


def test_a_format_2_envelope_still_reviews_with_the_pairing_test(make_envelope, patient, doctor, domain,
                                                                 fhir_condition):
    """A record made before item 3 (one r per ciphertext, no r in C_M) is still checked — by the pairing
    test — and still refused when a ciphertext hides another keyword."""
    from mbds_py.crypto import build_envelope
    from tests.crypto.conftest import KEYWORDS, resign

    old = build_envelope(fhir_condition, KEYWORDS, patient.public_keys, doctor.signer, timestamp=1_700_000_000,
                         record_type="diagnosis", text="outpatient visit", domain=domain, keyword_randomness=False)
    legacy = _c_m(old, patient)
    assert legacy.randomness == b"" and legacy.to_bytes()[5] == 2
    assert len({c.to_bytes()[:48] for c in old.header.keyword_ciphertexts}) == KEYWORD_SLOTS  # one A per slot
    assert review_envelope(old, patient, domain=domain, expected_doctor=doctor.address).payload == legacy
    cws = list(old.header.keyword_ciphertexts)
    cws[_real_slots(old, legacy)[0]] = peks.peks_encrypt(patient.public_keys.peks_key, OTHER)
    bad = HmiEnvelope(resign(old.header, doctor, domain, keyword_ciphertexts=tuple(cws)), old.hmi_ciphertext)
    with pytest.raises(KeywordCiphertextMismatchError, match="does not encrypt"):
        review_envelope(bad, patient, domain=domain, expected_doctor=doctor.address)


def test_ciphertexts_sharing_a_are_ordinary_peks_ciphertexts(make_envelope, patient):
    """The proxies' Test is unchanged: the trapdoor matches the ciphertext built with the record's r."""
    envelope = make_envelope()
    payload = _c_m(envelope, patient)
    hits = peks.match_all([patient.trapdoor(payload.keywords[0])], {"r": envelope.header.keyword_ciphertexts})
    assert hits == ["r"] and len(envelope.header.keyword_ciphertexts) == KEYWORD_SLOTS


def test_a_records_keywords_must_be_distinct(patient):
    from mbds_py.crypto.errors import QueryError
    with pytest.raises(QueryError, match="distinct keywords"):
        peks.peks_encrypt_record(patient.public_keys.peks_key, ["icd10|E11.9", "ICD-10| e11.9"])
