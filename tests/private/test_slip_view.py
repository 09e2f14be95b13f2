"""Replicas check slips as signed bytes (SlipView): the same IDs and digests as the parsed objects, framing
refused with a named reason, signatures over the exact byte ranges; curve points are checked where they are
used (the patient's client, the proxies) — the malformed-key cases live here."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mbds_py.crypto.confirmation import ConfirmedRecord
from mbds_py.crypto.envelope import HmiEnvelope
from mbds_py.crypto.signing import Eip712Domain
from mbds_py.errors import InvalidSlip, MBDSError
from mbds_py.identity import Role
from mbds_py.private.slip import (IdentityEntry, RecordView, SlipValidator, SlipView, TransactionSlip, slip_bytes,
                                  slip_summary)
from mbds_py.private.testbed import make_record, participant

DOMAIN = Eip712Domain(43199, "0x" + "ab" * 20)
HOSPITAL = participant("hospital", Role.HOSPITAL)
DOCTOR = participant("doctor", Role.DOCTOR, HOSPITAL.id)
PATIENT = participant("patient", Role.PATIENT)


class Registry:
    def __init__(self, *people):
        self.people = {p.address: IdentityEntry(p.id, p.role, p.institution, False) for p in people}

    def by_address(self, address: str):
        return self.people.get(address)


@pytest.fixture(scope="module")
def records():
    return [make_record(DOMAIN, n, tag="view") for n in range(3)]


def slip_of(record: ConfirmedRecord) -> bytes:
    return slip_bytes(HOSPITAL.id, DOCTOR.id, PATIENT.id, record.to_bytes())


def validator() -> SlipValidator:
    return SlipValidator(HOSPITAL.id, DOMAIN, Registry(DOCTOR, PATIENT))


def test_the_view_has_the_digests_of_the_parsed_record(records):
    for _env, record in records:
        view = RecordView.parse(record.to_bytes(), DOMAIN)
        assert view.record_id == record.record_id(DOMAIN)
        assert view.confirmation_digest == record.digest(DOMAIN)
        assert (view.doctor, view.patient) == (record.header.doctor, record.header.patient.address)
        assert view.verify() == record.verify(DOMAIN)
        slip = TransactionSlip(HOSPITAL.id, DOCTOR.id, PATIENT.id, record)
        assert slip.to_bytes() == slip_of(record)
        assert validator().check_bytes(slip_of(record)) == record.record_id(DOMAIN)


def test_every_truncation_and_trailing_byte_is_refused_with_a_reason(records):
    data = slip_of(records[0][1])
    for cut in range(0, len(data), 7):
        with pytest.raises(InvalidSlip, match="malformed confirmed record|transaction slip"):
            SlipView.parse(data[:cut], DOMAIN)
    with pytest.raises(InvalidSlip, match="trailing bytes"):
        SlipView.parse(data + b"\x00", DOMAIN)


def test_a_flipped_byte_anywhere_is_refused(records):
    """Every byte of the record is framing or under a signature: no change goes through."""
    data = slip_of(records[1][1])
    v = SlipValidator(HOSPITAL.id, DOMAIN, Registry(DOCTOR, PATIENT))
    for pos in range(97, len(data), 3):
        bad = data[:pos] + bytes([data[pos] ^ 0x01]) + data[pos + 1:]
        assert v.check_envelope(replace_env(bad, records[1][1])) is not None, f"byte {pos} went through"


def replace_env(payload: bytes, record: ConfirmedRecord):
    from mbds_py.pbft.types import SlipEnvelope

    return SlipEnvelope(record.record_id(DOMAIN), payload)


def test_forged_patient_signature_is_refused(records):
    record = records[2][1]
    sig = record.patient_signature  # flip one bit of r: a fixed value could equal the real byte
    forged = replace(record, patient_signature=bytes([sig[0] ^ 0x01]) + sig[1:])
    with pytest.raises(InvalidSlip, match="signature check failed"):
        validator().check_bytes(slip_of(forged))


def test_wrong_hospital_and_unregistered_people_are_refused(records):
    record = records[0][1]
    with pytest.raises(InvalidSlip, match="slip is for hospital"):
        validator().check_bytes(slip_bytes(bytes(32), DOCTOR.id, PATIENT.id, record.to_bytes()))
    with pytest.raises(InvalidSlip, match="not a registered patient"):
        SlipValidator(HOSPITAL.id, DOMAIN, Registry(DOCTOR)).check_bytes(slip_of(record))


def _bad_point_record(record: ConfirmedRecord) -> bytes:
    """The record with its first PEKS ciphertext's G1 point replaced by bytes that are no point of G1 (the
    compression flag still set: framing holds)."""
    raw = record.to_bytes()
    first = record.header.keyword_ciphertexts[0].to_bytes()
    pos = raw.index(first)
    return raw[:pos] + bytes([0x80 | 0x1F]) + b"\xff" * 47 + raw[pos + 48:]


def test_an_invalid_peks_point_is_refused_where_it_is_parsed(records):
    """Moved from the replica: the point is checked by the patient's client (it parses the doctor's envelope
    before she confirms) and by the proxies (they parse the slip before search or re-encryption)."""
    env, record = records[0]
    bad = _bad_point_record(record)
    # framing holds, so a replica sees only a signature that no longer matches the bytes
    with pytest.raises(InvalidSlip, match="signature check failed"):
        RecordView.parse(bad, DOMAIN).verify()
    # the proxies' parse (TransactionSlip.from_bytes) refuses it with the reason
    with pytest.raises(InvalidSlip, match="malformed confirmed record in slip"):
        TransactionSlip.from_bytes(slip_bytes(HOSPITAL.id, DOCTOR.id, PATIENT.id, bad))
    # the patient's client refuses the doctor's envelope carrying it before she could confirm
    raw_env = env.to_bytes()
    first = env.header.keyword_ciphertexts[0].to_bytes()
    pos = raw_env.index(first)
    with pytest.raises(MBDSError):
        HmiEnvelope.from_bytes(raw_env[:pos] + bytes([0x9F]) + b"\xff" * 47 + raw_env[pos + 48:])


def test_an_invalid_umbral_key_is_refused_where_it_is_parsed(records):
    _env, record = records[1]
    raw = record.to_bytes()
    pos = raw.index(record.record_key)
    bad = raw[:pos] + b"\x02" + b"\xff" * 32 + raw[pos + 33:]  # x >= p: no point of secp256k1
    with pytest.raises(InvalidSlip, match="malformed confirmed record in slip"):
        TransactionSlip.from_bytes(slip_bytes(HOSPITAL.id, DOCTOR.id, PATIENT.id, bad))
    with pytest.raises(InvalidSlip, match="signature check failed"):  # the replica: not what the patient signed
        RecordView.parse(bad, DOMAIN).verify()
    with pytest.raises(InvalidSlip, match="not a compressed secp256k1 key"):
        RecordView.parse(raw[:pos] + b"\x05" + raw[pos + 1:], DOMAIN)


def test_the_summary_read_from_the_framing_is_the_parsed_slips(records):
    """What the bridge and the consortium's auditors take of a certified slip, without parsing a point."""
    for _env, record in records:
        slip = TransactionSlip(HOSPITAL.id, DOCTOR.id, PATIENT.id, record)
        assert slip_summary(slip_of(record)) == (slip.patient_id, slip.hmi_hash,
                                                 tuple(c.to_bytes() for c in slip.encrypted_keywords))


def test_a_summary_of_a_malformed_slip_is_refused_with_a_reason(records):
    data = slip_of(records[0][1])
    with pytest.raises(InvalidSlip, match="not a version-1 transaction slip"):
        slip_summary(b"\x02" + data[1:])
    with pytest.raises(InvalidSlip, match="bad header"):
        slip_summary(data[:97] + b"XXXXXX" + data[103:])
    first = records[0][1].header.keyword_ciphertexts[0].to_bytes()
    with pytest.raises(InvalidSlip, match="truncated in keyword ciphertexts"):
        slip_summary(data[:data.index(first) + 10])
    with pytest.raises(InvalidSlip, match="truncated in patient keys"):
        slip_summary(data[:160])
