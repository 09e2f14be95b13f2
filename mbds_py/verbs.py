"""CLI verbs on a running network, each as a named participant (``--as NAME``).

``mbds record write|confirm|list``, ``mbds access request|approve|reject|grant|revoke|list``,
``mbds search``, ``mbds read``, ``mbds audit``, ``mbds receipt``: thin wrappers over
:mod:`mbds_py.scripting`.  Human output by default, ``--json`` for scripts (one JSON document on
stdout).  Exit status: 0 done; 1 refused by the patient's policy (the reason on one line of stderr);
2 any other error (one line of stderr: unknown participant, wrong passphrase, no network…).
Keys are unlocked with the network's one passphrase (``--passphrase-stdin``, ``MBDS_PASSPHRASE``
or a prompt) before anything is sent, so a wrong one changes nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from typing import Any, Callable

from .errors import MBDSError, PolicyDenied

REFUSED = 1

_EPILOG = ("Exit status: 0 done, 1 refused by the patient's policy (reason on stderr), 2 error. "
           "The passphrase is the one the network was brought up with (`mbds up`).")


def add_verbs(sub: argparse._SubParsersAction, common: Callable[..., None]) -> None:
    """Add the participant verbs to the ``mbds`` parser (``common`` adds --spec/--state-dir/...)."""

    def verb(parent: argparse._SubParsersAction, name: str, help_: str, func: Callable, *, role: str,
             keys: bool = True, description: str | None = None) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help_, description=description or help_, epilog=_EPILOG)
        common(p, passphrase=keys)
        p.add_argument("--as", dest="who", required=True, metavar=role.upper(), help=f"the acting {role} "
                       "(an enrolled name)")
        p.add_argument("--json", action="store_true", help="one JSON document on stdout (for scripts)")
        p.set_defaults(func=lambda args: _run(func, args, keys=keys))
        return p

    rec = sub.add_parser("record", help="a doctor writes a health record; the patient confirms it")
    rs = rec.add_subparsers(dest="record_action", required=True)
    w = verb(rs, "write", "sign a record and upload it to the doctor's hospital replicas (pending until the "
                          "patient confirms)", record_write, role="doctor")
    w.add_argument("--patient", required=True, help="the patient the record is about")
    w.add_argument("--keyword", action="append", required=True, metavar="SYSTEM|CODE",
                   help="a coded keyword, e.g. icd10|J06.9 or loinc|24627-2 (repeat for several; each is "
                        "PEKS-encrypted for search)")
    w.add_argument("--text", required=True, help="the record's note")
    w.add_argument("--type", dest="record_type", default="consultation", help="record type (default: consultation)")
    c = verb(rs, "confirm", "review and confirm pending records as the patient: PBFT commits them, the receipt "
                            "is proven on chain and they are indexed on the consortium", record_confirm,
             role="patient")
    c.add_argument("record_id", nargs="?", metavar="RECORD_ID", help="the pending record (0x…)")
    c.add_argument("--all", action="store_true", help="every record waiting for this patient")
    c.add_argument("--no-index", dest="index", action="store_false",
                   help="return once committed and anchored, without waiting for the consortium index")
    verb(rs, "list", "records waiting for the patient's confirmation and her indexed records (no passphrase)",
         record_list, role="patient", keys=False)

    acc = sub.add_parser("access", help="requests, approvals, grants and revokes on AccessPolicy")
    av = acc.add_subparsers(dest="access_action", required=True)
    r = verb(av, "request", "ask a patient for read access (all records, or one)", access_request, role="doctor")
    r.add_argument("--patient", required=True, help="the patient whose records are asked for")
    r.add_argument("--record", metavar="RECORD_ID", help="one record (default: all the patient's records)")
    r.add_argument("--duration", type=int, default=3600, metavar="S", help="seconds of access asked (default 3600)")
    r.add_argument("--reason", default="", help="shown to the patient")
    a = verb(av, "approve", "approve a request and issue the proxies its key shares", access_approve,
             role="patient")
    a.add_argument("request_id", type=int, metavar="REQUEST_ID", help="the request to approve (`mbds access list`)")
    j = verb(av, "reject", "reject a request", access_reject, role="patient")
    j.add_argument("request_id", type=int, metavar="REQUEST_ID", help="the request to reject (`mbds access list`)")
    j.add_argument("--reason", default="", help="shown to the doctor")
    g = verb(av, "grant", "grant a doctor read access and issue the proxies the key shares", access_grant,
             role="patient")
    g.add_argument("--to", dest="doctor", required=True, metavar="DOCTOR", help="the doctor granted read access")
    g.add_argument("--record", metavar="RECORD_ID", help="one record (default: all records)")
    g.add_argument("--duration", type=int, default=3600, metavar="S", help="seconds (default 3600)")
    v = verb(av, "revoke", "revoke a doctor's grant of one record, or all his grants", access_revoke,
             role="patient")
    v.add_argument("--from", dest="doctor", required=True, metavar="DOCTOR", help="the doctor whose grant ends")
    v.add_argument("--record", metavar="RECORD_ID", help="that record's grant (default: every grant of the doctor)")
    verb(av, "list", "a patient's pending requests and live grants, or a doctor's requests (no passphrase)",
         access_list, role="participant", keys=False)

    s = verb(sub, "search", "search a patient's records by coded keyword with her search ticket, through a proxy",
             search, role="doctor",
             description="Search a patient's records by coded keyword through a proxy (PEKS). The trapdoors are "
                         "the patient's: for the CLI her keys are unlocked in this same process with the same "
                         "passphrase; she issues the doctor a search ticket (trapdoors encrypted to the proxies, "
                         "bound to his grant, expiring), which he signs to each proxy. The doctor needs a live "
                         "grant. Several --keyword must all match.")
    s.add_argument("--patient", required=True, help="the patient whose records are searched")
    s.add_argument("--keyword", action="append", required=True, metavar="SYSTEM|CODE",
                   help="a coded keyword, e.g. icd10|J06.9 (repeat: every one must match)")
    rd = verb(sub, "read", "read a patient's record(s) through the 2-of-3 re-encryption proxies", read,
              role="doctor",
              description="Read one record (or every record of the patient on the consortium index) through the "
                          "2-of-3 proxies, which check AccessPolicy first. A refused record exits 1 with the "
                          "policy's reason.")
    rd.add_argument("--patient", required=True, help="the patient whose record(s) are read")
    rd.add_argument("--record", metavar="RECORD_ID", help="one record (default: every indexed record)")
    au = verb(sub, "audit", "every read and refused attempt on the patient's records (no passphrase)", audit,
              role="patient", keys=False)
    au.add_argument("--record", metavar="RECORD_ID", help="one record's trail")
    rc = verb(sub, "receipt", "verify a slip's receipt against its chain's SlipLedger (no passphrase)", receipt,
              role="participant", keys=False)
    rc.add_argument("slip_id", metavar="SLIP_ID", help="a committed slip (= record) ID, 0x…")


# ---------------------------------------------------------------------------------------------
# running a verb
# ---------------------------------------------------------------------------------------------


class Refused(PolicyDenied):
    """The patient's policy refused; ``result`` is what the verb prints before exiting 1."""

    def __init__(self, message: str, result: dict[str, Any], lines: list[str]):
        self.result = result
        self.lines = lines
        super().__init__(message)


