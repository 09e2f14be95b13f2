"""Beyond one machine: the network on several hosts, simulated with Linux network namespaces.

Each hospital (its chain and its own replica), the health authorities (their replicas on every chain),
the consortium (its chain and nodes), the storage nodes and each proxy run in a namespace of their own,
on addresses this test creates, joined by veth pairs to one bridge; this process (the doctors' and
patients' clients) reaches them over the bridge.  Nothing listens on 127.0.0.1: every service binds
and advertises the address the spec's ``[[hosts]]`` gives it.  One record goes write → index → grant →
read → revoke → refused; then one namespace's link is cut and the rest keep serving.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import mbds_py
from mbds_py import operations
from mbds_py.devnet import Devnet, listening_ports
from mbds_py.sharing.proxy import ProxyRefused, Refusal
from mbds_py.spec import default_spec_text, load_spec

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("netns")]

if os.geteuid() != 0 or shutil.which("ip") is None:  # a stated reason: namespaces need root and iproute2
    pytest.skip("creating network namespaces needs root and iproute2's `ip`", allow_module_level=True)

# namespace -> the services it hosts (names as in `mbds status`; shell-style patterns)
HOSTS = {
    "hosp-a": ["hospital-a", "hospital-a-replica-0"],
    "hosp-b": ["hospital-b", "hospital-b-replica-0"],
    "plat-c": ["platform-c", "platform-c-replica-0"],
    "auth": ["*-replica-[123]"],
    "cons": ["consortium", "consortium-*"],
    "store": ["storage-*"],
    "px-nha": ["proxy-nha"],
    "px-pha": ["proxy-pha"],
    "px-mha": ["proxy-mha"],
}


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass
class Lab:
    """A bridge in this namespace and one namespace per simulated host, each with a veth to the bridge."""

    tag: str
    subnet: str  # "10.A.B"
    namespaces: dict[str, str] = field(default_factory=dict)  # host label -> namespace name
    addresses: dict[str, str] = field(default_factory=dict)  # host label -> its address

    @property
    def bridge(self) -> str:
        return f"mb{self.tag}"

    def veth(self, label: str) -> str:
        return f"mv{self.tag}{list(HOSTS).index(label)}"

    def create(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.subnet}.1/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for i, label in enumerate(HOSTS):
            ns, addr = f"mbds-{self.tag}-{label}", f"{self.subnet}.{10 + i}"
            _ip("netns", "add", ns)
            self.namespaces[label], self.addresses[label] = ns, addr
            _ip("link", "add", self.veth(label), "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("link", "set", self.veth(label), "master", self.bridge, "up")
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")

    def cut(self, label: str) -> None:
        """Unplug one host: its veth goes down, so nothing reaches it and it reaches nothing."""
        _ip("link", "set", self.veth(label), "down")

    def destroy(self) -> None:
        for ns in self.namespaces.values():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)

    def spec_text(self, state_dir: Path) -> str:
        rules = "".join(f'\n[[hosts]]\naddress = "{self.addresses[label]}"\nnetns = "{self.namespaces[label]}"\n'
                        f"services = {services!r}\n".replace("'", '"') for label, services in HOSTS.items())
        return default_spec_text().replace("[devnet]\n", f'[devnet]\nstate_dir = "{state_dir}"\n', 1) + rules


def _free_subnet() -> str:
    """A 10.x.y.0/24 no interface of this machine uses (another copy of the suite may run a lab too)."""
    used = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, check=True).stdout
    seed = zlib.crc32(f"{os.getpid()}:{secrets.token_hex(4)}".encode())
    for k in range(256):
        subnet = f"10.{200 + (seed + k) % 50}.{(seed >> 8) % 250 + 1}"
        if f" {subnet}." not in used:
            return subnet
    raise RuntimeError("no free 10.x.y.0/24 for the namespace lab")


@pytest.fixture()
def lab():
    tag = f"{os.getpid() % 1000:03d}{secrets.token_hex(1)}"
    lab = Lab(tag, _free_subnet())
    try:
        lab.create()
        yield lab
    finally:
        lab.destroy()


def test_the_network_runs_across_namespaces_and_survives_a_cut_link(lab, tmp_path):
    spec_path = tmp_path / "lab.toml"
    spec_path.write_text(lab.spec_text(tmp_path / "state"))
    spec = load_spec(spec_path)
    passphrase = secrets.token_urlsafe(16)
    operations.up(spec, passphrase, out=lambda line: None)
    try:
        devnet = Devnet(spec)
        services = devnet.load_services()
        chains = devnet.load_state()

        # every service and chain is where the spec put it, reached at its address, never on loopback
        where = {n: s.url for n, s in services.items()} | {n: c.rpc_url for n, c in chains.items()}
        expected = {n: spec.place(n).address for n in where}
        assert {n: u.split("//")[1].rsplit(":", 1)[0] for n, u in where.items()} == expected
        assert "127.0.0.1" not in " ".join(where.values())
        kinds = sorted(s.kind for s in services.values())
        assert kinds.count("replica") == 12 and kinds.count("storage") == 2 and kinds.count("proxy") == 3
        assert kinds.count("consortium") >= 1
        running = [(n, s.pid, s.port) for n, s in services.items()] + [(n, c.pid, c.port) for n, c in chains.items()]
        for name, pid, port in running:  # each process and its listening socket live in its host's namespace
            assert os.readlink(f"/proc/{pid}/ns/net") == _ns_link(spec.place(name).netns), name
            assert port in listening_ports(pid), name

        net = mbds_py.connect(spec.state_dir, passphrase, spec=spec_path)
        rec = net.record("dr-li", "alice", ["icd10|I10"], "Hypertension, started amlodipine 5 mg")
        net.grant("alice", "dr-wang", record=rec.record_id, duration=600)
        assert net.read("dr-wang", "alice", rec.record_id).text == "Hypertension, started amlodipine 5 mg"
        assert net.locate("alice", rec.record_id)  # indexed on the consortium chain
        net.revoke("alice", "dr-wang", record=rec.record_id)
        with pytest.raises(ProxyRefused) as refused:
            net.read("dr-wang", "alice", rec.record_id)
        assert refused.value.code is Refusal.REVOKED

        # unplug the Internet medicine platform's host, then one proxy's: the rest keep serving
        lab.cut("plat-c")
        lab.cut("px-mha")
        after = net.record("dr-li", "alice", ["icd10|E11"], "Type 2 diabetes, metformin 500 mg")
        net.grant("alice", "dr-wang", record=after.record_id, duration=600)
        read = net.read("dr-wang", "alice", after.record_id)
        assert read.text == "Type 2 diabetes, metformin 500 mg" and read.proxies == 2
    finally:
        operations.down(spec)


def _ns_link(ns: str) -> str:
    return f"net:[{os.stat(f'/run/netns/{ns}').st_ino}]"
