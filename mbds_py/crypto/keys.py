"""A participant's key set: Ethereum account, Umbral PRE keys, PEKS keys.

The secrets are three independent 32-byte values, as the KMC keystore holds
them (``SecretBundle``): the secp256k1 account key, the Umbral
``SecretKeyFactory`` seed and the PEKS scalar.  Every Umbral key is derived
from the one factory:

* ``mbds/identity`` — the identity PRE key registered on-chain; doctors encrypt
  new records to it (Algorithm 1);
* ``mbds/record/<record id>`` — one key per confirmed record, so a
  re-encryption key made for one record opens no other (ARCHITECTURE §5);
* ``mbds/kfrag-signing`` — signs the kfrags the patient hands to proxies;
* ``mbds/keyword-set-tag`` (a secret, not a key pair) — keys the PRF that names a
  record's keyword set on chain (:func:`~mbds_py.crypto.keywords.keyword_set_tag`),
  so nobody without it can test keyword guesses against the audit trail.

A participant has one such key set per **key version** (1 at enrolment, +1 per
rotation, as ``IdentityRegistry.keyVersion``).  :class:`PatientPublicKeys`
carries the version, so every record says which version it was made under;
:class:`PatientKeyring` holds every version of one participant and picks the
one a record needs (per-record keys, kfrags and trapdoors derive from it),
while new records use the current one.

Patients, doctors and other delegatees all use this type for their own keys.
Nothing secret appears in ``repr`` and the objects refuse to be pickled;
``to_bytes`` is the one explicit export (keep it in a keystore).
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Iterable

import umbral_pre

from ._codec import KIND_PATIENT_KEYS, KIND_PATIENT_SECRETS, Reader, Writer
from .errors import KeyVersionError, MalformedDataError
from .keywords import KeywordLike, keyword_set_tag
from .peks import GROUP_ORDER, PeksPublicKey, PeksSecretKey, Trapdoor
from .signing import EthSigner, address_bytes, checksum_address

IDENTITY_KEY_LABEL = b"mbds/identity"
RECORD_KEY_PREFIX = b"mbds/record/"
KFRAG_SIGNING_LABEL = b"mbds/kfrag-signing"
KEYWORD_SET_TAG_LABEL = b"mbds/keyword-set-tag"
UMBRAL_PUBLIC_KEY_SIZE = 33
MAX_RECORD_LABEL = 256
MAX_KEY_VERSION = 2**32 - 1


def umbral_public_key(value: umbral_pre.PublicKey | bytes, what: str = "Umbral public key") -> umbral_pre.PublicKey:
    """Accept an Umbral ``PublicKey`` or its 33-byte compressed encoding."""
    if isinstance(value, umbral_pre.PublicKey):
        return value
    if not isinstance(value, (bytes, bytearray)) or len(value) != UMBRAL_PUBLIC_KEY_SIZE:
        raise MalformedDataError(f"{what}: expected a PublicKey or {UMBRAL_PUBLIC_KEY_SIZE} compressed bytes")
    try:
        return umbral_pre.PublicKey.from_compressed_bytes(bytes(value))
    except ValueError as exc:
        raise MalformedDataError(f"{what}: not a secp256k1 point ({exc})") from None


def record_key_label(record_label: bytes) -> bytes:
    """The factory label of a record's key (``record_label`` is normally the 32-byte record id)."""
    if not isinstance(record_label, (bytes, bytearray)) or not 0 < len(record_label) <= MAX_RECORD_LABEL:
        raise ValueError(f"record label must be 1-{MAX_RECORD_LABEL} bytes (normally the 32-byte record id)")
    return RECORD_KEY_PREFIX + bytes(record_label)


