"""`mbds bench`: one command that measures the system beside its baselines (issue #7).

``mbds bench [--quick] [--json FILE] [--markdown FILE] [--plot FILE.png] [--only KEY,...]``

The runner imports every module of :mod:`mbds_py.bench` (each registers its
measurements, see :mod:`mbds_py.bench.registry`), states the expected duration,
runs each registered function — which warms up and repeats — with progress on
stderr, and tears down everything the run started (chains, processes, folders)
in a ``finally``, also on Ctrl-C or SIGTERM.  Each key is reported as the
median and spread of its samples (see :mod:`mbds_py.bench.stats`); a key of the
catalogue that nothing measures yet is ``null`` with status "not measured".
The table goes to stdout; ``--json`` / ``--markdown`` / ``--plot`` write files (a Markdown
file with the generated-section markers keeps its text outside them, see :func:`splice_markdown`).
The exit status is 0 when every selected measurement ran (targets missed are
reported, not failures), 1 when one failed, 2 for bad arguments.

Run as ``python -m mbds_py.bench.runner`` or ``mbds bench``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import pkgutil
import platform
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO, Union

from ..cli_options import bench_arguments
from . import registry
from .context import BenchContext
from .registry import CATALOGUE, CURVES, EXPECTED_CURVES, MEASUREMENTS, PANELS, MeasurementSpec, Samples
from .stats import FAILED, NOT_MEASURED, SKIPPED, Measurement, Target, spread
from .stats import median as _median

SCHEMA = "mbds-bench/1"
STARTUP_S = 8.0  # imports, version probes, teardown, report files
CORE_MODULES = {"runner", "registry", "context", "stats", "plot", "compare"}
DEFAULT_TOLERANCE_PCT = 5.0  # --compare: a change within ±5 % is "unchanged"
NOT_REGISTERED = "no measurement registered yet (the module that provides it has not landed)"


# --- command line --------------------------------------------------------------------------------


add_arguments = bench_arguments  # the options live in mbds_py.cli_options: `--help` imports only it


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mbds_py.bench.runner", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


# --- discovery and planning --------------------------------------------------------------------------


def discover() -> list[str]:
    """Import every benchmark module so its functions register; returns warnings for those that failed."""
    names = [f"{__package__}.{m.name}" for m in pkgutil.iter_modules([str(Path(__file__).parent)])
             if m.name not in CORE_MODULES and not m.name.startswith("_")]
    names += [n.strip() for n in os.environ.get("MBDS_BENCH_MODULES", "").split(",") if n.strip()]
    warnings = []
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - one broken plugin must not stop the others
            warnings.append(f"benchmark module {name} could not be imported: {type(exc).__name__}: {exc}")
    return warnings


def _functions_in_order() -> list[MeasurementSpec]:
    """Registered functions, in catalogue order of their first key."""
    seen: list[MeasurementSpec] = []
    for key in CATALOGUE:
        spec = next((m for m in MEASUREMENTS.values() if key in m.keys), None)
        if spec is not None and spec not in seen:
            seen.append(spec)
    return seen


def _selected(only: Sequence[str] | None, want_plot: bool) -> tuple[list[MeasurementSpec], list[registry.CurveSpec]]:
    functions = _functions_in_order()
    curves = list(CURVES.values()) if want_plot else []
    if only is None:
        return functions, curves
    chosen = set(only)
    return ([m for m in functions if chosen & set(m.keys)],
            [c for c in curves if c.name in chosen or c.panel in chosen])


def _check_only(only: Sequence[str] | None) -> str | None:
    if only is None:
        return None
    known = set(CATALOGUE) | set(CURVES) | set(PANELS) | set(EXPECTED_CURVES)
    unknown = [k for k in only if k not in known]
    if unknown:
        return f"unknown key(s) for --only: {', '.join(unknown)}; known: {', '.join(sorted(known))}"
    return None


def _compare_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the combination of --compare / --against / --tolerance and the run's options."""
    compare, against = getattr(args, "compare", None), getattr(args, "against", None)
    if compare is None:
        if against is not None:
            return "--against NEW.json needs --compare OLD.json (the report to compare it with)"
        if getattr(args, "tolerance", None) is not None:
            return "--tolerance applies to a comparison: add --compare OLD.json, or drop --tolerance"
        return None
    if against is not None:
        clash = [f"--{name}" for name in ("quick", "json", "markdown", "plot") if getattr(args, name, None)]
        if clash:
            return (f"--against compares two reports without running anything; drop {', '.join(clash)} "
                    "(or drop --against to run and compare the run with --compare)")
    return None