def _run(func: Callable, args: argparse.Namespace, *, keys: bool) -> int:
    """Connect, check the names, unlock the keys the verb needs, run it, print; errors as one line."""
    import requests

    from .errors import ContractRevert
    from .scripting import as_json, connect

    t0 = time.perf_counter()
    try:
        net = connect(getattr(args, "state_dir", None), spec=getattr(args, "spec", None))
        roles = _roles(func, args)
        for name, role in roles:
            net.participant(name, role)
        if keys:
            from .cli import _passphrase

            net.use_passphrase(_passphrase(args))  # the one network passphrase, never shown
            for name, _role in _unlocked(func, roles):
                net.keys(name)  # a wrong passphrase stops here, before anything is sent
        result, lines = func(net, args)
        code = 0
    except Refused as exc:
        result, lines, code = exc.result, exc.lines, REFUSED
        print(f"mbds: {exc}", file=sys.stderr)
    except ContractRevert as exc:
        from .portal.app import explain

        raise MBDSError(explain(exc)) from None
    except requests.RequestException as exc:
        raise MBDSError(f"a service of the network did not answer ({exc.__class__.__name__}); check it with "
                        "`mbds status`") from None
    seconds = round(time.perf_counter() - t0, 3)
    if args.json:
        print(json.dumps({"ok": code == 0, "as": args.who, **as_json(result), "seconds": seconds}, indent=2))
    else:
        for line in lines:
            print(line)
    return code


def _roles(func: Callable, args: argparse.Namespace) -> list[tuple[str, str | None]]:
    """(name, role) of every participant the verb names, checked before any key is unlocked."""
    who = {record_write: "doctor", record_confirm: "patient", record_list: "patient", access_request: "doctor",
           access_approve: "patient", access_reject: "patient", access_grant: "patient", access_revoke: "patient",
           access_list: None, search: "doctor", read: "doctor", audit: "patient", receipt: None}[func]
    out = [(args.who, who)]
    if getattr(args, "patient", None):
        out.append((args.patient, "patient"))
    if getattr(args, "doctor", None):
        out.append((args.doctor, "doctor"))
    return out


