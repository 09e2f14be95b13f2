"""Script a running MBDS network from Python: ``net = mbds_py.connect(state_dir, passphrase)``.

The connection is found from the network's state folder, as the portal finds it (no KMC secret,
no process started).  Participants' keystores are unlocked lazily, on first use, with the one
passphrase the network was brought up with (``mbds up``); nothing secret is logged or printed.

    net = mbds_py.connect("/tmp/mbds", "the passphrase")
    pending = net.write_record("dr-li", "alice", ["icd10|J06.9"], "Acute URTI")
    (rec,) = net.confirm("alice", pending.record_id)
    net.grant("alice", "dr-wang", record=rec.record_id)
    print(net.read("dr-wang", "alice", rec.record_id).text)

Every error is an :class:`~mbds_py.errors.MBDSError` whose one-line message says what to do; a read
the patient's policy refuses raises :class:`~mbds_py.sharing.proxy.ProxyRefused` (``.code``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, fields, is_dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Sequence

from .errors import DevnetError, IdentityError, KeystoreError, KeystorePassphraseError, MBDSError
from .identity import Participant, Role

PASSPHRASE_ENV = "MBDS_PASSPHRASE"
INDEX_TIMEOUT = 90.0  # seconds for a committed record to reach the consortium index


class ScriptingError(MBDSError):
    """A scripting call cannot proceed; the message says what to do."""


class NoNetwork(ScriptingError, DevnetError):
    """No running network in the state folder."""


class UnknownParticipant(ScriptingError, IdentityError):
    """The name is not enrolled (or has another role); the message lists the enrolled names."""


class WrongPassphrase(ScriptingError, KeystoreError):
    """The passphrase does not open a participant's keystore."""


# ---------------------------------------------------------------------------------------------
# outcomes (plain data; :func:`as_json` turns any of them into JSON-ready values)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CommittedRecord:
    """A confirmed record: committed by PBFT, anchored and proven against SlipLedger, maybe indexed."""

    record_id: str
    chain: str
    height: int
    anchor_tx: str | None
    indexed: bool


@dataclass(frozen=True)
class RequestInfo:
    request_id: int
    patient: str
    doctor: str
    record: str | None  # None: all records
    state: str
    deadline: int
    expires_at: int
    reason: str


@dataclass(frozen=True)
class GrantInfo:
    patient: str
    doctor: str
    record: str | None  # None: all records
    expires_at: int
    keys_issued: int  # records whose key shares went to the proxies
    gas: int


@dataclass(frozen=True)
class RevokeInfo:
    patient: str
    doctor: str
    record: str | None  # None: every grant of the doctor
    epoch: int
    keys_reissued: int  # records still granted whose keys were re-issued for the new epoch
    gas: int


@dataclass(frozen=True)
class SearchHit:
    record_id: str
    chain: str
    block_height: int
    consortium_height: int


@dataclass(frozen=True)
class RecordRead:
    """One record decrypted through the threshold proxies."""

    record_id: str
    chain: str
    timestamp: int
    record_type: str
    text: str
    doctor: str  # the signing doctor's name
    keywords: tuple[str, ...]
    hmi: Any  # the health record M as the doctor wrote it
    proxies: int  # capsule fragments used (each one an AccessRecorded event)


@dataclass(frozen=True)
class AuditEntry:
    """One line of a patient's audit trail: a read (re-encryption) or a refused attempt."""

    record_id: str
    at: int
    who: str
    proxy: str
    outcome: str  # "read" | "refused"
    detail: str  # the basis of a read, the policy reason of a refusal
    tx: str


@dataclass(frozen=True)
class ReceiptInfo:
    """A slip's inclusion receipt, verified against the header hash its chain's SlipLedger anchors."""

    slip_id: str
    chain: str
    height: int
    merkle_root: str
    proof_length: int
    header_hash: str
    anchored_hash: str
    anchor_tx: str | None
    patient: str
    doctor: str
    verified: bool


def _hex(b: bytes) -> str:
    return "0x" + bytes(b).hex()


