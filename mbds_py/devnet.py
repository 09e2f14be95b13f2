"""`mbds devnet up | status | down`: one EVM process per chain of the spec.

Every launched process is recorded in ``<state_dir>/state.json`` the moment it
is spawned, so ``down`` finds and stops it even when the launcher crashed
half-way.  A process is only signalled when its command line still shows the
engine and port we started (a recycled PID is never killed).  Chains with an
``rpc_url`` are external: they are checked, never launched or stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import requests

from .errors import DevnetError, PortInUseError, ToolchainError
from .spec import ChainSpec, NetworkSpec
from .toolchain import PROJECT_ROOT

# The well-known development mnemonic of Anvil, Hardhat and Ganache.  Its keys
# are public knowledge and fund only throw-away local chains.
DEV_MNEMONIC = "test test test test test test test test test test test junk"
DEV_DEPLOYER_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
STARTUP_TIMEOUT = 30.0


@dataclass
class ChainState:
    """What `up` recorded about one chain."""

    name: str
    kind: str
    chain_id: int
    rpc_url: str
    engine: str
    external: bool
    institution: str
    pid: int | None = None
    port: int | None = None
    log: str | None = None


@dataclass
class ServiceState:
    """A non-chain process `up` launched (storage node, replica, proxy...)."""

    name: str
    kind: str
    url: str
    pid: int
    port: int
    marker: str  # a string of its command line, checked before signalling it
    log: str
    data_dir: str | None = None


def anvil_binary() -> str:
    """Path of Anvil: ``ANVIL_BINARY``, the npm package's binary, or PATH."""
    env = os.environ.get("ANVIL_BINARY")
    candidates = [env] if env else []
    candidates += [
        str(PROJECT_ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"),
        str(PROJECT_ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-arm64" / "bin" / "anvil"),
        shutil.which("anvil") or "",
    ]
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    raise ToolchainError("Anvil is not installed: run `make setup` (npm ci installs @foundry-rs/anvil)")


def ganache_binary() -> str:
    path = PROJECT_ROOT / "node_modules" / ".bin" / "ganache"
    if path.exists():
        return str(path)
    raise ToolchainError("Ganache is not installed: run `make setup` (npm ci installs ganache@7.9.2)")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def chain_command(engine: str, host: str, port: int, chain_id: int) -> list[str]:
    if engine == "anvil":
        return [anvil_binary(), "--host", host, "--port", str(port), "--chain-id", str(chain_id),
                "--mnemonic", DEV_MNEMONIC, "--accounts", "10", "--balance", "1000000", "--silent"]
    if engine == "ganache":
        return [ganache_binary(), "--server.host", host, "--server.port", str(port),
                "--chain.chainId", str(chain_id), "--chain.networkId", str(chain_id),
                "--chain.hardfork", "shanghai", "--wallet.mnemonic", DEV_MNEMONIC,
                "--wallet.totalAccounts", "10", "--wallet.defaultBalance", "1000000", "--logging.quiet"]
    raise DevnetError(f"unknown engine {engine!r}")


def rpc_chain_id(url: str, timeout: float = 2.0) -> int | None:
    """eth_chainId of the endpoint, or None if nothing answers."""
    try:
        r = requests.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
                          timeout=timeout)
        return int(r.json()["result"], 16)
    except (requests.RequestException, ValueError, KeyError):
        return None


def wait_for_rpc(url: str, proc: subprocess.Popen | None, timeout: float, what: str) -> int:
    """Poll until the endpoint answers eth_chainId; fail early if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cid = rpc_chain_id(url, timeout=1.0)
        if cid is not None:
            return cid
        if proc is not None and proc.poll() is not None:
            raise DevnetError(f"{what} exited with code {proc.returncode} before answering at {url}")
        time.sleep(0.05)
    raise DevnetError(f"{what} did not answer at {url} within {timeout:.0f}s")


# --- process bookkeeping -------------------------------------------------------------------


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def process_matches(pid: int, engine: str, port: int) -> bool:
    """True when ``pid`` is alive and still the chain process we launched."""
    cmd = _cmdline(pid)
    if not cmd:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        if stat.read_text().split(") ", 1)[1].split()[0] == "Z":  # zombie: already dead
            return False
    except (OSError, IndexError):
        return False
    return engine in cmd and f" {port} " in f" {cmd} "


def stop_process(pid: int, engine: str, port: int, timeout: float = 10.0) -> bool:
    """SIGTERM then SIGKILL the process group of a chain we launched; True if it was running."""
    if not process_matches(pid, engine, port):
        return False
    for sig, wait in ((signal.SIGTERM, timeout / 2), (signal.SIGKILL, timeout / 2)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return True
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            if not process_matches(pid, engine, port):
                return True
            time.sleep(0.02)
    raise DevnetError(f"could not stop {engine} (pid {pid}, port {port})")


def stop_processes(procs: list[tuple[str, int, str, int]], timeout: float = 10.0) -> list[str]:
    """Stop many processes at once: SIGTERM all, wait, SIGKILL the stragglers; returns names that were running."""
    running = [(n, pid, marker, port) for n, pid, marker, port in procs if process_matches(pid, marker, port)]
    for sig, wait in ((signal.SIGTERM, timeout / 2), (signal.SIGKILL, timeout / 2)):
        alive = [p for p in running if process_matches(p[1], p[2], p[3])]
        for _n, pid, _m, _p in alive:
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                pass
            except PermissionError:
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while alive and time.monotonic() < deadline:
            for _n, pid, _m, _p in alive:
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
            alive = [p for p in alive if process_matches(p[1], p[2], p[3])]
            if alive:
                time.sleep(0.02)
        if not alive:
            break
    left = [p[0] for p in running if process_matches(p[1], p[2], p[3])]
    if left:
        raise DevnetError(f"could not stop {left}")
    return [p[0] for p in running]


class Devnet:
    """Launch, inspect and stop the chains of a :class:`NetworkSpec`."""

    def __init__(self, spec: NetworkSpec):
        self.spec = spec
        self.state_dir = spec.state_dir
        self.state_file = self.state_dir / "state.json"
        self._procs: dict[str, subprocess.Popen] = {}

    # -- state file ------------------------------------------------------------------------

    def _raw_state(self) -> dict[str, Any]:
        if not self.state_file.is_file():
            return {}
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DevnetError(f"{self.state_file} is unreadable ({exc}); remove it after stopping stray chains") from exc

    def load_state(self) -> dict[str, ChainState]:
        return {name: ChainState(**entry) for name, entry in self._raw_state().get("chains", {}).items()}

    def load_services(self) -> dict[str, ServiceState]:
        return {name: ServiceState(**entry) for name, entry in self._raw_state().get("services", {}).items()}

    def _save_state(self, chains: dict[str, ChainState], services: dict[str, ServiceState] | None = None) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if services is None:
            services = self.load_services()
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"spec": self.spec.path, "chains": {n: asdict(c) for n, c in chains.items()},
                                   "services": {n: asdict(v) for n, v in services.items()}}, indent=2))
        os.replace(tmp, self.state_file)

    def _save_services(self, services: dict[str, ServiceState]) -> None:
        self._save_state(self.load_state(), services)

    # -- up / status / down ---------------------------------------------------------------------

    def up(self) -> dict[str, ChainState]:
        """Start every chain not already running; wait until each answers."""
        state = self.load_state()
        # Check the whole spec before launching anything.
        for chain in self.spec.chains:
            if chain.external:
                continue
            running = state.get(chain.name)
            if running and running.pid and process_matches(running.pid, running.engine, running.port or 0):
                continue
            if chain.engine == "anvil":
                anvil_binary()
            else:
                ganache_binary()
            if chain.port and not port_is_free(self.spec.host, chain.port):
                raise PortInUseError(
                    f"chain {chain.name!r}: port {chain.port} on {self.spec.host} is busy; "
                    f"free it or set port = 0 in {self.spec.path}")
        try:
            for chain in self.spec.chains:
                state[chain.name] = self._up_one(chain, state.get(chain.name), state)
                self._save_state(state)
        except BaseException:
            self._save_state(state)
            raise
        self.up_storage()
        return state

    # -- services (storage nodes, and later replicas and proxies) ----------------------------

    def spawn_service(self, name: str, kind: str, argv: list[str], *, port: int, marker: str,
                      probe: Callable[[str], bool], data_dir: Path | None = None,
                      timeout: float = STARTUP_TIMEOUT, env: dict[str, str] | None = None,
                      url: str | None = None, wait: bool = True) -> ServiceState:
        """Start a service process, record it at once, and wait until ``probe(url)`` succeeds."""
        services = self.load_services()
        current = services.get(name)
        if current and process_matches(current.pid, current.marker, current.port):
            return current
        self.state_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.state_dir / f"{name}.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, cwd=PROJECT_ROOT,
                                    env={**os.environ, **env} if env else None)
        url = url or f"http://{self.spec.host}:{port}"
        entry = ServiceState(name, kind, url, proc.pid, port, marker, str(log_path),
                             str(data_dir) if data_dir else None)
        services[name] = entry
        self._save_services(services)
        self._procs[name] = proc
        if wait:
            self.wait_service(entry, probe, timeout)
        return entry

    def wait_service(self, entry: ServiceState, probe: Callable[[str], bool],
                     timeout: float = STARTUP_TIMEOUT) -> None:
        """Poll until a spawned service answers; fail early if its process exited."""
        proc = self._procs.get(entry.name)
        deadline = time.monotonic() + timeout
        while not probe(entry.url):
            if proc is not None and proc.poll() is not None:
                raise DevnetError(f"{entry.kind} {entry.name!r} exited with code {proc.returncode}; see {entry.log}")
            if time.monotonic() > deadline:
                stop_process(entry.pid, entry.marker, entry.port)
                raise DevnetError(f"{entry.kind} {entry.name!r} did not answer at {entry.url} within "
                                  f"{timeout:.0f}s; see {entry.log}")
            time.sleep(0.05)

    def up_storage(self) -> list[ServiceState]:
        """Start the spec's storage nodes (durable data under the state dir)."""
        import sys

        started = []
        for i in range(self.spec.storage.nodes):
            name = f"storage-{i}"
            data_dir = self.state_dir / "storage" / name
            current = self.load_services().get(name)
            port = current.port if current and not process_matches(current.pid, current.marker, current.port) \
                and port_is_free(self.spec.host, current.port) else free_port(self.spec.host)
            argv = [sys.executable, "-m", "mbds_py.storage.node", "--host", self.spec.host, "--port", str(port),
                    "--data-dir", str(data_dir), "--max-blob-size", self.spec.storage.max_blob_size,
                    "--log-level", "WARNING"]
            started.append(self.spawn_service(name, "storage", argv, port=port, marker="mbds_py.storage.node",
                                              probe=_storage_answers, data_dir=data_dir))
        return started

    def stop_service(self, name: str, *, kill: bool = False) -> bool:
        """Stop one service (SIGKILL with ``kill``, to simulate a crash); True if it was running."""
        services = self.load_services()
        svc = services.get(name)
        if svc is None:
            return False
        if kill:
            if not process_matches(svc.pid, svc.marker, svc.port):
                return False
            os.killpg(svc.pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while process_matches(svc.pid, svc.marker, svc.port) and time.monotonic() < deadline:
                try:
                    os.waitpid(svc.pid, os.WNOHANG)
                except ChildProcessError:
                    pass
                time.sleep(0.01)
            return True
        return stop_process(svc.pid, svc.marker, svc.port)

    def storage_urls(self) -> list[str]:
        services = self.load_services()
        return [services[n].url for n in sorted(services) if services[n].kind == "storage"]

    def _up_one(self, chain: ChainSpec, current: ChainState | None, state: dict[str, ChainState]) -> ChainState:
        if chain.external:
            cid = wait_for_rpc(chain.rpc_url, None, 10.0, f"external chain {chain.name!r}")
            if cid != chain.chain_id:
                raise DevnetError(f"external chain {chain.name!r} at {chain.rpc_url} has chain ID {cid}, "
                                  f"the spec says {chain.chain_id}")
            return ChainState(chain.name, chain.kind, chain.chain_id, chain.rpc_url, chain.engine, True,
                              chain.institution)
        if current and current.pid and process_matches(current.pid, current.engine, current.port or 0):
            return current
        self.state_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.state_dir / f"{chain.name}.log"
        for _attempt in range(5):
            port = chain.port or free_port(self.spec.host)
            url = f"http://{self.spec.host}:{port}"
            with open(log_path, "ab") as log:
                proc = subprocess.Popen(chain_command(chain.engine, self.spec.host, port, chain.chain_id),
                                        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True, cwd=PROJECT_ROOT)
            entry = ChainState(chain.name, chain.kind, chain.chain_id, url, chain.engine, False, chain.institution,
                               pid=proc.pid, port=port, log=str(log_path))
            state[chain.name] = entry
            self._save_state(state)  # recorded before we wait: `down` can always find it
            try:
                timeout = STARTUP_TIMEOUT * (2 if chain.engine == "ganache" else 1)
                cid = wait_for_rpc(url, proc, timeout, f"{chain.engine} for chain {chain.name!r}")
            except DevnetError:
                stop_process(proc.pid, chain.engine, port)
                if chain.port:  # a fixed port cannot be retried elsewhere
                    raise
                continue  # lost a race for the free port: try another
            if cid != chain.chain_id:
                raise DevnetError(f"chain {chain.name!r} answered with chain ID {cid}, expected {chain.chain_id}")
            return entry
        raise DevnetError(f"chain {chain.name!r} failed to start 5 times; see {log_path}")

    def status(self) -> list[dict[str, Any]]:
        """One row per spec chain: URL, chain ID, pid and whether it answers."""
        state = self.load_state()
        rows = []
        for chain in self.spec.chains:
            entry = state.get(chain.name)
            url = chain.rpc_url if chain.external else (entry.rpc_url if entry else None)
            cid = rpc_chain_id(url) if url else None
            rows.append({
                "name": chain.name, "kind": chain.kind, "engine": "external" if chain.external else chain.engine,
                "chain_id": chain.chain_id, "rpc_url": url, "pid": entry.pid if entry else None,
                "up": cid == chain.chain_id,
            })
        for name, svc in sorted(self.load_services().items()):
            rows.append({"name": name, "kind": svc.kind, "engine": "mbds", "chain_id": None, "rpc_url": svc.url,
                         "pid": svc.pid, "up": process_matches(svc.pid, svc.marker, svc.port)})
        return rows

    def down(self) -> list[str]:
        """Stop every process this devnet launched; returns the names stopped."""
        services = [(n, s.pid, s.marker, s.port) for n, s in self.load_services().items()]
        chains = [(n, c.pid, c.engine, c.port or 0) for n, c in self.load_state().items() if not c.external and c.pid]
        stopped = stop_processes(services) + stop_processes(chains)  # services first: they use the chains
        if self.state_file.exists():
            self.state_file.unlink()
        return stopped

    def rpc_urls(self) -> dict[str, str]:
        state = self.load_state()
        missing = [c.name for c in self.spec.chains if c.name not in state]
        if missing:
            raise DevnetError(f"chains {missing} are not up; run `mbds devnet up` first")
        return {name: entry.rpc_url for name, entry in state.items()}


def _storage_answers(url: str) -> bool:
    try:
        return requests.post(f"{url}/api/v0/version", timeout=1.0).status_code == 200
    except requests.RequestException:
        return False


def launch_chain(engine: str, chain_id: int, host: str = "127.0.0.1") -> tuple[subprocess.Popen, str]:
    """Start one throw-away chain (tests, benchmarks); the caller stops it."""
    port = free_port(host)
    proc = subprocess.Popen(chain_command(engine, host, port, chain_id), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True)
    url = f"http://{host}:{port}"
    wait_for_rpc(url, proc, STARTUP_TIMEOUT * 2, f"{engine} (chain ID {chain_id})")
    return proc, url