def _unlocked(func: Callable, roles: list[tuple[str, str | None]]) -> list[tuple[str, str | None]]:
    """Whose keys the verb uses: the actor's; for a search also the patient's (she issues the search ticket)."""
    return roles[:2] if func is search else roles[:1]


# ---------------------------------------------------------------------------------------------
# the verbs: (net, args) -> (JSON result, human lines)
# ---------------------------------------------------------------------------------------------


def record_write(net, args) -> tuple[dict, list[str]]:
    p = net.write_record(args.who, args.patient, args.keyword, args.text, record_type=args.record_type)
    return ({"record": p}, [f"record {p.record_id} pending on {p.chain}: {args.who} → {args.patient} "
                            f"({p.record_type}); the patient confirms it with:",
                            f"  mbds record confirm --as {args.patient} {p.record_id}"])


def record_confirm(net, args) -> tuple[dict, list[str]]:
    if bool(args.record_id) == bool(args.all):
        raise MBDSError("give one RECORD_ID or --all (see `mbds record list --as PATIENT`)")
    done = net.confirm(args.who, args.record_id, index=args.index)
    if not done:
        return {"records": []}, [f"nothing waits for {args.who}'s confirmation"]
    rows = [[c.record_id, c.chain, str(c.height), "yes", "yes" if c.indexed else "no"]
            for c in done]
    return {"records": done}, _table(["record", "chain", "block", "anchored", "indexed"], rows)


def record_list(net, args) -> tuple[dict, list[str]]:
    pending = net.pending(args.who)
    chains = {c.chain_id: c.name for c in net.view.chains}
    indexed = [{"record_id": "0x" + rid.hex(), "chain": chains.get(cid, str(cid))} for cid, rid in
               net.records_of(args.who)]
    lines = [f"waiting for {args.who}'s confirmation: {len(pending)}"]
    lines += _table(["record", "chain", "doctor", "type", "text"],
                    [[p.record_id, p.chain, net.name_of_address(p.doctor), p.record_type, _short(p.text)]
                     for p in pending]) if pending else []
    lines.append(f"indexed on the consortium: {len(indexed)}")
    lines += _table(["record", "chain"], [[i["record_id"], i["chain"]] for i in indexed]) if indexed else []
    return {"pending": pending, "indexed": indexed}, lines


def access_request(net, args) -> tuple[dict, list[str]]:
    req = net.request(args.who, args.patient, record=args.record, duration=args.duration, reason=args.reason)
    return ({"request": req}, [f"request #{req.request_id} sent to {req.patient} ({_scope(req.record)}, "
                               f"{args.duration} s); answer before {_utc(req.deadline)} with:",
                               f"  mbds access approve --as {req.patient} {req.request_id}"])


def access_approve(net, args) -> tuple[dict, list[str]]:
    req = net.approve(args.who, args.request_id)
    return {"request": req}, [f"request #{req.request_id} of {req.doctor} {req.state} ({_scope(req.record)}, "
                              f"until {_utc(req.expires_at)}); key shares issued to the proxies"]


def access_reject(net, args) -> tuple[dict, list[str]]:
    req = net.reject(args.who, args.request_id, args.reason)
    return {"request": req}, [f"request #{req.request_id} of {req.doctor} {req.state}"]


def access_grant(net, args) -> tuple[dict, list[str]]:
    g = net.grant(args.who, args.doctor, record=args.record, duration=args.duration)
    return {"grant": g}, [f"granted {g.doctor} read access to {_scope(g.record)} until {_utc(g.expires_at)}; "
                          f"key shares of {g.keys_issued} record(s) issued to the proxies (gas {g.gas})"]


def access_revoke(net, args) -> tuple[dict, list[str]]:
    r = net.revoke(args.who, args.doctor, record=args.record)
    again = f"; keys of {r.keys_reissued} record(s) still granted re-issued" if r.keys_reissued else ""
    return {"revoke": r}, [f"revoked {r.doctor}'s access to {_scope(r.record)} (epoch {r.epoch}, gas {r.gas})"
                           f"{again}; the proxies refuse it from now on"]


