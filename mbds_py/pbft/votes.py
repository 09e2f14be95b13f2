"""Vote sets: who voted for what, with duplicate and double-vote handling.

A :class:`VoteSet` maps ``(view, seq, digest)`` to the signed votes received,
one per signer.  Adding the same vote twice is a no-op.  A signer that votes
for a second digest at the same ``(view, seq)`` is recorded as
:class:`DoubleVote` evidence and the second vote is not counted.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar


class Vote(Protocol):
    view: int
    seq: int
    digest: bytes
    sender: int


V = TypeVar("V", bound=Vote)


class VoteOutcome(enum.Enum):
    ADDED = "added"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"


@dataclass(frozen=True)
class DoubleVote(Generic[V]):
    """Two signed votes by one replica for different digests at the same (view, seq)."""

    first: V
    second: V

    @property
    def replica(self) -> int:
        return self.first.sender


class VoteSet(Generic[V]):
    """Signed votes keyed by ``(view, seq, digest)`` -> signer -> vote."""

    def __init__(self) -> None:
        self._votes: dict[tuple[int, int, bytes], dict[int, V]] = {}
        self._choice: dict[tuple[int, int, int], V] = {}
        self.evidence: list[DoubleVote[V]] = []

    def add(self, vote: V) -> VoteOutcome:
        """Count ``vote`` unless it duplicates or contradicts an earlier vote of its signer."""
        who = (vote.view, vote.seq, vote.sender)
        earlier = self._choice.get(who)
        if earlier is not None:
            if earlier.digest == vote.digest:
                return VoteOutcome.DUPLICATE
            self.evidence.append(DoubleVote(earlier, vote))
            return VoteOutcome.CONFLICT
        self._choice[who] = vote
        self._votes.setdefault((vote.view, vote.seq, vote.digest), {})[vote.sender] = vote
        return VoteOutcome.ADDED

    def count(self, view: int, seq: int, digest: bytes) -> int:
        return len(self._votes.get((view, seq, digest), ()))

    def signers(self, view: int, seq: int, digest: bytes) -> frozenset[int]:
        return frozenset(self._votes.get((view, seq, digest), ()))

    def votes(self, view: int, seq: int, digest: bytes) -> list[V]:
        """The counted votes for the key, ordered by signer."""
        bucket = self._votes.get((view, seq, digest), {})
        return [bucket[s] for s in sorted(bucket)]

    def vote_of(self, view: int, seq: int, signer: int) -> V | None:
        return self._choice.get((view, seq, signer))

    def prune(self, *, below_view: int | None = None, up_to_seq: int | None = None) -> None:
        """Forget votes of views < ``below_view`` and/or sequence numbers <= ``up_to_seq``."""

        def stale(view: int, seq: int) -> bool:
            return (below_view is not None and view < below_view) or (up_to_seq is not None and seq <= up_to_seq)

        self._votes = {k: v for k, v in self._votes.items() if not stale(k[0], k[1])}
        self._choice = {k: v for k, v in self._choice.items() if not stale(k[0], k[1])}

    def __len__(self) -> int:
        return len(self._choice)


__all__ = ["DoubleVote", "VoteOutcome", "VoteSet"]
