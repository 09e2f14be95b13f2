"""The node as a real process: crash and restart, data-dir lock, clean stop."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from _storage_support import REPO_ROOT, STOP_DEADLINE_S, NodeFactory, count_blocks, payload

from mbds_py.storage.node import StorageServer
from mbds_py.storage.unixfs import CHUNK_SIZE, MAX_LINKS

pytestmark = pytest.mark.slow


def _run_node_expecting_failure(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mbds_py.storage.node", *args],
                          capture_output=True, text=True, timeout=30, cwd=REPO_ROOT)


def test_restart_after_kill_keeps_every_blob_and_pin(node_factory: NodeFactory, tmp_path: Path) -> None:
    node = node_factory.start(tmp_path / "data")
    blobs = {size: payload(size, seed=3) for size in (0, 1, 1024, 10 * 1024, CHUNK_SIZE + 1, 5 * CHUNK_SIZE)}
    with node.client() as kubo:
        cids = {size: kubo.add(data) for size, data in blobs.items()}
        unpinned = kubo.add(b"kept but not pinned", pin=False)
        pins_before = kubo.pins()
    node.kill()  # SIGKILL: no shutdown code runs

    restarted = node_factory.restart(node)
    with restarted.client() as kubo:
        for size, cid in cids.items():
            assert kubo.cat(cid) == blobs[size]
        assert kubo.cat(unpinned) == b"kept but not pinned"
        assert kubo.pins() == pins_before == frozenset(cids.values())


def test_restart_discards_partial_writes_left_by_a_crash(node_factory: NodeFactory, tmp_path: Path) -> None:
    node = node_factory.start(tmp_path / "data")
    with node.client() as kubo:
        cid = kubo.add(b"committed")
    node.kill()
    leftover = tmp_path / "data" / "tmp" / "crashed-write.tmp"
    leftover.write_bytes(b"half a bl")
    blocks_before = count_blocks(tmp_path / "data")

    restarted = node_factory.restart(node)
    assert not leftover.exists()
    assert count_blocks(tmp_path / "data") == blocks_before
    with restarted.client() as kubo:
        assert kubo.cat(cid) == b"committed"


def test_two_level_dag_survives_restart(node_factory: NodeFactory, tmp_path: Path) -> None:
    big = payload(MAX_LINKS * CHUNK_SIZE + 1, seed=4)  # 175 leaves: root over two subtrees
    node = node_factory.start(tmp_path / "data")
    with node.client(timeout=120) as kubo:
        cid = kubo.add(big)
    node.kill()
    with node_factory.restart(node).client(timeout=120) as kubo:
        assert kubo.cat(cid) == big


def test_sigterm_stops_the_node_cleanly_ending_open_connections(node_factory: NodeFactory, tmp_path: Path) -> None:
    node = node_factory.start(tmp_path / "data")
    host, port = node.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=STOP_DEADLINE_S) as kept:
        kept.sendall(b"POST /api/v0/version HTTP/1.1\r\nHost: x\r\n\r\n")
        assert kept.recv(65536).startswith(b"HTTP/1.1 200 OK")  # answered; the connection stays open
        assert node.terminate() == 0
        assert kept.recv(65536) == b""  # closed by the stop
    assert "RPC API server listening on" in node.log()
    assert "Traceback" not in node.log() and "ERROR" not in node.log()


def test_second_node_on_the_same_data_dir_is_refused(node_factory: NodeFactory, tmp_path: Path) -> None:
    node = node_factory.start(tmp_path / "data")
    result = _run_node_expecting_failure("--port", "0", "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 1
    assert f"in use by another storage node (pid {node.proc.pid})" in result.stderr


def test_taken_port_is_a_clear_startup_error(thread_node: StorageServer, tmp_path: Path) -> None:
    result = _run_node_expecting_failure("--port", str(thread_node.port), "--data-dir", str(tmp_path / "other"))
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{thread_node.port}" in result.stderr


def test_data_dir_holding_other_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("not a storage dir")
    result = _run_node_expecting_failure("--port", "0", "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 1
    assert "has no storage.json" in result.stderr


def test_log_names_cids_but_never_blob_contents(node_factory: NodeFactory, tmp_path: Path) -> None:
    node = node_factory.start(tmp_path / "data", log_level="DEBUG")
    secret = b"SECRET-DIAGNOSIS-7f3a"
    with node.client() as kubo:
        cid = kubo.add(secret)
        kubo.cat(cid)
    node.terminate()
    assert cid in node.log()
    assert "SECRET-DIAGNOSIS" not in node.log()
