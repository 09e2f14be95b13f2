"""CLI conventions (issue 17 items 5 and 8): --version, help without a command, lazy imports, --help of every
command, help on every option, -v/--log-level on long-running commands, tables that fit their content, the
portal refusing an address beyond loopback unless --allow-remote."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import mbds_py
from mbds_py import cli
from mbds_py.operations import status_table

ROOT = Path(__file__).resolve().parents[2]
# every long-running command: its required arguments and its default log level (the services log at INFO;
# the commands that drive the network from the CLI's own process leave logging as Python has it, warnings
# and errors only, unless asked)
LONG_RUNNING = {("storage", "run"): (["--data-dir", "d"], "INFO"),
                ("node", "run"): (["--config", "c", "--index", "0"], "INFO"),
                ("consortium", "run"): (["--config", "c"], "INFO"),
                ("proxy", "run"): (["--config", "c"], "INFO"),
                ("portal",): (["--as", "x"], "INFO"),
                ("up",): ([], None),
                ("devnet",): (["up"], None),
                ("deploy",): ([], None),
                ("demo",): ([], None),
                ("bench",): ([], None)}
HEAVY = ("web3", "eth_account", "umbral_pre", "blspy", "requests", "mbds_py.storage.node", "mbds_py.private",
         "mbds_py.sharing", "mbds_py.consortium", "mbds_py.portal", "mbds_py.bench", "mbds_py.crypto")


def _mbds(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mbds_py.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _walk(child, (*path, name))


def _parser_at(path: tuple[str, ...]) -> argparse.ArgumentParser:
    return dict(_walk(cli.build_parser(full=True)))[path]


def test_version_is_the_one_version_source():
    out = _mbds("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"mbds {mbds_py.__version__}"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", mbds_py.__version__)


def test_no_command_prints_help_and_exits_2():
    out = _mbds()
    assert out.returncode == cli.NO_COMMAND_EXIT == 2
    assert out.stdout.startswith("usage: mbds") and "COMMAND" in out.stdout and "storage" in out.stdout
    assert out.stderr == ""


@pytest.mark.parametrize("command", ["record", "access", "storage", "node", "consortium", "proxy"])
def test_a_command_without_its_action_prints_its_help(command):
    out = _mbds(command)
    assert out.returncode == 2 and out.stdout.startswith(f"usage: mbds {command}") and "ACTION" in out.stdout
    assert out.stderr == ""


def test_help_imports_no_service_module():
    """What made `mbds --help` slow: it imported every service (web3, crypto, HTTP servers) to list them."""
    code = ("import contextlib, io, json, sys\nfrom mbds_py.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
            "    main(['--help'])\n"
            "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT,
                         env={"PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    heavy = [m for m in loaded if m.startswith(HEAVY)]
    assert heavy == []


def test_only_the_command_run_loads_its_module():
    parser = cli.build_parser(["storage", "run", "--help"])
    tree = dict(_walk(parser))
    assert ("storage", "run") in tree and ("node", "run") not in tree and ("proxy", "run") not in tree


def test_every_option_and_argument_has_help_text():
    missing = []
    for path, parser in _walk(cli.build_parser(full=True)):
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            if not (action.help or "").strip():
                missing.append(f"mbds {' '.join(path)} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []


@pytest.mark.parametrize("path", LONG_RUNNING, ids=" ".join)
def test_long_running_commands_take_verbose_and_log_level(path):
    parser = _parser_at(path)
    required, default = LONG_RUNNING[path]
    assert parser.parse_args(required).log_level == default
    assert parser.parse_args([*required, "-v"]).log_level == "DEBUG"
    assert parser.parse_args([*required, "--verbose"]).log_level == "DEBUG"
    assert parser.parse_args([*required, "--log-level", "WARNING"]).log_level == "WARNING"
    assert parser.parse_args([*required, "--log-level", "error"]).log_level == "ERROR"


@pytest.mark.parametrize("argv,command,configured", [
    (["devnet", "status", "-v"], "cmd_devnet", "DEBUG"),
    (["demo", "--log-level", "INFO"], "cmd_demo", "INFO"),
    (["bench", "--log-level", "warning"], "cmd_bench", "WARNING"),
    (["demo"], "cmd_demo", None),  # no option: logging as Python has it
    (["storage", "run", "--data-dir", "d", "-v"], "cmd_storage", None),  # a service sets up its own logging
])
def test_main_sets_up_logging_for_the_commands_that_do_not_themselves(monkeypatch, argv, command, configured):
    import logging

    calls = []
    monkeypatch.setattr(cli, command, lambda args: 0)
    monkeypatch.setattr(logging, "basicConfig", lambda **kw: calls.append(kw["level"]))
    assert cli.main(argv) == 0
    assert calls == ([configured] if configured else [])


def _all_commands() -> list[tuple[str, ...]]:
    return [path for path, _ in _walk(cli.build_parser(full=True)) if path]


@pytest.mark.parametrize("path", _all_commands(), ids=" ".join)
def test_every_command_help_runs_without_importing_a_service(path):
    """`mbds ... --help` of every command and action answers, and parses its arguments without web3, the crypto
    bindings or the services' HTTP servers (what made `mbds portal --help` take 1.3 s)."""
    code = ("import contextlib, io, json, sys\nfrom mbds_py.cli import main\nout = io.StringIO()\n"
            "with contextlib.redirect_stdout(out):\n"
            "    try:\n        main(sys.argv[1:])\n        code = None\n"
            "    except SystemExit as exc:\n        code = exc.code\n"
            "print(json.dumps({'code': code, 'help': out.getvalue(), 'modules': sorted(sys.modules)}))")
    out = subprocess.run([sys.executable, "-c", code, *path, "--help"], capture_output=True, text=True, timeout=60,
                         cwd=ROOT, env={"PYTHONPATH": str(ROOT)})
    assert out.returncode == 0 and out.stderr == "", out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["code"] == 0
    assert result["help"].startswith(f"usage: mbds {' '.join(path)}")
    assert [m for m in result["modules"] if m.startswith(HEAVY)] == []
    assert {m for m in result["modules"] if m.startswith("mbds_py")} <= {
        "mbds_py", "mbds_py.cli", "mbds_py.cli_options", "mbds_py.errors", "mbds_py.verbs"}


