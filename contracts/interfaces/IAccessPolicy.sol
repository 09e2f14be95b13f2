// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IIdentityRegistry} from "./IIdentityRegistry.sol";
import {IGoverned} from "./IGoverned.sol";

// ----------------------------------------------------------------------
// Actions (a bitmask in grants, exactly one bit in an access)
// ----------------------------------------------------------------------

/// @dev Read a record (re-encrypt it to the grantee).
uint8 constant ACTION_READ = 1;
/// @dev Write (append to / update) a record.
uint8 constant ACTION_WRITE = 2;
/// @dev Copy a record out of MBDS (e.g. into a hospital EHR).
uint8 constant ACTION_COPY = 4;
/// @dev Every defined action bit.
uint8 constant ACTION_ALL = 7;

/// @title IAccessPolicy — patient-controlled sharing on the consortium chain
/// @notice The paper's "preset access permissions" and "application to the
/// patient" (section "Data sharing", Algorithm 3), plus what the design adds:
/// revocation that bites (a revocation epoch per patient and grantee),
/// record-scoped grants, doctor requests as a state machine, k-of-n emergency
/// access, policy-local suspension after abnormal access, and an on-chain
/// audit event for every re-encryption a proxy performs.
///
/// Participants are named by their IdentityRegistry ID (stable across key
/// rotation); callers are resolved with `idOf(msg.sender)` on the registry
/// this policy was deployed with.
///
/// A permission is valid at time `t` when `notBefore <= t < expiresAt`.
///
/// Idempotence (OpenZeppelin AccessControl spirit): granting exactly what is
/// already granted, setting an identical preset rule, revoking or removing
/// what does not exist, adding a known proxy, removing an unknown one,
/// suspending a suspended requester or clearing an unsuspended one change
/// nothing and emit nothing. Granting the same key with different terms
/// replaces the terms and emits `AccessGranted` again.
interface IAccessPolicy is IGoverned {
    // ------------------------------------------------------------------
    // Types
    // ------------------------------------------------------------------

    /// @notice What a grant or preset rule covers. `All`: every record of the
    /// patient (target zero); `Record`: one record, by record (slip) ID;
    /// `KeywordSet`: records whose keyword set hashes to `target`.
    enum Scope {
        All,
        Record,
        KeywordSet
    }

    /// @notice Why `checkAccess` allows or refuses (0 = allowed).
    enum AccessReason {
        Ok,
        NoGrant,
        NotYetValid,
        Expired,
        ActionNotAllowed,
        Revoked,
        GranteeSuspended,
        OutOfScope
    }

    /// @notice What allowed an access: a grant, a preset rule or an emergency.
    enum Basis {
        None,
        Grant,
        PresetRule,
        Emergency
    }

    /// @notice Lifecycle of a doctor's request: Requested → Approved | Rejected | Expired.
    enum RequestState {
        None,
        Requested,
        Approved,
        Rejected,
        Expired
    }

    /// @notice Lifecycle of an emergency request: Pending → Active → Expired,
    /// or Pending → Expired when the quorum is not reached in time.
    enum EmergencyState {
        None,
        Pending,
        Active,
        Expired
    }

    /// @notice A time-bounded permission (a grant or a preset rule), one slot.
    struct Permission {
        uint8 actions; // bitmask of ACTION_*
        uint48 notBefore; // valid from (inclusive)
        uint48 expiresAt; // valid until (exclusive)
        uint48 since; // when it was (last) set
    }

    /// @notice A request for access by a data user, addressed to a patient.
    struct AccessRequest {
        bytes32 patient;
        bytes32 requester;
        bytes32 target;
        Scope scope;
        uint8 actions;
        RequestState state; // as of the block the view runs in
        uint48 notBefore; // requested validity window
        uint48 expiresAt;
        uint48 createdAt;
        uint48 deadline; // the request expires at this time unless decided
    }

    /// @notice A break-glass request: read access to all of a patient's records.
    struct EmergencyAccess {
        bytes32 patient;
        bytes32 grantee;
        uint48 duration; // length of the access once activated
        uint48 createdAt;
        uint48 deadline; // the quorum must be reached before this time
        uint48 activatedAt; // zero until the quorum is reached
        uint48 expiresAt; // activatedAt + duration; zero until activated
        uint8 approvals;
        EmergencyState state; // as of the block the view runs in
    }

