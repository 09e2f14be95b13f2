"""RPN/ATN election and replacement (pure; mirrors ``CreditRegistry``).

*Ranking*: every eligible institution, credit descending; equal credit is broken
by the lower institution ID (IDs compared as 256-bit big-endian integers, which is
plain ``bytes`` order for 32-byte IDs). The contract verifies exactly this order.

*Election*: ranks 1..K are the RPN (paper: 101), K+1..K+M the ATN (paper: ranks
102–121), the next ``reserve_capacity`` ranks the reserve.

*Replacement* at a round boundary, for each queued institution in queue order that
is still ineligible and seated: an RPN's seat goes to the first ATN that is still
eligible (ineligible ATNs met on the way lose their seats); if none is left the
seat stays vacant. A removed ATN leaves the list. After each removal the ATN set is
refilled from the reserve in rank order, skipping the ineligible.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

from .credit import CreditRecord, SeatKind, Weights, ZERO32
from .errors import ElectionError

PAPER_RPN_COUNT = 101
PAPER_ATN_COUNT = 20


@dataclass(frozen=True)
class Candidate:
    """An eligible institution and its credit at election time."""

    id: bytes
    credit: int


def rank_key(candidate: Candidate) -> tuple[int, bytes]:
    """Sort key of the ranking: higher credit first, then lower ID."""
    return (-candidate.credit, candidate.id)


def rank(candidates: Iterable[Candidate]) -> tuple[bytes, ...]:
    """IDs in election order; duplicate IDs are an error."""
    ordered = sorted(candidates, key=rank_key)
    ids = tuple(c.id for c in ordered)
    if len(set(ids)) != len(ids):
        raise ElectionError("a ranking lists each institution once; duplicate IDs given")
    return ids


def eligible_ranking(records: Iterable[CreditRecord], weights: Weights, threshold: int) -> tuple[bytes, ...]:
    """The ranking ``CreditRegistry.elect`` accepts for these records."""
    return rank(Candidate(r.id, r.credit(weights)) for r in records if r.eligible(weights, threshold))


def is_valid_ranking(ranking: Sequence[bytes], credits: Mapping[bytes, int]) -> bool:
    """True when ``ranking`` is strictly ordered by (credit desc, id asc) — the contract's O(n) check."""
    for prev, cur in zip(ranking, ranking[1:]):
        if credits[cur] > credits[prev] or (credits[cur] == credits[prev] and cur <= prev):
            return False
    return True


@dataclass(frozen=True)
class Election:
    """The seats an election fills: RPN (K), ATN (M) and the reserve."""

    rpn: tuple[bytes, ...]
    atn: tuple[bytes, ...]
    reserve: tuple[bytes, ...]


def elect(ranking: Sequence[bytes], rpn_count: int = PAPER_RPN_COUNT, atn_count: int = PAPER_ATN_COUNT,
          reserve_capacity: int = PAPER_ATN_COUNT) -> Election:
    """Cut a ranking into RPN, ATN and reserve; fewer than K+M candidates is an error (as on-chain)."""
    required = rpn_count + atn_count
    if len(ranking) < required:
        raise ElectionError(f"{len(ranking)} eligible institutions for {rpn_count} RPN + {atn_count} ATN seats; "
                            "register more institutions or lower the seat counts")
    ranking = tuple(ranking)
    return Election(ranking[:rpn_count], ranking[rpn_count:required],
                    ranking[required:required + reserve_capacity])


# --- replacement -------------------------------------------------------------------------


@dataclass(frozen=True)
class RpnReplaced:
    removed: bytes
    replacement: bytes  # ZERO32: the seat is vacant
    seat: int


@dataclass(frozen=True)
class AtnRemoved:
    removed: bytes


@dataclass(frozen=True)
class AtnAdmitted:
    admitted: bytes


RosterChange = RpnReplaced | AtnRemoved | AtnAdmitted


@dataclass(frozen=True)
class Roster:
    """The active roster of a round: RPN seats (ZERO32 = vacant), ATN by rank, the unused reserve."""

    rpn: tuple[bytes, ...]
    atn: tuple[bytes, ...]
    reserve: tuple[bytes, ...] = ()
    atn_capacity: int = field(default=0)

    @classmethod
    def from_election(cls, election: Election) -> "Roster":
        return cls(election.rpn, election.atn, election.reserve, len(election.atn))

    def seat_of(self, institution: bytes) -> tuple[SeatKind, int]:
        if institution in self.rpn:
            return SeatKind.RPN, self.rpn.index(institution)
        if institution in self.atn:
            return SeatKind.ATN, self.atn.index(institution)
        return SeatKind.NONE, 0

    def is_seated(self, institution: bytes) -> bool:
        return self.seat_of(institution)[0] is not SeatKind.NONE

    def apply_removals(self, queue: Sequence[bytes],
                       is_eligible: Callable[[bytes], bool]) -> tuple["Roster", tuple[RosterChange, ...]]:
        """The roster after a round boundary, and the changes in event order."""
        rpn, atn, reserve = list(self.rpn), list(self.atn), list(self.reserve)
        changes: list[RosterChange] = []

        def refill() -> None:
            while len(atn) < self.atn_capacity and reserve:
                candidate = reserve.pop(0)
                if is_eligible(candidate):
                    atn.append(candidate)
                    changes.append(AtnAdmitted(candidate))

        for institution in queue:
            if is_eligible(institution):
                continue
            if institution in rpn and institution != ZERO32:
                seat = rpn.index(institution)
                successor = ZERO32
                while atn:
                    head = atn.pop(0)
                    if is_eligible(head):
                        successor = head
                        break
                    changes.append(AtnRemoved(head))
                rpn[seat] = successor
                changes.append(RpnReplaced(institution, successor, seat))
                refill()
            elif institution in atn:
                atn.remove(institution)
                changes.append(AtnRemoved(institution))
                refill()
        return Roster(tuple(rpn), tuple(atn), tuple(reserve), self.atn_capacity), tuple(changes)


__all__ = [
    "AtnAdmitted",
    "AtnRemoved",
    "Candidate",
    "Election",
    "PAPER_ATN_COUNT",
    "PAPER_RPN_COUNT",
    "Roster",
    "RosterChange",
    "RpnReplaced",
    "elect",
    "eligible_ranking",
    "is_valid_ranking",
    "rank",
    "rank_key",
]
