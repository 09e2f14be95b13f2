"""The patient's access policy as plain Python: the rules ``AccessPolicy.sol`` applies.

Pure (no web3, no I/O; the clock is passed in as ``now``).  The same rules as
the contract, so it serves three purposes:

* the ghost model of the stateful tests (the chain must agree with it after
  every step);
* the proxy's explanation of a refusal (:class:`Decision` → message,
  :class:`~mbds_py.sharing.errors.AccessDenied`);
* replaying the contract's event log into the current set of grants
  (:class:`PolicyState` ``apply_*`` mutators).

Vocabulary (paper, "Data sharing"; design §5):

* a **grant** gives one grantee (a doctor or an institution, by participant
  ID) a set of **actions** (read / write / copy) on a **scope** (all records,
  one record, or the records whose keyword set hashes to a value) during a
  validity window ``not_before <= t < expires_at``;
* a **preset rule** is the paper's "preset access permission": the patient
  lets every doctor of an institution in without asking;
* a **request** is a data user's application to the patient
  (Requested → Approved | Rejected | Expired);
* **emergency access** is read access to all records that k-of-n health
  authorities approve, time boxed;
* the **revocation epoch** of (patient, grantee) counts effective revokes; a
  re-encryption key is only usable for the epoch it was issued for.

The decision (:meth:`PolicyState.evaluate`), in the contract's order: a
suspended grantee is refused; an unknown one has no grant; then the grants in
scope, the preset rules of the grantee's institution (doctors only) and the
emergency window are considered in turn and the first valid one with the
action allows.  Otherwise the most specific reason is given (see
:func:`denial`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import IntEnum, IntFlag
from typing import Iterable, Iterator

from eth_utils import keccak

from ..identity import Role
from .errors import AccessDenied, PolicyViolation

ZERO32 = b"\x00" * 32
UINT48_MAX = 2**48 - 1

HOUR = 3600
DAY = 24 * HOUR


# ---------------------------------------------------------------------------------------------
# Enumerations (same order and values as IAccessPolicy)
# ---------------------------------------------------------------------------------------------


class Action(IntFlag):
    """Actions on a record (a bitmask in grants, one bit per access)."""

    READ = 1
    WRITE = 2
    COPY = 4


ALL_ACTIONS = Action.READ | Action.WRITE | Action.COPY


class Scope(IntEnum):
    """What a grant or preset rule covers (``IAccessPolicy.Scope``)."""

    ALL = 0
    RECORD = 1
    KEYWORD_SET = 2


class Reason(IntEnum):
    """Why an access is allowed or refused (``IAccessPolicy.AccessReason``)."""

    OK = 0
    NO_GRANT = 1
    NOT_YET_VALID = 2
    EXPIRED = 3
    ACTION_NOT_ALLOWED = 4
    REVOKED = 5
    GRANTEE_SUSPENDED = 6
    OUT_OF_SCOPE = 7

    @property
    def message(self) -> str:
        return _REASON_MESSAGES[self]


_REASON_MESSAGES = {
    Reason.OK: "allowed",
    Reason.NO_GRANT: "the patient has granted nothing to this grantee; ask the patient (requestAccess)",
    Reason.NOT_YET_VALID: "the permission is not valid yet; retry after its not-before time",
    Reason.EXPIRED: "the permission has expired; ask the patient to renew it",
    Reason.ACTION_NOT_ALLOWED: "the permission does not include this action; ask the patient for it",
    Reason.REVOKED: "the patient revoked this permission; ask the patient again",
    Reason.GRANTEE_SUSPENDED: "the grantee is suspended after abnormal access; k health authorities must clear it",
    Reason.OUT_OF_SCOPE: "the grantee's permissions cover other records, not this one",
}


class Basis(IntEnum):
    """What allowed an access (``IAccessPolicy.Basis``)."""

    NONE = 0
    GRANT = 1
    PRESET_RULE = 2
    EMERGENCY = 3


class RequestState(IntEnum):
    """Lifecycle of a request (``IAccessPolicy.RequestState``)."""

    NONE = 0
    REQUESTED = 1
    APPROVED = 2
    REJECTED = 3
    EXPIRED = 4


class EmergencyState(IntEnum):
    """Lifecycle of an emergency request (``IAccessPolicy.EmergencyState``)."""

    NONE = 0
    PENDING = 1
    ACTIVE = 2
    EXPIRED = 3


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyConfig:
    """The contract's constructor parameters (defaults: devnet values)."""

    request_ttl: int = 7 * DAY
    emergency_approval_window: int = 1 * HOUR
    emergency_max_duration: int = 1 * DAY
    emergency_quorum: int = 2

    def as_args(self) -> tuple[int, int, int, int]:
        return (self.request_ttl, self.emergency_approval_window, self.emergency_max_duration, self.emergency_quorum)


