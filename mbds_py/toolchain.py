"""Offline Solidity toolchain: one compile path for the runtime and for Ape.

The compiler is solc-js (npm ``solc``) behind ``scripts/bin/solc``, a
solc-compatible entry point; a native solc named by ``SOLC_BINARY`` is used
instead when present.  :func:`install_solcx_link` places the chosen binary
where py-solc-x (and therefore ape-solidity) looks for installed compilers, so
``ape compile`` and :func:`compile_contracts` run the same compiler on the
same standard-JSON input (same source unit names, optimizer and EVM version)
and produce the same bytecode.  Artifacts are cached by a hash of the sources,
settings and compiler version.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import CompilationError, ToolchainError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SOLC_VERSION = "0.8.28"
EVM_VERSION = "shanghai"  # Ganache 7.9 runs up to Shanghai; Anvil runs it too.
OPTIMIZER_RUNS = 200
CONTRACTS_DIR = "contracts"
CACHE_DIR = PROJECT_ROOT / ".build" / "mbds"
# Where py-solc-x and ape-solidity find "installed" compilers: inside the checkout, never the per-user
# ~/.solcx (two checkouts would fight over it).  py-solc-x reads SOLCX_BINARY_PATH; our processes and the
# tools they start (ape) inherit it; the Makefile exports the same path.
SOLCX_DIR = PROJECT_ROOT / ".build" / "solcx"
os.environ.setdefault("SOLCX_BINARY_PATH", str(SOLCX_DIR))

# Same selection ape-solidity asks for, so the metadata (and bytecode) match.
_OUTPUTS = [
    "abi",
    "bin-runtime",
    "devdoc",
    "userdoc",
    "evm.bytecode.object",
    "evm.bytecode.sourceMap",
    "evm.deployedBytecode.object",
]


@dataclass(frozen=True)
class Artifact:
    """A compiled contract: ABI and creation/runtime bytecode (hex, no 0x)."""

    name: str
    source: str
    abi: tuple[dict[str, Any], ...]
    bytecode: str
    deployed_bytecode: str

    @property
    def runtime_code_hash(self) -> str:
        """keccak256 of the runtime bytecode as deployed (0x-hex)."""
        from eth_utils import keccak

        return "0x" + keccak(bytes.fromhex(self.deployed_bytecode)).hex()


def solc_binary() -> Path:
    """The solc to use: ``SOLC_BINARY`` if set, else the solc-js entry point."""
    native = os.environ.get("SOLC_BINARY")
    if native:
        path = Path(native)
        if not path.is_file() or not os.access(path, os.X_OK):
            raise ToolchainError(f"SOLC_BINARY={native} is not an executable file; unset it to use solc-js")
        return path
    shim = PROJECT_ROOT / "scripts" / "bin" / "solc"
    if not (PROJECT_ROOT / "node_modules" / "solc" / "package.json").is_file():
        raise ToolchainError("solc-js is not installed: run `make setup` (it runs `npm ci`)")
    if shutil.which("node") is None:
        raise ToolchainError("node is not on PATH: install Node.js 20 (Debian package nodejs)")
    return shim


@lru_cache(maxsize=4)
def solc_version(binary: Path | None = None) -> str:
    """The full version string the compiler reports, e.g. ``0.8.28+commit.7893614a...``."""
    binary = binary or solc_binary()
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ToolchainError(f"cannot run {binary} --version: {exc}; run `make setup`") from exc
    for line in out.stdout.splitlines():
        if line.startswith("Version:"):
            return line.split(":", 1)[1].strip()
    raise ToolchainError(f"{binary} --version printed no 'Version:' line: {out.stdout!r}")


def install_solcx_link(binary: Path | None = None) -> Path:
    """Expose the compiler to py-solc-x / ape-solidity as an installed ``solc-vX.Y.Z``."""
    import solcx

    binary = binary or solc_binary()
    version = solc_version(binary).split("+", 1)[0]
    folder = solcx.get_solcx_install_folder()
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / f"solc-v{version}"
    if link.is_symlink() or link.exists():
        if link.resolve() == binary.resolve():
            return link
        link.unlink()
    link.symlink_to(binary)
    return link


def _sources(root: Path) -> dict[str, str]:
    folder = root / CONTRACTS_DIR
    files = sorted(p for p in folder.rglob("*.sol") if ".cache" not in p.parts)
    if not files:
        raise ToolchainError(f"no Solidity sources under {folder}")
    return {p.relative_to(root).as_posix(): p.read_text(encoding="utf-8") for p in files}


def standard_input(sources: dict[str, str]) -> dict[str, Any]:
    """The standard-JSON input, identical to the one ape-solidity builds."""
    return {
        "language": "Solidity",
        "sources": {name: {"content": text} for name, text in sources.items()},
        "settings": {
            "optimizer": {"enabled": True, "runs": OPTIMIZER_RUNS},
            "outputSelection": {name: {"*": list(_OUTPUTS), "": ["ast"]} for name in sources},
            "evmVersion": EVM_VERSION,
        },
    }


PACKAGED_ARTIFACTS = Path(__file__).resolve().parent / "data" / "artifacts.json"


def compile_contracts(root: Path = PROJECT_ROOT, *, use_cache: bool = True) -> dict[str, Artifact]:
    """Compile every contract under ``root/contracts``; cached by source hash.  An installed wheel has no
    ``contracts/`` folder: it ships the artifacts compiled when it was built (``mbds_py/data/artifacts.json``),
    so it deploys without a compiler."""
    if not (root / CONTRACTS_DIR).is_dir() and root == PROJECT_ROOT:
        return packaged_artifacts()
    sources = _sources(root)
    binary = solc_binary()
    version = solc_version(binary)
    std_input = standard_input(sources)
    key = hashlib.sha256(json.dumps([version, std_input], sort_keys=True).encode()).hexdigest()[:24]
    cache_file = CACHE_DIR / f"artifacts-{key}.json"
    if use_cache and cache_file.is_file():
        return _artifacts_from(json.loads(cache_file.read_text()))

    try:
        out = subprocess.run(
            [str(binary), "--standard-json", "--base-path", str(root), "--include-path", str(root / "node_modules")],
            input=json.dumps(std_input),
            capture_output=True,
            text=True,
            timeout=600,
            cwd=root,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise ToolchainError(f"running {binary} failed: {exc}") from exc
    try:
        result = json.loads(out.stdout)
    except json.JSONDecodeError as exc:
        raise ToolchainError(
            f"{binary} did not print standard JSON (exit {out.returncode}): {out.stderr.strip()[:500]}"
        ) from exc
    errors = [e for e in result.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise CompilationError("\n".join(e.get("formattedMessage", e.get("message", "")) for e in errors))

    table = {
        name: {
            "source": src,
            "abi": c["abi"],
            "bytecode": c["evm"]["bytecode"]["object"],
            "deployed_bytecode": c["evm"]["deployedBytecode"]["object"],
        }
        for src, contracts in result.get("contracts", {}).items()
        if src.startswith(CONTRACTS_DIR + "/")
        for name, c in contracts.items()
    }
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(table))
    tmp.replace(cache_file)
    return _artifacts_from(table)


def packaged_artifacts(path: Path = PACKAGED_ARTIFACTS) -> dict[str, Artifact]:
    """The artifacts an installed wheel ships (written by ``setup.py``'s build step)."""
    try:
        doc = json.loads(path.read_text())
    except OSError:
        raise ToolchainError(f"no contracts/ folder beside {Path(__file__).parent} and no compiled artifacts in "
                             f"{path}: run MBDS from a checkout, or install a wheel built by `pip wheel .`") from None
    except json.JSONDecodeError as exc:
        raise ToolchainError(f"{path}: damaged artifacts file (invalid JSON at line {exc.lineno}); reinstall "
                             "MBDS") from None
    return _artifacts_from(doc["contracts"])


def write_packaged_artifacts(path: Path, root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """Compile ``root/contracts`` and write the artifacts a wheel ships; returns the document written."""
    table = compile_contracts(root)
    doc = {"solc": solc_version(solc_binary()), "evm_version": EVM_VERSION, "optimizer_runs": OPTIMIZER_RUNS,
           "sources_sha256": hashlib.sha256(json.dumps(_sources(root), sort_keys=True).encode()).hexdigest(),
           "contracts": {name: {"source": a.source, "abi": list(a.abi), "bytecode": a.bytecode,
                                "deployed_bytecode": a.deployed_bytecode} for name, a in sorted(table.items())}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, sort_keys=True))
    return doc


def _artifacts_from(table: dict[str, dict[str, Any]]) -> dict[str, Artifact]:
    return {
        name: Artifact(
            name=name,
            source=entry["source"],
            abi=tuple(entry["abi"]),
            bytecode=entry["bytecode"],
            deployed_bytecode=entry["deployed_bytecode"],
        )
        for name, entry in table.items()
    }


def artifact(name: str) -> Artifact:
    """One compiled contract by name."""
    table = compile_contracts()
    try:
        return table[name]
    except KeyError:
        raise ToolchainError(f"no contract named {name!r}; known: {', '.join(sorted(table))}") from None
