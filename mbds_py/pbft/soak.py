"""Soak the PBFT simulation: run many seeded scenarios in parallel, report the failing seeds.

    python -m mbds_py.pbft.soak --start 10000 --count 20000 [--jobs 2]
    make soak SEEDS=20000 START=10000

Each seed runs :func:`mbds_py.pbft.sim.random_scenario` and
:meth:`~mbds_py.pbft.sim.SimResult.check`.  Progress goes to stderr; the
failing seeds, their fault families and errors go to stdout, and the exit
status is 1 if any seed failed.  Replay one with::

    python -c "from mbds_py.pbft.sim import random_scenario, run; run(random_scenario(SEED)).check()"
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable, Iterator, TextIO

from .errors import SimulationError
from .sim import FAMILIES, random_scenario, run


@dataclass(frozen=True)
class SoakFailure:
    """One failing seed: its fault family, the error class and message."""

    seed: int
    family: str
    error: str
    detail: str


def check_seed(seed: int) -> SoakFailure | None:
    """Run and check one seeded scenario; a crash of the simulation is a failure too."""
    try:
        run(random_scenario(seed)).check()
    except SimulationError as exc:
        return SoakFailure(seed, family_of(seed), type(exc).__name__, str(exc))
    except Exception as exc:  # noqa: BLE001 - a replica crash is a finding, not a soak abort
        return SoakFailure(seed, family_of(seed), type(exc).__name__, repr(exc))
    return None


def family_of(seed: int) -> str:
    return FAMILIES[seed % len(FAMILIES)]


def _check_range(bounds: tuple[int, int]) -> tuple[int, list[SoakFailure]]:
    start, stop = bounds
    failures = [f for f in map(check_seed, range(start, stop)) if f is not None]
    return stop - start, failures


def soak(
    start: int,
    count: int,
    *,
    jobs: int = 0,
    batch: int = 25,
    check: Callable[[tuple[int, int]], tuple[int, list[SoakFailure]]] = _check_range,
) -> Iterator[tuple[int, list[SoakFailure]]]:
    """Yield ``(scenarios done, new failures)`` as batches of seeds finish.

    ``jobs`` worker processes (0: one per core; 1: in this process).
    """
    stop = start + count
    batches = [(s, min(s + batch, stop)) for s in range(start, stop, batch)]
    if jobs == 1:
        yield from map(check, batches)
        return
    with multiprocessing.Pool(jobs or os.cpu_count() or 1) as pool:
        yield from pool.imap_unordered(check, batches)


def main(argv: list[str] | None = None, *, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    parser = argparse.ArgumentParser(prog="python -m mbds_py.pbft.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--start", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--count", type=int, default=10_000, help="number of seeds (default 10,000)")
    parser.add_argument("--jobs", type=int, default=0, help="worker processes (default: one per core)")
    args = parser.parse_args(argv)
    if args.start < 0 or args.count < 1 or args.jobs < 0:
        parser.error("--start must be >= 0, --count >= 1, --jobs >= 0")
    began = time.monotonic()
    done, failures = 0, []
    step = max(args.count // 20, 1)
    reported = 0
    for n, new in soak(args.start, args.count, jobs=args.jobs):
        done += n
        for failure in new:
            failures.append(failure)
            print(f"FAIL seed {failure.seed} ({failure.family}): {failure.error}", file=err, flush=True)
        if done - reported >= step or done == args.count:
            reported = done
            print(
                f"soak: {done}/{args.count} scenarios, {len(failures)} failing, {time.monotonic() - began:.0f} s",
                file=err,
                flush=True,
            )
    seeds = f"seeds {args.start}..{args.start + args.count - 1}"
    if not failures:
        print(f"soak: all {args.count} scenarios safe and live ({seeds})", file=out)
        return 0
    print(f"soak: {len(failures)} of {args.count} scenarios failed ({seeds}):", file=out)
    for failure in sorted(failures, key=lambda f: f.seed):
        print(f"{failure.seed}\t{failure.family}\t{failure.error}\t{failure.detail}", file=out)
    return 1


if __name__ == "__main__":
    sys.exit(main())
