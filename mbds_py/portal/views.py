"""Server-rendered HTML of the portal: one function per page section, every value escaped.

Each section is a ``<section id=NAME>`` that the page's script replaces in
place when a chain event concerns it (``GET /section/NAME``), so the same
function renders the first page and the live updates.  Forms post to
``/do/ACTION`` with the session's CSRF token and work without JavaScript.
"""

from __future__ import annotations

import json
from html import escape
from typing import Callable

from ..crypto.keywords import ICD10, ICD10_CM, LOINC, SNOMED_CT
from ..sharing.policy import RequestState
from .app import DOCTOR, PATIENT, Flash, Portal, ReceiptCheck, describe_actions, describe_scope, explain, utc

PATIENT_SECTIONS = ("records", "requests", "grants", "emergency", "audit", "trapdoor")
DOCTOR_SECTIONS = ("ask", "requests", "search", "timeline", "break-glass")
TITLES = {
    "records": "My records", "requests": "Access requests", "grants": "Who may read my records",
    "emergency": "Emergency accesses", "audit": "Audit trail", "trapdoor": "Let a doctor search",
    "ask": "Request access", "search": "Search a patient's records", "timeline": "Records you may read",
    "break-glass": "Emergency access (break-glass)",
}


def h(value: object) -> str:
    return escape(str(value), quote=True)


def short(b: bytes, n: int = 10) -> str:
    return "0x" + bytes(b).hex()[:n] + "…"


def full(b: bytes) -> str:
    return "0x" + bytes(b).hex()


_SYSTEMS = {ICD10: "ICD-10", ICD10_CM: "ICD-10-CM", SNOMED_CT: "SNOMED CT", LOINC: "LOINC"}


def keywords(words: tuple[str, ...] | list[str]) -> str:
    """Normalised keywords for people: ``http://loinc.org|24627-2`` → ``LOINC 24627-2``."""
    out = []
    for w in words:
        system, _, code = w.partition("|")
        out.append(f"{_SYSTEMS[system]} {code}" if system in _SYSTEMS and code else w)
    return ", ".join(out)


def sections_of(role: str) -> tuple[str, ...]:
    return PATIENT_SECTIONS if role == PATIENT else DOCTOR_SECTIONS


# ---------------------------------------------------------------------------------------------
# page frame
# ---------------------------------------------------------------------------------------------


def page(title: str, body: str, *, live: bool = False) -> str:
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{h(title)}</title>
<link rel="stylesheet" href="/static/portal.css">
<script src="/static/portal.js" defer></script>
</head>
<body{' data-live="connecting"' if live else ''}>
<a class="skip" href="#main">Skip to content</a>
{body}
</body>
</html>
"""


def unlock_page(portal: Portal, error: str = "") -> str:
    err = f'<p id="flash" class="flash error" role="alert">{h(error)}</p>' if error else ""
    body = f"""<header><h1>MBDS portal</h1><p>{h(portal.name)} · {h(portal.role)}</p></header>
<main id="main">
{err}
<form method="post" action="/unlock" class="card" id="unlock-form">
<h2>Unlock your keys</h2>
<p>Your keystore stays in this portal process; the passphrase decrypts it here and is not stored.</p>
<label for="passphrase">Passphrase of {h(portal.name)}</label>
<input id="passphrase" name="passphrase" type="password" autocomplete="current-password" required autofocus>
<button type="submit" id="unlock">Unlock</button>
</form>
</main>"""
    return page(f"Unlock — MBDS portal ({portal.name})", body)


def main_page(portal: Portal, csrf: str, flash: Flash | None) -> str:
    names = sections_of(portal.role)
    nav = "".join(f'<li><a href="#{n}">{h(TITLES[n])}</a></li>' for n in names)
    body = "".join(section(portal, n, csrf) for n in names)
    p = portal.participant
    header = f"""<header>
