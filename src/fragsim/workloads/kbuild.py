"""A kernel-build-like load (``make -jN``): many short compile processes, page-cache heavy,
leaving dentries and inodes cached behind them. It exercises the page cache (mm/filemap.c),
anonymous memory (mm/memory.c), SLUB (mm/slub.c) and reclaim (mm/vmscan.c) of Linux 6.1 the way
a build does: the slab grows with every file the build touches, and the page cache with every
file it reads and writes.

``jobs`` compile jobs run at once; each, from start to end::

    start:  fork + exec (Processes.spawn: kernel stack, page tables, task_struct, mm_struct,
            vm_area_structs, anon_vmas), anonymous memory faulted in (anon_mib, drawn),
            the headers it includes read (headers_per_job pages of the shared header set,
            in a few ranges: re-read by every job, they stay hot), its source file read (a new
            file: read once), files opened (filp), dentries and inodes for its two new files,
            kmalloc() of various sizes
    end:    (after a duration drawn around job_ns) its object file written (a new file, dirty
            page cache: the flusher writes it back), kfree of the kmallocs, the filps, the
            vm_area_structs, anon_vmas, mm_struct and task_struct freed, the process exits;
            its dentries and inodes stay cached (unused, on the shrinker's LRU)
    then:   the next job starts on the freed slot, until total_jobs have started (0: no limit)

Memory users: the first ``Processes``, ``PageCache`` and ``Slab`` of ``sim.drivers``; each one
the scenario did not define is created by the workload for itself (not entered in
``sim.drivers``).

SIMPLIFICATIONS: the header set's dentries and inodes are made once, at the start, and left
unused on the LRU (lookups of cached dentries are not modelled); a job's files are never opened
again (no link step); no make or shell processes between the compile jobs.
"""

from __future__ import annotations

from typing import Any, TypeVar, cast

import numpy as np
import numpy.typing as npt

from fragsim.drivers.base import MemoryUser
from fragsim.errors import ConfigError
from fragsim.scenario.engine import MS, S, Simulation, Workload, register_workload

__all__ = ["KernelBuild"]

PAGE_SIZE = 4096
MIB_PAGES = (1 << 20) // PAGE_SIZE
#: kmalloc sizes of one job (bytes) and how many of each: the mixed small allocations of
#: exec, the VFS and the compiler's syscalls (seq_file buffers, path names, pipe buffers)
KMALLOC_MIX = ((32, 40), (64, 40), (128, 24), (192, 16), (512, 12), (1024, 8), (4096, 4))
#: named-cache objects of one job besides its files': (cache, count)
JOB_CACHES = (
    ("task_struct", 1),
    ("mm_struct", 1),
    ("vm_area_struct", 40),
    ("anon_vma", 12),
    ("anon_vma_chain", 24),
    ("cred_jar", 1),
    ("files_cache", 1),
    ("signal_cache", 1),
    ("sighand_cache", 1),
    ("pid", 1),
)


U = TypeVar("U", bound=MemoryUser)


def _first_or_new(sim: Simulation, cls: type[U]) -> tuple[U, bool]:
    """The scenario's first memory user of ``cls``, or a new one (True: made here)."""
    found = sim.drivers_of(cls)
    if found:
        return cast(U, found[0]), False
    return cls(sim.machine), True


