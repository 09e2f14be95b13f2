"""PEKS on blst (issue 15).

Bad input — a malformed or off-subgroup point, a trapdoor of the wrong length, a ciphertext of another
scheme version — is refused with a named error when parsed, before any pairing is spent; encryption
spends no pairing once E_w is cached and gives the pairing path's ciphertext."""

from __future__ import annotations

import hashlib

import pytest

from mbds_py.crypto import _bls, peks
from mbds_py.crypto.errors import MalformedDataError, PeksLengthError, PeksPointError, PeksVersionError
from mbds_py.crypto.peks import PeksCiphertext, PeksPublicKey, Trapdoor, peks_encrypt
from mbds_py.sharing.proxy import ProxyRefused, decode_trapdoor_sets, encode_trapdoor_sets, match_items

P = _bls.FIELD_MODULUS


def off_subgroup_g1() -> bytes:
    """A compressed point on E(Fp): y² = x³ + 4 outside the order-q subgroup (the cofactor is not 1)."""
    x = 1
    while pow((x ** 3 + 4) % P, (P - 1) // 2, P) != 1:
        x += 1
    raw = bytearray(x.to_bytes(48, "big"))
    raw[0] |= 0x80
    return bytes(raw)


def off_subgroup_g2() -> bytes:
    """SSWU's image of a field element, before the cofactor is cleared: on E'(Fp2), outside the subgroup."""
    from py_ecc.bls.hash_to_curve import hash_to_field_FQ2, map_to_curve_G2
    from py_ecc.bls.point_compression import compress_G2

    u = hash_to_field_FQ2(b"mbds off-subgroup", 1, peks.H1_DST, hashlib.sha256)[0]
    z1, z2 = compress_G2(map_to_curve_G2(u))
    return z1.to_bytes(48, "big") + z2.to_bytes(48, "big")


@pytest.fixture
def no_pairing(monkeypatch):
    """Any pairing from here on fails the test."""

    def boom(*_):
        raise AssertionError("a pairing was spent on bad input")

    monkeypatch.setattr(_bls, "pair", boom)
    monkeypatch.setattr(_bls, "pair_lines", boom)  # the Test's pairing (precomputed trapdoor lines)
    monkeypatch.setattr(_bls, "G2Lines", boom)


@pytest.fixture(scope="module")
def good(patient):
    pk = patient.peks.public_key()
    return peks_encrypt(pk, "icd10|E11.9").to_bytes(), patient.peks.trapdoor("icd10|E11.9").to_bytes()


def test_off_subgroup_points_are_refused_with_peks_point_error(no_pairing):
    g1, g2 = off_subgroup_g1(), off_subgroup_g2()
    with pytest.raises(PeksPointError, match="PEKS ciphertext A: not a point of the BLS12-381 G1 subgroup"):
        PeksCiphertext.from_bytes(g1 + bytes(32))
    with pytest.raises(PeksPointError, match="PEKS public key: not a point of the BLS12-381 G1 subgroup"):
        PeksPublicKey.from_bytes(g1)
    with pytest.raises(PeksPointError, match="PEKS trapdoor: not a point of the BLS12-381 G2 subgroup"):
        Trapdoor.from_bytes(g2)


def test_off_curve_and_flag_errors_are_refused_with_peks_point_error(good, no_pairing):
    ct = good[0]
    other_x = bytearray(ct)
    other_x[47] ^= 0x01  # another x: off the curve, or on it only by chance and then off the subgroup
    for data in (bytes(other_x), bytes([0xE0]) + ct[1:]):  # ...; the infinity flag with a non-zero x
        with pytest.raises(PeksPointError):
            PeksCiphertext.from_bytes(data)
    with pytest.raises(PeksPointError, match="identity"):
        PeksCiphertext.from_bytes(bytes([0xC0]) + bytes(47) + ct[48:])


@pytest.mark.parametrize("size", [0, 48, 95, 97, 192])
def test_trapdoor_of_wrong_length_is_refused_with_peks_length_error(good, size, no_pairing):
    td = (good[1] * 3)[:size]
    with pytest.raises(PeksLengthError, match=f"PEKS trapdoor: expected 96 bytes, got {size}"):
        Trapdoor.from_bytes(td)


def test_non_bytes_are_refused_with_peks_length_error(no_pairing):
    with pytest.raises(PeksLengthError, match="expected 96 bytes, got str"):
        Trapdoor.from_bytes("ab" * 96)  # type: ignore[arg-type]


@pytest.mark.parametrize("version", [1, 2, 0x7F])
def test_ciphertext_of_another_scheme_version_is_refused_with_peks_version_error(good, version, no_pairing):
    ct, td = good
    for data in (bytes([version]) + ct, bytes([version]) + ct[1:], bytes([version]) + ct[:40]):
        with pytest.raises(PeksVersionError, match=f"scheme version {version} is not supported") as info:
            PeksCiphertext.from_bytes(data)
        assert info.value.version == version
    with pytest.raises(PeksVersionError, match="PEKS trapdoor: scheme version"):
        Trapdoor.from_bytes(bytes([version]) + td)


def test_named_errors_are_malformed_data_errors():
    for cls in (PeksLengthError, PeksPointError, PeksVersionError):
        assert issubclass(cls, MalformedDataError)


def test_proxy_refuses_bad_trapdoors_and_skips_bad_items_without_pairing(good, no_pairing):
    ct, td = good
    for bad in (td[:95], off_subgroup_g2(), bytes([2]) + td):
        with pytest.raises(ProxyRefused, match="malformed trapdoors"):
            decode_trapdoor_sets(encode_trapdoor_sets([[bad]]))
    items = [{"slip_id": i, "keywords": [data.hex()]}
             for i, data in enumerate((off_subgroup_g1() + ct[48:], ct[:79], bytes([2]) + ct))]
    assert match_items(items, decode_trapdoor_sets(encode_trapdoor_sets([[td]]))[0]) == []


# --- encryption without a pairing ---------------------------------------------------------------


def test_cached_encryption_equals_the_pairing_path(patient, other_patient):
    for sk in (patient.peks, other_patient.peks):
        for i, word in enumerate(("icd10|E11.9", "loinc|4548-4", "text|metformin")):
            r = int.from_bytes(hashlib.sha256(bytes([i]) + word.encode()).digest(), "big") % peks.GROUP_ORDER
            for k in (r, 1, peks.GROUP_ORDER - 1):
                assert peks._encrypt_with(sk.public_key(), word, k) == peks._encrypt_pairing(sk.public_key(), word, k)


def test_encryption_spends_no_pairing_once_e_w_is_cached(patient, monkeypatch):
    pk = patient.peks.public_key()
    peks_encrypt(pk, "snomed|44054006")  # caches E_w
    monkeypatch.setattr(_bls, "pair", lambda *_: pytest.fail("pairing spent on a cached keyword"))
    ct = peks_encrypt(pk, "SNOMED| 44054006")
    monkeypatch.undo()
    assert peks.test(patient.peks.trapdoor("snomed|44054006"), ct)


def test_e_w_cache_is_a_bounded_lru_per_key_and_keyword(patient, other_patient, monkeypatch):
    peks.clear_caches()
    monkeypatch.setattr(peks, "EW_CACHE_SIZE", 3)
    pk1, pk2 = patient.peks.public_key(), other_patient.peks.public_key()
    peks_encrypt(pk1, "icd10|E11.9")
    peks_encrypt(pk2, "icd10|E11.9")  # another key: another entry
    peks_encrypt(pk1, "icd10|I10")
    peks_encrypt(pk1, "icd10|E11.9")  # touched: most recent
    peks_encrypt(pk1, "loinc|4548-4")  # evicts the least recent, (pk2, E11.9)
    c = peks.canonical_keyword
    assert list(peks._ew_cache) == [(pk1.to_bytes(), c("icd10|I10")), (pk1.to_bytes(), c("icd10|E11.9")),
                                    (pk1.to_bytes(), c("loinc|4548-4"))]
    peks.clear_caches()
    assert not peks._ew_cache


def test_constant_time_encryption_takes_the_pairing_path_and_matches(patient, monkeypatch):
    pk = patient.peks.public_key()
    calls = []
    real = _bls.pair
    monkeypatch.setattr(_bls, "pair", lambda *a: calls.append(1) or real(*a))
    peks_encrypt(pk, "icd10|I10")  # E_w cached
    calls.clear()
    ct = peks_encrypt(pk, "icd10|I10", constant_time=True)
    assert calls == [1]
    monkeypatch.undo()
    assert peks.test(patient.peks.trapdoor("icd10|I10"), ct)


def test_the_tests_pairing_on_precomputed_lines_is_blspys_pairing(patient, other_patient):
    """The Test pairs on the trapdoor's precomputed Miller-loop lines: the same GT bytes as _bls.pair (seeded
    points), and the known answers of test_crypto_peks_kat still hold through it."""
    import random
    rng = random.Random(15)
    assert _bls.HAVE_PRECOMPUTED_LINES
    for owner in (patient, other_patient):
        td = owner.peks.trapdoor("icd10|E11.9")
        for _ in range(4):
            a = _bls.g1_from_bytes(_bls.g1_mul_generator(rng.randrange(1, peks.GROUP_ORDER)))
            assert _bls.pair_lines(td._lines, _bls.g1_prepare(a)) == _bls.pair(a, td.point)
    g1, g2 = _bls.g1_from_bytes(_bls.G1_GENERATOR_BYTES), _bls.g2_from_bytes(_bls.G2_GENERATOR_BYTES)
    assert _bls.pair_lines(_bls.G2Lines(g2), _bls.g1_prepare(g1)) == _bls.pair(g1, g2)
