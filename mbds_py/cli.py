"""The ``mbds`` command line."""

from __future__ import annotations

import argparse
import getpass
import ipaddress
import json
import os
import sys
from typing import Callable

from . import __version__
from .cli_options import add_log_level  # the options only: cheap, no service module
from .errors import MBDSError

NO_COMMAND_EXIT = 2  # `mbds` (or `mbds storage`) without a command: its help on stdout, exit 2 (a usage error)


def _spec(args: argparse.Namespace):
    from .spec import load_spec

    return load_spec(getattr(args, "spec", None), state_dir=getattr(args, "state_dir", None))


def _passphrase(args: argparse.Namespace, prompt: str = "Passphrase for the participants' keystores: ") -> str:
    """The keystores' passphrase: one line on stdin (``--passphrase-stdin``), else MBDS_PASSPHRASE, else a
    prompt on the terminal."""
    if getattr(args, "passphrase_stdin", False):
        value = sys.stdin.readline().rstrip("\n")
        if not value:
            raise MBDSError("--passphrase-stdin: standard input held no passphrase line")
        return value
    value = os.environ.get("MBDS_PASSPHRASE")
    if value:
        return value
    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    raise MBDSError("no passphrase: pipe it with --passphrase-stdin, or run in a terminal to be prompted")


def _population(args: argparse.Namespace):
    from .population import DEFAULT_POPULATION, load_population

    return load_population(args.population) if getattr(args, "population", None) else DEFAULT_POPULATION


def cmd_devnet(args: argparse.Namespace) -> int:
    from .devnet import Devnet

    devnet = Devnet(_spec(args))
    if args.action == "up":
        print(f"state: {devnet.state_dir}")
        devnet.up()
        return _print_status(devnet, as_json=False)
    if args.action == "status":
        return _print_status(devnet, as_json=args.json)
    return _down(devnet)


def _print_status(devnet, *, as_json: bool) -> int:
    from .operations import status_table

    rows = devnet.status()
    if as_json:
        print(json.dumps({"state_dir": str(devnet.state_dir), "services": rows}, indent=2))
    elif not rows or all(r["pid"] is None and r["engine"] != "external" for r in rows):
        print(f"nothing is running (state: {devnet.state_dir})")
    else:
        print(status_table(rows))
        print(f"state: {devnet.state_dir}")
    return 0 if rows and all(r["up"] for r in rows) else 3


def _down(devnet) -> int:
    stopped = devnet.down()
    print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'} (state: {devnet.state_dir})")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from .devnet import Devnet
    from .operations import status_table, up

    spec = _spec(args)
    report = up(spec, _passphrase(args), _population(args), proxies=args.proxies)
    print(status_table(report.rows))
    print(f"up in {report.seconds:.1f} s; state: {report.state_dir}\n"
          f"stop it with: mbds down --state-dir {report.state_dir}")
    return 0 if all(r["up"] for r in Devnet(spec).status()) else 3


def cmd_status(args: argparse.Namespace) -> int:
    from .devnet import Devnet

    return _print_status(Devnet(_spec(args)), as_json=args.json)


def cmd_down(args: argparse.Namespace) -> int:
    from .devnet import Devnet

    return _down(Devnet(_spec(args)))


def cmd_logs(args: argparse.Namespace) -> int:
    from .operations import logs

    print(logs(_spec(args), args.name, args.lines))
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    from .operations import deploy

    spec = _spec(args)
    table, created = deploy(spec, _passphrase(args), _population(args))
    rows = [[chain, name, d.address, "deployed" if f"{chain}/{name}" in created else "found"]
            for chain, entries in table.items() for name, d in entries.items()]
    if rows:
        print(fit_table(rows))
    print(f"state: {spec.state_dir}")
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    from .toolchain import compile_contracts, install_solcx_link, solc_binary, solc_version

    binary = solc_binary()
    print(f"solc {solc_version(binary)} ({binary})")
    if args.link:
        print(f"py-solc-x / ape-solidity link: {install_solcx_link(binary)}")
    rows = [[name, f"{len(a.deployed_bytecode) // 2} bytes", a.source]
            for name, a in sorted(compile_contracts(use_cache=not args.force).items())]
    if rows:
        print(fit_table(rows, right=(1,)))
    return 0


