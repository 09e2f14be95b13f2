// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Test} from "./Test.sol";
import {Keys} from "./Keys.sol";
import {IdentityRegistry} from "../../../contracts/IdentityRegistry.sol";
import {AuthorityGovernor} from "../../../contracts/governance/AuthorityGovernor.sol";
import {IIdentityRegistry} from "../../../contracts/interfaces/IIdentityRegistry.sol";
import {IAuthorityGovernor} from "../../../contracts/interfaces/IAuthorityGovernor.sol";

/// @title Base — an IdentityRegistry with its KMC and three health authorities (the devnet's shape)
/// @notice As the Python fixtures (tests/conftest.py): the KMC registers; nha, pha and mha are the
/// national, provincial and municipal authorities; governance is 2 of them with a one-day delay.
/// Every participant's key is derived from its ID, so tests can sign for anyone with `vm.sign`.
abstract contract Base is Test {
    uint8 internal constant GOV_QUORUM = 2;
    uint32 internal constant GOV_DELAY = 1 days;

    bytes32 internal constant NHA = bytes32("nha");
    bytes32 internal constant PHA = bytes32("pha");
    bytes32 internal constant MHA = bytes32("mha");

    IdentityRegistry internal reg;
    AuthorityGovernor internal gov;
    address internal kmc;
    address internal nha;
    address internal pha;
    address internal mha;
    uint256 private _salt;

    function setUp() public virtual {
        vm.warp(1_750_000_000);
        kmc = vm.addr(keyOf(bytes32("kmc")));
        reg = new IdentityRegistry(kmc, GOV_QUORUM, GOV_DELAY);
        gov = AuthorityGovernor(reg.governor());
        nha = register(NHA, IIdentityRegistry.Role.AuthorityNational, 0);
        pha = register(PHA, IIdentityRegistry.Role.AuthorityProvincial, 0);
        mha = register(MHA, IIdentityRegistry.Role.AuthorityMunicipal, 0);
    }

    // ------------------------------------------------------------------
    // Keys and participants
    // ------------------------------------------------------------------

    /// @dev A deterministic secp256k1 key per label.
    function keyOf(bytes32 label) internal pure returns (uint256) {
        return Keys.keyOf(label);
    }

    function accountOf(bytes32 label) internal pure returns (address) {
        return Keys.accountOf(label);
    }

    function preKey() internal pure returns (bytes memory) {
        return abi.encodePacked(bytes1(0x02), keccak256("pre"));
    }

    function peksKey() internal pure returns (bytes memory) {
        return abi.encodePacked(keccak256("peks"), bytes16(keccak256("peks2")));
    }

    /// @dev Register `id` with the account of its derived key (KMC).
    function register(bytes32 id, IIdentityRegistry.Role role, bytes32 institution) internal returns (address account) {
        account = accountOf(id);
        vm.prank(kmc);
        reg.register(id, account, role, institution, preKey(), peksKey());
    }

    /// @dev 65-byte r‖s‖v signature of `digest` by the key of `label`.
    function signBy(bytes32 label, bytes32 digest) internal pure returns (bytes memory) {
        return Keys.sign(label, digest);
    }

    // ------------------------------------------------------------------
    // Governance
    // ------------------------------------------------------------------

    function one(address target, bytes memory data) internal pure returns (IAuthorityGovernor.Call[] memory calls) {
        calls = new IAuthorityGovernor.Call[](1);
        calls[0] = IAuthorityGovernor.Call(target, data);
    }

    /// @dev Run `calls` through the k-of-n governor: nha proposes, pha approves, wait the delay if any, execute.
    function govern(IAuthorityGovernor.Call[] memory calls) internal {
        bytes32 salt = bytes32(++_salt);
        vm.prank(nha);
        bytes32 op = gov.propose(calls, salt);
        vm.prank(pha);
        gov.approve(op);
        uint48 readyAt = gov.getOperation(op).readyAt;
        if (readyAt > block.timestamp) vm.warp(readyAt);
        gov.execute(calls, salt);
    }

    function govern(address target, bytes memory data) internal {
        govern(one(target, data));
    }
}
