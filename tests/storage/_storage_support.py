"""Helpers for storage tests: node processes, deterministic data, on-disk tampering.

Nodes bind port 0.  A process announces its URL in a ready file; tests then
poll ``/api/v0/version`` until it answers, with a bounded deadline.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from mbds_py.storage.client import KuboClient
from mbds_py.storage.repo import block_file
from mbds_py.storage.unixfs import parse_cid

START_DEADLINE_S = 30.0
STOP_DEADLINE_S = 15.0
POLL_INTERVAL_S = 0.02
REPO_ROOT = Path(__file__).resolve().parents[2]


def wait_for(predicate: Callable[[], object], *, deadline_s: float, what: str) -> object:
    """Poll ``predicate`` until it returns a truthy value; fail the test after ``deadline_s``."""
    end = time.monotonic() + deadline_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            pytest.fail(f"timed out after {deadline_s}s waiting for {what}")
        time.sleep(POLL_INTERVAL_S)


def node_answers(url: str) -> bool:
    """True once ``url`` answers ``/api/v0/version``."""
    try:
        return requests.post(f"{url}/api/v0/version", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def payload(size: int, seed: int = 0) -> bytes:
    """Deterministic pseudo-random bytes."""
    return random.Random(seed * 1_000_003 + size).randbytes(size)


def corrupt_block(data_dir: Path, cid: str, mutate: Callable[[bytes], bytes]) -> Path:
    """Rewrite the block file of ``cid`` under ``data_dir`` with ``mutate(old)``."""
    path = block_file(data_dir, parse_cid(cid))
    path.write_bytes(mutate(path.read_bytes()))
    return path


def flip_payload_byte(block: bytes) -> bytes:
    """Flip the first content byte of a small single-leaf block; the block still decodes.

    Such a block (content under 100 bytes) is ``0a L 08 02 12 L <content> 18 L``.
    """
    assert block[2:5] == b"\x08\x02\x12" and len(block) < 128, "not a small UnixFS leaf"
    return block[:6] + bytes([block[6] ^ 0x01]) + block[7:]


def count_blocks(data_dir: Path) -> int:
    """Number of block files under a node's data dir."""
    return sum(1 for _ in (data_dir / "blocks").rglob("*.data"))


@dataclass
class NodeProcess:
    """A storage node running as ``python -m mbds_py.storage.node``."""

    data_dir: Path
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    extra_args: tuple[str, ...] = field(default=())

    def client(self, **kwargs: object) -> KuboClient:
        return KuboClient(self.url, **kwargs)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash or power loss."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=STOP_DEADLINE_S)

    def terminate(self) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=STOP_DEADLINE_S)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class NodeFactory:
    """Starts node processes and kills whatever is left at teardown."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.started: list[NodeProcess] = []
        self._count = 0

    def start(self, data_dir: Path, *extra_args: str, log_level: str = "INFO") -> NodeProcess:
        self._count += 1
        ready = self.tmp_path / f"ready-{self._count}.json"
        log_path = self.tmp_path / f"node-{self._count}.log"
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
        with open(log_path, "wb") as log_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", "mbds_py.storage.node", "--port", "0", "--data-dir", str(data_dir),
                 "--ready-file", str(ready), "--log-level", log_level, *extra_args],
                stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT)

        def ready_or_dead() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"storage node exited with {proc.returncode}: {log_path.read_text()}")
            return ready.exists()

        wait_for(ready_or_dead, deadline_s=START_DEADLINE_S, what=f"node {self._count} ready file")
        url = json.loads(ready.read_text())["url"]
        wait_for(lambda: node_answers(url), deadline_s=START_DEADLINE_S, what=f"{url}/api/v0/version")
        node = NodeProcess(data_dir, url, proc, log_path, extra_args)
        self.started.append(node)
        return node

    def restart(self, node: NodeProcess) -> NodeProcess:
        """Start a new process on the same data dir with the same options (new port)."""
        return self.start(node.data_dir, *node.extra_args)

    def close(self) -> None:
        for node in self.started:
            if node.proc.poll() is None:
                node.kill()
