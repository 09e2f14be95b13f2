"""PEKS: round trips, keyword matching, batch and conjunctive search, encodings, known answers."""

from __future__ import annotations

import hashlib
import pickle

import pytest

from mbds_py.crypto import _bls, peks
from mbds_py.crypto.errors import KeywordError, MalformedDataError, QueryError
from mbds_py.crypto.peks import (CIPHERTEXT_SIZE, GROUP_ORDER, H1_DST, PeksCiphertext, PeksPublicKey,
                                 PeksSecretKey, Trapdoor, batch_test, match_all, peks_encrypt, trapdoor)

ICD_T2DM = "http://hl7.org/fhir/sid/icd-10|E11.9"


@pytest.fixture(scope="module")
def sk(patient) -> PeksSecretKey:
    return patient.peks


@pytest.fixture(scope="module")
def pk(sk) -> PeksPublicKey:
    return sk.public_key()


@pytest.fixture(scope="module")
def t2dm_ct(pk) -> PeksCiphertext:
    return peks_encrypt(pk, ICD_T2DM)


def test_trapdoor_matches_ciphertext_of_its_keyword(sk, pk, t2dm_ct):
    assert peks.test(trapdoor(sk, ICD_T2DM), t2dm_ct)
    assert peks.peks_test(sk.trapdoor("icd10|E11.9"), peks_encrypt(pk, "snomed|44054006")) is False


def test_encryption_is_randomised(pk):
    assert peks_encrypt(pk, ICD_T2DM) != peks_encrypt(pk, ICD_T2DM)


@pytest.mark.parametrize("variant", [
    "icd10|E11.9", "ICD10|e11.9", "  icd-10 |  E119  ", "http://hl7.org/fhir/sid/icd-10/|e11.9",
    "icd10|\uff25\uff11\uff11.\uff19",  # full-width E11.9
])
def test_trapdoor_of_normalised_variant_matches(sk, t2dm_ct, variant):
    assert peks.test(sk.trapdoor(variant), t2dm_ct)


@pytest.mark.parametrize("other", [
    "icd10|E11.8",  # sibling code
    "icd10|E11",  # parent category is another keyword
    "icd10cm|E11.9",  # same code, other coding system
    "text|E11.9",  # free text is not the coded term
    "snomed|44054006",  # same disease, other terminology
])
def test_trapdoor_of_different_keyword_does_not_match(sk, t2dm_ct, other):
    assert not peks.test(sk.trapdoor(other), t2dm_ct)


def test_free_text_matches_case_and_whitespace_variants_only(sk, pk):
    ct = peks_encrypt(pk, "text|Type 2 Diabetes")
    assert peks.test(sk.trapdoor("TEXT|  type 2\tDIABETES "), ct)
    assert not peks.test(sk.trapdoor("text|type 2 diabetes mellitus"), ct)
    assert not peks.test(sk.trapdoor("text|type2 diabetes"), ct)


def test_trapdoor_of_another_patient_does_not_match(other_patient, t2dm_ct):
    assert not peks.test(other_patient.trapdoor(ICD_T2DM), t2dm_ct)


def test_tampered_ciphertext_does_not_match(sk, t2dm_ct):
    td = sk.trapdoor(ICD_T2DM)
    flipped_b = PeksCiphertext(t2dm_ct.a, bytes([t2dm_ct.b[0] ^ 1]) + t2dm_ct.b[1:])
    other_a = PeksCiphertext(t2dm_ct.a + _bls.G1Element.generator(), t2dm_ct.b)
    assert not peks.test(td, flipped_b)
    assert not peks.test(td, other_a)


def test_keyword_outside_coding_scheme_raises_keyword_error(sk, pk):
    with pytest.raises(KeywordError, match="unknown coding system"):
        peks_encrypt(pk, "icd9|250.00")
    with pytest.raises(KeywordError, match="Verhoeff"):
        sk.trapdoor("snomed|44054007")


def test_batch_test_equals_per_item_test(sk, pk, other_patient):
    words = ["icd10|E11.9", "snomed|44054006", "loinc|4548-4", "text|metformin"]
    cts = [peks_encrypt(pk, words[i % 4]) for i in range(37)]
    cts += [peks_encrypt(other_patient.peks.public_key(), "icd10|E11.9") for _ in range(3)]
    td = sk.trapdoor("icd10|E11.9")
    expected = [peks.test(td, c) for c in cts]
    assert expected.count(True) == 10
    assert batch_test(td, cts) == expected  # parallel path (≥ PARALLEL_MIN_ITEMS)
    assert batch_test(td, cts, workers=1) == expected
    assert batch_test(td, cts, workers=3) == expected
    assert batch_test(td, cts[:3]) == expected[:3]  # serial path
    assert batch_test(td, []) == []


