// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ICreditRegistry} from "./ICreditRegistry.sol";

/// @title IConsortiumIndex — DPoS blocks of consortium slips (paper Figure 4)
/// @notice Time is cut into fixed-length slots from a genesis time; K slots make a
/// round. The RPN scheduled for slot s is RPN seat `s mod K` of the CreditRegistry's
/// roster for that round. A block is accepted only from that RPN's account, in
/// its slot, extending the last committed header, with at least `quorum`
/// EIP-712 attestations of the header by distinct current ATN accounts
/// (signatures sorted by ascending signer address). Only the header hash is
/// stored per height; summary items are proven against the header's Merkle root.
///
/// Block body: consortium slips of ≤ 10 summary items, each slip signed by the
/// submitting (bridge) institution. Merkle leaves are the items:
/// `keccak256(bytes.concat(keccak256(abi.encode(slipHash, itemIndex, itemHash))))`
/// with `slipHash`/`itemHash` the EIP-712 struct hashes of
/// `ConsortiumSlip(bytes32 slipId,uint64 timestamp,bytes32 origin,SummaryItem[] items)` and
/// `SummaryItem(bytes32 patientId,bytes[] keywords,bytes32 hmiHash,uint64 chainId,uint64 blockHeight,bytes32 slipId)`;
/// the tree is OpenZeppelin's StandardMerkleTree (sorted leaves, sorted pairs).
///
/// Patient lookup: every block emits one `PatientIndexed(patientId, height)` per
/// distinct patient of its items (topic 1 = patient ID), so the proxy finds a
/// patient's blocks with one `eth_getLogs` filtered on that topic. The list is
/// committed in the attested header (`patientsHash`), so the index is as
/// trustworthy as the block. Per distinct patient rather than per item: a
/// patient's several records in one block cost one log, not several.
///
/// Suspension: a participant suspended in the IdentityRegistry neither produces nor
/// attests (nor rejects) here, whatever seat it still holds until the next round boundary.
///
/// Misbehaviour costs credit: slots that passed without a block are charged to
/// their RPN (by anyone through `reportMissedSlots`, or by the next commit), at most
/// MAX_MISSED_SLOTS_PER_CALL per call: `reportMissedSlots` leaves the rest pending
/// for the next call, a commit forgives it, so a producer never pays for an
/// unbounded backlog. A header a quorum of the ATNs of its round rejected is charged
/// to the producer that signed it and to every ATN of that round shown to have
/// attested it (`reportInvalidBlock`); a committed block cannot be reported.
///
/// Quorum: at least 2 (constructor); when fewer ATN seats are left than the quorum
/// (the reserve ran out), every seated ATN must attest (`attestationQuorum`).
interface IConsortiumIndex {
    // ------------------------------------------------------------------
    // Types
    // ------------------------------------------------------------------

    /// @notice A consortium block header (the private-chain header's shape, plus slot,
    /// producer ID, item count and the patient-list commitment).
    struct BlockHeader {
        uint64 height; // 1, 2, 3, ... (0 is the genesis head)
        bytes32 prevHash; // hashStruct of the previous header (zero for height 1)
        uint64 timestamp; // seconds since the Unix epoch, within the slot
        uint64 slot; // the slot the block was produced in
        bytes32 producer; // institution ID of the producing RPN
        bytes32 merkleRoot; // root over the item leaves (zero for an empty block)
        uint32 itemCount; // number of summary items (leaves)
        bytes32 patientsHash; // keccak256(abi.encodePacked(distinct patient IDs, ascending))
        bytes32 bodyCid; // sha2-256 digest of the body's CID (CIDv0 multihash digest)
    }

    // ------------------------------------------------------------------
    // Errors
    // ------------------------------------------------------------------

