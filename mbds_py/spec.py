"""The network spec: which chains a devnet runs, parsed and validated.

A malformed spec raises :class:`~mbds_py.errors.ConfigError` naming the file,
the field and what is expected, before anything is launched.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import ConfigError

ENGINES = ("anvil", "ganache")
KINDS = ("consortium", "private")
DEFAULT_SPEC_NAME = "devnet.toml"


@dataclass(frozen=True)
class ChainSpec:
    """One EVM chain of the network."""

    name: str
    kind: str  # "consortium" | "private"
    chain_id: int
    institution: str
    port: int = 0  # 0 = a free loopback port
    engine: str = "anvil"
    rpc_url: str | None = None  # external chain: nothing is launched
    deployer_key_env: str | None = None
    block_time: int = 0  # seconds between blocks; 0 = mine each transaction as it arrives

    @property
    def external(self) -> bool:
        return self.rpc_url is not None


@dataclass(frozen=True)
class StorageSpec:
    """The bundled storage nodes (Kubo RPC API subset) and the replication factor."""

    nodes: int = 2
    replicas: int = 2
    max_blob_size: str = "64MiB"


@dataclass(frozen=True)
class Placement:
    """Where one service runs: the address it binds, the address others reach it at, and (to simulate
    several machines on one Linux host) the network namespace it is started in."""

    bind: str
    address: str
    netns: str | None = None

    def url(self, port: int) -> str:
        return http_url(self.address, port)


@dataclass(frozen=True)
class HostRule:
    """One ``[[hosts]]`` table: the services (names or shell-style patterns) that run at ``address``."""

    address: str
    services: tuple[str, ...]
    bind: str | None = None  # e.g. "0.0.0.0" behind a routable ``address``; default: ``address``
    netns: str | None = None

    def matches(self, service: str) -> bool:
        return any(fnmatch.fnmatchcase(service, pattern) for pattern in self.services)


@dataclass(frozen=True)
class NetworkSpec:
    """A whole devnet: chains, storage nodes, where each service runs, and where its state lives."""

    path: str
    state_dir: Path
    host: str
    chains: tuple[ChainSpec, ...]
    storage: StorageSpec = StorageSpec()
    hosts: tuple[HostRule, ...] = ()

    def place(self, service: str) -> Placement:
        """Where ``service`` runs (a chain's name, ``<chain>-replica-<i>``, ``storage-<i>``,
        ``consortium-<member>``, ``proxy-<authority>``): the first ``[[hosts]]`` rule naming it, else
        ``[devnet] host``."""
        for rule in self.hosts:
            if rule.matches(service):
                return Placement(rule.bind or rule.address, rule.address, rule.netns)
        return Placement(self.host, self.host)

    def chain(self, name: str) -> ChainSpec:
        for c in self.chains:
            if c.name == name:
                return c
        raise ConfigError(f"no chain named {name!r}; chains are {[c.name for c in self.chains]}", path=self.path)

    @property
    def consortium(self) -> ChainSpec:
        return next(c for c in self.chains if c.kind == "consortium")

    @property
    def private_chains(self) -> tuple[ChainSpec, ...]:
        return tuple(c for c in self.chains if c.kind == "private")


def default_spec_text() -> str:
    return resources.files("mbds_py.data").joinpath(DEFAULT_SPEC_NAME).read_text(encoding="utf-8")


def load_spec(path: str | Path | None = None, *, state_dir: str | Path | None = None) -> NetworkSpec:
    """Load and validate a spec file (the embedded default when ``path`` is None)."""
    if path is None:
        text, label, base = default_spec_text(), "<embedded devnet.toml>", Path.cwd()
    else:
        p = Path(path)
        label, base = str(p), p.resolve().parent
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read the spec file: {exc.strerror}", path=label) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=label) from exc
    return parse_spec(data, label=label, base=base, state_dir=state_dir)


def _get(table: dict[str, Any], key: str, typ: type | tuple[type, ...], field: str, label: str,
         default: Any = ..., expected: str | None = None) -> Any:
    if key not in table:
        if default is ...:
            raise ConfigError(f"missing; expected {expected or _tname(typ)}", path=label, field=field)
        return default
    value = table[key]
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise ConfigError(f"got {value!r}; expected {expected or _tname(typ)}", path=label, field=field)
    return value


def _tname(typ: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", bool: "true or false", list: "a list", dict: "a table"}
    if isinstance(typ, tuple):
        return " or ".join(names.get(t, t.__name__) for t in typ)
    return names.get(typ, typ.__name__)


def parse_spec(data: dict[str, Any], *, label: str = "<spec>", base: Path | None = None,
               state_dir: str | Path | None = None) -> NetworkSpec:
    base = base or Path.cwd()
    unknown = set(data) - {"devnet", "chains", "storage", "hosts"}
    if unknown:
        raise ConfigError(f"unknown section(s) {sorted(unknown)}; expected [devnet], [storage], [[chains]] "
                          "and [[hosts]]", path=label)
    storage = _parse_storage(_get(data, "storage", dict, "storage", label, default={}), label)
    devnet = _get(data, "devnet", dict, "devnet", label, default={})
    host = _address(_get(devnet, "host", str, "devnet.host", label, default="127.0.0.1"), "devnet.host", label)
    engine_default = _get(devnet, "engine", str, "devnet.engine", label, default="anvil")
    if engine_default not in ENGINES:
        raise ConfigError(f"got {engine_default!r}; expected one of {ENGINES}", path=label, field="devnet.engine")
    block_time_default = _get(devnet, "block_time", int, "devnet.block_time", label, default=0)
    spec_dir = _get(devnet, "state_dir", str, "devnet.state_dir", label, default=None)
    sd_path = resolve_state_dir(state_dir, spec_dir, base)

    raw_chains = _get(data, "chains", list, "chains", label, expected="a list of [[chains]] tables")
    if not raw_chains:
        raise ConfigError("empty; expected at least one [[chains]] table", path=label, field="chains")
    chains: list[ChainSpec] = []
    for i, raw in enumerate(raw_chains):
        f = f"chains[{i}]"
        if not isinstance(raw, dict):
            raise ConfigError(f"got {raw!r}; expected a table", path=label, field=f)
        allowed = {"name", "kind", "chain_id", "institution", "port", "engine", "rpc_url", "deployer_key_env",
                   "block_time"}
        extra = set(raw) - allowed
        if extra:
            raise ConfigError(f"unknown key(s) {sorted(extra)}; allowed: {sorted(allowed)}", path=label, field=f)
        name = _get(raw, "name", str, f"{f}.name", label)
        if not name or not all(ch.isalnum() or ch in "-_" for ch in name):
            raise ConfigError(f"got {name!r}; expected letters, digits, '-' or '_'", path=label, field=f"{f}.name")
        kind = _get(raw, "kind", str, f"{f}.kind", label)
        if kind not in KINDS:
            raise ConfigError(f"got {kind!r}; expected one of {KINDS}", path=label, field=f"{f}.kind")
        chain_id = _get(raw, "chain_id", int, f"{f}.chain_id", label)
        if not 0 < chain_id < 2**53:
            raise ConfigError(f"got {chain_id}; expected a positive integer below 2**53", path=label,
                              field=f"{f}.chain_id")
        port = _get(raw, "port", int, f"{f}.port", label, default=0)
        if not 0 <= port <= 65535:
            raise ConfigError(f"got {port}; expected 0 (any free port) to 65535", path=label, field=f"{f}.port")
        engine = _get(raw, "engine", str, f"{f}.engine", label, default=engine_default)
        if engine not in ENGINES:
            raise ConfigError(f"got {engine!r}; expected one of {ENGINES}", path=label, field=f"{f}.engine")
        rpc_url = _get(raw, "rpc_url", str, f"{f}.rpc_url", label, default=None)
        if rpc_url is not None and not rpc_url.startswith(("http://", "https://")):
            raise ConfigError(f"got {rpc_url!r}; expected an http(s):// URL", path=label, field=f"{f}.rpc_url")
        key_env = _get(raw, "deployer_key_env", str, f"{f}.deployer_key_env", label, default=None)
        block_time = _get(raw, "block_time", int, f"{f}.block_time", label, default=block_time_default)
        if not 0 <= block_time <= 3600:
            raise ConfigError(f"got {block_time}; expected 0 (mine on arrival) to 3600 seconds", path=label,
                              field=f"{f}.block_time")
        chains.append(ChainSpec(
            name=name, kind=kind, chain_id=chain_id,
            institution=_get(raw, "institution", str, f"{f}.institution", label, default=name),
            port=port, engine=engine, rpc_url=rpc_url, deployer_key_env=key_env, block_time=block_time,
        ))

    _check_unique(chains, "name", label)
    _check_unique(chains, "chain_id", label)
    ports = [c.port for c in chains if c.port]
    if len(ports) != len(set(ports)):
        raise ConfigError("two chains name the same port; give each its own or use 0", path=label, field="chains.port")
    consortia = [c for c in chains if c.kind == "consortium"]
    if len(consortia) != 1:
        raise ConfigError(f"found {len(consortia)} consortium chains; expected exactly one", path=label,
                          field="chains.kind")
    hosts = _parse_hosts(_get(data, "hosts", list, "hosts", label, default=[],
                              expected="a list of [[hosts]] tables"), label)
    return NetworkSpec(path=label, state_dir=sd_path, host=host, chains=tuple(chains), storage=storage,
                       hosts=hosts)


_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}"
                       r"[A-Za-z0-9])?)*\.?$")
_NETNS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_WILDCARDS = ("0.0.0.0", "::")


def _address(value: str, field: str, label: str, *, wildcard_ok: bool = False) -> str:
    """An IP address or a DNS name; the wildcard addresses only where a service binds, never advertised."""
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        if not _HOSTNAME.match(value):
            raise ConfigError(f"got {value!r}; expected an IP address or a host name", path=label,
                              field=field) from None
        return value
    if ip.is_unspecified and not wildcard_ok:
        raise ConfigError(f"got {value!r}: a wildcard address cannot be reached at; give the address others "
                          "use and put the wildcard in `bind`", path=label, field=field)
    return str(ip)


def _parse_hosts(raw_rules: list[Any], label: str) -> tuple[HostRule, ...]:
    rules = []
    for i, raw in enumerate(raw_rules):
        f = f"hosts[{i}]"
        if not isinstance(raw, dict):
            raise ConfigError(f"got {raw!r}; expected a table", path=label, field=f)
        extra = set(raw) - {"address", "services", "bind", "netns"}
        if extra:
            raise ConfigError(f"unknown key(s) {sorted(extra)}; allowed: address, bind, netns, services",
                              path=label, field=f)
        address = _address(_get(raw, "address", str, f"{f}.address", label), f"{f}.address", label)
        bind = raw.get("bind")
        if bind is not None:
            bind = _address(_get(raw, "bind", str, f"{f}.bind", label), f"{f}.bind", label, wildcard_ok=True)
        services = _get(raw, "services", list, f"{f}.services", label, expected="a list of service names")
        if not services or not all(isinstance(s, str) and s for s in services):
            raise ConfigError(f"got {services!r}; expected service names or patterns such as \"proxy-*\"",
                              path=label, field=f"{f}.services")
        netns = _get(raw, "netns", str, f"{f}.netns", label, default=None)
        if netns is not None and not _NETNS.match(netns):
            raise ConfigError(f"got {netns!r}; expected a network namespace name (letters, digits, '_.-')",
                              path=label, field=f"{f}.netns")
        rules.append(HostRule(address, tuple(services), bind, netns))
    return tuple(rules)


def http_url(host: str, port: int) -> str:
    """``http://host:port``, an IPv6 address in brackets."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _parse_storage(raw: dict[str, Any], label: str) -> StorageSpec:
    extra = set(raw) - {"nodes", "replicas", "max_blob_size"}
    if extra:
        raise ConfigError(f"unknown key(s) {sorted(extra)}; allowed: max_blob_size, nodes, replicas", path=label,
                          field="storage")
    nodes = _get(raw, "nodes", int, "storage.nodes", label, default=2)
    replicas = _get(raw, "replicas", int, "storage.replicas", label, default=min(2, max(nodes, 1)))
    if not 0 <= nodes <= 16:
        raise ConfigError(f"got {nodes}; expected 0 to 16 storage nodes", path=label, field="storage.nodes")
    if nodes and not 1 <= replicas <= nodes:
        raise ConfigError(f"got {replicas}; expected 1 to storage.nodes ({nodes})", path=label,
                          field="storage.replicas")
    size = _get(raw, "max_blob_size", str, "storage.max_blob_size", label, default="64MiB")
    return StorageSpec(nodes=nodes, replicas=replicas, max_blob_size=size)