def test_batch_test_rejects_wrong_types(sk, t2dm_ct):
    with pytest.raises(TypeError, match="batch_test needs PeksCiphertext items, got bytes"):
        batch_test(sk.trapdoor(ICD_T2DM), [t2dm_ct, t2dm_ct.to_bytes()])
    with pytest.raises(TypeError, match="batch_test needs a Trapdoor, got PeksCiphertext"):
        batch_test(t2dm_ct, [t2dm_ct])
    with pytest.raises(ValueError, match="workers must be ≥ 1, got 0"):
        batch_test(sk.trapdoor(ICD_T2DM), [t2dm_ct], workers=0)


@pytest.fixture(scope="module")
def indexed_records(pk, other_patient):
    def enc(*words):
        return [peks_encrypt(pk, w) for w in words]

    return {
        "r-diabetes-hba1c": enc("icd10|E11.9", "loinc|4548-4", "text|metformin"),
        "r-diabetes-only": enc("icd10|E11.9", "text|diet"),
        "r-hba1c-only": enc("loinc|4548-4"),
        "r-hypertension": enc("icd10|I10", "snomed|38341003"),
        "r-both-reordered": enc("loinc|4548-4", "snomed|38341003", "icd10|E11.9"),
        "r-empty": [],
        "r-other-patient": [peks_encrypt(other_patient.peks.public_key(), w) for w in ("icd10|E11.9", "loinc|4548-4")],
    }


def test_match_all_returns_records_matching_every_keyword(sk, indexed_records):
    t2dm, hba1c = sk.trapdoor("icd10|E11.9"), sk.trapdoor("loinc|4548-4")
    assert match_all([t2dm, hba1c], indexed_records) == ["r-diabetes-hba1c", "r-both-reordered"]
    assert match_all([t2dm], indexed_records) == ["r-diabetes-hba1c", "r-diabetes-only", "r-both-reordered"]
    assert match_all([t2dm, sk.trapdoor("icd10|I10")], indexed_records) == []
    assert match_all([t2dm, hba1c, t2dm], indexed_records, workers=1) == ["r-diabetes-hba1c", "r-both-reordered"]


def test_match_all_agrees_with_per_item_tests(sk, indexed_records):
    tds = [sk.trapdoor("icd10|E11.9"), sk.trapdoor("loinc|4548-4")]
    brute = [rid for rid, cts in indexed_records.items()
             if all(any(peks.test(t, c) for c in cts) for t in tds)]
    big = {f"{rid}-{i}": cts for i in range(3) for rid, cts in indexed_records.items()}
    assert match_all(tds, indexed_records) == brute
    assert match_all(tds, big) == [f"{rid}-{i}" for i in range(3) for rid in brute]


def test_match_all_without_trapdoors_raises_query_error(indexed_records):
    with pytest.raises(QueryError, match="at least one trapdoor"):
        match_all([], indexed_records)


# --- encodings ------------------------------------------------------------------------------


def test_keys_ciphertexts_and_trapdoors_round_trip_through_bytes(sk, pk, t2dm_ct):
    assert PeksSecretKey.from_bytes(sk.to_bytes()) == sk
    assert PeksSecretKey.from_bytes(sk.to_bytes()).public_key() == pk
    assert PeksPublicKey.from_bytes(pk.to_bytes()) == pk
    assert len(t2dm_ct.to_bytes()) == CIPHERTEXT_SIZE == 80
    assert PeksCiphertext.from_bytes(t2dm_ct.to_bytes()) == t2dm_ct
    td = sk.trapdoor(ICD_T2DM)
    td2 = Trapdoor.from_bytes(td.to_bytes())
    assert td2 == td and peks.test(td2, PeksCiphertext.from_bytes(t2dm_ct.to_bytes()))


def test_generated_keys_differ_and_work():
    a, b = PeksSecretKey.generate(), PeksSecretKey.generate()
    assert a != b
    assert peks.test(a.trapdoor("icd10|I10"), peks_encrypt(a.public_key(), "icd10|I10"))


