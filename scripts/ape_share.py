"""`ape run ape_share`: grant → read → revoke → refused read on a running MBDS network, then Ape reads the audit.

    MBDS_STATE_DIR=/tmp/mbds ape run ape_share <<< "$PASS"      # or: ape run ape_share /tmp/mbds

The state folder comes from the argument, else MBDS_STATE_DIR; the passphrase (the one `mbds up` was
given) from MBDS_PASSPHRASE, else the first line of standard input, else a prompt.  The sharing runs
through ``mbds_py.connect`` (the participants' clients); then Ape connects to the network's consortium
chain (its RPC URL from the state folder, no node started) and lists the record's ``AccessRecorded`` and
``AccessDenied`` events of ``AccessPolicy``: the read, one event per proxy, and the refused attempt.
A ``cli`` command, so `ape run` starts no provider of its own.
"""

import os
import sys

import click


def _passphrase() -> str:
    if os.environ.get("MBDS_PASSPHRASE"):
        return os.environ["MBDS_PASSPHRASE"]
    if sys.stdin.isatty():
        return click.prompt("Passphrase of the network's keystores", hide_input=True)
    return sys.stdin.readline().rstrip("\n")


def _ape_audit(net, record_id: str) -> dict:
    """AccessPolicy's audit events of one record on the consortium chain, read through Ape."""
    from ape import Contract, chain, networks

    from mbds_py.toolchain import artifact

    rid = bytes.fromhex(record_id[2:])
    with networks.parse_network_choice(f"ethereum:local:{net.view.consortium_rpc}"):
        policy = Contract(net.view.access_policy, abi=list(artifact("AccessPolicy").abi))
        height = chain.blocks.height
        return {name: list(getattr(policy, name).range(0, height + 1, search_topics={"recordId": rid}))
                for name in ("AccessRecorded", "AccessDenied")}


@click.command(short_help="grant → read → revoke → refused read on a running MBDS network")
@click.argument("state_dir", required=False, envvar="MBDS_STATE_DIR")
@click.option("--author", default="dr-li", show_default=True, help="the doctor who writes the record")
@click.option("--patient", default="alice", show_default=True)
@click.option("--reader", default="dr-wang", show_default=True, help="the doctor the record is shared with")
def cli(state_dir, author, patient, reader):
    import mbds_py
    from mbds_py.errors import MBDSError
    from mbds_py.sharing.proxy import ProxyRefused

    if not state_dir:
        raise click.UsageError("give the network's state folder (or set MBDS_STATE_DIR)")
    try:
        net = mbds_py.connect(state_dir, _passphrase())
        rec = net.record(author, patient, ["icd10|E11.9"], "Type 2 diabetes, started metformin 500 mg")
        click.echo(f"written: {rec.record_id} by {author} about {patient}, block {rec.height} of {rec.chain}, "
                   "indexed")
        grant = net.grant(patient, reader, record=rec.record_id, duration=600)
        click.echo(f"granted: {reader} may read {grant.record} (key shares issued: {grant.keys_issued})")
        read = net.read(reader, patient, rec.record_id)
        click.echo(f"read: {reader} decrypted {read.text!r} written by {read.doctor} ({read.proxies} proxies)")
        revoke = net.revoke(patient, reader, record=rec.record_id)
        click.echo(f"revoked: {reader}'s access to {revoke.record} (epoch {revoke.epoch})")
        try:
            net.read(reader, patient, rec.record_id)
        except ProxyRefused as exc:
            click.echo(f"refused: {exc.code.value}: {exc.reason.message if exc.reason else exc}")
            refused = exc.code.value == "revoked"
        else:
            click.echo("UNEXPECTED: the read after the revoke succeeded")
            refused = False
        events = _ape_audit(net, rec.record_id)
    except MBDSError as exc:
        raise click.ClickException(str(exc)) from None
    for name, logs in events.items():
        blocks = ", ".join(str(log.block_number) for log in logs) or "none"
        click.echo(f"ape: {len(logs)} {name} event(s) of the record on the consortium chain (blocks {blocks})")
    if not refused or not events["AccessRecorded"]:
        raise SystemExit(1)
