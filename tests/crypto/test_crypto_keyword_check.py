"""Issue 15 item 3: the patient checks each keyword ciphertext by recomputing it from the randomness r the
doctor put inside C_M — no pairing once E_w is cached — and refuses every tampered ciphertext by name.

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
    """What the patient decrypts from C_M (before the check strips the openings)."""
    return HmiPayload.from_bytes(pre_decrypt(patient.identity_secret_key, envelope.hmi_ciphertext))


def _forge(envelope, patient, doctor, domain, resign_header, payload: HmiPayload, cws=None) -> HmiEnvelope:
    c_m = pre_encrypt(patient.public_keys.pre_key, payload.to_bytes())
    changes = {"hmi_ciphertext_hash": keccak(c_m.to_bytes())}
    if cws is not None:
        changes["keyword_ciphertexts"] = tuple(cws)
    return HmiEnvelope(resign_header(envelope.header, doctor, domain, **changes), c_m)


def _real_slots(envelope, payload) -> list[int]:
    pads = {peks.peks_pad(s).to_bytes() for s in payload.pads}
    return [i for i, c in enumerate(envelope.header.keyword_ciphertexts) if c.to_bytes() not in pads]


@pytest.fixture
def no_pairing(monkeypatch):
    def boom(*_args, **_kwargs):
        raise AssertionError("a pairing was spent")

    monkeypatch.setattr(_bls, "pair", boom)


# --- the honest path ----------------------------------------------------------------------------


def test_c_m_carries_one_opening_per_keyword_and_the_check_spends_no_pairing(make_envelope, patient, doctor,
                                                                               domain, record_keywords,
                                                                               monkeypatch):
    envelope = make_envelope()  # the doctor's build caches E_w for (patient, keyword)
    payload = _c_m(envelope, patient)
    assert len(payload.openings) == len(payload.keywords) == len(record_keywords)
    real = [envelope.header.keyword_ciphertexts[i] for i in _real_slots(envelope, payload)]
    for word, r, ct in zip(payload.keywords, payload.openings, real):
        assert ct.to_bytes()[:48] == _bls.g1_mul_generator(int.from_bytes(r, "big"))  # A = g^r
        assert peks.check_opening(patient.public_keys.peks_key, word, r, ct)
    pairings = []
    real_pair = _bls.pair
    monkeypatch.setattr(_bls, "pair", lambda a, b: pairings.append(1) or real_pair(a, b))
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


def test_the_stored_record_drops_the_openings(make_envelope, patient, doctor, domain):
    envelope = make_envelope()
    reviewed = review_envelope(envelope, patient, domain=domain, expected_doctor=doctor.address)
    assert reviewed.payload.openings == ()
    confirmed = confirm_record(reviewed, patient, storage_address="bafkrei-item-3")
    opened = open_record(confirmed, reviewed.record_blob, patient, domain=domain)
    assert opened == reviewed.payload and opened.openings == () and opened.to_bytes()[5] == 2
    assert opened.keywords == _c_m(envelope, patient).keywords


# --- the doctor as attacker ----------------------------------------------------------------------


def _tamper_cases():
    return ["other_keyword_with_its_r", "flipped_b", "other_a", "wrong_r", "zero_r", "r_not_below_q",
            "swapped_openings"]


@pytest.mark.parametrize("case", _tamper_cases())
def test_tampered_keyword_ciphertext_is_refused_by_name(make_envelope, patient, doctor, domain, resign_header,
                                                        case):
    envelope = make_envelope()
    payload = _c_m(envelope, patient)
    cws = list(envelope.header.keyword_ciphertexts)
    slot = _real_slots(envelope, payload)[0]  # the ciphertext of payload.keywords[0]
    openings = list(payload.openings)
    pk = patient.public_keys.peks_key
    if case == "other_keyword_with_its_r":  # hides OTHER where C_M shows keywords[0], and gives a true r for it
        cws[slot], openings[0] = peks.peks_encrypt_opening(pk, OTHER)
    elif case == "flipped_b":
        raw = cws[slot].to_bytes()
        cws[slot] = peks.PeksCiphertext.from_bytes(raw[:-1] + bytes([raw[-1] ^ 1]))
    elif case == "other_a":  # A of another r, B kept
        cws[slot] = peks.PeksCiphertext.from_bytes(_bls.g1_mul_generator(12345) + cws[slot].b)
    elif case == "wrong_r":
        openings[0] = ((int.from_bytes(openings[0], "big") % (peks.GROUP_ORDER - 1)) + 1).to_bytes(32, "big")
    elif case == "zero_r":
        openings[0] = bytes(32)
    elif case == "r_not_below_q":  # r + q: the same scalar mod q, refused rather than reduced
        r = int.from_bytes(openings[0], "big") + peks.GROUP_ORDER
        openings[0] = r.to_bytes(32, "big")
    elif case == "swapped_openings":
        openings[0], openings[1] = openings[1], openings[0]
    forged = _forge(envelope, patient, doctor, domain, resign_header, replace(payload, openings=tuple(openings)),
                    cws)
    with pytest.raises(KeywordCiphertextMismatchError, match="does not encrypt") as info:
        review_envelope(forged, patient, domain=domain, expected_doctor=doctor.address)
    assert isinstance(info.value, KeywordMismatchError)


def test_a_ciphertext_of_another_key_is_refused(make_envelope, patient, other_patient, doctor, domain,
                                                resign_header):
    envelope = make_envelope()
    payload = _c_m(envelope, patient)
    cws = list(envelope.header.keyword_ciphertexts)
    slot = _real_slots(envelope, payload)[0]
    ct, r = peks.peks_encrypt_opening(other_patient.public_keys.peks_key, payload.keywords[0])
    cws[slot] = ct
    openings = (r,) + payload.openings[1:]
    forged = _forge(envelope, patient, doctor, domain, resign_header, replace(payload, openings=openings), cws)
    with pytest.raises(KeywordCiphertextMismatchError):
        review_envelope(forged, patient, domain=domain, expected_doctor=doctor.address)


@pytest.mark.parametrize("openings, fragment", [
    (lambda p: p.openings[:-1], "keyword openings for"),
    (lambda p: p.openings[:-1] + (bytes(31),), "must be 32 bytes"),
])
def test_malformed_openings_are_refused(make_envelope, patient, openings, fragment):
    payload = _c_m(make_envelope(), patient)
    with pytest.raises(EnvelopeError, match=fragment):
        replace(payload, openings=openings(payload))


def test_a_format_3_payload_with_a_wrong_opening_count_does_not_decode(make_envelope, patient):
    raw = _c_m(make_envelope(), patient).to_bytes()
    n = len(_c_m(make_envelope(), patient).keywords)
    cut = raw[:-(2 + 32 * n)] + (n - 1).to_bytes(2, "big") + raw[-(32 * (n - 1)):]
    with pytest.raises(MalformedDataError, match="keyword openings for"):
        HmiPayload.from_bytes(cut)


# --- byte compatibility --------------------------------------------------------------------------


#: A format-2 payload as the code before item 3 encoded it (generated with that code).
FORMAT_2_HEX = ("4d4244530402000000077b2261223a317d000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
                "000100000022687474703a2f2f686c372e6f72672f666869722f7369642f6963642d31307c49313000010707070707"
                "070707070707070707070707070707070707070707070707070707")


def test_a_payload_without_openings_encodes_as_format_2_byte_for_byte():
    p = HmiPayload(b'{"a":1}', ("http://hl7.org/fhir/sid/icd-10|I10",), bytes(range(32)), (b"\x07" * 32,))
    assert p.to_bytes().hex() == FORMAT_2_HEX
    assert HmiPayload.from_bytes(bytes.fromhex(FORMAT_2_HEX)) == p
    with_r = replace(p, openings=(b"\x01" * 32,))
    assert with_r.to_bytes()[5] == 3
    assert with_r.to_bytes()[6:] == p.to_bytes()[6:] + (1).to_bytes(2, "big") + b"\x01" * 32
    assert HmiPayload.from_bytes(with_r.to_bytes()) == with_r and with_r.without_openings() == p


def test_a_format_2_envelope_still_reviews_with_the_pairing_test(make_envelope, patient, doctor, domain,
                                                                 resign_header):
    """An envelope made before item 3 (no r in C_M) is still checked — by the pairing test — and still refused
    when a ciphertext hides another keyword."""
    envelope = make_envelope()
    legacy = _c_m(envelope, patient).without_openings()
    old = _forge(envelope, patient, doctor, domain, resign_header, legacy)
    assert pre_decrypt(patient.identity_secret_key, old.hmi_ciphertext)[5] == 2
    assert review_envelope(old, patient, domain=domain, expected_doctor=doctor.address).payload == legacy
    cws = list(envelope.header.keyword_ciphertexts)
    cws[_real_slots(envelope, legacy)[0]] = peks.peks_encrypt(patient.public_keys.peks_key, OTHER)
    bad = _forge(envelope, patient, doctor, domain, resign_header, legacy, cws)
    with pytest.raises(KeywordCiphertextMismatchError, match="does not encrypt"):
        review_envelope(bad, patient, domain=domain, expected_doctor=doctor.address)


def test_ciphertexts_with_an_opening_are_ordinary_peks_ciphertexts(make_envelope, patient):
    """The proxies' search is unchanged: the trapdoor matches the ciphertext built with an opening."""
    envelope = make_envelope()
    payload = _c_m(envelope, patient)
    hits = peks.match_all([patient.trapdoor(payload.keywords[0])], {"r": envelope.header.keyword_ciphertexts})
    assert hits == ["r"] and len(envelope.header.keyword_ciphertexts) == KEYWORD_SLOTS