    /// @dev Zero slot length, or a quorum below 2 or above the ATN count.
    error ConsortiumIndexInvalidConfig(uint256 slotSeconds, uint256 quorum, uint256 atnCount);
    /// @dev The clock has not reached the genesis time.
    error ConsortiumIndexBeforeGenesis(uint256 timestamp, uint256 genesisTime);
    /// @dev The header's slot is not the current slot.
    error ConsortiumIndexWrongSlot(uint64 slot, uint64 currentSlot);
    /// @dev A block was already committed in this slot: one block per slot.
    error ConsortiumIndexSlotAlreadyCommitted(uint64 slot, uint64 nextUnsettledSlot);
    /// @dev The RPN scheduled for the slot is suspended in the IdentityRegistry.
    error ConsortiumIndexProducerSuspended(uint64 slot, bytes32 producer);
    /// @dev An attesting (or rejecting) ATN is suspended in the IdentityRegistry.
    error ConsortiumIndexAttesterSuspended(address signer, bytes32 id);
    /// @dev The caller is not the account of the RPN scheduled for the slot (out of turn).
    error ConsortiumIndexNotScheduledProducer(uint64 slot, address expected, address caller);
    /// @dev The header names another producer than the scheduled RPN.
    error ConsortiumIndexWrongProducer(uint64 slot, bytes32 expected, bytes32 producer);
    /// @dev The header's height is not the next one.
    error ConsortiumIndexWrongHeight(uint64 expected, uint64 height);
    /// @dev The header does not extend the last committed header.
    error ConsortiumIndexWrongPrevHash(bytes32 expected, bytes32 prevHash);
    /// @dev The header's timestamp is before its slot or after the current time.
    error ConsortiumIndexTimestampOutOfSlot(uint64 timestamp, uint256 slotStart, uint256 now_);
    /// @dev Patient IDs must be strictly ascending (distinct).
    error ConsortiumIndexPatientsNotSorted(uint256 index, bytes32 patientId);
    /// @dev The patient IDs do not hash to the header's `patientsHash`.
    error ConsortiumIndexPatientsMismatch(bytes32 patientsHash, bytes32 computed);
    /// @dev A signature is malformed or not canonical.
    error ConsortiumIndexInvalidSignature(uint256 index);
    /// @dev Signatures must be sorted by strictly ascending signer address.
    error ConsortiumIndexSignersNotSorted(uint256 index, address signer);
    /// @dev A signer does not hold an ATN seat in the current round.
    error ConsortiumIndexNotAttester(address signer);
    /// @dev Fewer ATN signatures than the quorum.
    error ConsortiumIndexInsufficientAttestations(uint256 count, uint256 quorum);
    /// @dev The producer signature does not recover to the producer's account.
    error ConsortiumIndexBadProducerSignature(bytes32 producer, address signer);
    /// @dev This header was already reported as invalid.
    error ConsortiumIndexAlreadyReported(bytes32 headerHash);
    /// @dev The header is not the one committed at its height.
    error ConsortiumIndexHeaderNotCommitted(uint64 height, bytes32 headerHash);
    /// @dev A committed block is valid (a quorum attested it): neither it nor its attestations can be reported.
    error ConsortiumIndexBlockCommitted(uint64 height, bytes32 headerHash);
    /// @dev A reported header's slot has not begun.
    error ConsortiumIndexFutureSlot(uint64 slot, uint64 currentSlot);
    /// @dev The registry has not reached the reported header's round yet (missed slots still pending).
    error ConsortiumIndexRoundNotSettled(uint64 round, uint64 registryRound);
    /// @dev The ATN set given for the header's round does not hash to the one the registry recorded.
    error ConsortiumIndexWrongAtnSet(uint64 round, bytes32 expected, bytes32 given);
    /// @dev The CreditRegistry is already in a later round than the clock.
    error ConsortiumIndexRegistryAhead(uint64 registryRound, uint64 round);

    // ------------------------------------------------------------------
    // Events
    // ------------------------------------------------------------------

    /// @notice A block was committed; `attesters` are the ATN institution IDs that signed it.
    event BlockCommitted(
        uint64 indexed height, bytes32 indexed headerHash, bytes32 indexed producer, BlockHeader header, bytes32[] attesters
    );
    /// @notice The block at `height` holds items of `patientId` (one log per distinct patient per block).
    event PatientIndexed(bytes32 indexed patientId, uint64 height);
    /// @notice A slot passed without a block; its RPN was penalised.
    event SlotMissed(uint64 indexed slot, bytes32 indexed producer);
    /// @notice Slots `[fromSlot, toSlot)` passed without a block and were not charged: a commit settles at most
    /// MAX_MISSED_SLOTS_PER_CALL of them (anyone's `reportMissedSlots` charges pending misses before that).
    event SlotsForgiven(uint64 indexed fromSlot, uint64 toSlot);
    /// @notice An ATN quorum rejected a producer-signed header; producer and shown attesters were penalised.
    event BlockRejected(
        bytes32 indexed headerHash, uint64 indexed slot, bytes32 indexed producer, bytes32[] rejecters, bytes32[] attesters
    );

    // ------------------------------------------------------------------
    // Blocks
    // ------------------------------------------------------------------

