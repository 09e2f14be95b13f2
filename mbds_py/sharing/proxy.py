"""The re-encryption proxy run by each health-authority center (paper Algorithm 3, design §3 step 5, §5).

``python -m mbds_py.sharing.proxy --config F --port P`` (``mbds proxy run``); the
proxy's key set (account + Umbral + PEKS, :class:`~mbds_py.crypto.PatientSecrets`)
comes from an encrypted keystore file (``--keystore F``) whose passphrase is read once from a
file descriptor (``--passphrase-fd N``, e.g. 0) or, for the devnet launcher, the key set itself over an
inherited pipe (``--key-fd N``); never from the environment or the command line (see :mod:`mbds_py.service_keys`).

What one proxy does:

* **search** (``POST /v1/search``) — the doctor hands over a *search token*
  the patient signed for this proxy (proxy, patient, grantee, grant, expiry and
  the PEKS trapdoors encrypted to this proxy's PRE key: the doctor never holds
  a trapdoor in clear), with his own signature over the request (timestamp and
  a nonce kept in the SQLite store, so a replay is refused across restarts).
  The proxy checks the grant is live on chain, caps the work of the request,
  decrypts the trapdoors and tests that patient's summary items from a
  consortium node (a conjunctive query: every trapdoor must match one of an
  item's keywords),
  proves each hit's item against the header committed in ``ConsortiumIndex``,
  fetches the slip from the private chain's replicas and proves it against the
  ``SlipLedger`` root (``verify_receipt``), then checks the slip *is* the item
  (patient, H(M), keyword ciphertexts, height).  It returns the locations and
  receipts of the hits the grantee may read now (``checkAccess`` per hit).
* **key custody** (``POST /v1/kfrags``) — the patient deposits, for one
  (record, grantee, revocation epoch), this proxy's share of the m-of-n Umbral
  kfrags and the record's storage address encrypted to the proxy's PRE key
  (Algorithm 3 step 3).  The deposit is signed by the patient's account and
  the kfrag is verified against the record key and kfrag-verifying key the
  patient signed into the slip, and the grantee's registered PRE key.
* **re-encryption** (``POST /v1/reencrypt``) — a doctor-signed request for one
  record.  Before **every** re-encryption: abnormal-rate check (a requester far
  above its normal rate is suspended on chain), ``checkAccess`` on chain
  (window, action, scope, suspension) and the key's epoch must be the current
  one; then C_M is fetched from storage and checked against the slip's hash,
  the capsule is re-encrypted and the access is recorded on chain
  (``recordAccess`` re-checks atomically and reverts if not allowed); only then
  does the capsule fragment leave the proxy.
* **revocation** — a watcher follows ``AccessRevoked`` / ``AllAccessRevoked``
  and deletes the kfrags the revoke covers; keys of the pair's other records
  become stale (older epoch) and are refused until the patient re-issues them.

One proxy alone cannot open anything: it holds one kfrag of an m-of-n split
(default 2-of-3) and never sees the plaintext.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import signal
import socket
import sqlite3
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Collection
from dataclasses import asdict, dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any, Sequence

import requests
from aiohttp import web

from ..crypto import PatientSecrets, PeksCiphertext, Trapdoor, load_kfrag, match_all, pre_decrypt, reencrypt
from ..crypto._hash import keccak256 as keccak
from ..crypto.errors import CiphertextMismatchError
from ..crypto.peks import parse_ciphertexts
from ..crypto.pre import UmbralCiphertext
from ..crypto.signing import Eip712Domain, recover_address
from ..cli_options import proxy_arguments
from ..errors import (ChainError, ConfigError, ContractRevert, CryptoError, IntegrityError, MBDSError, PolicyDenied,
                      StorageError)
from ..listen import bind_listener, inherited_sockets, listener
from ..web import (Handler, RequestError, Server, blocking, json_response, make_app,
                   read_json_object)
from .policy import ZERO32, Action, Reason, Scope

log = logging.getLogger("mbds.proxy")

MARKER = "mbds_py.sharing.proxy"
DEFAULT_THRESHOLD = 2
MAX_BODY = 4 * 1024 * 1024

# Domain tags of what proxies and their clients sign (each digest names the proxy it is for).
TAG_INFO = b"MBDS proxy info v1"
TAG_DEPOSIT = b"MBDS proxy kfrag deposit v1"
TAG_READ = b"MBDS proxy re-encryption request v1"
TAG_TOKEN = b"MBDS proxy search token v1"
TAG_SEARCH = b"MBDS proxy search request v1"


# ---------------------------------------------------------------------------------------------
# refusals
# ---------------------------------------------------------------------------------------------


class Refusal(str, Enum):
    """Why a proxy refused; the policy reasons keep the names of :class:`Reason`."""

    NO_GRANT = "no-grant"
    NOT_YET_VALID = "not-yet-valid"
    EXPIRED = "expired"
    ACTION_NOT_ALLOWED = "action-not-allowed"
    REVOKED = "revoked"
    SUSPENDED = "suspended"
    OUT_OF_SCOPE = "out-of-scope"
    STALE_EPOCH = "stale-epoch"  # the key held is for an older revocation epoch
    NO_KEY = "no-key"  # allowed on chain, but the patient has not deposited a key with this proxy
    INTEGRITY = "integrity"  # stored ciphertext or slip does not match what was confirmed
    UNAUTHENTICATED = "unauthenticated"
    BAD_REQUEST = "bad-request"
    UNAVAILABLE = "unavailable"  # chain, storage or replicas did not answer
    REPLAYED = "replayed"  # the request's nonce was seen before (the cache survives restarts)
    WRONG_PROXY = "wrong-proxy"  # a search token issued for another proxy
    WRONG_GRANTEE = "wrong-grantee"  # a search not signed by the grantee the token names
    TOKEN_EXPIRED = "token-expired"  # the search token's expiry has passed
    TOO_MANY_TRAPDOORS = "too-many-trapdoors"  # over the proxy's cap of trapdoors per search
    TOO_MANY_ITEMS = "too-many-items"  # over the proxy's cap of items tested by one search

    @classmethod
    def of(cls, reason: Reason) -> "Refusal":
        return _BY_REASON[Reason(reason)]

    @property
    def http_status(self) -> int:
        return _HTTP.get(self, 403)


_BY_REASON = {
    Reason.NO_GRANT: Refusal.NO_GRANT, Reason.NOT_YET_VALID: Refusal.NOT_YET_VALID, Reason.EXPIRED: Refusal.EXPIRED,
    Reason.ACTION_NOT_ALLOWED: Refusal.ACTION_NOT_ALLOWED, Reason.REVOKED: Refusal.REVOKED,
    Reason.GRANTEE_SUSPENDED: Refusal.SUSPENDED, Reason.OUT_OF_SCOPE: Refusal.OUT_OF_SCOPE,
}
_HTTP = {Refusal.STALE_EPOCH: 409, Refusal.NO_KEY: 409, Refusal.INTEGRITY: 422, Refusal.UNAUTHENTICATED: 401,
         Refusal.BAD_REQUEST: 400, Refusal.UNAVAILABLE: 503, Refusal.REPLAYED: 401, Refusal.WRONG_PROXY: 421,
         Refusal.TOKEN_EXPIRED: 401, Refusal.TOO_MANY_TRAPDOORS: 413, Refusal.TOO_MANY_ITEMS: 413}
_HINTS = {
    Refusal.STALE_EPOCH: "the key this proxy holds is for an older revocation epoch; the patient must re-issue it",
    Refusal.NO_KEY: "the patient has not deposited a re-encryption key for this record and grantee here",
    Refusal.INTEGRITY: "the stored ciphertext or slip does not match what the patient confirmed",
    Refusal.REPLAYED: "replayed request (nonce already used); sign a new request",
    Refusal.WRONG_PROXY: "the search token was issued for another proxy; send each proxy its own token",
    Refusal.WRONG_GRANTEE: "the search is not signed by the grantee the patient issued the token to",
    Refusal.TOKEN_EXPIRED: "the search token has expired; ask the patient for a new one",
    Refusal.TOO_MANY_TRAPDOORS: "too many trapdoors in one search; split the query",
    Refusal.TOO_MANY_ITEMS: "the search would test more items than this proxy allows in one request",
}


class ProxyRefused(PolicyDenied):
    """A proxy refused a request; ``code`` is the :class:`Refusal`, ``proxy`` who refused."""

    def __init__(self, code: Refusal | str, message: str = "", *, proxy: str = ""):
        self.code = Refusal(code)
        self.proxy = proxy
        hint = _HINTS.get(self.code) or next((r.message for r, c in _BY_REASON.items() if c is self.code), "")
        text = message or hint or self.code.value
        super().__init__(f"{'proxy ' + proxy + ': ' if proxy else ''}refused ({self.code.value}): {text}")

    @property
    def reason(self) -> Reason | None:
        """The policy reason, when the refusal is the policy's."""
        return next((r for r, c in _BY_REASON.items() if c is self.code), None)

    def as_json(self) -> dict[str, Any]:
        return {"error": str(self), "code": self.code.value}


