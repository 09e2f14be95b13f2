"""Scripting a running network (issue 12, item 5): the CLI verbs, `mbds_py.connect` scripts and `ape run`.

One network per module, brought up with `mbds up` in a temporary folder and stopped with `mbds down`.  Every
command runs as a subprocess, as an engineer would type it; the verbs wait for what they need themselves
(commit, anchoring, consortium index) with bounded polls, so the tests never sleep.  Each test writes its own
record with its own (patient, reader) pair, so any one of them passes alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ops")]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PASS = "ops verbs passphrase"
TIMES: dict[str, float] = {}  # wall time of each verb, written beside the other test artifacts


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MBDS_STATE_DIR", "MBDS_PASSPHRASE")}
    env["PATH"] = f"{BIN}:{env.get('PATH', '')}"
    env.update(extra)
    return env


def mbds(state: Path, *args: str, passphrase: str | None = PASS, label: str | None = None,
         timeout: float = 240) -> subprocess.CompletedProcess:
    """`mbds ARGS --state-dir STATE [--passphrase-stdin]`, timed under ``label``."""
    argv = [str(BIN / "mbds"), *args, "--state-dir", str(state)]
    if passphrase is not None:
        argv.append("--passphrase-stdin")
    t0 = time.perf_counter()
    out = subprocess.run(argv, input=f"{passphrase}\n" if passphrase is not None else "", capture_output=True,
                         text=True, timeout=timeout, env=_env(), cwd=ROOT)
    if label:
        TIMES[label] = round(time.perf_counter() - t0, 2)
    return out


def ok_json(out: subprocess.CompletedProcess) -> dict:
    assert out.returncode == 0, f"exit {out.returncode}\nstdout: {out.stdout}\nstderr: {out.stderr}"
    doc = json.loads(out.stdout)
    assert doc["ok"] is True
    return doc


@pytest.fixture(scope="module")
def network(tmp_path_factory) -> Path:
    state = tmp_path_factory.mktemp("ops-verbs") / "net"
    try:
        up = subprocess.run([str(BIN / "mbds"), "up", "--state-dir", str(state), "--passphrase-stdin"],
                            input=f"{PASS}\n", capture_output=True, text=True, timeout=420, env=_env(), cwd=ROOT)
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        yield state
    finally:
        subprocess.run([str(BIN / "mbds"), "down", "--state-dir", str(state)], capture_output=True, timeout=120,
                       env=_env(), cwd=ROOT)
        artifacts = Path(os.environ.get("MBDS_TEST_ARTIFACTS", ROOT / ".build" / "test-artifacts")) / "ops"
        if TIMES:
            artifacts.mkdir(parents=True, exist_ok=True)
            (artifacts / "verb-times.json").write_text(json.dumps(TIMES, indent=2))


def test_write_confirm_request_approve_search_read_revoke_refused_through_the_verbs(network):
    text, keyword = "Hypertension, started amlodipine 5 mg daily", "icd10|I10"
    written = ok_json(mbds(network, "record", "write", "--as", "dr-zhao", "--patient", "bob", "--keyword", keyword,
                           "--keyword", "loinc|8480-6", "--text", text, "--json", label="record write"))
    rid = written["record"]["record_id"]
    assert written["record"]["chain"] == "platform-c"
    listed = ok_json(mbds(network, "record", "list", "--as", "bob", "--json", passphrase=None, label="record list"))
    assert rid in [p["record_id"] for p in listed["pending"]]

    confirmed = ok_json(mbds(network, "record", "confirm", "--as", "bob", rid, "--json", label="record confirm"))
    (rec,) = confirmed["records"]
    assert (rec["record_id"], rec["chain"], rec["indexed"]) == (rid, "platform-c", True) and rec["height"] >= 1

    request = ok_json(mbds(network, "access", "request", "--as", "dr-li", "--patient", "bob", "--record", rid,
                           "--duration", "900", "--reason", "second opinion", "--json", label="access request"))
    req_id = request["request"]["request_id"]
    assert (request["request"]["state"], request["request"]["record"]) == ("requested", rid)
    approved = ok_json(mbds(network, "access", "approve", "--as", "bob", str(req_id), "--json",
                            label="access approve"))
    assert approved["request"]["state"] == "approved"

    found = ok_json(mbds(network, "search", "--as", "dr-li", "--patient", "bob", "--keyword", keyword, "--json",
                         label="search"))
    assert [m["record_id"] for m in found["matches"]] == [rid]
    assert found["matches"][0]["chain"] == "platform-c"

    read = ok_json(mbds(network, "read", "--as", "dr-li", "--patient", "bob", "--record", rid, "--json",
                        label="read"))
    (got,) = read["records"]
    assert read["refused"] == []
    assert (got["record_id"], got["text"], got["doctor"], got["record_type"]) == (rid, text, "dr-zhao",
                                                                                  "consultation")
    assert got["hmi"]["note"] == [{"text": text}]
    assert [c["code"] for c in got["hmi"]["code"]["coding"]] == ["I10", "8480-6"]
    assert len(got["keywords"]) == 2 and got["proxies"] == 2

    revoked = ok_json(mbds(network, "access", "revoke", "--as", "bob", "--from", "dr-li", "--record", rid, "--json",
                           label="access revoke"))
    assert revoked["revoke"]["record"] == rid

    refused = mbds(network, "read", "--as", "dr-li", "--patient", "bob", "--record", rid, "--json",
                   label="read (refused)")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    doc = json.loads(refused.stdout)
    assert doc["ok"] is False and doc["records"] == []
    assert [(r["record_id"], r["code"]) for r in doc["refused"]] == [(rid, "revoked")]
    assert "revoked" in doc["refused"][0]["reason"]
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith("mbds: read refused (revoked)") and "Traceback" not in refused.stderr

    trail = ok_json(mbds(network, "audit", "--as", "bob", "--record", rid, "--json", passphrase=None,
                         label="audit"))
    outcomes = [(e["who"], e["outcome"]) for e in trail["events"]]
    assert outcomes.count(("dr-li", "read")) == 2 and ("dr-li", "refused") in outcomes
    proof = ok_json(mbds(network, "receipt", "--as", "bob", rid, "--json", passphrase=None, label="receipt"))
    r = proof["receipt"]
    assert r["verified"] and r["header_hash"] == r["anchored_hash"] and (r["patient"], r["doctor"]) == ("bob",
                                                                                                     "dr-zhao")


def test_the_plain_example_script_shares_and_is_refused_after_the_revoke(network):
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "example_share.py")], input=f"{PASS}\n",
                         capture_output=True, text=True, timeout=300, env=_env(MBDS_STATE_DIR=str(network)), cwd=ROOT)
    TIMES["scripts/example_share.py"] = round(time.perf_counter() - t0, 2)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["written", "granted", "read", "revoked", "refused"]
    assert "by dr-li about alice" in lines[0]
    assert lines[2] == "read: dr-wang decrypted 'Hypertension, started amlodipine 5 mg' written by dr-li (2 proxies)"
    assert lines[4].startswith("refused: revoked: the patient revoked this permission")


def test_ape_run_ape_share_against_the_running_network(network):
    t0 = time.perf_counter()
    out = subprocess.run([str(BIN / "ape"), "run", "ape_share", "--author", "dr-zhao", "--reader", "dr-li"],
                         input=f"{PASS}\n", capture_output=True, text=True, timeout=300,
                         env=_env(MBDS_STATE_DIR=str(network)), cwd=ROOT)
    TIMES["ape run ape_share"] = round(time.perf_counter() - t0, 2)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = [line for line in out.stdout.splitlines() if not line.startswith("INFO:")]  # Ape's own log lines
    assert [line.split(":")[0] for line in lines] == ["written", "granted", "read", "revoked", "refused", "ape", "ape"]
    assert "decrypted 'Type 2 diabetes, started metformin 500 mg' written by dr-zhao" in lines[2]
    assert lines[4].startswith("refused: revoked:")
    assert lines[5].startswith("ape: 2 AccessRecorded event(s) of the record on the consortium chain")
    assert lines[6].startswith("ape: ") and "AccessDenied event(s)" in lines[6] and not lines[6].startswith("ape: 0")


def _fingerprint(state: Path) -> dict[str, str]:
    """Hashes of the network's records in its folder: keystores, state, deployments, service configurations
    (not the services' own data, which moves on by itself)."""
    files = [*state.glob("*.json"), *(state / "kmc").rglob("*.json"),
             *(p for d in ("nodes", "proxies", "consortium") for p in (state / d).glob("*.json"))]
    return {str(p.relative_to(state)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _pending_and_grants(state: Path, patient: str) -> tuple[list, list]:
    pending = ok_json(mbds(state, "record", "list", "--as", patient, "--json", passphrase=None))["pending"]
    grants = ok_json(mbds(state, "access", "list", "--as", patient, "--json", passphrase=None))["grants"]
    return pending, grants


def _one_line_error(out: subprocess.CompletedProcess) -> str:
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stdout == ""
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("mbds: error: ")
    return line


def test_an_unknown_participant_is_one_line_naming_the_enrolled_and_nothing_is_written(network):
    before, chain_before = _fingerprint(network), _pending_and_grants(network, "alice")
    line = _one_line_error(mbds(network, "record", "write", "--as", "dr-nobody", "--patient", "alice", "--keyword",
                                "icd10|R05", "--text", "cough", "--json"))
    assert line == (f"mbds: error: unknown participant 'dr-nobody' in {network}; enrolled doctors: dr-li, dr-wang, "
                    "dr-zhao")
    line = _one_line_error(mbds(network, "access", "grant", "--as", "alice", "--to", "dr-who"))
    assert "unknown participant 'dr-who'" in line and "enrolled doctors: dr-li, dr-wang, dr-zhao" in line
    line = _one_line_error(mbds(network, "read", "--as", "alice", "--patient", "bob"))
    assert line == "mbds: error: alice is a patient, not a doctor; enrolled doctors: dr-li, dr-wang, dr-zhao"
    assert _fingerprint(network) == before
    assert _pending_and_grants(network, "alice") == chain_before


def test_a_wrong_passphrase_is_one_line_and_nothing_is_written(network):
    before, chain_before = _fingerprint(network), _pending_and_grants(network, "alice")
    for argv in (["record", "write", "--as", "dr-li", "--patient", "alice", "--keyword", "icd10|R05", "--text", "x"],
                 ["access", "grant", "--as", "alice", "--to", "dr-zhao", "--json"]):
        line = _one_line_error(mbds(network, *argv, passphrase="not the passphrase"))
        who = argv[argv.index("--as") + 1]
        assert line == (f"mbds: error: wrong passphrase for {who}'s keystore in {network}: give the passphrase "
                        "this network was brought up with (`mbds up`)")
    assert _fingerprint(network) == before
    assert _pending_and_grants(network, "alice") == chain_before


def test_no_network_in_the_folder_says_to_bring_one_up(tmp_path):
    line = _one_line_error(mbds(tmp_path / "empty", "read", "--as", "dr-li", "--patient", "alice"))
    assert line == (f"mbds: error: no network in {tmp_path / 'empty'} (none is running there): start one with "
                    f"`mbds up --state-dir {tmp_path / 'empty'}`")


def test_import_mbds_py_stays_cheap_and_connect_is_there():
    code = ("import sys, mbds_py; assert 'mbds_py.scripting' not in sys.modules and 'web3' not in sys.modules; "
            "from mbds_py import connect; from mbds_py.scripting import connect as c; assert connect is c")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, env=_env(), cwd=ROOT)
