"""Key Management Center: one key set per participant, secrets encrypted at rest."""

from __future__ import annotations

import json

import pytest

from mbds_py.errors import IdentityError, KeystoreError
from mbds_py.identity import Role
from mbds_py.kmc import KeyManagementCenter

PASS = "correct horse battery staple"
FAST_SCRYPT = 2**10  # tests only: the default is 2**17


@pytest.fixture()
def kmc(tmp_path):
    return KeyManagementCenter(tmp_path / "kmc", PASS, scrypt_n=FAST_SCRYPT)


def test_enroll_generates_a_full_key_set(kmc):
    p = kmc.enroll("alice", Role.PATIENT, "Alice Chen, ID 1", PASS)
    keys = kmc.unlock("alice", PASS)
    assert keys.account.address == p.address
    assert keys.umbral_secret.public_key().to_compressed_bytes() == p.pre_key
    assert keys.peks_secret.public_key().to_bytes() == p.peks_key
    assert keys.secrets.public_keys.pre_key == p.pre_key  # the crypto layer derives the same keys
    assert keys.secrets.address == p.address
    assert len(p.id) == 32 and p.role is Role.PATIENT


def test_keystore_holds_no_secret_or_identity_in_clear(kmc, tmp_path):
    kmc.enroll("alice", Role.PATIENT, "Alice Chen, ID 1", PASS)
    keys = kmc.unlock("alice", PASS)
    text = (tmp_path / "kmc" / "participants" / "alice.json").read_text()
    assert keys.account.key.hex()[2:] not in text.lower() and keys.account.key.hex() not in text
    assert keys.peks_secret.to_bytes().hex() not in text
    assert "Alice Chen" not in text
    assert "peks_secret=" not in repr(keys) and "account=" not in repr(keys)
    assert keys.account.key.hex()[2:] not in repr(keys)


def test_keystore_file_is_owner_only(kmc, tmp_path):
    kmc.enroll("alice", Role.PATIENT, "Alice Chen, ID 1", PASS)
    mode = (tmp_path / "kmc" / "participants" / "alice.json").stat().st_mode & 0o777
    assert mode == 0o600


def test_same_identity_cannot_enroll_twice(kmc):
    kmc.enroll("alice", Role.PATIENT, "Alice Chen, ID 1", PASS)
    with pytest.raises(IdentityError, match="already enrolled as 'alice'"):
        kmc.enroll("alice2", Role.PATIENT, "  alice chen,   ID 1 ", PASS)


def test_same_name_cannot_enroll_twice(kmc):
    kmc.enroll("alice", Role.PATIENT, "Alice Chen, ID 1", PASS)
    with pytest.raises(IdentityError, match="already has a keystore"):
        kmc.enroll("alice", Role.PATIENT, "Someone else", PASS)


def test_wrong_passphrase_is_refused(kmc):
    kmc.enroll("alice", Role.PATIENT, "Alice Chen, ID 1", PASS)
    with pytest.raises(KeystoreError, match="wrong passphrase"):
        kmc.unlock("alice", "not it")


def test_tampered_public_section_is_detected(kmc, tmp_path):
    kmc.enroll("alice", Role.PATIENT, "Alice Chen, ID 1", PASS)
    path = tmp_path / "kmc" / "participants" / "alice.json"
    doc = json.loads(path.read_text())
    doc["public"]["role"] = "authority-national"
    path.write_text(json.dumps(doc))
    with pytest.raises(KeystoreError, match="modified"):
        kmc.unlock("alice", PASS)


def test_corrupt_keystore_is_named(kmc, tmp_path):
    kmc.enroll("alice", Role.PATIENT, "Alice Chen, ID 1", PASS)
    path = tmp_path / "kmc" / "participants" / "alice.json"
    path.write_text("{garbage")
    with pytest.raises(KeystoreError, match="alice.json"):
        kmc.unlock("alice", PASS)


def test_doctor_needs_a_hospital(kmc):
    patient = kmc.enroll("alice", Role.PATIENT, "Alice", PASS)
    with pytest.raises(IdentityError, match="must belong to a hospital"):
        kmc.enroll("dr-x", Role.DOCTOR, "Dr X", PASS, institution=patient)
    hospital = kmc.enroll("hosp", Role.HOSPITAL, "Hospital", PASS)
    doctor = kmc.enroll("dr-x", Role.DOCTOR, "Dr X", PASS, institution=hospital)
    assert doctor.institution == hospital.id


def test_rotation_keeps_the_participant_id(kmc):
    before = kmc.enroll("alice", Role.PATIENT, "Alice", PASS)
    after = kmc.rotate("alice", PASS)
    assert after.id == before.id and after.key_version == 2
    assert after.address != before.address and after.pre_key != before.pre_key
    assert kmc.unlock("alice", PASS).account.address == after.address


def test_kmc_state_reopens_with_same_ids(tmp_path):
    a = KeyManagementCenter(tmp_path / "kmc", PASS, scrypt_n=FAST_SCRYPT)
    b = KeyManagementCenter(tmp_path / "kmc", PASS, scrypt_n=FAST_SCRYPT)
    assert a.participant_id("Alice") == b.participant_id("Alice")
    assert a.account.address == b.account.address
    with pytest.raises(KeystoreError, match="kmc.json: wrong passphrase or the file was modified"):
        KeyManagementCenter(tmp_path / "kmc", "wrong")


def test_bad_participant_name_is_refused(kmc):
    with pytest.raises(IdentityError, match="bad participant name"):
        kmc.enroll("../etc", Role.PATIENT, "x", PASS)
