// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Test} from "../utils/Test.sol";
import {Keys} from "../utils/Keys.sol";
import {SlipFixture} from "../SlipLedger.t.sol";
import {SlipLedger} from "../../../contracts/SlipLedger.sol";
import {ISlipLedger} from "../../../contracts/interfaces/ISlipLedger.sol";

/// @notice Drives a SlipLedger with valid and forged certificates, re-submissions, forks and set changes.
contract SlipHandler is Test {
    bytes32 internal constant CHANGE_TYPEHASH =
        keccak256("ValidatorSetChange(uint64 epoch,uint64 fromHeight,address[] validators)");

    SlipLedger internal ledger;
    // ghost schedule: epoch e has labels _labels[e], first height _from[e]
    bytes32[][] internal _labels;
    uint64[] public fromHeight;
    bytes32[] public ghostHash; // index h-1: header hash committed at height h
    ISlipLedger.BlockHeader[] internal _headers;
    bool public forgedAccepted; // a header or change went through without a valid certificate
    bool public heightJumped; // the head moved by anything but +1 (or 0)
    bool public historyChanged; // a committed height changed its header

    constructor(SlipLedger ledger_, bytes32[] memory labels0) {
        ledger = ledger_;
        _labels.push(labels0);
        fromHeight.push(1);
    }

    function height() public view returns (uint64) {
        return uint64(ghostHash.length);
    }

    function epochAt(uint64 h) public view returns (uint64 e) {
        for (uint256 i = fromHeight.length; i > 0; --i) {
            if (fromHeight[i - 1] <= h) return uint64(i - 1);
        }
    }

    function setOf(uint64 e) public view returns (address[] memory set) {
        bytes32[] storage ls = _labels[e];
        set = new address[](ls.length);
        for (uint256 i; i < ls.length; ++i) set[i] = Keys.accountOf(ls[i]);
    }

    function _quorum(uint256 n) internal pure returns (uint256) {
        return (n + (n - 1) / 3 + 2) / 2;
    }

    function _qc(uint64 e, uint256 k, bytes32 digest) internal view returns (bytes memory idx, bytes memory sigs) {
        bytes32[] storage ls = _labels[e];
        for (uint256 i; i < k; ++i) {
            idx = bytes.concat(idx, bytes1(uint8(i)));
            sigs = bytes.concat(sigs, Keys.sign(ls[i], digest));
        }
    }

    function _header(uint64 h, uint64 viewNumber, bytes32 prev) internal view returns (ISlipLedger.BlockHeader memory) {
        return ISlipLedger.BlockHeader({
            height: h,
            seq: h + viewNumber,
            prevHash: prev,
            timestamp: uint64(block.timestamp * 1000),
            creator: address(this),
            merkleRoot: keccak256(abi.encode(h, viewNumber)),
            bodyCid: abi.encodePacked(h)
        });
    }

    /// @dev The certificate of `hdr` by a quorum of epoch `certEpoch`, forged as `attack` says (1: one
    /// signature short, 3: an outsider's signature last).
    function _certify(ISlipLedger.BlockHeader memory hdr, uint64 viewNumber, uint64 certEpoch, uint256 attack)
        internal
        view
        returns (bytes memory idx, bytes memory sigs)
    {
        bytes32 digest = ledger.commitDigest(ledger.hashHeader(hdr), viewNumber, hdr.seq);
        uint256 q = _quorum(_labels[certEpoch].length);
        (idx, sigs) = _qc(certEpoch, attack == 1 ? q - 1 : q, digest);
        if (attack == 3) {
            bytes memory forged = Keys.sign(bytes32("outsider"), digest);
            for (uint256 i; i < 65; ++i) sigs[sigs.length - 65 + i] = forged[i];
        }
    }

    function _prev() internal view returns (bytes32) {
        return ghostHash.length == 0 ? bytes32(0) : ghostHash[ghostHash.length - 1];
    }

    /// Commit the next header; `attack` 0 is honest, 1 one signature short, 2 a stale set, 3 an outsider's
    /// signature, 4 a wrong parent.
    function commit(uint64 viewNumber, uint256 attack, uint256 callerSeed) external {
        attack = bound(attack, 0, 4);
        uint64 h = height() + 1;
        ISlipLedger.BlockHeader memory hdr = _header(h, viewNumber, _prev());
        if (attack == 4) hdr.prevHash = keccak256("forged parent");
        uint64 e = epochAt(h);
        uint64 certEpoch = attack == 2 && e > 0 ? e - 1 : e;
        address[] memory set = setOf(certEpoch);
        (bytes memory idx, bytes memory sigs) = _certify(hdr, viewNumber, certEpoch, attack);
        bool honest = attack == 0 || (attack == 2 && e == 0);
        vm.prank(set[bound(callerSeed, 0, set.length - 1)]);
        try ledger.commitBlock(hdr, viewNumber, set, idx, sigs) {
            if (!honest) forgedAccepted = true;
            ghostHash.push(ledger.hashHeader(hdr));
            _headers.push(hdr);
        } catch {
            if (honest) forgedAccepted = true; // an honest certificate must go through: flag it too
        }
        _checkHead();
    }

    /// Commit the next `count` headers in one batch, certified by the set in force at the first one;
    /// `attack` as in `commit`, on the header at position `at`. A batch reaching the next epoch's first
    /// height is refused as a whole.
    function commitBatch(uint256 count, uint64 viewNumber, uint256 attack, uint256 at, uint256 callerSeed) external {
        count = bound(count, 1, 4);
        attack = bound(attack, 0, 4);
        at = bound(at, 0, count - 1);
        uint64 first = height() + 1;
        uint64 e = epochAt(first);
        uint64 certEpoch = attack == 2 && e > 0 ? e - 1 : e;
        ISlipLedger.BlockHeader[] memory hdrs = new ISlipLedger.BlockHeader[](count);
        ISlipLedger.Certificate[] memory certs = new ISlipLedger.Certificate[](count);
        bytes32 prev = _prev();
        for (uint256 i; i < count; ++i) {
            hdrs[i] = _header(first + uint64(i), viewNumber, prev);
            if (attack == 4 && i == at) hdrs[i].prevHash = keccak256("forged parent");
            (bytes memory idx, bytes memory sigs) = _certify(hdrs[i], viewNumber, certEpoch, i == at ? attack : 0);
            certs[i] = ISlipLedger.Certificate(viewNumber, idx, sigs);
            prev = ledger.hashHeader(hdrs[i]);
        }
        bool crosses = epochAt(first + uint64(count) - 1) != e;
        bool honest = !crosses && (attack == 0 || (attack == 2 && e == 0));
        address[] memory set = setOf(certEpoch);
        vm.prank(set[bound(callerSeed, 0, set.length - 1)]);
        try ledger.commitBlocks(hdrs, certs, set) {
            if (!honest) forgedAccepted = true;
            for (uint256 i; i < count; ++i) {
                ghostHash.push(ledger.hashHeader(hdrs[i]));
                _headers.push(hdrs[i]);
            }
        } catch {
            if (honest) forgedAccepted = true;
        }
        _checkHead();
    }

    /// Re-submit an old header (a no-op) or a fork of it (refused).
    function resubmit(uint256 hSeed, bool fork) external {
        if (_headers.length == 0) return;
        uint256 i = bound(hSeed, 0, _headers.length - 1);
        ISlipLedger.BlockHeader memory hdr = _headers[i];
        if (fork) hdr.merkleRoot = keccak256("fork");
        address[] memory set = setOf(epochAt(hdr.height));
        vm.prank(set[0]);
        try ledger.commitBlock(hdr, 0, set, "", "") {
            if (fork) historyChanged = true;
        } catch {
            if (!fork) historyChanged = true;
        }
        _checkHead();
    }

    /// Schedule the next validator set, certified by the latest scheduled set and by the new one.
    function changeSet(uint256 size, uint256 gap) external {
        uint64 latest = uint64(fromHeight.length - 1);
        if (latest >= 6) return;
        uint64 from = (height() > fromHeight[latest] ? height() : fromHeight[latest]) + 1 + uint64(bound(gap, 0, 3));
        size = bound(size, 4, 7);
        bytes32[] memory ls = new bytes32[](size);
        address[] memory set = new address[](size);
        for (uint256 i; i < size; ++i) {
            ls[i] = keccak256(abi.encode("epoch", latest + 1, i));
            set[i] = Keys.accountOf(ls[i]);
        }
        ISlipLedger.ValidatorSetChange memory c = ISlipLedger.ValidatorSetChange(latest + 1, from, set);
        bytes32 digest = keccak256(
            abi.encodePacked(
                "\x19\x01",
                ledger.domainSeparator(),
                keccak256(abi.encode(CHANGE_TYPEHASH, c.epoch, c.fromHeight, keccak256(abi.encodePacked(set))))
            )
        );
        address[] memory cur = setOf(latest);
        (bytes memory i1, bytes memory s1) = _qc(latest, _quorum(cur.length), digest);
        _labels.push(ls);
        (bytes memory i2, bytes memory s2) = _qc(latest + 1, _quorum(size), digest);
        vm.prank(cur[0]);
        ledger.changeValidators(c, cur, ISlipLedger.SetSignatures(i1, s1), ISlipLedger.SetSignatures(i2, s2));
        fromHeight.push(from);
    }

    function _checkHead() internal {
        (uint64 h,) = ledger.head();
        if (h != height()) heightJumped = true;
    }

    function epochs() external view returns (uint256) {
        return fromHeight.length;
    }
}

