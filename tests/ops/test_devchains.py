"""Every devchain: the whole demo — bring-up, the hybrid journey, the policy script with grants,
revocations, threshold proxies, break-glass access and abnormal-access detection — on Ganache and on
Anvil mining a block every second (as real chains do), not only on Anvil's instant automine."""

from __future__ import annotations

import pytest

from mbds_py.demo import run_demo
from mbds_py.devnet import Devnet, is_running
from tests.helpers import devchain_spec

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("devchains")]


@pytest.mark.parametrize("engine, block_time", [
    pytest.param("ganache", 0, marks=pytest.mark.ganache, id="ganache"),
    pytest.param("anvil", 1, id="anvil-block-time-1s"),
])
def test_the_whole_demo_runs_on_the_devchain(tmp_path, engine, block_time):
    spec = devchain_spec(tmp_path, engine, block_time)
    spec_path, state = spec.path, tmp_path / "devnet"
    seen: dict[str, tuple[int, int | None]] = {}
    lines: list[str] = []

    def out(line: str) -> None:
        lines.append(line)
        if line.startswith("==> "):
            devnet = Devnet(spec)
            seen.update({n: (c.pid, c.started) for n, c in devnet.load_state().items() if c.pid})
            seen.update({n: (s.pid, s.started) for n, s in devnet.load_services().items()})

    steps = run_demo(spec_path=str(spec_path), state_dir=str(state), out=out)
    failed = [(s.name, s.actual) for s in steps if not s.ok]
    assert failed == [], "\n".join(lines[-40:])
    names = [s.name for s in steps]
    assert "abnormal access" in names and "emergency access" in " ".join(names)  # the sharing story ran
    assert len(seen) >= len(spec.chains) + 12 + 2 + 3
    assert [n for n, (pid, started) in seen.items() if is_running(pid, started)] == []
