"""The bench harness with fake measurements: registration, report shape, teardown (no figures asserted)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import pytest

from mbds_py.bench import registry, runner
from mbds_py.bench.context import BenchContext
from mbds_py.bench.registry import CATALOGUE, CURVES, MEASUREMENTS, BenchmarkError, KeySpec, Samples, curve, measurement


@pytest.fixture()
def isolated(monkeypatch):
    """An empty registry (catalogue kept), no module discovery, no version probes; restored afterwards."""
    saved = (dict(CATALOGUE), dict(MEASUREMENTS), dict(CURVES))
    MEASUREMENTS.clear()
    CURVES.clear()
    monkeypatch.setattr(runner, "discover", lambda: [])
    monkeypatch.setattr(runner, "versions", lambda: {"anvil": "test", "solc": "test"})
    yield
    for live, old in zip((CATALOGUE, MEASUREMENTS, CURVES), saved):
        live.clear()
        live.update(old)


def args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    runner.add_arguments(parser)
    return parser.parse_args(list(argv))


def register_fake_gas():
    @measurement("gas_per_slip", estimate_s=(0, 0))
    def fake(ctx):
        ctx.progress("fake gas")
        return {"gas_per_slip": Samples([700.0, 710.0, 705.0], extra={"slips_per_block": 128}),
                "naive_gas_per_slip": [46_000.0] * 4}

    return fake


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


# --- registration ----------------------------------------------------------------------------------


def test_measurement_takes_unit_target_and_baseline_from_the_catalogue(isolated):
    register_fake_gas()
    spec = MEASUREMENTS["gas_per_slip"]
    assert spec.keys == ("gas_per_slip", "naive_gas_per_slip")
    assert CATALOGUE["gas_per_slip"].target == "<=600" and CATALOGUE["gas_per_slip"].unit == "gas/slip"


def test_a_key_outside_the_catalogue_needs_a_unit(isolated):
    with pytest.raises(BenchmarkError, match="give its unit"):
        measurement("replica_rss_mb")(lambda ctx: [1.0])


def test_a_new_key_with_a_new_baseline_declares_both(isolated):
    measurement("replica_rss_mb", unit="MB", target="<=300", baseline="replica_rss_mb_naive")(lambda ctx: {})
    assert CATALOGUE["replica_rss_mb"] == KeySpec("replica_rss_mb", "MB", "<=300", "replica_rss_mb_naive")
    assert CATALOGUE["replica_rss_mb_naive"].unit == "MB"


def test_a_key_cannot_be_measured_by_two_functions(isolated):
    register_fake_gas()

    def other(ctx):
        return [1.0]

    with pytest.raises(BenchmarkError, match="already measured by"):
        measurement("naive_gas_per_slip")(other)


def test_a_malformed_target_is_rejected_at_registration(isolated):
    with pytest.raises(ValueError, match="operator and a number"):
        measurement("pbft_slips_per_s", target="fast")(lambda ctx: [1.0])


def test_a_curve_needs_a_known_panel(isolated):
    with pytest.raises(BenchmarkError, match="unknown panel"):
        curve("x", panel="nowhere", label="x", unit="ms")


# --- running -----------------------------------------------------------------------------------------


def test_run_reports_registered_keys_with_figures_and_the_rest_as_not_measured(isolated, tmp_path, capsys):
    register_fake_gas()
    out_json, out_md = tmp_path / "bench.json", tmp_path / "bench.md"
    assert runner.run(args("--quick", "--json", str(out_json), "--markdown", str(out_md))) == 0

    report = json.loads(out_json.read_text())
    assert report["schema"] == runner.SCHEMA and report["mode"] == "quick"
    assert set(report["machine"]) >= {"cores", "usable_cores", "cpu_model"}
    assert set(report["versions"]) >= {"anvil", "solc"}
    ms = report["measurements"]
    assert set(ms) == set(CATALOGUE)
    gas = ms["gas_per_slip"]
    assert gas["status"] == "measured" and gas["median"] == 705.0 and gas["n"] == 3
    assert gas["spread"] == {"q1": 702.5, "q3": 707.5, "iqr": 5.0, "min": 700.0, "max": 710.0}
    assert gas["ratio_to_baseline"] == pytest.approx(705 / 46_000, rel=1e-5)
    assert gas["meets_target"] is False and gas["extra"] == {"slips_per_block": 128}
    for key in set(ms) - {"gas_per_slip", "naive_gas_per_slip"}:
        assert ms[key]["median"] is None and ms[key]["spread"] is None, key
        assert ms[key]["status"] == "not measured" and ms[key]["reason"], key

    md = out_md.read_text()
    assert "| `gas_per_slip` | 705.0 gas/slip |" in md and "≤ 600" in md and "(65.2× lower)" in md
    assert "| `pbft_slips_per_s` | — |" in md and "not measured" in md
    err = capsys.readouterr().err
    assert "expected duration" in err and "[1/1] gas_per_slip, naive_gas_per_slip" in err and "fake gas" in err


def test_a_failing_measurement_is_reported_failed_and_its_processes_are_killed(isolated, tmp_path):
    started = {}

    @measurement("storage_p50_ms", estimate_s=(0, 0))
    def broken(ctx):
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
        started["pid"] = ctx.track(proc).pid
        raise RuntimeError("node did not start")

    out = tmp_path / "b.json"
    assert runner.run(args("--quick", "--json", str(out))) == 1
    deadline = time.monotonic() + 10
    while alive(started["pid"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(started["pid"])
    ms = json.loads(out.read_text())["measurements"]
    for key in ("storage_p50_ms", "storage_p50_ms_new_connection"):
        assert ms[key]["status"] == "failed" and ms[key]["median"] is None
        assert ms[key]["reason"] == "RuntimeError: node did not start"


def test_only_runs_the_selected_keys_and_marks_registered_others_skipped(isolated, tmp_path):
    register_fake_gas()
    calls = []
    measurement("storage_p50_ms", estimate_s=(0, 0))(lambda ctx: calls.append(1) or [1.0])
    out = tmp_path / "b.json"
    assert runner.run(args("--only", "naive_gas_per_slip", "--json", str(out))) == 0
    ms = json.loads(out.read_text())["measurements"]
    assert calls == [] and ms["gas_per_slip"]["status"] == "measured"  # a baseline runs with its key
    assert ms["storage_p50_ms"]["status"] == "skipped" and ms["storage_p50_ms"]["reason"] == "not selected by --only"


def test_only_with_an_unknown_key_exits_2(isolated, capsys):
    assert runner.run(args("--only", "gas_per_slipp")) == 2
    assert "unknown key(s) for --only: gas_per_slipp" in capsys.readouterr().err


def test_a_function_returning_an_unregistered_key_fails(isolated, tmp_path):
    measurement("gas_per_item", estimate_s=(0, 0))(lambda ctx: {"gas_per_item": [1.0], "gas_per_wish": [2.0]})
    out = tmp_path / "b.json"
    assert runner.run(args("--json", str(out))) == 1
    entry = json.loads(out.read_text())["measurements"]["gas_per_item"]
    assert entry["status"] == "failed" and "gas_per_wish" in entry["reason"]


def test_plot_draws_registered_series_and_names_the_missing_pbft_hook(isolated, tmp_path):

    @curve("fake_gas", panel="anchor_gas", label="fake", unit="gas/slip", estimate_s=(0, 0))
    def fake_curve(ctx, xs):
        return {x: [1000.0 / x, 1100.0 / x] for x in xs}

    out_png, out_json = tmp_path / "b.png", tmp_path / "b.json"
    assert runner.run(args("--quick", "--plot", str(out_png), "--json", str(out_json))) == 0
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    curves = json.loads(out_json.read_text())["curves"]
    assert [p["x"] for p in curves["fake_gas"]["points"]] == list(registry.PANELS["anchor_gas"].x_quick)
    assert curves["pbft_slips_per_s"]["status"] == "not measured"


def test_main_parses_the_documented_options(tmp_path):
    a = args("--quick", "--json", "a.json", "--markdown", "a.md", "--plot", "a.png",
             "--only", "gas_per_slip, peks_test_ms")
    assert a.quick and str(a.json) == "a.json" and str(a.markdown) == "a.md" and str(a.plot) == "a.png"
    assert a.only == ["gas_per_slip", "peks_test_ms"]


# --- context -----------------------------------------------------------------------------------------


def test_repeat_discards_the_warm_up_calls():
    values = iter(range(100))
    with BenchContext(quick=True) as ctx:
        assert ctx.repeat(lambda: next(values), reps=3, warmup=2) == [2.0, 3.0, 4.0]
        assert len(ctx.time_ms(lambda: None, reps=4)) == 4


def test_close_runs_every_cleanup_newest_first_even_if_one_fails():
    order = []
    ctx = BenchContext(quick=True)
    ctx.on_close(lambda: order.append("first"))
    ctx.on_close(lambda: (_ for _ in ()).throw(OSError("stuck")))
    ctx.on_close(lambda: order.append("last"))
    with pytest.raises(OSError, match="stuck"):
        ctx.close()
    assert order == ["last", "first"]


def test_tmpdir_is_removed_on_close():
    with BenchContext(quick=True) as ctx:
        folder = ctx.tmpdir
        (folder / "x").write_text("y")
    assert not os.path.exists(folder)


def test_resource_cleanups_belong_to_it_and_release_runs_them_early():
    order = []
    with BenchContext(quick=True) as ctx:
        ctx.on_close(lambda: order.append("run"))

        def make():
            ctx.on_close(lambda: order.append("net stopped"))
            ctx.on_close(lambda: order.append("net killed"))
            return "net"

        assert ctx.resource("net", make) == "net" and ctx.resource("net", make) == "net"
        assert ctx.has("net")
        ctx.release("net")
        assert order == ["net killed", "net stopped"] and not ctx.has("net")
        ctx.release("net")  # twice, or never made: nothing to do
        assert order == ["net killed", "net stopped"]
    assert order == ["net killed", "net stopped", "run"]


def test_a_resource_that_fails_is_torn_down_at_once_and_not_made_twice():
    calls, order = [], []

    def make():
        calls.append(1)
        ctx.on_close(lambda: order.append("half-started network stopped"))
        raise OSError("no port")

    with BenchContext(quick=True) as ctx:
        with pytest.raises(OSError, match="no port"):
            ctx.resource("net", make)
        assert order == ["half-started network stopped"]
        with pytest.raises(RuntimeError, match="could not be made earlier in this run: OSError: no port"):
            ctx.resource("net", make)
        assert calls == [1]


def test_tmpdir_first_used_by_a_resource_outlives_its_release():
    with BenchContext(quick=True) as ctx:
        folder = ctx.resource("net", lambda: ctx.tmpdir)
        ctx.release("net")
        assert folder.is_dir()
    assert not folder.exists()


def test_users_of_a_shared_resource_run_back_to_back_and_it_is_released_after_the_last(isolated, tmp_path):
    """Catalogue order, except that later users of a resource are pulled up behind its first user."""
    log = []

    def fake(key, uses=()):
        def fn(ctx):
            if uses:
                ctx.resource("devnet", lambda: ctx.on_close(lambda: log.append("devnet released")) or "net")
            log.append(key)
            return [1.0]

        measurement(key, unit="ms", estimate_s=(0, 0), uses=uses)(fn)

    fake("storage_p50_ms")
    fake("share_p50_ms", uses=("devnet",))
    fake("gas_per_item")
    fake("consortium_items_per_s", uses=("devnet",))
    fake("pbft_slips_per_s")

    @curve("fake_throughput", panel="throughput", label="fake", unit="slips/s", estimate_s=(0, 0), uses=("devnet",))
    def fake_curve(ctx, xs):
        ctx.resource("devnet", lambda: "net")
        log.append("curve")
        return {x: [1.0] for x in xs}

    out_png, out_json = tmp_path / "b.png", tmp_path / "b.json"
    assert runner.run(args("--quick", "--json", str(out_json))) == 0
    assert log == ["pbft_slips_per_s", "share_p50_ms", "consortium_items_per_s", "devnet released",
                   "storage_p50_ms", "gas_per_item"]
    log.clear()
    assert runner.run(args("--quick", "--plot", str(out_png), "--json", str(out_json))) == 0
    assert log == ["pbft_slips_per_s", "share_p50_ms", "consortium_items_per_s", "curve", "devnet released",
                   "storage_p50_ms", "gas_per_item"]
    assert json.loads(out_json.read_text())["curves"]["fake_throughput"]["status"] == "measured"


def test_kill_devnet_kills_service_process_groups_and_reaps_them(tmp_path):
    from types import SimpleNamespace

    from mbds_py.bench.context import kill_devnet

    procs = {n: subprocess.Popen([sys.executable, "-c", "import signal, time; "
                                  "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"],
                                 start_new_session=True) for n in ("replica-0", "replica-1", "proxy")}
    devnet = SimpleNamespace(load_services=lambda: {n: SimpleNamespace(pid=p.pid) for n, p in procs.items()},
                             load_state=lambda: {})
    kill_devnet(devnet, ("replica-0", "replica-1"))
    assert not alive(procs["replica-0"].pid) and not alive(procs["replica-1"].pid)
    assert alive(procs["proxy"].pid)
    kill_devnet(devnet)
    assert not alive(procs["proxy"].pid)


def test_markdown_replaces_only_the_marked_section_of_an_existing_page(isolated, tmp_path):
    register_fake_gas()
    page = tmp_path / "benchmarks.md"
    page.write_text(f"# Benchmarks\n\nprose before\n\n{runner.MD_BEGIN}\nold table\n{runner.MD_END}\n\nprose after\n")
    assert runner.run(args("--quick", "--markdown", str(page))) == 0
    text = page.read_text()
    assert text.startswith("# Benchmarks\n\nprose before\n\n" + runner.MD_BEGIN + "\nRun: ")
    assert text.endswith(runner.MD_END + "\n\nprose after\n")
    assert "old table" not in text and "| `gas_per_slip` | 705.0 gas/slip |" in text
    plain = tmp_path / "new.md"
    assert runner.run(args("--quick", "--markdown", str(plain))) == 0
    assert plain.read_text().startswith("Run: ") and runner.MD_BEGIN not in plain.read_text()


# --- --compare ---------------------------------------------------------------------------------------

BAD_REPORT_HINT = "give a report written by `mbds bench --json FILE`"


def entry(median, unit, target=None, *, baseline=None, status=None):
    return {"median": median, "unit": unit, "target": target, "baseline": baseline,
            "status": status or ("measured" if median is not None else "not measured")}


def report_file(path, mode, started_at, measurements):
    path.write_text(json.dumps({"schema": runner.SCHEMA, "mode": mode, "started_at": started_at,
                                "measurements": {k: {"key": k, **e} for k, e in measurements.items()}}))
    return path


def cells(text):
    """The comparison's lines, each table row split into its cells (columns are 2+ spaces apart)."""
    import re

    return [re.split(r"\s{2,}", line) for line in text.rstrip("\n").splitlines()]


