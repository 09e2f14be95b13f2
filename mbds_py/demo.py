"""`mbds demo`: the scripted walk-through on embedded defaults.

Stage reached so far (foundation): devnet up → deploy → KMC enrolls the
population → registration on every chain → a table of participants and
chains → devnet down.  Each step is timed and can be written as JSON.
"""

from __future__ import annotations

import json
import secrets
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

from .chain.client import ChainClient
from .chain.identity import IdentityRegistryAgent
from .deploy import Deployer
from .devnet import Devnet
from .identity import Participant
from .kmc import KeyManagementCenter
from .population import DEFAULT_POPULATION
from .spec import load_spec


@dataclass
class Step:
    name: str
    expected: str
    actual: str = ""
    ok: bool = False
    seconds: float = 0.0


class Narrator:
    """Prints progress and keeps the step records."""

    def __init__(self, out: Callable[[str], None] = print):
        self.out = out
        self.steps: list[Step] = []

    @contextmanager
    def step(self, name: str, expected: str) -> Iterator[Step]:
        s = Step(name, expected)
        self.steps.append(s)
        self.out(f"==> {name}")
        t0 = time.perf_counter()
        try:
            yield s
            s.ok = True
        except Exception as exc:
            s.actual = s.actual or f"failed: {exc}"
            raise
        finally:
            s.seconds = time.perf_counter() - t0
            self.out(f"    {'ok' if s.ok else 'FAILED'}: {s.actual} ({s.seconds:.2f}s)")


def run_demo(*, spec_path: str | None = None, json_file: str | None = None, keep: bool = False,
             out: Callable[[str], None] = print) -> list[Step]:
    """Run the demo end to end; always tears the devnet down unless ``keep``."""
    workdir = Path(tempfile.mkdtemp(prefix="mbds-demo-"))
    spec = load_spec(spec_path, state_dir=workdir / "devnet")
    devnet = Devnet(spec)
    narrator = Narrator(out)
    passphrase = secrets.token_urlsafe(24)  # held in memory only, for this run's keystores
    try:
        with narrator.step("devnet up", f"{len(spec.chains)} chains answer") as s:
            state = devnet.up()
            s.actual = ", ".join(f"{n}={c.rpc_url}" for n, c in state.items())
        kmc = KeyManagementCenter(workdir / "kmc", passphrase)
        with narrator.step("deploy", "IdentityRegistry on every chain") as s:
            table, created = Deployer(spec, kmc.account.address).deploy_all()
            s.actual = f"{len(created)} contracts deployed"
        with narrator.step("deploy again", "idempotent: nothing deployed") as s:
            _t, created_again = Deployer(spec, kmc.account.address).deploy_all()
            if created_again:
                raise RuntimeError(f"re-deploy created {created_again}")
            s.actual = "nothing deployed"
        people: dict[str, Participant] = {}
        with narrator.step("KMC enrolls the population", f"{len(DEFAULT_POPULATION)} key sets") as s:
            for m in DEFAULT_POPULATION:
                inst = people.get(m.institution) if m.institution else None
                people[m.name] = kmc.enroll(m.name, m.role, m.real_identity, passphrase, institution=inst)
            s.actual = f"{len(people)} keystores written (scrypt + AES-GCM)"
        urls = devnet.rpc_urls()
        with narrator.step("register on every chain", "every participant on every chain") as s:
            for chain in spec.chains:
                client = ChainClient(urls[chain.name], name=chain.name)
                agent = IdentityRegistryAgent(client, table[chain.name]["IdentityRegistry"].address)
                for p in people.values():
                    if not agent.is_registered(p.id):
                        agent.register(kmc.account, p)
                if agent.count() != len(people):
                    raise RuntimeError(f"{chain.name}: {agent.count()} registered, expected {len(people)}")
            s.actual = f"{len(people)} participants × {len(spec.chains)} chains"
        out("")
        out(_table(["chain", "kind", "chain ID", "RPC URL", "IdentityRegistry"],
                   [[c.name, c.kind, str(c.chain_id), urls[c.name], table[c.name]["IdentityRegistry"].address]
                    for c in spec.chains]))
        out("")
        out(_table(["participant", "role", "ID", "address", "institution"],
                   [[p.name, p.role.label, p.id_hex[:18] + "…", p.address,
                     next((q.name for q in people.values() if q.id == p.institution), "")]
                    for p in people.values()]))
        out("")
    finally:
        if not keep:
            with narrator.step("devnet down", "no process left") as s:
                stopped = devnet.down()
                s.actual = f"stopped {len(stopped)} chains"
            shutil.rmtree(workdir, ignore_errors=True)
        if json_file:
            Path(json_file).write_text(json.dumps([asdict(st) for st in narrator.steps], indent=2))
    out(_table(["step", "expected", "ok", "seconds"],
               [[st.name, st.expected, "yes" if st.ok else "NO", f"{st.seconds:.2f}"] for st in narrator.steps]))
    return narrator.steps


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])
