"""`mbds bench --quick --json` end to end, as a separate process (figures are reported, never asserted as times)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mbds_py.bench import runner
from mbds_py.bench.registry import CATALOGUE, MEASUREMENTS

pytestmark = pytest.mark.slow

MEASURED_NOW = {"gas_per_slip", "gas_per_slip_batched", "naive_gas_per_slip", "peks_test_ms", "peks_test_ms_arkworks", "peks_test_ms_py_ecc",
                "peks_encrypt_ms", "peks_encrypt_ms_pairing", "peks_encrypt_ms_arkworks", "storage_p50_ms",
                "storage_p50_ms_new_connection"}

# Runs a command as the child of a subreaper (prctl PR_SET_CHILD_SUBREAPER): whatever the command leaves
# behind when it exits is re-parented to this wrapper, not to init, so the leftovers of this run and of no other
# (a concurrent test's chains, another agent's processes) are this wrapper's descendants. They are written to
# argv[1] as JSON (pid, command line), then killed and reaped; the wrapper exits with the command's code.
LEAK_CHECK = r"""
import ctypes, json, os, signal, subprocess, sys

if ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
    sys.exit(f"prctl(PR_SET_CHILD_SUBREAPER) failed: errno {ctypes.get_errno()}")
code = subprocess.call(sys.argv[2:])

def stat(pid):
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return fields[0], int(fields[1]), int(fields[6])  # state, ppid, flags

def dying(pid, state, flags):
    if state in "ZX" or flags & 0x4:  # zombie, dead, PF_EXITING
        return True
    with open(f"/proc/{pid}/status") as fh:
        pending = [int(line.split()[1], 16) for line in fh if line.startswith(("SigPnd:", "ShdPnd:"))]
    return any(mask & (1 << (signal.SIGKILL - 1)) for mask in pending)

children, info = {}, {}
for name in os.listdir("/proc"):
    if name.isdigit():
        try:
            state, ppid, flags = stat(name)
        except (OSError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(name))
        info[int(name)] = (state, flags)
mine, todo = [], list(children.get(os.getpid(), []))
while todo:
    pid = todo.pop()
    mine.append(pid)
    todo += children.get(pid, [])
left = []
for pid in mine:
    try:
        if not dying(pid, *info[pid]):
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
            left.append({"pid": pid, "cmdline": cmd.strip()})
    except OSError:
        continue  # gone meanwhile
with open(sys.argv[1], "w") as fh:
    json.dump(left, fh)
for pid in mine:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
while True:
    try:
        os.waitpid(-1, 0)
    except ChildProcessError:
        break
sys.exit(code)
"""


def run_checking_leftovers(cmd: list[str], report, **kwargs) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """Run ``cmd``; also return the processes it started and left alive when it exited."""
    done = subprocess.run([sys.executable, "-c", LEAK_CHECK, str(report), *cmd], **kwargs)
    return done, json.loads(report.read_text())


def test_leftover_check_names_what_the_run_left_and_nothing_else(tmp_path):
    """The check sees an orphan the command leaves in its own session (and kills it); a child the command
    waited for, and processes outside the run, are not named."""
    sleeper = "import sys, time; time.sleep(300)"
    outside = subprocess.Popen([sys.executable, "-c", sleeper, "outside-the-run"], start_new_session=True)
    try:
        parent = (f"import subprocess, sys; "
                  f"subprocess.run([sys.executable, '-c', 'pass', 'waited-for']); "
                  f"subprocess.Popen([sys.executable, '-c', {sleeper!r}, 'left-behind'], start_new_session=True); "
                  f"sys.exit(3)")
        done, left = run_checking_leftovers([sys.executable, "-c", parent], tmp_path / "left.json",
                                            capture_output=True, text=True, timeout=60)
        assert done.returncode == 3, done.stderr
        assert [entry["cmdline"] for entry in left] == [f"{sys.executable} -c {sleeper} left-behind"], left
        proc = Path(f"/proc/{left[0]['pid']}/cmdline")
        assert not proc.exists() or b"left-behind" not in proc.read_bytes(), "the leftover was not killed"
        assert outside.poll() is None  # not this run's: neither named nor killed
    finally:
        outside.kill()
        outside.wait()


def test_quick_bench_json_has_figures_for_every_registered_key_and_reasons_for_the_rest(tmp_path):
    assert runner.discover() == []
    registered = {k for m in MEASUREMENTS.values() for k in m.keys}
    assert MEASURED_NOW <= registered
    out_json, out_md, out_png = tmp_path / "bench.json", tmp_path / "bench.md", tmp_path / "bench.png"
    cmd = [sys.executable, "-m", "mbds_py.bench.runner", "--quick", "--json", str(out_json),
           "--markdown", str(out_md)]
    plotting = importlib.util.find_spec("matplotlib") is not None
    if plotting:
        cmd += ["--plot", str(out_png)]
    done, left = run_checking_leftovers(cmd, tmp_path / "left.json", capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "expected duration" in done.stderr and "tearing down" in done.stderr
    # the sharing and consortium measurements share one devnet, stopped after the last of them
    assert done.stderr.count("devnet up in") == 1 and "releasing devnet-network" in done.stderr
    # every process the run started (chains, storage and replica nodes, proxies) is gone when it exits
    assert left == [], left

    report = json.loads(out_json.read_text())
    assert report["mode"] == "quick"
    assert report["machine"]["cores"] >= 1 and report["machine"]["cpu_model"]
    assert not report["versions"]["anvil"].startswith("unavailable")
    assert not report["versions"]["solc"].startswith("unavailable")
    ms = report["measurements"]
    assert set(ms) == set(CATALOGUE)
    for key, entry in ms.items():
        if key in registered:
            assert entry["status"] == "measured", (key, entry["reason"])
            assert isinstance(entry["median"], (int, float)) and entry["n"] >= 1, key
            assert all(isinstance(entry["spread"][f], (int, float)) for f in ("q1", "q3", "iqr", "min", "max")), key
        else:
            assert entry["median"] is None and entry["spread"] is None, key
            assert entry["status"] == "not measured" and entry["reason"], key
    # not a time: anchoring a certified 128-slip block costs far less per slip than one transaction per slip
    assert ms["gas_per_slip"]["median"] < ms["naive_gas_per_slip"]["median"] / 10
    assert isinstance(ms["gas_per_slip"]["ratio_to_baseline"], float)
    assert ms["gas_per_slip_batched"]["median"] < ms["gas_per_slip"]["median"]
    split = ms["gas_per_slip"]["extra"]["breakdown_per_block"]
    assert split["total"] == sum(v for k, v in split.items() if k != "total")
    assert "| `gas_per_slip` |" in out_md.read_text()
    if plotting:
        assert out_png.read_bytes()[:4] == b"\x89PNG"
        curves = report["curves"]
        assert curves["anchor_gas_per_slip"]["status"] == "measured"
        assert curves["peks_search_ms"]["status"] == "measured"
        # quick: two block sizes, the largest on the PBFT measurement's own testbed
        assert curves["pbft_slips_per_s"]["status"] == "measured"
        assert [p["x"] for p in curves["pbft_slips_per_s"]["points"]] == [8, 128]