def _tolerance(args: argparse.Namespace) -> float:
    value = getattr(args, "tolerance", None)
    return DEFAULT_TOLERANCE_PCT if value is None else value


# --- machine and versions -------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _load_avg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # pragma: no cover - no /proc/loadavg
        return None


def machine_info() -> dict[str, Any]:
    """Cores, CPU model (``/proc/cpuinfo``), memory, OS and the current 1-minute load average."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        usable = os.cpu_count()
    return {"cores": os.cpu_count(), "usable_cores": usable, "cpu_model": _cpu_model(),
            "memory_gib": _memory_gib(), "os": platform.platform(), "load_avg_1m": _load_avg()}


def _package(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _anvil_version() -> str:
    from ..devnet import anvil_binary

    out = subprocess.run([anvil_binary(), "--version"], capture_output=True, text=True, timeout=30, check=True)
    return out.stdout.strip().splitlines()[0].removeprefix("anvil").strip().removeprefix("Version:").strip()


def _solc_version() -> str:
    from ..toolchain import solc_version

    return solc_version()


def versions() -> dict[str, Any]:
    """Versions of the chain, the compiler and the libraries that set the figures."""
    from ..toolchain import EVM_VERSION, OPTIMIZER_RUNS

    out: dict[str, Any] = {"mbds": _package("mbds"), "python": platform.python_version()}
    for name, probe in (("anvil", _anvil_version), ("solc", _solc_version)):
        try:
            out[name] = probe()
        except Exception as exc:  # noqa: BLE001 - report, do not fail the run
            out[name] = f"unavailable ({type(exc).__name__}: {exc})"
    out["solc_settings"] = f"evm {EVM_VERSION}, optimizer {OPTIMIZER_RUNS} runs"
    for name in ("web3", "eth-account", "blspy", "pyblst", "pymcl", "py-arkworks-bls12381", "py_ecc", "umbral-pre",
                 "coincurve", "matplotlib"):
        out[name] = _package(name)
    return out


# --- running ----------------------------------------------------------------------------------------------


def _import_pyplot() -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        importlib.import_module("matplotlib.pyplot")
    except ImportError:  # write_plot reports it
        pass


class _Background:
    """Call ``fn`` in a daemon thread; :meth:`result` joins and returns its value (or raises its error)."""

    def __init__(self, fn: Any):
        self._value: Any = None
        self._error: BaseException | None = None

        def target() -> None:
            try:
                self._value = fn()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                self._error = exc

        self._thread = threading.Thread(target=target, name="mbds-bench-background", daemon=True)
        self._thread.start()

    def join(self) -> None:
        self._thread.join()

    def result(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


@contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """Turn SIGTERM into SystemExit while the run lasts, so the ``finally`` teardown runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _as_samples(value: Any) -> Samples:
    if isinstance(value, Samples):
        return value
    if isinstance(value, (int, float)):
        return Samples([float(value)])
    return Samples(list(value))


def _measurements_of(spec: MeasurementSpec, result: Any) -> dict[str, Measurement]:
    """Turn a function's return value into Measurements of its keys."""
    if isinstance(result, Mapping):
        produced = dict(result)
    else:
        produced = {spec.key: result}
    stray = set(produced) - set(spec.keys)
    if stray:
        raise registry.BenchmarkError(f"{spec.name} returned keys it is not registered for: {sorted(stray)}")
    out = {}
    for key in spec.keys:
        ks = CATALOGUE[key]
        if key not in produced:
            out[key] = Measurement.unavailable(key, ks.unit, f"{spec.name} returned no samples for it",
                                               status=FAILED, target=ks.target, baseline=ks.baseline)
            continue
        samples = _as_samples(produced[key])
        out[key] = Measurement.from_samples(key, ks.unit, samples.values, target=ks.target, baseline=ks.baseline,
                                            extra=samples.extra)
    return out