# ---------------------------------------------------------------------------------------------
# configuration (no secrets)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainRef:
    """A private chain as a proxy (or client) reaches it: replica APIs and the SlipLedger it anchors in."""

    name: str
    chain_id: int
    rpc_url: str
    slip_ledger: str
    api_urls: tuple[str, ...]

    @property
    def domain(self) -> Eip712Domain:
        """EIP-712 domain of the records on this chain (record id = slip id)."""
        return Eip712Domain(self.chain_id, self.slip_ledger)


@dataclass(frozen=True)
class ProxyConfig:
    """One authority center's proxy."""

    name: str  # the authority running it, e.g. "nha"
    consortium_rpc: str
    access_policy: str
    consortium_index: str
    consortium_nodes: tuple[str, ...]
    private_chains: tuple[ChainRef, ...]
    storage: tuple[str, ...]
    storage_replicas: int = 1
    host: str = "127.0.0.1"
    port: int = 0
    data_dir: str = ".mbds/proxies"
    rate_limit: int = 60  # re-encryptions per requester per window before suspension
    rate_window: float = 60.0
    watch_interval: float = 0.5
    request_skew: float = 300.0  # seconds a signed request stays valid
    max_search_trapdoors: int = 16  # trapdoors (all key versions together) one search may carry
    max_search_items: int = 50_000  # summary items x trapdoor sets one search may test
    max_token_ttl: int = 7 * 86400  # a search token valid for longer is refused

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @classmethod
    def load(cls, path: str | Path) -> "ProxyConfig":
        try:
            raw = json.loads(Path(path).read_text())
            raw["private_chains"] = tuple(ChainRef(**{**c, "api_urls": tuple(c["api_urls"])})
                                          for c in raw["private_chains"])
            raw["consortium_nodes"] = tuple(raw["consortium_nodes"])
            raw["storage"] = tuple(raw["storage"])
            return cls(**raw)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"bad proxy configuration: {exc}", path=str(path)) from exc

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(asdict(self), indent=2))


# ---------------------------------------------------------------------------------------------
# what is signed (pure)
# ---------------------------------------------------------------------------------------------


def _u64(v: int) -> bytes:
    return int(v).to_bytes(8, "big")


def _addr(address: str) -> bytes:
    return bytes.fromhex(address[2:])


def info_digest(proxy: str, name: str, pre_key: bytes) -> bytes:
    """What a proxy signs to bind its PRE key to its (on-chain registered) account."""
    return keccak(TAG_INFO + _addr(proxy) + pre_key + name.encode())


def deposit_digest(proxy: str, patient: bytes, grantee: bytes, record_id: bytes, chain_id: int, epoch: int,
                   keyword_set_hash: bytes, kfrag: bytes, encrypted_address: bytes, timestamp: int) -> bytes:
    """What the patient signs when depositing a kfrag with ``proxy``."""
    return keccak(TAG_DEPOSIT + _addr(proxy) + patient + grantee + record_id + _u64(chain_id) + _u64(epoch)
                  + keyword_set_hash + keccak(kfrag) + keccak(encrypted_address) + _u64(timestamp))


def read_digest(proxy: str, patient: bytes, grantee: bytes, record_id: bytes, chain_id: int, action: int,
                timestamp: int, nonce: bytes) -> bytes:
    """What the grantee signs to ask ``proxy`` for one re-encryption."""
    return keccak(TAG_READ + _addr(proxy) + patient + grantee + record_id + _u64(chain_id) + bytes([int(action)])
                  + _u64(timestamp) + nonce)


def token_digest(proxy: str, patient: bytes, grantee: bytes, scope: int, target: bytes, expires_at: int,
                 encrypted_trapdoors: bytes) -> bytes:
    """What the patient signs to let ``grantee`` search her records through ``proxy`` under one grant
    (``scope``/``target``) until ``expires_at``; the trapdoors are encrypted to that proxy's PRE key."""
    return keccak(TAG_TOKEN + _addr(proxy) + patient + grantee + bytes([int(scope)]) + target + _u64(expires_at)
                  + keccak(encrypted_trapdoors))


def search_digest(proxy: str, token: bytes, timestamp: int, nonce: bytes) -> bytes:
    """What the grantee signs to use the search token whose digest is ``token`` at ``proxy`` once."""
    return keccak(TAG_SEARCH + _addr(proxy) + token + _u64(timestamp) + nonce)


def encode_trapdoor_sets(sets: Sequence[Sequence[bytes]]) -> bytes:
    """The plaintext of a token's encrypted trapdoors: one conjunctive query per patient key version."""
    return json.dumps([[_hex(t) for t in one] for one in sets]).encode()


def decode_trapdoor_sets(raw: bytes) -> list[list[Trapdoor]]:
    try:
        doc = json.loads(raw)
        sets = [[Trapdoor.from_bytes(_unhex(t, "trapdoor")) for t in one] for one in doc]
    except (ValueError, TypeError, CryptoError) as exc:
        raise ProxyRefused(Refusal.BAD_REQUEST, f"search token: malformed trapdoors ({exc})") from None
    if not sets or not all(sets):
        raise ProxyRefused(Refusal.BAD_REQUEST, "a search needs at least one trapdoor")
    return sets


def check_search_work(trapdoor_sets: Sequence[Sequence[Any]], items: int | None, config: "ProxyConfig") -> None:
    """The caps on one search's work (pure): trapdoors carried, items x trapdoor sets tested."""
    count = sum(len(one) for one in trapdoor_sets)
    if count > config.max_search_trapdoors:
        raise ProxyRefused(Refusal.TOO_MANY_TRAPDOORS, f"{count} trapdoors in one search, this proxy takes at most "
                                                       f"{config.max_search_trapdoors}; split the query")
    if items is not None and items * len(trapdoor_sets) > config.max_search_items:
        raise ProxyRefused(Refusal.TOO_MANY_ITEMS, f"{items} items x {len(trapdoor_sets)} trapdoor set(s) is over "
                                                   f"this proxy's cap of {config.max_search_items} per search")


