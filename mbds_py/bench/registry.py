"""What `mbds bench` measures: the catalogue of keys, and the functions registered to measure them.

Every key of issue #7 is in :data:`CATALOGUE` with its unit, target and
baseline, whether or not anything measures it yet; a key with no registered
function is reported as ``null`` with status "not measured" — never a made-up
number.  A module provides figures by decorating a function::

    from mbds_py.bench.registry import measurement

    @measurement("pbft_slips_per_s", also=("pbft_commit_p99_ms",), estimate_s=(20, 90))
    def pbft(ctx):                       # ctx: mbds_py.bench.context.BenchContext
        ...                              # start replicas with ctx.track(proc), warm up, repeat
        return {"pbft_slips_per_s": per_run_throughputs,          # a list of samples, or
                "pbft_commit_p99_ms": Samples(latencies_ms, extra={"blocks": 40})}

The function returns the samples of its key (a list of floats) or a mapping
from each key it measured (its key, its ``baseline``, the ``also`` keys) to a
list or :class:`Samples`; the runner turns them into median, spread and
percentiles.  A baseline is registered on the same function as its key, so the
two are always measured in the same run.  The runner imports every module of
the ``mbds_py.bench`` package (and those named in ``MBDS_BENCH_MODULES``,
comma-separated) before it runs, so putting the module there is all it takes.

A function that shares an expensive resource of the run (``ctx.network()``, a
replica group made with ``ctx.resource``) names it in ``uses``: the runner runs
the selected users of a resource back to back — in catalogue order from the first
of them, curves included — and releases the resource after the last one, so its
idle processes do not weigh on the measurements that follow.

Plot series are registered the same way with :func:`curve` on one of the
:data:`PANELS`; e.g. the PBFT throughput hook is
``@curve("pbft_slips_per_s", panel="throughput", label="PBFT, 4 replicas", unit="slips/s")``
on a function ``(ctx, xs) -> {x: samples}``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

from ..errors import MBDSError
from .stats import Target

if TYPE_CHECKING:
    from .context import BenchContext


class BenchmarkError(MBDSError, RuntimeError):
    """A benchmark could not be set up or registered; the message says what to fix."""


@dataclass(frozen=True)
class KeySpec:
    """One reported key: its unit, target (e.g. ``>=1000``) and the key it is compared with."""

    key: str
    unit: str
    target: str | None = None
    baseline: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.target is not None:
            Target.parse(self.target)  # fail at registration, not at report time


CATALOGUE: dict[str, KeySpec] = {}


def _declare(spec: KeySpec) -> None:
    CATALOGUE[spec.key] = spec


for _spec in (
    KeySpec("pbft_slips_per_s", "slips/s", ">=1000", None,
            "PBFT, 4 replica processes on loopback, 128-slip blocks: committed slips per second"),
    KeySpec("pbft_commit_p99_ms", "ms", "<=250", None, "PBFT p99 block commit latency"),
    KeySpec("replica_cpu_us_per_slip", "CPU-us/slip", None, "replica_floor_us_per_slip",
            "CPU time of each replica process (utime+stime, /proc) during the measured phase / committed slips; "
            "target: at most 4 x replica_floor_us_per_slip (ratio in the JSON)"),
    KeySpec("replica_floor_us_per_slip", "CPU-us/slip", None, None,
            "the same machine's cost of the checks a replica must do per slip: two secp256k1 recoveries "
            "(coincurve), the EIP-712 hashes, one keccak of the slip"),
    KeySpec("driver_cpu_us_per_slip", "CPU-us/slip", None, None,
            "CPU time of the bench driver (the submitting client) per committed slip"),
    KeySpec("gas_per_slip", "gas/slip", "<=600", "naive_gas_per_slip",
            "anchor a 128-slip block with its quorum certificate (n=4, 3 signatures) in SlipLedger"),
    KeySpec("gas_per_slip_batched", "gas/slip", "<=400", None,
            "anchoring fallen behind: 8 consecutive certified 128-slip headers in one commitBlocks (n=4, "
            "3 signatures each)"),
    KeySpec("naive_gas_per_slip", "gas/slip", None, None,
            "baseline: one transaction per slip into NaiveSlipRegistry (one SSTORE + event)"),
    KeySpec("ingest_records_per_s", "records/s", ">=100", None,
            "end-to-end ingest: encrypt, PEKS x3, store, sign, confirm, PBFT, anchor"),
    KeySpec("peks_test_ms", "ms/item", "<=0.7", "peks_test_ms_arkworks",
            "PEKS Test per item on one core (blst pairing through blspy)"),
    KeySpec("peks_test_ms_arkworks", "ms/item", None, None,
            "baseline: the same Test on py-arkworks-bls12381, the previous binding (same run)"),
    KeySpec("peks_test_ms_py_ecc", "ms/item", None, None, "the same Test with py_ecc's pure-Python pairing"),
    KeySpec("peks_encrypt_ms", "ms/keyword", "<=0.4", "peks_encrypt_ms_pairing",
            "PEKS encryption per keyword without a pairing: g^r (blst) and E_w^r (mcl), E_w cached"),
    KeySpec("peks_encrypt_ms_pairing", "ms/keyword", None, None,
            "baseline: the same encryption with one pairing per keyword, B = H2(e(h^r, H1(w))) (blst)"),
    KeySpec("peks_encrypt_ms_arkworks", "ms/keyword", None, None,
            "the previous encryption on py-arkworks-bls12381 (pairing per keyword, variable-time scalars)"),
    KeySpec("record_crypto_ms", "ms/record", "<=5", "record_crypto_ms_pairings",
            "one record's client crypto, 3 keywords: build (Alg. 1) + review + confirm (Alg. 2), one core; "
            "the patient checks the keywords from the r inside C_M"),
    KeySpec("record_crypto_ms_pairings", "ms/record", None, None,
            "baseline: the same record with one pairing per keyword on each side (pairing-path encryption, "
            "pairing Test by the patient; the format-2 payload), same run"),
    KeySpec("share_p50_ms", "ms", "<=40", "share_p50_ms_single_proxy",
            "share one record through the threshold proxies: search, policy, re-encrypt, decrypt"),
    KeySpec("share_p50_ms_single_proxy", "ms", None, None, "baseline: the same with one proxy"),
    KeySpec("storage_p50_ms", "ms", "<=20", "storage_p50_ms_new_connection",
            "storage add + cat of 1-10 KiB through a node process, connection reused"),
    KeySpec("storage_p50_ms_new_connection", "ms", None, None,
            "baseline: the same with a new HTTP connection per request"),
    KeySpec("consortium_items_per_s", "items/s", None, None, "consortium-chain index items per second"),
    KeySpec("consortium_items_per_s_saturated", "items/s", ">=1000", None,
            "all three private chains streaming: items from the first private commit to consortium finality"),
    KeySpec("gas_per_item", "gas/item", None, None, "gas per consortium index item"),
):
    _declare(_spec)


# --- measurements ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Samples:
    """Samples of one key plus free-form context reported beside them (sizes, sub-figures)."""

    values: Sequence[float]
    extra: dict[str, Any] = field(default_factory=dict)


Result = Union[Sequence[float], Samples, Mapping[str, Union[Sequence[float], Samples]]]
MeasureFn = Callable[["BenchContext"], Result]


@dataclass(frozen=True)
class MeasurementSpec:
    """A registered measuring function and the keys it produces (its key first)."""

    key: str
    keys: tuple[str, ...]
    fn: MeasureFn
    estimate_s: tuple[float, float]
    """Expected seconds (quick, full), for the duration stated up front."""
    uses: tuple[str, ...] = ()
    """Shared resources of the run it uses (released by the runner after the last user)."""

    @property
    def name(self) -> str:
        return f"{self.fn.__module__}.{self.fn.__qualname__}"


MEASUREMENTS: dict[str, MeasurementSpec] = {}
"""Registered functions by their (primary) key."""


def _origin(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


def measurement(key: str, *, unit: str | None = None, target: str | None = None, baseline: str | None = None,
                also: Sequence[str] = (), estimate_s: tuple[float, float] = (10.0, 60.0),
                description: str = "", uses: Sequence[str] = ()) -> Callable[[MeasureFn], MeasureFn]:
    """Register ``fn(ctx)`` as the measurement of ``key`` (and of its ``baseline`` and ``also`` keys).

    ``unit``, ``target`` and ``baseline`` default to the catalogue's; a key not
    in the catalogue needs a ``unit``.  A new baseline key inherits the unit.
    ``uses`` names the shared resources of the run it uses (see the module docstring).
    """

    def register(fn: MeasureFn) -> MeasureFn:
        known = CATALOGUE.get(key)
        if known is None and unit is None:
            raise BenchmarkError(f"measurement {key!r} is not in the catalogue: give its unit, e.g. unit='ms'")
        spec = KeySpec(key, unit or known.unit, target if target is not None else (known and known.target),
                       baseline if baseline is not None else (known and known.baseline),
                       description or (known.description if known else ""))
        keys = (key,) + ((spec.baseline,) if spec.baseline else ()) + tuple(also)
        for k in keys:
            owner = next((m for m in MEASUREMENTS.values() if k in m.keys), None)
            if owner is not None and owner.name != _origin(fn):
                raise BenchmarkError(f"{k!r} is already measured by {owner.name}; one function per key")
        _declare(spec)
        if spec.baseline and spec.baseline not in CATALOGUE:
            _declare(KeySpec(spec.baseline, spec.unit, None, None, f"baseline of {key}"))
        for k in also:
            if k not in CATALOGUE:
                raise BenchmarkError(f"{k!r} (also measured by {key}) is not in the catalogue: "
                                     "register it as its own key or add it to CATALOGUE")
        MEASUREMENTS[key] = MeasurementSpec(key, keys, fn, (float(estimate_s[0]), float(estimate_s[1])),
                                            tuple(uses))
        return fn

    return register


# --- curves (plot series) -------------------------------------------------------------------------


@dataclass(frozen=True)
class Panel:
    """One chart of the plot: a load axis swept with ``x_quick`` or ``x_full`` values."""

    name: str
    title: str
    x_label: str
    y_label: str
    x_quick: tuple[int, ...]
    x_full: tuple[int, ...]
    log_x: bool = True
    log_y: bool = False


PANELS: dict[str, Panel] = {
    "anchor_gas": Panel("anchor_gas", "Anchoring cost vs block size", "slips per block", "gas per slip",
                        (8, 16, 32), (8, 16, 32, 64, 128), log_x=True, log_y=True),
    "throughput": Panel("throughput", "Throughput vs block size", "slips per block", "slips/s",
                        (8, 32, 128), (8, 16, 32, 64, 128), log_x=True, log_y=True),
    "peks_search": Panel("peks_search", "PEKS search vs a patient's items", "items", "search time (ms)",
                         (100, 200, 400), (100, 300, 1000, 3000, 10000), log_x=True, log_y=True),
}

CurveFn = Callable[["BenchContext", Sequence[int]], Mapping[int, Sequence[float]]]


@dataclass(frozen=True)
class CurveSpec:
    """A registered plot series: ``fn(ctx, xs) -> {x: samples}`` on ``panel``."""

    name: str
    panel: str
    label: str
    unit: str
    fn: CurveFn
    estimate_s: tuple[float, float]
    uses: tuple[str, ...] = ()
    """Shared resources of the run it uses (see :class:`MeasurementSpec`)."""


CURVES: dict[str, CurveSpec] = {}

EXPECTED_CURVES: dict[str, tuple[str, str, str]] = {
    "pbft_slips_per_s": ("throughput", "PBFT commit, 4 replica processes", "slips/s"),
}
"""Series the plot is meant to show that later modules provide: name -> (panel, label, unit).