def access_list(net, args) -> tuple[dict, list[str]]:
    from .identity import Role

    p = net.participant(args.who)
    if p.role is Role.PATIENT:
        reqs, grants = net.requests(args.who), net.grants(args.who)
        lines = [f"requests awaiting {args.who}: {len(reqs)}"]
        lines += _table(["#", "doctor", "scope", "answer before", "reason"],
                        [[str(r.request_id), r.doctor, _scope(r.record), _utc(r.deadline), _short(r.reason)]
                         for r in reqs]) if reqs else []
        lines.append(f"live grants: {len(grants)}")
        lines += _table(["doctor", "scope", "expires"], [[g.doctor, _scope(g.record), _utc(g.expires_at)]
                                                         for g in grants]) if grants else []
        return {"requests": reqs, "grants": [{"doctor": g.doctor, "record": g.record, "expires_at": g.expires_at}
                                             for g in grants]}, lines
    if p.role is not Role.DOCTOR:
        raise MBDSError(f"{args.who} is a {p.role.label}: `access list` shows a patient's or a doctor's access")
    reqs = net.requests_sent(args.who)
    return {"requests": reqs}, [f"requests of {args.who}: {len(reqs)}"] + (_table(
        ["#", "patient", "scope", "state"], [[str(r.request_id), r.patient, _scope(r.record), r.state]
                                            for r in reqs]) if reqs else [])


def search(net, args) -> tuple[dict, list[str]]:
    hits = net.search(args.who, args.patient, args.keyword)
    lines = [f"{len(hits)} record(s) of {args.patient} match {' AND '.join(args.keyword)} (each proven against "
             "its chain)"]
    lines += _table(["record", "chain", "block", "consortium block"],
                    [[h.record_id, h.chain, str(h.block_height), str(h.consortium_height)] for h in hits]) if hits else []
    return {"matches": hits}, lines


def read(net, args) -> tuple[dict, list[str]]:
    from .sharing.proxy import ProxyRefused, Refusal

    if args.record:
        targets = [args.record]
    else:
        targets = ["0x" + rid.hex() for _cid, rid in net.records_of(args.patient)]
    done, refused, lines = [], [], []
    for rid in targets:
        try:
            rec = net.read(args.who, args.patient, rid)
        except ProxyRefused as exc:
            if exc.code is Refusal.UNAVAILABLE:
                raise
            refused.append({"record_id": rid, "code": exc.code.value, "reason": _reason(exc)})
            lines.append(f"{rid}: refused ({exc.code.value}): {_reason(exc)}")
            continue
        done.append(rec)
        lines.append(f"{rec.record_id} [{rec.chain}] {_utc(rec.timestamp)} {rec.record_type} by {rec.doctor}: "
                     f"{rec.text} ({', '.join(rec.keywords)}; {rec.proxies} proxies)")
    result = {"records": done, "refused": refused}
    if refused:
        first = refused[0]
        what = f"{len(refused)} of {len(targets)} records" if len(targets) > 1 else f"record {first['record_id']}"
        raise Refused(f"read refused ({first['code']}) for {what}: {first['reason']}", result, lines if done else [])
    if not targets:
        lines.append(f"{args.patient} has no record on the consortium index")
    return result, lines


def audit(net, args) -> tuple[dict, list[str]]:
    rows = net.audit(args.who, args.record)
    lines = [f"{len(rows)} access event(s) on {args.who}'s records" + (f" ({args.record})" if args.record else "")]
    lines += _table(["time", "record", "who", "proxy", "outcome", "detail"],
                    [[_utc(r.at), r.record_id[:14] + "…", r.who, r.proxy, r.outcome, r.detail] for r in rows]) \
        if rows else []
    return {"events": rows}, lines


def receipt(net, args) -> tuple[dict, list[str]]:
    r = net.receipt(args.slip_id, as_participant=args.who)
    return {"receipt": r}, [
        f"slip {r.slip_id} of {r.patient} (by {r.doctor}) is in block {r.height} of {r.chain}",
        f"  Merkle proof ({r.proof_length} hashes) verifies against root {r.merkle_root}",
        f"  header hash {r.header_hash} = SlipLedger's anchored hash at height {r.height}"
        + (f" (anchor tx {r.anchor_tx})" if r.anchor_tx else "")]


# ---------------------------------------------------------------------------------------------
# formatting
# ---------------------------------------------------------------------------------------------


def _reason(exc: Any) -> str:
    reason = getattr(exc, "reason", None)
    if reason is not None:
        return reason.message
    text = str(exc)
    return text.split("): ", 1)[-1] if "): " in text else text


def _scope(record: str | None) -> str:
    return "all records" if record is None else f"record {record}"


def _utc(ts: int) -> str:
    return datetime.fromtimestamp(int(ts), tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _short(text: str, n: int = 48) -> str:
    return text if len(text) <= n else text[:n - 1] + "…"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(x) for x in col) for col in zip(header, *rows)]
    return ["  ".join(x.ljust(w) for x, w in zip(row, widths)).rstrip() for row in [header, *rows]]


__all__ = ["add_verbs"]
