"""The offline Solidity toolchain: solc-js entry point, cache, one compile path with Ape."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mbds_py import toolchain
from mbds_py.errors import ToolchainError

ROOT = toolchain.PROJECT_ROOT
SHIM = ROOT / "scripts" / "bin" / "solc"


def test_shim_answers_version_like_native_solc():
    out = subprocess.run([str(SHIM), "--version"], capture_output=True, text=True, check=True)
    lines = out.stdout.splitlines()
    assert lines[0] == "solc, the solidity compiler commandline interface"
    assert lines[1].startswith(f"Version: {toolchain.SOLC_VERSION}+commit.")


def test_shim_prints_clean_json_for_large_outputs():
    src = 'pragma solidity ^0.8.24; import "@openzeppelin/contracts/utils/cryptography/EIP712.sol"; ' \
          'contract T is EIP712 { constructor() EIP712("t", "1") {} }'
    std = {"language": "Solidity", "sources": {"T.sol": {"content": src}},
           "settings": {"outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"], "": ["ast"]}}}}
    out = subprocess.run([str(SHIM), "--standard-json"], input=json.dumps(std), capture_output=True, text=True)
    result = json.loads(out.stdout)  # no warning line before the JSON, no truncation
    assert "T" in result["contracts"]["T.sol"]
    assert len(out.stdout) > 131072


def test_shim_reports_invalid_input_as_json_error():
    out = subprocess.run([str(SHIM), "--standard-json"], input="{not json", capture_output=True, text=True)
    result = json.loads(out.stdout)
    assert result["errors"][0]["type"] == "JSONError"


def test_shim_refuses_unsupported_modes():
    out = subprocess.run([str(SHIM), "--bin", "x.sol"], capture_output=True, text=True)
    assert out.returncode == 2 and "--standard-json" in out.stderr


def test_native_solc_binary_must_exist(monkeypatch):
    monkeypatch.setenv("SOLC_BINARY", "/nonexistent/solc")
    with pytest.raises(ToolchainError, match="SOLC_BINARY=/nonexistent/solc"):
        toolchain.solc_binary()


def test_compile_reports_solidity_errors(tmp_path):
    (tmp_path / "contracts").mkdir()
    (tmp_path / "contracts" / "Bad.sol").write_text("pragma solidity ^0.8.24; contract Bad { function f( }")
    from mbds_py.errors import CompilationError

    with pytest.raises(CompilationError, match="ParserError"):
        toolchain.compile_contracts(tmp_path, use_cache=False)


def _counting_solc(tmp_path: Path) -> tuple[Path, Path]:
    """A compiler wrapper that logs each invocation's arguments, then runs the real compiler."""
    log = tmp_path / "solc-calls.log"
    wrapper = tmp_path / "bin" / "solc"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\nexec "{toolchain.solc_binary()}" "$@"\n')
    wrapper.chmod(0o755)
    return wrapper, log


def _compilations(log: Path) -> int:
    return sum("--standard-json" in line for line in log.read_text().splitlines()) if log.exists() else 0


def test_artifacts_are_cached_by_source_hash(tmp_path, monkeypatch):
    """The second compile of unchanged sources reads the cache and never runs the compiler; a changed source
    is a new cache key and is compiled again."""
    wrapper, log = _counting_solc(tmp_path)
    monkeypatch.setenv("SOLC_BINARY", str(wrapper))
    monkeypatch.setattr(toolchain, "CACHE_DIR", tmp_path / "cache")
    project = tmp_path / "proj"
    (project / "contracts").mkdir(parents=True)
    source = project / "contracts" / "Counter.sol"
    source.write_text("pragma solidity ^0.8.24; contract Counter { uint256 public n; function up() external { n++; } }")

    first = toolchain.compile_contracts(project)
    assert _compilations(log) == 1
    [cache_file] = (tmp_path / "cache").glob("artifacts-*.json")
    assert set(first) == {"Counter"} and first["Counter"].bytecode

    assert toolchain.compile_contracts(project) == first
    assert _compilations(log) == 1, "the compiler ran again although the sources did not change"

    # the cache is what was returned: a doctored cache entry comes back as is
    table = json.loads(cache_file.read_text())
    table["Counter"]["bytecode"] = "00"
    cache_file.write_text(json.dumps(table))
    assert toolchain.compile_contracts(project)["Counter"].bytecode == "00"
    assert _compilations(log) == 1

    assert toolchain.compile_contracts(project, use_cache=False) == first  # bypassing the cache compiles
    assert _compilations(log) == 2
    source.write_text(source.read_text().replace("n++", "n += 2"))
    changed = toolchain.compile_contracts(project)
    assert _compilations(log) == 3 and changed["Counter"].bytecode != first["Counter"].bytecode
    assert len(list((tmp_path / "cache").glob("artifacts-*.json"))) == 2


