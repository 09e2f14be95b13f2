"""Key rotation keeps every key version (issue 13 item 14), unit level: KMC keystore + crypto layer.

A patient is rotated twice; a record made under each of the three key versions is reviewed, confirmed,
opened, found by PEKS search and shared through m-of-n kfrags — all in process (the live network
version is ``tests/sharing/test_journey_e2e.py::test_rotated_patient_reads_searches_and_shares_all_versions``).
"""

from __future__ import annotations

import hashlib
import json
import os

import pytest
from Crypto.Cipher import AES

from mbds_py.crypto import (ConfirmedRecord, Eip712Domain, PatientKeyring, PatientPublicKeys, build_envelope,
                            confirm_record, decrypt_storage_address, load_cfrag, load_kfrag, make_record_kfrags,
                            match_all, open_record, open_shared_record, reencrypt, review_envelope)
from mbds_py.crypto.confirmation import record_secrets
from mbds_py.crypto.errors import KeyVersionError, MalformedDataError, WrongRecipientError
from mbds_py.errors import KeystoreError
from mbds_py.identity import Role
from mbds_py.keystore import DEFAULT_SCRYPT_N, SCRYPT_R, decrypt_bundle, read_keystore
from mbds_py.kmc import KeyManagementCenter

PASS = "correct horse battery staple"
FAST_SCRYPT = 2**10
DOMAIN = Eip712Domain(chain_id=31337, verifying_contract="0x" + "cc" * 20)
FLU = "icd10|J10.1"


@pytest.fixture()
def kmc(tmp_path):
    return KeyManagementCenter(tmp_path / "kmc", PASS, scrypt_n=FAST_SCRYPT)


@pytest.fixture()
def people(kmc):
    hospital = kmc.enroll("hosp", Role.HOSPITAL, "Hospital", PASS)
    kmc.enroll("dr-li", Role.DOCTOR, "Dr Li", PASS, institution=hospital)
    kmc.enroll("dr-wu", Role.DOCTOR, "Dr Wu", PASS, institution=hospital)
    kmc.enroll("alice", Role.PATIENT, "Alice Chen, ID 1", PASS)
    return kmc


def _write(doctor, patient_pk: PatientPublicKeys, keyring, text: str, t: int):
    """Doctor writes (to the registered keys of that time), patient reviews and confirms with her keyring."""
    env = build_envelope({"note": text}, [FLU, f"icd10|Z0{t % 10}.0"], patient_pk, doctor.signer, timestamp=t,
                         record_type="visit", text=text, domain=DOMAIN)
    reviewed = review_envelope(env, keyring, domain=DOMAIN, expected_doctor=doctor.address)
    address = f"bafy-{text}"
    confirmed = confirm_record(reviewed, keyring, storage_address=address)
    confirmed.verify(DOMAIN, expected_patient=patient_pk.address)  # signed by that version's account
    return ConfirmedRecord.from_bytes(confirmed.to_bytes()), reviewed.record_blob


# -- the keystore -----------------------------------------------------------------------------------


def test_rotation_keeps_every_earlier_key_version(people):
    v1 = people.load("alice")
    v2 = people.rotate("alice", PASS)
    v3 = people.rotate("alice", PASS)
    assert [v.key_version for v in (v1, v2, v3)] == [1, 2, 3]
    assert len({v.id for v in (v1, v2, v3)}) == 1 and len({v.address for v in (v1, v2, v3)}) == 3
    ring = people.unlock("alice", PASS).keyring
    assert ring.versions == (1, 2, 3) and ring.current.address == v3.address
    for p in (v1, v2, v3):
        assert ring.version(p.key_version).public_keys == PatientPublicKeys.from_participant(p)
    doc = read_keystore(people.directory / "participants" / "alice.json")
    assert doc["version"] == 3  # the companion of the V3 account keystore (earlier versions inside)
    assert [k["address"] for k in doc["public"]["earlier_keys"]] == [v1.address, v2.address]


def test_rotated_keystore_holds_no_secret_in_clear(people, tmp_path):
    people.rotate("alice", PASS)
    ring = people.unlock("alice", PASS).keyring
    text = (tmp_path / "kmc" / "participants" / "alice.json").read_text().lower()
    for s in ring:
        assert s.to_bytes()[6:38].hex() not in text and s.peks.to_bytes().hex() not in text
    assert "alice chen" not in text


def test_rotated_keystore_refuses_a_wrong_passphrase(people):
    people.rotate("alice", PASS)
    with pytest.raises(KeystoreError, match="wrong passphrase or the file was modified"):
        people.unlock("alice", "not it")
    with pytest.raises(KeystoreError, match="wrong passphrase"):
        people.rotate("alice", "not it")
    assert people.load("alice").key_version == 2  # a refused rotation changed nothing


