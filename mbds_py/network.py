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


from .chain.client import ChainClient
from .chain.identity import IdentityRegistryAgent
from .chain.governance import Council
from .chain.slip_ledger import SlipLedgerAgent
from .deploy import Deployer, Deployment, DposParams, deployer_for
from .devnet import Devnet
from .errors import IdentityError
from .identity import Participant, Role
from .kmc import KeyManagementCenter, ParticipantKeys
from .population import DEFAULT_POPULATION, Member
from .private.client import HospitalClient
from .private.cluster import ClusterHandle, bind_replica_sockets, fund, node_config, replica_name, start_clusters
from .spec import NetworkSpec

AUTHORITIES = ("nha", "pha", "mha")
GOVERNOR = "nha"  # the authority that proposes governance operations in the devnet (the others approve)

# Credit dimensions of the devnet institutions (hospital grade, information-center scale, enterprise strength).
DEVNET_DIMENSIONS = {
    "hospital-a": (9000, 8000, 7000), "hospital-b": (8500, 7500, 7000), "platform-c": (6000, 9000, 8500),
    "nha": (9500, 9500, 9000), "pha": (9000, 8500, 8000), "mha": (8000, 8000, 7500),
    "insurer": (4000, 6000, 9000), "research": (5000, 7000, 6000), "pharma": (3000, 5000, 9500),
}


@dataclass
class PrivateChainSettings:
    """PBFT parameters for the devnet (the paper's 128 slips / 10 min are the production defaults)."""

    max_slips: int = 128
    max_wait: float = 1.0
    request_timeout: float = 5.0
    view_change_timeout: float = 5.0
    checkpoint_interval: int = 16
    anchor_grace: float = 2.0
    bridge_every_blocks: int = 1
    bridge_max_wait: float = 1.0