<h1>MBDS portal</h1>
<p class="who"><strong id="whoami">{h(portal.name)}</strong> · {h(portal.role)} · <span class="mono">{h(p.address)}</span></p>
<form method="post" action="/lock" class="inline">{_csrf(csrf)}<button type="submit" id="lock">Lock</button></form>
</header>"""
    return page(f"MBDS portal — {portal.name}", f"""{header}
<nav aria-label="Sections"><ul>{nav}</ul></nav>
<main id="main">
{flash_html(flash)}
<p id="live" class="live" role="status" aria-live="polite"></p>
{body}
</main>""", live=True)


def flash_html(flash: Flash | None) -> str:
    if flash is None:
        return ""
    role = "alert" if flash.level == "error" else "status"
    detail = ""
    if flash.detail:
        detail = (f'<label for="flash-detail">Value</label>'
                  f'<textarea id="flash-detail" readonly rows="3">{h(flash.detail)}</textarea>'
                  f'<button type="button" class="copy" data-copy="flash-detail">Copy</button>')
    return f'<div id="flash" class="flash {h(flash.level)}" role="{role}"><p>{h(flash.text)}</p>{detail}</div>'


def section(portal: Portal, name: str, csrf: str) -> str:
    """One section, rendered now; a failure to read the chain shows in the section, not as a crash."""
    render = _RENDERERS[(portal.role, name)]
    try:
        inner = render(portal, csrf)
    except Exception as exc:  # noqa: BLE001 - a down chain or proxy must leave the page usable
        inner = f'<p class="flash error" role="alert">Could not load this section. {h(explain(exc))}</p>'
    return (f'<section id="{name}" aria-labelledby="{name}-h" class="card">'
            f'<h2 id="{name}-h">{h(TITLES[name])}</h2>{inner}</section>')


def _csrf(token: str) -> str:
    return f'<input type="hidden" name="csrf" value="{h(token)}">'


def _button_form(action: str, csrf: str, label: str, fields: dict[str, str], *, id_: str, cls: str = "") -> str:
    hidden = "".join(f'<input type="hidden" name="{h(k)}" value="{h(v)}">' for k, v in fields.items())
    return (f'<form method="post" action="/do/{h(action)}" class="inline">{_csrf(csrf)}{hidden}'
            f'<button type="submit" id="{h(id_)}" class="{h(cls)}">{h(label)}</button></form>')


Row = tuple[str, list[str]]  # (attributes of the <tr>, cells' inner HTML)


def _table(caption: str, head: list[str], rows: list[Row], *, empty: str, id_: str, attrs: str = "") -> str:
    """A table whose cells carry their column name (``data-label``): on a phone each row stacks."""
    if not rows:
        return f'<p class="empty" id="{h(id_)}-empty">{h(empty)}</p>'
    ths = "".join(f'<th scope="col">{h(c)}</th>' for c in head)
    body = "".join(f'<tr {tr}>' + "".join(f'<td data-label="{h(col)}">{cell}</td>' for col, cell in zip(head, cells))
                   + "</tr>" for tr, cells in rows)
    return (f'<div class="scroll"><table id="{h(id_)}" class="stack" {attrs}><caption>{h(caption)}</caption>'
            f'<thead><tr>{ths}</tr></thead><tbody>{body}</tbody></table></div>')


# ---------------------------------------------------------------------------------------------
# patient sections
# ---------------------------------------------------------------------------------------------


def _records(portal: Portal, csrf: str) -> str:
    rows = []
    for r in portal.records():
        rid = full(r.record_id)
        rows.append((f'data-record="{rid}"', [
            h(utc(r.time)), h(r.chain), h(r.record_type), h(r.text), h(keywords(r.keywords)), h(r.doctor),
            f'<span class="mono" title="{rid}">{h(short(r.record_id))}</span>',
            _button_form("receipt", csrf, "Check receipt", {"record": rid}, id_="receipt-" + rid)]))
    return _table("Committed records, decrypted in this portal", ["Time", "Hospital / platform", "Type", "Summary",
                  "Keywords", "Doctor", "Record", "On chain"], rows,
                  empty="No committed record yet.", id_="records-table")


def _requests_patient(portal: Portal, csrf: str) -> str:
    rows = []
    for row in portal.pending_requests():
        r = row.request
        rid = str(r.id)
        reject = (f'<form method="post" action="/do/reject" class="inline">{_csrf(csrf)}'
                  f'<input type="hidden" name="request" value="{rid}">'
                  f'<label for="reject-reason-{rid}" class="sr-only">Reason to reject request {rid}</label>'
                  f'<input id="reject-reason-{rid}" name="reason" placeholder="reason (optional)" maxlength="200">'
                  f'<button type="submit" id="reject-{rid}" class="secondary">Reject</button></form>')
        rows.append((f'data-request="{rid}"', [
            f"#{rid}", h(row.requester), h(describe_scope(r.scope, r.target)), h(describe_actions(r.actions)),
            h(utc(r.expires_at)), h(r.reason), h(utc(r.deadline)),
            _button_form("approve", csrf, "Approve", {"request": rid}, id_="approve-" + rid) + reject]))
    return _table("Requests awaiting your decision", ["Request", "From", "Scope", "Actions", "Access until",
                  "Reason", "Decide before", "Decision"], rows, empty="No request awaits your decision.",
                  id_="requests-table")


def _grants(portal: Portal, csrf: str) -> str:
    rows = []
    for i, row in enumerate(portal.grants()):
        g = row.grant
        fields = {"grantee": full(g.grantee), "scope": str(int(g.scope)), "target": full(g.target)}
        rows.append((f'data-grantee="{h(row.grantee)}"', [
            h(row.grantee), h(describe_scope(g.scope, g.target)), h(describe_actions(g.actions)), h(utc(g.not_before)),
            h(utc(g.expires_at)), _button_form("revoke", csrf, f"Revoke {row.grantee}", fields, id_=f"revoke-{i}",
                                               cls="danger")]))
    return _table("Active grants", ["Grantee", "Scope", "Actions", "From", "Until", "Revoke"], rows,
                  empty="Nobody may read your records.", id_="grants-table")


def _emergency(portal: Portal, csrf: str) -> str:
    rows = [(f'data-emergency="{e.id}"', [f"#{e.id}", h(e.grantee), h(e.state.name.lower()), str(e.approvals),
                                          h(utc(e.activated_at)) if e.activated_at else "—",
                                          h(utc(e.expires_at)) if e.expires_at else "—", h(e.reason)])
            for e in portal.emergencies()]
    return _table("Break-glass requests approved by the health authorities", ["Emergency", "Doctor", "State",
                  "Approvals", "Active from", "Until", "Reason"], rows, empty="No emergency access.",
                  id_="emergency-table")


def _audit(portal: Portal, csrf: str) -> str:
    trail = portal.audit()
    if not trail:
        return '<p class="empty" id="audit-empty">Nobody has read or tried to read your records.</p>'
    titles = {r.record_id: f"{r.record_type} of {utc(r.time)} at {r.chain}" for r in _safe_records(portal)}
    out = []
    for rid, rows in sorted(trail.items(), key=lambda kv: kv[1][0].at):
        cells = [(f'class="{h(r.outcome)}"', [h(utc(r.at)), h(r.who), h(r.outcome), h(r.detail), h(r.proxy),
                                             f'<span class="mono">{h(short(r.tx_hash))}</span>']) for r in rows]
        out.append(_table(f"Record {short(rid)}" + (f" — {titles[rid]}" if rid in titles else ""),
                          ["Time", "Who", "Outcome", "Detail", "Proxy", "Transaction"], cells, empty="",
                          id_="audit-" + full(rid), attrs=f'data-record="{full(rid)}"'))
    return "".join(out)


def _safe_records(portal: Portal) -> list:
    try:
        return portal.records()
    except Exception:  # noqa: BLE001 - titles are a convenience; the trail itself comes from the chain
        return []


def _trapdoor(portal: Portal, csrf: str) -> str:
    return (f'<form method="post" action="/do/trapdoor">{_csrf(csrf)}'
            f'<label for="trapdoor-doctor">Doctor (name or 0x ID; he needs a grant)</label>'
            f'<input id="trapdoor-doctor" name="doctor" list="doctors-t" required maxlength="200">'
            f'{_datalist("doctors-t", portal.doctors())}'
            f'<label for="trapdoor-keyword">Keyword (coded, e.g. icd10|I10)</label>'
            f'<input id="trapdoor-keyword" name="keyword" required maxlength="200">'
            f'<button type="submit" id="trapdoor-issue">Issue search ticket</button></form>')


def receipt_flash(check: ReceiptCheck) -> Flash:
    ok = check.header_hash == check.anchored_hash
    text = (f"Receipt verified: record {short(check.record_id)} is in block {check.height} of {check.chain} "
            f"(Merkle proof of {check.proof_length} hashes to root {short(check.merkle_root, 16)}); the block header "
            f"hash {short(check.header_hash, 16)} is the one SlipLedger anchored at that height"
            + (f" (anchoring transaction {check.anchor_tx[:18]}…)." if check.anchor_tx else "."))
    return Flash("ok" if ok else "error", text)


# ---------------------------------------------------------------------------------------------
# doctor sections
# ---------------------------------------------------------------------------------------------


def _datalist(id_: str, names: list[str]) -> str:
    return f'<datalist id="{id_}">' + "".join(f'<option value="{h(n)}">' for n in names) + "</datalist>"


def _ask(portal: Portal, csrf: str) -> str:
    return (f'<form method="post" action="/do/request">{_csrf(csrf)}'
            f'<label for="ask-patient">Patient (name or 0x ID)</label>'
            f'<input id="ask-patient" name="patient" list="patients" required>{_datalist("patients", portal.patients())}'
            f'<label for="ask-record">One record (0x ID; empty for all records)</label>'
            f'<input id="ask-record" name="record" pattern="(0x)?[0-9a-fA-F]{{64}}">'
            f'<label for="ask-minutes">For how long (minutes)</label>'
            f'<input id="ask-minutes" name="minutes" type="number" min="1" value="60" required>'
            f'<label for="ask-reason">Reason</label>'
            f'<input id="ask-reason" name="reason" maxlength="200" required>'
            f'<button type="submit" id="ask-send">Send request</button></form>')


def _requests_doctor(portal: Portal, csrf: str) -> str:
    rows = [(f'data-request="{row.request.id}" class="{h(row.state.name.lower())}"', [
        f"#{row.request.id}", h(row.patient), h(describe_scope(row.request.scope, row.request.target)),
        f'<span class="state">{h(_state(row.state))}</span>', h(utc(row.request.deadline)), h(row.request.reason)])
        for row in portal.my_requests()]
    return _table("Your requests", ["Request", "Patient", "Scope", "Status", "Decide before", "Reason"], rows,
                  empty="You have sent no request.", id_="my-requests-table")


def _state(state: RequestState) -> str:
    return {RequestState.REQUESTED: "awaiting the patient", RequestState.APPROVED: "approved",
            RequestState.REJECTED: "rejected", RequestState.EXPIRED: "expired"}.get(state, state.name.lower())


def _search(portal: Portal, csrf: str) -> str:
    patient, matches = portal.matches()
    form = (f'<form method="post" action="/do/search">{_csrf(csrf)}'
            f'<label for="search-patient">Patient (name or 0x ID)</label>'
            f'<input id="search-patient" name="patient" list="patients-s" required '
            f'value="{h(portal.label(patient)) if patient else ""}">{_datalist("patients-s", portal.patients())}'
            f'<label for="search-trapdoors">Search ticket the patient issued to you (paste it whole)</label>'
            f'<textarea id="search-trapdoors" name="trapdoors" rows="3" required></textarea>'
            f'<button type="submit" id="search-go">Search</button></form>')
    rows = [(f'data-record="{full(m.slip_id)}"', [
        h(m.chain), str(m.block_height), f'<span class="mono">{h(short(m.slip_id))}</span>', str(m.consortium_height),
        _button_form("read", csrf, "Read", {"record": full(m.slip_id)}, id_="read-" + full(m.slip_id))])
        for m in matches]
    table = _table("Matches (slips proven against their chain)", ["Chain", "Block", "Record", "Consortium block",
                                                                  "Read"],
                   rows, empty="No search yet." if patient is None else "No match.", id_="matches-table")
    read_all = _button_form("read", csrf, "Read all into one timeline", {"record": ""}, id_="read-all") if matches else ""
    return form + table + read_all


def _timeline(portal: Portal, csrf: str) -> str:
    entries = portal.timeline()
    if not entries:
        return '<p class="empty" id="timeline-empty">Nothing read yet.</p>'
    items = []
    for e in entries:
        hmi = json.dumps(e.hmi, indent=2, ensure_ascii=False) if isinstance(e.hmi, (dict, list)) else str(e.hmi)
        items.append(
            f'<li data-record="{full(e.record_id)}"><p><time>{h(utc(e.timestamp))}</time> · <strong>{h(e.chain)}</strong>'
            f' · {h(e.record_type)} by {h(portal.label_address(e.doctor))}</p><p class="text">{h(e.text)}</p>'
            f'<p>Keywords: {h(keywords(e.keywords))}</p><details><summary>Health record</summary>'
            f'<pre>{h(hmi)}</pre></details></li>')
    return (f'<p>Combined from {len({e.chain for e in entries})} chain(s), oldest first; held in memory only.</p>'
            f'<ol class="timeline" id="timeline-list">{"".join(items)}</ol>'
            + _button_form("forget", csrf, "Forget what I read", {}, id_="forget", cls="secondary"))


def _break_glass(portal: Portal, csrf: str) -> str:
    form = (f'<p>For an emergency only: two health authorities must approve; the patient is notified and every '
            f'read is audited as an emergency.</p><form method="post" action="/do/emergency">{_csrf(csrf)}'
            f'<label for="emergency-patient">Patient (name or 0x ID)</label>'
            f'<input id="emergency-patient" name="patient" list="patients-e" required>'
            f'{_datalist("patients-e", portal.patients())}'
            f'<label for="emergency-minutes">For how long (minutes)</label>'
            f'<input id="emergency-minutes" name="minutes" type="number" min="1" value="60" required>'
            f'<label for="emergency-reason">Reason</label>'
            f'<input id="emergency-reason" name="reason" maxlength="200" required>'
            f'<button type="submit" id="emergency-send" class="danger">Request emergency access</button></form>')
    rows = [(f'data-emergency="{e.id}"', [f"#{e.id}", h(e.grantee), h(e.state.name.lower()), str(e.approvals),
                                          h(utc(e.expires_at)) if e.expires_at else "—", h(e.reason)])
            for e in portal.my_emergencies()]
    return form + _table("Your emergency requests", ["Emergency", "Patient", "State", "Approvals", "Until",
                                                      "Reason"], rows, empty="No emergency request.",
                         id_="my-emergencies-table")


_RENDERERS: dict[tuple[str, str], Callable[[Portal, str], str]] = {
    (PATIENT, "records"): _records, (PATIENT, "requests"): _requests_patient, (PATIENT, "grants"): _grants,
    (PATIENT, "emergency"): _emergency, (PATIENT, "audit"): _audit, (PATIENT, "trapdoor"): _trapdoor,
    (DOCTOR, "ask"): _ask, (DOCTOR, "requests"): _requests_doctor, (DOCTOR, "search"): _search,
    (DOCTOR, "timeline"): _timeline, (DOCTOR, "break-glass"): _break_glass,
}

__all__ = ["DOCTOR_SECTIONS", "PATIENT_SECTIONS", "h", "main_page", "page", "receipt_flash", "section",
           "sections_of", "unlock_page"]
