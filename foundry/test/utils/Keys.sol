// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Vm} from "./Vm.sol";

/// @title Keys — deterministic secp256k1 keys per label, for tests and invariant handlers
library Keys {
    Vm private constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));
    uint256 private constant SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;

    function keyOf(bytes32 label) internal pure returns (uint256) {
        return uint256(keccak256(abi.encode("mbds-foundry", label))) % (SECP256K1_N - 1) + 1;
    }

    function accountOf(bytes32 label) internal pure returns (address) {
        return vm.addr(keyOf(label));
    }

    /// @dev 65-byte r‖s‖v signature of `digest` by the key of `label`.
    function sign(bytes32 label, bytes32 digest) internal pure returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(keyOf(label), digest);
        return abi.encodePacked(r, s, v);
    }
}
