"""The launcher: one EVM process per chain of the spec, and every service process beside them.

Every launched process is recorded in ``<state_dir>/state.json`` the moment it
is spawned, so ``down`` finds and stops it even when the launcher crashed
half-way.  A process is identified by its pid and start time (a recycled pid is
never signalled).  Ports are never probed: a chain binds its own (port 0 = any)
and its port is read from its listening socket; a service gets sockets the
launcher has already bound (:mod:`mbds_py.listen`).  Chains with an ``rpc_url``
are external: they are checked, never launched or stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import requests

from .chain.sender import forget_chain
from .errors import DevnetError, PortInUseError, ToolchainError
from .listen import bind_listener, bound_port
from .spec import ChainSpec, NetworkSpec, Placement
from .toolchain import PROJECT_ROOT

# The well-known development mnemonic of Anvil, Hardhat and Ganache.  Its keys
# are public knowledge and fund only throw-away local chains.
DEV_MNEMONIC = "test test test test test test test test test test test junk"
DEV_DEPLOYER_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
STARTUP_TIMEOUT = 30.0
# Every process a devnet launches carries ``MBDS_DEVNET=<its state dir>`` in its environment, so `down`
# finds one whose launcher died between spawning it and recording it (see :func:`devnet_processes`).
DEVNET_TAG = "MBDS_DEVNET"


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
    started: int | None = None  # process start time: with pid, the process's identity
    block_time: int = 0


@dataclass
class ServiceState:
    """A non-chain process `up` launched (storage node, replica, consortium node, proxy)."""

    name: str
    kind: str
    url: str
    pid: int
    port: int
    log: str
    started: int | None = None
    listen: dict[str, int] = field(default_factory=dict)  # endpoint name -> bound port
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
    """The project's Ganache launcher (``scripts/bin/ganache-serve.js``: the npm package's server on
    any port, port 0 included, which Ganache's own CLI refuses)."""
    if not (PROJECT_ROOT / "node_modules" / "ganache").is_dir():
        raise ToolchainError("Ganache is not installed: run `make setup` (npm ci installs ganache@7.9.2)")
    return str(PROJECT_ROOT / "scripts" / "bin" / "ganache-serve.js")


def chain_command(engine: str, host: str, port: int, chain_id: int, block_time: int = 0) -> list[str]:
    """The command line of one chain process (port 0 = any free port, found from the process afterwards)."""
    if engine == "anvil":
        return [anvil_binary(), "--host", host, "--port", str(port), "--chain-id", str(chain_id),
                "--mnemonic", DEV_MNEMONIC, "--accounts", "10", "--balance", "1000000", "--silent",
                *(["--block-time", str(block_time)] if block_time else [])]
    if engine == "ganache":
        return ["node", ganache_binary(), host, str(port), str(chain_id), str(block_time), DEV_MNEMONIC]
    raise DevnetError(f"unknown engine {engine!r}")


def rpc_chain_id(url: str, timeout: float = 2.0) -> int | None:
    """eth_chainId of the endpoint, or None if nothing answers."""
    try:
        r = requests.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
                          timeout=timeout)
        return int(r.json()["result"], 16)
    except (requests.RequestException, ValueError, KeyError):
        return None


def wait_for_rpc(url: str, proc: subprocess.Popen | None, timeout: float, what: str,
                 log: Path | None = None) -> int:
    """Poll (with backoff) until the endpoint answers eth_chainId; fail early if the process died."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while time.monotonic() < deadline:
        cid = rpc_chain_id(url, timeout=1.0)
        if cid is not None:
            return cid
        if proc is not None and proc.poll() is not None:
            raise DevnetError(f"{what} exited with code {proc.returncode} before answering at {url}"
                              + log_tail(log))
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
    raise DevnetError(f"{what} did not answer at {url} within {timeout:.0f}s" + log_tail(log))


def log_tail(path: Path | str | None, lines: int = 8) -> str:
    """The last lines of a log, for an error message that must not depend on the file surviving."""
    if path is None:
        return ""
    try:
        text = Path(path).read_text(errors="replace").rstrip().splitlines()[-lines:]
    except OSError:
        return f"; log {path} is gone"
    body = "\n    ".join(line if len(line) <= 300 else line[:300] + " …" for line in text) if text else "(empty)"
    return f"; last lines of {path}:\n    {body}"


# --- process bookkeeping -------------------------------------------------------------------
#
# A process is identified by its pid *and* its start time (field 22 of /proc/PID/stat): a
# recycled pid never matches, whatever its command line, so `down` never signals a stranger.


def process_started(pid: int) -> int | None:
    """Start time (clock ticks since boot) of a live, non-zombie process; None otherwise."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def is_running(pid: int | None, started: int | None) -> bool:
    """True when ``pid`` is alive and is still the process that started at ``started``."""
    return bool(pid) and started is not None and process_started(pid) == started  # type: ignore[arg-type]


