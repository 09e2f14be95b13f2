"""Devnet lifecycle with real chain processes: up, status, down, no orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mbds_py.devnet import Devnet, devnet_processes, is_running, rpc_chain_id, stop_processes
from mbds_py.errors import ConfigError, PortInUseError
from mbds_py.spec import load_spec

pytestmark = pytest.mark.xdist_group("devnet")


def spec_file(tmp_path: Path, *, extra: str = "", port: int = 0, second_id: int = 2002, storage: int = 0) -> Path:
    p = tmp_path / "net.toml"
    p.write_text(f"""
[devnet]
state_dir = "state"

[storage]
nodes = {storage}
replicas = {min(storage, 2) or 1}

[[chains]]
name = "consortium"
kind = "consortium"
chain_id = 2001
port = {port}

[[chains]]
name = "hospital-a"
kind = "private"
chain_id = {second_id}
{extra}
""")
    return p


def alive(entries) -> list[int]:
    return [e.pid for e in entries if e.pid and is_running(e.pid, e.started)]


def test_up_status_down_leaves_no_process(tmp_path):
    devnet = Devnet(load_spec(spec_file(tmp_path)))
    state = devnet.up()
    try:
        assert {n: c.chain_id for n, c in state.items()} == {"consortium": 2001, "hospital-a": 2002}
        for c in state.values():
            assert rpc_chain_id(c.rpc_url) == c.chain_id
        rows = devnet.status()
        assert [r["up"] for r in rows] == [True, True]
        assert devnet.up() == state  # idempotent: running chains are kept
    finally:
        stopped = devnet.down()
    assert sorted(stopped) == ["consortium", "hospital-a"]
    assert alive(state.values()) == []
    assert not devnet.state_file.exists()
    assert [r["up"] for r in devnet.status()] == [False, False]


def test_external_chain_is_not_launched_or_stopped(tmp_path, anvil_url):
    from tests.conftest import TEST_CHAIN_ID

    extra = f'rpc_url = "{anvil_url}"'
    devnet = Devnet(load_spec(spec_file(tmp_path, extra=extra, second_id=TEST_CHAIN_ID)))
    state = devnet.up()
    try:
        ext = state["hospital-a"]
        assert ext.external and ext.pid is None and ext.rpc_url == anvil_url
    finally:
        devnet.down()
    assert rpc_chain_id(anvil_url) == TEST_CHAIN_ID  # still running: not ours to stop


def test_external_chain_with_wrong_chain_id_is_refused(tmp_path, anvil_url):
    devnet = Devnet(load_spec(spec_file(tmp_path, extra=f'rpc_url = "{anvil_url}"', second_id=9)))
    from mbds_py.errors import DevnetError

    try:
        with pytest.raises(DevnetError, match="chain ID"):
            devnet.up()
    finally:
        devnet.down()


def test_busy_port_is_named_and_nothing_is_launched(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        devnet = Devnet(load_spec(spec_file(tmp_path, port=port)))
        with pytest.raises(PortInUseError, match=f"port {port}"):
            devnet.up()
    assert devnet.load_state() == {}


def test_down_after_launcher_crash_stops_everything(tmp_path):
    """SIGKILL `mbds devnet up` once it has spawned a chain; `down` still finds every process."""
    spec = spec_file(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "mbds_py.cli", "devnet", "up", "--spec", str(spec)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    devnet = Devnet(load_spec(spec))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not devnet.load_state():
        if proc.poll() is not None:
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    recorded = devnet.load_state()
    assert recorded, "the launcher recorded nothing before it was killed"
    devnet.down()
    assert alive(recorded.values()) == []


def children_of(pid: int) -> list[tuple[int, int]]:
    """(pid, start time) of the live children of ``pid``, read from /proc."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fields = Path(f"/proc/{name}/stat").read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
            found.append((int(name), int(fields[19])))
    return found


