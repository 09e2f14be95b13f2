// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Base} from "./utils/Base.sol";
import {IdentityRegistry} from "../../contracts/IdentityRegistry.sol";
import {IIdentityRegistry} from "../../contracts/interfaces/IIdentityRegistry.sol";

/// @title IdentityRegistryTest — KMC registration and rotation, suspension by authorities and governor
contract IdentityRegistryTest is Base {
    bytes32 internal constant HOSP = bytes32("hospital");
    bytes32 internal constant PLAT = bytes32("platform");
    bytes32 internal constant DOC = bytes32("doctor");
    bytes32 internal constant PAT = bytes32("patient");

    address internal hosp;
    address internal doc;
    address internal pat;

    function setUp() public override {
        super.setUp();
        hosp = register(HOSP, IIdentityRegistry.Role.Hospital, 0);
        register(PLAT, IIdentityRegistry.Role.InternetPlatform, 0);
        doc = register(DOC, IIdentityRegistry.Role.Doctor, HOSP);
        pat = register(PAT, IIdentityRegistry.Role.Patient, 0);
    }

    // ------------------------------------------------------------------
    // register
    // ------------------------------------------------------------------

    function test_register_recordsAndEmits() public {
        bytes32 id = bytes32("insurer");
        address acct = accountOf(id);
        vm.expectEmit(address(reg));
        emit IIdentityRegistry.ParticipantRegistered(id, acct, IIdentityRegistry.Role.Insurer, 0, preKey(), peksKey());
        vm.prank(kmc);
        reg.register(id, acct, IIdentityRegistry.Role.Insurer, 0, preKey(), peksKey());

        IIdentityRegistry.Participant memory p = reg.participant(id);
        assertEq(p.account, acct);
        assertEq(uint256(p.role), uint256(IIdentityRegistry.Role.Insurer));
        assertEq(p.keyVersion, 1);
        assertEq(p.registeredAt, block.timestamp);
        assertEq(p.preKey, preKey());
        assertEq(p.peksKey, peksKey());
        assertEq(reg.idOf(acct), id);
        assertTrue(reg.isActive(acct));
        assertEq(reg.participantCount(), 8);
        assertEq(reg.participantAt(7), id);
    }

    function test_register_doctorRecordsInstitution() public view {
        assertEq(reg.participant(DOC).institution, HOSP);
    }

    function test_register_doctorUnderPlatform() public {
        register(bytes32("doc2"), IIdentityRegistry.Role.Doctor, PLAT);
        assertEq(reg.participant(bytes32("doc2")).institution, PLAT);
    }

    function test_register_acceptsLongPeksKey() public {
        vm.prank(kmc);
        reg.register(bytes32("r"), address(0xBEEF), IIdentityRegistry.Role.ResearchInstitute, 0, preKey(), new bytes(96));
        assertEq(reg.participant(bytes32("r")).peksKey.length, 96);
    }

    function test_register_revertsForNonKmc() public {
        vm.expectRevert(abi.encodeWithSelector(IIdentityRegistry.IdentityRegistryNotKmc.selector, nha));
        vm.prank(nha);
        reg.register(bytes32("x"), address(0xBEEF), IIdentityRegistry.Role.Patient, 0, preKey(), peksKey());
    }

    function test_register_revertsOnInvalidParticipant() public {
        vm.startPrank(kmc);
        vm.expectRevert(
            abi.encodeWithSelector(
                IIdentityRegistry.IdentityRegistryInvalidParticipant.selector, bytes32(0), address(0xBEEF), IIdentityRegistry.Role.Patient
            )
        );
        reg.register(0, address(0xBEEF), IIdentityRegistry.Role.Patient, 0, preKey(), peksKey());
        vm.expectRevert(
            abi.encodeWithSelector(
                IIdentityRegistry.IdentityRegistryInvalidParticipant.selector, bytes32("x"), address(0), IIdentityRegistry.Role.Patient
            )
        );
        reg.register(bytes32("x"), address(0), IIdentityRegistry.Role.Patient, 0, preKey(), peksKey());
        vm.expectRevert(
            abi.encodeWithSelector(
                IIdentityRegistry.IdentityRegistryInvalidParticipant.selector, bytes32("x"), address(0xBEEF), IIdentityRegistry.Role.None
            )
        );
        reg.register(bytes32("x"), address(0xBEEF), IIdentityRegistry.Role.None, 0, preKey(), peksKey());
        vm.stopPrank();
    }

    function test_register_revertsOnDuplicateId() public {
        vm.expectRevert(abi.encodeWithSelector(IIdentityRegistry.IdentityRegistryAlreadyRegistered.selector, PAT));
        vm.prank(kmc);
        reg.register(PAT, address(0xBEEF), IIdentityRegistry.Role.Patient, 0, preKey(), peksKey());
    }

    function test_register_revertsOnAccountInUse() public {
        vm.expectRevert(abi.encodeWithSelector(IIdentityRegistry.IdentityRegistryAccountInUse.selector, pat));
        vm.prank(kmc);
        reg.register(bytes32("x"), pat, IIdentityRegistry.Role.Patient, 0, preKey(), peksKey());
    }

    function testFuzz_register_revertsOnBadKeyLengths(uint8 preLen, uint8 peksLen) public {
        vm.assume(!(preLen == 33 && (peksLen == 48 || peksLen == 96)));
        vm.expectRevert(
            abi.encodeWithSelector(IIdentityRegistry.IdentityRegistryInvalidKey.selector, bytes32("x"), uint256(preLen), uint256(peksLen))
        );
        vm.prank(kmc);
        reg.register(bytes32("x"), address(0xBEEF), IIdentityRegistry.Role.Patient, 0, new bytes(preLen), new bytes(peksLen));
    }

    function test_register_doctorWithoutValidInstitutionReverts() public {
        vm.startPrank(kmc);
        for (uint256 i; i < 3; ++i) {
            bytes32 inst = i == 0 ? bytes32(0) : i == 1 ? PAT : bytes32("nobody");
            vm.expectRevert(
                abi.encodeWithSelector(IIdentityRegistry.IdentityRegistryInvalidInstitution.selector, bytes32("d"), inst)
            );
            reg.register(bytes32("d"), address(0xBEEF), IIdentityRegistry.Role.Doctor, inst, preKey(), peksKey());
        }
        vm.stopPrank();
    }

    function test_register_nonDoctorWithInstitutionReverts() public {
        vm.expectRevert(abi.encodeWithSelector(IIdentityRegistry.IdentityRegistryInvalidInstitution.selector, bytes32("p"), HOSP));
        vm.prank(kmc);
        reg.register(bytes32("p"), address(0xBEEF), IIdentityRegistry.Role.Patient, HOSP, preKey(), peksKey());
    }

    function test_register_doctorUnderSuspendedHospitalReverts() public {
        vm.prank(nha);
        reg.suspend(HOSP, "audit");
        vm.expectRevert(abi.encodeWithSelector(IIdentityRegistry.IdentityRegistryInstitutionSuspended.selector, bytes32("d"), HOSP));
        vm.prank(kmc);
        reg.register(bytes32("d"), address(0xBEEF), IIdentityRegistry.Role.Doctor, HOSP, preKey(), peksKey());
    }

    // ------------------------------------------------------------------
    // rotateKeys
    // ------------------------------------------------------------------

    function test_rotate_keepsIdAndEmits() public {
        address fresh = address(0xF00D);
        bytes memory pre2 = abi.encodePacked(bytes1(0x03), keccak256("pre2"));
        vm.expectEmit(address(reg));
        emit IIdentityRegistry.KeysRotated(PAT, pat, fresh, 2, pre2, new bytes(96));
        vm.prank(kmc);
        reg.rotateKeys(PAT, fresh, pre2, new bytes(96));
        IIdentityRegistry.Participant memory p = reg.participant(PAT);
        assertEq(p.account, fresh);
        assertEq(p.keyVersion, 2);
        assertEq(reg.idOf(fresh), PAT);
        assertEq(reg.idOf(pat), bytes32(0));
        assertFalse(reg.isActive(pat));
    }

    function test_rotate_sameAccountOnlyKeys() public {
        vm.prank(kmc);
        reg.rotateKeys(PAT, pat, preKey(), new bytes(48));
        assertEq(reg.participant(PAT).keyVersion, 2);
        assertEq(reg.idOf(pat), PAT);
    }

    function test_rotate_oldAccountCanNeverBeReused() public {
        vm.startPrank(kmc);
        reg.rotateKeys(PAT, address(0xF00D), preKey(), peksKey());
        vm.expectRevert(abi.encodeWithSelector(IIdentityRegistry.IdentityRegistryAccountInUse.selector, pat));
        reg.register(bytes32("x"), pat, IIdentityRegistry.Role.Patient, 0, preKey(), peksKey());
        vm.expectRevert(abi.encodeWithSelector(IIdentityRegistry.IdentityRegistryAccountInUse.selector, pat));
        reg.rotateKeys(PAT, pat, preKey(), peksKey());
        vm.stopPrank();
    }

    function test_rotate_reverts() public {
        vm.expectRevert(abi.encodeWithSelector(IIdentityRegistry.IdentityRegistryNotKmc.selector, pat));
        vm.prank(pat);
        reg.rotateKeys(PAT, address(0xF00D), preKey(), peksKey());

        vm.startPrank(kmc);
        vm.expectRevert(abi.encodeWithSelector(IIdentityRegistry.IdentityRegistryUnknownParticipant.selector, bytes32("ghost")));
        reg.rotateKeys(bytes32("ghost"), address(0xF00D), preKey(), peksKey());
        vm.expectRevert(
            abi.encodeWithSelector(
                IIdentityRegistry.IdentityRegistryInvalidParticipant.selector, PAT, address(0), IIdentityRegistry.Role.Patient
            )
        );
        reg.rotateKeys(PAT, address(0), preKey(), peksKey());
        vm.expectRevert(abi.encodeWithSelector(IIdentityRegistry.IdentityRegistryAccountInUse.selector, doc));
        reg.rotateKeys(PAT, doc, preKey(), peksKey());
        vm.expectRevert(abi.encodeWithSelector(IIdentityRegistry.IdentityRegistryInvalidKey.selector, PAT, 32, 48));
        reg.rotateKeys(PAT, address(0xF00D), new bytes(32), peksKey());
        vm.stopPrank();
    }

    // ------------------------------------------------------------------
    // suspend / reinstate
    // ------------------------------------------------------------------

    function test_suspend_byOneAuthority_reinstate_byGovernor() public {
        vm.expectEmit(address(reg));
        emit IIdentityRegistry.ParticipantSuspended(DOC, NHA, "abnormal access");
        vm.prank(nha);
        reg.suspend(DOC, "abnormal access");
        assertTrue(reg.participant(DOC).suspended);
        assertFalse(reg.isActive(doc));
        assertEq(reg.suspensionCount(), 1);

        vm.expectEmit(address(reg));
        emit IIdentityRegistry.ParticipantReinstated(DOC, 0, "cleared");
        vm.prank(address(gov));
        reg.reinstate(DOC, "cleared");
        assertTrue(reg.isActive(doc));
        assertEq(reg.suspensionCount(), 1, "a reinstatement does not move the count");
    }

    function test_suspend_revertsForNonAuthority() public {
        vm.expectRevert(abi.encodeWithSelector(IIdentityRegistry.IdentityRegistryNotAuthority.selector, doc));
        vm.prank(doc);
        reg.suspend(PAT, "x");
    }

    function test_suspend_authorityNeedsGovernance() public {
        vm.expectRevert(abi.encodeWithSelector(IIdentityRegistry.IdentityRegistryNotGovernance.selector, nha));
        vm.prank(nha);
        reg.suspend(PHA, "coup");
        vm.expectRevert(abi.encodeWithSelector(IIdentityRegistry.IdentityRegistryNotGovernance.selector, nha));
        vm.prank(nha);
        reg.suspend(NHA, "self");
        // the governor may
        govern(address(reg), abi.encodeCall(reg.suspend, (MHA, "k-of-n")));
        assertFalse(reg.isAuthority(mha));
        govern(address(reg), abi.encodeCall(reg.reinstate, (MHA, "back")));
        assertTrue(reg.isAuthority(mha));
        govern(address(reg), abi.encodeCall(reg.suspend, (MHA, "k-of-n")));
        assertFalse(reg.isAuthorityId(MHA));
    }

    function test_suspend_suspendedAuthorityCannotSuspend() public {
        govern(address(reg), abi.encodeCall(reg.suspend, (MHA, "k-of-n")));
        vm.expectRevert(abi.encodeWithSelector(IIdentityRegistry.IdentityRegistryNotAuthority.selector, mha));
        vm.prank(mha);
        reg.suspend(PAT, "x");
    }

    function test_suspend_unknownAndTwiceRevert() public {
        vm.startPrank(nha);
        vm.expectRevert(abi.encodeWithSelector(IIdentityRegistry.IdentityRegistryUnknownParticipant.selector, bytes32("ghost")));
        reg.suspend(bytes32("ghost"), "x");
        reg.suspend(PAT, "x");
        vm.expectRevert(abi.encodeWithSelector(IIdentityRegistry.IdentityRegistrySuspensionUnchanged.selector, PAT, true));
        reg.suspend(PAT, "x");
        vm.stopPrank();
    }

    function test_reinstate_reverts() public {
        vm.expectRevert(abi.encodeWithSelector(IIdentityRegistry.IdentityRegistryNotGovernance.selector, nha));
        vm.prank(nha);
        reg.reinstate(PAT, "x");
        vm.expectRevert(abi.encodeWithSelector(IIdentityRegistry.IdentityRegistrySuspensionUnchanged.selector, PAT, false));
        vm.prank(address(gov));
        reg.reinstate(PAT, "x");
    }

    // ------------------------------------------------------------------
    // KMC authority
    // ------------------------------------------------------------------

    function test_kmc_transferIsTwoStep() public {
        address next = address(0xC0FFEE);
        vm.prank(kmc);
        reg.transferOwnership(next);
        assertEq(reg.owner(), kmc);
        assertEq(reg.pendingOwner(), next);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, nha));
        vm.prank(nha);
        reg.acceptOwnership();
        vm.prank(next);
        reg.acceptOwnership();
        assertEq(reg.owner(), next);
        vm.expectRevert(abi.encodeWithSelector(IIdentityRegistry.IdentityRegistryNotKmc.selector, kmc));
        vm.prank(kmc);
        reg.register(bytes32("x"), address(0xBEEF), IIdentityRegistry.Role.Patient, 0, preKey(), peksKey());
        vm.expectRevert(abi.encodeWithSelector(IIdentityRegistry.IdentityRegistryRenounceDisabled.selector, next));
        vm.prank(next);
        reg.renounceOwnership();
    }

    function test_kmc_renounceDisabled() public {
        vm.expectRevert(abi.encodeWithSelector(IIdentityRegistry.IdentityRegistryRenounceDisabled.selector, kmc));
        vm.prank(kmc);
        reg.renounceOwnership();
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, pat));
        vm.prank(pat);
        reg.renounceOwnership();
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, pat));
        vm.prank(pat);
        reg.transferOwnership(pat);
    }

    // ------------------------------------------------------------------
    // Views
    // ------------------------------------------------------------------

    function test_views() public {
        assertEq(reg.governor(), address(gov));
        assertFalse(reg.isParameterChange(reg.suspend.selector));
        assertTrue(reg.isAuthority(nha));
        assertFalse(reg.isAuthority(doc));
        assertFalse(reg.isAuthority(address(0xdead)));
        assertTrue(reg.isAuthorityId(PHA));
        assertFalse(reg.isAuthorityId(PAT));
        assertFalse(reg.isActive(address(0xdead)));
        vm.expectRevert(abi.encodeWithSelector(IIdentityRegistry.IdentityRegistryUnknownParticipant.selector, bytes32("ghost")));
        reg.participant(bytes32("ghost"));
    }

    /// Every role but None registers; only the three authority roles are authorities.
    function testFuzz_register_roles(uint8 roleSeed, address account) public {
        IIdentityRegistry.Role role = IIdentityRegistry.Role(bound(roleSeed, 1, 10));
        vm.assume(account != address(0) && reg.idOf(account) == 0);
        vm.assume(role != IIdentityRegistry.Role.Doctor);
        vm.prank(kmc);
        reg.register(bytes32("fz"), account, role, 0, preKey(), peksKey());
        bool authority = role == IIdentityRegistry.Role.AuthorityNational || role == IIdentityRegistry.Role.AuthorityProvincial
            || role == IIdentityRegistry.Role.AuthorityMunicipal;
        assertEq(reg.isAuthority(account), authority);
        assertTrue(reg.isActive(account));
    }

    function test_constructor_rejectsBadGovernance() public {
        vm.expectRevert();
        new IdentityRegistry(kmc, 1, GOV_DELAY);
    }
}
