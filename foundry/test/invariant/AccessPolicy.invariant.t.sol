// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Test} from "../utils/Test.sol";
import {PolicyBase} from "../utils/PolicyBase.sol";
import {AccessPolicy} from "../../../contracts/AccessPolicy.sol";
import {IAccessPolicy, ACTION_READ} from "../../../contracts/interfaces/IAccessPolicy.sol";

/// @notice Drives one patient's AccessPolicy: grants, revocations, requests, emergencies, suspensions, time.
/// Ghosts the permissions the policy should hold, as a model independent of its storage layout.
contract PolicyHandler is Test {
    struct Ghost {
        uint8 actions;
        uint48 notBefore;
        uint48 expiresAt;
        bool live;
    }

    struct Interval {
        uint48 from;
        uint48 until;
    }

    AccessPolicy internal policy;
    address internal patient;
    address internal proxy;
    address internal governor;
    address[3] internal authorities;
    bytes32 public patientId;
    bytes32[3] public grantees; // two doctors, an insurer
    address[3] internal granteeAccounts;
    bytes32[4] public targets; // All (0), record 1, record 2, keyword set

    mapping(uint256 g => mapping(uint256 k => Ghost)) internal _grants;
    mapping(uint256 g => uint64) public ghostEpoch;
    mapping(uint256 g => uint256) public ghostGranted; // live grants created
    mapping(uint256 g => uint256) public ghostRevoked; // live grants ended by revoke / revokeAll
    mapping(uint256 g => bool) public ghostSuspended;
    mapping(uint256 g => Interval[]) internal _emergencies;
    uint256[] internal _requests;
    mapping(uint256 requestId => IAccessPolicy.RequestState) internal _seen;
    uint256 internal _emergencyIds;

    bool public lifecycleBroken; // a request moved backwards or left a final state
    bool public recordMismatch; // recordAccess succeeded where the model denies, or with a stale epoch

    constructor(
        AccessPolicy policy_,
        address patient_,
        bytes32 patientId_,
        bytes32[3] memory grantees_,
        address[3] memory granteeAccounts_,
        address[3] memory authorities_,
        address proxy_,
        address governor_
    ) {
        (policy, patient, patientId, grantees, granteeAccounts) =
            (policy_, patient_, patientId_, grantees_, granteeAccounts_);
        (authorities, proxy, governor) = (authorities_, proxy_, governor_);
        targets = [bytes32(0), bytes32("rec-1"), bytes32("rec-2"), bytes32("kw-set")];
    }

    function _scope(uint256 k) internal pure returns (IAccessPolicy.Scope) {
        return k == 0 ? IAccessPolicy.Scope.All : k == 3 ? IAccessPolicy.Scope.KeywordSet : IAccessPolicy.Scope.Record;
    }

    function _window(uint256 a, uint256 b) internal view returns (uint48 nb, uint48 exp) {
        uint256 t = block.timestamp;
        nb = uint48(bound(a, t - 1 days, t + 1 days));
        uint256 minLen = nb < t ? t - nb + 1 : 1;
        exp = uint48(nb + bound(b, minLen, minLen + 3 days));
    }

    function _setGhost(uint256 g, uint256 k, uint8 actions, uint48 nb, uint48 exp) internal {
        Ghost storage x = _grants[g][k];
        if (!x.live) ghostGranted[g] += 1;
        (x.actions, x.notBefore, x.expiresAt, x.live) = (actions, nb, exp, true);
    }

    // ------------------------------------------------------------------
    // Actions
    // ------------------------------------------------------------------

    function grant(uint256 gSeed, uint256 kSeed, uint8 actions, uint256 a, uint256 b) external {
        uint256 g = bound(gSeed, 0, 2);
        uint256 k = bound(kSeed, 0, 3);
        actions = uint8(bound(actions, 1, 7));
        (uint48 nb, uint48 exp) = _window(a, b);
        vm.prank(patient);
        policy.grant(grantees[g], _scope(k), targets[k], actions, nb, exp);
        _setGhost(g, k, actions, nb, exp);
        _observe();
    }

    function revoke(uint256 gSeed, uint256 kSeed) external {
        uint256 g = bound(gSeed, 0, 2);
        uint256 k = bound(kSeed, 0, 3);
        vm.prank(patient);
        bool changed = policy.revoke(grantees[g], _scope(k), targets[k]);
        Ghost storage x = _grants[g][k];
        if (changed != x.live) recordMismatch = true;
        if (x.live) {
            x.live = false;
            ghostRevoked[g] += 1;
            ghostEpoch[g] += 1;
        }
        _observe();
    }

    function revokeAll(uint256 gSeed) external {
        uint256 g = bound(gSeed, 0, 2);
        vm.prank(patient);
        bool changed = policy.revokeAll(grantees[g]);
        bool any;
        for (uint256 k; k < 4; ++k) {
            if (_grants[g][k].live) {
                _grants[g][k].live = false;
                ghostRevoked[g] += 1;
                any = true;
            }
        }
        if (changed != any) recordMismatch = true;
        if (any) ghostEpoch[g] += 1;
        _observe();
    }

    function request(uint256 gSeed, uint256 kSeed, uint8 actions, uint256 a, uint256 b) external {
        uint256 g = bound(gSeed, 0, 2);
        uint256 k = bound(kSeed, 0, 3);
        if (ghostSuspended[g]) return;
        actions = uint8(bound(actions, 1, 7));
        (uint48 nb, uint48 exp) = _window(a, b);
        vm.prank(granteeAccounts[g]);
        uint256 id = policy.requestAccess(patientId, _scope(k), targets[k], actions, nb, exp, "invariant");
        _requests.push(id);
        _seen[id] = IAccessPolicy.RequestState.Requested;
        _observe();
    }

    function decide(uint256 rSeed, bool approve) external {
        if (_requests.length == 0) return;
        uint256 id = _requests[bound(rSeed, 0, _requests.length - 1)];
        IAccessPolicy.AccessRequest memory r = policy.requestOf(id);
        vm.prank(patient);
        if (approve) {
            try policy.approveRequest(id) {
                uint256 g = r.requester == grantees[0] ? 0 : r.requester == grantees[1] ? 1 : 2;
                uint256 k = r.scope == IAccessPolicy.Scope.All ? 0 : r.target == targets[1] ? 1 : r.target == targets[2] ? 2 : 3;
                _setGhost(g, k, r.actions, r.notBefore, r.expiresAt);
            } catch {}
        } else {
            try policy.rejectRequest(id, "no") {} catch {}
        }
        _observe();
    }

    function emergency(uint256 gSeed, uint256 duration, uint256 approvers) external {
        uint256 g = bound(gSeed, 0, 1); // doctors only
        if (ghostSuspended[g]) return;
        duration = bound(duration, 1, 24 hours);
        vm.prank(granteeAccounts[g]);
        uint256 id = policy.requestEmergencyAccess(patientId, uint48(duration), "invariant");
        approvers = bound(approvers, 0, 3);
        for (uint256 i; i < approvers; ++i) {
            vm.prank(authorities[i]);
            policy.approveEmergencyAccess(id);
            if (policy.emergencyState(id) == IAccessPolicy.EmergencyState.Active) {
                _emergencies[g].push(Interval(uint48(block.timestamp), uint48(block.timestamp + duration)));
                break;
            }
        }
        _observe();
    }

    function suspend(uint256 gSeed, bool clear) external {
        uint256 g = bound(gSeed, 0, 2);
        if (clear) {
            vm.prank(governor);
            policy.clearSuspension(grantees[g], "ok");
        } else {
            vm.prank(proxy);
            policy.suspendRequester(grantees[g], "abnormal");
        }
        ghostSuspended[g] = !clear;
        _observe();
    }

    function record(uint256 gSeed, uint256 rSeed, uint256 actionSeed, bool stale) external {
        uint256 g = bound(gSeed, 0, 2);
        uint256 r = bound(rSeed, 1, 2);
        uint8 action = uint8(1 << bound(actionSeed, 0, 2));
        uint64 epoch = ghostEpoch[g];
        if (stale) epoch = epoch == 0 ? 1 : epoch - 1;
        vm.prank(proxy);
        try policy.recordAccess(patientId, grantees[g], targets[r], targets[3], action, epoch) {
            if (stale || !allows(g, r, action)) recordMismatch = true;
        } catch {
            if (!stale && allows(g, r, action)) recordMismatch = true;
        }
    }

    function warp(uint256 dt) external {
        vm.warp(block.timestamp + bound(dt, 0, 2 days));
        _observe();
    }

    // ------------------------------------------------------------------
    // Model
    // ------------------------------------------------------------------

    /// The model: a live grant in scope (all records, the record, its keyword set) with the action and
    /// `notBefore <= now < expiresAt`, or an activated emergency window covering now for a read.
    function allows(uint256 g, uint256 r, uint8 action) public view returns (bool) {
        if (ghostSuspended[g]) return false;
        uint256 t = block.timestamp;
        uint256[3] memory ks = [uint256(0), r, 3];
        for (uint256 i; i < 3; ++i) {
            Ghost storage x = _grants[g][ks[i]];
            if (x.live && x.actions & action != 0 && x.notBefore <= t && t < x.expiresAt) return true;
        }
        if (action == ACTION_READ) {
            Interval[] storage e = _emergencies[g];
            for (uint256 i; i < e.length; ++i) {
                if (e[i].from <= t && t < e[i].until) return true;
            }
        }
        return false;
    }

    function ghostLive(uint256 g, uint256 k) external view returns (bool live, uint48 expiresAt) {
        return (_grants[g][k].live, _grants[g][k].expiresAt);
    }

    /// Record every request's state; flag any move that is not Requested → Approved | Rejected | Expired.
    function _observe() internal {
        for (uint256 i; i < _requests.length; ++i) {
            uint256 id = _requests[i];
            IAccessPolicy.RequestState now_ = policy.requestState(id);
            IAccessPolicy.RequestState was = _seen[id];
            if (now_ != was && was != IAccessPolicy.RequestState.Requested) lifecycleBroken = true;
            if (now_ == IAccessPolicy.RequestState.None || now_ == IAccessPolicy.RequestState.Requested && was != now_) {
                lifecycleBroken = true;
            }
            _seen[id] = now_;
        }
    }

    function requestCount() external view returns (uint256) {
        return _requests.length;
    }
}