def _lingers(pid: int, started: int | None) -> bool:
    """True while the process that started at ``started`` still has a thread exiting.

    A killed multi-threaded process shows as a zombie as soon as its main thread is gone, but its files —
    listening sockets included — close only when its last thread has exited; until then a restart on its
    port finds the port taken.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
        if started is None or int(fields[19]) != started:
            return False
        tasks = os.listdir(f"/proc/{pid}/task")
    except (OSError, IndexError, ValueError):
        return False
    for task in tasks:
        try:
            state = Path(f"/proc/{pid}/task/{task}/stat").read_text().rsplit(") ", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in ("Z", "X"):
            return True
    return False


def _alive(pid: int, started: int | None) -> bool:
    """Running, or dying with threads (and so files) left: not yet safe to take over its ports."""
    return is_running(pid, started) or _lingers(pid, started)


def listening_ports(pid: int) -> set[int]:
    """TCP ports a process listens on, read from its socket inodes and the kernel's socket tables."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return set()
    ports = set()
    for table in ("tcp", "tcp6"):
        try:
            rows = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) > 9 and cols[3] == "0A" and cols[9] in inodes:  # 0A = LISTEN
                ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


def devnet_processes(state_dir: Path) -> list[tuple[int, int | None]]:
    """(pid, start time) of every live process tagged with ``state_dir`` (:data:`DEVNET_TAG`), whether or not
    its launcher lived to record it; empty where there is no ``/proc``."""
    needle = f"{DEVNET_TAG}={Path(state_dir).resolve()}".encode()
    found: list[tuple[int, int | None]] = []
    try:
        pids = [int(n) for n in os.listdir("/proc") if n.isdigit()]
    except OSError:
        return []
    for pid in pids:
        if pid == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue  # gone, or not ours to read
        started = process_started(pid) if needle in environ else None
        if started is not None:
            found.append((pid, started))
    return found


# The chains and services this process launched, held until they exit.  `mbds up` returns and leaves them
# running: dropping the handle of a live child makes Python warn "subprocess N is still running" wherever the
# garbage collector happens to run (an unrelated test, with warnings as errors), and the child would then be
# reaped by whichever Popen is created next.  Here each is reaped through its own handle.
_CHILDREN: dict[int, subprocess.Popen] = {}
_CHILDREN_LOCK = threading.Lock()


def _adopt(proc: subprocess.Popen) -> subprocess.Popen:
    """Hold ``proc`` until it has exited and been reaped; children already gone are released."""
    with _CHILDREN_LOCK:
        for pid, child in list(_CHILDREN.items()):
            if child.poll() is not None:
                del _CHILDREN[pid]
        _CHILDREN[proc.pid] = proc
    return proc


def _child(pid: int) -> subprocess.Popen | None:
    with _CHILDREN_LOCK:
        return _CHILDREN.get(pid)


