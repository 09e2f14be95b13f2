// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IIdentityRegistry} from "./IIdentityRegistry.sol";
import {IGoverned} from "./IGoverned.sol";

/// @title ICreditRegistry — credit scores and the RPN/ATN election of the consortium chain
/// @notice Institutions of the consortium (hospitals, Internet medicine platforms,
/// health authorities, insurers, research institutes, pharma companies) are scored
/// on several dimensions — hospital rating grade, scale of the information center,
/// enterprise strength — each in [0, 10 000]. The dimensions are combined with
/// weights in basis points into a base score; rewards for service add to it and
/// penalties for misbehaviour subtract from it (paper, "Consensus mechanism"):
///
///     credit = max(0, ⌊Σ weight_i · dimension_i / 10 000⌋ + rewardPoints − penaltyPoints)
///
/// The score is bound to the institution's participant ID in the IdentityRegistry.
/// An institution is *eligible* when it is willing to serve and its credit is at
/// least the removal threshold. An election ranks all eligible institutions (credit
/// descending, ties by the lower ID): the ranking computed off-chain is a hint, read
/// here in O(n) and repaired if the chain moved under it (a listed institution that
/// withdrew or fell below the threshold is skipped, one that became willing is added,
/// a penalty that landed first is sorted in), so no single `setWilling` or
/// `reportMissedSlots` landing first makes an election revert, and no omission or
/// swap in the hint steers it. Ranks 1..K become representative nodes (RPN, produce
/// blocks in turn), ranks K+1..K+M audit nodes (ATN, attest blocks), the next
/// ranks a reserve that refills the ATN set. Every change of the sets takes
/// effect at a round boundary (a round is K slots of the ConsortiumIndex clock):
/// an election becomes the roster of the next round; an RPN that fell below the
/// threshold (or withdrew) is replaced at the next boundary by the best ATN, and
/// the ATN set is refilled from the reserve.
///
/// Governance — registering institutions, setting their dimension scores, the
/// weights and the incentives, clearing penalties, naming reporters and running
/// elections — belongs to the active health authorities of the IdentityRegistry.
/// Rewards and penalties come only from reporters (the ConsortiumIndex contract,
/// and e.g. the proxy reporting data served). Rounds follow the consortium's own
/// slot clock only: the ConsortiumIndex bound once by `setClock` is the only caller
/// of `advanceRound`, and the round is read from that clock, never passed in.
///
/// A participant suspended in the IdentityRegistry is not eligible: it cannot be
/// elected, loses its seat at the next round boundary (every seat is re-checked at a
/// boundary after the IdentityRegistry's `suspensionCount` moved or the weights or the
/// threshold changed; `reviewSeat` is no longer needed), and the ConsortiumIndex takes
/// neither blocks nor attestations from it. The ATN set of every round is recorded
/// (`atnSetAt`) so a report about an old header is judged by the ATNs of its round.
interface ICreditRegistry is IGoverned {
    // ------------------------------------------------------------------
    // Types
    // ------------------------------------------------------------------

    /// @notice Per-institution scores, each in [0, 10 000] (set by governance).
    struct Dimensions {
        uint16 hospitalGrade; // rating grade of the medical institution (e.g. Grade III-A → high)
        uint16 infoCenterScale; // deployment scale of the information center
        uint16 enterpriseStrength; // enterprise strength
    }

    /// @notice Weights of the dimensions in basis points; they sum to 10 000.
    struct Weights {
        uint16 hospitalGrade;
        uint16 infoCenterScale;
        uint16 enterpriseStrength;
    }

    /// @notice Credit points per unit of service or offence, and the removal threshold.
    struct Incentives {
        uint32 blockReward; // per block produced (RPN)
        uint32 attestationReward; // per block attested (ATN)
        uint32 dataServedReward; // per unit of data served (e.g. per record shared)
        uint32 invalidBlockPenalty; // RPN proposed an invalid block (rejected by an ATN quorum)
        uint32 wrongAttestationPenalty; // ATN attested a block an ATN quorum rejected
        uint32 missedSlotPenalty; // RPN let its slot pass without a block
        uint32 removalThreshold; // below this credit an institution is ineligible and loses its seat
    }

    /// @notice An institution as recorded here (the score inputs and its account).
    struct Institution {
        Dimensions dimensions;
        uint64 rewardPoints;
        uint64 penaltyPoints;
        bool registered;
        bool willing; // set by the institution itself: willing to serve as RPN/ATN
        bool removalQueued; // below threshold or withdrawn; checked at the next round boundary
        IIdentityRegistry.Role role;
        address account; // the participant's account in the IdentityRegistry (see syncAccount)
        bool suspended; // suspended in the IdentityRegistry now (read live, never stored here)
    }