@dataclass
class Network:
    spec: NetworkSpec
    passphrase: str = field(repr=False)
    population: tuple[Member, ...] = DEFAULT_POPULATION
    settings: PrivateChainSettings = field(default_factory=PrivateChainSettings)
    scrypt_n: int | None = None
    dpos: DposParams = field(default_factory=DposParams)

    def __post_init__(self) -> None:
        self.devnet = Devnet(self.spec)
        kw = {"scrypt_n": self.scrypt_n} if self.scrypt_n else {}
        self.kmc = KeyManagementCenter(self.spec.state_dir / "kmc", self.passphrase, **kw)
        self.people: dict[str, Participant] = {}
        self.deployments: dict[str, dict[str, Deployment]] = {}
        self.clusters: dict[str, ClusterHandle] = {}
        self.consortium_nodes: dict[str, str] = {}  # institution name -> node URL
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

    def rotate(self, name: str) -> Participant:
        """A new key version for ``name`` (e.g. after a compromise): the KMC keeps every earlier version in
        the keystore, so records made under them stay readable, searchable and shareable; every chain's
        IdentityRegistry gets the new keys (new records use them, the old account is retired there); the
        new account is funded like the old one."""
        p = self.kmc.rotate(name, self.passphrase)
        pending = []
        for chain in self.spec.chains:
            agent = self.identity(chain.name)
            fn = agent.contract.functions.rotateKeys(p.id, p.address, p.pre_key, p.peks_key)
            pending.append(agent.client.submit(fn, self.kmc.account, contract="IdentityRegistry"))
        for tx in pending:
            tx.wait()
        for chain in self.spec.chains:
            fund(self.client(chain.name), deployer_for(chain), [p.address])
        self.people[name] = p
        self._keys.pop(name, None)
        return p

    def council(self) -> Council:
        """The devnet's authority keys, proposer (GOVERNOR) first: enough for the governors' quorum (k of n)."""
        return Council(*(self.keys(a).account for a in (GOVERNOR, *(a for a in AUTHORITIES if a != GOVERNOR))))

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
        # validators anchor on their chains; institutions and authorities act on the consortium chain
        funded = sorted({a for v in validators.values() for a in v}
                        | {p.address for p in self.people.values() if p.role.is_institution}
                        | {p.address for p in self.people.values() if p.role in (Role.DOCTOR, Role.PATIENT)})
        self.deployments, created = Deployer(self.spec, self.kmc.account.address, validators, self.dpos).deploy_all(
            fund=funded)
        return created

    # -- consortium governance (idempotent) -----------------------------------------------------

    def credit(self):
        from .consortium.agents import CreditRegistryAgent

        return CreditRegistryAgent(self.client(self.spec.consortium.name),
                                   self.deployments[self.spec.consortium.name]["CreditRegistry"].address)

    def consortium_index(self):
        from .consortium.agents import ConsortiumIndexAgent

        return ConsortiumIndexAgent(self.client(self.spec.consortium.name),
                                    self.deployments[self.spec.consortium.name]["ConsortiumIndex"].address)

    def setup_consortium(self) -> dict[str, list[str]]:
        """Reporter and clock, institutions with credit dimensions, willingness, and the first election."""
        from .consortium.credit import Dimensions

        credit, index = self.credit(), self.consortium_index()
        governor = self.council()  # reporter, clock, registrations, election: k-of-n operations of the governor
        if not credit.is_reporter(index.address):
            credit.set_reporter(governor, index.address, True)
        if credit.clock() != index.address:  # once per CreditRegistry: the index is redeployed with it
            credit.set_clock(governor, index.address)
        known = set(credit.institution_ids())
        members = [(name, self.people[name], dims) for name, dims in DEVNET_DIMENSIONS.items() if name in self.people]
        client, fns = credit.client, credit.contract.functions
        # every registration in one governance operation; then every declaration of willingness, pipelined
        credit.register_institutions(governor, [(p.id, Dimensions(*dims)) for _n, p, dims in members
                                                if p.id not in known])
        for tx in [client.submit(fns.setWilling(True), self.keys(name).account, contract="CreditRegistry")
                   for name, p, _d in members if not credit.institution(p.id).willing]:
            tx.wait()
        from .errors import ContractRevert

        try:
            credit.rpn_set()
        except ContractRevert as exc:
            if exc.error_name != "CreditRegistryNoRoster":
                raise
            credit.elect(governor)
        names = {p.id: n for n, p in self.people.items()}
        return {"rpn": [names.get(i, i.hex()) for i in credit.rpn_set()],
                "atn": [names.get(i, i.hex()) for i in credit.atn_set()]}

    def client(self, chain: str) -> ChainClient:
        return ChainClient(self.devnet.rpc_urls()[chain], name=chain)

    def identity(self, chain: str) -> IdentityRegistryAgent:
        return IdentityRegistryAgent(self.client(chain), self.deployments[chain]["IdentityRegistry"].address)

    def ledger(self, chain: str) -> SlipLedgerAgent:
        return SlipLedgerAgent(self.client(chain), self.deployments[chain]["SlipLedger"].address)

    # -- 3. registrations ----------------------------------------------------------------------

    def register(self) -> int:
        """Register every participant on every chain (skips those already there)."""
        pending = []  # pipelined: every registration is sent, then all are awaited (chains with a block time)
        for chain in self.spec.chains:
            agent = self.identity(chain.name)
            for p in self.people.values():
                if not agent.is_registered(p.id):
                    fn = agent.contract.functions.register(p.id, p.address, int(p.role), p.institution, p.pre_key,
                                                           p.peks_key)
                    pending.append(agent.client.submit(fn, self.kmc.account, contract="IdentityRegistry"))
        for tx in pending:
            tx.wait()
        return len(pending)

    # -- 4. private chains ------------------------------------------------------------------------

    def start_private_chains(self) -> dict[str, ClusterHandle]:
        """PBFT replica groups only (no consortium nodes, no bridge)."""
        return self.start_nodes(consortium=False)

    def start_nodes(self, *, consortium: bool = True) -> dict[str, ClusterHandle]:
        """Replica groups of every private chain and (with ``consortium``) the RPN/ATN nodes.

        Ports are allocated first, so each side's configuration can name the other's
        endpoints: bridges post to consortium nodes, auditors query replicas.
        """
        from .consortium.node import ConsortiumNodeConfig, ConsortiumPeer, PrivateChainRef

        urls = self.devnet.rpc_urls()
        storage = self.devnet.storage_urls()
        s = self.settings
        cons = self.spec.consortium
        members: list[str] = []
        cons_ports: dict[str, int] = {}
        if consortium:
            credit = self.credit()
            seated = set(credit.rpn_set()) | set(credit.atn_set())
            members = [n for n, p in self.people.items() if p.id in seated]
            cons_socks = {n: self.devnet.bind(service=f"consortium-{n}", what=f"consortium node {n!r}")
                          for n in members if n not in self.consortium_nodes}
            cons_ports = {n: sock.getsockname()[1] for n, sock in cons_socks.items()}
        place = self.spec.place
        member_urls = {n: self.consortium_nodes.get(n) or place(f"consortium-{n}").url(cons_ports[n])
                       for n in members}
        cons_urls = [member_urls[n] for n in members]
        groups = []
        for chain in self.spec.private_chains:
            if chain.name in self.clusters:
                continue
            inst = self.institution_of_chain(chain.name)
            bridge = None
            if consortium:
                bridge = {"consortium_urls": cons_urls, "consortium_chain_id": cons.chain_id,
                          "consortium_index": self.deployments[cons.name]["ConsortiumIndex"].address,
                          "every_blocks": s.bridge_every_blocks, "max_wait": s.bridge_max_wait}
            sockets = bind_replica_sockets(self.devnet, chain.name, len(self.validators(chain.name)))
            config = node_config(
                chain=chain.name, chain_id=chain.chain_id, rpc_url=urls[chain.name], sockets=sockets,
                hosts=[place(replica_name(chain.name, i)).address for i in range(len(sockets))],
                slip_ledger=self.deployments[chain.name]["SlipLedger"].address,
                identity_registry=self.deployments[chain.name]["IdentityRegistry"].address,
                hospital_id=inst.id, validators=self.validators(chain.name),
                data_dir=self.spec.state_dir / "nodes", storage=storage,
                storage_replicas=self.spec.storage.replicas, max_slips=s.max_slips, max_wait=s.max_wait,
                request_timeout=s.request_timeout, view_change_timeout=s.view_change_timeout,
                checkpoint_interval=s.checkpoint_interval, anchor_grace=s.anchor_grace, bridge=bridge)
            keys = [bytes(self.keys(n).account.key) for n in self.validator_names(chain.name)]
            groups.append((config, keys, sockets))
        handles = start_clusters(self.devnet, groups)
        for handle in handles:
            self.clusters[handle.config.chain] = handle
        if consortium:
            refs = tuple(PrivateChainRef(h.config.chain_id, h.config.rpc_url, h.config.slip_ledger,
                                         tuple(h.api_urls)) for h in self.clusters.values())
            peers = tuple(ConsortiumPeer(self.people[n].id_hex, member_urls[n]) for n in members)
            for n in cons_socks:
                cfg = ConsortiumNodeConfig(
                    rpc_url=urls[cons.name], credit_registry=self.deployments[cons.name]["CreditRegistry"].address,
                    consortium_index=self.deployments[cons.name]["ConsortiumIndex"].address,
                    institution_id=self.people[n].id_hex, host=place(f"consortium-{n}").address,
                    port=cons_ports[n], peers=peers,
                    private_chains=refs, storage=tuple(storage), storage_replicas=self.spec.storage.replicas,
                    data_dir=str(self.spec.state_dir / "consortium"))
                self.consortium_nodes[n] = start_consortium_node(self.devnet, n, cfg, bytes(self.keys(n).account.key),
                                                                 cons_socks[n])
            services = self.devnet.load_services()
            for n in cons_socks:
                self.devnet.wait_service(services[f"consortium-{n}"], _consortium_answers, timeout=90)
        return self.clusters

    def attach(self) -> "Network":
        """Pick up what an earlier bring-up (another process) left in the state folder: the enrolled
        population, deployments, replica groups and consortium nodes.  A recorded node that is no
        longer running is started again on its former ports (keys unlocked with this passphrase)."""
        from .consortium.node import ConsortiumNodeConfig
        from .devnet import is_running
        from .private.cluster import start_replica
        from .private.node import NodeConfig

        self.people.update({p.name: p for p in self.kmc.participants()})
        self.deployments = Deployer(self.spec, self.kmc.account.address).load()
        services = self.devnet.load_services()
        for chain in self.spec.private_chains:
            path = self.spec.state_dir / "nodes" / f"{chain.name}.json"
            if chain.name in self.clusters or not path.is_file():
                continue
            config = NodeConfig.load(path)
            names = tuple(replica_name(chain.name, i) for i in range(len(config.peers)))
            if not any(n in services for n in names):
                continue  # left by a network that was stopped: start_nodes makes the group anew
            for i, name in enumerate(names):
                svc = services.get(name)
                if svc is None or not is_running(svc.pid, svc.started):
                    key = bytes(self.keys(self.validator_names(chain.name)[i]).account.key)
                    start_replica(self.devnet, path, config, i, key)
            self.clusters[chain.name] = ClusterHandle(config, path, names)
        for path in sorted((self.spec.state_dir / "consortium").glob("*.json")):
            name = path.stem
            if name in self.consortium_nodes or name not in self.people:
                continue
            cfg = ConsortiumNodeConfig.load(path)
            svc = services.get(f"consortium-{name}")
            if svc is None:
                continue  # left by a network that was stopped: start_nodes starts it anew
            if not is_running(svc.pid, svc.started):
                start_consortium_node(self.devnet, name, cfg, bytes(self.keys(name).account.key))
                self.devnet.wait_service(self.devnet.load_services()[f"consortium-{name}"], _consortium_answers,
                                         timeout=90)
            self.consortium_nodes[name] = cfg.url
        return self

    def hospital_api(self, chain: str) -> HospitalClient:
        return HospitalClient(self.clusters[chain].api_urls)

    def chain_of(self, doctor: str) -> str:
        """The private chain of a doctor's institution."""
        member = next(m for m in self.population if m.name == doctor)
        inst = next(m for m in self.population if m.name == member.institution)
        return inst.chain  # type: ignore[return-value]

    def bring_up(self) -> "Network":
        """Every step in order (devnet, population, contracts, registrations, election, nodes); idempotent."""
        self.devnet.up()
        self.enroll()
        self.deploy()
        self.register()
        self.setup_consortium()
        self.attach()
        self.start_nodes()
        return self

    def stop(self) -> list[str]:
        return self.devnet.down()


