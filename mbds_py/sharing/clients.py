"""Patient and doctor sides of data sharing (paper Algorithm 3) over the threshold proxies.

* :class:`PatientClient` — grants, approves, rejects and revokes on
  ``AccessPolicy``; issues search tickets (the PEKS trapdoors encrypted to each
  proxy, in a token signed for one grantee, one grant and an expiry: the
  doctor never holds a trapdoor in clear); issues, for each granted record, the
  m-of-n Umbral kfrags (one per proxy) with the storage address re-encrypted to
  each proxy's PRE key (Algorithm 3 step 3); re-issues keys after a revoke for
  the records still granted; serves approved emergencies; lists its audit trail.
* :class:`DoctorClient` — requests access (or emergency access), searches
  through a proxy with the patient's search ticket, signing each request (step 2), asks every proxy for
  its capsule fragment, verifies the fragments and decrypts with ≥ m of them
  (steps 4–5), and combines several records into one timeline (step 6).

Everything the proxies return is checked: slips against the private chain's
``SlipLedger`` root, the stored ciphertext against the hash the patient
confirmed, each cfrag against the record key the patient signed and the
doctor's own key.
"""

from __future__ import annotations

import base64
import json
import secrets as _secrets
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Sequence

import requests

from ..crypto import (HmiPayload, PatientKeyring, PatientSecrets, as_keyring, decrypt_storage_address, load_cfrag,
                      make_record_kfrags, open_record, open_shared_record, pre_encrypt)
from ..crypto.confirmation import record_secrets
from ..crypto._hash import keccak256 as keccak
from ..crypto.errors import CapsuleFragVerificationError, MalformedDataError
from ..crypto.signing import recover_address
from ..errors import IntegrityError, MBDSError
from .agent import AccessPolicyAgent, Who
from .policy import ZERO32, AccessEvent, AccessRequest, Action, EmergencyAccess, RequestState, Scope
from .proxy import (DEFAULT_THRESHOLD, ChainRef, ProxyRefused, Refusal, SearchToken, deposit_digest,
                    encode_trapdoor_sets, info_digest, read_digest, search_digest, token_digest)


class SharingError(MBDSError, RuntimeError):
    """A sharing step could not be completed (too few proxies answered, nothing to share…)."""


class ThresholdNotMet(SharingError):
    """Fewer than m proxies produced a valid capsule fragment; ``refusals`` says what each one said."""

    def __init__(self, message: str, refusals: Sequence[ProxyRefused] = ()):
        self.refusals = tuple(refusals)
        super().__init__(message)


def _hex(b: bytes) -> str:
    return "0x" + bytes(b).hex()


def _b(text: str) -> bytes:
    return bytes.fromhex(text[2:] if text.startswith("0x") else text)


# ---------------------------------------------------------------------------------------------
# proxies
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProxyInfo:
    name: str
    address: str
    pre_key: bytes
    url: str


