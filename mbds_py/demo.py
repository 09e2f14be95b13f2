"""`mbds demo`: the scripted walk-through on embedded defaults.

Stages: devnet up (chains + storage nodes) → the KMC enrolls the population
→ deploy (idempotent) → registration on every chain → PBFT replica processes
per private chain → a record written, confirmed, committed, anchored and
proven → tables of chains and participants → devnet down.  Each step is timed
and can be written as JSON (``--json``).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

from .errors import MBDSError
from .network import Network, PrivateChainSettings
from .private.cluster import wait_until
from .sharing.records import record_visit  # noqa: F401 - the demo's first record; re-exported for scripts
from .spec import STATE_DIR_ENV, default_state_dir, load_spec


class DemoError(MBDSError, RuntimeError):
    """The demo cannot start where it was asked to."""


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
             out: Callable[[str], None] = print, sharing: bool = True, state_dir: str | None = None,
             passphrase: str | None = None) -> list[Step]:
    """Run the demo end to end; always tears the devnet down unless ``keep``.

    ``passphrase`` encrypts every participant's keystore (a random one, never shown, by default);
    ``state_dir`` keeps the network's state there instead of a temporary folder.
    """
    default = not state_dir and not os.environ.get(STATE_DIR_ENV)
    spec = load_spec(spec_path, state_dir=state_dir or (DEMO_STATE_DIR() if default else None))
    prepare_state_dir(spec, scratch=default, reuse=passphrase is not None)
    out(f"state: {spec.state_dir}")
    narrator = Narrator(out)
    # held in memory only, for this run's keystores; passed to no file and no log
    net = Network(spec, passphrase or secrets.token_urlsafe(24),
                  settings=PrivateChainSettings(max_slips=32, max_wait=0.5))
    try:
        with narrator.step("devnet up", f"{len(spec.chains)} chains and {spec.storage.nodes} storage nodes answer") as s:
            state = net.devnet.up()
            s.actual = ", ".join(f"{n}={c.rpc_url}" for n, c in state.items())
        with narrator.step("KMC enrolls the population", f"{len(net.population)} key sets") as s:
            net.enroll()
            s.actual = f"{len(net.people)} keystores written (scrypt + AES-GCM)"
        with narrator.step("deploy", "IdentityRegistry everywhere, SlipLedger on each private chain") as s:
            created = net.deploy()
            s.actual = f"{len(created)} contracts deployed"
        with narrator.step("deploy again", "idempotent: nothing deployed") as s:
            again = net.deploy()
            if again:
                raise RuntimeError(f"re-deploy created {again}")
            s.actual = "nothing deployed"
        with narrator.step("register on every chain", "every participant on every chain") as s:
            n = net.register()
            s.actual = f"{n} registrations ({len(net.people)} participants × {len(spec.chains)} chains)"
        with narrator.step("consortium election", f"credit-scored DPoS: {net.dpos.rpn_count} RPN, "
                           f"{net.dpos.atn_count} ATN") as s:
            seats = net.setup_consortium()
            s.actual = f"RPN {', '.join(seats['rpn'])}; ATN {', '.join(seats['atn'])}"
        with narrator.step("start nodes", "4 PBFT replicas per private chain + RPN/ATN consortium nodes") as s:
            clusters = net.start_nodes()
            s.actual = (", ".join(f"{c}: {len(h.api_urls)} replicas" for c, h in clusters.items())
                        + f"; {len(net.consortium_nodes)} consortium nodes")
        with narrator.step("online consultation recorded", "doctor signs, patient confirms, PBFT commits, "
                           "receipt verifies on chain") as s:
            receipt = record_visit(net, "dr-zhao", "alice", "icd10|J06.9", "Online consultation: acute URTI")
            s.actual = (f"slip 0x{receipt.slip_id.hex()[:12]}… in block {receipt.height} of platform-c, "
                        f"anchored and proven against SlipLedger")
        with narrator.step("summary indexed on the consortium", "bridge → RPN block → ATN cross-chain audit → "
                           "ConsortiumIndex") as s:
            items = wait_for_items(net, "alice", 1, timeout=90)
            s.actual = f"{len(items)} item(s) of alice at consortium height(s) {sorted({i['height'] for i in items})}"
        if sharing:
            from .sharing.journey import run_journey, run_policy_script

            world = run_journey(net, narrator, out=out)  # the paper's hybrid journey (starts the proxies)
            run_policy_script(net, narrator, world=world)  # grant / revoke / threshold / emergency / expiry
        urls = net.devnet.rpc_urls()
        out("")
        out(_table(["chain", "kind", "chain ID", "RPC URL", "contracts"],
                   [[c.name, c.kind, str(c.chain_id), urls[c.name], ", ".join(net.deployments[c.name])]
                    for c in spec.chains]))
        out("")
        out(_table(["participant", "role", "ID", "address", "institution"],
                   [[p.name, p.role.label, p.id_hex[:18] + "…", p.address,
                     next((q.name for q in net.people.values() if q.id == p.institution), "")]
                    for p in net.people.values()]))
        out("")
    except Exception:  # noqa: BLE001 - the failing step holds the reason; the table below shows it
        pass
    finally:
        if not keep or not all(st.ok for st in narrator.steps):
            with narrator.step("network down", "no process left") as s:
                stopped = net.stop()
                s.actual = f"stopped {len(stopped)} processes"
        if json_file:
            Path(json_file).write_text(json.dumps([asdict(st) for st in narrator.steps], indent=2))
    out(_table(["step", "expected", "ok", "seconds"],
               [[st.name, st.expected, "yes" if st.ok else "NO", f"{st.seconds:.2f}"] for st in narrator.steps]))
    failed = [st for st in narrator.steps if not st.ok]
    if failed:
        out(f"\nFAILED at step {failed[0].name!r}: {failed[0].actual}\nlogs: {spec.state_dir}")
        return narrator.steps
    if keep:
        out(f"\nThe network keeps running (state: {spec.state_dir}). Web portals, one per participant:\n"
            f"  mbds portal --as alice --state-dir {spec.state_dir}\n"
            f"  mbds portal --as dr-li --state-dir {spec.state_dir}\n"
            f"Stop it with: mbds down --state-dir {spec.state_dir}")
    return narrator.steps


def DEMO_STATE_DIR() -> Path:  # noqa: N802 - a constant that depends on the user's home
    """The demo's own scratch folder beside the default network state: each run starts it afresh."""
    return default_state_dir().parent / "demo"


