"""Agent for IdentityRegistry: calls and events as MBDS dataclasses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount

from ..identity import Participant, Role
from ..toolchain import artifact
from .client import ChainClient

CONTRACT = "IdentityRegistry"


@dataclass(frozen=True)
class RegistryEntry:
    """A participant as the chain records it."""

    id: bytes
    account: str
    role: Role
    suspended: bool
    key_version: int
    registered_at: int
    updated_at: int
    institution: bytes
    pre_key: bytes
    peks_key: bytes


class IdentityRegistryAgent:
    """Thin adapter over one IdentityRegistry deployment."""

    def __init__(self, client: ChainClient, address: str):
        self.client = client
        self.address = address
        self.contract = client.contract(CONTRACT, address, artifact(CONTRACT).abi)

    # -- transactions ---------------------------------------------------------------------

    def register(self, kmc: LocalAccount, p: Participant) -> dict[str, Any]:
        fn = self.contract.functions.register(p.id, p.address, int(p.role), p.institution, p.pre_key, p.peks_key)
        return self.client.transact(fn, kmc, contract=CONTRACT)

    def rotate(self, kmc: LocalAccount, p: Participant) -> dict[str, Any]:
        fn = self.contract.functions.rotateKeys(p.id, p.address, p.pre_key, p.peks_key)
        return self.client.transact(fn, kmc, contract=CONTRACT)

    def suspend(self, authority: LocalAccount, participant_id: bytes, reason: str) -> dict[str, Any]:
        return self.client.transact(self.contract.functions.suspend(participant_id, reason), authority,
                                    contract=CONTRACT)

    def reinstate(self, authority: LocalAccount, participant_id: bytes, reason: str) -> dict[str, Any]:
        return self.client.transact(self.contract.functions.reinstate(participant_id, reason), authority,
                                    contract=CONTRACT)

    # -- views ------------------------------------------------------------------------------

    def get(self, participant_id: bytes) -> RegistryEntry:
        r = self.client.call(self.contract.functions.participant(participant_id), contract=CONTRACT)
        return RegistryEntry(participant_id, r[0], Role(r[1]), r[2], r[3], r[4], r[5], bytes(r[6]), bytes(r[7]),
                             bytes(r[8]))

    def is_registered(self, participant_id: bytes) -> bool:
        return self.id_of_entry(participant_id) is not None

    def id_of_entry(self, participant_id: bytes) -> RegistryEntry | None:
        from ..errors import ContractRevert

        try:
            return self.get(participant_id)
        except ContractRevert as exc:
            if exc.error_name == "IdentityRegistryUnknownParticipant":
                return None
            raise

    def id_of(self, account: str) -> bytes:
        return bytes(self.client.call(self.contract.functions.idOf(account), contract=CONTRACT))

    def is_active(self, account: str) -> bool:
        return self.client.call(self.contract.functions.isActive(account), contract=CONTRACT)

    def count(self) -> int:
        return self.client.call(self.contract.functions.participantCount(), contract=CONTRACT)

    def kmc(self) -> str:
        return self.client.call(self.contract.functions.owner(), contract=CONTRACT)

    # -- events -----------------------------------------------------------------------------

    def events(self, receipt: dict[str, Any], name: str) -> list[dict[str, Any]]:
        """Decoded ``name`` events of a receipt, as plain dicts of their arguments."""
        event = getattr(self.contract.events, name)()
        return [dict(e["args"]) for e in event.process_receipt(receipt)]
