"""Umbral PRE helpers: ciphertexts, per-record kfrags, threshold re-encryption, verified types only."""

from __future__ import annotations

import pickle

import pytest
import umbral_pre

from mbds_py.crypto import PatientSecrets
from mbds_py.crypto.errors import (CapsuleFragVerificationError, DecryptionError, KeyFragVerificationError,
                                   MalformedDataError, UnverifiedFragError)
from mbds_py.crypto.keys import PatientPublicKeys
from mbds_py.crypto.pre import (UmbralCiphertext, decrypt_reencrypted, load_cfrag, load_kfrag, make_record_kfrags,
                                pre_decrypt, pre_encrypt, reencrypt)

RECORD_A = bytes.fromhex("aa" * 32)
RECORD_B = bytes.fromhex("bb" * 32)


@pytest.fixture(scope="module")
def delegatee(doctor) -> PatientSecrets:
    return doctor


@pytest.fixture(scope="module")
def records(patient):
    """Two records of one patient, each under its own per-record key."""
    return {label: pre_encrypt(patient.record_public_key(label), b"record " + label[:1])
            for label in (RECORD_A, RECORD_B)}


@pytest.fixture(scope="module")
def kfrags_a(patient, delegatee):
    return make_record_kfrags(patient, RECORD_A, delegatee.public_keys.pre_key, threshold=2, shares=3)


def _cfrags(kfrags, ct, n=2):
    return [reencrypt(ct.capsule, k) for k in kfrags[:n]]


def test_encrypt_decrypt_round_trip(patient):
    ct = pre_encrypt(patient.public_keys.pre_key, b"HMI")
    assert pre_decrypt(patient.identity_secret_key, ct) == b"HMI"
    assert UmbralCiphertext.from_bytes(ct.to_bytes()) == ct
    assert pre_decrypt(patient.identity_secret_key, UmbralCiphertext.from_bytes(ct.to_bytes())) == b"HMI"


def test_decrypt_with_wrong_key_raises_decryption_error(patient, other_patient):
    ct = pre_encrypt(patient.public_keys.pre_key, b"HMI")
    with pytest.raises(DecryptionError, match="wrong key"):
        pre_decrypt(other_patient.identity_secret_key, ct)


def test_tampered_ciphertext_raises_decryption_error(patient):
    ct = pre_encrypt(patient.public_keys.pre_key, b"HMI")
    tampered = UmbralCiphertext(ct.capsule, bytes([ct.ciphertext[0] ^ 1]) + ct.ciphertext[1:])
    with pytest.raises(DecryptionError, match="tampered"):
        pre_decrypt(patient.identity_secret_key, tampered)


def test_per_record_keys_are_deterministic_and_distinct(patient):
    again = PatientSecrets.from_bytes(patient.to_bytes())
    a = patient.record_public_key(RECORD_A).to_compressed_bytes()
    assert again.record_public_key(RECORD_A).to_compressed_bytes() == a
    assert patient.record_public_key(RECORD_B).to_compressed_bytes() != a
    assert a != patient.public_keys.pre_key


def test_threshold_reencryption_round_trip_through_bytes(patient, delegatee, records, kfrags_a):
    record_pk = patient.record_public_key(RECORD_A)
    receiving = delegatee.public_keys.pre_key
    ct = UmbralCiphertext.from_bytes(records[RECORD_A].to_bytes())
    proxies = [load_kfrag(bytes(k), verifying_pk=patient.kfrag_verifying_key, delegating_pk=record_pk,
                          receiving_pk=receiving) for k in kfrags_a]
    wire = [bytes(reencrypt(ct.capsule, k)) for k in (proxies[2], proxies[0])]  # any 2 of 3
    cfrags = [load_cfrag(c, capsule=ct.capsule, verifying_pk=patient.kfrag_verifying_key, delegating_pk=record_pk,
                         receiving_pk=receiving) for c in wire]
    assert decrypt_reencrypted(delegatee.identity_secret_key, record_pk, ct, cfrags) == b"record \xaa"


def test_kfrags_for_record_a_do_not_decrypt_record_b(patient, delegatee, records, kfrags_a):
    ct_b = records[RECORD_B]
    pk_b = patient.record_public_key(RECORD_B)
    cfrags = _cfrags(kfrags_a, ct_b)
    with pytest.raises(DecryptionError, match="does not open"):
        decrypt_reencrypted(delegatee.identity_secret_key, pk_b, ct_b, cfrags)
    # nor when the delegatee claims record A's key
    with pytest.raises(DecryptionError, match="re-encrypted ciphertext does not open"):
        decrypt_reencrypted(delegatee.identity_secret_key, patient.record_public_key(RECORD_A), ct_b, cfrags)


def test_cfrag_of_record_a_kfrag_fails_verification_for_record_b(patient, delegatee, records, kfrags_a):
    ct_b = records[RECORD_B]
    wire = bytes(reencrypt(ct_b.capsule, kfrags_a[0]))
    with pytest.raises(CapsuleFragVerificationError, match="cfrag does not re-encrypt this capsule"):
        load_cfrag(wire, capsule=ct_b.capsule, verifying_pk=patient.kfrag_verifying_key,
                   delegating_pk=patient.record_public_key(RECORD_B), receiving_pk=delegatee.public_keys.pre_key)


def test_kfrag_for_record_a_fails_verification_as_record_b(patient, delegatee, kfrags_a):
    with pytest.raises(KeyFragVerificationError, match="kfrag was not made by this signer"):
        load_kfrag(bytes(kfrags_a[0]), verifying_pk=patient.kfrag_verifying_key,
                   delegating_pk=patient.record_public_key(RECORD_B), receiving_pk=delegatee.public_keys.pre_key)


