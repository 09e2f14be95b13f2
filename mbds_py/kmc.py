"""The Key Management Center (paper §"Initialisation"): one key set per participant.

The KMC authenticates a participant off-line, generates its key set —
secp256k1 account, Umbral PRE key seed, PEKS key pair — and stores the
secrets and the real identity encrypted at rest (scrypt + AES-GCM keystore).
A rotation adds a key version and keeps every earlier one in the same
encrypted keystore: records made under an old version stay readable,
searchable and shareable, new records use the new keys, and a compromised
version is retired (no longer registered) without losing data.
The participant ID registered on-chain is a keyed commitment to the real
identity, so the same person cannot be enrolled twice and the chain never
sees who it is.

On disk (``kmc/``), one participant is two files, both ``0600``, one passphrase:

* ``accounts/NAME.json`` — the current account key as an Ethereum V3 keystore
  (scrypt, AES-128-CTR, keccak MAC), as eth-account writes it: ``cast wallet
  address --keystore accounts/NAME.json``, Ape (copy it to
  ``~/.ape/accounts/NAME.json``) and geth read it;
* ``participants/NAME.json`` — its companion (keystore format 3): the public
  section in clear (name, role, ID, address, PRE and PEKS public keys, earlier
  versions' public keys), and, encrypted with AES-256-GCM over the public
  section, the Umbral seeds and PEKS keys of every key version, the earlier
  versions' account keys and the real identity.  Both files hang on one scrypt
  derivation (the companion repeats its parameters; its GCM key is an
  HKDF-SHA256 sub-key), so unlocking costs one scrypt and neither file is a
  cheaper target than the other.

A participant keystore of formats 1 or 2 (one file holding everything) is
migrated to these two files the first time it is unlocked, with a message on
standard error; nothing is lost (the new files are checked to open to the same
keys before the old file is replaced) and a wrong passphrase changes nothing.
"""

from __future__ import annotations

import hmac
import hashlib
import os
import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import umbral_pre
from eth_account import Account
from eth_account.signers.local import LocalAccount

from .crypto.keys import IDENTITY_KEY_LABEL, PatientKeyring, PatientSecrets
from .crypto.peks import PeksPublicKey, PeksSecretKey
from .errors import IdentityError, KeystoreError, KeystoreFormatError, KeystoreTamperedError
from .identity import Participant, Role
from .keystore import (COMPANION_VERSION, DEFAULT_SCRYPT_N, READABLE_VERSIONS, ScryptKey, SecretBundle,
                       decrypt_account_v3, decrypt_bundle, decrypt_companion, encrypt_account_v3, encrypt_bundle,
                       encrypt_companion, read_keystore, write_keystore)

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


@dataclass(frozen=True)
class ParticipantKeys:
    """An unlocked key set. Secrets are excluded from ``repr``."""

    participant: Participant
    account: LocalAccount = field(repr=False)
    umbral_factory: umbral_pre.SecretKeyFactory = field(repr=False)
    peks_secret: PeksSecretKey = field(repr=False)
    _seed: bytes = field(repr=False, default=b"")
    _earlier: tuple[SecretBundle, ...] = field(repr=False, default=())

    @property
    def key_version(self) -> int:
        return self.participant.key_version

    @property
    def secrets(self) -> PatientSecrets:
        """The current key set as the crypto layer uses it (new records, signatures, trapdoors)."""
        return PatientSecrets(self.account.key, self._seed, self.peks_secret, key_version=self.key_version)

    @property
    def keyring(self) -> PatientKeyring:
        """Every key version, current included: what opens, searches and shares records of any version."""
        earlier = [PatientSecrets(b.account_key, b.umbral_seed, b.peks_key, key_version=b.key_version)
                   for b in self._earlier]
        return PatientKeyring([*earlier, self.secrets])

    @property
    def umbral_secret(self) -> umbral_pre.SecretKey:
        """The identity PRE key (per-record keys derive from the same factory)."""
        return self.umbral_factory.make_key(IDENTITY_KEY_LABEL)


def derive_public(bundle: SecretBundle) -> tuple[LocalAccount, umbral_pre.SecretKeyFactory, PeksSecretKey, bytes, bytes]:
    account = Account.from_key(bundle.account_key)
    factory = umbral_pre.SecretKeyFactory.from_secure_randomness(bundle.umbral_seed)
    pre_pk = factory.make_key(IDENTITY_KEY_LABEL).public_key().to_compressed_bytes()
    peks_sk = PeksSecretKey.from_bytes(bundle.peks_key)
    peks_pk = peks_sk.public_key().to_bytes()
    return account, factory, peks_sk, pre_pk, peks_pk


