// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {PolicyBase} from "./utils/PolicyBase.sol";
import {AccessPolicy} from "../../contracts/AccessPolicy.sol";
import {IAccessPolicy, ACTION_READ, ACTION_WRITE, ACTION_COPY, ACTION_ALL} from "../../contracts/interfaces/IAccessPolicy.sol";
import {IIdentityRegistry} from "../../contracts/interfaces/IIdentityRegistry.sol";

/// @title AccessPolicyTest — grants, preset rules, requests, emergency access, proxies, the audit trail
contract AccessPolicyTest is PolicyBase {
    bytes32 internal constant REC = bytes32("record-1");
    bytes32 internal constant KWS = bytes32("keyword-set");

    function _grant(bytes32 grantee, IAccessPolicy.Scope scope, bytes32 target, uint8 actions, uint48 nb, uint48 exp)
        internal
        returns (bool)
    {
        vm.prank(p);
        return policy.grant(grantee, scope, target, actions, nb, exp);
    }

    function _reason(bytes32 grantee, bytes32 rec, bytes32 kws, uint8 action) internal view returns (IAccessPolicy.AccessReason r) {
        (, r,) = policy.checkAccess(P, grantee, rec, kws, action);
    }

    function _eq(IAccessPolicy.AccessReason a, IAccessPolicy.AccessReason b) internal pure {
        assertEq(uint256(a), uint256(b));
    }

    // ------------------------------------------------------------------
    // constructor and views
    // ------------------------------------------------------------------

    function test_constructor_rejectsZeros() public {
        vm.expectRevert(
            abi.encodeWithSelector(IAccessPolicy.AccessPolicyInvalidConfig.selector, address(0), TTL, WINDOW, MAX_DURATION, E_QUORUM)
        );
        new AccessPolicy(IIdentityRegistry(address(0)), TTL, WINDOW, MAX_DURATION, E_QUORUM);
        vm.expectRevert(
            abi.encodeWithSelector(IAccessPolicy.AccessPolicyInvalidConfig.selector, address(reg), 0, WINDOW, MAX_DURATION, E_QUORUM)
        );
        new AccessPolicy(reg, 0, WINDOW, MAX_DURATION, E_QUORUM);
        vm.expectRevert(
            abi.encodeWithSelector(IAccessPolicy.AccessPolicyInvalidConfig.selector, address(reg), TTL, 0, MAX_DURATION, E_QUORUM)
        );
        new AccessPolicy(reg, TTL, 0, MAX_DURATION, E_QUORUM);
        vm.expectRevert(
            abi.encodeWithSelector(IAccessPolicy.AccessPolicyInvalidConfig.selector, address(reg), TTL, WINDOW, 0, E_QUORUM)
        );
        new AccessPolicy(reg, TTL, WINDOW, 0, E_QUORUM);
        vm.expectRevert(
            abi.encodeWithSelector(IAccessPolicy.AccessPolicyInvalidConfig.selector, address(reg), TTL, WINDOW, MAX_DURATION, 0)
        );
        new AccessPolicy(reg, TTL, WINDOW, MAX_DURATION, 0);
    }

    function test_views() public view {
        assertEq(address(policy.identityRegistry()), address(reg));
        assertEq(policy.governor(), address(gov));
        assertFalse(policy.isParameterChange(policy.addProxy.selector));
        assertEq(policy.requestTtl(), TTL);
        assertEq(policy.emergencyApprovalWindow(), WINDOW);
        assertEq(policy.emergencyMaxDuration(), MAX_DURATION);
        assertEq(policy.emergencyQuorum(), E_QUORUM);
        assertTrue(policy.isProxy(proxy));
        assertEq(policy.requestCount(), 0);
        assertEq(policy.emergencyCount(), 0);
    }

    // ------------------------------------------------------------------
    // grant / grantRecords / revoke / revokeAll
    // ------------------------------------------------------------------

    function test_grant_emitsAndIsIdempotent() public {
        uint48 exp = now48() + 1 days;
        vm.expectEmit(address(policy));
        emit IAccessPolicy.AccessGranted(P, DA, 0, IAccessPolicy.Scope.All, ACTION_READ, 0, exp);
        assertTrue(_grant(DA, IAccessPolicy.Scope.All, 0, ACTION_READ, 0, exp));
        vm.recordLogs();
        assertFalse(_grant(DA, IAccessPolicy.Scope.All, 0, ACTION_READ, 0, exp));
        assertEq(vm.getRecordedLogs().length, 0);
        assertTrue(_grant(DA, IAccessPolicy.Scope.All, 0, ACTION_READ | ACTION_WRITE, 0, exp)); // new terms
        assertEq(policy.grantCountOf(P, DA), 1);
        IAccessPolicy.Permission memory g = policy.grantOf(P, DA, IAccessPolicy.Scope.All, 0);
        assertEq(g.actions, 3);
        assertEq(g.expiresAt, exp);
        assertEq(g.since, block.timestamp);
    }

    function test_grant_reverts() public {
        uint48 exp = now48() + 1 days;
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyNotPatient.selector, da));
        vm.prank(da);
        policy.grant(DB, IAccessPolicy.Scope.All, 0, 1, 0, exp);
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyNotPatient.selector, address(this)));
        policy.grant(DB, IAccessPolicy.Scope.All, 0, 1, 0, exp);

        vm.startPrank(p);
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyInvalidGrantee.selector, P));
        policy.grant(P, IAccessPolicy.Scope.All, 0, 1, 0, exp);
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyInvalidGrantee.selector, P2));
        policy.grant(P2, IAccessPolicy.Scope.All, 0, 1, 0, exp);
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyInvalidGrantee.selector, bytes32("ghost")));
        policy.grant(bytes32("ghost"), IAccessPolicy.Scope.All, 0, 1, 0, exp);
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyInvalidGrantee.selector, bytes32(0)));
        policy.grant(0, IAccessPolicy.Scope.All, 0, 1, 0, exp);
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyInvalidScope.selector, IAccessPolicy.Scope.All, REC));
        policy.grant(DA, IAccessPolicy.Scope.All, REC, 1, 0, exp);
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyInvalidScope.selector, IAccessPolicy.Scope.Record, bytes32(0)));
        policy.grant(DA, IAccessPolicy.Scope.Record, 0, 1, 0, exp);
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyInvalidActions.selector, 0));
        policy.grant(DA, IAccessPolicy.Scope.All, 0, 0, 0, exp);
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyInvalidActions.selector, 8));
        policy.grant(DA, IAccessPolicy.Scope.All, 0, 8, 0, exp);
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyInvalidWindow.selector, exp, exp, now48()));
        policy.grant(DA, IAccessPolicy.Scope.All, 0, 1, exp, exp);
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyInvalidWindow.selector, 0, now48(), now48()));
        policy.grant(DA, IAccessPolicy.Scope.All, 0, 1, 0, now48());
        vm.stopPrank();

        vm.prank(nha);
        reg.suspend(P, "x");
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyPatientSuspended.selector, P));
        _grant(DA, IAccessPolicy.Scope.All, 0, 1, 0, exp);
    }

    function test_grantRecords() public {
        bytes32[] memory recs = new bytes32[](3);
        (recs[0], recs[1], recs[2]) = (bytes32("r1"), bytes32("r2"), bytes32("r1"));
        vm.prank(p);
        assertEq(policy.grantRecords(INS, recs, ACTION_READ, 0, now48() + 1 days), 2);
        assertEq(policy.grantCountOf(P, INS), 2);
        recs[1] = 0;
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyInvalidScope.selector, IAccessPolicy.Scope.Record, bytes32(0)));
        vm.prank(p);
        policy.grantRecords(INS, recs, ACTION_READ, 0, now48() + 1 days);
    }

    function test_revoke_bumpsEpochAndBites() public {
        _grant(DA, IAccessPolicy.Scope.Record, REC, ACTION_READ, 0, now48() + 1 days);
        assertTrue(_grant(DA, IAccessPolicy.Scope.KeywordSet, KWS, ACTION_READ, 0, now48() + 1 days));
        vm.expectEmit(address(policy));
        emit IAccessPolicy.AccessRevoked(P, DA, REC, IAccessPolicy.Scope.Record, 1);
        vm.prank(p);
        assertTrue(policy.revoke(DA, IAccessPolicy.Scope.Record, REC));
        assertEq(policy.epochOf(P, DA), 1);
        assertEq(policy.grantCountOf(P, DA), 1);
        _eq(_reason(DA, REC, 0, ACTION_READ), IAccessPolicy.AccessReason.Revoked);
        vm.prank(p);
        assertFalse(policy.revoke(DA, IAccessPolicy.Scope.Record, REC));
        // a suspended patient still narrows access
        vm.prank(nha);
        reg.suspend(P, "x");
        vm.expectEmit(address(policy));
        emit IAccessPolicy.AllAccessRevoked(P, DA, 1, 2);
        vm.prank(p);
        assertTrue(policy.revokeAll(DA));
        vm.prank(p);
        assertFalse(policy.revokeAll(DA));
        assertEq(policy.grantOf(P, DA, IAccessPolicy.Scope.KeywordSet, KWS).actions, 0);
        _eq(_reason(DA, REC, KWS, ACTION_READ), IAccessPolicy.AccessReason.Revoked);
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyNotPatient.selector, da));
        vm.prank(da);
        policy.revokeAll(DA);
    }

    function test_revokeAll_thenRegrantStartsFresh() public {
        _grant(DA, IAccessPolicy.Scope.All, 0, ACTION_READ, 0, now48() + 1 days);
        vm.prank(p);
        policy.revokeAll(DA);
        assertTrue(_grant(DA, IAccessPolicy.Scope.All, 0, ACTION_READ, 0, now48() + 1 days));
        assertEq(policy.grantCountOf(P, DA), 1);
        (bool ok,, uint64 epoch) = policy.checkAccess(P, DA, REC, 0, ACTION_READ);
        assertTrue(ok);
        assertEq(epoch, 1);
    }

    // ------------------------------------------------------------------
    // checkAccess: every reason
    // ------------------------------------------------------------------

    function test_checkAccess_reasons() public {
        uint48 t = now48();
        _eq(_reason(DA, REC, 0, ACTION_READ), IAccessPolicy.AccessReason.NoGrant);
        _eq(_reason(bytes32("ghost"), REC, 0, ACTION_READ), IAccessPolicy.AccessReason.NoGrant);
        _grant(DA, IAccessPolicy.Scope.Record, bytes32("other"), ACTION_READ, 0, t + 100);
        _eq(_reason(DA, REC, 0, ACTION_READ), IAccessPolicy.AccessReason.OutOfScope);
        _grant(DA, IAccessPolicy.Scope.Record, REC, ACTION_WRITE, 0, t + 100);
        _eq(_reason(DA, REC, 0, ACTION_READ), IAccessPolicy.AccessReason.ActionNotAllowed);
        _eq(_reason(DA, REC, 0, ACTION_WRITE), IAccessPolicy.AccessReason.Ok);
        _grant(DA, IAccessPolicy.Scope.KeywordSet, KWS, ACTION_READ, t + 50, t + 100);
        _eq(_reason(DA, REC, KWS, ACTION_READ), IAccessPolicy.AccessReason.NotYetValid);
        vm.warp(t + 50);
        _eq(_reason(DA, REC, KWS, ACTION_READ), IAccessPolicy.AccessReason.Ok);
        vm.warp(t + 100);
        _eq(_reason(DA, REC, KWS, ACTION_READ), IAccessPolicy.AccessReason.Expired);
        vm.prank(proxy);
        policy.suspendRequester(DA, "abnormal");
        _eq(_reason(DA, REC, KWS, ACTION_READ), IAccessPolicy.AccessReason.GranteeSuspended);
        vm.prank(nha);
        reg.suspend(DB, "x");
        _eq(_reason(DB, REC, KWS, ACTION_READ), IAccessPolicy.AccessReason.GranteeSuspended);
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyInvalidActions.selector, 3));
        policy.checkAccess(P, DA, REC, 0, 3);
    }

    /// Validity is exactly notBefore <= t < expiresAt.
    function testFuzz_checkAccess_window(uint48 nb, uint48 len, uint48 t) public {
        uint48 start = now48();
        nb = uint48(bound(nb, start - 30 days, start + 30 days));
        uint48 minLen = nb < start ? start - nb + 1 : 1; // the window must not be over already
        len = uint48(bound(len, minLen, minLen + 30 days));
        uint48 exp = nb + len;
        _grant(INS, IAccessPolicy.Scope.All, 0, ACTION_COPY, nb, exp);
        t = uint48(bound(t, start, start + 90 days));
        vm.warp(t);
        (bool ok, IAccessPolicy.AccessReason r,) = policy.checkAccess(P, INS, REC, 0, ACTION_COPY);
        assertEq(ok, nb <= t && t < exp);
        if (t < nb) _eq(r, IAccessPolicy.AccessReason.NotYetValid);
        if (t >= exp) _eq(r, IAccessPolicy.AccessReason.Expired);
    }

    // ------------------------------------------------------------------
    // Preset rules
    // ------------------------------------------------------------------

    function test_presetRule_coversTheInstitutionsDoctors() public {
        uint48 exp = now48() + 1 days;
        vm.expectEmit(address(policy));
        emit IAccessPolicy.PresetRuleSet(P, HA, 0, IAccessPolicy.Scope.All, ACTION_READ, 0, exp);
        vm.prank(p);
        assertTrue(policy.setPresetRule(HA, IAccessPolicy.Scope.All, 0, ACTION_READ, 0, exp));
        vm.prank(p);
        assertFalse(policy.setPresetRule(HA, IAccessPolicy.Scope.All, 0, ACTION_READ, 0, exp));
        assertEq(policy.presetRuleOf(P, HA, IAccessPolicy.Scope.All, 0).actions, ACTION_READ);
        _eq(_reason(DA, REC, 0, ACTION_READ), IAccessPolicy.AccessReason.Ok);
        _eq(_reason(DA, REC, 0, ACTION_WRITE), IAccessPolicy.AccessReason.ActionNotAllowed);
        _eq(_reason(DB, REC, 0, ACTION_READ), IAccessPolicy.AccessReason.NoGrant);
        vm.expectEmit(address(policy));
        emit IAccessPolicy.AccessRecorded(P, DA, REC, ACTION_READ, IAccessPolicy.Basis.PresetRule, 0, proxy, now48());
        vm.prank(proxy);
        policy.recordAccess(P, DA, REC, 0, ACTION_READ, 0);

        vm.prank(p);
        policy.setPresetRule(HA, IAccessPolicy.Scope.Record, bytes32("r9"), ACTION_READ, 0, exp);
        vm.expectEmit(address(policy));
        emit IAccessPolicy.PresetRuleRemoved(P, HA, 0, IAccessPolicy.Scope.All);
        vm.prank(p);
        assertTrue(policy.removePresetRule(HA, IAccessPolicy.Scope.All, 0));
        vm.prank(p);
        assertFalse(policy.removePresetRule(HA, IAccessPolicy.Scope.All, 0));
        _eq(_reason(DA, REC, 0, ACTION_READ), IAccessPolicy.AccessReason.OutOfScope);
        _eq(_reason(DA, bytes32("r9"), 0, ACTION_READ), IAccessPolicy.AccessReason.Ok);
    }

    function test_presetRule_reverts() public {
        vm.startPrank(p);
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyInvalidInstitution.selector, INS));
        policy.setPresetRule(INS, IAccessPolicy.Scope.All, 0, 1, 0, now48() + 1);
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyInvalidInstitution.selector, bytes32("ghost")));
        policy.setPresetRule(bytes32("ghost"), IAccessPolicy.Scope.All, 0, 1, 0, now48() + 1);
        vm.stopPrank();
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyNotPatient.selector, da));
        vm.prank(da);
        policy.removePresetRule(HA, IAccessPolicy.Scope.All, 0);
    }

    // ------------------------------------------------------------------
    // Requests
    // ------------------------------------------------------------------

    function _request(address who) internal returns (uint256 id) {
        vm.prank(who);
        id = policy.requestAccess(P, IAccessPolicy.Scope.Record, REC, ACTION_READ, 0, now48() + 10 days, "referral");
    }

    function test_request_approveGrants() public {
        uint48 t = now48();
        vm.expectEmit(address(policy));
        emit IAccessPolicy.AccessRequested(
            1, P, DA, IAccessPolicy.Scope.Record, REC, ACTION_READ, 0, t + 10 days, t + TTL, "referral"
        );
        uint256 id = _request(da);
        assertEq(id, 1);
        assertEq(policy.requestCount(), 1);
        IAccessPolicy.AccessRequest memory r = policy.requestOf(id);
        assertEq(r.requester, DA);
        assertEq(r.deadline, t + TTL);
        assertEq(uint256(policy.requestState(id)), uint256(IAccessPolicy.RequestState.Requested));

        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyNotRequestPatient.selector, id, p2));
        vm.prank(p2);
        policy.approveRequest(id);

        vm.expectEmit(address(policy));
        emit IAccessPolicy.AccessRequestApproved(id, P, DA);
        vm.expectEmit(address(policy));
        emit IAccessPolicy.AccessGranted(P, DA, REC, IAccessPolicy.Scope.Record, ACTION_READ, 0, t + 10 days);
        vm.prank(p);
        policy.approveRequest(id);
        _eq(_reason(DA, REC, 0, ACTION_READ), IAccessPolicy.AccessReason.Ok);
        vm.expectRevert(
            abi.encodeWithSelector(
                IAccessPolicy.AccessPolicyUnexpectedRequestState.selector,
                id,
                IAccessPolicy.RequestState.Approved,
                IAccessPolicy.RequestState.Requested
            )
        );
        vm.prank(p);
        policy.rejectRequest(id, "late");
    }

    function test_request_rejectAndExpire() public {
        uint256 id = _request(ins);
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyNotRequestPatient.selector, id, ins));
        vm.prank(ins);
        policy.rejectRequest(id, "no");
        vm.expectEmit(address(policy));
        emit IAccessPolicy.AccessRequestRejected(id, P, INS, "no");
        vm.prank(p);
        policy.rejectRequest(id, "no");
        assertEq(uint256(policy.requestState(id)), uint256(IAccessPolicy.RequestState.Rejected));

        uint256 id2 = _request(da);
        vm.warp(block.timestamp + TTL);
        assertEq(uint256(policy.requestOf(id2).state), uint256(IAccessPolicy.RequestState.Expired));
        vm.expectRevert(
            abi.encodeWithSelector(
                IAccessPolicy.AccessPolicyUnexpectedRequestState.selector,
                id2,
                IAccessPolicy.RequestState.Expired,
                IAccessPolicy.RequestState.Requested
            )
        );
        vm.prank(p);
        policy.approveRequest(id2);
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyUnknownRequest.selector, 99));
        policy.requestOf(99);
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyUnknownRequest.selector, 99));
        vm.prank(p);
        policy.approveRequest(99);
    }

    function test_request_windowOverBeforeApproval() public {
        uint48 end = now48() + 1 hours; // a literal: via-IR (coverage) may keep block.timestamp across a warp
        vm.prank(da);
        uint256 id = policy.requestAccess(P, IAccessPolicy.Scope.All, 0, ACTION_READ, 0, end, "");
        vm.warp(end);
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyInvalidWindow.selector, 0, end, end));
        vm.prank(p);
        policy.approveRequest(id);
    }

    function test_request_suspendedPatientCannotApprove() public {
        uint256 id = _request(da);
        vm.prank(nha);
        reg.suspend(P, "x");
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyPatientSuspended.selector, P));
        vm.prank(p);
        policy.approveRequest(id);
    }

    function test_request_reverts() public {
        uint48 exp = now48() + 1 days;
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyNotParticipant.selector, address(this)));
        policy.requestAccess(P, IAccessPolicy.Scope.All, 0, 1, 0, exp, "");
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyInvalidGrantee.selector, P2));
        vm.prank(p2);
        policy.requestAccess(P, IAccessPolicy.Scope.All, 0, 1, 0, exp, "");
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyInvalidPatient.selector, DB));
        vm.prank(da);
        policy.requestAccess(DB, IAccessPolicy.Scope.All, 0, 1, 0, exp, "");
        vm.prank(proxy);
        policy.suspendRequester(DA, "abnormal");
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyRequesterSuspended.selector, DA));
        vm.prank(da);
        policy.requestAccess(P, IAccessPolicy.Scope.All, 0, 1, 0, exp, "");
        vm.prank(nha);
        reg.suspend(INS, "x");
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyRequesterSuspended.selector, INS));
        vm.prank(ins);
        policy.requestAccess(P, IAccessPolicy.Scope.All, 0, 1, 0, exp, "");
    }

    // ------------------------------------------------------------------
    // Emergency access
    // ------------------------------------------------------------------

    function _emergency(uint48 duration) internal returns (uint256 id) {
        vm.prank(db);
        id = policy.requestEmergencyAccess(P, duration, "unconscious");
    }

    function test_emergency_quorumActivatesReadOnly() public {
        uint48 t = now48();
        vm.expectEmit(address(policy));
        emit IAccessPolicy.EmergencyAccessRequested(1, P, DB, 6 hours, t + WINDOW, "unconscious");
        uint256 id = _emergency(6 hours);
        vm.expectEmit(address(policy));
        emit IAccessPolicy.EmergencyAccessApproved(id, NHA, 1);
        vm.prank(nha);
        policy.approveEmergencyAccess(id);
        assertTrue(policy.hasApprovedEmergency(id, NHA));
        assertEq(uint256(policy.emergencyState(id)), uint256(IAccessPolicy.EmergencyState.Pending));
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyDuplicateEmergencyApproval.selector, id, NHA));
        vm.prank(nha);
        policy.approveEmergencyAccess(id);
        vm.expectEmit(address(policy));
        emit IAccessPolicy.EmergencyAccessActivated(id, P, DB, t, t + 6 hours);
        vm.prank(pha);
        policy.approveEmergencyAccess(id);
        IAccessPolicy.EmergencyAccess memory e = policy.emergencyOf(id);
        assertEq(uint256(e.state), uint256(IAccessPolicy.EmergencyState.Active));
        assertEq(e.approvals, 2);
        (uint48 from, uint48 until) = policy.emergencyWindowOf(P, DB);
        assertEq(from, t);
        assertEq(until, t + 6 hours);
        _eq(_reason(DB, REC, 0, ACTION_READ), IAccessPolicy.AccessReason.Ok);
        _eq(_reason(DB, REC, 0, ACTION_WRITE), IAccessPolicy.AccessReason.ActionNotAllowed);
        vm.expectEmit(address(policy));
        emit IAccessPolicy.AccessRecorded(P, DB, REC, ACTION_READ, IAccessPolicy.Basis.Emergency, 0, proxy, t);
        vm.prank(proxy);
        policy.recordAccess(P, DB, REC, 0, ACTION_READ, 0);
        vm.expectRevert(
            abi.encodeWithSelector(
                IAccessPolicy.AccessPolicyUnexpectedEmergencyState.selector,
                id,
                IAccessPolicy.EmergencyState.Active,
                IAccessPolicy.EmergencyState.Pending
            )
        );
        vm.prank(mha);
        policy.approveEmergencyAccess(id);
        vm.warp(t + 6 hours);
        assertEq(uint256(policy.emergencyState(id)), uint256(IAccessPolicy.EmergencyState.Expired));
        _eq(_reason(DB, REC, 0, ACTION_READ), IAccessPolicy.AccessReason.Expired);
    }

    function test_emergency_overlappingWindowsExtendNeverShorten() public {
        uint48 t = now48();
        uint256 a = _emergency(6 hours);
        vm.prank(nha);
        policy.approveEmergencyAccess(a);
        vm.prank(pha);
        policy.approveEmergencyAccess(a);
        vm.warp(t + 1 hours);
        uint256 b = _emergency(1 hours); // ends before the first: no change
        vm.prank(nha);
        policy.approveEmergencyAccess(b);
        vm.prank(pha);
        policy.approveEmergencyAccess(b);
        (uint48 from, uint48 until) = policy.emergencyWindowOf(P, DB);
        assertEq(from, t);
        assertEq(until, t + 6 hours);
        uint256 c = _emergency(24 hours);
        vm.prank(nha);
        policy.approveEmergencyAccess(c);
        vm.prank(mha);
        policy.approveEmergencyAccess(c);
        (from, until) = policy.emergencyWindowOf(P, DB);
        assertEq(from, t);
        assertEq(until, t + 1 hours + 24 hours);
    }

    function test_emergency_suspendedApproverDoesNotCount() public {
        uint256 id = _emergency(1 hours);
        vm.prank(nha);
        policy.approveEmergencyAccess(id);
        govern(address(reg), abi.encodeCall(reg.suspend, (NHA, "rogue"))); // nha + pha; no delay
        vm.prank(pha);
        policy.approveEmergencyAccess(id);
        assertEq(uint256(policy.emergencyState(id)), uint256(IAccessPolicy.EmergencyState.Pending));
        vm.prank(mha);
        policy.approveEmergencyAccess(id);
        assertEq(uint256(policy.emergencyState(id)), uint256(IAccessPolicy.EmergencyState.Active));
    }

    function test_emergency_reverts() public {
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyNotDoctor.selector, ins));
        vm.prank(ins);
        policy.requestEmergencyAccess(P, 1 hours, "");
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyNotParticipant.selector, address(this)));
        policy.requestEmergencyAccess(P, 1 hours, "");
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyInvalidPatient.selector, INS));
        vm.prank(db);
        policy.requestEmergencyAccess(INS, 1 hours, "");
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyInvalidEmergencyDuration.selector, 0, MAX_DURATION));
        vm.prank(db);
        policy.requestEmergencyAccess(P, 0, "");
        vm.expectRevert(
            abi.encodeWithSelector(IAccessPolicy.AccessPolicyInvalidEmergencyDuration.selector, MAX_DURATION + 1, MAX_DURATION)
        );
        vm.prank(db);
        policy.requestEmergencyAccess(P, MAX_DURATION + 1, "");
        vm.prank(proxy);
        policy.suspendRequester(DB, "x");
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyRequesterSuspended.selector, DB));
        vm.prank(db);
        policy.requestEmergencyAccess(P, 1 hours, "");

        uint256 id;
        vm.prank(da);
        id = policy.requestEmergencyAccess(P, 1 hours, "");
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyNotAuthority.selector, da));
        vm.prank(da);
        policy.approveEmergencyAccess(id);
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyUnknownEmergency.selector, 9));
        vm.prank(nha);
        policy.approveEmergencyAccess(9);
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyUnknownEmergency.selector, 9));
        policy.emergencyOf(9);
        vm.warp(block.timestamp + WINDOW);
        vm.expectRevert(
            abi.encodeWithSelector(
                IAccessPolicy.AccessPolicyUnexpectedEmergencyState.selector,
                id,
                IAccessPolicy.EmergencyState.Expired,
                IAccessPolicy.EmergencyState.Pending
            )
        );
        vm.prank(nha);
        policy.approveEmergencyAccess(id);
    }

    // ------------------------------------------------------------------
    // Proxies, suspension, the audit trail
    // ------------------------------------------------------------------

    function test_proxies_governedAndIdempotent() public {
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyNotGovernance.selector, nha));
        vm.prank(nha);
        policy.addProxy(address(0xB0B));
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyNotGovernance.selector, nha));
        vm.prank(nha);
        policy.removeProxy(proxy);
        vm.startPrank(address(gov));
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyInvalidProxy.selector, address(0)));
        policy.addProxy(address(0));
        vm.expectEmit(address(policy));
        emit IAccessPolicy.ProxyAdded(address(0xB0B), 0);
        policy.addProxy(address(0xB0B));
        vm.recordLogs();
        policy.addProxy(address(0xB0B));
        assertEq(vm.getRecordedLogs().length, 0);
        vm.expectEmit(address(policy));
        emit IAccessPolicy.ProxyRemoved(proxy, 0);
        policy.removeProxy(proxy);
        vm.stopPrank();
        assertFalse(policy.isProxy(proxy));
        // through the real k-of-n governor
        govern(address(policy), abi.encodeCall(policy.addProxy, (proxy)));
        assertTrue(policy.isProxy(proxy));
    }

    function test_suspension() public {
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyNotProxyOrAuthority.selector, da));
        vm.prank(da);
        policy.suspendRequester(DB, "x");
        vm.expectEmit(address(policy));
        emit IAccessPolicy.RequesterSuspended(DB, nha, "burst");
        vm.prank(nha);
        policy.suspendRequester(DB, "burst");
        assertTrue(policy.isSuspended(DB));
        vm.recordLogs();
        vm.prank(proxy);
        policy.suspendRequester(DB, "again");
        assertEq(vm.getRecordedLogs().length, 0);
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyNotGovernance.selector, nha));
        vm.prank(nha);
        policy.clearSuspension(DB, "ok");
        vm.expectEmit(address(policy));
        emit IAccessPolicy.RequesterCleared(DB, 0, "ok");
        vm.prank(address(gov));
        policy.clearSuspension(DB, "ok");
        assertFalse(policy.isSuspended(DB));
    }

    function test_recordAccess() public {
        _grant(DA, IAccessPolicy.Scope.All, 0, ACTION_READ, 0, now48() + 1 days);
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyNotProxy.selector, nha));
        vm.prank(nha);
        policy.recordAccess(P, DA, REC, 0, ACTION_READ, 0);
        vm.startPrank(proxy);
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyInvalidActions.selector, ACTION_ALL));
        policy.recordAccess(P, DA, REC, 0, ACTION_ALL, 0);
        vm.expectEmit(address(policy));
        emit IAccessPolicy.AccessRecorded(P, DA, REC, ACTION_READ, IAccessPolicy.Basis.Grant, 0, proxy, now48());
        policy.recordAccess(P, DA, REC, 0, ACTION_READ, 0);
        vm.expectRevert(
            abi.encodeWithSelector(
                IAccessPolicy.AccessPolicyAccessDenied.selector, P, DA, REC, ACTION_WRITE, IAccessPolicy.AccessReason.ActionNotAllowed
            )
        );
        policy.recordAccess(P, DA, REC, 0, ACTION_WRITE, 0);
        vm.stopPrank();
        // a key issued before a revoke carries a stale epoch
        _grant(DA, IAccessPolicy.Scope.Record, REC, ACTION_READ, 0, now48() + 1 days);
        vm.prank(p);
        policy.revoke(DA, IAccessPolicy.Scope.Record, REC);
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyStaleEpoch.selector, P, DA, 0, 1));
        vm.prank(proxy);
        policy.recordAccess(P, DA, REC, 0, ACTION_READ, 0);
        vm.prank(proxy);
        policy.recordAccess(P, DA, REC, 0, ACTION_READ, 1);
    }

    function test_recordDenial_cannotBeForged() public {
        _grant(DA, IAccessPolicy.Scope.All, 0, ACTION_READ, 0, now48() + 1 days);
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyAccessAllowed.selector, P, DA, REC, ACTION_READ));
        vm.prank(proxy);
        policy.recordDenial(P, DA, REC, 0, ACTION_READ);
        vm.expectEmit(address(policy));
        emit IAccessPolicy.AccessDenied(P, DB, REC, ACTION_READ, IAccessPolicy.AccessReason.NoGrant, proxy, now48());
        vm.prank(proxy);
        assertEq(uint256(policy.recordDenial(P, DB, REC, 0, ACTION_READ)), uint256(IAccessPolicy.AccessReason.NoGrant));
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyNotProxy.selector, p));
        vm.prank(p);
        policy.recordDenial(P, DB, REC, 0, ACTION_READ);
        vm.expectRevert(abi.encodeWithSelector(IAccessPolicy.AccessPolicyInvalidActions.selector, 0));
        vm.prank(proxy);
        policy.recordDenial(P, DB, REC, 0, 0);
    }

    /// Any action mask: a grant allows exactly the single actions in it.
    function testFuzz_grant_actions(uint8 actions, uint8 actionBit) public {
        actions = uint8(bound(actions, 1, 7));
        uint8 action = uint8(1 << bound(actionBit, 0, 2));
        _grant(INS, IAccessPolicy.Scope.KeywordSet, KWS, actions, 0, now48() + 1 days);
        (bool ok,,) = policy.checkAccess(P, INS, REC, KWS, action);
        assertEq(ok, actions & action != 0);
        (ok,,) = policy.checkAccess(P, INS, REC, 0, action);
        assertFalse(ok, "a keyword-set grant needs the keyword set");
    }
}
