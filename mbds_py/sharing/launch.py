"""Start the authority centers' re-encryption proxies on a running :class:`~mbds_py.network.Network`.

``start_proxies(net)`` gives each health authority (nha, pha, mha) a proxy
process: its key set is derived from the authority's (so a restart keeps the
same account and PRE key), handed over only through an inherited pipe (``--key-fd``); its
account is funded on the consortium chain and registered with
``AccessPolicy.addProxy`` by the authority itself.  Every process is recorded
in the devnet state, so ``net.devnet.down()`` stops it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import requests

from ..chain.governance import Council
from ..crypto import PatientSecrets
from ..devnet import is_running
from ..crypto._hash import keccak256 as keccak
from .agent import AccessPolicyAgent
from .clients import Directory
from .proxy import DEFAULT_THRESHOLD, MARKER, ChainRef, ProxyConfig

AUTHORITIES = ("nha", "pha", "mha")
DEFAULT_RATE_LIMIT = 60  # re-encryptions per requester per minute at one proxy


def policy_agent(net) -> AccessPolicyAgent:
    """AccessPolicy on the network's consortium chain."""
    cons = net.spec.consortium.name
    return AccessPolicyAgent(net.client(cons), net.deployments[cons]["AccessPolicy"].address)


def proxy_keys(net, authority: str) -> PatientSecrets:
    """The proxy key set of an authority center, derived from the authority's own key set."""
    return PatientSecrets.derive(keccak(b"mbds/proxy/" + net.keys(authority).secrets.to_bytes()))


def chain_refs(net) -> list[ChainRef]:
    return [ChainRef(name, h.config.chain_id, h.config.rpc_url, h.config.slip_ledger, tuple(h.api_urls))
            for name, h in net.clusters.items()]


def proxy_config(net, authority: str, port: int, *, rate_limit: int = DEFAULT_RATE_LIMIT,
                 rate_window: float = 60.0) -> ProxyConfig:
    cons = net.spec.consortium.name
    return ProxyConfig(
        name=authority, consortium_rpc=net.devnet.rpc_urls()[cons],
        access_policy=net.deployments[cons]["AccessPolicy"].address,
        consortium_index=net.deployments[cons]["ConsortiumIndex"].address,
        consortium_nodes=tuple(net.consortium_nodes.values()), private_chains=tuple(chain_refs(net)),
        storage=tuple(net.devnet.storage_urls()), storage_replicas=net.spec.storage.replicas,
        host=net.spec.place(service_name(authority)).address, port=port,
        data_dir=str(net.spec.state_dir / "proxies"), rate_limit=rate_limit, rate_window=rate_window)


def _answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/v1/info", timeout=1.0).status_code == 200
    except requests.RequestException:
        return False


def service_name(authority: str) -> str:
    return f"proxy-{authority}"


def spawn_proxy(net, config: ProxyConfig, *, sock=None, wait: bool = True) -> str:
    """Launch one proxy process on ``sock`` (default: its former port, for a relaunch); returns its URL."""
    path = Path(config.data_dir) / f"{config.name}.json"
    config.save(path)
    argv = [sys.executable, "-m", MARKER, "--config", str(path), "--log-level", "WARNING"]
    name = service_name(config.name)
    entry = net.devnet.spawn_service(name, "proxy", argv,
                                     sockets={"http": sock} if sock is not None else net.devnet.rebind(name),
                                     probe=_answers, secret=proxy_keys(net, config.name).to_bytes(),
                                     url=config.url, wait=False)
    if wait:
        net.devnet.wait_service(entry, _answers, timeout=60)
    return config.url


def register_proxy(net, authority: str, address: str) -> None:
    """Fund the proxy's account on the consortium chain and register it (idempotent): ``addProxy`` is a k-of-n
    operation, proposed by ``authority`` and approved by the other authorities of the devnet's council."""
    from ..network import fund_accounts

    policy = policy_agent(net)
    fund_accounts(net, net.spec.consortium.name, [address])
    if not policy.is_proxy(address):
        council = net.council()
        others = [a for a in council.members if a.address != net.keys(authority).account.address]
        policy.add_proxy(Council(net.keys(authority).account, *others), address)


def start_proxies(net, threshold: int = DEFAULT_THRESHOLD, *, authorities: Sequence[str] = AUTHORITIES,
                  rate_limit: int = DEFAULT_RATE_LIMIT, rate_window: float = 60.0) -> list[str]:
    """Spawn one proxy per authority center, register each with ``addProxy``; returns their URLs.

    ``threshold`` is the m of the m-of-n split patients use (n = number of proxies); it is a client-side
    parameter (see :func:`directory`), checked here only for sense.
    """
    if not 1 <= threshold <= len(authorities):
        raise ValueError(f"threshold must be 1..{len(authorities)}, got {threshold}")
    configs, socks = [], []
    existing = net.devnet.load_services()
    for a in authorities:
        old = existing.get(service_name(a))
        if old is not None and is_running(old.pid, old.started):
            sock, port = None, old.port  # already serving: spawn_proxy leaves it alone
        else:
            sock = net.devnet.bind(old.port if old is not None else 0, service=service_name(a), what=f"proxy {a!r}")
            port = sock.getsockname()[1]
        socks.append(sock)
        configs.append(proxy_config(net, a, port, rate_limit=rate_limit, rate_window=rate_window))
    for c in configs:
        register_proxy(net, c.name, proxy_keys(net, c.name).address)
    urls = [spawn_proxy(net, c, sock=sock, wait=False) if sock is not None else c.url
            for c, sock in zip(configs, socks)]
    services = net.devnet.load_services()
    for c in configs:
        net.devnet.wait_service(services[service_name(c.name)], _answers, timeout=60)
    return urls


def stop_proxy(net, authority: str) -> bool:
    """Stop one proxy process (to show the threshold holds with one center down)."""
    return net.devnet.stop_service(service_name(authority))


def restart_proxy(net, authority: str) -> str:
    """Start a stopped proxy again on its port, with its key store intact."""
    svc = net.devnet.load_services()[service_name(authority)]
    config = ProxyConfig.load(Path(net.spec.state_dir / "proxies") / f"{authority}.json")
    if config.port != svc.port:
        raise ValueError(f"proxy {authority}: configuration port {config.port} != service port {svc.port}")
    return spawn_proxy(net, config)


def directory(net, proxy_urls: Sequence[str], threshold: int = DEFAULT_THRESHOLD) -> Directory:
    """What the patient and doctor clients need to reach this network."""
    return Directory(policy_agent(net), proxy_urls, chain_refs(net), list(net.consortium_nodes.values()),
                     net.devnet.storage_urls(), storage_replicas=net.spec.storage.replicas, threshold=threshold,
                     names={p.id: n for n, p in net.people.items()})


__all__ = ["AUTHORITIES", "DEFAULT_RATE_LIMIT", "chain_refs", "directory", "policy_agent", "proxy_config",
           "proxy_keys", "register_proxy", "restart_proxy", "service_name", "spawn_proxy",
           "start_proxies", "stop_proxy"]