def fit_table(rows: list[list[str]], header: list[str] | None = None, *, right: tuple[int, ...] = ()) -> str:
    """Rows as aligned columns, each as wide as its longest cell (``right``: right-aligned columns)."""
    table = [header, *rows] if header else list(rows)
    widths = [max(len(str(x)) for x in col) for col in zip(*table)]
    return "\n".join("  ".join(str(x).rjust(w) if i in right else str(x).ljust(w)
                                for i, (x, w) in enumerate(zip(row, widths))).rstrip() for row in table)


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    passphrase = None
    if args.keep:  # a network left running is only useful if its participants can unlock their keys
        passphrase = _passphrase(args)
    steps = run_demo(spec_path=args.spec, json_file=args.json, keep=args.keep, sharing=args.sharing,
                     state_dir=args.state_dir, passphrase=passphrase)
    return 0 if all(s.ok for s in steps) else 1


def cmd_storage(args: argparse.Namespace) -> int:
    from .storage.node import run_storage_node

    return run_storage_node(args)


def cmd_node(args: argparse.Namespace) -> int:
    from .private.node import run_node

    return run_node(args)


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench.runner import run

    return run(args)


def cmd_consortium(args: argparse.Namespace) -> int:
    from .consortium.node import run_consortium_node

    return run_consortium_node(args)


def cmd_proxy(args: argparse.Namespace) -> int:
    from .sharing.proxy import run_proxy

    return run_proxy(args)


def is_loopback(host: str) -> bool:
    """True for an address only this machine reaches (127.0.0.0/8, ::1, ``localhost``)."""
    if host.strip().lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # another host name: it may resolve to any interface


PORTAL_REFUSED_EXIT = 2


def cmd_portal(args: argparse.Namespace) -> int:
    if not is_loopback(args.host):
        if not args.allow_remote:
            print(f"mbds portal: error: --host {args.host} is not a loopback address: other machines could reach "
                  "this portal, which speaks plain HTTP (the passphrase and decrypted records would cross the "
                  "network unencrypted); keep the default 127.0.0.1, or add --allow-remote and put a "
                  "TLS-terminating proxy in front", file=sys.stderr, flush=True)
            return PORTAL_REFUSED_EXIT
        print(f"mbds portal: WARNING: --host {args.host} listens beyond loopback (--allow-remote): the portal "
              "speaks plain HTTP, so it needs a TLS-terminating proxy in front; without one the passphrase and "
              "decrypted records cross the network unencrypted.", file=sys.stderr, flush=True)
    from .portal.server import run_portal

    return run_portal(args)


def _storage_arguments(q: argparse.ArgumentParser) -> None:
    from .cli_options import storage_arguments as add_arguments

    st_sub = q.add_subparsers(dest="storage_action", metavar="ACTION")
    run = add_arguments(st_sub.add_parser("run", help="serve /api/v0/add, cat, pin/add, pin/rm, pin/ls, version"))
    run.set_defaults(func=cmd_storage)
    _long_running(run)


def _node_arguments(q: argparse.ArgumentParser) -> None:
    from .cli_options import node_arguments as add_arguments

    nd_sub = q.add_subparsers(dest="node_action", metavar="ACTION")
    run = add_arguments(nd_sub.add_parser("run", help="run one replica (key: --keystore FILE, passphrase on stdin "
                                                       "or --passphrase-fd; the launcher: --key-fd)"))
    run.set_defaults(func=cmd_node)
    _long_running(run)


def _consortium_arguments(q: argparse.ArgumentParser) -> None:
    from .cli_options import consortium_arguments as add_arguments

    cs_sub = q.add_subparsers(dest="consortium_action", metavar="ACTION")
    run = add_arguments(cs_sub.add_parser("run", help="run one consortium node (key: --keystore FILE or --key-fd N)"))
    run.set_defaults(func=cmd_consortium)
    _long_running(run)


