"""Share one health record on a running MBDS network, from plain Python: grant → read → revoke → refused read.

    .venv/bin/mbds up --state-dir /tmp/mbds --passphrase-stdin <<< "$PASS"
    .venv/bin/python scripts/example_share.py /tmp/mbds <<< "$PASS"

The state folder comes from the argument, else MBDS_STATE_DIR; the passphrase (the one `mbds up` was
given) from MBDS_PASSPHRASE, else the first line of standard input, else a prompt.  The author (a
doctor) writes a record about the patient, who confirms it; she grants the reader that record, he reads
it through the 2-of-3 proxies, she revokes, and his next read is refused.  Prints one line per outcome;
exit status 0 when every outcome is the expected one.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys

import mbds_py
from mbds_py.errors import MBDSError
from mbds_py.sharing.proxy import ProxyRefused


def passphrase() -> str:
    """MBDS_PASSPHRASE, else one line of standard input, else a prompt."""
    if os.environ.get("MBDS_PASSPHRASE"):
        return os.environ["MBDS_PASSPHRASE"]
    if sys.stdin.isatty():
        return getpass.getpass("Passphrase of the network's keystores: ")
    return sys.stdin.readline().rstrip("\n")


def share(net, *, author: str, patient: str, reader: str, out=print) -> bool:
    """The walk-through on a connected network; True when the refused read was refused for the revoke."""
    rec = net.record(author, patient, ["icd10|I10"], "Hypertension, started amlodipine 5 mg")
    out(f"written: {rec.record_id} by {author} about {patient}, block {rec.height} of {rec.chain}, indexed")

    grant = net.grant(patient, reader, record=rec.record_id, duration=600)
    out(f"granted: {reader} may read {grant.record} (key shares issued: {grant.keys_issued})")

    read = net.read(reader, patient, rec.record_id)
    out(f"read: {reader} decrypted {read.text!r} written by {read.doctor} ({read.proxies} proxies)")

    revoke = net.revoke(patient, reader, record=rec.record_id)
    out(f"revoked: {reader}'s access to {revoke.record} (epoch {revoke.epoch})")

    try:
        net.read(reader, patient, rec.record_id)
    except ProxyRefused as exc:
        out(f"refused: {exc.code.value}: {exc.reason.message if exc.reason else exc}")
        return exc.code.value == "revoked"
    out("UNEXPECTED: the read after the revoke succeeded")
    return False


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("state_dir", nargs="?", default=os.environ.get("MBDS_STATE_DIR"),
                        help="the running network's state folder (default: $MBDS_STATE_DIR)")
    parser.add_argument("--author", default="dr-li", help="the doctor who writes the record (default dr-li)")
    parser.add_argument("--patient", default="alice", help="default alice")
    parser.add_argument("--reader", default="dr-wang", help="the doctor the record is shared with (default dr-wang)")
    args = parser.parse_args(argv)
    if not args.state_dir:
        parser.error("give the network's state folder (or set MBDS_STATE_DIR)")
    try:
        net = mbds_py.connect(args.state_dir, passphrase())
        return 0 if share(net, author=args.author, patient=args.patient, reader=args.reader) else 1
    except MBDSError as exc:
        print(f"example_share: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(run())
