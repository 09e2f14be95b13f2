"""Client of a hospital node's HTTP API, and the lightweight client's receipt check.

A receipt (block header, Merkle proof, slip bytes) is verified against the
root committed in ``SlipLedger`` on chain: the node is not trusted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import requests

from ..errors import InvalidSlip, IntegrityError, MBDSError, Overloaded, StorageError
from ..pbft.types import BlockHeader, SlipEnvelope
from .batch import MAX_SLIPS, SlipAck, encode_batch


class NodeUnavailable(MBDSError, ConnectionError):
    """No replica of the private chain answered."""


@dataclass(frozen=True)
class Receipt:
    slip_id: bytes
    chain: str
    height: int
    header: BlockHeader
    proof: tuple[bytes, ...]
    payload: bytes
    body_cid: str
    anchor_tx: str | None

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "Receipt":
        h = doc["header"]
        header = BlockHeader(height=h["height"], seq=h["seq"], prev_hash=_b(h["prev_hash"]), timestamp=h["timestamp"],
                             creator=_b(h["creator"]), merkle_root=_b(h["merkle_root"]), body_cid=_b(h["body_cid"]))
        return cls(_b(doc["slip_id"]), doc["chain"], doc["height"], header, tuple(_b(p) for p in doc["proof"]),
                   _b(doc["payload"]), doc["body_cid"], doc.get("anchor_tx"))

    @property
    def envelope(self) -> SlipEnvelope:
        return SlipEnvelope(self.slip_id, self.payload)


def _b(text: str) -> bytes:
    return bytes.fromhex(text[2:] if text.startswith("0x") else text)


class HospitalClient:
    """Talks to any replica of one private chain; fails over to the next on connection errors."""

    def __init__(self, urls: Sequence[str], *, timeout: float = 10.0, batch: int = 64, busy_retries: int = 50):
        if not urls:
            raise NodeUnavailable("no node URL given")
        if not 1 <= batch <= MAX_SLIPS:
            raise ValueError(f"batch must be 1..{MAX_SLIPS}")
        self.urls = list(urls)
        self.timeout = timeout
        self.batch = batch
        self.busy_retries = busy_retries
        self.session = requests.Session()
        self._current = 0

    def _request(self, method: str, path: str, *, data: bytes | None = None) -> requests.Response:
        errors = []
        for attempt in range(len(self.urls)):
            url = self.urls[(self._current + attempt) % len(self.urls)]
            try:
                resp = self.session.request(method, url + path, data=data, timeout=self.timeout)
            except requests.RequestException as exc:
                errors.append(f"{url}: {exc.__class__.__name__}")
                continue
            self._current = (self._current + attempt) % len(self.urls)
            return resp
        raise NodeUnavailable(f"no replica answered {method} {path}: {'; '.join(errors)}")

    def _check(self, resp: requests.Response) -> Any:
        try:
            doc = resp.json()
        except ValueError:
            raise StorageError(f"node answered HTTP {resp.status_code} without JSON") from None
        if resp.status_code == 400:
            raise InvalidSlip(doc.get("error", "rejected"))
        if resp.status_code == 429:
            raise Overloaded(doc.get("error", "busy"), retry_after=float(doc.get("retry_after", 0.2)))
        if resp.status_code >= 300:
            raise MBDSError(f"node answered HTTP {resp.status_code}: {doc.get('error', doc)}")
        return doc

    # -- doctor and patient ---------------------------------------------------------------

    def submit_envelope(self, envelope_bytes: bytes) -> str:
        """Doctor: upload a signed envelope; returns the record ID (pending the patient)."""
        return self._check(self._request("POST", "/v1/records", data=envelope_bytes))["record_id"]

    def pending(self, patient: str) -> list[str]:
        return self._check(self._request("GET", f"/v1/records?patient={patient}"))["pending"]

    def envelope(self, record_id: str) -> bytes:
        resp = self._request("GET", f"/v1/records/{record_id}")
        if resp.status_code != 200:
            raise InvalidSlip(f"no pending record {record_id}")
        return resp.content

    def submit_confirmed(self, confirmed_bytes: bytes) -> str:
        """Patient: submit the confirmed record to every replica; returns the slip ID (ordering starts).

        A slip acknowledged by one replica only would be lost with that replica if it is the primary and
        crashes before proposing it (and no backup, knowing of no pending request, would time out to
        replace it); sent to all, every running replica holds it until it commits — PBFT's client
        broadcast.  Succeeds once one replica accepted it; a refusal (HTTP 400) is raised as is.
        """
        slip_id, errors = None, []
        for i in range(len(self.urls)):
            url = self.urls[(self._current + i) % len(self.urls)]
            try:
                resp = self.session.post(url + "/v1/slips", data=confirmed_bytes, timeout=self.timeout)
            except requests.RequestException as exc:
                errors.append(f"{url}: {exc.__class__.__name__}")
                continue
            if slip_id is None:
                slip_id = self._check(resp)["slip_id"]  # the first answer decides (a refusal raises here)
        if slip_id is None:
            raise NodeUnavailable(f"no replica answered POST /v1/slips: {'; '.join(errors)}")
        return slip_id

    def submit_confirmed_many(self, records: Sequence[bytes]) -> list[SlipAck]:
        """Patient(s): submit several confirmed records, in batches of ``batch`` per request on this client's
        keep-alive connections; one :class:`SlipAck` per record, in order (a refused record carries its
        reason, the others are ordered).  Each batch goes to every replica, as :meth:`submit_confirmed`;
        a replica answering 429 (too many unordered slips) is retried after the pause it names."""
        acks: list[SlipAck] = []
        for start in range(0, len(records), self.batch):
            acks.extend(self._submit_batch(list(records[start:start + self.batch])))
        return acks

    def _submit_batch(self, records: list[bytes]) -> list[SlipAck]:
        body = encode_batch(records)
        first: list[SlipAck] | None = None
        errors = []
        for i in range(len(self.urls)):
            url = self.urls[(self._current + i) % len(self.urls)]
            for _attempt in range(self.busy_retries):
                try:
                    resp = self.session.post(url + "/v1/slips/batch", data=body, timeout=self.timeout)
                    results = self._check(resp)["results"]
                except requests.RequestException as exc:
                    errors.append(f"{url}: {exc.__class__.__name__}")
                    break
                except Overloaded as exc:
                    time.sleep(exc.retry_after)  # back-pressure: the replica asked for a pause
                    continue
                if first is None:
                    first = [SlipAck.from_json(r) for r in results]
                break
            else:
                errors.append(f"{url}: still busy after {self.busy_retries} tries")
        if first is None:
            raise NodeUnavailable(f"no replica took the batch: {'; '.join(errors)}")
        return first

    def receipt(self, slip_id: str) -> Receipt | None:
        resp = self._request("GET", f"/v1/slips/{slip_id}/receipt")
        if resp.status_code == 404:
            return None
        return Receipt.from_json(self._check(resp))

    def wait_receipt(self, slip_id: str, timeout: float = 60.0) -> Receipt:
        deadline = time.monotonic() + timeout
        while True:
            r = self.receipt(slip_id)
            if r is not None:
                return r
            if time.monotonic() > deadline:
                raise MBDSError(f"slip {slip_id} not committed within {timeout:.0f}s")
            time.sleep(0.05)

    def status(self) -> dict[str, Any]:
        return self._check(self._request("GET", "/v1/status"))


def verify_receipt(receipt: Receipt, ledger: Any) -> None:
    """Lightweight-client check: the slip is in a block whose header is committed on chain.

    ``ledger`` is a :class:`~mbds_py.chain.slip_ledger.SlipLedgerAgent`.  Raises
    :class:`IntegrityError` saying what does not match.
    """
    if not ledger.verify_slip(receipt.header, receipt.proof, receipt.envelope):
        raise IntegrityError(f"receipt for slip 0x{receipt.slip_id.hex()} does not verify against the "
                             f"SlipLedger root at height {receipt.height}: the header is not committed "
                             "or the proof/slip was altered")
