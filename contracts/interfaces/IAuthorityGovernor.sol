// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IIdentityRegistry} from "./IIdentityRegistry.sol";

/// @title IAuthorityGovernor — k-of-n governance by the active health authorities
/// @notice One governor per chain, created by (and reading its authorities from) the IdentityRegistry.
/// An active health authority `propose`s an operation — a list of calls to governed contracts — other
/// authorities `approve` it, and once `quorum` distinct authorities that are *still active at execution*
/// have approved and the operation's delay has passed, anyone `execute`s it, once. A call to a function
/// its target declares a parameter change (`IGoverned.isParameterChange`), or to `setConfig`, carries
/// `delay`; routine operations (appointments, elections, clearances) none.
/// Modelled on OpenZeppelin `AccessManager` (schedule → delay → execute, one event per step; the
/// manager is the caller its targets trust), with the k-of-n approval count AccessManager lacks.
interface IAuthorityGovernor {
    // ------------------------------------------------------------------
    // Types
    // ------------------------------------------------------------------

    /// @notice Lifecycle of an operation: Proposed → Executed | Cancelled.
    enum OperationState {
        Unknown,
        Proposed,
        Executed,
        Cancelled
    }

    /// @notice One call of an operation.
    struct Call {
        address target;
        bytes data;
    }

    /// @notice An operation as stored (its calls are only hashed into its ID).
    struct Operation {
        bytes32 proposer; // participant ID of the proposing authority
        uint48 proposedAt;
        uint48 readyAt; // proposedAt + delay (parameter changes) or proposedAt
        uint8 approvals; // distinct approvals given (activity is re-checked at execution)
        OperationState state;
    }

    // ------------------------------------------------------------------
    // Errors
    // ------------------------------------------------------------------

    /// @dev The caller is not an active health authority.
    error AuthorityGovernorNotAuthority(address caller);
    /// @dev `setConfig` was called directly instead of through an executed operation.
    error AuthorityGovernorUnauthorizedCall(address caller);
    /// @dev An operation must hold at least one call.
    error AuthorityGovernorEmptyOperation();
    /// @dev No operation with this ID was proposed.
    error AuthorityGovernorUnknownOperation(bytes32 operationId);
    /// @dev An operation with this ID (same calls, same salt) already exists: pick another salt.
    error AuthorityGovernorOperationExists(bytes32 operationId);
    /// @dev The operation is not in the expected state (e.g. executed twice, or approved after a cancel).
    error AuthorityGovernorUnexpectedState(bytes32 operationId, OperationState current, OperationState expected);
    /// @dev This authority already approved the operation (each authority counts once).
    error AuthorityGovernorAlreadyApproved(bytes32 operationId, bytes32 authority);
    /// @dev Fewer than `quorum` distinct approvers are active authorities at execution.
    error AuthorityGovernorQuorumNotReached(bytes32 operationId, uint256 activeApprovals, uint256 quorum);
    /// @dev The operation's delay has not passed.
    error AuthorityGovernorNotReady(bytes32 operationId, uint48 readyAt, uint48 now);
    /// @dev Only the proposer, while an active authority, can cancel.
    error AuthorityGovernorNotProposer(bytes32 operationId, address caller);
    /// @dev Quorum outside [MIN_QUORUM, MAX_QUORUM] or delay outside [MIN_DELAY, MAX_DELAY].
    error AuthorityGovernorInvalidConfig(uint8 quorum, uint32 delay);

    // ------------------------------------------------------------------
    // Events
    // ------------------------------------------------------------------

    /// @notice An authority proposed an operation (the proposal counts as its approval).
    event OperationProposed(bytes32 indexed operationId, bytes32 indexed proposer, Call[] calls, bytes32 salt, uint48 readyAt);
    /// @notice An authority approved an operation; `approvals` distinct approvals so far.
    event OperationApproved(bytes32 indexed operationId, bytes32 indexed authority, uint8 approvals);
    /// @notice An operation ran, approved by `activeApprovals` authorities active at execution.
    event OperationExecuted(bytes32 indexed operationId, address indexed executor, uint256 activeApprovals);
    /// @notice The proposer withdrew an operation.
    event OperationCancelled(bytes32 indexed operationId, bytes32 indexed proposer);
    /// @notice The quorum and the parameter-change delay were set.
    event ConfigSet(uint8 quorum, uint32 delay);

    // ------------------------------------------------------------------
    // Operations
    // ------------------------------------------------------------------

    /// @notice Propose `calls` under `salt`; the proposal is the proposer's approval. Active authorities only.
    function propose(Call[] calldata calls, bytes32 salt) external returns (bytes32 operationId);

    /// @notice Approve a proposed operation. Active health authorities only; once per authority.
    function approve(bytes32 operationId) external;

    /// @notice Run a proposed operation whose delay has passed and whose approvers include `quorum`
    /// active authorities. Anyone may execute; an operation runs at most once; a failing call reverts
    /// the whole operation with the call's own error (the operation stays Proposed).
    function execute(Call[] calldata calls, bytes32 salt) external;

    /// @notice Withdraw a proposed operation. Its proposer only, while an active authority.
    function cancel(bytes32 operationId) external;

    /// @notice Set the quorum and the parameter-change delay. Only as an executed (delayed) operation.
    function setConfig(uint8 quorum, uint32 delay) external;

    // ------------------------------------------------------------------
    // Views
    // ------------------------------------------------------------------

    /// @notice The IdentityRegistry whose active health authorities govern.
    function registry() external view returns (IIdentityRegistry);

    /// @notice The ID of an operation: keccak256(abi.encode(calls, salt)).
    function hashOperation(Call[] calldata calls, bytes32 salt) external pure returns (bytes32);

    /// @notice The stored operation (state Unknown if never proposed).
    function getOperation(bytes32 operationId) external view returns (Operation memory);

    /// @notice Whether the authority with participant ID `authority` approved the operation.
    function hasApproved(bytes32 operationId, bytes32 authority) external view returns (bool);

    /// @notice How many of the operation's approvers are active health authorities now.
    function activeApprovals(bytes32 operationId) external view returns (uint256);

    /// @notice Distinct active authorities needed to execute (k of the n authorities).
    function quorum() external view returns (uint8);

    /// @notice Seconds a parameter change waits between proposal and execution.
    function delay() external view returns (uint32);

    /// @notice Whether a call to `target` with `selector` carries the delay.
    function isDelayed(address target, bytes4 selector) external view returns (bool);
}
