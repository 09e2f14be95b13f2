"""Algorithms 1 and 2: build, review, confirm, open and share a record; every tampering case."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from mbds_py.crypto import (ConfirmedRecord, HmiEnvelope, HmiPayload, RecordHeader, build_envelope, canonical_hmi,
                            confirm_record, decrypt_storage_address, load_cfrag, load_kfrag, make_record_kfrags,
                            match_all, open_record, open_shared_address, open_shared_record, peks_encrypt,
                            pre_decrypt, pre_encrypt, reencrypt, review_envelope)
from mbds_py.crypto.envelope import KEYWORD_SLOTS
from mbds_py.crypto.peks import peks_pad
from mbds_py.crypto.errors import (CapsuleFragVerificationError, CiphertextMismatchError, DecryptionError,
                                   EnvelopeError, HmiHashMismatchError, InvalidSignatureError, KeywordError,
                                   KeywordMismatchError, MalformedDataError, UnexpectedSignerError,
                                   WrongRecipientError)
from mbds_py.crypto.keywords import normalize_keyword
from mbds_py.crypto.pre import UmbralCiphertext
from mbds_py.crypto.signing import Eip712Domain
from mbds_py.errors import IntegrityError, SignatureError

# --- Algorithm 1 ---------------------------------------------------------------------------------


def test_envelope_carries_hash_ciphertexts_and_signed_fields(envelope, doctor, patient, fhir_condition,
                                                             record_keywords):
    h = envelope.header
    assert h.doctor == doctor.address and h.patient == patient.public_keys
    assert h.hmi_hash != keccak(canonical_hmi(fhir_condition))  # salted: see the H(salt ‖ M) tests below
    assert h.hmi_ciphertext_hash == keccak(envelope.hmi_ciphertext.to_bytes())
    assert len(h.keyword_ciphertexts) == KEYWORD_SLOTS  # the record's keywords, padded
    assert [c.to_bytes() for c in h.keyword_ciphertexts] == sorted(c.to_bytes() for c in h.keyword_ciphertexts)
    assert (h.timestamp, h.record_type, h.text) == (1_700_000_000, "diagnosis", "outpatient visit")


def test_doctor_signature_recovers_to_doctor_with_eth_account(envelope, doctor, domain):
    signable = encode_typed_data(full_message=envelope.header.typed_data(domain))
    assert Account.recover_message(signable, signature=envelope.header.doctor_signature) == doctor.address
    assert keccak(b"\x19\x01" + signable.header + signable.body) == envelope.header.record_id(domain)


def test_envelope_and_header_round_trip_through_bytes(envelope):
    again = HmiEnvelope.from_bytes(envelope.to_bytes())
    assert again == envelope and again.to_bytes() == envelope.to_bytes()
    assert RecordHeader.from_bytes(envelope.header.to_bytes()) == envelope.header


def test_canonical_hmi_is_independent_of_key_order(fhir_condition):
    reordered = json.loads(json.dumps(fhir_condition, sort_keys=True))
    reordered = dict(reversed(list(reordered.items())))
    assert canonical_hmi(reordered) == canonical_hmi(fhir_condition)
    assert canonical_hmi(b"\x00raw HL7 v2 bytes") == b"\x00raw HL7 v2 bytes"
    assert json.loads(canonical_hmi(fhir_condition)) == fhir_condition


def test_keywords_are_normalised_and_deduplicated(make_envelope, patient, doctor, domain):
    env = make_envelope(keywords=["icd10|E11.9", " ICD-10|e119", "snomed|44054006"])
    payload = review_envelope(env, patient, domain=domain, expected_doctor=doctor.address).payload
    assert sorted(payload.keywords) == ["http://hl7.org/fhir/sid/icd-10|E11.9", "http://snomed.info/sct|44054006"]
    assert len(payload.pads) == KEYWORD_SLOTS - 2 and len(env.header.keyword_ciphertexts) == KEYWORD_SLOTS
    t2dm = patient.trapdoor("http://hl7.org/fhir/sid/icd-10|E11.9")
    assert match_all([t2dm], {"r": env.header.keyword_ciphertexts}) == ["r"]


@pytest.mark.parametrize("keywords, error, fragment", [
    (["icd9|250.00"], KeywordError, "unknown coding system"),
    (["snomed|44054007"], KeywordError, "Verhoeff"),
    ([], EnvelopeError, f"1-{KEYWORD_SLOTS} distinct keywords"),
    ("icd10|E11.9", EnvelopeError, "must be a list"),
])
def test_bad_keywords_are_refused(make_envelope, keywords, error, fragment):
    with pytest.raises(error, match=fragment):
        make_envelope(keywords=keywords)


@pytest.mark.parametrize("changes, fragment", [
    ({"timestamp": -1}, "timestamp"),
    ({"timestamp": 2**64}, "timestamp"),
    ({"record_type": " "}, "record type"),
    ({"hmi": {"value": float("nan")}}, "not plain JSON"),
    ({"hmi": {"when": object()}}, "not plain JSON"),
    ({"hmi": b""}, "empty"),
    ({"hmi": "a str is not bytes"}, "bytes or a FHIR JSON dict"),
])
def test_bad_envelope_fields_raise_envelope_error(domain, patient, doctor, fhir_condition, changes, fragment):
    args = dict(hmi=fhir_condition, keywords=["icd10|E11.9"], patient=patient.public_keys, doctor=doctor.signer,
                timestamp=1, record_type="diagnosis", text="", domain=domain)
    args.update(changes)
    with pytest.raises(EnvelopeError, match=fragment):
        build_envelope(**args)


def test_doctor_may_sign_with_an_eth_account(domain, patient, fhir_condition):
    account = Account.from_key(b"\x42" * 32)
    env = build_envelope(fhir_condition, ["icd10|I10"], patient.public_keys, account, timestamp=5,
                         record_type="lab", text="", domain=domain)
    assert env.verify(domain, expected_doctor=account.address) == env.header.record_id(domain)


# --- Algorithm 2: review and confirm -------------------------------------------------------------


def test_review_decrypts_hmi_and_keywords(reviewed, envelope, fhir_condition, record_keywords, domain):
    assert reviewed.hmi == canonical_hmi(fhir_condition)
    assert reviewed.payload.hmi_json() == fhir_condition
    assert sorted(reviewed.keywords) == sorted(normalize_keyword(k) for k in record_keywords)
    assert reviewed.record_id == envelope.header.record_id(domain)
    assert fhir_condition["note"][0]["text"][:10] not in repr(reviewed)
    assert HmiPayload.from_bytes(reviewed.payload.to_bytes()) == reviewed.payload


def test_confirmed_record_verifies_and_round_trips(confirmed, envelope, doctor, patient, domain):
    assert confirmed.verify(domain, expected_doctor=doctor.address, expected_patient=patient.address) \
        == envelope.header.record_id(domain)
    assert ConfirmedRecord.from_bytes(confirmed.to_bytes()) == confirmed
    assert confirmed.header == envelope.header


def test_patient_confirmation_recovers_to_patient_with_eth_account(confirmed, patient, domain):
    signable = encode_typed_data(full_message=confirmed.typed_data(domain))
    assert Account.recover_message(signable, signature=confirmed.patient_signature) == patient.address


def test_patient_opens_record_and_storage_address(confirmed, reviewed, patient, domain, fhir_condition):
    assert open_record(confirmed, reviewed.record_blob, patient, domain=domain).hmi_json() == fhir_condition
    assert decrypt_storage_address(confirmed, patient, domain=domain) == "bafkreia-record-1"


def test_confirmed_record_is_rekeyed_to_the_per_record_key(confirmed, reviewed, patient, domain):
    record_id = confirmed.record_id(domain)
    assert confirmed.record_key == patient.record_public_key(record_id).to_compressed_bytes()
    assert confirmed.record_key != patient.public_keys.pre_key
    # the identity key no longer opens the stored ciphertext
    with pytest.raises(DecryptionError, match="ciphertext does not open with this key"):
        pre_decrypt(patient.identity_secret_key, UmbralCiphertext.from_bytes(reviewed.record_blob))


# --- wrong patient / wrong doctor / tampered signature --------------------------------------------


def test_review_by_another_patient_raises_wrong_recipient(envelope, other_patient, doctor, domain):
    with pytest.raises(WrongRecipientError, match="addressed to patient"):
        review_envelope(envelope, other_patient, domain=domain, expected_doctor=doctor.address)


def test_envelope_to_stale_keys_of_same_address_raises_wrong_recipient(envelope, patient, doctor, domain,
                                                                        other_patient, resign_header):
    stale = replace(patient.public_keys, pre_key=other_patient.public_keys.pre_key)
    forged = HmiEnvelope(resign_header(envelope.header, doctor, domain, patient=stale), envelope.hmi_ciphertext)
    with pytest.raises(WrongRecipientError, match="other keys"):
        review_envelope(forged, patient, domain=domain, expected_doctor=doctor.address)


def test_other_patient_cannot_confirm_or_open(reviewed, confirmed, other_patient, domain):
    wrong_patient = f"record is addressed to patient 0x[0-9a-fA-F]{{40}}, not to {other_patient.address}"
    with pytest.raises(WrongRecipientError, match=wrong_patient):
        confirm_record(reviewed, other_patient, storage_address="x")
    with pytest.raises(WrongRecipientError, match=wrong_patient):
        open_record(confirmed, reviewed.record_blob, other_patient, domain=domain)


def test_envelope_signed_by_another_doctor_raises_unexpected_signer(make_envelope, other_doctor, doctor, patient,
                                                                    domain):
    env = make_envelope(by=other_doctor)
    with pytest.raises(UnexpectedSignerError) as info:
        review_envelope(env, patient, domain=domain, expected_doctor=doctor.address)
    assert (info.value.expected, info.value.actual) == (doctor.address, other_doctor.address)


def test_tampered_doctor_signature_raises_invalid_signature(envelope, patient, doctor, domain):
    sig = envelope.header.doctor_signature
    forged = HmiEnvelope(replace(envelope.header, doctor_signature=sig[:10] + bytes([sig[10] ^ 1]) + sig[11:]),
                         envelope.hmi_ciphertext)
    # the ciphertexts are randomised, so the flipped r either recovers to some other key or to none
    with pytest.raises(InvalidSignatureError,
                       match=f"doctor signature does not verify: it recovers to 0x[0-9a-fA-F]{{40}}, not to the doctor "
                             f"{doctor.address}|signature does not recover to any public key|signature r/s out of range"):
        review_envelope(forged, patient, domain=domain, expected_doctor=doctor.address)


@pytest.mark.parametrize("changes", [
    {"text": "outpatient visit (edited)"},
    {"timestamp": 1_700_000_001},
    {"record_type": "prescription"},
])
def test_field_changed_after_signing_raises_invalid_signature(envelope, patient, doctor, domain, changes):
    forged = HmiEnvelope(replace(envelope.header, **changes), envelope.hmi_ciphertext)
    with pytest.raises(InvalidSignatureError, match="does not verify"):
        review_envelope(forged, patient, domain=domain, expected_doctor=doctor.address)


def test_doctor_named_in_header_but_signed_by_another_raises_invalid_signature(envelope, patient, doctor,
                                                                               other_doctor, domain):
    header = replace(envelope.header, doctor=other_doctor.address)
    forged = HmiEnvelope(header, envelope.hmi_ciphertext)  # still carries the first doctor's signature
    with pytest.raises(InvalidSignatureError,
                       match=f"doctor signature does not verify: it recovers to 0x[0-9a-fA-F]{{40}}, "
                             f"not to the doctor {other_doctor.address}"):
        review_envelope(forged, patient, domain=domain, expected_doctor=other_doctor.address)


def test_signature_for_another_domain_does_not_verify(envelope, patient, doctor, domain):
    other = Eip712Domain(domain.chain_id + 1, domain.verifying_contract)
    with pytest.raises(InvalidSignatureError,
                       match=f"doctor signature does not verify: it recovers to 0x[0-9a-fA-F]{{40}}, "
                             f"not to the doctor {doctor.address}"):
        review_envelope(envelope, patient, domain=other, expected_doctor=doctor.address)


# --- tampered ciphertext / H(M) / keywords --------------------------------------------------------


def _flip(ct: UmbralCiphertext) -> UmbralCiphertext:
    return UmbralCiphertext(ct.capsule, ct.ciphertext[:-1] + bytes([ct.ciphertext[-1] ^ 1]))


def test_ciphertext_altered_after_signing_raises_ciphertext_mismatch(envelope, patient, doctor, domain):
    forged = HmiEnvelope(envelope.header, _flip(envelope.hmi_ciphertext))
    with pytest.raises(CiphertextMismatchError, match="altered after signing") as info:
        review_envelope(forged, patient, domain=domain, expected_doctor=doctor.address)
    assert isinstance(info.value, IntegrityError)


def test_signed_but_corrupt_ciphertext_raises_decryption_error(envelope, patient, doctor, domain, resign_header):
    bad = _flip(envelope.hmi_ciphertext)
    forged = HmiEnvelope(resign_header(envelope.header, doctor, domain, hmi_ciphertext_hash=keccak(bad.to_bytes())),
                         bad)
    with pytest.raises(DecryptionError, match="tampered"):
        review_envelope(forged, patient, domain=domain, expected_doctor=doctor.address)


def test_hmi_hash_mismatch_raises_integrity_error(envelope, patient, doctor, domain, resign_header):
    forged = HmiEnvelope(resign_header(envelope.header, doctor, domain, hmi_hash=keccak(b"another HMI")),
                         envelope.hmi_ciphertext)
    with pytest.raises(HmiHashMismatchError, match="H\\(M\\)") as info:
        review_envelope(forged, patient, domain=domain, expected_doctor=doctor.address)
    assert isinstance(info.value, IntegrityError)


def _shared_a(header) -> bytes:
    """The A every slot of a record shares (one PEKS randomness per record, issue 15 item 4)."""
    (a,) = {c.to_bytes()[:48] for c in header.keyword_ciphertexts}
    return a


def _pad_bytes(reviewed) -> set[bytes]:
    return {peks_pad(seed, _shared_a(reviewed.envelope.header)).to_bytes() for seed in reviewed.payload.pads}


def test_keyword_ciphertext_of_other_keyword_raises_keyword_mismatch(envelope, reviewed, patient, doctor, domain,
                                                                     resign_header):
    cws = list(envelope.header.keyword_ciphertexts)
    real = next(i for i, c in enumerate(cws) if c.to_bytes() not in _pad_bytes(reviewed))
    cws[real] = peks_encrypt(patient.public_keys.peks_key, "icd10|C50.9")  # a keyword the payload does not list
    forged = HmiEnvelope(resign_header(envelope.header, doctor, domain, keyword_ciphertexts=tuple(cws)),
                         envelope.hmi_ciphertext)
    with pytest.raises(KeywordMismatchError, match="does not encrypt") as info:
        review_envelope(forged, patient, domain=domain, expected_doctor=doctor.address)
    assert isinstance(info.value, IntegrityError)
    # the check can be skipped deliberately
    assert review_envelope(forged, patient, domain=domain, expected_doctor=doctor.address, check_keywords=False)


def test_missing_keyword_ciphertext_raises_keyword_mismatch(envelope, patient, doctor, domain, resign_header):
    forged = HmiEnvelope(resign_header(envelope.header, doctor, domain,
                                       keyword_ciphertexts=envelope.header.keyword_ciphertexts[1:]),
                         envelope.hmi_ciphertext)
    with pytest.raises(KeywordMismatchError, match=f"carries {KEYWORD_SLOTS - 1} keyword ciphertexts; every "
                                                   f"record must carry exactly {KEYWORD_SLOTS}"):
        review_envelope(forged, patient, domain=domain, expected_doctor=doctor.address)
    with pytest.raises(KeywordMismatchError, match=f"lists 3 keywords and {KEYWORD_SLOTS - 3} pads"):
        review_envelope(forged, patient, domain=domain, expected_doctor=doctor.address,
                        keyword_slots=KEYWORD_SLOTS - 1)


def test_ciphertext_without_mbds_payload_raises_malformed(envelope, patient, doctor, domain, resign_header):
    junk = pre_encrypt(patient.public_keys.pre_key, b"not a payload")
    forged = HmiEnvelope(resign_header(envelope.header, doctor, domain, hmi_ciphertext_hash=keccak(junk.to_bytes())),
                         junk)
    with pytest.raises(MalformedDataError, match="not an MBDS HMI payload"):
        review_envelope(forged, patient, domain=domain, expected_doctor=doctor.address)


def test_tampered_stored_blob_raises_ciphertext_mismatch(confirmed, reviewed, patient, domain):
    blob = bytearray(reviewed.record_blob)
    blob[-1] ^= 1
    with pytest.raises(CiphertextMismatchError, match="altered"):
        open_record(confirmed, bytes(blob), patient, domain=domain)


def test_tampered_confirmation_raises_invalid_signature(confirmed, patient, domain):
    other_addr = pre_encrypt(confirmed.record_key, b"https://evil.example/blob")
    with pytest.raises(InvalidSignatureError, match="patient signature"):
        replace(confirmed, encrypted_address=other_addr).verify(domain)
    with pytest.raises(InvalidSignatureError, match="patient signature"):
        replace(confirmed, record_ciphertext_hash=keccak(b"x")).verify(domain)


def test_confirmation_signed_by_someone_else_is_rejected(confirmed, other_patient, patient, domain):
    forged = replace(confirmed, patient_signature=other_patient.signer.sign_digest(confirmed.digest(domain)))
    with pytest.raises(InvalidSignatureError, match=f"patient signature does not verify: it recovers to "
                                                     f"{other_patient.address}, not to the patient {patient.address}"):
        forged.verify(domain)
    with pytest.raises(UnexpectedSignerError,
                       match=f"signed by patient {patient.address}, but {other_patient.address} was expected") as info:
        confirmed.verify(domain, expected_patient=other_patient.address)
    assert isinstance(info.value, SignatureError)


# --- salted H(M) (issue 13 item 10) ----------------------------------------------------------------

POOL = ("icd10|E11.9", "icd10|I10", "icd10|J45.909", "icd10|E78.5", "icd10|N18.3", "snomed|44054006",
        "snomed|38341003", "snomed|195967001", "loinc|4548-4", "loinc|2345-7", "text|metformin", "text|insulin")


def _forge(envelope, payload, patient, doctor, domain, resign_header, **changes) -> HmiEnvelope:
    """A malicious doctor's envelope: ``payload`` encrypted to the patient, the header re-signed."""
    c_m = pre_encrypt(patient.public_keys.pre_key, payload.to_bytes())
    return HmiEnvelope(resign_header(envelope.header, doctor, domain, hmi_ciphertext_hash=keccak(c_m.to_bytes()),
                                     **changes), c_m)


