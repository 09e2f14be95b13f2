// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {IIdentityRegistry} from "./interfaces/IIdentityRegistry.sol";
import {IGoverned} from "./interfaces/IGoverned.sol";
import {AuthorityGovernor} from "./governance/AuthorityGovernor.sol";

/// @title IdentityRegistry — the KMC's public record, deployed on every chain
/// @notice The KMC authority (the owner, transferable in two steps, never
/// renounced) registers participants and rotates their keys. Any one active health
/// authority may suspend a participant that is not an authority (a fast, protective action);
/// suspending an authority and reinstating anyone widen or move power, so they need the k-of-n
/// AuthorityGovernor of this chain, which the registry creates and whose authorities it records.
contract IdentityRegistry is IIdentityRegistry, Ownable2Step {
    // ------------------------------------------------------------------
    // Constants
    // ------------------------------------------------------------------

    uint256 private constant PRE_KEY_LENGTH = 33;
    uint256 private constant PEKS_KEY_G1_LENGTH = 48;
    uint256 private constant PEKS_KEY_G2_LENGTH = 96;

    // ------------------------------------------------------------------
    // Storage
    // ------------------------------------------------------------------

    mapping(bytes32 id => Participant) private _participants;
    mapping(address account => bytes32 id) private _ids;
    /// Accounts ever used, so a rotated-away key can never be re-registered.
    mapping(address account => bool) private _accountUsed;
    bytes32[] private _order;
    uint256 private _suspensionCount; // suspensions ever made: lets a registry notice one in O(1)
    address private immutable _governor;

    // ------------------------------------------------------------------
    // Modifiers
    // ------------------------------------------------------------------

    modifier onlyKmc() {
        if (msg.sender != owner()) revert IdentityRegistryNotKmc(msg.sender);
        _;
    }

    modifier onlyGovernance() {
        if (msg.sender != _governor) revert IdentityRegistryNotGovernance(msg.sender);
        _;
    }

    /// @param governanceQuorum k: distinct active authorities an operation needs (≥ 2).
    /// @param governanceDelay seconds a parameter change waits between proposal and execution.
    constructor(address kmc, uint8 governanceQuorum, uint32 governanceDelay) Ownable(kmc) {
        _governor = address(new AuthorityGovernor(this, governanceQuorum, governanceDelay));
    }

    // ------------------------------------------------------------------
    // KMC
    // ------------------------------------------------------------------

    /// @inheritdoc IIdentityRegistry
    function register(
        bytes32 id,
        address account,
        Role role,
        bytes32 institution,
        bytes calldata preKey,
        bytes calldata peksKey
    ) external onlyKmc {
        if (id == bytes32(0) || account == address(0) || role == Role.None) {
            revert IdentityRegistryInvalidParticipant(id, account, role);
        }
        if (_participants[id].role != Role.None) revert IdentityRegistryAlreadyRegistered(id);
        if (_accountUsed[account]) revert IdentityRegistryAccountInUse(account);
        _checkKeys(id, preKey, peksKey);
        _checkInstitution(id, role, institution);

        Participant storage p = _participants[id];
        p.account = account;
        p.role = role;
        p.keyVersion = 1;
        p.registeredAt = uint48(block.timestamp);
        p.updatedAt = uint48(block.timestamp);
        p.institution = institution;
        p.preKey = preKey;
        p.peksKey = peksKey;
        _ids[account] = id;
        _accountUsed[account] = true;
        _order.push(id);
        emit ParticipantRegistered(id, account, role, institution, preKey, peksKey);
    }

    /// @inheritdoc IIdentityRegistry
    function rotateKeys(bytes32 id, address newAccount, bytes calldata preKey, bytes calldata peksKey)
        external
        onlyKmc
    {
        Participant storage p = _existing(id);
        if (newAccount == address(0)) revert IdentityRegistryInvalidParticipant(id, newAccount, p.role);
        if (newAccount != p.account && _accountUsed[newAccount]) revert IdentityRegistryAccountInUse(newAccount);
        _checkKeys(id, preKey, peksKey);

        address oldAccount = p.account;
        if (newAccount != oldAccount) {
            delete _ids[oldAccount];
            _ids[newAccount] = id;
            _accountUsed[newAccount] = true;
            p.account = newAccount;
        }
        p.preKey = preKey;
        p.peksKey = peksKey;
        p.keyVersion += 1;
        p.updatedAt = uint48(block.timestamp);
        emit KeysRotated(id, oldAccount, newAccount, p.keyVersion, preKey, peksKey);
    }

    /// @notice Disabled: without a KMC no participant could ever be registered or rotated again.
    /// The authority is handed over with `transferOwnership` + `acceptOwnership` instead.
    function renounceOwnership() public view override onlyOwner {
        revert IdentityRegistryRenounceDisabled(msg.sender);
    }

    // ------------------------------------------------------------------
    // Health authorities
    // ------------------------------------------------------------------

    /// @inheritdoc IIdentityRegistry
    function suspend(bytes32 id, string calldata reason) external {
        if (msg.sender != _governor) {
            if (!isAuthority(msg.sender)) revert IdentityRegistryNotAuthority(msg.sender);
            if (_isAuthorityRole(_existing(id).role)) revert IdentityRegistryNotGovernance(msg.sender);
        }
        _setSuspended(id, true, reason);
    }

    /// @inheritdoc IIdentityRegistry
    function reinstate(bytes32 id, string calldata reason) external onlyGovernance {
        _setSuspended(id, false, reason);
    }

    // ------------------------------------------------------------------
    // Views
    // ------------------------------------------------------------------

    /// @inheritdoc IIdentityRegistry
    function participant(bytes32 id) external view returns (Participant memory) {
        return _existing(id);
    }

    /// @inheritdoc IIdentityRegistry
    function idOf(address account) external view returns (bytes32) {
        return _ids[account];
    }

    /// @inheritdoc IIdentityRegistry
    function isActive(address account) public view returns (bool) {
        bytes32 id = _ids[account];
        return id != bytes32(0) && !_participants[id].suspended;
    }

    /// @inheritdoc IIdentityRegistry
    function isAuthority(address account) public view returns (bool) {
        if (!isActive(account)) return false;
        return _isAuthorityRole(_participants[_ids[account]].role);
    }

    /// @inheritdoc IIdentityRegistry
    function isAuthorityId(bytes32 id) external view returns (bool) {
        Participant storage p = _participants[id];
        return _isAuthorityRole(p.role) && !p.suspended;
    }

    /// @inheritdoc IGoverned
    function governor() external view returns (address) {
        return _governor;
    }

    /// @inheritdoc IGoverned
    function isParameterChange(bytes4) external pure returns (bool) {
        return false; // suspensions are not parameters: no delay
    }

    /// @inheritdoc IIdentityRegistry
    function suspensionCount() external view returns (uint256) {
        return _suspensionCount;
    }

    /// @inheritdoc IIdentityRegistry
    function participantCount() external view returns (uint256) {
        return _order.length;
    }

    /// @inheritdoc IIdentityRegistry
    function participantAt(uint256 index) external view returns (bytes32) {
        return _order[index];
    }

    // ------------------------------------------------------------------
    // Internal
    // ------------------------------------------------------------------

    function _isAuthorityRole(Role role) private pure returns (bool) {
        return role == Role.AuthorityNational || role == Role.AuthorityProvincial || role == Role.AuthorityMunicipal;
    }

    function _existing(bytes32 id) private view returns (Participant storage p) {
        p = _participants[id];
        if (p.role == Role.None) revert IdentityRegistryUnknownParticipant(id);
    }

    function _checkKeys(bytes32 id, bytes calldata preKey, bytes calldata peksKey) private pure {
        if (
            preKey.length != PRE_KEY_LENGTH
                || (peksKey.length != PEKS_KEY_G1_LENGTH && peksKey.length != PEKS_KEY_G2_LENGTH)
        ) {
            revert IdentityRegistryInvalidKey(id, preKey.length, peksKey.length);
        }
    }

    function _checkInstitution(bytes32 id, Role role, bytes32 institution) private view {
        if (role == Role.Doctor) {
            Role instRole = _participants[institution].role;
            if (institution == bytes32(0) || (instRole != Role.Hospital && instRole != Role.InternetPlatform)) {
                revert IdentityRegistryInvalidInstitution(id, institution);
            }
            if (_participants[institution].suspended) revert IdentityRegistryInstitutionSuspended(id, institution);
        } else if (institution != bytes32(0)) {
            revert IdentityRegistryInvalidInstitution(id, institution);
        }
    }

    function _setSuspended(bytes32 id, bool suspended, string calldata reason) private {
        Participant storage p = _existing(id);
        if (p.suspended == suspended) revert IdentityRegistrySuspensionUnchanged(id, suspended);
        // Zero when the governor (k authorities) acts. No authority suspends itself: suspending any
        // authority is the governor's alone.
        bytes32 authority = _ids[msg.sender];
        p.suspended = suspended;
        p.updatedAt = uint48(block.timestamp);
        if (suspended) ++_suspensionCount;
        if (suspended) emit ParticipantSuspended(id, authority, reason);
        else emit ParticipantReinstated(id, authority, reason);
    }
}
