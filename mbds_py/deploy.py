"""`mbds deploy`: each chain's contracts per the spec, idempotently.

A deployment is recorded in ``<state_dir>/deployments.json`` with the address,
the hash of the creation bytecode it was built from and the hash of the code
found on chain.  Re-running finds a deployment whose on-chain code and
artifact both still match and deploys nothing; a restarted chain (no code at
the address) or changed sources get a fresh deployment.  A contract deployed
afresh takes the contracts that bind its address with it (``BINDS``): none is
left pointing at a replaced one, and a CreditRegistry, which binds its
ConsortiumIndex as its clock once, is never left with a replaced clock.
"""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from .chain.client import ChainClient
from .chain.governance import GovernanceParams
from .consortium.credit import Incentives, Weights
from .devnet import DEV_DEPLOYER_KEY, Devnet
from .errors import DeploymentError
from .spec import ChainSpec, NetworkSpec
from .toolchain import artifact

# Which contracts each kind of chain carries, with their constructor arguments.
# A callable receives the deploy context (KMC address, already-deployed addresses).
DeployArgs = Callable[["DeployContext"], tuple]
PLAN: dict[str, list[tuple[str, DeployArgs]]] = {
    "private": [
        ("IdentityRegistry", lambda ctx: (ctx.kmc_address, *ctx.dpos.governance.as_args())),
        ("SlipLedger", lambda ctx: (list(ctx.validators[ctx.chain.name]),)),
    ],
    "consortium": [
        ("IdentityRegistry", lambda ctx: (ctx.kmc_address, *ctx.dpos.governance.as_args())),
        ("CreditRegistry", lambda ctx: (ctx.addresses["IdentityRegistry"], ctx.dpos.rpn_count, ctx.dpos.atn_count,
                                        ctx.dpos.reserve, Weights().as_tuple(), Incentives().as_tuple())),
        ("ConsortiumIndex", lambda ctx: (ctx.addresses["CreditRegistry"], int(time.time()), ctx.dpos.slot_seconds,
                                         ctx.dpos.quorum)),
        ("AccessPolicy", lambda ctx: _access_policy_args(ctx)),
    ],
}

# Contracts bound to each other's addresses: a fresh deployment of the key redeploys the values.
BINDS: dict[str, tuple[str, ...]] = {
    "IdentityRegistry": ("CreditRegistry", "AccessPolicy"),  # constructor argument
    "CreditRegistry": ("ConsortiumIndex",),  # constructor argument
    "ConsortiumIndex": ("CreditRegistry",),  # the registry's clock, bound once (setClock)
}


@dataclass(frozen=True)
class DposParams:
    """Consortium DPoS sizes: the paper's 101 RPN / 20 ATN, a small devnet by default."""

    rpn_count: int = 5
    atn_count: int = 3
    reserve: int = 4
    slot_seconds: int = 4
    quorum: int = 2
    # AccessPolicy (consortium chain)
    request_ttl: int = 7 * 24 * 3600
    emergency_window: int = 24 * 3600
    emergency_max_duration: int = 24 * 3600
    emergency_quorum: int = 2
    # Every chain's AuthorityGovernor (created by its IdentityRegistry): k of the authorities (default 2 of
    # the devnet's nha, pha, mha) approve a governance operation; parameter changes wait the delay (1 day).
    governance: GovernanceParams = GovernanceParams()


def _access_policy_args(ctx: "DeployContext") -> tuple:
    """AccessPolicy(registry, requestTtl, emergencyApprovalWindow, emergencyMaxDuration, emergencyQuorum)."""
    d = ctx.dpos
    return (ctx.addresses["IdentityRegistry"], d.request_ttl, d.emergency_window, d.emergency_max_duration,
            d.emergency_quorum)


FUNDING_WEI = 10_000 * 10**18


@dataclass(frozen=True)
class DeployContext:
    chain: ChainSpec
    kmc_address: str
    addresses: dict[str, str]
    validators: dict[str, list[str]]  # private chain -> PBFT validator accounts
    dpos: "DposParams"


@dataclass(frozen=True)
class Deployment:
    """One deployed contract."""

    contract: str
    address: str
    code_hash: str
    artifact_hash: str
    block: int


def deployer_for(chain: ChainSpec) -> LocalAccount:
    """The funded account that deploys: the dev key on launched chains, an env key on external ones."""
    if not chain.external:
        return Account.from_key(DEV_DEPLOYER_KEY)
    env = chain.deployer_key_env
    if not env or not os.environ.get(env):
        raise DeploymentError(f"external chain {chain.name!r} needs a funded deployer key: set the environment "
                              f"variable named by its deployer_key_env ({env or 'not set in the spec'})")
    return Account.from_key(os.environ[env])


