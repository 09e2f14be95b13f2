"""Agent for AccessPolicy: calls and events as the dataclasses of :mod:`mbds_py.sharing.policy`.

Participants may be named by their 32-byte IdentityRegistry ID, by account
address (``0x…`` 40 hex digits) or by a signing account; addresses are
resolved to IDs through the registry the policy reads.  ``recordAccess``
refusals come back as :class:`AccessPolicyRefusal`, which is both the decoded
:class:`~mbds_py.errors.ContractRevert` and a
:class:`~mbds_py.errors.PolicyDenied` (so ``except PermissionError`` works).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence, Union

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from eth_utils import function_signature_to_4byte_selector, is_hex_address, to_checksum_address

from ..chain.client import ChainClient, receipt_events
from ..chain.governance import Call, Council, Governor, GovernorAgent, Outcome
from ..errors import ChainError, ContractRevert, PolicyDenied
from ..toolchain import artifact
from .policy import (ZERO32, AccessDenial, AccessEvent, AccessRequest, Action, Basis, Decision, EmergencyAccess, EmergencyState,
                     Grant, PolicyConfig, PolicyState, PresetRule, Reason, RequestState, Revocation, Scope)

CONTRACT = "AccessPolicy"
REGISTRY = "IdentityRegistry"

Who = Union[bytes, str, LocalAccount]

_DENIALS = ("AccessPolicyAccessDenied", "AccessPolicyStaleEpoch")


def _type(param: dict[str, Any]) -> str:
    """The canonical ABI type of a parameter (tuples spelled out)."""
    typ = param["type"]
    if typ.startswith("tuple"):
        return "(" + ",".join(_type(c) for c in param["components"]) + ")" + typ[5:]
    return typ


def _checksummed(value: Any, param: dict[str, Any]) -> Any:
    """Addresses as checksummed strings, as web3 returns them (eth_abi gives lower case)."""
    if param["type"] == "address":
        return to_checksum_address(value)
    if param["type"] == "tuple":
        return tuple(_checksummed(v, c) for v, c in zip(value, param["components"]))
    return value


@dataclass(frozen=True)
class _Method:
    """One ABI function, encoded with a precomputed selector (web3 searches the whole ABI on every call)."""

    name: str
    selector: bytes
    inputs: tuple[str, ...]
    outputs: tuple[dict[str, Any], ...]

    @classmethod
    def from_abi(cls, entry: dict[str, Any]) -> "_Method":
        inputs = tuple(_type(i) for i in entry["inputs"])
        selector = function_signature_to_4byte_selector(f"{entry['name']}({','.join(inputs)})")
        return cls(entry["name"], selector, inputs, tuple(entry.get("outputs", [])))

    def encode(self, args: Sequence[Any]) -> bytes:
        plain = [int(a) if isinstance(a, int) else a for a in args]  # IntEnum / IntFlag → int
        return self.selector + abi_encode(list(self.inputs), plain)

    def decode(self, data: bytes) -> Any:
        raw = abi_decode([_type(o) for o in self.outputs], data)
        values = tuple(_checksummed(v, o) for v, o in zip(raw, self.outputs))
        return values[0] if len(values) == 1 else values


@dataclass(frozen=True)
class _PreparedCall:
    """Quacks like a bound web3 contract function for ChainClient.transact: estimate_gas + build_transaction."""

    client: ChainClient
    to: str
    data: bytes

    def estimate_gas(self, params: dict[str, Any]) -> int:
        return self.client.w3.eth.estimate_gas({**params, "to": self.to, "data": self.data})

    def build_transaction(self, params: dict[str, Any]) -> dict[str, Any]:
        return {**params, "to": self.to, "data": self.data}


class AccessPolicyRefusal(ContractRevert, PolicyDenied):
    """``recordAccess`` was refused on-chain (access denied or stale epoch).

    Keeps ``error_name`` and ``args_decoded`` of the custom error; ``reason``
    is the :class:`Reason` (``Reason.REVOKED`` for a stale epoch).
    """

    def __init__(self, revert: ContractRevert):
        if revert.error_name == "AccessPolicyAccessDenied":
            self.reason = Reason(revert.args_decoded[4])
            hint = self.reason.message
        else:
            self.reason = Reason.REVOKED
            hint = "the re-encryption key is for an older revocation epoch; ask the patient for a new one"
        super().__init__(revert.contract, revert.error_name, revert.args_decoded, f"{revert}: {hint}")


class AccessPolicyAgent:
    """Thin adapter over one AccessPolicy deployment."""

    def __init__(self, client: ChainClient, address: str):
        self.client = client
        self.address = to_checksum_address(address)
        abi = artifact(CONTRACT).abi
        self.contract = client.contract(CONTRACT, address, abi)
        self._methods = {e["name"]: _Method.from_abi(e) for e in abi if e.get("type") == "function"}
        registry = self._view("identityRegistry")
        # Registering the registry's ABI lets the client decode errors bubbling up from it.
        self.registry = client.contract(REGISTRY, registry, artifact(REGISTRY).abi)
        self._block_times: dict[int, int] = {}

    @classmethod
    def deploy(cls, client: ChainClient, deployer: LocalAccount, registry_address: str,
               config: PolicyConfig = PolicyConfig()) -> "AccessPolicyAgent":
        art = artifact(CONTRACT)
        address, _ = client.deploy(CONTRACT, art.abi, art.bytecode, deployer, to_checksum_address(registry_address),
                                   *config.as_args())
        return cls(client, address)

    # -- helpers ----------------------------------------------------------------------------------

    def resolve(self, who: Who) -> bytes:
        """A participant ID from an ID, an account address or a signing account."""
        if isinstance(who, LocalAccount):
            who = who.address
        if isinstance(who, (bytes, bytearray)):
            if len(who) != 32:
                raise ValueError(f"a participant ID is 32 bytes, got {len(who)}")
            return bytes(who)
        if isinstance(who, str) and is_hex_address(who):
            pid = bytes(self.client.call(self.registry.functions.idOf(to_checksum_address(who)), contract=REGISTRY))
            if pid == ZERO32:
                raise LookupError(f"account {who} is not registered in the IdentityRegistry; ask the KMC")
            return pid
        if isinstance(who, str) and who.startswith("0x") and len(who) == 66:
            return bytes.fromhex(who[2:])
        raise ValueError(f"cannot name a participant by {who!r}: pass a 32-byte ID, an address or an account")

    def now(self) -> int:
        """The latest block's timestamp."""
        return int(self.client.w3.eth.get_block("latest")["timestamp"])

    def transact(self, name: str, sender: LocalAccount, *args: Any) -> dict[str, Any]:
        """Send ``name(*args)`` from ``sender`` and return the receipt (the typed methods below wrap this)."""
        call = _PreparedCall(self.client, self.address, self._methods[name].encode(args))
        return self.client.transact(call, sender, contract=CONTRACT)

    def _view(self, name: str, *args: Any) -> Any:
        (result,) = self.call_many([(name, args)])
        return result

    def call_many(self, calls: Sequence[tuple[str, Sequence[Any]]], *, block: str | int = "latest") -> list[Any]:
        """Several view calls in one JSON-RPC batch, decoded; a revert raises ContractRevert."""
        if not calls:
            return []
        tag = block if isinstance(block, str) else hex(block)
        requests = [("eth_call", [{"to": self.address, "data": "0x" + self._methods[n].encode(a).hex()}, tag])
                    for n, a in calls]
        responses = self.client.w3.provider.make_batch_request(requests)
        if isinstance(responses, dict):  # the node refused the whole batch
            raise ChainError(f"{self.client.name}: batch of {len(calls)} calls to {CONTRACT} failed: {responses}")
        by_id = sorted(responses, key=lambda r: int(r["id"]))
        out = []
        for (name, _), resp in zip(calls, by_id):
            if "error" in resp:
                data = resp["error"].get("data")
                if isinstance(data, str) and data.startswith("0x") and len(data) >= 10:
                    raise self.client.errors.decode(bytes.fromhex(data[2:]), CONTRACT)
                raise ChainError(f"{self.client.name}: {CONTRACT}.{name} failed: {resp['error']}")
            out.append(self._methods[name].decode(bytes.fromhex(resp["result"][2:])))
        return out

    def _window(self, not_before: int | None, expires_at: int | None, duration: int | None) -> tuple[int, int]:
        start = self.now() if not_before is None else int(not_before)
        if expires_at is None:
            if duration is None:
                raise ValueError("give expires_at or duration")
            expires_at = start + int(duration)
        return start, int(expires_at)

    # -- patient ----------------------------------------------------------------------------------

    def grant(self, patient: LocalAccount, grantee: Who, *, scope: Scope = Scope.ALL, target: bytes = ZERO32,
              actions: int = Action.READ, not_before: int | None = None, expires_at: int | None = None,
              duration: int | None = None) -> dict[str, Any]:
        """Grant ``actions`` on ``scope``/``target``; the window defaults to [now, now + duration)."""
        nb, exp = self._window(not_before, expires_at, duration)
        return self.transact("grant", patient, self.resolve(grantee), scope, target, actions, nb, exp)

    def grant_records(self, patient: LocalAccount, grantee: Who, record_ids: Sequence[bytes], *,
                      actions: int = Action.READ, not_before: int | None = None, expires_at: int | None = None,
                      duration: int | None = None) -> dict[str, Any]:
        """Grant the same terms on each listed record."""
        nb, exp = self._window(not_before, expires_at, duration)
        return self.transact("grantRecords", patient, self.resolve(grantee), list(record_ids), actions, nb, exp)

    def revoke(self, patient: LocalAccount, grantee: Who, *, scope: Scope = Scope.ALL,
               target: bytes = ZERO32) -> dict[str, Any]:
        return self.transact("revoke", patient, self.resolve(grantee), scope, target)

    def revoke_all(self, patient: LocalAccount, grantee: Who) -> dict[str, Any]:
        return self.transact("revokeAll", patient, self.resolve(grantee))

    def set_preset_rule(self, patient: LocalAccount, institution: Who, *, scope: Scope = Scope.ALL,
                        target: bytes = ZERO32, actions: int = Action.READ, not_before: int | None = None,
                        expires_at: int | None = None, duration: int | None = None) -> dict[str, Any]:
        """The paper's preset permission, e.g. "any doctor of hospital X may read for 30 days"."""
        nb, exp = self._window(not_before, expires_at, duration)
        return self.transact("setPresetRule", patient, self.resolve(institution), scope, target, actions, nb, exp)

    def remove_preset_rule(self, patient: LocalAccount, institution: Who, *, scope: Scope = Scope.ALL,
                           target: bytes = ZERO32) -> dict[str, Any]:
        return self.transact("removePresetRule", patient, self.resolve(institution), scope, target)

    def approve_request(self, patient: LocalAccount, request_id: int) -> dict[str, Any]:
        return self.transact("approveRequest", patient, request_id)

    def reject_request(self, patient: LocalAccount, request_id: int, reason: str) -> dict[str, Any]:
        return self.transact("rejectRequest", patient, request_id, reason)

    # -- data users -------------------------------------------------------------------------------

    def request_access(self, requester: LocalAccount, patient: Who, *, scope: Scope = Scope.ALL,
                       target: bytes = ZERO32, actions: int = Action.READ, not_before: int | None = None,
                       expires_at: int | None = None, duration: int | None = None,
                       reason: str = "") -> AccessRequest:
        """Ask the patient; returns the request as recorded."""
        nb, exp = self._window(not_before, expires_at, duration)
        receipt = self.transact("requestAccess", requester, self.resolve(patient), scope, target, actions, nb, exp,
                                reason)
        (ev,) = self.events(receipt, "AccessRequested")
        return self.request(ev["requestId"], reason=ev["reason"])

    def request_emergency(self, doctor: LocalAccount, patient: Who, duration: int, reason: str) -> EmergencyAccess:
        """Ask the health authorities for break-glass read access; returns the pending request."""
        receipt = self.transact("requestEmergencyAccess", doctor, self.resolve(patient), duration, reason)
        (ev,) = self.events(receipt, "EmergencyAccessRequested")
        return self.emergency(ev["emergencyId"], reason=reason)

    # -- health authorities and proxies ---------------------------------------------------------

    def approve_emergency(self, authority: LocalAccount, emergency_id: int) -> dict[str, Any]:
        return self.transact("approveEmergencyAccess", authority, emergency_id)

    def governor(self) -> GovernorAgent:
        """The registry's k-of-n AuthorityGovernor, the only caller of the governed functions below."""
        if getattr(self, "_governor", None) is None:
            self._governor = GovernorAgent(self.client, self._view("governor"))
        return self._governor

    def govern(self, governor: Governor, name: str, *args: Any) -> dict[str, Any]:
        """Run the governed ``name(*args)``: through the governor with a :class:`Council` (quorum of its
        authorities propose and approve, then execute; returns the execution receipt), or as a direct
        call from one account (refused on chain with ``AccessPolicyNotGovernance``)."""
        if not isinstance(governor, Council):
            return self.transact(name, governor, *args)
        outcome = self.governor().govern(governor, Call(self.address, self._methods[name].encode(args)))
        return outcome.receipt

    def add_proxy(self, governor: Governor, proxy: str) -> dict[str, Any]:
        return self.govern(governor, "addProxy", to_checksum_address(proxy))

    def remove_proxy(self, governor: Governor, proxy: str) -> dict[str, Any]:
        return self.govern(governor, "removeProxy", to_checksum_address(proxy))

    def suspend_requester(self, sender: LocalAccount, requester: Who, reason: str) -> dict[str, Any]:
        return self.transact("suspendRequester", sender, self.resolve(requester), reason)

    def clear_suspension(self, governor: Governor, requester: Who, reason: str) -> dict[str, Any]:
        return self.govern(governor, "clearSuspension", self.resolve(requester), reason)

    def join_clear_suspension(self, authority: LocalAccount, requester: Who, reason: str) -> Outcome:
        """One authority's share of a k-of-n clearance (see ``GovernorAgent.join``): proposes it, or approves
        the same pending clearance, and executes it once the quorum is reached."""
        data = self._methods["clearSuspension"].encode((self.resolve(requester), reason))
        return self.governor().join(authority, Call(self.address, data))

    def record_access(self, proxy: LocalAccount, patient: Who, grantee: Who, record_id: bytes, action: int,
                      epoch: int, *, keyword_set_hash: bytes = ZERO32) -> AccessEvent:
        """Check and audit one re-encryption atomically; refusals raise :class:`AccessPolicyRefusal`."""
        try:
            receipt = self.transact("recordAccess", proxy, self.resolve(patient), self.resolve(grantee), record_id,
                               keyword_set_hash, action, epoch)
        except ContractRevert as exc:
            if exc.error_name in _DENIALS:
                raise AccessPolicyRefusal(exc) from None
            raise
        (ev,) = self.events(receipt, "AccessRecorded")
        return _access_event(ev, receipt["blockNumber"], bytes(receipt["transactionHash"]))

    def record_denial(self, proxy: LocalAccount, patient: Who, grantee: Who, record_id: bytes, action: int, *,
                      keyword_set_hash: bytes = ZERO32) -> AccessDenial:
        """Audit one refused attempt; the contract re-checks that the policy denies it
        (``AccessPolicyAccessAllowed`` otherwise)."""
        receipt = self.transact("recordDenial", proxy, self.resolve(patient), self.resolve(grantee), record_id,
                                keyword_set_hash, action)
        (ev,) = self.events(receipt, "AccessDenied")
        return _denial(ev, receipt["blockNumber"], bytes(receipt["transactionHash"]))

    # -- views ------------------------------------------------------------------------------------

    def check_access(self, patient: Who, grantee: Who, record_id: bytes, action: int, *,
                     keyword_set_hash: bytes = ZERO32) -> Decision:
        """The proxy's pre-check: allowed?, why, and the epoch a re-encryption key must carry."""
        (decision,) = self.check_access_many(patient, grantee, [(record_id, keyword_set_hash)], action)
        return decision

    def check_access_many(self, patient: Who, grantee: Who, records: Sequence[tuple[bytes, bytes]],
                          action: int) -> list[Decision]:
        """``checkAccess`` for several (record ID, keyword-set hash) pairs in one round trip."""
        p, g = self.resolve(patient), self.resolve(grantee)
        results = self.call_many([("checkAccess", (p, g, rec, kw, action)) for rec, kw in records])
        return [Decision.from_chain(*r) for r in results]

    def grant_of(self, patient: Who, grantee: Who, scope: Scope = Scope.ALL, target: bytes = ZERO32) -> Grant | None:
        """The live grant on this key (possibly expired), or None."""
        p, g = self.resolve(patient), self.resolve(grantee)
        actions, nb, exp, since = self._view("grantOf", p, g, scope, target)
        return None if actions == 0 else Grant(p, g, Scope(scope), target, Action(actions), nb, exp, since)

    def preset_rule_of(self, patient: Who, institution: Who, scope: Scope = Scope.ALL,
                       target: bytes = ZERO32) -> PresetRule | None:
        p, i = self.resolve(patient), self.resolve(institution)
        actions, nb, exp, since = self._view("presetRuleOf", p, i, scope, target)
        return None if actions == 0 else PresetRule(p, i, Scope(scope), target, Action(actions), nb, exp, since)

    def epoch(self, patient: Who, grantee: Who) -> int:
        return self._view("epochOf", self.resolve(patient), self.resolve(grantee))

    def grant_count(self, patient: Who, grantee: Who) -> int:
        return self._view("grantCountOf", self.resolve(patient), self.resolve(grantee))

    def emergency_window(self, patient: Who, grantee: Who) -> tuple[int, int]:
        return tuple(self._view("emergencyWindowOf", self.resolve(patient), self.resolve(grantee)))

    def request(self, request_id: int, *, reason: str | None = None) -> AccessRequest:
        """A request with its current state (its reason is read from the log unless given)."""
        r = self._view("requestOf", request_id)
        if reason is None:
            logs = self._logs("AccessRequested", {"requestId": request_id}, 0)
            reason = logs[0]["args"]["reason"] if logs else ""
        return AccessRequest(request_id, bytes(r[0]), bytes(r[1]), Scope(r[3]), bytes(r[2]), Action(r[4]), r[6],
                             r[7], r[8], r[9], RequestState(r[5]), reason)

    def request_state(self, request_id: int) -> RequestState:
        return RequestState(self._view("requestState", request_id))

    def emergency(self, emergency_id: int, *, reason: str | None = None) -> EmergencyAccess:
        """An emergency request with its current state, approvers (from the log) and reason."""
        e = self._view("emergencyOf", emergency_id)
        if reason is None:
            logs = self._logs("EmergencyAccessRequested", {"emergencyId": emergency_id}, 0)
            reason = logs[0]["args"]["reason"] if logs else ""
        approvals = self._logs("EmergencyAccessApproved", {"emergencyId": emergency_id}, 0)
        approvers = frozenset(bytes(ev["args"]["authority"]) for ev in approvals)
        return EmergencyAccess(emergency_id, bytes(e[0]), bytes(e[1]), e[2], e[3], e[4], e[5], e[6], e[7],
                               EmergencyState(e[8]), reason, approvers)

    def emergency_state(self, emergency_id: int) -> EmergencyState:
        return EmergencyState(self._view("emergencyState", emergency_id))

    def is_proxy(self, account: str) -> bool:
        return self._view("isProxy", to_checksum_address(account))

    def is_suspended(self, requester: Who) -> bool:
        return self._view("isSuspended", self.resolve(requester))

    def config(self) -> PolicyConfig:
        names = ("requestTtl", "emergencyApprovalWindow", "emergencyMaxDuration", "emergencyQuorum")
        return PolicyConfig(*self.call_many([(n, ()) for n in names]))

    # -- events and logs --------------------------------------------------------------------------

    def events(self, receipt: dict[str, Any], name: str) -> list[dict[str, Any]]:
        """Decoded ``name`` events of a receipt, as plain dicts of their arguments."""
        return receipt_events(self.contract, receipt, name)

    def _logs(self, name: str, filters: dict[str, Any], from_block: int, to_block: int | str = "latest") -> list:
        filters = {k: v for k, v in filters.items() if v is not None}
        event = getattr(self.contract.events, name)()
        return list(event.get_logs(argument_filters=filters or None, from_block=from_block, to_block=to_block))

    def audit_trail(self, *, patient: Who | None = None, grantee: Who | None = None, record_id: bytes | None = None,
                    from_block: int = 0, to_block: int | str = "latest") -> list[AccessEvent]:
        """Every recorded access (``AccessRecorded``) matching the filters, oldest first."""
        return [_access_event(log["args"], log["blockNumber"], bytes(log["transactionHash"]))
                for log in self._access_logs("AccessRecorded", patient, grantee, record_id, from_block, to_block)]

    def denials(self, *, patient: Who | None = None, grantee: Who | None = None, record_id: bytes | None = None,
                from_block: int = 0, to_block: int | str = "latest") -> list[AccessDenial]:
        """Every refused attempt (``AccessDenied``) matching the filters, oldest first."""
        return [_denial(log["args"], log["blockNumber"], bytes(log["transactionHash"]))
                for log in self._access_logs("AccessDenied", patient, grantee, record_id, from_block, to_block)]

    def _access_logs(self, name: str, patient: Who | None, grantee: Who | None, record_id: bytes | None,
                     from_block: int, to_block: int | str) -> list:
        filters = {"patient": None if patient is None else self.resolve(patient),
                   "grantee": None if grantee is None else self.resolve(grantee),
                   "recordId": record_id}
        return self._logs(name, filters, from_block, to_block)

    def grant_history(self, patient: Who, *, grantee: Who | None = None,
                      from_block: int = 0) -> list[Grant | Revocation]:
        """Grants and revocations of ``patient`` from the logs, in chain order."""
        p = self.resolve(patient)
        g = None if grantee is None else self.resolve(grantee)
        logs = []
        for name in ("AccessGranted", "AccessRevoked", "AllAccessRevoked"):
            logs += [(name, log) for log in self._logs(name, {"patient": p, "grantee": g}, from_block)]
        logs.sort(key=lambda item: (item[1]["blockNumber"], item[1]["logIndex"]))
        out: list[Grant | Revocation] = []
        for name, log in logs:
            a, at = log["args"], self._block_time(log["blockNumber"])
            if name == "AccessGranted":
                out.append(Grant(p, bytes(a["grantee"]), Scope(a["scope"]), bytes(a["target"]), Action(a["actions"]),
                                 a["notBefore"], a["expiresAt"], at))
            elif name == "AccessRevoked":
                out.append(Revocation(p, bytes(a["grantee"]), a["epoch"], Scope(a["scope"]), bytes(a["target"]), 1, at,
                                      log["blockNumber"]))
            else:
                out.append(Revocation(p, bytes(a["grantee"]), a["epoch"], None, None, a["grants"], at,
                                      log["blockNumber"]))
        return out

    def revocations(self, patient: Who, *, grantee: Who | None = None, from_block: int = 0) -> list[Revocation]:
        return [e for e in self.grant_history(patient, grantee=grantee, from_block=from_block)
                if isinstance(e, Revocation)]

    def grants_from_logs(self, patient: Who, *, grantee: Who | None = None, from_block: int = 0) -> list[Grant]:
        """The live grants of ``patient`` rebuilt from the logs alone (replayed through the pure model)."""
        state = replay(self.grant_history(patient, grantee=grantee, from_block=from_block))
        return state.live_grants()

    def _block_time(self, number: int) -> int:
        if number not in self._block_times:
            self._block_times[number] = int(self.client.w3.eth.get_block(number)["timestamp"])
        return self._block_times[number]


def replay(history: Iterable[Grant | Revocation]) -> PolicyState:
    """Apply logged grants and revocations to a fresh model (no validation: the chain already did it)."""
    state = PolicyState()
    for item in history:
        if isinstance(item, Grant):
            state.apply_grant(item, item.since)
        elif item.scope is None:
            state.revoke_all(item.patient, item.grantee)
        else:
            state.revoke(item.patient, item.grantee, item.scope, item.target)  # type: ignore[arg-type]
    return state


def _access_event(a: Any, block_number: int, tx_hash: bytes) -> AccessEvent:
    return AccessEvent(bytes(a["patient"]), bytes(a["grantee"]), bytes(a["recordId"]), Action(a["action"]),
                       Basis(a["basis"]), a["epoch"], a["proxy"], a["at"], block_number, tx_hash)


def _denial(a: Any, block_number: int, tx_hash: bytes) -> AccessDenial:
    return AccessDenial(bytes(a["patient"]), bytes(a["grantee"]), bytes(a["recordId"]), Action(a["action"]),
                        Reason(a["reason"]), a["proxy"], a["at"], block_number, tx_hash)


__all__ = ["AccessPolicyAgent", "AccessPolicyRefusal", "replay"]