def valid_at(not_before: int, expires_at: int, t: int) -> bool:
    """The window rule: ``not_before <= t < expires_at``."""
    return not_before <= t < expires_at


@dataclass(frozen=True)
class Grant:
    """A patient's grant to one grantee."""

    patient: bytes
    grantee: bytes
    scope: Scope
    target: bytes
    actions: Action
    not_before: int
    expires_at: int
    since: int = 0  # when it was (last) set

    @property
    def key(self) -> bytes:
        return grant_key(self.patient, self.grantee, self.scope, self.target)

    def valid_at(self, t: int) -> bool:
        return valid_at(self.not_before, self.expires_at, t)

    def same_terms(self, other: "Grant") -> bool:
        return (self.actions, self.not_before, self.expires_at) == (other.actions, other.not_before, other.expires_at)


@dataclass(frozen=True)
class PresetRule:
    """A patient's standing permission for every doctor of an institution."""

    patient: bytes
    institution: bytes
    scope: Scope
    target: bytes
    actions: Action
    not_before: int
    expires_at: int
    since: int = 0

    @property
    def key(self) -> bytes:
        return grant_key(self.patient, self.institution, self.scope, self.target)

    def valid_at(self, t: int) -> bool:
        return valid_at(self.not_before, self.expires_at, t)

    def same_terms(self, other: "PresetRule") -> bool:
        return (self.actions, self.not_before, self.expires_at) == (other.actions, other.not_before, other.expires_at)


@dataclass(frozen=True)
class AccessRequest:
    """A data user's request to a patient; ``state`` is the stored one (see :meth:`state_at`)."""

    id: int
    patient: bytes
    requester: bytes
    scope: Scope
    target: bytes
    actions: Action
    not_before: int
    expires_at: int
    created_at: int
    deadline: int
    state: RequestState = RequestState.REQUESTED
    reason: str = ""

    def state_at(self, t: int) -> RequestState:
        if self.state is RequestState.REQUESTED and t >= self.deadline:
            return RequestState.EXPIRED
        return self.state

    def as_grant(self, since: int = 0) -> Grant:
        return Grant(self.patient, self.requester, self.scope, self.target, self.actions, self.not_before,
                     self.expires_at, since)


@dataclass(frozen=True)
class EmergencyAccess:
    """A break-glass request: read access to all of a patient's records once the quorum approves."""

    id: int
    patient: bytes
    grantee: bytes
    duration: int
    created_at: int
    deadline: int
    activated_at: int = 0
    expires_at: int = 0
    approvals: int = 0
    state: EmergencyState = EmergencyState.PENDING
    reason: str = ""
    approvers: frozenset[bytes] = frozenset()

    def state_at(self, t: int) -> EmergencyState:
        if self.state is EmergencyState.PENDING and t >= self.deadline:
            return EmergencyState.EXPIRED
        if self.state is EmergencyState.ACTIVE and t >= self.expires_at:
            return EmergencyState.EXPIRED
        return self.state


@dataclass(frozen=True)
class Identity:
    """What the policy reads from the IdentityRegistry about a participant."""

    id: bytes
    role: Role
    institution: bytes = ZERO32
    suspended: bool = False


@dataclass(frozen=True)
class Decision:
    """The answer to "may this grantee do this to this record now?" and the current epoch."""

    allowed: bool
    reason: Reason
    epoch: int
    basis: Basis = Basis.NONE

    @classmethod
    def from_chain(cls, allowed: bool, reason: int, epoch: int, basis: int = 0) -> "Decision":
        return cls(bool(allowed), Reason(reason), int(epoch), Basis(basis))

    @property
    def message(self) -> str:
        return self.reason.message

    def require(self, *, patient: bytes, grantee: bytes, record_id: bytes, action: int) -> "Decision":
        """Return self if allowed, else raise :class:`AccessDenied` naming the rule."""
        if not self.allowed:
            raise AccessDenied(self, patient=patient, grantee=grantee, record_id=record_id, action=action)
        return self