@pytest.fixture
def slow_helper_child(tmp_path, monkeypatch) -> Path:
    """Put a `file` on PATH that lingers for a second: the launcher's imports run `file` (pycryptodome calls
    ``platform.architecture()``), so its first child is then, visibly, no chain of its own."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "file").write_text('#!/bin/sh\nsleep 1\nexec /usr/bin/file "$@"\n')
    (shim / "file").chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim}{os.pathsep}{os.environ['PATH']}")
    return shim


@pytest.mark.parametrize("helper", [False, True], ids=["plain", "with-an-unrelated-child"])
def test_down_stops_a_chain_its_launcher_spawned_but_never_recorded(tmp_path, request, helper):
    """SIGKILL `mbds devnet up` the moment its first chain process exists, before it can record it (it
    records a chain once the chain listens): `down` finds and stops that process all the same.  A child
    of the launcher that is no chain (`file`, run by an import) is neither waited for nor stopped."""
    if helper:
        request.getfixturevalue("slow_helper_child")
    spec = spec_file(tmp_path)
    devnet = Devnet(load_spec(spec))
    proc = subprocess.Popen([sys.executable, "-m", "mbds_py.cli", "devnet", "up", "--spec", str(spec)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    spawned: list[tuple[int, int]] = []
    others: set[tuple[int, int]] = set()
    while not spawned and proc.poll() is None and time.monotonic() < deadline:
        children = children_of(proc.pid)
        tagged = set(devnet_processes(devnet.state_dir)) if children else set()
        spawned = [c for c in children if c in tagged]  # a chain, after its exec
        others.update(c for c in children if c not in spawned)
        time.sleep(0.001)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    try:
        assert spawned, "the launcher started no chain before it exited or the deadline"
        unrecorded = {pid for pid, _ in spawned} - {c.pid for c in devnet.load_state().values()}
        stopped = devnet.down()
        assert [pid for pid, started in spawned if is_running(pid, started)] == []
        assert {f"unrecorded process {pid}" for pid in unrecorded} <= set(stopped)
        assert devnet_processes(devnet.state_dir) == []
        if helper:  # the lingering `file` was the launcher's first child, and was not taken for a chain
            assert others
    finally:
        stop_processes([("helper", pid, started) for pid, started in others])


def test_malformed_spec_launches_nothing(tmp_path):
    bad = spec_file(tmp_path).read_text().replace("chain_id = 2002", "chain_id = -1")
    p = tmp_path / "bad.toml"
    p.write_text(bad)
    with pytest.raises(ConfigError, match="chains\\[1\\].chain_id"):
        load_spec(p)
    assert not (tmp_path / "state").exists()


def test_cli_reports_config_error_with_exit_code_2(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[[chains]]\nname = 1\n")
    out = subprocess.run([sys.executable, "-m", "mbds_py.cli", "devnet", "up", "--spec", str(p)],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert "chains[0].name" in out.stderr and "expected a string" in out.stderr


def test_devnet_runs_storage_nodes_and_stops_them(tmp_path):
    from mbds_py.storage.client import KuboClient

    devnet = Devnet(load_spec(spec_file(tmp_path, storage=2)))
    devnet.up()
    services = devnet.load_services()
    try:
        urls = devnet.storage_urls()
        assert len(urls) == 2
        cid = KuboClient(urls[0]).add(b"hello storage")
        assert KuboClient(urls[0]).cat(cid) == b"hello storage"
        rows = {r["name"]: r for r in devnet.status()}
        assert rows["storage-0"]["up"] and rows["storage-1"]["up"]
    finally:
        stopped = devnet.down()
    assert {"storage-0", "storage-1"} <= set(stopped)
    assert [s.pid for s in services.values() if is_running(s.pid, s.started)] == []
    # blobs are durable: a second `up` serves what the first stored
    devnet.up()
    try:
        assert KuboClient(devnet.storage_urls()[0]).cat(cid) == b"hello storage"
    finally:
        devnet.down()


def test_a_devnet_left_running_drops_no_handle_of_a_live_process(tmp_path, monkeypatch):
    """`mbds up` returns and leaves its chains and services running: the launcher object may go, but the handle
    of a live process must not.  Python warns "subprocess N is still running" wherever the garbage collector
    happens to drop such a handle, which once failed an unrelated test on the same pytest worker that turns
    warnings into errors."""
    import gc
    import warnings

    spec = load_spec(spec_file(tmp_path, storage=1))
    dropped = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: dropped.append(f"{u.exc_type.__name__}: {u.exc_value}"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", ResourceWarning)
            Devnet(spec).up()  # two chains and a storage node; the launcher object is dropped at once
            gc.collect()
        running = Devnet(spec).status()
        assert [r["name"] for r in running if r["up"]] == ["consortium", "hospital-a", "storage-0"]
    finally:
        stopped = Devnet(spec).down()
    assert dropped == []
    assert sorted(stopped) == ["consortium", "hospital-a", "storage-0"]