def test_kfrag_signed_by_someone_else_fails_verification(patient, other_patient, delegatee, kfrags_a):
    with pytest.raises(KeyFragVerificationError, match="kfrag was not made by this signer"):
        load_kfrag(bytes(kfrags_a[0]), verifying_pk=other_patient.kfrag_verifying_key,
                   delegating_pk=patient.record_public_key(RECORD_A), receiving_pk=delegatee.public_keys.pre_key)


def test_kfrag_for_another_receiver_fails_verification(patient, other_patient, kfrags_a):
    with pytest.raises(KeyFragVerificationError, match="kfrag was not made by this signer"):
        load_kfrag(bytes(kfrags_a[0]), verifying_pk=patient.kfrag_verifying_key,
                   delegating_pk=patient.record_public_key(RECORD_A), receiving_pk=other_patient.public_keys.pre_key)


def test_below_threshold_or_repeated_cfrags_raise_decryption_error(patient, delegatee, records, kfrags_a):
    ct = records[RECORD_A]
    pk_a = patient.record_public_key(RECORD_A)
    one = _cfrags(kfrags_a, ct, n=1)
    with pytest.raises(DecryptionError, match="does not open"):
        decrypt_reencrypted(delegatee.identity_secret_key, pk_a, ct, one)
    with pytest.raises(DecryptionError, match="given twice"):
        decrypt_reencrypted(delegatee.identity_secret_key, pk_a, ct, one + one)
    with pytest.raises(DecryptionError, match="no capsule frags"):
        decrypt_reencrypted(delegatee.identity_secret_key, pk_a, ct, [])


def test_unverified_frags_are_refused(patient, delegatee, records, kfrags_a):
    ct = records[RECORD_A]
    with pytest.raises(UnverifiedFragError, match="reencrypt needs a VerifiedKeyFrag"):
        reencrypt(ct.capsule, kfrags_a[0].unverify())
    cfrag = reencrypt(ct.capsule, kfrags_a[0])
    with pytest.raises(UnverifiedFragError, match="decrypt_reencrypted needs VerifiedCapsuleFrag items"):
        decrypt_reencrypted(delegatee.identity_secret_key, patient.record_public_key(RECORD_A), ct,
                            [cfrag.unverify(), cfrag])
    assert isinstance(UnverifiedFragError("x"), TypeError)


def test_threshold_arguments_are_checked(patient, delegatee):
    for threshold, shares in ((0, 1), (3, 2), (1, 256)):
        with pytest.raises(ValueError, match="threshold"):
            make_record_kfrags(patient, RECORD_A, delegatee.public_keys.pre_key, threshold, shares)


@pytest.mark.parametrize("data, fragment", [
    (b"", "truncated"),
    (b"XXXX\x01\x01" + bytes(8), "bad header"),
    (b"MBDS\x01\x02" + bytes(8), "unsupported encoding version"),
    (b"MBDS\x01\x01" + (5).to_bytes(4, "big") + b"\x00" * 5 + bytes(4), "invalid capsule"),
])
def test_malformed_ciphertext_bytes_raise_malformed_data_error(data, fragment):
    with pytest.raises(MalformedDataError, match=fragment):
        UmbralCiphertext.from_bytes(data)


def test_ciphertext_with_trailing_bytes_is_rejected(patient):
    raw = pre_encrypt(patient.public_keys.pre_key, b"x").to_bytes()
    with pytest.raises(MalformedDataError, match="trailing"):
        UmbralCiphertext.from_bytes(raw + b"\x00")


def test_malformed_frag_bytes_raise_malformed_data_error(patient, delegatee, records, kfrags_a):
    keys = dict(verifying_pk=patient.kfrag_verifying_key, delegating_pk=patient.record_public_key(RECORD_A),
                receiving_pk=delegatee.public_keys.pre_key)
    with pytest.raises(MalformedDataError, match="kfrag"):
        load_kfrag(b"\x00" * 10, **keys)
    with pytest.raises(MalformedDataError, match="cfrag"):
        load_cfrag(b"\x00" * 10, capsule=records[RECORD_A].capsule, **keys)
    with pytest.raises(MalformedDataError, match="not a secp256k1 point"):
        load_kfrag(bytes(kfrags_a[0]), **{**keys, "verifying_pk": b"\x02" + b"\xff" * 32})


def test_patient_secrets_round_trip_and_hide_secrets(patient):
    raw = patient.to_bytes()
    again = PatientSecrets.from_bytes(raw)
    assert again == patient and again.public_keys == patient.public_keys
    assert PatientPublicKeys.from_bytes(patient.public_keys.to_bytes()) == patient.public_keys
    for secret in (raw[6:38], raw[38:70], raw[70:102]):
        assert secret.hex()[:12] not in repr(patient)
    assert repr(patient) == f"PatientSecrets({patient.address})"
    with pytest.raises(TypeError, match="not picklable"):
        pickle.dumps(patient)
    with pytest.raises(MalformedDataError, match="trailing"):
        PatientSecrets.from_bytes(raw + b"\x00")
    with pytest.raises(MalformedDataError, match="truncated"):
        PatientSecrets.from_bytes(raw[:-1])


def test_patient_public_keys_from_registry_participant(patient):
    class Participant:  # the shape of mbds_py.identity.Participant
        address = patient.address.lower()
        pre_key = patient.public_keys.pre_key
        peks_key = patient.peks.public_key().to_bytes()

    assert PatientPublicKeys.from_participant(Participant) == patient.public_keys


def test_generated_secrets_are_independent():
    a, b = PatientSecrets.generate(), PatientSecrets.generate()
    assert a.address != b.address and a.public_keys.pre_key != b.public_keys.pre_key
    assert isinstance(a.identity_secret_key, umbral_pre.SecretKey)
