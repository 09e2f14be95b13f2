"""Keys other tools read (issue 17 item 4): a participant's account key in an Ethereum V3 keystore
(eth-account, Ape, cast), the Umbral and PEKS secrets in an encrypted companion, the one-time migration
of formats 1/2 — and the attacker's tests: wrong passphrase, tampered ciphertext, swapped or truncated
files each raise a named error and change nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from mbds_py import keystore as keystore_module
from mbds_py import kmc as kmc_module
from mbds_py.errors import (KeystoreError, KeystoreFormatError, KeystorePassphraseError, KeystoreTamperedError,
                            MBDSError)
from mbds_py.identity import Role
from mbds_py.keystore import COMPANION_VERSION, decrypt_account_v3, encrypt_bundle, read_keystore, write_keystore
from mbds_py.kmc import KeyManagementCenter, account_keystore

PASS = "correct horse battery staple"
FAST_SCRYPT = 2**10  # tests only: the default is 2**17


@pytest.fixture()
def kmc(tmp_path):
    center = KeyManagementCenter(tmp_path / "kmc", PASS, scrypt_n=FAST_SCRYPT)
    center.enroll("alice", Role.PATIENT, "Alice Chen, ID 1", PASS)
    center.enroll("bob", Role.PATIENT, "Bob Li, ID 2", PASS)
    return center


def _files(kmc, name="alice"):
    companion = kmc.directory / "participants" / f"{name}.json"
    return companion, account_keystore(companion)


def _ring(keys) -> list:
    return [keys.keyring.version(v) for v in keys.keyring.versions]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- the formats --------------------------------------------------------------------------------------


def test_account_key_is_a_standard_v3_keystore_that_eth_account_opens(kmc):
    companion, account = _files(kmc)
    assert account == kmc.directory / "accounts" / "alice.json"
    v3 = json.loads(account.read_text())
    assert v3["version"] == 3 and v3["crypto"]["kdf"] == "scrypt" and v3["crypto"]["cipher"] == "aes-128-ctr"
    assert v3["crypto"]["kdfparams"]["n"] == FAST_SCRYPT and set(v3) == {"address", "crypto", "id", "version"}
    key = Account.decrypt(v3, PASS)  # what eth-account (and Ape, which calls it) does
    keys = kmc.unlock("alice", PASS)
    assert Account.from_key(key).address == keys.account.address == kmc.load("alice").address
    assert (account.stat().st_mode & 0o777) == (companion.stat().st_mode & 0o777) == 0o600


def test_companion_holds_the_other_secrets_encrypted_and_not_the_account_key(kmc):
    companion, account = _files(kmc)
    doc = read_keystore(companion)
    keys = kmc.unlock("alice", PASS)
    assert doc["version"] == COMPANION_VERSION and doc["account_keystore"] == "../accounts/alice.json"
    assert doc["crypto"]["kdf"] == "scrypt" and doc["crypto"]["cipher"] == "aes-256-gcm"
    v3 = json.loads(account.read_text())
    # the same scrypt (same strength, one derivation opens both); each file its own sub-key of it
    assert doc["crypto"]["kdfparams"] == v3["crypto"]["kdfparams"]
    assert doc["crypto"]["cipherkey"] == "hkdf-sha256:mbds/keystore/companion/v3"
    text = companion.read_text().lower() + account.read_text().lower()
    for secret in (keys.account.key.hex()[2:], keys.peks_secret.to_bytes().hex(), keys.secrets.to_bytes()[38:70].hex()):
        assert secret not in text
    assert "alice chen" not in text


def test_one_scrypt_unlocks_a_participant(kmc, monkeypatch):
    calls = []
    real = keystore_module._scrypt
    monkeypatch.setattr(keystore_module, "_scrypt", lambda *a: calls.append(a[2]) or real(*a))
    kmc.unlock("alice", PASS)
    assert calls == [FAST_SCRYPT]


@pytest.mark.parametrize("kdf", ["scrypt", "pbkdf2"])
def test_v3_files_other_tools_write_open_too(kdf):
    key = os.urandom(32)
    doc = Account.encrypt(key, PASS, kdf=kdf, iterations=FAST_SCRYPT if kdf == "scrypt" else 1000)
    opened, derived = decrypt_account_v3(doc, PASS)
    assert opened == key and (derived is None) == (kdf == "pbkdf2")
    with pytest.raises(KeystorePassphraseError, match="MAC mismatch"):
        decrypt_account_v3(doc, "not it")


def test_companion_still_opens_after_the_v3_file_is_re_encrypted_elsewhere(kmc):
    """E.g. `cast wallet change-password` with the same passphrase: new salt in the V3 file only."""
    _, account = _files(kmc)
    key, _ = decrypt_account_v3(json.loads(account.read_text()), PASS)
    account.write_text(json.dumps(Account.encrypt(key, PASS, kdf="scrypt", iterations=FAST_SCRYPT)))
    assert kmc.unlock("alice", PASS).account.key == key


def test_ape_reads_the_account_keystore(kmc, tmp_path):
    """`ape accounts` keeps V3 keystores in its data folder: the participant's file works there as is."""
    _, account = _files(kmc)
    ape_home = tmp_path / "ape"
    (ape_home / "accounts").mkdir(parents=True)
    shutil.copy(account, ape_home / "accounts" / "alice.json")
    code = ("import sys\nfrom eth_account.messages import encode_defunct\nfrom ape import accounts\n"
            "a = accounts.load('alice')\na.set_autosign(True, passphrase=sys.stdin.readline().rstrip('\\n'))\n"
            "sig = a.sign_message(encode_defunct(text='mbds'))\n"
            "print(a.address, sig.encode_rsv().hex())")
    out = subprocess.run([sys.executable, "-c", code], input=PASS + "\n", capture_output=True, text=True,
                         timeout=300, env={**os.environ, "APE_DATA_FOLDER": str(ape_home)})
    assert out.returncode == 0, out.stderr[-2000:]
    address, signature = out.stdout.split()[-2:]
    assert address == kmc.load("alice").address
    assert Account.recover_message(encode_defunct(text="mbds"), signature=bytes.fromhex(signature)) == address


