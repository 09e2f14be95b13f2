"""Our CIDs equal those of ``ipfs_cid`` (Debian package ``ipfs-cid``), an independent implementation.

``ipfs_cid`` (rust ``ipfs-unixfs`` 0.2 ``FileAdder::default``) takes no
options; its defaults are Kubo's ``ipfs add`` defaults: 262144-byte chunks,
balanced DAG with 174 links per node, dag-pb leaves, CIDv0.  It also prints
the CIDv1 of the same DAG, which checks our base32 CID encoding.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from _storage_support import payload

from mbds_py.storage.unixfs import CHUNK_SIZE, CID, DAG_PB, MAX_LINKS, cid_of, cid_of_file, parse_cid

IPFS_CID = shutil.which("ipfs_cid")
pytestmark = pytest.mark.skipif(
    IPFS_CID is None,
    reason="ipfs_cid not installed (apt-get install ipfs-cid; the Makefile installs it)")


def _ipfs_cid(path: Path) -> tuple[str, str]:
    out = subprocess.run([IPFS_CID, str(path)], capture_output=True, check=True, timeout=120).stdout
    answer = json.loads(out.decode().strip().splitlines()[0])
    return answer["CIDv0"], answer["CIDv1"]


CASES = {
    "empty": 0,
    "one-byte": 1,
    "one-chunk-exactly": CHUNK_SIZE,
    "one-chunk-plus-one": CHUNK_SIZE + 1,
    "full-first-level": MAX_LINKS * CHUNK_SIZE,
    "second-level": MAX_LINKS * CHUNK_SIZE + 1,
    "multi-megabyte": 5 * 1024 * 1024 + 12345,
}


@pytest.mark.parametrize("size", CASES.values(), ids=CASES.keys())
def test_cid_equals_ipfs_cid(tmp_path: Path, size: int) -> None:
    data = payload(size, seed=7)
    path = tmp_path / "blob"
    path.write_bytes(data)
    v0, v1 = _ipfs_cid(path)
    assert cid_of(data) == v0
    assert cid_of_file(str(path)) == v0
    assert str(CID(1, DAG_PB, parse_cid(v0).multihash)) == v1


@pytest.mark.parametrize("text", ["hello world\n", "MBDS slip body: {\"patient\": \"p-1\"}\n", "ü\u00e9\u4e2d"])
def test_tiny_text_cid_equals_ipfs_cid(tmp_path: Path, text: str) -> None:
    path = tmp_path / "note.txt"
    path.write_text(text, encoding="utf-8")
    assert cid_of(text.encode("utf-8")) == _ipfs_cid(path)[0]