def as_json(value: Any) -> Any:
    """Dataclasses, bytes, enums and tuples as JSON-ready values (bytes as 0x-hex)."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: as_json(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, (bytes, bytearray)):
        return _hex(value)
    if isinstance(value, Enum):
        return value.name.lower() if not isinstance(value, str) else value.value
    if isinstance(value, dict):
        return {str(k): as_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_json(v) for v in value]
    return value


def parse_id(text: str | bytes, what: str = "record ID") -> bytes:
    """A 32-byte ID from 0x-hex (or bytes); a one-line error otherwise."""
    if isinstance(text, (bytes, bytearray)):
        raw = bytes(text)
    else:
        t = text.strip()
        try:
            raw = bytes.fromhex(t[2:] if t.startswith("0x") else t)
        except ValueError:
            raise ScriptingError(f"{what} must be 0x followed by 64 hex digits; got {t[:20]!r}") from None
    if len(raw) != 32:
        raise ScriptingError(f"{what} must be 32 bytes (0x + 64 hex digits); got {len(raw)} bytes")
    return raw


# ---------------------------------------------------------------------------------------------
# health authorities
# ---------------------------------------------------------------------------------------------


class AuthorityClient:
    """A health authority's side: break-glass approvals and clearing suspended requesters."""

    def __init__(self, keys: Any, connection: "Connection"):
        self.account = keys.account
        self.id: bytes = keys.participant.id
        self.name = keys.participant.name
        self._net = connection
        self.policy = connection.directory.policy

    def pending_emergencies(self) -> list[Any]:
        """Break-glass requests still awaiting approvals (``EmergencyAccess``), oldest first."""
        from .sharing.policy import EmergencyState

        now = self.policy.now()
        out = []
        for log in self.policy._logs("EmergencyAccessRequested", {}, 0):  # noqa: SLF001
            e = self.policy.emergency(log["args"]["emergencyId"], reason=log["args"]["reason"])
            if e.state_at(now) is EmergencyState.PENDING:
                out.append(e)
        return out

    def approve_emergency(self, emergency_id: int) -> dict[str, Any]:
        return self.policy.approve_emergency(self.account, int(emergency_id))

    def clear_suspension(self, requester: str | bytes, reason: str) -> dict[str, Any]:
        """This authority's share of a k-of-n clearance: proposes it, or approves the same pending one (same
        requester and reason); the approval that reaches the quorum executes it. Returns the operation ID
        and whether it was executed."""
        outcome = self.policy.join_clear_suspension(self.account, self._net.participant_id(requester), reason)
        return {"operation": "0x" + outcome.operation_id.hex(), "executed": outcome.executed,
                "receipt": outcome.receipt}


# ---------------------------------------------------------------------------------------------
# the connection
# ---------------------------------------------------------------------------------------------


def connect(state_dir: str | Path | None = None, passphrase: str | None = None, *,
            spec: str | Path | None = None) -> "Connection":
    """Attach to the network running from ``state_dir`` (default: ``$MBDS_STATE_DIR``, else the spec's
    or the per-user state folder).  ``passphrase`` opens the participants' keystores when first needed
    (default: ``$MBDS_PASSPHRASE``)."""
    from .devnet import Devnet, is_running
    from .portal.discovery import discover
    from .spec import load_spec

    net_spec = load_spec(spec, state_dir=state_dir)
    folder = net_spec.state_dir
    up = f"`mbds up --state-dir {folder}`"
    devnet = Devnet(net_spec)
    if not devnet.state_file.is_file():
        what = "was stopped" if (folder / "kmc").is_dir() else "is running there"
        raise NoNetwork(f"no network in {folder} (none {what}): start one with {up}")
    down = [n for n, c in devnet.load_state().items() if not c.external and not is_running(c.pid, c.started)]
    if down:
        raise NoNetwork(f"the network in {folder} is down (chain {', '.join(sorted(down))} not running): "
                        f"bring it up again with {up}")
    try:
        view = discover(net_spec)
    except MBDSError as exc:
        raise NoNetwork(f"the network in {folder} is not fully up ({exc}): run {up}") from None
    return Connection(view, passphrase)