@dataclass(frozen=True)
class SearchToken:
    """A patient-signed permission for one grantee to search her records once per signed request at one proxy."""

    proxy: str
    patient: bytes
    grantee: bytes
    scope: int
    target: bytes
    expires_at: int
    encrypted_trapdoors: bytes
    signature: bytes

    @property
    def digest(self) -> bytes:
        return token_digest(self.proxy, self.patient, self.grantee, self.scope, self.target, self.expires_at,
                            self.encrypted_trapdoors)

    def to_json(self) -> dict[str, Any]:
        return {"proxy": self.proxy, "patient": _hex(self.patient), "grantee": _hex(self.grantee),
                "scope": int(self.scope), "target": _hex(self.target), "expires_at": int(self.expires_at),
                "trapdoors": _hex(self.encrypted_trapdoors), "signature": _hex(self.signature)}

    @classmethod
    def from_json(cls, doc: Any) -> "SearchToken":
        if not isinstance(doc, dict):
            raise ProxyRefused(Refusal.BAD_REQUEST, "a search needs the patient's search token (a JSON object)")
        proxy = doc.get("proxy")
        if not isinstance(proxy, str) or len(proxy) != 42:
            raise ProxyRefused(Refusal.BAD_REQUEST, "search token: proxy must be an account address")
        try:
            scope, expires_at = int(doc.get("scope", -1)), int(doc.get("expires_at", 0))
            Scope(scope)
        except (TypeError, ValueError):
            raise ProxyRefused(Refusal.BAD_REQUEST, "search token: bad scope or expiry") from None
        return cls(proxy, _unhex(doc.get("patient"), "patient", 32), _unhex(doc.get("grantee"), "grantee", 32),
                   scope, _unhex(doc.get("target"), "target", 32), expires_at,
                   _unhex(doc.get("trapdoors"), "trapdoors"), _unhex(doc.get("signature"), "token signature", 65))


def _hex(b: bytes) -> str:
    return "0x" + bytes(b).hex()


def _unhex(text: Any, what: str, size: int | None = None) -> bytes:
    if not isinstance(text, str):
        raise ProxyRefused(Refusal.BAD_REQUEST, f"{what}: expected a 0x-hex string")
    try:
        raw = bytes.fromhex(text[2:] if text.startswith("0x") else text)
    except ValueError:
        raise ProxyRefused(Refusal.BAD_REQUEST, f"{what}: not hex") from None
    if size is not None and len(raw) != size:
        raise ProxyRefused(Refusal.BAD_REQUEST, f"{what}: expected {size} bytes, got {len(raw)}")
    return raw


# ---------------------------------------------------------------------------------------------
# key custody (SQLite, survives restarts)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeldKey:
    patient: bytes
    grantee: bytes
    record_id: bytes
    epoch: int
    chain_id: int
    kfrag: bytes
    encrypted_address: bytes
    keyword_set_hash: bytes


class KeyStore:
    """kfrags by (patient, grantee, record, epoch); the last seen chain block for the revocation watcher."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # WAL: a commit survives a process crash without an fsync each
        self.db.execute("CREATE TABLE IF NOT EXISTS kfrag (patient BLOB, grantee BLOB, record BLOB, epoch INTEGER, "
                        "chain_id INTEGER, kfrag BLOB, address BLOB, kwhash BLOB, "
                        "PRIMARY KEY (patient, grantee, record, epoch))")
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER)")
        self.db.execute("CREATE TABLE IF NOT EXISTS nonce (nonce BLOB PRIMARY KEY, seen REAL)")
        self.lock = threading.Lock()
        self._pruned = 0.0

    def use_nonce(self, nonce: bytes, now: float, keep: float) -> bool:
        """Record ``nonce`` as used; False if it was used within the last ``keep`` seconds (a replay).
        Kept in SQLite, so a proxy restart does not forget which requests it answered."""
        with self.lock:
            if now - self._pruned > keep / 10:
                self.db.execute("DELETE FROM nonce WHERE seen < ?", (now - keep,))
                self._pruned = now
            try:
                self.db.execute("INSERT INTO nonce VALUES (?,?)", (bytes(nonce), now))
            except sqlite3.IntegrityError:
                row = self.db.execute("SELECT seen FROM nonce WHERE nonce=?", (bytes(nonce),)).fetchone()
                if row is not None and row[0] >= now - keep:
                    return False
                self.db.execute("INSERT OR REPLACE INTO nonce VALUES (?,?)", (bytes(nonce), now))
            return True

    def put(self, k: HeldKey) -> None:
        with self.lock:
            self.db.execute("INSERT OR REPLACE INTO kfrag VALUES (?,?,?,?,?,?,?,?)",
                            (k.patient, k.grantee, k.record_id, k.epoch, k.chain_id, k.kfrag, k.encrypted_address,
                             k.keyword_set_hash))
            self.db.execute("DELETE FROM kfrag WHERE patient=? AND grantee=? AND record=? AND epoch<?",
                            (k.patient, k.grantee, k.record_id, k.epoch))

    def newest(self, patient: bytes, grantee: bytes, record_id: bytes) -> HeldKey | None:
        with self.lock:
            row = self.db.execute("SELECT * FROM kfrag WHERE patient=? AND grantee=? AND record=? "
                                  "ORDER BY epoch DESC LIMIT 1", (patient, grantee, record_id)).fetchone()
        return None if row is None else HeldKey(*row[:3], row[3], row[4], row[5], row[6], row[7])

    def delete(self, patient: bytes, grantee: bytes, *, record_id: bytes | None = None,
               keyword_set_hash: bytes | None = None) -> int:
        sql, args = "DELETE FROM kfrag WHERE patient=? AND grantee=?", [patient, grantee]
        if record_id is not None:
            sql, args = sql + " AND record=?", args + [record_id]
        if keyword_set_hash is not None:
            sql, args = sql + " AND kwhash=?", args + [keyword_set_hash]
        with self.lock:
            return self.db.execute(sql, args).rowcount

    def count(self) -> int:
        with self.lock:
            return self.db.execute("SELECT COUNT(*) FROM kfrag").fetchone()[0]

    def get_meta(self, key: str, default: int = 0) -> int:
        with self.lock:
            row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return default if row is None else int(row[0])

    def set_meta(self, key: str, value: int) -> None:
        with self.lock:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?,?)", (key, int(value)))


# ---------------------------------------------------------------------------------------------
# abnormal-access detection (pure; the clock is passed in)
# ---------------------------------------------------------------------------------------------


class RateMonitor:
    """Re-encryptions per requester in a sliding window; over ``limit`` is abnormal (paper: access times)."""

    def __init__(self, limit: int, window: float):
        self.limit = limit
        self.window = window
        self._seen: dict[bytes, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, requester: bytes, now: float) -> int:
        """Count one access; returns the count in the window (including this one)."""
        with self._lock:
            q = self._seen.setdefault(requester, deque())
            q.append(now)
            while q and q[0] <= now - self.window:
                q.popleft()
            return len(q)

    def abnormal(self, count: int) -> bool:
        return count > self.limit

    def forget_before(self, requester: bytes, t: float) -> int:
        """Drop the hits before ``t`` (e.g. those a suspension already answered); returns the count left."""
        with self._lock:
            q = self._seen.get(requester, deque())
            while q and q[0] < t:
                q.popleft()
            return len(q)

    def reset(self, requester: bytes) -> None:
        with self._lock:
            self._seen.pop(requester, None)


# ---------------------------------------------------------------------------------------------
# the service
# ---------------------------------------------------------------------------------------------


class AuditSender:
    """The proxy's ``recordAccess``/``recordDenial`` transactions, through its account's shared TxSender.

    The hot path of every re-encryption: no gas estimation (the transaction
    itself re-checks the policy and reverts if the access is not allowed, which
    keeps check and audit atomic), the sender's cached gas price, one broadcast
    and a receipt poll from 2 ms.  A reverted transaction is replayed by the
    sender to decode the contract's custom error; a refusal becomes
    :class:`~mbds_py.sharing.agent.AccessPolicyRefusal`.
    """

    GAS = 250_000
    TIMEOUT = 30.0  # seconds for a receipt
    AUDIT_TYPES = ("uint8", "uint8", "uint64", "address", "uint48")  # AccessRecorded's unindexed fields

    def __init__(self, policy: Any, account: Any):
        from eth_utils import event_signature_to_log_topic

        self.policy = policy
        self.account = account
        self.sender = policy.client.sender(account)  # shared with every other writer from this account
        self.topic = event_signature_to_log_topic("AccessRecorded(bytes32,bytes32,bytes32,uint8,uint8,uint64,address,uint48)")

    def record_access(self, patient: bytes, grantee: bytes, record_id: bytes, keyword_set_hash: bytes, action: int,
                      epoch: int) -> dict[str, Any]:
        """Send ``recordAccess``; the decoded ``AccessRecorded`` or :class:`AccessPolicyRefusal`."""
        from eth_abi import decode as abi_decode

        data = self.policy._methods["recordAccess"].encode(  # noqa: SLF001 - the agent's precomputed selector
            (patient, grantee, record_id, keyword_set_hash, action, epoch))
        tx_hash, receipt = self._send(data, "recordAccess")
        for log_ in receipt["logs"]:
            if log_["topics"] and bytes.fromhex(log_["topics"][0][2:]) == self.topic:
                action_, basis, epoch_, proxy, at = abi_decode(list(self.AUDIT_TYPES), bytes.fromhex(log_["data"][2:]))
                return {"tx": tx_hash, "block": int(receipt["blockNumber"], 16), "epoch": epoch_, "basis": basis,
                        "proxy": self.account.address, "at": at}
        raise MBDSError(f"recordAccess {tx_hash} emitted no AccessRecorded")

    def record_denial(self, patient: bytes, grantee: bytes, record_id: bytes, keyword_set_hash: bytes,
                      action: int) -> str:
        """Send ``recordDenial`` (the audit of a refused attempt); returns the transaction hash."""
        data = self.policy._methods["recordDenial"].encode(  # noqa: SLF001
            (patient, grantee, record_id, keyword_set_hash, action))
        return self._send(data, "recordDenial")[0]

    def _send(self, data: bytes, what: str) -> tuple[str, dict[str, Any]]:
        """Send one transaction to AccessPolicy with a fixed gas limit; its successful receipt (raw form)."""
        from ..errors import ContractRevert
        from .agent import AccessPolicyRefusal

        try:
            receipt = self.sender.transact(self.policy.address, data, gas=self.GAS, contract="AccessPolicy",
                                           function=what, decoder=self.policy.client.errors, timeout=self.TIMEOUT)
        except ContractRevert as revert:
            if revert.error_name in ("AccessPolicyAccessDenied", "AccessPolicyStaleEpoch"):
                raise AccessPolicyRefusal(revert) from None
            raise
        return receipt["transactionHash"], receipt


@dataclass
class VerifiedSlip:
    """A slip proven against its chain's SlipLedger root."""

    chain: ChainRef
    receipt_json: dict[str, Any]
    slip: Any  # TransactionSlip
    height: int


