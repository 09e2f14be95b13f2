"""Operations: race-free ports, `mbds deploy` alone, `mbds up/status/logs/down`, clean errors."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mbds_py.devnet import Devnet, is_running, listening_ports, start_chain_process, stop_processes
from mbds_py.errors import ConfigError, DevnetError, PortInUseError
from mbds_py.listen import bind_listener
from mbds_py.population import load_population
from mbds_py.spec import load_spec
from tests.foundation.test_devnet import spec_file

pytestmark = pytest.mark.xdist_group("devnet")
PASSPHRASE = "ops-test passphrase"


def mbds(*args: str, stdin: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MBDS_STATE_DIR", "MBDS_PASSPHRASE")}
    return subprocess.run([sys.executable, "-m", "mbds_py.cli", *args], input=stdin, capture_output=True,
                          text=True, timeout=timeout, env=env)


# -- ports ------------------------------------------------------------------------------------


def test_bind_listener_names_a_busy_port():
    held = bind_listener("127.0.0.1", 0)
    port = held.getsockname()[1]
    try:
        with pytest.raises(PortInUseError, match=f"storage node 'x': port {port} on 127.0.0.1 is busy"):
            bind_listener("127.0.0.1", port, what="storage node 'x'")
    finally:
        held.close()


def test_any_port_is_taken_below_the_ephemeral_range():
    """A service on "any port" gets one that outgoing connections never use, so a restart on it finds it free."""
    from mbds_py.listen import STABLE_PORTS_FROM, ephemeral_range

    socks = [bind_listener("127.0.0.1", 0) for _ in range(20)]
    try:
        ports = {s.getsockname()[1] for s in socks}
    finally:
        for s in socks:
            s.close()
    assert len(ports) == 20
    assert all(STABLE_PORTS_FROM <= p < ephemeral_range()[0] for p in ports), sorted(ports)


def test_any_port_steps_over_a_busy_candidate(monkeypatch):
    from mbds_py import listen

    held = bind_listener("127.0.0.1", 0)
    busy = held.getsockname()[1]
    free = listen.stable_port_candidates()
    monkeypatch.setattr(listen, "stable_port_candidates", lambda: [busy, busy, *free])
    try:
        got = bind_listener("127.0.0.1", 0)
        assert got.getsockname()[1] != busy and got.getsockname()[1] in free
        got.close()
    finally:
        held.close()


def test_a_chain_on_port_0_reports_the_port_it_bound():
    proc, url = start_chain_process("anvil", "127.0.0.1", 0, 43901, 0, None, what="test chain")
    try:
        port = int(url.rsplit(":", 1)[1])
        assert listening_ports(proc.pid) == {port}
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_a_busy_fixed_chain_port_is_named_and_nothing_keeps_running(tmp_path):
    held = bind_listener("127.0.0.1", 0)
    port = held.getsockname()[1]
    try:
        with pytest.raises(PortInUseError, match=f"port {port} on 127.0.0.1 is busy"):
            start_chain_process("anvil", "127.0.0.1", port, 43902, 0, tmp_path / "chain.log", what="chain 'c'")
    finally:
        held.close()
    assert (tmp_path / "chain.log").exists()  # the log the error quotes is kept for the user


def test_a_service_gets_the_socket_the_launcher_bound_and_keeps_its_port_on_restart(tmp_path):
    devnet = Devnet(load_spec(spec_file(tmp_path, storage=1)))
    (entry,) = devnet.up_storage()
    try:
        assert listening_ports(entry.pid) == {entry.port} == set(entry.listen.values())
        assert devnet.stop_service(entry.name, kill=True)
        (again,) = devnet.up_storage()
        assert again.pid != entry.pid and again.port == entry.port and again.url == entry.url
    finally:
        devnet.down()
    assert not is_running(again.pid, again.started)


# The main thread leaves (pthread_exit) while another thread keeps the listening socket open: the process is a
# zombie group leader whose files are still open, as a killed multi-threaded server is for a moment.
_LINGERER = """
import ctypes, socket, sys, threading, time
sock = socket.socket(); sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", 0)); sock.listen(1)
threading.Thread(target=lambda: [time.sleep(3600)]).start()
print(sock.getsockname()[1], flush=True)
ctypes.CDLL(None).pthread_exit(None)
"""


def test_a_stopped_process_counts_until_its_last_thread_has_released_its_port():
    from mbds_py.devnet import process_started

    proc = subprocess.Popen([sys.executable, "-c", _LINGERER], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        started = process_started(proc.pid)
        port = int(proc.stdout.readline())
        state = ""
        while state != "Z":  # the main thread is gone; the sleeping thread still holds the socket
            state = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(") ", 1)[1].split()[0]
        assert not is_running(proc.pid, started)
        with pytest.raises(PortInUseError, match=f"port {port} on 127.0.0.1 is busy"):
            bind_listener("127.0.0.1", port).close()
        assert stop_processes([("lingerer", proc.pid, started)]) == ["lingerer"]
        bind_listener("127.0.0.1", port).close()  # free at once: stopping waited for the last thread
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def test_a_service_that_dies_at_start_is_reported_with_its_last_log_lines(tmp_path):
    devnet = Devnet(load_spec(spec_file(tmp_path)))
    argv = [sys.executable, "-c", "import sys; print('boom: bad configuration'); sys.exit(3)"]
    with pytest.raises(DevnetError, match=r"(?s)exited with code 3 before answering.*boom: bad configuration"):
        devnet.spawn_service("broken", "test", argv, sockets={"http": devnet.bind(service="broken")}, probe=lambda url: False)
    log = Path(devnet.load_services()["broken"].log)
    assert log.exists() and "boom" in log.read_text()  # the log the error names is still there


def test_processes_are_identified_by_pid_and_start_time():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        from mbds_py.devnet import process_started

        started = process_started(proc.pid)
        assert is_running(proc.pid, started)
        assert not is_running(proc.pid, started + 1)  # a recycled pid has another start time
        assert stop_processes([("sleeper", proc.pid, started + 1)]) == []  # a stranger is never signalled
        assert proc.poll() is None
        assert stop_processes([("sleeper", proc.pid, started)]) == ["sleeper"]
    finally:
        proc.kill()
        proc.wait()


# -- population files ----------------------------------------------------------------------------


@pytest.mark.parametrize("body, field, message", [
    ("members = 3", "members", "expected a non-empty list"),
    ('[[members]]\nname = "x"\nrole = "surgeon"\nreal_identity = "X"', "members[0].role", "unknown role 'surgeon'"),
    ('[[members]]\nname = "d"\nrole = "doctor"\nreal_identity = "D"\ninstitution = "nowhere"',
     "members[0].institution", "a doctor names a hospital or platform listed before it"),
    ('[[members]]\nname = "p"\nrole = "patient"', "members[0].real_identity", "missing"),
    ("[[members]\n", None, "not valid TOML"),
])
def test_a_malformed_population_file_names_the_field(tmp_path, body, field, message):
    path = tmp_path / "people.toml"
    path.write_text(body)
    with pytest.raises(ConfigError, match=message) as exc:
        load_population(path)
    assert str(path) in str(exc.value)
    if field:
        assert field in str(exc.value)


def test_a_population_file_is_read():
    people = load_population(Path(__file__).parent / "data" / "population.toml")
    assert [(m.name, m.role.label, m.institution, m.chain) for m in people][:2] == [
        ("hospital-a", "hospital", None, "hospital-a"), ("nha", "authority-national", None, None)]


# -- mbds deploy ---------------------------------------------------------------------------------


def test_deploy_alone_works_on_the_default_spec_and_a_failed_deploy_writes_nothing(tmp_path):
    state = tmp_path / "net"
    assert mbds("devnet", "up", "--state-dir", str(state)).returncode == 0
    try:
        devnet = Devnet(load_spec(None, state_dir=state))
        chain = devnet.load_state()["platform-c"]
        os.killpg(chain.pid, signal.SIGKILL)  # one chain goes away before the first deploy
        before = sorted(p.relative_to(state) for p in state.rglob("*"))
        out = mbds("deploy", "--state-dir", str(state), "--passphrase-stdin", stdin=PASSPHRASE + "\n")
        assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
        assert "chain 'platform-c'" in out.stderr and "does not answer" in out.stderr and "mbds up" in out.stderr
        assert sorted(p.relative_to(state) for p in state.rglob("*")) == before  # nothing written

        assert mbds("devnet", "up", "--state-dir", str(state)).returncode == 0  # restarts the dead chain
        out = mbds("deploy", "--state-dir", str(state), "--passphrase-stdin", stdin=PASSPHRASE + "\n")
        assert out.returncode == 0, out.stderr
        assert out.stdout.count(" deployed") == 10 and re.search(r"^hospital-a +SlipLedger +0x", out.stdout, re.M)
        again = mbds("deploy", "--state-dir", str(state), "--passphrase-stdin", stdin=PASSPHRASE + "\n")
        assert again.returncode == 0 and again.stdout.count(" found") == 10 and " deployed" not in again.stdout
        wrong = mbds("deploy", "--state-dir", str(state), "--passphrase-stdin", stdin="not it\n")
        assert wrong.returncode == 2 and "wrong passphrase" in wrong.stderr and wrong.stderr.count("\n") == 1
    finally:
        mbds("down", "--state-dir", str(state))


# -- mbds up / status / logs / down ----------------------------------------------------------------


@pytest.mark.slow
def test_up_status_logs_restart_and_down(tmp_path):
    state = tmp_path / "net"
    up = mbds("up", "--state-dir", str(state), "--passphrase-stdin", stdin=PASSPHRASE + "\n")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert up.stdout.startswith(f"state: {state}\n") and "up in " in up.stdout
        status = mbds("status", "--state-dir", str(state), "--json")
        assert status.returncode == 0
        import json

        rows = {r["name"]: r for r in json.loads(status.stdout)["services"]}
        assert {r["kind"] for r in rows.values()} == {"consortium", "private", "replica", "storage", "proxy"}
        assert sum(r["kind"] == "replica" for r in rows.values()) == 12 and all(r["up"] for r in rows.values())
        assert "hospital-a-replica-2" in mbds("status", "--state-dir", str(state)).stdout

        victim = rows["hospital-a-replica-2"]
        os.kill(victim["pid"], signal.SIGKILL)
        assert mbds("status", "--state-dir", str(state)).returncode == 3  # one is down
        again = mbds("up", "--state-dir", str(state), "--passphrase-stdin", stdin=PASSPHRASE + "\n")
        assert again.returncode == 0, again.stderr
        after = {r["name"]: r for r in json.loads(mbds("status", "--state-dir", str(state), "--json").stdout)["services"]}
        assert after["hospital-a-replica-2"]["up"] and after["hospital-a-replica-2"]["pid"] != victim["pid"]
        assert after["hospital-a-replica-2"]["rpc_url"] == victim["rpc_url"]  # same port
        assert {n: r["pid"] for n, r in after.items() if n != "hospital-a-replica-2"} == \
               {n: r["pid"] for n, r in rows.items() if n != "hospital-a-replica-2"}  # nothing else restarted

        logs = mbds("logs", "storage-0", "--state-dir", str(state), "-n", "5")
        assert logs.returncode == 0 and "listening on" in logs.stdout
        unknown = mbds("logs", "nope", "--state-dir", str(state))
        assert unknown.returncode == 2 and "no service named 'nope'" in unknown.stderr
    finally:
        down = mbds("down", "--state-dir", str(state))
    assert down.returncode == 0 and "hospital-a-replica-2" in down.stdout
    assert [n for n, r in after.items() if _alive(r["pid"])] == []
    tracebacks = [p.name for p in state.glob("*.log") if "Traceback" in p.read_text(errors="replace")]
    assert tracebacks == []
    gone = mbds("status", "--state-dir", str(state))
    assert gone.returncode == 3 and "nothing is running" in gone.stdout

    # up after down: a new network (new chains) with the same identities, not the stopped one's node data
    again = mbds("up", "--state-dir", str(state), "--passphrase-stdin", "--no-proxies", stdin=PASSPHRASE + "\n")
    try:
        assert again.returncode == 0, again.stdout + again.stderr
        assert "node data was removed" in again.stdout
        assert mbds("status", "--state-dir", str(state)).returncode == 0
    finally:
        assert mbds("down", "--state-dir", str(state)).returncode == 0


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_another_folders_network_is_found_by_state_dir_not_by_the_current_directory(tmp_path, monkeypatch):
    state = tmp_path / "net"
    spec = spec_file(tmp_path)
    assert mbds("devnet", "up", "--spec", str(spec), "--state-dir", str(state)).returncode == 0
    try:
        monkeypatch.chdir("/")
        env_status = subprocess.run([sys.executable, "-m", "mbds_py.cli", "status", "--spec", str(spec)],
                                    capture_output=True, text=True, env={**os.environ, "MBDS_STATE_DIR": str(state)},
                                    cwd="/", timeout=60)
        assert env_status.returncode == 0 and f"state: {state}" in env_status.stdout
    finally:
        down = mbds("down", "--spec", str(spec), "--state-dir", str(state))
    assert "consortium" in down.stdout and "hospital-a" in down.stdout