class Connection:
    """One running network as a script sees it: participants, their clients, records, audit, receipts."""

    def __init__(self, view: Any, passphrase: str | None = None):
        self.view = view
        self.spec = view.spec
        self.state_dir: Path = view.spec.state_dir
        self._passphrase = passphrase
        self._keys: dict[str, Any] = {}
        self._clients: dict[tuple[str, str], Any] = {}
        self._directory = None
        self._chain_of_inst: dict[bytes, Any] | None = None

    def __repr__(self) -> str:
        return f"Connection({self.state_dir})"

    def use_passphrase(self, passphrase: str) -> None:
        """The passphrase for the keystores not unlocked yet (the one `mbds up` was given)."""
        self._passphrase = passphrase

    # -- participants ------------------------------------------------------------------------

    @property
    def participants(self) -> dict[str, Participant]:
        """Every enrolled participant by name (public records only)."""
        return dict(self.view.participants)

    def names(self, role: Role | None = None) -> list[str]:
        return sorted(n for n, p in self.view.participants.items() if role is None or p.role is role)

    def participant(self, name: str, role: Role | str | None = None) -> Participant:
        """The enrolled participant ``name`` (of ``role``: "patient", "doctor", "authority")."""
        want = _role_label(role)
        p = self.view.participants.get(name)
        if p is None:
            of_role = self._names_of(want)
            listed = f"enrolled {want}s: {', '.join(of_role)}" if want else f"enrolled: {', '.join(of_role)}"
            raise UnknownParticipant(f"unknown participant {name!r} in {self.state_dir}; {listed}")
        if want and _role_label(p.role) != want:
            raise UnknownParticipant(f"{name} is a {p.role.label}, not a {want}; enrolled {want}s: "
                                     f"{', '.join(self._names_of(want))}")
        return p

    def _names_of(self, want: str | None) -> list[str]:
        return sorted(n for n, p in self.view.participants.items() if want is None or _role_label(p.role) == want)

    def participant_id(self, who: str | bytes) -> bytes:
        """A participant ID from an enrolled name or 32 bytes / 0x-hex."""
        if isinstance(who, (bytes, bytearray)):
            return parse_id(who, "participant ID")
        if who.startswith("0x") and len(who) == 66:
            return parse_id(who, "participant ID")
        return self.participant(who).id

    def name_of(self, participant: bytes) -> str:
        return self.view.names().get(bytes(participant), _hex(participant)[:14] + "…")

    def name_of_address(self, address: str) -> str:
        by = {p.address.lower(): n for n, p in self.view.participants.items()}
        return by.get(address.lower(), address)

    # -- keys and clients ----------------------------------------------------------------------

    def keys(self, name: str) -> Any:
        """``name``'s unlocked key set (:class:`~mbds_py.kmc.ParticipantKeys`), decrypted on first use."""
        from .kmc import unlock_participant

        if name not in self._keys:
            self.participant(name)
            passphrase = self._passphrase or os.environ.get(PASSPHRASE_ENV)
            if not passphrase:
                raise ScriptingError(f"no passphrase to unlock {name}'s keystore: pass the one `mbds up` was given "
                                     f"(connect(state_dir, passphrase) or {PASSPHRASE_ENV})")
            try:
                self._keys[name] = unlock_participant(self.view.keystore(name), passphrase)
            except KeystorePassphraseError:  # a damaged or missing file says so itself (KeystoreError)
                raise WrongPassphrase(f"wrong passphrase for {name}'s keystore in {self.state_dir}: give the "
                                      "passphrase this network was brought up with (`mbds up`)") from None
        return self._keys[name]

    @property
    def directory(self) -> Any:
        """The clients' view of the network (:class:`~mbds_py.sharing.clients.Directory`)."""
        if self._directory is None:
            self._directory = self.view.directory()
        return self._directory

    def patient(self, name: str) -> Any:
        """``name``'s :class:`~mbds_py.sharing.clients.PatientClient` (keys unlocked on first use)."""
        from .sharing.clients import PatientClient

        self.participant(name, "patient")
        return self._client("patient", name, lambda: PatientClient(self.keys(name), self.directory))

    def doctor(self, name: str) -> Any:
        """``name``'s :class:`~mbds_py.sharing.clients.DoctorClient` (keys unlocked on first use)."""
        from .sharing.clients import DoctorClient

        self.participant(name, "doctor")
        return self._client("doctor", name, lambda: DoctorClient(self.keys(name), self.directory))

    def authority(self, name: str) -> AuthorityClient:
        """A health authority's :class:`AuthorityClient` (keys unlocked on first use)."""
        self.participant(name, "authority")
        return self._client("authority", name, lambda: AuthorityClient(self.keys(name), self))

    def _client(self, kind: str, name: str, make: Any) -> Any:
        if (kind, name) not in self._clients:
            self._clients[(kind, name)] = make()
        return self._clients[(kind, name)]

    # -- chains -------------------------------------------------------------------------------

    def chains(self) -> dict[str, Any]:
        """Private chains by name (:class:`~mbds_py.sharing.proxy.ChainRef`)."""
        return {c.name: c for c in self.view.chains}

    def chain_of(self, doctor: str) -> Any:
        """The private chain of a doctor's hospital or platform."""
        from .private.node import NodeConfig

        if self._chain_of_inst is None:
            self._chain_of_inst = {}
            for c in self.view.chains:
                config = NodeConfig.load(self.state_dir / "nodes" / f"{c.name}.json")
                self._chain_of_inst[bytes.fromhex(config.hospital_id[2:])] = c
        d = self.participant(doctor, "doctor")
        chain = self._chain_of_inst.get(d.institution)
        if chain is None:
            raise ScriptingError(f"{doctor}'s institution {self.name_of(d.institution)} runs no private chain of "
                                 f"this network")
        return chain

    def hospital(self, chain: str) -> Any:
        """A :class:`~mbds_py.private.client.HospitalClient` of one private chain's replicas."""
        from .private.client import HospitalClient

        chains = self.chains()
        if chain not in chains:
            raise ScriptingError(f"no private chain {chain!r}; chains: {', '.join(sorted(chains))}")
        return HospitalClient(chains[chain].api_urls)

    def ledger(self, chain: str) -> Any:
        """The :class:`~mbds_py.chain.slip_ledger.SlipLedgerAgent` of one private chain."""
        return self.directory.ledger(self.chains()[chain].chain_id)

    # -- records (Algorithms 1-2) ---------------------------------------------------------------

    def write_record(self, doctor: str, patient: str, keywords: str | Sequence[str], text: str, *,
                     record_type: str = "consultation", hmi: dict | None = None) -> Any:
        """The doctor signs a record and uploads it to his hospital's replicas, where it waits for the
        patient's confirmation; returns the :class:`~mbds_py.sharing.records.PendingRecord`."""
        from .crypto import PatientPublicKeys
        from .sharing.records import PendingRecord, submit_record

        chain = self.chain_of(doctor)
        pat = self.participant(patient, "patient")
        secrets = self.keys(doctor).secrets
        now = int(time.time())
        rid = submit_record(self.hospital(chain.name), chain.domain, secrets, PatientPublicKeys.from_participant(pat),
                            keywords, text, record_type=record_type, hmi=hmi, patient_label=patient, timestamp=now)
        return PendingRecord(rid, chain.name, secrets.signer.address, pat.address, now, record_type, text)

    def pending(self, patient: str) -> list[Any]:
        """Records waiting for ``patient``'s confirmation on every private chain, oldest first."""
        from .sharing.records import pending_records

        pat = self.participant(patient, "patient")
        out = []
        for c in self.view.chains:
            out += pending_records(self.hospital(c.name), c.name, pat.address)
        return sorted(out, key=lambda p: (p.timestamp, p.record_id))

    def confirm(self, patient: str, record_id: str | bytes | None = None, *, index: bool = True,
                timeout: float = INDEX_TIMEOUT) -> list[CommittedRecord]:
        """The patient reviews and confirms one pending record (or, with none named, every one): PBFT
        commits it, its receipt is proven against SlipLedger and (``index``) it is indexed on the
        consortium, so it can be searched and shared."""
        from .sharing.records import confirm_pending, wait_committed

        pending = self.pending(patient)
        if record_id is not None:
            rid = _hex(parse_id(record_id))
            pending = [p for p in pending if p.record_id == rid]
            if not pending:
                raise ScriptingError(f"no record {rid} waits for {patient}'s confirmation; pending: "
                                     f"{', '.join(p.record_id for p in self.pending(patient)) or 'none'}")
        secrets = self.keys(patient).secrets
        doctors = {self.participant(n).address.lower() for n in self.names(Role.DOCTOR)}
        done = []
        for p in pending:
            if p.doctor.lower() not in doctors:
                raise ScriptingError(f"record {p.record_id} on {p.chain} is signed by {p.doctor}, who is not an "
                                     "enrolled doctor; not confirmed")
            chain = self.chains()[p.chain]
            api = self.hospital(p.chain)
            slip_id = confirm_pending(api, chain.domain, secrets, p.record_id, self.directory.store(),
                                      expected_doctor=p.doctor)
            receipt = wait_committed(api, self.ledger(p.chain), slip_id, timeout=timeout)
            done.append(CommittedRecord(slip_id, p.chain, receipt.height, receipt.anchor_tx, False))
        if index and done:
            self.wait_indexed(patient, [c.record_id for c in done], timeout=timeout)
            done = [CommittedRecord(c.record_id, c.chain, c.height, c.anchor_tx, True) for c in done]
        return done

    def record(self, doctor: str, patient: str, keywords: str | Sequence[str], text: str, *,
               record_type: str = "consultation", hmi: dict | None = None) -> CommittedRecord:
        """Write and confirm in one call (the demo's ``record_visit``), indexed on the consortium."""
        pending = self.write_record(doctor, patient, keywords, text, record_type=record_type, hmi=hmi)
        (done,) = self.confirm(patient, pending.record_id)
        return done

    def wait_indexed(self, patient: str, record_ids: Sequence[str], *, timeout: float = INDEX_TIMEOUT) -> None:
        """Poll the consortium until every record's summary item of ``patient`` is indexed (bounded)."""
        from .private.cluster import wait_until

        pid = self.participant(patient, "patient").id
        want = {r.lower() for r in record_ids}
        wait_until(lambda: want <= {i["slip_id"].lower() for i in self.directory.consortium_items(pid)}, timeout,
                   f"{len(want)} record(s) of {patient} on the consortium index", interval=0.25)

    def records_of(self, patient: str) -> list[tuple[int, bytes]]:
        """(chain ID, record ID) of every record of ``patient`` indexed on the consortium (public)."""
        pid = self.participant(patient, "patient").id
        items = self.directory.consortium_items(pid)
        seen: dict[bytes, int] = {}
        for i in items:
            seen.setdefault(parse_id(i["slip_id"]), int(i["chain_id"]))
        return [(cid, rid) for rid, cid in seen.items()]

    def locate(self, patient: str, record_id: str | bytes) -> tuple[int, bytes]:
        """(chain ID, record ID) of one indexed record of ``patient``."""
        rid = parse_id(record_id)
        for cid, r in self.records_of(patient):
            if r == rid:
                return cid, r
        raise ScriptingError(f"record {_hex(rid)} of {patient} is not on the consortium index (not confirmed yet, "
                             f"or another patient's); `mbds record confirm --as {patient}` first")

    # -- access (Algorithm 3, policy side) -------------------------------------------------------

    def request(self, doctor: str, patient: str, *, record: str | bytes | None = None, duration: int = 3600,
                reason: str = "") -> RequestInfo:
        """The doctor asks the patient for read access to one record (or all of them)."""
        req = self.doctor(doctor).request_access(self.participant(patient, "patient").id,
                                                 record=None if record is None else parse_id(record),
                                                 duration=duration, reason=reason)
        return self._request_info(req)

    def _request_info(self, req: Any) -> RequestInfo:
        from .sharing.policy import Scope

        now = self.directory.policy.now()
        return RequestInfo(req.id, self.name_of(req.patient), self.name_of(req.requester),
                           _hex(req.target) if req.scope is Scope.RECORD else None, req.state_at(now).name.lower(),
                           req.deadline, req.expires_at, req.reason)

    def requests(self, patient: str) -> list[RequestInfo]:
        """Requests awaiting ``patient``'s decision."""
        self.participant(patient, "patient")
        return [self._request_info(r) for r in self._patient_view(patient).pending_requests()]

    def requests_sent(self, doctor: str) -> list[RequestInfo]:
        """Every request ``doctor`` sent, oldest first, with its state now."""
        policy = self.directory.policy
        did = self.participant(doctor, "doctor").id
        return [self._request_info(policy.request(log["args"]["requestId"], reason=log["args"]["reason"]))
                for log in policy._logs("AccessRequested", {"requester": did}, 0)]  # noqa: SLF001

    def grants(self, patient: str) -> list[GrantInfo]:
        """``patient``'s live grants (not revoked, not expired), newest first; public, no key needed."""
        from .sharing.policy import Scope

        policy = self.directory.policy
        now = policy.now()
        live = [g for g in policy.grants_from_logs(self.participant(patient, "patient").id) if g.expires_at > now]
        return [GrantInfo(patient, self.name_of(g.grantee), _hex(g.target) if g.scope is Scope.RECORD else None,
                          g.expires_at, 0, 0) for g in sorted(live, key=lambda g: -g.since)]

    def _patient_view(self, patient: str) -> Any:
        """A keyless patient client for public reads (requests, audit) without unlocking."""
        from .sharing.clients import PatientClient

        if ("patient", patient) in self._clients:
            return self._clients[("patient", patient)]
        p = self.participant(patient, "patient")
        return PatientClient(_PublicKeys(p), self.directory)

    def approve(self, patient: str, request_id: int) -> RequestInfo:
        """The patient approves a request and issues the proxies the key shares its scope covers."""
        policy = self.directory.policy
        req = policy.request(int(request_id))
        if req.patient != self.participant(patient, "patient").id:
            raise ScriptingError(f"request #{request_id} is addressed to {self.name_of(req.patient)}, not {patient}")
        self.patient(patient).approve(int(request_id))
        return self._request_info(policy.request(int(request_id), reason=req.reason))

    def reject(self, patient: str, request_id: int, reason: str = "") -> RequestInfo:
        policy = self.directory.policy
        req = policy.request(int(request_id))
        if req.patient != self.participant(patient, "patient").id:
            raise ScriptingError(f"request #{request_id} is addressed to {self.name_of(req.patient)}, not {patient}")
        self.patient(patient).reject(int(request_id), reason or "rejected by the patient")
        return self._request_info(policy.request(int(request_id)))

    def grant(self, patient: str, doctor: str, *, record: str | bytes | None = None,
              duration: int = 3600) -> GrantInfo:
        """The patient grants the doctor read access (one record, or all) and issues the key shares."""
        from .sharing.policy import Scope, ZERO32

        did = self.participant(doctor, "doctor").id
        rid = None if record is None else parse_id(record)
        if rid is not None:
            self.locate(patient, rid)
        out = self.patient(patient).grant(did, records=None if rid is None else [rid], duration=duration)
        pid = self.participant(patient).id
        g = self.directory.policy.grant_of(pid, did, Scope.ALL if rid is None else Scope.RECORD,
                                           ZERO32 if rid is None else rid)
        issued = out["issued"]
        return GrantInfo(patient, doctor, None if rid is None else _hex(rid), g.expires_at if g else 0,
                         len(issued.records) if issued else 0, out["gas"])

    def revoke(self, patient: str, doctor: str, *, record: str | bytes | None = None) -> RevokeInfo:
        """The patient revokes one grant (``record``) or every grant of the doctor; the proxies refuse
        from the next read on."""
        did = self.participant(doctor, "doctor").id
        rid = None if record is None else parse_id(record)
        out = self.patient(patient).revoke(did, record=rid)
        again = out["reissued"]
        epoch = self.directory.policy.epoch(self.participant(patient).id, did)
        return RevokeInfo(patient, doctor, None if rid is None else _hex(rid), epoch,
                          len(again.records) if again else 0, out["gas"])

    # -- search and read (Algorithm 3) --------------------------------------------------------------

    def search_ticket(self, patient: str, doctor: str, keywords: str | Sequence[str], *, ttl: int = 3600) -> Any:
        """The patient issues ``doctor`` a search ticket (needs her keys): her trapdoors for every coded keyword,
        encrypted to the proxies and bound to his grant and an expiry; he never sees a trapdoor in clear."""
        words = [keywords] if isinstance(keywords, str) else list(keywords)
        if not words:
            raise ScriptingError("give at least one coded keyword (system|code, e.g. icd10|J06.9)")
        return self.patient(patient).search_ticket(self.participant(doctor, "doctor").id, *words, ttl=ttl)

    def search(self, doctor: str, patient: str, keywords: str | Sequence[str]) -> list[SearchHit]:
        """The patient issues the doctor a search ticket, the doctor searches through a proxy (all keywords must
        match; the doctor needs a live grant); every hit is proven against its chain."""
        ticket = self.search_ticket(patient, doctor, keywords)  # every key version: older records too
        matches = self.doctor(doctor).search(self.participant(patient).id, ticket)
        return [SearchHit(_hex(m.slip_id), m.chain, m.block_height, m.consortium_height) for m in matches]

    def read(self, doctor: str, patient: str, record_id: str | bytes) -> RecordRead:
        """The doctor reads one record through the m-of-n proxies; a policy refusal raises
        :class:`~mbds_py.sharing.proxy.ProxyRefused` (``.code``: revoked, no-grant, …)."""
        self.participant(patient, "patient")
        where = self.locate(patient, record_id)
        rec = self.doctor(doctor).read_record(self.participant(patient).id, where)
        return self._record_read(rec)

    def _record_read(self, rec: Any) -> RecordRead:
        return RecordRead(_hex(rec.record_id), rec.chain, rec.timestamp, rec.record_type, rec.text,
                          self.name_of_address(rec.doctor), tuple(rec.keywords), rec.hmi, len(rec.audits))

    # -- audit and receipts ---------------------------------------------------------------------

    def audit(self, patient: str, record: str | bytes | None = None) -> list[AuditEntry]:
        """Every read and every refused attempt on ``patient``'s records (one record's, if given), oldest
        first; public events of AccessPolicy, no key needed."""
        from .sharing.policy import Basis

        pid = self.participant(patient, "patient").id
        rid = None if record is None else parse_id(record)
        policy = self.directory.policy
        proxies = {i.address.lower(): f"proxy of {i.name}" for i in self.directory.proxy_infos() if i is not None}
        label = lambda a: proxies.get(a.lower(), self.name_of_address(a))  # noqa: E731
        rows = []
        for ev in policy.audit_trail(patient=pid, record_id=rid):
            basis = {Basis.GRANT: "grant", Basis.PRESET_RULE: "preset rule",
                     Basis.EMERGENCY: "emergency"}.get(ev.basis, ev.basis.name.lower())
            rows.append(AuditEntry(_hex(ev.record_id), ev.at, self.name_of(ev.grantee), label(ev.proxy), "read",
                                   f"read by {basis}", _hex(ev.tx_hash)))
        for d in policy.denials(patient=pid, record_id=rid):
            rows.append(AuditEntry(_hex(d.record_id), d.at, self.name_of(d.grantee), label(d.proxy), "refused",
                                   d.reason.name.lower().replace("_", "-") + ": " + d.reason.message, _hex(d.tx_hash)))
        return sorted(rows, key=lambda r: (r.at, r.outcome, r.proxy))

    def receipt(self, slip_id: str | bytes, *, as_participant: str | None = None) -> ReceiptInfo:
        """Fetch a slip's receipt from the replicas of whichever chain holds it and verify it against that
        chain's SlipLedger (the lightweight client's check).  With ``as_participant``, the slip must be
        that participant's when a patient or a doctor asks (institutions and authorities check any slip)."""
        from .private.client import verify_receipt
        from .private.slip import TransactionSlip

        sid = _hex(parse_id(slip_id, "slip ID"))
        asker = None if as_participant is None else self.participant(as_participant)
        for c in self.view.chains:
            receipt = self.hospital(c.name).receipt(sid)
            if receipt is None:
                continue
            ledger = self.directory.ledger(c.chain_id)
            verify_receipt(receipt, ledger)  # raises IntegrityError if the proof does not hold on chain
            slip = TransactionSlip.from_bytes(receipt.payload)
            if asker is not None and asker.role in (Role.PATIENT, Role.DOCTOR) and \
                    asker.id not in (slip.patient_id, slip.doctor_id):
                raise ScriptingError(f"slip {sid} on {c.name} is neither {asker.name}'s record nor written by "
                                     f"{asker.name}")
            return ReceiptInfo(sid, c.name, receipt.height, _hex(receipt.header.merkle_root), len(receipt.proof),
                               _hex(ledger.hash_header(receipt.header)), _hex(ledger.header_hash_at(receipt.height)),
                               receipt.anchor_tx, self.name_of(slip.patient_id), self.name_of(slip.doctor_id), True)
        raise ScriptingError(f"no private chain of this network has committed slip {sid} (pending confirmation, or "
                             "unknown)")


@dataclass(frozen=True)
class _PublicKeys:
    """Just enough of a key set for a keyless PatientClient (public reads only)."""

    participant: Participant

    @property
    def secrets(self) -> None:
        return None

    @property
    def account(self) -> None:
        return None


def _role_label(role: Role | str | None) -> str | None:
    if role is None:
        return None
    if isinstance(role, str):
        return role
    if role is Role.PATIENT:
        return "patient"
    if role is Role.DOCTOR:
        return "doctor"
    if role.is_authority:
        return "authority"
    return role.label


__all__ = ["AuditEntry", "AuthorityClient", "CommittedRecord", "Connection", "GrantInfo", "NoNetwork",
           "ReceiptInfo", "RecordRead", "RequestInfo", "RevokeInfo", "ScriptingError", "SearchHit",
           "UnknownParticipant", "WrongPassphrase", "as_json", "connect", "parse_id"]
