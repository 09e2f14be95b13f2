// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IGoverned} from "./IGoverned.sol";

/// @title IIdentityRegistry — the Key Management Center's public record
/// @notice One key set per participant: account address, Umbral PRE public key,
/// PEKS public key, role and (for doctors) the institution they belong to.
/// The participant ID is a stable commitment chosen by the KMC (it never
/// reveals the real identity) and survives key rotation.
interface IIdentityRegistry is IGoverned {
    // ------------------------------------------------------------------
    // Types
    // ------------------------------------------------------------------

    /// @notice Roles of the MBDS population (paper: "MBDS system design").
    enum Role {
        None,
        Hospital,
        InternetPlatform,
        Doctor,
        Patient,
        AuthorityNational,
        AuthorityProvincial,
        AuthorityMunicipal,
        Insurer,
        ResearchInstitute,
        PharmaCompany
    }

    /// @notice A participant's current key set.
    struct Participant {
        address account; // secp256k1 address: the identity on every chain
        Role role;
        bool suspended;
        uint32 keyVersion; // 1 at registration, +1 per rotation
        uint48 registeredAt;
        uint48 updatedAt;
        bytes32 institution; // for doctors: the hospital or platform; else zero
        bytes preKey; // Umbral public key, 33-byte compressed secp256k1 point
        bytes peksKey; // PEKS public key, compressed BLS12-381 point (48 or 96 bytes)
    }

    // ------------------------------------------------------------------
    // Errors
    // ------------------------------------------------------------------

    /// @dev The caller is not the KMC authority.
    error IdentityRegistryNotKmc(address caller);
    /// @dev The caller is not an active health authority.
    error IdentityRegistryNotAuthority(address caller);
    /// @dev The participant ID is already registered.
    error IdentityRegistryAlreadyRegistered(bytes32 id);
    /// @dev The account already belongs (or belonged) to a participant.
    error IdentityRegistryAccountInUse(address account);
    /// @dev No participant with this ID.
    error IdentityRegistryUnknownParticipant(bytes32 id);
    /// @dev Zero ID, zero account or role None.
    error IdentityRegistryInvalidParticipant(bytes32 id, address account, Role role);
    /// @dev A key has the wrong length for its scheme.
    error IdentityRegistryInvalidKey(bytes32 id, uint256 preKeyLength, uint256 peksKeyLength);
    /// @dev A doctor must name a registered hospital or platform; others must name none.
    error IdentityRegistryInvalidInstitution(bytes32 id, bytes32 institution);
    /// @dev A doctor cannot be registered under a suspended hospital or platform.
    error IdentityRegistryInstitutionSuspended(bytes32 id, bytes32 institution);
    /// @dev The KMC authority cannot be renounced, only transferred in two steps.
    error IdentityRegistryRenounceDisabled(address caller);
    /// @dev Suspend on a suspended participant, or reinstate on an active one.
    error IdentityRegistrySuspensionUnchanged(bytes32 id, bool suspended);
    /// @dev Only the k-of-n AuthorityGovernor may do this (reinstate anyone, suspend an authority).
    error IdentityRegistryNotGovernance(address caller);

    // ------------------------------------------------------------------
    // Events
    // ------------------------------------------------------------------

    /// @notice A participant and its first key set were registered by the KMC.
    event ParticipantRegistered(
        bytes32 indexed id, address indexed account, Role role, bytes32 indexed institution, bytes preKey, bytes peksKey
    );
    /// @notice A participant's keys were rotated; the ID is unchanged.
    event KeysRotated(
        bytes32 indexed id, address indexed oldAccount, address indexed newAccount, uint32 keyVersion, bytes preKey, bytes peksKey
    );
    /// @notice A health authority suspended a participant (`authority` zero: the k-of-n governor did).
    event ParticipantSuspended(bytes32 indexed id, bytes32 indexed authority, string reason);
    /// @notice The k-of-n governor reinstated a participant (`authority` is zero).
    event ParticipantReinstated(bytes32 indexed id, bytes32 indexed authority, string reason);

    // ------------------------------------------------------------------
    // KMC
    // ------------------------------------------------------------------

    /// @notice Register a participant with its first key set; a doctor's institution must be an
    /// active (not suspended) hospital or platform. KMC only.
    function register(
        bytes32 id,
        address account,
        Role role,
        bytes32 institution,
        bytes calldata preKey,
        bytes calldata peksKey
    ) external;

    /// @notice Replace a participant's account and keys, keeping its ID. KMC only.
    function rotateKeys(bytes32 id, address newAccount, bytes calldata preKey, bytes calldata peksKey) external;

    // ------------------------------------------------------------------
    // Health authorities
    // ------------------------------------------------------------------

    /// @notice Suspend a participant (e.g. after abnormal access): any one active health authority for a
    /// participant that is not an authority; an authority only by the k-of-n governor (executed operation).
    function suspend(bytes32 id, string calldata reason) external;

    /// @notice Reinstate a suspended participant. The k-of-n governor only (an executed operation).
    function reinstate(bytes32 id, string calldata reason) external;

    // ------------------------------------------------------------------
    // Views
    // ------------------------------------------------------------------

    /// @notice The participant's current record; reverts for an unknown ID.
    function participant(bytes32 id) external view returns (Participant memory);

    /// @notice The participant ID of an account (zero if none).
    function idOf(address account) external view returns (bytes32);

    /// @notice True when the account belongs to a registered, non-suspended participant.
    function isActive(address account) external view returns (bool);

    /// @notice True when `account` is an active health authority of any level.
    function isAuthority(address account) external view returns (bool);

    /// @notice True when participant `id` is an active (not suspended) health authority: `isAuthority` by the
    /// stable ID (one storage read), what approvals kept per ID are re-checked with.
    function isAuthorityId(bytes32 id) external view returns (bool);

    /// @notice How many suspensions were ever made (never decreases): a contract that caches eligibility
    /// (the CreditRegistry) re-checks its members only when this moved.
    function suspensionCount() external view returns (uint256);

    /// @notice Number of registered participants.
    function participantCount() external view returns (uint256);

    /// @notice The participant ID at `index` in registration order.
    function participantAt(uint256 index) external view returns (bytes32);
}
