"""The simulated clock: a deterministic discrete-event engine that drives workloads, the
memory users' timers (GPU duty cycles, balloon host commands), the kernel's daemons and
timers (kswapd, kcompactd, the proactive-compaction timeout, the flusher: all run by
``Machine.advance``), sampling and snapshots.

Events are callbacks at nanosecond times, kept in a heap ordered by (time, sequence number):
two events at one time run in the order they were scheduled, so the same scenario and seed
give the same run on any machine. Workloads hand the machine batches of requests through the
memory users' batch APIs, which keeps the allocator's compiled speed.

A workload is a plugin in one file that registers itself::

    @register_workload("fragmenter")
    class Fragmenter(Workload):
        def __init__(self, sim: Simulation, *, fill: float = 0.9) -> None: ...
        def start(self) -> None:
            self.sim.every(S, self.tick)

SIMPLIFICATION: the machine's timers fire when the clock moves to the next event
(``Machine.advance``); a gap without events longer than kcompactd's 500 ms timeout counts as
one timeout, not several.
"""

from __future__ import annotations

import functools
import heapq
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from fragsim.drivers.base import MemoryUser
from fragsim.errors import ConfigError
from fragsim.mm.machine import Machine

__all__ = [
    "NS",
    "US",
    "MS",
    "S",
    "MIN",
    "H",
    "D",
    "WORKLOADS",
    "Progress",
    "Simulation",
    "Workload",
    "register_workload",
    "workload_class",
]

NS = 1
US = 1000 * NS
MS = 1000 * US
S = 1000 * MS
MIN = 60 * S
H = 60 * MIN
D = 24 * H

#: name -> workload class, filled by @register_workload
WORKLOADS: dict[str, type[Workload]] = {}

W = TypeVar("W", bound="type[Workload]")


def register_workload(name: str) -> Callable[[W], W]:
    """Class decorator: make the workload available by ``name`` in scenario files."""

    def deco(cls: W) -> W:
        if name in WORKLOADS and WORKLOADS[name] is not cls:
            raise ConfigError(f"workload {name!r} registered twice")
        WORKLOADS[name] = cls
        cls.name = name
        return cls

    return deco


def workload_class(name: str) -> type[Workload]:
    import_builtin_workloads()
    try:
        return WORKLOADS[name]
    except KeyError:
        known = ", ".join(sorted(WORKLOADS))
        raise ConfigError(f"unknown workload {name!r}; known: {known}") from None


def import_builtin_workloads() -> None:
    """Import every module of fragsim.workloads (each registers its workloads)."""
    import importlib
    import pkgutil

    import fragsim.workloads as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"fragsim.workloads.{mod.name}")


class Workload:
    """A source of requests on the simulated clock. ``__init__(sim, **options)`` takes the
    scenario file's options as keyword arguments (validated against its signature);
    ``start()`` schedules its first events; ``finish()`` runs at the end of the run."""

    name: str = "workload"

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim

    def own_rng(self) -> np.random.Generator:
        """The workload's generator: ``sim.rng(name)``, or ``name#k`` for the k-th (k > 0)
        workload of the same class in the scenario. Call it once the workloads are added."""
        same = [w for w in self.sim.workloads if type(w) is type(self)]
        k = same.index(self) if self in same else 0
        return self.sim.rng(self.name if k == 0 else f"{self.name}#{k}")

    def start(self) -> None:
        raise NotImplementedError(f"workload {self.name} has no start()")

    def finish(self) -> None:
        return None

    def summary(self) -> dict[str, Any]:
        """What the workload did, for the run's summary (counts of its own)."""
        return {}

    def stages(self) -> dict[int, str]:
        """Named stages of the workload: simulated time (ns from the run's start) -> name.
        The runner takes a snapshot at each, named after it (``s03_compacted``)."""
        return {}


@dataclass
class Progress:
    """What the progress callback gets: simulated time now and at the end, allocator events
    so far, wall-clock seconds so far."""

    now_ns: int
    until_ns: int
    events: int
    wall_s: float

    @property
    def events_per_s(self) -> float:
        return self.events / self.wall_s if self.wall_s > 0 else 0.0


@dataclass(order=True)
class _Event:
    t: int
    seq: int
    fn: Callable[[], None] = field(compare=False)