class ProxyService:
    """One proxy's state and its operations (the HTTP handler only parses and answers)."""

    def __init__(self, config: ProxyConfig, keys: PatientSecrets):
        from eth_account import Account

        from ..chain.client import ChainClient
        from ..chain.slip_ledger import SlipLedgerAgent
        from ..consortium.agents import ConsortiumIndexAgent
        from ..storage.client import KuboClient
        from ..storage.replicated import ReplicatedStore
        from .agent import AccessPolicyAgent

        self.config = config
        self.keys = keys
        self.account = Account.from_key(keys.to_bytes()[6:38])  # the key set's account key (after the header)
        if self.account.address != keys.address:
            raise ConfigError("proxy key set: account key does not match its address")
        self.client = ChainClient(config.consortium_rpc, name="consortium")
        self.policy = AccessPolicyAgent(self.client, config.access_policy)
        self.index = ConsortiumIndexAgent(self.client, config.consortium_index)
        self.chains = {c.chain_id: c for c in config.private_chains}
        self.ledgers = {c.chain_id: SlipLedgerAgent(ChainClient(c.rpc_url, name=c.name), c.slip_ledger)
                        for c in config.private_chains}
        replicas = max(1, min(config.storage_replicas, len(config.storage)))
        self.store = ReplicatedStore([KuboClient(u) for u in config.storage], replicas=replicas)
        self.keystore = KeyStore(Path(config.data_dir) / f"{config.name}.sqlite")
        self.monitor = RateMonitor(config.rate_limit, config.rate_window)
        self.session = requests.Session()
        self.audit = AuditSender(self.policy, self.account)
        self._kfrags: dict[tuple[bytes, bytes, bytes, int], Any] = {}  # verified kfrags by key
        self._pre_keys: dict[bytes, tuple[float, bytes]] = {}
        self._slips: dict[tuple[int, bytes], VerifiedSlip] = {}
        self._headers: set[bytes] = set()
        self.items = ItemIndex(self._fetch_items)
        self._ids: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.stats = {"searches": 0, "reencryptions": 0, "refusals": 0, "denials": 0, "deposits": 0, "deleted": 0,
                      "suspensions": 0}

    # -- identity ----------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        return self.account.address

    @property
    def pre_key(self) -> bytes:
        return self.keys.public_keys.pre_key

    def info(self) -> dict[str, Any]:
        sig = self.keys.signer.sign_digest(info_digest(self.address, self.config.name, self.pre_key))
        return {"name": self.config.name, "address": self.address, "pre_key": _hex(self.pre_key),
                "signature": _hex(sig), "access_policy": self.policy.address}

    def status(self) -> dict[str, Any]:
        return {"name": self.config.name, "address": self.address, "keys": self.keystore.count(), **self.stats}

    def _participant(self, address: str) -> bytes:
        pid = self._ids.get(address)
        if pid is None:
            try:
                pid = self.policy.resolve(address)
            except LookupError as exc:
                raise ProxyRefused(Refusal.UNAUTHENTICATED, str(exc)) from None
            self._ids[address] = pid
        return pid

    def _resolve(self, who: Any, what: str) -> bytes:
        if isinstance(who, str) and len(who) == 42:
            try:
                return self.policy.resolve(who)
            except (LookupError, ValueError) as exc:
                raise ProxyRefused(Refusal.BAD_REQUEST, f"{what}: {exc}") from None
        return _unhex(who, what, 32)

    def _fresh(self, timestamp: int, nonce: bytes) -> None:
        """A signed request is answered once: its timestamp within the skew, its nonce never seen in the last
        two skews (the nonces are in the SQLite store: a restarted proxy still refuses a replay)."""
        now = time.time()
        if abs(now - timestamp) > self.config.request_skew:
            raise ProxyRefused(Refusal.UNAUTHENTICATED, "request timestamp is too far from the proxy's clock")
        if not self.keystore.use_nonce(nonce, now, 2 * self.config.request_skew):
            raise ProxyRefused(Refusal.REPLAYED)

    # -- fetching and proving -----------------------------------------------------------------------

    def verified_slip(self, chain_id: int, slip_id: bytes) -> VerifiedSlip:
        """The slip from its chain's replicas, proven against SlipLedger (cached: committed slips never change)."""
        from ..private.client import HospitalClient, NodeUnavailable, verify_receipt
        from ..private.slip import TransactionSlip

        key = (chain_id, slip_id)
        hit = self._slips.get(key)
        if hit is not None:
            return hit
        chain = self.chains.get(chain_id)
        if chain is None:
            raise ProxyRefused(Refusal.BAD_REQUEST, f"unknown private chain {chain_id}")
        try:
            receipt = HospitalClient(chain.api_urls, timeout=5).receipt(_hex(slip_id))
        except (NodeUnavailable, MBDSError) as exc:
            raise ProxyRefused(Refusal.UNAVAILABLE, f"{chain.name}: {exc}") from None
        if receipt is None:
            raise ProxyRefused(Refusal.BAD_REQUEST, f"slip {_hex(slip_id)} is not committed on {chain.name}")
        try:
            verify_receipt(receipt, self.ledgers[chain_id])
            slip = TransactionSlip.from_bytes(receipt.payload)
        except (IntegrityError, MBDSError) as exc:
            raise ProxyRefused(Refusal.INTEGRITY, f"{chain.name}: {exc}") from None
        if receipt.slip_id != slip_id or slip.slip_id(chain.domain) != slip_id:
            raise ProxyRefused(Refusal.INTEGRITY, f"{chain.name} served another slip for {_hex(slip_id)}")
        doc = {"slip_id": _hex(receipt.slip_id), "chain": receipt.chain, "height": receipt.height,
               "header": _receipt_header(receipt), "proof": [_hex(p) for p in receipt.proof],
               "payload": _hex(receipt.payload), "body_cid": receipt.body_cid, "anchor_tx": receipt.anchor_tx}
        verified = VerifiedSlip(chain, doc, slip, receipt.height)
        self._slips[key] = verified
        return verified

    def _verify_item(self, item: dict[str, Any], patient: bytes) -> None:
        """The item's Merkle proof against a header committed in ConsortiumIndex.

        The leaf is recomputed from the item's own fields (and its slip's struct hash), never taken
        from the node's answer: an inner node of the tree cannot pose as an item, and an item whose
        fields were altered does not verify."""
        from ..consortium.blocks import BlockHeader, SummaryItem
        from ..consortium.merkle import verify_item

        header = BlockHeader.decode(_unhex(item["header"], "header"))
        if header.block_hash not in self._headers:
            if self.index.header_hash_at(header.height) != header.block_hash:
                raise ProxyRefused(Refusal.INTEGRITY, f"consortium header {header.height} is not committed on chain")
            self._headers.add(header.block_hash)
        try:
            summary = SummaryItem(patient,
                                  tuple(_unhex(k, "keyword") for k in item["keywords"]),
                                  _unhex(item["hmi_hash"], "hmi_hash", 32), int(item["chain_id"]),
                                  int(item["block_height"]), _unhex(item["slip_id"], "slip_id", 32))
            proven = verify_item([_unhex(p, "proof") for p in item["proof"]], header.merkle_root,
                                 _unhex(item["slip_hash"], "slip_hash", 32), int(item["index"]), summary.struct_hash)
        except (KeyError, TypeError, ValueError) as exc:
            raise ProxyRefused(Refusal.INTEGRITY, f"malformed consortium item: {exc}") from None
        if not proven:
            raise ProxyRefused(Refusal.INTEGRITY, f"item proof does not verify against consortium block "
                                                  f"{header.height}")

    def consortium_items(self, patient: bytes) -> list[dict[str, Any]]:
        """The patient's summary items: cached per patient, refreshed with the items of newer blocks only."""
        return self.items.items(patient)

    def _fetch_items(self, patient: bytes, after: int = 0) -> list[dict[str, Any]]:
        errors = []
        for url in self.config.consortium_nodes:
            try:
                resp = self.session.get(f"{url}/v1/items?patient={_hex(patient)}&after={int(after)}", timeout=10)
            except requests.RequestException as exc:
                errors.append(f"{url}: {exc.__class__.__name__}")
                continue
            if resp.status_code == 200:
                return resp.json().get("items", [])
            errors.append(f"{url}: HTTP {resp.status_code}")
        raise ProxyRefused(Refusal.UNAVAILABLE, f"no consortium node answered: {'; '.join(errors)}")

    # -- Algorithm 3 step 2: search ------------------------------------------------------------------

    def search_request(self, doc: dict[str, Any]) -> dict[str, Any]:
        """``POST /v1/search``: a grantee-signed use of a patient-signed search token, checked in full before
        any trapdoor is decrypted or any item tested."""
        if "trapdoors" in doc and "token" not in doc:
            raise ProxyRefused(Refusal.BAD_REQUEST, "trapdoors in clear are refused: send the search token the "
                                                    "patient issued to you (PatientClient.search_ticket)")
        token = SearchToken.from_json(doc.get("token"))
        if token.proxy.lower() != self.address.lower():
            raise ProxyRefused(Refusal.WRONG_PROXY, f"the token is for proxy {token.proxy}, this is {self.address}")
        tdigest = token.digest
        try:
            issuer = recover_address(tdigest, token.signature)
        except CryptoError as exc:
            raise ProxyRefused(Refusal.UNAUTHENTICATED, f"search token: {exc}") from None
        if self._participant(issuer) != token.patient:
            raise ProxyRefused(Refusal.UNAUTHENTICATED, "the search token is not signed by the patient")
        if not doc.get("signature"):
            raise ProxyRefused(Refusal.UNAUTHENTICATED, "unsigned search: the token's grantee must sign the request")
        ts, nonce = int(doc.get("timestamp", 0)), _unhex(doc.get("nonce"), "nonce", 16)
        try:
            signer = recover_address(search_digest(self.address, tdigest, ts, nonce),
                                     _unhex(doc.get("signature"), "signature", 65))
        except CryptoError as exc:
            raise ProxyRefused(Refusal.UNAUTHENTICATED, str(exc)) from None
        if self._participant(signer) != token.grantee:
            raise ProxyRefused(Refusal.WRONG_GRANTEE)
        now = time.time()
        if token.expires_at <= now:
            raise ProxyRefused(Refusal.TOKEN_EXPIRED)
        if token.expires_at > now + self.config.max_token_ttl:
            raise ProxyRefused(Refusal.BAD_REQUEST, f"search token valid for more than {self.config.max_token_ttl} s")
        self._fresh(ts, nonce)
        scope = Scope(token.scope)
        decision = self.policy.check_access(token.patient, token.grantee,
                                            token.target if scope is Scope.RECORD else ZERO32, Action.READ,
                                            keyword_set_hash=token.target if scope is Scope.KEYWORD_SET else ZERO32)
        if not decision.allowed:
            raise ProxyRefused(Refusal.of(decision.reason))
        try:
            raw = pre_decrypt(self.keys.identity_secret_key, UmbralCiphertext.from_bytes(token.encrypted_trapdoors))
        except CryptoError as exc:
            raise ProxyRefused(Refusal.BAD_REQUEST, f"search token: trapdoors do not open with this proxy's key "
                                                    f"({exc})") from None
        sets = decode_trapdoor_sets(raw)
        check_search_work(sets, None, self.config)
        items = self.consortium_items(token.patient)
        check_search_work(sets, len(items), self.config)
        found: dict[str, dict[str, Any]] = {}
        hit: set[int] = set()
        for trapdoors in sets:  # one set per key version: an item another set matched is not tested again
            for m in self.search(token.patient, trapdoors, items=items, skip=hit):
                found.setdefault(m["slip_id"], m)
        return {"matches": [m for m in found.values() if self._may_read(token.patient, token.grantee, m)]}

    def _may_read(self, patient: bytes, grantee: bytes, match: dict[str, Any]) -> bool:
        """Whether the grantee may read a search hit now: a search under a one-record (or keyword-set) grant
        shows only what that grant opens, not which of the patient's other records match."""
        record_id = _unhex(match["slip_id"], "slip_id", 32)
        held = self.keystore.newest(patient, grantee, record_id)
        kw = held.keyword_set_hash if held else ZERO32
        return self.policy.check_access(patient, grantee, record_id, Action.READ, keyword_set_hash=kw).allowed

    def search(self, patient: bytes, trapdoors: Sequence[Trapdoor], *,
               items: list[dict[str, Any]] | None = None, skip: set[int] | None = None) -> list[dict[str, Any]]:
        """Slips of ``patient`` whose keywords match every trapdoor, each proven on both chains.

        ``skip``: indexes of ``items`` not to test (an earlier query's hits); this search's hits are added."""
        if not trapdoors:
            raise ProxyRefused(Refusal.BAD_REQUEST, "a search needs at least one trapdoor")
        items = self.consortium_items(patient) if items is None else items
        hits = match_items(items, trapdoors, skip=skip or ())
        if skip is not None:
            skip.update(hits)
        out, seen = [], set()
        for i in hits:
            item = items[i]
            slip_id, chain_id = _unhex(item["slip_id"], "slip_id", 32), int(item["chain_id"])
            if (chain_id, slip_id) in seen:
                continue
            self._verify_item(item, patient)
            v = self.verified_slip(chain_id, slip_id)
            keywords = [c.to_bytes() for c in v.slip.encrypted_keywords]
            if (v.slip.patient_id != patient or v.slip.hmi_hash != _unhex(item["hmi_hash"], "hmi_hash")
                    or keywords != [_unhex(k, "keyword") for k in item["keywords"]]
                    or v.height != int(item["block_height"])):
                raise ProxyRefused(Refusal.INTEGRITY, f"consortium item of slip {_hex(slip_id)} does not match "
                                                      f"the slip committed on {v.chain.name}")
            seen.add((chain_id, slip_id))
            out.append({"chain_id": chain_id, "chain": v.chain.name, "block_height": v.height,
                        "slip_id": _hex(slip_id), "consortium_height": int(item["height"]), "receipt": v.receipt_json})
        with self._lock:
            self.stats["searches"] += 1
        return out

    # -- Algorithm 3 step 3: the patient's kfrags -----------------------------------------------------

    def deposit(self, doc: dict[str, Any]) -> dict[str, Any]:
        patient = _unhex(doc.get("patient"), "patient", 32)
        grantee = _unhex(doc.get("grantee"), "grantee", 32)
        record_id = _unhex(doc.get("record_id"), "record_id", 32)
        chain_id, epoch, ts = int(doc.get("chain_id", -1)), int(doc.get("epoch", -1)), int(doc.get("timestamp", 0))
        kw = _unhex(doc.get("keyword_set_hash", _hex(ZERO32)), "keyword_set_hash", 32)
        kfrag_raw = _unhex(doc.get("kfrag"), "kfrag")
        addr_ct = _unhex(doc.get("encrypted_address"), "encrypted_address")
        sig = _unhex(doc.get("signature"), "signature", 65)
        if epoch < 0:
            raise ProxyRefused(Refusal.BAD_REQUEST, "epoch missing")
        digest = deposit_digest(self.address, patient, grantee, record_id, chain_id, epoch, kw, kfrag_raw, addr_ct,
                                ts)
        self._fresh(ts, digest)
        try:
            signer = recover_address(digest, sig)
        except CryptoError as exc:
            raise ProxyRefused(Refusal.UNAUTHENTICATED, str(exc)) from None
        if self._participant(signer) != patient:
            raise ProxyRefused(Refusal.UNAUTHENTICATED, "the deposit is not signed by the patient")
        v = self.verified_slip(chain_id, record_id)
        if v.slip.patient_id != patient:
            raise ProxyRefused(Refusal.BAD_REQUEST, "the record is not this patient's")
        grantee_pre = self._pre_key_of(grantee)
        held = HeldKey(patient, grantee, record_id, epoch, chain_id, kfrag_raw, addr_ct, kw)
        try:
            verified = load_kfrag(kfrag_raw, verifying_pk=v.slip.record.kfrag_verifying_key,
                                  delegating_pk=v.slip.record.record_key, receiving_pk=grantee_pre)
            UmbralCiphertext.from_bytes(addr_ct)
        except CryptoError as exc:
            raise ProxyRefused(Refusal.BAD_REQUEST, f"kfrag rejected: {exc}") from None
        self.keystore.put(held)
        self._kfrags[(patient, grantee, record_id, epoch)] = ((kfrag_raw, grantee_pre), verified)
        with self._lock:
            self.stats["deposits"] += 1
        return {"stored": True, "epoch": epoch}

    def _pre_key_of(self, participant: bytes) -> bytes:
        """A participant's registered PRE key (re-read after 30 s: keys may rotate)."""
        hit = self._pre_keys.get(participant)
        if hit is None or time.monotonic() - hit[0] > 30.0:
            raw = self.client.call(self.policy.registry.functions.participant(participant),
                                   contract="IdentityRegistry")
            hit = (time.monotonic(), bytes(raw[7]))
            self._pre_keys[participant] = hit
        return hit[1]

    def _kfrag(self, held: HeldKey, record: Any) -> Any:
        """The held kfrag as a VerifiedKeyFrag (verified once per key; re-verified if the grantee's key rotated)."""
        key = (held.patient, held.grantee, held.record_id, held.epoch)
        receiving = self._pre_key_of(held.grantee)
        hit = self._kfrags.get(key)
        if hit is not None and hit[0] == (held.kfrag, receiving):
            return hit[1]
        verified = load_kfrag(held.kfrag, verifying_pk=record.kfrag_verifying_key, delegating_pk=record.record_key,
                              receiving_pk=receiving)
        self._kfrags[key] = ((held.kfrag, receiving), verified)
        return verified

    # -- Algorithm 3 step 4: re-encryption -------------------------------------------------------------

    def reencrypt(self, doc: dict[str, Any]) -> dict[str, Any]:
        patient = _unhex(doc.get("patient"), "patient", 32)
        grantee = _unhex(doc.get("grantee"), "grantee", 32)
        record_id = _unhex(doc.get("record_id"), "record_id", 32)
        chain_id, action, ts = int(doc.get("chain_id", -1)), int(doc.get("action", Action.READ)), int(doc.get("timestamp", 0))
        nonce = _unhex(doc.get("nonce"), "nonce", 16)
        sig = _unhex(doc.get("signature"), "signature", 65)
        t0 = time.perf_counter()
        marks: dict[str, float] = {}

        def mark(name: str) -> None:
            marks[name] = round((time.perf_counter() - t0) * 1000, 2)

        digest = read_digest(self.address, patient, grantee, record_id, chain_id, action, ts, nonce)
        try:
            signer = recover_address(digest, sig)
        except CryptoError as exc:
            raise ProxyRefused(Refusal.UNAUTHENTICATED, str(exc)) from None
        if self._participant(signer) != grantee:
            raise ProxyRefused(Refusal.UNAUTHENTICATED, "the request is not signed by the grantee")
        self._fresh(ts, nonce)
        self._watch_rate(grantee)
        mark("authenticated")

        held = self.keystore.newest(patient, grantee, record_id)
        kw = held.keyword_set_hash if held else ZERO32
        decision = self.policy.check_access(patient, grantee, record_id, action, keyword_set_hash=kw)
        mark("checked")
        if not decision.allowed:
            self._audit_denial(patient, grantee, record_id, kw, action)
            raise ProxyRefused(Refusal.of(decision.reason))
        if held is None:
            raise ProxyRefused(Refusal.NO_KEY)
        if held.epoch != decision.epoch:
            raise ProxyRefused(Refusal.STALE_EPOCH, f"key for epoch {held.epoch}, the policy is at epoch "
                                                    f"{decision.epoch}; the patient must re-issue it")
        v = self.verified_slip(held.chain_id, record_id)
        record = v.slip.record
        try:
            address = pre_decrypt(self.keys.identity_secret_key, UmbralCiphertext.from_bytes(held.encrypted_address))
            blob = self.store.cat(address.decode())
            ciphertext = record.load_ciphertext(blob)
            mark("fetched")
        except CiphertextMismatchError as exc:
            raise ProxyRefused(Refusal.INTEGRITY, str(exc)) from None
        except (IntegrityError, CryptoError, UnicodeDecodeError, ValueError) as exc:
            raise ProxyRefused(Refusal.INTEGRITY, f"stored record unusable: {exc}") from None
        except StorageError as exc:
            raise ProxyRefused(Refusal.UNAVAILABLE, f"storage: {exc}") from None
        try:
            kfrag = self._kfrag(held, record)
        except CryptoError as exc:
            raise ProxyRefused(Refusal.NO_KEY, f"the held kfrag no longer verifies ({exc}); the patient must "
                                               "re-issue it") from None
        cfrag = reencrypt(ciphertext.capsule, kfrag)
        mark("reencrypted")
        from .agent import AccessPolicyRefusal

        try:
            audit = self.audit.record_access(patient, grantee, record_id, kw, action, held.epoch)
        except AccessPolicyRefusal as exc:
            code = Refusal.STALE_EPOCH if exc.error_name == "AccessPolicyStaleEpoch" else Refusal.of(exc.reason)
            raise ProxyRefused(code, str(exc)) from None
        mark("recorded")
        with self._lock:
            self.stats["reencryptions"] += 1
        return {"cfrag": _hex(bytes(cfrag)), "blob": _hex(blob), "chain_id": held.chain_id,
                "receipt": v.receipt_json,
                "audit": audit,
                "keyword_set_hash": _hex(kw),  # the patient's keyed tag, as in the recordAccess it sent
                "timings_ms": marks}

    def _audit_denial(self, patient: bytes, grantee: bytes, record_id: bytes, kw: bytes, action: int) -> None:
        """Put an authenticated, refused attempt on the audit trail (``recordDenial``); the refusal stands
        even if the audit cannot be sent (the failure is logged)."""
        try:
            self.audit.record_denial(patient, grantee, record_id, kw, action)
            with self._lock:
                self.stats["denials"] += 1
        except MBDSError as exc:  # e.g. the policy changed in between (AccessPolicyAccessAllowed)
            log.warning("refused attempt of 0x%s… not audited: %s", grantee.hex()[:12], exc)

    def _watch_rate(self, grantee: bytes) -> None:
        """Count the access; far above the normal rate → suspend on chain (hits a suspension by any proxy
        already answered are not counted twice)."""
        count = self.monitor.hit(grantee, time.time())
        if not self.monitor.abnormal(count):
            return
        last = self._last_suspension(grantee)
        if last is not None:
            count = self.monitor.forget_before(grantee, last)
            if not self.monitor.abnormal(count):
                return
        self.monitor.reset(grantee)
        reason = (f"abnormal access: {count} re-encryptions within {self.config.rate_window:.0f}s at proxy "
                  f"{self.config.name} (limit {self.config.rate_limit})")
        if not self.policy.is_suspended(grantee):
            self.policy.suspend_requester(self.account, grantee, reason)
            with self._lock:
                self.stats["suspensions"] += 1
            log.warning("suspended 0x%s…: %s", grantee.hex()[:12], reason)
        raise ProxyRefused(Refusal.SUSPENDED, reason)

    def _last_suspension(self, requester: bytes) -> int | None:
        """Chain time of the requester's latest ``RequesterSuspended`` (rare path: only when abnormal)."""
        logs = self.policy._logs("RequesterSuspended", {"requester": requester}, 0)  # noqa: SLF001
        if not logs:
            return None
        return self.policy._block_time(logs[-1]["blockNumber"])  # noqa: SLF001

    # -- revocations ---------------------------------------------------------------------------------

    def watch_revocations(self) -> int:
        """Delete the kfrags every new revoke covers (one ``eth_getLogs`` per new block range)."""
        head = self.client.w3.eth.block_number
        start = self.keystore.get_meta("last_block", -1) + 1
        if start > head:
            return 0
        revoked, revoked_all = self.policy.contract.events.AccessRevoked(), self.policy.contract.events.AllAccessRevoked()
        topics = {revoked.topic: revoked, revoked_all.topic: revoked_all}
        raw = self.client.w3.eth.get_logs({"address": self.policy.address, "fromBlock": start, "toBlock": head,
                                           "topics": [list(topics)]})
        deleted = 0
        for entry in raw:
            event = topics.get(_topic_hex(entry["topics"][0]))
            if event is None:
                continue
            a = event.process_log(entry)["args"]
            p, g = bytes(a["patient"]), bytes(a["grantee"])
            if event is revoked_all:
                deleted += self.keystore.delete(p, g)
                continue
            scope, target = Scope(a["scope"]), bytes(a["target"])
            if scope is Scope.ALL:
                deleted += self.keystore.delete(p, g)
            elif scope is Scope.RECORD:
                deleted += self.keystore.delete(p, g, record_id=target)
            else:
                deleted += self.keystore.delete(p, g, keyword_set_hash=target)
        self.keystore.set_meta("last_block", head)
        if deleted:
            with self._lock:
                self.stats["deleted"] += deleted
            log.info("revocations: deleted %d kfrag(s)", deleted)
        return deleted

    # -- lifecycle -----------------------------------------------------------------------------------

    def run(self, sock: socket.socket | None = None) -> None:
        """Serve on ``sock`` (inherited from the launcher) or on a socket bound to the configured port."""
        sock = sock or bind_listener(self.config.host, self.config.port, what=f"proxy {self.config.name}")
        server = Server(_app_for(self), sock, name="http").start()
        log.info("proxy %s (%s) listening on %s", self.config.name, self.address, server.url)
        while not self._stop.is_set():
            try:
                self.watch_revocations()
            except Exception as exc:  # noqa: BLE001 - keep serving; the chain may be restarting
                log.warning("revocation watcher: %s", exc)
            self._stop.wait(self.config.watch_interval)
        server.stop()

    def stop(self) -> None:
        self._stop.set()


