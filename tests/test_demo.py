"""`mbds demo` runs end to end on the embedded defaults and leaves no process behind."""

from __future__ import annotations

import json

import pytest

from mbds_py.demo import run_demo

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("demo")]


def test_demo_runs_every_step_and_writes_json(tmp_path):
    out_file = tmp_path / "demo.json"
    lines: list[str] = []
    steps = run_demo(json_file=str(out_file), out=lines.append)
    assert steps and all(s.ok for s in steps), [(s.name, s.actual) for s in steps if not s.ok]
    doc = json.loads(out_file.read_text())
    assert [d["name"] for d in doc] == [s.name for s in steps]
    assert all(set(d) >= {"name", "expected", "actual", "ok", "seconds"} for d in doc)
    assert doc[-1]["name"] == "devnet down" and doc[-1]["ok"]
    assert any("participant" in line for line in lines)  # the participants table was printed
