// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Time} from "@openzeppelin/contracts/utils/types/Time.sol";
import {IIdentityRegistry} from "./interfaces/IIdentityRegistry.sol";
import {IAccessPolicy, ACTION_READ, ACTION_WRITE, ACTION_COPY, ACTION_ALL} from "./interfaces/IAccessPolicy.sol";
import {IGoverned} from "./interfaces/IGoverned.sol";

/// @title AccessRules — the decision over the permissions that could cover an access
/// @notice Pure; the Python model `mbds_py.sharing.policy` applies the same rules.
/// Each live permission in scope is `consider`ed in turn (grants, then preset
/// rules, then emergency access); the first that allows wins. When none does,
/// `denial` names the most specific reason:
/// a live permission in scope exists → ActionNotAllowed if none of them has the
/// action, else NotYetValid if one with the action is pending, else Expired;
/// otherwise Revoked if a revoked grant is in scope, OutOfScope if the grantee
/// holds permissions for other records, NoGrant if it holds nothing.
library AccessRules {
    /// @dev What the permissions in scope looked like.
    struct Tally {
        bool found; // a live permission in scope exists
        bool withAction; // one of them has the action
        bool pending; // one with the action is not valid yet
        bool revoked; // a revoked grant is in scope
    }

    /// @dev Adds one live permission to the tally; true when it allows `action` at time `t`.
    function consider(Tally memory tally, uint8 actions, uint48 notBefore, uint48 expiresAt, uint8 action, uint48 t)
        internal
        pure
        returns (bool allows)
    {
        if (actions == 0) return false;
        tally.found = true;
        if (actions & action == 0) return false;
        tally.withAction = true;
        if (t < notBefore) {
            tally.pending = true;
            return false;
        }
        return t < expiresAt;
    }

    /// @dev The reason for refusing, given the tally and whether the grantee has permissions elsewhere.
    function denial(Tally memory tally, bool holdsOthers) internal pure returns (IAccessPolicy.AccessReason) {
        if (tally.found) {
            if (!tally.withAction) return IAccessPolicy.AccessReason.ActionNotAllowed;
            if (tally.pending) return IAccessPolicy.AccessReason.NotYetValid;
            return IAccessPolicy.AccessReason.Expired;
        }
        if (tally.revoked) return IAccessPolicy.AccessReason.Revoked;
        if (holdsOthers) return IAccessPolicy.AccessReason.OutOfScope;
        return IAccessPolicy.AccessReason.NoGrant;
    }
}