class KeyManagementCenter:
    """Enrolls participants and keeps their keystores in ``directory``."""

    def __init__(self, directory: Path, passphrase: str, *, scrypt_n: int = DEFAULT_SCRYPT_N):
        self.directory = Path(directory)
        self.scrypt_n = scrypt_n
        kmc_file = self.directory / "kmc.json"
        if kmc_file.is_file():
            bundle = decrypt_bundle(read_keystore(kmc_file), passphrase, source=str(kmc_file))
        else:
            bundle = SecretBundle(os.urandom(32), os.urandom(32), os.urandom(32), "Key Management Center")
            doc = encrypt_bundle(bundle, passphrase, {"kind": "kmc", "address": Account.from_key(bundle.account_key).address},
                                 scrypt_n=scrypt_n)
            write_keystore(kmc_file, doc)
        self._account = Account.from_key(bundle.account_key)
        self._pepper = hmac.new(bundle.umbral_seed, b"mbds/participant-id", hashlib.sha256).digest()

    @property
    def account(self) -> LocalAccount:
        """The KMC authority account that registers participants on every chain."""
        return self._account

    def participant_id(self, real_identity: str) -> bytes:
        """Keyed commitment to a normalised real identity (stable across key rotations)."""
        normal = " ".join(real_identity.split()).casefold()
        if not normal:
            raise IdentityError("empty real identity: the KMC needs the authenticated identity to enroll")
        return hmac.new(self._pepper, normal.encode(), hashlib.sha256).digest()

    def _path(self, name: str) -> Path:
        return participant_keystore(self.directory, name)

    def enroll(self, name: str, role: Role, real_identity: str, passphrase: str, *,
               institution: Participant | None = None) -> Participant:
        """Generate and store a key set; refuses a second enrollment of the same identity."""
        path = self._path(name)
        pid = self.participant_id(real_identity)
        if path.exists():
            raise IdentityError(f"participant {name!r} already has a keystore at {path}")
        for other in self.participants():
            if other.id == pid:
                raise IdentityError(f"this identity is already enrolled as {other.name!r} ({other.id_hex}); "
                                    "rotate its keys instead of enrolling again")
        if role is Role.DOCTOR:
            if institution is None or institution.role not in (Role.HOSPITAL, Role.INTERNET_PLATFORM):
                raise IdentityError(f"doctor {name!r} must belong to a hospital or Internet medicine platform")
        elif institution is not None:
            raise IdentityError(f"only doctors belong to an institution; {name!r} is a {role.label}")
        peks_sk = PeksSecretKey.generate()
        bundle = SecretBundle(os.urandom(32), os.urandom(umbral_pre.SecretKeyFactory.seed_size()),
                              peks_sk.to_bytes(), real_identity)
        participant = self._participant(name, role, pid, bundle, institution.id if institution else b"\x00" * 32)
        # the account keystore first: a companion never names an account whose keystore is not written
        key = ScryptKey.fresh(passphrase, self.scrypt_n)  # one scrypt for both files (each its own sub-key)
        write_keystore(account_keystore(path), encrypt_account_v3(bundle.account_key, passphrase, key=key))
        write_keystore(path, _companion(bundle, passphrase, self._public(participant), path, key))
        return participant

    def rotate(self, name: str, passphrase: str) -> Participant:
        """A new key version (account, Umbral, PEKS) for an enrolled participant; its ID stays the same
        and every earlier version stays in the keystore (encrypted), so records made under them remain
        readable, searchable and shareable.  Register the result on chain (``IdentityRegistry.rotateKeys``)
        so new records use it and the old account is retired."""
        path = self._path(name)
        keys, old = _unlock(path, passphrase)  # checks the passphrase and that the file is intact
        current = keys.participant
        bundle = old.rotated(os.urandom(32), os.urandom(umbral_pre.SecretKeyFactory.seed_size()),
                             PeksSecretKey.generate().to_bytes())
        participant = self._participant(name, current.role, current.id, bundle, current.institution,
                                        key_version=bundle.key_version)
        # new account keystore aside, then the companion (the commit point), then the account keystore in place;
        # an unlock after a crash between the two finishes the move (_account_key)
        account = account_keystore(path)
        pending = account.with_name(account.name + PENDING)
        key = ScryptKey.fresh(passphrase, self.scrypt_n)
        write_keystore(pending, encrypt_account_v3(bundle.account_key, passphrase, key=key))
        write_keystore(path, _companion(bundle, passphrase, self._public(participant, bundle), path, key))
        os.replace(pending, account)
        return participant

    @staticmethod
    def _participant(name: str, role: Role, pid: bytes, bundle: SecretBundle, institution: bytes,
                     key_version: int = 1) -> Participant:
        account, _f, _s, pre_pk, peks_pk = derive_public(bundle)
        return Participant(id=pid, name=name, role=role, address=account.address, pre_key=pre_pk,
                           peks_key=peks_pk, institution=institution, key_version=key_version)

    @staticmethod
    def _public(p: Participant, bundle: SecretBundle | None = None) -> dict:
        doc = {"kind": "participant", "name": p.name, "id": p.id.hex(), "role": p.role.label,
               "address": p.address, "pre_key": p.pre_key.hex(), "peks_key": p.peks_key.hex(),
               "institution": p.institution.hex(), "key_version": p.key_version}
        if bundle is not None and bundle.earlier:
            doc["earlier_keys"] = [_public_keys(b) for b in bundle.earlier]
        return doc

    def load(self, name: str) -> Participant:
        """The public record of an enrolled participant (no passphrase needed)."""
        return load_participant(self._path(name))

    def participants(self) -> list[Participant]:
        folder = self.directory / "participants"
        if not folder.is_dir():
            return []
        return [self.load(p.stem) for p in sorted(folder.glob("*.json"))]

    def unlock(self, name: str, passphrase: str) -> ParticipantKeys:
        """Decrypt a participant's key set (wrong passphrase → KeystoreError)."""
        return unlock_participant(self._path(name), passphrase)