@dataclass(frozen=True)
class PatientPublicKeys:
    """PK_p: what the registry publishes for a participant (address, identity PRE key, PEKS key, key version).

    Encoding: key version 1 keeps the original encoding (format 1, no version field), so records made
    before key rotation existed keep their bytes and record ids; a later version is format 2 with the
    version as a u32 after the keys.  Each value has exactly one encoding.
    """

    address: str
    pre_key: bytes
    peks_key: PeksPublicKey
    key_version: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", checksum_address(self.address, "patient address"))
        umbral_public_key(self.pre_key, "patient PRE key")  # validates
        object.__setattr__(self, "pre_key", bytes(self.pre_key))
        if not isinstance(self.peks_key, PeksPublicKey):
            raise MalformedDataError("patient PEKS key: expected a PeksPublicKey")
        v = self.key_version
        if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= MAX_KEY_VERSION:
            raise MalformedDataError(f"patient key version: expected an integer 1..{MAX_KEY_VERSION}, got {v!r}")

    @classmethod
    def from_participant(cls, participant: Any) -> "PatientPublicKeys":
        """From any record with ``address``, ``pre_key`` and ``peks_key`` bytes and optionally ``key_version``
        (e.g. ``identity.Participant``, a registry entry)."""
        return cls(participant.address, participant.pre_key, PeksPublicKey.from_bytes(participant.peks_key),
                   int(getattr(participant, "key_version", 1)))

    @cached_property
    def pre_public_key(self) -> umbral_pre.PublicKey:
        return umbral_pre.PublicKey.from_compressed_bytes(self.pre_key)

    def to_bytes(self) -> bytes:
        w = Writer(KIND_PATIENT_KEYS, version=1 if self.key_version == 1 else 2)
        w.raw(address_bytes(self.address)).raw(self.pre_key).raw(self.peks_key.to_bytes())
        if self.key_version != 1:
            w.raw(self.key_version.to_bytes(4, "big"))
        return w.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "PatientPublicKeys":
        fmt = bytes(data[5:6]) if isinstance(data, (bytes, bytearray, memoryview)) else b""
        version = 2 if fmt == b"\x02" else 1
        r = Reader(data, "patient public keys", KIND_PATIENT_KEYS, version=version)
        address = checksum_address(r.raw(20))
        pre = r.raw(UMBRAL_PUBLIC_KEY_SIZE)
        peks = PeksPublicKey.from_bytes(r.raw(48))
        key_version = 1
        if version == 2:
            key_version = int.from_bytes(r.raw(4), "big")
            if key_version < 2:
                raise r.fail(f"key version {key_version} must use encoding format 1")
        r.done()
        return cls(address, pre, peks, key_version)

    def __repr__(self) -> str:
        return f"PatientPublicKeys({self.address}, v{self.key_version}, pre={self.pre_key.hex()[:16]}…)"


