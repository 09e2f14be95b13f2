// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Base} from "./Base.sol";
import {CreditRegistry} from "../../../contracts/CreditRegistry.sol";
import {ConsortiumIndex} from "../../../contracts/ConsortiumIndex.sol";
import {ICreditRegistry} from "../../../contracts/interfaces/ICreditRegistry.sol";
import {IConsortiumIndex} from "../../../contracts/interfaces/IConsortiumIndex.sol";
import {IIdentityRegistry} from "../../../contracts/interfaces/IIdentityRegistry.sol";

/// @notice A stand-in clock: its `credit()` is the registry and its round is set by the test.
contract MockClock {
    ICreditRegistry public credit;
    uint64 public currentRound;

    constructor(ICreditRegistry credit_) {
        credit = credit_;
    }

    function setRound(uint64 round_) external {
        currentRound = round_;
    }

    function tick() external {
        credit.advanceRound();
    }
}

/// @title ConsortiumBase — 12 hospitals ranked by credit, K = 3 RPN, M = 4 ATN, reserve 3, quorum 3
/// @notice As tests/consortium (smaller): institution `i` has every dimension 9 000 − 500·i, so
/// the ranking is i0 > i1 > … ; the first election seats i0–i2 as RPN and i3–i6 as ATN.
abstract contract ConsortiumBase is Base {
    uint256 internal constant N_INST = 12;
    uint256 internal constant K = 3;
    uint256 internal constant M = 4;
    uint256 internal constant RESERVE = 3;
    uint256 internal constant QUORUM = 3;
    uint64 internal constant SLOT = 60;

    CreditRegistry internal credit;
    ConsortiumIndex internal index;
    bytes32[] internal insts;
    uint64 internal genesis;

    function setUp() public virtual override {
        super.setUp();
        credit = new CreditRegistry(reg, K, M, RESERVE, weights(), incentives());
        genesis = uint64(block.timestamp);
        index = new ConsortiumIndex(credit, genesis, SLOT, QUORUM);
        vm.startPrank(address(gov));
        credit.setClock(address(index));
        credit.setReporter(address(index), true);
        vm.stopPrank();
        for (uint256 i; i < N_INST; ++i) {
            bytes32 id = instId(i);
            insts.push(id);
            register(id, IIdentityRegistry.Role.Hospital, 0);
            vm.prank(address(gov));
            credit.registerInstitution(id, dims(9000 - 500 * i));
            vm.prank(accountOf(id));
            credit.setWilling(true);
        }
    }

    function instId(uint256 i) internal pure returns (bytes32) {
        return bytes32(abi.encodePacked("inst", uint8(48 + i / 10), uint8(48 + i % 10)));
    }

    function weights() internal pure returns (ICreditRegistry.Weights memory) {
        return ICreditRegistry.Weights(5000, 3000, 2000);
    }

    function incentives() internal pure returns (ICreditRegistry.Incentives memory) {
        return ICreditRegistry.Incentives({
            blockReward: 10,
            attestationReward: 5,
            dataServedReward: 1,
            invalidBlockPenalty: 3000,
            wrongAttestationPenalty: 2000,
            missedSlotPenalty: 100,
            removalThreshold: 1000
        });
    }

    function dims(uint256 d) internal pure returns (ICreditRegistry.Dimensions memory) {
        return ICreditRegistry.Dimensions(uint16(d), uint16(d), uint16(d));
    }

    /// @dev The hint an honest off-chain ranker sends: every institution by credit (the registry repairs it).
    function elect() internal {
        vm.prank(address(gov));
        credit.elect(insts);
    }

    // ------------------------------------------------------------------
    // Slots and blocks
    // ------------------------------------------------------------------

    function toSlot(uint64 slot) internal {
        vm.warp(uint256(genesis) + uint256(slot) * SLOT + 1);
    }

    function blockHeader(uint64 slot, bytes32[] memory patients)
        internal
        view
        returns (IConsortiumIndex.BlockHeader memory h)
    {
        (uint64 height, bytes32 prev) = index.head();
        (bytes32 producer,) = index.producerOf(slot);
        h = IConsortiumIndex.BlockHeader({
            height: height + 1,
            prevHash: prev,
            timestamp: uint64(block.timestamp),
            slot: slot,
            producer: producer,
            merkleRoot: keccak256(abi.encode("root", slot)),
            itemCount: uint32(patients.length),
            patientsHash: keccak256(abi.encodePacked(patients)),
            bodyCid: keccak256(abi.encode("cid", slot))
        });
    }

    /// @dev Signatures of `digest` by `ids`' keys, sorted by ascending signer address.
    function sortedSigs(bytes32[] memory ids, bytes32 digest) internal pure returns (bytes[] memory sigs) {
        uint256 n = ids.length;
        address[] memory who = new address[](n);
        bytes32[] memory order = new bytes32[](n);
        for (uint256 i; i < n; ++i) {
            (who[i], order[i]) = (accountOf(ids[i]), ids[i]);
            for (uint256 j = i; j > 0 && who[j] < who[j - 1]; --j) {
                (who[j], who[j - 1]) = (who[j - 1], who[j]);
                (order[j], order[j - 1]) = (order[j - 1], order[j]);
            }
        }
        sigs = new bytes[](n);
        for (uint256 i; i < n; ++i) sigs[i] = signBy(order[i], digest);
    }

    function firstAtns(uint256 count) internal view returns (bytes32[] memory ids) {
        bytes32[] memory atn = credit.atnSet();
        ids = new bytes32[](count);
        for (uint256 i; i < count; ++i) ids[i] = atn[i];
    }

    /// @dev The scheduled producer commits an empty-patient block in the current slot, attested by `q` ATNs.
    function commitNow(uint256 q) internal returns (IConsortiumIndex.BlockHeader memory h) {
        uint64 slot = index.currentSlot();
        h = blockHeader(slot, new bytes32[](0));
        bytes[] memory sigs = sortedSigs(firstAtns(q), index.headerDigest(h));
        (, address producer) = index.producerOf(slot);
        vm.prank(producer);
        index.commitBlock(h, new bytes32[](0), sigs);
    }
}
