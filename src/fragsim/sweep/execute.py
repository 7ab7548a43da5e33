"""Running a sweep's runs in parallel: a local process pool or a Dask distributed cluster.

The client (the ``fragsim sweep`` process) plans the runs, skips those the results database
already holds (same config hash, seed and fragsim version), and hands the others to the
workers, at most as many at a time as the workers have slots. A worker gets a run's fully
expanded scenario as TOML text (``Scenario.to_toml``: built-in drivers by name, a user's
driver files by absolute path), loads it, checks that its fragsim expands it to the same
config hash, runs it (``run_scenario``) and sends back plain data: summary, samples,
snapshots. Only the client writes the database, one run at a time as they come back, each
in its own transaction (``ResultsDB.record(once=True)``: a run is never recorded twice).

A run that fails (an exception in the run, a worker process that dies, an interrupted run)
is reported and tried again up to ``retries`` times (default once); then it is reported as
failed and the sweep goes on. A local worker that dies breaks Python's process pool: every
run in flight at that moment is charged an attempt and the pool is started again.

Ctrl-C stops the sweep: runs in flight are abandoned (local workers are terminated; a Dask
cluster's tasks are cancelled, a task already running finishes on its worker and is
dropped), everything recorded stays recorded, and running the same command again resumes.

Local workers are started with the ``spawn`` method (a fresh interpreter each, so no state
of the client leaks into a run; numba loads the compiled allocator from its cache). Dask
workers need fragsim importable (the same version) and, for a scenario with a user's driver
file, that file at the same path.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import datetime as dt
import functools
import multiprocessing
import os
import signal
import socket
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

from fragsim.errors import ConfigError
from fragsim.results import ResultsDB, RunRecord, Snapshot
from fragsim.sweep.spec import SweepPlan
from fragsim.sweep.store import recorded_keys, save_plan

__all__ = [
    "DaskCluster",
    "LocalPool",
    "RunTask",
    "SweepOutcome",
    "SweepProgress",
    "default_workers",
    "execute_run",
    "run_sweep",
]


def _version() -> str:
    from fragsim import __version__

    return __version__


def default_workers() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


# ---------------------------------------------------------------------- the worker side
@dataclass(frozen=True, slots=True)
class RunTask:
    """One run handed to a worker: the expanded scenario as TOML and what it must hash to."""

    index: int
    label: str
    seed: int
    toml: str
    config_hash: str
    version: str
    attempt: int = 1


def execute_run(task: RunTask) -> dict[str, Any]:
    """Run ``task`` (on a worker) and return plain data for the client: ``started`` and
    ``finished`` (UTC), ``sim_ns``, ``wall_s``, ``events``, ``summary``, ``samples`` (NumPy
    arrays), ``snapshots`` ([(t_ns, label, {file: text})]) and ``worker`` (host:pid). Raises
    when this worker's fragsim differs from the client's or the run is interrupted."""
    from fragsim.scenario.config import load_scenario
    from fragsim.scenario.runner import run_scenario

    here = _version()
    if here != task.version:
        raise RuntimeError(
            f"worker {socket.gethostname()} has fragsim {here}, the client {task.version}"
        )
    with tempfile.TemporaryDirectory(prefix="fragsim-run-") as d:
        path = Path(d) / "run.toml"
        path.write_text(task.toml, encoding="utf-8")
        sc = load_scenario(path)
    h = sc.config_hash()
    if h != task.config_hash:
        raise RuntimeError(
            f"worker {socket.gethostname()} expands the scenario to config hash {h[:8]}, "
            f"the client to {task.config_hash[:8]} (different drivers or workloads installed?)"
        )
    started = dt.datetime.now(dt.UTC)
    res = run_scenario(sc)
    if res.interrupted:
        raise RuntimeError(f"run interrupted on the worker ({res.interrupted})")
    out = {name: getattr(res, name) for name in _result_fields()}
    out.update(
        started=started,
        finished=dt.datetime.now(dt.UTC),
        worker=f"{socket.gethostname()}:{os.getpid()}",
    )
    return out


@functools.cache
def _result_fields() -> tuple[str, ...]:
    """What a worker sends back of a run: every field of RunResult that a RunRecord also has
    (sim_ns, wall_s, events, summary, samples, snapshots, ...), except the scenario (the
    client has it)."""
    from fragsim.scenario.runner import RunResult

    record = {f.name for f in dataclasses.fields(RunRecord)}
    return tuple(
        f.name for f in dataclasses.fields(RunResult) if f.name in record and f.name != "scenario"
    )


# ---------------------------------------------------------------------- where runs execute
class Backend(Protocol):
    """Where runs execute: ``slots`` runs at a time."""

    description: str

    @property
    def slots(self) -> int: ...

    def submit(self, task: RunTask) -> cf.Future[dict[str, Any]]: ...

    def restart(self) -> None: ...

    def close(self, *, cancel: bool) -> None: ...


class LocalPool:
    """``workers`` processes on this machine (``concurrent.futures.ProcessPoolExecutor``,
    spawned)."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ConfigError(f"--workers: expected at least 1, got {workers}")
        self.workers = workers
        self.description = f"{workers} local worker process{'es' if workers > 1 else ''}"
        self._ex = self._start()

    def _start(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(
            self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_ignore_sigint,
        )

    @property
    def slots(self) -> int:
        return self.workers

    def submit(self, task: RunTask) -> cf.Future[dict[str, Any]]:
        return self._ex.submit(execute_run, task)

    def restart(self) -> None:
        """After a worker died (the pool is broken): a new pool."""
        self._terminate()
        self._ex.shutdown(wait=True, cancel_futures=True)
        self._ex = self._start()

    def _terminate(self) -> None:
        # ProcessPoolExecutor has no public way to stop running workers before Python 3.14
        # (terminate_workers); its _processes maps pid -> Process.
        procs = getattr(self._ex, "_processes", None) or {}
        for p in list(procs.values()):
            if p.is_alive():
                p.terminate()

    def close(self, *, cancel: bool) -> None:
        if cancel:
            self._terminate()
        self._ex.shutdown(wait=True, cancel_futures=cancel)


def _ignore_sigint() -> None:
    """Local workers leave Ctrl-C to the client, which terminates them (a terminal sends
    SIGINT to the whole process group)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class DaskCluster:
    """An existing Dask distributed cluster at ``address`` (``tcp://HOST:PORT``); as many
    runs at a time as its workers have threads (looked up again every few seconds, so
    workers that join later are used)."""

    def __init__(self, address: str, *, timeout: float = 30.0) -> None:
        try:
            import distributed
        except ImportError:
            raise ConfigError(
                f"--scheduler {address}: needs Dask distributed (pip install 'dask[distributed]')"
            ) from None
        try:
            client_cls: Any = distributed.Client  # untyped
            self._client: Any = client_cls(address, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError) as e:
            raise ConfigError(f"--scheduler {address}: cannot connect: {e}") from None
        try:
            self._client.wait_for_workers(1, timeout=timeout)
        except (OSError, TimeoutError):
            self._client.close()
            raise ConfigError(
                f"--scheduler {address}: no worker joined within {timeout:g} s "
                "(start some with: dask worker ADDRESS --nthreads 1)"
            ) from None
        self._ex: Any = self._client.get_executor(pure=False)
        self._slots = 1
        self._checked = 0.0
        self.description = f"Dask cluster {address}"

    @property
    def slots(self) -> int:
        now = time.monotonic()
        if now - self._checked > 5.0:
            self._slots = max(1, sum(self._client.nthreads().values()))
            self._checked = now
        return self._slots

    def submit(self, task: RunTask) -> cf.Future[dict[str, Any]]:
        fut: cf.Future[dict[str, Any]] = self._ex.submit(execute_run, task)
        return fut

    def restart(self) -> None:
        """Nothing to do: the scheduler reschedules the tasks of a worker that died."""

    def close(self, *, cancel: bool) -> None:
        if cancel:
            self._ex.shutdown(wait=False)
        self._client.close()


# ---------------------------------------------------------------------- progress
class SweepProgress:
    """A one-line progress bar over the sweep's runs (done / running / failed, ETA) on a
    terminal, and the sweep's log lines (always written)."""

    def __init__(
        self, name: str, total: int, stream: TextIO | None = None, force: bool = False
    ) -> None:
        self.name = name
        self.total = total
        self.stream = stream or sys.stderr
        self.enabled = force or self.stream.isatty()
        self.t0 = time.monotonic()
        self.done = 0
        self.running = 0
        self.failed = 0
        self._shown = False

    def line(self) -> str:
        """The bar: ``NAME [####------] 12/40 done  2 running  1 failed  ETA 3m10s``."""
        frac = self.done / self.total if self.total else 1.0
        bar = "#" * int(frac * 24)
        return (
            f"{self.name} [{bar:<24}] {self.done}/{self.total} done  {self.running} running  "
            f"{self.failed} failed  ETA {self.eta()}"
        )

    def eta(self) -> str:
        """Time left at the rate runs finished so far (``?`` before the first)."""
        left = self.total - self.done - self.failed
        if left <= 0:
            return "0s"
        if self.done == 0:
            return "?"
        secs = (time.monotonic() - self.t0) / self.done * left
        return _fmt_secs(secs)

    def update(self, *, done: int, running: int, failed: int) -> None:
        self.done, self.running, self.failed = done, running, failed
        if self.enabled:
            self.stream.write("\r\033[K" + self.line())
            self.stream.flush()
            self._shown = True

    def log(self, msg: str) -> None:
        """A line above the bar."""
        if self._shown:
            self.stream.write("\r\033[K")
        self.stream.write(msg + "\n")
        if self._shown:
            self.stream.write(self.line())
        self.stream.flush()

    def close(self) -> None:
        if self._shown:
            self.stream.write("\n")
            self.stream.flush()
            self._shown = False


def _fmt_secs(secs: float) -> str:
    s = int(round(secs))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


# ---------------------------------------------------------------------- the client loop
@dataclass
class SweepOutcome:
    """What a sweep did: runs planned, skipped (already recorded), recorded now (ids),
    retried, failed ((label, seed, error) after the last attempt), and whether Ctrl-C
    stopped it."""

    name: str
    planned: int
    skipped: int = 0
    recorded: list[str] = field(default_factory=list)
    retried: int = 0
    failed: list[tuple[str, int, str]] = field(default_factory=list)
    interrupted: bool = False
    wall_s: float = 0.0
    where: str = ""

    @property
    def not_run(self) -> int:
        return self.planned - self.skipped - len(self.recorded) - len(self.failed)


def _error_text(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    return type(e).__name__ + (f": {msg[0]}" if msg else "")


def run_sweep(
    plan: SweepPlan,
    db: ResultsDB,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: SweepProgress | None = None,
    backend_factory: Callable[[], Backend] | None = None,
) -> SweepOutcome:
    """Run the runs of ``plan`` that ``db`` does not hold yet, on a local pool of
    ``workers`` processes (default: the machine's cores) or on the Dask cluster at
    ``scheduler``, recording each as it comes back; failed runs are tried again up to
    ``plan.spec.retries`` times. Ctrl-C returns with ``interrupted`` set."""
    spec = plan.spec
    version = _version()
    save_plan(db, plan)
    have = recorded_keys(db, version)
    todo = [i for i, r in enumerate(plan.runs) if (r.config_hash, r.seed) not in have]
    out = SweepOutcome(spec.name, len(plan.runs), skipped=len(plan.runs) - len(todo))
    bar = progress or SweepProgress(spec.name, len(plan.runs))
    bar.total = len(todo)
    if not todo:
        return out
    if backend_factory is None:
        if scheduler:
            backend_factory = lambda: DaskCluster(scheduler)  # noqa: E731
        else:
            n = workers or default_workers()
            backend_factory = lambda: LocalPool(n)  # noqa: E731
    t0 = time.monotonic()
    backend = backend_factory()
    out.where = backend.description
    bar.log(
        f"sweep {spec.name}: {len(plan.runs)} runs ({len(plan.settings)} settings x "
        f"{len(spec.seeds)} seeds), {out.skipped} already recorded, {len(todo)} to run on "
        f"{backend.description}"
    )
    queue: deque[RunTask] = deque()
    for i in todo:
        r = plan.runs[i]
        queue.append(
            RunTask(i, r.setting.label, r.seed, r.scenario.to_toml(), r.config_hash, version)
        )
    inflight: dict[cf.Future[dict[str, Any]], tuple[RunTask, int]] = {}
    generation = 0
    cancelled = False
    try:
        while queue or inflight:
            while queue and len(inflight) < backend.slots:
                task = queue.popleft()
                inflight[backend.submit(task)] = (task, generation)
            bar.update(done=len(out.recorded), running=len(inflight), failed=len(out.failed))
            finished, _ = cf.wait(inflight, timeout=0.5, return_when=cf.FIRST_COMPLETED)
            for fut in finished:
                task, gen = inflight.pop(fut)
                try:
                    result = fut.result()
                except BrokenProcessPool:
                    if gen == generation:  # the first to notice starts a new pool
                        generation += 1
                        backend.restart()
                    _failed(out, bar, queue, task, "a worker process died", spec.retries)
                except cf.CancelledError:
                    _failed(out, bar, queue, task, "the run was cancelled", spec.retries)
                except Exception as e:  # noqa: BLE001 - any failure of a run is reported
                    _failed(out, bar, queue, task, _error_text(e), spec.retries)
                else:
                    rid = _record(db, plan, task, result)
                    out.recorded.append(rid)
                    bar.done, bar.running = len(out.recorded), len(inflight)
                    bar.log(
                        f"recorded run {rid} ({task.label}, seed {task.seed}) in "
                        f"{result['wall_s']:.1f} s on {result['worker']}"
                        + (f" (attempt {task.attempt})" if task.attempt > 1 else "")
                    )
        bar.update(done=len(out.recorded), running=0, failed=len(out.failed))
    except KeyboardInterrupt:
        out.interrupted = cancelled = True
    finally:
        out.wall_s = time.monotonic() - t0
        bar.close()
        backend.close(cancel=cancelled or bool(inflight))
    return out


def _failed(
    out: SweepOutcome,
    bar: SweepProgress,
    queue: deque[RunTask],
    task: RunTask,
    error: str,
    retries: int,
) -> None:
    tries = retries + 1
    if task.attempt < tries:
        out.retried += 1
        bar.log(
            f"run {task.label}, seed {task.seed} failed (attempt {task.attempt} of {tries}): "
            f"{error}; trying again"
        )
        queue.appendleft(
            RunTask(
                task.index,
                task.label,
                task.seed,
                task.toml,
                task.config_hash,
                task.version,
                task.attempt + 1,
            )
        )
    else:
        out.failed.append((task.label, task.seed, error))
        bar.failed = len(out.failed)
        bar.log(
            f"run {task.label}, seed {task.seed} FAILED (attempt {task.attempt} of {tries}): "
            f"{error}; not recorded, the sweep goes on"
        )


def _record(db: ResultsDB, plan: SweepPlan, task: RunTask, res: dict[str, Any]) -> str:
    r = plan.runs[task.index]
    sc = r.scenario
    fields = {k: res[k] for k in _result_fields()}
    fields["snapshots"] = [Snapshot(t, lab, files) for t, lab, files in res["snapshots"]]
    return db.record(
        RunRecord(
            scenario=sc.scenario.name,
            config=sc.to_dict(),
            config_hash=r.config_hash,
            seed=r.seed,
            started=res["started"],
            finished=res["finished"],
            **fields,
            compare_group=f"sweep:{plan.spec.name}",
            compare_label=r.setting.label,
            version=task.version,
        ),
        lock_timeout=60,
        once=True,
    )