def _cast() -> str | None:
    """Foundry's cast: CAST_BINARY, the npm package @foundry-rs/cast beside Anvil's, or PATH."""
    root = Path(__file__).resolve().parents[2]
    for candidate in (os.environ.get("CAST_BINARY"),
                      str(root / "node_modules" / "@foundry-rs" / "cast-linux-amd64" / "bin" / "cast"),
                      shutil.which("cast")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def test_cast_wallet_reads_the_account_keystore(kmc):
    cast = _cast()
    assert cast, "Foundry's cast is missing: `make setup` installs it (npm @foundry-rs/cast), or set CAST_BINARY"
    _, account = _files(kmc)
    fd, password_file = tempfile.mkstemp(prefix="mbds-test-pass-")  # 0600, removed below
    try:
        with os.fdopen(fd, "w") as f:
            f.write(PASS)
        out = subprocess.run([cast, "wallet", "address", "--keystore", str(account), "--password-file",
                              password_file], capture_output=True, text=True, timeout=120)
    finally:
        os.unlink(password_file)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == kmc.load("alice").address


def test_rotation_puts_the_new_key_in_the_v3_file_and_keeps_the_old_in_the_companion(kmc):
    _, account = _files(kmc)
    v1 = kmc.unlock("alice", PASS)
    v2 = kmc.rotate("alice", PASS)
    assert Account.from_key(Account.decrypt(json.loads(account.read_text()), PASS)).address == v2.address
    ring = kmc.unlock("alice", PASS).keyring
    assert ring.versions == (1, 2) and ring.version(1) == v1.secrets
    assert not account.with_name("alice.json.pending").exists()


def test_a_rotation_interrupted_between_its_two_files_is_finished_on_unlock(kmc):
    _, account = _files(kmc)
    old_v3 = account.read_bytes()
    v2 = kmc.rotate("alice", PASS)
    # as if the process died after writing the companion, before moving the new account keystore in place
    os.replace(account, account.with_name("alice.json.pending"))
    account.write_bytes(old_v3)
    assert kmc.unlock("alice", PASS).account.address == v2.address
    assert not account.with_name("alice.json.pending").exists()
    assert Account.from_key(Account.decrypt(json.loads(account.read_text()), PASS)).address == v2.address


# -- the attacker ---------------------------------------------------------------------------------------


def test_wrong_passphrase_is_named_and_changes_nothing(kmc):
    before = _snapshot(kmc.directory)
    with pytest.raises(KeystorePassphraseError, match=r"accounts/alice.json: wrong passphrase or the file was "
                                                      r"modified \(MAC mismatch\); nothing was changed"):
        kmc.unlock("alice", "not it")
    with pytest.raises(KeystorePassphraseError, match="wrong passphrase"):
        kmc.rotate("alice", "not it")
    assert _snapshot(kmc.directory) == before


def test_tampered_account_ciphertext_is_refused(kmc):
    _, account = _files(kmc)
    v3 = json.loads(account.read_text())
    ct = bytearray.fromhex(v3["crypto"]["ciphertext"])
    ct[0] ^= 1
    v3["crypto"]["ciphertext"] = ct.hex()
    account.write_text(json.dumps(v3))
    with pytest.raises(KeystorePassphraseError, match="accounts/alice.json: wrong passphrase or the file was modified"):
        kmc.unlock("alice", PASS)


def test_tampered_address_field_of_the_account_keystore_is_refused(kmc):
    _, account = _files(kmc)
    v3 = json.loads(account.read_text())
    v3["address"] = kmc.load("bob").address[2:].lower()
    account.write_text(json.dumps(v3))
    with pytest.raises(KeystoreTamperedError, match="accounts/alice.json: the address field .* is not that of the key"):
        kmc.unlock("alice", PASS)


def test_tampered_companion_ciphertext_is_refused_as_tampering(kmc):
    companion, _ = _files(kmc)
    doc = json.loads(companion.read_text())
    ct = bytearray.fromhex(doc["crypto"]["ciphertext"])
    ct[-1] ^= 0x80
    doc["crypto"]["ciphertext"] = ct.hex()
    companion.write_text(json.dumps(doc))
    with pytest.raises(KeystoreTamperedError, match="participants/alice.json: .*the passphrase opens the account "
                                                    "keystore but not this companion"):
        kmc.unlock("alice", PASS)


def test_tampered_companion_public_section_is_refused(kmc):
    companion, _ = _files(kmc)
    doc = json.loads(companion.read_text())
    doc["public"]["role"] = "authority-national"
    companion.write_text(json.dumps(doc))
    with pytest.raises(KeystoreTamperedError, match="modified"):
        kmc.unlock("alice", PASS)


def test_an_account_keystore_swapped_for_another_participants_is_refused(kmc):
    _, alice = _files(kmc)
    _, bob = _files(kmc, "bob")
    shutil.copy(bob, alice)  # same passphrase, valid MAC: only the companion's binding catches it
    with pytest.raises(KeystoreTamperedError, match="one of them was replaced"):
        kmc.unlock("alice", PASS)


@pytest.mark.parametrize("which", ["companion", "account"])
def test_truncated_files_are_named(kmc, which):
    companion, account = _files(kmc)
    path = companion if which == "companion" else account
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(KeystoreFormatError, match=rf"{path.parent.name}/alice.json: not a keystore \(invalid JSON"):
        kmc.unlock("alice", PASS)


def test_missing_account_keystore_is_named(kmc):
    companion, account = _files(kmc)
    account.unlink()
    with pytest.raises(KeystoreFormatError, match="the account keystore of .*alice.json is missing"):
        kmc.unlock("alice", PASS)
    assert kmc.load("alice").name == "alice"  # the public section still reads


def test_named_errors_share_the_one_root():
    for error in (KeystorePassphraseError, KeystoreTamperedError, KeystoreFormatError):
        assert issubclass(error, KeystoreError) and issubclass(error, MBDSError)


# -- migration ------------------------------------------------------------------------------------------


def _as_format_2(kmc, name: str) -> tuple[bytes, object]:
    """Rewrite ``name``'s two files as one format-2 keystore, as MBDS wrote them before (history kept)."""
    companion, account = _files(kmc, name)
    keys = kmc.unlock(name, PASS)
    from mbds_py.keystore import decrypt_companion

    doc = read_keystore(companion)
    bundle = decrypt_companion(doc, PASS, keys.account.key)
    write_keystore(companion, encrypt_bundle(bundle, PASS, doc["public"], scrypt_n=FAST_SCRYPT))
    account.unlink()
    return companion.read_bytes(), keys


def test_format_2_keystore_migrates_once_with_a_message(kmc, capsys):
    kmc.rotate("alice", PASS)
    legacy, before = _as_format_2(kmc, "alice")
    companion, account = _files(kmc)
    assert read_keystore(companion)["version"] == 2 and not account.exists()
    capsys.readouterr()

    after = kmc.unlock("alice", PASS)
    err = capsys.readouterr().err
    assert "keystore of 'alice' migrated (once) from MBDS format 2 to the Ethereum V3 format" in err
    assert str(account) in err and PASS not in err
    assert _ring(after) == _ring(before) and after.participant == before.participant
    assert read_keystore(companion)["version"] == COMPANION_VERSION
    assert Account.from_key(Account.decrypt(json.loads(account.read_text()), PASS)).address == before.account.address

    kmc.unlock("alice", PASS)
    assert capsys.readouterr().err == ""  # once


def test_migration_with_a_wrong_passphrase_changes_nothing(kmc, capsys):
    legacy, _ = _as_format_2(kmc, "alice")
    before = _snapshot(kmc.directory)
    with pytest.raises(KeystorePassphraseError, match="wrong passphrase"):
        kmc.unlock("alice", "not it")
    assert _snapshot(kmc.directory) == before and _files(kmc)[0].read_bytes() == legacy
    assert "migrated" not in capsys.readouterr().err


def test_migration_interrupted_before_the_companion_is_done_again(kmc, monkeypatch, capsys):
    legacy, before = _as_format_2(kmc, "alice")
    real_write = kmc_module.write_keystore
    calls = []

    def crash_on_companion(path, doc):
        calls.append(path)
        if path.parent.name == "participants":
            raise OSError("power lost")
        real_write(path, doc)

    monkeypatch.setattr(kmc_module, "write_keystore", crash_on_companion)
    with pytest.raises(OSError, match="power lost"):
        kmc.unlock("alice", PASS)
    monkeypatch.undo()
    assert _files(kmc)[0].read_bytes() == legacy  # the old file is whole
    assert _ring(kmc.unlock("alice", PASS)) == _ring(before)  # and it migrates on the next unlock
    assert read_keystore(_files(kmc)[0])["version"] == COMPANION_VERSION


# -- a service started by hand on a participant's V3 file ---------------------------------------------------


def _service_args(keystore: Path) -> tuple[object, int]:
    import argparse

    r, w = os.pipe()
    os.write(w, (PASS + "\n").encode())
    os.close(w)
    return argparse.Namespace(keystore=str(keystore), passphrase_fd=r, key_fd=None), r


def test_a_replica_runs_on_the_participants_v3_keystore(kmc):
    from mbds_py.service_keys import load_service_secret

    _, account = _files(kmc)
    args, _fd = _service_args(account)
    key = load_service_secret(args, "validator", lambda bundle: bundle.account_key)  # what `mbds node run` does
    assert Account.from_key(key).address == kmc.load("alice").address


def test_a_proxy_refuses_a_v3_keystore_by_name(kmc):
    from mbds_py.errors import ConfigError
    from mbds_py.service_keys import load_service_secret

    _, account = _files(kmc)
    args, _fd = _service_args(account)

    def proxy_key_set(bundle):  # as the proxy maps a keystore: it needs the Umbral and PEKS keys too
        if not bundle.umbral_seed:
            raise ValueError("no Umbral seed")
        return b""

    with pytest.raises(ConfigError, match="is an Ethereum V3 keystore, which holds an account key only; the proxy "
                                          "needs a full key set"):
        load_service_secret(args, "proxy", proxy_key_set)