    /// @notice Kinds of rewarded service.
    enum Service {
        BlockProduced,
        BlockAttested,
        DataServed
    }

    /// @notice Kinds of penalised offence.
    enum Offence {
        InvalidBlock,
        WrongAttestation,
        MissedSlot
    }

    /// @notice A seat in the active roster. Transitions: None → Rpn | Atn at an
    /// election; Atn → Rpn on promotion; Rpn | Atn → None on removal.
    enum SeatKind {
        None,
        Rpn,
        Atn
    }

    // ------------------------------------------------------------------
    // Errors
    // ------------------------------------------------------------------

    /// @dev RPN or ATN count is zero, or more than 65 535 RPN seats.
    error CreditRegistryInvalidConfig(uint256 rpnCount, uint256 atnCount);
    /// @dev The caller is not a configured reporter (the ConsortiumIndex or another reporter).
    error CreditRegistryNotReporter(address caller);
    /// @dev The caller's account is not a registered institution.
    error CreditRegistryNotInstitution(address caller);
    /// @dev No institution with this ID is registered here.
    error CreditRegistryUnknownInstitution(bytes32 id);
    /// @dev The institution is already registered.
    error CreditRegistryAlreadyRegistered(bytes32 id);
    /// @dev The participant is unknown to the IdentityRegistry.
    error CreditRegistryUnknownParticipant(bytes32 id);
    /// @dev The participant's role is not an institution (doctor, patient, none).
    error CreditRegistryNotAnInstitutionRole(bytes32 id, IIdentityRegistry.Role role);
    /// @dev The participant is suspended in the IdentityRegistry.
    error CreditRegistryParticipantSuspended(bytes32 id);
    /// @dev A dimension score is above 10 000.
    error CreditRegistryInvalidDimensions(bytes32 id, Dimensions dimensions);
    /// @dev Weights do not sum to 10 000 basis points.
    error CreditRegistryInvalidWeights(Weights weights);
    /// @dev A reward above MAX_REWARD, a penalty above MAX_PENALTY or a threshold above MAX_THRESHOLD.
    error CreditRegistryInvalidIncentives(Incentives incentives);
    /// @dev The caller is not the k-of-n AuthorityGovernor (a governed function called directly).
    error CreditRegistryNotGovernance(address caller);
    /// @dev The ranking lists the same eligible institution twice.
    error CreditRegistryDuplicateCandidate(bytes32 id);
    /// @dev Fewer eligible institutions than RPN + ATN seats.
    error CreditRegistryTooFewCandidates(uint256 eligible, uint256 required);
    /// @dev advanceRound while the clock's round is not after the current one.
    error CreditRegistryRoundNotAhead(uint64 round, uint64 current);
    /// @dev advanceRound from anyone but the bound clock (the ConsortiumIndex).
    error CreditRegistryNotClock(address caller);
    /// @dev setClock once a clock is bound: the clock is set once, at deployment.
    error CreditRegistryClockAlreadySet(address clock);
    /// @dev setClock to an address without code or to a ConsortiumIndex of another registry.
    error CreditRegistryInvalidClock(address clock);
    /// @dev No roster has been elected yet.
    error CreditRegistryNoRoster();
    /// @dev No ATN set was recorded for `round` (before the first election).
    error CreditRegistryNoAtnSet(uint64 round);
    /// @dev A seat index beyond the roster.
    error CreditRegistrySeatOutOfRange(SeatKind kind, uint256 index, uint256 size);

    // ------------------------------------------------------------------
    // Events
    // ------------------------------------------------------------------

