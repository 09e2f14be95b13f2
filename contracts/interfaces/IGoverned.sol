// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title IGoverned — a contract whose privileged functions only its AuthorityGovernor may call
/// @notice Like OpenZeppelin `IAccessManaged`: the target names its governor, and tells the governor
/// which of its functions change a parameter (those wait the governance delay).
interface IGoverned {
    /// @notice The AuthorityGovernor that alone calls this contract's governed functions.
    function governor() external view returns (address);

    /// @notice Whether the function with `selector` changes a parameter (and so waits the delay).
    function isParameterChange(bytes4 selector) external view returns (bool);
}