@register_workload("kbuild")
class KernelBuild(Workload):
    """``make -j<jobs>`` of a kernel-like tree (see the module docstring).

    Options: ``jobs`` (parallel compile jobs, >= 1); ``job_ns`` (mean duration of one job, ns;
    each is drawn from a gamma distribution of shape 4 around it); ``total_jobs`` (jobs to run,
    0: until the run ends); ``anon_mib`` (mean anonymous memory of a job, MiB; each draws
    uniformly from 0.5x to 1.5x); ``headers_mib`` (size of the shared header set);
    ``headers_per_job`` (header pages each job reads); ``source_kib`` / ``object_kib`` (mean
    sizes of a job's source and object file; drawn exponentially, at least one page);
    ``files_per_job`` (files a job opens: filp objects); ``start_ns`` (when the build begins)."""

    def __init__(
        self,
        sim: Simulation,
        *,
        jobs: int = 4,
        job_ns: int = 2 * S,
        total_jobs: int = 0,
        anon_mib: float = 24.0,
        headers_mib: float = 16.0,
        headers_per_job: int = 512,
        source_kib: float = 32.0,
        object_kib: float = 64.0,
        files_per_job: int = 64,
        start_ns: int = 0,
    ) -> None:
        super().__init__(sim)
        w = "workload kbuild"
        if jobs < 1:
            raise ConfigError(f"{w}: jobs: expected an integer >= 1, got {jobs!r}")
        if job_ns <= 0:
            raise ConfigError(f"{w}: job_ns: expected a duration > 0, got {job_ns!r}")
        if total_jobs < 0:
            raise ConfigError(f"{w}: total_jobs: expected an integer >= 0, got {total_jobs!r}")
        for key, v in (
            ("anon_mib", anon_mib),
            ("headers_mib", headers_mib),
            ("source_kib", source_kib),
            ("object_kib", object_kib),
        ):
            if not v > 0:
                raise ConfigError(f"{w}: {key}: expected a number > 0, got {v!r}")
        header_pages = max(1, int(headers_mib * MIB_PAGES))
        if not 0 <= headers_per_job <= header_pages:
            raise ConfigError(
                f"{w}: headers_per_job: expected an integer in [0, {header_pages}] (the header "
                f"set's pages), got {headers_per_job!r}"
            )
        if files_per_job < 0:
            raise ConfigError(
                f"{w}: files_per_job: expected an integer >= 0, got {files_per_job!r}"
            )
        if start_ns < 0:
            raise ConfigError(f"{w}: start_ns: expected a duration >= 0, got {start_ns!r}")
        from fragsim.drivers.pagecache import PageCache
        from fragsim.drivers.process import Processes
        from fragsim.drivers.slab import Slab

        self.jobs = jobs
        self.job_ns = job_ns
        self.total_jobs = total_jobs
        self.anon_pages = anon_mib * MIB_PAGES
        self.header_pages = header_pages
        self.headers_per_job = headers_per_job
        self.source_pages = source_kib * 1024 / PAGE_SIZE
        self.object_pages = object_kib * 1024 / PAGE_SIZE
        self.files_per_job = files_per_job
        self.start_ns = start_ns
        self.procs, own_p = _first_or_new(sim, Processes)
        self.pagecache, own_c = _first_or_new(sim, PageCache)
        self.slab, own_s = _first_or_new(sim, Slab)
        #: which memory users the workload made for itself
        self.own_drivers = [
            n for n, own in (("process", own_p), ("pagecache", own_c), ("slab", own_s)) if own
        ]
        self._rng: np.random.Generator | None = None
        self.headers = -1
        self.running = 0
        self.started = 0
        self.counts = {
            "jobs_started": 0,
            "jobs_done": 0,
            "fork_failures": 0,
            "anon_pages_faulted": 0,
            "fault_failures": 0,
            "pages_read": 0,
            "pages_written": 0,
            "read_failures": 0,
            "write_failures": 0,
            "slab_objects_allocated": 0,
            "slab_alloc_failures": 0,
            "dentries_cached": 0,
        }

    # ------------------------------------------------------------------ the clock
    def start(self) -> None:
        self._rng = self.own_rng()
        self.sim.at(self.sim.now + self.start_ns, self._begin)

    def _begin(self) -> None:
        """The tree is there: the header set is a file (not cached yet), its dentries and
        inodes exist (unused)."""
        self.headers = self.pagecache.create(self.header_pages)
        nr_files = max(1, self.header_pages // 4)  # headers of 16 KiB on average
        self._cache_dentries(nr_files)
        for slot in range(self.jobs):
            # the jobs of make -jN start within a few ms of each other
            self.sim.after(slot * MS, self._start_job)

    def _start_job(self) -> None:
        if self.total_jobs and self.started >= self.total_jobs:
            return
        self.started += 1
        self.counts["jobs_started"] += 1
        rng = self._rng
        assert rng is not None
        c = self.counts
        anon = max(1, int(self.anon_pages * rng.uniform(0.5, 1.5)))
        pid = self.procs.spawn("cc1", 0)
        if pid < 0:
            c["fork_failures"] += 1
            self.sim.after(10 * MS, self._start_job)  # make retries the fork
            self.started -= 1
            return
        failed = self.procs.fault(pid, anon)
        c["anon_pages_faulted"] += anon - failed
        c["fault_failures"] += failed
        objs: list[tuple[str, npt.NDArray[np.int64]]] = []
        for cache, n in JOB_CACHES:
            objs.append((cache, self._slab_alloc(cache, n)))
        objs.append(("filp", self._slab_alloc("filp", self.files_per_job)))
        kmallocs = [self._kmalloc(size, n) for size, n in KMALLOC_MIX]
        # headers: a few ranges of the header set
        pc = self.pagecache
        if self.headers_per_job:
            nr = 8
            per = max(1, self.headers_per_job // nr)
            starts = rng.integers(0, self.header_pages - per + 1, size=nr)
            for s in starts.tolist():
                c["read_failures"] += pc.read(self.headers, s, per)
                c["pages_read"] += per
        src_pages = max(1, int(rng.exponential(self.source_pages)))
        src = pc.create(src_pages)
        c["read_failures"] += pc.read(src)
        c["pages_read"] += src_pages
        obj_pages = max(1, int(rng.exponential(self.object_pages)))
        duration = max(1, int(rng.gamma(4.0, self.job_ns / 4.0)))
        self.running += 1
        self.sim.after(duration, lambda: self._end_job(pid, objs, kmallocs, obj_pages))

    def _end_job(
        self,
        pid: int,
        objs: list[tuple[str, npt.NDArray[np.int64]]],
        kmallocs: list[npt.NDArray[np.int64]],
        obj_pages: int,
    ) -> None:
        c = self.counts
        pc = self.pagecache
        out = pc.create(obj_pages)
        c["write_failures"] += pc.write(out)
        c["pages_written"] += obj_pages
        for ids in kmallocs:
            if ids.size:
                self.slab.kfree(ids)
        for cache, ids in objs:
            if ids.size:
                self.slab.kmem_cache_free(cache, ids)
        self._cache_dentries(2)  # the source file's and the object file's
        if pid in self.procs.procs:  # (the OOM killer may have taken it)
            self.procs.exit(pid)
        self.running -= 1
        c["jobs_done"] += 1
        self._start_job()

    # ------------------------------------------------------------------ slab
    def _slab_alloc(self, cache: str, n: int) -> npt.NDArray[np.int64]:
        ids = self.slab.kmem_cache_alloc(cache, n)
        ok = ids[ids >= 0]
        self.counts["slab_objects_allocated"] += int(ok.size)
        self.counts["slab_alloc_failures"] += int(ids.size - ok.size)
        return ok

    def _kmalloc(self, size: int, n: int) -> npt.NDArray[np.int64]:
        ids = self.slab.kmalloc(size, n)
        ok = ids[ids >= 0]
        self.counts["slab_objects_allocated"] += int(ok.size)
        self.counts["slab_alloc_failures"] += int(ids.size - ok.size)
        return ok

    def _cache_dentries(self, nr_files: int) -> None:
        """A dentry and an inode for each of ``nr_files`` files, left unused on the LRU."""
        for cache in ("dentry", "inode_cache"):
            ids = self._slab_alloc(cache, nr_files)
            if ids.size:
                self.slab.mark_unused(ids)
                if cache == "dentry":
                    self.counts["dentries_cached"] += int(ids.size)

    # ------------------------------------------------------------------ results
    def summary(self) -> dict[str, Any]:
        """Jobs started, done and running; fork, fault, read, write and slab allocation
        failures; anonymous pages faulted, page-cache pages read and written, slab objects
        allocated, dentries left cached; and the memory users made for itself."""
        return {**self.counts, "jobs_running": self.running, "own_drivers": list(self.own_drivers)}