    /// @notice Governance registered an institution with its first dimension scores.
    event InstitutionRegistered(
        bytes32 indexed id, address indexed account, IIdentityRegistry.Role role, Dimensions dimensions, uint256 credit
    );
    /// @notice Governance set an institution's dimension scores.
    event DimensionsSet(bytes32 indexed id, Dimensions dimensions, uint256 credit);
    /// @notice Governance set the dimension weights.
    event WeightsSet(Weights weights);
    /// @notice Governance set the rewards, penalties and removal threshold.
    event IncentivesSet(Incentives incentives);
    /// @notice Governance enabled or disabled a reporter.
    event ReporterSet(address indexed reporter, bool enabled);
    /// @notice An institution declared whether it is willing to serve as RPN/ATN.
    event WillingnessSet(bytes32 indexed id, bool willing);
    /// @notice The institution's account was re-read from the IdentityRegistry after a key rotation.
    event AccountSynced(bytes32 indexed id, address indexed oldAccount, address indexed newAccount);
    /// @notice Governance bound the clock (the ConsortiumIndex) whose rounds this registry follows.
    event ClockSet(address indexed clock);
    /// @notice A reporter rewarded an institution for service.
    event Rewarded(bytes32 indexed id, Service indexed service, uint256 points, uint256 credit);
    /// @notice A reporter penalised an institution; `evidence` identifies the case (header hash, slot).
    event Penalised(bytes32 indexed id, Offence indexed offence, uint256 points, uint256 credit, bytes32 evidence);
    /// @notice Governance cleared an institution's penalty points.
    /// (`governor` is the AuthorityGovernor that executed the clearance.)
    event PenaltiesCleared(bytes32 indexed id, address indexed governor, uint256 cleared, uint256 credit);
    /// @notice The institution became ineligible; its seat (if any) is reviewed at the next round boundary.
    event RemovalScheduled(bytes32 indexed id, uint64 indexed round, uint256 credit);
    /// @notice An election's ranking hint was repaired: `skipped` listed institutions were no longer eligible,
    /// `added` eligible ones were missing (the order is restored in any case).
    event RankingRepaired(uint256 skipped, uint256 added);
    /// @notice The ATN set in force from `fromRound` (until the next record); `atnHash` = keccak256(abi.encodePacked(atn)).
    event AtnSetRecorded(uint64 indexed fromRound, bytes32 indexed atnHash, bytes32[] atn);
    /// @notice An election verified a ranking; the roster applies from `fromRound`.
    event Elected(uint64 indexed version, uint64 indexed fromRound, bytes32[] rpn, bytes32[] atn, bytes32[] reserve);
    /// @notice A roster became the active one.
    event RosterActivated(uint64 indexed version, uint64 indexed round);
    /// @notice The round advanced (set changes apply from here).
    event RoundAdvanced(uint64 indexed previous, uint64 indexed round);
    /// @notice An RPN seat changed hands at a round boundary; `replacement` is zero if no ATN was left.
    event RpnReplaced(uint64 indexed round, bytes32 indexed removed, bytes32 indexed replacement, uint256 seat);
    /// @notice An ATN lost its seat at a round boundary (ineligible).
    event AtnRemoved(uint64 indexed round, bytes32 indexed removed);
    /// @notice A reserve institution joined the ATN set at a round boundary.
    event AtnAdmitted(uint64 indexed round, bytes32 indexed admitted);

    // ------------------------------------------------------------------
    // Governance: only the k-of-n AuthorityGovernor (an executed operation); dimensions, weights and
    // incentives after its delay
    // ------------------------------------------------------------------

    /// @notice Register an institution of the IdentityRegistry with its dimension scores. Governor (many
    /// registrations may go in one operation).
    function registerInstitution(bytes32 id, Dimensions calldata dimensions) external;

    /// @notice Set an institution's dimension scores. Governor, delayed.
    function setDimensions(bytes32 id, Dimensions calldata dimensions) external;

    /// @notice Set the weights of the dimensions (basis points, sum 10 000). Applies to the next election. Governor, delayed.
    function setWeights(Weights calldata weights) external;

    /// @notice Set rewards, penalties and the removal threshold, within MAX_REWARD, MAX_PENALTY and
    /// MAX_THRESHOLD. Governor, delayed.
    function setIncentives(Incentives calldata incentives) external;

    /// @notice Enable or disable a reporter (idempotent). Governor.
    function setReporter(address reporter, bool enabled) external;

    /// @notice Reset an institution's penalty points to zero. Governor.
    function clearPenalties(bytes32 id) external;

    /// @notice Bind the clock: the ConsortiumIndex of this registry, the only caller of `advanceRound`.
    /// Once only; it must be a contract whose `credit()` is this registry. Governor.
    function setClock(address clock) external;

    /// @notice Elect from the hint `ranked` — every eligible institution, credit descending, ties by lower ID —
    /// repaired on chain where it went stale (ineligible skipped, missing eligible added, order restored), and
    /// make it the roster: the first one immediately, later ones from the next round. Governor.
    function elect(bytes32[] calldata ranked) external;

    // ------------------------------------------------------------------
    // Institutions
    // ------------------------------------------------------------------

    /// @notice The caller's institution declares whether it is willing to serve (idempotent).
    /// Withdrawing while seated gives up the seat at the next round boundary.
    function setWilling(bool willing) external;

    /// @notice Re-read the institution's account from the IdentityRegistry (anyone). Call it right after a
    /// key rotation: until then the old account still acts for the institution here (produces, attests).
    function syncAccount(bytes32 id) external;

    /// @notice Queue a seated institution that is no longer eligible for replacement at the next round boundary
    /// (anyone; no-op otherwise). Optional: a boundary re-checks every seat by itself after a suspension.
    function reviewSeat(bytes32 id) external;