@pytest.mark.parametrize("cls, data, fragment", [
    (PeksSecretKey, b"\x01" * 31, "expected 32 bytes"),
    (PeksSecretKey, bytes(32), "must not be zero"),
    (PeksSecretKey, GROUP_ORDER.to_bytes(32, "big"), "not below the group order"),
    (PeksPublicKey, b"\x01" * 47, "expected 48 bytes"),
    (PeksPublicKey, bytes(48), "not a point"),
    (PeksPublicKey, bytes(_bls.G1Element()), "identity"),
    (PeksCiphertext, b"\x00" * 79, "expected 80 bytes"),
    (PeksCiphertext, b"\x00" * 81, "expected 80 bytes"),
    (PeksCiphertext, b"\xaa" * 80, "not a point"),
    (Trapdoor, b"\x00" * 95, "expected 96 bytes"),
    (Trapdoor, b"\xaa" * 96, "not a point"),
    (Trapdoor, bytes(_bls.G2Element()), "identity"),
])
def test_malformed_bytes_raise_malformed_data_error(cls, data, fragment):
    with pytest.raises(MalformedDataError, match=fragment):
        cls.from_bytes(data)


def test_malformed_point_with_flipped_bit_is_rejected(t2dm_ct):
    raw = bytearray(t2dm_ct.to_bytes())
    raw[20] ^= 0x01
    with pytest.raises(MalformedDataError, match="PEKS ciphertext A: not a point of the BLS12-381 G1 subgroup"):
        PeksCiphertext.from_bytes(bytes(raw))


def test_secret_key_never_shows_in_repr_or_pickle(sk):
    secret_hex = sk.to_bytes().hex()
    assert secret_hex not in repr(sk) and secret_hex[:16] not in repr(sk)
    assert sk.trapdoor(ICD_T2DM).to_bytes().hex()[:16] not in repr(sk.trapdoor(ICD_T2DM))
    with pytest.raises(TypeError, match="not picklable"):
        pickle.dumps(sk)


# --- known answers --------------------------------------------------------------------------

KAT_SK = bytes.fromhex("2a" * 31 + "01")
KAT_PK = ("899959ab289210f489c7dcdd074dcb5946ed013be1b524297ac74abf35f49c1b"
          "edbb8156b71940af8c88380a33c54235")
KAT_CT = ("8cd59ec34210a37cc6ffba98097ea185eef7a8f809689497160ddbcecd32d5e7b3d59c3cedbee350fc1220f21896b45b"
          "6d796302e73bca7ebfea5fe1a26aa23e3c7975938f1ccd8f114ecb89b2f483e9")
KAT_TD = ("827b8a4791be4c962f2534b85c2af0cc03abf165a84252444eeb6a13ee0bb8bf3dbf92bf7b1aa2a66e44670bef932032"
          "0c390f73f3a9667c18f713b707c6172fdf184305b7ee6fab5940aa91d5527085b8fc446069613d320b1fb7706b20436a")


def test_known_answer_pins_the_encoding():
    """Stored ciphertexts must stay searchable: any change of H1, H2 or the encodings fails here."""
    sk = PeksSecretKey.from_bytes(KAT_SK)
    assert sk.public_key().to_bytes().hex() == KAT_PK
    ct = peks._encrypt_with(sk.public_key(), "icd10|E11.9", 0x5EED)
    assert ct.to_bytes().hex() == KAT_CT
    assert peks._encrypt_pairing(sk.public_key(), "icd10|E11.9", 0x5EED) == ct
    assert sk.trapdoor(ICD_T2DM).to_bytes().hex() == KAT_TD
    assert peks.test(Trapdoor.from_bytes(bytes.fromhex(KAT_TD)), PeksCiphertext.from_bytes(bytes.fromhex(KAT_CT)))


def test_h1_is_rfc9380_hash_to_g2_with_the_mbds_tag():
    """Cross-check against py_ecc's independent RFC 9380 implementation."""
    from py_ecc.bls.hash_to_curve import hash_to_G2
    from py_ecc.bls.point_compression import compress_G2

    z1, z2 = compress_G2(hash_to_G2(ICD_T2DM.encode(), H1_DST, hashlib.sha256))
    assert peks.hash_keyword_bytes("icd10|E11.9") == bytes(peks.hash_keyword("icd10|E11.9")) == z1.to_bytes(48, "big") + z2.to_bytes(48, "big")
