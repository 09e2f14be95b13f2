"""The online client's core: one participant's unlocked key set and what its page shows and does.

No HTTP here (see :mod:`.server`) and nothing written to disk: decrypted
records and search results live only in this process's memory, and go with
:meth:`Portal.lock`.  Every action either completes or raises
:class:`PortalError` with a sentence for the page (what failed, that nothing
changed, what to do) — see :func:`explain`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

import requests

from ..errors import ChainError, ContractRevert, IdentityError, IntegrityError, KeystoreError, MBDSError
from ..identity import Role
from ..kmc import ParticipantKeys, unlock_participant
from ..sharing.clients import (DoctorClient, Match, PatientClient, SharedRecord, SharingError, ThresholdNotMet,
                               combine)
from ..sharing.policy import (AccessDenial, AccessEvent, AccessRequest, Action, Basis, EmergencyState, Grant,
                              RequestState, Scope)
from ..sharing.proxy import ProxyRefused, Refusal
from .discovery import NetworkView

PATIENT, DOCTOR = "patient", "doctor"


class PortalError(MBDSError):
    """An action the page asked for did not happen; the message says why and what to do."""


# ---------------------------------------------------------------------------------------------
# rows the page shows (plain data, already resolved to names)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordRow:
    record_id: bytes
    time: int
    chain: str
    record_type: str
    text: str
    doctor: str
    keywords: tuple[str, ...]


@dataclass(frozen=True)
class RequestRow:
    request: AccessRequest
    requester: str
    patient: str
    state: RequestState


@dataclass(frozen=True)
class GrantRow:
    grant: Grant
    grantee: str


@dataclass(frozen=True)
class EmergencyRow:
    id: int
    grantee: str
    state: EmergencyState
    reason: str
    approvals: int
    activated_at: int
    expires_at: int


@dataclass(frozen=True)
class AuditRow:
    """One line of a record's audit trail: a read (re-encryption) or a refused attempt."""

    record_id: bytes
    at: int
    who: str
    proxy: str
    outcome: str  # "read" or "refused"
    detail: str  # the basis of a read, the reason of a refusal
    tx_hash: bytes


@dataclass(frozen=True)
class ReceiptCheck:
    """The lightweight client's check of one record: its slip's Merkle proof against the anchored root."""

    record_id: bytes
    chain: str
    height: int
    merkle_root: bytes
    proof_length: int
    header_hash: bytes  # EIP-712 hash of the header the replicas returned
    anchored_hash: bytes  # the header hash SlipLedger stores at that height
    anchor_tx: str | None


@dataclass
class Flash:
    """The outcome of the last action, shown once at the top of the page."""

    level: str  # "ok" | "error" | "info"
    text: str
    detail: str = ""


# ---------------------------------------------------------------------------------------------
# errors → sentences
# ---------------------------------------------------------------------------------------------

_REFUSALS = {
    Refusal.REVOKED: "the patient revoked your access to this record",
    Refusal.NO_GRANT: "the patient has not granted you access; send a request first",
    Refusal.EXPIRED: "your access has expired; ask the patient to renew it",
    Refusal.NOT_YET_VALID: "your access is not valid yet",
    Refusal.OUT_OF_SCOPE: "your access covers other records, not this one",
    Refusal.ACTION_NOT_ALLOWED: "your access does not include reading",
    Refusal.SUSPENDED: "your account is suspended after abnormal access; a health authority must clear it",
    Refusal.STALE_EPOCH: "the patient changed your access and has not re-issued the key for this record yet",
    Refusal.NO_KEY: "the patient allowed it but has not issued the key to the proxies yet",
}


def explain(exc: BaseException) -> str:
    """A sentence for the page; never includes secrets (exceptions here carry none)."""
    if isinstance(exc, PortalError):
        return str(exc)
    if isinstance(exc, KeystoreError):
        return "Wrong passphrase: the keystore could not be decrypted. Nothing was unlocked; try again."
    if isinstance(exc, ThresholdNotMet):
        return (f"Too few re-encryption proxies answered ({exc}). Nothing was decrypted or changed; "
                "try again when the authority centers' proxies are back.")
    if isinstance(exc, ProxyRefused):
        if exc.code is Refusal.UNAVAILABLE:
            return f"The proxies are unavailable ({exc}). Nothing was decrypted; try again later."
        why = _REFUSALS.get(exc.code, str(exc))
        return f"Refused by the proxies ({exc.code.value}): {why}. Nothing was decrypted."
    if isinstance(exc, ContractRevert):
        return _revert_sentence(exc)
    if isinstance(exc, (ChainError, requests.RequestException, ConnectionError)):
        return (f"The chain or a service did not answer ({exc.__class__.__name__}: {exc}). Nothing changed; "
                "check that the network is running and retry.")
    if isinstance(exc, IntegrityError):
        return f"Integrity check failed: {exc}. Nothing was shown or changed."
    if isinstance(exc, (SharingError, IdentityError)):
        return f"{exc}. Nothing changed."
    return f"{exc.__class__.__name__}: {exc}. Nothing changed."


