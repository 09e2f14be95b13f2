// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Base} from "../utils/Base.sol";
import {Test} from "../utils/Test.sol";
import {IdentityRegistry} from "../../../contracts/IdentityRegistry.sol";
import {IIdentityRegistry} from "../../../contracts/interfaces/IIdentityRegistry.sol";

/// @notice Drives an IdentityRegistry with KMC and non-KMC callers; ghosts the key sets it should hold.
contract IdentityHandler is Test {
    IdentityRegistry internal reg;
    address internal kmc;
    address internal authority;

    bytes32[] public ids; // registered, in order
    mapping(bytes32 id => address) public ghostAccount;
    mapping(bytes32 id => uint32) public ghostVersion;
    mapping(address account => bool) public ghostUsed;
    bool public outsiderSucceeded; // a non-KMC register or rotate that went through
    uint256 public calls;

    constructor(IdentityRegistry reg_, address kmc_, address authority_) {
        (reg, kmc, authority) = (reg_, kmc_, authority_);
    }

    function idCount() external view returns (uint256) {
        return ids.length;
    }

    function _keys() internal pure returns (bytes memory, bytes memory) {
        return (abi.encodePacked(bytes1(0x02), bytes32(uint256(7))), new bytes(48));
    }

    function register(uint256 idSeed, address account, uint8 roleSeed, bool asKmc) external {
        ++calls;
        bytes32 id = bytes32(bound(idSeed, 1, 40));
        IIdentityRegistry.Role role = IIdentityRegistry.Role(bound(roleSeed, 1, 10));
        if (role == IIdentityRegistry.Role.Doctor) role = IIdentityRegistry.Role.Patient;
        (bytes memory pre, bytes memory peks) = _keys();
        address caller = asKmc ? kmc : account;
        vm.prank(caller);
        try reg.register(id, account, role, 0, pre, peks) {
            if (caller != kmc) outsiderSucceeded = true;
            ids.push(id);
            ghostAccount[id] = account;
            ghostVersion[id] = 1;
            ghostUsed[account] = true;
        } catch {
            // legitimate refusals: not the KMC, a known ID, a used account, a zero account
            bool expected = caller != kmc || ghostVersion[id] != 0 || ghostUsed[account] || account == address(0)
                || reg.idOf(account) != 0; // the fixture's own participants
            if (!expected) outsiderSucceeded = true; // the KMC was refused for no reason: flag it as well
        }
    }

    function rotate(uint256 idx, address newAccount, bool asKmc) external {
        ++calls;
        if (ids.length == 0) return;
        bytes32 id = ids[bound(idx, 0, ids.length - 1)];
        (bytes memory pre, bytes memory peks) = _keys();
        address caller = asKmc ? kmc : ghostAccount[id];
        vm.prank(caller);
        try reg.rotateKeys(id, newAccount, pre, peks) {
            if (caller != kmc) outsiderSucceeded = true;
            ghostAccount[id] = newAccount;
            ghostVersion[id] += 1;
            ghostUsed[newAccount] = true;
        } catch {}
    }

    function suspend(uint256 idx) external {
        ++calls;
        if (ids.length == 0) return;
        vm.prank(authority);
        try reg.suspend(ids[bound(idx, 0, ids.length - 1)], "invariant") {} catch {}
    }
}

/// @title IdentityRegistryInvariants — one key set per participant; rotation keeps the ID; only the KMC registers
contract IdentityRegistryInvariants is Base {
    IdentityHandler internal handler;

    function setUp() public override {
        super.setUp();
        handler = new IdentityHandler(reg, kmc, nha);
        targetContract(address(handler));
    }

    /// One campaign checks both (forge runs a campaign per invariant function).
    function invariant_identity() public view {
        _onlyTheKmcRegistersAndRotates();
        _oneKeySetPerParticipant();
    }

    function _onlyTheKmcRegistersAndRotates() internal view {
        assertFalse(handler.outsiderSucceeded());
    }

    function _oneKeySetPerParticipant() internal view {
        uint256 n = handler.idCount();
        assertEq(reg.participantCount(), 3 + n);
        for (uint256 i; i < n; ++i) {
            bytes32 id = handler.ids(i);
            IIdentityRegistry.Participant memory p = reg.participant(id);
            assertEq(p.account, handler.ghostAccount(id));
            assertEq(reg.idOf(p.account), id, "the account resolves to its one participant");
            assertEq(p.keyVersion, handler.ghostVersion(id), "each rotation keeps the ID and bumps the version");
            assertEq(reg.participantAt(3 + i), id);
        }
    }
}