class PatientSecrets:
    """SK_p: account key + Umbral factory seed + PEKS key, with every key derived once."""

    __slots__ = ("_account_key", "_umbral_seed", "_peks", "_factory", "_identity_sk", "_signer",
                 "_kfrag_sk", "_kfrag_vk", "_public", "_key_version", "_tag_key")

    def __init__(self, account_key: bytes, umbral_seed: bytes, peks_key: PeksSecretKey | bytes, *,
                 key_version: int = 1):
        if not isinstance(account_key, (bytes, bytearray)) or len(account_key) != 32:
            raise MalformedDataError("account key: expected 32 bytes")
        if not isinstance(umbral_seed, (bytes, bytearray)) or len(umbral_seed) != 32:
            raise MalformedDataError("Umbral seed: expected 32 bytes")
        self._account_key = bytes(account_key)
        self._umbral_seed = bytes(umbral_seed)
        self._peks = peks_key if isinstance(peks_key, PeksSecretKey) else PeksSecretKey.from_bytes(peks_key)
        self._signer = EthSigner(self._account_key)
        self._factory = umbral_pre.SecretKeyFactory.from_secure_randomness(self._umbral_seed)
        self._identity_sk = self._factory.make_key(IDENTITY_KEY_LABEL)
        self._kfrag_sk = self._factory.make_key(KFRAG_SIGNING_LABEL)
        self._kfrag_vk = self._kfrag_sk.public_key()
        self._key_version = key_version
        self._tag_key: bytes | None = None
        self._public = PatientPublicKeys(self._signer.address,
                                         self._identity_sk.public_key().to_compressed_bytes(),
                                         self._peks.public_key(), key_version)

    @classmethod
    def generate(cls) -> "PatientSecrets":
        return cls(_valid_secp256k1_key(), secrets.token_bytes(32), PeksSecretKey.generate())

    @classmethod
    def derive(cls, seed: bytes) -> "PatientSecrets":
        """Deterministic key set from one 32-byte seed (simulations, tests, recovery phrases)."""
        if not isinstance(seed, (bytes, bytearray)) or len(seed) != 32:
            raise MalformedDataError("seed: expected 32 bytes")
        root = umbral_pre.SecretKeyFactory.from_secure_randomness(bytes(seed))
        account = root.make_key(b"mbds/derive/account").to_be_bytes()
        umbral_seed = root.make_secret(b"mbds/derive/umbral")[:32]
        alpha = int.from_bytes(root.make_secret(b"mbds/derive/peks"), "big") % GROUP_ORDER
        if alpha == 0:  # pragma: no cover - probability 2^-255
            raise MalformedDataError("seed derives a zero PEKS key; use another seed")
        return cls(account, umbral_seed, PeksSecretKey(alpha))

    # --- export ---

    def to_bytes(self) -> bytes:
        """The secrets (6-byte header + account key + Umbral seed + PEKS key).  Keep them encrypted."""
        return (Writer(KIND_PATIENT_SECRETS).raw(self._account_key).raw(self._umbral_seed)
                .raw(self._peks.to_bytes()).getvalue())

    @classmethod
    def from_bytes(cls, data: bytes) -> "PatientSecrets":
        r = Reader(data, "patient secrets", KIND_PATIENT_SECRETS)
        account, seed, peks = r.raw(32), r.raw(32), r.raw(32)
        r.done()
        return cls(account, seed, peks)

    # --- public side ---

    @property
    def address(self) -> str:
        return self._signer.address

    @property
    def public_keys(self) -> PatientPublicKeys:
        return self._public

    @property
    def key_version(self) -> int:
        """The key version this set is (1 at enrolment, +1 per rotation)."""
        return self._key_version

    @property
    def kfrag_verifying_key(self) -> umbral_pre.PublicKey:
        """The key proxies verify this participant's kfrags against."""
        return self._kfrag_vk

    def record_public_key(self, record_label: bytes) -> umbral_pre.PublicKey:
        return self.record_secret_key(record_label).public_key()

    # --- secret side (never logged) ---

    @property
    def signer(self) -> EthSigner:
        """Signs EIP-712 digests with the account key."""
        return self._signer

    @property
    def peks(self) -> PeksSecretKey:
        return self._peks

    @property
    def identity_secret_key(self) -> umbral_pre.SecretKey:
        """Opens what doctors encrypted to the registered PRE key; receives re-encrypted records."""
        return self._identity_sk

    @property
    def kfrag_signer(self) -> umbral_pre.Signer:
        return umbral_pre.Signer(self._kfrag_sk)

    def record_secret_key(self, record_label: bytes) -> umbral_pre.SecretKey:
        """The per-record key (deterministic from the factory seed and the record label)."""
        return self._factory.make_key(record_key_label(record_label))

    def trapdoor(self, keyword: KeywordLike) -> Trapdoor:
        """T_w for a search (cached per keyword)."""
        return self._peks.trapdoor(keyword)

    def keyword_set_tag(self, keywords: Iterable[KeywordLike]) -> bytes:
        """The keyed tag of a keyword set (``keywordSetHash`` of kfrag deposits, audits and ``KeywordSet``
        grants) under this key version: HMAC-SHA256 keyed by a secret the Umbral factory derives with the label
        ``mbds/keyword-set-tag``, so it is deterministic per key version and useless to anyone without it."""
        if self._tag_key is None:
            self._tag_key = bytes(self._factory.make_secret(KEYWORD_SET_TAG_LABEL)[:32])
        return keyword_set_tag(self._tag_key, keywords)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PatientSecrets):
            return NotImplemented
        return self._key_version == other._key_version and hmac.compare_digest(self.to_bytes(), other.to_bytes())

    def __hash__(self) -> int:
        return hash(self._public)

    def __repr__(self) -> str:
        return f"PatientSecrets({self.address})" if self._key_version == 1 else \
            f"PatientSecrets({self.address}, v{self._key_version})"

    def __reduce__(self):
        raise TypeError("PatientSecrets is not picklable: export it explicitly with to_bytes() into a keystore")


