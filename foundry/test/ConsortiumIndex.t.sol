// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ConsortiumBase} from "./utils/ConsortiumBase.sol";
import {CreditRegistry} from "../../contracts/CreditRegistry.sol";
import {ConsortiumIndex} from "../../contracts/ConsortiumIndex.sol";
import {ICreditRegistry} from "../../contracts/interfaces/ICreditRegistry.sol";
import {IConsortiumIndex} from "../../contracts/interfaces/IConsortiumIndex.sol";
import {IIdentityRegistry} from "../../contracts/interfaces/IIdentityRegistry.sol";

/// @title ConsortiumIndexTest — scheduled producers, ATN quorums, missed slots, rejected headers
contract ConsortiumIndexTest is ConsortiumBase {
    bytes[] internal noSigs;

    function setUp() public override {
        super.setUp();
        elect();
    }

    function _commitAs(address who, IConsortiumIndex.BlockHeader memory h, bytes32[] memory patients, bytes[] memory sigs)
        internal
    {
        vm.prank(who);
        index.commitBlock(h, patients, sigs);
    }

    function _producer(uint64 slot) internal view returns (address account) {
        (, account) = index.producerOf(slot);
    }

    function _att(IConsortiumIndex.BlockHeader memory h, uint256 q) internal view returns (bytes[] memory) {
        return sortedSigs(firstAtns(q), index.headerDigest(h));
    }

    // ------------------------------------------------------------------
    // constructor and clock
    // ------------------------------------------------------------------

    function test_constructor_rejectsBadConfig() public {
        vm.expectRevert(abi.encodeWithSelector(IConsortiumIndex.ConsortiumIndexInvalidConfig.selector, 0, 3, M));
        new ConsortiumIndex(credit, 0, 0, 3);
        vm.expectRevert(abi.encodeWithSelector(IConsortiumIndex.ConsortiumIndexInvalidConfig.selector, 60, 1, M));
        new ConsortiumIndex(credit, 0, 60, 1);
        vm.expectRevert(abi.encodeWithSelector(IConsortiumIndex.ConsortiumIndexInvalidConfig.selector, 60, 5, M));
        new ConsortiumIndex(credit, 0, 60, 5);
    }

    function test_clock() public {
        assertEq(index.genesisTime(), genesis);
        assertEq(index.slotSeconds(), SLOT);
        assertEq(index.slotsPerRound(), K);
        assertEq(index.quorum(), QUORUM);
        assertEq(index.attestationQuorum(), QUORUM);
        assertEq(address(index.credit()), address(credit));
        toSlot(7);
        assertEq(index.currentSlot(), 7);
        assertEq(index.currentRound(), 2);
        (bytes32 id, address acct) = index.producerOf(7);
        assertEq(id, instId(1));
        assertEq(acct, accountOf(instId(1)));
        // genesis 0 means "now"; a late deployment does not charge the slots before it
        ConsortiumIndex late = new ConsortiumIndex(credit, genesis, SLOT, QUORUM);
        assertEq(late.nextUnsettledSlot(), 7);
        ConsortiumIndex now_ = new ConsortiumIndex(credit, 0, SLOT, QUORUM);
        assertEq(now_.genesisTime(), block.timestamp);
    }

    function test_beforeGenesis() public {
        ConsortiumIndex future = new ConsortiumIndex(credit, uint64(block.timestamp + 100), SLOT, QUORUM);
        vm.expectRevert(
            abi.encodeWithSelector(IConsortiumIndex.ConsortiumIndexBeforeGenesis.selector, block.timestamp, block.timestamp + 100)
        );
        future.currentSlot();
    }

    // ------------------------------------------------------------------
    // commitBlock
    // ------------------------------------------------------------------

    function test_commit_storesEmitsAndRewards() public {
        toSlot(0);
        bytes32[] memory patients = new bytes32[](2);
        (patients[0], patients[1]) = (bytes32("p1"), bytes32("p2"));
        IConsortiumIndex.BlockHeader memory h = blockHeader(0, patients);
        bytes32 hh = index.hashHeader(h);
        bytes32[] memory atn = firstAtns(3);
        bytes[] memory sigs = sortedSigs(atn, index.headerDigest(h));
        vm.expectEmit(false, true, true, false, address(index));
        emit IConsortiumIndex.BlockCommitted(1, hh, instId(0), h, atn);
        vm.expectEmit(address(index));
        emit IConsortiumIndex.PatientIndexed(bytes32("p1"), 1);
        vm.expectEmit(address(index));
        emit IConsortiumIndex.PatientIndexed(bytes32("p2"), 1);
        _commitAs(_producer(0), h, patients, sigs);
        (uint64 height, bytes32 head) = index.head();
        assertEq(height, 1);
        assertEq(head, hh);
        assertEq(index.headerHashAt(1), hh);
        assertEq(index.nextUnsettledSlot(), 1);
        assertEq(credit.institution(instId(0)).rewardPoints, 10);
        assertEq(credit.institution(atn[0]).rewardPoints, 5);
        assertEq(index.headerDigest(h), keccak256(abi.encodePacked("\x19\x01", index.domainSeparator(), hh)));
    }

    function test_commit_oneBlockPerSlot() public {
        toSlot(1);
        commitNow(3);
        IConsortiumIndex.BlockHeader memory h = blockHeader(1, new bytes32[](0));
        bytes[] memory sigs = _att(h, 3);
        address p = _producer(1);
        vm.expectRevert(abi.encodeWithSelector(IConsortiumIndex.ConsortiumIndexSlotAlreadyCommitted.selector, 1, 2));
        _commitAs(p, h, new bytes32[](0), sigs);
    }

    function test_commit_outOfTurnAndWrongSlot() public {
        toSlot(1);
        IConsortiumIndex.BlockHeader memory h = blockHeader(1, new bytes32[](0));
        bytes[] memory sigs = _att(h, 3);
        address scheduled = _producer(1);
        address other = _producer(2);
        vm.expectRevert(abi.encodeWithSelector(IConsortiumIndex.ConsortiumIndexNotScheduledProducer.selector, 1, scheduled, other));
        _commitAs(other, h, new bytes32[](0), sigs);
        // an ATN is not a producer either
        address atn = accountOf(instId(3));
        vm.expectRevert(abi.encodeWithSelector(IConsortiumIndex.ConsortiumIndexNotScheduledProducer.selector, 1, scheduled, atn));
        _commitAs(atn, h, new bytes32[](0), sigs);
        h.slot = 2;
        vm.expectRevert(abi.encodeWithSelector(IConsortiumIndex.ConsortiumIndexWrongSlot.selector, 2, 1));
        _commitAs(scheduled, h, new bytes32[](0), sigs);
        h.slot = 1;
        h.producer = instId(2);
        vm.expectRevert(abi.encodeWithSelector(IConsortiumIndex.ConsortiumIndexWrongProducer.selector, 1, instId(1), instId(2)));
        _commitAs(scheduled, h, new bytes32[](0), sigs);
    }

    function test_commit_suspendedProducer() public {
        toSlot(0);
        vm.prank(nha);
        reg.suspend(instId(0), "x");
        IConsortiumIndex.BlockHeader memory h = blockHeader(0, new bytes32[](0));
        bytes[] memory sigs = _att(h, 3);
        vm.expectRevert(abi.encodeWithSelector(IConsortiumIndex.ConsortiumIndexProducerSuspended.selector, 0, instId(0)));
        _commitAs(accountOf(instId(0)), h, new bytes32[](0), sigs);
    }

    function test_commit_sequenceAndTime() public {
        toSlot(0);
        commitNow(3);
        toSlot(1);
        IConsortiumIndex.BlockHeader memory h = blockHeader(1, new bytes32[](0));
        address p = _producer(1);
        h.height = 3;
        vm.expectRevert(abi.encodeWithSelector(IConsortiumIndex.ConsortiumIndexWrongHeight.selector, 2, 3));
        _commitAs(p, h, new bytes32[](0), noSigs);
        h.height = 2;
        bytes32 prev = h.prevHash;
        h.prevHash = bytes32("fork");
        vm.expectRevert(abi.encodeWithSelector(IConsortiumIndex.ConsortiumIndexWrongPrevHash.selector, prev, bytes32("fork")));
        _commitAs(p, h, new bytes32[](0), noSigs);
        h.prevHash = prev;
        uint256 slotStart = genesis + SLOT;
        h.timestamp = uint64(slotStart - 1);
        vm.expectRevert(
            abi.encodeWithSelector(IConsortiumIndex.ConsortiumIndexTimestampOutOfSlot.selector, slotStart - 1, slotStart, block.timestamp)
        );
        _commitAs(p, h, new bytes32[](0), noSigs);
        h.timestamp = uint64(block.timestamp + 1);
        vm.expectRevert(
            abi.encodeWithSelector(
                IConsortiumIndex.ConsortiumIndexTimestampOutOfSlot.selector, block.timestamp + 1, slotStart, block.timestamp
            )
        );
        _commitAs(p, h, new bytes32[](0), noSigs);
    }

    function test_commit_patients() public {
        toSlot(0);
        bytes32[] memory patients = new bytes32[](2);
        (patients[0], patients[1]) = (bytes32("p2"), bytes32("p1"));
        IConsortiumIndex.BlockHeader memory h = blockHeader(0, patients);
        address p = _producer(0);
        vm.expectRevert(abi.encodeWithSelector(IConsortiumIndex.ConsortiumIndexPatientsNotSorted.selector, 1, bytes32("p1")));
        _commitAs(p, h, patients, noSigs);
        patients[0] = bytes32("p1");
        vm.expectRevert(abi.encodeWithSelector(IConsortiumIndex.ConsortiumIndexPatientsNotSorted.selector, 1, bytes32("p1")));
        _commitAs(p, h, patients, noSigs);
        patients[1] = bytes32("p3");
        vm.expectRevert(
            abi.encodeWithSelector(
                IConsortiumIndex.ConsortiumIndexPatientsMismatch.selector, h.patientsHash, keccak256(abi.encodePacked(patients))
            )
        );
        _commitAs(p, h, patients, noSigs);
    }

    function test_commit_attestationAttacks() public {
        toSlot(0);
        IConsortiumIndex.BlockHeader memory h = blockHeader(0, new bytes32[](0));
        bytes32 digest = index.headerDigest(h);
        address p = _producer(0);
        bytes32[] memory atn = credit.atnSet();

        bytes[] memory two = sortedSigs(firstAtns(2), digest);
        vm.expectRevert(abi.encodeWithSelector(IConsortiumIndex.ConsortiumIndexInsufficientAttestations.selector, 2, 3));
        _commitAs(p, h, new bytes32[](0), two);

        bytes[] memory sigs = sortedSigs(firstAtns(3), digest);
        bytes[] memory rev = new bytes[](3);
        (rev[0], rev[1], rev[2]) = (sigs[2], sigs[1], sigs[0]);
        vm.expectRevert(); // ConsortiumIndexSignersNotSorted at index 1
        _commitAs(p, h, new bytes32[](0), rev);
        // a duplicate signer is not strictly ascending
        (rev[0], rev[1], rev[2]) = (sigs[0], sigs[0], sigs[1]);
        address first = _signer(sigs[0], digest);
        vm.expectRevert(abi.encodeWithSelector(IConsortiumIndex.ConsortiumIndexSignersNotSorted.selector, 1, first));
        _commitAs(p, h, new bytes32[](0), rev);

        (rev[0], rev[1], rev[2]) = (sigs[0], hex"1234", sigs[2]);
        vm.expectRevert(abi.encodeWithSelector(IConsortiumIndex.ConsortiumIndexInvalidSignature.selector, 1));
        _commitAs(p, h, new bytes32[](0), rev);

        // an RPN (not an ATN) attests
        bytes32[] memory withRpn = new bytes32[](3);
        (withRpn[0], withRpn[1], withRpn[2]) = (atn[0], atn[1], instId(1));
        bytes[] memory rpnSigs = sortedSigs(withRpn, digest);
        vm.expectRevert(abi.encodeWithSelector(IConsortiumIndex.ConsortiumIndexNotAttester.selector, accountOf(instId(1))));
        _commitAs(p, h, new bytes32[](0), rpnSigs);

        // an attestation of another header
        IConsortiumIndex.BlockHeader memory other = blockHeader(0, new bytes32[](0));
        other.merkleRoot = bytes32("other");
        bytes[] memory otherSigs = sortedSigs(firstAtns(3), index.headerDigest(other));
        vm.expectRevert();
        _commitAs(p, h, new bytes32[](0), otherSigs);

        // a suspended ATN
        vm.prank(nha);
        reg.suspend(atn[0], "x");
        vm.expectRevert(
            abi.encodeWithSelector(IConsortiumIndex.ConsortiumIndexAttesterSuspended.selector, accountOf(atn[0]), atn[0])
        );
        _commitAs(p, h, new bytes32[](0), sigs);
    }

    function _signer(bytes memory sig, bytes32 digest) internal pure returns (address) {
        (bytes32 r, bytes32 s) = abi.decode(sig, (bytes32, bytes32));
        return ecrecover(digest, uint8(sig[64]), r, s);
    }

    function test_commit_rotatedAtnAttestsWithOldAccountUntilSynced() public {
        toSlot(0);
        bytes32 a = credit.atnSet()[0];
        vm.prank(kmc);
        reg.rotateKeys(a, address(0xF00D), preKey(), peksKey());
        commitNow(3); // old key still acts here, and is not taken for a suspension
        (uint64 height,) = index.head();
        assertEq(height, 1);
    }

    // ------------------------------------------------------------------
    // Missed slots and rounds
    // ------------------------------------------------------------------

    function test_reportMissedSlots_chargesTheirRpn() public {
        toSlot(2);
        vm.expectEmit(address(index));
        emit IConsortiumIndex.SlotMissed(0, instId(0));
        vm.expectEmit(address(index));
        emit IConsortiumIndex.SlotMissed(1, instId(1));
        index.reportMissedSlots();
        assertEq(index.nextUnsettledSlot(), 2);
        assertEq(credit.institution(instId(0)).penaltyPoints, 100);
        assertEq(credit.institution(instId(2)).penaltyPoints, 0);
        vm.recordLogs();
        index.reportMissedSlots(); // nothing new
        assertEq(vm.getRecordedLogs().length, 0);
    }

    function test_commit_chargesEarlierMissesAndAdvancesRound() public {
        toSlot(4); // round 1; slots 0..3 missed
        commitNow(3);
        assertEq(credit.round(), 1);
        assertEq(credit.institution(instId(0)).penaltyPoints, 200); // slots 0 and 3
        assertEq(credit.institution(instId(1)).penaltyPoints, 100);
        assertEq(credit.institution(instId(1)).rewardPoints, 10); // produced slot 4
    }

    function test_advanceRound_wholeIdleRoundsChargeNobody() public {
        toSlot(30); // round 10
        index.advanceRound();
        assertEq(credit.round(), 10);
        assertEq(credit.institution(instId(0)).penaltyPoints, 100, "only the registry's own round was charged");
        assertEq(credit.institution(instId(2)).penaltyPoints, 100);
    }

    function test_registryAhead() public {
        toSlot(6);
        index.advanceRound();
        toSlot(3);
        vm.expectRevert(abi.encodeWithSelector(IConsortiumIndex.ConsortiumIndexRegistryAhead.selector, 2, 1));
        index.reportMissedSlots();
    }

    function test_attestationQuorum_shrinksWithSeatedAtns() public {
        for (uint256 i = 5; i < N_INST; ++i) {
            vm.prank(accountOf(instId(i)));
            credit.setWilling(false);
        }
        toSlot(3);
        index.advanceRound();
        assertEq(credit.atnSeated(), 2);
        assertEq(index.attestationQuorum(), 2);
        commitNow(2);
    }

    // ------------------------------------------------------------------
    // reportInvalidBlock
    // ------------------------------------------------------------------

    function _bad(uint64 slot) internal view returns (IConsortiumIndex.BlockHeader memory h, bytes memory producerSig) {
        h = blockHeader(slot, new bytes32[](0));
        h.merkleRoot = bytes32("invalid body");
        (bytes32 producer,) = index.producerOf(slot);
        producerSig = signBy(producer, index.headerDigest(h));
    }

    function test_reportInvalidBlock_penalisesProducerAndAttesters() public {
        toSlot(0);
        (IConsortiumIndex.BlockHeader memory h, bytes memory psig) = _bad(0);
        bytes32 hh = index.hashHeader(h);
        bytes32[] memory atn = credit.atnSet();
        bytes32[] memory rejecters = new bytes32[](3);
        (rejecters[0], rejecters[1], rejecters[2]) = (atn[1], atn[2], atn[3]);
        bytes32[] memory attesters = new bytes32[](1);
        attesters[0] = atn[0];
        bytes[] memory rej = sortedSigs(rejecters, index.rejectionDigest(hh));
        bytes[] memory att = sortedSigs(attesters, index.headerDigest(h));
        vm.expectEmit(true, true, true, false, address(index));
        emit IConsortiumIndex.BlockRejected(hh, 0, instId(0), rejecters, attesters);
        index.reportInvalidBlock(h, psig, atn, rej, att);
        assertEq(credit.institution(instId(0)).penaltyPoints, 3000);
        assertEq(credit.institution(atn[0]).penaltyPoints, 2000);
        assertEq(credit.institution(atn[1]).penaltyPoints, 0);
        vm.expectRevert(abi.encodeWithSelector(IConsortiumIndex.ConsortiumIndexAlreadyReported.selector, hh));
        index.reportInvalidBlock(h, psig, atn, rej, att);
    }

    struct Bad {
        IConsortiumIndex.BlockHeader h;
        bytes psig;
        bytes32 hh;
        bytes32[] atn;
        bytes[] rej;
    }

    function _prepBad() internal returns (Bad memory b) {
        toSlot(0);
        (b.h, b.psig) = _bad(0);
        b.hh = index.hashHeader(b.h);
        b.atn = credit.atnSet();
        b.rej = sortedSigs(firstAtns(3), index.rejectionDigest(b.hh));
    }

    function test_reportInvalidBlock_futureSlotAndForgedProducer() public {
        Bad memory b = _prepBad();
        IConsortiumIndex.BlockHeader memory future = blockHeader(5, new bytes32[](0));
        vm.expectRevert(abi.encodeWithSelector(IConsortiumIndex.ConsortiumIndexFutureSlot.selector, 5, 0));
        index.reportInvalidBlock(future, b.psig, b.atn, b.rej, noSigs);
        bytes memory forged = signBy(instId(1), index.headerDigest(b.h));
        vm.expectRevert(
            abi.encodeWithSelector(IConsortiumIndex.ConsortiumIndexBadProducerSignature.selector, instId(0), accountOf(instId(1)))
        );
        index.reportInvalidBlock(b.h, forged, b.atn, b.rej, noSigs);
        vm.expectRevert(
            abi.encodeWithSelector(IConsortiumIndex.ConsortiumIndexBadProducerSignature.selector, instId(0), address(0))
        );
        index.reportInvalidBlock(b.h, hex"00", b.atn, b.rej, noSigs);
    }

    function test_reportInvalidBlock_wrongAtnSetOrTooFewRejections() public {
        Bad memory b = _prepBad();
        bytes32[] memory wrongSet = firstAtns(3);
        vm.expectRevert(
            abi.encodeWithSelector(
                IConsortiumIndex.ConsortiumIndexWrongAtnSet.selector,
                0,
                keccak256(abi.encodePacked(b.atn)),
                keccak256(abi.encodePacked(wrongSet))
            )
        );
        index.reportInvalidBlock(b.h, b.psig, wrongSet, b.rej, noSigs);
        bytes[] memory two = sortedSigs(firstAtns(2), index.rejectionDigest(b.hh));
        vm.expectRevert(abi.encodeWithSelector(IConsortiumIndex.ConsortiumIndexInsufficientAttestations.selector, 2, 3));
        index.reportInvalidBlock(b.h, b.psig, b.atn, two, noSigs);
    }

    function test_reportInvalidBlock_badRejecters() public {
        Bad memory b = _prepBad();
        bytes32[] memory withRpn = new bytes32[](3);
        (withRpn[0], withRpn[1], withRpn[2]) = (b.atn[0], b.atn[1], instId(2));
        bytes[] memory sigs = sortedSigs(withRpn, index.rejectionDigest(b.hh));
        vm.expectRevert(abi.encodeWithSelector(IConsortiumIndex.ConsortiumIndexNotAttester.selector, accountOf(instId(2))));
        index.reportInvalidBlock(b.h, b.psig, b.atn, sigs, noSigs);

        bytes[] memory bad = new bytes[](3);
        (bad[0], bad[1], bad[2]) = (b.rej[0], b.rej[1], hex"00");
        vm.expectRevert(abi.encodeWithSelector(IConsortiumIndex.ConsortiumIndexInvalidSignature.selector, 2));
        index.reportInvalidBlock(b.h, b.psig, b.atn, bad, noSigs);
        (bad[0], bad[1], bad[2]) = (b.rej[1], b.rej[0], b.rej[2]);
        vm.expectRevert();
        index.reportInvalidBlock(b.h, b.psig, b.atn, bad, noSigs);

        vm.prank(nha);
        reg.suspend(b.atn[0], "x");
        vm.expectRevert(
            abi.encodeWithSelector(IConsortiumIndex.ConsortiumIndexAttesterSuspended.selector, accountOf(b.atn[0]), b.atn[0])
        );
        index.reportInvalidBlock(b.h, b.psig, b.atn, b.rej, noSigs);
    }

    function test_reportInvalidBlock_committedBlockCannotBeReported() public {
        toSlot(0);
        IConsortiumIndex.BlockHeader memory h = commitNow(3);
        bytes32 hh = index.hashHeader(h);
        bytes32[] memory atn = credit.atnSet();
        bytes memory psig = signBy(instId(0), index.headerDigest(h));
        bytes[] memory rej = sortedSigs(firstAtns(3), index.rejectionDigest(hh));
        vm.expectRevert(abi.encodeWithSelector(IConsortiumIndex.ConsortiumIndexBlockCommitted.selector, 1, hh));
        index.reportInvalidBlock(h, psig, atn, rej, noSigs);
    }

    function test_reportInvalidBlock_judgedByTheAtnsOfItsRound() public {
        toSlot(0);
        (IConsortiumIndex.BlockHeader memory h, bytes memory psig) = _bad(0);
        bytes32[] memory atn0 = credit.atnSet();
        bytes[] memory rej = sortedSigs(firstAtns(3), index.rejectionDigest(index.hashHeader(h)));
        // an ATN leaves; the next round has another ATN set
        vm.prank(accountOf(atn0[3]));
        credit.setWilling(false);
        toSlot(3);
        index.advanceRound();
        assertTrue(credit.atnSet()[3] != atn0[3]);
        index.reportInvalidBlock(h, psig, atn0, rej, noSigs);
        assertEq(credit.institution(instId(0)).penaltyPoints, 3000 + 100); // + its missed slot 0
    }

    // ------------------------------------------------------------------
    // verifyItem
    // ------------------------------------------------------------------

    function test_verifyItem() public {
        toSlot(0);
        bytes32 slipHash = bytes32("slip");
        bytes32 leaf0 = index.itemLeaf(slipHash, 0, bytes32("item0"));
        bytes32 leaf1 = index.itemLeaf(slipHash, 1, bytes32("item1"));
        assertEq(leaf0, keccak256(bytes.concat(keccak256(abi.encode(slipHash, uint256(0), bytes32("item0"))))));
        IConsortiumIndex.BlockHeader memory h = blockHeader(0, new bytes32[](0));
        h.merkleRoot = leaf0 < leaf1 ? keccak256(abi.encode(leaf0, leaf1)) : keccak256(abi.encode(leaf1, leaf0));
        bytes32[] memory proof = new bytes32[](1);
        proof[0] = leaf1;
        vm.expectRevert(
            abi.encodeWithSelector(IConsortiumIndex.ConsortiumIndexHeaderNotCommitted.selector, 1, index.hashHeader(h))
        );
        index.verifyItem(h, proof, slipHash, 0, bytes32("item0"));
        _commitAs(_producer(0), h, new bytes32[](0), _att(h, 3));
        assertTrue(index.verifyItem(h, proof, slipHash, 0, bytes32("item0")));
        assertFalse(index.verifyItem(h, proof, slipHash, 1, bytes32("item0")));
        IConsortiumIndex.BlockHeader memory genesisHeader;
        vm.expectRevert(
            abi.encodeWithSelector(IConsortiumIndex.ConsortiumIndexHeaderNotCommitted.selector, 0, index.hashHeader(genesisHeader))
        );
        index.verifyItem(genesisHeader, proof, slipHash, 0, bytes32("item0"));
    }

    /// Whatever the slot (in any round), only its scheduled RPN commits, and it commits there exactly once.
    function testFuzz_commit_onlyScheduledProducer(uint64 slot, uint256 who) public {
        slot = uint64(bound(slot, 0, 500));
        who = bound(who, 0, N_INST - 1);
        toSlot(slot);
        index.advanceRound();
        IConsortiumIndex.BlockHeader memory h = blockHeader(slot, new bytes32[](0));
        bytes[] memory sigs = _att(h, 3);
        (bytes32 scheduledId, address scheduled) = index.producerOf(slot);
        address caller = accountOf(instId(who));
        if (caller != scheduled) {
            vm.expectRevert(
                abi.encodeWithSelector(IConsortiumIndex.ConsortiumIndexNotScheduledProducer.selector, slot, scheduled, caller)
            );
            _commitAs(caller, h, new bytes32[](0), sigs);
        } else {
            _commitAs(caller, h, new bytes32[](0), sigs);
            assertEq(credit.institution(scheduledId).rewardPoints, 10);
            vm.expectRevert(
                abi.encodeWithSelector(IConsortiumIndex.ConsortiumIndexSlotAlreadyCommitted.selector, slot, slot + 1)
            );
            _commitAs(caller, h, new bytes32[](0), sigs);
        }
    }

    /// A timestamp is accepted iff it lies in [slot start, now].
    function testFuzz_commit_timestampWindow(uint64 offset, uint64 ts) public {
        offset = uint64(bound(offset, 0, SLOT - 1));
        vm.warp(genesis + 2 * SLOT + offset);
        IConsortiumIndex.BlockHeader memory h = blockHeader(2, new bytes32[](0));
        h.timestamp = uint64(bound(ts, genesis + SLOT, genesis + 4 * SLOT));
        bytes[] memory sigs = _att(h, 3);
        bool ok = h.timestamp >= genesis + 2 * SLOT && h.timestamp <= block.timestamp;
        address p = _producer(2);
        if (!ok) {
            vm.expectRevert(
                abi.encodeWithSelector(
                    IConsortiumIndex.ConsortiumIndexTimestampOutOfSlot.selector, h.timestamp, genesis + 2 * SLOT, block.timestamp
                )
            );
        }
        _commitAs(p, h, new bytes32[](0), sigs);
    }
}