    // ------------------------------------------------------------------
    // Errors
    // ------------------------------------------------------------------

    /// @dev A constructor parameter is zero.
    error AccessPolicyInvalidConfig(
        address registry, uint48 requestTtl, uint48 emergencyApprovalWindow, uint48 emergencyMaxDuration, uint8 emergencyQuorum
    );
    /// @dev The caller is not a registered patient (only a patient changes its own policy).
    error AccessPolicyNotPatient(address caller);
    /// @dev A suspended patient may revoke, reject and remove, but not grant or approve.
    error AccessPolicyPatientSuspended(bytes32 patient);
    /// @dev The caller is not the patient the request is addressed to.
    error AccessPolicyNotRequestPatient(uint256 requestId, address caller);
    /// @dev The caller is not a registered participant.
    error AccessPolicyNotParticipant(address caller);
    /// @dev The caller is not a registered doctor (emergency access is for doctors).
    error AccessPolicyNotDoctor(address caller);
    /// @dev The caller is not an active health authority.
    error AccessPolicyNotAuthority(address caller);
    /// @dev The caller is not the k-of-n AuthorityGovernor (a governed function called directly).
    error AccessPolicyNotGovernance(address caller);
    /// @dev The caller is not a registered proxy.
    error AccessPolicyNotProxy(address caller);
    /// @dev The caller is neither a registered proxy nor an active health authority.
    error AccessPolicyNotProxyOrAuthority(address caller);
    /// @dev The named patient is not a registered patient.
    error AccessPolicyInvalidPatient(bytes32 patient);
    /// @dev The grantee is unknown, a patient, or the patient itself.
    error AccessPolicyInvalidGrantee(bytes32 grantee);
    /// @dev Preset rules name a registered hospital or Internet platform.
    error AccessPolicyInvalidInstitution(bytes32 institution);
    /// @dev `All` takes a zero target, `Record` and `KeywordSet` a non-zero one.
    error AccessPolicyInvalidScope(Scope scope, bytes32 target);
    /// @dev Grants need a non-empty subset of ACTION_ALL; an access exactly one action bit.
    error AccessPolicyInvalidActions(uint8 actions);
    /// @dev The window is empty (`notBefore >= expiresAt`) or already over (`expiresAt <= now`).
    error AccessPolicyInvalidWindow(uint48 notBefore, uint48 expiresAt, uint48 currentTime);
    /// @dev The requester is suspended here or in the IdentityRegistry.
    error AccessPolicyRequesterSuspended(bytes32 requester);
    /// @dev No request with this ID.
    error AccessPolicyUnknownRequest(uint256 requestId);
    /// @dev The request is not in the state the transition needs.
    error AccessPolicyUnexpectedRequestState(uint256 requestId, RequestState current, RequestState expected);
    /// @dev Emergency durations are in (0, emergencyMaxDuration].
    error AccessPolicyInvalidEmergencyDuration(uint48 duration, uint48 maxDuration);
    /// @dev No emergency request with this ID.
    error AccessPolicyUnknownEmergency(uint256 emergencyId);
    /// @dev The emergency request is not in the state the transition needs.
    error AccessPolicyUnexpectedEmergencyState(uint256 emergencyId, EmergencyState current, EmergencyState expected);
    /// @dev This authority already approved this emergency request.
    error AccessPolicyDuplicateEmergencyApproval(uint256 emergencyId, bytes32 authority);
    /// @dev The proxy address is zero.
    error AccessPolicyInvalidProxy(address proxy);
    /// @dev The access is not allowed now; `reason` is what `checkAccess` reports.
    error AccessPolicyAccessDenied(bytes32 patient, bytes32 grantee, bytes32 recordId, uint8 action, AccessReason reason);
    /// @dev The re-encryption key was issued for an older revocation epoch.
    error AccessPolicyStaleEpoch(bytes32 patient, bytes32 grantee, uint64 epoch, uint64 currentEpoch);
    /// @notice `recordDenial` was called for an access the policy allows: a refusal cannot be forged.
    error AccessPolicyAccessAllowed(bytes32 patient, bytes32 grantee, bytes32 recordId, uint8 action);