def _fmt_s(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


class _Progress:
    def __init__(self, out: TextIO, expected_s: float, t0: float):
        self.out, self.expected_s, self.t0 = out, expected_s, t0

    def say(self, message: str) -> None:
        print(message, file=self.out, flush=True)

    def step(self, index: int, total: int, title: str, estimate: float) -> float:
        self.say(f"[{index}/{total}] {title} (≈{_fmt_s(estimate)})")
        return time.monotonic()

    def done(self, started: float, status: str = "done") -> None:
        elapsed = time.monotonic() - self.t0
        self.say(f"      {status} in {time.monotonic() - started:.1f} s "
                 f"(elapsed {_fmt_s(elapsed)} of ≈{_fmt_s(self.expected_s)})")


def _curve_points(samples_by_x: Mapping[int, Sequence[float]]) -> list[dict[str, Any]]:
    points = []
    for x in sorted(samples_by_x):
        values = list(samples_by_x[x])
        s = spread(values)
        points.append({"x": x, "median": _median(values), "q1": s.q1, "q3": s.q3, "min": s.min, "max": s.max,
                       "n": len(values)})
    return points


Step = Union[MeasurementSpec, registry.CurveSpec]


def plan(functions: Sequence[MeasurementSpec], curves: Sequence[registry.CurveSpec]) -> list[Step]:
    """Measurements in catalogue order, then plot series; the users of a shared resource back to back.

    When a step uses a resource (``uses``), every later step that uses it is pulled up
    right behind it (in their own order, transitively), so the resource can be released
    after the last of them instead of idling under unrelated measurements.
    """
    base: list[Step] = [*functions, *curves]
    out: list[Step] = []
    placed: set[int] = set()
    for step in base:
        if id(step) in placed:
            continue
        queue = [step]
        while queue:
            s = queue.pop(0)
            if id(s) in placed:
                continue
            placed.add(id(s))
            out.append(s)
            queue += [o for o in base if id(o) not in placed and set(o.uses) & set(s.uses)]
    return out


def _run_measurement(spec: MeasurementSpec, ctx: BenchContext, progress: _Progress, index: int, total: int,
                     results: dict[str, Measurement]) -> bool:
    """Run one measuring function; on failure its keys are reported failed.  True when it ran."""
    quick = ctx.quick
    t = progress.step(index, total, ", ".join(spec.keys), spec.estimate_s[0 if quick else 1])
    try:
        results.update(_measurements_of(spec, spec.fn(ctx)))
        progress.done(t)
        return True
    except Exception as exc:  # noqa: BLE001 - report it and go on with the others
        traceback.print_exc(file=progress.out)
        reason = f"{type(exc).__name__}: {exc}"
        for key in spec.keys:
            ks = CATALOGUE[key]
            results[key] = Measurement.unavailable(key, ks.unit, reason, status=FAILED,
                                                   target=ks.target, baseline=ks.baseline)
        progress.done(t, "FAILED")
        return False


def _run_curve(c: registry.CurveSpec, ctx: BenchContext, progress: _Progress, index: int, total: int,
               curve_results: dict[str, dict[str, Any]]) -> bool:
    """Run one plot series over its panel's load points.  True when it ran."""
    quick = ctx.quick
    panel = PANELS[c.panel]
    xs = panel.x_quick if quick else panel.x_full
    t = progress.step(index, total, f"plot series {c.name} at {panel.x_label} = {', '.join(map(str, xs))}",
                      c.estimate_s[0 if quick else 1])
    entry: dict[str, Any] = {"panel": c.panel, "label": c.label, "unit": c.unit}
    ok = True
    try:
        entry.update(status="measured", points=_curve_points(c.fn(ctx, xs)))
        progress.done(t)
    except Exception as exc:  # noqa: BLE001
        ok = False
        traceback.print_exc(file=progress.out)
        entry.update(status=FAILED, reason=f"{type(exc).__name__}: {exc}", points=[])
        progress.done(t, "FAILED")
    curve_results[c.name] = entry
    return ok


def run(args: argparse.Namespace) -> int:
    """Run the benchmarks ``args`` select (see :func:`add_arguments`); write the requested files."""
    quick = bool(getattr(args, "quick", False))
    only = getattr(args, "only", None)
    plot_path, json_path, md_path = (getattr(args, name, None) for name in ("plot", "json", "markdown"))
    err = sys.stderr
    t_start = time.monotonic()

    old_report = None
    problem = _compare_problem(args)
    if problem:
        print(f"mbds bench: {problem}", file=err)
        return 2
    if getattr(args, "compare", None) is not None:
        from .compare import ReportError, comparison_text, load_report

        try:
            old_report = load_report(args.compare, "--compare")
            against = getattr(args, "against", None)
            new_report = load_report(against, "--against") if against is not None else None
        except ReportError as exc:
            print(f"mbds bench: {exc}", file=err)
            return 2
        if new_report is not None:  # two files: nothing runs
            known = set(old_report["measurements"]) | set(new_report["measurements"])
            unknown = [k for k in only or () if k not in known]
            if unknown:
                print(f"mbds bench: unknown key(s) for --only: {', '.join(unknown)}; the two reports have: "
                      f"{', '.join(sorted(known))}", file=err)
                return 2
            print(comparison_text(old_report, new_report, old_label=str(args.compare), new_label=str(against),
                                  tolerance_pct=_tolerance(args), only=only))
            return 0

    warnings = discover()
    problem = _check_only(only)
    if problem:
        print(f"mbds bench: {problem}", file=err)
        return 2
    functions, curves = _selected(only, plot_path is not None)
    mode = "quick" if quick else "full"
    expected = STARTUP_S + sum(m.estimate_s[0 if quick else 1] for m in functions) \
        + sum(c.estimate_s[0 if quick else 1] for c in curves)
    measured_keys = {k for m in functions for k in m.keys}
    unregistered = [k for k in CATALOGUE if not any(k in m.keys for m in MEASUREMENTS.values())]
    progress = _Progress(err, expected, t_start)
    progress.say(f"mbds bench ({mode}): {len(functions)} measurement(s) covering {len(measured_keys)} key(s)"
                 f"{f', {len(curves)} plot series' if curves else ''}; expected duration ≈ {_fmt_s(expected)}")
    if unregistered:
        progress.say(f"not measured (nothing registered yet): {', '.join(unregistered)}")
    for w in warnings:
        progress.say(f"warning: {w}")

    started_at = dt.datetime.now(dt.timezone.utc)
    load_at_start = _load_avg()
    results: dict[str, Measurement] = {}
    curve_results: dict[str, dict[str, Any]] = {}
    failed = False
    steps = plan(functions, curves)
    last_use = {r: i for i, step in enumerate(steps) for r in step.uses}
    total = len(steps)
    with _sigterm_unwinds():
        ctx = BenchContext(quick=quick, out=err)
        try:
            for i, step in enumerate(steps):
                if isinstance(step, MeasurementSpec):
                    failed |= not _run_measurement(step, ctx, progress, i + 1, total, results)
                else:
                    failed |= not _run_curve(step, ctx, progress, i + 1, total, curve_results)
                for r in step.uses:
                    if last_use[r] == i and ctx.has(r):
                        progress.say(f"      releasing {r} (no later step uses it)")
                        try:
                            ctx.release(r)
                        except Exception:  # noqa: BLE001 - what is left is killed at teardown
                            traceback.print_exc(file=err)
        finally:
            progress.say("tearing down")
            probe = _Background(versions)  # the version probes (solc-js starts a Node process) meanwhile
            if plot_path is not None:
                _Background(_import_pyplot)  # and matplotlib's import, a few seconds
            try:
                ctx.close()
            finally:
                probe.join()
    for key, ks in CATALOGUE.items():
        if key in results:
            continue
        registered = any(key in m.keys for m in MEASUREMENTS.values())
        reason = "not selected by --only" if registered else NOT_REGISTERED
        results[key] = Measurement.unavailable(key, ks.unit, reason, status=SKIPPED if registered else NOT_MEASURED,
                                               target=ks.target, baseline=ks.baseline)
    if plot_path is not None:
        for name, (panel, label, unit) in EXPECTED_CURVES.items():
            if name not in CURVES and (only is None or name in only or panel in only):
                curve_results[name] = {"panel": panel, "label": label, "unit": unit, "status": NOT_MEASURED,
                                       "reason": NOT_REGISTERED, "points": []}

    report = build_report(results, curve_results, mode=mode, started_at=started_at,
                          duration_s=time.monotonic() - t_start, expected_s=expected, warnings=warnings,
                          load_at_start=load_at_start, version_info=probe.result())
    print(text_table(report))
    if old_report is not None:
        print()
        print(comparison_text(old_report, report, old_label=str(args.compare), new_label="this run",
                              tolerance_pct=_tolerance(args)))
    if json_path is not None:
        _write(json_path, json.dumps(report, indent=2) + "\n")
    if md_path is not None:
        _write(md_path, splice_markdown(md_path, markdown(report)))
    if plot_path is not None:
        from .plot import write_plot

        plot_path.parent.mkdir(parents=True, exist_ok=True)
        write_plot(report, plot_path)
    for path in (json_path, md_path, plot_path):
        if path is not None:
            progress.say(f"wrote {path}")
    return 1 if failed else 0


MD_BEGIN = "<!-- mbds bench: generated from here -->"
MD_END = "<!-- mbds bench: generated up to here -->"


def splice_markdown(path: Path, generated: str) -> str:
    """The text to write to ``path``: the report alone, or — when the file already has the
    :data:`MD_BEGIN` / :data:`MD_END` markers — the file with only the part between them replaced,
    so a hand-written page (docs/benchmarks.md) keeps its prose around the figures."""
    try:
        current = path.read_text(encoding="utf-8")
    except OSError:
        return generated
    start, end = current.find(MD_BEGIN), current.find(MD_END)
    if start < 0 or end < start:
        return generated
    return f"{current[:start]}{MD_BEGIN}\n{generated}{current[end:]}"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


# --- the report ------------------------------------------------------------------------------------------


def build_report(results: Mapping[str, Measurement], curves: Mapping[str, Any], *, mode: str,
                 started_at: dt.datetime, duration_s: float, expected_s: float,
                 warnings: Sequence[str] = (), load_at_start: float | None = None,
                 version_info: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON document: per key median and spread, plus machine and versions.

    The machine's load average is recorded at the start and the end of the run:
    on a shared machine, other work inflates wall-clock figures.
    """
    measurements = {}
    for key in CATALOGUE:
        m = results[key]
        entry = m.to_dict()
        base = results.get(m.baseline) if m.baseline else None
        ratio = m.ratio_to(base)
        entry["ratio_to_baseline"] = None if ratio is None else float(f"{ratio:.6g}")
        entry["description"] = CATALOGUE[key].description
        measurements[key] = entry
    return {
        "schema": SCHEMA,
        "mode": mode,
        "started_at": started_at.isoformat(timespec="seconds"),
        "duration_s": round(duration_s, 1),
        "expected_duration_s": round(expected_s, 1),
        "machine": _machine_with_load(load_at_start),
        "versions": dict(version_info) if version_info is not None else versions(),
        "measurements": measurements,
        "curves": dict(curves),
        "warnings": list(warnings),
    }


def _machine_with_load(load_at_start: float | None) -> dict[str, Any]:
    machine = machine_info()
    machine["load_avg_1m_at_end"] = machine.pop("load_avg_1m")
    machine["load_avg_1m_at_start"] = load_at_start
    return machine


def fmt_number(value: float | None) -> str:
    """Readable fixed-point: thousands separators for big figures, 3 significant digits for small."""
    if value is None:
        return "—"
    a = abs(value)
    if a >= 1000:
        return f"{value:,.0f}"
    if a >= 100:
        return f"{value:.1f}"
    if a >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _target_text(target: str | None) -> str:
    if target is None:
        return ""
    t = Target.parse(target)
    bound = f"{t.bound:,.0f}" if t.bound == int(t.bound) else f"{t.bound:g}"
    return f"{'≥' if t.op == '>=' else '≤' if t.op == '<=' else t.op} {bound}"


def _ratio_text(entry: Mapping[str, Any], measurements: Mapping[str, Any]) -> str:
    ratio = entry.get("ratio_to_baseline")
    base = measurements.get(entry.get("baseline") or "")
    if not base:
        return ""
    if ratio is None:
        return f"vs `{entry['baseline']}`: —"
    how = f"{1 / ratio:,.1f}× lower" if ratio < 1 else f"{ratio:,.1f}× higher"
    return f"{ratio:.3g} vs `{entry['baseline']}` ({how})"


def _row(entry: Mapping[str, Any], measurements: Mapping[str, Any]) -> list[str]:
    met = {True: "yes", False: "**no**", None: ""}[entry["meets_target"]]
    if entry["median"] is None:
        return [f"`{entry['key']}`", "—", "—", "—", _target_text(entry["target"]), met,
                _ratio_text(entry, measurements), f"{entry['status']}: {entry['reason']}"]
    s = entry["spread"]
    return [f"`{entry['key']}`", f"{fmt_number(entry['median'])} {entry['unit']}",
            f"{fmt_number(s['q1'])}–{fmt_number(s['q3'])} · {fmt_number(s['min'])}–{fmt_number(s['max'])}",
            str(entry["n"]), _target_text(entry["target"]), met, _ratio_text(entry, measurements),
            entry["description"]]


def _machine_line(report: Mapping[str, Any]) -> str:
    m, v = report["machine"], report["versions"]
    mem = f", {m['memory_gib']} GiB" if m.get("memory_gib") else ""
    load = (f"; load average (1 min) {m.get('load_avg_1m_at_start')} at start, {m.get('load_avg_1m_at_end')} at end"
            if m.get("load_avg_1m_at_end") is not None else "")
    return (f"Machine: {m['cpu_model']}, {m['cores']} cores ({m['usable_cores']} usable){mem}; {m['os']}{load}  \n"
            f"Versions: anvil {v.get('anvil')} · solc {v.get('solc')} ({v.get('solc_settings')}) · "
            f"Python {v.get('python')} · web3 {v.get('web3')} · blspy {v.get('blspy')} · pyblst {v.get('pyblst')}"
            f" · pymcl {v.get('pymcl')} · py-arkworks-bls12381 {v.get('py-arkworks-bls12381')} · py_ecc {v.get('py_ecc')}")


def markdown(report: Mapping[str, Any]) -> str:
    """The report as Markdown: run facts, then one table row per key with target and ratio to its baseline."""
    ms = report["measurements"]
    head = ["key", "median", "spread (IQR · min–max)", "n", "target", "met", "ratio to baseline", "what / status"]
    lines = [f"Run: {report['started_at']} · {report['mode']} · {report['duration_s']:.0f} s "
             f"(stated up front: ≈{report['expected_duration_s']:.0f} s)  ",
             _machine_line(report), "",
             "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in _row(e, ms)) + " |" for e in ms.values()]
    curves = report.get("curves") or {}
    if curves:
        lines += ["", "Plot series (median per load point; IQR in the JSON):", ""]
        for name, c in curves.items():
            if c["status"] != "measured":
                lines.append(f"- `{name}` ({c['label']}): {c['status']} — {c.get('reason', '')}")
                continue
            pts = ", ".join(f"{p['x']}: {fmt_number(p['median'])}" for p in c["points"])
            lines.append(f"- `{name}` ({c['label']}, {c['unit']} at {PANELS[c['panel']].x_label}): {pts}")
    if report.get("warnings"):
        lines += [""] + [f"> warning: {w}" for w in report["warnings"]]
    return "\n".join(lines) + "\n"


def text_table(report: Mapping[str, Any]) -> str:
    """A plain aligned table for the terminal."""
    rows = [("key", "median", "IQR", "n", "target", "met", "vs baseline")]
    for e in report["measurements"].values():
        if e["median"] is None:
            rows.append((e["key"], e["status"], "", "", _target_text(e["target"]), "", ""))
            continue
        s = e["spread"]
        ratio = e.get("ratio_to_baseline")
        rows.append((e["key"], f"{fmt_number(e['median'])} {e['unit']}",
                     f"{fmt_number(s['q1'])}–{fmt_number(s['q3'])}", str(e["n"]), _target_text(e["target"]),
                     {True: "yes", False: "NO", None: ""}[e["meets_target"]],
                     "" if ratio is None else f"×{ratio:.3g}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


if __name__ == "__main__":
    sys.exit(main())