def _reap(pid: int) -> None:
    """Collect the exit status of ``pid`` if it has exited (until then it lingers as a zombie)."""
    child = _child(pid)
    if child is not None and child.returncode is None:  # a released handle may name a reused pid
        child.poll()
        return
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop_processes(procs: list[tuple[str, int, int | None]], timeout: float = 10.0) -> list[str]:
    """Stop many (name, pid, started) at once: SIGTERM all, wait, SIGKILL the stragglers.

    Returns the names that were running; raises if one survives SIGKILL.
    """
    running = [p for p in procs if _alive(p[1], p[2])]
    for sig, wait in ((signal.SIGTERM, timeout * 0.7), (signal.SIGKILL, timeout * 0.3)):
        alive = [p for p in running if _alive(p[1], p[2])]
        for _n, pid, _s in alive:
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                pass
            except PermissionError:
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        delay = 0.005
        while alive and time.monotonic() < deadline:
            for _n, pid, _s in alive:
                _reap(pid)
            alive = [p for p in alive if _alive(p[1], p[2])]
            if alive:
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
        if not alive:
            break
    left = [p[0] for p in running if _alive(p[1], p[2])]
    if left:
        raise DevnetError(f"could not stop {left}")
    return [p[0] for p in running]


class Devnet:
    """Launch, inspect and stop the chains and services of a :class:`NetworkSpec`."""

    def __init__(self, spec: NetworkSpec):
        self.spec = spec
        self.state_dir = spec.state_dir
        self.state_file = self.state_dir / "state.json"
        self._lock = threading.Lock()

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
        tmp = self.state_file.with_suffix(f".tmp{os.getpid()}.{threading.get_ident()}")
        tmp.write_text(json.dumps({"spec": self.spec.path, "chains": {n: asdict(c) for n, c in chains.items()},
                                   "services": {n: asdict(v) for n, v in services.items()}}, indent=2))
        os.replace(tmp, self.state_file)

    def _tag(self) -> dict[str, str]:
        return {DEVNET_TAG: str(self.state_dir.resolve())}

    def _record_service(self, entry: ServiceState) -> None:
        with self._lock:
            services = self.load_services()
            services[entry.name] = entry
            self._save_state(self.load_state(), services)

    # -- up / status / down ---------------------------------------------------------------------

    def up(self) -> dict[str, ChainState]:
        """Start every chain not already running and the storage nodes; wait until each answers."""
        state = self.load_state()
        for chain in self.spec.chains:  # check the whole spec before launching anything
            if chain.external:
                continue
            running = state.get(chain.name)
            if running and is_running(running.pid, running.started):
                continue
            anvil_binary() if chain.engine == "anvil" else ganache_binary()
            if chain.port:  # a busy fixed port is named before anything starts
                self.bind(chain.port, service=chain.name, what=f"chain {chain.name!r} (set port = 0 in "
                                                               f"{self.spec.path} for any free port)").close()
        launched: list[str] = []
        try:
            for chain in self.spec.chains:
                before = state.get(chain.name)
                state[chain.name] = self._up_one(chain, before, state)
                if state[chain.name] is not before and not chain.external:
                    launched.append(chain.name)
                self._save_state(state)
            self.up_storage()
        except BaseException:
            # nothing half-started: stop what this call launched
            self._save_state(state)
            stop_processes([(n, state[n].pid or 0, state[n].started) for n in launched if n in state])
            for n in launched:
                state.pop(n, None)
            self._save_state(state)
            raise
        return state

    # -- services --------------------------------------------------------------------------------

    def bind(self, port: int = 0, *, service: str, what: str = "service") -> socket.socket:
        """A listening socket where the spec places ``service`` (its bind address, inside its network
        namespace if it has one), for the service about to be spawned (0 = any free port)."""
        place = self.spec.place(service)
        return bind_listener(place.bind, port, what=what, netns=place.netns)

    def rebind(self, name: str) -> dict[str, socket.socket]:
        """Listening sockets on the ports a (stopped) service had, to start it again at the same address."""
        svc = self.load_services().get(name)
        if svc is None:
            raise DevnetError(f"no service named {name!r} was started in {self.state_dir}")
        return {ep: self.bind(port, service=name, what=f"{svc.kind} {name!r} ({ep})")
                for ep, port in svc.listen.items()}

    def spawn_service(self, name: str, kind: str, argv: list[str], *, sockets: dict[str, socket.socket],
                      probe: Callable[[str], bool], data_dir: Path | None = None,
                      timeout: float = STARTUP_TIMEOUT, env: dict[str, str] | None = None,
                      url: str | None = None, wait: bool = True, secret: bytes | None = None) -> ServiceState:
        """Start a service on listening sockets bound by the caller, record it at once, and (with
        ``wait``) wait until ``probe(url)`` succeeds.  The sockets are handed to the child
        (``--listen NAME=FD``) and closed here; a service already running is left alone.

        ``secret`` (the service's key) goes through a pipe the child inherits (``--key-fd N``) and reads
        once at start: never through its environment (which is stripped of every key and passphrase) or
        its command line (:mod:`mbds_py.service_keys`)."""
        from .service_keys import KEY_FD_ARG, child_env

        current = self.load_services().get(name)
        if current and is_running(current.pid, current.started):
            for sock in sockets.values():
                sock.close()
            return current
        self.state_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.state_dir / f"{name}.log"
        fds = {ep: sock.fileno() for ep, sock in sockets.items()}
        listen = {ep: bound_port(sock) for ep, sock in sockets.items()}
        place = self.spec.place(name)
        argv = [*netns_prefix(place), *argv, *(a for ep, fd in fds.items() for a in ("--listen", f"{ep}={fd}"))]
        key_r = key_w = None
        if secret is not None:
            key_r, key_w = os.pipe()
            argv += [KEY_FD_ARG, str(key_r)]
        try:
            with open(log_path, "ab") as log:
                proc = _adopt(subprocess.Popen(
                    argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                    cwd=PROJECT_ROOT, pass_fds=tuple(fds.values()) + ((key_r,) if key_r is not None else ()),
                    env=child_env({**(env or {}), **self._tag()})))
        except BaseException:
            if key_w is not None:
                os.close(key_w)
            raise
        finally:
            for sock in sockets.values():
                sock.close()
            if key_r is not None:
                os.close(key_r)
        if key_w is not None:
            try:  # a key is far below the pipe's buffer: this never blocks on the child
                os.write(key_w, bytes(secret).hex().encode() + b"\n")
            except BrokenPipeError:
                pass  # the child died at once: wait_service reports it with its log
            finally:
                os.close(key_w)
        port = listen.get("http") or next(iter(listen.values()), 0)
        url = url or place.url(port)
        entry = ServiceState(name, kind, url, proc.pid, port, str(log_path), process_started(proc.pid), listen,
                             str(data_dir) if data_dir else None)
        self._record_service(entry)
        if wait:
            self.wait_service(entry, probe, timeout)
        return entry

    def wait_service(self, entry: ServiceState, probe: Callable[[str], bool],
                     timeout: float = STARTUP_TIMEOUT) -> None:
        """Poll (with backoff) until a spawned service answers; fail early, with its log, if it exited."""
        proc = _child(entry.pid)
        deadline = time.monotonic() + timeout
        delay = 0.01
        while not probe(entry.url):
            exited = proc.poll() is not None if proc is not None else not is_running(entry.pid, entry.started)
            if exited:
                code = f" with code {proc.returncode}" if proc is not None else ""
                raise DevnetError(f"{entry.kind} {entry.name!r} exited{code} before answering at {entry.url}"
                                  + log_tail(entry.log))
            if time.monotonic() > deadline:
                stop_processes([(entry.name, entry.pid, entry.started)])
                raise DevnetError(f"{entry.kind} {entry.name!r} did not answer at {entry.url} within "
                                  f"{timeout:.0f}s" + log_tail(entry.log))
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def up_storage(self) -> list[ServiceState]:
        """Start the spec's storage nodes (durable data under the state dir; same port on a restart)."""
        import sys

        started = []
        services = self.load_services()
        for i in range(self.spec.storage.nodes):
            name = f"storage-{i}"
            data_dir = self.state_dir / "storage" / name
            current = services.get(name)
            if current and is_running(current.pid, current.started):
                started.append(current)
                continue
            sockets = self.rebind(name) if current else {"http": self.bind(service=name,
                                                                            what=f"storage node {name!r}")}
            argv = [sys.executable, "-m", "mbds_py.storage.node", "--host", self.spec.place(name).bind,
                    "--data-dir", str(data_dir), "--max-blob-size", self.spec.storage.max_blob_size,
                    "--log-level", "WARNING"]
            started.append(self.spawn_service(name, "storage", argv, sockets=sockets, probe=_storage_answers,
                                              data_dir=data_dir, wait=False))
        for entry in started:
            self.wait_service(entry, _storage_answers)
        return started

    def stop_service(self, name: str, *, kill: bool = False) -> bool:
        """Stop one service (SIGKILL with ``kill``, to simulate a crash); True if it was running."""
        svc = self.load_services().get(name)
        if svc is None or not _alive(svc.pid, svc.started):
            return False
        if kill:
            os.killpg(svc.pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while _alive(svc.pid, svc.started) and time.monotonic() < deadline:
                _reap(svc.pid)
                time.sleep(0.005)
            return True
        return bool(stop_processes([(name, svc.pid, svc.started)]))

    def storage_urls(self) -> list[str]:
        services = self.load_services()
        return [services[n].url for n in sorted(services) if services[n].kind == "storage"]

    # -- chains ---------------------------------------------------------------------------------

    def _up_one(self, chain: ChainSpec, current: ChainState | None, state: dict[str, ChainState]) -> ChainState:
        if chain.external:
            cid = wait_for_rpc(chain.rpc_url, None, 10.0, f"external chain {chain.name!r}")
            if cid != chain.chain_id:
                raise DevnetError(f"external chain {chain.name!r} at {chain.rpc_url} has chain ID {cid}, "
                                  f"the spec says {chain.chain_id}")
            return ChainState(chain.name, chain.kind, chain.chain_id, chain.rpc_url, chain.engine, True,
                              chain.institution)
        if current and is_running(current.pid, current.started):
            return current
        self.state_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.state_dir / f"{chain.name}.log"
        # a restarted chain keeps its port (clients hold its URL); a new one takes the spec's or any free port
        port = chain.port or (current.port if current and current.port else 0)
        place = self.spec.place(chain.name)
        try:
            proc, url = start_chain_process(chain.engine, place, port, chain.chain_id, chain.block_time,
                                            log_path, what=f"chain {chain.name!r}", env=self._tag())
        except PortInUseError:
            if chain.port or not port:
                raise
            proc, url = start_chain_process(chain.engine, place, 0, chain.chain_id, chain.block_time,
                                            log_path, what=f"chain {chain.name!r}", env=self._tag())
        entry = ChainState(chain.name, chain.kind, chain.chain_id, url, chain.engine, False, chain.institution,
                           pid=proc.pid, port=int(url.rsplit(":", 1)[1]), log=str(log_path),
                           started=process_started(proc.pid), block_time=chain.block_time)
        state[chain.name] = entry
        self._save_state(state)  # recorded before we wait: `down` can always find it
        try:
            cid = wait_for_rpc(url, proc, STARTUP_TIMEOUT * (2 if chain.engine == "ganache" else 1),
                               f"{chain.engine} for chain {chain.name!r}", log_path)
        except DevnetError:
            stop_processes([(chain.name, proc.pid, entry.started)])
            raise
        if cid != chain.chain_id:
            raise DevnetError(f"chain {chain.name!r} answered with chain ID {cid}, expected {chain.chain_id}")
        return entry

    def status(self) -> list[dict[str, Any]]:
        """One row per chain and per service: kind, URL, pid, whether it answers, log path."""
        state = self.load_state()
        rows = []
        for chain in self.spec.chains:
            entry = state.get(chain.name)
            url = chain.rpc_url if chain.external else (entry.rpc_url if entry else None)
            cid = rpc_chain_id(url) if url else None
            rows.append({
                "name": chain.name, "kind": chain.kind, "engine": "external" if chain.external else chain.engine,
                "chain_id": chain.chain_id, "rpc_url": url, "pid": entry.pid if entry else None,
                "up": cid == chain.chain_id, "log": entry.log if entry else None,
            })
        for name, svc in sorted(self.load_services().items()):
            rows.append({"name": name, "kind": svc.kind, "engine": "mbds", "chain_id": None, "rpc_url": svc.url,
                         "pid": svc.pid, "up": is_running(svc.pid, svc.started), "log": svc.log})
        return rows

    def down(self) -> list[str]:
        """Stop every process this devnet launched; returns the names stopped."""
        services = [(n, s.pid, s.started) for n, s in self.load_services().items()]
        chains = [(n, c.pid, c.started) for n, c in self.load_state().items() if not c.external and c.pid]
        stopped = stop_processes(services) + stop_processes(chains)  # services first: they use the chains
        # a process whose launcher was killed after spawning it but before recording it
        known = {pid for _n, pid, _s in services + chains}
        strays = [(f"unrecorded process {pid}", pid, started)
                  for pid, started in devnet_processes(self.state_dir) if pid not in known]
        stopped += stop_processes(strays)
        if self.state_file.exists():
            self.state_file.unlink()
        return stopped

    def rpc_urls(self) -> dict[str, str]:
        state = self.load_state()
        missing = [c.name for c in self.spec.chains if c.name not in state]
        if missing:
            raise DevnetError(f"chains {missing} are not up; run `mbds up` first")
        return {name: entry.rpc_url for name, entry in state.items()}


def _storage_answers(url: str) -> bool:
    try:
        return requests.post(f"{url}/api/v0/version", timeout=1.0).status_code == 200
    except requests.RequestException:
        return False


def netns_prefix(place: Placement) -> list[str]:
    """The command prefix that starts a process inside the placement's network namespace (if any)."""
    if place.netns is None:
        return []
    if os.geteuid() != 0:
        raise DevnetError(f"the spec places a service in network namespace {place.netns!r}: that needs root "
                          "(`ip netns exec`); drop `netns` from [[hosts]] to run on this machine's addresses")
    return ["ip", "netns", "exec", place.netns]


def start_chain_process(engine: str, place: Placement | str, port: int, chain_id: int, block_time: int,
                        log: Path | None, *, what: str, env: dict[str, str] | None = None
                        ) -> tuple[subprocess.Popen, str]:
    """Start one chain process on ``port`` (0 = any free port) where ``place`` says (a bind address, the
    address it is reached at, a network namespace; a plain string is all three on this machine) and
    return it with its URL.

    The chain binds the port itself; with port 0 the bound port is read from the process's own
    listening socket, so no port is ever probed first.  Nothing is left running on failure.  ``env`` is
    added to the inherited environment.
    """
    if isinstance(place, str):
        place = Placement(place, place)
    host = place.bind
    out = open(log, "ab") if log is not None else subprocess.DEVNULL
    try:
        proc = _adopt(subprocess.Popen(
            [*netns_prefix(place), *chain_command(engine, host, port, chain_id, block_time)], stdout=out,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, cwd=PROJECT_ROOT,
            env={**os.environ, **env} if env else None))
    finally:
        if log is not None:
            out.close()  # type: ignore[union-attr]
    deadline = time.monotonic() + STARTUP_TIMEOUT * (2 if engine == "ganache" else 1)
    delay = 0.005
    while True:
        ports = listening_ports(proc.pid)
        if ports:
            bound = port if port in ports else min(ports)
            url = place.url(bound)
            forget_chain(url)  # an earlier chain of this process may have had the port
            return proc, url
        if proc.poll() is not None:
            busy = f"; port {port} on {host} is busy — free it or use port = 0" if port else ""
            raise (PortInUseError if port else DevnetError)(
                f"{what}: {engine} exited with code {proc.returncode} before listening{busy}" + log_tail(log))
        if time.monotonic() > deadline:
            stop_processes([(what, proc.pid, process_started(proc.pid))])
            raise DevnetError(f"{what}: {engine} did not listen within {STARTUP_TIMEOUT:.0f}s" + log_tail(log))
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def launch_chain(engine: str, chain_id: int, host: str = "127.0.0.1", *,
                 block_time: int = 0) -> tuple[subprocess.Popen, str]:
    """Start one throw-away chain (tests, benchmarks) on any free port; the caller stops it."""
    proc, url = start_chain_process(engine, host, 0, chain_id, block_time, None,
                                    what=f"{engine} (chain ID {chain_id})")
    wait_for_rpc(url, proc, STARTUP_TIMEOUT * 2, f"{engine} (chain ID {chain_id})")
    return proc, url