def test_compare_two_reports_gives_each_key_its_ratio_and_direction(tmp_path, capsys):
    old = report_file(tmp_path / "old.json", "full", "2026-12-01T10:00:00+00:00", {
        "pbft_slips_per_s": entry(100.0, "slips/s", ">=1000"),
        "gas_per_slip": entry(700.0, "gas/slip", "<=600", baseline="naive_gas_per_slip"),
        "naive_gas_per_slip": entry(46_000.0, "gas/slip"),
        "consortium_items_per_s": entry(10.0, "items/s"),
        "storage_p50_ms": entry(5.0, "ms", "<=20"),
        "gas_per_item": entry(None, "gas/item")})
    new = report_file(tmp_path / "new.json", "full", "2026-12-05T10:00:00+00:00", {
        "pbft_slips_per_s": entry(80.0, "slips/s", ">=1000"),
        "gas_per_slip": entry(650.0, "gas/slip", "<=600", baseline="naive_gas_per_slip"),
        "naive_gas_per_slip": entry(46_100.0, "gas/slip"),
        "consortium_items_per_s": entry(12.0, "items/s"),
        "storage_p50_ms": entry(None, "ms", "<=20", status="failed"),
        "gas_per_item": entry(None, "gas/item"),
        "share_p50_ms": entry(30.0, "ms", "<=40")})
    assert runner.run(args("--compare", str(old), "--against", str(new))) == 0
    out = capsys.readouterr()
    assert out.err == ""
    assert cells(out.out) == [
        [f"compared with {old} (full run of 2026-12-01T10:00:00+00:00): {new} (full run of 2026-12-05T10:00:00+00:00)"],
        ["key", "old", "new", "new/old", "change", "better when"],
        ["pbft_slips_per_s", "100.0 slips/s", "80.00 slips/s", "×0.8", "WORSE", "higher"],
        ["gas_per_slip", "700.0 gas/slip", "650.0 gas/slip", "×0.929", "better", "lower"],
        ["naive_gas_per_slip", "46,000 gas/slip", "46,100 gas/slip", "×1", "unchanged", "lower"],  # gas_per_slip's
        ["consortium_items_per_s", "10.00 items/s", "12.00 items/s", "×1.2", "better", "higher"],  # a rate, no target
        ["storage_p50_ms", "5.00 ms", "—", "—", "— (NEW: failed)", "lower"],
        ["share_p50_ms", "—", "30.00 ms", "—", "— (not in OLD)", "lower"],
        ["2 better, 1 worse (pbft_slips_per_s), 1 unchanged (within ±5 %), 2 not compared"]]


