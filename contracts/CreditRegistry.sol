// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IIdentityRegistry} from "./interfaces/IIdentityRegistry.sol";
import {IGoverned} from "./interfaces/IGoverned.sol";
import {ICreditRegistry} from "./interfaces/ICreditRegistry.sol";
import {IConsortiumIndex} from "./interfaces/IConsortiumIndex.sol";

/// @title CreditRegistry — multi-dimensional credit, RPN/ATN election, rewards, penalties, replacement
/// @notice Governance is k-of-n of the active health authorities: the IdentityRegistry's
/// AuthorityGovernor alone registers institutions with their dimensions, sets dimensions, weights and
/// incentives (the last three after its delay), appoints reporters, clears penalties, binds the clock
/// and runs elections.
/// Rosters are double-buffered: an election writes the inactive buffer and a round
/// boundary flips it in O(1), so activation never copies a roster on the hot path.
/// Sorting stays off-chain: `elect` only verifies the submitted ranking in O(n).
/// Rounds come from the bound clock (the ConsortiumIndex) alone; suspension is read
/// live from the IdentityRegistry wherever eligibility is decided.
contract CreditRegistry is ICreditRegistry {
    // ------------------------------------------------------------------
    // Constants
    // ------------------------------------------------------------------

    uint256 private constant BPS = 10_000;
    uint256 private constant MAX_DIMENSION = 10_000;
    /// Bounds of the incentives: a reward per unit of service, a penalty per offence, the removal
    /// threshold (a credit: at most the largest base credit).
    uint256 public constant MAX_REWARD = 1_000;
    uint256 public constant MAX_PENALTY = 10_000;
    uint256 public constant MAX_THRESHOLD = MAX_DIMENSION;

    // ------------------------------------------------------------------
    // Storage types
    // ------------------------------------------------------------------

    /// Everything the credit needs sits in the first slot (one SLOAD per candidate in `elect`).
    struct Record {
        uint16 hospitalGrade;
        uint16 infoCenterScale;
        uint16 enterpriseStrength;
        uint64 rewardPoints;
        uint64 penaltyPoints;
        bool registered;
        bool willing;
        bool removalQueued;
        IIdentityRegistry.Role role;
        address account;
    }

    /// A seat is valid only while `version` equals its roster's version, so a reused
    /// buffer needs no clearing of the previous occupants' seats.
    struct Seat {
        uint64 version;
        SeatKind kind;
        uint16 index; // RPN seat index (unused for ATN: the ATN list is ordered by rank)
    }

    /// The ATN set in force from `fromRound` until the next checkpoint: `keccak256(abi.encodePacked(atn))`.
    struct AtnCheckpoint {
        uint64 fromRound;
        bytes32 atnHash;
    }

    struct Roster {
        uint64 version; // election number; 0 = never filled
        uint64 fromRound;
        uint64 reserveNext; // next reserve rank to admit
        bytes32[] rpn; // K seats; zero = vacant
        bytes32[] atn; // by election rank, best first
        bytes32[] reserve; // ranks after the ATN, best first
        mapping(bytes32 id => Seat) seats;
    }

    // ------------------------------------------------------------------
    // Storage
    // ------------------------------------------------------------------

    IIdentityRegistry private immutable _identity;
    address private immutable _governor;
    uint256 private immutable _rpnCount;
    uint256 private immutable _atnCount;
    uint256 private immutable _reserveCapacity;

    mapping(bytes32 id => Record) private _records;
    mapping(address account => bytes32 id) private _ids;
    bytes32[] private _order;
    mapping(address account => bool) private _reporters;
    Weights private _weights;
    Incentives private _incentives;

    IConsortiumIndex private _clock;
    Roster[2] private _rosters;
    uint64 private _round;
    uint64 private _elections;
    uint8 private _active; // index of the active roster buffer
    bool private _hasActive;
    bool private _hasPending;
    bytes32[] private _removalQueue;
    uint256 private _seenSuspensions; // the IdentityRegistry's suspensionCount at the last seat review
    bool private _reviewAll; // weights or threshold changed: every seat is re-checked at the next boundary
    AtnCheckpoint[] private _atnHistory; // the ATN set of every round, as (first round, hash of the set)

    // ------------------------------------------------------------------
    // Modifiers
    // ------------------------------------------------------------------

    /// The k-of-n AuthorityGovernor, executing an approved operation.
    modifier onlyGovernance() {
        if (msg.sender != _governor) revert CreditRegistryNotGovernance(msg.sender);
        _;
    }

    modifier onlyReporter() {
        if (!_reporters[msg.sender]) revert CreditRegistryNotReporter(msg.sender);
        _;
    }

    modifier onlyClock() {
        if (msg.sender != address(_clock)) revert CreditRegistryNotClock(msg.sender);
        _;
    }

    constructor(
        IIdentityRegistry identity_,
        uint256 rpnCount_,
        uint256 atnCount_,
        uint256 reserveCapacity_,
        Weights memory weights_,
        Incentives memory incentives_
    ) {
        if (rpnCount_ == 0 || atnCount_ == 0 || rpnCount_ > type(uint16).max) {
            revert CreditRegistryInvalidConfig(rpnCount_, atnCount_);
        }
        _identity = identity_;
        _governor = identity_.governor();
        _rpnCount = rpnCount_;
        _atnCount = atnCount_;
        _reserveCapacity = reserveCapacity_;
        _setWeights(weights_);
        _setIncentives(incentives_);
    }

    // ------------------------------------------------------------------
    // Governance
    // ------------------------------------------------------------------

    /// @inheritdoc ICreditRegistry
    function registerInstitution(bytes32 id, Dimensions calldata dimensions) external onlyGovernance {
        if (_records[id].registered) revert CreditRegistryAlreadyRegistered(id);
        IIdentityRegistry.Participant memory p = _participant(id);
        if (!_isInstitutionRole(p.role)) revert CreditRegistryNotAnInstitutionRole(id, p.role);
        if (p.suspended) revert CreditRegistryParticipantSuspended(id);
        _checkDimensions(id, dimensions);

        Record storage rec = _records[id];
        rec.registered = true;
        rec.role = p.role;
        rec.account = p.account;
        _writeDimensions(rec, dimensions);
        _ids[p.account] = id;
        _order.push(id);
        emit InstitutionRegistered(id, p.account, p.role, dimensions, _credit(rec, _weights));
    }

    /// @inheritdoc ICreditRegistry
    function setDimensions(bytes32 id, Dimensions calldata dimensions) external onlyGovernance {
        Record storage rec = _existing(id);
        _checkDimensions(id, dimensions);
        _writeDimensions(rec, dimensions);
        emit DimensionsSet(id, dimensions, _credit(rec, _weights));
        _scheduleRemovalIfIneligible(id, rec);
    }

    /// @inheritdoc ICreditRegistry
    function setWeights(Weights calldata weights_) external onlyGovernance {
        _setWeights(weights_);
    }

    /// @inheritdoc ICreditRegistry
    function setIncentives(Incentives calldata incentives_) external onlyGovernance {
        _setIncentives(incentives_);
    }

    /// @inheritdoc ICreditRegistry
    function setReporter(address reporter, bool enabled) external onlyGovernance {
        if (_reporters[reporter] == enabled) return;
        _reporters[reporter] = enabled;
        emit ReporterSet(reporter, enabled);
    }

    /// @inheritdoc ICreditRegistry
    function clearPenalties(bytes32 id) external onlyGovernance {
        Record storage rec = _existing(id);
        uint256 cleared = rec.penaltyPoints;
        if (cleared == 0) return;
        rec.penaltyPoints = 0;
        emit PenaltiesCleared(id, msg.sender, cleared, _credit(rec, _weights)); // msg.sender: the governor
    }

    /// @inheritdoc ICreditRegistry
    function setClock(address clock_) external onlyGovernance {
        if (address(_clock) != address(0)) revert CreditRegistryClockAlreadySet(address(_clock));
        if (clock_.code.length == 0 || address(IConsortiumIndex(clock_).credit()) != address(this)) {
            revert CreditRegistryInvalidClock(clock_);
        }
        _clock = IConsortiumIndex(clock_);
        emit ClockSet(clock_);
    }

    /// @inheritdoc ICreditRegistry
    function elect(bytes32[] calldata ranked) external onlyGovernance {
        Weights memory w = _weights;
        uint256 threshold = _incentives.removalThreshold;
        (bytes32[] memory ids, uint256[] memory credits, uint256 n, uint256 skipped) =
            _hintedRanking(ranked, w, threshold);
        (bytes32[] memory allIds, uint256[] memory allCredits, uint256 eligible) = _allEligible(w, threshold);
        uint256 added;
        if (eligible != n) (n, added) = _addMissing(ids, credits, n, allIds, allCredits, eligible);
        if (skipped != 0 || added != 0) emit RankingRepaired(skipped, added);
        uint256 required = _rpnCount + _atnCount;
        if (n < required) revert CreditRegistryTooFewCandidates(n, required);

        uint8 target = _hasActive ? 1 - _active : _active;
        Roster storage r = _rosters[target];
        uint64 version = ++_elections;
        _fillRoster(r, version, ids, n);
        uint64 fromRound = _hasActive ? _round + 1 : _round;
        r.fromRound = fromRound;
        emit Elected(version, fromRound, r.rpn, r.atn, r.reserve);
        if (_hasActive) {
            _hasPending = true;
        } else {
            // The first roster has nothing to replace: it applies at once.
            _hasActive = true;
            _active = target;
            emit RosterActivated(version, fromRound);
            _recordAtnSet(r, fromRound);
        }
    }

    // ------------------------------------------------------------------
    // Institutions
    // ------------------------------------------------------------------

    /// @inheritdoc ICreditRegistry
    function setWilling(bool willing) external {
        bytes32 id = _ids[msg.sender];
        if (id == bytes32(0)) revert CreditRegistryNotInstitution(msg.sender);
        Record storage rec = _records[id];
        if (rec.willing == willing) return;
        rec.willing = willing;
        emit WillingnessSet(id, willing);
        _scheduleRemovalIfIneligible(id, rec);
    }

    /// @inheritdoc ICreditRegistry
    function syncAccount(bytes32 id) external {
        Record storage rec = _existing(id);
        address newAccount = _identity.participant(id).account;
        address oldAccount = rec.account;
        if (newAccount == oldAccount) return;
        delete _ids[oldAccount];
        _ids[newAccount] = id;
        rec.account = newAccount;
        emit AccountSynced(id, oldAccount, newAccount);
    }

    /// @inheritdoc ICreditRegistry
    function reviewSeat(bytes32 id) external {
        _scheduleRemovalIfIneligible(id, _existing(id));
    }

    // ------------------------------------------------------------------
    // Reporters
    // ------------------------------------------------------------------

    /// @inheritdoc ICreditRegistry
    function reward(bytes32 id, Service service, uint32 units) external onlyReporter {
        Incentives memory inc = _incentives;
        uint256 rate = service == Service.BlockProduced
            ? inc.blockReward
            : service == Service.BlockAttested ? inc.attestationReward : inc.dataServedReward;
        _reward(id, _existing(id), service, rate * units);
    }

    /// @inheritdoc ICreditRegistry
    function rewardBlock(bytes32 producer, bytes32[] calldata attesters) external onlyReporter {
        Incentives memory inc = _incentives;
        _reward(producer, _existing(producer), Service.BlockProduced, inc.blockReward);
        for (uint256 i; i < attesters.length; ++i) {
            _reward(attesters[i], _existing(attesters[i]), Service.BlockAttested, inc.attestationReward);
        }
    }

    /// @inheritdoc ICreditRegistry
    function penalise(bytes32 id, Offence offence, bytes32 evidence) external onlyReporter {
        Record storage rec = _existing(id);
        Incentives memory inc = _incentives;
        uint256 points = offence == Offence.InvalidBlock
            ? inc.invalidBlockPenalty
            : offence == Offence.WrongAttestation ? inc.wrongAttestationPenalty : inc.missedSlotPenalty;
        rec.penaltyPoints += uint64(points);
        emit Penalised(id, offence, points, _credit(rec, _weights), evidence);
        _scheduleRemovalIfIneligible(id, rec);
    }

    // ------------------------------------------------------------------
    // Clock
    // ------------------------------------------------------------------

    /// @inheritdoc ICreditRegistry
    function advanceRound() external onlyClock {
        uint64 round_ = _clock.currentRound();
        uint64 previous = _round;
        if (round_ <= previous) revert CreditRegistryRoundNotAhead(round_, previous);
        _round = round_;
        emit RoundAdvanced(previous, round_);
        bool changed;
        if (_hasPending) {
            _hasPending = false;
            _active = 1 - _active;
            changed = true;
            emit RosterActivated(_rosters[_active].version, round_);
        }
        if (!_hasActive) return;
        Roster storage r = _rosters[_active];
        _reviewSeatsIfNeeded(r);
        if (_applyRemovals(r, round_)) changed = true;
        if (changed) _recordAtnSet(r, round_);
    }

    // ------------------------------------------------------------------
    // Views
    // ------------------------------------------------------------------

    /// @inheritdoc IGoverned
    function governor() external view returns (address) {
        return _governor;
    }

    /// @inheritdoc IGoverned
    function isParameterChange(bytes4 selector) external pure returns (bool) {
        return selector == this.setDimensions.selector || selector == this.setWeights.selector
            || selector == this.setIncentives.selector;
    }

    /// @inheritdoc ICreditRegistry
    function identity() external view returns (IIdentityRegistry) {
        return _identity;
    }

    /// @inheritdoc ICreditRegistry
    function rpnCount() external view returns (uint256) {
        return _rpnCount;
    }

    /// @inheritdoc ICreditRegistry
    function atnCount() external view returns (uint256) {
        return _atnCount;
    }

    /// @inheritdoc ICreditRegistry
    function reserveCapacity() external view returns (uint256) {
        return _reserveCapacity;
    }

    /// @inheritdoc ICreditRegistry
    function creditFormula(Dimensions calldata d, Weights calldata w, uint64 rewardPoints, uint64 penaltyPoints)
        external
        pure
        returns (uint256)
    {
        return _formula(d.hospitalGrade, d.infoCenterScale, d.enterpriseStrength, w, rewardPoints, penaltyPoints);
    }

    /// @inheritdoc ICreditRegistry
    function institution(bytes32 id) external view returns (Institution memory) {
        return _toInstitution(id, _existing(id));
    }

    /// @inheritdoc ICreditRegistry
    function institutionsPage(uint256 offset, uint256 limit)
        external
        view
        returns (bytes32[] memory ids, Institution[] memory records)
    {
        uint256 n = _order.length;
        uint256 end = offset + limit < n ? offset + limit : n;
        uint256 count = offset < end ? end - offset : 0;
        ids = new bytes32[](count);
        records = new Institution[](count);
        for (uint256 i; i < count; ++i) {
            ids[i] = _order[offset + i];
            records[i] = _toInstitution(ids[i], _records[ids[i]]);
        }
    }

    /// @inheritdoc ICreditRegistry
    function creditOf(bytes32 id) external view returns (uint256) {
        return _credit(_existing(id), _weights);
    }

    /// @inheritdoc ICreditRegistry
    function isEligible(bytes32 id) external view returns (bool) {
        return _eligible(id, _existing(id));
    }

    /// @inheritdoc ICreditRegistry
    function isSuspended(bytes32 id) external view returns (bool) {
        return _suspended(id, _existing(id));
    }

    /// @inheritdoc ICreditRegistry
    function clock() external view returns (address) {
        return address(_clock);
    }

    /// @inheritdoc ICreditRegistry
    function idOf(address account) external view returns (bytes32) {
        return _ids[account];
    }

    /// @inheritdoc ICreditRegistry
    function institutionCount() external view returns (uint256) {
        return _order.length;
    }

    /// @inheritdoc ICreditRegistry
    function institutionAt(uint256 index) external view returns (bytes32) {
        return _order[index];
    }

    /// @inheritdoc ICreditRegistry
    function weights() external view returns (Weights memory) {
        return _weights;
    }

    /// @inheritdoc ICreditRegistry
    function incentives() external view returns (Incentives memory) {
        return _incentives;
    }

    /// @inheritdoc ICreditRegistry
    function isGovernor(address account) external view returns (bool) {
        return _identity.isAuthority(account);
    }

    /// @inheritdoc ICreditRegistry
    function isReporter(address account) external view returns (bool) {
        return _reporters[account];
    }

    /// @inheritdoc ICreditRegistry
    function round() external view returns (uint64) {
        return _round;
    }

    /// @inheritdoc ICreditRegistry
    function rosterVersion() external view returns (uint64) {
        return _hasActive ? _rosters[_active].version : 0;
    }

    /// @inheritdoc ICreditRegistry
    function rpnSet() external view returns (bytes32[] memory) {
        return _activeRoster().rpn;
    }

    /// @inheritdoc ICreditRegistry
    function atnSet() external view returns (bytes32[] memory) {
        return _activeRoster().atn;
    }

    /// @inheritdoc ICreditRegistry
    function reserveSet() external view returns (bytes32[] memory remaining) {
        Roster storage r = _activeRoster();
        uint256 start = r.reserveNext;
        remaining = new bytes32[](r.reserve.length - start);
        for (uint256 i; i < remaining.length; ++i) {
            remaining[i] = r.reserve[start + i];
        }
    }

    /// @inheritdoc ICreditRegistry
    function pendingRoster()
        external
        view
        returns (bool pending, uint64 version, uint64 fromRound, bytes32[] memory rpn, bytes32[] memory atn)
    {
        if (!_hasPending) return (false, 0, 0, rpn, atn);
        Roster storage r = _rosters[1 - _active];
        return (true, r.version, r.fromRound, r.rpn, r.atn);
    }

    /// @inheritdoc ICreditRegistry
    function seatOf(bytes32 id) external view returns (SeatKind kind, uint256 index) {
        if (!_hasActive) return (SeatKind.None, 0);
        Roster storage r = _rosters[_active];
        Seat storage seat = r.seats[id];
        if (seat.version != r.version) return (SeatKind.None, 0);
        if (seat.kind == SeatKind.Rpn) return (SeatKind.Rpn, seat.index);
        if (seat.kind == SeatKind.Atn) {
            for (uint256 i; i < r.atn.length; ++i) {
                if (r.atn[i] == id) return (SeatKind.Atn, i);
            }
        }
        return (SeatKind.None, 0);
    }

    /// @inheritdoc ICreditRegistry
    function rpnAt(uint256 index) external view returns (bytes32 id, address account) {
        Roster storage r = _activeRoster();
        if (index >= r.rpn.length) revert CreditRegistrySeatOutOfRange(SeatKind.Rpn, index, r.rpn.length);
        id = r.rpn[index];
        if (id != bytes32(0)) account = _records[id].account;
    }

    /// @inheritdoc ICreditRegistry
    function atnSeated() external view returns (uint256) {
        return _hasActive ? _rosters[_active].atn.length : 0;
    }

    /// @inheritdoc ICreditRegistry
    function atnSetAt(uint64 round_) external view returns (uint64 fromRound, bytes32 atnHash) {
        uint256 lo;
        uint256 hi = _atnHistory.length;
        // the last checkpoint with fromRound <= round_
        while (lo < hi) {
            uint256 mid = (lo + hi) / 2;
            if (_atnHistory[mid].fromRound > round_) hi = mid;
            else lo = mid + 1;
        }
        if (lo == 0) revert CreditRegistryNoAtnSet(round_);
        AtnCheckpoint storage cp = _atnHistory[lo - 1];
        return (cp.fromRound, cp.atnHash);
    }

    /// @inheritdoc ICreditRegistry
    function atnIdsOf(address[] calldata accounts) external view returns (bytes32[] memory ids) {
        ids = new bytes32[](accounts.length);
        if (!_hasActive) return ids;
        Roster storage r = _rosters[_active];
        uint64 version = r.version;
        for (uint256 i; i < accounts.length; ++i) {
            bytes32 id = _ids[accounts[i]];
            if (id == bytes32(0)) continue;
            Seat storage seat = r.seats[id];
            if (seat.version == version && seat.kind == SeatKind.Atn) ids[i] = id;
        }
    }

    // ------------------------------------------------------------------
    // Internal: scores
    // ------------------------------------------------------------------

    function _formula(uint256 grade, uint256 scale, uint256 strength, Weights memory w, uint256 rewards, uint256 penalties)
        private
        pure
        returns (uint256)
    {
        uint256 base =
            (grade * w.hospitalGrade + scale * w.infoCenterScale + strength * w.enterpriseStrength) / BPS;
        uint256 total = base + rewards;
        return total > penalties ? total - penalties : 0;
    }

    function _credit(Record storage rec, Weights memory w) private view returns (uint256) {
        return _formula(
            rec.hospitalGrade, rec.infoCenterScale, rec.enterpriseStrength, w, rec.rewardPoints, rec.penaltyPoints
        );
    }

    /// Willing, credit at or above the threshold, and not suspended (the external read comes last).
    function _eligible(bytes32 id, Record storage rec) private view returns (bool) {
        return rec.willing && _credit(rec, _weights) >= _incentives.removalThreshold && !_suspended(id, rec);
    }

    /// Suspended in the IdentityRegistry. One cheap `isActive` read settles it while `rec.account` is the
    /// participant's current account; an account replaced by a key rotation (not yet synced here) is no
    /// longer active there, so the participant record itself decides.
    function _suspended(bytes32 id, Record storage rec) private view returns (bool) {
        if (_identity.isActive(rec.account)) return false;
        return _identity.participant(id).suspended;
    }

    function _reward(bytes32 id, Record storage rec, Service service, uint256 points) private {
        rec.rewardPoints += uint64(points);
        emit Rewarded(id, service, points, _credit(rec, _weights));
    }

    /// Queue a seated institution that became ineligible; its seat is reviewed at the next boundary.
    function _scheduleRemovalIfIneligible(bytes32 id, Record storage rec) private {
        if (!_isSeated(id)) return;
        _queueIfIneligible(id, rec);
    }

    function _queueIfIneligible(bytes32 id, Record storage rec) private {
        if (rec.removalQueued || _eligible(id, rec)) return;
        rec.removalQueued = true;
        _removalQueue.push(id);
        emit RemovalScheduled(id, _round, _credit(rec, _weights));
    }

    // ------------------------------------------------------------------
    // Internal: election
    // ------------------------------------------------------------------

    /// The governance's ranking is a hint, read in O(n): a listed institution that is no longer eligible
    /// (it withdrew, was suspended or fell below the threshold since the ranking was computed) is skipped,
    /// and the rest is put in (credit desc, ID asc) order by insertion sort — O(n) for a ranking that is
    /// right, a few moves more for one a penalty landed on first. Unknown and repeated IDs revert.
    function _hintedRanking(bytes32[] calldata ranked, Weights memory w, uint256 threshold)
        private
        view
        returns (bytes32[] memory ids, uint256[] memory credits, uint256 n, uint256 skipped)
    {
        uint256 capacity = ranked.length + _order.length;
        ids = new bytes32[](capacity);
        credits = new uint256[](capacity);
        for (uint256 i; i < ranked.length; ++i) {
            bytes32 id = ranked[i];
            Record storage rec = _records[id];
            if (!rec.registered) revert CreditRegistryUnknownInstitution(id);
            uint256 c = _credit(rec, w);
            if (!rec.willing || c < threshold || _suspended(id, rec)) {
                ++skipped;
                continue;
            }
            ids[n] = id;
            credits[n] = c;
            ++n;
        }
        _insertionSort(ids, credits, 0, n);
        for (uint256 i = 1; i < n; ++i) {
            if (ids[i] == ids[i - 1]) revert CreditRegistryDuplicateCandidate(ids[i]);
        }
    }

    /// Every eligible institution in registration order, with its credit.
    function _allEligible(Weights memory w, uint256 threshold)
        private
        view
        returns (bytes32[] memory ids, uint256[] memory credits, uint256 count)
    {
        uint256 n = _order.length;
        ids = new bytes32[](n);
        credits = new uint256[](n);
        for (uint256 i; i < n; ++i) {
            bytes32 id = _order[i];
            Record storage rec = _records[id];
            uint256 c = _credit(rec, w);
            if (rec.willing && c >= threshold && !_suspended(id, rec)) {
                ids[count] = id;
                credits[count] = c;
                ++count;
            }
        }
    }

    /// Add the eligible institutions the (sorted, eligible, distinct) hint left out — e.g. one that declared
    /// itself willing after the ranking was computed — and restore the order. Binary search per institution.
    function _addMissing(
        bytes32[] memory ids,
        uint256[] memory credits,
        uint256 n,
        bytes32[] memory allIds,
        uint256[] memory allCredits,
        uint256 eligible
    ) private pure returns (uint256 total, uint256 added) {
        total = n;
        for (uint256 i; i < eligible; ++i) {
            if (_contains(ids, credits, n, allIds[i], allCredits[i])) continue;
            ids[total] = allIds[i];
            credits[total] = allCredits[i];
            ++total;
        }
        added = total - n;
        _insertionSort(ids, credits, n, total);
    }

    function _contains(bytes32[] memory ids, uint256[] memory credits, uint256 n, bytes32 id, uint256 c)
        private
        pure
        returns (bool)
    {
        uint256 lo;
        uint256 hi = n;
        while (lo < hi) {
            uint256 mid = (lo + hi) / 2;
            if (ids[mid] == id) return true;
            if (_ranksBefore(credits[mid], ids[mid], c, id)) lo = mid + 1;
            else hi = mid;
        }
        return false;
    }

    /// Sort `[0, end)` given that `[0, from)` is already sorted.
    function _insertionSort(bytes32[] memory ids, uint256[] memory credits, uint256 from, uint256 end)
        private
        pure
    {
        for (uint256 i = from == 0 ? 1 : from; i < end; ++i) {
            bytes32 id = ids[i];
            uint256 c = credits[i];
            uint256 j = i;
            while (j > 0 && _ranksBefore(c, id, credits[j - 1], ids[j - 1])) {
                ids[j] = ids[j - 1];
                credits[j] = credits[j - 1];
                --j;
            }
            ids[j] = id;
            credits[j] = c;
        }
    }

    /// Credit descending, ties by the lower ID.
    function _ranksBefore(uint256 c1, bytes32 id1, uint256 c2, bytes32 id2) private pure returns (bool) {
        return c1 > c2 || (c1 == c2 && id1 < id2);
    }

    /// Write the first `n` entries of a complete, ordered ranking into roster buffer `r`.
    function _fillRoster(Roster storage r, uint64 version, bytes32[] memory ranked, uint256 n) private {
        uint256 k = _rpnCount;
        uint256 required = k + _atnCount;
        uint256 reserveEnd = required + _reserveCapacity;
        if (reserveEnd > n) reserveEnd = n;
        r.version = version;
        r.reserveNext = 0;
        _copyIds(r.rpn, ranked, 0, k);
        _copyIds(r.atn, ranked, k, required);
        _copyIds(r.reserve, ranked, required, reserveEnd);
        for (uint256 i; i < k; ++i) {
            r.seats[ranked[i]] = Seat(version, SeatKind.Rpn, uint16(i));
        }
        for (uint256 i = k; i < required; ++i) {
            r.seats[ranked[i]] = Seat(version, SeatKind.Atn, 0);
        }
    }

    /// Overwrite `dst` with `src[from:to]` element by element (reused slots cost less than fresh ones).
    function _copyIds(bytes32[] storage dst, bytes32[] memory src, uint256 from, uint256 to) private {
        uint256 n = to - from;
        uint256 old = dst.length;
        for (uint256 i; i < n; ++i) {
            if (i < old) dst[i] = src[from + i];
            else dst.push(src[from + i]);
        }
        for (uint256 i = n; i < old; ++i) {
            dst.pop();
        }
    }

    // ------------------------------------------------------------------
    // Internal: replacement at round boundaries
    // ------------------------------------------------------------------

    /// Replace every queued institution that is still ineligible; true if a seat changed hands.
    function _applyRemovals(Roster storage r, uint64 round_) private returns (bool changed) {
        uint256 n = _removalQueue.length;
        if (n == 0) return false;
        for (uint256 i; i < n; ++i) {
            bytes32 id = _removalQueue[i];
            Record storage rec = _records[id];
            rec.removalQueued = false;
            if (_eligible(id, rec)) continue; // recovered before the boundary
            Seat storage seat = r.seats[id];
            if (seat.version != r.version) continue; // not seated in this roster
            changed = true;
            if (seat.kind == SeatKind.Rpn) {
                _replaceRpn(r, id, seat.index, round_);
            } else if (seat.kind == SeatKind.Atn) {
                _removeAtn(r, id);
                emit AtnRemoved(round_, id);
                _refillAtn(r, round_);
            }
        }
        delete _removalQueue;
    }

    /// Without waiting for a volunteer's `reviewSeat`: when an institution was suspended in the
    /// IdentityRegistry since the last review (its `suspensionCount` moved), or the weights or the threshold
    /// changed, queue every seated member that is no longer eligible. O(K + M) only in those rounds;
    /// otherwise one external read.
    function _reviewSeatsIfNeeded(Roster storage r) private {
        uint256 suspensions = _identity.suspensionCount();
        if (!_reviewAll && suspensions == _seenSuspensions) return;
        _seenSuspensions = suspensions;
        _reviewAll = false;
        uint256 k = r.rpn.length;
        for (uint256 i; i < k; ++i) {
            bytes32 id = r.rpn[i];
            if (id != bytes32(0)) _queueIfIneligible(id, _records[id]);
        }
        uint256 m = r.atn.length;
        for (uint256 i; i < m; ++i) {
            bytes32 id = r.atn[i];
            _queueIfIneligible(id, _records[id]);
        }
    }

    /// Record the active ATN set for the rounds from `round_` (what `reportInvalidBlock` judges with).
    function _recordAtnSet(Roster storage r, uint64 round_) private {
        bytes32[] memory atn = r.atn;
        bytes32 atnHash = keccak256(abi.encodePacked(atn));
        uint256 n = _atnHistory.length;
        if (n != 0 && _atnHistory[n - 1].fromRound == round_) _atnHistory[n - 1].atnHash = atnHash;
        else _atnHistory.push(AtnCheckpoint(round_, atnHash));
        emit AtnSetRecorded(round_, atnHash, atn);
    }

    /// RPN seat `index` goes to the best eligible ATN (or stays vacant if none is left).
    function _replaceRpn(Roster storage r, bytes32 removed, uint256 index, uint64 round_) private {
        delete r.seats[removed];
        bytes32 successor;
        while (r.atn.length > 0) {
            bytes32 head = r.atn[0];
            _removeAtnAt(r, 0);
            if (_eligible(head, _records[head])) {
                successor = head;
                break;
            }
            delete r.seats[head];
            emit AtnRemoved(round_, head);
        }
        r.rpn[index] = successor;
        if (successor != bytes32(0)) r.seats[successor] = Seat(r.version, SeatKind.Rpn, uint16(index));
        emit RpnReplaced(round_, removed, successor, index);
        _refillAtn(r, round_);
    }

    function _removeAtn(Roster storage r, bytes32 id) private {
        delete r.seats[id];
        uint256 n = r.atn.length;
        for (uint256 i; i < n; ++i) {
            if (r.atn[i] == id) {
                _removeAtnAt(r, i);
                return;
            }
        }
    }

    /// Remove position `k` keeping the rank order.
    function _removeAtnAt(Roster storage r, uint256 k) private {
        uint256 last = r.atn.length - 1;
        for (uint256 i = k; i < last; ++i) {
            r.atn[i] = r.atn[i + 1];
        }
        r.atn.pop();
    }

    /// Admit reserve ranks, best first, skipping the ineligible, until the ATN set is full.
    function _refillAtn(Roster storage r, uint64 round_) private {
        uint256 next = r.reserveNext;
        uint256 end = r.reserve.length;
        while (r.atn.length < _atnCount && next < end) {
            bytes32 candidate = r.reserve[next++];
            if (!_eligible(candidate, _records[candidate])) continue;
            r.atn.push(candidate);
            r.seats[candidate] = Seat(r.version, SeatKind.Atn, 0);
            emit AtnAdmitted(round_, candidate);
        }
        r.reserveNext = uint64(next);
    }

    // ------------------------------------------------------------------
    // Internal: helpers
    // ------------------------------------------------------------------

    function _existing(bytes32 id) private view returns (Record storage rec) {
        rec = _records[id];
        if (!rec.registered) revert CreditRegistryUnknownInstitution(id);
    }

    function _toInstitution(bytes32 id, Record storage rec) private view returns (Institution memory) {
        return Institution({
            dimensions: Dimensions(rec.hospitalGrade, rec.infoCenterScale, rec.enterpriseStrength),
            rewardPoints: rec.rewardPoints,
            penaltyPoints: rec.penaltyPoints,
            registered: rec.registered,
            willing: rec.willing,
            removalQueued: rec.removalQueued,
            role: rec.role,
            account: rec.account,
            suspended: _suspended(id, rec)
        });
    }

    function _activeRoster() private view returns (Roster storage) {
        if (!_hasActive) revert CreditRegistryNoRoster();
        return _rosters[_active];
    }

    function _isSeated(bytes32 id) private view returns (bool) {
        if (!_hasActive) return false;
        Roster storage active = _rosters[_active];
        if (active.seats[id].version == active.version) return true;
        if (!_hasPending) return false;
        Roster storage pending = _rosters[1 - _active];
        return pending.seats[id].version == pending.version;
    }

    function _participant(bytes32 id) private view returns (IIdentityRegistry.Participant memory) {
        try _identity.participant(id) returns (IIdentityRegistry.Participant memory p) {
            return p;
        } catch {
            revert CreditRegistryUnknownParticipant(id);
        }
    }

    function _isInstitutionRole(IIdentityRegistry.Role role) private pure returns (bool) {
        return role != IIdentityRegistry.Role.None && role != IIdentityRegistry.Role.Doctor
            && role != IIdentityRegistry.Role.Patient;
    }

    function _checkDimensions(bytes32 id, Dimensions calldata d) private pure {
        if (d.hospitalGrade > MAX_DIMENSION || d.infoCenterScale > MAX_DIMENSION || d.enterpriseStrength > MAX_DIMENSION)
        {
            revert CreditRegistryInvalidDimensions(id, d);
        }
    }

    function _writeDimensions(Record storage rec, Dimensions calldata d) private {
        rec.hospitalGrade = d.hospitalGrade;
        rec.infoCenterScale = d.infoCenterScale;
        rec.enterpriseStrength = d.enterpriseStrength;
    }

    function _setWeights(Weights memory w) private {
        if (uint256(w.hospitalGrade) + w.infoCenterScale + w.enterpriseStrength != BPS) {
            revert CreditRegistryInvalidWeights(w);
        }
        _weights = w;
        _reviewAll = true; // every credit moved: every seat is re-checked at the next boundary
        emit WeightsSet(w);
    }

    function _setIncentives(Incentives memory inc) private {
        if (
            inc.blockReward > MAX_REWARD || inc.attestationReward > MAX_REWARD || inc.dataServedReward > MAX_REWARD
                || inc.invalidBlockPenalty > MAX_PENALTY || inc.wrongAttestationPenalty > MAX_PENALTY
                || inc.missedSlotPenalty > MAX_PENALTY || inc.removalThreshold > MAX_THRESHOLD
        ) revert CreditRegistryInvalidIncentives(inc);
        _incentives = inc;
        _reviewAll = true; // the threshold may have moved: every seat is re-checked at the next boundary
        emit IncentivesSet(inc);
    }
}