def _proxy_arguments(q: argparse.ArgumentParser) -> None:
    from .cli_options import proxy_arguments as add_arguments

    px_sub = q.add_subparsers(dest="proxy_action", metavar="ACTION")
    run = add_arguments(px_sub.add_parser("run", help="run one proxy (key: --keystore FILE or --key-fd N)"))
    run.set_defaults(func=cmd_proxy)
    _long_running(run)


def _bench_arguments(q: argparse.ArgumentParser) -> None:
    from .cli_options import bench_arguments as add_arguments

    add_arguments(q)
    q.set_defaults(func=cmd_bench)
    _long_running(q, default=None, configure=True)


def _portal_arguments(q: argparse.ArgumentParser) -> None:
    from .cli_options import portal_arguments as add_arguments

    add_arguments(q)
    q.set_defaults(func=cmd_portal)
    _long_running(q)


# Commands whose options live in heavy modules (web3, crypto, HTTP servers): their sub-parser is filled only
# when that command is the one being run, so `mbds --help` and the light commands start without importing them.
LAZY_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None]]] = {
    "storage": ("the bundled storage node (Kubo RPC API subset)", _storage_arguments),
    "node": ("a PBFT replica of a private chain", _node_arguments),
    "consortium": ("a consortium institution's DPoS node (RPN/ATN)", _consortium_arguments),
    "proxy": ("a re-encryption proxy of an authority center", _proxy_arguments),
    "bench": ("measure the system beside its baselines", _bench_arguments),
    "portal": ("the web portal (online client) of one patient or doctor, on 127.0.0.1 by default",
               _portal_arguments),
}


def _long_running(q: argparse.ArgumentParser, *, default: str | None = "INFO", configure: bool = False) -> None:
    """Every long-running command takes ``--log-level LEVEL`` and ``-v/--verbose`` (= ``--log-level DEBUG``).
    ``configure``: :func:`main` sets up logging at the level given (a service sets up its own)."""
    if "--log-level" not in q._option_string_actions:
        add_log_level(q, default=default)
    if configure:
        q.set_defaults(_configure_logging=True)


