"""The Ape scripts (scripts/, ape-config.yaml): `ape run deploy` deploys each chain's contracts of a running devnet,
offline, exactly as `mbds deploy` does, and a second run deploys nothing.

`ape run` is pointed at one of the devnet's chains (``--network <its URL>``), so Ape connects to a running node
instead of starting an Anvil of its own (on a port it probes, with a fixed 20 s start-up limit that a loaded
machine can miss); the script itself deploys onto every chain of the devnet, found through MBDS_STATE_DIR (the
script forwards no command-line options, so the spec is the embedded default and the state folder comes from the
environment).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mbds_py.chain.client import ChainClient
from mbds_py.deploy import PLAN, Deployer
from mbds_py.devnet import Devnet
from mbds_py.spec import load_spec
from mbds_py.toolchain import PROJECT_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ape")]

BIN = Path(sys.executable).parent


def _ape_run(script: str, state: Path, network: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MBDS_")}
    env.update(PATH=f"{BIN}:{os.environ['PATH']}", MBDS_STATE_DIR=str(state),
               MBDS_PASSPHRASE="ape run deploy test passphrase")
    return subprocess.run([str(BIN / "ape"), "run", script, "--network", network], cwd=PROJECT_ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


def _rows(out: str) -> list[list[str]]:
    """`chain contract address deployed|found` lines of `mbds deploy`."""
    return [line.split() for line in out.splitlines() if len(line.split()) == 4 and line.split()[2].startswith("0x")]


def test_ape_run_deploy_deploys_every_chain_of_the_spec_and_is_idempotent(tmp_path):
    state = tmp_path / "state"
    spec = load_spec(None, state_dir=state)
    devnet = Devnet(spec)
    try:
        urls = {name: chain.rpc_url for name, chain in devnet.up().items()}
        first = _ape_run("deploy", state, next(iter(urls.values())))
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
        rows = _rows(first.stdout)
        expected = [(chain.name, name) for chain in spec.chains for name, _args in PLAN[chain.kind]]
        assert [(r[0], r[1]) for r in rows] == expected, first.stdout
        assert {r[3] for r in rows} == {"deployed"}

        recorded = Deployer(spec, "0x" + "00" * 20).load()
        for chain, name, address, _tag in rows:
            assert recorded[chain][name].address == address
            assert ChainClient(urls[chain]).code_hash(address) == recorded[chain][name].code_hash, (chain, name)

        again = _ape_run("deploy", state, next(iter(urls.values())))
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
        assert [(r[0], r[1], r[2], r[3]) for r in _rows(again.stdout)] == \
            [(chain, name, address, "found") for chain, name, address, _tag in rows]
    finally:
        devnet.down()