STATE_DIR_ENV = "MBDS_STATE_DIR"


def default_state_dir() -> Path:
    """The fixed per-user state folder: ``$XDG_STATE_HOME/mbds/network`` (``~/.local/state/mbds/network``)."""
    root = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(root) / "mbds" / "network"


def resolve_state_dir(given: str | Path | None, spec_value: str | None = None, base: Path | None = None) -> Path:
    """Where a network keeps its state: ``--state-dir``, else ``MBDS_STATE_DIR``, else the spec's
    ``devnet.state_dir`` (relative to the spec file), else :func:`default_state_dir` — never the
    current directory."""
    if given:
        return Path(given).expanduser().resolve()
    if os.environ.get(STATE_DIR_ENV):
        return Path(os.environ[STATE_DIR_ENV]).expanduser().resolve()
    if spec_value:
        p = Path(spec_value).expanduser()
        return p if p.is_absolute() else ((base or Path.cwd()) / p).resolve()
    return default_state_dir()


def path_is_embedded(label: str) -> bool:
    return label.startswith("<")


def _check_unique(chains: list[ChainSpec], attr: str, label: str) -> None:
    seen: set[Any] = set()
    for i, c in enumerate(chains):
        v = getattr(c, attr)
        if v in seen:
            raise ConfigError(f"duplicate value {v!r}; each chain needs its own", path=label,
                              field=f"chains[{i}].{attr}")
        seen.add(v)