/// @title AccessPolicyInvariants — reads follow the model; grant counts, epochs and request lifecycles hold
contract AccessPolicyInvariants is PolicyBase {
    PolicyHandler internal handler;

    function setUp() public override {
        super.setUp();
        handler = new PolicyHandler(
            policy, p, P, [DA, DB, INS], [da, db, ins], [nha, pha, mha], proxy, address(gov)
        );
        targetContract(address(handler));
    }

    /// One campaign checks them all (forge runs a campaign per invariant function).
    function invariant_policy() public view {
        _accessFollowsTheModel();
        _grantCounts();
        _requestsOnlyMoveForward();
        _auditOnlyWhatIsAllowed();
    }

    /// A read (or write, or copy) is allowed iff an unexpired, unrevoked grant of the current epoch or an
    /// active emergency access covers it.
    function _accessFollowsTheModel() internal view {
        for (uint256 g; g < 3; ++g) {
            bytes32 grantee = handler.grantees(g);
            for (uint256 r = 1; r <= 2; ++r) {
                for (uint256 a; a < 3; ++a) {
                    uint8 action = uint8(1 << a);
                    (bool ok,, uint64 epoch) =
                        policy.checkAccess(P, grantee, handler.targets(r), handler.targets(3), action);
                    assertEq(ok, handler.allows(g, r, action));
                    assertEq(epoch, handler.ghostEpoch(g));
                }
            }
        }
    }

    /// Live grants = granted − revoked; unexpired ones = live − expired.
    function _grantCounts() internal view {
        for (uint256 g; g < 3; ++g) {
            bytes32 grantee = handler.grantees(g);
            uint256 live;
            uint256 unexpired;
            uint256 ghostUnexpired;
            for (uint256 k; k < 4; ++k) {
                IAccessPolicy.Scope scope = k == 0 ? IAccessPolicy.Scope.All : k == 3 ? IAccessPolicy.Scope.KeywordSet : IAccessPolicy.Scope.Record;
                IAccessPolicy.Permission memory perm = policy.grantOf(P, grantee, scope, handler.targets(k));
                (bool gl, uint48 gexp) = handler.ghostLive(g, k);
                assertEq(perm.actions != 0, gl);
                if (perm.actions != 0) ++live;
                if (perm.actions != 0 && perm.expiresAt > block.timestamp) ++unexpired;
                if (gl && gexp > block.timestamp) ++ghostUnexpired;
            }
            uint256 active = handler.ghostGranted(g) - handler.ghostRevoked(g);
            assertEq(policy.grantCountOf(P, grantee), active);
            assertEq(live, active);
            assertEq(unexpired, ghostUnexpired);
        }
    }

    function _requestsOnlyMoveForward() internal view {
        assertFalse(handler.lifecycleBroken());
        assertEq(policy.requestCount(), handler.requestCount());
    }

    function _auditOnlyWhatIsAllowed() internal view {
        assertFalse(handler.recordMismatch());
    }
}
