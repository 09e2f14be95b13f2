"""Service keys (issue 13 item 12): never in the environment or on the command line.

A proxy is started by hand from an encrypted keystore with its passphrase on stdin, and another one by the
devnet launcher's path (the key over an inherited pipe, ``--key-fd``); both serve their identity, and neither
process has its key or passphrase in ``/proc/PID/environ`` or ``/proc/PID/cmdline``. A wrong passphrase, a
missing keystore or a key in one of the former environment variables is a clear error and a non-zero exit.
The serving proxies point at the session's AccessPolicy (``sharing_world``); nothing else is needed for
``/v1/info``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from mbds_py.crypto import PatientSecrets
from mbds_py.keystore import SecretBundle
from mbds_py.listen import bind_listener, bound_port
from mbds_py.service_keys import SECRET_ENV, child_env, node_bundle, write_service_keystore
from mbds_py.sharing.proxy import ProxyConfig

ROOT = Path(__file__).resolve().parents[2]
PASSPHRASE = "service keystore test passphrase"
CHEAP_N = 2**10  # the keystore default is 2**17; the reader takes n from the file
KEYS = PatientSecrets.derive(b"\x11" * 32)


def _config(tmp_path: Path, world=None, port: int = 0) -> Path:
    """A proxy configuration; ``port`` is that of a socket the test bound and hands down (``--listen``)."""
    rpc = world.chain.url if world is not None else "http://127.0.0.1:9"
    policy = world.policy.address if world is not None else "0x" + "11" * 20
    config = ProxyConfig(name="test", consortium_rpc=rpc, access_policy=policy,
                         consortium_index="0x" + "22" * 20, consortium_nodes=(),
                         private_chains=(),
                         storage=("http://127.0.0.1:9",), port=port, data_dir=str(tmp_path / "data"),
                         watch_interval=5.0)
    path = tmp_path / "proxy.json"
    config.save(path)
    return path


def _keystore(tmp_path: Path) -> Path:
    path = tmp_path / "proxy.keystore.json"
    bundle = SecretBundle(KEYS.to_bytes()[6:38], KEYS.to_bytes()[38:70], KEYS.to_bytes()[70:102], "proxy test")
    write_service_keystore(path, bundle, PASSPHRASE, "proxy", scrypt_n=CHEAP_N)
    return path


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SECRET_ENV}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def _proxy(config: Path, *args: str, env: dict[str, str] | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mbds_py.sharing.proxy", "--config", str(config),
                             "--log-level", "WARNING", *args], cwd=ROOT, env=env or _env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def _serving(proc: subprocess.Popen, config: Path, timeout: float = 60.0) -> dict:
    url = ProxyConfig.load(config).url
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, proc.stderr.read().decode()
        try:
            return requests.get(url + "/v1/info", timeout=1).json()
        except requests.RequestException:
            assert time.monotonic() < deadline, "the proxy did not answer"
            time.sleep(0.05)


def _assert_no_secret(pid: int, *secrets: str) -> None:
    environ = Path(f"/proc/{pid}/environ").read_bytes().decode("utf-8", "replace")
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace")
    for where, text in (("environ", environ), ("cmdline", cmdline)):
        for secret in secrets:
            assert secret not in text, f"a secret is in /proc/{pid}/{where}"
        assert not re.search(r"[0-9a-fA-F]{64}", text), f"a 32-byte hex value is in /proc/{pid}/{where}"
        assert not any(name + "=" in text for name in SECRET_ENV), f"a secret variable is in /proc/{pid}/{where}"


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_a_proxy_run_by_hand_reads_its_keystore_passphrase_from_stdin_and_keeps_it_out_of_proc(tmp_path, sharing_world):
    sock = bind_listener("127.0.0.1", 0)
    config, keystore = _config(tmp_path, sharing_world, bound_port(sock)), _keystore(tmp_path)
    with sock:
        proc = _proxy(config, "--keystore", str(keystore), "--listen", f"http={sock.fileno()}",
                      stdin=subprocess.PIPE, pass_fds=(sock.fileno(),))
    try:
        proc.stdin.write(PASSPHRASE.encode() + b"\n")
        proc.stdin.close()
        assert _serving(proc, config)["address"] == KEYS.address
        _assert_no_secret(proc.pid, PASSPHRASE, KEYS.to_bytes().hex(), KEYS.to_bytes()[6:38].hex())
    finally:
        _stop(proc)


def test_a_launched_proxy_gets_its_key_over_a_pipe_not_its_environment_or_argv(tmp_path, sharing_world):
    """The devnet launcher's path: spawn_service writes the key into a pipe the child reads once."""
    sock = bind_listener("127.0.0.1", 0)
    config = _config(tmp_path, sharing_world, bound_port(sock))
    r, w = os.pipe()
    with sock:
        proc = _proxy(config, "--key-fd", str(r), "--listen", f"http={sock.fileno()}", pass_fds=(r, sock.fileno()),
                      env=child_env({"PYTHONPATH": str(ROOT)}))
    os.close(r)
    os.write(w, KEYS.to_bytes().hex().encode() + b"\n")
    os.close(w)
    try:
        assert _serving(proc, config)["address"] == KEYS.address
        _assert_no_secret(proc.pid, KEYS.to_bytes().hex(), KEYS.to_bytes()[6:38].hex())
    finally:
        _stop(proc)