class Deployer:
    """Deploys the PLAN onto every chain of a running devnet."""

    def __init__(self, spec: NetworkSpec, kmc_address: str, validators: dict[str, list[str]] | None = None,
                 dpos: "DposParams | None" = None):
        self.spec = spec
        self.kmc_address = kmc_address
        self.validators = validators or {}
        self.dpos = dpos or DposParams()
        self.file = spec.state_dir / "deployments.json"
        self._lock = threading.Lock()

    def load(self) -> dict[str, dict[str, Deployment]]:
        if not self.file.is_file():
            return {}
        raw = json.loads(self.file.read_text())
        return {chain: {c: Deployment(**d) for c, d in entries.items()} for chain, entries in raw.items()}

    def _save(self, table: dict[str, dict[str, Deployment]]) -> None:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps({ch: {c: asdict(d) for c, d in e.items()} for ch, e in table.items()}, indent=2))
        os.replace(tmp, self.file)

    def deploy_all(self, *, fund: list[str] | None = None) -> tuple[dict[str, dict[str, Deployment]], list[str]]:
        """Deploy what is missing; returns (all deployments, list of 'chain/contract' newly deployed).

        Chains are independent: each is deployed in its own thread (on chains with a block time this
        divides the wait by the number of chains); the table is saved after every contract.
        """
        urls = Devnet(self.spec).rpc_urls()
        table = self.load()
        for chain in self.spec.chains:  # the checks that need no chain, before anything is sent
            if chain.kind == "private" and chain.name not in self.validators and \
                    "SlipLedger" not in table.get(chain.name, {}):
                raise DeploymentError(f"no PBFT validators known for {chain.name!r}: enroll the hospital and "
                                      "the health authorities first (see mbds_py.network)")
        for chain in self.spec.chains:  # the table lists chains in spec order, whichever thread finishes first
            table.setdefault(chain.name, {})
        with ThreadPoolExecutor(max_workers=len(self.spec.chains), thread_name_prefix="deploy") as pool:
            jobs = [pool.submit(self._deploy_chain, chain, urls[chain.name], table, fund or [])
                    for chain in self.spec.chains]
            created = [name for job in jobs for name in job.result()]  # in spec and deployment order
        self._save(table)
        return table, created

    def _deploy_chain(self, chain: ChainSpec, url: str, table: dict[str, dict[str, Deployment]],
                      fund: list[str]) -> list[str]:
        """Fund and deploy what one chain misses; returns the 'chain/contract' names deployed."""
        created: list[str] = []
        client = ChainClient(url, name=chain.name)
        deployer = deployer_for(chain)
        sender = client.sender(deployer)
        topups = [sender.submit(addr, b"", value=FUNDING_WEI, gas=21_000, contract="transfer", function="transfer")
                  for addr in [self.kmc_address, *fund] if client.w3.eth.get_balance(addr) < FUNDING_WEI // 10]
        for tx in topups:  # sent together, then awaited
            tx.wait()
        with self._lock:
            entries = table.setdefault(chain.name, {})
        addresses = {c: d.address for c, d in entries.items()}
        plan = PLAN[chain.kind]
        names = [n for n, _ in plan]
        stale = {n for n in names if not self._current(client, entries.get(n), n)}
        while True:  # close over the bindings: a stale contract makes the ones bound to it stale
            more = {b for n in stale for b in BINDS.get(n, ()) if b in names} - stale
            if not more:
                break
            stale |= more
        for name, args in plan:
            if name not in stale:
                continue
            art = artifact(name)
            art_hash = "0x" + keccak(bytes.fromhex(art.bytecode)).hex()
            if chain.kind == "private" and name == "SlipLedger" and chain.name not in self.validators:
                raise DeploymentError(f"no PBFT validators known for {chain.name!r}: enroll the hospital and "
                                      "the health authorities first (see mbds_py.network)")
            ctx = DeployContext(chain, self.kmc_address, addresses, self.validators, self.dpos)
            address, receipt = client.deploy(name, art.abi, art.bytecode, deployer, *args(ctx))
            code_hash = client.code_hash(address)
            if code_hash is None:
                raise DeploymentError(f"{chain.name}: {name} deployed at {address} but has no code")
            addresses[name] = address
            with self._lock:
                entries[name] = Deployment(name, address, code_hash, art_hash, receipt["blockNumber"])
                self._save(table)
            created.append(f"{chain.name}/{name}")
        return created

    @staticmethod
    def _current(client: ChainClient, deployment: "Deployment | None", name: str) -> bool:
        """The recorded deployment still has its code and was built from today's artifact."""
        if deployment is None:
            return False
        art_hash = "0x" + keccak(bytes.fromhex(artifact(name).bytecode)).hex()
        return deployment.artifact_hash == art_hash and client.code_hash(deployment.address) == deployment.code_hash

    def address(self, chain: str, contract: str) -> str:
        try:
            return self.load()[chain][contract].address
        except KeyError:
            raise DeploymentError(f"{contract} is not deployed on {chain!r}; run `mbds deploy`") from None


def state_path(spec: NetworkSpec, *parts: str) -> Path:
    return spec.state_dir.joinpath(*parts)