def test_compare_tolerance_and_only_narrow_the_verdicts(tmp_path, capsys):
    old = report_file(tmp_path / "old.json", "full", "t0", {"gas_per_slip": entry(700.0, "gas/slip", "<=600"),
                                                            "storage_p50_ms": entry(5.0, "ms", "<=20")})
    new = report_file(tmp_path / "new.json", "quick", "t1", {"gas_per_slip": entry(750.0, "gas/slip", "<=600"),
                                                             "storage_p50_ms": entry(6.0, "ms", "<=20")})
    assert runner.run(args("--compare", str(old), "--against", str(new), "--tolerance", "10",
                           "--only", "gas_per_slip")) == 0
    assert cells(capsys.readouterr().out) == [
        [f"compared with {old} (full run of t0): {new} (quick run of t1)"],
        ["note: a full run against a quick run: sizes and repetitions differ, so the ratios are rough"],
        ["key", "old", "new", "new/old", "change", "better when"],
        ["gas_per_slip", "700.0 gas/slip", "750.0 gas/slip", "×1.07", "unchanged", "lower"],
        ["0 better, 0 worse, 1 unchanged (within ±10 %), 0 not compared"]]


def test_compare_after_a_run_compares_the_runs_figures_and_leaves_out_keys_it_skipped(isolated, tmp_path, capsys):
    register_fake_gas()
    measurement("storage_p50_ms", estimate_s=(0, 0))(lambda ctx: [1.0])
    old = report_file(tmp_path / "old.json", "quick", "t0", {
        "gas_per_slip": entry(800.0, "gas/slip", "<=600", baseline="naive_gas_per_slip"),
        "naive_gas_per_slip": entry(46_000.0, "gas/slip"),
        "storage_p50_ms": entry(2.0, "ms", "<=20")})
    assert runner.run(args("--quick", "--only", "gas_per_slip", "--compare", str(old))) == 0
    out = cells(capsys.readouterr().out.split("\n\n", 1)[1])
    assert out[0][0].startswith(f"compared with {old} (quick run of t0): this run (quick run of ")
    assert out[1:] == [["key", "old", "new", "new/old", "change", "better when"],
                       ["gas_per_slip", "800.0 gas/slip", "705.0 gas/slip", "×0.881", "better", "lower"],
                       ["naive_gas_per_slip", "46,000 gas/slip", "46,000 gas/slip", "×1", "unchanged", "lower"],
                       ["1 better, 0 worse, 1 unchanged (within ±5 %), 0 not compared"]]


