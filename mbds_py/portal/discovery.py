"""Find a running MBDS network from its state folder, as an online client sees it.

The portal holds no KMC secret and starts no process: everything it needs is
public and written by ``mbds devnet up`` / the network bring-up under the
spec's ``state_dir`` — chain RPC URLs and services (``state.json``), contract
addresses (``deployments.json``), each private chain's replica API URLs
(``nodes/<chain>.json``) and the participants' public keystore sections
(``kmc/participants/*.json``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import requests

from ..deploy import Deployer
from ..devnet import Devnet
from ..errors import ChainError, ConfigError, DeploymentError
from ..identity import Participant
from ..kmc import load_participant, participant_keystore
from ..private.node import NodeConfig
from ..sharing.clients import Directory
from ..sharing.launch import service_name
from ..sharing.proxy import DEFAULT_THRESHOLD, ChainRef
from ..sharing.agent import AccessPolicyAgent
from ..chain.client import ChainClient
from ..spec import NetworkSpec

AUTHORITY_PROXIES = ("nha", "pha", "mha")


@dataclass(frozen=True)
class NetworkView:
    """The public description of one running network (no secrets)."""

    spec: NetworkSpec
    consortium_rpc: str
    access_policy: str
    chains: tuple[ChainRef, ...]
    proxy_urls: tuple[str, ...]
    consortium_nodes: tuple[str, ...]
    storage_urls: tuple[str, ...]
    participants: dict[str, Participant]

    @property
    def kmc_dir(self) -> Path:
        return self.spec.state_dir / "kmc"

    def keystore(self, name: str) -> Path:
        """The keystore of participant ``name`` (must exist)."""
        path = participant_keystore(self.kmc_dir, name)
        if not path.is_file():
            known = ", ".join(sorted(self.participants)) or "none"
            raise ConfigError(f"no keystore for {name!r} under {self.kmc_dir} (enrolled: {known})")
        return path

    def names(self) -> dict[bytes, str]:
        return {p.id: n for n, p in self.participants.items()}

    def directory(self, *, threshold: int = DEFAULT_THRESHOLD) -> Directory:
        """Clients' view: policy agent, proxies, chains, consortium nodes and storage."""
        try:
            policy = AccessPolicyAgent(ChainClient(self.consortium_rpc, name=self.spec.consortium.name),
                                       self.access_policy)
        except (requests.RequestException, OSError) as exc:
            raise ChainError(f"the consortium chain at {self.consortium_rpc} does not answer "
                             f"({exc.__class__.__name__}); is the network running? (`mbds devnet status "
                             f"--state-dir {self.spec.state_dir}`)") from None
        return Directory(policy, list(self.proxy_urls), list(self.chains), list(self.consortium_nodes),
                         list(self.storage_urls), storage_replicas=self.spec.storage.replicas, threshold=threshold,
                         names=self.names())


def discover(spec: NetworkSpec) -> NetworkView:
    """Read the network's state folder; a clear error says which step of the bring-up is missing."""
    devnet = Devnet(spec)
    if not devnet.state_file.is_file():
        raise ConfigError(f"no running network under {spec.state_dir} (missing {devnet.state_file.name}); "
                          "start one with `mbds demo --keep --state-dir DIR` and pass the same --state-dir")
    rpc = devnet.rpc_urls()
    deployments = Deployer(spec, "").load()
    cons = spec.consortium.name
    try:
        access_policy = deployments[cons]["AccessPolicy"].address
    except KeyError:
        raise DeploymentError(f"AccessPolicy is not deployed on {cons!r}; run the network bring-up first") from None
    services = devnet.load_services()
    chains = []
    for chain in spec.private_chains:
        path = spec.state_dir / "nodes" / f"{chain.name}.json"
        if not path.is_file():
            raise ConfigError(f"the replicas of {chain.name!r} were never started ({path} is missing)")
        config = NodeConfig.load(path)
        chains.append(ChainRef(chain.name, chain.chain_id, rpc[chain.name], config.slip_ledger,
                               tuple(peer.http_url for peer in config.peers)))
    proxies = tuple(services[service_name(a)].url for a in AUTHORITY_PROXIES if service_name(a) in services)
    if not proxies:
        raise ConfigError("no re-encryption proxy was started on this network (`mbds demo --keep` starts them)")
    consortium = tuple(s.url for s in sorted(services.values(), key=lambda s: s.name) if s.kind == "consortium")
    folder = spec.state_dir / "kmc" / "participants"
    people = {p.stem: load_participant(p) for p in sorted(folder.glob("*.json"))} if folder.is_dir() else {}
    return NetworkView(spec, rpc[cons], access_policy, tuple(chains), proxies, consortium,
                       tuple(devnet.storage_urls()), people)


__all__ = ["NetworkView", "discover"]