class PatientKeyring:
    """Every key version of one participant, oldest first; the newest is the current one.

    New records are encrypted to the current version (the one registered on chain); a record made
    under an earlier version names it (``header.patient.key_version``) and is opened, re-keyed, shared
    and searched with that version's keys (:meth:`for_keys`).  A retired (e.g. compromised) version
    stays here only so its records stay readable: it is no longer registered, so no new record uses it.
    """

    __slots__ = ("_versions",)

    def __init__(self, versions: "Iterable[PatientSecrets]"):
        by_version: dict[int, PatientSecrets] = {}
        for s in versions:
            if not isinstance(s, PatientSecrets):
                raise TypeError(f"a keyring holds PatientSecrets, got {type(s).__name__}")
            if s.key_version in by_version:
                raise MalformedDataError(f"key version {s.key_version} given twice")
            by_version[s.key_version] = s
        if not by_version:
            raise MalformedDataError("a keyring needs at least one key version")
        self._versions = dict(sorted(by_version.items()))

    @property
    def current(self) -> PatientSecrets:
        """The newest key version: the one registered on chain, used for new records and signatures."""
        return self._versions[max(self._versions)]

    @property
    def versions(self) -> tuple[int, ...]:
        return tuple(self._versions)

    def __iter__(self):
        return iter(self._versions.values())

    def __len__(self) -> int:
        return len(self._versions)

    def version(self, key_version: int) -> PatientSecrets:
        try:
            return self._versions[key_version]
        except KeyError:
            raise KeyVersionError(f"key version {key_version} is not in this keyring (it holds "
                                  f"{', '.join(map(str, self._versions))}); was the keystore replaced?") from None

    def for_keys(self, public: PatientPublicKeys) -> PatientSecrets:
        """The key version a record was made under (``public`` = the record's patient keys)."""
        secrets_ = self.version(public.key_version)
        if secrets_.public_keys != public:
            raise KeyVersionError(f"the record names key version {public.key_version} of {public.address}, but "
                                  "this keyring's version differs (another participant's record?)")
        return secrets_

    def trapdoors(self, keyword: KeywordLike) -> list[Trapdoor]:
        """T_w under every key version, newest first (records of each version match their own)."""
        return [self._versions[v].trapdoor(keyword) for v in sorted(self._versions, reverse=True)]

    def keyword_set_tags(self, keywords: Iterable[KeywordLike]) -> list[bytes]:
        """The keyword set's tag under every key version, newest first (records of each version carry their
        own: a ``KeywordSet`` grant covering records of several versions names each version's tag)."""
        words = list(keywords)
        return [self._versions[v].keyword_set_tag(words) for v in sorted(self._versions, reverse=True)]

    def __repr__(self) -> str:
        return f"PatientKeyring({self.current.address}, versions={list(self._versions)})"

    def __reduce__(self):
        raise TypeError("PatientKeyring is not picklable: keep it in a keystore")


def as_keyring(keys: "PatientSecrets | PatientKeyring") -> PatientKeyring:
    """A keyring from a keyring or a single key set."""
    if isinstance(keys, PatientKeyring):
        return keys
    if isinstance(keys, PatientSecrets):
        return PatientKeyring([keys])
    raise TypeError(f"expected PatientSecrets or PatientKeyring, got {type(keys).__name__}")


def _valid_secp256k1_key() -> bytes:
    return umbral_pre.SecretKey.random().to_be_bytes()


__all__ = [
    "IDENTITY_KEY_LABEL", "KEYWORD_SET_TAG_LABEL", "KFRAG_SIGNING_LABEL", "MAX_KEY_VERSION", "RECORD_KEY_PREFIX",
    "PatientKeyring",
    "PatientPublicKeys", "PatientSecrets", "as_keyring", "record_key_label", "umbral_public_key",
]