def test_tampered_list_of_earlier_versions_is_detected(people, tmp_path):
    people.rotate("alice", PASS)
    path = tmp_path / "kmc" / "participants" / "alice.json"
    doc = json.loads(path.read_text())
    doc["public"]["earlier_keys"][0]["address"] = doc["public"]["address"]
    path.write_text(json.dumps(doc))
    with pytest.raises(KeystoreError, match="alice.json: wrong passphrase or the file was modified"):
        people.unlock("alice", PASS)


def test_unknown_keystore_format_is_named(people, tmp_path):
    path = tmp_path / "kmc" / "participants" / "alice.json"
    doc = json.loads(path.read_text())
    doc["version"] = 9
    path.write_text(json.dumps(doc))
    with pytest.raises(KeystoreError, match="alice.json: keystore format version 9 is not supported"):
        people.unlock("alice", PASS)


def _format_1_keystore(path, public: dict, secrets: dict, passphrase: str, n: int) -> None:
    """A keystore exactly as MBDS wrote it before key versions (format 1: one key set, no history)."""
    salt, nonce = os.urandom(16), os.urandom(12)
    key = hashlib.scrypt(passphrase.encode(), salt=salt, n=n, r=SCRYPT_R, p=1, dklen=32, maxmem=2**28)
    cipher = AES.new(key, AES.MODE_GCM, nonce=nonce)
    cipher.update(json.dumps(public, sort_keys=True).encode())
    ct, tag = cipher.encrypt_and_digest(json.dumps(secrets, sort_keys=True).encode())
    path.write_text(json.dumps({"version": 1, "public": public, "crypto": {
        "kdf": "scrypt", "kdfparams": {"n": n, "r": SCRYPT_R, "p": 1, "salt": salt.hex(), "dklen": 32},
        "cipher": "aes-256-gcm", "nonce": nonce.hex(), "tag": tag.hex(), "ciphertext": ct.hex()}}))


def test_format_1_keystore_opens_as_key_version_1_and_rotates(people, tmp_path):
    path = tmp_path / "kmc" / "participants" / "alice.json"
    before = people.unlock("alice", PASS)
    s = before.secrets
    doc = read_keystore(path)
    public = {k: v for k, v in doc["public"].items() if k != "earlier_keys"}
    _format_1_keystore(path, public, {"account_key": s.to_bytes()[6:38].hex(), "umbral_seed": s.to_bytes()[38:70].hex(),
                                      "peks_key": s.peks.to_bytes().hex(), "real_identity": "Alice Chen, ID 1"},
                       PASS, FAST_SCRYPT)
    old = people.unlock("alice", PASS)
    assert old.keyring.versions == (1,) and old.secrets == s and old.participant == before.participant
    rotated = people.rotate("alice", PASS)
    assert rotated.key_version == 2 and read_keystore(path)["version"] == 3  # migrated when first unlocked
    ring = people.unlock("alice", PASS).keyring
    assert ring.versions == (1, 2) and ring.version(1) == s


def test_format_1_keystore_of_an_earlier_rotation_opens_as_its_one_version(people, tmp_path):
    """A file rotated by the KMC before key history existed: format 1, public key_version 2, one key set."""
    path = tmp_path / "kmc" / "participants" / "alice.json"
    s = people.unlock("alice", PASS).secrets
    public = {**read_keystore(path)["public"], "key_version": 2}
    _format_1_keystore(path, public, {"account_key": s.to_bytes()[6:38].hex(), "umbral_seed": s.to_bytes()[38:70].hex(),
                                      "peks_key": s.peks.to_bytes().hex(), "real_identity": "Alice Chen, ID 1"},
                       PASS, FAST_SCRYPT)
    keys = people.unlock("alice", PASS)
    assert keys.key_version == 2 and keys.keyring.versions == (2,)
    assert keys.secrets.public_keys.key_version == 2 and keys.account.address == s.address
    assert people.rotate("alice", PASS).key_version == 3
    assert people.unlock("alice", PASS).keyring.versions == (2, 3)


def test_default_scrypt_cost_is_at_least_2_to_the_17(tmp_path):
    assert DEFAULT_SCRYPT_N >= 2**17
    kmc = KeyManagementCenter(tmp_path / "kmc", PASS)  # the default, as a real KMC runs
    assert kmc.scrypt_n >= 2**17
    assert read_keystore(tmp_path / "kmc" / "kmc.json")["crypto"]["kdfparams"]["n"] >= 2**17
    decrypt_bundle(read_keystore(tmp_path / "kmc" / "kmc.json"), PASS)  # and it opens (within maxmem)


# -- records of three key versions ------------------------------------------------------------------


