"""Writing a health record on a private chain (paper Algorithms 1-2), for the demo, scripts and the CLI.

* :func:`submit_record` — the doctor builds the envelope (salted H(M), C_M to the patient, one PEKS
  ciphertext per coded keyword padded to ``KEYWORD_SLOTS``, EIP-712 signature) and uploads it to the
  hospital's replicas, where it waits for the patient (``POST /v1/records``);
* :func:`pending_records` / :func:`confirm_pending` — the patient fetches what waits for her,
  verifies the doctor, decrypts, checks H(M) and the keywords, re-keys C_M, stores it and signs
  the confirmation (``POST /v1/slips``);
* :func:`wait_committed` — PBFT commits the slip, its block is anchored in ``SlipLedger`` and the
  receipt is proven against the chain;
* :func:`write_record` — all of it in one call; :func:`record_visit` — the same on a
  :class:`~mbds_py.network.Network` (what ``mbds_py.demo.record_visit`` does).

Nothing here knows the demo or the CLI; callers pass keys and endpoints.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

from ..crypto import (Eip712Domain, HmiEnvelope, PatientKeyring, PatientPublicKeys, PatientSecrets, build_envelope,
                      confirm_record, review_envelope)
from ..errors import IntegrityError, MBDSError
from ..private.client import HospitalClient, NodeUnavailable, Receipt, verify_receipt

DEFAULT_RECORD_TYPE = "consultation"


@dataclass(frozen=True)
class PendingRecord:
    """A doctor-signed envelope waiting on a private chain for its patient's confirmation."""

    record_id: str  # 0x-hex; the slip ID once confirmed
    chain: str
    doctor: str  # the signing doctor's address
    patient: str  # the patient's address
    timestamp: int
    record_type: str
    text: str


def coded_keywords(keywords: str | Sequence[str]) -> list[str]:
    """Coded keywords (``system|code``) as a list; a bare string is one keyword."""
    out = [keywords] if isinstance(keywords, str) else list(keywords)
    for k in out:
        system, _, code = k.partition("|")
        if not system or not code:
            raise MBDSError(f"keyword {k!r} is not coded: write it as system|code, e.g. icd10|J06.9")
    if not out:
        raise MBDSError("a record needs at least one coded keyword (system|code, e.g. icd10|J06.9)")
    return out


def condition_document(patient_label: str, keywords: Sequence[str], text: str) -> dict[str, Any]:
    """The default health record M: a FHIR-like Condition with the keywords as its codings."""
    codings = [{"system": k.split("|")[0], "code": k.split("|")[1]} for k in keywords]
    return {"resourceType": "Condition", "subject": {"display": patient_label}, "note": [{"text": text}],
            "code": {"coding": codings}}


def submit_record(api: HospitalClient, domain: Eip712Domain, doctor: PatientSecrets, patient: PatientPublicKeys,
                  keywords: str | Sequence[str], text: str, *, record_type: str = DEFAULT_RECORD_TYPE,
                  hmi: dict | None = None, patient_label: str = "", timestamp: int | None = None) -> str:
    """Algorithm 1: build, sign and upload the envelope; returns its record ID (0x-hex), pending the patient."""
    words = coded_keywords(keywords)
    document = hmi or condition_document(patient_label or patient.address, words, text)
    env = build_envelope(document, words, patient, doctor.signer, timestamp=int(timestamp or time.time()),
                         record_type=record_type, text=text, domain=domain)
    return api.submit_envelope(env.to_bytes())


def _replicas(api: HospitalClient) -> list[HospitalClient]:
    """One client per replica (a pending envelope is held by the replica that took it)."""
    return [HospitalClient([u], timeout=api.timeout) for u in api.urls]


def fetch_envelope(api: HospitalClient, record_id: str) -> HmiEnvelope:
    """The pending envelope ``record_id`` from whichever replica holds it."""
    for one in _replicas(api):
        try:
            return HmiEnvelope.from_bytes(one.envelope(record_id))
        except (MBDSError, ValueError):
            continue
    raise MBDSError(f"no replica holds a pending record {record_id} (already confirmed, or written on another "
                    "chain)")