def _consortium_answers(url: str) -> bool:
    import requests

    try:
        return requests.get(f"{url}/v1/status", timeout=1.0).status_code == 200
    except requests.RequestException:
        return False


def start_consortium_node(devnet: Devnet, name: str, config, key: bytes, sock=None) -> str:
    """Launch one consortium institution's DPoS node on ``sock`` (bound by the caller; default: the
    port it had before, for a restart).  The key goes through an inherited pipe only (``--key-fd``)."""
    import sys

    path = devnet.state_dir / "consortium" / f"{name}.json"
    config.save(path)
    argv = [sys.executable, "-m", "mbds_py.consortium.node", "--config", str(path), "--log-level", "WARNING"]
    service = f"consortium-{name}"
    devnet.spawn_service(service, "consortium", argv,
                         sockets={"http": sock} if sock is not None else devnet.rebind(service),
                         probe=_consortium_answers, secret=key, url=config.url, wait=False)
    return config.url


def fund_accounts(network: Network, chain: str, addresses: list[str]) -> None:
    spec = network.spec.chain(chain)
    fund(network.client(chain), deployer_for(spec), addresses)


def role_members(network: Network, role: Role) -> list[Participant]:
    return [p for p in network.people.values() if p.role is role]


__all__ = ["Network", "PrivateChainSettings", "fund_accounts", "role_members"]