class ProxyClient:
    """HTTP client of one proxy; refusals come back as :class:`ProxyRefused` with the proxy's code."""

    def __init__(self, url: str, *, timeout: float = 75.0):  # a proxy waits up to 60 s for a slow chain
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self._info: ProxyInfo | None = None

    def __repr__(self) -> str:
        return f"ProxyClient({self.url})"

    def info(self, policy: AccessPolicyAgent | None = None) -> ProxyInfo:
        """The proxy's name, account and PRE key; the key binding is signature-checked, the account
        checked as a registered proxy on chain when ``policy`` is given."""
        if self._info is None:
            doc = self._call("GET", "/v1/info")
            pre_key = _b(doc["pre_key"])
            signer = recover_address(info_digest(doc["address"], doc["name"], pre_key), _b(doc["signature"]))
            if signer != doc["address"]:
                raise IntegrityError(f"proxy at {self.url}: PRE key is not signed by its account")
            if policy is not None and not policy.is_proxy(doc["address"]):
                raise IntegrityError(f"proxy at {self.url} ({doc['address']}) is not registered in AccessPolicy")
            self._info = ProxyInfo(doc["name"], doc["address"], pre_key, self.url)
        return self._info

    @property
    def name(self) -> str:
        return self._info.name if self._info else self.url

    def status(self) -> dict[str, Any]:
        return self._call("GET", "/v1/status")

    def search(self, doc: dict[str, Any]) -> list[dict[str, Any]]:
        """``POST /v1/search`` with a grantee-signed request (:meth:`DoctorClient.search_doc`)."""
        return self._call("POST", "/v1/search", doc)["matches"]

    def deposit(self, doc: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/v1/kfrags", doc)

    def reencrypt(self, doc: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/v1/reencrypt", doc)

    def _call(self, method: str, path: str, doc: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            resp = self.session.request(method, self.url + path, data=None if doc is None else json.dumps(doc),
                                        headers={"Content-Type": "application/json"}, timeout=self.timeout)
        except requests.RequestException as exc:
            raise ProxyRefused(Refusal.UNAVAILABLE, f"{exc.__class__.__name__}", proxy=self.name) from None
        try:
            body = resp.json()
        except ValueError:
            raise ProxyRefused(Refusal.UNAVAILABLE, f"HTTP {resp.status_code} without JSON", proxy=self.name) from None
        if resp.status_code != 200:
            code = body.get("code", Refusal.UNAVAILABLE.value)
            try:
                refusal = Refusal(code)
            except ValueError:
                refusal = Refusal.UNAVAILABLE
            message = str(body.get("error", ""))
            if message.startswith("refused ("):  # the proxy's own words, without its prefix
                message = message.split("): ", 1)[-1]
            raise ProxyRefused(refusal, message, proxy=self.name)
        return body


# ---------------------------------------------------------------------------------------------
# the directory: where things are
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OwnedSlip:
    """A slip proven against its chain's SlipLedger (what a client holds after checking a receipt)."""

    chain: ChainRef
    slip_id: bytes
    height: int
    slip: Any  # TransactionSlip

    @property
    def record(self):
        return self.slip.record


class Directory:
    """Policy agent, proxies, private chains, consortium nodes and storage of one MBDS network."""

    def __init__(self, policy: AccessPolicyAgent, proxy_urls: Sequence[str], chains: Sequence[ChainRef],
                 consortium_nodes: Sequence[str], storage_urls: Sequence[str], *, storage_replicas: int = 1,
                 threshold: int = DEFAULT_THRESHOLD, names: dict[bytes, str] | None = None):
        self.policy = policy
        self.proxies = [ProxyClient(u) for u in proxy_urls]
        self.chains = {c.chain_id: c for c in chains}
        self.consortium_nodes = list(consortium_nodes)
        self.storage_urls = list(storage_urls)
        self.storage_replicas = storage_replicas
        self.threshold = threshold
        self.names = dict(names or {})  # participant ID -> label, for narration only
        self._ledgers: dict[int, Any] = {}
        self._slips: dict[tuple[int, bytes], OwnedSlip] = {}
        self._pre_keys: dict[bytes, bytes] = {}
        self._store = None
        self._down: dict[str, float] = {}
        self.pool = ThreadPoolExecutor(max_workers=max(4, 2 * len(self.proxies)), thread_name_prefix="sharing")

    def preferred(self, proxies: list[ProxyClient]) -> list[ProxyClient]:
        """Proxies in order, those seen unavailable in the last 10 s last."""
        now = time.monotonic()
        return sorted(proxies, key=lambda p: self._down.get(p.url, 0.0) > now - 10.0)

    def note(self, proxy: ProxyClient, *, ok: bool) -> None:
        if ok:
            self._down.pop(proxy.url, None)
        else:
            self._down[proxy.url] = time.monotonic()

    def name_of(self, participant: bytes) -> str:
        return self.names.get(participant, "0x" + participant.hex()[:12] + "…")

    def ledger(self, chain_id: int):
        from ..chain.client import ChainClient
        from ..chain.slip_ledger import SlipLedgerAgent

        if chain_id not in self._ledgers:
            c = self.chains[chain_id]
            self._ledgers[chain_id] = SlipLedgerAgent(ChainClient(c.rpc_url, name=c.name), c.slip_ledger)
        return self._ledgers[chain_id]

    def store(self):
        from ..storage.client import KuboClient
        from ..storage.replicated import ReplicatedStore

        if self._store is None:
            replicas = max(1, min(self.storage_replicas, len(self.storage_urls)))
            self._store = ReplicatedStore([KuboClient(u) for u in self.storage_urls], replicas=replicas)
        return self._store

    def pre_key(self, participant: bytes) -> bytes:
        """A participant's registered PRE public key (consortium IdentityRegistry)."""
        if participant not in self._pre_keys:
            raw = self.policy.client.call(self.policy.registry.functions.participant(participant),
                                          contract="IdentityRegistry")
            self._pre_keys[participant] = bytes(raw[7])
        return self._pre_keys[participant]

    def proven_slip(self, chain_id: int, slip_id: bytes, receipt_json: dict[str, Any] | None = None) -> OwnedSlip:
        """The slip, from ``receipt_json`` or the chain's replicas, proven against SlipLedger (cached)."""
        from ..private.client import HospitalClient, Receipt, verify_receipt
        from ..private.slip import TransactionSlip

        key = (chain_id, slip_id)
        if key in self._slips:
            return self._slips[key]
        chain = self.chains[chain_id]
        receipt = Receipt.from_json(receipt_json) if receipt_json else HospitalClient(chain.api_urls).receipt(_hex(slip_id))
        if receipt is None:
            raise SharingError(f"slip {_hex(slip_id)} is not committed on {chain.name}")
        verify_receipt(receipt, self.ledger(chain_id))
        slip = TransactionSlip.from_bytes(receipt.payload)
        if receipt.slip_id != slip_id or slip.slip_id(chain.domain) != slip_id:
            raise IntegrityError(f"{chain.name} returned another slip for {_hex(slip_id)}")
        owned = OwnedSlip(chain, slip_id, receipt.height, slip)
        self._slips[key] = owned
        return owned

    def consortium_items(self, patient: bytes) -> list[dict[str, Any]]:
        for url in self.consortium_nodes:
            try:
                resp = requests.get(f"{url}/v1/items?patient={_hex(patient)}", timeout=10)
            except requests.RequestException:
                continue
            if resp.status_code == 200:
                return resp.json().get("items", [])
        raise SharingError("no consortium node answered")

    def proxy_infos(self) -> list[ProxyInfo | None]:
        """Each proxy's verified info, None for a proxy that does not answer."""
        out = []
        for p in self.proxies:
            try:
                out.append(p.info(self.policy))
            except ProxyRefused:
                out.append(None)
        return out


# ---------------------------------------------------------------------------------------------
# search tickets
# ---------------------------------------------------------------------------------------------

TICKET_PREFIX = "mbds-search-ticket:"


@dataclass(frozen=True)
class SearchTicket:
    """What a patient gives one grantee to search her records: one signed :class:`SearchToken` per proxy,
    each carrying the trapdoors encrypted to that proxy's PRE key. Opaque to the grantee, useless to anyone
    else (every use must be signed by the grantee, is checked against a live grant and expires)."""

    patient: bytes
    grantee: bytes
    expires_at: int
    tokens: tuple[SearchToken, ...]

    def token_for(self, proxy_address: str) -> SearchToken | None:
        return next((t for t in self.tokens if t.proxy.lower() == proxy_address.lower()), None)

    def to_text(self) -> str:
        """One line to paste (portal) or pass on the command line."""
        raw = json.dumps([t.to_json() for t in self.tokens], separators=(",", ":")).encode()
        return TICKET_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def from_text(cls, text: str) -> "SearchTicket":
        t = (text or "").strip()
        if not t.startswith(TICKET_PREFIX):
            raise SharingError(f"a search ticket starts with {TICKET_PREFIX!r}: paste the whole ticket the patient "
                               "issued to you")
        body = t[len(TICKET_PREFIX):]
        try:
            docs = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            tokens = tuple(SearchToken.from_json(d) for d in docs)
        except (ValueError, TypeError, ProxyRefused) as exc:
            raise SharingError(f"malformed search ticket: {exc}") from None
        if not tokens or len({(t.patient, t.grantee) for t in tokens}) != 1:
            raise SharingError("malformed search ticket: no token, or tokens of several patients or grantees")
        return cls(tokens[0].patient, tokens[0].grantee, min(t.expires_at for t in tokens), tokens)


# ---------------------------------------------------------------------------------------------
# the patient
# ---------------------------------------------------------------------------------------------


@dataclass
class _OwnRecord:
    owned: OwnedSlip
    address: str
    keyword_set_hash: bytes  # the keyed tag of its keyword set (PatientSecrets.keyword_set_tag): never unkeyed
    keywords: tuple[str, ...]


@dataclass(frozen=True)
class Issued:
    """Keys issued for one grantee: records and how many proxies took each."""

    grantee: bytes
    epoch: int
    records: tuple[bytes, ...]
    proxies: int


class PatientClient:
    """The patient's side: policy on chain, trapdoors, and kfrags for the proxies.

    ``keys`` holds every key version of the patient (``ParticipantKeys.keyring``): records made
    before a key rotation are opened, searched and shared with the version that made them; the
    current version signs (deposits, policy transactions).
    """

    def __init__(self, keys: Any, directory: Directory):
        self.secrets: PatientSecrets = keys.secrets
        # a keyless client (public reads only: ``mbds access list``) has no key versions
        self.keyring: PatientKeyring | None = getattr(keys, "keyring", None) or (
            as_keyring(self.secrets) if self.secrets is not None else None)
        self.account = keys.account
        self.id: bytes = keys.participant.id
        self.directory = directory
        self.policy = directory.policy
        self._own: dict[bytes, _OwnRecord] = {}
        self._issued: dict[bytes, set[bytes]] = {}

    # -- records --------------------------------------------------------------------------------

    def records(self) -> dict[bytes, _OwnRecord]:
        """This patient's committed records, from the consortium index, each slip proven on its chain."""
        for item in self.directory.consortium_items(self.id):
            rid = _b(item["slip_id"])
            if rid not in self._own:
                self._own[rid] = self._open(self.directory.proven_slip(int(item["chain_id"]), rid))
        return self._own

    def _open(self, owned: OwnedSlip) -> _OwnRecord:
        domain = owned.chain.domain
        address = decrypt_storage_address(owned.record, self.keyring, domain=domain)
        payload = open_record(owned.record, self.directory.store().cat(address), self.keyring, domain=domain)
        tag = record_secrets(owned.record, self.keyring).keyword_set_tag(payload.keywords)
        return _OwnRecord(owned, address, tag, payload.keywords)

    def record_ids(self, *, keyword: str | None = None) -> list[bytes]:
        """Record IDs (optionally those carrying ``keyword``), oldest first."""
        from ..crypto import normalize_keyword

        recs = sorted(self.records().items(), key=lambda kv: kv[1].owned.slip.timestamp)
        if keyword is None:
            return [rid for rid, _ in recs]
        canon = normalize_keyword(keyword)
        return [rid for rid, r in recs if canon in r.keywords]

    # -- trapdoors (they leave this client only encrypted to the proxies, in a search ticket) -------------

    def _trapdoor_sets(self, *keywords: str, all_versions: bool = True) -> list[list[bytes]]:
        """One conjunctive query per key version, newest first (only the current one unless ``all_versions``):
        a record's keywords are encrypted under the version it was made under."""
        versions = sorted(self.keyring, key=lambda s: s.key_version, reverse=True)
        return [[s.trapdoor(k).to_bytes() for k in keywords] for s in (versions if all_versions else versions[:1])]

    def _search_grant(self, grantee: bytes) -> tuple[Scope, bytes, int]:
        """The grant a search ticket is bound to: all records when the grantee may read them all (grant,
        preset rule or emergency), else the grantee's live grant that lasts longest; all records if none (the
        proxies refuse the ticket until a grant exists)."""
        if self.policy.check_access(self.id, grantee, ZERO32, Action.READ).allowed:
            return Scope.ALL, ZERO32, 0
        now = self.policy.now()
        live = [g for g in self.policy.grants_from_logs(self.id, grantee=grantee)
                if g.valid_at(now) and g.actions & Action.READ]
        if not live:
            return Scope.ALL, ZERO32, 0
        best = max(live, key=lambda g: g.expires_at)
        return best.scope, best.target, best.expires_at

    def search_ticket(self, grantee: Who, *keywords: str, scope: Scope | None = None, target: bytes = ZERO32,
                      ttl: int = 3600, all_versions: bool = True) -> SearchTicket:
        """Algorithm 3 step 1: let ``grantee`` search for records carrying every one of ``keywords``.

        The trapdoors (one set per key version unless ``all_versions=False``) are encrypted to each proxy's
        registered PRE key and signed into a token bound to this grantee, one grant (``scope``/``target``,
        chosen from the chain when not given) and an expiry (``ttl`` seconds, never past the grant's).
        """
        if not keywords:
            raise SharingError("a search ticket needs at least one keyword")
        gid = self.policy.resolve(grantee)
        grant_expiry = 0
        if scope is None:
            scope, target, grant_expiry = self._search_grant(gid)
        expires_at = int(time.time()) + int(ttl)
        if grant_expiry and grant_expiry > time.time():
            expires_at = min(expires_at, int(grant_expiry))
        plaintext = encode_trapdoor_sets(self._trapdoor_sets(*keywords, all_versions=all_versions))
        tokens = []
        for info in self.directory.proxy_infos():
            if info is None:
                continue
            encrypted = pre_encrypt(info.pre_key, plaintext).to_bytes()
            digest = token_digest(info.address, self.id, gid, scope, target, expires_at, encrypted)
            tokens.append(SearchToken(info.address, self.id, gid, int(scope), target, expires_at, encrypted,
                                      self.secrets.signer.sign_digest(digest)))
        if not tokens:
            raise ThresholdNotMet("no proxy answers: a search ticket is encrypted to the proxies' keys")
        return SearchTicket(self.id, gid, expires_at, tuple(tokens))

    def keyword_set_tags(self, *keywords: str) -> list[bytes]:
        """The keyword set's ``keywordSetHash`` under every key version, newest first: a patient-keyed tag
        (nobody else can compute it or test a guess against it).  Give it to whoever should request a
        ``KeywordSet`` scope; :meth:`grant` with ``keywords=`` uses it."""
        return self.keyring.keyword_set_tags(keywords)

    # -- policy -----------------------------------------------------------------------------------

    def grant(self, grantee: Who, *, records: Sequence[bytes] | None = None, keywords: Sequence[str] | None = None,
              duration: int = 3600, actions: int = Action.READ, issue: bool = True) -> dict[str, Any]:
        """Grant on chain (all records, the listed ones, or those whose keyword set is exactly ``keywords``:
        one ``KeywordSet`` grant naming the set's keyed tag), then issue the proxies their keys."""
        gid = self.policy.resolve(grantee)
        if records is not None and keywords is not None:
            raise SharingError("grant either records or a keyword set, not both")
        if keywords is not None:
            tags = self.keyword_set_tags(*keywords)
            own = self.records()
            used = [t for t in tags if any(r.keyword_set_hash == t for r in own.values())] or tags[:1]
            receipts = [self.policy.grant(self.account, gid, scope=Scope.KEYWORD_SET, target=t, actions=actions,
                                          duration=duration) for t in used]
            rids = sorted(rid for rid, r in own.items() if r.keyword_set_hash in used)
            issued = self.issue_keys(gid, rids, keyword_scoped=True) if issue and rids else None
            return {"receipt": receipts[-1], "gas": sum(r["gasUsed"] for r in receipts), "issued": issued,
                    "tags": used}
        if records is None:
            receipt = self.policy.grant(self.account, gid, actions=actions, duration=duration)
        else:
            receipt = self.policy.grant_records(self.account, gid, list(records), actions=actions, duration=duration)
        issued = self.issue_keys(gid, list(records) if records is not None else self.record_ids()) if issue else None
        return {"receipt": receipt, "gas": receipt["gasUsed"], "issued": issued}

    def pending_requests(self) -> list[AccessRequest]:
        """Requests addressed to this patient still awaiting a decision."""
        logs = self.policy._logs("AccessRequested", {"patient": self.id}, 0)  # noqa: SLF001
        now = self.policy.now()
        reqs = [self.policy.request(log["args"]["requestId"], reason=log["args"]["reason"]) for log in logs]
        return [r for r in reqs if r.state_at(now) is RequestState.REQUESTED]

    def approve(self, request_id: int, *, issue: bool = True) -> dict[str, Any]:
        """Approve a doctor's request on chain and issue the keys its scope covers."""
        req = self.policy.request(request_id)
        receipt = self.policy.approve_request(self.account, request_id)
        issued = None
        if issue:
            if req.scope is Scope.RECORD:
                rids = [req.target]
            elif req.scope is Scope.KEYWORD_SET:
                rids = [rid for rid, r in self.records().items() if r.keyword_set_hash == req.target]
            else:
                rids = self.record_ids()
            issued = self.issue_keys(req.requester, rids, keyword_scoped=req.scope is Scope.KEYWORD_SET)
        return {"receipt": receipt, "gas": receipt["gasUsed"], "issued": issued, "request": req}

    def reject(self, request_id: int, reason: str) -> dict[str, Any]:
        return self.policy.reject_request(self.account, request_id, reason)

    def revoke(self, grantee: Who, *, record: bytes | None = None, scope: Scope | None = None,
               target: bytes | None = None, reissue: bool = True) -> dict[str, Any]:
        """Revoke one grant (``record``, or ``scope``/``target``) or, with neither, all of the grantee's.

        The epoch moves, so the keys of the grantee's records still allowed by its other grants are
        re-issued for the new epoch (unless ``reissue=False``); which records those are is asked of the
        chain, so it holds across client restarts.
        """
        gid = self.policy.resolve(grantee)
        if record is not None:
            scope, target = Scope.RECORD, record
        if scope is None:
            receipt = self.policy.revoke_all(self.account, gid)
        else:
            receipt = self.policy.revoke(self.account, gid, scope=scope, target=target if target is not None else ZERO32)
        reissued = None
        if reissue and scope is not None:
            own = self.records()
            candidates = sorted(own)
            # first without the keyword-set tag (what the keys carry unless only a KeywordSet grant covers them)
            decisions = self.policy.check_access_many(self.id, gid, [(rid, ZERO32) for rid in candidates],
                                                      Action.READ)
            still = [rid for rid, d in zip(candidates, decisions) if d.allowed]
            rest = [rid for rid, d in zip(candidates, decisions) if not d.allowed]
            by_tag = self.policy.check_access_many(
                self.id, gid, [(rid, own[rid].keyword_set_hash) for rid in rest], Action.READ) if rest else []
            tagged = [rid for rid, d in zip(rest, by_tag) if d.allowed]
            reissued = self.issue_keys(gid, still) if still else None
            if tagged:
                reissued = self.issue_keys(gid, tagged, keyword_scoped=True)
        if scope is None:
            self._issued.pop(gid, None)
        elif scope is Scope.RECORD:
            self._issued.get(gid, set()).discard(target)
        return {"receipt": receipt, "gas": receipt["gasUsed"], "reissued": reissued}

    def serve_emergencies(self) -> list[int]:
        """Issue keys for every record to each grantee of an active emergency access (the patient's
        client does this when notified; the proxies still check the emergency window on chain)."""
        logs = self.policy._logs("EmergencyAccessActivated", {"patient": self.id}, 0)  # noqa: SLF001
        now = self.policy.now()
        served = []
        for log in logs:
            a = log["args"]
            if a["activatedAt"] <= now < a["expiresAt"]:
                self.issue_keys(bytes(a["grantee"]), self.record_ids())
                served.append(a["emergencyId"])
        return served

    def audit_trail(self, *, record: bytes | None = None) -> list[AccessEvent]:
        """Every re-encryption of this patient's records, oldest first (one event per proxy)."""
        return self.policy.audit_trail(patient=self.id, record_id=record)

    # -- Algorithm 3 step 3: kfrags and addresses for the proxies -----------------------------------

    def issue_keys(self, grantee: Who, record_ids: Iterable[bytes], *, keyword_scoped: bool = False) -> Issued:
        """One kfrag per proxy (m-of-n) per record, with the address encrypted to each proxy.

        ``keyword_scoped``: the keys serve a ``KeywordSet`` grant, so each deposit names its record's keyed
        keyword-set tag (the proxies put it into ``recordAccess``); otherwise zero, so the audit trail shows
        no tag that would link the records sharing a keyword set."""
        gid = self.policy.resolve(grantee)
        rids = list(record_ids)
        infos = self.directory.proxy_infos()
        live = [(i, p, info) for i, (p, info) in enumerate(zip(self.directory.proxies, infos)) if info is not None]
        m, n = self.directory.threshold, len(self.directory.proxies)
        if len(live) < m:
            raise ThresholdNotMet(f"only {len(live)} of {n} proxies answer; {m} are needed to share")
        epoch = self.policy.epoch(self.id, gid)
        grantee_pk = self.directory.pre_key(gid)
        own = self.records() if any(r not in self._own for r in rids) else self._own
        jobs = []
        for rid in rids:
            rec = own.get(rid)
            if rec is None:
                raise SharingError(f"record {_hex(rid)} is not one of this patient's committed records")
            # the record's own key version: its per-record key and kfrag signer are the ones in the slip
            kfrags = make_record_kfrags(record_secrets(rec.owned.record, self.keyring), rid, grantee_pk, m, n)
            for i, proxy, info in live:
                jobs.append((proxy, self._deposit_doc(info, gid, rec, epoch, bytes(kfrags[i]),
                                                      rec.keyword_set_hash if keyword_scoped else ZERO32)))
        results = list(self.directory.pool.map(lambda job: _try(job[0].deposit, job[1]), jobs))
        per_record = len(live)
        failures = [r for r in results if isinstance(r, ProxyRefused)]
        for k, rid in enumerate(rids):
            ok = sum(1 for r in results[k * per_record:(k + 1) * per_record] if not isinstance(r, ProxyRefused))
            if ok < m:
                raise ThresholdNotMet(f"record {_hex(rid)}: only {ok} proxies took their key share ({m} needed)",
                                      failures)
        self._issued.setdefault(gid, set()).update(rids)
        return Issued(gid, epoch, tuple(rids), per_record)

    def _deposit_doc(self, info: ProxyInfo, grantee: bytes, rec: _OwnRecord, epoch: int,
                     kfrag: bytes, tag: bytes = ZERO32) -> dict[str, Any]:
        encrypted = pre_encrypt(info.pre_key, rec.address.encode()).to_bytes()
        ts = int(time.time())
        chain_id = rec.owned.chain.chain_id
        digest = deposit_digest(info.address, self.id, grantee, rec.owned.slip_id, chain_id, epoch, tag, kfrag,
                                encrypted, ts)
        return {"patient": _hex(self.id), "grantee": _hex(grantee), "record_id": _hex(rec.owned.slip_id),
                "chain_id": chain_id, "epoch": epoch, "keyword_set_hash": _hex(tag),
                "kfrag": _hex(kfrag), "encrypted_address": _hex(encrypted), "timestamp": ts,
                "signature": _hex(self.secrets.signer.sign_digest(digest))}


def _try(fn, *args):
    try:
        return fn(*args)
    except ProxyRefused as exc:
        return exc


# ---------------------------------------------------------------------------------------------
# the doctor
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Match:
    """A slip the proxies found for a search, proven against its private chain."""

    chain_id: int
    chain: str
    block_height: int
    slip_id: bytes
    consortium_height: int
    owned: OwnedSlip


@dataclass(frozen=True)
class SharedRecord:
    """One decrypted record (M_i) with where it came from and the on-chain audit of its re-encryption."""

    record_id: bytes
    chain: str
    chain_id: int
    timestamp: int
    record_type: str
    text: str
    doctor: str  # the signing doctor's address
    payload: HmiPayload = field(repr=False)
    audits: tuple[dict[str, Any], ...] = ()
    # the keyword set's keyed tag the proxies checked the policy with (from the patient's deposit); the doctor
    # cannot compute it, and needs it to ask the chain whether a KeywordSet grant still covers the record
    keyword_set_tag: bytes = ZERO32

    @property
    def hmi(self) -> Any:
        return self.payload.hmi_json()

    @property
    def keywords(self) -> tuple[str, ...]:
        return self.payload.keywords


@dataclass(frozen=True)
class Timeline:
    """M = Combine(M_1 … M_n): a patient's records from every chain, oldest first."""

    entries: tuple[SharedRecord, ...]

    def __len__(self) -> int:
        return len(self.entries)

    def lines(self, names: dict[str, str] | None = None) -> list[str]:
        names = names or {}
        out = []
        for e in self.entries:
            when = datetime.fromtimestamp(e.timestamp, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
            out.append(f"{when} [{e.chain}] {e.record_type} by {names.get(e.doctor, e.doctor)}: {e.text} "
                       f"({', '.join(e.keywords)})")
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())


def combine(records: Iterable[SharedRecord]) -> Timeline:
    """Algorithm 3 step 6: one timeline, sorted by the records' time (then chain and id), duplicates dropped."""
    unique = {r.record_id: r for r in records}
    return Timeline(tuple(sorted(unique.values(), key=lambda r: (r.timestamp, r.chain_id, r.record_id))))


class DoctorClient:
    """The data user's side: requests, search through a proxy, threshold decryption, combination."""

    def __init__(self, keys: Any, directory: Directory):
        self.secrets: PatientSecrets = keys.secrets
        self.account = keys.account
        self.id: bytes = keys.participant.id
        self.directory = directory
        self.policy = directory.policy

    # -- asking ---------------------------------------------------------------------------------

    def request_access(self, patient: Who, *, record: bytes | None = None, duration: int = 3600,
                       reason: str = "") -> AccessRequest:
        """Ask the patient for read access to one record (or all of them)."""
        if record is None:
            return self.policy.request_access(self.account, patient, duration=duration, reason=reason)
        return self.policy.request_access(self.account, patient, scope=Scope.RECORD, target=record,
                                          duration=duration, reason=reason)

    def request_emergency(self, patient: Who, *, duration: int, reason: str) -> EmergencyAccess:
        return self.policy.request_emergency(self.account, patient, duration, reason)

    # -- Algorithm 3 step 2: search ---------------------------------------------------------------

    def search_doc(self, proxy_address: str, token: SearchToken) -> dict[str, Any]:
        """One signed use of ``token`` at the proxy ``proxy_address`` (fresh timestamp and nonce)."""
        ts, nonce = int(time.time()), _secrets.token_bytes(16)
        digest = search_digest(proxy_address, token.digest, ts, nonce)
        return {"token": token.to_json(), "timestamp": ts, "nonce": _hex(nonce),
                "signature": _hex(self.secrets.signer.sign_digest(digest))}

    def search(self, patient: Who, ticket: SearchTicket | str) -> list[Match]:
        """Ask the proxies in turn (the first that answers) for the slips matching every keyword of the
        patient's search ticket (each of her key versions: the union of their matches)."""
        if isinstance(ticket, str):
            ticket = SearchTicket.from_text(ticket)
        if not isinstance(ticket, SearchTicket):
            raise SharingError("a search takes the search ticket the patient issued (trapdoors in clear are gone)")
        pid = self.policy.resolve(patient)
        if ticket.patient != pid:
            raise SharingError(f"the search ticket is {self.directory.name_of(ticket.patient)}'s, not "
                               f"{self.directory.name_of(pid)}'s")
        if ticket.grantee != self.id:
            raise SharingError("the search ticket was issued to someone else; ask the patient for your own")
        last: ProxyRefused | None = None
        for proxy in self.directory.preferred(list(self.directory.proxies)):
            try:
                info = proxy.info()
                token = ticket.token_for(info.address)
                if token is None:
                    continue
                found = proxy.search(self.search_doc(info.address, token))
            except ProxyRefused as exc:
                if exc.code is not Refusal.UNAVAILABLE:
                    raise
                self.directory.note(proxy, ok=False)
                last = exc
                continue
            out = []
            for m in found:
                owned = self.directory.proven_slip(int(m["chain_id"]), _b(m["slip_id"]), m["receipt"])
                if owned.slip.patient_id != pid:
                    raise IntegrityError(f"proxy {proxy.name} returned a slip of another patient")
                out.append(Match(owned.chain.chain_id, owned.chain.name, owned.height, owned.slip_id,
                                 int(m["consortium_height"]), owned))
            return out
        raise ThresholdNotMet(f"no proxy answered the search ({last})", [last] if last else [])

    # -- Algorithm 3 steps 4-5: re-encryption and decryption ---------------------------------------

    def read_record(self, patient: Who, match: Match | tuple[int, bytes], *, action: int = Action.READ,
                    proxies: Sequence[ProxyClient] | None = None) -> SharedRecord:
        """Collect ≥ m verified capsule fragments for one record and decrypt it.

        Asks m proxies in parallel (those not seen failing recently first) and the others only if
        fewer than m valid fragments came back, so one proxy down still serves.
        """
        pid = self.policy.resolve(patient) if not isinstance(patient, bytes) else patient
        owned = match.owned if isinstance(match, Match) else self.directory.proven_slip(*match)
        record = owned.record
        m = self.directory.threshold
        pending = self.directory.preferred(list(proxies if proxies is not None else self.directory.proxies))
        refusals: list[ProxyRefused] = []
        cfrags: list[Any] = []
        audits: list[dict[str, Any]] = []
        tags: list[bytes] = []
        blob = ciphertext = None
        while len(cfrags) < m and pending:
            batch, pending = pending[:m - len(cfrags)], pending[m - len(cfrags):]
            answers = list(self.directory.pool.map(lambda p: self._ask(p, pid, owned, action), batch))
            for proxy, a in zip(batch, answers):
                if isinstance(a, ProxyRefused):
                    self.directory.note(proxy, ok=a.code is not Refusal.UNAVAILABLE)
                    refusals.append(a)
                    continue
                self.directory.note(proxy, ok=True)
                if ciphertext is None:
                    candidate = _b(a["blob"])
                    if keccak(candidate) != record.record_ciphertext_hash:
                        refusals.append(ProxyRefused(Refusal.INTEGRITY, "returned a ciphertext other than the one "
                                                     "the patient confirmed", proxy=proxy.name))
                        continue
                    blob, ciphertext = candidate, record.load_ciphertext(candidate)
                try:
                    cfrags.append(load_cfrag(_b(a["cfrag"]), capsule=ciphertext.capsule,
                                             verifying_pk=record.kfrag_verifying_key, delegating_pk=record.record_key,
                                             receiving_pk=self.secrets.public_keys.pre_key))
                    audits.append(a["audit"])
                    tags.append(_b(a.get("keyword_set_hash", _hex(ZERO32))))
                except (CapsuleFragVerificationError, MalformedDataError) as exc:
                    refusals.append(ProxyRefused(Refusal.INTEGRITY, f"invalid capsule fragment: {exc}",
                                                 proxy=proxy.name))
            if refusals and all(r.code not in (Refusal.UNAVAILABLE, Refusal.NO_KEY, Refusal.INTEGRITY)
                                for r in refusals) and not cfrags:
                break  # the policy said no: the other proxies read the same chain
        if len(cfrags) < m:
            _raise_refusal(refusals, len(cfrags), m, owned)
        payload = open_shared_record(record, blob, receiving_sk=self.secrets.identity_secret_key, cfrags=cfrags[:m])
        h = record.header
        tag = Counter(tags[:m]).most_common(1)[0][0] if tags else ZERO32
        return SharedRecord(owned.slip_id, owned.chain.name, owned.chain.chain_id, h.timestamp, h.record_type,
                            h.text, h.doctor, payload, tuple(audits), tag)

    def _ask(self, proxy: ProxyClient, patient: bytes, owned: OwnedSlip, action: int) -> dict[str, Any] | ProxyRefused:
        try:
            return proxy.reencrypt(self._read_doc(proxy.info(), patient, owned, action))
        except ProxyRefused as exc:
            return exc

    def _read_doc(self, info: ProxyInfo, patient: bytes, owned: OwnedSlip, action: int) -> dict[str, Any]:
        ts, nonce = int(time.time()), _secrets.token_bytes(16)
        digest = read_digest(info.address, patient, self.id, owned.slip_id, owned.chain.chain_id, action, ts, nonce)
        return {"patient": _hex(patient), "grantee": _hex(self.id), "record_id": _hex(owned.slip_id),
                "chain_id": owned.chain.chain_id, "action": int(action), "timestamp": ts, "nonce": _hex(nonce),
                "signature": _hex(self.secrets.signer.sign_digest(digest))}

    def read(self, patient: Who, ticket: SearchTicket | str) -> list[SharedRecord]:
        """Search, then read every match (Algorithm 3 steps 2-5)."""
        return [self.read_record(patient, m) for m in self.search(patient, ticket)]

    def history(self, patient: Who, ticket: SearchTicket | str) -> Timeline:
        """Search, read and combine (Algorithm 3 whole)."""
        return combine(self.read(patient, ticket))


def _raise_refusal(refusals: list[ProxyRefused], got: int, m: int, owned: OwnedSlip) -> None:
    """Raise the policy's refusal if the proxies gave one, else ThresholdNotMet."""
    decisive = [r for r in refusals if r.code is not Refusal.UNAVAILABLE]
    if decisive:
        code, _ = Counter(r.code for r in decisive).most_common(1)[0]
        first = next(r for r in decisive if r.code is code)
        first.refusals = tuple(refusals)  # type: ignore[attr-defined]
        raise first
    raise ThresholdNotMet(f"record {_hex(owned.slip_id)} on {owned.chain.name}: {got} valid capsule fragment(s), "
                          f"{m} needed ({'; '.join(str(r) for r in refusals) or 'no proxy answered'})", refusals)


__all__ = [
    "Directory", "DoctorClient", "Issued", "Match", "OwnedSlip", "PatientClient", "ProxyClient", "ProxyInfo",
    "SearchTicket", "SharedRecord", "SharingError", "ThresholdNotMet", "Timeline", "combine",
]
