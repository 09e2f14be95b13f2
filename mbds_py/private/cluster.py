"""Stand up a private chain's replica group: contracts, node configuration, replica processes.

Used by the devnet/demo, the tests and the benchmarks.  The validators are
the hospital and the three health authorities; each replica process gets its
key through the environment (never a file), and is recorded in the devnet
state so `mbds devnet down` stops it.
"""

from __future__ import annotations

import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount

from ..chain.client import ChainClient
from ..devnet import Devnet
from ..errors import DevnetError
from ..toolchain import artifact
from .node import NodeConfig, PeerConfig

MARKER = "mbds_py.private.node"


@dataclass(frozen=True)
class ClusterHandle:
    """A running replica group."""

    config: NodeConfig
    config_path: Path
    service_names: tuple[str, ...]

    @property
    def api_urls(self) -> list[str]:
        return [p.http_url for p in self.config.peers]


def deploy_slip_ledger(client: ChainClient, deployer: LocalAccount, validators: Sequence[str]) -> str:
    art = artifact("SlipLedger")
    address, _ = client.deploy("SlipLedger", art.abi, art.bytecode, deployer, list(validators))
    return address


def fund(client: ChainClient, funder: LocalAccount, addresses: Sequence[str], amount: int = 10**21) -> None:
    """Top up every address below a tenth of ``amount`` (transfers sent together, then awaited)."""
    sender = client.sender(funder)
    pending = [sender.submit(a, b"", value=amount, gas=21_000, contract="transfer", function="transfer")
               for a in addresses if client.w3.eth.get_balance(a) < amount // 10]
    for tx in pending:
        tx.wait()


ReplicaSockets = dict[str, socket.socket]  # "peer" and "http" listening sockets of one replica


def bind_replica_sockets(devnet: Devnet, chain: str, count: int) -> list[ReplicaSockets]:
    """Listening sockets (PBFT peer port + client API port) for ``count`` replicas, bound now and
    handed to the replica processes when they start: the ports in the configuration are never free."""
    return [{ep: devnet.bind(service=replica_name(chain, i), what=f"replica {i} of {chain} ({ep})")
             for ep in ("peer", "http")} for i in range(count)]


def replica_name(chain: str, index: int) -> str:
    """The service name of a chain's replica ``index`` (as in ``mbds status`` and the spec's [[hosts]])."""
    return f"{chain}-replica-{index}"


def node_config(*, chain: str, chain_id: int, rpc_url: str, slip_ledger: str, identity_registry: str,
                hospital_id: bytes, validators: Sequence[str], data_dir: Path, sockets: Sequence[ReplicaSockets],
                storage: Sequence[str] = (), storage_replicas: int = 1, hosts: Sequence[str],
                **pbft: object) -> NodeConfig:
    """A replica group's configuration; replica i is reached at ``hosts[i]`` on the ports of ``sockets[i]``
    (see :func:`bind_replica_sockets`)."""
    if not len(sockets) == len(hosts) == len(validators):
        raise DevnetError(f"{len(sockets)} socket pairs and {len(hosts)} hosts for {len(validators)} validators")
    peers = tuple(PeerConfig(i, host, s["peer"].getsockname()[1], s["http"].getsockname()[1])
                  for i, (host, s) in enumerate(zip(hosts, sockets)))
    return NodeConfig(chain=chain, chain_id=chain_id, rpc_url=rpc_url, slip_ledger=slip_ledger,
                      identity_registry=identity_registry, hospital_id="0x" + hospital_id.hex(),
                      validators=tuple(validators), peers=peers, storage=tuple(storage),
                      storage_replicas=storage_replicas, data_dir=str(data_dir), **pbft)  # type: ignore[arg-type]


def _api_answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/v1/status", timeout=1.0).status_code == 200
    except requests.RequestException:
        return False


def start_replica(devnet: Devnet, config_path: Path, config: NodeConfig, index: int, key: bytes, *,
                  sockets: ReplicaSockets | None = None, wait: bool = True) -> str:
    """Launch (or relaunch after a crash, on the same ports) replica ``index``; returns its service name."""
    name = replica_name(config.chain, index)
    argv = [sys.executable, "-m", MARKER, "--config", str(config_path), "--index", str(index),
            "--log-level", "WARNING"]
    devnet.spawn_service(name, "replica", argv, sockets=sockets if sockets is not None else devnet.rebind(name),
                         probe=_api_answers, secret=key,
                         url=config.peers[index].http_url, wait=wait)
    return name


def start_clusters(devnet: Devnet, groups: Sequence[tuple[NodeConfig, Sequence[bytes], Sequence[ReplicaSockets]]]
                   ) -> list[ClusterHandle]:
    """Launch several replica groups at once (each on its bound sockets), then wait for all of them."""
    handles = []
    for config, keys, sockets in groups:
        for i, key in enumerate(keys):
            if Account.from_key(key).address.lower() != config.validators[i].lower():
                raise DevnetError(f"key {i} is not validator {config.validators[i]}")
        config_path = devnet.state_dir / "nodes" / f"{config.chain}.json"
        config.save(config_path)
        names = tuple(start_replica(devnet, config_path, config, i, k, sockets=sockets[i], wait=False)
                      for i, k in enumerate(keys))
        handles.append(ClusterHandle(config, config_path, names))
    services = devnet.load_services()
    for h in handles:
        for name in h.service_names:
            devnet.wait_service(services[name], _api_answers, timeout=90)
    return handles


def start_cluster(devnet: Devnet, config: NodeConfig, keys: Sequence[bytes],
                  sockets: Sequence[ReplicaSockets]) -> ClusterHandle:
    """Write the node configuration and launch every replica on its bound sockets."""
    return start_clusters(devnet, [(config, keys, sockets)])[0]


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    """Poll ``predicate`` until it returns a truthy value (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise DevnetError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


__all__ = ["ClusterHandle", "ReplicaSockets", "bind_replica_sockets", "deploy_slip_ledger", "fund", "node_config", "replica_name",
           "start_cluster", "start_clusters",
           "start_replica", "wait_until"]