def _revert_sentence(exc: ContractRevert) -> str:
    name, a = exc.error_name, exc.args_decoded
    if name == "AccessPolicyUnexpectedRequestState":
        current = RequestState(a[1])
        if current is RequestState.EXPIRED:
            return (f"Request #{a[0]} has expired, so it can no longer be approved or rejected. Nothing changed; "
                    "the doctor can send a new request.")
        return f"Request #{a[0]} is already {current.name.lower()}. Nothing changed."
    if name == "AccessPolicyUnknownRequest":
        return f"There is no request #{a[0]}. Nothing changed."
    if name == "AccessPolicyNotRequestPatient":
        return f"Request #{a[0]} is addressed to another patient. Nothing changed."
    if name == "AccessPolicyRequesterSuspended":
        return "Your account is suspended after abnormal access; a health authority must clear it. Nothing changed."
    if name == "AccessPolicyInvalidPatient":
        return "That participant is not a registered patient. Nothing changed."
    if name == "AccessPolicyInvalidWindow":
        return "The requested period is invalid (it must end in the future). Nothing changed."
    if name == "AccessPolicyPatientSuspended":
        return "This patient account is suspended. Nothing changed."
    return f"The chain refused the transaction ({name}). Nothing changed."


def _hex(b: bytes) -> str:
    return "0x" + bytes(b).hex()


def parse_id(text: str, what: str, size: int = 32) -> bytes:
    """A 0x-hex identifier from a form field, or a PortalError naming the field."""
    t = (text or "").strip()
    try:
        raw = bytes.fromhex(t[2:] if t.startswith("0x") else t)
    except ValueError:
        raise PortalError(f"{what} must be 0x followed by {2 * size} hex digits; got {t[:20]!r}") from None
    if len(raw) != size:
        raise PortalError(f"{what} must be {size} bytes (0x + {2 * size} hex digits); got {len(raw)} bytes")
    return raw


