// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Vm} from "./Vm.sol";

/// @title Test — a tiny base: the cheatcode handle, assertions, `bound`, invariant targets
/// @notice Assertions are forge's own assertion cheatcodes (they revert with the values), so a failing
/// check fails the test without ds-test's failure slot.
abstract contract Test {
    /// keccak256("hevm cheat code") truncated: where forge serves the cheatcodes.
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    /// Read by forge: marks this contract as a test contract.
    bool public IS_TEST = true;

    address[] private _targetContracts;
    address[] private _targetSenders;

    // ------------------------------------------------------------------
    // Assertions
    // ------------------------------------------------------------------

    function assertTrue(bool c) internal pure { vm.assertTrue(c, ""); }
    function assertTrue(bool c, string memory m) internal pure { vm.assertTrue(c, m); }
    function assertFalse(bool c) internal pure { vm.assertFalse(c, ""); }
    function assertFalse(bool c, string memory m) internal pure { vm.assertFalse(c, m); }
    function assertEq(bool a, bool b) internal pure { vm.assertEq(a, b, ""); }
    function assertEq(uint256 a, uint256 b) internal pure { vm.assertEq(a, b, ""); }
    function assertEq(uint256 a, uint256 b, string memory m) internal pure { vm.assertEq(a, b, m); }
    function assertEq(address a, address b) internal pure { vm.assertEq(a, b, ""); }
    function assertEq(bytes32 a, bytes32 b) internal pure { vm.assertEq(a, b, ""); }
    function assertEq(bytes32 a, bytes32 b, string memory m) internal pure { vm.assertEq(a, b, m); }
    function assertEq(bytes memory a, bytes memory b) internal pure { vm.assertEq(a, b, ""); }
    function assertEq(bytes32[] memory a, bytes32[] memory b) internal pure { vm.assertEq(a, b, ""); }
    function assertEq(address[] memory a, address[] memory b) internal pure { vm.assertEq(a, b, ""); }
    function assertLe(uint256 a, uint256 b) internal pure { vm.assertLe(a, b, ""); }
    function assertGe(uint256 a, uint256 b) internal pure { vm.assertGe(a, b, ""); }
    function assertLt(uint256 a, uint256 b) internal pure { vm.assertLt(a, b, ""); }
    function assertGt(uint256 a, uint256 b) internal pure { vm.assertGt(a, b, ""); }

    // ------------------------------------------------------------------
    // Fuzzing
    // ------------------------------------------------------------------

    /// @dev `x` mapped into [lo, hi] (unchanged when already inside), as forge-std's `bound`.
    function bound(uint256 x, uint256 lo, uint256 hi) internal pure returns (uint256) {
        require(lo <= hi, "bound: lo > hi");
        if (x >= lo && x <= hi) return x;
        uint256 size = hi - lo + 1;
        if (size == 0) return x;
        return lo + x % size;
    }

    // ------------------------------------------------------------------
    // Invariant targets (read by forge)
    // ------------------------------------------------------------------

    function targetContract(address target) internal {
        _targetContracts.push(target);
    }

    function targetSender(address sender) internal {
        _targetSenders.push(sender);
    }

    function targetContracts() public view returns (address[] memory) {
        return _targetContracts;
    }

    function targetSenders() public view returns (address[] memory) {
        return _targetSenders;
    }
}
