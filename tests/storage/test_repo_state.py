"""The block store and pin set against a ghost model, across reopenings (hypothesis state machine)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from mbds_py.errors import NotFoundError, StorageError
from mbds_py.storage.repo import Repo
from mbds_py.storage.unixfs import CHUNK_SIZE

SIZES = st.sampled_from([0, 1, 7, 1024, CHUNK_SIZE, CHUNK_SIZE + 3])


class RepoMachine(RuleBasedStateMachine):
    """Ghost model: ``blobs`` (cid -> bytes ever added, not only-hash) and ``pinned`` (set of cids)."""

    cids = Bundle("cids")

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="repo-sm-"))
        self.repo = Repo(self.dir / "data")
        self.blobs: dict[str, bytes] = {}
        self.pinned: set[str] = set()

    def teardown(self) -> None:
        self.repo.close()
        shutil.rmtree(self.dir)

    @rule(target=cids, size=SIZES, seed=st.integers(0, 3), pin=st.booleans())
    def add(self, size: int, seed: int, pin: bool) -> str:
        data = bytes([seed]) * size
        cid = self.repo.add(data, pin=pin).cid
        self.blobs[cid] = data
        if pin:
            self.pinned.add(cid)
        return cid

    @rule(size=SIZES, seed=st.integers(4, 6))
    def add_only_hash(self, size: int, seed: int) -> None:
        data = bytes([seed]) * size
        cid = self.repo.add(data, only_hash=True).cid
        if cid not in self.blobs:
            with pytest.raises(NotFoundError, match=f"could not find {cid}"):
                self.repo.cat(cid)

    @rule(cid=cids)
    def pin(self, cid: str) -> None:
        self.repo.pin(cid)
        self.pinned.add(cid)

    @rule(cid=cids)
    def unpin(self, cid: str) -> None:
        if cid in self.pinned:
            self.repo.unpin(cid)
            self.pinned.discard(cid)
        else:
            with pytest.raises(NotFoundError, match="not pinned"):
                self.repo.unpin(cid)

    @rule(cid=cids)
    def cat(self, cid: str) -> None:
        stream = self.repo.cat(cid)
        assert b"".join(stream.chunks) == self.blobs[cid]

    @rule()
    def reopen(self) -> None:
        self.repo.close()
        self.repo = Repo(self.dir / "data")

    @rule()
    def second_opener_is_refused(self) -> None:
        with pytest.raises(StorageError, match="in use by another storage node"):
            Repo(self.dir / "data")

    @invariant()
    def pins_match_the_model(self) -> None:
        assert {str(cid) for cid in self.repo.pins()} == self.pinned


TestRepoMachine = RepoMachine.TestCase
TestRepoMachine.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)