def utc(ts: int) -> str:
    return datetime.fromtimestamp(int(ts), tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


# ---------------------------------------------------------------------------------------------
# the portal
# ---------------------------------------------------------------------------------------------


@dataclass
class _Memory:
    """What a doctor's session holds in memory only: the last search and the records read."""

    patient: bytes | None = None
    matches: list[Match] = field(default_factory=list)
    read: dict[bytes, SharedRecord] = field(default_factory=dict)


class Portal:
    """One participant (a patient or a doctor) on one network."""

    def __init__(self, view: NetworkView, name: str):
        self.view = view
        self.name = name
        self.keystore = view.keystore(name)
        self.participant = view.participants[name]
        if self.participant.role is Role.PATIENT:
            self.role = PATIENT
        elif self.participant.role is Role.DOCTOR:
            self.role = DOCTOR
        else:
            raise PortalError(f"{name} is a {self.participant.role.label}: the portal serves patients and doctors")
        self._keys: ParticipantKeys | None = None
        self._client: PatientClient | DoctorClient | None = None
        self._memory = _Memory()
        self.mutex = threading.RLock()
        self.directory = view.directory()
        self._names = view.names()
        self._by_address = {p.address.lower(): n for n, p in view.participants.items()}
        self._proxies_named = False

    # -- keys ----------------------------------------------------------------------------------

    @property
    def unlocked(self) -> bool:
        return self._keys is not None

    def unlock(self, passphrase: str) -> None:
        """Decrypt the keystore (KeystoreError on a wrong passphrase; nothing else changes)."""
        keys = unlock_participant(self.keystore, passphrase)
        with self.mutex:
            self._keys = keys
            self._client = (PatientClient if self.role == PATIENT else DoctorClient)(keys, self.directory)

    def verify(self, passphrase: str) -> bool:
        """True when ``passphrase`` opens the keystore (a second browser must prove it too)."""
        try:
            unlock_participant(self.keystore, passphrase)
        except KeystoreError:
            return False
        return True

    def lock(self) -> None:
        """Forget the keys and everything decrypted."""
        with self.mutex:
            self._keys, self._client, self._memory = None, None, _Memory()

    @property
    def patient(self) -> PatientClient:
        if not isinstance(self._client, PatientClient):
            raise PortalError("unlock the portal as a patient first")
        return self._client

    @property
    def doctor(self) -> DoctorClient:
        if not isinstance(self._client, DoctorClient):
            raise PortalError("unlock the portal as a doctor first")
        return self._client

    @property
    def id(self) -> bytes:
        return self.participant.id

    @property
    def policy(self):
        return self.directory.policy

    def label(self, participant: bytes) -> str:
        return self._names.get(bytes(participant), _hex(participant)[:14] + "…")

    def label_address(self, address: str) -> str:
        """A participant's or a proxy's name for an account address (the address itself if unknown)."""
        key = address.lower()
        if key not in self._by_address and not self._proxies_named:
            infos = self.directory.proxy_infos()
            for info in infos:
                if info is not None:
                    self._by_address.setdefault(info.address.lower(), f"proxy of {info.name}")
            self._proxies_named = all(info is not None for info in infos)  # ask again only if one was down
        return self._by_address.get(key, address)

    def resolve(self, who: str) -> bytes:
        """A participant from a form field: an enrolled name or a 0x participant ID."""
        w = (who or "").strip()
        if w in self.view.participants:
            return self.view.participants[w].id
        if w.startswith("0x"):
            return parse_id(w, "participant ID")
        raise PortalError(f"unknown participant {w!r}: give an enrolled name or a 0x participant ID")

    def patients(self) -> list[str]:
        return sorted(n for n, p in self.view.participants.items() if p.role is Role.PATIENT)

    def doctors(self) -> list[str]:
        return sorted(n for n, p in self.view.participants.items() if p.role is Role.DOCTOR)

    # -- patient: what the page shows -------------------------------------------------------------

    def records(self) -> list[RecordRow]:
        """Own records, decrypted locally (keywords from the ciphertext, not from the chain)."""
        own = self.patient.records()
        rows = []
        for rid, rec in own.items():
            h = rec.owned.record.header
            rows.append(RecordRow(rid, h.timestamp, rec.owned.chain.name, h.record_type, h.text,
                                  self.label_address(h.doctor), rec.keywords))
        return sorted(rows, key=lambda r: (r.time, r.chain, r.record_id))

    def pending_requests(self) -> list[RequestRow]:
        now = self.policy.now()
        return [RequestRow(r, self.label(r.requester), self.name, r.state_at(now))
                for r in self.patient.pending_requests()]

    def grants(self) -> list[GrantRow]:
        """Live grants (not revoked, not expired), newest first."""
        now = self.policy.now()
        live = [g for g in self.policy.grants_from_logs(self.id) if g.expires_at > now]
        return [GrantRow(g, self.label(g.grantee)) for g in sorted(live, key=lambda g: -g.since)]

    def emergencies(self) -> list[EmergencyRow]:
        """Break-glass requests naming this patient (the doctor's name in each row), oldest first."""
        return self._emergency_rows({"patient": self.id}, lambda e: e.grantee)

    def _emergency_rows(self, filters: dict[str, bytes], other: Callable[..., bytes]) -> list[EmergencyRow]:
        logs = self.policy._logs("EmergencyAccessRequested", filters, 0)  # noqa: SLF001
        now = self.policy.now()
        rows = []
        for log in logs:
            e = self.policy.emergency(log["args"]["emergencyId"], reason=log["args"]["reason"])
            rows.append(EmergencyRow(e.id, self.label(other(e)), e.state_at(now), e.reason, e.approvals,
                                     e.activated_at, e.expires_at))
        return rows

    def audit(self) -> dict[bytes, list[AuditRow]]:
        """Per record: every read and every refused attempt, oldest first."""
        rows: dict[bytes, list[AuditRow]] = {}
        for ev in self.policy.audit_trail(patient=self.id):
            rows.setdefault(ev.record_id, []).append(self._read_row(ev))
        for d in self.policy.denials(patient=self.id):
            rows.setdefault(d.record_id, []).append(self._denial_row(d))
        for trail in rows.values():
            trail.sort(key=lambda r: (r.at, r.outcome, r.proxy))
        return rows

    def _read_row(self, ev: AccessEvent) -> AuditRow:
        basis = {Basis.GRANT: "grant", Basis.PRESET_RULE: "preset rule", Basis.EMERGENCY: "emergency"}.get(
            ev.basis, ev.basis.name.lower())
        return AuditRow(ev.record_id, ev.at, self.label(ev.grantee), self.label_address(ev.proxy), "read",
                        f"{describe_actions(ev.action)} by {basis}", ev.tx_hash)

    def _denial_row(self, d: AccessDenial) -> AuditRow:
        return AuditRow(d.record_id, d.at, self.label(d.grantee), self.label_address(d.proxy), "refused",
                        d.reason.message, d.tx_hash)

    # -- patient: actions -----------------------------------------------------------------------

    def approve(self, request_id: int) -> Flash:
        req = self.policy.request(request_id)
        if req.patient != self.id:
            raise PortalError(f"Request #{request_id} is addressed to another patient. Nothing changed.")
        out = self.patient.approve(request_id)
        issued = out["issued"]
        n = len(issued.records) if issued else 0
        return Flash("ok", f"Approved request #{request_id} from {self.label(req.requester)}: key shares for {n} "
                           f"record(s) issued to the proxies (gas {out['gas']}).")

    def reject(self, request_id: int, reason: str) -> Flash:
        self.patient.reject(request_id, (reason or "").strip() or "rejected by the patient")
        return Flash("ok", f"Rejected request #{request_id}.")

    def revoke(self, grantee: bytes, scope: Scope, target: bytes) -> Flash:
        out = self.patient.revoke(grantee, scope=scope, target=target)
        again = out["reissued"]
        extra = f"; keys of {len(again.records)} record(s) still granted re-issued" if again else ""
        return Flash("ok", f"Revoked {self.label(grantee)}'s access ({describe_scope(scope, target)}){extra}. "
                           "The proxies deleted the revoked key shares.")

    def trapdoor(self, keyword: str, doctor: str = "") -> Flash:
        """A search ticket for one doctor: the keyword's trapdoors (every key version) encrypted to the proxies,
        signed for this doctor and his grant, expiring with it (at most in an hour)."""
        from ..crypto import normalize_keyword

        canon = normalize_keyword(keyword)
        if not (doctor or "").strip():
            raise PortalError("say which doctor may search: a search ticket is bound to one doctor and his grant")
        did = self.resolve(doctor)
        ticket = self.patient.search_ticket(did, canon)
        until = datetime.fromtimestamp(ticket.expires_at, tz=timezone.utc).strftime("%H:%M UTC")
        return Flash("ok", f"Search ticket for {canon!r} for {self.label(did)}, valid until {until}: give it to "
                           "the doctor. The proxies use it only for him, while his grant lasts; he cannot read the "
                           "trapdoor in it, and it opens nothing.",
                     ticket.to_text())

    def check_receipt(self, record_id: bytes) -> ReceiptCheck:
        """Fetch the record's receipt from its chain's replicas and verify it against SlipLedger's root."""
        from ..private.client import HospitalClient, verify_receipt

        own = self.patient.records()
        rec = own.get(record_id)
        if rec is None:
            raise PortalError(f"{_hex(record_id)} is not one of your committed records")
        chain = rec.owned.chain
        receipt = HospitalClient(chain.api_urls).receipt(_hex(record_id))
        if receipt is None:
            raise PortalError(f"the replicas of {chain.name} have no receipt for this record")
        ledger = self.directory.ledger(chain.chain_id)
        verify_receipt(receipt, ledger)  # on chain: header committed and the slip's Merkle proof valid
        return ReceiptCheck(record_id, chain.name, receipt.height, receipt.header.merkle_root, len(receipt.proof),
                            ledger.hash_header(receipt.header), ledger.header_hash_at(receipt.height),
                            receipt.anchor_tx)

    def serve_emergency(self, grantee: bytes) -> int:
        """Issue key shares of every record to the grantee of an active emergency access; returns how many."""
        rids = self.patient.record_ids()
        if rids:
            self.patient.issue_keys(grantee, rids)
        return len(rids)

    # -- doctor -------------------------------------------------------------------------------------

    def request_access(self, patient: str, record: str, minutes: int, reason: str) -> Flash:
        pid = self.resolve(patient)
        if not 1 <= minutes <= 60 * 24 * 365:
            raise PortalError("the duration must be between 1 minute and 1 year")
        rid = parse_id(record, "record ID") if (record or "").strip() else None
        req = self.doctor.request_access(pid, record=rid, duration=minutes * 60, reason=(reason or "").strip())
        return Flash("ok", f"Request #{req.id} sent to {self.label(pid)}; it awaits the patient's decision "
                           f"(until {utc(req.deadline)}).")

    def request_emergency(self, patient: str, minutes: int, reason: str) -> Flash:
        """Break-glass: ask the health authorities (k of n approve) for time-boxed read access."""
        pid = self.resolve(patient)
        if not (reason or "").strip():
            raise PortalError("an emergency request needs a reason; it is shown to the patient and the authorities")
        e = self.doctor.request_emergency(pid, duration=minutes * 60, reason=reason.strip())
        return Flash("ok", f"Emergency request #{e.id} for {self.label(pid)} sent to the health authorities; it is "
                           f"active once enough of them approve (before {utc(e.deadline)}), and the patient is "
                           "notified.")

    def my_emergencies(self) -> list[EmergencyRow]:
        """This doctor's break-glass requests (the patient's name in each row), newest first."""
        return self._emergency_rows({"grantee": self.id}, lambda e: e.patient)[::-1]

    def my_requests(self) -> list[RequestRow]:
        logs = self.policy._logs("AccessRequested", {"requester": self.id}, 0)  # noqa: SLF001
        now = self.policy.now()
        rows = []
        for log in reversed(logs):
            r = self.policy.request(log["args"]["requestId"], reason=log["args"]["reason"])
            rows.append(RequestRow(r, self.name, self.label(r.patient), r.state_at(now)))
        return rows

    def search(self, patient: str, ticket: str) -> Flash:
        from ..sharing.clients import SearchTicket

        pid = self.resolve(patient)
        try:
            parsed = SearchTicket.from_text(ticket)
        except MBDSError as exc:
            raise PortalError(str(exc)) from None
        matches = self.doctor.search(pid, parsed)
        with self.mutex:
            self._memory = _Memory(pid, matches, {k: v for k, v in self._memory.read.items()
                                                  if self._memory.patient == pid})
        return Flash("ok" if matches else "info",
                     f"{len(matches)} record(s) of {self.label(pid)} match; each slip was proven against its "
                     "chain's anchored root." if matches else f"No record of {self.label(pid)} matches.")

    def matches(self) -> tuple[bytes | None, list[Match]]:
        return self._memory.patient, list(self._memory.matches)

    def read(self, record_id: bytes | None = None) -> Flash:
        """Read one match (or every match) through the proxies; a refused record leaves the timeline."""
        patient, matches = self.matches()
        if patient is None or not matches:
            raise PortalError("search first: reading needs a match from a search")
        todo = [m for m in matches if record_id is None or m.slip_id == record_id]
        if not todo:
            raise PortalError("that record is not among the search results")
        done = []
        for m in todo:
            try:
                rec = self.doctor.read_record(patient, m)
            except ProxyRefused as exc:
                if exc.code is not Refusal.UNAVAILABLE:  # the policy said no: forget what was read before
                    with self.mutex:
                        self._memory.read.pop(m.slip_id, None)
                raise
            with self.mutex:
                self._memory.read[m.slip_id] = rec
            done.append(rec)
        return Flash("ok", f"Read {len(done)} record(s) of {self.label(patient)} through the threshold proxies; "
                           "each access is on the audit trail.")

    def timeline(self) -> list[SharedRecord]:
        return list(combine(self._memory.read.values()).entries)

    def drop_revoked(self, patient: bytes) -> int:
        """After a revoke: forget the records of ``patient`` this doctor may no longer read (all of them when
        the chain cannot be asked); returns how many."""
        with self.mutex:
            held = [r for r in self._memory.read.values() if self._memory.patient == patient]
        if not held:
            return 0
        try:
            decisions = self.policy.check_access_many(
                patient, self.id, [(r.record_id, r.keyword_set_tag) for r in held], Action.READ)
            gone = [r.record_id for r, d in zip(held, decisions) if not d.allowed]
        except Exception:  # noqa: BLE001 - the chain cannot say what is still allowed: forget them all
            gone = [r.record_id for r in held]
        with self.mutex:
            for rid in gone:
                self._memory.read.pop(rid, None)
        return len(gone)

    def forget(self) -> None:
        with self.mutex:
            self._memory = _Memory()


def describe_actions(a: int) -> str:
    return "+".join(x.name.lower() for x in Action if x & a) or "none"


def describe_scope(scope: Scope, target: bytes) -> str:
    if scope is Scope.ALL:
        return "all records"
    if scope is Scope.RECORD:
        return f"record {_hex(target)[:14]}…"
    return f"keyword set {_hex(target)[:14]}…"


__all__ = ["AuditRow", "DOCTOR", "EmergencyRow", "Flash", "GrantRow", "PATIENT", "Portal", "PortalError",
           "ReceiptCheck", "RecordRow", "RequestRow", "describe_actions", "describe_scope", "explain", "parse_id",
           "utc"]