def prepare_state_dir(spec, *, scratch: bool, reuse: bool) -> None:
    """Refuse a folder where a network runs; start the demo's scratch folder afresh; keep a folder the
    user named only when its keystores can be opened (``reuse``: the passphrase was given)."""
    from .devnet import Devnet, is_running

    devnet = Devnet(spec)
    running = [n for n, c in devnet.load_state().items() if is_running(c.pid, c.started)]
    running += [n for n, s in devnet.load_services().items() if is_running(s.pid, s.started)]
    if running:
        raise DemoError(f"a network is running in {spec.state_dir} ({len(running)} processes); stop it with "
                        f"`mbds down --state-dir {spec.state_dir}` or pass another --state-dir")
    if not spec.state_dir.exists() or not any(spec.state_dir.iterdir()):
        return
    if scratch:
        shutil.rmtree(spec.state_dir)
    elif not reuse:
        raise DemoError(f"{spec.state_dir} holds an earlier network; pass --keep with its passphrase to reuse "
                        "it, remove it, or choose another --state-dir")
    else:
        from .operations import forget_stopped_network

        forget_stopped_network(spec, lambda line: None)


def wait_for_items(net: Network, patient: str, count: int, timeout: float) -> list[dict]:
    """Poll a consortium node until ``count`` summary items of ``patient`` are indexed."""
    import requests

    url = next(iter(net.consortium_nodes.values()))
    pid = net.people[patient].id_hex

    def items():
        resp = requests.get(f"{url}/v1/items?patient={pid}", timeout=10)
        found = resp.json().get("items", []) if resp.status_code == 200 else []
        return found if len(found) >= count else None

    return wait_until(items, timeout, f"{count} consortium item(s) of {patient}", interval=0.25)


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])
