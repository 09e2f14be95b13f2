// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ConsortiumBase, MockClock} from "./utils/ConsortiumBase.sol";
import {CreditRegistry} from "../../contracts/CreditRegistry.sol";
import {ICreditRegistry} from "../../contracts/interfaces/ICreditRegistry.sol";
import {IIdentityRegistry} from "../../contracts/interfaces/IIdentityRegistry.sol";

/// @title CreditRegistryTest — credit formula, governance, election with a repaired hint, rounds, replacement
contract CreditRegistryTest is ConsortiumBase {
    address internal reporter = address(0x4E9);

    function setUp() public override {
        super.setUp();
        vm.prank(address(gov));
        credit.setReporter(reporter, true);
    }

    function _asGov() internal {
        vm.prank(address(gov));
    }

    /// @dev Move to the first slot of `round_` and advance the registry as its clock does.
    function _round(uint64 round_) internal {
        toSlot(round_ * uint64(K));
        vm.prank(address(index));
        credit.advanceRound();
    }

    // ------------------------------------------------------------------
    // constructor
    // ------------------------------------------------------------------

    function test_constructor_rejectsBadConfig() public {
        vm.expectRevert(abi.encodeWithSelector(ICreditRegistry.CreditRegistryInvalidConfig.selector, 0, 4));
        new CreditRegistry(reg, 0, 4, 0, weights(), incentives());
        vm.expectRevert(abi.encodeWithSelector(ICreditRegistry.CreditRegistryInvalidConfig.selector, 3, 0));
        new CreditRegistry(reg, 3, 0, 0, weights(), incentives());
        vm.expectRevert(abi.encodeWithSelector(ICreditRegistry.CreditRegistryInvalidConfig.selector, 65536, 1));
        new CreditRegistry(reg, 65536, 1, 0, weights(), incentives());
        ICreditRegistry.Weights memory w = ICreditRegistry.Weights(5000, 5000, 1);
        vm.expectRevert(abi.encodeWithSelector(ICreditRegistry.CreditRegistryInvalidWeights.selector, w));
        new CreditRegistry(reg, 3, 4, 0, w, incentives());
    }

    function test_views_configuration() public view {
        assertEq(address(credit.identity()), address(reg));
        assertEq(credit.governor(), address(gov));
        assertEq(credit.rpnCount(), K);
        assertEq(credit.atnCount(), M);
        assertEq(credit.reserveCapacity(), RESERVE);
        assertEq(credit.clock(), address(index));
        assertTrue(credit.isReporter(address(index)));
        assertTrue(credit.isGovernor(nha));
        assertFalse(credit.isGovernor(address(gov)));
        assertTrue(credit.isParameterChange(credit.setWeights.selector));
        assertTrue(credit.isParameterChange(credit.setDimensions.selector));
        assertTrue(credit.isParameterChange(credit.setIncentives.selector));
        assertFalse(credit.isParameterChange(credit.elect.selector));
        assertEq(credit.institutionCount(), N_INST);
        assertEq(credit.institutionAt(2), instId(2));
        assertEq(credit.idOf(accountOf(instId(2))), instId(2));
        assertEq(credit.weights().infoCenterScale, 3000);
        assertEq(credit.incentives().removalThreshold, 1000);
        assertEq(credit.rosterVersion(), 0);
        assertEq(credit.atnSeated(), 0);
    }

    // ------------------------------------------------------------------
    // credit
    // ------------------------------------------------------------------

    function testFuzz_creditFormula(uint16 g, uint16 s, uint16 e, uint16 wg, uint16 ws, uint64 rew, uint64 pen) public view {
        g = uint16(bound(g, 0, 10_000));
        s = uint16(bound(s, 0, 10_000));
        e = uint16(bound(e, 0, 10_000));
        wg = uint16(bound(wg, 0, 10_000));
        ws = uint16(bound(ws, 0, 10_000 - wg));
        ICreditRegistry.Weights memory w = ICreditRegistry.Weights(wg, ws, 10_000 - wg - ws);
        uint256 base = (uint256(g) * wg + uint256(s) * ws + uint256(e) * w.enterpriseStrength) / 10_000;
        uint256 expected = base + rew > pen ? base + rew - pen : 0;
        uint256 c = credit.creditFormula(ICreditRegistry.Dimensions(g, s, e), w, rew, pen);
        assertEq(c, expected);
        assertLe(base, 10_000);
    }

    function test_creditOf_followsRewardsAndPenalties() public {
        bytes32 id = instId(0);
        assertEq(credit.creditOf(id), 9000);
        vm.expectEmit(address(credit));
        emit ICreditRegistry.Rewarded(id, ICreditRegistry.Service.DataServed, 7, 9007);
        vm.prank(reporter);
        credit.reward(id, ICreditRegistry.Service.DataServed, 7);
        vm.prank(reporter);
        credit.reward(id, ICreditRegistry.Service.BlockProduced, 2);
        vm.prank(reporter);
        credit.reward(id, ICreditRegistry.Service.BlockAttested, 1);
        assertEq(credit.creditOf(id), 9000 + 7 + 20 + 5);
        vm.expectEmit(address(credit));
        emit ICreditRegistry.Penalised(id, ICreditRegistry.Offence.InvalidBlock, 3000, 6032, bytes32("ev"));
        vm.prank(reporter);
        credit.penalise(id, ICreditRegistry.Offence.InvalidBlock, bytes32("ev"));
        vm.startPrank(reporter);
        credit.penalise(id, ICreditRegistry.Offence.WrongAttestation, 0);
        credit.penalise(id, ICreditRegistry.Offence.MissedSlot, 0);
        credit.penalise(id, ICreditRegistry.Offence.InvalidBlock, 0);
        credit.penalise(id, ICreditRegistry.Offence.InvalidBlock, 0);
        vm.stopPrank();
        assertEq(credit.creditOf(id), 0, "floored at zero");
        assertFalse(credit.isEligible(id));
        vm.expectEmit(address(credit));
        emit ICreditRegistry.PenaltiesCleared(id, address(gov), 11100, 9032);
        _asGov();
        credit.clearPenalties(id);
        assertEq(credit.institution(id).penaltyPoints, 0);
        vm.recordLogs();
        _asGov();
        credit.clearPenalties(id); // nothing to clear: no event
        assertEq(vm.getRecordedLogs().length, 0);
    }

    function test_rewardBlock() public {
        bytes32[] memory att = new bytes32[](2);
        (att[0], att[1]) = (instId(3), instId(4));
        vm.prank(reporter);
        credit.rewardBlock(instId(0), att);
        assertEq(credit.institution(instId(0)).rewardPoints, 10);
        assertEq(credit.institution(instId(4)).rewardPoints, 5);
    }

    function test_reporterOnly() public {
        vm.startPrank(nha);
        vm.expectRevert(abi.encodeWithSelector(ICreditRegistry.CreditRegistryNotReporter.selector, nha));
        credit.reward(instId(0), ICreditRegistry.Service.DataServed, 1);
        vm.expectRevert(abi.encodeWithSelector(ICreditRegistry.CreditRegistryNotReporter.selector, nha));
        credit.rewardBlock(instId(0), new bytes32[](0));
        vm.expectRevert(abi.encodeWithSelector(ICreditRegistry.CreditRegistryNotReporter.selector, nha));
        credit.penalise(instId(0), ICreditRegistry.Offence.MissedSlot, 0);
        vm.stopPrank();
        vm.expectRevert(abi.encodeWithSelector(ICreditRegistry.CreditRegistryUnknownInstitution.selector, bytes32("ghost")));
        vm.prank(reporter);
        credit.reward(bytes32("ghost"), ICreditRegistry.Service.DataServed, 1);
    }

    // ------------------------------------------------------------------
    // Governance
    // ------------------------------------------------------------------

    function test_governedFunctionsRejectOthers() public {
        bytes memory err = abi.encodeWithSelector(ICreditRegistry.CreditRegistryNotGovernance.selector, nha);
        vm.startPrank(nha); // one authority alone is not the governor
        vm.expectRevert(err);
        credit.registerInstitution(bytes32("x"), dims(1));
        vm.expectRevert(err);
        credit.setDimensions(instId(0), dims(1));
        vm.expectRevert(err);
        credit.setWeights(weights());
        vm.expectRevert(err);
        credit.setIncentives(incentives());
        vm.expectRevert(err);
        credit.setReporter(nha, true);
        vm.expectRevert(err);
        credit.clearPenalties(instId(0));
        vm.expectRevert(err);
        credit.setClock(address(index));
        vm.expectRevert(err);
        credit.elect(insts);
        vm.stopPrank();
    }

    function test_registerInstitution() public {
        bytes32 id = bytes32("insurer");
        address acct = register(id, IIdentityRegistry.Role.Insurer, 0);
        vm.expectEmit(address(credit));
        emit ICreditRegistry.InstitutionRegistered(id, acct, IIdentityRegistry.Role.Insurer, dims(4000), 4000);
        _asGov();
        credit.registerInstitution(id, dims(4000));
        ICreditRegistry.Institution memory r = credit.institution(id);
        assertTrue(r.registered);
        assertFalse(r.willing);
        assertEq(r.account, acct);
        assertFalse(credit.isEligible(id));

        vm.startPrank(address(gov));
        vm.expectRevert(abi.encodeWithSelector(ICreditRegistry.CreditRegistryAlreadyRegistered.selector, id));
        credit.registerInstitution(id, dims(1));
        vm.expectRevert(abi.encodeWithSelector(ICreditRegistry.CreditRegistryUnknownParticipant.selector, bytes32("ghost")));
        credit.registerInstitution(bytes32("ghost"), dims(1));
        vm.stopPrank();

        bytes32 pat = bytes32("patient");
        register(pat, IIdentityRegistry.Role.Patient, 0);
        vm.expectRevert(
            abi.encodeWithSelector(ICreditRegistry.CreditRegistryNotAnInstitutionRole.selector, pat, IIdentityRegistry.Role.Patient)
        );
        _asGov();
        credit.registerInstitution(pat, dims(1));

        bytes32 h = bytes32("h2");
        register(h, IIdentityRegistry.Role.Hospital, 0);
        ICreditRegistry.Dimensions memory bad = ICreditRegistry.Dimensions(1, 10_001, 1);
        vm.expectRevert(abi.encodeWithSelector(ICreditRegistry.CreditRegistryInvalidDimensions.selector, h, bad));
        _asGov();
        credit.registerInstitution(h, bad);
        vm.prank(nha);
        reg.suspend(h, "x");
        vm.expectRevert(abi.encodeWithSelector(ICreditRegistry.CreditRegistryParticipantSuspended.selector, h));
        _asGov();
        credit.registerInstitution(h, dims(1));
    }

    function test_setDimensionsWeightsIncentives() public {
        vm.expectEmit(address(credit));
        emit ICreditRegistry.DimensionsSet(instId(0), ICreditRegistry.Dimensions(10_000, 0, 0), 5000);
        _asGov();
        credit.setDimensions(instId(0), ICreditRegistry.Dimensions(10_000, 0, 0));
        vm.expectRevert(abi.encodeWithSelector(ICreditRegistry.CreditRegistryUnknownInstitution.selector, bytes32("ghost")));
        _asGov();
        credit.setDimensions(bytes32("ghost"), dims(1));

        ICreditRegistry.Weights memory w = ICreditRegistry.Weights(10_000, 0, 0);
        vm.expectEmit(address(credit));
        emit ICreditRegistry.WeightsSet(w);
        _asGov();
        credit.setWeights(w);
        assertEq(credit.creditOf(instId(0)), 10_000);
        w.enterpriseStrength = 1;
        vm.expectRevert(abi.encodeWithSelector(ICreditRegistry.CreditRegistryInvalidWeights.selector, w));
        _asGov();
        credit.setWeights(w);

        ICreditRegistry.Incentives memory inc = incentives();
        inc.removalThreshold = 2000;
        vm.expectEmit(address(credit));
        emit ICreditRegistry.IncentivesSet(inc);
        _asGov();
        credit.setIncentives(inc);
        assertEq(credit.incentives().removalThreshold, 2000);
    }

    function testFuzz_setIncentives_bounds(uint32 reward, uint32 penalty, uint32 threshold) public {
        ICreditRegistry.Incentives memory inc =
            ICreditRegistry.Incentives(reward, reward, reward, penalty, penalty, penalty, threshold);
        bool ok = reward <= 1000 && penalty <= 10_000 && threshold <= 10_000;
        vm.startPrank(address(gov));
        if (!ok) vm.expectRevert(abi.encodeWithSelector(ICreditRegistry.CreditRegistryInvalidIncentives.selector, inc));
        credit.setIncentives(inc);
        vm.stopPrank();
    }

    function test_setReporter_idempotent() public {
        vm.expectEmit(address(credit));
        emit ICreditRegistry.ReporterSet(address(0xAB), true);
        _asGov();
        credit.setReporter(address(0xAB), true);
        vm.recordLogs();
        _asGov();
        credit.setReporter(address(0xAB), true);
        assertEq(vm.getRecordedLogs().length, 0);
        _asGov();
        credit.setReporter(address(0xAB), false);
        assertFalse(credit.isReporter(address(0xAB)));
    }

    function test_setClock() public {
        vm.expectRevert(abi.encodeWithSelector(ICreditRegistry.CreditRegistryClockAlreadySet.selector, address(index)));
        _asGov();
        credit.setClock(address(0xC10C));

        CreditRegistry fresh = new CreditRegistry(reg, K, M, RESERVE, weights(), incentives());
        vm.startPrank(address(gov));
        vm.expectRevert(abi.encodeWithSelector(ICreditRegistry.CreditRegistryInvalidClock.selector, address(0xC10C)));
        fresh.setClock(address(0xC10C));
        vm.expectRevert(abi.encodeWithSelector(ICreditRegistry.CreditRegistryInvalidClock.selector, address(index)));
        fresh.setClock(address(index)); // a ConsortiumIndex of another registry
        MockClock clock = new MockClock(fresh);
        vm.expectEmit(address(fresh));
        emit ICreditRegistry.ClockSet(address(clock));
        fresh.setClock(address(clock));
        vm.stopPrank();
        // before any election the round still moves
        clock.setRound(2);
        clock.tick();
        assertEq(fresh.round(), 2);
        vm.expectRevert(abi.encodeWithSelector(ICreditRegistry.CreditRegistryRoundNotAhead.selector, 2, 2));
        clock.tick();
        vm.expectRevert(abi.encodeWithSelector(ICreditRegistry.CreditRegistryNotClock.selector, address(this)));
        fresh.advanceRound();
    }

    // ------------------------------------------------------------------
    // Institutions
    // ------------------------------------------------------------------

    function test_setWilling() public {
        vm.expectRevert(abi.encodeWithSelector(ICreditRegistry.CreditRegistryNotInstitution.selector, nha));
        vm.prank(nha);
        credit.setWilling(true);
        address a = accountOf(instId(0));
        vm.recordLogs();
        vm.prank(a);
        credit.setWilling(true); // unchanged: nothing
        assertEq(vm.getRecordedLogs().length, 0);
        vm.expectEmit(address(credit));
        emit ICreditRegistry.WillingnessSet(instId(0), false);
        vm.prank(a);
        credit.setWilling(false);
        assertFalse(credit.isEligible(instId(0)));
    }

    function test_syncAccount_afterRotation() public {
        bytes32 id = instId(5);
        address old = accountOf(id);
        address fresh = address(0xF00D);
        vm.prank(kmc);
        reg.rotateKeys(id, fresh, preKey(), peksKey());
        assertFalse(credit.isSuspended(id), "a rotated-away account is not a suspension");
        vm.expectEmit(address(credit));
        emit ICreditRegistry.AccountSynced(id, old, fresh);
        credit.syncAccount(id);
        assertEq(credit.idOf(fresh), id);
        assertEq(credit.idOf(old), bytes32(0));
        vm.recordLogs();
        credit.syncAccount(id);
        assertEq(vm.getRecordedLogs().length, 0);
        vm.expectRevert(abi.encodeWithSelector(ICreditRegistry.CreditRegistryUnknownInstitution.selector, bytes32("ghost")));
        credit.syncAccount(bytes32("ghost"));
    }

    // ------------------------------------------------------------------
    // Election
    // ------------------------------------------------------------------

    function test_elect_firstRosterAppliesAtOnce() public {
        bytes32[] memory rpn = new bytes32[](3);
        bytes32[] memory atn = new bytes32[](4);
        bytes32[] memory reserve = new bytes32[](3);
        for (uint256 i; i < 3; ++i) rpn[i] = instId(i);
        for (uint256 i; i < 4; ++i) atn[i] = instId(3 + i);
        for (uint256 i; i < 3; ++i) reserve[i] = instId(7 + i);
        vm.expectEmit(address(credit));
        emit ICreditRegistry.Elected(1, 0, rpn, atn, reserve);
        vm.expectEmit(address(credit));
        emit ICreditRegistry.RosterActivated(1, 0);
        vm.expectEmit(address(credit));
        emit ICreditRegistry.AtnSetRecorded(0, keccak256(abi.encodePacked(atn)), atn);
        elect();
        assertEq(credit.rpnSet(), rpn);
        assertEq(credit.atnSet(), atn);
        assertEq(credit.reserveSet(), reserve);
        assertEq(credit.rosterVersion(), 1);
        (ICreditRegistry.SeatKind kind, uint256 idx) = credit.seatOf(instId(1));
        assertEq(uint256(kind), uint256(ICreditRegistry.SeatKind.Rpn));
        assertEq(idx, 1);
        (kind, idx) = credit.seatOf(instId(4));
        assertEq(uint256(kind), uint256(ICreditRegistry.SeatKind.Atn));
        assertEq(idx, 1);
        (kind,) = credit.seatOf(instId(9));
        assertEq(uint256(kind), 0);
        (bytes32 id, address acct) = credit.rpnAt(2);
        assertEq(id, instId(2));
        assertEq(acct, accountOf(instId(2)));
        (uint64 from, bytes32 h) = credit.atnSetAt(5);
        assertEq(from, 0);
        assertEq(h, keccak256(abi.encodePacked(atn)));
        address[] memory accts = new address[](3);
        (accts[0], accts[1], accts[2]) = (accountOf(instId(3)), accountOf(instId(0)), address(0xdead));
        bytes32[] memory ids = credit.atnIdsOf(accts);
        assertEq(ids[0], instId(3));
        assertEq(ids[1], bytes32(0));
        assertEq(ids[2], bytes32(0));
    }

    function test_elect_repairsAStaleOrSteeringHint() public {
        // i1 withdraws after the ranking was computed; a hint that omits i0 and swaps i2/i3
        vm.prank(accountOf(instId(1)));
        credit.setWilling(false);
        bytes32[] memory hint = new bytes32[](N_INST - 1);
        hint[0] = instId(1);
        hint[1] = instId(3);
        hint[2] = instId(2);
        for (uint256 i = 4; i < N_INST; ++i) hint[i - 1] = instId(i);
        vm.expectEmit(address(credit));
        emit ICreditRegistry.RankingRepaired(1, 1);
        _asGov();
        credit.elect(hint);
        bytes32[] memory rpn = credit.rpnSet();
        assertEq(rpn[0], instId(0));
        assertEq(rpn[1], instId(2));
        assertEq(rpn[2], instId(3));
    }

    function test_elect_tieBreaksByLowerId() public {
        _asGov();
        credit.setDimensions(instId(5), dims(9000)); // ties with i0
        elect();
        bytes32[] memory rpn = credit.rpnSet();
        bool fiveFirst = instId(5) < instId(0);
        assertEq(rpn[0], fiveFirst ? instId(5) : instId(0));
        assertEq(rpn[1], fiveFirst ? instId(0) : instId(5));
    }

    function test_elect_reverts() public {
        bytes32[] memory dup = new bytes32[](2);
        (dup[0], dup[1]) = (instId(0), instId(0));
        vm.startPrank(address(gov));
        vm.expectRevert(abi.encodeWithSelector(ICreditRegistry.CreditRegistryDuplicateCandidate.selector, instId(0)));
        credit.elect(dup);
        dup[1] = bytes32("ghost");
        vm.expectRevert(abi.encodeWithSelector(ICreditRegistry.CreditRegistryUnknownInstitution.selector, bytes32("ghost")));
        credit.elect(dup);
        vm.stopPrank();
        for (uint256 i; i < 6; ++i) {
            vm.prank(accountOf(instId(i)));
            credit.setWilling(false);
        }
        vm.expectRevert(abi.encodeWithSelector(ICreditRegistry.CreditRegistryTooFewCandidates.selector, 6, 7));
        _asGov();
        credit.elect(insts);
    }

    function test_views_beforeElection() public {
        vm.expectRevert(ICreditRegistry.CreditRegistryNoRoster.selector);
        credit.rpnSet();
        vm.expectRevert(ICreditRegistry.CreditRegistryNoRoster.selector);
        credit.atnSet();
        vm.expectRevert(ICreditRegistry.CreditRegistryNoRoster.selector);
        credit.reserveSet();
        vm.expectRevert(ICreditRegistry.CreditRegistryNoRoster.selector);
        credit.rpnAt(0);
        vm.expectRevert(abi.encodeWithSelector(ICreditRegistry.CreditRegistryNoAtnSet.selector, 0));
        credit.atnSetAt(0);
        (ICreditRegistry.SeatKind kind,) = credit.seatOf(instId(0));
        assertEq(uint256(kind), 0);
        assertEq(credit.atnIdsOf(new address[](2))[1], bytes32(0));
        (bool pending,,,,) = credit.pendingRoster();
        assertFalse(pending);
        elect();
        vm.expectRevert(
            abi.encodeWithSelector(ICreditRegistry.CreditRegistrySeatOutOfRange.selector, ICreditRegistry.SeatKind.Rpn, 3, 3)
        );
        credit.rpnAt(3);
    }

    function test_institutionsPage() public view {
        (bytes32[] memory ids, ICreditRegistry.Institution[] memory recs) = credit.institutionsPage(10, 5);
        assertEq(ids.length, 2);
        assertEq(ids[1], instId(11));
        assertEq(recs[0].dimensions.hospitalGrade, 4000);
        (ids,) = credit.institutionsPage(20, 5);
        assertEq(ids.length, 0);
    }

    // ------------------------------------------------------------------
    // Rounds: pending elections, replacement, reserve
    // ------------------------------------------------------------------

    function test_round_secondElectionAppliesNextRound() public {
        elect();
        _asGov();
        credit.setDimensions(instId(11), dims(10_000));
        elect();
        (bool pending, uint64 version, uint64 fromRound, bytes32[] memory rpn,) = credit.pendingRoster();
        assertTrue(pending);
        assertEq(version, 2);
        assertEq(fromRound, 1);
        assertEq(rpn[0], instId(11));
        assertEq(credit.rpnSet()[0], instId(0), "the active roster is unchanged until the boundary");
        vm.expectEmit(address(credit));
        emit ICreditRegistry.RoundAdvanced(0, 1);
        vm.expectEmit(address(credit));
        emit ICreditRegistry.RosterActivated(2, 1);
        _round(1);
        assertEq(credit.rpnSet()[0], instId(11));
        assertEq(credit.rosterVersion(), 2);
        (uint64 from,) = credit.atnSetAt(1);
        assertEq(from, 1);
        (from,) = credit.atnSetAt(0);
        assertEq(from, 0);
    }

    function test_round_ineligibleRpnReplacedByBestAtn() public {
        elect();
        vm.expectEmit(address(credit));
        emit ICreditRegistry.RemovalScheduled(instId(1), 0, 9000 - 500);
        vm.prank(accountOf(instId(1)));
        credit.setWilling(false);
        assertTrue(credit.institution(instId(1)).removalQueued);
        vm.expectEmit(address(credit));
        emit ICreditRegistry.RpnReplaced(1, instId(1), instId(3), 1);
        vm.expectEmit(address(credit));
        emit ICreditRegistry.AtnAdmitted(1, instId(7));
        _round(1);
        assertEq(credit.rpnSet()[1], instId(3));
        assertEq(credit.atnSet()[3], instId(7));
        assertEq(credit.reserveSet().length, 2);
        assertFalse(credit.institution(instId(1)).removalQueued);
    }

    function test_round_ineligibleAtnRemovedAndRefilled() public {
        elect();
        vm.prank(reporter);
        credit.penalise(instId(4), ICreditRegistry.Offence.InvalidBlock, 0); // 7000 - 3000 = 4000: still eligible
        assertFalse(credit.institution(instId(4)).removalQueued);
        vm.startPrank(reporter);
        credit.penalise(instId(4), ICreditRegistry.Offence.InvalidBlock, 0); // 1000: at the threshold
        credit.penalise(instId(4), ICreditRegistry.Offence.MissedSlot, 0); // 900: below
        vm.stopPrank();
        assertTrue(credit.institution(instId(4)).removalQueued);
        vm.expectEmit(address(credit));
        emit ICreditRegistry.AtnRemoved(1, instId(4));
        _round(1);
        bytes32[] memory atn = credit.atnSet();
        assertEq(atn.length, 4);
        assertEq(atn[1], instId(5));
        assertEq(atn[3], instId(7));
    }

    function test_round_recoveredBeforeBoundaryKeepsSeat() public {
        elect();
        vm.prank(accountOf(instId(0)));
        credit.setWilling(false);
        vm.prank(accountOf(instId(0)));
        credit.setWilling(true);
        _round(1);
        assertEq(credit.rpnSet()[0], instId(0));
    }

    function test_round_suspensionReviewedWithoutVolunteer() public {
        elect();
        vm.prank(nha);
        reg.suspend(instId(2), "abnormal");
        assertTrue(credit.isSuspended(instId(2)));
        assertFalse(credit.isEligible(instId(2)));
        _round(1);
        assertEq(credit.rpnSet()[2], instId(3));
        // reviewSeat by anyone is a no-op for an unseated institution
        credit.reviewSeat(instId(2));
        assertFalse(credit.institution(instId(2)).removalQueued);
    }

    function test_round_reserveRunsOutSeatsStayVacant() public {
        elect();
        // every ATN and reserve member withdraws, and so does RPN i0
        for (uint256 i = 3; i < N_INST; ++i) {
            vm.prank(accountOf(instId(i)));
            credit.setWilling(false);
        }
        vm.prank(accountOf(instId(0)));
        credit.setWilling(false);
        _round(1);
        assertEq(credit.atnSeated(), 0);
        assertEq(credit.rpnSet()[0], bytes32(0), "no ATN left: the seat stays vacant");
        (bytes32 id, address acct) = credit.rpnAt(0);
        assertEq(id, bytes32(0));
        assertEq(acct, address(0));
    }

    function test_round_weightChangeReviewsEverySeat() public {
        elect();
        ICreditRegistry.Incentives memory inc = incentives();
        inc.removalThreshold = 7600; // i3..: below (i3 = 7500)
        _asGov();
        credit.setIncentives(inc);
        _round(1);
        assertEq(credit.atnSeated(), 0);
        assertEq(credit.rpnSet()[2], instId(2));
    }

    function test_reviewSeat_queuesSeatedIneligible() public {
        elect();
        ICreditRegistry.Incentives memory inc = incentives();
        inc.removalThreshold = 8600;
        _asGov();
        credit.setIncentives(inc);
        vm.expectEmit(address(credit));
        emit ICreditRegistry.RemovalScheduled(instId(2), 0, 8000);
        credit.reviewSeat(instId(2));
        vm.expectRevert(abi.encodeWithSelector(ICreditRegistry.CreditRegistryUnknownInstitution.selector, bytes32("ghost")));
        credit.reviewSeat(bytes32("ghost"));
    }

    /// The elected sets are the top-ranked eligible institutions whatever the dimensions.
    function testFuzz_elect_topRanked(uint256 seed) public {
        for (uint256 i; i < N_INST; ++i) {
            uint256 d = 1000 + uint256(keccak256(abi.encode(seed, i))) % 9_001; // every one eligible
            _asGov();
            credit.setDimensions(instId(i), dims(d));
        }
        elect();
        bytes32[] memory rpn = credit.rpnSet();
        bytes32[] memory atn = credit.atnSet();
        bytes32[] memory seated = new bytes32[](K + M);
        for (uint256 i; i < K; ++i) seated[i] = rpn[i];
        for (uint256 i; i < M; ++i) seated[K + i] = atn[i];
        for (uint256 i = 1; i < K + M; ++i) {
            uint256 a = credit.creditOf(seated[i - 1]);
            uint256 b = credit.creditOf(seated[i]);
            assertTrue(a > b || (a == b && seated[i - 1] < seated[i]), "ranked by credit, ties by lower ID");
        }
        uint256 last = credit.creditOf(seated[K + M - 1]);
        for (uint256 i; i < N_INST; ++i) {
            (ICreditRegistry.SeatKind kind,) = credit.seatOf(instId(i));
            if (kind != ICreditRegistry.SeatKind.None || !credit.isEligible(instId(i))) continue;
            assertLe(credit.creditOf(instId(i)), last);
        }
    }
}