def pending_records(api: HospitalClient, chain: str, patient_address: str) -> list[PendingRecord]:
    """Every envelope waiting for ``patient_address`` on one chain (asked of each replica), oldest first."""
    seen: dict[str, PendingRecord] = {}
    answered = 0
    for one in _replicas(api):
        try:
            ids = one.pending(patient_address)
            answered += 1
        except NodeUnavailable:
            continue
        for rid in ids:
            if rid in seen or one.receipt(rid) is not None:  # confirmed meanwhile
                continue
            h = HmiEnvelope.from_bytes(one.envelope(rid)).header
            seen[rid] = PendingRecord(rid, chain, h.doctor, h.patient.address, h.timestamp, h.record_type, h.text)
    if not answered:
        raise NodeUnavailable(f"no replica of {chain} answered; is the network running? (`mbds status`)")
    return sorted(seen.values(), key=lambda p: (p.timestamp, p.record_id))


def confirm_pending(api: HospitalClient, domain: Eip712Domain, patient: PatientSecrets | PatientKeyring,
                    record_id: str, store: Any, *, expected_doctor: str | None = None) -> str:
    """Algorithm 2: review the pending envelope (doctor's signature, H(M), keywords), re-key and store C_M,
    sign the confirmation and submit it; returns the slip ID (= record ID).

    ``patient`` may be every key version (a :class:`~mbds_py.crypto.PatientKeyring`): the envelope's own
    version reviews and signs it (an envelope made before a rotation names a retired account, which the
    replicas refuse: the doctor must write it again to the current keys).  ``expected_doctor`` pins the
    signer; by default the envelope's own doctor, whose registration the replicas check again.  ``store`` is
    a :class:`~mbds_py.storage.replicated.ReplicatedStore`.
    """
    envelope = fetch_envelope(api, record_id)
    reviewed = review_envelope(envelope, patient, domain=domain,
                               expected_doctor=expected_doctor or envelope.header.doctor)
    cid = store.add(reviewed.record_blob)
    confirmed = confirm_record(reviewed, patient, storage_address=cid)
    return api.submit_confirmed(confirmed.to_bytes())


def wait_committed(api: HospitalClient, ledger: Any, slip_id: str, *, timeout: float = 60.0) -> Receipt:
    """Wait until PBFT commits the slip and its block is anchored, then prove the receipt against
    ``ledger`` (a :class:`~mbds_py.chain.slip_ledger.SlipLedgerAgent`)."""
    from ..private.cluster import wait_until

    receipt = api.wait_receipt(slip_id, timeout=timeout)
    wait_until(lambda: ledger.head()[0] >= receipt.height, timeout, "the block to be anchored")
    verify_receipt(receipt, ledger)
    if "0x" + receipt.slip_id.hex() != slip_id.lower():
        raise IntegrityError(f"the replicas returned the receipt of another slip for {slip_id}")
    return receipt


def write_record(api: HospitalClient, domain: Eip712Domain, ledger: Any, store: Any, doctor: PatientSecrets,
                 patient: PatientSecrets, keywords: str | Sequence[str], text: str, *,
                 record_type: str = DEFAULT_RECORD_TYPE, hmi: dict | None = None, patient_label: str = "",
                 timeout: float = 60.0) -> Receipt:
    """Algorithms 1-2 end to end: the doctor writes, the patient reviews and confirms, PBFT commits;
    returns the receipt, verified against the chain's SlipLedger."""
    record_id = submit_record(api, domain, doctor, patient.public_keys, keywords, text, record_type=record_type,
                              hmi=hmi, patient_label=patient_label)
    slip_id = confirm_pending(api, domain, patient, record_id, store, expected_doctor=doctor.signer.address)
    return wait_committed(api, ledger, slip_id, timeout=timeout)


def record_visit(net: Any, doctor: str, patient: str, keywords: str | Sequence[str], text: str, *,
                 record_type: str = DEFAULT_RECORD_TYPE, hmi: dict | None = None) -> Receipt:
    """:func:`write_record` on a :class:`~mbds_py.network.Network` (keys unlocked by its KMC)."""
    from ..storage.client import KuboClient
    from ..storage.replicated import ReplicatedStore

    chain = net.chain_of(doctor)
    store = ReplicatedStore([KuboClient(u) for u in net.devnet.storage_urls()], replicas=net.spec.storage.replicas)
    return write_record(net.hospital_api(chain), net.clusters[chain].config.record_domain, net.ledger(chain), store,
                        net.keys(doctor).secrets, net.keys(patient).secrets, keywords, text,
                        record_type=record_type, hmi=hmi, patient_label=patient)


__all__ = ["DEFAULT_RECORD_TYPE", "PendingRecord", "coded_keywords", "condition_document", "confirm_pending",
           "fetch_envelope", "pending_records", "record_visit", "submit_record", "wait_committed", "write_record"]
