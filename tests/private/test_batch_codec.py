"""The slip batch codec: round trip, and every malformed batch refused as a whole with a clear reason."""

from __future__ import annotations

import pytest

from mbds_py.private.batch import MAX_RECORD, MAX_SLIPS, BatchError, decode_batch, encode_batch


def test_round_trip():
    records = [bytes([i]) * (i + 1) for i in range(10)]
    assert decode_batch(encode_batch(records)) == records


@pytest.mark.parametrize("cut", range(0, 40, 3))
def test_every_truncation_is_refused(cut):
    data = encode_batch([b"a" * 10, b"b" * 20])
    if cut < len(data):
        with pytest.raises(BatchError, match="truncated batch|records, this one says|not a version"):
            decode_batch(data[:cut])


def test_bad_header_count_lengths_and_trailing_bytes():
    data = encode_batch([b"abc"])
    with pytest.raises(BatchError, match="not a version-1 slip batch"):
        decode_batch(b"XXXX" + data[4:])
    with pytest.raises(BatchError, match="1..256 records"):
        decode_batch(data[:5] + (MAX_SLIPS + 1).to_bytes(2, "big") + data[7:])
    with pytest.raises(BatchError, match="1..256 records"):
        decode_batch(data[:5] + bytes(2))
    with pytest.raises(BatchError, match="record 0 of the batch is"):
        decode_batch(data[:7] + (MAX_RECORD + 1).to_bytes(4, "big") + data[11:])
    with pytest.raises(BatchError, match="trailing bytes"):
        decode_batch(data + b"\x00")
    with pytest.raises(BatchError):
        encode_batch([])
    with pytest.raises(BatchError):
        encode_batch([b"x"] * (MAX_SLIPS + 1))