    // ------------------------------------------------------------------
    // Reporters (the ConsortiumIndex, the proxy)
    // ------------------------------------------------------------------

    /// @notice Reward `units` of `service` to an institution.
    function reward(bytes32 id, Service service, uint32 units) external;

    /// @notice Reward a block's producer and its attesters in one call.
    function rewardBlock(bytes32 producer, bytes32[] calldata attesters) external;

    /// @notice Penalise an institution for `offence`; `evidence` is recorded in the event.
    function penalise(bytes32 id, Offence offence, bytes32 evidence) external;

    // ------------------------------------------------------------------
    // Clock (the ConsortiumIndex)
    // ------------------------------------------------------------------

    /// @notice Move to the clock's current round (> current): activate a pending election, then replace
    /// ineligible members. Only the bound clock; the round is read from it, never passed in.
    function advanceRound() external;

    // ------------------------------------------------------------------
    // Views
    // ------------------------------------------------------------------

    /// @notice The IdentityRegistry the institutions and authorities come from.
    function identity() external view returns (IIdentityRegistry);

    /// @notice K: RPN seats (= slots per round).
    function rpnCount() external view returns (uint256);

    /// @notice M: ATN seats.
    function atnCount() external view returns (uint256);

    /// @notice How many ranks after the ATN an election keeps as reserve.
    function reserveCapacity() external view returns (uint256);

    /// @notice The credit formula: base score from dimensions and weights, plus rewards, minus penalties, floored at 0.
    function creditFormula(Dimensions calldata dimensions, Weights calldata weights, uint64 rewardPoints, uint64 penaltyPoints)
        external
        pure
        returns (uint256);

    /// @notice An institution's record; reverts for an unknown ID.
    function institution(bytes32 id) external view returns (Institution memory);

    /// @notice An institution's current credit under the current weights.
    function creditOf(bytes32 id) external view returns (uint256);

    /// @notice True when willing, not suspended in the IdentityRegistry and credit ≥ removal threshold.
    function isEligible(bytes32 id) external view returns (bool);

    /// @notice True when the institution's participant is suspended in the IdentityRegistry.
    function isSuspended(bytes32 id) external view returns (bool);

    /// @notice The clock (ConsortiumIndex) whose rounds this registry follows; zero until `setClock`.
    function clock() external view returns (address);

    /// @notice The institution ID of an account (zero if none).
    function idOf(address account) external view returns (bytes32);

    /// @notice The registered institutions in registration order.
    function institutionCount() external view returns (uint256);
    function institutionAt(uint256 index) external view returns (bytes32);

    /// @notice Up to `limit` institutions from `offset` in registration order, with their records
    /// (one call gives an off-chain ranker everything it needs).
    function institutionsPage(uint256 offset, uint256 limit)
        external
        view
        returns (bytes32[] memory ids, Institution[] memory records);

    function weights() external view returns (Weights memory);
    function incentives() external view returns (Incentives memory);
    function isGovernor(address account) external view returns (bool);
    function isReporter(address account) external view returns (bool);

    /// @notice The current round and the version (election number) of the active roster (0 = none).
    function round() external view returns (uint64);
    function rosterVersion() external view returns (uint64);

    /// @notice The active roster: RPN seats (zero = vacant), ATN by rank, remaining reserve.
    function rpnSet() external view returns (bytes32[] memory);
    function atnSet() external view returns (bytes32[] memory);
    function reserveSet() external view returns (bytes32[] memory);

    /// @notice A pending election (applies from `fromRound`), if any.
    function pendingRoster()
        external
        view
        returns (bool pending, uint64 version, uint64 fromRound, bytes32[] memory rpn, bytes32[] memory atn);

    /// @notice The seat of an institution in the active roster.
    function seatOf(bytes32 id) external view returns (SeatKind kind, uint256 index);

    /// @notice The RPN in seat `index` (0 ≤ index < K) and its account; zero for a vacant seat.
    function rpnAt(uint256 index) external view returns (bytes32 id, address account);

    /// @notice How many ATN seats the active roster holds now (≤ M; fewer once the reserve ran out).
    function atnSeated() external view returns (uint256);

    /// @notice The ATN set in force in `round`: the round it was recorded from and keccak256(abi.encodePacked(ids))
    /// (the IDs are in the `AtnSetRecorded` event of that round).
    function atnSetAt(uint64 round) external view returns (uint64 fromRound, bytes32 atnHash);

    /// @notice For each account, its institution ID if it holds an ATN seat in the active roster, else zero.
    function atnIdsOf(address[] calldata accounts) external view returns (bytes32[] memory ids);
}
