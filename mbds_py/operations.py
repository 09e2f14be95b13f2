"""The network as a service: `mbds up`, `deploy`, `status`, `logs`, `down`.

``up`` brings up everything a spec names — chains, the KMC's enrolment of a
population, contracts, registrations, the consortium election, PBFT replicas
with their bridges, consortium nodes, storage nodes and the authority centres'
proxies — and returns, leaving it running.  Every step is idempotent: ``up`` on
a running network changes nothing and restarts what died.  A step that fails
leaves nothing half-started and, for a first bring-up, nothing written.
"""

from __future__ import annotations

import shutil
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from .devnet import Devnet, log_tail, rpc_chain_id
from .errors import DevnetError, MBDSError
from .population import DEFAULT_POPULATION, Member
from .spec import NetworkSpec


@dataclass(frozen=True)
class UpReport:
    """What ``up`` did: the state folder, every service row and the wall time."""

    state_dir: Path
    rows: list[dict]
    seconds: float


def network(spec: NetworkSpec, passphrase: str, population: tuple[Member, ...] = DEFAULT_POPULATION):
    """The :class:`~mbds_py.network.Network` of a spec (nothing started)."""
    from .network import Network

    return Network(spec, passphrase, population=population)


@contextmanager
def nothing_written_on_failure(state_dir: Path) -> Iterator[None]:
    """Undo what a failed step wrote under ``state_dir``: files it created are removed, JSON records it
    changed (state, deployments) get their former content back; nothing else is touched."""
    existed = state_dir.exists()
    before = set(state_dir.rglob("*")) if existed else set()
    records = {p: p.read_bytes() for p in before if p.suffix == ".json" and p.is_file()}
    try:
        yield
    except BaseException:
        if not existed:
            shutil.rmtree(state_dir, ignore_errors=True)
            raise
        for p in sorted(set(state_dir.rglob("*")) - before, key=lambda q: len(q.parts), reverse=True):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
        for p, data in records.items():
            if not p.exists() or p.read_bytes() != data:
                p.write_bytes(data)
        raise


def require_chains(spec: NetworkSpec) -> dict[str, str]:
    """Every chain of the spec answers with its chain ID, or a one-line error says which does not."""
    devnet = Devnet(spec)
    urls = devnet.rpc_urls()
    for chain in spec.chains:
        cid = rpc_chain_id(urls[chain.name])
        if cid != chain.chain_id:
            what = "does not answer" if cid is None else f"answers with chain ID {cid}, not {chain.chain_id}"
            raise DevnetError(f"chain {chain.name!r} at {urls[chain.name]} {what}; run `mbds up` "
                              f"(state: {spec.state_dir})")
    return urls


def deploy(spec: NetworkSpec, passphrase: str, population: tuple[Member, ...] = DEFAULT_POPULATION
           ) -> tuple[dict, list[str]]:
    """Enrol the population (the PBFT validators are its hospitals and authorities) and deploy each
    chain's contracts; idempotent.  On failure nothing new is left in the state folder."""
    require_chains(spec)
    with nothing_written_on_failure(spec.state_dir):
        net = network(spec, passphrase, population)  # opens (or creates) the KMC keystore
        net.enroll()
        created = net.deploy()
    return net.deployments, created


def up(spec: NetworkSpec, passphrase: str, population: tuple[Member, ...] = DEFAULT_POPULATION, *,
       proxies: bool = True, out: Callable[[str], None] = print) -> UpReport:
    """Bring up everything the spec names and return, leaving it running (see the module doc)."""
    from .sharing.launch import start_proxies

    t0 = time.perf_counter()
    fresh = not (spec.state_dir / "state.json").exists()
    out(f"state: {spec.state_dir}")
    if fresh:
        forget_stopped_network(spec, out)
    with nothing_written_on_failure(spec.state_dir) if fresh else nullcontext():
        try:
            net = network(spec, passphrase, population)  # opens (or creates) the KMC keystore
            for label, step in (("chains and storage nodes", net.devnet.up), ("KMC enrolment", net.enroll),
                                ("contracts", net.deploy), ("registrations", net.register),
                                ("consortium election", net.setup_consortium), ("running nodes", net.attach),
                                ("PBFT replicas, bridges, consortium nodes", net.start_nodes)):
                out(f"==> {label}")
                step()
            if proxies:
                out("==> re-encryption proxies")
                start_proxies(net)
        except BaseException:
            if fresh:  # nothing half-started
                Devnet(spec).down()
            raise
    return UpReport(spec.state_dir, net.devnet.status(), time.perf_counter() - t0)


NODE_DATA = ("nodes", "consortium", "proxies")  # what replicas, consortium nodes and proxies keep per network


def forget_stopped_network(spec: NetworkSpec, out: Callable[[str], None] = print) -> None:
    """Before a new bring-up in a folder whose network was stopped: its launched chains are gone, so
    the replicas', consortium nodes' and proxies' data (blocks, indexes, key shares of those chains)
    is removed.  Identities (``kmc/``) and stored blobs (``storage/``) stay; contracts are redeployed
    where their code is gone.  Data of a network on external chains is kept (those chains persist)."""
    if any(c.external for c in spec.chains):
        return
    stale = [spec.state_dir / d for d in NODE_DATA if (spec.state_dir / d).exists()]
    for folder in stale:
        shutil.rmtree(folder)
    if stale:
        out("    (the stopped network's node data was removed: its chains are gone; identities are kept)")


def down(spec: NetworkSpec) -> list[str]:
    """Stop every process of the network (services first, then chains)."""
    return Devnet(spec).down()


def logs(spec: NetworkSpec, name: str, lines: int = 50) -> str:
    """The last ``lines`` of one service's or chain's log."""
    devnet = Devnet(spec)
    paths = {n: c.log for n, c in devnet.load_state().items() if c.log}
    paths.update({n: s.log for n, s in devnet.load_services().items()})
    if name not in paths:
        known = ", ".join(sorted(paths)) or "none (is the network up?)"
        raise MBDSError(f"no service named {name!r} in {spec.state_dir}; known: {known}")
    path = Path(paths[name])
    if not path.is_file():
        raise MBDSError(f"the log of {name!r} ({path}) is gone")
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:] if lines else text)


def status_table(rows: list[dict]) -> str:
    """The rows of :meth:`Devnet.status` as an aligned table (columns fit the longest value)."""
    header = ["name", "kind", "pid", "url", "health", "log"]
    body = [[r["name"], r["kind"], str(r["pid"] or "-"), r["rpc_url"] or "-", "healthy" if r["up"] else "DOWN",
             r.get("log") or "-"] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(header, *body)]
    return "\n".join("  ".join(x.ljust(w) for x, w in zip(row, widths)).rstrip() for row in [header, *body])


__all__ = ["UpReport", "deploy", "down", "log_tail", "logs", "network", "nothing_written_on_failure",
           "require_chains", "status_table", "up"]