class Simulation:
    """One machine, its memory users and workloads, on a simulated clock."""

    def __init__(self, machine: Machine, *, seed: int = 0, batch: int = 256) -> None:
        if batch < 1:
            raise ConfigError(f"simulation batch: {batch} must be >= 1")
        self.machine = machine
        self.seed = seed
        self.batch = batch
        self.drivers: dict[str, MemoryUser] = {}
        self.workloads: list[Workload] = []
        self._heap: list[_Event] = []
        self._seq = 0
        self.stopped = False

    # ------------------------------------------------------------------ the clock
    @property
    def now(self) -> int:
        """Simulated time, ns."""
        return self.machine.now

    def at(self, t_ns: int, fn: Callable[[], None]) -> None:
        """Run ``fn`` at simulated time ``t_ns`` (not before now)."""
        t = max(int(t_ns), self.now)
        heapq.heappush(self._heap, _Event(t, self._seq, fn))
        self._seq += 1

    def after(self, delay_ns: int, fn: Callable[[], None]) -> None:
        """Run ``fn`` ``delay_ns`` from now."""
        if delay_ns < 0:
            raise ConfigError(f"after: negative delay {delay_ns} ns")
        self.at(self.now + int(delay_ns), fn)

    def every(self, period_ns: int, fn: Callable[[], None], *, start_ns: int | None = None) -> None:
        """Run ``fn`` every ``period_ns``, first at ``start_ns`` (default: one period from now)."""
        if period_ns <= 0:
            raise ConfigError(f"every: period {period_ns} ns must be > 0")
        first = self.now + period_ns if start_ns is None else start_ns

        def tick() -> None:
            fn()
            self.after(period_ns, tick)

        self.at(first, tick)

    def rng(self, salt: str) -> np.random.Generator:
        """A generator of its own for ``salt`` (a workload's or driver's name), seeded by the
        simulation's seed: adding a workload does not change another one's draws."""
        return np.random.default_rng([self.seed, zlib.crc32(salt.encode())])

    # ------------------------------------------------------------------ memory users
    def add_driver(self, name: str, driver: MemoryUser) -> None:
        if name in self.drivers:
            raise ConfigError(f"driver instance {name!r} defined twice")
        self.drivers[name] = driver

    def driver(self, name: str) -> MemoryUser:
        try:
            return self.drivers[name]
        except KeyError:
            known = ", ".join(self.drivers) or "none"
            raise ConfigError(f"no driver instance {name!r} (defined: {known})") from None

    def drivers_of(self, cls: type[MemoryUser]) -> list[MemoryUser]:
        """The memory users that are instances of ``cls``, in definition order."""
        return [d for d in self.drivers.values() if isinstance(d, cls)]

    def add_workload(self, w: Workload) -> None:
        self.workloads.append(w)

    # ------------------------------------------------------------------ running
    def run(
        self,
        until_ns: int,
        *,
        sample_every: int | None = None,
        on_sample: Callable[[Simulation], None] | None = None,
        snapshot_at: Iterable[int] = (),
        on_snapshot: Callable[[Simulation, int], None] | None = None,
        progress: Callable[[Progress], None] | None = None,
        progress_every_s: float = 0.25,
    ) -> Progress:
        """Start the workloads and run every event up to ``until_ns``. Samples are taken at
        0 and every ``sample_every``, snapshots at each time of ``snapshot_at`` (in ns; the
        end is ``until_ns``), both after the events of that time. Returns the final
        progress (events: rows the machine processed)."""
        m = self.machine
        t0 = time.perf_counter()
        ev0 = m.nr_events
        for w in self.workloads:
            w.start()
        if sample_every is not None and on_sample is not None:
            if sample_every <= 0:
                raise ConfigError(f"sample_every: {sample_every} ns must be > 0")
            self.every(sample_every, lambda: on_sample(self), start_ns=self.now)
        if on_snapshot is not None:
            snap = on_snapshot
            for t in sorted(set(int(x) for x in snapshot_at)):
                if t <= until_ns:
                    self.at(t, functools.partial(snap, self, t))
        last_report = t0
        heap = self._heap
        while heap and heap[0].t <= until_ns and not self.stopped:
            e = heapq.heappop(heap)
            if e.t > m.now:
                m.advance(e.t)
            e.fn()
            if progress is not None:
                wall = time.perf_counter()
                if wall - last_report >= progress_every_s:
                    last_report = wall
                    progress(Progress(m.now, until_ns, m.nr_events - ev0, wall - t0))
        if not self.stopped and m.now < until_ns:
            m.advance(until_ns)
        for w in self.workloads:
            w.finish()
        done = Progress(m.now, until_ns, m.nr_events - ev0, time.perf_counter() - t0)
        if progress is not None:
            progress(done)
        return done
