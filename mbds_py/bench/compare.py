"""`mbds bench --compare OLD.json`: each key's median beside a previous run's, so a regression shows.

For every key with a median in both reports the table gives both medians, the ratio new/old and a
verdict: *better*, *WORSE* or *unchanged* (within ±``tolerance`` percent).  Which way is better comes
from the key's target (``<=600``: lower is better, ``>=1000``: higher is better); a key without a target
takes the direction of the key it is the baseline of (``naive_gas_per_slip`` → ``gas_per_slip``), and
a key with neither is read from its unit (a rate such as ``slips/s`` is better higher; a time, gas or CPU
cost is better lower).  A key measured in only one of the two reports is listed with the reason, a key
the new report skipped (``--only``) is left out.  Both reports are files written by
``mbds bench --json`` (schema ``mbds-bench/1``).

Pure code over two dicts (no clock, no I/O but :func:`load_report`).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MBDSError
from .stats import SKIPPED, Target

SCHEMA = "mbds-bench/1"
HIGHER, LOWER = "higher", "lower"
BETTER, WORSE, UNCHANGED, NOT_COMPARED = "better", "WORSE", "unchanged", "—"


class ReportError(MBDSError):
    """A file given to ``--compare`` / ``--against`` that is not a readable ``mbds bench --json`` report."""


def load_report(path: Path, option: str = "--compare") -> dict[str, Any]:
    """The report in ``path``, checked to be a ``mbds bench --json`` document; :class:`ReportError` if not."""
    hint = "give a report written by `mbds bench --json FILE`"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReportError(f"{option} {path}: no such file; {hint}") from None
    except IsADirectoryError:
        raise ReportError(f"{option} {path}: is a folder; {hint}") from None
    except UnicodeDecodeError:
        raise ReportError(f"{option} {path}: not a text file; {hint}") from None
    except OSError as exc:
        raise ReportError(f"{option} {path}: cannot read it ({exc.strerror}); {hint}") from None
    try:
        report = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportError(f"{option} {path}: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
                          f"{hint}") from None
    schema = report.get("schema") if isinstance(report, dict) else None
    if schema != SCHEMA:
        found = f"schema {schema!r}" if schema is not None else "no \"schema\" field"
        raise ReportError(f"{option} {path}: not a `mbds bench --json` report ({found}, expected {SCHEMA!r}); "
                          f"{hint}")
    measurements = report.get("measurements")
    if not isinstance(measurements, dict) or not all(
            isinstance(e, dict) and (e.get("median") is None or _is_number(e.get("median")))
            for e in measurements.values()):
        raise ReportError(f"{option} {path}: a {SCHEMA} report whose \"measurements\" are not an object of keys "
                          f"each with a numeric or null \"median\"; {hint}")
    return report


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def direction(key: str, *reports: Mapping[str, Any]) -> str:
    """:data:`HIGHER` or :data:`LOWER`: which way ``key`` gets better (see the module's docstring)."""
    entries = [r["measurements"][key] for r in reports if key in r["measurements"]]
    for entry in entries:
        if entry.get("target"):
            try:
                return HIGHER if Target.parse(entry["target"]).higher_is_better else LOWER
            except ValueError:
                continue
    for report in reports:
        for other, entry in report["measurements"].items():
            if other != key and entry.get("baseline") == key:
                return direction(other, *reports)
    unit = next((e.get("unit") for e in entries if e.get("unit")), "") or ""
    return HIGHER if unit.replace(" ", "").endswith("/s") else LOWER


@dataclass(frozen=True)
class Row:
    key: str
    unit: str
    old: float | None
    new: float | None
    ratio: float | None  # new / old
    verdict: str  # BETTER, WORSE, UNCHANGED or NOT_COMPARED
    better: str  # HIGHER or LOWER
    note: str = ""


def _why_missing(entry: Mapping[str, Any] | None, side: str) -> str:
    if entry is None:
        return f"not in {side}"
    return f"{side}: {entry.get('status') or 'no median'}"


def compare(old: Mapping[str, Any], new: Mapping[str, Any], *, tolerance_pct: float = 5.0,
            only: Collection[str] | None = None) -> list[Row]:
    """One row per key with a median in either report (keys of ``new`` first, in its order)."""
    om, nm = old["measurements"], new["measurements"]
    keys = list(nm) + [k for k in om if k not in nm]
    rows = []
    for key in keys:
        if only is not None and key not in only:
            continue
        o, n = om.get(key), nm.get(key)
        ov = o.get("median") if o else None
        nv = n.get("median") if n else None
        if ov is None and nv is None:
            continue
        if n is not None and n.get("status") == SKIPPED and nv is None:
            continue  # not selected in the new run (--only): nothing to say about it
        better = direction(key, new, old)
        unit = (n or o or {}).get("unit") or ""
        if ov is None or nv is None:
            note = _why_missing(o, "OLD") if ov is None else _why_missing(n, "NEW")
            rows.append(Row(key, unit, ov, nv, None, NOT_COMPARED, better, note))
            continue
        ou, nu = (o.get("unit") or ""), (n.get("unit") or "")
        if ou != nu:
            rows.append(Row(key, unit, ov, nv, None, NOT_COMPARED, better, f"unit changed: {ou} → {nu}"))
            continue
        if ov == 0:
            verdict = UNCHANGED if nv == 0 else NOT_COMPARED
            rows.append(Row(key, unit, ov, nv, None, verdict, better, "" if nv == 0 else "OLD median is 0"))
            continue
        ratio = nv / ov
        if abs(ratio - 1) * 100 <= tolerance_pct:
            verdict = UNCHANGED
        else:
            verdict = BETTER if (ratio > 1) == (better == HIGHER) else WORSE
        rows.append(Row(key, unit, ov, nv, ratio, verdict, better))
    return rows


def _fmt(value: float | None) -> str:
    from .runner import fmt_number

    return fmt_number(value)


def _describe(report: Mapping[str, Any], label: str) -> str:
    return f"{label} ({report.get('mode', '?')} run of {report.get('started_at', '?')})"


def comparison_text(old: Mapping[str, Any], new: Mapping[str, Any], *, old_label: str, new_label: str,
                    tolerance_pct: float = 5.0, only: Collection[str] | None = None) -> str:
    """The comparison as an aligned table with a summary line (what ``mbds bench --compare`` prints)."""
    rows = compare(old, new, tolerance_pct=tolerance_pct, only=only)
    lines = [f"compared with {_describe(old, old_label)}: {_describe(new, new_label)}"]
    if old.get("mode") != new.get("mode"):
        lines.append(f"note: a {old.get('mode')} run against a {new.get('mode')} run: sizes and repetitions differ, "
                     "so the ratios are rough")
    table = [("key", "old", "new", "new/old", "change", "better when")]
    for r in rows:
        table.append((r.key, f"{_fmt(r.old)} {r.unit}" if r.old is not None else "—",
                      f"{_fmt(r.new)} {r.unit}" if r.new is not None else "—",
                      f"×{r.ratio:.3g}" if r.ratio is not None else "—",
                      r.verdict if r.verdict != NOT_COMPARED else f"— ({r.note})" if r.note else "—",
                      r.better))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
    counts = {v: [r.key for r in rows if r.verdict == v] for v in (BETTER, WORSE, UNCHANGED, NOT_COMPARED)}
    worse = f" ({', '.join(counts[WORSE])})" if counts[WORSE] else ""
    lines.append(f"{len(counts[BETTER])} better, {len(counts[WORSE])} worse{worse}, {len(counts[UNCHANGED])} "
                 f"unchanged (within ±{tolerance_pct:g} %), {len(counts[NOT_COMPARED])} not compared")
    return "\n".join(lines)


__all__ = ["BETTER", "HIGHER", "LOWER", "NOT_COMPARED", "UNCHANGED", "WORSE", "ReportError", "Row", "compare",
           "comparison_text", "direction", "load_report"]