Until a function is registered under the name, the report lists it as not measured."""


def curve(name: str, *, panel: str, label: str, unit: str,
          estimate_s: tuple[float, float] = (5.0, 30.0), uses: Sequence[str] = ()) -> Callable[[CurveFn], CurveFn]:
    """Register ``fn(ctx, xs) -> {x: samples}`` as the series ``name`` of ``panel`` (see :data:`PANELS`)."""
    if panel not in PANELS:
        raise BenchmarkError(f"unknown panel {panel!r}; one of {', '.join(PANELS)}")

    def register(fn: CurveFn) -> CurveFn:
        owner = CURVES.get(name)
        if owner is not None and _origin(owner.fn) != _origin(fn):
            raise BenchmarkError(f"curve {name!r} is already registered by {_origin(owner.fn)}")
        CURVES[name] = CurveSpec(name, panel, label, unit, fn, (float(estimate_s[0]), float(estimate_s[1])),
                                 tuple(uses))
        return fn

    return register


__all__ = [
    "BenchmarkError",
    "CATALOGUE",
    "CURVES",
    "CurveSpec",
    "EXPECTED_CURVES",
    "KeySpec",
    "MEASUREMENTS",
    "MeasurementSpec",
    "PANELS",
    "Panel",
    "Samples",
    "curve",
    "measurement",
]
