"""Fixtures for the crypto tests: deterministic key sets, a domain, a FHIR record, envelope factories."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest

from mbds_py.crypto import (ConfirmedRecord, Eip712Domain, HmiEnvelope, PatientSecrets, RecordHeader,
                            build_envelope, confirm_record, review_envelope)

KEYWORDS = ("icd10|E11.9", "snomed|44054006", "loinc|4548-4")


def seeded_keys(name: str) -> PatientSecrets:
    """A key set derived from a fixed seed: the same keys on every run."""
    return PatientSecrets.derive(hashlib.sha256(b"mbds-test/" + name.encode()).digest())


def resign(header: RecordHeader, doctor: PatientSecrets, domain: Eip712Domain, **changes) -> RecordHeader:
    """``header`` with ``changes`` applied and a fresh, valid doctor signature (a malicious doctor)."""
    changed = replace(header, **changes)
    return replace(changed, doctor_signature=doctor.signer.sign_digest(changed.digest(domain)))


@pytest.fixture(scope="session")
def keys_for():
    """Factory: ``keys_for("name")`` is a deterministic key set."""
    return seeded_keys


@pytest.fixture(scope="session")
def resign_header():
    """Factory: ``resign_header(header, doctor, domain, **changes)`` — see :func:`resign`."""
    return resign


@pytest.fixture(scope="session")
def record_keywords() -> tuple[str, ...]:
    return KEYWORDS


@pytest.fixture(scope="session")
def domain() -> Eip712Domain:
    return Eip712Domain(chain_id=31337, verifying_contract="0x" + "cc" * 20)


@pytest.fixture(scope="session")
def patient() -> PatientSecrets:
    return seeded_keys("patient-1")


@pytest.fixture(scope="session")
def other_patient() -> PatientSecrets:
    return seeded_keys("patient-2")


@pytest.fixture(scope="session")
def doctor() -> PatientSecrets:
    return seeded_keys("doctor-1")


@pytest.fixture(scope="session")
def other_doctor() -> PatientSecrets:
    return seeded_keys("doctor-2")


@pytest.fixture(scope="session")
def fhir_condition() -> dict:
    return {
        "resourceType": "Condition",
        "id": "c-1",
        "subject": {"reference": "Patient/p-1"},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "E11.9",
                             "display": "Type 2 diabetes mellitus without complications"}]},
        "note": [{"text": "HbA1c 7.9 %, started metformin 500 mg — follow-up in 3 months."}],
    }


@pytest.fixture(scope="session")
def make_envelope(domain, patient, doctor, fhir_condition):
    """Factory: an envelope from ``doctor`` to ``patient`` (overridable)."""

    def make(*, hmi=None, keywords=KEYWORDS, to=None, by=None, timestamp=1_700_000_000) -> HmiEnvelope:
        return build_envelope(fhir_condition if hmi is None else hmi, keywords, (to or patient).public_keys,
                              (by or doctor).signer, timestamp=timestamp, record_type="diagnosis",
                              text="outpatient visit", domain=domain)

    return make


@pytest.fixture(scope="session")
def envelope(make_envelope) -> HmiEnvelope:
    return make_envelope()


@pytest.fixture(scope="session")
def reviewed(envelope, patient, doctor, domain):
    return review_envelope(envelope, patient, domain=domain, expected_doctor=doctor.address)


@pytest.fixture(scope="session")
def confirmed(reviewed, patient) -> ConfirmedRecord:
    return confirm_record(reviewed, patient, storage_address="bafkreia-record-1")