def participant_keystore(kmc_dir: Path, name: str) -> Path:
    """Where the KMC in ``kmc_dir`` keeps ``name``'s keystore (the companion, with the public section)."""
    if not _NAME.match(name):
        raise IdentityError(f"bad participant name {name!r}: use 1-63 lower-case letters, digits, '-' or '_'")
    return Path(kmc_dir) / "participants" / f"{name}.json"


PENDING = ".pending"  # an account keystore written by a rotation, before its companion is


def account_keystore(companion: Path) -> Path:
    """The Ethereum V3 keystore of the account whose companion is ``companion``
    (``kmc/participants/NAME.json`` → ``kmc/accounts/NAME.json``)."""
    return companion.parent.parent / "accounts" / companion.name


def _companion(bundle: SecretBundle, passphrase: str, public: dict, path: Path, key: ScryptKey) -> dict:
    return encrypt_companion(bundle, passphrase, public, f"../accounts/{account_keystore(path).name}", key=key)


def _report_migration(message: str) -> None:
    print(f"mbds: {message}", file=sys.stderr, flush=True)


report_migration = _report_migration  # where the one-time migration message goes (tests may replace it)


def load_participant(path: Path) -> Participant:
    """The public part of one participant keystore (no passphrase needed)."""
    return _participant_from_public(read_keystore(path).get("public", {}), path)


def unlock_participant(path: Path, passphrase: str) -> ParticipantKeys:
    """Decrypt one participant keystore with its own passphrase — what a participant's client does,
    without the KMC's secrets (wrong passphrase → KeystoreError)."""
    return _unlock(path, passphrase)[0]


def _unlock(path: Path, passphrase: str) -> tuple[ParticipantKeys, SecretBundle]:
    doc = read_keystore(path)
    version = doc.get("version")
    if version == COMPANION_VERSION:
        account_key, derived = _account_key(path, doc, passphrase)
        bundle = decrypt_companion(doc, passphrase, account_key, source=str(path), key=derived)
    elif version in READABLE_VERSIONS:
        bundle = decrypt_bundle(doc, passphrase, source=str(path))  # checks the passphrase before anything
    else:
        raise KeystoreFormatError(f"{path}: keystore format version {version!r} is not supported (this MBDS reads "
                                  f"versions {', '.join(map(str, (*READABLE_VERSIONS, COMPANION_VERSION)))}); "
                                  "upgrade MBDS")
    account, factory, peks_sk, pre_pk, peks_pk = derive_public(bundle)
    public = doc.get("public", {})
    participant = _participant_from_public(public, path)
    if version == 1 and participant.key_version != 1:
        # format 1 kept one key set; a file rotated before key history existed holds only the version its
        # public section names (the earlier ones were not kept then)
        bundle = replace(bundle, key_version=participant.key_version)
    if (participant.address, participant.pre_key, participant.peks_key, participant.key_version) != \
            (account.address, pre_pk, peks_pk, bundle.key_version):
        raise KeystoreTamperedError(f"{path}: the public section does not match the decrypted key")
    if public.get("earlier_keys", []) != [_public_keys(b) for b in bundle.earlier]:
        raise KeystoreTamperedError(f"{path}: the public list of earlier key versions does not match the decrypted "
                                    "keys")
    if version in READABLE_VERSIONS:
        _migrate(path, doc, bundle, passphrase)
    return ParticipantKeys(participant, account, factory, peks_sk, bundle.umbral_seed, bundle.earlier), bundle