def _topic_hex(topic: Any) -> str:
    raw = bytes(topic) if not isinstance(topic, str) else bytes.fromhex(topic.removeprefix("0x"))
    return "0x" + raw.hex()


class ParsedItems:
    """Each indexed item's keyword ciphertexts parsed once: a bounded LRU keyed by the item hash.

    The item hash is SHA-256 over the item's keyword ciphertexts as served (what is parsed, nothing
    else), so an item served again — by any node, in any search — is not parsed (nor subgroup-checked)
    again, and a node cannot make the cache answer for bytes other than those it serves.  A malformed
    item is remembered as such (None) and skipped.  Thread-safe; ``capacity`` items (~2 KiB each).
    """

    def __init__(self, capacity: int = 65_536):
        self.capacity = capacity
        self._parsed: OrderedDict[bytes, tuple[PeksCiphertext, ...] | None] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    @staticmethod
    def item_hash(item: dict[str, Any]) -> bytes:
        keywords = item.get("keywords")
        if not isinstance(keywords, list) or not all(isinstance(k, str) for k in keywords):
            raise ProxyRefused(Refusal.INTEGRITY, "malformed consortium item: keywords must be a list of hex strings")
        return hashlib.sha256("\n".join(keywords).encode()).digest()

    def get(self, item: dict[str, Any]) -> tuple[PeksCiphertext, ...] | None:
        """The item's parsed ciphertexts, or None when one of them is not a valid PEKS ciphertext."""
        key = self.item_hash(item)
        with self._lock:
            if key in self._parsed:
                self._parsed.move_to_end(key)
                self.hits += 1
                return self._parsed[key]
        try:
            # a record's slots share one A: parsed, subgroup-checked and prepared once
            parsed: tuple[PeksCiphertext, ...] | None = parse_ciphertexts(
                [_unhex(k, "keyword") for k in item["keywords"]])
        except (CryptoError, ProxyRefused):
            log.warning("skipping a malformed keyword ciphertext in item %s", item.get("slip_id"))
            parsed = None
        with self._lock:
            self.misses += 1
            self._parsed[key] = parsed
            while len(self._parsed) > self.capacity:
                self._parsed.popitem(last=False)
        return parsed

    def __len__(self) -> int:
        return len(self._parsed)

    def clear(self) -> None:
        with self._lock:
            self._parsed.clear()


