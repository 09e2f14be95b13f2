// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {Checkpoints} from "@openzeppelin/contracts/utils/structs/Checkpoints.sol";
import {ISlipLedger} from "./interfaces/ISlipLedger.sol";

/// @title SlipLedger — PBFT-certified headers of one hospital's private chain
/// @notice Stores one word per block (its header hash); the certificate is
/// checked with OpenZeppelin ECDSA, slips with OpenZeppelin MerkleProof.
/// Several certified headers can be anchored in one transaction (`commitBlocks`).
/// Validator sets are bound to heights: each set (epoch) applies from its first
/// height until the next set's first height, kept as OpenZeppelin Checkpoints.
contract SlipLedger is ISlipLedger, EIP712 {
    using Checkpoints for Checkpoints.Trace160;

    // ------------------------------------------------------------------
    // Constants
    // ------------------------------------------------------------------

    bytes32 private constant BLOCK_HEADER_TYPEHASH = keccak256(
        "BlockHeader(uint64 height,uint64 seq,bytes32 prevHash,uint64 timestamp,address creator,bytes32 merkleRoot,bytes bodyCid)"
    );
    bytes32 private constant VALIDATOR_SET_CHANGE_TYPEHASH =
        keccak256("ValidatorSetChange(uint64 epoch,uint64 fromHeight,address[] validators)");
    uint256 private constant MIN_VALIDATORS = 4;
    /// Signer indexes are one byte each (`uint8`): 0 … 255.
    uint256 private constant MAX_VALIDATORS = 256;
    /// The head hint moves up every this many heights, so the views' search for the head reads at most
    /// about 2·log2(HEAD_HINT_INTERVAL) slots however long the chain (≈ 11 gas per block, amortised).
    uint64 private constant HEAD_HINT_INTERVAL = 256;

    // ------------------------------------------------------------------
    // Storage
    // ------------------------------------------------------------------

    /// Committed heights are always a prefix 1 … head (a header commits only on top of a committed
    /// parent, and hashes are never zero), so "height h is the next one" is "h − 1 is committed and h is
    /// not": a commit reads two hash slots and writes one, and no head counter is written per block.
    mapping(uint64 height => bytes32 headerHash) private _headerHashes;
    // One slot, read once per commit: a committed height at or below the head (a hint for the views,
    // moved every HEAD_HINT_INTERVAL heights and by validator-set changes), the epoch in force at the
    // head, its size and the first height of the next scheduled epoch (0: none scheduled).
    uint64 private _height;
    uint64 private _epoch;
    uint32 private _validatorCount;
    uint64 private _nextEpochFrom;
    /// keccak256(abi.encodePacked(validators)) of epoch `_epoch`: certificates name the set in calldata.
    bytes32 private _validatorSetHash;
    /// First height (key) → epoch (value), one checkpoint per epoch, keys strictly increasing.
    Checkpoints.Trace160 private _schedule;
    mapping(uint64 epoch => bytes32 setHash) private _setHashes;
    mapping(uint64 epoch => address[] validators) private _sets;
    mapping(uint64 epoch => mapping(address account => bool)) private _isMember;

    constructor(address[] memory initialValidators) EIP712("MBDS SlipLedger", "1") {
        _checkSetSize(initialValidators.length);
        _scheduleValidators(0, 1, initialValidators);
        _validatorCount = uint32(initialValidators.length);
        _validatorSetHash = _setHashes[0];
    }

    // ------------------------------------------------------------------
    // Blocks
    // ------------------------------------------------------------------

    /// @inheritdoc ISlipLedger
    function commitBlock(
        BlockHeader calldata header,
        uint64 viewNumber,
        address[] calldata validatorSet,
        bytes calldata signerIndexes,
        bytes calldata signatures
    ) external {
        uint64 height = header.height;
        if (height == 0) revert SlipLedgerOutOfOrder(_head() + 1, height);
        bytes32 committed = _headerHashes[height];
        if (committed != 0) {
            // Idempotent re-submission, checked against the set of that height (not today's).
            _checkSetHash(_setHashOf(validatorSet), _setHashes[_epochAt(height)]);
            _checkCaller(validatorSet);
            bytes32 headerHash = _hashHeader(header);
            if (committed == headerHash) return;
            revert SlipLedgerForkedHeader(height, committed, headerHash);
        }
        bytes32 prev = _committedParent(height);
        _checkSetHash(_setHashOf(validatorSet), _setHashForNext(height));
        _checkCaller(validatorSet);
        bytes32 headerHash = _checkCertified(header, prev, viewNumber, validatorSet, signerIndexes, signatures);
        _headerHashes[height] = headerHash;
        if (height % HEAD_HINT_INTERVAL == 0) _height = height;
        emit BlockCommitted(height, headerHash);
    }

    /// @inheritdoc ISlipLedger
    function commitBlocks(
        BlockHeader[] calldata headers,
        Certificate[] calldata certificates,
        address[] calldata validatorSet
    ) external {
        uint256 count = headers.length;
        if (count == 0) revert SlipLedgerEmptyBatch();
        if (certificates.length != count) revert SlipLedgerBatchMismatch(count, certificates.length);
        uint64 head = headers[0].height;
        // A committed first height (a replay) or one above head + 1 is out of order.
        if (head == 0 || _headerHashes[head] != 0) revert SlipLedgerOutOfOrder(_head() + 1, head);
        bytes32 prev = _committedParent(head);
        head -= 1;
        bytes32 given = _setHashOf(validatorSet);
        _checkSetHash(given, _setHashForNext(head + 1));
        _checkCaller(validatorSet);
        uint64 nextFrom = _nextEpochFrom;
        for (uint256 i; i < count; ++i) {
            BlockHeader calldata header = headers[i];
            uint64 height = header.height;
            if (height != head + 1) revert SlipLedgerOutOfOrder(head + 1, height);
            // Every height against the set in force there: a batch reaching the next epoch's first height
            // is checked against that epoch's set (and reverts unless it is the same set).
            if (nextFrom != 0 && height >= nextFrom) {
                _checkSetHash(given, _setHashForNext(height));
                nextFrom = _nextEpochFrom;
            }
            Certificate calldata cert = certificates[i];
            prev = _checkCertified(header, prev, cert.viewNumber, validatorSet, cert.signerIndexes, cert.signatures);
            _headerHashes[height] = prev;
            emit BlockCommitted(height, prev);
            head = height;
        }
        // the batch passed a multiple of HEAD_HINT_INTERVAL (its first height is ≥ 1)
        if (head / HEAD_HINT_INTERVAL != (headers[0].height - 1) / HEAD_HINT_INTERVAL) _height = head;
    }

    // ------------------------------------------------------------------
    // Validator set
    // ------------------------------------------------------------------

    /// @inheritdoc ISlipLedger
    function changeValidators(
        ValidatorSetChange calldata change,
        address[] calldata validatorSet,
        SetSignatures calldata byCurrent,
        SetSignatures calldata byNew
    ) external {
        (, uint96 lastFrom, uint160 lastEpoch) = _schedule.latestCheckpoint();
        _checkSetHash(_setHashOf(validatorSet), _setHashes[uint64(lastEpoch)]);
        _checkCaller(validatorSet);
        uint64 expectedEpoch = uint64(lastEpoch) + 1;
        if (change.epoch != expectedEpoch) revert SlipLedgerUnexpectedEpoch(expectedEpoch, change.epoch);
        uint64 tip = _head();
        _height = tip; // the views' hint moves up
        uint64 earliest = (tip > uint64(lastFrom) ? tip : uint64(lastFrom)) + 1;
        if (change.fromHeight < earliest) revert SlipLedgerInvalidChangeHeight(change.fromHeight, earliest);
        _checkSetSize(change.validators.length);

        bytes32 digest = _hashTypedDataV4(
            keccak256(
                abi.encode(
                    VALIDATOR_SET_CHANGE_TYPEHASH,
                    change.epoch,
                    change.fromHeight,
                    keccak256(abi.encodePacked(change.validators))
                )
            )
        );
        _checkQuorum(digest, validatorSet, byCurrent.signerIndexes, byCurrent.signatures);
        // The new set's members are checked for distinctness before their signatures count.
        _scheduleValidators(change.epoch, change.fromHeight, change.validators);
        _checkQuorum(digest, change.validators, byNew.signerIndexes, byNew.signatures);
        // Nothing pending: this epoch is the next one to come into force (else it follows the pending one).
        if (_nextEpochFrom == 0) _nextEpochFrom = change.fromHeight;
    }

    // ------------------------------------------------------------------
    // Views
    // ------------------------------------------------------------------

    /// @inheritdoc ISlipLedger
    function verifySlip(BlockHeader calldata header, bytes32[] calldata proof, bytes32 slipId, bytes calldata payload)
        external
        view
        returns (bool)
    {
        bytes32 committed = _headerHashes[header.height];
        if (header.height == 0 || committed != _hashHeader(header)) return false;
        // The leaf is hashed here, never taken as given: an inner node cannot pose as a leaf.
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(slipId, payload))));
        return MerkleProof.verifyCalldata(proof, header.merkleRoot, leaf);
    }

    /// @inheritdoc ISlipLedger
    function hashHeader(BlockHeader calldata header) external pure returns (bytes32) {
        return _hashHeader(header);
    }

    /// @inheritdoc ISlipLedger
    function commitDigest(bytes32 headerHash, uint64 viewNumber, uint64 seq) external view returns (bytes32) {
        return _commitDigest(headerHash, viewNumber, seq);
    }

    /// @inheritdoc ISlipLedger
    function head() external view returns (uint64 height, bytes32 headerHash) {
        uint64 h = _head();
        return (h, _headerHashes[h]);
    }

    /// @inheritdoc ISlipLedger
    function headerHashAt(uint64 height) external view returns (bytes32) {
        bytes32 headerHash = _headerHashes[height];
        if (height == 0 || headerHash == 0) revert SlipLedgerUnknownHeight(height);
        return headerHash;
    }

    /// @inheritdoc ISlipLedger
    function validators() external view returns (address[] memory) {
        return _sets[_epochAt(_head() + 1)];
    }

    /// @inheritdoc ISlipLedger
    function epoch() external view returns (uint64) {
        return _epochAt(_head() + 1);
    }

    /// @inheritdoc ISlipLedger
    function quorum() public view returns (uint256) {
        uint64 nextFrom = _nextEpochFrom;
        if (nextFrom != 0 && _head() + 1 >= nextFrom) return _quorum(_sets[_epoch + 1].length);
        return _quorum(_validatorCount);
    }

    /// @inheritdoc ISlipLedger
    function isValidator(address account) public view returns (bool) {
        return _isMember[_epochAt(_head() + 1)][account];
    }

    /// @inheritdoc ISlipLedger
    function validatorSetAt(uint64 height)
        external
        view
        returns (uint64 setEpoch, uint64 fromHeight, address[] memory members)
    {
        if (height == 0) revert SlipLedgerUnknownHeight(height);
        setEpoch = _epochAt(height);
        fromHeight = uint64(_schedule.at(uint32(setEpoch))._key);
        members = _sets[setEpoch];
    }

    /// @inheritdoc ISlipLedger
    function latestEpoch() external view returns (uint64 setEpoch, uint64 fromHeight) {
        (, uint96 from, uint160 e) = _schedule.latestCheckpoint();
        return (uint64(e), uint64(from));
    }

    /// @inheritdoc ISlipLedger
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    // ------------------------------------------------------------------
    // Internal
    // ------------------------------------------------------------------

    /// @dev EIP-712 hashStruct of a header. The six static fields are hashed as the calldata words
    /// they are: a word with dirty high bits hashes to another value than the clean header every
    /// validator signed, so it never matches a certificate or a committed hash.
    function _hashHeader(BlockHeader calldata h) private pure returns (bytes32 result) {
        bytes32 typeHash = BLOCK_HEADER_TYPEHASH;
        bytes calldata cid = h.bodyCid;
        assembly ("memory-safe") {
            let m := mload(0x40)
            calldatacopy(m, cid.offset, cid.length)
            let cidHash := keccak256(m, cid.length)
            mstore(m, typeHash)
            calldatacopy(add(m, 0x20), h, 0xc0) // height, seq, prevHash, timestamp, creator, merkleRoot
            mstore(add(m, 0xe0), cidHash)
            result := keccak256(m, 0x100)
        }
    }

    function _commitDigest(bytes32 headerHash, uint64 viewNumber, uint64 seq) private view returns (bytes32 result) {
        bytes32 domain = _domainSeparatorV4();
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, domain)
            mstore(add(m, 0x20), headerHash)
            mstore(add(m, 0x40), viewNumber)
            mstore(add(m, 0x60), seq)
            result := keccak256(m, 0x80)
        }
    }

    /// @dev The committed parent hash of the next header `height` (≥ 1): `height` must be head + 1, i.e.
    /// not committed (checked by the caller) on top of a committed `height − 1` (height 0 is genesis).
    function _committedParent(uint64 height) private view returns (bytes32 prev) {
        prev = _headerHashes[height - 1];
        if (prev == 0 && height != 1) revert SlipLedgerOutOfOrder(_head() + 1, height);
    }

    /// @dev The highest committed height: from the hint `_height`, gallop up then bisect the prefix of
    /// committed heights (views and validator-set changes only; a commit never needs it).
    function _head() private view returns (uint64 lo) {
        lo = _height;
        if (_headerHashes[lo + 1] == 0) return lo;
        lo += 1;
        uint64 step = 1;
        while (_headerHashes[lo + step] != 0) {
            lo += step;
            step <<= 1;
        }
        uint64 hi = lo + step; // not committed
        while (hi - lo > 1) {
            uint64 mid = lo + (hi - lo) / 2;
            if (_headerHashes[mid] != 0) lo = mid;
            else hi = mid;
        }
    }

    /// @dev The link to `prev` and the quorum certificate of `header`; returns its hash.
    function _checkCertified(
        BlockHeader calldata header,
        bytes32 prev,
        uint64 viewNumber,
        address[] calldata validatorSet,
        bytes calldata signerIndexes,
        bytes calldata signatures
    ) private view returns (bytes32 headerHash) {
        if (header.prevHash != prev) revert SlipLedgerPrevHashMismatch(header.height, prev, header.prevHash);
        headerHash = _hashHeader(header);
        _checkQuorum(_commitDigest(headerHash, viewNumber, header.seq), validatorSet, signerIndexes, signatures);
    }

    /// @dev ⌈(n + f + 1) / 2⌉ with f = ⌊(n − 1)/3⌋: any two quorums share f + 1 replicas (2f + 1 when
    /// n = 3f + 1), the same rule as the PBFT core (mbds_py.pbft.config.PbftConfig.quorum).
    function _quorum(uint256 n) private pure returns (uint256) {
        return (n + (n - 1) / 3 + 2) / 2;
    }

    /// @dev The epoch in force at `height` (≥ 1): the last one whose first height is ≤ `height`.
    function _epochAt(uint64 height) private view returns (uint64) {
        return uint64(_schedule.upperLookupRecent(height));
    }

    /// @dev The set hash for the next header `height`; its first header brings a scheduled epoch into force.
    function _setHashForNext(uint64 height) private returns (bytes32) {
        uint64 nextFrom = _nextEpochFrom;
        if (nextFrom != 0 && height >= nextFrom) return _activateNextEpoch();
        return _validatorSetHash;
    }

    /// @dev Make the next scheduled epoch the one in force; returns its set hash.
    function _activateNextEpoch() private returns (bytes32 setHash) {
        uint64 next = _epoch + 1;
        setHash = _setHashes[next];
        _epoch = next;
        _validatorCount = uint32(_sets[next].length);
        _validatorSetHash = setHash;
        uint256 scheduled = _schedule.length();
        _nextEpochFrom = next + 1 < scheduled ? uint64(_schedule.at(uint32(next + 1))._key) : 0;
    }

    /// @dev keccak256(abi.encodePacked(validatorSet)), hashed straight from calldata.
    function _setHashOf(address[] calldata validatorSet) private pure returns (bytes32 setHash) {
        assembly ("memory-safe") {
            let m := mload(0x40)
            let size := shl(5, validatorSet.length)
            calldatacopy(m, validatorSet.offset, size)
            setHash := keccak256(m, size)
        }
    }

    function _checkSetHash(bytes32 given, bytes32 expected) private pure {
        if (given != expected) revert SlipLedgerUnknownValidatorSet(given, expected);
    }

    function _checkCaller(address[] calldata validatorSet) private view {
        uint256 n = validatorSet.length;
        for (uint256 i; i < n; ++i) {
            if (validatorSet[i] == msg.sender) return;
        }
        revert SlipLedgerNotValidator(msg.sender);
    }

    function _checkSetSize(uint256 n) private pure {
        if (n < MIN_VALIDATORS) revert SlipLedgerInvalidValidatorSet(n);
        if (n > MAX_VALIDATORS) revert SlipLedgerTooManyValidators(n, MAX_VALIDATORS);
    }

    /// @dev Strictly ascending signer indexes make distinctness an O(n) check; the set itself was
    /// checked against its stored hash, so no storage is read per signature.
    function _checkQuorum(
        bytes32 digest,
        address[] calldata validatorSet,
        bytes calldata signerIndexes,
        bytes calldata signatures
    ) private pure {
        uint256 n = validatorSet.length;
        uint256 k = signerIndexes.length;
        if (signatures.length != k * 65) revert SlipLedgerMalformedSignatures(k, signatures.length);
        uint256 needed = _quorum(n);
        if (k < needed) revert SlipLedgerInsufficientSignatures(k, needed);
        uint256 previous;
        for (uint256 i; i < k; ++i) {
            uint256 index = uint8(signerIndexes[i]);
            if (index >= n) revert SlipLedgerSignerIndexOutOfRange(index, n);
            if (i > 0) {
                if (index == previous) revert SlipLedgerDuplicateSignature(validatorSet[index]);
                if (index < previous) revert SlipLedgerUnsortedSignatures(previous, index);
            }
            uint256 sig;
            assembly ("memory-safe") {
                sig := add(signatures.offset, mul(i, 65)) // within `signatures`: its length is k * 65
            }
            _checkSignature(digest, validatorSet[index], sig);
            previous = index;
        }
    }

    /// @dev The 65-byte signature (r, s, v) at calldata offset `sig`. A signature by any other key —
    /// another header or view, a non-validator, tampering — does not recover to the validator it is
    /// listed for.
    function _checkSignature(bytes32 digest, address signer, uint256 sig) private pure {
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly ("memory-safe") {
            r := calldataload(sig)
            s := calldataload(add(sig, 0x20))
            v := byte(0, calldataload(add(sig, 0x40)))
        }
        (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, v, r, s);
        if (err != ECDSA.RecoverError.NoError || recovered != signer) {
            revert SlipLedgerInvalidSignature(signer, recovered);
        }
    }

    /// @dev Record epoch `setEpoch` (size already checked) as the set in force from `fromHeight`.
    function _scheduleValidators(uint64 setEpoch, uint64 fromHeight, address[] memory members) private {
        uint256 n = members.length;
        mapping(address => bool) storage isMember = _isMember[setEpoch];
        for (uint256 i = 0; i < n; ++i) {
            address v = members[i];
            if (v == address(0) || isMember[v]) revert SlipLedgerInvalidValidatorSet(n);
            isMember[v] = true;
        }
        bytes32 setHash = keccak256(abi.encodePacked(members));
        _setHashes[setEpoch] = setHash;
        _sets[setEpoch] = members;
        _schedule.push(fromHeight, setEpoch);
        emit ValidatorSetChanged(setEpoch, fromHeight, members);
    }
}