def test_onchain_hmi_hash_is_salted_so_a_guess_of_m_does_not_confirm(make_envelope, reviewed, fhir_condition):
    m = canonical_hmi(fhir_condition)
    a, b = make_envelope(), make_envelope()  # the same M (and keywords, doctor, time) twice
    assert a.header.hmi_hash != b.header.hmi_hash
    for env in (a, b):
        assert env.header.hmi_hash not in {keccak(m), keccak(json.dumps(fhir_condition).encode()),
                                           keccak(canonical_hmi(json.loads(m)))}
    assert len(reviewed.payload.salt) == 32
    assert reviewed.envelope.header.hmi_hash == keccak(reviewed.payload.salt + m) == reviewed.payload.hmi_hash


def test_reader_rechecks_the_salted_hash_against_the_slip(confirmed, reviewed, patient, domain, fhir_condition):
    opened = open_record(confirmed, reviewed.record_blob, patient, domain=domain)
    assert opened.salt == reviewed.payload.salt and opened.hmi_hash == confirmed.header.hmi_hash
    assert opened.hmi_json() == fhir_condition


@pytest.mark.parametrize("what", ["salt", "hmi"])
def test_tampered_salt_or_hmi_raises_hmi_hash_mismatch(envelope, reviewed, patient, doctor, domain, resign_header,
                                                       what):
    p = reviewed.payload
    changed = replace(p, salt=p.salt[:-1] + bytes([p.salt[-1] ^ 1])) if what == "salt" else \
        replace(p, hmi=p.hmi.replace(b"metformin", b"insulin  "))
    forged = _forge(envelope, changed, patient, doctor, domain, resign_header)
    with pytest.raises(HmiHashMismatchError, match="H\\(M\\) = keccak256\\(salt ‖ M\\)") as info:
        review_envelope(forged, patient, domain=domain, expected_doctor=doctor.address)
    assert isinstance(info.value, IntegrityError)


