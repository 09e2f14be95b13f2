"""The DPoS slot clock (pure; mirrors ``ConsortiumIndex``).

Slots are ``slot_seconds`` long from ``genesis_time``; a round is K slots (K = RPN
seats). The RPN scheduled for slot s is RPN seat ``s mod K`` of the roster that is
active in round ``s // K``. A slot that passes without a block is charged to its
RPN; the next RPN simply produces in its own, following slot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .credit import ZERO32


MAX_MISSED_SLOTS_PER_CALL = 16  # ConsortiumIndex.MAX_MISSED_SLOTS_PER_CALL


@dataclass(frozen=True)
class SlotClock:
    genesis_time: int
    slot_seconds: int
    slots_per_round: int

    def __post_init__(self) -> None:
        if self.slot_seconds <= 0 or self.slots_per_round <= 0:
            raise ValueError("slot_seconds and slots_per_round must be positive")

    def slot_at(self, timestamp: int) -> int:
        """The slot a Unix time (seconds) falls in."""
        if timestamp < self.genesis_time:
            raise ValueError(f"time {timestamp} is before the genesis time {self.genesis_time}")
        return (timestamp - self.genesis_time) // self.slot_seconds

    def slot_start(self, slot: int) -> int:
        return self.genesis_time + slot * self.slot_seconds

    def slot_end(self, slot: int) -> int:
        """First second after the slot."""
        return self.slot_start(slot + 1)

    def round_of(self, slot: int) -> int:
        return slot // self.slots_per_round

    def round_start(self, round_: int) -> int:
        """First slot of a round."""
        return round_ * self.slots_per_round

    def seat_of(self, slot: int) -> int:
        """The RPN seat that produces in ``slot``."""
        return slot % self.slots_per_round

    def producer_of(self, slot: int, rpn: Sequence[bytes]) -> bytes | None:
        """The RPN scheduled for ``slot`` given the round's RPN seats (None for a vacant seat)."""
        producer = rpn[self.seat_of(slot)]
        return None if producer == ZERO32 else producer

    def next_slot_of(self, seat: int, after_slot: int) -> int:
        """The first slot > ``after_slot`` that belongs to ``seat``."""
        k = self.slots_per_round
        candidate = (after_slot + 1) - (after_slot + 1) % k + seat
        return candidate if candidate > after_slot else candidate + k

    def missed_slots(self, next_unsettled: int, end: int, registry_round: int, *,
                     bound: int | None = MAX_MISSED_SLOTS_PER_CALL, forgive: bool = True) -> list[int]:
        """Slots one ``ConsortiumIndex`` call charges when settling up to ``end`` (exclusive): the unsettled
        slots of the registry's round, then — once that round is settled — of the round of ``end``; whole
        rounds between are skipped. At most ``bound`` slots are examined per call (None: no bound). A commit
        (``forgive``) forgives the slots beyond the bound; ``reportMissedSlots`` (not ``forgive``) leaves
        them, and the registry's round, for the next call."""
        target = self.round_of(end)
        budget = float("inf") if bound is None else bound
        slots: list[int] = []
        for r in ([registry_round, target] if registry_round < target else [target]):
            start = self.round_start(r)
            first = max(next_unsettled, start)
            last = min(start + self.slots_per_round, end)
            if first < last:
                taken = int(min(budget, last - first))
                slots.extend(range(first, first + taken))
                budget -= taken
                next_unsettled = last if forgive else first + taken
            if r != target and next_unsettled < min(start + self.slots_per_round, end):
                break  # the registry's round is not settled: it does not advance in this call
        return slots


__all__ = ["MAX_MISSED_SLOTS_PER_CALL", "SlotClock"]