#: The process's parse cache (every proxy in a process shares it: it holds only public ciphertexts).
PARSED_ITEMS = ParsedItems()


def match_items(items: Sequence[dict[str, Any]], trapdoors: Sequence[Trapdoor], *,
                cache: ParsedItems | None = None, skip: Collection[int] = (),
                workers: int | None = None) -> list[int]:
    """Indexes of the consortium items (as ``GET /v1/items`` returns them) whose keyword ciphertexts
    match every trapdoor (PEKS conjunction, on all cores for big batches; an item stops at its first
    trapdoor that matches none of its ciphertexts).  Items are parsed once (``cache``); the indexes in
    ``skip`` (already hits of an earlier query) are not tested again."""
    cache = PARSED_ITEMS if cache is None else cache
    by_index: dict[int, Sequence[PeksCiphertext]] = {}
    for i, item in enumerate(items):
        if i in skip:
            continue
        parsed = cache.get(item)
        if parsed is not None:
            by_index[i] = parsed
    return match_all(trapdoors, by_index, workers=workers)


class ItemIndex:
    """Each patient's consortium items, kept up to date incrementally: a search asks a node only for the
    items of blocks above the last height seen (``GET /v1/items?patient=…&after=H``), not for the
    patient's whole history.  Bounded: the ``patients`` most recently searched (LRU).  The items are what
    the nodes served: every hit is still proven against ConsortiumIndex before it is returned."""

    def __init__(self, fetch: Any, patients: int = 1024, *, full_refresh_s: float = 60.0,
                 clock: Any = time.monotonic):
        self._fetch = fetch  # (patient, after) -> list of items of blocks above ``after``
        self.capacity = patients
        # the whole list is fetched again after this long, so a node's bad answer (say, an item claiming a far
        # height, which would hide the items of the blocks below it) does not stick
        self.full_refresh_s = full_refresh_s
        self._clock = clock
        self._by_patient: OrderedDict[bytes, tuple[int, list[dict[str, Any]], set[tuple[int, int, int]]]] = \
            OrderedDict()
        self._fetched_at: dict[bytes, float] = {}
        self._lock = threading.Lock()

    def items(self, patient: bytes) -> list[dict[str, Any]]:
        now = self._clock()
        with self._lock:
            if now - self._fetched_at.get(patient, -float("inf")) >= self.full_refresh_s:
                self._by_patient.pop(patient, None)
                self._fetched_at[patient] = now
            height, items, keys = self._by_patient.get(patient, (0, [], set()))
        fresh = self._fetch(patient, height)
        with self._lock:
            height, items, keys = self._by_patient.get(patient, (0, [], set()))
            if fresh:  # a new list and set: a search holding the previous list keeps it unchanged
                items, keys = list(items), set(keys)
                for item in fresh:
                    try:
                        key = (int(item["height"]), int(item["slip"]), int(item["index"]))
                    except (KeyError, TypeError, ValueError):
                        raise ProxyRefused(Refusal.INTEGRITY,
                                           "malformed consortium item: no height/slip/index") from None
                    if key not in keys:
                        keys.add(key)
                        items.append(item)
                        height = max(height, key[0])
                items.sort(key=lambda it: (int(it["height"]), int(it["slip"]), int(it["index"])))
            self._by_patient[patient] = (height, items, keys)
            self._by_patient.move_to_end(patient)
            while len(self._by_patient) > self.capacity:
                gone, _ = self._by_patient.popitem(last=False)
                self._fetched_at.pop(gone, None)
            return items