def test_payload_salt_must_be_32_bytes():
    with pytest.raises(EnvelopeError, match="salt must be 32 bytes"):
        HmiPayload(b"{}", ("icd10|I10",), b"short")


# --- keyword padding (issue 13 item 13) -------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 3, KEYWORD_SLOTS])
def test_every_record_carries_exactly_keyword_slots_ciphertexts(make_envelope, patient, doctor, domain, count):
    env = make_envelope(keywords=POOL[:count])
    assert len(env.header.keyword_ciphertexts) == KEYWORD_SLOTS
    again = RecordHeader.from_bytes(env.header.to_bytes())
    assert len(again.keyword_ciphertexts) == KEYWORD_SLOTS
    payload = review_envelope(env, patient, domain=domain, expected_doctor=doctor.address).payload
    assert sorted(payload.keywords) == sorted(normalize_keyword(k) for k in POOL[:count])
    assert len(payload.pads) == KEYWORD_SLOTS - count


def test_more_keywords_than_slots_are_refused(make_envelope):
    with pytest.raises(EnvelopeError, match=f"at most {KEYWORD_SLOTS} distinct keywords .* got {KEYWORD_SLOTS + 1}"):
        make_envelope(keywords=POOL[:KEYWORD_SLOTS + 1])


def test_keyword_slots_is_configurable_and_the_patient_checks_it(domain, patient, doctor, fhir_condition):
    slots = KEYWORD_SLOTS + 2
    env = build_envelope(fhir_condition, POOL[:2], patient.public_keys, doctor.signer, timestamp=1,
                         record_type="lab", text="", domain=domain, keyword_slots=slots)
    assert len(env.header.keyword_ciphertexts) == slots
    assert review_envelope(env, patient, domain=domain, expected_doctor=doctor.address, keyword_slots=slots)
    with pytest.raises(KeywordMismatchError,
                       match=f"carries {slots} keyword ciphertexts; every record must carry exactly {KEYWORD_SLOTS}"):
        review_envelope(env, patient, domain=domain, expected_doctor=doctor.address)
    with pytest.raises(EnvelopeError, match="keyword slots must be an integer 1..32"):
        build_envelope(fhir_condition, POOL[:2], patient.public_keys, doctor.signer, timestamp=1,
                       record_type="lab", text="", domain=domain, keyword_slots=33)