def _command_of(argv: list[str]) -> str | None:
    """The command named on the command line (the first word that is not an option)."""
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(argv: list[str] | None = None, *, full: bool = False) -> argparse.ArgumentParser:
    """The ``mbds`` parser.  Only the command named in ``argv`` (every one with ``full``) gets the options of
    the heavy modules; the others are listed with their help line."""
    wanted = None if full or argv is None else _command_of(argv)
    p = argparse.ArgumentParser(
        prog="mbds", description="Medical blockchain double-chain system",
        epilog="`mbds COMMAND --help` shows a command's options. Without a command, this help is printed and "
               f"the exit status is {NO_COMMAND_EXIT}. Exit status of commands: 0 done, 1 refused or failed "
               "check, 2 error, 3 a service is down (status).")
    p.add_argument("--version", action="version", version=f"mbds {__version__}",
                   help="print the version and exit")
    p.set_defaults(_help_parser=p)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    parsers: dict[str, argparse.ArgumentParser] = {}

    def add(name: str, **kw) -> argparse.ArgumentParser:
        q = sub.add_parser(name, **kw)
        q.set_defaults(_help_parser=q)
        parsers[name] = q
        return q

    def common(q: argparse.ArgumentParser, *, passphrase: bool = False, population: bool = False) -> None:
        q.add_argument("--spec", metavar="FILE",
                       help="network spec TOML (default: the embedded devnet: a consortium chain, "
                            "two hospitals and one Internet platform)")
        q.add_argument("--state-dir", metavar="DIR",
                       help="the network's state folder (default: $MBDS_STATE_DIR, else the "
                            "spec's devnet.state_dir, else ~/.local/state/mbds/network)")
        if passphrase:
            q.add_argument("--passphrase-stdin", action="store_true",
                           help="read the keystores' passphrase from the first line of standard input "
                                "(default: MBDS_PASSPHRASE, else a prompt)")
        if population:
            q.add_argument("--population", metavar="FILE",
                           help="population TOML ([[members]] name, role, real_identity, institution, chain); "
                                "default: the demo's")

    u = add("up", help="bring up the whole network (chains, contracts, replicas, consortium "
                       "nodes, storage, proxies) and leave it running")
    common(u, passphrase=True, population=True)
    u.add_argument("--no-proxies", dest="proxies", action="store_false", help="do not start the proxies")
    u.set_defaults(func=cmd_up)
    _long_running(u, default=None, configure=True)
    s_ = add("status", help="every service of the network: kind, pid, URL, health, log (exit 3 if any is down)")
    common(s_)
    s_.add_argument("--json", action="store_true", help="as JSON")
    s_.set_defaults(func=cmd_status)
    lg = add("logs", help="the last lines of one service's log")
    common(lg)
    lg.add_argument("name", help="a service name as `mbds status` lists it, e.g. hospital-a-replica-0")
    lg.add_argument("-n", "--lines", type=int, default=50, help="how many lines (0 = all; default 50)")
    lg.set_defaults(func=cmd_logs)
    dn = add("down", help="stop every process of the network")
    common(dn)
    dn.set_defaults(func=cmd_down)

    from .verbs import add_verbs  # record, access, search, read, audit, receipt: as a named participant

    before = set(sub.choices)
    add_verbs(sub, common)
    for name in set(sub.choices) - before:
        _help_defaults(sub.choices[name])

    d = add("devnet", help="start, inspect or stop only the chains and storage nodes of a spec")
    d.add_argument("action", choices=["up", "status", "down"],
                   help="up: start them; status: list them; down: stop them")
    common(d)
    d.add_argument("--json", action="store_true", help="status as JSON")
    d.set_defaults(func=cmd_devnet)
    _long_running(d, default=None, configure=True)

    dep = add("deploy", help="enrol the population and deploy each chain's contracts (idempotent; "
                             "the chains must be up)")
    common(dep, passphrase=True, population=True)
    dep.set_defaults(func=cmd_deploy)
    _long_running(dep, default=None, configure=True)

    c = add("compile", help="compile the contracts (cached by source hash)")
    c.add_argument("--force", action="store_true", help="ignore the cache")
    c.add_argument("--link", action="store_true", help="expose the compiler to py-solc-x and ape-solidity")
    c.set_defaults(func=cmd_compile)

    for name, (help_, fill) in LAZY_COMMANDS.items():
        q = add(name, help=help_, description=help_)
        if full or wanted == name:
            fill(q)
            _help_defaults(q)

    demo = add("demo", help="run the scripted demo on embedded defaults (up, the story, down)")
    common(demo, passphrase=True)
    demo.add_argument("--json", metavar="FILE", help="write each step's expected/actual outcome and timing")
    demo.add_argument("--keep", action="store_true",
                      help="leave the network running (keystore passphrase: --passphrase-stdin, MBDS_PASSPHRASE "
                           "or a prompt)")
    demo.add_argument("--no-sharing", dest="sharing", action="store_false",
                      help="stop after indexing (skip the proxies, the hybrid journey and the policy script)")
    demo.set_defaults(func=cmd_demo)
    _long_running(demo, default=None, configure=True)
    return p


def _help_defaults(q: argparse.ArgumentParser) -> None:
    """Each nested parser prints its own help when run without a sub-command (``mbds record``)."""
    q.set_defaults(_help_parser=q)
    for action in q._actions:
        if isinstance(action, argparse._SubParsersAction):
            action.required = False
            if action.metavar is None:
                action.metavar = "ACTION"
            for child in action.choices.values():
                _help_defaults(child)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    if not hasattr(args, "func"):  # `mbds` or `mbds storage` alone: that parser's help
        args._help_parser.print_help()
        return NO_COMMAND_EXIT
    if getattr(args, "_configure_logging", False) and args.log_level is not None:
        import logging

        logging.basicConfig(level=args.log_level, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except MBDSError as exc:
        print(f"mbds: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