def _account_key(path: Path, companion: dict, passphrase: str) -> tuple[bytes, ScryptKey | None]:
    """The current account key from the companion's V3 keystore; finishes a rotation a crash interrupted
    (the companion already names the new account, whose keystore still waits beside the old one)."""
    account = account_keystore(path)
    pending = account.with_name(account.name + PENDING)
    if not account.is_file() and not pending.is_file():
        raise KeystoreFormatError(f"{account}: the account keystore of {path} is missing (restore it from a "
                                  "backup: the companion alone cannot sign)")
    want = str(companion.get("public", {}).get("address", "")).lower()
    if pending.is_file():
        key, derived = decrypt_account_v3(read_keystore(pending), passphrase, source=str(pending))
        if Account.from_key(key).address.lower() == want:
            os.replace(pending, account)
            return key, derived
        pending.unlink()  # a rotation that never reached its companion: the new key was never used
    key, derived = decrypt_account_v3(read_keystore(account), passphrase, source=str(account))
    if Account.from_key(key).address.lower() != want:
        raise KeystoreTamperedError(f"{account}: holds account {Account.from_key(key).address}, but {path} is the "
                                    f"companion of {companion['public'].get('address')}: one of them was replaced")
    return key, derived


def _migrate(path: Path, doc: dict, bundle: SecretBundle, passphrase: str) -> None:
    """Rewrite a format-1/2 participant keystore as a V3 account keystore + companion (once), at the same
    scrypt cost.  The new files are opened again before the old one is replaced: nothing is lost."""
    key = ScryptKey.fresh(passphrase, int(doc["crypto"]["kdfparams"]["n"]))  # the same cost as before
    public = dict(doc["public"])
    v3 = encrypt_account_v3(bundle.account_key, passphrase, key=key)
    companion = _companion(bundle, passphrase, public, path, key)
    account_key, _ = decrypt_account_v3(v3, passphrase, key=key)
    if decrypt_companion(companion, passphrase, account_key, source=str(path), key=key) != bundle:
        raise KeystoreError(f"{path}: migration check failed; the keystore was left as it was")
    write_keystore(account_keystore(path), v3)
    write_keystore(path, companion)  # the commit point: a crash before it leaves the old file, migrated again
    report_migration(f"keystore of {public.get('name', path.stem)!r} migrated (once) from MBDS format "
                     f"{doc['version']} to the Ethereum V3 format: the account key is now in {account_keystore(path)} "
                     f"(eth-account, ape, cast wallet read it), the Umbral and PEKS secrets in {path} (format "
                     f"{COMPANION_VERSION}); same passphrase")


def _public_keys(bundle: SecretBundle) -> dict:
    """The public side of one key version (what the keystore shows in clear)."""
    account, _f, _s, pre_pk, peks_pk = derive_public(bundle)
    return {"key_version": bundle.key_version, "address": account.address, "pre_key": pre_pk.hex(),
            "peks_key": peks_pk.hex()}


def _participant_from_public(pub: dict, path: Path) -> Participant:
    try:
        return Participant(
            id=bytes.fromhex(pub["id"]), name=pub["name"], role=Role.parse(pub["role"]), address=pub["address"],
            pre_key=bytes.fromhex(pub["pre_key"]), peks_key=bytes.fromhex(pub["peks_key"]),
            institution=bytes.fromhex(pub["institution"]), key_version=int(pub["key_version"]),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise KeystoreError(f"{path}: malformed public section ({exc})") from exc


__all__ = ["KeyManagementCenter", "ParticipantKeys", "PeksPublicKey", "account_keystore", "load_participant",
           "participant_keystore", "unlock_participant"]