def _receipt_header(receipt: Any) -> dict[str, Any]:
    h = receipt.header
    return {"height": h.height, "seq": h.seq, "prev_hash": _hex(h.prev_hash), "timestamp": h.timestamp,
            "creator": _hex(h.creator), "merkle_root": _hex(h.merkle_root), "body_cid": _hex(h.body_cid)}


# ---------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------


def _app_for(proxy: ProxyService) -> web.Application:
    """The proxy's HTTP API.  Every error answer is ``{"error": ..., "code": <refusal>}`` (an unknown endpoint's
    404 is ``{"error": ...}``); the sync operations run in the app's worker pool."""
    app = make_app(server_name="mbds-proxy/1", max_body=MAX_BODY, middlewares=(_refusals(proxy),),
                   openapi="proxy")

    def answer(fn: Callable[[], dict[str, Any]]) -> Handler:
        async def handle(request: web.Request) -> web.Response:
            return json_response(await blocking(request, fn))
        return handle

    def answer_doc(fn: Callable[[dict[str, Any]], dict[str, Any]]) -> Handler:
        async def handle(request: web.Request) -> web.Response:
            try:
                doc = await read_json_object(request)
            except RequestError as exc:
                raise ProxyRefused(Refusal.BAD_REQUEST, str(exc)) from None
            return json_response(await blocking(request, fn, doc))
        return handle

    app.router.add_get("/v1/info", answer(lambda: proxy.info()))
    app.router.add_get("/v1/status", answer(lambda: proxy.status()))
    app.router.add_post("/v1/search", answer_doc(lambda doc: proxy.search_request(doc)))
    app.router.add_post("/v1/kfrags", answer_doc(lambda doc: proxy.deposit(doc)))
    app.router.add_post("/v1/reencrypt", answer_doc(lambda doc: proxy.reencrypt(doc)))
    return app


