"""The wheel ships the compiled contracts (issue 17 item 5) and the services' OpenAPI documents: built from this
tree, installed into a fresh venv, its `mbds` brings up chains and deploys every contract with no compiler and
no checkout.

The fresh venv borrows the *dependencies* from the running interpreter's environment through a ``.pth``
line (installing web3, Ape, matplotlib… again would take minutes of a 2-core machine); MBDS itself comes only
from the wheel — the test checks ``mbds_py.__file__`` and that no ``contracts/`` or compiler is reachable.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import mbds_py
from mbds_py.apidoc import SERVICES
from mbds_py.devnet import anvil_binary
from mbds_py.toolchain import compile_contracts
from tests.foundation.test_devnet import spec_file

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("devnet")]
ROOT = Path(__file__).resolve().parents[2]
POPULATION = Path(__file__).parent / "data" / "population.toml"
SHIPPED = ("pyproject.toml", "setup.py", "README.md", "LICENSE", "CHANGELOG.md", "mbds_py", "contracts", "scripts/bin")


def _source_copy(dest: Path) -> Path:
    """What a fresh clone has, without this checkout's build folders (the build must not write into it)."""
    for name in SHIPPED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", ".cache"))
        else:
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    (dest / "node_modules").symlink_to((ROOT / "node_modules").resolve())  # solc-js and OpenZeppelin
    if (ROOT / ".build" / "mbds").is_dir():  # the compile cache (keyed by sources and compiler): saves a compile
        shutil.copytree(ROOT / ".build" / "mbds", dest / ".build" / "mbds")
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    src = _source_copy(work / "src")
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                          "-w", str(work / "dist"), str(src)], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    (found,) = (work / "dist").glob("mbds-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory) -> Path:
    env_dir = tmp_path_factory.mktemp("venv") / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=120)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "_mbds_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    out = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                          str(wheel)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return env_dir


def _installed(venv: Path, *args: str, cwd: Path, stdin: str | None = None, timeout: float = 300):
    """Run in the fresh venv, away from the checkout: no PYTHONPATH, no compiler link, Anvil on PATH."""
    env = {"PATH": os.pathsep.join([str(venv / "bin"), str(Path(anvil_binary()).parent), "/usr/bin", "/bin"]),
           "HOME": str(cwd)}
    return subprocess.run(list(args), cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=timeout)


def test_the_wheel_ships_the_artifacts_license_and_version(wheel: Path):
    assert wheel.name == f"mbds-{mbds_py.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        shipped = json.loads(z.read("mbds_py/data/artifacts.json"))
        license_text = z.read(f"mbds-{mbds_py.__version__}.dist-info/LICENSE").decode()
        entry_points = z.read(f"mbds-{mbds_py.__version__}.dist-info/entry_points.txt").decode()
    assert not any(n.startswith(("contracts/", "tests/")) for n in names)
    assert "Apache License" in license_text and "mbds = mbds_py.cli:main" in entry_points
    assert {f"mbds_py/data/api/{service}.json" for service in SERVICES} <= names  # served at GET /openapi.json
    here = compile_contracts()
    assert set(shipped["contracts"]) == set(here)
    for name, artifact in here.items():  # the same bytecode as the checkout compiles
        assert shipped["contracts"][name]["bytecode"] == artifact.bytecode, name


def test_installed_mbds_deploys_without_a_compiler(venv: Path, tmp_path: Path):
    where = _installed(venv, "python", "-c", "import mbds_py; print(mbds_py.__file__)", cwd=tmp_path)
    assert where.stdout.strip().startswith(str(venv)), where.stdout + where.stderr
    assert _installed(venv, "mbds", "--version", cwd=tmp_path).stdout.strip() == f"mbds {mbds_py.__version__}"
    no_compiler = _installed(venv, "mbds", "compile", cwd=tmp_path)
    assert no_compiler.returncode == 2 and "mbds: error:" in no_compiler.stderr  # nothing to compile with

    spec = spec_file(tmp_path)
    up = _installed(venv, "mbds", "devnet", "up", "--spec", str(spec), cwd=tmp_path)
    try:
        assert up.returncode == 0, up.stderr
        deployed = _installed(venv, "mbds", "deploy", "--spec", str(spec), "--population", str(POPULATION),
                              "--passphrase-stdin", cwd=tmp_path, stdin="wheel test passphrase\n")
        assert deployed.returncode == 0, deployed.stderr
        assert deployed.stdout.count(" deployed") == 6 and "hospital-a  SlipLedger" in deployed.stdout
    finally:
        _installed(venv, "mbds", "down", "--spec", str(spec), cwd=tmp_path)