@pytest.mark.parametrize("content,problem", [
    (None, "no such file"),
    ("{not json", "not JSON (Expecting property name enclosed in double quotes at line 1 column 2)"),
    ('{"name": "mbds", "version": "0.1.0"}', "not a `mbds bench --json` report (no \"schema\" field, "
                                             "expected 'mbds-bench/1')"),
    ('[1, 2]', "not a `mbds bench --json` report (no \"schema\" field, expected 'mbds-bench/1')"),
    ('{"schema": "mbds-bench/2", "measurements": {}}', "not a `mbds bench --json` report (schema 'mbds-bench/2', "
                                                       "expected 'mbds-bench/1')"),
    ('{"schema": "mbds-bench/1", "measurements": {"gas_per_slip": {"median": "fast"}}}',
     "a mbds-bench/1 report whose \"measurements\" are not an object of keys each with a numeric or null "
     "\"median\""),
    ("folder", "is a folder"),
], ids=["missing", "malformed", "package-json", "list", "other-schema", "bad-median", "folder"])
def test_a_bad_old_report_is_one_line_exit_2_and_nothing_runs(isolated, tmp_path, capsys, content, problem):
    calls = []
    measurement("storage_p50_ms", estimate_s=(0, 0))(lambda ctx: calls.append(1) or [1.0])
    path = tmp_path / "old.json"
    if content == "folder":
        path.mkdir()
    elif content is not None:
        path.write_text(content)
    assert runner.run(args("--compare", str(path))) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err == f"mbds bench: --compare {path}: {problem}; {BAD_REPORT_HINT}\n"
    assert calls == []


