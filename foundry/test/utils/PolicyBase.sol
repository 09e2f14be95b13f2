// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Base} from "./Base.sol";
import {AccessPolicy} from "../../../contracts/AccessPolicy.sol";
import {IIdentityRegistry} from "../../../contracts/interfaces/IIdentityRegistry.sol";

/// @title PolicyBase — an AccessPolicy with the population of tests/sharing (config as its CONFIG)
abstract contract PolicyBase is Base {
    uint48 internal constant TTL = 3 days;
    uint48 internal constant WINDOW = 1 hours;
    uint48 internal constant MAX_DURATION = 24 hours;
    uint8 internal constant E_QUORUM = 2;

    bytes32 internal constant HA = bytes32("hospital-a");
    bytes32 internal constant HB = bytes32("hospital-b");
    bytes32 internal constant DA = bytes32("doctor-a");
    bytes32 internal constant DB = bytes32("doctor-b");
    bytes32 internal constant P = bytes32("patient");
    bytes32 internal constant P2 = bytes32("patient-2");
    bytes32 internal constant INS = bytes32("insurer");

    AccessPolicy internal policy;
    address internal da;
    address internal db;
    address internal p;
    address internal p2;
    address internal ins;
    address internal proxy = address(0x9A0C5);

    function setUp() public virtual override {
        super.setUp();
        register(HA, IIdentityRegistry.Role.Hospital, 0);
        register(HB, IIdentityRegistry.Role.Hospital, 0);
        da = register(DA, IIdentityRegistry.Role.Doctor, HA);
        db = register(DB, IIdentityRegistry.Role.Doctor, HB);
        p = register(P, IIdentityRegistry.Role.Patient, 0);
        p2 = register(P2, IIdentityRegistry.Role.Patient, 0);
        ins = register(INS, IIdentityRegistry.Role.Insurer, 0);
        policy = new AccessPolicy(reg, TTL, WINDOW, MAX_DURATION, E_QUORUM);
        vm.prank(address(gov));
        policy.addProxy(proxy);
    }

    function now48() internal view returns (uint48) {
        return uint48(block.timestamp);
    }
}