def test_search_results_are_unchanged_by_padding(make_envelope, patient):
    """Conjunctive search over padded records finds exactly the records carrying every queried keyword."""
    assert KEYWORD_SLOTS >= 4
    sets = {"a": POOL[0:1], "b": POOL[0:3], "c": POOL[2:5], "d": POOL[0:4], "e": POOL[5:6]}
    records = {name: make_envelope(keywords=kws).header.keyword_ciphertexts for name, kws in sets.items()}
    assert {len(cts) for cts in records.values()} == {KEYWORD_SLOTS}
    for query in (POOL[0:1], POOL[2:3], POOL[0:3], POOL[5:6], POOL[0:4], POOL[9:10], (POOL[0], POOL[4])):
        expected = sorted(n for n, kws in sets.items() if set(query) <= set(kws))
        got = sorted(match_all([patient.trapdoor(k) for k in query], records))
        assert got == expected, query


def test_pads_match_no_trapdoor(make_envelope, patient, doctor, domain):
    env = make_envelope(keywords=POOL[:2])
    payload = review_envelope(env, patient, domain=domain, expected_doctor=doctor.address).payload
    pads = [peks_pad(seed, _shared_a(env.header)) for seed in payload.pads]
    assert {p.to_bytes() for p in pads} <= {c.to_bytes() for c in env.header.keyword_ciphertexts}
    assert not match_all([patient.trapdoor(k) for k in POOL[:1]], {i: [p] for i, p in enumerate(pads)})
    for k in POOL:
        assert not match_all([patient.trapdoor(k)], {"pads": pads})


