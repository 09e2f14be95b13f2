// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {ISlipLedger} from "./interfaces/ISlipLedger.sol";

/// @title SlipLedger — PBFT-certified headers of one hospital's private chain
/// @notice Stores one word per block (its header hash); the certificate is
/// checked with OpenZeppelin ECDSA, slips with OpenZeppelin MerkleProof.
contract SlipLedger is ISlipLedger, EIP712 {
    // ------------------------------------------------------------------
    // Constants
    // ------------------------------------------------------------------

    bytes32 private constant BLOCK_HEADER_TYPEHASH = keccak256(
        "BlockHeader(uint64 height,uint64 seq,bytes32 prevHash,uint64 timestamp,address creator,bytes32 merkleRoot,bytes bodyCid)"
    );
    bytes32 private constant VALIDATOR_SET_CHANGE_TYPEHASH =
        keccak256("ValidatorSetChange(uint64 epoch,address[] validators)");
    uint256 private constant MIN_VALIDATORS = 4;

    // ------------------------------------------------------------------
    // Storage
    // ------------------------------------------------------------------

    mapping(uint64 height => bytes32 headerHash) private _headerHashes;
    // One slot: the head height, the validator-set epoch and its size.
    uint64 private _height;
    uint64 private _epoch;
    uint32 private _validatorCount;
    /// keccak256(abi.encodePacked(validators)): certificates name the set in calldata.
    bytes32 private _validatorSetHash;
    address[] private _validators;
    mapping(address account => uint64 epochPlusOne) private _validatorEpoch; // member iff == _epoch + 1

    constructor(address[] memory initialValidators) EIP712("MBDS SlipLedger", "1") {
        _setValidators(initialValidators);
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
        _checkValidatorSet(validatorSet);
        _checkCaller(validatorSet);
        bytes32 headerHash = _hashHeader(header);
        uint64 height = header.height;
        uint64 head = _height;
        if (height <= head && height != 0) {
            bytes32 committed = _headerHashes[height];
            if (committed == headerHash) return; // idempotent re-submission
            revert SlipLedgerForkedHeader(height, committed, headerHash);
        }
        if (height != head + 1) revert SlipLedgerOutOfOrder(head + 1, height);
        bytes32 expectedPrev = _headerHashes[head];
        if (header.prevHash != expectedPrev) revert SlipLedgerPrevHashMismatch(height, expectedPrev, header.prevHash);
        _checkQuorum(_commitDigest(headerHash, viewNumber, header.seq), validatorSet, signerIndexes, signatures);

        _headerHashes[height] = headerHash;
        _height = height;
        emit BlockCommitted(height, headerHash, header.merkleRoot);
    }

    // ------------------------------------------------------------------
    // Validator set
    // ------------------------------------------------------------------

    /// @inheritdoc ISlipLedger
    function changeValidators(
        address[] calldata newValidators,
        address[] calldata validatorSet,
        bytes calldata signerIndexes,
        bytes calldata signatures
    ) external {
        _checkValidatorSet(validatorSet);
        _checkCaller(validatorSet);
        bytes32 digest = _hashTypedDataV4(
            keccak256(
                abi.encode(VALIDATOR_SET_CHANGE_TYPEHASH, _epoch + 1, keccak256(abi.encodePacked(newValidators)))
            )
        );
        _checkQuorum(digest, validatorSet, signerIndexes, signatures);
        _setValidators(newValidators);
    }

    // ------------------------------------------------------------------
    // Views
    // ------------------------------------------------------------------

    /// @inheritdoc ISlipLedger
    function verifyLeaf(BlockHeader calldata header, bytes32[] calldata proof, bytes32 leaf)
        public
        view
        returns (bool)
    {
        bytes32 committed = _headerHashes[header.height];
        if (header.height == 0 || committed != _hashHeader(header)) return false;
        return MerkleProof.verifyCalldata(proof, header.merkleRoot, leaf);
    }

    /// @inheritdoc ISlipLedger
    function verifySlip(BlockHeader calldata header, bytes32[] calldata proof, bytes32 slipId, bytes calldata payload)
        external
        view
        returns (bool)
    {
        return verifyLeaf(header, proof, keccak256(bytes.concat(keccak256(abi.encode(slipId, payload)))));
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
        return (_height, _headerHashes[_height]);
    }

    /// @inheritdoc ISlipLedger
    function headerHashAt(uint64 height) external view returns (bytes32) {
        if (height == 0 || height > _height) revert SlipLedgerUnknownHeight(height);
        return _headerHashes[height];
    }

    /// @inheritdoc ISlipLedger
    function validators() external view returns (address[] memory) {
        return _validators;
    }

    /// @inheritdoc ISlipLedger
    function epoch() external view returns (uint64) {
        return _epoch;
    }

    /// @inheritdoc ISlipLedger
    function quorum() public view returns (uint256) {
        return _quorum(_validatorCount);
    }

    /// @inheritdoc ISlipLedger
    function isValidator(address account) public view returns (bool) {
        return _validatorEpoch[account] == _epoch + 1;
    }

    /// @inheritdoc ISlipLedger
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    // ------------------------------------------------------------------
    // Internal
    // ------------------------------------------------------------------

    function _hashHeader(BlockHeader calldata h) private pure returns (bytes32) {
        return keccak256(
            abi.encode(
                BLOCK_HEADER_TYPEHASH, h.height, h.seq, h.prevHash, h.timestamp, h.creator, h.merkleRoot, keccak256(h.bodyCid)
            )
        );
    }

    function _commitDigest(bytes32 headerHash, uint64 viewNumber, uint64 seq) private view returns (bytes32) {
        return keccak256(abi.encode(_domainSeparatorV4(), headerHash, uint256(viewNumber), uint256(seq)));
    }

    /// @dev ⌈(n + f + 1) / 2⌉ with f = ⌊(n − 1)/3⌋: any two quorums share f + 1 replicas (2f + 1 when
    /// n = 3f + 1), the same rule as the PBFT core (mbds_py.pbft.config.PbftConfig.quorum).
    function _quorum(uint256 n) private pure returns (uint256) {
        return (n + (n - 1) / 3 + 2) / 2;
    }

    function _checkValidatorSet(address[] calldata validatorSet) private view {
        bytes32 given = keccak256(abi.encodePacked(validatorSet));
        bytes32 current = _validatorSetHash;
        if (given != current) revert SlipLedgerUnknownValidatorSet(given, current);
    }

    function _checkCaller(address[] calldata validatorSet) private view {
        for (uint256 i = 0; i < validatorSet.length; ++i) {
            if (validatorSet[i] == msg.sender) return;
        }
        revert SlipLedgerNotValidator(msg.sender);
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
        for (uint256 i = 0; i < k; ++i) {
            uint256 index = uint8(signerIndexes[i]);
            if (index >= n) revert SlipLedgerSignerIndexOutOfRange(index, n);
            if (i > 0) {
                if (index == previous) revert SlipLedgerDuplicateSignature(validatorSet[index]);
                if (index < previous) revert SlipLedgerUnsortedSignatures(previous, index);
            }
            _checkSignature(digest, validatorSet[index], signatures[i * 65:i * 65 + 65]);
            previous = index;
        }
    }

    /// @dev A signature by any other key — another header or view, a non-validator, tampering —
    /// does not recover to the validator it is listed for.
    function _checkSignature(bytes32 digest, address signer, bytes calldata sig) private pure {
        (address recovered, ECDSA.RecoverError err,) =
            ECDSA.tryRecover(digest, uint8(sig[64]), bytes32(sig[0:32]), bytes32(sig[32:64]));
        if (err != ECDSA.RecoverError.NoError || recovered != signer) {
            revert SlipLedgerInvalidSignature(signer, recovered);
        }
    }

    function _setValidators(address[] memory newValidators) private {
        uint256 n = newValidators.length;
        if (n < MIN_VALIDATORS) revert SlipLedgerInvalidValidatorSet(n);
        uint64 next = _epoch + (_validators.length == 0 ? 0 : 1);
        for (uint256 i = 0; i < n; ++i) {
            address v = newValidators[i];
            if (v == address(0) || _validatorEpoch[v] == next + 1) revert SlipLedgerInvalidValidatorSet(n);
            _validatorEpoch[v] = next + 1;
        }
        _epoch = next;
        _validatorCount = uint32(n);
        _validatorSetHash = keccak256(abi.encodePacked(newValidators));
        _validators = newValidators;
        emit ValidatorSetChanged(next, newValidators);
    }
}
