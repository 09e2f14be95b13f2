"""The ``mbds`` command line."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys

from .errors import MBDSError


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
    for chain, entries in table.items():
        for name, d in entries.items():
            tag = "deployed" if f"{chain}/{name}" in created else "found"
            print(f"{chain:14} {name:20} {d.address}  {tag}")
    print(f"state: {spec.state_dir}")
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    from .toolchain import compile_contracts, install_solcx_link, solc_binary, solc_version

    binary = solc_binary()
    print(f"solc {solc_version(binary)} ({binary})")
    if args.link:
        print(f"py-solc-x / ape-solidity link: {install_solcx_link(binary)}")
    for name, a in sorted(compile_contracts(use_cache=not args.force).items()):
        print(f"{name:24} {len(a.deployed_bytecode) // 2:6} bytes  {a.source}")
    return 0


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


def cmd_portal(args: argparse.Namespace) -> int:
    from .portal.server import run_portal

    return run_portal(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mbds", description="Medical blockchain double-chain system")
    sub = p.add_subparsers(dest="command", required=True)

    def common(q: argparse.ArgumentParser, *, passphrase: bool = False, population: bool = False) -> None:
        q.add_argument("--spec", help="network spec TOML (default: the embedded devnet: a consortium chain, "
                                      "two hospitals and one Internet platform)")
        q.add_argument("--state-dir", help="the network's state folder (default: $MBDS_STATE_DIR, else the "
                                           "spec's devnet.state_dir, else ~/.local/state/mbds/network)")
        if passphrase:
            q.add_argument("--passphrase-stdin", action="store_true",
                           help="read the keystores' passphrase from the first line of standard input "
                                "(default: MBDS_PASSPHRASE, else a prompt)")
        if population:
            q.add_argument("--population", metavar="FILE",
                           help="population TOML ([[members]] name, role, real_identity, institution, chain); "
                                "default: the demo's")

    u = sub.add_parser("up", help="bring up the whole network (chains, contracts, replicas, consortium "
                                  "nodes, storage, proxies) and leave it running")
    common(u, passphrase=True, population=True)
    u.add_argument("--no-proxies", dest="proxies", action="store_false", help="do not start the proxies")
    u.set_defaults(func=cmd_up)
    s_ = sub.add_parser("status", help="every service of the network: kind, pid, URL, health, log (exit 3 if "
                                       "any is down)")
    common(s_)
    s_.add_argument("--json", action="store_true", help="as JSON")
    s_.set_defaults(func=cmd_status)
    lg = sub.add_parser("logs", help="the last lines of one service's log")
    common(lg)
    lg.add_argument("name", help="a service name as `mbds status` lists it, e.g. hospital-a-replica-0")
    lg.add_argument("-n", "--lines", type=int, default=50, help="how many lines (0 = all; default 50)")
    lg.set_defaults(func=cmd_logs)
    dn = sub.add_parser("down", help="stop every process of the network")
    common(dn)
    dn.set_defaults(func=cmd_down)

    from .verbs import add_verbs  # record, access, search, read, audit, receipt: as a named participant

    add_verbs(sub, common)

    d = sub.add_parser("devnet", help="start, inspect or stop only the chains and storage nodes of a spec")
    d.add_argument("action", choices=["up", "status", "down"])
    common(d)
    d.add_argument("--json", action="store_true", help="status as JSON")
    d.set_defaults(func=cmd_devnet)

    dep = sub.add_parser("deploy", help="enrol the population and deploy each chain's contracts (idempotent; "
                                        "the chains must be up)")
    common(dep, passphrase=True, population=True)
    dep.set_defaults(func=cmd_deploy)

    c = sub.add_parser("compile", help="compile the contracts (cached by source hash)")
    c.add_argument("--force", action="store_true", help="ignore the cache")
    c.add_argument("--link", action="store_true", help="expose the compiler to py-solc-x and ape-solidity")
    c.set_defaults(func=cmd_compile)

    st = sub.add_parser("storage", help="the bundled storage node (Kubo RPC API subset)")
    st_sub = st.add_subparsers(dest="storage_action", required=True)
    from .storage.node import add_arguments as storage_arguments

    run = storage_arguments(st_sub.add_parser("run", help="serve /api/v0/add, cat, pin/add, pin/rm, pin/ls, version"))
    run.set_defaults(func=cmd_storage)

    nd = sub.add_parser("node", help="a PBFT replica of a private chain")
    nd_sub = nd.add_subparsers(dest="node_action", required=True)
    from .private.node import add_arguments as node_arguments

    node_arguments(nd_sub.add_parser("run", help="run one replica (key: --keystore FILE, passphrase on stdin or --passphrase-fd; the launcher: --key-fd)"))
    nd_sub.choices["run"].set_defaults(func=cmd_node)

    cs = sub.add_parser("consortium", help="a consortium institution's DPoS node (RPN/ATN)")
    cs_sub = cs.add_subparsers(dest="consortium_action", required=True)
    from .consortium.node import add_arguments as consortium_arguments

    consortium_arguments(cs_sub.add_parser("run", help="run one consortium node (key: --keystore FILE or --key-fd N)"))
    cs_sub.choices["run"].set_defaults(func=cmd_consortium)

    px = sub.add_parser("proxy", help="a re-encryption proxy of an authority center")
    px_sub = px.add_subparsers(dest="proxy_action", required=True)
    from .sharing.proxy import add_arguments as proxy_arguments

    proxy_arguments(px_sub.add_parser("run", help="run one proxy (key: --keystore FILE or --key-fd N)"))
    px_sub.choices["run"].set_defaults(func=cmd_proxy)

    b = sub.add_parser("bench", help="measure the system beside its baselines")
    from .bench.runner import add_arguments as bench_arguments

    bench_arguments(b)
    b.set_defaults(func=cmd_bench)

    po = sub.add_parser("portal", help="the web portal (online client) of one patient or doctor, on localhost")
    from .portal.server import add_arguments as portal_arguments

    portal_arguments(po)
    po.set_defaults(func=cmd_portal)

    demo = sub.add_parser("demo", help="run the scripted demo on embedded defaults (up, the story, down)")
    common(demo, passphrase=True)
    demo.add_argument("--json", metavar="FILE", help="write each step's expected/actual outcome and timing")
    demo.add_argument("--keep", action="store_true",
                      help="leave the network running (keystore passphrase: --passphrase-stdin, MBDS_PASSPHRASE "
                           "or a prompt)")
    demo.add_argument("--no-sharing", dest="sharing", action="store_false",
                      help="stop after indexing (skip the proxies, the hybrid journey and the policy script)")
    demo.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except MBDSError as exc:
        print(f"mbds: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