def test_a_bad_new_report_names_against(tmp_path, capsys):
    old = report_file(tmp_path / "old.json", "full", "t0", {})
    assert runner.run(args("--compare", str(old), "--against", str(tmp_path / "nope.json"))) == 2
    assert capsys.readouterr().err == f"mbds bench: --against {tmp_path / 'nope.json'}: no such file; {BAD_REPORT_HINT}\n"


@pytest.mark.parametrize("argv,problem", [
    (["--against", "new.json"], "--against NEW.json needs --compare OLD.json (the report to compare it with)"),
    (["--tolerance", "10"], "--tolerance applies to a comparison: add --compare OLD.json, or drop --tolerance"),
    (["--compare", "old.json", "--against", "new.json", "--quick", "--json", "x.json"],
     "--against compares two reports without running anything; drop --quick, --json "
     "(or drop --against to run and compare the run with --compare)"),
])
def test_against_misused_is_one_line_exit_2(capsys, argv, problem):
    assert runner.run(args(*argv)) == 2  # refused before any file is read
    assert capsys.readouterr().err == f"mbds bench: {problem}\n"


def test_only_with_a_key_neither_report_has_exits_2(tmp_path, capsys):
    old = report_file(tmp_path / "old.json", "full", "t0", {"gas_per_slip": entry(1.0, "gas/slip")})
    assert runner.run(args("--compare", str(old), "--against", str(old), "--only", "gas_per_slipp")) == 2
    assert capsys.readouterr().err == ("mbds bench: unknown key(s) for --only: gas_per_slipp; the two reports have: "
                                       "gas_per_slip\n")


def test_mbds_bench_compare_through_the_cli_without_a_traceback(tmp_path, capsys):
    from mbds_py import cli

    missing = tmp_path / "old.json"
    assert cli.main(["bench", "--compare", str(missing)]) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err == f"mbds bench: --compare {missing}: no such file; {BAD_REPORT_HINT}\n"
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", "--compare", "a.json", "--tolerance", "lots"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == ("mbds bench: error: argument --tolerance: --tolerance 'lots': "
                                                        "give a percentage such as 5")


def test_direction_comes_from_the_target_then_the_key_it_is_the_baseline_of_then_the_unit():
    from mbds_py.bench.compare import HIGHER, LOWER, direction

    report = {"measurements": {"a_per_s": entry(1.0, "items/s", ">=10", baseline="a_naive"),
                               "a_naive": entry(1.0, "ms"),  # a unit that alone would say "lower"
                               "cost": entry(1.0, "gas/item"), "rate": entry(1.0, "records/s"),
                               "lat": entry(1.0, "ms", "<=5")}}
    assert [direction(k, report) for k in ("a_per_s", "a_naive", "cost", "rate", "lat")] == \
        [HIGHER, HIGHER, LOWER, HIGHER, LOWER]
