"""Keyword normalisation: canonical forms, aliases, code validation, idempotence."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mbds_py.crypto.errors import KeywordError
from mbds_py.crypto.keywords import (ICD10, ICD10_CM, LOINC, RXNORM, SNOMED_CT, Keyword, luhn_check_digit,
                                     normalize_keyword, to_keyword, verhoeff_valid)
from mbds_py.errors import CryptoError


@pytest.mark.parametrize("raw, canonical", [
    ("icd10|E11.9", f"{ICD10}|E11.9"),
    ("  ICD10 |  e11.9 ", f"{ICD10}|E11.9"),
    ("icd-10|E119", f"{ICD10}|E11.9"),
    (f"{ICD10}|e11.9", f"{ICD10}|E11.9"),
    (f"{ICD10.upper()}/|E11.9", f"{ICD10}|E11.9"),
    ("icd10|E11", f"{ICD10}|E11"),
    ("icd10cm|c4a.0", f"{ICD10_CM}|C4A.0"),
    ("icd10cm|E1165", f"{ICD10_CM}|E11.65"),
    ("snomed|44054006", f"{SNOMED_CT}|44054006"),
    ("SCT| 44054006", f"{SNOMED_CT}|44054006"),
    ("snomed|\uff14\uff14\uff10\uff15\uff14\uff10\uff10\uff16", f"{SNOMED_CT}|44054006"),  # full-width digits
    (f"{SNOMED_CT}|900000000000207008", f"{SNOMED_CT}|900000000000207008"),
    ("loinc|4548-4", f"{LOINC}|4548-4"),
    ("LOINC|2345-7", f"{LOINC}|2345-7"),
    ("rxnorm|860975", f"{RXNORM}|860975"),
    ("text|Type 2 Diabetes", "text|type 2 diabetes"),
    ("TEXT|  type\t2\n  DIABETES ", "text|type 2 diabetes"),
    ("text|Stra\u00dfe", "text|strasse"),  # casefold, not lower
    ("text|\uff34\uff59\uff50\uff45 2", "text|type 2"),  # NFKC
    ("text|blood | sugar", "text|blood | sugar"),  # only the first '|' separates
])
def test_normalize_keyword_gives_canonical_form(raw, canonical):
    assert normalize_keyword(raw) == canonical
    assert normalize_keyword(canonical) == canonical


def test_keyword_constructor_and_fhir_coding_normalise():
    assert Keyword("icd10", "e119") == Keyword(ICD10, "E11.9")
    assert str(Keyword("snomed", "44054006")) == f"{SNOMED_CT}|44054006"
    assert Keyword.from_coding({"system": ICD10, "code": "E11.9", "display": "x"}).canonical == f"{ICD10}|E11.9"
    assert to_keyword({"system": "loinc", "code": "4548-4"}) == Keyword(LOINC, "4548-4")


@pytest.mark.parametrize("raw, fragment", [
    ("icd9|250.00", "unknown coding system 'icd9'"),
    ("https://snomed.info/sct|44054006", "unknown coding system"),
    ("E11.9", "has no '|'"),
    ("icd10|", "empty code"),
    ("icd10|E1", "malformed ICD-10 code 'E1'"),
    ("icd10|11.9", "malformed ICD-10 code"),
    ("icd10|C4A", "malformed ICD-10 code"),  # ICD-10-CM only
    ("icd10|E11.12345", "malformed ICD-10 code"),
    ("icd10|E11 .9", "without spaces"),
    ("snomed|4405400x", "expected 6-18 digits"),
    ("snomed|044054006", "expected 6-18 digits"),
    ("snomed|12345", "expected 6-18 digits"),
    ("snomed|44054007", "Verhoeff check digit"),
    ("snomed|123456789", "partition '78'"),
    ("loinc|4548", "expected digits, '-', and a check digit"),
    ("loinc|4548-5", "check digit should be 4"),
    ("rxnorm|86a975", "malformed RxNorm code"),
    ("text|   ", "empty free-text keyword"),
    ("text|" + "a" * 300, "exceeds the limit"),
    ("text|bad\u0000char", "control or unassigned"),
])
def test_keyword_outside_coding_scheme_raises_keyword_error(raw, fragment):
    with pytest.raises(KeywordError, match=None) as info:
        normalize_keyword(raw)
    assert fragment in str(info.value)
    assert isinstance(info.value, CryptoError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize("value,expected", [
    (None, r"a keyword must be a 'system\|code' string, a Keyword or a FHIR Coding, got NoneType"),
    (42, r"a keyword must be a 'system\|code' string, a Keyword or a FHIR Coding, got int"),
    (b"icd10|E11.9", r"a keyword must be a 'system\|code' string, a Keyword or a FHIR Coding, got bytes"),
    ({"system": "icd10"}, r"a FHIR Coding needs string 'system' and 'code' fields"),
])
def test_keyword_of_wrong_type_raises_keyword_error(value, expected):
    with pytest.raises(KeywordError, match=expected):
        to_keyword(value)


def test_check_digit_algorithms_match_published_codes():
    for sctid in ("44054006", "73211009", "38341003", "195967001", "404684003", "138875005"):
        assert verhoeff_valid(sctid)
    assert not verhoeff_valid("44054016")
    assert luhn_check_digit("4548") == 4
    assert luhn_check_digit("2345") == 7
    assert luhn_check_digit("12345") == 5  # the example of the LOINC manual


_CODED = st.sampled_from([
    ("icd10", "E11.9"), ("icd-10", "e119"), (ICD10, "I10"), ("icd10cm", "E11.65"), ("snomed", "44054006"),
    ("sct", "73211009"), ("loinc", "4548-4"), ("rxnorm", "860975"),
])


@settings(derandomize=True, max_examples=150, deadline=None)
@given(_CODED, st.sampled_from([str.lower, str.upper, str]), st.text(" \t", max_size=3),
       st.text(" \t", max_size=3))
def test_spelling_variants_normalise_to_one_form(coded, case, pad_left, pad_right):
    system, code = coded
    canonical = normalize_keyword(f"{system}|{code}")
    variant = f"{pad_left}{case(system)}{pad_right}|{pad_left}{case(code)}{pad_right}"
    assert normalize_keyword(variant) == canonical


@settings(derandomize=True, max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_free_text_normalisation_is_idempotent(words):
    try:
        once = normalize_keyword("text|" + words)
    except KeywordError:
        return
    assert normalize_keyword(once) == once
    assert "  " not in once and once == once.strip()


# --- the keyed keyword-set tag (issue 13 item 9) ---------------------------------------------------


def test_patient_keyword_set_tag_is_keyed_per_key_version(keys_for):
    from mbds_py.crypto import PatientKeyring, PatientSecrets
    from mbds_py.crypto.keywords import keyword_set_tag

    v1 = keys_for("tag-patient")
    other = keys_for("tag-other")
    v2 = PatientSecrets(b"\x07" * 32, bytes(range(32)), other.peks, key_version=2)  # a rotated key set
    words = ["icd10|E11.9", "loinc|4548-4"]
    tag = v1.keyword_set_tag(words)
    assert tag == v1.keyword_set_tag(["LOINC|4548-4", "icd10|e119"]) == keys_for("tag-patient").keyword_set_tag(words)
    assert tag != other.keyword_set_tag(words) and tag != v2.keyword_set_tag(words)
    assert PatientKeyring([v1, v2]).keyword_set_tags(words) == [v2.keyword_set_tag(words), tag]
    # nothing public reproduces it: not the public keys' bytes, not the keccak of the keywords
    for guess_key in (v1.public_keys.to_bytes()[:32], v1.public_keys.peks_key.to_bytes()[:32], bytes(32)):
        assert keyword_set_tag(guess_key, words) != tag