def test_pad_hiding_a_keyword_raises_keyword_mismatch(envelope, reviewed, patient, doctor, domain, resign_header):
    """A doctor cannot slip an unseen keyword into a pad: every pad must be the one its seed derives."""
    cws = list(envelope.header.keyword_ciphertexts)
    pad = next(i for i, c in enumerate(cws) if c.to_bytes() in _pad_bytes(reviewed))
    cws[pad] = peks_encrypt(patient.public_keys.peks_key, "icd10|C50.9")
    forged = HmiEnvelope(resign_header(envelope.header, doctor, domain, keyword_ciphertexts=tuple(cws)),
                         envelope.hmi_ciphertext)
    with pytest.raises(KeywordMismatchError, match="padding ciphertext .* not the one its seed in C_M derives"):
        review_envelope(forged, patient, domain=domain, expected_doctor=doctor.address)


# --- sharing through proxies (per-record keys) -----------------------------------------------------


@pytest.fixture(scope="module")
def second_confirmed(make_envelope, patient, doctor, domain):
    env = make_envelope(hmi=b"second record", keywords=["icd10|I10"], timestamp=1_700_000_100)
    rev = review_envelope(env, patient, domain=domain, expected_doctor=doctor.address)
    return confirm_record(rev, patient, storage_address="bafkreia-record-2"), rev.record_blob


