"""Stand up a private chain's replica group: contracts, node configuration, replica processes.

Used by the devnet/demo, the tests and the benchmarks.  The validators are
the hospital and the three health authorities; each replica process gets its
key through the environment (never a file), and is recorded in the devnet
state so `mbds devnet down` stops it.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount

from ..chain.client import ChainClient
from ..devnet import Devnet, free_port
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
    for a in addresses:
        if client.w3.eth.get_balance(a) < amount // 10:
            client.transfer(funder, a, amount)


def node_config(*, chain: str, chain_id: int, rpc_url: str, slip_ledger: str, identity_registry: str,
                hospital_id: bytes, validators: Sequence[str], data_dir: Path, storage: Sequence[str] = (),
                storage_replicas: int = 1, host: str = "127.0.0.1", **pbft: object) -> NodeConfig:
    peers = tuple(PeerConfig(i, host, free_port(host), free_port(host)) for i in range(len(validators)))
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
                  wait: bool = True) -> str:
    """Launch (or relaunch after a crash) replica ``index``; returns its service name."""
    name = f"{config.chain}-replica-{index}"
    argv = [sys.executable, "-m", MARKER, "--config", str(config_path), "--index", str(index),
            "--log-level", "WARNING"]
    devnet.spawn_service(name, "replica", argv, port=index, marker=f"{MARKER} --config {config_path}",
                         probe=_api_answers, env={"MBDS_NODE_KEY": key.hex()},
                         url=config.peers[index].http_url, wait=wait)
    return name


def start_clusters(devnet: Devnet, groups: Sequence[tuple[NodeConfig, Sequence[bytes]]]) -> list[ClusterHandle]:
    """Launch several replica groups at once, then wait for all of them."""
    handles = []
    for config, keys in groups:
        config_path = devnet.state_dir / "nodes" / f"{config.chain}.json"
        config.save(config_path)
        names = tuple(start_replica(devnet, config_path, config, i, k, wait=False) for i, k in enumerate(keys))
        handles.append(ClusterHandle(config, config_path, names))
    services = devnet.load_services()
    for h in handles:
        for name in h.service_names:
            devnet.wait_service(services[name], _api_answers, timeout=90)
    return handles


def start_cluster(devnet: Devnet, config: NodeConfig, keys: Sequence[bytes]) -> ClusterHandle:
    """Write the node configuration and launch every replica."""
    for i, key in enumerate(keys):
        if Account.from_key(key).address.lower() != config.validators[i].lower():
            raise DevnetError(f"key {i} is not validator {config.validators[i]}")
    config_path = devnet.state_dir / "nodes" / f"{config.chain}.json"
    config.save(config_path)
    names = tuple(start_replica(devnet, config_path, config, i, k, wait=False) for i, k in enumerate(keys))
    services = devnet.load_services()
    for name in names:  # launched together, waited together
        devnet.wait_service(services[name], _api_answers, timeout=60)
    return ClusterHandle(config, config_path, names)


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


__all__ = ["ClusterHandle", "deploy_slip_ledger", "fund", "node_config", "start_cluster", "start_clusters",
           "start_replica", "wait_until"]
