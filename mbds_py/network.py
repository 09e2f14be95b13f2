"""A whole MBDS network on a devnet: population, contracts, registrations and node processes.

One object the demo, the benchmarks and `mbds deploy` drive, step by step,
each step idempotent:

1. ``enroll()``   — the KMC enrolls the population (keystores, encrypted);
2. ``deploy()``   — each chain's contracts (SlipLedger validators = the hospital
   and the three health authorities);
3. ``register()`` — every participant on every chain's IdentityRegistry;
4. ``start_private_chains()`` — four PBFT replica processes per private chain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from eth_account import Account

from .chain.client import ChainClient
from .chain.identity import IdentityRegistryAgent
from .chain.slip_ledger import SlipLedgerAgent
from .deploy import Deployer, Deployment, deployer_for
from .devnet import Devnet
from .errors import IdentityError
from .identity import Participant, Role
from .kmc import KeyManagementCenter, ParticipantKeys
from .population import DEFAULT_POPULATION, Member
from .private.client import HospitalClient
from .private.cluster import ClusterHandle, fund, node_config, start_clusters
from .spec import NetworkSpec

AUTHORITIES = ("nha", "pha", "mha")


@dataclass
class PrivateChainSettings:
    """PBFT parameters for the devnet (the paper's 128 slips / 10 min are the production defaults)."""

    max_slips: int = 128
    max_wait: float = 1.0
    request_timeout: float = 5.0
    view_change_timeout: float = 5.0
    checkpoint_interval: int = 16
    anchor_grace: float = 2.0


@dataclass
class Network:
    spec: NetworkSpec
    passphrase: str = field(repr=False)
    population: tuple[Member, ...] = DEFAULT_POPULATION
    settings: PrivateChainSettings = field(default_factory=PrivateChainSettings)
    scrypt_n: int | None = None

    def __post_init__(self) -> None:
        self.devnet = Devnet(self.spec)
        kw = {"scrypt_n": self.scrypt_n} if self.scrypt_n else {}
        self.kmc = KeyManagementCenter(self.spec.state_dir / "kmc", self.passphrase, **kw)
        self.people: dict[str, Participant] = {}
        self.deployments: dict[str, dict[str, Deployment]] = {}
        self.clusters: dict[str, ClusterHandle] = {}
        self._keys: dict[str, ParticipantKeys] = {}

    # -- 1. population ------------------------------------------------------------------------

    def enroll(self) -> dict[str, Participant]:
        existing = {p.name: p for p in self.kmc.participants()}
        for m in self.population:
            if m.name in existing:
                self.people[m.name] = existing[m.name]
                continue
            inst = self.people.get(m.institution) if m.institution else None
            if m.institution and inst is None:
                raise IdentityError(f"{m.name}: institution {m.institution!r} must be enrolled before its doctors")
            self.people[m.name] = self.kmc.enroll(m.name, m.role, m.real_identity, self.passphrase, institution=inst)
        return self.people

    def keys(self, name: str) -> ParticipantKeys:
        if name not in self._keys:
            self._keys[name] = self.kmc.unlock(name, self.passphrase)
        return self._keys[name]

    def institution_of_chain(self, chain: str) -> Participant:
        for m in self.population:
            if m.chain == chain:
                return self.people[m.name]
        raise IdentityError(f"no institution of the population runs chain {chain!r}")

    def validators(self, chain: str) -> list[str]:
        """PBFT validators of a private chain: its institution + national, provincial, municipal authorities."""
        return [self.institution_of_chain(chain).address] + [self.people[a].address for a in AUTHORITIES]

    def validator_names(self, chain: str) -> list[str]:
        return [self.institution_of_chain(chain).name, *AUTHORITIES]

    # -- 2. contracts --------------------------------------------------------------------------

    def deploy(self) -> list[str]:
        validators = {c.name: self.validators(c.name) for c in self.spec.private_chains}
        # every validator submits anchoring transactions on its chains: fund them with the KMC account
        funded = sorted({a for v in validators.values() for a in v})
        self.deployments, created = Deployer(self.spec, self.kmc.account.address, validators).deploy_all(
            fund=funded)
        return created

    def client(self, chain: str) -> ChainClient:
        return ChainClient(self.devnet.rpc_urls()[chain], name=chain)

    def identity(self, chain: str) -> IdentityRegistryAgent:
        return IdentityRegistryAgent(self.client(chain), self.deployments[chain]["IdentityRegistry"].address)

    def ledger(self, chain: str) -> SlipLedgerAgent:
        return SlipLedgerAgent(self.client(chain), self.deployments[chain]["SlipLedger"].address)

    # -- 3. registrations ----------------------------------------------------------------------

    def register(self) -> int:
        """Register every participant on every chain (skips those already there)."""
        count = 0
        for chain in self.spec.chains:
            agent = self.identity(chain.name)
            for p in self.people.values():
                if not agent.is_registered(p.id):
                    agent.register(self.kmc.account, p)
                    count += 1
        return count

    # -- 4. private chains ------------------------------------------------------------------------

    def start_private_chains(self) -> dict[str, ClusterHandle]:
        urls = self.devnet.rpc_urls()
        storage = self.devnet.storage_urls()
        s = self.settings
        groups = []
        for chain in self.spec.private_chains:
            if chain.name in self.clusters:
                continue
            inst = self.institution_of_chain(chain.name)
            config = node_config(
                chain=chain.name, chain_id=chain.chain_id, rpc_url=urls[chain.name],
                slip_ledger=self.deployments[chain.name]["SlipLedger"].address,
                identity_registry=self.deployments[chain.name]["IdentityRegistry"].address,
                hospital_id=inst.id, validators=self.validators(chain.name),
                data_dir=self.spec.state_dir / "nodes", storage=storage,
                storage_replicas=self.spec.storage.replicas, max_slips=s.max_slips, max_wait=s.max_wait,
                request_timeout=s.request_timeout, view_change_timeout=s.view_change_timeout,
                checkpoint_interval=s.checkpoint_interval, anchor_grace=s.anchor_grace)
            keys = [bytes(self.keys(n).account.key) for n in self.validator_names(chain.name)]
            groups.append((config, keys))
        for handle in start_clusters(self.devnet, groups):
            self.clusters[handle.config.chain] = handle
        return self.clusters

    def hospital_api(self, chain: str) -> HospitalClient:
        return HospitalClient(self.clusters[chain].api_urls)

    def chain_of(self, doctor: str) -> str:
        """The private chain of a doctor's institution."""
        member = next(m for m in self.population if m.name == doctor)
        inst = next(m for m in self.population if m.name == member.institution)
        return inst.chain  # type: ignore[return-value]

    def stop(self) -> list[str]:
        return self.devnet.down()


def fund_accounts(network: Network, chain: str, addresses: list[str]) -> None:
    spec = network.spec.chain(chain)
    fund(network.client(chain), deployer_for(spec), addresses)


def role_members(network: Network, role: Role) -> list[Participant]:
    return [p for p in network.people.values() if p.role is role]


__all__ = ["Network", "PrivateChainSettings", "fund_accounts", "role_members", "Account", "Path"]
