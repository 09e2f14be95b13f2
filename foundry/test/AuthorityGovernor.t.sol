// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Base} from "./utils/Base.sol";
import {AuthorityGovernor} from "../../contracts/governance/AuthorityGovernor.sol";
import {IAuthorityGovernor} from "../../contracts/interfaces/IAuthorityGovernor.sol";
import {IIdentityRegistry} from "../../contracts/interfaces/IIdentityRegistry.sol";

/// @title AuthorityGovernorTest — k-of-n operations: propose, approve, delay, execute once, cancel
contract AuthorityGovernorTest is Base {
    bytes32 internal constant PAT = bytes32("patient");
    address internal pat;

    function setUp() public override {
        super.setUp();
        pat = register(PAT, IIdentityRegistry.Role.Patient, 0);
    }


    function _suspendCall() internal view returns (IAuthorityGovernor.Call[] memory) {
        return one(address(reg), abi.encodeCall(reg.suspend, (PAT, "gov")));
    }

    function _configCall(uint8 q, uint32 d) internal view returns (IAuthorityGovernor.Call[] memory) {
        return one(address(gov), abi.encodeCall(gov.setConfig, (q, d)));
    }

    function _propose(IAuthorityGovernor.Call[] memory calls, bytes32 salt) internal returns (bytes32 op) {
        vm.prank(nha);
        op = gov.propose(calls, salt);
    }

    // ------------------------------------------------------------------
    // propose
    // ------------------------------------------------------------------

    function test_propose_emitsAndCountsProposer() public {
        IAuthorityGovernor.Call[] memory calls = _suspendCall();
        bytes32 op = gov.hashOperation(calls, bytes32("s"));
        assertEq(op, keccak256(abi.encode(calls, bytes32("s"))));
        vm.expectEmit(address(gov));
        emit IAuthorityGovernor.OperationProposed(op, NHA, calls, bytes32("s"), uint48(block.timestamp));
        vm.expectEmit(address(gov));
        emit IAuthorityGovernor.OperationApproved(op, NHA, 1);
        assertEq(_propose(calls, bytes32("s")), op);
        IAuthorityGovernor.Operation memory o = gov.getOperation(op);
        assertEq(o.proposer, NHA);
        assertEq(o.approvals, 1);
        assertEq(o.readyAt, block.timestamp, "a routine operation carries no delay");
        assertEq(uint256(o.state), uint256(IAuthorityGovernor.OperationState.Proposed));
        assertTrue(gov.hasApproved(op, NHA));
        assertFalse(gov.hasApproved(op, PHA));
        assertEq(gov.activeApprovals(op), 1);
    }

    function test_propose_reverts() public {
        vm.expectRevert(abi.encodeWithSelector(IAuthorityGovernor.AuthorityGovernorNotAuthority.selector, pat));
        vm.prank(pat);
        gov.propose(_suspendCall(), 0);
        vm.expectRevert(IAuthorityGovernor.AuthorityGovernorEmptyOperation.selector);
        vm.prank(nha);
        gov.propose(new IAuthorityGovernor.Call[](0), 0);
        bytes32 op = _propose(_suspendCall(), 0);
        vm.expectRevert(abi.encodeWithSelector(IAuthorityGovernor.AuthorityGovernorOperationExists.selector, op));
        vm.prank(pha);
        gov.propose(_suspendCall(), 0);
    }

    function test_propose_delayForParameterChanges() public {
        bytes32 op = _propose(_configCall(3, 2 days), 0);
        assertEq(gov.getOperation(op).readyAt, block.timestamp + GOV_DELAY);
        // no code at the target, or a call shorter than a selector: delayed to be safe
        op = _propose(one(address(0xdead), hex"12345678"), 0);
        assertEq(gov.getOperation(op).readyAt, block.timestamp + GOV_DELAY);
        op = _propose(one(address(reg), hex"12"), 0);
        assertEq(gov.getOperation(op).readyAt, block.timestamp + GOV_DELAY);
    }

    function test_isDelayed() public view {
        assertTrue(gov.isDelayed(address(gov), gov.setConfig.selector));
        assertFalse(gov.isDelayed(address(gov), gov.approve.selector));
        assertTrue(gov.isDelayed(address(0xdead), reg.suspend.selector));
        assertFalse(gov.isDelayed(address(reg), reg.suspend.selector));
        // a target that cannot answer isParameterChange waits
        assertTrue(gov.isDelayed(address(this), reg.suspend.selector));
    }

    // ------------------------------------------------------------------
    // approve
    // ------------------------------------------------------------------

    function test_approve_reverts() public {
        bytes32 op = _propose(_suspendCall(), 0);
        vm.expectRevert(abi.encodeWithSelector(IAuthorityGovernor.AuthorityGovernorAlreadyApproved.selector, op, NHA));
        vm.prank(nha);
        gov.approve(op);
        vm.expectRevert(abi.encodeWithSelector(IAuthorityGovernor.AuthorityGovernorNotAuthority.selector, pat));
        vm.prank(pat);
        gov.approve(op);
        vm.expectRevert(abi.encodeWithSelector(IAuthorityGovernor.AuthorityGovernorUnknownOperation.selector, bytes32("nope")));
        vm.prank(pha);
        gov.approve(bytes32("nope"));
    }

    // ------------------------------------------------------------------
    // execute
    // ------------------------------------------------------------------

    function test_execute_runsOnceWithQuorum() public {
        IAuthorityGovernor.Call[] memory calls = _suspendCall();
        bytes32 op = _propose(calls, 0);
        vm.expectRevert(abi.encodeWithSelector(IAuthorityGovernor.AuthorityGovernorQuorumNotReached.selector, op, 1, 2));
        gov.execute(calls, 0);
        vm.expectEmit(address(gov));
        emit IAuthorityGovernor.OperationApproved(op, PHA, 2);
        vm.prank(pha);
        gov.approve(op);
        vm.expectEmit(address(gov));
        emit IAuthorityGovernor.OperationExecuted(op, address(this), 2);
        gov.execute(calls, 0);
        assertTrue(reg.participant(PAT).suspended);
        vm.expectRevert(
            abi.encodeWithSelector(
                IAuthorityGovernor.AuthorityGovernorUnexpectedState.selector,
                op,
                IAuthorityGovernor.OperationState.Executed,
                IAuthorityGovernor.OperationState.Proposed
            )
        );
        gov.execute(calls, 0);
        vm.expectRevert(abi.encodeWithSelector(IAuthorityGovernor.AuthorityGovernorUnknownOperation.selector, gov.hashOperation(calls, bytes32("other"))));
        gov.execute(calls, bytes32("other"));
    }

    function test_execute_waitsTheDelay() public {
        IAuthorityGovernor.Call[] memory calls = _configCall(3, 2 days);
        bytes32 op = _propose(calls, 0);
        vm.prank(pha);
        gov.approve(op);
        uint48 readyAt = uint48(block.timestamp + GOV_DELAY);
        vm.warp(readyAt - 1);
        vm.expectRevert(abi.encodeWithSelector(IAuthorityGovernor.AuthorityGovernorNotReady.selector, op, readyAt, readyAt - 1));
        gov.execute(calls, 0);
        vm.warp(readyAt);
        vm.expectEmit(address(gov));
        emit IAuthorityGovernor.ConfigSet(3, 2 days);
        gov.execute(calls, 0);
        assertEq(gov.quorum(), 3);
        assertEq(gov.delay(), 2 days);
    }

    function test_execute_approverSuspendedSinceDoesNotCount() public {
        IAuthorityGovernor.Call[] memory calls = _suspendCall();
        bytes32 op = _propose(calls, 0);
        vm.prank(pha);
        gov.approve(op);
        // nha and mha suspend pha through another operation
        IAuthorityGovernor.Call[] memory susp = one(address(reg), abi.encodeCall(reg.suspend, (PHA, "rogue")));
        bytes32 op2 = _propose(susp, 0);
        vm.prank(mha);
        gov.approve(op2);
        gov.execute(susp, 0);
        assertEq(gov.activeApprovals(op), 1);
        vm.expectRevert(abi.encodeWithSelector(IAuthorityGovernor.AuthorityGovernorQuorumNotReached.selector, op, 1, 2));
        gov.execute(calls, 0);
        vm.prank(mha);
        gov.approve(op);
        gov.execute(calls, 0);
    }

    function test_execute_failingCallBubblesAndStaysProposed() public {
        IAuthorityGovernor.Call[] memory calls = one(address(reg), abi.encodeCall(reg.reinstate, (PAT, "not suspended")));
        bytes32 op = _propose(calls, 0);
        vm.prank(pha);
        gov.approve(op);
        vm.expectRevert(abi.encodeWithSelector(IIdentityRegistry.IdentityRegistrySuspensionUnchanged.selector, PAT, false));
        gov.execute(calls, 0);
        assertEq(uint256(gov.getOperation(op).state), uint256(IAuthorityGovernor.OperationState.Proposed));
    }

    // ------------------------------------------------------------------
    // cancel
    // ------------------------------------------------------------------

    function test_cancel() public {
        IAuthorityGovernor.Call[] memory calls = _suspendCall();
        bytes32 op = _propose(calls, 0);
        vm.expectRevert(abi.encodeWithSelector(IAuthorityGovernor.AuthorityGovernorNotProposer.selector, op, pha));
        vm.prank(pha);
        gov.cancel(op);
        vm.expectEmit(address(gov));
        emit IAuthorityGovernor.OperationCancelled(op, NHA);
        vm.prank(nha);
        gov.cancel(op);
        vm.expectRevert(
            abi.encodeWithSelector(
                IAuthorityGovernor.AuthorityGovernorUnexpectedState.selector,
                op,
                IAuthorityGovernor.OperationState.Cancelled,
                IAuthorityGovernor.OperationState.Proposed
            )
        );
        vm.prank(pha);
        gov.approve(op);
    }

    function test_cancel_suspendedProposerCannot() public {
        bytes32 op = _propose(_suspendCall(), 0);
        govern(address(reg), abi.encodeCall(reg.suspend, (NHA, "x"))); // nha proposes (salt 1), pha approves
        vm.expectRevert(abi.encodeWithSelector(IAuthorityGovernor.AuthorityGovernorNotProposer.selector, op, nha));
        vm.prank(nha);
        gov.cancel(op);
    }

    // ------------------------------------------------------------------
    // setConfig
    // ------------------------------------------------------------------

    function test_setConfig_onlySelf() public {
        vm.expectRevert(abi.encodeWithSelector(IAuthorityGovernor.AuthorityGovernorUnauthorizedCall.selector, nha));
        vm.prank(nha);
        gov.setConfig(3, 2 days);
    }

    function testFuzz_setConfig_bounds(uint8 q, uint32 d) public {
        bool ok = q >= 2 && q <= 32 && d >= 1 hours && d <= 30 days;
        vm.startPrank(address(gov));
        if (!ok) vm.expectRevert(abi.encodeWithSelector(IAuthorityGovernor.AuthorityGovernorInvalidConfig.selector, q, d));
        gov.setConfig(q, d);
        vm.stopPrank();
        if (ok) {
            assertEq(gov.quorum(), q);
            assertEq(gov.delay(), d);
        }
    }

    function test_views() public view {
        assertEq(address(gov.registry()), address(reg));
        assertEq(gov.quorum(), GOV_QUORUM);
        assertEq(gov.delay(), GOV_DELAY);
        assertEq(uint256(gov.getOperation(bytes32("none")).state), 0);
        assertEq(gov.getOperation(bytes32("none")).proposer, bytes32(0));
    }
}