def _proxy_round(record: ConfirmedRecord, blob: bytes, kfrags, receiver) -> list:
    """Two proxies of a 2-of-3 grant: load the kfrag, re-encrypt the stored capsule; the receiver verifies."""
    ct = record.load_ciphertext(blob)
    out = []
    for k in kfrags[:2]:
        verified = load_kfrag(bytes(k), verifying_pk=record.kfrag_verifying_key, delegating_pk=record.record_key,
                              receiving_pk=receiver.public_keys.pre_key)
        wire = bytes(reencrypt(ct.capsule, verified))
        out.append(load_cfrag(wire, capsule=ct.capsule, verifying_pk=record.kfrag_verifying_key,
                              delegating_pk=record.record_key, receiving_pk=receiver.public_keys.pre_key))
    return out


def test_shared_record_opens_for_the_delegatee(confirmed, reviewed, patient, other_doctor, domain, fhir_condition):
    kfrags = make_record_kfrags(patient, confirmed.record_id(domain), other_doctor.public_keys.pre_key, 2, 3)
    cfrags = _proxy_round(confirmed, reviewed.record_blob, kfrags, other_doctor)
    payload = open_shared_record(confirmed, reviewed.record_blob, receiving_sk=other_doctor.identity_secret_key,
                                 cfrags=cfrags)
    assert payload.hmi_json() == fhir_condition
    addr_ct = confirmed.encrypted_address
    addr_cfrags = [reencrypt(addr_ct.capsule, k) for k in kfrags[1:]]
    assert open_shared_address(confirmed, receiving_sk=other_doctor.identity_secret_key,
                               cfrags=addr_cfrags) == "bafkreia-record-1"


