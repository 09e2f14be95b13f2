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

    return load_spec(args.spec, state_dir=getattr(args, "state_dir", None))


def _passphrase(env: str, prompt: str) -> str:
    value = os.environ.get(env)
    if value:
        return value
    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    raise MBDSError(f"no passphrase: set {env} or run in a terminal to be prompted")


def cmd_devnet(args: argparse.Namespace) -> int:
    from .devnet import Devnet

    devnet = Devnet(_spec(args))
    if args.action == "up":
        for name, c in devnet.up().items():
            print(f"{name:14} chain {c.chain_id:<8} {c.rpc_url}{'  (external)' if c.external else f'  pid {c.pid}'}")
        for name, svc in sorted(devnet.load_services().items()):
            print(f"{name:14} {svc.kind:14} {svc.url}  pid {svc.pid}")
        print(f"state: {devnet.state_file}")
    elif args.action == "status":
        rows = devnet.status()
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            for r in rows:
                chain_id = f"chain {r['chain_id']}" if r["chain_id"] else ""
                print(f"{r['name']:14} {r['kind']:10} {r['engine']:8} {chain_id:14} "
                      f"{r['rpc_url'] or '-':28} {'up' if r['up'] else 'DOWN'}")
        return 0 if all(r["up"] for r in rows) else 3
    else:
        stopped = devnet.down()
        print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    from .deploy import Deployer
    from .kmc import KeyManagementCenter

    spec = _spec(args)
    kmc = KeyManagementCenter(spec.state_dir / "kmc", _passphrase("MBDS_KMC_PASSPHRASE", "KMC passphrase: "))
    table, created = Deployer(spec, kmc.account.address).deploy_all()
    for chain, entries in table.items():
        for name, d in entries.items():
            tag = "deployed" if f"{chain}/{name}" in created else "found"
            print(f"{chain:14} {name:20} {d.address}  {tag}")
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
        passphrase = _passphrase("MBDS_PASSPHRASE", "Passphrase for the participants' keystores: ")
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

    d = sub.add_parser("devnet", help="start, inspect or stop the chains of a network spec")
    d.add_argument("action", choices=["up", "status", "down"])
    d.add_argument("--spec", help="network spec TOML (default: the embedded devnet)")
    d.add_argument("--state-dir", help="the network's state folder (default: the spec's devnet.state_dir)")
    d.add_argument("--json", action="store_true", help="status as JSON")
    d.set_defaults(func=cmd_devnet)

    dep = sub.add_parser("deploy", help="deploy each chain's contracts (idempotent)")
    dep.add_argument("--spec")
    dep.add_argument("--state-dir", help="the network's state folder (default: the spec's devnet.state_dir)")
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

    node_arguments(nd_sub.add_parser("run", help="run one replica (key: MBDS_NODE_KEY or --keystore)"))
    nd_sub.choices["run"].set_defaults(func=cmd_node)

    cs = sub.add_parser("consortium", help="a consortium institution's DPoS node (RPN/ATN)")
    cs_sub = cs.add_subparsers(dest="consortium_action", required=True)
    from .consortium.node import add_arguments as consortium_arguments

    consortium_arguments(cs_sub.add_parser("run", help="run one consortium node (key: MBDS_NODE_KEY)"))
    cs_sub.choices["run"].set_defaults(func=cmd_consortium)

    px = sub.add_parser("proxy", help="a re-encryption proxy of an authority center")
    px_sub = px.add_subparsers(dest="proxy_action", required=True)
    from .sharing.proxy import add_arguments as proxy_arguments

    proxy_arguments(px_sub.add_parser("run", help="run one proxy (key: MBDS_PROXY_KEY)"))
    px_sub.choices["run"].set_defaults(func=cmd_proxy)

    b = sub.add_parser("bench", help="measure the system beside its baselines")
    from .bench.runner import add_arguments as bench_arguments

    bench_arguments(b)
    b.set_defaults(func=cmd_bench)

    po = sub.add_parser("portal", help="the web portal (online client) of one patient or doctor, on localhost")
    from .portal.server import add_arguments as portal_arguments

    portal_arguments(po)
    po.set_defaults(func=cmd_portal)

    demo = sub.add_parser("demo", help="run the scripted demo on embedded defaults")
    demo.add_argument("--spec")
    demo.add_argument("--json", metavar="FILE", help="write each step's expected/actual outcome and timing")
    demo.add_argument("--keep", action="store_true",
                      help="leave the network running (keystore passphrase from MBDS_PASSPHRASE or a prompt)")
    demo.add_argument("--state-dir", help="where the network keeps its state (default: a temporary folder)")
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