@dataclass(frozen=True)
class AccessEvent:
    """One entry of the audit trail: a re-encryption a proxy performed (``AccessRecorded``)."""

    patient: bytes
    grantee: bytes
    record_id: bytes
    action: Action
    basis: Basis
    epoch: int
    proxy: str
    at: int
    block_number: int = 0
    tx_hash: bytes = b""


@dataclass(frozen=True)
class AccessDenial:
    """One refused attempt in the audit trail: a proxy refused an authenticated request (``AccessDenied``)."""

    patient: bytes
    grantee: bytes
    record_id: bytes
    action: Action
    reason: Reason
    proxy: str
    at: int
    block_number: int = 0
    tx_hash: bytes = b""


@dataclass(frozen=True)
class Revocation:
    """A revoke of one grant (``AccessRevoked``) or of all of a grantee's (``AllAccessRevoked``)."""

    patient: bytes
    grantee: bytes
    epoch: int
    scope: Scope | None = None  # None: every grant of the grantee
    target: bytes | None = None
    count: int = 1
    at: int = 0
    block_number: int = 0


# ---------------------------------------------------------------------------------------------
# Hashing and validation
# ---------------------------------------------------------------------------------------------


def _b32(value: bytes) -> bytes:
    if len(value) != 32:
        raise ValueError(f"expected a 32-byte ID, got {len(value)} bytes")
    return bytes(value)


def grant_key(owner: bytes, holder: bytes, scope: Scope | int, target: bytes) -> bytes:
    """``keccak256(abi.encode(owner, holder, scope, target))`` — the contract's storage key."""
    return keccak(_b32(owner) + _b32(holder) + int(scope).to_bytes(32, "big") + _b32(target))


def keyword_set_tag(key: bytes, keywords: Iterable[object], *, normalize: bool = True) -> bytes:
    """The value a ``KeywordSet`` permission names: a patient-keyed tag of the keyword set, never an unkeyed
    hash (anyone could test keyword guesses against an unkeyed hash in ``recordAccess`` calldata).  See
    :func:`mbds_py.crypto.keywords.keyword_set_tag`; the patient's key is ``PatientSecrets.keyword_set_tag``'s."""
    from ..crypto.keywords import keyword_set_tag as tag

    return tag(key, keywords, normalize=normalize)


def check_scope(scope: Scope, target: bytes) -> None:
    if (Scope(scope) is Scope.ALL) != (target == ZERO32):
        raise PolicyViolation("AccessPolicyInvalidScope", (int(scope), target))


def check_actions(actions: int) -> None:
    if actions == 0 or actions & ~int(ALL_ACTIONS) & 0xFF:
        raise PolicyViolation("AccessPolicyInvalidActions", (int(actions),))


def check_action(action: int) -> None:
    if int(action) not in (1, 2, 4):
        raise PolicyViolation("AccessPolicyInvalidActions", (int(action),))


def check_window(not_before: int, expires_at: int, now: int) -> None:
    if not_before >= expires_at or expires_at <= now:
        raise PolicyViolation("AccessPolicyInvalidWindow", (not_before, expires_at, now))


# ---------------------------------------------------------------------------------------------
# The decision
# ---------------------------------------------------------------------------------------------


@dataclass
class Tally:
    """What the permissions in scope looked like (``AccessRules.Tally``)."""

    found: bool = False
    with_action: bool = False
    pending: bool = False
    revoked: bool = False

    def consider(self, actions: int, not_before: int, expires_at: int, action: int, t: int) -> bool:
        """Add one live permission; True when it allows ``action`` at ``t``."""
        if actions == 0:
            return False
        self.found = True
        if not actions & action:
            return False
        self.with_action = True
        if t < not_before:
            self.pending = True
            return False
        return t < expires_at


