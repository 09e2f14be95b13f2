// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title INaiveSlipRegistry — the benchmark baseline: one transaction per slip
/// @notice The fair naive alternative to SlipLedger that `mbds bench` measures
/// beside it (`naive_gas_per_slip`): each slip is anchored by its own
/// transaction storing the slip's hash under its ID (one SSTORE plus an event).
/// No access control, no batching, no certificate: the cheapest honest design
/// of "put every slip on chain", so the ratio to SlipLedger is not flattered.
/// Benchmark-only; not part of the deployed system.
interface INaiveSlipRegistry {
    // ------------------------------------------------------------------
    // Errors
    // ------------------------------------------------------------------

    /// @dev A slip ID is recorded once; its hash never changes.
    error NaiveSlipRegistryAlreadyRecorded(bytes32 slipId, bytes32 recordedHash);
    /// @dev The zero hash would be indistinguishable from "not recorded".
    error NaiveSlipRegistryZeroHash(bytes32 slipId);

    // ------------------------------------------------------------------
    // Events
    // ------------------------------------------------------------------

    /// @notice A slip's hash was recorded.
    event SlipRecorded(bytes32 indexed slipId, bytes32 slipHash);

    // ------------------------------------------------------------------
    // Functions
    // ------------------------------------------------------------------

    /// @notice Record the hash of slip `slipId` (first write wins).
    function recordSlip(bytes32 slipId, bytes32 slipHash) external;

    /// @notice The hash recorded for `slipId`, or zero if none.
    function slipHashOf(bytes32 slipId) external view returns (bytes32);
}