def test_records_of_all_three_key_versions_are_read_searched_and_shared(people):
    li, wu = people.unlock("dr-li", PASS).secrets, people.unlock("dr-wu", PASS).secrets
    made = []
    for round_ in range(3):
        if round_:
            people.rotate("alice", PASS)
        registered = PatientPublicKeys.from_participant(people.load("alice"))  # what a doctor reads on chain
        assert registered.key_version == round_ + 1
        ring = people.unlock("alice", PASS).keyring
        made.append(_write(li, registered, ring, f"visit-{round_ + 1}", 1_700_000_000 + round_))

    ring = people.unlock("alice", PASS).keyring
    for version, (record, blob) in enumerate(made, start=1):
        assert record.header.patient.key_version == version  # the record says which version made it
        assert record_secrets(record, ring).key_version == version
        assert open_record(record, blob, ring, domain=DOMAIN).hmi_json() == {"note": f"visit-{version}"}
        assert decrypt_storage_address(record, ring, domain=DOMAIN) == f"bafy-visit-{version}"

    # search: every version's trapdoor finds exactly its own version's records
    by_id = {record.record_id(DOMAIN): list(record.header.keyword_ciphertexts) for record, _ in made}
    found = set()
    for td in ring.trapdoors(FLU):
        found.update(match_all([td], by_id))
    assert found == set(by_id)
    assert match_all([ring.current.trapdoor(FLU)], by_id) == [made[2][0].record_id(DOMAIN)]

    # share: kfrags from the record's own version, to the doctor's current key, 2-of-3 proxies
    for version, (record, blob) in enumerate(made, start=1):
        rid = record.record_id(DOMAIN)
        owner = record_secrets(record, ring)
        kfrags = make_record_kfrags(owner, rid, wu.public_keys.pre_key, 2, 3)
        ciphertext = record.load_ciphertext(blob)
        cfrags = []
        for kf in kfrags[:2]:  # what two proxies do: verify against the slip's keys, re-encrypt
            verified = load_kfrag(bytes(kf), verifying_pk=record.kfrag_verifying_key,
                                  delegating_pk=record.record_key, receiving_pk=wu.public_keys.pre_key)
            cfrags.append(load_cfrag(bytes(reencrypt(ciphertext.capsule, verified)), capsule=ciphertext.capsule,
                                     verifying_pk=record.kfrag_verifying_key, delegating_pk=record.record_key,
                                     receiving_pk=wu.public_keys.pre_key))
        payload = open_shared_record(record, blob, receiving_sk=wu.identity_secret_key, cfrags=cfrags)
        assert payload.hmi_json() == {"note": f"visit-{version}"}


def test_new_records_use_the_new_keys_and_a_retired_version_alone_opens_none_of_them(people):
    li = people.unlock("dr-li", PASS).secrets
    v1_ring = people.unlock("alice", PASS).keyring  # e.g. a stolen copy of version 1
    people.rotate("alice", PASS)
    ring = people.unlock("alice", PASS).keyring
    record, blob = _write(li, ring.current.public_keys, ring, "after", 1_700_000_100)
    assert record.header.patient.key_version == 2
    with pytest.raises(WrongRecipientError, match="not to any key version"):
        open_record(record, blob, v1_ring, domain=DOMAIN)
    with pytest.raises(WrongRecipientError):
        open_record(record, blob, v1_ring.current, domain=DOMAIN)


def test_a_record_naming_the_wrong_key_version_is_refused(people):
    li = people.unlock("dr-li", PASS).secrets
    people.rotate("alice", PASS)
    ring = people.unlock("alice", PASS).keyring
    v2 = ring.current.public_keys
    forged = PatientPublicKeys(v2.address, v2.pre_key, v2.peks_key, 1)  # v2's keys labelled version 1
    env = build_envelope({"note": "x"}, [FLU], forged, li.signer, timestamp=1, record_type="visit", text="",
                         domain=DOMAIN)
    with pytest.raises(KeyVersionError, match="names key version 1"):
        review_envelope(env, ring, domain=DOMAIN, expected_doctor=li.address)


def test_patient_keys_encoding_keeps_version_1_bytes_and_round_trips_later_versions(people):
    people.rotate("alice", PASS)
    ring: PatientKeyring = people.unlock("alice", PASS).keyring
    v1, v2 = ring.version(1).public_keys, ring.version(2).public_keys
    assert v1.to_bytes()[4:6] == bytes((0x02, 1)) and len(v1.to_bytes()) == 6 + 20 + 33 + 48  # unchanged
    assert v2.to_bytes()[4:6] == bytes((0x02, 2)) and len(v2.to_bytes()) == 6 + 20 + 33 + 48 + 4
    for pk in (v1, v2):
        assert PatientPublicKeys.from_bytes(pk.to_bytes()) == pk
    bad = bytearray(v2.to_bytes())
    bad[-4:] = (1).to_bytes(4, "big")
    with pytest.raises(MalformedDataError, match="must use encoding format 1"):
        PatientPublicKeys.from_bytes(bytes(bad))