/// @title ConsortiumIndexLongRoundTest — K = 17 > MAX_MISSED_SLOTS_PER_CALL: bounded charging, forgiveness
contract ConsortiumIndexLongRoundTest is ConsortiumBase {
    CreditRegistry internal credit17;
    ConsortiumIndex internal index17;

    function setUp() public override {
        super.setUp();
        credit17 = new CreditRegistry(reg, 17, 2, 0, weights(), incentives());
        index17 = new ConsortiumIndex(credit17, genesis, SLOT, 2);
        vm.startPrank(address(gov));
        credit17.setClock(address(index17));
        credit17.setReporter(address(index17), true);
        vm.stopPrank();
        bytes32[] memory all = new bytes32[](19);
        for (uint256 i; i < 19; ++i) {
            bytes32 id = instId(i);
            if (i >= N_INST) register(id, IIdentityRegistry.Role.Hospital, 0);
            vm.prank(address(gov));
            credit17.registerInstitution(id, dims(9000 - 400 * i));
            vm.prank(accountOf(id));
            credit17.setWilling(true);
            all[i] = id;
        }
        vm.prank(address(gov));
        credit17.elect(all);
    }

    function test_reportMissedSlots_boundedPerCall() public {
        vm.warp(genesis + 20 * SLOT + 1); // slot 20, round 1: 17 slots of round 0 missed
        // a report about round 1 must wait until round 0 is settled (more than one call's worth)
        IConsortiumIndex.BlockHeader memory h;
        h.slot = 18;
        vm.expectRevert(abi.encodeWithSelector(IConsortiumIndex.ConsortiumIndexRoundNotSettled.selector, 1, 0));
        index17.reportInvalidBlock(h, "", new bytes32[](0), new bytes[](0), new bytes[](0));
        index17.reportMissedSlots();
        assertEq(index17.nextUnsettledSlot(), 16, "at most 16 per call");
        assertEq(credit17.round(), 0, "round 0 not settled: the registry waits");
        index17.reportMissedSlots();
        assertEq(credit17.round(), 1);
        assertEq(index17.nextUnsettledSlot(), 20);
    }

    function test_commit_forgivesBeyondTheBound() public {
        vm.warp(genesis + 33 * SLOT + 1); // slot 33 = round 1, seat 16
        uint64 slot = 33;
        (, address producer) = index17.producerOf(slot);
        (uint64 height, bytes32 prev) = index17.head();
        (bytes32 pid,) = index17.producerOf(slot);
        IConsortiumIndex.BlockHeader memory h = IConsortiumIndex.BlockHeader(
            height + 1, prev, uint64(block.timestamp), slot, pid, 0, 0, keccak256(""), 0
        );
        bytes32[] memory atn = credit17.atnSet();
        bytes[] memory sigs = sortedSigs(atn, index17.headerDigest(h));
        vm.expectEmit(address(index17));
        emit IConsortiumIndex.SlotsForgiven(16, 17);
        vm.expectEmit(address(index17));
        emit IConsortiumIndex.SlotsForgiven(17, 33);
        vm.prank(producer);
        index17.commitBlock(h, new bytes32[](0), sigs);
        assertEq(credit17.round(), 1);
        assertEq(index17.nextUnsettledSlot(), 34);
    }
}
