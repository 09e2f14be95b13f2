// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title ISlipLedger — a hospital private chain's PBFT-certified block headers
/// @notice Each header is accepted only with a quorum certificate: ≥ 2f+1
/// distinct current validators (the hospital and the national, provincial and
/// municipal health authorities) signed the PBFT COMMIT for it.  Only the
/// header hash is stored; slips are proven against the header's Merkle root.
interface ISlipLedger {
    // ------------------------------------------------------------------
    // Types
    // ------------------------------------------------------------------

    /// @notice A private-chain block header (paper Figure 3).
    struct BlockHeader {
        uint64 height; // 1, 2, 3, ... (0 is the genesis head)
        uint64 seq; // PBFT sequence number the block was ordered at
        bytes32 prevHash; // hashStruct of the previous header (zero for height 1)
        uint64 timestamp; // milliseconds since the Unix epoch, chosen by the primary
        address creator; // the primary that proposed the block
        bytes32 merkleRoot; // root of the slips (OpenZeppelin StandardMerkleTree)
        bytes bodyCid; // content address of the block body in storage
    }

    // ------------------------------------------------------------------
    // Errors
    // ------------------------------------------------------------------

    /// @dev The caller is not a current validator.
    error SlipLedgerNotValidator(address caller);
    /// @dev The validator list passed in calldata is not the current set.
    error SlipLedgerUnknownValidatorSet(bytes32 given, bytes32 current);
    /// @dev Signer indexes and signatures do not line up (one 65-byte signature per index).
    error SlipLedgerMalformedSignatures(uint256 indexes, uint256 signatureBytes);
    /// @dev Fewer distinct validator signatures than the quorum.
    error SlipLedgerInsufficientSignatures(uint256 got, uint256 needed);
    /// @dev The same signer appears twice.
    error SlipLedgerDuplicateSignature(address signer);
    /// @dev Signer indexes must be strictly ascending.
    error SlipLedgerUnsortedSignatures(uint256 previousIndex, uint256 index);
    /// @dev A signer index outside the validator set: the claimed signer is not a validator.
    error SlipLedgerSignerIndexOutOfRange(uint256 index, uint256 validators);
    /// @dev A signature does not recover to the validator it is listed for (another header or view,
    /// a non-validator's key, or tampering).
    error SlipLedgerInvalidSignature(address signer, address recovered);
    /// @dev The header's height is not the next one.
    error SlipLedgerOutOfOrder(uint64 expected, uint64 got);
    /// @dev The header does not extend the committed head.
    error SlipLedgerPrevHashMismatch(uint64 height, bytes32 expected, bytes32 got);
    /// @dev A different header is already committed at this height.
    error SlipLedgerForkedHeader(uint64 height, bytes32 committed, bytes32 proposed);
    /// @dev A validator set must have ≥ 4 distinct non-zero members.
    error SlipLedgerInvalidValidatorSet(uint256 size);
    /// @dev No header committed at this height.
    error SlipLedgerUnknownHeight(uint64 height);

    // ------------------------------------------------------------------
    // Events
    // ------------------------------------------------------------------

    /// @notice A certified header was committed (the full header is in the transaction's calldata).
    event BlockCommitted(uint64 indexed height, bytes32 indexed headerHash, bytes32 merkleRoot);
    /// @notice The validator set changed by a quorum of the previous set.
    event ValidatorSetChanged(uint64 indexed epoch, address[] validators);

    // ------------------------------------------------------------------
    // Functions
    // ------------------------------------------------------------------

    /// @notice Commit the next header with its quorum certificate: the COMMIT signatures of
    /// `viewNumber`, one 65-byte signature per signer index (ascending; 1 byte each) of
    /// `validatorSet`, the current set passed in calldata and checked against its stored hash.
    /// Re-submitting an already committed header is a no-op. Validators only.
    function commitBlock(
        BlockHeader calldata header,
        uint64 viewNumber,
        address[] calldata validatorSet,
        bytes calldata signerIndexes,
        bytes calldata signatures
    ) external;

    /// @notice Replace the validator set; a quorum of the current set signs
    /// `ValidatorSetChange(uint64 epoch,address[] validators)` for the next epoch. Validators only.
    function changeValidators(
        address[] calldata newValidators,
        address[] calldata validatorSet,
        bytes calldata signerIndexes,
        bytes calldata signatures
    ) external;

    /// @notice True when `header` is committed and `leaf` is in its Merkle tree.
    function verifyLeaf(BlockHeader calldata header, bytes32[] calldata proof, bytes32 leaf)
        external
        view
        returns (bool);

    /// @notice True when the slip (id, payload) is in the committed block `header`.
    function verifySlip(BlockHeader calldata header, bytes32[] calldata proof, bytes32 slipId, bytes calldata payload)
        external
        view
        returns (bool);

    /// @notice EIP-712 hashStruct of a header (what `prevHash` and the certificate refer to).
    function hashHeader(BlockHeader calldata header) external pure returns (bytes32);

    /// @notice The digest each COMMIT signature covers.
    function commitDigest(bytes32 headerHash, uint64 viewNumber, uint64 seq) external view returns (bytes32);

    /// @notice Height and header hash of the last committed block.
    function head() external view returns (uint64 height, bytes32 headerHash);

    /// @notice The header hash committed at `height`.
    function headerHashAt(uint64 height) external view returns (bytes32);

    /// @notice Current validators, epoch and quorum ⌈(n+f+1)/2⌉ with f = ⌊(n−1)/3⌋ (2f+1 when n = 3f+1).
    function validators() external view returns (address[] memory);
    function epoch() external view returns (uint64);
    function quorum() external view returns (uint256);
    function isValidator(address account) external view returns (bool);

    /// @notice The EIP-712 domain separator (the `domain` of PBFT commit digests).
    function domainSeparator() external view returns (bytes32);
}
