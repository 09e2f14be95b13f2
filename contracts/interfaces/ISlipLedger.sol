// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title ISlipLedger — a hospital private chain's PBFT-certified block headers
/// @notice Each header is accepted only with a quorum certificate: ≥ 2f+1
/// distinct validators of the set in force at its height (the hospital and the
/// national, provincial and municipal health authorities) signed the PBFT
/// COMMIT for it.  Only the header hash is stored; slips are proven against the
/// header's Merkle root.  A validator set (an epoch) applies from a stated
/// first height until the next set's first height: headers below a change are
/// still verified against the old set.
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

    /// @notice A validator-set change: `validators` is epoch `epoch`, in force from `fromHeight` on.
    struct ValidatorSetChange {
        uint64 epoch; // the latest scheduled epoch + 1
        uint64 fromHeight; // first height the new set certifies; heights below keep the old set
        address[] validators; // 4 … 256 distinct non-zero addresses, in signer-index order
    }

    /// @notice One set's signatures over a digest: one 65-byte signature per signer index
    /// (ascending, one byte each) into that set.
    struct SetSignatures {
        bytes signerIndexes;
        bytes signatures;
    }

    /// @notice A header's quorum certificate in a batch (`commitBlocks`): the COMMIT signatures of
    /// `viewNumber`, laid out as `commitBlock`'s.
    struct Certificate {
        uint64 viewNumber;
        bytes signerIndexes;
        bytes signatures;
    }

    // ------------------------------------------------------------------
    // Errors
    // ------------------------------------------------------------------

    /// @dev The caller is not in the validator set the call is checked against.
    error SlipLedgerNotValidator(address caller);
    /// @dev The validator list passed in calldata is not the set in force at that height (for a
    /// change: the latest scheduled set).
    error SlipLedgerUnknownValidatorSet(bytes32 given, bytes32 expected);
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
    /// @dev A validator set has more members than one-byte signer indexes can name.
    error SlipLedgerTooManyValidators(uint256 size, uint256 max);
    /// @dev A change names another epoch than the next one (a replayed or out-of-turn change).
    error SlipLedgerUnexpectedEpoch(uint64 expected, uint64 got);
    /// @dev A change must start above the head and above the latest scheduled change.
    error SlipLedgerInvalidChangeHeight(uint64 fromHeight, uint64 earliest);
    /// @dev No header committed at this height.
    error SlipLedgerUnknownHeight(uint64 height);
    /// @dev A batch holds no header.
    error SlipLedgerEmptyBatch();
    /// @dev A batch needs one certificate per header.
    error SlipLedgerBatchMismatch(uint256 headers, uint256 certificates);

    // ------------------------------------------------------------------
    // Events
    // ------------------------------------------------------------------

    /// @notice A certified header was committed (the full header, its Merkle root included, is in the
    /// transaction's calldata).
    event BlockCommitted(uint64 indexed height, bytes32 headerHash);
    /// @notice Validator set `epoch` was recorded (by the constructor, or by quorums of the previous
    /// and the new set); it certifies headers from `fromHeight` on.
    event ValidatorSetChanged(uint64 indexed epoch, uint64 indexed fromHeight, address[] validators);

    // ------------------------------------------------------------------
    // Functions
    // ------------------------------------------------------------------

    /// @notice Commit the next header with its quorum certificate: the COMMIT signatures of
    /// `viewNumber`, one 65-byte signature per signer index (ascending; 1 byte each) of
    /// `validatorSet`, the set in force at the header's height passed in calldata and checked
    /// against its stored hash. Re-submitting an already committed header is a no-op. Validators
    /// of that set only.
    function commitBlock(
        BlockHeader calldata header,
        uint64 viewNumber,
        address[] calldata validatorSet,
        bytes calldata signerIndexes,
        bytes calldata signatures
    ) external;

    /// @notice Commit consecutive headers in one transaction (anchoring that fell behind): `headers[0]`
    /// is head + 1, each next one extends the one before, and each is checked against its own
    /// `certificates[i]` exactly as `commitBlock` checks one header, all against `validatorSet`, the
    /// set in force at every height of the batch (a batch does not cross a validator-set change).
    /// All or nothing: one refused header reverts the batch. Validators of that set only.
    function commitBlocks(
        BlockHeader[] calldata headers,
        Certificate[] calldata certificates,
        address[] calldata validatorSet
    ) external;

    /// @notice Schedule the next validator set from `change.fromHeight` (above the head and above
    /// the latest scheduled change). A quorum of the latest scheduled set (`validatorSet`,
    /// `byCurrent`) and a quorum of the new set (`byNew`) sign the EIP-712 struct
    /// `ValidatorSetChange(uint64 epoch,uint64 fromHeight,address[] validators)`. Members of the
    /// latest scheduled set only.
    function changeValidators(
        ValidatorSetChange calldata change,
        address[] calldata validatorSet,
        SetSignatures calldata byCurrent,
        SetSignatures calldata byNew
    ) external;

    /// @notice True when the slip (id, payload) is in the committed block `header`. The leaf,
    /// `keccak256(bytes.concat(keccak256(abi.encode(slipId, payload))))`, is computed here and never
    /// taken raw, so an inner node of the tree with a shorter proof does not verify.
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

    /// @notice Validators, epoch and quorum ⌈(n+f+1)/2⌉ with f = ⌊(n−1)/3⌋ (2f+1 when n = 3f+1) of
    /// the set in force for the next header (head + 1).
    function validators() external view returns (address[] memory);
    function epoch() external view returns (uint64);
    function quorum() external view returns (uint256);
    function isValidator(address account) external view returns (bool);

    /// @notice The set in force at `height` (≥ 1): its epoch, its first height and its members.
    function validatorSetAt(uint64 height)
        external
        view
        returns (uint64 setEpoch, uint64 fromHeight, address[] memory members);

    /// @notice The latest scheduled epoch and its first height (a change must come after it).
    function latestEpoch() external view returns (uint64 setEpoch, uint64 fromHeight);

    /// @notice The EIP-712 domain separator (the `domain` of PBFT commit digests).
    function domainSeparator() external view returns (bytes32);
}
