"""Encrypted-at-rest key sets (scrypt + AES-256-GCM), in the spirit of eth-account keystores.

A participant's secrets (secp256k1 account key, Umbral key seed, PEKS secret
key) and real identity are kept in one JSON file whose payload is encrypted
under a key derived from the passphrase with scrypt.  The file carries only
public data in clear (participant ID, address, role).  Nothing here logs or
reprs a secret.

Format versions (``"version"`` of the document):

* 1 — one key set (files written before key rotation kept history); read as
  key version 1 with no earlier versions;
* 2 — every key version the participant ever had, oldest first, in the same
  encrypted payload: a rotation adds a version and keeps the earlier ones, so
  records made under them stay readable, searchable and shareable.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from Crypto.Cipher import AES

from .errors import KeystoreError

KEYSTORE_VERSION = 2
READABLE_VERSIONS = (1, 2)
DEFAULT_SCRYPT_N = 2**17  # the floor for real keystores (issue 13); tests pass a cheap one explicitly
SCRYPT_R = 8
SCRYPT_P = 1


@dataclass(frozen=True)
class SecretBundle:
    """The secrets of one participant: the current key version and every earlier one. ``repr`` never
    shows them.

    ``account_key`` / ``umbral_seed`` / ``peks_key`` are those of ``key_version`` (the current one);
    ``earlier`` holds the previous versions, oldest first, each a ``SecretBundle`` without history.
    """

    account_key: bytes = field(repr=False)  # secp256k1 private key, 32 bytes
    umbral_seed: bytes = field(repr=False)  # SecretKeyFactory seed, 32 bytes
    peks_key: bytes = field(repr=False)  # PEKS secret scalar bytes
    real_identity: str = field(repr=False)  # kept off-chain, encrypted
    key_version: int = 1
    earlier: tuple["SecretBundle", ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.key_version, int) or self.key_version < 1:
            raise KeystoreError(f"key version must be a positive integer, got {self.key_version!r}")
        versions = [b.key_version for b in self.earlier] + [self.key_version]
        if versions != sorted(set(versions)) or any(b.earlier for b in self.earlier):
            raise KeystoreError(f"key versions must be distinct and ascending, got {versions}")

    @property
    def versions(self) -> tuple["SecretBundle", ...]:
        """Every key version, oldest first (the current one last), each without history."""
        return (*self.earlier, self.current_only())

    def current_only(self) -> "SecretBundle":
        return SecretBundle(self.account_key, self.umbral_seed, self.peks_key, self.real_identity, self.key_version)

    def rotated(self, account_key: bytes, umbral_seed: bytes, peks_key: bytes) -> "SecretBundle":
        """A new current key version; the present one joins ``earlier``."""
        return SecretBundle(account_key, umbral_seed, peks_key, self.real_identity, self.key_version + 1,
                            self.versions)

    @staticmethod
    def _key_json(b: "SecretBundle") -> dict[str, Any]:
        return {"key_version": b.key_version, "account_key": b.account_key.hex(),
                "umbral_seed": b.umbral_seed.hex(), "peks_key": b.peks_key.hex()}

    def to_json(self) -> bytes:
        return json.dumps({"real_identity": self.real_identity,
                           "versions": [self._key_json(b) for b in self.versions]}, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> "SecretBundle":
        d = json.loads(raw)
        if "versions" not in d:  # format 1: one key set, which is key version 1
            return cls(bytes.fromhex(d["account_key"]), bytes.fromhex(d["umbral_seed"]),
                       bytes.fromhex(d["peks_key"]), d["real_identity"])
        keys = [cls(bytes.fromhex(v["account_key"]), bytes.fromhex(v["umbral_seed"]), bytes.fromhex(v["peks_key"]),
                    d["real_identity"], int(v["key_version"])) for v in d["versions"]]
        if not keys:
            raise KeystoreError("keystore holds no key version")
        last = keys[-1]
        return cls(last.account_key, last.umbral_seed, last.peks_key, last.real_identity, last.key_version,
                   tuple(keys[:-1]))


def _derive(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    if not passphrase:
        raise KeystoreError("empty passphrase: set one (e.g. MBDS_PASSPHRASE) to protect the keystore")
    return hashlib.scrypt(passphrase.encode(), salt=salt, n=n, r=r, p=p, dklen=32, maxmem=2**28)


def encrypt_bundle(bundle: SecretBundle, passphrase: str, public: dict[str, Any], *,
                   scrypt_n: int = DEFAULT_SCRYPT_N) -> dict[str, Any]:
    """The keystore document: ``public`` in clear, ``bundle`` encrypted."""
    salt, nonce = os.urandom(16), os.urandom(12)
    key = _derive(passphrase, salt, scrypt_n, SCRYPT_R, SCRYPT_P)
    cipher = AES.new(key, AES.MODE_GCM, nonce=nonce)
    header = json.dumps(public, sort_keys=True).encode()
    cipher.update(header)  # the clear part is authenticated too
    ciphertext, tag = cipher.encrypt_and_digest(bundle.to_json())
    return {
        "version": KEYSTORE_VERSION,
        "public": public,
        "crypto": {
            "kdf": "scrypt",
            "kdfparams": {"n": scrypt_n, "r": SCRYPT_R, "p": SCRYPT_P, "salt": salt.hex(), "dklen": 32},
            "cipher": "aes-256-gcm",
            "nonce": nonce.hex(),
            "tag": tag.hex(),
            "ciphertext": ciphertext.hex(),
        },
    }


def decrypt_bundle(doc: dict[str, Any], passphrase: str, *, source: str = "keystore") -> SecretBundle:
    """Unlock a keystore document; a wrong passphrase or tampering raises KeystoreError."""
    try:
        if doc["version"] not in READABLE_VERSIONS:
            raise KeystoreError(f"{source}: keystore format version {doc['version']!r} is not supported (this "
                                f"MBDS reads versions {', '.join(map(str, READABLE_VERSIONS))}); upgrade MBDS")
        c = doc["crypto"]
        kp = c["kdfparams"]
        if c["kdf"] != "scrypt" or c["cipher"] != "aes-256-gcm":
            raise KeystoreError(f"{source}: unsupported kdf/cipher {c['kdf']}/{c['cipher']}")
        key = _derive(passphrase, bytes.fromhex(kp["salt"]), kp["n"], kp["r"], kp["p"])
        cipher = AES.new(key, AES.MODE_GCM, nonce=bytes.fromhex(c["nonce"]))
        cipher.update(json.dumps(doc["public"], sort_keys=True).encode())
        plain = cipher.decrypt_and_verify(bytes.fromhex(c["ciphertext"]), bytes.fromhex(c["tag"]))
    except KeystoreError:
        raise
    except ValueError as exc:
        raise KeystoreError(f"{source}: wrong passphrase or the file was modified (authentication failed)") from exc
    except (KeyError, TypeError) as exc:
        raise KeystoreError(f"{source}: malformed keystore, missing or bad field {exc}") from exc
    try:
        bundle = SecretBundle.from_json(plain)
    except KeystoreError as exc:
        raise KeystoreError(f"{source}: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise KeystoreError(f"{source}: malformed secret payload ({type(exc).__name__})") from None
    if doc["version"] == 1 and (bundle.key_version != 1 or bundle.earlier):
        raise KeystoreError(f"{source}: a format-1 keystore holds exactly key version 1")
    return bundle


def write_keystore(path: Path, doc: dict[str, Any]) -> None:
    """Write atomically with owner-only permissions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_keystore(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise KeystoreError(f"{path}: cannot read keystore ({exc.strerror})") from exc
    except json.JSONDecodeError as exc:
        raise KeystoreError(f"{path}: not a keystore (invalid JSON at line {exc.lineno})") from exc
