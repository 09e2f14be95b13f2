"""What a measuring function gets: the run's mode, repetition helpers, and things that are torn down.

Everything a measurement starts — a devnet chain, replica or proxy processes,
temporary folders — is registered here and released by :meth:`BenchContext.close`,
which the runner calls in a ``finally``: no process outlives the run.

Expensive things several measurements share (the whole devnet :meth:`network`, a
replica group) are *resources*: made on first use by :meth:`BenchContext.resource`,
and released early by :meth:`BenchContext.release` — the runner does that after the
last selected measurement that declares it in ``uses`` — so that its idle processes
do not load the machine under the measurements that follow.
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

NETWORK = "devnet-network"
"""Resource name of the whole devnet :class:`~mbds_py.network.Network` (see :meth:`BenchContext.network`)."""


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


def kill_devnet(devnet: Any, names: Any = None) -> None:
    """SIGKILL the process groups of a throw-away devnet's services (``names``, or all) and chains, and reap them.

    The benchmarks' devnets live in temporary folders, so nothing needs a graceful
    shutdown; the devnet's own ``down()`` (SIGTERM, then up to 5 s for stragglers)
    afterwards finds nothing left running and only clears its state.
    """
    pids = [s.pid for n, s in devnet.load_services().items() if names is None or n in names]
    if names is None:
        pids += [c.pid for c in devnet.load_state().values() if not c.external and c.pid]
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:  # not our child (or already reaped)
            pass


class BenchContext:
    """Mode, repetitions, progress output and the resources of one benchmark run."""

    def __init__(self, *, quick: bool, out: TextIO | None = None):
        self.quick = quick
        self.reps = 3 if quick else 7
        """Default timed repetitions after the warm-up."""
        self.out = out if out is not None else sys.stderr
        self._cleanups: list[tuple[str | None, Callable[[], None]]] = []
        """(owning resource or None, cleanup), oldest first."""
        self._resources: dict[str, Any] = {}
        self._failed: dict[str, BaseException] = {}
        self._building: list[str] = []
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
        """Run ``fn`` when the run ends (last registered, first run), or when the resource being made is released."""
        self._cleanups.append((self._building[-1] if self._building else None, fn))

    def track(self, proc: subprocess.Popen[Any]) -> subprocess.Popen[Any]:
        """Kill ``proc``'s process group at the end (start it with ``start_new_session=True``)."""
        self.on_close(lambda: kill_process_group(proc))
        return proc

    def resource(self, name: str, factory: Callable[[], T]) -> T:
        """One shared instance per run of ``name`` (e.g. a deployed contract set), made on first use.

        Cleanups registered (:meth:`on_close`, :meth:`track`) while ``factory`` runs belong to
        the resource: :meth:`release` runs them.  If ``factory`` fails, what it started is
        released at once and later users get the same error instead of a second attempt.
        """
        if name in self._failed:
            exc = self._failed[name]
            raise RuntimeError(f"shared resource {name!r} could not be made earlier in this run: "
                               f"{type(exc).__name__}: {exc}") from exc
        if name not in self._resources:
            self._building.append(name)
            try:
                self._resources[name] = factory()
            except BaseException as exc:
                self._failed[name] = exc
                self._building.pop()
                self._run_cleanups(name)
                raise
            self._building.pop()
        return self._resources[name]

    def has(self, name: str) -> bool:
        """Whether the resource ``name`` is made and not released."""
        return name in self._resources

    def release(self, name: str) -> None:
        """Tear down the resource ``name`` now (its cleanups, newest first); a later use makes it anew."""
        self._resources.pop(name, None)
        self._failed.pop(name, None)
        self._run_cleanups(name)

    def _run_cleanups(self, owner: str | None) -> None:
        """Pop and run the cleanups of ``owner`` (all of them for None), newest first; raise the first error."""
        errors: list[BaseException] = []
        for i in range(len(self._cleanups) - 1, -1, -1):
            if owner is not None and (i >= len(self._cleanups) or self._cleanups[i][0] != owner):
                continue
            _, fn = self._cleanups.pop(i)
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001 - keep tearing down
                errors.append(exc)
        if errors:
            raise errors[0]

    @property
    def tmpdir(self) -> Path:
        """A folder removed at the end of the run."""
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="mbds-bench-")
            self._cleanups.insert(0, (None, self._tmp.cleanup))  # the run's, even if first used by a resource
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

    def network(self) -> Any:
        """The whole devnet, as ``mbds demo`` runs it, brought up once per run and shared.

        A :class:`~mbds_py.network.Network`: 3 private chains x 4 PBFT replica processes
        (blocks of up to 32 slips, 0.5 s batching), the DPoS consortium nodes, 2 storage
        nodes.  Keystores use a small scrypt cost (key loading is not measured).  Users
        declare ``uses=(NETWORK,)`` so the runner stops it after the last of them.
        """

        def bring_up() -> Any:
            import secrets

            from ..network import Network, PrivateChainSettings
            from ..spec import load_spec

            state = Path(tempfile.mkdtemp(prefix="devnet-", dir=self.tmpdir))  # fresh if made again after a release
            net = Network(load_spec(None, state_dir=state), secrets.token_urlsafe(16),
                          settings=PrivateChainSettings(max_slips=32, max_wait=0.5), scrypt_n=2**10)
            self.on_close(net.stop)  # registered first: a half-started network is torn down too
            self.on_close(lambda: kill_devnet(net.devnet))  # runs before net.stop: no 5 s SIGTERM grace
            t0 = time.perf_counter()
            self.progress("devnet: 3 private chains x 4 PBFT replicas, DPoS consortium nodes, storage "
                          "(shared by the sharing and consortium measurements)")
            net.bring_up()
            self.progress(f"devnet up in {time.perf_counter() - t0:.0f}s")
            return net

        return self.resource(NETWORK, bring_up)

    def close(self) -> None:
        """Release everything, newest first; every cleanup runs even if one fails."""
        if self._closed:
            return
        self._closed = True
        self._resources.clear()
        self._run_cleanups(None)

    def __enter__(self) -> BenchContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