    // ------------------------------------------------------------------
    // Events
    // ------------------------------------------------------------------

    /// @notice A patient granted (or changed the terms of) a permission.
    event AccessGranted(
        bytes32 indexed patient,
        bytes32 indexed grantee,
        bytes32 indexed target,
        Scope scope,
        uint8 actions,
        uint48 notBefore,
        uint48 expiresAt
    );
    /// @notice A patient revoked one permission; `epoch` is the new revocation epoch.
    event AccessRevoked(bytes32 indexed patient, bytes32 indexed grantee, bytes32 indexed target, Scope scope, uint64 epoch);
    /// @notice A patient revoked every permission of a grantee; `epoch` is the new revocation epoch.
    event AllAccessRevoked(bytes32 indexed patient, bytes32 indexed grantee, uint32 grants, uint64 epoch);
    /// @notice A patient set (or changed) a preset rule for the doctors of an institution.
    event PresetRuleSet(
        bytes32 indexed patient,
        bytes32 indexed institution,
        bytes32 indexed target,
        Scope scope,
        uint8 actions,
        uint48 notBefore,
        uint48 expiresAt
    );
    /// @notice A patient removed a preset rule.
    event PresetRuleRemoved(bytes32 indexed patient, bytes32 indexed institution, bytes32 indexed target, Scope scope);
    /// @notice A data user asked a patient for access.
    event AccessRequested(
        uint256 indexed requestId,
        bytes32 indexed patient,
        bytes32 indexed requester,
        Scope scope,
        bytes32 target,
        uint8 actions,
        uint48 notBefore,
        uint48 expiresAt,
        uint48 deadline,
        string reason
    );
    /// @notice The patient approved a request; an `AccessGranted` follows unless already granted.
    event AccessRequestApproved(uint256 indexed requestId, bytes32 indexed patient, bytes32 indexed requester);
    /// @notice The patient rejected a request.
    event AccessRequestRejected(
        uint256 indexed requestId, bytes32 indexed patient, bytes32 indexed requester, string reason
    );
    /// @notice A doctor asked the health authorities for emergency access (the patient is notified).
    event EmergencyAccessRequested(
        uint256 indexed emergencyId,
        bytes32 indexed patient,
        bytes32 indexed grantee,
        uint48 duration,
        uint48 deadline,
        string reason
    );
    /// @notice A health authority approved an emergency request.
    event EmergencyAccessApproved(uint256 indexed emergencyId, bytes32 indexed authority, uint8 approvals);
    /// @notice The quorum was reached: the grantee may read all the patient's records until `expiresAt`.
    event EmergencyAccessActivated(
        uint256 indexed emergencyId, bytes32 indexed patient, bytes32 indexed grantee, uint48 activatedAt, uint48 expiresAt
    );
    /// @notice The k-of-n governor registered a proxy (`authority` is zero: see IAuthorityGovernor).
    event ProxyAdded(address indexed proxy, bytes32 indexed authority);
    /// @notice The k-of-n governor removed a proxy (`authority` is zero).
    event ProxyRemoved(address indexed proxy, bytes32 indexed authority);
    /// @notice A proxy or authority suspended a requester after abnormal access.
    event RequesterSuspended(bytes32 indexed requester, address indexed by, string reason);
    /// @notice The k-of-n governor cleared a requester's suspension (`authority` is zero).
    event RequesterCleared(bytes32 indexed requester, bytes32 indexed authority, string reason);
    /// @notice A proxy re-encrypted a record for a grantee (the audit trail).
    event AccessRecorded(
        bytes32 indexed patient,
        bytes32 indexed grantee,
        bytes32 indexed recordId,
        uint8 action,
        Basis basis,
        uint64 epoch,
        address proxy,
        uint48 at
    );
    /// @notice A proxy refused an authenticated request because the policy denies it (the audit trail
    /// of refused attempts).
    event AccessDenied(
        bytes32 indexed patient,
        bytes32 indexed grantee,
        bytes32 indexed recordId,
        uint8 action,
        AccessReason reason,
        address proxy,
        uint48 at
    );