def test_kfrags_for_one_record_do_not_open_another(confirmed, second_confirmed, patient, other_doctor, domain):
    record_b, blob_b = second_confirmed
    kfrags_a = make_record_kfrags(patient, confirmed.record_id(domain), other_doctor.public_keys.pre_key, 2, 3)
    ct_b = record_b.load_ciphertext(blob_b)
    cfrags = [reencrypt(ct_b.capsule, k) for k in kfrags_a[:2]]  # a proxy misusing record A's grant
    with pytest.raises(DecryptionError, match="does not open"):
        open_shared_record(record_b, blob_b, receiving_sk=other_doctor.identity_secret_key, cfrags=cfrags)
    with pytest.raises(CapsuleFragVerificationError, match="cfrag does not re-encrypt this capsule"):
        load_cfrag(bytes(cfrags[0]), capsule=ct_b.capsule, verifying_pk=record_b.kfrag_verifying_key,
                   delegating_pk=record_b.record_key, receiving_pk=other_doctor.public_keys.pre_key)
    # nor does record A's grant reveal record B's storage address
    with pytest.raises(DecryptionError, match="re-encrypted ciphertext does not open"):
        open_shared_address(record_b, receiving_sk=other_doctor.identity_secret_key,
                            cfrags=[reencrypt(record_b.encrypted_address.capsule, k) for k in kfrags_a[:2]])


