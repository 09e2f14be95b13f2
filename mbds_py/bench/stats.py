"""Statistics of benchmark samples: median, spread, percentiles, and the reported figure.

Pure functions over lists of floats (no I/O, no clock), so they are unit-tested
on fixed numbers.

**Percentile method.**  :func:`percentile` is linear interpolation between the
closest ranks — Hyndman & Fan (1996) type 7, the default of NumPy
(``method="linear"``), R (``type=7``) and Excel ``PERCENTILE.INC``.  For sorted
samples ``x[0..n-1]`` and a fraction ``q`` in [0, 1], the position is
``h = (n - 1) q`` and the value ``x[⌊h⌋] + (h - ⌊h⌋)(x[⌊h⌋+1] - x[⌊h⌋])``.
So p50 is the median, p0 the minimum and p100 the maximum, and with few samples
p99 lies between the two largest (it never invents a value beyond the maximum).
The quartiles of :class:`Spread` use the same method.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

MEASURED = "measured"
NOT_MEASURED = "not measured"
SKIPPED = "skipped"
FAILED = "failed"
Status = Literal["measured", "not measured", "skipped", "failed"]


def _checked(samples: Sequence[float]) -> list[float]:
    values = [float(s) for s in samples]
    if not values:
        raise ValueError("no samples: a statistic needs at least one")
    if any(math.isnan(v) for v in values):
        raise ValueError("a sample is NaN")
    return sorted(values)


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-quantile (``q`` in [0, 1]) by linear interpolation between closest ranks (type 7)."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q is a fraction in [0, 1], got {q}")
    ordered = _checked(samples)
    h = (len(ordered) - 1) * q
    lo = math.floor(h)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (h - lo) * (ordered[hi] - ordered[lo])


def median(samples: Sequence[float]) -> float:
    """The middle sample (mean of the two middle ones for an even count)."""
    return percentile(samples, 0.5)


@dataclass(frozen=True)
class Spread:
    """How far the samples scatter around the median."""

    q1: float
    q3: float
    min: float
    max: float

    @property
    def iqr(self) -> float:
        """Interquartile range ``q3 - q1``."""
        return self.q3 - self.q1

    def to_dict(self, digits: int | None = None) -> dict[str, float]:
        out = {"q1": self.q1, "q3": self.q3, "iqr": self.iqr, "min": self.min, "max": self.max}
        return {k: _round(v, digits) for k, v in out.items()}


def spread(samples: Sequence[float]) -> Spread:
    """Quartiles (type 7) and extremes of the samples."""
    ordered = _checked(samples)
    return Spread(q1=percentile(ordered, 0.25), q3=percentile(ordered, 0.75), min=ordered[0], max=ordered[-1])


def percentiles(samples: Sequence[float], qs: Sequence[int] = (50, 90, 99)) -> dict[str, float]:
    """``{"p50": ..., "p90": ..., "p99": ...}`` for integer percent levels ``qs``."""
    return {f"p{q}": percentile(samples, q / 100) for q in qs}


# --- targets ----------------------------------------------------------------------------------

_COMPARATORS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}


@dataclass(frozen=True)
class Target:
    """A goal such as ``>=1000`` (throughput) or ``<=600`` (cost, latency)."""

    op: str
    bound: float

    @classmethod
    def parse(cls, text: str) -> Target:
        """Parse ``">=1000"``, ``"<= 1.2"``, ``"≥1,000"`` or ``"≤600"``."""
        s = text.strip().replace("≥", ">=").replace("≤", "<=").replace(",", "").replace("_", "")
        for op in (">=", "<=", ">", "<"):  # two-character operators first
            if s.startswith(op):
                try:
                    return cls(op, float(s[len(op):]))
                except ValueError:
                    break
        raise ValueError(f"a target is an operator and a number such as '>=1000' or '<=600', got {text!r}")

    def met_by(self, value: float) -> bool:
        return _COMPARATORS[self.op](value, self.bound)

    @property
    def higher_is_better(self) -> bool:
        return self.op.startswith(">")

    def __str__(self) -> str:
        bound = int(self.bound) if self.bound == int(self.bound) else self.bound
        return f"{self.op}{bound}"


# --- the reported figure ------------------------------------------------------------------------


def _round(value: float | None, digits: int | None) -> float | None:
    if value is None or digits is None:
        return value
    return float(f"{value:.{digits}g}")


@dataclass(frozen=True)
class Measurement:
    """One benchmark key as reported: median and spread of its samples, or why there is none.

    ``baseline`` names the key measured in the same run that this one is
    compared with (e.g. ``naive_gas_per_slip`` for ``gas_per_slip``).
    """

    key: str
    unit: str
    median: float | None
    spread: Spread | None
    n: int
    target: str | None = None
    baseline: str | None = None
    status: Status = MEASURED
    reason: str | None = None
    percentiles: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_samples(cls, key: str, unit: str, samples: Sequence[float], *, target: str | None = None,
                     baseline: str | None = None, extra: dict[str, Any] | None = None) -> Measurement:
        values = _checked(samples)
        return cls(key=key, unit=unit, median=median(values), spread=spread(values), n=len(values),
                   target=target, baseline=baseline, percentiles=percentiles(values), extra=dict(extra or {}))

    @classmethod
    def unavailable(cls, key: str, unit: str, reason: str, *, status: Status = NOT_MEASURED,
                    target: str | None = None, baseline: str | None = None) -> Measurement:
        """A key with no figure: not measured (nothing registered), skipped, or failed."""
        if status == MEASURED:
            raise ValueError("an unavailable measurement cannot have status 'measured'")
        return cls(key=key, unit=unit, median=None, spread=None, n=0, target=target, baseline=baseline,
                   status=status, reason=reason)

    @property
    def measured(self) -> bool:
        return self.status == MEASURED and self.median is not None

    def meets_target(self) -> bool | None:
        """Whether the median meets the target; None when there is no target or no figure."""
        if self.target is None or not self.measured:
            return None
        return Target.parse(self.target).met_by(self.median)

    def ratio_to(self, baseline: Measurement | None) -> float | None:
        """``median / baseline.median`` (None unless both are measured and the baseline is non-zero)."""
        if baseline is None or not self.measured or not baseline.measured or baseline.median == 0:
            return None
        return self.median / baseline.median

    def to_dict(self, digits: int | None = 6) -> dict[str, Any]:
        """JSON-ready: numbers rounded to ``digits`` significant digits."""
        return {
            "key": self.key,
            "status": self.status,
            "unit": self.unit,
            "median": _round(self.median, digits),
            "spread": self.spread.to_dict(digits) if self.spread else None,
            "percentiles": {k: _round(v, digits) for k, v in self.percentiles.items()} or None,
            "n": self.n,
            "target": self.target,
            "meets_target": self.meets_target(),
            "baseline": self.baseline,
            "reason": self.reason,
            "extra": self.extra or None,
        }


__all__ = [
    "FAILED",
    "MEASURED",
    "Measurement",
    "NOT_MEASURED",
    "SKIPPED",
    "Spread",
    "Target",
    "median",
    "percentile",
    "percentiles",
    "spread",
]
