// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {ICreditRegistry} from "./interfaces/ICreditRegistry.sol";
import {IIdentityRegistry} from "./interfaces/IIdentityRegistry.sol";
import {IConsortiumIndex} from "./interfaces/IConsortiumIndex.sol";

/// @title ConsortiumIndex — DPoS-scheduled, ATN-attested blocks of consortium slips
/// @notice Stores one word per block (its header hash) plus one word of chain state.
/// The producer and attester sets come from the CreditRegistry, which this contract
/// drives as its reporter and its clock: it advances the registry's round lazily (the
/// registry reads the round back from `currentRound`), charges missed slots, rewards
/// producers and attesters, and penalises rejected headers. Participants suspended in
/// the IdentityRegistry neither produce nor attest.
contract ConsortiumIndex is IConsortiumIndex, EIP712 {
    // ------------------------------------------------------------------
    // Constants
    // ------------------------------------------------------------------

    bytes32 private constant BLOCK_HEADER_TYPEHASH = keccak256(
        "ConsortiumBlockHeader(uint64 height,bytes32 prevHash,uint64 timestamp,uint64 slot,bytes32 producer,"
        "bytes32 merkleRoot,uint32 itemCount,bytes32 patientsHash,bytes32 bodyCid)"
    );
    bytes32 private constant BLOCK_REJECTION_TYPEHASH = keccak256("BlockRejection(bytes32 headerHash)");
    /// At most this many missed slots are examined (and charged) per call: a commit never pays for more.
    uint256 public constant MAX_MISSED_SLOTS_PER_CALL = 16;

    // ------------------------------------------------------------------
    // Storage
    // ------------------------------------------------------------------

    ICreditRegistry private immutable _credit;
    IIdentityRegistry private immutable _identity;
    uint64 private immutable _genesisTime;
    uint64 private immutable _slotSeconds;
    uint64 private immutable _slotsPerRound;
    uint256 private immutable _quorum;

    mapping(uint64 height => bytes32 headerHash) private _headerHashes;
    uint64 private _height;
    uint64 private _nextSlot; // first slot whose fate (block or miss) is not settled
    mapping(bytes32 headerHash => bool) private _reported;

    constructor(ICreditRegistry credit_, uint64 genesisTime_, uint64 slotSeconds_, uint256 quorum_)
        EIP712("MBDS ConsortiumIndex", "1")
    {
        uint256 atn = credit_.atnCount();
        if (slotSeconds_ == 0 || quorum_ < 2 || quorum_ > atn) {
            revert ConsortiumIndexInvalidConfig(slotSeconds_, quorum_, atn);
        }
        _credit = credit_;
        _identity = credit_.identity();
        _genesisTime = genesisTime_ == 0 ? uint64(block.timestamp) : genesisTime_;
        _slotSeconds = slotSeconds_;
        _slotsPerRound = uint64(credit_.rpnCount());
        _quorum = quorum_;
        // Slots before the deployment are nobody's fault.
        if (block.timestamp > _genesisTime) _nextSlot = uint64((block.timestamp - _genesisTime) / slotSeconds_);
    }

    // ------------------------------------------------------------------
    // Blocks
    // ------------------------------------------------------------------

    /// @inheritdoc IConsortiumIndex
    function commitBlock(BlockHeader calldata header, bytes32[] calldata patientIds, bytes[] calldata attestations)
        external
    {
        uint64 slot = _currentSlot();
        if (header.slot != slot) revert ConsortiumIndexWrongSlot(header.slot, slot);
        // Only a committed block settles the current slot (misses are charged for past slots only).
        if (slot < _nextSlot) revert ConsortiumIndexSlotAlreadyCommitted(slot, _nextSlot);
        _settleUpTo(slot, true); // at most MAX_MISSED_SLOTS_PER_CALL charged; the rest is forgiven
        bytes32 producerId = _checkProducer(header, slot);
        _checkSequence(header, slot);
        _checkPatients(header.patientsHash, patientIds);
        bytes32 headerHash = _hashHeader(header);
        bytes32[] memory attesters =
            _attesterIds(_hashTypedDataV4(headerHash), attestations, _effectiveQuorum(_credit.atnSeated()), true);

        uint64 height = header.height;
        _headerHashes[height] = headerHash;
        _height = height;
        _nextSlot = slot + 1;
        emit BlockCommitted(height, headerHash, producerId, header, attesters);
        for (uint256 i; i < patientIds.length; ++i) {
            emit PatientIndexed(patientIds[i], height);
        }

        _credit.rewardBlock(producerId, attesters);
    }

    /// @inheritdoc IConsortiumIndex
    function reportMissedSlots() external {
        _settleUpTo(_currentSlot(), false);
    }

    /// @inheritdoc IConsortiumIndex
    function advanceRound() external {
        _settleUpTo(_currentSlot(), false);
    }

    /// @inheritdoc IConsortiumIndex
    function reportInvalidBlock(
        BlockHeader calldata header,
        bytes calldata producerSignature,
        bytes32[] calldata atnSet,
        bytes[] calldata rejections,
        bytes[] calldata attestations
    ) external {
        bytes32 headerHash = _checkReport(header, producerSignature);
        (bytes32[] memory rejecters, bytes32[] memory attesters) =
            _judges(header.slot, headerHash, atnSet, rejections, attestations);

        _reported[headerHash] = true;
        emit BlockRejected(headerHash, header.slot, header.producer, rejecters, attesters);

        _credit.penalise(header.producer, ICreditRegistry.Offence.InvalidBlock, headerHash);
        for (uint256 i; i < attesters.length; ++i) {
            _credit.penalise(attesters[i], ICreditRegistry.Offence.WrongAttestation, headerHash);
        }
    }

    // ------------------------------------------------------------------
    // Views
    // ------------------------------------------------------------------

    /// @inheritdoc IConsortiumIndex
    function verifyItem(
        BlockHeader calldata header,
        bytes32[] calldata proof,
        bytes32 slipHash,
        uint256 index,
        bytes32 itemHash
    ) external view returns (bool) {
        bytes32 headerHash = _hashHeader(header);
        if (header.height == 0 || _headerHashes[header.height] != headerHash) {
            revert ConsortiumIndexHeaderNotCommitted(header.height, headerHash);
        }
        // The leaf is hashed here, never taken as given: an inner node cannot pose as a leaf.
        return MerkleProof.verifyCalldata(proof, header.merkleRoot, _itemLeaf(slipHash, index, itemHash));
    }

    /// @inheritdoc IConsortiumIndex
    function itemLeaf(bytes32 slipHash, uint256 index, bytes32 itemHash) external pure returns (bytes32) {
        return _itemLeaf(slipHash, index, itemHash);
    }

    /// @inheritdoc IConsortiumIndex
    function hashHeader(BlockHeader calldata header) external pure returns (bytes32) {
        return _hashHeader(header);
    }

    /// @inheritdoc IConsortiumIndex
    function headerDigest(BlockHeader calldata header) external view returns (bytes32) {
        return _hashTypedDataV4(_hashHeader(header));
    }

    /// @inheritdoc IConsortiumIndex
    function rejectionDigest(bytes32 headerHash) external view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(BLOCK_REJECTION_TYPEHASH, headerHash)));
    }

    /// @inheritdoc IConsortiumIndex
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    /// @inheritdoc IConsortiumIndex
    function head() external view returns (uint64 height, bytes32 headerHash) {
        return (_height, _headerHashes[_height]);
    }

    /// @inheritdoc IConsortiumIndex
    function headerHashAt(uint64 height) external view returns (bytes32) {
        return _headerHashes[height];
    }

    /// @inheritdoc IConsortiumIndex
    function nextUnsettledSlot() external view returns (uint64) {
        return _nextSlot;
    }

    /// @inheritdoc IConsortiumIndex
    function genesisTime() external view returns (uint64) {
        return _genesisTime;
    }

    /// @inheritdoc IConsortiumIndex
    function slotSeconds() external view returns (uint64) {
        return _slotSeconds;
    }

    /// @inheritdoc IConsortiumIndex
    function slotsPerRound() external view returns (uint64) {
        return _slotsPerRound;
    }

    /// @inheritdoc IConsortiumIndex
    function quorum() external view returns (uint256) {
        return _quorum;
    }

    /// @inheritdoc IConsortiumIndex
    function attestationQuorum() external view returns (uint256) {
        return _effectiveQuorum(_credit.atnSeated());
    }

    /// @inheritdoc IConsortiumIndex
    function credit() external view returns (ICreditRegistry) {
        return _credit;
    }

    /// @inheritdoc IConsortiumIndex
    function currentSlot() external view returns (uint64) {
        return _currentSlot();
    }

    /// @inheritdoc IConsortiumIndex
    function currentRound() external view returns (uint64) {
        return _currentSlot() / _slotsPerRound;
    }

    /// @inheritdoc IConsortiumIndex
    function producerOf(uint64 slot) external view returns (bytes32 id, address account) {
        return _credit.rpnAt(slot % _slotsPerRound);
    }

    // ------------------------------------------------------------------
    // Internal: clock and missed slots
    // ------------------------------------------------------------------

    function _currentSlot() private view returns (uint64) {
        if (block.timestamp < _genesisTime) revert ConsortiumIndexBeforeGenesis(block.timestamp, _genesisTime);
        return uint64((block.timestamp - _genesisTime) / _slotSeconds);
    }

    /// Settle slots before `end` (the current slot): charge the misses of the registry's round, move the
    /// registry to the round of `end` once that round is settled (it reads the round back from
    /// `currentRound`; activating elections and replacements), then charge the misses of that round. At
    /// most MAX_MISSED_SLOTS_PER_CALL slots are examined per call. With `forgive` (a commit, which must
    /// settle everything before its slot) the slots beyond that bound are forgiven (`SlotsForgiven`);
    /// without it they stay pending for the next call (`reportMissedSlots`, anyone). Whole rounds without
    /// any block are charged to nobody.
    function _settleUpTo(uint64 end, bool forgive) private {
        uint64 target = end / _slotsPerRound;
        uint64 registryRound = _credit.round();
        if (registryRound > target) revert ConsortiumIndexRegistryAhead(registryRound, target);
        uint256 budget = MAX_MISSED_SLOTS_PER_CALL;
        if (registryRound < target) {
            budget = _chargeMissed(registryRound, end, budget, forgive);
            uint64 roundEnd = (registryRound + 1) * _slotsPerRound;
            if (_nextSlot < roundEnd && _nextSlot < end) return; // the registry's round is not settled yet
            _credit.advanceRound();
        }
        _chargeMissed(target, end, budget, forgive);
    }

    function _chargeMissed(uint64 round_, uint64 end, uint256 budget, bool forgive) private returns (uint256) {
        uint64 roundStart = round_ * _slotsPerRound;
        uint64 first = _nextSlot < roundStart ? roundStart : _nextSlot;
        uint64 last = roundStart + _slotsPerRound < end ? roundStart + _slotsPerRound : end;
        if (first >= last) return budget;
        if (_credit.rosterVersion() == 0) {
            _nextSlot = last; // no roster yet: nobody was scheduled
            return budget;
        }
        uint64 s = first;
        for (; s < last && budget != 0; ++s) {
            --budget;
            (bytes32 id,) = _credit.rpnAt(s - roundStart);
            if (id == bytes32(0)) continue; // vacant seat
            emit SlotMissed(s, id);
            _credit.penalise(id, ICreditRegistry.Offence.MissedSlot, bytes32(uint256(s)));
        }
        if (s < last && forgive) {
            emit SlotsForgiven(s, last);
            s = last;
        }
        _nextSlot = s;
        return budget;
    }

    /// The attestations a block needs: the configured quorum, or every seated ATN once fewer are left
    /// (a shrinking ATN set does not halt commits; with none seated nobody can attest).
    function _effectiveQuorum(uint256 seated) private view returns (uint256) {
        return seated == 0 || seated >= _quorum ? _quorum : seated;
    }

    // ------------------------------------------------------------------
    // Internal: checks
    // ------------------------------------------------------------------

    function _checkProducer(BlockHeader calldata header, uint64 slot) private view returns (bytes32 producerId) {
        address producer;
        (producerId, producer) = _credit.rpnAt(slot % _slotsPerRound);
        if (producer == address(0) || msg.sender != producer) {
            revert ConsortiumIndexNotScheduledProducer(slot, producer, msg.sender);
        }
        if (header.producer != producerId) revert ConsortiumIndexWrongProducer(slot, producerId, header.producer);
        if (_isSuspended(producerId, producer)) revert ConsortiumIndexProducerSuspended(slot, producerId);
    }

    function _checkSequence(BlockHeader calldata header, uint64 slot) private view {
        uint64 expected = _height + 1;
        if (header.height != expected) revert ConsortiumIndexWrongHeight(expected, header.height);
        bytes32 prev = _headerHashes[_height];
        if (header.prevHash != prev) revert ConsortiumIndexWrongPrevHash(prev, header.prevHash);
        uint256 slotStart = uint256(_genesisTime) + uint256(slot) * _slotSeconds;
        if (header.timestamp < slotStart || header.timestamp > block.timestamp) {
            revert ConsortiumIndexTimestampOutOfSlot(header.timestamp, slotStart, block.timestamp);
        }
    }

    function _checkPatients(bytes32 patientsHash, bytes32[] calldata patientIds) private pure {
        for (uint256 i = 1; i < patientIds.length; ++i) {
            if (patientIds[i] <= patientIds[i - 1]) revert ConsortiumIndexPatientsNotSorted(i, patientIds[i]);
        }
        bytes32 computed = keccak256(abi.encodePacked(patientIds));
        if (computed != patientsHash) revert ConsortiumIndexPatientsMismatch(patientsHash, computed);
    }

    /// Recover the signers of `digest` (strictly ascending addresses, hence distinct), require
    /// each to hold an ATN seat now (and, if `activeOnly`, not to be suspended) and at least
    /// `minimum` of them; returns their institution IDs.
    function _attesterIds(bytes32 digest, bytes[] calldata signatures, uint256 minimum, bool activeOnly)
        private
        view
        returns (bytes32[] memory ids)
    {
        uint256 n = signatures.length;
        if (n < minimum) revert ConsortiumIndexInsufficientAttestations(n, minimum);
        address[] memory signers = new address[](n);
        address previous;
        for (uint256 i; i < n; ++i) {
            (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, signatures[i]);
            if (err != ECDSA.RecoverError.NoError) revert ConsortiumIndexInvalidSignature(i);
            if (signer <= previous) revert ConsortiumIndexSignersNotSorted(i, signer);
            signers[i] = signer;
            previous = signer;
        }
        if (n == 0) return ids;
        ids = _credit.atnIdsOf(signers);
        for (uint256 i; i < n; ++i) {
            if (ids[i] == bytes32(0)) revert ConsortiumIndexNotAttester(signers[i]);
            if (activeOnly && _isSuspended(ids[i], signers[i])) {
                revert ConsortiumIndexAttesterSuspended(signers[i], ids[i]);
            }
        }
    }

    /// A reportable header: its slot has begun and its round is the registry's or earlier, not reported
    /// before, not committed (a committed block carried a quorum of attestations: it is valid, and so
    /// were they), signed by its producer. Returns its hash.
    function _checkReport(BlockHeader calldata header, bytes calldata producerSignature)
        private
        returns (bytes32 headerHash)
    {
        uint64 now_ = _currentSlot();
        if (header.slot > now_) revert ConsortiumIndexFutureSlot(header.slot, now_);
        _settleUpTo(now_, false); // bring the registry to the header's round if it lags (bounded)
        uint64 round_ = header.slot / _slotsPerRound;
        uint64 registryRound = _credit.round();
        if (registryRound < round_) revert ConsortiumIndexRoundNotSettled(round_, registryRound);
        headerHash = _hashHeader(header);
        if (_reported[headerHash]) revert ConsortiumIndexAlreadyReported(headerHash);
        if (header.height != 0 && _headerHashes[header.height] == headerHash) {
            revert ConsortiumIndexBlockCommitted(header.height, headerHash);
        }
        address producer = _credit.institution(header.producer).account;
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(_hashTypedDataV4(headerHash), producerSignature);
        if (err != ECDSA.RecoverError.NoError || signer != producer) {
            revert ConsortiumIndexBadProducerSignature(header.producer, signer);
        }
    }

    /// The ATNs of the header's round judge it, not those of the round the report lands in: `atnSet` must
    /// hash to the set the registry recorded for that round. ≥ quorum of them (not suspended now) rejected
    /// it; the attesters shown pay even if suspended since.
    function _judges(
        uint64 slot,
        bytes32 headerHash,
        bytes32[] calldata atnSet,
        bytes[] calldata rejections,
        bytes[] calldata attestations
    ) private view returns (bytes32[] memory rejecters, bytes32[] memory attesters) {
        _checkAtnSet(slot / _slotsPerRound, atnSet);
        rejecters = _membersOf(
            _hashTypedDataV4(keccak256(abi.encode(BLOCK_REJECTION_TYPEHASH, headerHash))),
            rejections,
            atnSet,
            _effectiveQuorum(atnSet.length),
            true
        );
        attesters = _membersOf(_hashTypedDataV4(headerHash), attestations, atnSet, 0, false);
    }

    function _checkAtnSet(uint64 round_, bytes32[] calldata atnSet) private view {
        (, bytes32 atnHash) = _credit.atnSetAt(round_);
        bytes32 given = keccak256(abi.encodePacked(atnSet));
        if (given != atnHash) revert ConsortiumIndexWrongAtnSet(round_, atnHash, given);
    }

    /// Recover the signers of `digest` (strictly ascending addresses, hence distinct), require each to be
    /// an institution of `members` (the ATN set of a past round; and, if `activeOnly`, not suspended now)
    /// and at least `minimum` of them; returns their institution IDs.
    function _membersOf(
        bytes32 digest,
        bytes[] calldata signatures,
        bytes32[] calldata members,
        uint256 minimum,
        bool activeOnly
    ) private view returns (bytes32[] memory ids) {
        uint256 n = signatures.length;
        if (n < minimum) revert ConsortiumIndexInsufficientAttestations(n, minimum);
        ids = new bytes32[](n);
        address previous;
        for (uint256 i; i < n; ++i) {
            (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, signatures[i]);
            if (err != ECDSA.RecoverError.NoError) revert ConsortiumIndexInvalidSignature(i);
            if (signer <= previous) revert ConsortiumIndexSignersNotSorted(i, signer);
            previous = signer;
            bytes32 id = _credit.idOf(signer);
            if (id == bytes32(0) || !_contains(members, id)) revert ConsortiumIndexNotAttester(signer);
            if (activeOnly && _isSuspended(id, signer)) revert ConsortiumIndexAttesterSuspended(signer, id);
            ids[i] = id;
        }
    }

    function _contains(bytes32[] calldata list, bytes32 id) private pure returns (bool) {
        for (uint256 i; i < list.length; ++i) {
            if (list[i] == id) return true;
        }
        return false;
    }

    /// Suspended in the IdentityRegistry (`account` is the one the CreditRegistry holds for `id`).
    /// One cheap `isActive` read while it is the participant's current account; an account replaced
    /// by a key rotation (not yet synced in the CreditRegistry) falls back to the participant record.
    function _isSuspended(bytes32 id, address account) private view returns (bool) {
        if (_identity.isActive(account)) return false;
        return _identity.participant(id).suspended;
    }

    /// StandardMerkleTree leaf: the double hash of the 96-byte encoding. An inner node is the hash of
    /// 64 bytes, so no leaf equals an inner node (short of a keccak256 collision).
    function _itemLeaf(bytes32 slipHash, uint256 index, bytes32 itemHash) private pure returns (bytes32) {
        return keccak256(bytes.concat(keccak256(abi.encode(slipHash, index, itemHash))));
    }

    function _hashHeader(BlockHeader calldata h) private pure returns (bytes32) {
        return keccak256(
            abi.encode(
                BLOCK_HEADER_TYPEHASH,
                h.height,
                h.prevHash,
                h.timestamp,
                h.slot,
                h.producer,
                h.merkleRoot,
                h.itemCount,
                h.patientsHash,
                h.bodyCid
            )
        );
    }
}