# --- malformed encodings ---------------------------------------------------------------------------


def test_every_truncation_of_a_confirmed_record_is_malformed(confirmed):
    raw = confirmed.to_bytes()
    for n in range(len(raw)):
        with pytest.raises(MalformedDataError, match=r"confirmed record: truncated at byte \d+: needs \d+ more bytes"):
            ConfirmedRecord.from_bytes(raw[:n])
    with pytest.raises(MalformedDataError, match="trailing"):
        ConfirmedRecord.from_bytes(raw + b"\x00")


def test_wrong_kind_of_encoding_is_malformed(envelope, confirmed):
    with pytest.raises(MalformedDataError, match="bad header"):
        ConfirmedRecord.from_bytes(envelope.to_bytes())
    with pytest.raises(MalformedDataError, match="bad header"):
        HmiEnvelope.from_bytes(confirmed.to_bytes())
    with pytest.raises(MalformedDataError, match="not an MBDS HMI envelope encoding"):
        HmiEnvelope.from_bytes(b"not an envelope")


def test_header_with_invalid_field_values_is_malformed(envelope):
    raw = bytearray(replace(envelope.header, record_type="x").to_bytes())
    type_at = 6 + 8 + 4  # header, u64 timestamp, u32 length
    assert raw[type_at] == ord("x")
    raw[type_at] = ord(" ")  # a blank record type decodes but is not a valid field value
    with pytest.raises(MalformedDataError, match="record type"):
        RecordHeader.from_bytes(bytes(raw))


@settings(derandomize=True, max_examples=250, deadline=None)
@given(data=st.data())
def test_any_flipped_bit_of_a_confirmed_record_is_rejected(confirmed, domain, data):
    """Every byte is covered by the encoding checks or by one of the two signatures."""
    raw = bytearray(confirmed.to_bytes())
    i = data.draw(st.integers(0, len(raw) - 1), label="byte")
    raw[i] ^= 1 << data.draw(st.integers(0, 7), label="bit")
    try:
        record = ConfirmedRecord.from_bytes(bytes(raw))
    except MalformedDataError:
        return
    with pytest.raises(InvalidSignatureError,
                       match=r"signature (does not verify|does not recover to any public key|v must be 27 or 28|r/s out of range)"):
        record.verify(domain)
