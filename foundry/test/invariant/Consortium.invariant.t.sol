// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Test} from "../utils/Test.sol";
import {Keys} from "../utils/Keys.sol";
import {Vm} from "../utils/Vm.sol";
import {ConsortiumBase} from "../utils/ConsortiumBase.sol";
import {CreditRegistry} from "../../../contracts/CreditRegistry.sol";
import {ConsortiumIndex} from "../../../contracts/ConsortiumIndex.sol";
import {ICreditRegistry} from "../../../contracts/interfaces/ICreditRegistry.sol";
import {IConsortiumIndex} from "../../../contracts/interfaces/IConsortiumIndex.sol";
import {IdentityRegistry} from "../../../contracts/IdentityRegistry.sol";

/// @notice Drives the consortium: honest and out-of-turn commits, time, missed slots, withdrawals,
/// suspensions and elections. Ghosts every credit point it expects from the listed paths.
contract ConsortiumHandler is Test {
    CreditRegistry internal credit;
    ConsortiumIndex internal index;
    IdentityRegistry internal reg;
    address internal gov;
    address internal authority;
    uint64 internal genesis;
    uint64 internal slotSeconds;
    bytes32[] public insts;

    mapping(bytes32 id => uint256) public ghostReward;
    mapping(bytes32 id => uint256) public ghostPenalty;
    uint64[] public committedSlots;
    bool public outOfTurn; // a block from anyone but the scheduled RPN, or twice in a slot
    bool public badAttesters; // a committed block without a quorum of distinct ATNs
    bool public unlistedCredit; // a credit event outside the listed reward and penalty paths
    bool public badElection; // an election whose sets are not the top-ranked eligible institutions

    constructor(CreditRegistry credit_, ConsortiumIndex index_, IdentityRegistry reg_, address gov_, address authority_, bytes32[] memory insts_)
    {
        (credit, index, reg, gov, authority, insts) = (credit_, index_, reg_, gov_, authority_, insts_);
        genesis = index_.genesisTime();
        slotSeconds = index_.slotSeconds();
    }

    function instCount() external view returns (uint256) {
        return insts.length;
    }

    function blocks() external view returns (uint256) {
        return committedSlots.length;
    }

    // ------------------------------------------------------------------
    // Credit accounting from the events of one call
    // ------------------------------------------------------------------

    /// Account the credit events of the call just made: penalties only as MissedSlot for a SlotMissed
    /// of the same producer, rewards only inside a commit (`producer`, `attesters`).
    function _account(bytes32 producer, bytes32[] memory attesters) internal {
        Vm.Log[] memory logs = vm.getRecordedLogs();
        bytes32 missedSig = IConsortiumIndex.SlotMissed.selector;
        bytes32 penalisedSig = ICreditRegistry.Penalised.selector;
        bytes32 rewardedSig = ICreditRegistry.Rewarded.selector;
        bytes32 lastMissed;
        uint256 rewards;
        for (uint256 i; i < logs.length; ++i) {
            bytes32 topic = logs[i].topics.length == 0 ? bytes32(0) : logs[i].topics[0];
            if (logs[i].emitter == address(index) && topic == missedSig) {
                lastMissed = logs[i].topics[2];
            } else if (logs[i].emitter == address(credit) && topic == penalisedSig) {
                bytes32 id = logs[i].topics[1];
                if (uint256(logs[i].topics[2]) != uint256(ICreditRegistry.Offence.MissedSlot) || id != lastMissed) {
                    unlistedCredit = true;
                }
                ghostPenalty[id] += credit.incentives().missedSlotPenalty;
                lastMissed = 0;
            } else if (logs[i].emitter == address(credit) && topic == rewardedSig) {
                bytes32 id = logs[i].topics[1];
                uint256 service = uint256(logs[i].topics[2]);
                bool ok = rewards == 0
                    ? (id == producer && service == uint256(ICreditRegistry.Service.BlockProduced))
                    : (rewards <= attesters.length && id == attesters[rewards - 1]
                        && service == uint256(ICreditRegistry.Service.BlockAttested));
                if (!ok) unlistedCredit = true;
                ++rewards;
            }
        }
        if (producer != 0) {
            if (rewards != attesters.length + 1) unlistedCredit = true;
            ghostReward[producer] += credit.incentives().blockReward;
            for (uint256 i; i < attesters.length; ++i) ghostReward[attesters[i]] += credit.incentives().attestationReward;
        }
    }

    // ------------------------------------------------------------------
    // Actions
    // ------------------------------------------------------------------

    function warp(uint256 slots) external {
        uint64 slot = index.currentSlot() + uint64(bound(slots, 1, 5));
        vm.warp(uint256(genesis) + uint256(slot) * slotSeconds + 1);
    }

    function reportMissedSlots() external {
        vm.recordLogs();
        try index.reportMissedSlots() {
            _account(0, new bytes32[](0));
        } catch {
            vm.getRecordedLogs(); // a reverted call's logs are recorded too: drop them
        }
    }

    function advanceRound() external {
        vm.recordLogs();
        try index.advanceRound() {
            _account(0, new bytes32[](0));
        } catch {
            vm.getRecordedLogs();
        }
    }

    /// A commit by `who` (honest when it is the scheduled RPN) attested by `count` of the seated ATNs,
    /// plus an RPN when `withOutsider`.
    function commit(uint256 whoSeed, uint256 count, bool withOutsider) external {
        uint64 slot = index.currentSlot();
        (bytes32 scheduledId, address scheduled) = credit.rosterVersion() == 0 ? (bytes32(0), address(0)) : index.producerOf(slot);
        bytes32 whoId = insts[bound(whoSeed, 0, insts.length - 1)];
        if (whoSeed % 2 == 0 && scheduled != address(0)) whoId = scheduledId; // mostly honest
        (uint64 height, bytes32 prev) = index.head();
        IConsortiumIndex.BlockHeader memory h = IConsortiumIndex.BlockHeader({
            height: height + 1,
            prevHash: prev,
            timestamp: uint64(block.timestamp),
            slot: slot,
            producer: scheduledId,
            merkleRoot: 0,
            itemCount: 0,
            patientsHash: keccak256(""),
            bodyCid: bytes32(uint256(slot))
        });
        bytes32[] memory atn = credit.atnSet();
        count = bound(count, 0, atn.length);
        bytes32[] memory signers = new bytes32[](count + (withOutsider ? 1 : 0));
        for (uint256 i; i < count; ++i) signers[i] = atn[i];
        if (withOutsider) signers[count] = insts[insts.length - 1 - bound(whoSeed, 0, 2)];
        (bytes[] memory sigs, bytes32[] memory ordered) = _sorted(signers, index.headerDigest(h));
        uint256 needed = index.attestationQuorum();
        address caller = Keys.accountOf(whoId);
        vm.recordLogs();
        vm.prank(caller);
        try index.commitBlock(h, new bytes32[](0), sigs) {
            if (caller != scheduled) outOfTurn = true;
            uint256 n = committedSlots.length;
            if (n != 0 && committedSlots[n - 1] >= slot) outOfTurn = true;
            committedSlots.push(slot);
            if (ordered.length < needed) badAttesters = true;
            for (uint256 i; i < ordered.length; ++i) {
                (ICreditRegistry.SeatKind kind,) = credit.seatOf(ordered[i]);
                if (kind != ICreditRegistry.SeatKind.Atn) badAttesters = true;
            }
            _account(scheduledId, ordered);
        } catch {
            vm.getRecordedLogs(); // a reverted call's logs are recorded too: drop them
        }
    }

    function setWilling(uint256 seed, bool willing) external {
        vm.prank(Keys.accountOf(insts[bound(seed, 0, insts.length - 1)]));
        credit.setWilling(willing);
    }

    function suspend(uint256 seed, bool reinstate) external {
        bytes32 id = insts[bound(seed, 0, insts.length - 1)];
        if (reinstate) {
            vm.prank(gov);
            try reg.reinstate(id, "ok") {} catch {}
        } else {
            vm.prank(authority);
            try reg.suspend(id, "abnormal") {} catch {}
        }
    }

    function elect() external {
        vm.prank(gov);
        try credit.elect(insts) {
            (bool pending,,, bytes32[] memory rpn, bytes32[] memory atn) = credit.pendingRoster();
            if (!pending) (rpn, atn) = (credit.rpnSet(), credit.atnSet());
            _checkTopRanked(rpn, atn);
        } catch {}
    }

    function _checkTopRanked(bytes32[] memory rpn, bytes32[] memory atn) internal {
        bytes32[] memory seated = new bytes32[](rpn.length + atn.length);
        for (uint256 i; i < rpn.length; ++i) seated[i] = rpn[i];
        for (uint256 i; i < atn.length; ++i) seated[rpn.length + i] = atn[i];
        for (uint256 i; i < seated.length; ++i) {
            if (!credit.isEligible(seated[i])) badElection = true;
            if (i > 0) {
                uint256 a = credit.creditOf(seated[i - 1]);
                uint256 b = credit.creditOf(seated[i]);
                if (a < b || (a == b && seated[i - 1] > seated[i])) badElection = true;
            }
        }
        uint256 last = credit.creditOf(seated[seated.length - 1]);
        for (uint256 i; i < insts.length; ++i) {
            bool isSeated;
            for (uint256 j; j < seated.length; ++j) if (seated[j] == insts[i]) isSeated = true;
            if (!isSeated && credit.isEligible(insts[i]) && credit.creditOf(insts[i]) > last) badElection = true;
        }
    }

    function _sorted(bytes32[] memory ids, bytes32 digest) internal pure returns (bytes[] memory sigs, bytes32[] memory order) {
        uint256 n = ids.length;
        address[] memory who = new address[](n);
        order = new bytes32[](n);
        for (uint256 i; i < n; ++i) {
            (who[i], order[i]) = (Keys.accountOf(ids[i]), ids[i]);
            for (uint256 j = i; j > 0 && who[j] < who[j - 1]; --j) {
                (who[j], who[j - 1]) = (who[j - 1], who[j]);
                (order[j], order[j - 1]) = (order[j - 1], order[j]);
            }
        }
        sigs = new bytes[](n);
        for (uint256 i; i < n; ++i) sigs[i] = Keys.sign(order[i], digest);
    }
}