/// @title SlipLedgerInvariants — height grows by one; every header certified by the set of its height; no forks
contract SlipLedgerInvariants is SlipFixture {
    SlipHandler internal handler;

    function setUp() public override {
        super.setUp();
        handler = new SlipHandler(ledger, labels);
        targetContract(address(handler));
    }

    /// The handler's honest path commits and its attacks are refused.
    function test_handlerCommitsHonestHeadersOnly() public {
        for (uint256 attack; attack < 5; ++attack) handler.commit(1, attack, 0);
        handler.changeSet(5, 0);
        handler.commit(2, 0, 1);
        handler.commit(3, 2, 0); // the old set after the change
        handler.resubmit(0, false);
        handler.resubmit(0, true);
        assertEq(handler.height(), 3); // attacks 0 and 2 (epoch 0: the stale set is the set) at 1-2, the new set at 3
        invariant_ledger();
    }

    /// Batches: honest ones commit, a forged header anywhere or a batch across a set change is refused whole.
    function test_handlerBatchesHonestHeadersOnly() public {
        handler.commitBatch(3, 1, 0, 0, 0);
        assertEq(handler.height(), 3);
        for (uint256 attack = 1; attack < 5; ++attack) handler.commitBatch(3, 1, attack, attack % 3, 1);
        assertEq(handler.height(), 6, "attack 2 at epoch 0 is honest");
        handler.changeSet(4, 1); // epoch 1 from height 8
        handler.commitBatch(2, 2, 0, 0, 0); // 7 and 8: crosses the change
        assertEq(handler.height(), 6);
        handler.commitBatch(1, 2, 0, 0, 0);
        handler.commitBatch(4, 2, 0, 0, 2);
        handler.commitBatch(2, 3, 2, 1, 0); // the old set after the change
        assertEq(handler.height(), 11);
        invariant_ledger();
    }

    function invariant_ledger() public view {
        assertFalse(handler.forgedAccepted(), "only quorum certificates of the set in force commit");
        assertFalse(handler.heightJumped(), "the head moves by one");
        assertFalse(handler.historyChanged(), "no second header at a height");
        uint64 h = handler.height();
        (uint64 head,) = ledger.head();
        assertEq(head, h);
        // the first height and the last eight (the rest was checked when it was among them)
        for (uint64 i = 1; i <= h; i = (i == 1 && h > 9) ? h - 7 : i + 1) {
            assertEq(ledger.headerHashAt(i), handler.ghostHash(i - 1));
            (uint64 e, uint64 from, address[] memory members) = ledger.validatorSetAt(i);
            assertEq(e, handler.epochAt(i));
            assertEq(from, handler.fromHeight(e));
            assertEq(members, handler.setOf(e));
        }
        (uint64 latest,) = ledger.latestEpoch();
        assertEq(latest + 1, handler.epochs());
        assertEq(ledger.epoch(), handler.epochAt(h + 1));
    }
}
