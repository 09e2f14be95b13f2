"""The Foundry suite compiles the contracts to the runtime path's bytecode (issue 16).

forge runs the project's solc-js entry point with the settings of :mod:`mbds_py.toolchain`; what it
deploys in `forge test` must be what `mbds deploy` deploys. The executable code is compared byte for
byte; only the CBOR metadata trailer (and the one embedded with AuthorityGovernor's creation code in
IdentityRegistry) may differ, because its IPFS hash covers the source unit names — forge names
OpenZeppelin `node_modules/@openzeppelin/...` and records its remapping, the runtime path
`@openzeppelin/...` — not the code.
"""

from __future__ import annotations

import json
import re
import subprocess
import tomllib

import pytest

from mbds_py import toolchain

ROOT = toolchain.PROJECT_ROOT
FORGE = ROOT / "node_modules" / ".bin" / "forge"
# a2 64 'ipfs' 58 22 <34-byte multihash> 64 'solc' 43 <3-byte version> 00 33
METADATA = re.compile(r"a264697066735822[0-9a-f]{68}64736f6c6343([0-9a-f]{6})0033")

pytestmark = pytest.mark.xdist_group("forge")


def _forge_out() -> dict[str, dict]:
    if not FORGE.exists():
        pytest.fail("forge is not installed: run `make setup` (npm ci installs @foundry-rs/forge)")
    subprocess.run([str(FORGE), "build", "--skip", "test", "--skip", "script"], cwd=ROOT, check=True,
                   capture_output=True, text=True, timeout=900)
    out = ROOT / ".build" / "forge" / "out"
    return {p.stem: json.loads(p.read_text()) for p in out.glob("*.sol/*.json")}


def _code(hex_code: str) -> tuple[str, list[str]]:
    """The code with every metadata trailer blanked, and the compiler versions the trailers name."""
    hex_code = hex_code.removeprefix("0x")
    return METADATA.sub("<metadata>", hex_code), METADATA.findall(hex_code)


def test_foundry_config_matches_the_runtime_toolchain():
    cfg = tomllib.loads((ROOT / "foundry.toml").read_text())["profile"]["default"]
    assert cfg["solc"] == "scripts/bin/solc"
    assert cfg["evm_version"] == toolchain.EVM_VERSION
    assert cfg["optimizer"] is True and cfg["optimizer_runs"] == toolchain.OPTIMIZER_RUNS
    assert cfg["via_ir"] is False and "viaIR" not in json.dumps(toolchain.standard_input({"x.sol": ""}))
    assert cfg["src"] == toolchain.CONTRACTS_DIR


def test_forge_bytecode_equals_the_runtime_path():
    runtime = toolchain.compile_contracts()
    forge = _forge_out()
    deployable = [name for name, art in runtime.items() if art.bytecode]
    assert {"IdentityRegistry", "AuthorityGovernor", "SlipLedger", "CreditRegistry", "ConsortiumIndex",
            "AccessPolicy", "NaiveSlipRegistry"} <= set(deployable)
    for name in deployable:
        art = forge[name]
        for ours, theirs in ((runtime[name].bytecode, art["bytecode"]["object"]),
                             (runtime[name].deployed_bytecode, art["deployedBytecode"]["object"])):
            code, versions = _code(ours)
            forge_code, forge_versions = _code(theirs)
            assert forge_code == code, f"{name}: forge's code differs from the runtime path's"
            assert versions and forge_versions == versions  # same solc (0.8.28 = 00081c) in every trailer
        metadata = json.loads(art["rawMetadata"])
        assert metadata["settings"]["optimizer"] == {"enabled": True, "runs": toolchain.OPTIMIZER_RUNS}
        assert metadata["settings"]["evmVersion"] == toolchain.EVM_VERSION
        assert metadata["compiler"]["version"] == toolchain.solc_version().split(".Emscripten")[0]