    /// @notice Commit the next block. Only the scheduled RPN's account (not suspended), in its slot, one
    /// block per slot, with ≥ `attestationQuorum()` attestations over `headerDigest(header)` by non-suspended ATN accounts
    /// sorted by signer; `patientIds` are the block's distinct patient IDs, ascending. Charges up to
    /// MAX_MISSED_SLOTS_PER_CALL missed slots since the last block to their RPNs (forgives the rest) and
    /// rewards the producer and the attesters.
    function commitBlock(BlockHeader calldata header, bytes32[] calldata patientIds, bytes[] calldata attestations)
        external;

    /// @notice Charge up to MAX_MISSED_SLOTS_PER_CALL slots that passed without a block, oldest first;
    /// call again while `nextUnsettledSlot()` lags (anyone).
    function reportMissedSlots() external;

    /// @notice Bring the CreditRegistry to the current round (anyone; once the registry's round is settled,
    /// which may take several calls); set changes apply at round boundaries.
    function advanceRound() external;

    /// @notice Penalise a producer for a header it signed that ≥ quorum ATNs of the header's round
    /// (`atnSet`: the IDs of `CreditRegistry.AtnSetRecorded` for that round, checked against `atnSetAt`)
    /// rejected (`rejectionDigest(hashHeader(header))`, sorted by signer), and every ATN of that round
    /// whose attestation of that header is shown in `attestations` (sorted by signer). Anyone; once per
    /// header; never a committed header.
    function reportInvalidBlock(
        BlockHeader calldata header,
        bytes calldata producerSignature,
        bytes32[] calldata atnSet,
        bytes[] calldata rejections,
        bytes[] calldata attestations
    ) external;

    // ------------------------------------------------------------------
    // Views
    // ------------------------------------------------------------------

    /// @notice True when `header` is committed and item `index` (struct hash `itemHash`) of the slip with
    /// struct hash `slipHash` is in its Merkle tree. The leaf is computed here (`itemLeaf`), never taken
    /// raw, so an inner node with a shorter proof does not verify. Reverts with
    /// ConsortiumIndexHeaderNotCommitted for a header that is not committed.
    function verifyItem(
        BlockHeader calldata header,
        bytes32[] calldata proof,
        bytes32 slipHash,
        uint256 index,
        bytes32 itemHash
    ) external view returns (bool);

    /// @notice The Merkle leaf of item `index` of the slip with struct hash `slipHash`.
    function itemLeaf(bytes32 slipHash, uint256 index, bytes32 itemHash) external pure returns (bytes32);

    /// @notice EIP-712 hashStruct of a header (what `prevHash` refers to and what is stored).
    function hashHeader(BlockHeader calldata header) external pure returns (bytes32);

    /// @notice The EIP-712 digest an attestation (or the producer's signature) covers.
    function headerDigest(BlockHeader calldata header) external view returns (bytes32);

    /// @notice The EIP-712 digest of `BlockRejection(bytes32 headerHash)` an ATN signs to reject.
    function rejectionDigest(bytes32 headerHash) external view returns (bytes32);

    /// @notice The EIP-712 domain separator (also the domain of slip signatures).
    function domainSeparator() external view returns (bytes32);

    /// @notice Height and header hash of the last committed block.
    function head() external view returns (uint64 height, bytes32 headerHash);

    /// @notice The header hash committed at `height` (zero if none).
    function headerHashAt(uint64 height) external view returns (bytes32);

    /// @notice The first slot whose fate (block or miss) is not yet settled.
    function nextUnsettledSlot() external view returns (uint64);

    /// @notice The clock: genesis time, slot length, slots per round (K).
    function genesisTime() external view returns (uint64);
    function slotSeconds() external view returns (uint64);
    function slotsPerRound() external view returns (uint64);
    function quorum() external view returns (uint256);

    /// @notice The attestations a block needs now: `quorum()`, or every seated ATN if fewer are left.
    function attestationQuorum() external view returns (uint256);
    function credit() external view returns (ICreditRegistry);

    /// @notice The slot at the current block time.
    function currentSlot() external view returns (uint64);

    /// @notice The round at the current block time (`currentSlot() / slotsPerRound()`): the only round
    /// the CreditRegistry's `advanceRound` moves to.
    function currentRound() external view returns (uint64);

    /// @notice The RPN scheduled for `slot`: seat `slot mod K` of the registry's active roster
    /// (valid for slots of the registry's current round and, once advanced, later rounds).
    function producerOf(uint64 slot) external view returns (bytes32 id, address account);
}