    // ------------------------------------------------------------------
    // Patient: grants and preset rules
    // ------------------------------------------------------------------

    /// @notice Grant `grantee` the `actions` on `scope`/`target` during [notBefore, expiresAt).
    /// The caller is the patient. Returns false (and emits nothing) when exactly this is already granted.
    function grant(bytes32 grantee, Scope scope, bytes32 target, uint8 actions, uint48 notBefore, uint48 expiresAt)
        external
        returns (bool changed);

    /// @notice Grant the same terms on each listed record (scope `Record`); returns how many changed.
    function grantRecords(
        bytes32 grantee,
        bytes32[] calldata recordIds,
        uint8 actions,
        uint48 notBefore,
        uint48 expiresAt
    ) external returns (uint256 changed);

    /// @notice Revoke one permission, effective immediately; bumps the (patient, grantee) epoch.
    /// A no-op (false, no event) when there is no such live permission.
    function revoke(bytes32 grantee, Scope scope, bytes32 target) external returns (bool changed);

    /// @notice Revoke every permission of `grantee`; bumps the epoch. A no-op when there is none.
    function revokeAll(bytes32 grantee) external returns (bool changed);

    /// @notice Preset rule: every doctor of `institution` gets `actions` on `scope`/`target`
    /// during [notBefore, expiresAt), without asking. Returns false when exactly this is already set.
    function setPresetRule(
        bytes32 institution,
        Scope scope,
        bytes32 target,
        uint8 actions,
        uint48 notBefore,
        uint48 expiresAt
    ) external returns (bool changed);

    /// @notice Remove a preset rule; a no-op (false, no event) when there is none.
    function removePresetRule(bytes32 institution, Scope scope, bytes32 target) external returns (bool changed);

    // ------------------------------------------------------------------
    // Requests: data user asks, patient decides
    // ------------------------------------------------------------------

    /// @notice Ask `patient` for `actions` on `scope`/`target` during [notBefore, expiresAt).
    /// The request expires `requestTtl` after creation unless decided.
    function requestAccess(
        bytes32 patient,
        Scope scope,
        bytes32 target,
        uint8 actions,
        uint48 notBefore,
        uint48 expiresAt,
        string calldata reason
    ) external returns (uint256 requestId);

    /// @notice Approve a pending request: it becomes Approved and its terms are granted.
    function approveRequest(uint256 requestId) external;

    /// @notice Reject a pending request with a reason.
    function rejectRequest(uint256 requestId, string calldata reason) external;

    // ------------------------------------------------------------------
    // Emergency (break-glass) access
    // ------------------------------------------------------------------

    /// @notice A doctor asks for read access to all of `patient`'s records for `duration`
    /// (at most `emergencyMaxDuration`); `emergencyQuorum` health authorities must approve
    /// within `emergencyApprovalWindow`.
    function requestEmergencyAccess(bytes32 patient, uint48 duration, string calldata reason)
        external
        returns (uint256 emergencyId);

    /// @notice Approve a pending emergency request (active health authorities, once each).
    /// The approval that brings the approvers *still active as authorities* to the quorum activates the access.
    function approveEmergencyAccess(uint256 emergencyId) external;

    // ------------------------------------------------------------------
    // Health authorities and proxies
    // ------------------------------------------------------------------

    /// @notice Register a proxy allowed to record accesses. The k-of-n governor only (an executed operation).
    function addProxy(address proxy) external;

    /// @notice Remove a proxy. The k-of-n governor only (an executed operation).
    function removeProxy(address proxy) external;

    /// @notice Suspend a requester in this policy after abnormal access: every access
    /// check fails until an authority clears it. Proxies and active health authorities.
    function suspendRequester(bytes32 requester, string calldata reason) external;

    /// @notice Clear a requester's suspension. The k-of-n governor only (an executed operation).
    function clearSuspension(bytes32 requester, string calldata reason) external;