def test_status_table_fits_names_longer_than_14_characters():
    rows = [{"name": "hospital-a-replica-0", "kind": "replica", "pid": 1234, "rpc_url": "http://127.0.0.1:20001",
             "up": True, "log": "/s/logs/hospital-a-replica-0.log"},
            {"name": "internet-platform-x-consortium-node", "kind": "consortium", "pid": None,
             "rpc_url": None, "up": False, "log": None}]
    lines = status_table(rows).splitlines()
    assert len(lines) == 3
    # every column starts at the same offset on every line, and no two cells run together
    header_offsets = [m.start() for m in re.finditer(r"\S+", lines[0])]
    for line in lines[1:]:
        assert [m.start() for m in re.finditer(r"\S+", line)] == header_offsets
    assert "internet-platform-x-consortium-node  consortium" in lines[2]


def test_fit_table_widens_to_its_longest_cell():
    text = cli.fit_table([["consortium-of-eleven-hospitals", "CreditRegistry", "0xabc", "deployed"],
                          ["a", "AccessPolicy", "0xdef", "found"]])
    first, second = text.splitlines()
    assert first.index("CreditRegistry") == second.index("AccessPolicy") == len("consortium-of-eleven-hospitals") + 2
    assert cli.fit_table([["x", "12 bytes"], ["longer", "1234 bytes"]], right=(1,)).splitlines()[0].endswith(
        "  12 bytes")


@pytest.mark.parametrize("host,loopback", [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True),
                                           ("[::1]", True), ("localhost", True), ("0.0.0.0", False),
                                           ("::", False), ("192.0.2.7", False), ("example.org", False)])
def test_loopback_addresses(host, loopback):
    assert cli.is_loopback(host) is loopback


REFUSED = ("mbds portal: error: --host {host} is not a loopback address: other machines could reach this portal, "
           "which speaks plain HTTP (the passphrase and decrypted records would cross the network unencrypted); "
           "keep the default 127.0.0.1, or add --allow-remote and put a TLS-terminating proxy in front\n")
REMOTE_WARNING = ("mbds portal: WARNING: --host {host} listens beyond loopback (--allow-remote): the portal speaks "
                  "plain HTTP, so it needs a TLS-terminating proxy in front; without one the passphrase and decrypted "
                  "records cross the network unencrypted.\n")


@pytest.fixture()
def portal_runs(monkeypatch):
    """The hosts the portal was started on (``run_portal`` replaced: nothing listens)."""
    import mbds_py.portal.server as server

    seen: list[str] = []
    monkeypatch.setattr(server, "run_portal", lambda args: seen.append(args.host) or 0)
    return seen


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.7", "portal.example.org"])
def test_portal_beyond_loopback_is_refused_without_allow_remote(portal_runs, capsys, host):
    assert cli.main(["portal", "--as", "alice", "--host", host]) == cli.PORTAL_REFUSED_EXIT == 2
    assert portal_runs == []
    out = capsys.readouterr()
    assert out.out == "" and out.err == REFUSED.format(host=host)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.7"])
def test_portal_beyond_loopback_with_allow_remote_starts_and_warns_it_needs_tls(portal_runs, capsys, host):
    assert cli.main(["portal", "--as", "alice", "--host", host, "--allow-remote"]) == 0
    assert portal_runs == [host]
    assert capsys.readouterr().err == REMOTE_WARNING.format(host=host)


@pytest.mark.parametrize("argv", [[], ["--host", "127.0.0.1"], ["--host", "::1"], ["--host", "localhost"],
                                  ["--host", "127.0.0.1", "--allow-remote"]])
def test_portal_on_loopback_starts_without_a_word(portal_runs, capsys, argv):
    assert cli.main(["portal", "--as", "alice", *argv]) == 0
    assert len(portal_runs) == 1 and capsys.readouterr().err == ""


def test_license_is_the_full_apache_2_text():
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert len(text.splitlines()) > 190
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]["text"] == "Apache-2.0"


def test_changelog_keeps_a_changelog():
    text = (ROOT / "CHANGELOG.md").read_text()
    assert text.startswith("# Changelog") and "## [Unreleased]" in text
    assert f"## [{mbds_py.__version__}]" in text
