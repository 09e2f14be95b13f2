"""Agent for IdentityRegistry: calls and events as MBDS dataclasses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount

from ..identity import Participant, Role
from ..toolchain import artifact
from .client import ChainClient, receipt_events
from .governance import Council, Governor, GovernorAgent, call_of

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

    def suspend(self, governor: Governor, participant_id: bytes, reason: str) -> dict[str, Any]:
        """Suspend: one authority (an account) for a participant that is not an authority; a :class:`Council`
        goes through the k-of-n governor (required to suspend an authority)."""
        return self._govern(governor, self.contract.functions.suspend(participant_id, reason))

    def reinstate(self, governor: Governor, participant_id: bytes, reason: str) -> dict[str, Any]:
        """Reinstate: only through the k-of-n governor (pass a :class:`Council`)."""
        return self._govern(governor, self.contract.functions.reinstate(participant_id, reason))

    def governor(self) -> GovernorAgent:
        """This chain's k-of-n AuthorityGovernor (created by the registry)."""
        if getattr(self, "_governor", None) is None:
            address = self.client.call(self.contract.functions.governor(), contract=CONTRACT)
            self._governor = GovernorAgent(self.client, address)
        return self._governor

    def _govern(self, governor: Governor, fn: Any) -> dict[str, Any]:
        if isinstance(governor, Council):
            return self.governor().govern(governor, call_of(fn)).receipt
        return self.client.transact(fn, governor, contract=CONTRACT)

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
        return receipt_events(self.contract, receipt, name)
