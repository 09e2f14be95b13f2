// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Base} from "./utils/Base.sol";
import {SlipLedger} from "../../contracts/SlipLedger.sol";
import {ISlipLedger} from "../../contracts/interfaces/ISlipLedger.sol";

/// @title SlipFixture — a SlipLedger with validator sets whose keys the test holds
abstract contract SlipFixture is Base {
    bytes32 internal constant VALIDATOR_SET_CHANGE_TYPEHASH =
        keccak256("ValidatorSetChange(uint64 epoch,uint64 fromHeight,address[] validators)");

    SlipLedger internal ledger;
    bytes32[] internal labels; // epoch 0
    address[] internal set0;

    function setUp() public virtual override {
        super.setUp();
        (labels, set0) = makeSet("v", 4);
        ledger = new SlipLedger(set0);
    }

    function makeSet(string memory prefix, uint256 n) internal pure returns (bytes32[] memory ls, address[] memory set) {
        ls = new bytes32[](n);
        set = new address[](n);
        for (uint256 i; i < n; ++i) {
            ls[i] = keccak256(abi.encodePacked(prefix, i));
            set[i] = accountOf(ls[i]);
        }
    }

    function quorumOf(uint256 n) internal pure returns (uint256) {
        return (n + (n - 1) / 3 + 2) / 2;
    }

    function header(uint64 height, bytes32 prev) internal view returns (ISlipLedger.BlockHeader memory h) {
        h = ISlipLedger.BlockHeader({
            height: height,
            seq: height + 10,
            prevHash: prev,
            timestamp: uint64(block.timestamp) * 1000,
            creator: set0[0],
            merkleRoot: keccak256(abi.encode("root", height)),
            bodyCid: abi.encodePacked("bafy", height)
        });
    }

    /// @dev Signatures of the first `k` members of a set (ascending indexes) over `digest`.
    function qc(bytes32[] memory ls, uint256 k, bytes32 digest) internal pure returns (bytes memory idx, bytes memory sigs) {
        for (uint256 i; i < k; ++i) {
            idx = bytes.concat(idx, bytes1(uint8(i)));
            sigs = bytes.concat(sigs, signBy(ls[i], digest));
        }
    }

    function commit(ISlipLedger.BlockHeader memory h, bytes32[] memory ls, address[] memory set) internal {
        bytes32 digest = ledger.commitDigest(ledger.hashHeader(h), 0, h.seq);
        (bytes memory idx, bytes memory sigs) = qc(ls, quorumOf(set.length), digest);
        vm.prank(set[0]);
        ledger.commitBlock(h, 0, set, idx, sigs);
    }

    function certificate(ISlipLedger.BlockHeader memory h, bytes32[] memory ls, uint256 k, uint64 viewNumber)
        internal
        view
        returns (ISlipLedger.Certificate memory c)
    {
        (bytes memory idx, bytes memory sigs) = qc(ls, k, ledger.commitDigest(ledger.hashHeader(h), viewNumber, h.seq));
        c = ISlipLedger.Certificate(viewNumber, idx, sigs);
    }

    /// @dev `count` consecutive headers on top of the head, each certified by a quorum of `ls` (a set of `n`).
    function batch(uint256 count, bytes32[] memory ls, uint256 n)
        internal
        view
        returns (ISlipLedger.BlockHeader[] memory hs, ISlipLedger.Certificate[] memory cs)
    {
        (uint64 height, bytes32 prev) = ledger.head();
        hs = new ISlipLedger.BlockHeader[](count);
        cs = new ISlipLedger.Certificate[](count);
        for (uint256 i; i < count; ++i) {
            hs[i] = header(height + 1 + uint64(i), prev);
            cs[i] = certificate(hs[i], ls, quorumOf(n), uint64(i % 3));
            prev = ledger.hashHeader(hs[i]);
        }
    }

    /// @dev Commit `count` headers on top of the head with the set `ls`/`set`.
    function extend(uint256 count, bytes32[] memory ls, address[] memory set) internal {
        for (uint256 i; i < count; ++i) {
            (uint64 height, bytes32 headHash) = ledger.head();
            commit(header(height + 1, headHash), ls, set);
        }
    }

    function changeDigest(ISlipLedger.ValidatorSetChange memory c) internal view returns (bytes32) {
        bytes32 structHash = keccak256(
            abi.encode(VALIDATOR_SET_CHANGE_TYPEHASH, c.epoch, c.fromHeight, keccak256(abi.encodePacked(c.validators)))
        );
        return keccak256(abi.encodePacked("\x19\x01", ledger.domainSeparator(), structHash));
    }

    function change(
        uint64 epoch_,
        uint64 fromHeight,
        bytes32[] memory curLabels,
        address[] memory cur,
        bytes32[] memory newLabels,
        address[] memory next
    ) internal {
        ISlipLedger.ValidatorSetChange memory c = ISlipLedger.ValidatorSetChange(epoch_, fromHeight, next);
        bytes32 d = changeDigest(c);
        (bytes memory i1, bytes memory s1) = qc(curLabels, quorumOf(cur.length), d);
        (bytes memory i2, bytes memory s2) = qc(newLabels, quorumOf(next.length), d);
        vm.prank(cur[0]);
        ledger.changeValidators(c, cur, ISlipLedger.SetSignatures(i1, s1), ISlipLedger.SetSignatures(i2, s2));
    }
}

