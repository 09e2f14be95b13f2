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
"""

from __future__ import annotations

import hmac
import hashlib
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import umbral_pre
from eth_account import Account
from eth_account.signers.local import LocalAccount

from .crypto.keys import IDENTITY_KEY_LABEL, PatientKeyring, PatientSecrets
from .crypto.peks import PeksPublicKey, PeksSecretKey
from .errors import IdentityError, KeystoreError
from .identity import Participant, Role
from .keystore import (DEFAULT_SCRYPT_N, SecretBundle, decrypt_bundle, encrypt_bundle, read_keystore,
                       write_keystore)

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
        write_keystore(path, encrypt_bundle(bundle, passphrase, self._public(participant), scrypt_n=self.scrypt_n))
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
        write_keystore(path, encrypt_bundle(bundle, passphrase, self._public(participant, bundle),
                                            scrypt_n=self.scrypt_n))
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
    """Where the KMC in ``kmc_dir`` keeps ``name``'s keystore."""
    if not _NAME.match(name):
        raise IdentityError(f"bad participant name {name!r}: use 1-63 lower-case letters, digits, '-' or '_'")
    return Path(kmc_dir) / "participants" / f"{name}.json"


def load_participant(path: Path) -> Participant:
    """The public part of one participant keystore (no passphrase needed)."""
    return _participant_from_public(read_keystore(path).get("public", {}), path)


def unlock_participant(path: Path, passphrase: str) -> ParticipantKeys:
    """Decrypt one participant keystore with its own passphrase — what a participant's client does,
    without the KMC's secrets (wrong passphrase → KeystoreError)."""
    return _unlock(path, passphrase)[0]


def _unlock(path: Path, passphrase: str) -> tuple[ParticipantKeys, SecretBundle]:
    doc = read_keystore(path)
    bundle = decrypt_bundle(doc, passphrase, source=str(path))
    account, factory, peks_sk, pre_pk, peks_pk = derive_public(bundle)
    public = doc.get("public", {})
    participant = _participant_from_public(public, path)
    if doc.get("version") == 1 and participant.key_version != 1:
        # format 1 kept one key set; a file rotated before key history existed holds only the version its
        # public section names (the earlier ones were not kept then)
        bundle = replace(bundle, key_version=participant.key_version)
    if (participant.address, participant.pre_key, participant.peks_key, participant.key_version) != \
            (account.address, pre_pk, peks_pk, bundle.key_version):
        raise KeystoreError(f"{path}: the public section does not match the decrypted key")
    if public.get("earlier_keys", []) != [_public_keys(b) for b in bundle.earlier]:
        raise KeystoreError(f"{path}: the public list of earlier key versions does not match the decrypted keys")
    return ParticipantKeys(participant, account, factory, peks_sk, bundle.umbral_seed, bundle.earlier), bundle


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


__all__ = ["KeyManagementCenter", "ParticipantKeys", "PeksPublicKey", "load_participant", "participant_keystore",
           "unlock_participant"]
