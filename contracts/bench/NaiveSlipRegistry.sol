// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {INaiveSlipRegistry} from "./INaiveSlipRegistry.sol";

/// @title NaiveSlipRegistry — one transaction and one storage word per slip
/// @notice Benchmark baseline for SlipLedger (see INaiveSlipRegistry).
contract NaiveSlipRegistry is INaiveSlipRegistry {
    // ------------------------------------------------------------------
    // Storage
    // ------------------------------------------------------------------

    mapping(bytes32 slipId => bytes32 slipHash) private _slipHashes;

    // ------------------------------------------------------------------
    // Slips
    // ------------------------------------------------------------------

    /// @inheritdoc INaiveSlipRegistry
    function recordSlip(bytes32 slipId, bytes32 slipHash) external {
        if (slipHash == bytes32(0)) revert NaiveSlipRegistryZeroHash(slipId);
        bytes32 recorded = _slipHashes[slipId];
        if (recorded != bytes32(0)) revert NaiveSlipRegistryAlreadyRecorded(slipId, recorded);
        _slipHashes[slipId] = slipHash;
        emit SlipRecorded(slipId, slipHash);
    }

    // ------------------------------------------------------------------
    // Views
    // ------------------------------------------------------------------

    /// @inheritdoc INaiveSlipRegistry
    function slipHashOf(bytes32 slipId) external view returns (bytes32) {
        return _slipHashes[slipId];
    }
}