def test_a_wrong_passphrase_is_a_clear_error_and_a_non_zero_exit(tmp_path):
    proc = _proxy(_config(tmp_path), "--keystore", str(_keystore(tmp_path)), "--passphrase-fd", "0",
                  stdin=subprocess.PIPE)
    out, err = proc.communicate(b"not the passphrase\n", timeout=60)
    assert proc.returncode == 2
    assert "wrong passphrase or the file was modified" in err.decode()


@pytest.mark.parametrize("args, message", [
    (("--keystore", "missing.json"), "cannot read keystore"),
    ((), "no proxy key: pass --keystore FILE"),
])
def test_a_missing_keystore_or_key_is_a_clear_error_and_a_non_zero_exit(tmp_path, args, message):
    proc = _proxy(_config(tmp_path), *args, stdin=subprocess.PIPE)
    _, err = proc.communicate(b"whatever\n", timeout=60)
    assert proc.returncode == 2 and message in err.decode(), err.decode()


@pytest.mark.parametrize("module, variable, extra", [
    ("mbds_py.sharing.proxy", "MBDS_PROXY_KEY", ()),
    ("mbds_py.consortium.node", "MBDS_NODE_KEY", ()),
    ("mbds_py.private.node", "MBDS_NODE_PASSPHRASE", ("--index", "0")),
])
def test_a_key_in_a_former_environment_variable_is_refused_with_what_to_do(tmp_path, module, variable, extra):
    proc = subprocess.run([sys.executable, "-m", module, "--config", str(tmp_path / "unused.json"), *extra],
                          cwd=ROOT, env=_env(**{variable: KEYS.to_bytes()[6:38].hex()}), capture_output=True,
                          timeout=60)
    assert proc.returncode == 2
    assert f"{variable} is no longer read" in proc.stderr.decode() and "--keystore" in proc.stderr.decode()


@pytest.mark.parametrize("module, extra", [("mbds_py.consortium.node", ()),
                                           ("mbds_py.private.node", ("--index", "0"))])
def test_a_node_with_a_wrong_keystore_passphrase_exits_non_zero(tmp_path, module, extra):
    path = tmp_path / "node.keystore.json"
    write_service_keystore(path, node_bundle(b"\x01" * 32, "node"), PASSPHRASE, "node", scrypt_n=CHEAP_N)
    proc = subprocess.run([sys.executable, "-m", module, "--config", str(tmp_path / "unused.json"), *extra,
                           "--keystore", str(path)], cwd=ROOT, env=_env(), input=b"guess\n", capture_output=True,
                          timeout=60)
    assert proc.returncode == 2
    assert "wrong passphrase or the file was modified" in proc.stderr.decode(), proc.stderr.decode()


def test_a_node_keystore_holds_the_account_key_only():
    bundle = node_bundle(b"\x01" * 32, "hospital-a replica 0")
    assert bundle.account_key == b"\x01" * 32 and SecretBundle.from_json(bundle.to_json()) == bundle


def test_services_get_an_environment_without_keys_or_passphrases(monkeypatch):
    for name in SECRET_ENV:
        monkeypatch.setenv(name, "secret")
    env = child_env({"EXTRA": "1"})
    assert env["EXTRA"] == "1" and not set(SECRET_ENV) & set(env)


@pytest.mark.parametrize("module, extra", [("mbds_py.consortium.node", ()),
                                           ("mbds_py.private.node", ("--index", "0"))])
def test_a_node_takes_its_key_from_a_keystore_with_the_passphrase_on_a_fd(tmp_path, module, extra):
    """The right passphrase through --passphrase-fd: the key loads and the node goes on to its configuration
    (missing here: that is the error it stops at, not the key)."""
    path = tmp_path / "node.keystore.json"
    write_service_keystore(path, node_bundle(b"\x01" * 32, "node"), PASSPHRASE, "node", scrypt_n=CHEAP_N)
    r, w = os.pipe()
    os.write(w, PASSPHRASE.encode() + b"\n")
    os.close(w)
    try:
        proc = subprocess.run([sys.executable, "-m", module, "--config", str(tmp_path / "missing.json"), *extra,
                               "--keystore", str(path), "--passphrase-fd", str(r)], cwd=ROOT, env=_env(),
                              pass_fds=(r,), stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    finally:
        os.close(r)
    err = proc.stderr.decode()
    assert proc.returncode == 2 and "missing.json" in err and "passphrase" not in err, err