def test_unknown_contract_is_named():
    with pytest.raises(ToolchainError, match="no contract named 'Nope'"):
        toolchain.artifact("Nope")


@pytest.mark.slow
@pytest.mark.xdist_group("ape")
def test_ape_compile_produces_the_runtime_bytecode(tmp_path):
    """One compile path: `ape compile` and the runtime give byte-identical creation code."""
    project = tmp_path / "proj"
    project.mkdir()
    shutil.copytree(ROOT / "contracts", project / "contracts")
    shutil.copy(ROOT / "ape-config.yaml", project / "ape-config.yaml")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    subprocess.run([str(Path(sys.executable).parent / "ape"), "compile"], cwd=project, env=env, check=True,
                   capture_output=True, timeout=300)
    ape_types = json.loads((project / ".build" / "__local__.json").read_text())["contractTypes"]
    runtime = toolchain.compile_contracts()
    assert set(ape_types) == set(runtime)
    for name, art in runtime.items():
        assert ape_types[name]["deploymentBytecode"]["bytecode"][2:] == art.bytecode, name
        assert ape_types[name]["runtimeBytecode"]["bytecode"][2:] == art.deployed_bytecode, name


# tests/ape: one module per contract (deploy with Ape's `project`, call, `ape.reverts` on the custom errors)
APE_MODULES = ("identity_registry", "authority_governor", "slip_ledger", "credit_registry", "consortium_index",
               "access_policy")
APE_TESTS = 51


@pytest.mark.slow
@pytest.mark.xdist_group("ape")
def test_ape_test_runs_the_ape_suite(tmp_path):
    """`ape test` on an Anvil of the project's launcher: ape-foundry's own start gives Anvil a fixed 20 s, which a
    loaded machine can exceed; an engineer with a node running points Ape at it the same way (APE_FOUNDRY_HOST).
    It runs in a fresh copy of the project: Ape's compile cache can keep a contract's old ABI after its source
    changed (ApeWorX/ape#2271), which would test stale bytecode."""
    from mbds_py.devnet import launch_chain

    project = tmp_path / "proj"
    shutil.copytree(ROOT / "contracts", project / "contracts")
    shutil.copytree(ROOT / "tests" / "ape", project / "tests" / "ape",
                    ignore=shutil.ignore_patterns("__pycache__", ".build"))
    shutil.copy(ROOT / "ape-config.yaml", project / "ape-config.yaml")
    proc, url = launch_chain("anvil", 31337)
    try:
        env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", APE_FOUNDRY_HOST=url)
        out = subprocess.run([str(Path(sys.executable).parent / "ape"), "test", "tests/ape", "-c", "tests/ape/pytest.ini",
                              "-v", "INFO"], cwd=project, env=env, capture_output=True, text=True, timeout=600)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    summary = out.stdout.strip().splitlines()[-1]
    assert re.search(rf"\b{APE_TESTS} passed\b", summary), summary
    assert "failed" not in summary and "skipped" not in summary and "error" not in summary, summary
    for contract in APE_MODULES:  # one module per contract, each collected
        assert f"tests/ape/test_{contract}_ape.py" in out.stdout, contract
    assert "Stopping 'anvil' process" not in out.stdout + out.stderr  # it used the node given, started none
