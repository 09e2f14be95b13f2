"""`mbds demo` runs end to end on the embedded defaults, checks its outcomes and leaves no process behind."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mbds_py.demo import run_demo
from mbds_py.devnet import Devnet, is_running
from mbds_py.population import DEFAULT_POPULATION
from mbds_py.spec import load_spec

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("demo")]


def test_demo_runs_every_step_checks_outcomes_and_leaves_no_process(tmp_path):
    state = tmp_path / "net"
    spec = load_spec(None, state_dir=state)
    out_file = tmp_path / "demo.json"
    lines: list[str] = []
    seen: dict[str, tuple[int, int | None]] = {}

    def out(line: str) -> None:
        lines.append(line)
        if line.startswith("==> "):  # record every process the demo has started so far
            devnet = Devnet(spec)
            seen.update({n: (c.pid, c.started) for n, c in devnet.load_state().items() if c.pid})
            seen.update({n: (s.pid, s.started) for n, s in devnet.load_services().items()})

    steps = run_demo(json_file=str(out_file), out=out, state_dir=str(state))
    by_name = {s.name: s for s in steps}
    assert all(s.ok for s in steps), [(s.name, s.actual) for s in steps if not s.ok]
    assert lines[0] == f"state: {state}"
    # outcomes, not only "it did not raise"
    chains = len(spec.chains)
    assert by_name["KMC enrolls the population"].actual.startswith(f"{len(DEFAULT_POPULATION)} keystores")
    assert by_name["deploy again"].actual == "nothing deployed"
    assert by_name["register on every chain"].actual.startswith(f"{len(DEFAULT_POPULATION) * chains} registrations")
    assert "anchored and proven against SlipLedger" in by_name["online consultation recorded"].actual
    assert by_name["summary indexed on the consortium"].actual.startswith("1 item(s) of alice")
    doc = json.loads(out_file.read_text())
    assert [d["name"] for d in doc] == [s.name for s in steps]
    assert doc[-1]["name"] == "network down" and doc[-1]["ok"]
    # every chain, replica, consortium node, storage node and proxy was seen, and none is left
    assert {"consortium", "hospital-a", "storage-0", "hospital-a-replica-0", "consortium-nha", "proxy-nha"} <= set(seen)
    assert len(seen) >= chains + 12 + 2 + 3
    assert [n for n, (pid, started) in seen.items() if is_running(pid, started)] == []
    assert not (state / "state.json").exists()


def test_a_failed_demo_step_prints_the_table_and_exits_1(tmp_path):
    spec = tmp_path / "dead.toml"
    spec.write_text("""
[[chains]]
name = "consortium"
kind = "consortium"
chain_id = 43900
rpc_url = "http://127.0.0.1:9"
""")
    proc = subprocess.run([sys.executable, "-m", "mbds_py.cli", "demo", "--spec", str(spec), "--state-dir",
                           str(tmp_path / "state"), "--no-sharing"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "FAILED at step 'devnet up': failed: external chain 'consortium' did not answer" in proc.stdout
    table = proc.stdout.split("\nstep ")[-1].splitlines()  # the step table: every step with its outcome
    assert table[2].startswith("devnet up") and " NO " in table[2], table
    assert table[3].startswith("network down") and " yes " in table[3], table
