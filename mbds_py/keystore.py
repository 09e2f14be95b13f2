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
  records made under them stay readable, searchable and shareable;
* 3 — a participant's *companion* (:func:`encrypt_companion`): the same public
  section and cipher as format 2, but the current account key is not in it: it
  is in an Ethereum V3 keystore of its own (:func:`encrypt_account_v3`, the file
  eth-account, ``ape`` and ``cast wallet`` read).  The companion keeps the
  Umbral seeds, the PEKS keys, the real identity and the earlier versions'
  account keys, under AES-256-GCM over the public section with a key derived
  (HKDF-SHA256, label ``mbds/keystore/companion/v3``) from the same scrypt
  derivation as the V3 file, whose parameters it repeats (one scrypt opens
  both; a V3 file re-encrypted elsewhere makes it a second scrypt).  Formats 1 and 2 remain
  readable (the KMC migrates a participant's file once, see :mod:`mbds_py.kmc`);
  service keystores and the KMC's own key stay in format 2.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from Crypto.Cipher import AES

from .errors import KeystoreError, KeystoreFormatError, KeystorePassphraseError, KeystoreTamperedError

KEYSTORE_VERSION = 2
READABLE_VERSIONS = (1, 2)
COMPANION_VERSION = 3
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
            raise KeystoreFormatError(f"{source}: keystore format version {doc['version']!r} is not supported (this "
                                      f"MBDS reads versions {', '.join(map(str, READABLE_VERSIONS))}); upgrade MBDS")
        c = doc["crypto"]
        kp = c["kdfparams"]
        if c["kdf"] != "scrypt" or c["cipher"] != "aes-256-gcm":
            raise KeystoreFormatError(f"{source}: unsupported kdf/cipher {c['kdf']}/{c['cipher']}")
        key = _derive(passphrase, bytes.fromhex(kp["salt"]), kp["n"], kp["r"], kp["p"])
        cipher = AES.new(key, AES.MODE_GCM, nonce=bytes.fromhex(c["nonce"]))
        cipher.update(json.dumps(doc["public"], sort_keys=True).encode())
        plain = cipher.decrypt_and_verify(bytes.fromhex(c["ciphertext"]), bytes.fromhex(c["tag"]))
    except KeystoreError:
        raise
    except ValueError as exc:
        raise KeystorePassphraseError(f"{source}: wrong passphrase or the file was modified (authentication "
                                      "failed); nothing was changed") from exc
    except (KeyError, TypeError) as exc:
        raise KeystoreFormatError(f"{source}: malformed keystore, missing or bad field {exc}") from exc
    try:
        bundle = SecretBundle.from_json(plain)
    except KeystoreError as exc:
        raise KeystoreFormatError(f"{source}: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise KeystoreFormatError(f"{source}: malformed secret payload ({type(exc).__name__})") from None
    if doc["version"] == 1 and (bundle.key_version != 1 or bundle.earlier):
        raise KeystoreFormatError(f"{source}: a format-1 keystore holds exactly key version 1")
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
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise KeystoreFormatError(f"{path}: cannot read keystore ({exc.strerror})") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = f" at line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise KeystoreFormatError(f"{path}: not a keystore (invalid JSON{where}: truncated or overwritten?)") from exc
    if not isinstance(doc, dict):
        raise KeystoreFormatError(f"{path}: not a keystore (a JSON {type(doc).__name__}, not an object)")
    return doc


# ---------------------------------------------------------------------------------------------------
# Format 3: the account key in an Ethereum V3 keystore, everything else in an encrypted companion
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScryptKey:
    """One scrypt derivation of a passphrase: its parameters (as keystores store them) and the 32-byte key.
    The V3 file and its companion share it (each then uses its own sub-key), so unlocking a participant
    costs one scrypt, not two."""

    params: dict[str, Any]  # {"n", "r", "p", "salt" (hex), "dklen"}
    key: bytes = field(repr=False)

    @classmethod
    def derive(cls, passphrase: str, params: dict[str, Any]) -> "ScryptKey":
        try:
            n, r, p, salt = int(params["n"]), int(params["r"]), int(params["p"]), bytes.fromhex(params["salt"])
            dklen = int(params.get("dklen", 32))
        except (KeyError, TypeError, ValueError) as exc:
            raise KeystoreFormatError(f"bad scrypt parameters ({type(exc).__name__}: {exc})") from None
        if not (2 <= n <= MAX_SCRYPT_N and n & (n - 1) == 0) or not (1 <= r <= 32 and 1 <= p <= 16) or dklen != 32:
            raise KeystoreFormatError(f"scrypt parameters out of range (n={n}, r={r}, p={p}, dklen={dklen})")
        if not passphrase:
            raise KeystoreError("empty passphrase: set one (e.g. MBDS_PASSPHRASE) to protect the keystore")
        key = _scrypt(passphrase.encode(), salt, n, r, p)
        return cls({"n": n, "r": r, "p": p, "salt": salt.hex(), "dklen": 32}, key)

    @classmethod
    def fresh(cls, passphrase: str, scrypt_n: int = DEFAULT_SCRYPT_N) -> "ScryptKey":
        return cls.derive(passphrase, {"n": scrypt_n, "r": SCRYPT_R, "p": SCRYPT_P, "salt": os.urandom(32).hex(),
                                       "dklen": 32})

    def for_params(self, passphrase: str, params: dict[str, Any]) -> "ScryptKey":
        """This derivation if ``params`` are its own, else a new one (e.g. a V3 file re-encrypted elsewhere)."""
        fields = ("n", "r", "p", "salt")
        same = {k: params.get(k) for k in fields} == {k: self.params[k] for k in fields}
        return self if same else ScryptKey.derive(passphrase, params)


MAX_SCRYPT_N = 2**20
COMPANION_KEY_INFO = b"mbds/keystore/companion/v3"


def _scrypt(secret: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, dklen=32, maxmem=128 * r * (n + p + 2) + 2**24)


def _keccak(data: bytes) -> bytes:
    from Crypto.Hash import keccak

    return keccak.new(digest_bits=256, data=data).digest()


def _address(account_key: bytes) -> str:
    from eth_account import Account

    return Account.from_key(account_key).address


def encrypt_account_v3(account_key: bytes, passphrase: str, *, scrypt_n: int = DEFAULT_SCRYPT_N,
                       key: ScryptKey | None = None) -> dict[str, Any]:
    """The Ethereum V3 keystore (Web3 Secret Storage) of one account key: scrypt, AES-128-CTR under the
    derived key's first half, MAC = keccak256(second half ‖ ciphertext) — the file geth, eth-account,
    ``cast wallet`` and ``ape accounts`` read.  ``key``: a derivation to share with the companion."""
    import uuid

    key = key or ScryptKey.fresh(passphrase, scrypt_n)
    iv = os.urandom(16)
    ciphertext = AES.new(key.key[:16], AES.MODE_CTR, nonce=b"", initial_value=iv).encrypt(bytes(account_key))
    return {
        "address": _address(account_key)[2:].lower(),
        "crypto": {
            "cipher": "aes-128-ctr",
            "cipherparams": {"iv": iv.hex()},
            "ciphertext": ciphertext.hex(),
            "kdf": "scrypt",
            "kdfparams": dict(key.params),
            "mac": _keccak(key.key[16:32] + ciphertext).hex(),
        },
        "id": str(uuid.uuid4()),
        "version": 3,
    }


def is_account_v3(doc: dict[str, Any]) -> bool:
    """Whether a keystore document is an Ethereum V3 keystore (as opposed to an MBDS one)."""
    crypto = doc.get("crypto", doc.get("Crypto"))
    return doc.get("version") == 3 and isinstance(crypto, dict) and crypto.get("cipher") == "aes-128-ctr"


def decrypt_account_v3(doc: dict[str, Any], passphrase: str, *, source: str = "account keystore",
                       key: ScryptKey | None = None) -> tuple[bytes, ScryptKey | None]:
    """The account key of a V3 keystore (scrypt or PBKDF2, as any tool writes it) and, for scrypt, the
    derivation (to open the companion without a second scrypt).  A wrong passphrase or a modified file raises
    a named error; nothing is written."""
    try:
        if int(doc["version"]) != 3:
            raise KeystoreFormatError(f"{source}: Ethereum keystore version {doc['version']!r}, expected 3")
        crypto = doc["crypto"] if "crypto" in doc else doc["Crypto"]
        if crypto["cipher"] != "aes-128-ctr":
            raise KeystoreFormatError(f"{source}: unsupported cipher {crypto['cipher']!r} (expected aes-128-ctr)")
        kp = crypto["kdfparams"]
        if crypto["kdf"] == "scrypt":
            try:
                derived: ScryptKey | None = key.for_params(passphrase, kp) if key else ScryptKey.derive(passphrase, kp)
            except KeystoreFormatError as exc:
                raise KeystoreFormatError(f"{source}: {exc}") from None
            dk = derived.key
        elif crypto["kdf"] == "pbkdf2":
            if kp.get("prf", "hmac-sha256") != "hmac-sha256" or int(kp["dklen"]) != 32:
                raise KeystoreFormatError(f"{source}: unsupported PBKDF2 parameters")
            if not passphrase:
                raise KeystoreError("empty passphrase")
            derived, dk = None, hashlib.pbkdf2_hmac("sha256", passphrase.encode(), bytes.fromhex(kp["salt"]),
                                                     int(kp["c"]), 32)
        else:
            raise KeystoreFormatError(f"{source}: unsupported kdf {crypto['kdf']!r}")
        ciphertext = bytes.fromhex(crypto["ciphertext"])
        mac = bytes.fromhex(crypto["mac"])
        iv = bytes.fromhex(crypto["cipherparams"]["iv"])
    except KeystoreError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise KeystoreFormatError(f"{source}: malformed Ethereum keystore, missing or bad field {exc}") from None
    if not hmac.compare_digest(_keccak(dk[16:32] + ciphertext), mac):
        raise KeystorePassphraseError(f"{source}: wrong passphrase or the file was modified (MAC mismatch); "
                                      "nothing was changed")
    if len(iv) != 16 or len(ciphertext) != 32:
        raise KeystoreFormatError(f"{source}: not a 32-byte account key (iv {len(iv)}, key {len(ciphertext)} bytes)")
    key = AES.new(dk[:16], AES.MODE_CTR, nonce=b"", initial_value=iv).decrypt(ciphertext)
    try:
        address = _address(key)
    except ValueError:
        raise KeystoreFormatError(f"{source}: the decrypted key is not a valid secp256k1 key") from None
    if "address" in doc and str(doc["address"]).lower().removeprefix("0x") != address[2:].lower():
        raise KeystoreTamperedError(f"{source}: the address field {doc['address']!r} is not that of the key "
                                    f"inside ({address}): the file was modified")
    return key, derived


def _companion_cipher_key(key: ScryptKey) -> bytes:
    """The companion's AES-256-GCM key: HKDF-SHA256 of the scrypt output under its own label, so it shares
    nothing usable with the V3 file's AES and MAC halves."""
    from Crypto.Hash import SHA256
    from Crypto.Protocol.KDF import HKDF

    return HKDF(key.key, 32, b"", SHA256, context=COMPANION_KEY_INFO)


def _companion_aad(public: dict[str, Any]) -> bytes:
    return json.dumps({"version": COMPANION_VERSION, "public": public}, sort_keys=True).encode()


def _companion_payload(bundle: SecretBundle) -> bytes:
    """Every key version's Umbral seed and PEKS key, the earlier versions' account keys, the real identity:
    all but the current account key, which lives in the V3 keystore."""
    versions = []
    for b in bundle.versions:
        entry = {"key_version": b.key_version, "umbral_seed": b.umbral_seed.hex(), "peks_key": b.peks_key.hex()}
        if b.key_version != bundle.key_version:
            entry["account_key"] = b.account_key.hex()
        versions.append(entry)
    return json.dumps({"real_identity": bundle.real_identity, "versions": versions}, sort_keys=True).encode()


def encrypt_companion(bundle: SecretBundle, passphrase: str, public: dict[str, Any], account_keystore: str, *,
                      scrypt_n: int = DEFAULT_SCRYPT_N, key: ScryptKey | None = None) -> dict[str, Any]:
    """The format-3 companion of a V3 account keystore: ``public`` in clear (authenticated), the rest of
    ``bundle`` under AES-256-GCM with a key derived (HKDF-SHA256, label ``mbds/keystore/companion/v3``) from
    scrypt of the passphrase — by default the V3 file's own derivation (``key``), whose parameters the
    companion repeats, so one scrypt opens both."""
    key = key or ScryptKey.fresh(passphrase, scrypt_n)
    nonce = os.urandom(12)
    cipher = AES.new(_companion_cipher_key(key), AES.MODE_GCM, nonce=nonce)
    cipher.update(_companion_aad(public))
    ciphertext, tag = cipher.encrypt_and_digest(_companion_payload(bundle))
    return {
        "version": COMPANION_VERSION,
        "public": public,
        "account_keystore": account_keystore,  # where the current account key is (Ethereum V3), informative
        "crypto": {
            "kdf": "scrypt",
            "kdfparams": dict(key.params),
            "cipher": "aes-256-gcm",
            "cipherkey": "hkdf-sha256:" + COMPANION_KEY_INFO.decode(),
            "nonce": nonce.hex(),
            "tag": tag.hex(),
            "ciphertext": ciphertext.hex(),
        },
    }


def decrypt_companion(doc: dict[str, Any], passphrase: str, account_key: bytes, *, source: str = "companion",
                      key: ScryptKey | None = None) -> SecretBundle:
    """Open a format-3 companion with the passphrase that opened its account keystore (``account_key``;
    ``key``: that file's scrypt derivation, reused when the companion names the same parameters).
    Authentication failing now means the companion was modified (or the V3 file re-encrypted under
    another passphrase): :class:`KeystoreTamperedError`."""
    try:
        if doc["version"] != COMPANION_VERSION:
            raise KeystoreFormatError(f"{source}: keystore format version {doc['version']!r} is not a companion")
        c = doc["crypto"]
        if c["kdf"] != "scrypt" or c["cipher"] != "aes-256-gcm" or \
                c.get("cipherkey") != "hkdf-sha256:" + COMPANION_KEY_INFO.decode():
            raise KeystoreFormatError(f"{source}: unsupported kdf/cipher {c['kdf']}/{c['cipher']}/{c.get('cipherkey')}")
        try:
            key = key.for_params(passphrase, c["kdfparams"]) if key else ScryptKey.derive(passphrase, c["kdfparams"])
        except KeystoreFormatError as exc:
            raise KeystoreFormatError(f"{source}: {exc}") from None
        cipher = AES.new(_companion_cipher_key(key), AES.MODE_GCM, nonce=bytes.fromhex(c["nonce"]))
        cipher.update(_companion_aad(doc["public"]))
        plain = cipher.decrypt_and_verify(bytes.fromhex(c["ciphertext"]), bytes.fromhex(c["tag"]))
    except KeystoreError:
        raise
    except ValueError as exc:
        raise KeystoreTamperedError(
            f"{source}: wrong passphrase or the file was modified: the passphrase opens the account keystore but "
            "not this companion (authentication failed: the companion, its public section, or the account "
            "keystore's passphrase was changed); nothing was changed") from exc
    except (KeyError, TypeError) as exc:
        raise KeystoreFormatError(f"{source}: malformed keystore, missing or bad field {exc}") from exc
    try:
        d = json.loads(plain)
        current = d["versions"][-1]
        keys = [SecretBundle(bytes.fromhex(v["account_key"]) if v is not current else account_key,
                             bytes.fromhex(v["umbral_seed"]), bytes.fromhex(v["peks_key"]), d["real_identity"],
                             int(v["key_version"])) for v in d["versions"]]
        last = keys[-1]
        return SecretBundle(last.account_key, last.umbral_seed, last.peks_key, last.real_identity, last.key_version,
                            tuple(keys[:-1]))
    except KeystoreError as exc:
        raise KeystoreFormatError(f"{source}: {exc}") from None
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise KeystoreFormatError(f"{source}: malformed secret payload ({type(exc).__name__})") from None