    /// @notice Record one re-encryption: reverts unless `checkAccess` allows it now and
    /// `epoch` is the current revocation epoch, so the check and the audit are atomic.
    /// Registered proxies only.
    function recordAccess(
        bytes32 patient,
        bytes32 grantee,
        bytes32 recordId,
        bytes32 keywordSetHash,
        uint8 action,
        uint64 epoch
    ) external;

    /// @notice Record one refused attempt: reverts with `AccessPolicyAccessAllowed` unless the policy
    /// denies it now, so proxies cannot invent refusals. Registered proxies only.
    function recordDenial(bytes32 patient, bytes32 grantee, bytes32 recordId, bytes32 keywordSetHash, uint8 action)
        external
        returns (AccessReason reason);

    // ------------------------------------------------------------------
    // Views
    // ------------------------------------------------------------------

    /// @notice May `grantee` perform `action` (one bit) on `recordId` of `patient` now?
    /// `keywordSetHash` (zero if unknown) matches `KeywordSet` permissions. Returns the
    /// reason and the current revocation epoch, which a re-encryption key must carry.
    function checkAccess(bytes32 patient, bytes32 grantee, bytes32 recordId, bytes32 keywordSetHash, uint8 action)
        external
        view
        returns (bool allowed, AccessReason reason, uint64 epoch);

    /// @notice The live grant on this key (all zero if none or revoked; it may be expired).
    function grantOf(bytes32 patient, bytes32 grantee, Scope scope, bytes32 target)
        external
        view
        returns (Permission memory);

    /// @notice The preset rule on this key (all zero if none).
    function presetRuleOf(bytes32 patient, bytes32 institution, Scope scope, bytes32 target)
        external
        view
        returns (Permission memory);

    /// @notice The revocation epoch of (patient, grantee): +1 on every effective revoke.
    function epochOf(bytes32 patient, bytes32 grantee) external view returns (uint64);

    /// @notice Number of live (unrevoked, possibly expired) grants of (patient, grantee).
    function grantCountOf(bytes32 patient, bytes32 grantee) external view returns (uint32);

    /// @notice The emergency access window of (patient, grantee); zeros if never activated.
    function emergencyWindowOf(bytes32 patient, bytes32 grantee)
        external
        view
        returns (uint48 activatedAt, uint48 expiresAt);

    /// @notice A request with its current state; reverts for an unknown ID.
    function requestOf(uint256 requestId) external view returns (AccessRequest memory);

    /// @notice The current state of a request; reverts for an unknown ID.
    function requestState(uint256 requestId) external view returns (RequestState);

    /// @notice An emergency request with its current state; reverts for an unknown ID.
    function emergencyOf(uint256 emergencyId) external view returns (EmergencyAccess memory);

    /// @notice The current state of an emergency request; reverts for an unknown ID.
    function emergencyState(uint256 emergencyId) external view returns (EmergencyState);

    /// @notice True when `authority` (a participant ID) approved this emergency request.
    function hasApprovedEmergency(uint256 emergencyId, bytes32 authority) external view returns (bool);

    /// @notice True when `account` is a registered proxy.
    function isProxy(address account) external view returns (bool);

    /// @notice True when `requester` is suspended in this policy (IdentityRegistry suspension is separate).
    function isSuspended(bytes32 requester) external view returns (bool);

    /// @notice Number of requests made so far (IDs are 1..requestCount).
    function requestCount() external view returns (uint256);

    /// @notice Number of emergency requests made so far (IDs are 1..emergencyCount).
    function emergencyCount() external view returns (uint256);

    /// @notice The IdentityRegistry this policy reads identities from.
    function identityRegistry() external view returns (IIdentityRegistry);

    /// @notice How long a request waits for the patient before it expires.
    function requestTtl() external view returns (uint48);

    /// @notice How long an emergency request waits for its quorum.
    function emergencyApprovalWindow() external view returns (uint48);

    /// @notice The longest emergency access.
    function emergencyMaxDuration() external view returns (uint48);

    /// @notice Approvals of distinct health authorities needed to activate an emergency request.
    function emergencyQuorum() external view returns (uint8);
}