/// @title SlipLedgerTest — PBFT quorum certificates, height order, validator-set epochs, slip proofs
contract SlipLedgerTest is SlipFixture {
    // ------------------------------------------------------------------
    // constructor
    // ------------------------------------------------------------------

    function test_constructor_recordsEpochZero() public {
        vm.expectEmit();
        emit ISlipLedger.ValidatorSetChanged(0, 1, set0);
        SlipLedger l = new SlipLedger(set0);
        assertEq(l.validators(), set0);
        assertEq(l.epoch(), 0);
        assertEq(l.quorum(), 3);
        assertTrue(l.isValidator(set0[3]));
        assertFalse(l.isValidator(address(this)));
        (uint64 e, uint64 from) = l.latestEpoch();
        assertEq(e, 0);
        assertEq(from, 1);
        (uint64 h, bytes32 hh) = l.head();
        assertEq(h, 0);
        assertEq(hh, bytes32(0));
    }

    function test_constructor_rejectsBadSets() public {
        (, address[] memory three) = makeSet("t", 3);
        vm.expectRevert(abi.encodeWithSelector(ISlipLedger.SlipLedgerInvalidValidatorSet.selector, 3));
        new SlipLedger(three);
        (, address[] memory big) = makeSet("b", 257);
        vm.expectRevert(abi.encodeWithSelector(ISlipLedger.SlipLedgerTooManyValidators.selector, 257, 256));
        new SlipLedger(big);
        address[] memory dup = new address[](4);
        (dup[0], dup[1], dup[2], dup[3]) = (set0[0], set0[1], set0[2], set0[1]);
        vm.expectRevert(abi.encodeWithSelector(ISlipLedger.SlipLedgerInvalidValidatorSet.selector, 4));
        new SlipLedger(dup);
        dup[3] = address(0);
        vm.expectRevert(abi.encodeWithSelector(ISlipLedger.SlipLedgerInvalidValidatorSet.selector, 4));
        new SlipLedger(dup);
    }

    // ------------------------------------------------------------------
    // commitBlock
    // ------------------------------------------------------------------

    function test_commit_storesAndEmits() public {
        ISlipLedger.BlockHeader memory h = header(1, 0);
        bytes32 hh = ledger.hashHeader(h);
        vm.expectEmit(address(ledger));
        emit ISlipLedger.BlockCommitted(1, hh);
        commit(h, labels, set0);
        (uint64 height, bytes32 headHash) = ledger.head();
        assertEq(height, 1);
        assertEq(headHash, hh);
        assertEq(ledger.headerHashAt(1), hh);
        commit(header(2, hh), labels, set0);
        assertEq(ledger.headerHashAt(2), ledger.hashHeader(header(2, hh)));
    }

    function test_commit_resubmissionIsNoOpAndForkReverts() public {
        ISlipLedger.BlockHeader memory h = header(1, 0);
        commit(h, labels, set0);
        vm.recordLogs();
        commit(h, labels, set0); // idempotent: nothing emitted
        assertEq(vm.getRecordedLogs().length, 0);
        ISlipLedger.BlockHeader memory fork = header(1, 0);
        fork.merkleRoot = bytes32("other");
        vm.expectRevert(
            abi.encodeWithSelector(ISlipLedger.SlipLedgerForkedHeader.selector, 1, ledger.hashHeader(h), ledger.hashHeader(fork))
        );
        vm.prank(set0[1]);
        ledger.commitBlock(fork, 0, set0, "", "");
    }

    function test_commit_outOfOrder() public {
        vm.startPrank(set0[0]);
        vm.expectRevert(abi.encodeWithSelector(ISlipLedger.SlipLedgerOutOfOrder.selector, 1, 2));
        ledger.commitBlock(header(2, 0), 0, set0, "", "");
        vm.expectRevert(abi.encodeWithSelector(ISlipLedger.SlipLedgerOutOfOrder.selector, 1, 0));
        ledger.commitBlock(header(0, 0), 0, set0, "", "");
        vm.stopPrank();
    }

    function test_commit_wrongSetAndCaller() public {
        (, address[] memory other) = makeSet("o", 4);
        bytes32 expected = keccak256(abi.encodePacked(set0));
        vm.expectRevert(
            abi.encodeWithSelector(ISlipLedger.SlipLedgerUnknownValidatorSet.selector, keccak256(abi.encodePacked(other)), expected)
        );
        vm.prank(other[0]);
        ledger.commitBlock(header(1, 0), 0, other, "", "");
        vm.expectRevert(abi.encodeWithSelector(ISlipLedger.SlipLedgerNotValidator.selector, address(this)));
        ledger.commitBlock(header(1, 0), 0, set0, "", "");
        // a resubmission is checked the same way
        commit(header(1, 0), labels, set0);
        vm.expectRevert(abi.encodeWithSelector(ISlipLedger.SlipLedgerNotValidator.selector, address(this)));
        ledger.commitBlock(header(1, 0), 0, set0, "", "");
    }

    function test_commit_prevHashMismatch() public {
        commit(header(1, 0), labels, set0);
        vm.expectRevert(
            abi.encodeWithSelector(
                ISlipLedger.SlipLedgerPrevHashMismatch.selector, 2, ledger.headerHashAt(1), bytes32("wrong")
            )
        );
        vm.prank(set0[0]);
        ledger.commitBlock(header(2, bytes32("wrong")), 0, set0, "", "");
    }

    function test_commit_certificateAttacks() public {
        ISlipLedger.BlockHeader memory h = header(1, 0);
        bytes32 digest = ledger.commitDigest(ledger.hashHeader(h), 0, h.seq);
        bytes memory s0 = signBy(labels[0], digest);
        bytes memory s1 = signBy(labels[1], digest);
        bytes memory s2 = signBy(labels[2], digest);
        vm.startPrank(set0[0]);

        vm.expectRevert(abi.encodeWithSelector(ISlipLedger.SlipLedgerMalformedSignatures.selector, 3, 130));
        ledger.commitBlock(h, 0, set0, hex"000102", bytes.concat(s0, s1));
        vm.expectRevert(abi.encodeWithSelector(ISlipLedger.SlipLedgerInsufficientSignatures.selector, 2, 3));
        ledger.commitBlock(h, 0, set0, hex"0001", bytes.concat(s0, s1));
        vm.expectRevert(abi.encodeWithSelector(ISlipLedger.SlipLedgerDuplicateSignature.selector, set0[1]));
        ledger.commitBlock(h, 0, set0, hex"000101", bytes.concat(s0, s1, s1));
        vm.expectRevert(abi.encodeWithSelector(ISlipLedger.SlipLedgerUnsortedSignatures.selector, 2, 1));
        ledger.commitBlock(h, 0, set0, hex"000201", bytes.concat(s0, s2, s1));
        vm.expectRevert(abi.encodeWithSelector(ISlipLedger.SlipLedgerSignerIndexOutOfRange.selector, 4, 4));
        ledger.commitBlock(h, 0, set0, hex"000104", bytes.concat(s0, s1, s2));
        // a signature listed for the wrong validator
        vm.expectRevert(abi.encodeWithSelector(ISlipLedger.SlipLedgerInvalidSignature.selector, set0[3], set0[2]));
        ledger.commitBlock(h, 0, set0, hex"000103", bytes.concat(s0, s1, s2));
        // an outsider's key
        bytes32 outsider = bytes32("outsider");
        vm.expectRevert(abi.encodeWithSelector(ISlipLedger.SlipLedgerInvalidSignature.selector, set0[2], accountOf(outsider)));
        ledger.commitBlock(h, 0, set0, hex"000102", bytes.concat(s0, s1, signBy(outsider, digest)));
        // signatures of another view do not certify this one
        vm.expectRevert();
        ledger.commitBlock(h, 1, set0, hex"000102", bytes.concat(s0, s1, s2));
        // garbage (unrecoverable) signature
        vm.expectRevert(abi.encodeWithSelector(ISlipLedger.SlipLedgerInvalidSignature.selector, set0[2], address(0)));
        ledger.commitBlock(h, 0, set0, hex"000102", bytes.concat(s0, s1, new bytes(65)));

        ledger.commitBlock(h, 0, set0, hex"000102", bytes.concat(s0, s1, s2));
        vm.stopPrank();
    }

    /// Any quorum-sized, ascending subset of any set size certifies; one signature fewer does not.
    function testFuzz_commit_quorumOfAnySetSize(uint256 n, uint256 skip) public {
        n = bound(n, 4, 40);
        (bytes32[] memory ls, address[] memory set) = makeSet("f", n);
        SlipLedger l = new SlipLedger(set);
        uint256 q = quorumOf(n);
        assertEq(l.quorum(), q);
        assertGt(2 * q, n + (n - 1) / 3); // two quorums overlap in f+1
        skip = bound(skip, 0, n - q); // leave out `skip` leading members
        ISlipLedger.BlockHeader memory h = header(1, 0);
        bytes32 digest = l.commitDigest(l.hashHeader(h), 7, h.seq);
        bytes memory idx;
        bytes memory sigs;
        for (uint256 i = skip; i < skip + q; ++i) {
            idx = bytes.concat(idx, bytes1(uint8(i)));
            sigs = bytes.concat(sigs, signBy(ls[i], digest));
        }
        vm.startPrank(set[n - 1]);
        vm.expectRevert(abi.encodeWithSelector(ISlipLedger.SlipLedgerInsufficientSignatures.selector, q - 1, q));
        l.commitBlock(h, 7, set, _head(idx, q - 1), _head(sigs, (q - 1) * 65));
        l.commitBlock(h, 7, set, idx, sigs);
        vm.stopPrank();
        (uint64 height,) = l.head();
        assertEq(height, 1);
    }

    function _head(bytes memory b, uint256 len) private pure returns (bytes memory out) {
        out = new bytes(len);
        for (uint256 i; i < len; ++i) out[i] = b[i];
    }

    function testFuzz_hashHeader_bindsEveryField(uint64 height, uint64 seq, bytes32 prev, uint64 ts, bytes32 root) public view {
        ISlipLedger.BlockHeader memory h = ISlipLedger.BlockHeader(height, seq, prev, ts, set0[1], root, "cid");
        bytes32 a = ledger.hashHeader(h);
        h.seq = seq ^ 1;
        assertTrue(ledger.hashHeader(h) != a);
        h.seq = seq;
        h.bodyCid = "cid2";
        assertTrue(ledger.hashHeader(h) != a);
    }

    // ------------------------------------------------------------------
    // commitBlocks
    // ------------------------------------------------------------------

    function test_commitBlocks_storesAndEmitsEach() public {
        extend(1, labels, set0);
        (ISlipLedger.BlockHeader[] memory hs, ISlipLedger.Certificate[] memory cs) = batch(4, labels, 4);
        for (uint256 i; i < 4; ++i) {
            vm.expectEmit(address(ledger));
            emit ISlipLedger.BlockCommitted(hs[i].height, ledger.hashHeader(hs[i]));
        }
        vm.prank(set0[2]);
        ledger.commitBlocks(hs, cs, set0);
        (uint64 height, bytes32 headHash) = ledger.head();
        assertEq(height, 5);
        assertEq(headHash, ledger.hashHeader(hs[3]));
        for (uint256 i; i < 4; ++i) assertEq(ledger.headerHashAt(hs[i].height), ledger.hashHeader(hs[i]));
        // a batch of one is a commitBlock
        (hs, cs) = batch(1, labels, 4);
        vm.prank(set0[0]);
        ledger.commitBlocks(hs, cs, set0);
        (height,) = ledger.head();
        assertEq(height, 6);
    }

    /// @dev SlipLedger's storage slot 3 holds the head hint in its low 8 bytes (`forge inspect SlipLedger storageLayout`).
    function headHint() internal view returns (uint64) {
        return uint64(uint256(vm.load(address(ledger), bytes32(uint256(3)))));
    }

    function test_headHint_movesEveryIntervalHeights() public {
        extend(255, labels, set0);
        assertEq(headHint(), 0);
        extend(1, labels, set0); // height 256: a single commit moves it
        assertEq(headHint(), 256);
        extend(250, labels, set0); // 506
        assertEq(headHint(), 256);
        (ISlipLedger.BlockHeader[] memory hs, ISlipLedger.Certificate[] memory cs) = batch(8, labels, 4);
        vm.prank(set0[1]);
        ledger.commitBlocks(hs, cs, set0); // 507 … 514 passes 512: the batch moves it to its last height
        assertEq(headHint(), 514);
        (hs, cs) = batch(8, labels, 4);
        vm.prank(set0[1]);
        ledger.commitBlocks(hs, cs, set0); // 515 … 522: no multiple of 256 inside
        assertEq(headHint(), 514);
        (uint64 height, bytes32 headHash) = ledger.head();
        assertEq(height, 522);
        assertEq(headHash, ledger.hashHeader(hs[7]));
    }

    function test_commitBlocks_badCertificateInTheMiddleRevertsTheBatch() public {
        (ISlipLedger.BlockHeader[] memory hs, ISlipLedger.Certificate[] memory cs) = batch(3, labels, 4);
        ISlipLedger.Certificate memory good = cs[1];
        // an outsider's key in place of validator 2
        bytes32 digest = ledger.commitDigest(ledger.hashHeader(hs[1]), 1, hs[1].seq);
        bytes32 outsider = bytes32("outsider");
        (, bytes memory sigs) = qc(labels, 2, digest);
        cs[1] = ISlipLedger.Certificate(1, hex"000102", bytes.concat(sigs, signBy(outsider, digest)));
        vm.startPrank(set0[0]);
        vm.expectRevert(abi.encodeWithSelector(ISlipLedger.SlipLedgerInvalidSignature.selector, set0[2], accountOf(outsider)));
        ledger.commitBlocks(hs, cs, set0);
        // one signature short
        cs[1] = ISlipLedger.Certificate(1, hex"0001", sigs);
        vm.expectRevert(abi.encodeWithSelector(ISlipLedger.SlipLedgerInsufficientSignatures.selector, 2, 3));
        ledger.commitBlocks(hs, cs, set0);
        // header 1's certificate for header 2: it signs another header
        cs[1] = cs[0];
        vm.expectRevert();
        ledger.commitBlocks(hs, cs, set0);
        // the certificate of another view than the one it claims
        cs[1] = ISlipLedger.Certificate(7, good.signerIndexes, good.signatures);
        vm.expectRevert();
        ledger.commitBlocks(hs, cs, set0);
        (uint64 height,) = ledger.head();
        assertEq(height, 0, "nothing of a refused batch is committed");
        cs[1] = good;
        ledger.commitBlocks(hs, cs, set0);
        vm.stopPrank();
        (height,) = ledger.head();
        assertEq(height, 3);
    }

    function test_commitBlocks_nonConsecutiveHeaders() public {
        (ISlipLedger.BlockHeader[] memory hs, ISlipLedger.Certificate[] memory cs) = batch(3, labels, 4);
        vm.startPrank(set0[0]);
        // a gap: 1, 3
        ISlipLedger.BlockHeader[] memory gap = new ISlipLedger.BlockHeader[](2);
        ISlipLedger.Certificate[] memory gapCs = new ISlipLedger.Certificate[](2);
        (gap[0], gap[1], gapCs[0], gapCs[1]) = (hs[0], hs[2], cs[0], cs[2]);
        vm.expectRevert(abi.encodeWithSelector(ISlipLedger.SlipLedgerOutOfOrder.selector, 2, 3));
        ledger.commitBlocks(gap, gapCs, set0);
        // not starting at head + 1
        (gap[0], gap[1], gapCs[0], gapCs[1]) = (hs[1], hs[2], cs[1], cs[2]);
        vm.expectRevert(abi.encodeWithSelector(ISlipLedger.SlipLedgerOutOfOrder.selector, 1, 2));
        ledger.commitBlocks(gap, gapCs, set0);
        // descending
        (gap[0], gap[1], gapCs[0], gapCs[1]) = (hs[0], hs[0], cs[0], cs[0]);
        vm.expectRevert(abi.encodeWithSelector(ISlipLedger.SlipLedgerOutOfOrder.selector, 2, 1));
        ledger.commitBlocks(gap, gapCs, set0);
        // consecutive heights that do not link: header 2 names another parent (certified as such)
        hs[1].prevHash = bytes32("elsewhere");
        cs[1] = certificate(hs[1], labels, 3, 0);
        vm.expectRevert(
            abi.encodeWithSelector(
                ISlipLedger.SlipLedgerPrevHashMismatch.selector, 2, ledger.hashHeader(hs[0]), bytes32("elsewhere")
            )
        );
        ledger.commitBlocks(hs, cs, set0);
        vm.stopPrank();
    }

    function test_commitBlocks_emptyOrMismatchedBatch() public {
        (ISlipLedger.BlockHeader[] memory hs, ISlipLedger.Certificate[] memory cs) = batch(2, labels, 4);
        vm.startPrank(set0[0]);
        vm.expectRevert(abi.encodeWithSelector(ISlipLedger.SlipLedgerEmptyBatch.selector));
        ledger.commitBlocks(new ISlipLedger.BlockHeader[](0), new ISlipLedger.Certificate[](0), set0);
        ISlipLedger.Certificate[] memory one = new ISlipLedger.Certificate[](1);
        one[0] = cs[0];
        vm.expectRevert(abi.encodeWithSelector(ISlipLedger.SlipLedgerBatchMismatch.selector, 2, 1));
        ledger.commitBlocks(hs, one, set0);
        vm.stopPrank();
    }

    function test_commitBlocks_mustNotCrossAValidatorSetChange() public {
        (bytes32[] memory l1, address[] memory set1) = makeSet("w", 5);
        change(1, 3, labels, set0, l1, set1);
        (ISlipLedger.BlockHeader[] memory hs, ISlipLedger.Certificate[] memory cs) = batch(3, labels, 4);
        vm.expectRevert(
            abi.encodeWithSelector(
                ISlipLedger.SlipLedgerUnknownValidatorSet.selector, keccak256(abi.encodePacked(set0)), keccak256(abi.encodePacked(set1))
            )
        );
        vm.prank(set0[0]);
        ledger.commitBlocks(hs, cs, set0);
        (uint64 height,) = ledger.head();
        assertEq(height, 0);
        // split at the change: heights 1-2 by the old set, 3-4 by the new one
        (hs, cs) = batch(2, labels, 4);
        vm.prank(set0[0]);
        ledger.commitBlocks(hs, cs, set0);
        (hs, cs) = batch(2, l1, 5);
        vm.expectRevert(abi.encodeWithSelector(ISlipLedger.SlipLedgerNotValidator.selector, set0[3]));
        vm.prank(set0[3]);
        ledger.commitBlocks(hs, cs, set1);
        vm.prank(set1[4]);
        ledger.commitBlocks(hs, cs, set1);
        assertEq(ledger.epoch(), 1);
        (uint64 se,,) = ledger.validatorSetAt(4);
        assertEq(se, 1);
    }

    function test_commitBlocks_replayedHeaders() public {
        (ISlipLedger.BlockHeader[] memory hs, ISlipLedger.Certificate[] memory cs) = batch(2, labels, 4);
        vm.startPrank(set0[0]);
        ledger.commitBlocks(hs, cs, set0);
        // the same batch again: its first height is committed
        vm.expectRevert(abi.encodeWithSelector(ISlipLedger.SlipLedgerOutOfOrder.selector, 3, 1));
        ledger.commitBlocks(hs, cs, set0);
        // a header repeated inside a batch
        (ISlipLedger.BlockHeader[] memory next, ISlipLedger.Certificate[] memory nextCs) = batch(2, labels, 4);
        (next[1], nextCs[1]) = (next[0], nextCs[0]);
        vm.expectRevert(abi.encodeWithSelector(ISlipLedger.SlipLedgerOutOfOrder.selector, 4, 3));
        ledger.commitBlocks(next, nextCs, set0);
        // a committed header leading a batch of new ones
        (next, nextCs) = batch(1, labels, 4);
        ISlipLedger.BlockHeader[] memory overlap = new ISlipLedger.BlockHeader[](2);
        ISlipLedger.Certificate[] memory overlapCs = new ISlipLedger.Certificate[](2);
        (overlap[0], overlap[1], overlapCs[0], overlapCs[1]) = (hs[1], next[0], cs[1], nextCs[0]);
        vm.expectRevert(abi.encodeWithSelector(ISlipLedger.SlipLedgerOutOfOrder.selector, 3, 2));
        ledger.commitBlocks(overlap, overlapCs, set0);
        vm.stopPrank();
    }

    function test_commitBlocks_wrongCallerOrSet() public {
        (ISlipLedger.BlockHeader[] memory hs, ISlipLedger.Certificate[] memory cs) = batch(2, labels, 4);
        vm.expectRevert(abi.encodeWithSelector(ISlipLedger.SlipLedgerNotValidator.selector, address(this)));
        ledger.commitBlocks(hs, cs, set0);
        (, address[] memory other) = makeSet("o", 4);
        vm.expectRevert(
            abi.encodeWithSelector(
                ISlipLedger.SlipLedgerUnknownValidatorSet.selector, keccak256(abi.encodePacked(other)), keccak256(abi.encodePacked(set0))
            )
        );
        vm.prank(other[0]);
        ledger.commitBlocks(hs, cs, other);
    }

    /// A batch commits exactly what the same headers commit one by one; a corrupted certificate at any
    /// position refuses all of it.
    function testFuzz_commitBlocks_asOneByOne(uint256 count, uint256 bad, uint256 caller) public {
        count = bound(count, 1, 8);
        bad = bound(bad, 0, count - 1);
        (ISlipLedger.BlockHeader[] memory hs, ISlipLedger.Certificate[] memory cs) = batch(count, labels, 4);
        bytes memory good = cs[bad].signatures;
        cs[bad].signatures = bytes.concat(good);
        cs[bad].signatures[70] = good[70] ^ bytes1(0x01); // the second signature's r
        uint256 start = vm.snapshotState();
        vm.startPrank(set0[bound(caller, 0, 3)]);
        vm.expectRevert();
        ledger.commitBlocks(hs, cs, set0);
        cs[bad].signatures = good;
        ledger.commitBlocks(hs, cs, set0);
        vm.stopPrank();
        bytes32[] memory batched = new bytes32[](count);
        for (uint256 i; i < count; ++i) batched[i] = ledger.headerHashAt(uint64(i + 1));
        vm.revertToState(start);
        vm.startPrank(set0[0]);
        for (uint256 i; i < count; ++i) {
            ledger.commitBlock(hs[i], cs[i].viewNumber, set0, cs[i].signerIndexes, cs[i].signatures);
        }
        vm.stopPrank();
        (uint64 height, bytes32 headHash) = ledger.head();
        assertEq(height, count);
        assertEq(headHash, batched[count - 1]);
        for (uint256 i; i < count; ++i) assertEq(ledger.headerHashAt(uint64(i + 1)), batched[i]);
    }

    // ------------------------------------------------------------------
    // changeValidators
    // ------------------------------------------------------------------

    function test_change_schedulesAndTakesEffectAtItsHeight() public {
        extend(2, labels, set0);
        (bytes32[] memory l1, address[] memory set1) = makeSet("w", 5);
        vm.expectEmit(address(ledger));
        emit ISlipLedger.ValidatorSetChanged(1, 4, set1);
        change(1, 4, labels, set0, l1, set1);
        (uint64 e, uint64 from) = ledger.latestEpoch();
        assertEq(e, 1);
        assertEq(from, 4);
        assertEq(ledger.epoch(), 0, "height 3 is still certified by epoch 0");
        assertEq(ledger.quorum(), 3);
        extend(1, labels, set0); // height 3: old set
        assertEq(ledger.epoch(), 1);
        assertEq(ledger.quorum(), 4, "the next header needs the new set's quorum");
        assertEq(ledger.validators(), set1);
        assertTrue(ledger.isValidator(set1[4]));
        assertFalse(ledger.isValidator(set0[0]));
        // the old set can no longer certify height 4
        (uint64 head,) = ledger.head();
        assertEq(head, 3);
        ISlipLedger.BlockHeader memory h4 = header(4, ledger.headerHashAt(3));
        vm.expectRevert(
            abi.encodeWithSelector(
                ISlipLedger.SlipLedgerUnknownValidatorSet.selector, keccak256(abi.encodePacked(set0)), keccak256(abi.encodePacked(set1))
            )
        );
        vm.prank(set0[0]);
        ledger.commitBlock(h4, 0, set0, "", "");
        extend(2, l1, set1);
        (uint64 se, uint64 sf, address[] memory members) = ledger.validatorSetAt(3);
        assertEq(se, 0);
        assertEq(sf, 1);
        assertEq(members, set0);
        (se, sf, members) = ledger.validatorSetAt(5);
        assertEq(se, 1);
        assertEq(sf, 4);
        // resubmitting an old header is checked against its own height's set
        commit(header(1, 0), labels, set0);
    }

    function test_change_twoPendingEpochs() public {
        (bytes32[] memory l1, address[] memory set1) = makeSet("w", 4);
        (bytes32[] memory l2, address[] memory set2) = makeSet("x", 7);
        change(1, 2, labels, set0, l1, set1);
        // the next change is signed by the latest scheduled set (epoch 1)
        change(2, 3, l1, set1, l2, set2);
        extend(1, labels, set0);
        extend(1, l1, set1);
        assertEq(ledger.quorum(), 5);
        extend(1, l2, set2);
        assertEq(ledger.epoch(), 2);
    }

    function test_change_reverts() public {
        (bytes32[] memory l1, address[] memory set1) = makeSet("w", 4);
        extend(2, labels, set0);
        ISlipLedger.ValidatorSetChange memory c = ISlipLedger.ValidatorSetChange(2, 5, set1);
        ISlipLedger.SetSignatures memory none;
        vm.startPrank(set0[0]);
        vm.expectRevert(abi.encodeWithSelector(ISlipLedger.SlipLedgerUnexpectedEpoch.selector, 1, 2));
        ledger.changeValidators(c, set0, none, none);
        c.epoch = 1;
        c.fromHeight = 2;
        vm.expectRevert(abi.encodeWithSelector(ISlipLedger.SlipLedgerInvalidChangeHeight.selector, 2, 3));
        ledger.changeValidators(c, set0, none, none);
        c.fromHeight = 3;
        vm.expectRevert(
            abi.encodeWithSelector(
                ISlipLedger.SlipLedgerUnknownValidatorSet.selector, keccak256(abi.encodePacked(set1)), keccak256(abi.encodePacked(set0))
            )
        );
        ledger.changeValidators(c, set1, none, none);
        vm.stopPrank();
        vm.expectRevert(abi.encodeWithSelector(ISlipLedger.SlipLedgerNotValidator.selector, address(this)));
        ledger.changeValidators(c, set0, none, none);
        // a set of three
        address[] memory three = new address[](3);
        c.validators = three;
        vm.expectRevert(abi.encodeWithSelector(ISlipLedger.SlipLedgerInvalidValidatorSet.selector, 3));
        vm.prank(set0[0]);
        ledger.changeValidators(c, set0, none, none);
        // the new set must sign too
        c.validators = set1;
        bytes32 d = changeDigest(c);
        (bytes memory i1, bytes memory s1) = qc(labels, 3, d);
        vm.expectRevert(abi.encodeWithSelector(ISlipLedger.SlipLedgerInsufficientSignatures.selector, 0, 3));
        vm.prank(set0[0]);
        ledger.changeValidators(c, set0, ISlipLedger.SetSignatures(i1, s1), none);
        // a replay of an applied change names a stale epoch
        change(1, 3, labels, set0, l1, set1);
        (bytes memory i2, bytes memory s2) = qc(l1, 3, d);
        vm.expectRevert(abi.encodeWithSelector(ISlipLedger.SlipLedgerUnexpectedEpoch.selector, 2, 1));
        vm.prank(set1[0]);
        ledger.changeValidators(c, set1, ISlipLedger.SetSignatures(i1, s1), ISlipLedger.SetSignatures(i2, s2));
        // the new change must come after the pending one
        c.epoch = 2;
        vm.expectRevert(abi.encodeWithSelector(ISlipLedger.SlipLedgerInvalidChangeHeight.selector, 3, 4));
        vm.prank(set1[0]);
        ledger.changeValidators(c, set1, none, none);
    }

    // ------------------------------------------------------------------
    // verifySlip and views
    // ------------------------------------------------------------------

    function test_verifySlip() public {
        bytes32 leafA = keccak256(bytes.concat(keccak256(abi.encode(bytes32("slipA"), bytes("payload A")))));
        bytes32 leafB = keccak256(bytes.concat(keccak256(abi.encode(bytes32("slipB"), bytes("payload B")))));
        bytes32 root = leafA < leafB ? keccak256(abi.encode(leafA, leafB)) : keccak256(abi.encode(leafB, leafA));
        ISlipLedger.BlockHeader memory h = header(1, 0);
        h.merkleRoot = root;
        bytes32[] memory proof = new bytes32[](1);
        proof[0] = leafB;
        assertFalse(ledger.verifySlip(h, proof, bytes32("slipA"), "payload A"), "not committed yet");
        commit(h, labels, set0);
        assertTrue(ledger.verifySlip(h, proof, bytes32("slipA"), "payload A"));
        assertFalse(ledger.verifySlip(h, proof, bytes32("slipA"), "payload B"));
        // the root posing as a leaf with an empty proof does not verify
        assertFalse(ledger.verifySlip(h, new bytes32[](0), bytes32("slipA"), "payload A"));
        ISlipLedger.BlockHeader memory genesis = header(0, 0);
        assertFalse(ledger.verifySlip(genesis, proof, bytes32("slipA"), "payload A"));
    }

    function test_headerHashAt_unknownHeights() public {
        vm.expectRevert(abi.encodeWithSelector(ISlipLedger.SlipLedgerUnknownHeight.selector, 0));
        ledger.headerHashAt(0);
        vm.expectRevert(abi.encodeWithSelector(ISlipLedger.SlipLedgerUnknownHeight.selector, 1));
        ledger.headerHashAt(1);
        vm.expectRevert(abi.encodeWithSelector(ISlipLedger.SlipLedgerUnknownHeight.selector, 0));
        ledger.validatorSetAt(0);
    }

    function test_commitDigest_layout() public view {
        bytes32 d = ledger.commitDigest(bytes32("h"), 3, 9);
        assertEq(d, keccak256(abi.encode(ledger.domainSeparator(), bytes32("h"), uint256(3), uint256(9))));
    }
}