/// @title ConsortiumInvariants — scheduled producers, one block per slot, ATN quorums, listed credit paths,
/// top-ranked elections
contract ConsortiumInvariants is ConsortiumBase {
    ConsortiumHandler internal handler;

    function setUp() public override {
        super.setUp();
        elect();
        handler = new ConsortiumHandler(credit, index, reg, address(gov), nha, insts);
        targetContract(address(handler));
    }

    /// The handler's honest path commits (so the campaign exercises commits, not only refusals).
    function test_handlerCommitsAndAccounts() public {
        handler.commit(0, 4, false);
        handler.warp(1);
        handler.commit(2, 3, false);
        handler.commit(2, 3, false); // a second block in the slot is refused
        handler.warp(4);
        handler.reportMissedSlots();
        assertEq(handler.blocks(), 2);
        invariant_consortium();
    }

    function invariant_consortium() public view {
        assertFalse(handler.outOfTurn(), "only the scheduled producer commits, once per slot");
        assertFalse(handler.badAttesters(), "a quorum of distinct seated ATNs attested every block");
        assertFalse(handler.unlistedCredit(), "credit moves only through the listed paths");
        assertFalse(handler.badElection(), "elections seat the top-ranked eligible institutions");
        for (uint256 i; i < N_INST; ++i) {
            bytes32 id = insts[i];
            ICreditRegistry.Institution memory r = credit.institution(id);
            assertEq(r.rewardPoints, handler.ghostReward(id));
            assertEq(r.penaltyPoints, handler.ghostPenalty(id));
        }
        (uint64 height,) = index.head();
        assertEq(height, handler.blocks());
    }
}