/// @title AccessPolicy — patient-controlled sharing, emergency access and the access audit trail
/// @notice Deployed on the consortium chain beside an IdentityRegistry, from which it reads
/// roles, doctors' institutions, suspensions and health authorities.
/// @dev Design choices (see IAccessPolicy for the idempotence rules):
/// - Grants are keyed by (patient, grantee, scope, target); a list of records is one grant per record.
/// - A revoke bumps the (patient, grantee) revocation epoch; re-encryption keys carry the epoch they
///   were issued for and `recordAccess` refuses any other, so after any revoke the patient re-issues keys
///   for the records the grantee may still read. `revokeAll` retires every grant at once by moving the
///   pair to a new grant generation (no loop over grants).
/// - `recordAccess` takes the record's keyword-set hash (for `KeywordSet` permissions; the proxy learns
///   it from the PEKS match) and the epoch of the key it is about to use, beyond (patient, grantee,
///   record, action).
/// - Preset rules are checked live for doctors of the named institution; removing one takes effect on
///   the next check and does not move epochs (keys are per record, and the check refuses).
/// - Suspension is policy-local (proxies detect abnormal access and may suspend; only health authorities
///   clear), and IdentityRegistry suspension is honoured too: either one refuses every access.
/// - A suspended patient may still revoke, reject and remove rules (they only narrow access), not grant.
/// - Emergency access is read-only on all records and cannot be revoked by the patient; it is time boxed.
///   It activates when `emergencyQuorum` distinct approvers are active authorities at that moment (an
///   approver suspended since it approved does not count).
/// - Adding or removing a proxy and clearing a suspension need the k-of-n AuthorityGovernor of the
///   registry; a proxy's (or one authority's) `suspendRequester` stays a single, fast, protective action.
contract AccessPolicy is IAccessPolicy {
    using AccessRules for AccessRules.Tally;

    // ------------------------------------------------------------------
    // Storage types
    // ------------------------------------------------------------------

    /// @dev A grant as stored: live while unrevoked and of the pair's current generation.
    struct StoredGrant {
        uint8 actions;
        uint48 notBefore;
        uint48 expiresAt;
        uint48 since;
        uint32 generation;
        bool revoked;
    }

    /// @dev Per (patient, grantee): revocation epoch, grant generation, live grants, emergency window.
    struct Pair {
        uint64 epoch;
        uint32 generation;
        uint32 grantCount;
        uint48 emergencyFrom;
        uint48 emergencyUntil;
    }

    /// @dev One access to decide, gathered to keep the stack shallow.
    struct Query {
        bytes32 patient;
        bytes32 grantee;
        bytes32 recordId;
        bytes32 keywordSetHash;
        uint8 action;
        uint48 time;
    }

    // ------------------------------------------------------------------
    // Storage
    // ------------------------------------------------------------------

    IIdentityRegistry private immutable _registry;
    address private immutable _governor;
    uint48 private immutable _requestTtl;
    uint48 private immutable _emergencyApprovalWindow;
    uint48 private immutable _emergencyMaxDuration;
    uint8 private immutable _emergencyQuorum;

    mapping(bytes32 key => StoredGrant) private _grants;
    mapping(bytes32 key => Permission) private _rules;
    mapping(bytes32 patient => mapping(bytes32 grantee => Pair)) private _pairs;
    mapping(bytes32 patient => mapping(bytes32 institution => uint32)) private _ruleCounts;

    mapping(uint256 requestId => AccessRequest) private _requests;
    uint256 private _requestCount;

    mapping(uint256 emergencyId => EmergencyAccess) private _emergencies;
    /// Who approved each emergency, in order: scanned for duplicates and re-checked at activation.
    mapping(uint256 emergencyId => bytes32[]) private _emergencyApprovers;
    uint256 private _emergencyCount;

    mapping(address account => bool) private _proxies;
    mapping(bytes32 requester => bool) private _suspended;

    // ------------------------------------------------------------------
    // Modifiers
    // ------------------------------------------------------------------

    modifier onlyAuthority() {
        if (!_registry.isAuthority(msg.sender)) revert AccessPolicyNotAuthority(msg.sender);
        _;
    }

    modifier onlyGovernance() {
        if (msg.sender != _governor) revert AccessPolicyNotGovernance(msg.sender);
        _;
    }

    modifier onlyProxy() {
        if (!_proxies[msg.sender]) revert AccessPolicyNotProxy(msg.sender);
        _;
    }

    constructor(
        IIdentityRegistry registry,
        uint48 requestTtl_,
        uint48 emergencyApprovalWindow_,
        uint48 emergencyMaxDuration_,
        uint8 emergencyQuorum_
    ) {
        if (
            address(registry) == address(0) || requestTtl_ == 0 || emergencyApprovalWindow_ == 0
                || emergencyMaxDuration_ == 0 || emergencyQuorum_ == 0
        ) {
            revert AccessPolicyInvalidConfig(
                address(registry), requestTtl_, emergencyApprovalWindow_, emergencyMaxDuration_, emergencyQuorum_
            );
        }
        _registry = registry;
        _governor = registry.governor();
        _requestTtl = requestTtl_;
        _emergencyApprovalWindow = emergencyApprovalWindow_;
        _emergencyMaxDuration = emergencyMaxDuration_;
        _emergencyQuorum = emergencyQuorum_;
    }

    // ------------------------------------------------------------------
    // Patient: grants and preset rules
    // ------------------------------------------------------------------

    /// @inheritdoc IAccessPolicy
    function grant(bytes32 grantee, Scope scope, bytes32 target, uint8 actions, uint48 notBefore, uint48 expiresAt)
        external
        returns (bool changed)
    {
        bytes32 patient = _callerPatient(true);
        _checkGrantee(grantee);
        _checkScope(scope, target);
        _checkActions(actions);
        _checkWindow(notBefore, expiresAt);
        return _setGrant(patient, grantee, scope, target, actions, notBefore, expiresAt);
    }

    /// @inheritdoc IAccessPolicy
    function grantRecords(
        bytes32 grantee,
        bytes32[] calldata recordIds,
        uint8 actions,
        uint48 notBefore,
        uint48 expiresAt
    ) external returns (uint256 changed) {
        bytes32 patient = _callerPatient(true);
        _checkGrantee(grantee);
        _checkActions(actions);
        _checkWindow(notBefore, expiresAt);
        for (uint256 i = 0; i < recordIds.length; ++i) {
            _checkScope(Scope.Record, recordIds[i]);
            if (_setGrant(patient, grantee, Scope.Record, recordIds[i], actions, notBefore, expiresAt)) ++changed;
        }
    }

    /// @inheritdoc IAccessPolicy
    function revoke(bytes32 grantee, Scope scope, bytes32 target) external returns (bool changed) {
        return _revokeGrant(_callerPatient(false), grantee, scope, target);
    }

    /// @inheritdoc IAccessPolicy
    function revokeAll(bytes32 grantee) external returns (bool changed) {
        return _revokeAllGrants(_callerPatient(false), grantee);
    }

    /// @inheritdoc IAccessPolicy
    function setPresetRule(
        bytes32 institution,
        Scope scope,
        bytes32 target,
        uint8 actions,
        uint48 notBefore,
        uint48 expiresAt
    ) external returns (bool changed) {
        bytes32 patient = _callerPatient(true);
        _checkInstitution(institution);
        _checkScope(scope, target);
        _checkActions(actions);
        _checkWindow(notBefore, expiresAt);
        return _setRule(patient, institution, scope, target, actions, notBefore, expiresAt);
    }

    /// @inheritdoc IAccessPolicy
    function removePresetRule(bytes32 institution, Scope scope, bytes32 target) external returns (bool changed) {
        return _removeRule(_callerPatient(false), institution, scope, target);
    }

    // ------------------------------------------------------------------
    // Requests
    // ------------------------------------------------------------------

    /// @inheritdoc IAccessPolicy
    function requestAccess(
        bytes32 patient,
        Scope scope,
        bytes32 target,
        uint8 actions,
        uint48 notBefore,
        uint48 expiresAt,
        string calldata reason
    ) external returns (uint256 requestId) {
        (bytes32 requester, IIdentityRegistry.Participant memory who) = _callerParticipant();
        if (who.role == IIdentityRegistry.Role.Patient) revert AccessPolicyInvalidGrantee(requester);
        if (who.suspended || _suspended[requester]) revert AccessPolicyRequesterSuspended(requester);
        _checkPatient(patient);
        _checkScope(scope, target);
        _checkActions(actions);
        _checkWindow(notBefore, expiresAt);
        return _createRequest(patient, requester, scope, target, actions, notBefore, expiresAt, reason);
    }

    /// @inheritdoc IAccessPolicy
    function approveRequest(uint256 requestId) external {
        AccessRequest storage r = _existingRequest(requestId);
        if (_registry.idOf(msg.sender) != r.patient) revert AccessPolicyNotRequestPatient(requestId, msg.sender);
        if (!_registry.isActive(msg.sender)) revert AccessPolicyPatientSuspended(r.patient);
        _expectRequestState(requestId, r, RequestState.Requested);
        _checkWindow(r.notBefore, r.expiresAt);
        _setRequestState(requestId, r, RequestState.Approved, "");
        _setGrant(r.patient, r.requester, r.scope, r.target, r.actions, r.notBefore, r.expiresAt);
    }

    /// @inheritdoc IAccessPolicy
    function rejectRequest(uint256 requestId, string calldata reason) external {
        AccessRequest storage r = _existingRequest(requestId);
        if (_registry.idOf(msg.sender) != r.patient) revert AccessPolicyNotRequestPatient(requestId, msg.sender);
        _expectRequestState(requestId, r, RequestState.Requested);
        _setRequestState(requestId, r, RequestState.Rejected, reason);
    }

    // ------------------------------------------------------------------
    // Emergency access
    // ------------------------------------------------------------------

    /// @inheritdoc IAccessPolicy
    function requestEmergencyAccess(bytes32 patient, uint48 duration, string calldata reason)
        external
        returns (uint256 emergencyId)
    {
        (bytes32 grantee, IIdentityRegistry.Participant memory who) = _callerParticipant();
        if (who.role != IIdentityRegistry.Role.Doctor) revert AccessPolicyNotDoctor(msg.sender);
        if (who.suspended || _suspended[grantee]) revert AccessPolicyRequesterSuspended(grantee);
        _checkPatient(patient);
        if (duration == 0 || duration > _emergencyMaxDuration) {
            revert AccessPolicyInvalidEmergencyDuration(duration, _emergencyMaxDuration);
        }
        return _createEmergency(patient, grantee, duration, reason);
    }

    /// @inheritdoc IAccessPolicy
    function approveEmergencyAccess(uint256 emergencyId) external onlyAuthority {
        bytes32 authority = _registry.idOf(msg.sender);
        EmergencyAccess storage e = _existingEmergency(emergencyId);
        EmergencyState current = _emergencyStateOf(e);
        if (current != EmergencyState.Pending) {
            revert AccessPolicyUnexpectedEmergencyState(emergencyId, current, EmergencyState.Pending);
        }
        if (_hasApprovedEmergency(emergencyId, authority)) {
            revert AccessPolicyDuplicateEmergencyApproval(emergencyId, authority);
        }
        _addEmergencyApproval(emergencyId, e, authority);
        if (_activeEmergencyApprovals(emergencyId) >= _emergencyQuorum) _activateEmergency(emergencyId, e);
    }

    // ------------------------------------------------------------------
    // Health authorities and proxies
    // ------------------------------------------------------------------

    /// @inheritdoc IAccessPolicy
    function addProxy(address proxy) external onlyGovernance {
        if (proxy == address(0)) revert AccessPolicyInvalidProxy(proxy);
        _setProxy(proxy, true);
    }

    /// @inheritdoc IAccessPolicy
    function removeProxy(address proxy) external onlyGovernance {
        _setProxy(proxy, false);
    }

    /// @inheritdoc IAccessPolicy
    function suspendRequester(bytes32 requester, string calldata reason) external {
        if (!_proxies[msg.sender] && !_registry.isAuthority(msg.sender)) {
            revert AccessPolicyNotProxyOrAuthority(msg.sender);
        }
        _setSuspended(requester, true, reason);
    }

    /// @inheritdoc IAccessPolicy
    function clearSuspension(bytes32 requester, string calldata reason) external onlyGovernance {
        _setSuspended(requester, false, reason);
    }

    /// @inheritdoc IAccessPolicy
    function recordAccess(
        bytes32 patient,
        bytes32 grantee,
        bytes32 recordId,
        bytes32 keywordSetHash,
        uint8 action,
        uint64 epoch
    ) external onlyProxy {
        _checkAction(action);
        (AccessReason reason, Basis basis, uint64 current) = _evaluate(patient, grantee, recordId, keywordSetHash, action);
        if (reason != AccessReason.Ok) revert AccessPolicyAccessDenied(patient, grantee, recordId, action, reason);
        if (epoch != current) revert AccessPolicyStaleEpoch(patient, grantee, epoch, current);
        emit AccessRecorded(patient, grantee, recordId, action, basis, current, msg.sender, Time.timestamp());
    }

    /// @inheritdoc IAccessPolicy
    function recordDenial(bytes32 patient, bytes32 grantee, bytes32 recordId, bytes32 keywordSetHash, uint8 action)
        external
        onlyProxy
        returns (AccessReason reason)
    {
        _checkAction(action);
        (reason,,) = _evaluate(patient, grantee, recordId, keywordSetHash, action);
        if (reason == AccessReason.Ok) revert AccessPolicyAccessAllowed(patient, grantee, recordId, action);
        emit AccessDenied(patient, grantee, recordId, action, reason, msg.sender, Time.timestamp());
    }

    // ------------------------------------------------------------------
    // Views
    // ------------------------------------------------------------------

    /// @inheritdoc IAccessPolicy
    function checkAccess(bytes32 patient, bytes32 grantee, bytes32 recordId, bytes32 keywordSetHash, uint8 action)
        external
        view
        returns (bool allowed, AccessReason reason, uint64 epoch)
    {
        _checkAction(action);
        (reason,, epoch) = _evaluate(patient, grantee, recordId, keywordSetHash, action);
        allowed = reason == AccessReason.Ok;
    }

    /// @inheritdoc IAccessPolicy
    function grantOf(bytes32 patient, bytes32 grantee, Scope scope, bytes32 target)
        external
        view
        returns (Permission memory p)
    {
        StoredGrant storage g = _grants[_key(patient, grantee, scope, target)];
        if (_isLive(g, _pairs[patient][grantee].generation)) {
            p = Permission(g.actions, g.notBefore, g.expiresAt, g.since);
        }
    }

    /// @inheritdoc IAccessPolicy
    function presetRuleOf(bytes32 patient, bytes32 institution, Scope scope, bytes32 target)
        external
        view
        returns (Permission memory)
    {
        return _rules[_key(patient, institution, scope, target)];
    }

    /// @inheritdoc IAccessPolicy
    function epochOf(bytes32 patient, bytes32 grantee) external view returns (uint64) {
        return _pairs[patient][grantee].epoch;
    }

    /// @inheritdoc IAccessPolicy
    function grantCountOf(bytes32 patient, bytes32 grantee) external view returns (uint32) {
        return _pairs[patient][grantee].grantCount;
    }

    /// @inheritdoc IAccessPolicy
    function emergencyWindowOf(bytes32 patient, bytes32 grantee)
        external
        view
        returns (uint48 activatedAt, uint48 expiresAt)
    {
        Pair storage pair = _pairs[patient][grantee];
        return (pair.emergencyFrom, pair.emergencyUntil);
    }

    /// @inheritdoc IAccessPolicy
    function requestOf(uint256 requestId) external view returns (AccessRequest memory r) {
        AccessRequest storage stored = _existingRequest(requestId);
        r = stored;
        r.state = _requestStateOf(stored);
    }

    /// @inheritdoc IAccessPolicy
    function requestState(uint256 requestId) external view returns (RequestState) {
        return _requestStateOf(_existingRequest(requestId));
    }

    /// @inheritdoc IAccessPolicy
    function emergencyOf(uint256 emergencyId) external view returns (EmergencyAccess memory e) {
        EmergencyAccess storage stored = _existingEmergency(emergencyId);
        e = stored;
        e.state = _emergencyStateOf(stored);
    }

    /// @inheritdoc IAccessPolicy
    function emergencyState(uint256 emergencyId) external view returns (EmergencyState) {
        return _emergencyStateOf(_existingEmergency(emergencyId));
    }

    /// @inheritdoc IAccessPolicy
    function hasApprovedEmergency(uint256 emergencyId, bytes32 authority) external view returns (bool) {
        return _hasApprovedEmergency(emergencyId, authority);
    }

    /// @inheritdoc IAccessPolicy
    function isProxy(address account) external view returns (bool) {
        return _proxies[account];
    }

    /// @inheritdoc IAccessPolicy
    function isSuspended(bytes32 requester) external view returns (bool) {
        return _suspended[requester];
    }

    /// @inheritdoc IAccessPolicy
    function requestCount() external view returns (uint256) {
        return _requestCount;
    }

    /// @inheritdoc IAccessPolicy
    function emergencyCount() external view returns (uint256) {
        return _emergencyCount;
    }

    /// @inheritdoc IAccessPolicy
    function identityRegistry() external view returns (IIdentityRegistry) {
        return _registry;
    }

    /// @inheritdoc IAccessPolicy
    function requestTtl() external view returns (uint48) {
        return _requestTtl;
    }

    /// @inheritdoc IAccessPolicy
    function emergencyApprovalWindow() external view returns (uint48) {
        return _emergencyApprovalWindow;
    }

    /// @inheritdoc IAccessPolicy
    function emergencyMaxDuration() external view returns (uint48) {
        return _emergencyMaxDuration;
    }

    /// @inheritdoc IAccessPolicy
    function emergencyQuorum() external view returns (uint8) {
        return _emergencyQuorum;
    }

    /// @inheritdoc IGoverned
    function governor() external view returns (address) {
        return _governor;
    }

    /// @inheritdoc IGoverned
    function isParameterChange(bytes4) external pure returns (bool) {
        return false; // proxies and clearances are not parameters (the rest is immutable): no delay
    }

    // ------------------------------------------------------------------
    // Internal: the decision
    // ------------------------------------------------------------------

    function _evaluate(bytes32 patient, bytes32 grantee, bytes32 recordId, bytes32 keywordSetHash, uint8 action)
        private
        view
        returns (AccessReason reason, Basis basis, uint64 epoch)
    {
        Pair memory pair = _pairs[patient][grantee];
        epoch = pair.epoch;
        if (_suspended[grantee]) return (AccessReason.GranteeSuspended, Basis.None, epoch);
        (bool known, IIdentityRegistry.Participant memory who) = _identity(grantee);
        if (!known) return (AccessReason.NoGrant, Basis.None, epoch);
        if (who.suspended) return (AccessReason.GranteeSuspended, Basis.None, epoch);

        Query memory q = Query(patient, grantee, recordId, keywordSetHash, action, Time.timestamp());
        AccessRules.Tally memory tally;
        if (_considerGrants(tally, q, pair.generation)) return (AccessReason.Ok, Basis.Grant, epoch);
        bool holdsOthers = pair.grantCount != 0;
        if (who.role == IIdentityRegistry.Role.Doctor) {
            if (_considerRules(tally, q, who.institution)) return (AccessReason.Ok, Basis.PresetRule, epoch);
            holdsOthers = holdsOthers || _ruleCounts[patient][who.institution] != 0;
        }
        if (
            pair.emergencyUntil != 0
                && tally.consider(ACTION_READ, pair.emergencyFrom, pair.emergencyUntil, action, q.time)
        ) return (AccessReason.Ok, Basis.Emergency, epoch);
        return (tally.denial(holdsOthers), Basis.None, epoch);
    }

    /// @dev The grantee's grants in scope: all records, this record, this keyword set.
    function _considerGrants(AccessRules.Tally memory tally, Query memory q, uint32 generation)
        private
        view
        returns (bool)
    {
        return _considerGrant(tally, q, Scope.All, bytes32(0), generation)
            || (q.recordId != 0 && _considerGrant(tally, q, Scope.Record, q.recordId, generation))
            || (q.keywordSetHash != 0 && _considerGrant(tally, q, Scope.KeywordSet, q.keywordSetHash, generation));
    }

    function _considerGrant(
        AccessRules.Tally memory tally,
        Query memory q,
        Scope scope,
        bytes32 target,
        uint32 generation
    ) private view returns (bool) {
        StoredGrant memory g = _grants[_key(q.patient, q.grantee, scope, target)];
        if (g.since == 0) return false;
        if (g.revoked || g.generation != generation) {
            tally.revoked = true;
            return false;
        }
        return tally.consider(g.actions, g.notBefore, g.expiresAt, q.action, q.time);
    }

    /// @dev The preset rules in scope for the doctors of `institution`.
    function _considerRules(AccessRules.Tally memory tally, Query memory q, bytes32 institution)
        private
        view
        returns (bool)
    {
        return _considerRule(tally, q, institution, Scope.All, bytes32(0))
            || (q.recordId != 0 && _considerRule(tally, q, institution, Scope.Record, q.recordId))
            || (q.keywordSetHash != 0 && _considerRule(tally, q, institution, Scope.KeywordSet, q.keywordSetHash));
    }

    function _considerRule(
        AccessRules.Tally memory tally,
        Query memory q,
        bytes32 institution,
        Scope scope,
        bytes32 target
    ) private view returns (bool) {
        Permission memory r = _rules[_key(q.patient, institution, scope, target)];
        return tally.consider(r.actions, r.notBefore, r.expiresAt, q.action, q.time);
    }

    // ------------------------------------------------------------------
    // Internal: mutators (one per kind of write; each emits right after it writes)
    // ------------------------------------------------------------------

    function _setGrant(
        bytes32 patient,
        bytes32 grantee,
        Scope scope,
        bytes32 target,
        uint8 actions,
        uint48 notBefore,
        uint48 expiresAt
    ) private returns (bool) {
        Pair storage pair = _pairs[patient][grantee];
        bytes32 key = _key(patient, grantee, scope, target);
        StoredGrant storage g = _grants[key];
        bool live = _isLive(g, pair.generation);
        if (live && g.actions == actions && g.notBefore == notBefore && g.expiresAt == expiresAt) return false;
        if (!live) pair.grantCount += 1;
        _grants[key] = StoredGrant(actions, notBefore, expiresAt, Time.timestamp(), pair.generation, false);
        emit AccessGranted(patient, grantee, target, scope, actions, notBefore, expiresAt);
        return true;
    }

    function _revokeGrant(bytes32 patient, bytes32 grantee, Scope scope, bytes32 target) private returns (bool) {
        Pair storage pair = _pairs[patient][grantee];
        StoredGrant storage g = _grants[_key(patient, grantee, scope, target)];
        if (!_isLive(g, pair.generation)) return false;
        g.revoked = true;
        pair.grantCount -= 1;
        uint64 epoch = ++pair.epoch;
        emit AccessRevoked(patient, grantee, target, scope, epoch);
        return true;
    }

    function _revokeAllGrants(bytes32 patient, bytes32 grantee) private returns (bool) {
        Pair storage pair = _pairs[patient][grantee];
        uint32 count = pair.grantCount;
        if (count == 0) return false;
        pair.generation += 1;
        pair.grantCount = 0;
        uint64 epoch = ++pair.epoch;
        emit AllAccessRevoked(patient, grantee, count, epoch);
        return true;
    }

    function _setRule(
        bytes32 patient,
        bytes32 institution,
        Scope scope,
        bytes32 target,
        uint8 actions,
        uint48 notBefore,
        uint48 expiresAt
    ) private returns (bool) {
        Permission storage r = _rules[_key(patient, institution, scope, target)];
        if (r.actions == actions && r.notBefore == notBefore && r.expiresAt == expiresAt) return false;
        if (r.actions == 0) _ruleCounts[patient][institution] += 1;
        r.actions = actions;
        r.notBefore = notBefore;
        r.expiresAt = expiresAt;
        r.since = Time.timestamp();
        emit PresetRuleSet(patient, institution, target, scope, actions, notBefore, expiresAt);
        return true;
    }

    function _removeRule(bytes32 patient, bytes32 institution, Scope scope, bytes32 target) private returns (bool) {
        bytes32 key = _key(patient, institution, scope, target);
        if (_rules[key].actions == 0) return false;
        delete _rules[key];
        _ruleCounts[patient][institution] -= 1;
        emit PresetRuleRemoved(patient, institution, target, scope);
        return true;
    }

    function _createRequest(
        bytes32 patient,
        bytes32 requester,
        Scope scope,
        bytes32 target,
        uint8 actions,
        uint48 notBefore,
        uint48 expiresAt,
        string calldata reason
    ) private returns (uint256 requestId) {
        requestId = ++_requestCount;
        uint48 t = Time.timestamp();
        uint48 deadline = t + _requestTtl;
        _requests[requestId] = AccessRequest(
            patient, requester, target, scope, actions, RequestState.Requested, notBefore, expiresAt, t, deadline
        );
        emit AccessRequested(requestId, patient, requester, scope, target, actions, notBefore, expiresAt, deadline, reason);
    }

    function _setRequestState(uint256 requestId, AccessRequest storage r, RequestState state, string memory reason)
        private
    {
        r.state = state;
        if (state == RequestState.Approved) emit AccessRequestApproved(requestId, r.patient, r.requester);
        else emit AccessRequestRejected(requestId, r.patient, r.requester, reason);
    }

    function _createEmergency(bytes32 patient, bytes32 grantee, uint48 duration, string calldata reason)
        private
        returns (uint256 emergencyId)
    {
        emergencyId = ++_emergencyCount;
        uint48 t = Time.timestamp();
        uint48 deadline = t + _emergencyApprovalWindow;
        _emergencies[emergencyId] = EmergencyAccess(patient, grantee, duration, t, deadline, 0, 0, 0, EmergencyState.Pending);
        emit EmergencyAccessRequested(emergencyId, patient, grantee, duration, deadline, reason);
    }

    function _addEmergencyApproval(uint256 emergencyId, EmergencyAccess storage e, bytes32 authority) private {
        _emergencyApprovers[emergencyId].push(authority);
        uint8 approvals = ++e.approvals;
        emit EmergencyAccessApproved(emergencyId, authority, approvals);
    }

    function _hasApprovedEmergency(uint256 emergencyId, bytes32 authority) private view returns (bool) {
        bytes32[] storage approvers = _emergencyApprovers[emergencyId];
        uint256 n = approvers.length;
        for (uint256 i; i < n; ++i) {
            if (approvers[i] == authority) return true;
        }
        return false;
    }

    /// @dev How many approvers of an emergency are active health authorities now (at activation).
    function _activeEmergencyApprovals(uint256 emergencyId) private view returns (uint256 active) {
        bytes32[] storage approvers = _emergencyApprovers[emergencyId];
        uint256 n = approvers.length;
        for (uint256 i; i < n; ++i) {
            if (_registry.isAuthorityId(approvers[i])) ++active;
        }
    }

    function _activateEmergency(uint256 emergencyId, EmergencyAccess storage e) private {
        uint48 t = Time.timestamp();
        uint48 until = t + e.duration;
        e.state = EmergencyState.Active;
        e.activatedAt = t;
        e.expiresAt = until;
        Pair storage pair = _pairs[e.patient][e.grantee];
        if (pair.emergencyUntil > t) {
            // Still inside an earlier emergency window: extend it, never shorten it.
            if (until > pair.emergencyUntil) pair.emergencyUntil = until;
        } else {
            pair.emergencyFrom = t;
            pair.emergencyUntil = until;
        }
        emit EmergencyAccessActivated(emergencyId, e.patient, e.grantee, t, until);
    }

    function _setProxy(address proxy, bool registered) private {
        if (_proxies[proxy] == registered) return;
        _proxies[proxy] = registered;
        bytes32 authority = _registry.idOf(msg.sender);
        if (registered) emit ProxyAdded(proxy, authority);
        else emit ProxyRemoved(proxy, authority);
    }

    function _setSuspended(bytes32 requester, bool suspended, string calldata reason) private {
        if (_suspended[requester] == suspended) return;
        _suspended[requester] = suspended;
        if (suspended) emit RequesterSuspended(requester, msg.sender, reason);
        else emit RequesterCleared(requester, _registry.idOf(msg.sender), reason);
    }

    // ------------------------------------------------------------------
    // Internal: reads and checks
    // ------------------------------------------------------------------

    function _key(bytes32 owner, bytes32 holder, Scope scope, bytes32 target) private pure returns (bytes32) {
        return keccak256(abi.encode(owner, holder, scope, target));
    }

    function _isLive(StoredGrant storage g, uint32 generation) private view returns (bool) {
        return g.since != 0 && !g.revoked && g.generation == generation;
    }

    /// @dev The registry record of `id`; `known` is false for an unknown ID. Any registry failure
    /// reads as unknown, which fails closed (no access, no grant).
    function _identity(bytes32 id) private view returns (bool known, IIdentityRegistry.Participant memory who) {
        if (id == bytes32(0)) return (false, who);
        try _registry.participant(id) returns (IIdentityRegistry.Participant memory found) {
            return (true, found);
        } catch {
            return (false, who);
        }
    }

    function _callerParticipant() private view returns (bytes32 id, IIdentityRegistry.Participant memory who) {
        id = _registry.idOf(msg.sender);
        if (id == bytes32(0)) revert AccessPolicyNotParticipant(msg.sender);
        who = _registry.participant(id);
    }

    /// @dev The caller's participant ID if it is a registered patient (and, if `active`, not suspended).
    function _callerPatient(bool active) private view returns (bytes32 id) {
        id = _registry.idOf(msg.sender);
        if (id == bytes32(0)) revert AccessPolicyNotPatient(msg.sender);
        IIdentityRegistry.Participant memory who = _registry.participant(id);
        if (who.role != IIdentityRegistry.Role.Patient) revert AccessPolicyNotPatient(msg.sender);
        if (active && who.suspended) revert AccessPolicyPatientSuspended(id);
    }

    function _checkPatient(bytes32 patient) private view {
        (bool known, IIdentityRegistry.Participant memory who) = _identity(patient);
        if (!known || who.role != IIdentityRegistry.Role.Patient) revert AccessPolicyInvalidPatient(patient);
    }

    function _checkGrantee(bytes32 grantee) private view {
        (bool known, IIdentityRegistry.Participant memory who) = _identity(grantee);
        if (!known || who.role == IIdentityRegistry.Role.Patient) revert AccessPolicyInvalidGrantee(grantee);
    }

    function _checkInstitution(bytes32 institution) private view {
        (bool known, IIdentityRegistry.Participant memory who) = _identity(institution);
        if (
            !known
                || (who.role != IIdentityRegistry.Role.Hospital && who.role != IIdentityRegistry.Role.InternetPlatform)
        ) revert AccessPolicyInvalidInstitution(institution);
    }

    function _checkScope(Scope scope, bytes32 target) private pure {
        if ((scope == Scope.All) != (target == bytes32(0))) revert AccessPolicyInvalidScope(scope, target);
    }

    function _checkActions(uint8 actions) private pure {
        if (actions == 0 || actions & ~ACTION_ALL != 0) revert AccessPolicyInvalidActions(actions);
    }

    function _checkAction(uint8 action) private pure {
        if (action != ACTION_READ && action != ACTION_WRITE && action != ACTION_COPY) {
            revert AccessPolicyInvalidActions(action);
        }
    }

    function _checkWindow(uint48 notBefore, uint48 expiresAt) private view {
        uint48 t = Time.timestamp();
        if (notBefore >= expiresAt || expiresAt <= t) revert AccessPolicyInvalidWindow(notBefore, expiresAt, t);
    }

    function _existingRequest(uint256 requestId) private view returns (AccessRequest storage r) {
        r = _requests[requestId];
        if (r.state == RequestState.None) revert AccessPolicyUnknownRequest(requestId);
    }

    function _requestStateOf(AccessRequest storage r) private view returns (RequestState) {
        if (r.state == RequestState.Requested && Time.timestamp() >= r.deadline) return RequestState.Expired;
        return r.state;
    }

    function _expectRequestState(uint256 requestId, AccessRequest storage r, RequestState expected) private view {
        RequestState current = _requestStateOf(r);
        if (current != expected) revert AccessPolicyUnexpectedRequestState(requestId, current, expected);
    }

    function _existingEmergency(uint256 emergencyId) private view returns (EmergencyAccess storage e) {
        e = _emergencies[emergencyId];
        if (e.state == EmergencyState.None) revert AccessPolicyUnknownEmergency(emergencyId);
    }

    function _emergencyStateOf(EmergencyAccess storage e) private view returns (EmergencyState) {
        uint48 t = Time.timestamp();
        if (e.state == EmergencyState.Pending && t >= e.deadline) return EmergencyState.Expired;
        if (e.state == EmergencyState.Active && t >= e.expiresAt) return EmergencyState.Expired;
        return e.state;
    }
}
