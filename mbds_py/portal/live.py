"""Live updates: follow the consortium chain's events that concern one participant.

:func:`affected` is the pure rule — which page sections an event changes and
the sentence announced to screen readers; :class:`ChainWatcher` polls
``eth_getLogs`` for the AccessPolicy and ConsortiumIndex contracts and hands
each relevant event to a :class:`Broadcaster`, which fans it out to the open
``/events`` streams (server-sent events).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable

from eth_utils import event_abi_to_log_topic

from ..errors import MBDSError
from .app import DOCTOR, PATIENT

log = logging.getLogger("mbds.portal")

# event name -> (sections of the patient page, sections of the doctor page)
_SECTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "AccessRequested": (("requests",), ("requests",)),
    "AccessRequestApproved": (("requests", "grants"), ("requests",)),
    "AccessRequestRejected": (("requests",), ("requests",)),
    "AccessGranted": (("grants",), ("requests",)),
    "AccessRevoked": (("grants",), ("timeline",)),
    "AllAccessRevoked": (("grants",), ("timeline",)),
    "AccessRecorded": (("audit",), ()),
    "AccessDenied": (("audit",), ()),
    "EmergencyAccessRequested": (("emergency",), ("break-glass",)),
    "EmergencyAccessActivated": (("emergency",), ("break-glass",)),
    "PatientIndexed": (("records",), ()),
}


@dataclass(frozen=True)
class Update:
    """What one event changes on one participant's page."""

    event: str
    sections: tuple[str, ...]
    message: str
    counterpart: bytes | None = None  # the other participant named by the event


def affected(event: str, args: dict[str, Any], me: bytes, role: str, label: Callable[[bytes], str]) -> Update | None:
    """The sections of ``me``'s page an event changes (None when it does not concern ``me``)."""
    if event not in _SECTIONS:
        return None
    patient = bytes(args.get("patient", args.get("patientId", b"")) or b"")
    other = bytes(args.get("requester", args.get("grantee", b"")) or b"")
    if role == PATIENT and patient == me:
        sections = _SECTIONS[event][0]
        counterpart = other or None
    elif role == DOCTOR and other == me:
        sections = _SECTIONS[event][1]
        counterpart = patient or None
    else:
        return None
    if not sections:
        return None
    who = label(counterpart) if counterpart else ""
    rid = args.get("requestId")
    messages = {
        "AccessRequested": f"New access request #{rid} from {who}." if role == PATIENT else f"Request #{rid} sent.",
        "AccessRequestApproved": f"Request #{rid} approved." if role == PATIENT else f"{who} approved request #{rid}.",
        "AccessRequestRejected": f"Request #{rid} rejected." if role == PATIENT else f"{who} rejected request #{rid}.",
        "AccessGranted": f"Access granted to {who}." if role == PATIENT else f"{who} granted you access.",
        "AccessRevoked": f"Access of {who} revoked." if role == PATIENT else f"{who} revoked an access of yours.",
        "AllAccessRevoked": f"All access of {who} revoked." if role == PATIENT else f"{who} revoked all your access.",
        "AccessRecorded": f"{who} read one of your records.",
        "AccessDenied": f"{who} was refused access to one of your records.",
        "EmergencyAccessRequested": f"Emergency access requested by {who}." if role == PATIENT
        else f"Emergency request #{args.get('emergencyId')} sent.",
        "EmergencyAccessActivated": f"Emergency access of {who} is active." if role == PATIENT
        else f"Your emergency access to {who}'s records is active.",
        "PatientIndexed": "A new record of yours was committed.",
    }
    return Update(event, sections, messages[event], counterpart)


class Broadcaster:
    """Fans updates out to every open event stream: one asyncio queue each, on its stream's loop, fed from any
    thread (the chain watcher's, the emergency server's, the loop's own)."""

    def __init__(self) -> None:
        self._subs: dict[asyncio.Queue[Update | None], asyncio.AbstractEventLoop] = {}
        self._lock = threading.Lock()

    def subscribe(self) -> asyncio.Queue[Update | None]:
        """A queue of the updates from now on; call it on the loop that will read the queue."""
        q: asyncio.Queue[Update | None] = asyncio.Queue(maxsize=256)
        with self._lock:
            self._subs[q] = asyncio.get_running_loop()
        return q

    def unsubscribe(self, q: asyncio.Queue[Update | None]) -> None:
        with self._lock:
            self._subs.pop(q, None)

    def publish(self, update: Update | None) -> None:
        with self._lock:
            subs = list(self._subs.items())
        for q, loop in subs:
            try:
                loop.call_soon_threadsafe(_offer, q, update)
            except RuntimeError:  # that stream's loop is closed: nobody reads the queue any more
                pass

    def close(self) -> None:
        """End every open stream."""
        self.publish(None)


def _offer(q: asyncio.Queue[Update | None], update: Update | None) -> None:
    try:
        q.put_nowait(update)
    except asyncio.QueueFull:  # a stalled page: it reloads everything when it reconnects
        pass


class ChainWatcher(threading.Thread):
    """Polls the consortium chain for new events of two contracts and reports the relevant ones."""

    def __init__(self, w3: Any, contracts: list[Any], on_event: Callable[[str, dict[str, Any]], None], *,
                 interval: float = 0.5):
        super().__init__(name="portal-watcher", daemon=True)
        self.w3 = w3
        self.on_event = on_event
        self.interval = interval
        self._stop = threading.Event()
        self._events: dict[bytes, Any] = {}
        for contract in contracts:
            for entry in contract.abi:
                if entry.get("type") == "event" and entry["name"] in _SECTIONS:
                    self._events[bytes(event_abi_to_log_topic(entry))] = getattr(contract.events, entry["name"])()
        self.addresses = [c.address for c in contracts]
        self.next_block: int | None = None
        self.healthy = True

    def stop(self) -> None:
        self._stop.set()

    def poll(self) -> int:
        """One round: report the events of the blocks mined since the last round; returns their number."""
        head = int(self.w3.eth.block_number)
        if self.next_block is None:
            self.next_block = head + 1
            return 0
        if head < self.next_block:
            return 0
        logs = self.w3.eth.get_logs({"address": self.addresses, "fromBlock": self.next_block, "toBlock": head})
        count = 0
        for entry in logs:
            event = self._events.get(bytes(entry["topics"][0])) if entry["topics"] else None
            if event is None:
                continue
            decoded = event.process_log(entry)
            self.on_event(decoded["event"], dict(decoded["args"]))
            count += 1
        self.next_block = head + 1
        return count

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
                self.healthy = True
            except (MBDSError, OSError, ValueError) as exc:
                if self.healthy:
                    log.warning("live updates paused: the consortium chain does not answer (%s)", exc.__class__.__name__)
                self.healthy = False
            except Exception as exc:  # noqa: BLE001 - requests/web3 errors: keep following
                if self.healthy:
                    log.warning("live updates paused: %s", exc.__class__.__name__)
                self.healthy = False
            self._stop.wait(self.interval)


__all__ = ["Broadcaster", "ChainWatcher", "Update", "affected"]
