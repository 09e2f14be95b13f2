// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {Time} from "@openzeppelin/contracts/utils/types/Time.sol";
import {IIdentityRegistry} from "../interfaces/IIdentityRegistry.sol";
import {IAuthorityGovernor} from "../interfaces/IAuthorityGovernor.sol";
import {IGoverned} from "../interfaces/IGoverned.sol";

/// @title AuthorityGovernor — k-of-n governance by the active health authorities of an IdentityRegistry
/// @notice The one caller the governed contracts of its chain (IdentityRegistry, CreditRegistry,
/// AccessPolicy) accept for their privileged functions. See IAuthorityGovernor.
/// @dev Approvals are kept per participant ID (stable across key rotation) and the approvers are
/// re-checked at execution: one suspended, or no longer an authority, since it approved does not count.
/// Storage per operation is one packed slot plus the approver list (its first entry is the proposer);
/// a duplicate approval is found by scanning that list, which holds at most the n authorities.
/// As in OpenZeppelin `AccessManager`, the operation ID hashes what will run, the calls are published
/// at proposal (the other authorities review what they approve) and supplied again at execution.
contract AuthorityGovernor is IAuthorityGovernor {
    // ------------------------------------------------------------------
    // Constants
    // ------------------------------------------------------------------

    /// @notice No single authority may govern: at least two must agree.
    uint8 public constant MIN_QUORUM = 2;
    uint8 public constant MAX_QUORUM = 32;
    uint32 public constant MIN_DELAY = 1 hours;
    uint32 public constant MAX_DELAY = 30 days;

    // ------------------------------------------------------------------
    // Storage
    // ------------------------------------------------------------------

    /// What an operation stores besides its approvers (one slot).
    struct Schedule {
        uint48 proposedAt;
        uint48 readyAt;
        OperationState state;
    }

    IIdentityRegistry private immutable _registry;
    mapping(bytes32 operationId => Schedule) private _operations;
    mapping(bytes32 operationId => bytes32[]) private _approvers; // [0] is the proposer
    uint8 private _quorum;
    uint32 private _delay;

    // ------------------------------------------------------------------
    // Modifiers
    // ------------------------------------------------------------------

    modifier onlyAuthority() {
        if (!_registry.isAuthority(msg.sender)) revert AuthorityGovernorNotAuthority(msg.sender);
        _;
    }

    /// @dev Only an executed operation (the governor calling itself).
    modifier onlySelf() {
        if (msg.sender != address(this)) revert AuthorityGovernorUnauthorizedCall(msg.sender);
        _;
    }

    constructor(IIdentityRegistry registry_, uint8 quorum_, uint32 delay_) {
        _registry = registry_;
        _setConfig(quorum_, delay_);
    }

    // ------------------------------------------------------------------
    // Operations
    // ------------------------------------------------------------------

    /// @inheritdoc IAuthorityGovernor
    function propose(Call[] calldata calls, bytes32 salt) external onlyAuthority returns (bytes32 operationId) {
        if (calls.length == 0) revert AuthorityGovernorEmptyOperation();
        operationId = hashOperation(calls, salt);
        if (_operations[operationId].state != OperationState.Unknown) {
            revert AuthorityGovernorOperationExists(operationId);
        }
        bytes32 proposer = _registry.idOf(msg.sender);
        uint48 now_ = Time.timestamp();
        uint48 readyAt = _anyDelayed(calls) ? now_ + _delay : now_;
        _operations[operationId] = Schedule(now_, readyAt, OperationState.Proposed);
        emit OperationProposed(operationId, proposer, calls, salt, readyAt);
        _addApproval(operationId, proposer);
    }

    /// @inheritdoc IAuthorityGovernor
    function approve(bytes32 operationId) external onlyAuthority {
        _expectState(operationId, OperationState.Proposed);
        bytes32 authority = _registry.idOf(msg.sender);
        if (hasApproved(operationId, authority)) revert AuthorityGovernorAlreadyApproved(operationId, authority);
        _addApproval(operationId, authority);
    }

    /// @inheritdoc IAuthorityGovernor
    function execute(Call[] calldata calls, bytes32 salt) external {
        bytes32 operationId = hashOperation(calls, salt);
        Schedule storage op = _expectState(operationId, OperationState.Proposed);
        uint48 now_ = Time.timestamp();
        if (now_ < op.readyAt) revert AuthorityGovernorNotReady(operationId, op.readyAt, now_);
        uint256 active = activeApprovals(operationId);
        if (active < _quorum) revert AuthorityGovernorQuorumNotReached(operationId, active, _quorum);
        // Checks, effects, interactions: the operation is spent before any of its calls runs (no replay).
        op.state = OperationState.Executed;
        emit OperationExecuted(operationId, msg.sender, active);
        for (uint256 i; i < calls.length; ++i) {
            Address.functionCall(calls[i].target, calls[i].data); // bubbles the target's own error
        }
    }

    /// @inheritdoc IAuthorityGovernor
    function cancel(bytes32 operationId) external {
        Schedule storage op = _expectState(operationId, OperationState.Proposed);
        bytes32 proposer = _approvers[operationId][0];
        if (_registry.idOf(msg.sender) != proposer || !_registry.isAuthority(msg.sender)) {
            revert AuthorityGovernorNotProposer(operationId, msg.sender);
        }
        op.state = OperationState.Cancelled;
        emit OperationCancelled(operationId, proposer);
    }

    /// @inheritdoc IAuthorityGovernor
    function setConfig(uint8 quorum_, uint32 delay_) external onlySelf {
        _setConfig(quorum_, delay_);
    }

    // ------------------------------------------------------------------
    // Views
    // ------------------------------------------------------------------

    /// @inheritdoc IAuthorityGovernor
    function registry() external view returns (IIdentityRegistry) {
        return _registry;
    }

    /// @inheritdoc IAuthorityGovernor
    function hashOperation(Call[] calldata calls, bytes32 salt) public pure returns (bytes32) {
        return keccak256(abi.encode(calls, salt));
    }

    /// @inheritdoc IAuthorityGovernor
    function getOperation(bytes32 operationId) external view returns (Operation memory) {
        Schedule storage op = _operations[operationId];
        bytes32[] storage approvers = _approvers[operationId];
        uint256 n = approvers.length;
        return Operation({
            proposer: n == 0 ? bytes32(0) : approvers[0],
            proposedAt: op.proposedAt,
            readyAt: op.readyAt,
            approvals: uint8(n),
            state: op.state
        });
    }

    /// @inheritdoc IAuthorityGovernor
    function hasApproved(bytes32 operationId, bytes32 authority) public view returns (bool) {
        bytes32[] storage approvers = _approvers[operationId];
        uint256 n = approvers.length;
        for (uint256 i; i < n; ++i) {
            if (approvers[i] == authority) return true;
        }
        return false;
    }

    /// @inheritdoc IAuthorityGovernor
    function activeApprovals(bytes32 operationId) public view returns (uint256 active) {
        bytes32[] storage approvers = _approvers[operationId];
        uint256 n = approvers.length;
        for (uint256 i; i < n; ++i) {
            if (_registry.isAuthorityId(approvers[i])) ++active;
        }
    }

    /// @inheritdoc IAuthorityGovernor
    function quorum() external view returns (uint8) {
        return _quorum;
    }

    /// @inheritdoc IAuthorityGovernor
    function delay() external view returns (uint32) {
        return _delay;
    }

    /// @inheritdoc IAuthorityGovernor
    function isDelayed(address target, bytes4 selector) public view returns (bool) {
        if (target == address(this)) return selector == this.setConfig.selector;
        if (target.code.length == 0) return true; // nothing to ask: wait, to be safe
        try IGoverned(target).isParameterChange(selector) returns (bool delayed) {
            return delayed;
        } catch {
            return true; // a target that cannot tell waits, to be safe
        }
    }

    // ------------------------------------------------------------------
    // Internal
    // ------------------------------------------------------------------

    function _addApproval(bytes32 operationId, bytes32 authority) private {
        bytes32[] storage approvers = _approvers[operationId];
        approvers.push(authority);
        emit OperationApproved(operationId, authority, uint8(approvers.length));
    }

    function _expectState(bytes32 operationId, OperationState expected) private view returns (Schedule storage op) {
        op = _operations[operationId];
        OperationState current = op.state;
        if (current == OperationState.Unknown) revert AuthorityGovernorUnknownOperation(operationId);
        if (current != expected) revert AuthorityGovernorUnexpectedState(operationId, current, expected);
    }

    function _anyDelayed(Call[] calldata calls) private view returns (bool) {
        for (uint256 i; i < calls.length; ++i) {
            bytes calldata data = calls[i].data;
            if (data.length < 4 || isDelayed(calls[i].target, bytes4(data[:4]))) return true;
        }
        return false;
    }

    function _setConfig(uint8 quorum_, uint32 delay_) private {
        if (quorum_ < MIN_QUORUM || quorum_ > MAX_QUORUM || delay_ < MIN_DELAY || delay_ > MAX_DELAY) {
            revert AuthorityGovernorInvalidConfig(quorum_, delay_);
        }
        _quorum = quorum_;
        _delay = delay_;
        emit ConfigSet(quorum_, delay_);
    }
}