def denial(tally: Tally, holds_others: bool) -> Reason:
    """The most specific refusal: live permissions in scope first, then revoked, out of scope, nothing."""
    if tally.found:
        if not tally.with_action:
            return Reason.ACTION_NOT_ALLOWED
        if tally.pending:
            return Reason.NOT_YET_VALID
        return Reason.EXPIRED
    if tally.revoked:
        return Reason.REVOKED
    if holds_others:
        return Reason.OUT_OF_SCOPE
    return Reason.NO_GRANT


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------


@dataclass
class _StoredGrant:
    grant: Grant
    generation: int
    revoked: bool = False


@dataclass
class _Pair:
    epoch: int = 0
    generation: int = 0
    grant_count: int = 0
    emergency_from: int = 0
    emergency_until: int = 0


@dataclass
class PolicyState:
    """All patients' policies, as the contract holds them, with the registry facts it reads.

    Methods named like the contract's functions validate as the contract does
    (raising :class:`PolicyViolation` with the contract's error name) and then
    call the ``apply_*`` mutator, which only writes (used to replay event
    logs).  Caller authorization (who may call what) is the chain's business
    and is not modelled; everything that depends on time takes ``now``.
    """

    config: PolicyConfig = field(default_factory=PolicyConfig)
    identities: dict[bytes, Identity] = field(default_factory=dict)
    _grants: dict[bytes, _StoredGrant] = field(default_factory=dict)
    _rules: dict[bytes, PresetRule] = field(default_factory=dict)
    _pairs: dict[tuple[bytes, bytes], _Pair] = field(default_factory=dict)
    _rule_counts: dict[tuple[bytes, bytes], int] = field(default_factory=dict)
    _requests: dict[int, AccessRequest] = field(default_factory=dict)
    _emergencies: dict[int, EmergencyAccess] = field(default_factory=dict)
    _suspended: set[bytes] = field(default_factory=set)

    # -- registry facts -------------------------------------------------------------------------

    def register(self, identity: Identity) -> None:
        self.identities[identity.id] = identity

    def set_registry_suspended(self, participant: bytes, suspended: bool) -> None:
        self.identities[participant] = replace(self.identities[participant], suspended=suspended)

    def _pair(self, patient: bytes, grantee: bytes) -> _Pair:
        return self._pairs.setdefault((patient, grantee), _Pair())

    # -- validation (mirrors the contract's _check* helpers) -------------------------------------

    def _check_grantee(self, grantee: bytes) -> None:
        who = self.identities.get(grantee)
        if who is None or who.role in (Role.NONE, Role.PATIENT):
            raise PolicyViolation("AccessPolicyInvalidGrantee", (grantee,))

    def _check_patient(self, patient: bytes) -> None:
        who = self.identities.get(patient)
        if who is None or who.role is not Role.PATIENT:
            raise PolicyViolation("AccessPolicyInvalidPatient", (patient,))

    def _check_institution(self, institution: bytes) -> None:
        who = self.identities.get(institution)
        if who is None or who.role not in (Role.HOSPITAL, Role.INTERNET_PLATFORM):
            raise PolicyViolation("AccessPolicyInvalidInstitution", (institution,))

    # -- grants ---------------------------------------------------------------------------------

    def grant(self, g: Grant, now: int) -> bool:
        """``grant``: validate, then set; False when exactly this is already granted."""
        self._check_grantee(g.grantee)
        check_scope(g.scope, g.target)
        check_actions(g.actions)
        check_window(g.not_before, g.expires_at, now)
        return self.apply_grant(g, now)

    def apply_grant(self, g: Grant, now: int) -> bool:
        pair = self._pair(g.patient, g.grantee)
        stored = self._grants.get(g.key)
        live = stored is not None and self._is_live(stored, pair)
        if live and stored.grant.same_terms(g):  # type: ignore[union-attr]
            return False
        if not live:
            pair.grant_count += 1
        self._grants[g.key] = _StoredGrant(replace(g, actions=Action(int(g.actions)), since=now), pair.generation)
        return True

    def revoke(self, patient: bytes, grantee: bytes, scope: Scope, target: bytes) -> bool:
        """``revoke``: a no-op (False) unless a live grant exists; else bump the epoch."""
        pair = self._pair(patient, grantee)
        stored = self._grants.get(grant_key(patient, grantee, scope, target))
        if stored is None or not self._is_live(stored, pair):
            return False
        stored.revoked = True
        pair.grant_count -= 1
        pair.epoch += 1
        return True

    def revoke_all(self, patient: bytes, grantee: bytes) -> bool:
        """``revokeAll``: retire every grant of the grantee (new generation) and bump the epoch."""
        pair = self._pair(patient, grantee)
        if pair.grant_count == 0:
            return False
        pair.generation += 1
        pair.grant_count = 0
        pair.epoch += 1
        return True

    # -- preset rules ---------------------------------------------------------------------------

    def set_preset_rule(self, rule: PresetRule, now: int) -> bool:
        self._check_institution(rule.institution)
        check_scope(rule.scope, rule.target)
        check_actions(rule.actions)
        check_window(rule.not_before, rule.expires_at, now)
        return self.apply_preset_rule(rule, now)

    def apply_preset_rule(self, rule: PresetRule, now: int) -> bool:
        old = self._rules.get(rule.key)
        if old is not None and old.same_terms(rule):
            return False
        if old is None:
            k = (rule.patient, rule.institution)
            self._rule_counts[k] = self._rule_counts.get(k, 0) + 1
        self._rules[rule.key] = replace(rule, actions=Action(int(rule.actions)), since=now)
        return True

    def remove_preset_rule(self, patient: bytes, institution: bytes, scope: Scope, target: bytes) -> bool:
        key = grant_key(patient, institution, scope, target)
        if key not in self._rules:
            return False
        del self._rules[key]
        self._rule_counts[(patient, institution)] -= 1
        return True

    # -- requests -------------------------------------------------------------------------------

    def request_access(self, patient: bytes, requester: bytes, scope: Scope, target: bytes, actions: int,
                       not_before: int, expires_at: int, now: int, reason: str = "") -> AccessRequest:
        """``requestAccess`` (requester identity checks included); returns the new request."""
        who = self.identities.get(requester)
        if who is not None and who.role is Role.PATIENT:
            raise PolicyViolation("AccessPolicyInvalidGrantee", (requester,))
        if requester in self._suspended or (who is not None and who.suspended):
            raise PolicyViolation("AccessPolicyRequesterSuspended", (requester,))
        self._check_patient(patient)
        check_scope(scope, target)
        check_actions(actions)
        check_window(not_before, expires_at, now)
        req = AccessRequest(len(self._requests) + 1, patient, requester, Scope(scope), target, Action(actions),
                            not_before, expires_at, now, now + self.config.request_ttl, RequestState.REQUESTED,
                            reason)
        self._requests[req.id] = req
        return req

    def request(self, request_id: int) -> AccessRequest:
        try:
            return self._requests[request_id]
        except KeyError:
            raise PolicyViolation("AccessPolicyUnknownRequest", (request_id,)) from None

    def _expect_request(self, request_id: int, now: int) -> AccessRequest:
        req = self.request(request_id)
        current = req.state_at(now)
        if current is not RequestState.REQUESTED:
            raise PolicyViolation("AccessPolicyUnexpectedRequestState",
                                  (request_id, int(current), int(RequestState.REQUESTED)))
        return req

    def approve_request(self, request_id: int, now: int) -> AccessRequest:
        """``approveRequest``: Requested → Approved, and grant the requested terms."""
        req = self._expect_request(request_id, now)
        check_window(req.not_before, req.expires_at, now)
        req = replace(req, state=RequestState.APPROVED)
        self._requests[request_id] = req
        self.apply_grant(req.as_grant(), now)
        return req

    def reject_request(self, request_id: int, now: int, reason: str = "") -> AccessRequest:
        """``rejectRequest``: Requested → Rejected."""
        req = replace(self._expect_request(request_id, now), state=RequestState.REJECTED)
        self._requests[request_id] = req
        return req

    # -- emergency access -----------------------------------------------------------------------

    def request_emergency(self, patient: bytes, grantee: bytes, duration: int, now: int,
                          reason: str = "") -> EmergencyAccess:
        who = self.identities.get(grantee)
        if who is not None and who.role is not Role.DOCTOR:
            raise PolicyViolation("AccessPolicyNotDoctor", (grantee,))
        if grantee in self._suspended or (who is not None and who.suspended):
            raise PolicyViolation("AccessPolicyRequesterSuspended", (grantee,))
        self._check_patient(patient)
        if duration == 0 or duration > self.config.emergency_max_duration:
            raise PolicyViolation("AccessPolicyInvalidEmergencyDuration",
                                  (duration, self.config.emergency_max_duration))
        e = EmergencyAccess(len(self._emergencies) + 1, patient, grantee, duration, now,
                            now + self.config.emergency_approval_window, reason=reason)
        self._emergencies[e.id] = e
        return e

    def emergency(self, emergency_id: int) -> EmergencyAccess:
        try:
            return self._emergencies[emergency_id]
        except KeyError:
            raise PolicyViolation("AccessPolicyUnknownEmergency", (emergency_id,)) from None

    def approve_emergency(self, emergency_id: int, authority: bytes, now: int) -> EmergencyAccess:
        """``approveEmergencyAccess``: one approval per authority; the access activates once ``emergency_quorum``
        of the approvers are active (not suspended in the registry) at that moment."""
        e = self.emergency(emergency_id)
        current = e.state_at(now)
        if current is not EmergencyState.PENDING:
            raise PolicyViolation("AccessPolicyUnexpectedEmergencyState",
                                  (emergency_id, int(current), int(EmergencyState.PENDING)))
        if authority in e.approvers:
            raise PolicyViolation("AccessPolicyDuplicateEmergencyApproval", (emergency_id, authority))
        e = replace(e, approvals=e.approvals + 1, approvers=e.approvers | {authority})
        if self._active_approvers(e) >= self.config.emergency_quorum:
            e = replace(e, state=EmergencyState.ACTIVE, activated_at=now, expires_at=now + e.duration)
            pair = self._pair(e.patient, e.grantee)
            if pair.emergency_until > now:  # still inside an earlier window: extend, never shorten
                pair.emergency_until = max(pair.emergency_until, e.expires_at)
            else:
                pair.emergency_from, pair.emergency_until = now, e.expires_at
        self._emergencies[emergency_id] = e
        return e

    def _active_approvers(self, e: EmergencyAccess) -> int:
        """Approvers not suspended in the registry now (an unknown one counts: the chain checks the caller)."""
        return sum(1 for a in e.approvers if not (a in self.identities and self.identities[a].suspended))

    # -- suspension -----------------------------------------------------------------------------

    def suspend(self, requester: bytes) -> bool:
        if requester in self._suspended:
            return False
        self._suspended.add(requester)
        return True

    def clear(self, requester: bytes) -> bool:
        if requester not in self._suspended:
            return False
        self._suspended.discard(requester)
        return True

    def is_suspended(self, requester: bytes) -> bool:
        return requester in self._suspended

    # -- views ----------------------------------------------------------------------------------

    @staticmethod
    def _is_live(stored: _StoredGrant, pair: _Pair) -> bool:
        return not stored.revoked and stored.generation == pair.generation

    def epoch(self, patient: bytes, grantee: bytes) -> int:
        pair = self._pairs.get((patient, grantee))
        return pair.epoch if pair else 0

    def grant_count(self, patient: bytes, grantee: bytes) -> int:
        pair = self._pairs.get((patient, grantee))
        return pair.grant_count if pair else 0

    def emergency_window(self, patient: bytes, grantee: bytes) -> tuple[int, int]:
        pair = self._pairs.get((patient, grantee))
        return (pair.emergency_from, pair.emergency_until) if pair else (0, 0)

    def grant_of(self, patient: bytes, grantee: bytes, scope: Scope, target: bytes) -> Grant | None:
        """The live grant on this key (possibly expired), or None."""
        stored = self._grants.get(grant_key(patient, grantee, scope, target))
        pair = self._pairs.get((patient, grantee))
        if stored is None or pair is None or not self._is_live(stored, pair):
            return None
        return stored.grant

    def preset_rule_of(self, patient: bytes, institution: bytes, scope: Scope, target: bytes) -> PresetRule | None:
        return self._rules.get(grant_key(patient, institution, scope, target))

    def live_grants(self, patient: bytes | None = None, grantee: bytes | None = None) -> list[Grant]:
        """Grants neither revoked nor retired by ``revokeAll`` (expired ones included)."""
        return [s.grant for s in self._iter_live()
                if (patient is None or s.grant.patient == patient) and (grantee is None or s.grant.grantee == grantee)]

    def active_grants(self, now: int, patient: bytes | None = None, grantee: bytes | None = None) -> list[Grant]:
        """Grants − revokes − expiries: the grants valid at ``now``."""
        return [g for g in self.live_grants(patient, grantee) if g.valid_at(now)]

    def preset_rules(self, patient: bytes | None = None) -> list[PresetRule]:
        return [r for r in self._rules.values() if patient is None or r.patient == patient]

    def _iter_live(self) -> Iterator[_StoredGrant]:
        for stored in self._grants.values():
            pair = self._pairs[(stored.grant.patient, stored.grant.grantee)]
            if self._is_live(stored, pair):
                yield stored

    # -- the decision ---------------------------------------------------------------------------

    def evaluate(self, patient: bytes, grantee: bytes, record_id: bytes, action: int, now: int, *,
                 keyword_set_hash: bytes = ZERO32) -> Decision:
        """``checkAccess``: may ``grantee`` perform ``action`` on ``record_id`` of ``patient`` at ``now``?"""
        check_action(action)
        pair = self._pairs.get((patient, grantee)) or _Pair()
        epoch = pair.epoch

        def refuse(reason: Reason) -> Decision:
            return Decision(False, reason, epoch)

        def allow(basis: Basis) -> Decision:
            return Decision(True, Reason.OK, epoch, basis)

        if grantee in self._suspended:
            return refuse(Reason.GRANTEE_SUSPENDED)
        who = self.identities.get(grantee) if grantee != ZERO32 else None
        if who is None:
            return refuse(Reason.NO_GRANT)
        if who.suspended:
            return refuse(Reason.GRANTEE_SUSPENDED)

        tally = Tally()
        for scope, target in _scopes(record_id, keyword_set_hash):
            stored = self._grants.get(grant_key(patient, grantee, scope, target))
            if stored is None:
                continue
            if not self._is_live(stored, pair):
                tally.revoked = True
                continue
            g = stored.grant
            if tally.consider(int(g.actions), g.not_before, g.expires_at, int(action), now):
                return allow(Basis.GRANT)

        holds_others = pair.grant_count != 0
        if who.role is Role.DOCTOR:
            for scope, target in _scopes(record_id, keyword_set_hash):
                rule = self._rules.get(grant_key(patient, who.institution, scope, target))
                if rule is not None and tally.consider(int(rule.actions), rule.not_before, rule.expires_at,
                                                       int(action), now):
                    return allow(Basis.PRESET_RULE)
            holds_others = holds_others or self._rule_counts.get((patient, who.institution), 0) != 0

        if pair.emergency_until != 0 and tally.consider(int(Action.READ), pair.emergency_from,
                                                        pair.emergency_until, int(action), now):
            return allow(Basis.EMERGENCY)
        return refuse(denial(tally, holds_others))