def _refusals(proxy: ProxyService) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """Answers what the operations raise with its refusal code and status; counts the refused requests."""

    def refused(status: int, error: str, code: Refusal, headers: dict[str, str] | None = None) -> web.Response:
        return json_response({"error": error, "code": code.value}, status=status, headers=headers)

    def count() -> None:
        with proxy._lock:  # noqa: SLF001
            proxy.stats["refusals"] += 1

    @web.middleware
    async def refusals(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ProxyRefused as exc:
            count()
            return json_response(exc.as_json(), status=exc.code.http_status)
        except web.HTTPRequestEntityTooLarge as exc:  # a body over MAX_BODY, refused before it is read
            count()
            return refused(exc.status, f"refused (bad-request): {exc.text}", Refusal.BAD_REQUEST)
        except web.HTTPMethodNotAllowed as exc:
            return refused(exc.status, f"method {request.method} not allowed on {request.path}", Refusal.BAD_REQUEST,
                           {"Allow": exc.headers["Allow"]})
        except web.HTTPException:
            raise  # 404: the shared `{"error": "unknown endpoint ..."}`
        except ChainError as exc:
            # The chain did not answer or take a transaction (RPC down, not sent, not mined): unavailable,
            # so the client asks another proxy or retries.  A revert is the chain's answer: a bad request.
            refusal = Refusal.BAD_REQUEST if isinstance(exc, ContractRevert) else Refusal.UNAVAILABLE
            return refused(refusal.http_status, f"{type(exc).__name__}: {exc}", refusal)
        except (MBDSError, ValueError, KeyError, TypeError) as exc:
            return refused(400, f"{type(exc).__name__}: {exc}", Refusal.BAD_REQUEST)
        except Exception as exc:  # noqa: BLE001 - answer, never drop the connection silently
            log.exception("%s %s failed", request.method, request.path)
            return refused(500, f"{type(exc).__name__}: {exc}", Refusal.UNAVAILABLE)

    return refusals


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------


add_arguments = proxy_arguments  # the options live in mbds_py.cli_options: `--help` imports only it


def load_proxy_keys(args: argparse.Namespace) -> PatientSecrets:
    """The proxy's key set: from the launcher's pipe (``--key-fd``) or an encrypted keystore (``--keystore``,
    passphrase from a fd, a prompt or stdin); never from the environment (:mod:`mbds_py.service_keys`)."""
    from ..service_keys import load_service_secret

    def from_bundle(bundle: Any) -> bytes:
        return PatientSecrets(bundle.account_key, bundle.umbral_seed, bundle.peks_key).to_bytes()

    raw = load_service_secret(args, "proxy", from_bundle)
    try:
        return PatientSecrets.from_bytes(raw)
    except CryptoError as exc:
        raise ConfigError(f"proxy key set: {exc}") from None


def run_proxy(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    keys = load_proxy_keys(args)  # first: a bad key or passphrase fails before anything else
    config = ProxyConfig.load(args.config)
    if args.port:
        config = replace(config, port=args.port)
    sock = listener(inherited_sockets(args.listen), "http", config.host, config.port, what=f"proxy {config.name}")
    service = ProxyService(config, keys)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: service.stop())
    service.run(sock)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = add_arguments(argparse.ArgumentParser(prog=f"python -m {MARKER}"))
    try:
        return run_proxy(parser.parse_args(argv))
    except MBDSError as exc:
        print(f"mbds proxy: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "DEFAULT_THRESHOLD", "MARKER",
    "ChainRef", "HeldKey", "KeyStore", "ProxyConfig", "ProxyRefused", "ProxyService", "RateMonitor", "Refusal",
    "SearchToken", "add_arguments", "check_search_work", "decode_trapdoor_sets", "deposit_digest",
    "encode_trapdoor_sets", "info_digest", "load_proxy_keys", "main", "match_items", "read_digest", "run_proxy",
    "search_digest", "token_digest",
]
