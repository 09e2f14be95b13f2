"""Credit scoring of consortium institutions (pure; mirrors ``CreditRegistry``).

An institution is scored on three dimensions, each in [0, 10 000]: hospital rating
grade, scale of the information center, enterprise strength (paper, "Consensus
mechanism"). The weights are basis points summing to 10 000. Integer arithmetic
identical to the contract::

    base   = (grade·w_grade + scale·w_scale + strength·w_strength) // 10 000
    credit = max(0, base + reward_points − penalty_points)

An institution is *eligible* for a seat when it is willing to serve, not suspended
in the IdentityRegistry, and its credit is at least the removal threshold.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import IntEnum

BPS = 10_000
MAX_DIMENSION = 10_000
ZERO32 = bytes(32)


class Service(IntEnum):
    """Mirror of ``ICreditRegistry.Service``."""

    BLOCK_PRODUCED = 0
    BLOCK_ATTESTED = 1
    DATA_SERVED = 2


class Offence(IntEnum):
    """Mirror of ``ICreditRegistry.Offence``."""

    INVALID_BLOCK = 0
    WRONG_ATTESTATION = 1
    MISSED_SLOT = 2


class SeatKind(IntEnum):
    """Mirror of ``ICreditRegistry.SeatKind``."""

    NONE = 0
    RPN = 1
    ATN = 2


def _check_u16_score(name: str, value: int, limit: int) -> None:
    if type(value) is not int or not 0 <= value <= limit:
        raise ValueError(f"{name} must be an integer in [0, {limit}], got {value!r}")


@dataclass(frozen=True)
class Dimensions:
    """Per-institution scores, each in [0, 10 000]."""

    hospital_grade: int
    info_center_scale: int
    enterprise_strength: int

    def __post_init__(self) -> None:
        for name in ("hospital_grade", "info_center_scale", "enterprise_strength"):
            _check_u16_score(name, getattr(self, name), MAX_DIMENSION)

    def as_tuple(self) -> tuple[int, int, int]:
        """The ABI tuple ``(hospitalGrade, infoCenterScale, enterpriseStrength)``."""
        return (self.hospital_grade, self.info_center_scale, self.enterprise_strength)


@dataclass(frozen=True)
class Weights:
    """Weights of the dimensions in basis points; they sum to 10 000."""

    hospital_grade: int = 5_000
    info_center_scale: int = 3_000
    enterprise_strength: int = 2_000

    def __post_init__(self) -> None:
        for name in ("hospital_grade", "info_center_scale", "enterprise_strength"):
            _check_u16_score(name, getattr(self, name), BPS)
        total = self.hospital_grade + self.info_center_scale + self.enterprise_strength
        if total != BPS:
            raise ValueError(f"weights must sum to {BPS} basis points, got {total}")

    def as_tuple(self) -> tuple[int, int, int]:
        return (self.hospital_grade, self.info_center_scale, self.enterprise_strength)


@dataclass(frozen=True)
class Incentives:
    """Credit points per unit of service or offence, and the removal threshold."""

    block_reward: int = 2
    attestation_reward: int = 1
    data_served_reward: int = 1
    invalid_block_penalty: int = 1_000
    wrong_attestation_penalty: int = 500
    missed_slot_penalty: int = 100
    removal_threshold: int = 1_000

    def __post_init__(self) -> None:
        for name, value in self.__dict__.items():
            if type(value) is not int or not 0 <= value < 2**32:
                raise ValueError(f"{name} must be a uint32, got {value!r}")

    def as_tuple(self) -> tuple[int, ...]:
        return (self.block_reward, self.attestation_reward, self.data_served_reward, self.invalid_block_penalty,
                self.wrong_attestation_penalty, self.missed_slot_penalty, self.removal_threshold)

    def reward_points(self, service: Service, units: int = 1) -> int:
        rate = {Service.BLOCK_PRODUCED: self.block_reward, Service.BLOCK_ATTESTED: self.attestation_reward,
                Service.DATA_SERVED: self.data_served_reward}[Service(service)]
        return rate * units

    def penalty_points(self, offence: Offence) -> int:
        return {Offence.INVALID_BLOCK: self.invalid_block_penalty,
                Offence.WRONG_ATTESTATION: self.wrong_attestation_penalty,
                Offence.MISSED_SLOT: self.missed_slot_penalty}[Offence(offence)]


def base_score(dimensions: Dimensions, weights: Weights) -> int:
    """The weighted dimensions, floored: in [0, 10 000]."""
    d, w = dimensions, weights
    return (d.hospital_grade * w.hospital_grade + d.info_center_scale * w.info_center_scale
            + d.enterprise_strength * w.enterprise_strength) // BPS


def credit_score(dimensions: Dimensions, weights: Weights, reward_points: int = 0, penalty_points: int = 0) -> int:
    """``CreditRegistry.creditFormula``: base + rewards − penalties, floored at zero."""
    if reward_points < 0 or penalty_points < 0:
        raise ValueError("reward and penalty points are non-negative")
    return max(0, base_score(dimensions, weights) + reward_points - penalty_points)


@dataclass(frozen=True)
class CreditRecord:
    """An institution's score inputs (``ICreditRegistry.Institution``)."""

    id: bytes
    dimensions: Dimensions
    reward_points: int = 0
    penalty_points: int = 0
    willing: bool = False
    account: str = ""
    role: int = 0
    removal_queued: bool = False
    registered: bool = field(default=True, compare=False)
    suspended: bool = False  # suspended in the IdentityRegistry (read live by the contract)

    def credit(self, weights: Weights) -> int:
        return credit_score(self.dimensions, weights, self.reward_points, self.penalty_points)

    def eligible(self, weights: Weights, threshold: int) -> bool:
        """Willing to serve, not suspended, and credit at or above the removal threshold."""
        return self.willing and not self.suspended and self.credit(weights) >= threshold

    def rewarded(self, points: int) -> "CreditRecord":
        return replace(self, reward_points=self.reward_points + points)

    def penalised(self, points: int) -> "CreditRecord":
        return replace(self, penalty_points=self.penalty_points + points)


__all__ = [
    "BPS",
    "CreditRecord",
    "Dimensions",
    "Incentives",
    "MAX_DIMENSION",
    "Offence",
    "SeatKind",
    "Service",
    "Weights",
    "base_score",
    "credit_score",
]