def _scopes(record_id: bytes, keyword_set_hash: bytes) -> Iterator[tuple[Scope, bytes]]:
    """The scopes an access falls in, in the contract's order."""
    yield Scope.ALL, ZERO32
    if record_id != ZERO32:
        yield Scope.RECORD, record_id
    if keyword_set_hash != ZERO32:
        yield Scope.KEYWORD_SET, keyword_set_hash


def evaluate(state: PolicyState, patient: bytes, grantee: bytes, record_id: bytes, action: int, now: int, *,
             keyword_set_hash: bytes = ZERO32) -> Decision:
    """The decision of ``state`` (see :meth:`PolicyState.evaluate`)."""
    return state.evaluate(patient, grantee, record_id, action, now, keyword_set_hash=keyword_set_hash)


__all__ = [
    "ALL_ACTIONS", "DAY", "HOUR", "UINT48_MAX", "ZERO32",
    "AccessDenial", "AccessEvent", "AccessRequest", "Action", "Basis", "Decision", "EmergencyAccess", "EmergencyState", "Grant",
    "Identity", "PolicyConfig", "PolicyState", "PresetRule", "Reason", "RequestState", "Revocation", "Scope",
    "Tally", "check_action", "check_actions", "check_scope", "check_window", "denial", "evaluate", "grant_key",
    "keyword_set_tag", "valid_at",
]
