"""What a measuring function gets: the run's mode, repetition helpers, and things that are torn down.

Everything a measurement starts — a devnet chain, replica or proxy processes,
temporary folders — is registered here and released by :meth:`BenchContext.close`,
which the runner calls in a ``finally``: no process outlives the run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO, TypeVar

T = TypeVar("T")

BENCH_CHAIN_ID = 43_299
"""Chain ID of the throw-away Anvil the benchmarks share (distinct from the test suite's)."""


def kill_process_group(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """SIGKILL the process group ``proc`` leads (it was started with ``start_new_session=True``)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not ignorable
        pass


class BenchContext:
    """Mode, repetitions, progress output and the resources of one benchmark run."""

    def __init__(self, *, quick: bool, out: TextIO | None = None):
        self.quick = quick
        self.reps = 3 if quick else 7
        """Default timed repetitions after the warm-up."""
        self.out = out if out is not None else sys.stderr
        self._cleanups: list[Callable[[], None]] = []
        self._resources: dict[str, Any] = {}
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._closed = False

    # -- repetitions ------------------------------------------------------------------------

    def repeat(self, fn: Callable[[], float], *, reps: int | None = None, warmup: int = 1) -> list[float]:
        """Call ``fn`` ``warmup`` times (discarded), then ``reps`` times; its return values are the samples."""
        for _ in range(warmup):
            fn()
        return [float(fn()) for _ in range(reps if reps is not None else self.reps)]

    def time_ms(self, fn: Callable[[], Any], *, reps: int | None = None, warmup: int = 1,
                per: int = 1) -> list[float]:
        """Wall time of ``fn`` in ms (divided by ``per`` items), after ``warmup`` untimed calls."""

        def timed() -> float:
            t0 = time.perf_counter()
            fn()
            return (time.perf_counter() - t0) * 1000 / per

        return self.repeat(timed, reps=reps, warmup=warmup)

    def progress(self, message: str) -> None:
        """One line of progress on stderr (indented under the measurement's header)."""
        print(f"      {message}", file=self.out, flush=True)

    # -- resources --------------------------------------------------------------------------

    def on_close(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` when the run ends (last registered, first run)."""
        self._cleanups.append(fn)

    def track(self, proc: subprocess.Popen[Any]) -> subprocess.Popen[Any]:
        """Kill ``proc``'s process group at the end (start it with ``start_new_session=True``)."""
        self.on_close(lambda: kill_process_group(proc))
        return proc

    def resource(self, name: str, factory: Callable[[], T]) -> T:
        """One shared instance per run of ``name`` (e.g. a deployed contract set), made on first use."""
        if name not in self._resources:
            self._resources[name] = factory()
        return self._resources[name]

    @property
    def tmpdir(self) -> Path:
        """A folder removed at the end of the run."""
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="mbds-bench-")
            self.on_close(self._tmp.cleanup)
        return Path(self._tmp.name)

    def chain_url(self) -> str:
        """RPC URL of a throw-away Anvil started on first use and killed at the end."""

        def launch() -> str:
            from ..devnet import launch_chain

            proc, url = launch_chain("anvil", BENCH_CHAIN_ID)
            self.track(proc)
            return url

        return self.resource("anvil", launch)

    def chain(self) -> Any:
        """A :class:`~mbds_py.chain.client.ChainClient` on :meth:`chain_url`."""
        from ..chain.client import ChainClient

        return self.resource("chain-client", lambda: ChainClient(self.chain_url(), name="bench-anvil"))

    def close(self) -> None:
        """Release everything, newest first; every cleanup runs even if one fails."""
        if self._closed:
            return
        self._closed = True
        errors: list[BaseException] = []
        while self._cleanups:
            try:
                self._cleanups.pop()()
            except BaseException as exc:  # noqa: BLE001 - keep tearing down
                errors.append(exc)
        self._resources.clear()
        if errors:
            raise errors[0]

    def __enter__(self) -> BenchContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
